/*
 * rt.c — the per-handle runtime: thread-pool offload and the open-stream
 * registry. Offload is a thin, counted wrapper over uv_queue_work so that
 * closing the handle knows when the last chunk has returned to the loop.
 */
#include <stdarg.h>
#include <stdio.h>

#include "rt/rt.h"
#include "rt/stream.h"

void rt_init(rt *r, uv_loop_t *loop) {
  r->loop = loop;
  r->streams_open = 0;
  r->items_failed = 0;
  r->work_inflight = 0;
  r->streams = NULL;
  r->on_drained = NULL;
  r->drained_data = NULL;
  r->log = NULL;
  r->log_data = NULL;
}

void rt_log(rt *r, engram_log_level level, const char *fmt, ...) {
  if (!r->log)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->log(level, msg, r->log_data);
}

static void work_run(uv_work_t *req) {
  rt_work *w = (rt_work *)req->data;
  w->run(w);
}

static void work_after(uv_work_t *req, int status) {
  rt_work *w = (rt_work *)req->data;
  w->rt->work_inflight--;
  w->after(w, status);
}

int rt_offload(rt *r, rt_work *w, rt_work_fn run, rt_after_fn after) {
  w->rt = r;
  w->run = run;
  w->after = after;
  w->req.data = w;
  int rc = uv_queue_work(r->loop, &w->req, work_run, work_after);
  if (rc != 0)
    return ENGRAM_ENOMEM;
  r->work_inflight++;
  return 0;
}
