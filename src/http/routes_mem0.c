/*
 * routes_mem0.c — a mem0-compatible API: the routes the MemoryClient of
 * mem0's npm package (mem0ai, version 3) calls, so an application written
 * for hosted mem0 runs against engram by pointing the client's host here.
 * docs/mem0.md describes it for users. This file holds the routes, their
 * async state and the route table; mem0_filters.c parses filters into
 * plans, and mem0_shape.c renders memories in mem0's shape (mem0.h).
 *
 * Entities and namespaces. mem0 scopes a memory by user_id, agent_id,
 * app_id and run_id; engram by namespace. A memory is filed in the
 * namespace of the first id it has in the order user, agent, app, run
 * ("user:alice"), and all of its ids, with the message's role, are kept in
 * its metadata under the reserved key "mem0". A filter names ids; each
 * alternative of it reads the namespace of its first id that has a value
 * and checks the other ids against that metadata as the namespace streams
 * by. The keys file grants mem0 entities through these namespace names.
 *
 * Filters (search, getAll, deleteAll) are brought to a disjunction of
 * conjunctions of id constraints (AND, OR, "in", "*"), a bounded number
 * of alternatives (mem0_filters.c); the alternatives that read one namespace
 * are checked together, so each namespace is read once.
 *
 * By id (get, update, delete, history): mem0 ids are engram ids. The memory
 * is looked up in any namespace and then checked against the caller's key;
 * one in a namespace the key may not use is answered 404 exactly like one
 * that does not exist, so an id tells nothing of other tenants. A request
 * that names an entity itself (add, search, getAll, deleteAll) and may not
 * use its namespace gets 403: it learns nothing it did not say.
 *
 * Async shape. A route checks all of its input, then allocates one m0_op
 * and starts store work with it as the callback data; each callback checks
 * whether the client is gone, goes on or replies, and op_end releases the
 * http_req exactly once. A client that leaves cancels the running stream
 * (on_gone); a write or a get in flight finishes and its callback ends the
 * route. Reads run in chunks of CHUNK items, deletions in pages of
 * DELETE_PAGE ids, each page one atomic write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/mem0.h"

#define MAX_MESSAGES 1000
#define MAX_ROLE 64
#define CHUNK 64        /* items asked of a read stream at a time */
#define DELETE_PAGE 256 /* ids listed, then deleted in one write */
#define DELETE_RETRIES 3
#define PAGE_SIZE_DEFAULT 100
#define PAGE_SIZE_MAX 1000
#define PAGE_MAX 1000000
#define TOP_K_DEFAULT 10
#define TOP_K_MAX 1000

/* ------------------------------------------------------- one request */

enum {
  K_ADD,
  K_SEARCH,
  K_LIST,
  K_DELETE_ALL,
  K_GET,
  K_UPDATE,
  K_DELETE,
  K_HISTORY
};

typedef struct m0_op {
  http_req *r;
  int kind;
  mem0_dnf plan;    /* alternatives sorted by namespace */
  size_t g0, g1;    /* the namespace being read: plan.a[g0..g1) */
  engram_stream *s; /* the running stream, until its done callback */
  size_t requested, received;
  int stopped; /* we cancelled s: it has what we need */
  int oom;
  int timed_out;
  uint64_t deadline; /* search, getAll: loop time when the reads give up */
  json_t *results;
  /* search */
  const char *query; /* in r->body, which outlives the op */
  size_t top_k, group_hits;
  double threshold;
  /* getAll */
  size_t page, page_size, matched;
  /* deleteAll */
  char after[ENGRAM_ID_LEN + 1], page_start[ENGRAM_ID_LEN + 1];
  char (*ids)[ENGRAM_ID_LEN + 1];
  size_t nids;
  uint64_t deleted;
  int retries;
  const char *done_message;
  /* by id */
  char id[ENGRAM_ID_LEN + 1];
  char ns[NS_CAP];
  const char *text;   /* update: in r->body */
  json_t *new_md;     /* update: borrowed from r->body */
  json_t *entity_ids; /* history: the memory's ids, for each entry */
} m0_op;

static void op_gone(http_req *r) {
  m0_op *op = r->op;
  if (op->s)
    engram_stream_cancel(op->s); /* its done callback ends the op */
}

static m0_op *op_new(http_req *r, int kind) {
  m0_op *op = calloc(1, sizeof *op);
  if (!op)
    return NULL;
  op->r = r;
  op->kind = kind;
  r->op = op;
  r->on_gone = op_gone;
  return op;
}

/* Releases the http_req (exactly once) and frees op. */
static void op_end(m0_op *op) {
  http_req *r = op->r;
  r->on_gone = NULL;
  r->op = NULL;
  mem0_dnf_free(&op->plan);
  json_decref(op->results);
  json_decref(op->entity_ids);
  free(op->ids);
  free(op);
  http_req_done(r);
}

