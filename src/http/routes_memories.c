/*
 * routes_memories.c — the native JSON API for memories and relationships:
 * create (one or a batch), get, update, delete, list with a cursor, the
 * history of a memory, relationships, and traversal.
 *
 * Every route checks all of its input before it touches the store, and
 * answers 400 naming the field or parameter that is wrong; the namespace
 * is always explicit ("ns" in a body, ?ns= in a query) and passes
 * http_allow_ns first. Writes go through one engram_write batch, which is
 * atomic: a rejected request leaves nothing behind.
 *
 * Async shape. A route that starts store work allocates one mem_req, hands
 * it to the store as callback data, and returns; the callback replies
 * (unless the client is gone) and ends the mem_req, which releases the
 * http_req exactly once. Streams (list, traverse) ask for one item more
 * than the page holds, so they know whether a next page exists, then
 * cancel; a client that disconnects cancels them through on_gone, and the
 * stream's done callback still runs and does the release.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"

#define BATCH_MAX 1000
#define LIST_DEFAULT 50
#define LIST_MAX 1000
#define TRAVERSE_DEFAULT_LIMIT 100
#define TRAVERSE_MAX_LIMIT 1000
#define TRAVERSE_DEFAULT_DEPTH 2
#define TRAVERSE_MAX_DEPTH 10
#define NS_CAP 1024 /* larger than any valid namespace: too long is 400 */

/* One route's async state. Owned by the route until mem_req_end, which
 * also releases the http_req. */
typedef struct mem_req {
  http_req *r;
  char *ns; /* a copy, for the callbacks' messages and follow-up calls */
  char id[ENGRAM_ID_LEN + 1];
  int is_batch;
  /* streams */
  int with_depth;        /* traverse: items carry their depth */
  engram_stream *stream; /* until its done callback */
  json_t *items;         /* the memories of the page so far */
  size_t limit;          /* the page size; the stream is asked for one more */
  size_t got;
  int more;         /* an item past the limit arrived */
  int we_cancelled; /* we stopped the stream: it has what we need */
  uint64_t failed;  /* per-item errors the stream reported */
  char last[ENGRAM_ID_LEN + 1];
} mem_req;

static mem_req *mem_req_new(http_req *r, const char *ns, const char *id) {
  mem_req *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->r = r;
  if (ns && !(m->ns = strdup(ns))) {
    free(m);
    return NULL;
  }
  if (id)
    snprintf(m->id, sizeof m->id, "%s", id);
  r->op = m;
  return m;
}

/* Releases the http_req (exactly once) and frees m. */
static void mem_req_end(mem_req *m) {
  http_req *r = m->r;
  r->on_gone = NULL;
  r->op = NULL;
  http_req_done(r);
  if (m->items)
    json_decref(m->items);
  free(m->ns);
  free(m);
}

/* A start function refused (it will not call back): reply and end. */
static void start_failed(http_req *r, mem_req *m, int rc) {
  http_error_engram(r, rc, NULL);
  mem_req_end(m);
}

static void out_of_memory(http_req *r) {
  http_error(r, 503, "unavailable", "out of memory");
  http_req_done(r);
}

/* ------------------------------------------------------- memory as JSON */

static json_t *node_json(const engram_node *n, int with_depth) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)n->content_hash);
  json_t *md = n->metadata ? json_loads(n->metadata, 0, NULL) : NULL;
  if (!md)
    md = json_object(); /* stored metadata is checked to be an object */
  const char *type = engram_type_name(n->type);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s%, s:f, s:o, s:I, s:I, s:I, s:s}",
                        "id", n->id, "ns", n->ns ? n->ns : "", "type",
                        type ? type : "episodic", "content", n->content,
                        n->content_len, "importance", n->importance, "metadata",
                        md, "created_ms", (json_int_t)n->created_ms,
                        "updated_ms", (json_int_t)n->updated_ms, "accessed_ms",
                        (json_int_t)n->accessed_ms, "content_hash", hex);
  if (o && with_depth)
    json_object_set_new(o, "depth", json_integer(n->depth));
  return o;
}

