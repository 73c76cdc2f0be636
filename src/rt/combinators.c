/*
 * combinators.c — streams built from streams: take(n) and
 * collect-with-deadline.
 *
 * Both adopt their source by rebinding its consumer callbacks, so the source
 * keeps its own producer and contract; demand flows down (take asks its
 * source for no more than its own consumer asked for, and never past n) and
 * cancellation flows down (cancelling the combinator cancels the source,
 * whose done callback then ends the combinator).
 */
#include <stdlib.h>

#include "rt/stream.h"

/* ------------------------------------------------------------------ take */

typedef struct take {
  engram_stream *self;
  engram_stream *src;
  size_t limit;
  size_t received;  /* items the source delivered */
  size_t requested; /* items asked of the source */
  int reached;      /* limit reached: the source was cancelled by us */
} take;

static void take_pull(engram_stream *s, void *impl) {
  take *t = impl;
  (void)s;
  size_t outstanding = t->requested - t->received;
  size_t room = t->limit - t->received;
  size_t want = stream_demand(t->self);
  if (want > room)
    want = room;
  if (want > outstanding) {
    size_t more = want - outstanding;
    t->requested += more;
    engram_stream_request(t->src, more);
  }
}

static void take_cancel(engram_stream *s, void *impl) {
  (void)s;
  engram_stream_cancel(((take *)impl)->src);
}

static void take_destroy(void *impl) { free(impl); }

static const stream_producer take_producer = {take_pull, take_cancel,
                                              take_destroy};

static void take_item(engram_stream *src, const engram_node *node,
                      void *data) {
  take *t = data;
  t->received++;
  stream_emit(t->self, node);
  if (t->received == t->limit && !t->reached) {
    t->reached = 1;
    engram_stream_cancel(src);
  }
}

static void take_error(engram_stream *src, int code, const char *message,
                       void *data) {
  (void)src;
  stream_forward_error(((take *)data)->self, code, message);
}

static void take_done(engram_stream *src, int status, void *data) {
  take *t = data;
  (void)src;
  t->src = NULL;
  stream_finish(t->self, t->reached ? 0 : status);
}

int engram_stream_take(engram_stream *src, size_t n,
                       const engram_stream_cbs *cbs, engram_stream **out) {
  /* As for every stream start: a consumer takes items and hears the end
   * (stream_emit and done_cb call them unchecked). cbs NULL: for adoption.
   * On an error nothing is touched and the caller keeps src. */
  if (!src || !out || (cbs && (!cbs->item || !cbs->done)))
    return ENGRAM_EINVAL;
  take *t = calloc(1, sizeof *t);
  if (!t)
    return ENGRAM_ENOMEM;
  engram_stream *self = stream_new(stream_rt(src), cbs);
  if (!self) {
    free(t);
    return ENGRAM_ENOMEM;
  }
  t->self = self;
  t->src = src;
  t->limit = n;
  engram_stream_cbs src_cbs = {take_item, take_error, take_done, t};
  stream_rebind(src, &src_cbs);
  stream_attach(self, &take_producer, t);
  if (n == 0) {
    t->reached = 1;
    engram_stream_cancel(src);
  }
  *out = self;
  return 0;
}

/* --------------------------------------------------------------- collect */

struct engram_collect {
  engram_stream *src;
  size_t max;
  engram_node **nodes;
  size_t n;
  int reached;
  int oom;
  engram_collect_cb cb;
  void *data;
};

static void collect_item(engram_stream *src, const engram_node *node,
                         void *data) {
  engram_collect *c = data;
  engram_node *copy = engram_node_copy(node);
  if (!copy) {
    c->oom = 1;
    engram_stream_cancel(src);
    return;
  }
  c->nodes[c->n++] = copy;
  if (c->n == c->max && !c->reached) {
    c->reached = 1;
    engram_stream_cancel(src);
  }
}

static void collect_done(engram_stream *src, int status, void *data) {
  engram_collect *c = data;
  uint64_t failed = engram_stream_failed(src);
  if (c->oom)
    status = ENGRAM_ENOMEM;
  else if (c->reached)
    status = 0;
  c->cb(status, c->nodes, c->n, failed, c->data);
  for (size_t i = 0; i < c->n; i++)
    engram_node_free(c->nodes[i]);
  free(c->nodes);
  free(c);
}

int engram_collect_start(engram_stream *src, size_t max, uint64_t timeout_ms,
                         engram_collect_cb cb, void *data,
                         engram_collect **out) {
  if (!src || !cb)
    return ENGRAM_EINVAL;
  engram_collect *c = calloc(1, sizeof *c);
  if (!c)
    return ENGRAM_ENOMEM;
  c->nodes = calloc(max ? max : 1, sizeof *c->nodes);
  if (!c->nodes) {
    free(c);
    return ENGRAM_ENOMEM;
  }
  c->src = src;
  c->max = max;
  c->cb = cb;
  c->data = data;
  engram_stream_cbs cbs = {collect_item, NULL, collect_done, c};
  stream_rebind(src, &cbs);
  if (out)
    *out = c;
  if (max == 0) {
    c->reached = 1;
    engram_stream_cancel(src);
    return 0;
  }
  if (timeout_ms > 0)
    engram_stream_set_deadline(src, timeout_ms);
  engram_stream_request(src, max);
  return 0;
}

void engram_collect_cancel(engram_collect *c) {
  if (c)
    engram_stream_cancel(c->src);
}
