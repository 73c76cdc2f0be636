/*
 * delay.c — a store decorator that slows every stream item down by a fixed
 * delay, for tests and benchmarks: it makes a fast embedded store behave
 * like one with I/O latency (a remote server, a cold disk) so that deadlines
 * and cancellation can be exercised for real.
 *
 * Writes, one-shot reads and the vector index's catch-up pass straight
 * through; hybrid search's candidates are held for the delay as one item. A stream of the delay
 * store wraps a stream of the inner store: it asks the inner stream for one
 * item at a time, holds it for the delay on a timer (no thread), then
 * delivers it. Cancelling the outer stream cancels the inner one, so the
 * inner query stops as it would without the decorator.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

typedef struct delay_store {
  store head;
  store *inner;
  uint64_t delay_ms;
  store_open_cb open_cb;
  store_close_cb close_cb;
  void *cb_data;
} delay_store;

typedef struct delayed {
  delay_store *ds;
  engram_stream *outer;
  engram_stream *inner; /* NULL once its done callback ran */
  engram_node *pending; /* an item waiting out its delay */
  int asked;            /* one item requested of inner, not yet arrived */
  int inner_status;
  uv_timer_t timer;
} delayed;

/* ------------------------------------------------------ stream wrapping */

static void ask_inner(delayed *d) {
  if (d->inner && !d->asked && !d->pending && stream_demand(d->outer) > 0) {
    d->asked = 1;
    engram_stream_request(d->inner, 1);
  }
}

static void on_delay(uv_timer_t *t) {
  delayed *d = t->data;
  engram_node *n = d->pending;
  d->pending = NULL;
  stream_emit(d->outer, n);
  engram_node_free(n);
  if (!d->inner)
    stream_finish(d->outer, d->inner_status);
  else
    ask_inner(d);
}

static void inner_item(engram_stream *s, const engram_node *node, void *data) {
  delayed *d = data;
  (void)s;
  d->asked = 0;
  d->pending = engram_node_copy(node);
  if (!d->pending) {
    stream_emit_error(d->outer, ENGRAM_ENOMEM, "out of memory holding an item");
    ask_inner(d);
    return;
  }
  uv_timer_start(&d->timer, on_delay, d->ds->delay_ms, 0);
}

static void inner_error(engram_stream *s, int code, const char *message,
                        void *data) {
  (void)s;
  stream_forward_error(((delayed *)data)->outer, code, message);
}

static void inner_done(engram_stream *s, int status, void *data) {
  delayed *d = data;
  (void)s;
  d->inner = NULL;
  d->inner_status = status;
  if (!d->pending)
    stream_finish(d->outer, status);
}

static void delayed_pull(engram_stream *s, void *impl) {
  (void)s;
  ask_inner(impl);
}

static void delayed_cancel(engram_stream *s, void *impl) {
  delayed *d = impl;
  uv_timer_stop(&d->timer);
  engram_node_free(d->pending);
  d->pending = NULL;
  if (d->inner)
    engram_stream_cancel(d->inner); /* inner_done finishes the outer */
  else
    stream_finish(s, ENGRAM_ECANCELED);
}

static void free_on_close(uv_handle_t *h) {
  free(h->data);
}

static void delayed_destroy(void *impl) {
  delayed *d = impl;
  engram_node_free(d->pending);
  uv_close((uv_handle_t *)&d->timer, free_on_close);
}

static const stream_producer delayed_producer = {delayed_pull, delayed_cancel,
                                                 delayed_destroy};

typedef int (*start_fn)(store *st, const store_query *q, engram_stream *s);

static int start_delayed(delay_store *ds, start_fn start, const store_query *q,
                         engram_stream *outer) {
  delayed *d = calloc(1, sizeof *d);
  if (!d)
    return ENGRAM_ENOMEM;
  d->ds = ds;
  d->outer = outer;
  engram_stream_cbs cbs = {inner_item, inner_error, inner_done, d};
  d->inner = stream_new(ds->head.rt, &cbs);
  if (!d->inner) {
    free(d);
    return ENGRAM_ENOMEM;
  }
  int rc = start(ds->inner, q, d->inner);
  if (rc != 0) {
    stream_discard(d->inner);
    free(d);
    return rc;
  }
  uv_timer_init(ds->head.rt->loop, &d->timer);
  d->timer.data = d;
  stream_attach(outer, &delayed_producer, d);
  return 0;
}

static int d_search(store *st, const store_query *q, engram_stream *s) {
  delay_store *ds = (delay_store *)st;
  return start_delayed(ds, ds->inner->ops->search, q, s);
}
static int d_list(store *st, const store_query *q, engram_stream *s) {
  delay_store *ds = (delay_store *)st;
  return start_delayed(ds, ds->inner->ops->list, q, s);
}
static int d_traverse(store *st, const store_query *q, engram_stream *s) {
  delay_store *ds = (delay_store *)st;
  return start_delayed(ds, ds->inner->ops->traverse, q, s);
}

/* ------------------------------------------------------- pass-throughs */

/* Open and close happen once each: their callbacks are kept in the store. */
static void relay_open(store *inner, int status, const char *message,
                       void *data) {
  delay_store *ds = data;
  (void)inner;
  ds->open_cb(&ds->head, status, message, ds->cb_data);
}

static void d_open(store *st, store_open_cb cb, void *data) {
  delay_store *ds = (delay_store *)st;
  ds->open_cb = cb;
  ds->cb_data = data;
  ds->inner->ops->open(ds->inner, relay_open, ds);
}