static void oom_end(m0_op *op) {
  http_error(op->r, 503, "unavailable", "out of memory");
  op_end(op);
}

/* Replies 503 and releases r when op could not be made. */
static m0_op *op_or_reply(http_req *r, int kind) {
  m0_op *op = op_new(r, kind);
  if (!op) {
    http_error(r, 503, "unavailable", "out of memory");
    http_req_done(r);
  }
  return op;
}

/* ------------------------------------------------------------ /v1/ping */

/* The client reads status, and org_id / project_id / user_email when
 * present; engram has none of them (and user_email would become the
 * client's telemetry id). */
static void mem0_ping(http_req *r) {
  http_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:n, s:n, s:n}", "status", "ok",
                            "message", "engram " ENGRAM_VERSION " is up",
                            "org_id", "project_id", "user_email"));
  http_req_done(r);
}

/* ----------------------------------------------------- /v3/memories/add */

/* One entity id from the top level of the body: 1 (maybe absent), or 0
 * after a reply. "*" is no id. */
static int body_entity(http_req *r, int e, const char **out) {
  json_t *v = r->body ? json_object_get(r->body, mem0_entity_field[e]) : NULL;
  *out = NULL;
  if (!v || json_is_null(v))
    return 1;
  if (!json_is_string(v) ||
      !mem0_entity_ok(json_string_value(v), json_string_length(v)) ||
      strcmp(json_string_value(v), "*") == 0) {
    mem0_bad_entity(r, mem0_entity_field[e]);
    return 0;
  }
  *out = json_string_value(v);
  return 1;
}

static int user_metadata(http_req *r, json_t **out) {
  json_t *md = json_object_get(r->body, "metadata");
  *out = NULL;
  if (!md || json_is_null(md))
    return 1;
  if (!json_is_object(md)) {
    http_error(r, 400, "invalid", "field 'metadata' must be an object");
    return 0;
  }
  if (json_object_get(md, RESERVED)) {
    http_error(r, 400, "invalid",
               "field 'metadata' may not hold the key '" RESERVED
               "': engram keeps a memory's mem0 ids there");
    return 0;
  }
  *out = md;
  return 1;
}

/* Replies for a failed write of the messages, naming the message. */
static void add_error(http_req *r, int status, const engram_op *ops, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ops[i].status != 0 && ops[i].status != ENGRAM_ECANCELED) {
      char msg[256];
      snprintf(msg, sizeof msg, "messages[%zu]: %s", i,
               ops[i].message[0] ? ops[i].message
                                 : engram_strerror(ops[i].status));
      http_error_engram(r, status, msg);
      return;
    }
  http_error_engram(r, status, NULL);
}

static void added(int status, engram_op *ops, size_t n, void *data) {
  m0_op *op = data;
  http_req *r = op->r;
  if (http_req_gone(r)) {
    op_end(op);
    return;
  }
  if (status != 0) {
    add_error(r, status, ops, n);
    op_end(op);
    return;
  }
  json_t *md = json_object_get(r->body, "metadata");
  json_t *out = json_array();
  for (size_t i = 0; out && i < n; i++) {
    engram_node node = {.ns = ops[i].ns,
                        .content = ops[i].content,
                        .content_len = ops[i].content_len,
                        .metadata = ops[i].metadata};
    mem0_view v;
    if (!mem0_view_init(&v, &node)) {
      json_decref(out);
      out = NULL;
      break;
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s%, s:{s:s%}, s:O}", "id", ops[i].result_id,
                  "event", "ADD", "memory", ops[i].content, ops[i].content_len,
                  "data", "memory", ops[i].content, ops[i].content_len,
                  "metadata", json_is_object(md) ? md : v.md);
    if (o) {
      mem0_set_ids(o, &v);
      json_object_set_new(o, "role", mem0_str_or_null(v.role));
    }
    mem0_view_free(&v);
    if (!o || json_array_append_new(out, o) != 0) {
      json_decref(out);
      out = NULL;
    }
  }
  if (!out) {
    oom_end(op);
    return;
  }
  http_reply_json(r, 200, out);
  op_end(op);
}

/* messages[i] as content and role; 0 after a reply. */
static int parse_message(http_req *r, json_t *m, size_t i, const char **content,
                         size_t *len, const char **role) {
  if (!json_is_object(m)) {
    http_error(r, 400, "invalid",
               "'messages[%zu]' must be an object with 'role' and 'content'",
               i);
    return 0;
  }
  json_t *c = json_object_get(m, "content"), *ro = json_object_get(m, "role");
  if (!json_is_string(c) || json_string_length(c) == 0) {
    http_error(r, 400, "invalid",
               "'messages[%zu].content' must be a non-empty string (engram "
               "stores text; image messages are not supported)",
               i);
    return 0;
  }
  if (ro && !json_is_null(ro) &&
      (!json_is_string(ro) ||
       !mem0_entity_ok(json_string_value(ro), json_string_length(ro)) ||
       json_string_length(ro) > MAX_ROLE)) {
    http_error(r, 400, "invalid",
               "'messages[%zu].role' must be a short string such as \"user\" "
               "or \"assistant\"",
               i);
    return 0;
  }
  *content = json_string_value(c);
  *len = json_string_length(c);
  *role = ro ? json_string_value(ro) : NULL;
  return 1;
}