/* ----------------------------------------------------- path and query */

/* The path capture params[i] as a memory id; replies 400 when it is not. */
static int path_id(http_req *r, int i) {
  if (engram_id_valid(r->params[i]))
    return 1;
  http_error(r, 400, "invalid",
             "'%s' in the path is not a memory id (expected a lower-case "
             "UUID like 0190a5e2-7b3c-7def-8123-456789abcdef)",
             r->params[i]);
  return 0;
}

/* A query parameter as text: 1 present, 0 absent (or replied when
 * required), -1 replied 400. */
static int query_text(http_req *r, const char *name, int required, char *out,
                      size_t cap) {
  int rc = http_query(r, name, out, cap);
  if (rc < 0) {
    http_error(r, 400, "invalid",
               "query parameter '%s' is malformed (bad percent-encoding, a "
               "NUL byte, or longer than %zu bytes)",
               name, cap - 1);
    return -1;
  }
  if (rc == 0 && required) {
    http_error(r, 400, "invalid", "query parameter '%s' is required", name);
    return -1;
  }
  if (rc == 1 && !core_utf8_valid(out, strlen(out))) {
    http_error(r, 400, "invalid", "query parameter '%s' is not valid UTF-8",
               name);
    return -1;
  }
  return rc;
}

/* ?ns=, required, and allowed for the caller's key. */
static int query_ns(http_req *r, char *ns) {
  if (query_text(r, "ns", 1, ns, NS_CAP) < 0)
    return 0;
  return http_allow_ns(r, ns);
}

/* ?name=N with N a decimal integer in [min, max]; def when absent. */
static int query_int(http_req *r, const char *name, long long min,
                     long long max, long long def, long long *out) {
  char v[32];
  int rc = query_text(r, name, 0, v, sizeof v);
  if (rc < 0)
    return 0;
  if (rc == 0) {
    *out = def;
    return 1;
  }
  size_t n = strlen(v);
  int ok = n > 0 && n <= 18;
  for (size_t i = 0; ok && i < n; i++)
    ok = isdigit((unsigned char)v[i]);
  long long x = ok ? strtoll(v, NULL, 10) : 0;
  if (!ok || x < min || x > max) {
    http_error(r, 400, "invalid",
               "query parameter '%s' must be an integer from %lld to %lld",
               name, min, max);
    return 0;
  }
  *out = x;
  return 1;
}

/* ?name=X with X a number in [0, 1]; def when absent. */
static int query_unit(http_req *r, const char *name, double def, double *out) {
  char v[64];
  int rc = query_text(r, name, 0, v, sizeof v);
  if (rc < 0)
    return 0;
  if (rc == 0) {
    *out = def;
    return 1;
  }
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!v[0] || *end || errno || !isfinite(x) || x < 0 || x > 1) {
    http_error(r, 400, "invalid",
               "query parameter '%s' must be a number from 0 to 1", name);
    return 0;
  }
  *out = x;
  return 1;
}

/* ?type=T[,T...] as a bit set of types; 0 (all) when absent. */
static int query_types(http_req *r, unsigned *types) {
  char v[128];
  *types = 0;
  int rc = query_text(r, "type", 0, v, sizeof v);
  if (rc <= 0)
    return rc == 0;
  char *save = NULL;
  for (char *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    engram_type ty;
    if (engram_type_parse(t, &ty) != 0) {
      http_error(r, 400, "invalid",
                 "query parameter 'type' must be episodic, semantic, "
                 "procedural or working (or several, comma-separated)");
      return 0;
    }
    *types |= 1u << ty;
  }
  if (*types == 0) {
    http_error(r, 400, "invalid", "query parameter 'type' is empty");
    return 0;
  }
  return 1;
}

/* ----------------------------------------------------------- JSON bodies */

/* "ns" from the body, required, and allowed for the caller's key. */
static int body_ns(http_req *r, const char **ns) {
  return http_body_string(r, "ns", 1, ns) && http_allow_ns(r, *ns);
}

