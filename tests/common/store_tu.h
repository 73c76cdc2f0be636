/*
 * store_tu.h — helpers for the storage tests (test_store.c,
 * test_hostile.c): opening that may fail, writes that return every op's
 * result, point reads, and a stream collector that requests in steps and
 * checks the demand contract on every item. Header-only (static inline) so
 * a test includes just what it uses. Tests run the loop; the library never
 * waits.
 */
#ifndef ENGRAM_STORE_TU_H
#define ENGRAM_STORE_TU_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engram.h"
#include "tu.h"

/* ------------------------------------------------------------------ open */

typedef struct stu_open {
  int done;
  int status;
  char message[512];
} stu_open;

static inline void stu_on_open(engram *eg, int status, const char *message,
                               void *data) {
  stu_open *o = data;
  (void)eg;
  o->done = 1;
  o->status = status;
  snprintf(o->message, sizeof o->message, "%s", message ? message : "");
}

/* Opens path; returns the status and the message, and the handle in *out
 * (closed and freed already when the open failed). */
static inline int stu_try_open(const char *path, const engram_options *opts,
                               engram **out, char *message, size_t len) {
  engram_options o;
  if (opts)
    o = *opts;
  else
    engram_options_init(&o);
  o.db = path;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &o), 0);
  stu_open st = {0};
  assert_int_equal(engram_open(eg, stu_on_open, &st), 0);
  tu_run_until(eg, &st.done);
  assert_true(st.done);
  if (message)
    snprintf(message, len, "%s", st.message);
  if (st.status != 0) {
    tu_close(eg);
    eg = NULL;
  }
  *out = eg;
  return st.status;
}

/* ----------------------------------------------------------------- writes */

typedef struct stu_write {
  int done;
  int status;
  engram_op ops[16];
  size_t n;
} stu_write;

static inline void stu_on_write(int status, engram_op *ops, size_t n,
                                void *data) {
  stu_write *w = data;
  w->done = 1;
  w->status = status;
  w->n = n < 16 ? n : 16;
  memcpy(w->ops, ops, w->n * sizeof *ops);
}

/* Writes ops as one batch and waits; results land in ops too. */
static inline int stu_write_ops(engram *eg, engram_op *ops, size_t n) {
  stu_write w = {0};
  int rc = engram_write(eg, ops, n, stu_on_write, &w);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &w.done);
  assert_true(w.done);
  for (size_t i = 0; i < w.n; i++) {
    ops[i].status = w.ops[i].status;
    ops[i].deduplicated = w.ops[i].deduplicated;
    memcpy(ops[i].result_id, w.ops[i].result_id, sizeof ops[i].result_id);
    memcpy(ops[i].message, w.ops[i].message, sizeof ops[i].message);
  }
  return w.status;
}

static inline int stu_update_content(engram *eg, const char *ns, const char *id,
                                     const char *content) {
  engram_op op = {.kind = ENGRAM_OP_UPDATE,
                  .ns = ns,
                  .id = id,
                  .content = content,
                  .set = ENGRAM_SET_CONTENT};
  return stu_write_ops(eg, &op, 1);
}

static inline int stu_delete(engram *eg, const char *ns, const char *id) {
  engram_op op = {.kind = ENGRAM_OP_DELETE, .ns = ns, .id = id};
  return stu_write_ops(eg, &op, 1);
}

static inline int stu_link(engram *eg, const char *ns, const char *source,
                           const char *target, const char *kind,
                           double strength) {
  engram_op op = {.kind = ENGRAM_OP_LINK,
                  .ns = ns,
                  .source = source,
                  .target = target,
                  .rel_kind = kind,
                  .strength = strength};
  return stu_write_ops(eg, &op, 1);
}

/* ------------------------------------------------------------------ reads */

typedef struct stu_get {
  int done;
  int status;
  engram_node *node;
} stu_get;

static inline void stu_on_get(int status, const engram_node *node, void *data) {
  stu_get *g = data;
  g->done = 1;
  g->status = status;
  if (status == 0) {
    assert_non_null(node);
    g->node = engram_node_copy(node);
  } else {
    assert_null(node);
  }
}

/* Returns the status; *out (may be NULL) gets a copy to engram_node_free. */
static inline int stu_get_node(engram *eg, const char *ns, const char *id,
                               engram_node **out) {
  stu_get g = {0};
  if (out)
    *out = NULL;
  int rc = engram_get(eg, ns, id, stu_on_get, &g);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &g.done);
  assert_true(g.done);
  if (out)
    *out = g.node;
  else
    engram_node_free(g.node);
  return g.status;
}

typedef struct stu_history {
  int done;
  int status;
  size_t n;
  engram_event event[32];
  char old[32][128];
  char new_[32][128];
  int has_old[32], has_new[32];
  int64_t at[32];
} stu_history;

static inline void stu_on_history(int status,
                                  const engram_history_entry *entries, size_t n,
                                  void *data) {
  stu_history *h = data;
  h->done = 1;
  h->status = status;
  h->n = n;
  for (size_t i = 0; i < n && i < 32; i++) {
    h->event[i] = entries[i].event;
    h->has_old[i] = entries[i].old_content != NULL;
    h->has_new[i] = entries[i].new_content != NULL;
    snprintf(h->old[i], sizeof h->old[i], "%s",
             entries[i].old_content ? entries[i].old_content : "");
    snprintf(h->new_[i], sizeof h->new_[i], "%s",
             entries[i].new_content ? entries[i].new_content : "");
    h->at[i] = entries[i].at_ms;
  }
}