static void mem0_add(http_req *r) {
  const char *ids[E_COUNT];
  int primary = -1;
  for (int e = 0; e < E_COUNT; e++) {
    if (!body_entity(r, e, &ids[e])) {
      http_req_done(r);
      return;
    }
    if (ids[e] && primary < 0)
      primary = e;
  }
  json_t *md, *messages = r->body ? json_object_get(r->body, "messages") : NULL;
  json_t *infer = r->body ? json_object_get(r->body, "infer") : NULL;
  if (primary < 0) {
    http_error(r, 400, "invalid",
               "give 'user_id', 'agent_id', 'app_id' or 'run_id': engram "
               "files the memories in that entity's namespace");
    http_req_done(r);
    return;
  }
  if (!user_metadata(r, &md)) {
    http_req_done(r);
    return;
  }
  if (infer && !json_is_null(infer) && !json_is_boolean(infer)) {
    http_error(r, 400, "invalid", "field 'infer' must be true or false");
    http_req_done(r);
    return;
  }
  size_t n = json_is_array(messages) ? json_array_size(messages) : 1;
  if (!(json_is_array(messages) && n > 0 && n <= MAX_MESSAGES) &&
      !(json_is_string(messages) && json_string_length(messages) > 0)) {
    http_error(r, 400, "invalid",
               "field 'messages' must be a non-empty string or an array of 1 "
               "to %d messages ({\"role\": ..., \"content\": ...})",
               MAX_MESSAGES);
    http_req_done(r);
    return;
  }
  char ns[NS_CAP];
  snprintf(ns, sizeof ns, "%s:%s", mem0_entity_kind[primary], ids[primary]);
  if (!http_allow_ns(r, ns)) {
    http_req_done(r);
    return;
  }
  engram_op *ops = calloc(n, sizeof *ops);
  char **mds = calloc(n, sizeof *mds);
  int ok = ops && mds;
  if (!ok)
    http_error(r, 503, "unavailable", "out of memory");
  for (size_t i = 0; ok && i < n; i++) {
    const char *content, *role = "user";
    size_t len;
    if (json_is_array(messages)) {
      ok = parse_message(r, json_array_get(messages, i), i, &content, &len,
                         &role);
    } else {
      content = json_string_value(messages);
      len = json_string_length(messages);
    }
    if (!ok)
      break;
    if (!(mds[i] = mem0_stored_metadata(md, ids, role))) {
      http_error(r, 503, "unavailable", "out of memory");
      ok = 0;
      break;
    }
    ops[i] = (engram_op){.kind = ENGRAM_OP_ADD,
                         .ns = ns,
                         .type = ENGRAM_EPISODIC,
                         .content = content,
                         .content_len = len,
                         .metadata = mds[i]};
  }
  m0_op *op = ok ? op_new(r, K_ADD) : NULL;
  if (ok && !op)
    http_error(r, 503, "unavailable", "out of memory");
  if (op) {
    int rc = engram_write(r->eg, ops, n, added, op);
    if (rc != 0) {
      add_error(r, rc, ops, n);
      op_end(op);
    }
  } else {
    http_req_done(r);
  }
  for (size_t i = 0; mds && i < n; i++)
    free(mds[i]);
  free(mds);
  free(ops);
}

/* ------------------------------------------- reads over a filter's plan */

static void read_item(engram_stream *s, const engram_node *n, void *data);
static void read_error(engram_stream *s, int code, const char *message,
                       void *data);
static void read_done(engram_stream *s, int status, void *data);
static void finish(m0_op *op);

static int alt_trivial(const mem0_alt *a) {
  for (int e = 0; e < E_COUNT; e++)
    if (e != a->primary && a->how[e] != C_NONE)
      return 0;
  return 1;
}

/* 1 when n matches an alternative of the namespace being read, 0 when
 * not, -1 out of memory. */
static int node_matches(m0_op *op, const engram_node *n) {
  for (size_t i = op->g0; i < op->g1; i++)
    if (alt_trivial(&op->plan.a[i]))
      return 1;
  mem0_view v;
  if (!mem0_view_init(&v, n))
    return -1;
  int hit = 0;
  for (size_t i = op->g0; i < op->g1 && !hit; i++) {
    const mem0_alt *a = &op->plan.a[i];
    hit = 1;
    for (int e = 0; e < E_COUNT && hit; e++)
      if (a->how[e] == C_EQ)
        hit = v.id[e] && strcmp(v.id[e], a->val[e]) == 0;
      else if (a->how[e] == C_ANY)
        hit = v.id[e] != NULL;
  }
  mem0_view_free(&v);
  return hit;
}