/* Replies 400 for the first key of obj not in allowed (NULL-ended). */
static int only_fields(http_req *r, json_t *obj, const char *where,
                       const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int known = 0;
    for (const char *const *a = allowed; *a && !known; a++)
      known = strcmp(key, *a) == 0;
    if (!known) {
      char list[160] = "";
      for (const char *const *a = allowed; *a; a++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                 a == allowed ? "" : ", ", *a);
      http_error(r, 400, "invalid", "unknown field '%s%s' (expected: %s)",
                 where, key, list);
      return 0;
    }
  }
  return 1;
}

static const char *const add_fields[] = {
    "content", "type", "importance", "metadata", "id", "dedup", NULL};
static const char *const create_fields[] = {
    "ns", "content", "type", "importance", "metadata", "id", "dedup", NULL};
static const char *const patch_fields[] = {"ns",         "content",  "type",
                                           "importance", "metadata", NULL};

/* Fills op (ADD or UPDATE) from obj's memory fields; where prefixes field
 * names in messages ("" or "memories[3]."). *metadata receives a string
 * the caller frees after engram_write. Replies 400 and returns 0 on a bad
 * field. */
static int parse_memory(http_req *r, json_t *obj, const char *where,
                        engram_op *op, char **metadata) {
  int is_add = op->kind == ENGRAM_OP_ADD;
  json_t *v;
  *metadata = NULL;

  v = json_object_get(obj, "content");
  if (v && !json_is_null(v)) {
    if (!json_is_string(v) || json_string_length(v) == 0) {
      http_error(r, 400, "invalid",
                 "field '%scontent' must be a non-empty string", where);
      return 0;
    }
    op->content = json_string_value(v);
    op->content_len = json_string_length(v);
    op->set |= ENGRAM_SET_CONTENT;
  } else if (is_add) {
    http_error(r, 400, "invalid", "field '%scontent' is required (a string)",
               where);
    return 0;
  }

  v = json_object_get(obj, "type");
  if (v && !json_is_null(v)) {
    engram_type t;
    if (!json_is_string(v) || engram_type_parse(json_string_value(v), &t)) {
      http_error(
          r, 400, "invalid",
          "field '%stype' must be episodic, semantic, procedural or working",
          where);
      return 0;
    }
    op->type = t;
    op->set |= ENGRAM_SET_TYPE;
  }

  v = json_object_get(obj, "importance");
  if (v && !json_is_null(v)) {
    double x = json_is_number(v) ? json_number_value(v) : -1;
    if (!json_is_number(v) || !(x >= 0 && x <= 1)) {
      http_error(r, 400, "invalid",
                 "field '%simportance' must be a number from 0 to 1", where);
      return 0;
    }
    op->importance = x;
    op->set |= ENGRAM_SET_IMPORTANCE;
  }

  v = json_object_get(obj, "metadata");
  if (v && !json_is_null(v)) {
    if (!json_is_object(v)) {
      http_error(r, 400, "invalid", "field '%smetadata' must be a JSON object",
                 where);
      return 0;
    }
    *metadata = json_dumps(v, JSON_COMPACT);
    if (!*metadata) {
      http_error(r, 503, "unavailable", "out of memory");
      return 0;
    }
    op->metadata = *metadata;
    op->set |= ENGRAM_SET_METADATA;
  }

  if (!is_add)
    return 1;

  v = json_object_get(obj, "id");
  if (v && !json_is_null(v)) {
    if (!json_is_string(v) || !engram_id_valid(json_string_value(v))) {
      http_error(r, 400, "invalid",
                 "field '%sid' must be a memory id (a lower-case UUIDv7 like "
                 "0190a5e2-7b3c-7def-8123-456789abcdef)",
                 where);
      goto fail;
    }
    op->id = json_string_value(v);
  }

  v = json_object_get(obj, "dedup");
  if (v && !json_is_null(v)) {
    if (!json_is_boolean(v)) {
      http_error(r, 400, "invalid", "field '%sdedup' must be true or false",
                 where);
      goto fail;
    }
    op->dedup = json_is_true(v);
  }
  return 1;
fail:
  free(*metadata);
  *metadata = NULL;
  return 0;
}