static inline int stu_history_of(engram *eg, const char *ns, const char *id,
                                 stu_history *h) {
  memset(h, 0, sizeof *h);
  int rc = engram_history(eg, ns, id, stu_on_history, h);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &h->done);
  assert_true(h->done);
  return h->status;
}

typedef struct stu_rels {
  int done;
  int status;
  size_t n;
  char source[16][ENGRAM_ID_LEN + 1];
  char target[16][ENGRAM_ID_LEN + 1];
  char kind[16][65];
  double strength[16];
} stu_rels;

static inline void stu_on_rels(int status, const engram_rel *rels, size_t n,
                               void *data) {
  stu_rels *r = data;
  r->done = 1;
  r->status = status;
  r->n = n;
  for (size_t i = 0; i < n && i < 16; i++) {
    snprintf(r->source[i], sizeof r->source[i], "%s", rels[i].source);
    snprintf(r->target[i], sizeof r->target[i], "%s", rels[i].target);
    snprintf(r->kind[i], sizeof r->kind[i], "%s", rels[i].kind);
    r->strength[i] = rels[i].strength;
  }
}

static inline int stu_rels_of(engram *eg, const char *ns, const char *id,
                              stu_rels *r) {
  memset(r, 0, sizeof *r);
  int rc = engram_relationships(eg, ns, id, stu_on_rels, r);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &r->done);
  assert_true(r->done);
  return r->status;
}

/* ---------------------------------------------------------------- streams */

/* Collects a stream. Requests `step` items at a time (again when all were
 * delivered), checks that no item arrives beyond what was requested, and
 * can cancel after a number of items. */
typedef struct stu_coll {
  engram *eg;
  engram_stream *s;
  size_t step;
  size_t cancel_after; /* 0: never */
  size_t requested, received;
  engram_node **nodes;
  size_t n, cap;
  size_t errors;
  int last_error;
  char last_message[256];
  int done;
  int status;
  int auto_request; /* request again when the previous request is served */
} stu_coll;

static inline void stu_item(engram_stream *s, const engram_node *node,
                            void *data) {
  stu_coll *c = data;
  c->received++;
  assert_true(c->received <= c->requested); /* never beyond demand */
  assert_true(c->n < 100000);
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->nodes = realloc(c->nodes, c->cap * sizeof *c->nodes);
    assert_non_null(c->nodes);
  }
  c->nodes[c->n++] = engram_node_copy(node);
  if (c->cancel_after && c->n == c->cancel_after) {
    engram_stream_cancel(s);
    engram_stream_cancel(s); /* idempotent */
    return;
  }
  if (c->auto_request && c->received == c->requested) {
    c->requested += c->step;
    assert_int_equal(engram_stream_request(s, c->step), 0);
  }
}

static inline void stu_error(engram_stream *s, int code, const char *message,
                             void *data) {
  stu_coll *c = data;
  (void)s;
  c->errors++;
  c->last_error = code;
  snprintf(c->last_message, sizeof c->last_message, "%s", message);
}

static inline void stu_done(engram_stream *s, int status, void *data) {
  stu_coll *c = data;
  (void)s;
  assert_false(c->done); /* exactly once */
  c->done = 1;
  c->status = status;
  c->s = NULL;
}

static inline engram_stream_cbs stu_cbs(stu_coll *c) {
  engram_stream_cbs cbs = {stu_item, stu_error, stu_done, c};
  return cbs;
}

static inline void stu_coll_init(stu_coll *c, engram *eg, size_t step) {
  memset(c, 0, sizeof *c);
  c->eg = eg;
  c->step = step;
  c->auto_request = 1;
}

/* Asks for the first step and runs until done. */
static inline void stu_drain(stu_coll *c) {
  c->requested += c->step;
  assert_int_equal(engram_stream_request(c->s, c->step), 0);
  tu_run_until(c->eg, &c->done);
  assert_true(c->done);
}

static inline void stu_coll_free(stu_coll *c) {
  for (size_t i = 0; i < c->n; i++)
    engram_node_free(c->nodes[i]);
  free(c->nodes);
  c->nodes = NULL;
  c->n = c->cap = 0;
}

/* Runs a search to the end; returns the stream's status. */
static inline int stu_search(engram *eg, const engram_query *q, size_t step,
                             stu_coll *c) {
  stu_coll_init(c, eg, step);
  engram_stream_cbs cbs = stu_cbs(c);
  int rc = engram_search(eg, q, &cbs, &c->s);
  if (rc != 0)
    return rc;
  stu_drain(c);
  return c->status;
}

static inline int stu_list(engram *eg, const engram_query *q, size_t step,
                           stu_coll *c) {
  stu_coll_init(c, eg, step);
  engram_stream_cbs cbs = stu_cbs(c);
  int rc = engram_list(eg, q, &cbs, &c->s);
  if (rc != 0)
    return rc;
  stu_drain(c);
  return c->status;
}

static inline int stu_traverse(engram *eg, const char *ns, const char *start,
                               uint32_t depth, double strength, size_t step,
                               stu_coll *c) {
  stu_coll_init(c, eg, step);
  engram_stream_cbs cbs = stu_cbs(c);
  int rc = engram_traverse(eg, ns, start, depth, strength, &cbs, &c->s);
  if (rc != 0)
    return rc;
  stu_drain(c);
  return c->status;
}

/* Index of the node with id in c, or -1. */
static inline int stu_find(const stu_coll *c, const char *id) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->nodes[i]->id, id) == 0)
      return (int)i;
  return -1;
}

static inline engram_stats stu_stats(engram *eg) {
  engram_stats s;
  engram_get_stats(eg, &s);
  return s;
}

#endif