/* Starts the stream over the current namespace; 0 or an engram error. */
static int start_read(m0_op *op) {
  engram_stream_cbs cbs = {read_item, read_error, read_done, op};
  engram_query q = {.ns = op->plan.a[op->g0].ns};
  int rc;
  op->requested = op->received = 0;
  op->stopped = 0;
  if (op->kind == K_SEARCH) {
    q.text = op->query;
    q.min_relevance = op->threshold;
    rc = engram_search(op->r->eg, &q, &cbs, &op->s);
  } else {
    q.after = op->after[0] ? op->after : NULL;
    rc = engram_list(op->r->eg, &q, &cbs, &op->s);
  }
  if (rc != 0) {
    op->s = NULL;
    return rc;
  }
  /* Search and getAll answer within one request timeout, however many
   * namespaces they read; deleteAll gives each page its own. */
  uint64_t timeout = op->r->srv->opts.request_timeout_ms;
  if (op->kind != K_DELETE_ALL) {
    uint64_t now = uv_now(engram_loop(op->r->eg));
    timeout = op->deadline > now ? op->deadline - now : 1;
  }
  engram_stream_set_deadline(op->s, timeout);
  if (op->kind == K_DELETE_ALL) {
    memcpy(op->page_start, op->after, sizeof op->after);
    op->nids = 0;
  }
  op->requested = op->kind == K_DELETE_ALL ? DELETE_PAGE : CHUNK;
  engram_stream_request(op->s, op->requested);
  return 0;
}

/* Moves to the next namespace of the plan, or finishes. */
static void next_group(m0_op *op) {
  op->g0 = op->g1;
  if (op->g0 >= op->plan.n) {
    finish(op);
    return;
  }
  op->g1 = op->g0 + 1;
  while (op->g1 < op->plan.n &&
         strcmp(op->plan.a[op->g1].ns, op->plan.a[op->g0].ns) == 0)
    op->g1++;
  op->group_hits = 0;
  op->after[0] = '\0';
  int rc = start_read(op);
  if (rc != 0) {
    http_error_engram(op->r, rc, NULL);
    op_end(op);
  }
}

static void stop(m0_op *op, engram_stream *s) {
  op->stopped = 1;
  engram_stream_cancel(s);
}

static void read_item(engram_stream *s, const engram_node *n, void *data) {
  m0_op *op = data;
  op->received++;
  if (op->stopped)
    return;
  int hit = node_matches(op, n);
  if (hit < 0) {
    op->oom = 1;
    stop(op, s);
    return;
  }
  json_t *o = NULL;
  switch (op->kind) {
  case K_SEARCH:
    if (hit && !(o = mem0_memory_json(n, 1)))
      break;
    if (hit && ++op->group_hits >= op->top_k)
      op->stopped = 1; /* after the append below */
    break;
  case K_LIST:
    if (hit) {
      size_t at = op->matched++, first = (op->page - 1) * op->page_size;
      if (at >= first && at < first + op->page_size &&
          !(o = mem0_memory_json(n, 0)))
        hit = -1;
    }
    break;
  case K_DELETE_ALL:
    memcpy(op->after, n->id, sizeof op->after);
    if (hit)
      memcpy(op->ids[op->nids++], n->id, sizeof op->ids[0]);
    if (op->received == DELETE_PAGE)
      op->stopped = 1;
    break;
  }
  if ((hit && op->kind == K_SEARCH && !o) || hit < 0 ||
      (o && json_array_append_new(op->results, o) != 0)) {
    op->oom = 1;
    op->stopped = 1;
  }
  if (op->stopped) {
    engram_stream_cancel(s);
    return;
  }
  if (op->kind != K_DELETE_ALL && op->received == op->requested) {
    op->requested += CHUNK;
    engram_stream_request(s, CHUNK);
  }
}

static void read_error(engram_stream *s, int code, const char *message,
                       void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged by engram where it happened; the item is skipped */
  (void)data;
}

static void delete_page(m0_op *op);

static void read_done(engram_stream *s, int status, void *data) {
  m0_op *op = data;
  (void)s;
  op->s = NULL;
  if (op->stopped && status == ENGRAM_ECANCELED)
    status = 0;
  if (http_req_gone(op->r)) {
    op_end(op);
  } else if (op->oom) {
    oom_end(op);
  } else if (status == ENGRAM_ETIMEDOUT && op->kind == K_SEARCH) {
    op->timed_out = 1; /* a deadline returns what was found */
    finish(op);
  } else if (status != 0) {
    http_error_engram(op->r, status, NULL);
    op_end(op);
  } else if (op->kind == K_DELETE_ALL) {
    delete_page(op);
  } else {
    next_group(op);
  }
}