/* Replies for a write that failed, naming the op of a batch. */
static void write_error(http_req *r, int status, const engram_op *ops, size_t n,
                        int is_batch) {
  size_t at = n;
  for (size_t i = 0; i < n; i++)
    if (ops[i].status != 0 && ops[i].status != ENGRAM_ECANCELED) {
      at = i;
      break;
    }
  const char *msg = at < n && ops[at].message[0] ? ops[at].message : NULL;
  if (is_batch && at < n) {
    char buf[256];
    snprintf(buf, sizeof buf, "memories[%zu]: %s", at,
             msg ? msg : engram_strerror(status));
    http_error_engram(r, status, buf);
  } else {
    http_error_engram(r, status, msg);
  }
}

/* Starts a write of ops for m; on a refusal replies and ends m. */
static void start_write(mem_req *m, engram_op *ops, size_t n,
                        engram_write_cb cb) {
  int rc = engram_write(m->r->eg, ops, n, cb, m);
  if (rc != 0) {
    write_error(m->r, rc, ops, n, m->is_batch);
    mem_req_end(m);
  }
}

/* ------------------------------------------------------- POST /v1/memories */

static void created(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    write_error(r, status, ops, n, 0);
  } else {
    int dup = ops[0].deduplicated;
    http_reply_json(
        r, dup ? 200 : 201,
        json_pack("{s:s, s:b}", "id", ops[0].result_id, "deduplicated", dup));
  }
  mem_req_end(m);
}

static void memory_create(http_req *r) {
  const char *ns;
  if (!body_ns(r, &ns) || !only_fields(r, r->body, "", create_fields)) {
    http_req_done(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = ns};
  char *metadata;
  if (!parse_memory(r, r->body, "", &op, &metadata)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, NULL);
  if (!m) {
    free(metadata);
    out_of_memory(r);
    return;
  }
  start_write(m, &op, 1, created);
  free(metadata);
}

/* ------------------------------------------------- POST /v1/memories/batch */

static void batch_created(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    write_error(r, status, ops, n, 1);
  } else {
    json_t *ids = json_array(), *dups = json_array();
    int all_dup = 1;
    for (size_t i = 0; i < n; i++) {
      json_array_append_new(ids, json_string(ops[i].result_id));
      json_array_append_new(dups, json_boolean(ops[i].deduplicated));
      all_dup = all_dup && ops[i].deduplicated;
    }
    http_reply_json(r, all_dup ? 200 : 201,
                    json_pack("{s:o, s:o}", "ids", ids, "deduplicated", dups));
  }
  mem_req_end(m);
}

static void memory_batch(http_req *r) {
  static const char *const fields[] = {"ns", "memories", NULL};
  const char *ns;
  if (!body_ns(r, &ns) || !only_fields(r, r->body, "", fields)) {
    http_req_done(r);
    return;
  }
  json_t *list = json_object_get(r->body, "memories");
  if (!json_is_array(list) || json_array_size(list) == 0 ||
      json_array_size(list) > BATCH_MAX) {
    if (json_is_array(list))
      http_error(r, 400, "invalid",
                 "field 'memories' holds %zu memories; a batch holds 1 to %d",
                 json_array_size(list), BATCH_MAX);
    else
      http_error(r, 400, "invalid",
                 "field 'memories' is required (an array of memory objects)");
    http_req_done(r);
    return;
  }
  size_t n = json_array_size(list);
  engram_op *ops = calloc(n, sizeof *ops);
  char **metadata = calloc(n, sizeof *metadata);
  mem_req *m = ops && metadata ? mem_req_new(r, ns, NULL) : NULL;
  if (!m) {
    free(ops);
    free(metadata);
    out_of_memory(r);
    return;
  }
  m->is_batch = 1;
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    char where[32];
    snprintf(where, sizeof where, "memories[%zu].", i);
    json_t *item = json_array_get(list, i);
    ops[i].kind = ENGRAM_OP_ADD;
    ops[i].ns = ns;
    if (!json_is_object(item)) {
      http_error(r, 400, "invalid", "field 'memories[%zu]' must be an object",
                 i);
      ok = 0;
    } else {
      ok = only_fields(r, item, where, add_fields) &&
           parse_memory(r, item, where, &ops[i], &metadata[i]);
    }
  }
  if (ok)
    start_write(m, ops, n, batch_created);
  else
    mem_req_end(m);
  for (size_t i = 0; i < n; i++)
    free(metadata[i]);
  free(metadata);
  free(ops);
}

