/*
 * stream.c — engram_stream: demand, cancellation, deadline and the single
 * done callback, independent of what produces the items.
 *
 * States: OPEN (delivering), CANCELLING (the consumer or the deadline asked
 * to stop; the producer has not finished yet), FINISHED (the producer is
 * idle for good; the done callback is scheduled), DONE (done ran; the timer
 * is closing and the stream is about to be freed).
 *
 * The stream's one uv_timer_t serves both the deadline and the deferred done
 * callback: when the producer finishes, the deadline is stopped and the
 * timer re-armed with timeout 0, so done always runs from the loop, never
 * inside request(), cancel() or an emit.
 */
#include "rt/stream.h"

#include <stdlib.h>

enum { S_OPEN, S_CANCELLING, S_FINISHED, S_DONE };

struct engram_stream {
  rt *rt;
  engram_stream_cbs cbs;
  int has_cbs;
  const stream_producer *producer;
  void *impl;
  int state;
  int status;      /* cancel reason, then the final status */
  size_t demand;   /* requested and not yet delivered */
  uint64_t delivered;
  uint64_t failed;
  int pulling;     /* inside producer->pull */
  int repull;      /* a request arrived while pulling */
  uv_timer_t timer;
  engram_stream *prev, *next; /* rt's open-stream list */
};

engram_stream *stream_new(rt *r, const engram_stream_cbs *cbs) {
  engram_stream *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->rt = r;
  if (cbs) {
    s->cbs = *cbs;
    s->has_cbs = 1;
  }
  s->state = S_OPEN;
  uv_timer_init(r->loop, &s->timer);
  s->timer.data = s;
  s->next = r->streams;
  if (r->streams)
    r->streams->prev = s;
  r->streams = s;
  r->streams_open++;
  return s;
}

void stream_attach(engram_stream *s, const stream_producer *p, void *impl) {
  s->producer = p;
  s->impl = impl;
}

void stream_rebind(engram_stream *s, const engram_stream_cbs *cbs) {
  s->cbs = *cbs;
  s->has_cbs = 1;
}

static void unlink_stream(engram_stream *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    s->rt->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->rt->streams_open--;
}

static void free_on_close(uv_handle_t *h) { free(h->data); }

void stream_discard(engram_stream *s) {
  unlink_stream(s);
  s->state = S_DONE;
  if (s->producer && s->producer->destroy)
    s->producer->destroy(s->impl);
  uv_close((uv_handle_t *)&s->timer, free_on_close);
}

size_t stream_demand(const engram_stream *s) {
  return s->state == S_OPEN ? s->demand : 0;
}
int stream_open(const engram_stream *s) { return s->state == S_OPEN; }
rt *stream_rt(const engram_stream *s) { return s->rt; }
uint64_t engram_stream_delivered(const engram_stream *s) {
  return s->delivered;
}
uint64_t engram_stream_failed(const engram_stream *s) { return s->failed; }

static void check_drained(rt *r) {
  if (r->streams_open == 0 && r->on_drained) {
    void (*cb)(rt *, void *) = r->on_drained;
    r->on_drained = NULL;
    cb(r, r->drained_data);
  }
}

static void done_cb(uv_timer_t *t) {
  engram_stream *s = t->data;
  rt *r = s->rt;
  s->state = S_DONE;
  unlink_stream(s);
  if (s->has_cbs && s->cbs.done)
    s->cbs.done(s, s->status, s->cbs.data);
  if (s->producer && s->producer->destroy)
    s->producer->destroy(s->impl);
  uv_close((uv_handle_t *)&s->timer, free_on_close);
  check_drained(r);
}

void stream_finish(engram_stream *s, int status) {
  if (s->state == S_FINISHED || s->state == S_DONE)
    return;
  if (s->state == S_OPEN)
    s->status = status;
  /* CANCELLING keeps its reason: the consumer asked for this ending. */
  s->state = S_FINISHED;
  uv_timer_stop(&s->timer);
  uv_timer_start(&s->timer, done_cb, 0, 0);
}

static void cancel_with(engram_stream *s, int reason) {
  if (s->state != S_OPEN)
    return;
  s->state = S_CANCELLING;
  s->status = reason;
  s->demand = 0;
  uv_timer_stop(&s->timer);
  if (s->producer && s->producer->cancel)
    s->producer->cancel(s, s->impl);
  else
    stream_finish(s, reason);
}

void engram_stream_cancel(engram_stream *s) {
  if (s)
    cancel_with(s, ENGRAM_ECANCELED);
}

static void deadline_cb(uv_timer_t *t) {
  cancel_with(t->data, ENGRAM_ETIMEDOUT);
}

int engram_stream_set_deadline(engram_stream *s, uint64_t timeout_ms) {
  if (!s)
    return ENGRAM_EINVAL;
  if (s->state != S_OPEN)
    return ENGRAM_ECLOSED;
  /* The loop's clock is cached at the start of each iteration; a caller
   * that started thousands of streams in one callback would otherwise arm
   * late deadlines against a stale "now" and see them fire early. */
  uv_update_time(s->rt->loop);
  uv_timer_start(&s->timer, deadline_cb, timeout_ms, 0);
  return 0;
}

int engram_stream_request(engram_stream *s, size_t n) {
  if (!s || !s->has_cbs || !s->producer)
    return ENGRAM_EINVAL;
  if (s->state != S_OPEN)
    return 0; /* ending already: the done callback is on its way */
  if (n == 0)
    return 0;
  s->demand = (s->demand > SIZE_MAX - n) ? SIZE_MAX : s->demand + n;
  if (s->pulling) {
    s->repull = 1;
    return 0;
  }
  do {
    s->pulling = 1;
    s->repull = 0;
    s->producer->pull(s, s->impl);
    s->pulling = 0;
  } while (s->repull && s->state == S_OPEN && s->demand > 0);
  return 0;
}

int stream_emit(engram_stream *s, const engram_node *node) {
  if (s->state != S_OPEN || s->demand == 0)
    return 0;
  s->demand--;
  s->delivered++;
  s->cbs.item(s, node, s->cbs.data);
  return s->state == S_OPEN;
}

void stream_forward_error(engram_stream *s, int code, const char *message) {
  if (s->state != S_OPEN && s->state != S_CANCELLING)
    return;
  s->failed++;
  if (s->cbs.error)
    s->cbs.error(s, code, message, s->cbs.data);
}

/* A failed item is counted in the rt (and logged) once, by the stream that
 * first reports it; combinators pass it on with stream_forward_error. */
void stream_emit_error(engram_stream *s, int code, const char *message) {
  if (s->state != S_OPEN && s->state != S_CANCELLING)
    return;
  s->rt->items_failed++;
  rt_log(s->rt, ENGRAM_LOG_WARN, "stream item failed: %s (%s)",
         message ? message : engram_strerror(code), engram_errname(code));
  stream_forward_error(s, code, message);
}

void rt_drain(rt *r, void (*cb)(rt *r, void *data), void *data) {
  r->on_drained = cb;
  r->drained_data = data;
  /* Cancelling may finish (and later unlink) streams but never frees one
   * synchronously, so the walk stays valid. */
  for (engram_stream *s = r->streams; s; s = s->next)
    cancel_with(s, ENGRAM_ECANCELED);
  check_drained(r);
}