/* Starts the reads of a plan that route built in op->plan. */
static void start_plan(m0_op *op) {
  if (op->kind != K_DELETE_ALL && !(op->results = json_array())) {
    oom_end(op);
    return;
  }
  if (op->kind == K_DELETE_ALL &&
      !(op->ids = calloc(DELETE_PAGE, sizeof *op->ids))) {
    oom_end(op);
    return;
  }
  op->deadline =
      uv_now(engram_loop(op->r->eg)) + op->r->srv->opts.request_timeout_ms;
  op->g1 = 0;
  next_group(op);
}

static int by_score(const void *a, const void *b) {
  double x = json_real_value(json_object_get(*(json_t *const *)a, "score"));
  double y = json_real_value(json_object_get(*(json_t *const *)b, "score"));
  return (x < y) - (x > y);
}

static void finish_search(m0_op *op) {
  size_t n = json_array_size(op->results);
  json_t **items = malloc((n ? n : 1) * sizeof *items);
  json_t *out = json_array();
  if (!items || !out) {
    free(items);
    json_decref(out);
    oom_end(op);
    return;
  }
  for (size_t i = 0; i < n; i++)
    items[i] = json_array_get(op->results, i);
  qsort(items, n, sizeof *items, by_score); /* namespaces merged by score */
  for (size_t i = 0; i < n && i < op->top_k; i++)
    json_array_append(out, items[i]);
  free(items);
  json_t *reply = json_pack("{s:o}", "results", out);
  if (reply && op->timed_out)
    json_object_set_new(reply, "timed_out", json_true());
  http_reply_json(op->r, 200, reply);
  op_end(op);
}

static void finish(m0_op *op) {
  http_req *r = op->r;
  switch (op->kind) {
  case K_SEARCH:
    finish_search(op);
    return;
  case K_LIST: {
    char next[96], prev[96];
    snprintf(next, sizeof next, "/v3/memories/?page=%zu&page_size=%zu",
             op->page + 1, op->page_size);
    snprintf(prev, sizeof prev, "/v3/memories/?page=%zu&page_size=%zu",
             op->page - 1, op->page_size);
    int more = op->page * op->page_size < op->matched;
    http_reply_json(
        r, 200,
        json_pack("{s:I, s:o, s:o, s:O}", "count", (json_int_t)op->matched,
                  "next", more ? json_string(next) : json_null(), "previous",
                  op->page > 1 ? json_string(prev) : json_null(), "results",
                  op->results));
    break;
  }
  case K_DELETE_ALL:
    http_reply_json(r, 200,
                    json_pack("{s:s, s:I}", "message", op->done_message,
                              "deleted", (json_int_t)op->deleted));
    break;
  }
  op_end(op);
}

/* ------------------------------------------------ deleteAll, page by page */

static void after_page(m0_op *op) {
  if (op->received < DELETE_PAGE) {
    next_group(op); /* that namespace is done */
    return;
  }
  int rc = start_read(op); /* from op->after */
  if (rc != 0) {
    http_error_engram(op->r, rc, NULL);
    op_end(op);
  }
}

static void page_deleted(int status, engram_op *ops, size_t n, void *data) {
  m0_op *op = data;
  (void)ops;
  if (http_req_gone(op->r)) {
    op_end(op);
    return;
  }
  if (status == ENGRAM_ENOTFOUND && op->retries < DELETE_RETRIES) {
    /* Someone deleted one of them meanwhile: read the page again. */
    op->retries++;
    memcpy(op->after, op->page_start, sizeof op->after);
    op->received = DELETE_PAGE;
    after_page(op);
    return;
  }
  if (status != 0) {
    http_error_engram(op->r, status, NULL);
    op_end(op);
    return;
  }
  op->deleted += n;
  after_page(op);
}

static void delete_page(m0_op *op) {
  if (op->nids == 0) {
    after_page(op);
    return;
  }
  engram_op *ops = calloc(op->nids, sizeof *ops);
  if (!ops) {
    oom_end(op);
    return;
  }
  const char *ns = op->plan.a[op->g0].ns;
  for (size_t i = 0; i < op->nids; i++)
    ops[i] = (engram_op){.kind = ENGRAM_OP_DELETE, .ns = ns, .id = op->ids[i]};
  int rc = engram_write(op->r->eg, ops, op->nids, page_deleted, op);
  free(ops);
  if (rc != 0) {
    http_error_engram(op->r, rc, NULL);
    op_end(op);
  }
}

/* --------------------------------------------- search, getAll, deleteAll */

/* Fields mem0 offers that engram cannot honour: refused, not ignored, so
 * an answer never pretends to be filtered when it is not. */