/* ------------------------------------------------ GET /v1/memories/:id */

static void got_memory(int status, const engram_node *node, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    if (status == ENGRAM_ENOTFOUND)
      http_error(r, 404, "not_found", "no memory %s in namespace \"%s\"", m->id,
                 m->ns);
    else
      http_error_engram(r, status, NULL);
  } else {
    http_reply_json(r, 200, node_json(node, 0));
  }
  mem_req_end(m);
}

static void start_get(mem_req *m) {
  int rc = engram_get(m->r->eg, m->ns, m->id, got_memory, m);
  if (rc != 0)
    start_failed(m->r, m, rc);
}

static void memory_get(http_req *r) {
  char ns[NS_CAP];
  if (!path_id(r, 0) || !query_ns(r, ns)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m) {
    out_of_memory(r);
    return;
  }
  start_get(m);
}

/* ---------------------------------------------- PATCH /v1/memories/:id */

static void updated(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    mem_req_end(m);
  } else if (status != 0) {
    write_error(r, status, ops, n, 0);
    mem_req_end(m);
  } else {
    start_get(m); /* the memory as it is now */
  }
}

static void memory_update(http_req *r) {
  const char *ns;
  if (!path_id(r, 0) || !body_ns(r, &ns) ||
      !only_fields(r, r->body, "", patch_fields)) {
    http_req_done(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_UPDATE, .ns = ns, .id = r->params[0]};
  char *metadata;
  if (!parse_memory(r, r->body, "", &op, &metadata)) {
    http_req_done(r);
    return;
  }
  if (op.set == 0) {
    http_error(r, 400, "invalid",
               "nothing to change: give at least one of content, type, "
               "importance, metadata");
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m) {
    free(metadata);
    out_of_memory(r);
    return;
  }
  start_write(m, &op, 1, updated);
  free(metadata);
}

/* --------------------------------------------- DELETE /v1/memories/:id */

static void deleted(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    write_error(r, status, ops, n, 0);
  } else {
    http_reply_json(r, 200, json_pack("{s:s, s:b}", "id", m->id, "deleted", 1));
  }
  mem_req_end(m);
}

