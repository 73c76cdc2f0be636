/*
 * routes_memories.c — the native JSON API for memories: create (one or a
 * batch), get, update, delete, list with a cursor, and the history of a
 * memory. Relationships and traversal are in routes_relationships.c.
 *
 * Every route checks all of its input before it touches the store, and
 * answers 400 naming the field or parameter that is wrong; the namespace
 * is always explicit ("ns" in a body, ?ns= in a query) and passes
 * http_allow_ns first. Writes go through one engram_write batch, which is
 * atomic: a rejected request leaves nothing behind.
 *
 * Async shape. A route that starts store work allocates one mem_req
 * (mem_req.c), hands it to the store as callback data, and returns; the
 * callback replies (unless the client is gone) and ends the mem_req, which
 * releases the http_req exactly once. The list stream asks for one item
 * more than the page holds, so it knows whether a next page exists, then
 * cancels; a client that disconnects cancels it through on_gone, and the
 * stream's done callback still runs and does the release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/memories.h"

#define BATCH_MAX 1000
#define LIST_DEFAULT 50
#define LIST_MAX 1000

/* ----------------------------------------------------------- JSON bodies */

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

/* ------------------------------------------------------- POST /v1/memories */

static void created(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    mem_write_error(r, status, ops, n, 0);
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
  if (!mem_body_ns(r, &ns) || !mem_only_fields(r, r->body, "", create_fields)) {
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
    mem_out_of_memory(r);
    return;
  }
  mem_start_write(m, &op, 1, created);
  free(metadata);
}

/* ------------------------------------------------- POST /v1/memories/batch */

static void batch_created(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    mem_write_error(r, status, ops, n, 1);
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
  if (!mem_body_ns(r, &ns) || !mem_only_fields(r, r->body, "", fields)) {
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
    mem_out_of_memory(r);
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
      ok = mem_only_fields(r, item, where, add_fields) &&
           parse_memory(r, item, where, &ops[i], &metadata[i]);
    }
  }
  if (ok)
    mem_start_write(m, ops, n, batch_created);
  else
    mem_req_end(m);
  for (size_t i = 0; i < n; i++)
    free(metadata[i]);
  free(metadata);
  free(ops);
}

static void start_get(mem_req *m) {
  int rc = engram_get(m->r->eg, m->ns, m->id, mem_got_memory, m);
  if (rc != 0)
    mem_req_failed(m->r, m, rc);
}

static void memory_get(http_req *r) {
  mem_req *m = mem_req_for_id(r);
  if (!m)
    return;
  start_get(m);
}

/* ---------------------------------------------- PATCH /v1/memories/:id */

static void updated(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    mem_req_end(m);
  } else if (status != 0) {
    mem_write_error(r, status, ops, n, 0);
    mem_req_end(m);
  } else {
    start_get(m); /* the memory as it is now */
  }
}

static void memory_update(http_req *r) {
  const char *ns;
  if (!http_path_id(r, 0) || !mem_body_ns(r, &ns) ||
      !mem_only_fields(r, r->body, "", patch_fields)) {
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
    mem_out_of_memory(r);
    return;
  }
  mem_start_write(m, &op, 1, updated);
  free(metadata);
}

/* --------------------------------------------- DELETE /v1/memories/:id */

static void deleted(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    mem_write_error(r, status, ops, n, 0);
  } else {
    http_reply_json(r, 200, json_pack("{s:s, s:b}", "id", m->id, "deleted", 1));
  }
  mem_req_end(m);
}

static void memory_delete(http_req *r) {
  mem_req *m = mem_req_for_id(r);
  if (!m)
    return;
  engram_op op = {.kind = ENGRAM_OP_DELETE, .ns = m->ns, .id = m->id};
  mem_start_write(m, &op, 1, deleted);
}

/* ---------------------------------------------------- GET /v1/memories */

static void listed(engram_stream *s, int status, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  (void)s;
  m->stream = NULL;
  int how;
  if (!http_req_gone(r) && (how = mem_page_status(m, status)) >= 0) {
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
  if (!http_query_ns(r, ns, sizeof ns) ||
      !http_query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit) ||
      (has_after = http_query_text(r, "after", 0, after, sizeof after)) < 0 ||
      !http_query_types(r, &types)) {
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
  mem_req *m = mem_page_new(r, ns, NULL, (size_t)limit);
  if (!m)
    return;
  engram_query q = {
      .ns = m->ns, .types = types, .after = has_after ? after : NULL};
  engram_stream_cbs cbs = {mem_page_item, mem_page_error, listed, m};
  engram_stream *s = NULL;
  int rc = engram_list(r->eg, &q, &cbs, &s);
  mem_page_start(m, rc, s);
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
  mem_req *m = mem_req_for_id(r);
  if (!m)
    return;
  int rc = engram_history(r->eg, m->ns, m->id, got_history, m);
  if (rc != 0)
    mem_req_failed(r, m, rc);
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
    {NULL, NULL, NULL, NULL},
};