static int refuse_fields(http_req *r, const char *const *fields) {
  for (; *fields; fields++) {
    json_t *v = json_object_get(r->body, *fields);
    if (v && !json_is_null(v) &&
        !(json_is_object(v) && json_object_size(v) == 0) &&
        !(json_is_array(v) && json_array_size(v) == 0)) {
      http_error(r, 400, "invalid",
                 "field '%s' is not supported by engram's mem0 API (filter "
                 "on user_id, agent_id, app_id and run_id)",
                 *fields);
      return 0;
    }
  }
  return 1;
}

/* The body's 'filters' (and any top-level ids) as op->plan; 0 after a
 * reply. */
static int body_plan(http_req *r, m0_op *op) {
  json_t *f = r->body ? json_object_get(r->body, "filters") : NULL;
  int any = f && !json_is_null(f);
  mem0_dnf *d = &op->plan;
  if (any) {
    if (!mem0_parse_filters(r, f, "filters", d, 0))
      return 0;
  } else if (!mem0_dnf_true(d)) {
    http_error(r, 503, "unavailable", "out of memory");
    return 0;
  }
  for (int e = 0; e < E_COUNT; e++) {
    const char *v;
    if (!body_entity(r, e, &v))
      return 0;
    if (v && !mem0_and_entity(r, d, e, C_EQ, v))
      return 0;
    any = any || v;
  }
  if (!any) {
    http_error(r, 400, "invalid",
               "field 'filters' is required: name a user_id, agent_id, "
               "app_id or run_id, e.g. {\"user_id\": \"alice\"}");
    return 0;
  }
  return mem0_plan_build(r, d, "filters");
}

static void mem0_search(http_req *r) {
  static const char *const refused[] = {"metadata", "categories", NULL};
  const char *query;
  long long top_k = TOP_K_DEFAULT;
  double threshold = 0;
  if (!http_body_string(r, "query", 1, &query) ||
      !http_body_int(r, "top_k", 1, TOP_K_MAX, 0, &top_k) ||
      !http_body_number(r, "threshold", 0, 1, 0, &threshold) ||
      !refuse_fields(r, refused)) {
    http_req_done(r);
    return;
  }
  m0_op *op = op_or_reply(r, K_SEARCH);
  if (!op)
    return;
  op->query = query;
  op->top_k = (size_t)top_k;
  op->threshold = threshold;
  if (!body_plan(r, op)) {
    op_end(op);
    return;
  }
  start_plan(op);
}

/* ?name=N, a decimal integer in [min, max]; def when absent. */
static int query_count(http_req *r, const char *name, size_t min, size_t max,
                       size_t def, size_t *out) {
  char v[24];
  int rc = http_query(r, name, v, sizeof v);
  *out = def;
  if (rc == 0)
    return 1;
  size_t x = 0, n = rc > 0 ? strlen(v) : 0;
  int ok = n > 0 && n <= 9;
  for (size_t i = 0; ok && i < n; i++) {
    ok = v[i] >= '0' && v[i] <= '9';
    x = x * 10 + (size_t)(v[i] - '0');
  }
  if (!ok || x < min || x > max) {
    http_error(r, 400, "invalid",
               "query parameter '%s' must be an integer from %zu to %zu", name,
               min, max);
    return 0;
  }
  *out = x;
  return 1;
}

static void mem0_list(http_req *r) {
  static const char *const refused[] = {"start_date", "end_date", "categories",
                                        "metadata", NULL};
  size_t page, page_size;
  if (!query_count(r, "page", 1, PAGE_MAX, 1, &page) ||
      !query_count(r, "page_size", 1, PAGE_SIZE_MAX, PAGE_SIZE_DEFAULT,
                   &page_size) ||
      !refuse_fields(r, refused)) {
    http_req_done(r);
    return;
  }
  m0_op *op = op_or_reply(r, K_LIST);
  if (!op)
    return;
  op->page = page;
  op->page_size = page_size;
  if (!body_plan(r, op)) {
    op_end(op);
    return;
  }
  start_plan(op);
}

/* DELETE /v1/memories/?user_id=...: the ids are query parameters. */
static void mem0_delete_all(http_req *r) {
  m0_op *op = op_or_reply(r, K_DELETE_ALL);
  if (!op)
    return;
  op->done_message = "Memories deleted successfully!";
  if (!mem0_dnf_true(&op->plan)) {
    oom_end(op);
    return;
  }
  int any = 0;
  for (int e = 0; e < E_COUNT; e++) {
    char v[ENTITY_MAX + 2];
    int rc = http_query(r, mem0_entity_field[e], v, sizeof v);
    if (rc == 0)
      continue;
    if (rc < 0 || !mem0_entity_ok(v, strlen(v))) {
      mem0_bad_entity(r, mem0_entity_field[e]);
      op_end(op);
      return;
    }
    if (!mem0_and_entity(r, &op->plan, e, strcmp(v, "*") ? C_EQ : C_ANY, v)) {
      op_end(op);
      return;
    }
    any = 1;
  }
  if (!any) {
    http_error(r, 400, "invalid",
               "give the query parameter 'user_id', 'agent_id', 'app_id' or "
               "'run_id': deleteAll deletes one entity's memories");
    op_end(op);
    return;
  }
  if (!mem0_plan_build(r, &op->plan, "the query parameters")) {
    op_end(op);
    return;
  }
  start_plan(op);
}