static void memory_delete(http_req *r) {
  char ns[NS_CAP];
  if (!path_id(r, 0) || !query_ns(r, ns)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m) {
    out_of_memory(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_DELETE, .ns = m->ns, .id = m->id};
  start_write(m, &op, 1, deleted);
}

/* ------------------------------------------------------------ streams */

/* The client went away: stop the producer. The done callback follows and
 * ends the mem_req (which owns the release). */
static void stream_gone(http_req *r) {
  mem_req *m = r->op;
  if (m && m->stream)
    engram_stream_cancel(m->stream);
}

/* Collects up to m->limit items; the one after tells that more exist. */
static void page_item(engram_stream *s, const engram_node *node, void *data) {
  mem_req *m = data;
  if (m->got == m->limit) {
    m->more = 1;
    m->we_cancelled = 1;
    engram_stream_cancel(s);
    return;
  }
  json_t *o = node_json(node, m->with_depth);
  if (!o || json_array_append_new(m->items, o) != 0) {
    m->failed++; /* out of memory: told like any failed item */
    return;
  }
  m->got++;
  memcpy(m->last, node->id, sizeof m->last);
}

static void page_error(engram_stream *s, int code, const char *message,
                       void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged once by the stream */
  ((mem_req *)data)->failed++;
}

/* How a stream ended, for the reply: 0 a complete answer, 1 cut short by
 * the deadline with something to show, or else an error already replied. */
static int page_status(mem_req *m, int status) {
  http_req *r = m->r;
  if (status == 0 || (status == ENGRAM_ECANCELED && m->we_cancelled))
    return 0;
  if (status == ENGRAM_ETIMEDOUT && m->got == m->limit) {
    m->more = 1; /* only the look-ahead item was late: a full page */
    return 0;
  }
  if (status == ENGRAM_ETIMEDOUT && m->got > 0)
    return 1;
  if (status == ENGRAM_ETIMEDOUT)
    http_error(r, 504, "deadline",
               "nothing was found within the request deadline (%llu ms)",
               (unsigned long long)r->srv->opts.request_timeout_ms);
  else if (status == ENGRAM_ENOTFOUND)
    http_error(r, 404, "not_found", "no memory %s in namespace \"%s\"", m->id,
               m->ns);
  else
    http_error_engram(r, status, NULL);
  return -1;
}

/* The state of a paged stream; on failure replies and releases r. */
static mem_req *page_new(http_req *r, const char *ns, const char *id,
                         size_t limit) {
  mem_req *m = mem_req_new(r, ns, id);
  if (!m) {
    out_of_memory(r);
    return NULL;
  }
  if (!(m->items = json_array())) {
    http_error(r, 503, "unavailable", "out of memory");
    mem_req_end(m);
    return NULL;
  }
  m->limit = limit;
  return m;
}

/* Asks for limit + 1 items under the request deadline; on a refusal
 * replies and ends m. */
static void start_page(mem_req *m, int rc, engram_stream *s) {
  if (rc != 0) {
    start_failed(m->r, m, rc);
    return;
  }
  m->stream = s;
  m->r->on_gone = stream_gone;
  engram_stream_set_deadline(s, m->r->srv->opts.request_timeout_ms);
  engram_stream_request(s, m->limit + 1);
}

/* ---------------------------------------------------- GET /v1/memories */

static void listed(engram_stream *s, int status, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  (void)s;
  m->stream = NULL;
  int how;
  if (!http_req_gone(r) && (how = page_status(m, status)) >= 0) {
    /* Cut short by the deadline, the page still ends at a valid cursor. */
    int has_next = m->more || how == 1;
    json_t *o = json_pack("{s:O, s:o}", "memories", m->items, "next",
                          has_next ? json_string(m->last) : json_null());
    if (o && how == 1)
      json_object_set_new(o, "timed_out", json_true());
    if (o && m->failed)
      json_object_set_new(o, "failed", json_integer((json_int_t)m->failed));
    http_reply_json(r, 200, o);
  }
  mem_req_end(m);
}

static void memory_list(http_req *r) {
  char ns[NS_CAP], after[64];
  long long limit;
  unsigned types;
  int has_after;
  if (!query_ns(r, ns) ||
      !query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) ||
      (has_after = query_text(r, "after", 0, after, sizeof after)) < 0 ||
      !query_types(r, &types)) {
    http_req_done(r);
    return;
  }
  if (has_after && !engram_id_valid(after)) {
    http_error(r, 400, "invalid",
               "query parameter 'after' must be a memory id (the 'next' of the "
               "previous page)");
    http_req_done(r);
    return;
  }
  mem_req *m = page_new(r, ns, NULL, (size_t)limit);
  if (!m)
    return;
  engram_query q = {
      .ns = m->ns, .types = types, .after = has_after ? after : NULL};
  engram_stream_cbs cbs = {page_item, page_error, listed, m};
  engram_stream *s = NULL;
  int rc = engram_list(r->eg, &q, &cbs, &s);
  start_page(m, rc, s);
}

/* -------------------------------------------- GET /v1/memories/:id/traverse */

static void traversed(engram_stream *s, int status, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  (void)s;
  m->stream = NULL;
  int how;
  if (!http_req_gone(r) && (how = page_status(m, status)) >= 0) {
    json_t *o = json_pack("{s:s, s:O, s:b}", "id", m->id, "memories", m->items,
                          "truncated", m->more || how == 1);
    if (o && how == 1)
      json_object_set_new(o, "timed_out", json_true());
    if (o && m->failed)
      json_object_set_new(o, "failed", json_integer((json_int_t)m->failed));
    http_reply_json(r, 200, o);
  }
  mem_req_end(m);
}