static void relay_close(store *inner, void *data) {
  delay_store *ds = data;
  (void)inner;
  ds->close_cb(&ds->head, ds->cb_data);
}

static void d_close(store *st, store_close_cb cb, void *data) {
  delay_store *ds = (delay_store *)st;
  ds->close_cb = cb;
  ds->cb_data = data;
  ds->inner->ops->close(ds->inner, relay_close, ds);
}

static void d_destroy(store *st) {
  delay_store *ds = (delay_store *)st;
  ds->inner->ops->destroy(ds->inner);
  free(ds);
}

static int d_write(store *st, store_batch *b) {
  delay_store *ds = (delay_store *)st;
  return ds->inner->ops->write(ds->inner, b);
}
static int d_get(store *st, const char *ns, const char *id, engram_get_cb cb,
                 void *data) {
  delay_store *ds = (delay_store *)st;
  return ds->inner->ops->get(ds->inner, ns, id, cb, data);
}
static int d_history(store *st, const char *ns, const char *id,
                     engram_history_cb cb, void *data) {
  delay_store *ds = (delay_store *)st;
  return ds->inner->ops->history(ds->inner, ns, id, cb, data);
}
static int d_relationships(store *st, const char *ns, const char *id,
                           engram_rels_cb cb, void *data) {
  delay_store *ds = (delay_store *)st;
  return ds->inner->ops->relationships(ds->inner, ns, id, cb, data);
}

/* Candidates are one round trip to the store: the answer is held for the
 * delay, like a stream item, so hybrid search meets the same latency as
 * lexical search does here. A cancel reaches the inner store while it
 * works, or cuts the delay short; the answer then says ENGRAM_ECANCELED. */
typedef struct delayed_cands {
  delay_store *ds;
  store_candidates_req inner; /* this store's request to the inner one */
  store_candidates_req *outer;
  int status;
  char *msg;
  store_candidates *set;
  int answered; /* the inner answer is in; the timer holds it */
  int cancelled;
  uv_timer_t timer;
} delayed_cands;

static void cands_closed(uv_handle_t *h) {
  delayed_cands *dc = h->data;
  free(dc->msg);
  free(dc);
}

static void cands_deliver(uv_timer_t *t) {
  delayed_cands *dc = t->data;
  if (dc->cancelled && dc->status == 0) {
    store_candidates_free(dc->set);
    dc->set = NULL;
    dc->status = ENGRAM_ECANCELED;
  }
  store_candidates_req *outer = dc->outer;
  outer->impl = NULL;
  outer->cb(outer, dc->status, dc->msg, dc->set); /* the set is the caller's */
  uv_close((uv_handle_t *)&dc->timer, cands_closed);
}

static void cands_answered(store_candidates_req *req, int status,
                           const char *message, store_candidates *set) {
  delayed_cands *dc = req->data;
  dc->answered = 1;
  dc->status = status;
  dc->msg = message ? strdup(message) : NULL;
  dc->set = set;
  uv_timer_start(&dc->timer, cands_deliver,
                 dc->cancelled ? 0 : dc->ds->delay_ms, 0);
}

static int d_candidates(store *st, const store_candidates_query *q,
                        store_candidates_req *req) {
  delay_store *ds = (delay_store *)st;
  if (!ds->inner->ops->candidates)
    return ENGRAM_EINVAL;
  delayed_cands *dc = calloc(1, sizeof *dc);
  if (!dc)
    return ENGRAM_ENOMEM;
  dc->ds = ds;
  dc->outer = req;
  dc->inner.cb = cands_answered;
  dc->inner.data = dc;
  int rc = ds->inner->ops->candidates(ds->inner, q, &dc->inner);
  if (rc != 0) {
    free(dc);
    return rc;
  }
  uv_timer_init(ds->head.rt->loop, &dc->timer);
  dc->timer.data = dc;
  req->impl = dc;
  return 0;
}

static void d_candidates_cancel(store *st, store_candidates_req *req) {
  delay_store *ds = (delay_store *)st;
  delayed_cands *dc = req->impl;
  if (!dc || dc->cancelled)
    return;
  dc->cancelled = 1;
  if (dc->answered)
    uv_timer_start(&dc->timer, cands_deliver, 0, 0); /* never inside cancel */
  else
    ds->inner->ops->candidates_cancel(ds->inner, &dc->inner);
}

/* The vector index's catch-up is not a search result: it passes straight
 * through (the inner store calls req back itself). */
static int d_vectors(store *st, const store_vectors_query *q,
                     store_vectors_req *req) {
  delay_store *ds = (delay_store *)st;
  if (!ds->inner->ops->vectors)
    return ENGRAM_EINVAL;
  return ds->inner->ops->vectors(ds->inner, q, req);
}

static void d_vectors_cancel(store *st, store_vectors_req *req) {
  delay_store *ds = (delay_store *)st;
  ds->inner->ops->vectors_cancel(ds->inner, req);
}

static const store_ops delay_ops = {
    "delay",
    d_open,
    d_close,
    d_destroy,
    d_write,
    d_get,
    d_history,
    d_relationships,
    d_search,
    d_list,
    d_traverse,
    d_candidates,
    d_candidates_cancel,
    d_vectors,
    d_vectors_cancel,
};

store *store_delay_new(store *inner, uint64_t delay_ms) {
  delay_store *ds = calloc(1, sizeof *ds);
  if (!ds)
    return NULL;
  ds->head.ops = &delay_ops;
  ds->head.rt = inner->rt;
  ds->head.opts = inner->opts;
  ds->inner = inner;
  ds->delay_ms = delay_ms;
  return &ds->head;
}
