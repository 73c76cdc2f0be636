/*
 * stream.h — the producer side of engram_stream (internal).
 *
 * A stream joins one consumer (engram_stream_cbs, public) to one producer
 * (stream_producer, here). The stream keeps the contract of design.md:
 * demand accounting, exactly one done callback delivered from a timer (never
 * re-entrantly), idempotent cancel, a per-stream deadline.
 *
 * Producer contract:
 *  - pull(s): demand is > 0 (it was raised by a request). Deliver with
 *    stream_emit() while stream_demand(s) > 0, now or later from async work.
 *    The stream never calls pull re-entrantly; a request made while pull
 *    runs is served by calling pull again after it returns. An async
 *    producer that is already working ignores pull and looks at the demand
 *    when its work returns.
 *  - cancel(s): the consumer gave up (or the deadline passed). Stop as soon
 *    as possible (interrupt the running chunk) and call stream_finish() once
 *    nothing of the producer is running any more, possibly from inside
 *    cancel itself.
 *  - stream_finish(s, status) ends production: 0 at end of data, or an
 *    error. It is idempotent. The done callback follows from the loop.
 *  - destroy(impl): after done ran; free the producer's state.
 */
#ifndef ENGRAM_STREAM_H
#define ENGRAM_STREAM_H

#include "rt/rt.h"

typedef struct stream_producer {
  void (*pull)(engram_stream *s, void *impl);
  void (*cancel)(engram_stream *s, void *impl);
  void (*destroy)(void *impl);
} stream_producer;

/* A stream with no producer yet; cbs NULL: for a combinator to adopt. */
engram_stream *stream_new(rt *r, const engram_stream_cbs *cbs);
/* Attaches the producer; from now on the stream owns impl. */
void stream_attach(engram_stream *s, const stream_producer *p, void *impl);
/* Frees a stream whose producer never started; no callback runs. */
void stream_discard(engram_stream *s);
/* Replaces the consumer callbacks (combinators adopting a source). */
void stream_rebind(engram_stream *s, const engram_stream_cbs *cbs);

size_t stream_demand(const engram_stream *s);
/* 1 while the consumer still wants items (not cancelled, not finished). */
int stream_open(const engram_stream *s);
rt *stream_rt(const engram_stream *s);

/* Delivers one item (demand must be > 0). Returns 1 when the producer may
 * go on (the stream is still open), 0 when it must stop. */
int stream_emit(engram_stream *s, const engram_node *node);
/* Reports one failed item; the stream goes on. */
void stream_emit_error(engram_stream *s, int code, const char *message);
/* Passes on a failed item that a source stream already reported: counted
 * in s's own failed count, not again in the rt's (a combinator's error is
 * its source's error, and the metric counts failed items, not hops). */
void stream_forward_error(engram_stream *s, int code, const char *message);
void stream_finish(engram_stream *s, int status);

#endif