static void memory_traverse(http_req *r) {
  char ns[NS_CAP];
  long long depth, limit;
  double min_strength;
  if (!path_id(r, 0) || !query_ns(r, ns) ||
      !query_int(r, "depth", 0, TRAVERSE_MAX_DEPTH, TRAVERSE_DEFAULT_DEPTH,
                 &depth) ||
      !query_unit(r, "min_strength", 0, &min_strength) ||
      !query_int(r, "limit", 1, TRAVERSE_MAX_LIMIT, TRAVERSE_DEFAULT_LIMIT,
                 &limit)) {
    http_req_done(r);
    return;
  }
  mem_req *m = page_new(r, ns, r->params[0], (size_t)limit);
  if (!m)
    return;
  m->with_depth = 1;
  engram_stream_cbs cbs = {page_item, page_error, traversed, m};
  engram_stream *s = NULL;
  int rc = engram_traverse(r->eg, m->ns, m->id, (uint32_t)depth, min_strength,
                           &cbs, &s);
  start_page(m, rc, s);
}

/* --------------------------------------------- GET /v1/memories/:id/history */

static void got_history(int status, const engram_history_entry *e, size_t n,
                        void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status == ENGRAM_ENOTFOUND) {
    http_error(r, 404, "not_found",
               "memory %s never existed in namespace \"%s\"", m->id, m->ns);
  } else if (status != 0) {
    http_error_engram(r, status, NULL);
  } else {
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
      json_t *o = json_pack("{s:s, s:s?, s:s?, s:I}", "event",
                            engram_event_name(e[i].event), "old_content",
                            e[i].old_content, "new_content", e[i].new_content,
                            "at_ms", (json_int_t)e[i].at_ms);
      json_array_append_new(list, o);
    }
    http_reply_json(r, 200,
                    list ? json_pack("{s:s, s:o}", "id", m->id, "history", list)
                         : NULL);
  }
  mem_req_end(m);
}

static void memory_history(http_req *r) {
  char ns[NS_CAP];
  if (!path_id(r, 0) || !query_ns(r, ns)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m) {
    out_of_memory(r);
    return;
  }
  int rc = engram_history(r->eg, m->ns, m->id, got_history, m);
  if (rc != 0)
    start_failed(r, m, rc);
}

/* ----------------------------------- GET /v1/memories/:id/relationships */

static json_t *rel_json(const engram_rel *l) {
  return json_pack("{s:s, s:s, s:s, s:f, s:I}", "source", l->source, "target",
                   l->target, "kind", l->kind, "strength", l->strength,
                   "created_ms", (json_int_t)l->created_ms);
}

static void got_rels(int status, const engram_rel *rels, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    http_error_engram(r, status, NULL);
  } else {
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
      json_array_append_new(list, rel_json(&rels[i]));
    http_reply_json(
        r, 200,
        list ? json_pack("{s:s, s:o}", "id", m->id, "relationships", list)
             : NULL);
  }
  mem_req_end(m);
}

/* The memory first, so that an unknown one is a 404 and not an empty
 * list. */
static void rels_checked(int status, const engram_node *node, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  (void)node;
  if (http_req_gone(r)) {
    mem_req_end(m);
    return;
  }
  if (status != 0) {
    got_memory(status, NULL, data); /* replies 404 or the error; ends m */
    return;
  }
  int rc = engram_relationships(r->eg, m->ns, m->id, got_rels, m);
  if (rc != 0)
    start_failed(r, m, rc);
}

static void memory_relationships(http_req *r) {
  char ns[NS_CAP];
  if (!path_id(r, 0) || !query_ns(r, ns)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m) {
    out_of_memory(r);
    return;
  }
  int rc = engram_get(r->eg, m->ns, m->id, rels_checked, m);
  if (rc != 0)
    start_failed(r, m, rc);
}

/* ----------------------------------------- POST, DELETE /v1/relationships */

