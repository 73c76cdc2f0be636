/*
 * testloop.c — see testloop.h. Helper timers are closed before each helper
 * returns, so they never count as handles a test forgot.
 */
#include "testloop.h"

#include <stdlib.h>

static void stop_cb(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Closing handles are processed by the next loop iteration; NOWAIT runs
 * exactly one without blocking. */
static void close_now(uv_loop_t *loop, uv_timer_t *t) {
  uv_close((uv_handle_t *)t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

void tl_run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, stop_cb, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT); /* the timer keeps it alive until it stops it */
  close_now(loop, &t);
}

static void guard_cb(uv_timer_t *t) {
  (void)t;
}

int tl_run_until(uv_loop_t *loop, int (*cond)(void *arg), void *arg,
                 uint64_t timeout_ms) {
  uint64_t start = uv_hrtime();
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, guard_cb, 1, 1);
  while (!cond(arg) && (uv_hrtime() - start) / 1000000u < timeout_ms)
    uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  close_now(loop, &guard);
  return cond(arg);
}

typedef struct after_timer {
  uv_timer_t timer;
  void (*cb)(void *data);
  void *data;
} after_timer;

static void free_timer(uv_handle_t *h) {
  free(h->data);
}

static void after_fire(uv_timer_t *t) {
  after_timer *a = t->data;
  a->cb(a->data);
  uv_close((uv_handle_t *)&a->timer, free_timer);
}

void tl_after(uv_loop_t *loop, uint64_t ms, void (*cb)(void *data),
              void *data) {
  after_timer *a = malloc(sizeof *a);
  if (!a)
    abort();
  a->cb = cb;
  a->data = data;
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, after_fire, ms, 0);
}

static void close_left(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) {
    (*(int *)arg)++;
    uv_close(h, NULL);
  }
}

int tl_loop_finish(uv_loop_t *loop, int *leftover) {
  int n = 0;
  uv_run(loop, UV_RUN_DEFAULT);
  uv_walk(loop, close_left, &n);
  uv_run(loop, UV_RUN_DEFAULT);
  if (leftover)
    *leftover = n;
  return uv_loop_close(loop);
}
