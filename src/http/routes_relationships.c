/*
 * routes_relationships.c — the native JSON API for relationships between
 * memories: a memory's relationships, traversal from a memory through
 * them, and creating and deleting one (POST, DELETE /v1/relationships).
 *
 * Like the memory routes (routes_memories.c, whose mem_req and paged
 * streams it shares through memories.h), every route checks all of its
 * input before it touches the store and answers 400 naming the field or
 * parameter that is wrong; the namespace is always explicit and passes
 * http_allow_ns first.
 */
#include <string.h>

#include "http/memories.h"

#define TRAVERSE_DEFAULT_LIMIT 100
#define TRAVERSE_MAX_LIMIT 1000
#define TRAVERSE_DEFAULT_DEPTH 2
#define TRAVERSE_MAX_DEPTH 10

/* -------------------------------------------- GET /v1/memories/:id/traverse */

static void traversed(engram_stream *s, int status, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  (void)s;
  m->stream = NULL;
  int how;
  if (!http_req_gone(r) && (how = mem_page_status(m, status)) >= 0) {
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
  if (!http_path_id(r, 0) || !http_query_ns(r, ns, sizeof ns) ||
      !http_query_int(r, "depth", 0, TRAVERSE_MAX_DEPTH, TRAVERSE_DEFAULT_DEPTH,
                      &depth) ||
      !http_query_unit(r, "min_strength", 0, &min_strength) ||
      !http_query_int(r, "limit", 1, TRAVERSE_MAX_LIMIT, TRAVERSE_DEFAULT_LIMIT,
                      &limit)) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_page_new(r, ns, r->params[0], (size_t)limit);
  if (!m)
    return;
  m->with_depth = 1;
  engram_stream_cbs cbs = {mem_page_item, mem_page_error, traversed, m};
  engram_stream *s = NULL;
  int rc = engram_traverse(r->eg, m->ns, m->id, (uint32_t)depth, min_strength,
                           &cbs, &s);
  mem_page_start(m, rc, s);
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
    mem_got_memory(status, NULL, data); /* replies 404 or the error; ends m */
    return;
  }
  int rc = engram_relationships(r->eg, m->ns, m->id, got_rels, m);
  if (rc != 0)
    mem_req_failed(r, m, rc);
}

static void memory_relationships(http_req *r) {
  mem_req *m = mem_req_for_id(r);
  if (!m)
    return;
  int rc = engram_get(r->eg, m->ns, m->id, rels_checked, m);
  if (rc != 0)
    mem_req_failed(r, m, rc);
}

/* ----------------------------------------- POST, DELETE /v1/relationships */

static void linked(int status, engram_op *ops, size_t n, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    mem_write_error(r, status, ops, n, 0);
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
  if (!mem_body_ns(r, &ns) || !mem_only_fields(r, r->body, "", fields) ||
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
    mem_out_of_memory(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_LINK,
                  .ns = ns,
                  .source = source,
                  .target = target,
                  .rel_kind = kind,
                  .strength = strength};
  mem_start_write(m, &op, 1, linked);
}

static void relationship_delete(http_req *r) {
  char ns[NS_CAP], source[64], target[64], kind[128];
  if (!http_query_ns(r, ns, sizeof ns) ||
      http_query_text(r, "source", 1, source, sizeof source) < 0 ||
      !id_ok(r, source, "source", "query parameter") ||
      http_query_text(r, "target", 1, target, sizeof target) < 0 ||
      !id_ok(r, target, "target", "query parameter") ||
      http_query_text(r, "kind", 1, kind, sizeof kind) < 0 ||
      !kind_ok(r, kind, "query parameter")) {
    http_req_done(r);
    return;
  }
  mem_req *m = mem_req_new(r, ns, NULL);
  if (!m) {
    mem_out_of_memory(r);
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_UNLINK,
                  .ns = ns,
                  .source = source,
                  .target = target,
                  .rel_kind = kind};
  mem_start_write(m, &op, 1, linked);
}

/* ---------------------------------------------------------------- table */

const http_route http_routes_relationships[] = {
    {"GET", "/v1/memories/:id/relationships", memory_relationships,
     "memories.relationships"},
    {"GET", "/v1/memories/:id/traverse", memory_traverse, "memories.traverse"},
    {"POST", "/v1/relationships", relationship_create, "relationships.create"},
    {"DELETE", "/v1/relationships", relationship_delete,
     "relationships.delete"},
    {NULL, NULL, NULL, NULL},
};