static void linked(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    write_error(r, status, ops, n, 0);
  } else if (ops[0].kind == ENGRAM_OP_LINK) {
    http_reply_json(r, 201,
                    json_pack("{s:s, s:s, s:s, s:s, s:f}", "ns", m->ns,
                              "source", ops[0].source, "target", ops[0].target,
                              "kind", ops[0].rel_kind, "strength",
                              ops[0].strength));
  } else {
    http_reply_json(r, 200,
                    json_pack("{s:s, s:s, s:s, s:s, s:b}", "ns", m->ns,
                              "source", ops[0].source, "target", ops[0].target,
                              "kind", ops[0].rel_kind, "deleted", 1));
  }
  mem_req_end(m);
}

/* A relationship kind: 1..64 bytes (its UTF-8 was checked by jansson or
 * by the query decoder and engram). */
static int kind_ok(http_req *r, const char *kind, const char *what) {
  size_t n = strlen(kind);
  if (n >= 1 && n <= 64)
    return 1;
  http_error(r, 400, "invalid", "%s 'kind' must be 1 to 64 bytes", what);
  return 0;
}

static int id_ok(http_req *r, const char *id, const char *name,
                 const char *what) {
  if (engram_id_valid(id))
    return 1;
  http_error(r, 400, "invalid",
             "%s '%s' must be a memory id (a lower-case "
             "UUID like 0190a5e2-7b3c-7def-8123-456789abcdef)",
             what, name);
  return 0;
}

static void relationship_create(http_req *r) {
  static const char *const fields[] = {"ns",   "source",   "target",
                                       "kind", "strength", NULL};
  const char *ns, *source, *target, *kind;
  double strength = 1.0;
  if (!body_ns(r, &ns) || !only_fields(r, r->body, "", fields) ||
      !http_body_string(r, "source", 1, &source) ||
      !id_ok(r, source, "source", "field") ||
      !http_body_string(r, "target", 1, &target) ||
      !id_ok(r, target, "target", "field") ||
      !http_body_string(r, "kind", 1, &kind) || !kind_ok(r, kind, "field") ||
      !http_body_number(r, "strength", 0, 1, 0, &strength)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, NULL);
  if (!m) {
    out_of_memory(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_LINK,
                  .ns = ns,
                  .source = source,
                  .target = target,
                  .rel_kind = kind,
                  .strength = strength};
  start_write(m, &op, 1, linked);
}

static void relationship_delete(http_req *r) {
  char ns[NS_CAP], source[64], target[64], kind[128];
  if (!query_ns(r, ns) ||
      query_text(r, "source", 1, source, sizeof source) < 0 ||
      !id_ok(r, source, "source", "query parameter") ||
      query_text(r, "target", 1, target, sizeof target) < 0 ||
      !id_ok(r, target, "target", "query parameter") ||
      query_text(r, "kind", 1, kind, sizeof kind) < 0 ||
      !kind_ok(r, kind, "query parameter")) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, NULL);
  if (!m) {
    out_of_memory(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_UNLINK,
                  .ns = ns,
                  .source = source,
                  .target = target,
                  .rel_kind = kind};
  start_write(m, &op, 1, linked);
}

/* ---------------------------------------------------------------- table */

/* Order matters where patterns overlap: /v1/memories/batch before
 * /v1/memories/:id. */
const http_route http_routes_memories[] = {
    {"POST", "/v1/memories", memory_create, "memories.create"},
    {"GET", "/v1/memories", memory_list, "memories.list"},
    {"POST", "/v1/memories/batch", memory_batch, "memories.batch"},
    {"GET", "/v1/memories/:id", memory_get, "memories.get"},
    {"PATCH", "/v1/memories/:id", memory_update, "memories.update"},
    {"DELETE", "/v1/memories/:id", memory_delete, "memories.delete"},
    {"GET", "/v1/memories/:id/history", memory_history, "memories.history"},
    {"GET", "/v1/memories/:id/relationships", memory_relationships,
     "memories.relationships"},
    {"GET", "/v1/memories/:id/traverse", memory_traverse, "memories.traverse"},
    {"POST", "/v1/relationships", relationship_create, "relationships.create"},
    {"DELETE", "/v1/relationships", relationship_delete,
     "relationships.delete"},
    {NULL, NULL, NULL, NULL},
};
