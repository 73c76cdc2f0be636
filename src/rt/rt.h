/*
 * rt.h — engram's async runtime on libuv (internal to the library).
 *
 * One rt per engram handle: the loop every callback runs on, the counters
 * behind engram_get_stats(), and the list of open streams so that closing
 * the handle can cancel them. Everything here is touched only on the loop
 * thread, except what a thread-pool task reads through its own rt_work.
 *
 * Blocking work (a SQLite step, a file read) leaves the loop through
 * rt_offload(): one bounded chunk runs on the libuv thread pool and its
 * `after` callback returns to the loop. No function in engram waits for
 * another task; coordination is callbacks on the loop.
 */
#ifndef ENGRAM_RT_H
#define ENGRAM_RT_H

#include "engram.h"

typedef struct rt {
  uv_loop_t *loop;
  uint64_t streams_open;
  uint64_t items_failed;
  uint64_t work_inflight; /* rt_offload tasks queued or running */
  struct engram_stream *streams; /* open streams, for cancel-all on close */
  /* Called once, from the loop, when the last open stream has finished
   * (set by whoever waits for that, e.g. closing the handle). */
  void (*on_drained)(struct rt *r, void *data);
  void *drained_data;
  engram_log_fn log; /* NULL: silent */
  void *log_data;
} rt;

/* Reports through the handle's logger (engram_set_log). */
void rt_log(rt *r, engram_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void rt_init(rt *r, uv_loop_t *loop);
/* Cancels every open stream (done callbacks follow with ENGRAM_ECANCELED),
 * then calls cb once no stream is open (at once when none is). */
void rt_drain(rt *r, void (*cb)(rt *r, void *data), void *data);

/* A chunk of blocking work. Embed it in the request that owns it; it must
 * stay alive until `after` runs. `after` gets 0, or UV_ECANCELED when libuv
 * cancelled the task before it ran. */
typedef struct rt_work rt_work;
typedef void (*rt_work_fn)(rt_work *w);
typedef void (*rt_after_fn)(rt_work *w, int status);
struct rt_work {
  uv_work_t req;
  rt *rt;
  rt_work_fn run;
  rt_after_fn after;
};
/* Queues w->run on the thread pool; `after` follows on the loop. */
int rt_offload(rt *r, rt_work *w, rt_work_fn run, rt_after_fn after);

#endif