/* DELETE /v2/entities/:type/:name/: every memory of one entity. */
static void mem0_delete_entity(http_req *r) {
  int e = -1;
  for (int i = 0; i < E_COUNT && e < 0; i++)
    if (strcmp(r->params[0], mem0_entity_kind[i]) == 0)
      e = i;
  if (e < 0) {
    http_error(r, 400, "invalid",
               "the entity type in the path must be user, agent, app or run");
    http_req_done(r);
    return;
  }
  if (!mem0_entity_ok(r->params[1], strlen(r->params[1])) ||
      strcmp(r->params[1], "*") == 0) {
    mem0_bad_entity(r, "the entity name in the path");
    http_req_done(r);
    return;
  }
  m0_op *op = op_or_reply(r, K_DELETE_ALL);
  if (!op)
    return;
  op->done_message = "Entity deleted successfully.";
  if (!mem0_dnf_true(&op->plan)) {
    oom_end(op);
    return;
  }
  if (!mem0_and_entity(r, &op->plan, e, C_EQ, r->params[1]) ||
      !mem0_plan_build(r, &op->plan, "the path")) {
    op_end(op);
    return;
  }
  start_plan(op);
}

/* -------------------------------------------------------------- by id */

static void not_found(m0_op *op) {
  http_error(op->r, 404, "not_found", "no memory with id %s", op->id);
  op_end(op);
}

/* A write or read by id failed: ENOTFOUND in the same words as a missing
 * memory. */
static void by_id_error(m0_op *op, int status, const char *message) {
  if (status == ENGRAM_ENOTFOUND) {
    not_found(op);
    return;
  }
  http_error_engram(op->r, status, message);
  op_end(op);
}

static void refetched(int status, const engram_node *node, void *data) {
  m0_op *op = data;
  if (http_req_gone(op->r)) {
    op_end(op);
  } else if (status != 0) {
    by_id_error(op, status, NULL);
  } else {
    json_t *o = mem0_memory_json(node, 0);
    if (!o) {
      oom_end(op);
      return;
    }
    http_reply_json(op->r, 200, o);
    op_end(op);
  }
}

static void written(int status, engram_op *ops, size_t n, void *data) {
  m0_op *op = data;
  (void)n;
  if (http_req_gone(op->r)) {
    op_end(op);
    return;
  }
  if (status != 0) {
    by_id_error(op, status, ops[0].message[0] ? ops[0].message : NULL);
    return;
  }
  if (op->kind == K_DELETE) {
    http_reply_json(
        op->r, 200,
        json_pack("{s:s}", "message", "Memory deleted successfully!"));
    op_end(op);
    return;
  }
  int rc = engram_get(op->r->eg, op->ns, op->id, refetched, op);
  if (rc != 0)
    by_id_error(op, rc, NULL);
}

static void history_got(int status, const engram_history_entry *entries,
                        size_t n, void *data) {
  m0_op *op = data;
  if (http_req_gone(op->r)) {
    op_end(op);
    return;
  }
  if (status != 0) {
    by_id_error(op, status, NULL);
    return;
  }
  static const char *const event[] = {"ADD", "UPDATE", "DELETE"};
  json_t *out = json_array();
  for (size_t i = 0; out && i < n; i++) {
    const engram_history_entry *h = &entries[i];
    char hid[ENGRAM_ID_LEN + 24];
    snprintf(hid, sizeof hid, "%s:%zu", op->id, i + 1);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:[], s:[]}",
                          "id", hid, "memory_id", op->id, "old_memory",
                          mem0_str_or_null(h->old_content), "new_memory",
                          mem0_str_or_null(h->new_content), "event",
                          (unsigned)h->event < 3 ? event[h->event] : "UPDATE",
                          "created_at", mem0_iso_time(h->at_ms), "updated_at",
                          mem0_iso_time(h->at_ms), "categories", "input");
    if (o)
      json_object_update(o, op->entity_ids);
    if (!o || json_array_append_new(out, o) != 0) {
      json_decref(out);
      out = NULL;
    }
  }
  if (!out) {
    oom_end(op);
    return;
  }
  http_reply_json(op->r, 200, out);
  op_end(op);
}

/* The update of a found memory: the text, and the caller's metadata with
 * the memory's mem0 ids kept. */
static void update_found(m0_op *op, const engram_node *node) {
  engram_op w = {.kind = ENGRAM_OP_UPDATE, .ns = op->ns, .id = op->id};
  char *md = NULL;
  if (op->text) {
    w.content = op->text;
    w.set |= ENGRAM_SET_CONTENT;
  }
  if (op->new_md) {
    mem0_view v;
    json_t *copy = mem0_view_init(&v, node) ? json_deep_copy(op->new_md) : NULL;
    if (copy && v.ids)
      json_object_set(copy, RESERVED, v.ids);
    md = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
    json_decref(copy);
    mem0_view_free(&v);
    if (!md) {
      oom_end(op);
      return;
    }
    w.metadata = md;
    w.set |= ENGRAM_SET_METADATA;
  }
  int rc = engram_write(op->r->eg, &w, 1, written, op);
  free(md);
  if (rc != 0)
    by_id_error(op, rc, w.message[0] ? w.message : NULL);
}

static void found(int status, const engram_node *node, void *data) {
  m0_op *op = data;
  http_req *r = op->r;
  if (http_req_gone(r)) {
    op_end(op);
    return;
  }
  if (status == 0 && r->key && !http_key_allows(r->key, node->ns))
    status = ENGRAM_ENOTFOUND; /* another tenant's: it does not exist */
  if (status != 0) {
    by_id_error(op, status, NULL);
    return;
  }
  snprintf(op->ns, sizeof op->ns, "%s", node->ns);
  int rc = 0;
  switch (op->kind) {
  case K_GET:
    refetched(0, node, op);
    return;
  case K_UPDATE:
    update_found(op, node);
    return;
  case K_DELETE: {
    engram_op w = {.kind = ENGRAM_OP_DELETE, .ns = op->ns, .id = op->id};
    rc = engram_write(r->eg, &w, 1, written, op);
    break;
  }
  case K_HISTORY: {
    mem0_view v;
    if (!mem0_view_init(&v, node) || !(op->entity_ids = json_object())) {
      mem0_view_free(&v);
      oom_end(op);
      return;
    }
    mem0_set_ids(op->entity_ids, &v);
    mem0_view_free(&v);
    rc = engram_history(r->eg, op->ns, op->id, history_got, op);
    break;
  }
  }
  if (rc != 0)
    by_id_error(op, rc, NULL);
}

/* Starts a route on the memory named in the path; 0 after a reply. */
static void by_id(http_req *r, int kind) {
  const char *id = r->params[0];
  if (!engram_id_valid(id)) {
    http_error(r, 400, "invalid",
               "'%.64s' in the path is not a memory id (expected a lower-case "
               "UUID like 0190a5e2-7b3c-7def-8123-456789abcdef)",
               id);
    http_req_done(r);
    return;
  }
  const char *text = NULL;
  json_t *md = NULL;
  if (kind == K_UPDATE) {
    if (!http_body_string(r, "text", 0, &text) || !user_metadata(r, &md)) {
      http_req_done(r);
      return;
    }
    if (text && !*text) {
      http_error(r, 400, "invalid", "field 'text' must not be empty");
      http_req_done(r);
      return;
    }
    if (!text && !md) {
      http_error(r, 400, "invalid",
                 "give 'text' or 'metadata' to change (engram keeps no "
                 "timestamp or expiration_date of its own)");
      http_req_done(r);
      return;
    }
  }
  m0_op *op = op_or_reply(r, kind);
  if (!op)
    return;
  memcpy(op->id, id, sizeof op->id);
  op->text = text;
  op->new_md = md;
  /* Any namespace: the key is checked against the one the memory is in. */
  int rc = engram_get(r->eg, NULL, id, found, op);
  if (rc != 0)
    by_id_error(op, rc, NULL);
}

static void mem0_get(http_req *r) {
  by_id(r, K_GET);
}
static void mem0_update(http_req *r) {
  by_id(r, K_UPDATE);
}
static void mem0_delete(http_req *r) {
  by_id(r, K_DELETE);
}
static void mem0_history(http_req *r) {
  by_id(r, K_HISTORY);
}

/* Patterns end in '/' as the client sends them: they take precedence over
 * the native routes of the same path without it (router.c). */
const http_route http_routes_mem0[] = {
    {"GET", "/v1/ping/", mem0_ping, "mem0.ping"},
    {"POST", "/v3/memories/add/", mem0_add, "mem0.add"},
    {"POST", "/v3/memories/search/", mem0_search, "mem0.search"},
    {"POST", "/v3/memories/", mem0_list, "mem0.get_all"},
    {"DELETE", "/v1/memories/", mem0_delete_all, "mem0.delete_all"},
    {"GET", "/v1/memories/:id/", mem0_get, "mem0.get"},
    {"PUT", "/v1/memories/:id/", mem0_update, "mem0.update"},
    {"DELETE", "/v1/memories/:id/", mem0_delete, "mem0.delete"},
    {"GET", "/v1/memories/:id/history/", mem0_history, "mem0.history"},
    {"DELETE", "/v2/entities/:type/:name/", mem0_delete_entity,
     "mem0.delete_entity"},
    {NULL, NULL, NULL, NULL},
};
