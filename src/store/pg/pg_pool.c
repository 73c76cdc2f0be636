/*
 * pg_pool.c — a bounded set of PostgreSQL connections lent to one holder
 * at a time, with a FIFO queue of waiters on the loop.
 *
 * A holder that finds no free connection joins the queue; its `granted`
 * callback runs, on the loop, when one comes back. No thread waits. A
 * connection comes back through pg_pool_release, and before anyone else
 * gets it the pool makes it clean: left inside a transaction, it is rolled
 * back; broken, it is reconnected; with a cancel request still on the
 * thread pool, it waits for that to return (the cancel must not hit the
 * next holder's query).
 *
 * Reconnecting: a connection that breaks is retried at once; when an
 * attempt fails, every connection still down is retried after backoff_ms,
 * which doubles from PG_BACKOFF_MIN_MS to PG_BACKOFF_MAX_MS and starts over
 * at the first success. When every connection is down and the last attempt
 * failed, the pool is `unreachable`: waiters fail with ENGRAM_EIO and the
 * reason, and so does every acquire until a retry succeeds, rather than
 * queueing without end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

typedef struct pg_slot {
  pg_pool *p;
  pg_conn *c;        /* NULL once closed */
  int held;          /* lent to a holder */
  int rolling_back;  /* the pool's ROLLBACK runs on it */
  int first_pending; /* its first attempt after pg_pool_start */
  pg_exchange rollback;
} pg_slot;

static pg_slot *slot_of(pg_pool *p, const pg_conn *c) {
  for (unsigned i = 0; i < p->nconns; i++)
    if (p->slots[i].c == c)
      return &p->slots[i];
  return NULL;
}

static int slot_free(const pg_slot *s) {
  return s->c && !s->held && !s->rolling_back &&
         pg_conn_state(s->c) == PG_CONN_IS_READY && !pg_conn_cancelling(s->c);
}

static void count_down(pg_pool *p) {
  unsigned down = 0;
  for (unsigned i = 0; i < p->nconns; i++)
    if (!p->slots[i].c || pg_conn_state(p->slots[i].c) != PG_CONN_IS_READY)
      down++;
  p->down = down;
}

/* --------------------------------------------------------------- waiters */

static void enqueue(pg_pool *p, pg_wait *w) {
  w->prev = p->wait_tail;
  w->next = NULL;
  if (p->wait_tail)
    p->wait_tail->next = w;
  else
    p->wait_head = w;
  p->wait_tail = w;
  w->queued = 1;
}

static pg_wait *dequeue(pg_pool *p) {
  pg_wait *w = p->wait_head;
  if (w)
    pg_pool_unwait(p, w);
  return w;
}

void pg_pool_unwait(pg_pool *p, pg_wait *w) {
  if (!w->queued)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    p->wait_head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    p->wait_tail = w->prev;
  w->prev = w->next = NULL;
  w->queued = 0;
}

/* Each callback may acquire again: with `unreachable` or `closing` set
 * first, that fails at once instead of queueing here again. */
static void fail_waiters(pg_pool *p, int status, const char *msg) {
  pg_wait *w;
  while ((w = dequeue(p)) != NULL)
    w->granted(w, NULL, status, msg);
}

/* Hands free connections to waiters, first come first served. */
static void grant_waiters(pg_pool *p) {
  while (p->wait_head && !p->closing) {
    pg_slot *s = NULL;
    for (unsigned i = 0; i < p->nconns && !s; i++)
      if (slot_free(&p->slots[i]))
        s = &p->slots[i];
    if (!s)
      return;
    pg_wait *w = dequeue(p);
    s->held = 1;
    p->held++;
    w->granted(w, s->c, 0, NULL);
  }
}

int pg_pool_acquire(pg_pool *p, pg_wait *w, pg_granted_fn granted,
                    pg_conn **now) {
  *now = NULL;
  w->granted = granted;
  w->queued = 0;
  if (p->closing)
    return ENGRAM_ECLOSED;
  if (p->unreachable)
    return ENGRAM_EIO;
  if (!p->wait_head) {
    for (unsigned i = 0; i < p->nconns; i++) {
      pg_slot *s = &p->slots[i];
      if (slot_free(s)) {
        s->held = 1;
        p->held++;
        *now = s->c;
        return 0;
      }
    }
  }
  enqueue(p, w);
  return 0;
}

const char *pg_pool_error(const pg_pool *p) {
  return p->error;
}

/* ------------------------------------------------------------ reconnect */

static void on_retry(uv_timer_t *t) {
  pg_pool *p = PG_CONTAINER(t, pg_pool, retry);
  p->retry_armed = 0;
  for (unsigned i = 0; i < p->nconns && !p->closing; i++) {
    pg_slot *s = &p->slots[i];
    if (s->c && !s->held && !s->rolling_back && !pg_conn_cancelling(s->c) &&
        pg_conn_state(s->c) == PG_CONN_IS_DOWN)
      pg_conn_connect(s->c);
  }
}

static void arm_retry(pg_pool *p) {
  if (p->retry_armed || p->closing)
    return;
  p->retry_armed = 1;
  uv_timer_start(&p->retry, on_retry, p->backoff_ms, 0);
  p->backoff_ms *= 2;
  if (p->backoff_ms > PG_BACKOFF_MAX_MS)
    p->backoff_ms = PG_BACKOFF_MAX_MS;
}

static void first_attempt_done(pg_pool *p, pg_slot *s) {
  if (!s->first_pending)
    return;
  s->first_pending = 0;
  if (--p->starting > 0 || !p->start_cb)
    return;
  void (*cb)(pg_pool *, int, const char *) = p->start_cb;
  p->start_cb = NULL;
  count_down(p);
  if (p->down < p->nconns)
    cb(p, 0, NULL);
  else
    cb(p, ENGRAM_EIO, p->reason);
}

static void rollback(pg_pool *p, pg_slot *s);

/* A connection came back to the pool (released, rolled back, its cancel
 * returned): make it clean, then offer it. */
static void settle(pg_pool *p, pg_slot *s, int rolled_back) {
  if (!s->c || s->held || s->rolling_back || pg_conn_cancelling(s->c))
    return;
  if (p->closing) {
    pg_conn_close(s->c);
    return;
  }
  switch (pg_conn_state(s->c)) {
  case PG_CONN_IS_DOWN:
    pg_conn_connect(s->c); /* the first retry is at once */
    return;
  case PG_CONN_IS_READY:
    if (!rolled_back && PQtransactionStatus(pg_conn_pg(s->c)) != PQTRANS_IDLE) {
      rollback(p, s);
      return;
    }
    grant_waiters(p);
    return;
  default:
    return;
  }
}

static void rollback_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  pg_slot *s = ex->data;
  (void)cmd;
  if (!pg_result_ok(res)) {
    char msg[PG_MSG_LEN];
    pg_result_fail(res, "rolling back a released connection", msg, sizeof msg);
    rt_log(s->p->st->head.rt, ENGRAM_LOG_WARN, "%s", msg);
  }
}

static void rollback_done(pg_exchange *ex, int status, const char *msg) {
  pg_slot *s = ex->data;
  pg_pool *p = s->p;
  (void)status;
  (void)msg; /* a broken connection is reconnected by settle */
  s->rolling_back = 0;
  settle(p, s, 1);
  pg_maybe_close(p->st);
}

static void rollback(pg_pool *p, pg_slot *s) {
  (void)p;
  s->rolling_back = 1;
  s->rollback.result = rollback_result;
  s->rollback.done = rollback_done;
  s->rollback.data = s;
  pg_exchange_begin(s->c, &s->rollback);
  pg_exchange_sql(s->c, "ROLLBACK", 0, NULL, NULL);
  pg_exchange_end(s->c);
}

void pg_pool_release(pg_pool *p, pg_conn *c) {
  pg_slot *s = slot_of(p, c);
  if (!s || !s->held)
    return;
  s->held = 0;
  p->held--;
  settle(p, s, 0);
  pg_maybe_close(p->st);
}

/* ---------------------------------------------------------------- events */

static void handle_closed(pg_pool *p) {
  if (--p->handles > 0 || !p->close_cb)
    return;
  void (*cb)(pg_pool *) = p->close_cb;
  p->close_cb = NULL;
  cb(p);
}

/* An attempt failed: retry later; with every connection down and none
 * trying any more, the server is unreachable. */
static void attempt_failed(pg_pool *p, pg_slot *s, const char *reason) {
  snprintf(p->reason, sizeof p->reason, "%s", reason);
  snprintf(p->error, sizeof p->error, "PostgreSQL at %s: %s", p->st->addr,
           reason);
  count_down(p);
  int at_start = s->first_pending; /* the open reports those failures */
  first_attempt_done(p, s);
  if (p->closing)
    return;
  arm_retry(p);
  for (unsigned i = 0; i < p->nconns; i++)
    if (p->slots[i].c && pg_conn_state(p->slots[i].c) == PG_CONN_IS_CONNECTING)
      return;
  if (p->down < p->nconns)
    return;
  if (!p->unreachable && !at_start)
    rt_log(p->st->head.rt, ENGRAM_LOG_ERROR,
           "%s (the %s pool retries in the background; requests fail "
           "until it is back)",
           p->error, p->role);
  p->unreachable = 1;
  fail_waiters(p, ENGRAM_EIO, p->error);
}

static void on_conn_event(pg_conn *c, void *data, pg_conn_event ev,
                          const char *msg) {
  pg_slot *s = data;
  pg_pool *p = s->p;
  switch (ev) {
  case PG_CONN_UP:
    if (p->unreachable)
      rt_log(p->st->head.rt, ENGRAM_LOG_INFO,
             "PostgreSQL at %s: reachable again (%s pool)", p->st->addr,
             p->role);
    p->unreachable = 0;
    p->backoff_ms = PG_BACKOFF_MIN_MS;
    count_down(p);
    first_attempt_done(p, s);
    grant_waiters(p);
    break;
  case PG_CONN_FAILED:
    attempt_failed(p, s, msg);
    break;
  case PG_CONN_LOST:
    snprintf(p->error, sizeof p->error, "%s", msg);
    if (!p->closing)
      rt_log(p->st->head.rt, ENGRAM_LOG_WARN, "%s (reconnecting)", msg);
    count_down(p);
    settle(p, s, 0); /* nothing while held: release comes back here */
    break;
  case PG_CONN_CANCEL_RETURNED:
    settle(p, s, 0);
    break;
  case PG_CONN_CLOSED:
    s->c = NULL;
    p->conns[s - p->slots] = NULL;
    handle_closed(p);
    break;
  }
  (void)c;
}

/* ------------------------------------------------------------------ life */

int pg_pool_init(pg_pool *p, pg_store *st, const char *role, unsigned n) {
  memset(p, 0, sizeof *p);
  p->st = st;
  p->role = role;
  p->backoff_ms = PG_BACKOFF_MIN_MS;
  uv_timer_init(st->head.rt->loop, &p->retry);
  /* Background retries do not keep the loop alive; a waiter always has a
   * connection attempt running (or has been failed: `unreachable`). */
  uv_unref((uv_handle_t *)&p->retry);
  p->handles = 1;
  p->slots = calloc(n ? n : 1, sizeof *p->slots);
  p->conns = calloc(n ? n : 1, sizeof *p->conns);
  if (!p->slots || !p->conns)
    return ENGRAM_ENOMEM;
  for (unsigned i = 0; i < n; i++) {
    pg_slot *s = &p->slots[i];
    s->p = p;
    s->c = pg_conn_new(st, on_conn_event, s);
    if (!s->c)
      return ENGRAM_ENOMEM;
    p->conns[i] = s->c;
    p->nconns++;
    p->handles++;
  }
  p->down = p->nconns;
  return 0;
}

void pg_pool_start(pg_pool *p,
                   void (*cb)(pg_pool *p, int status, const char *msg)) {
  p->start_cb = cb;
  p->starting = p->nconns;
  for (unsigned i = 0; i < p->nconns; i++) {
    p->slots[i].first_pending = 1;
    pg_conn_connect(p->slots[i].c);
  }
}

static void retry_closed(uv_handle_t *h) {
  handle_closed(PG_CONTAINER(h, pg_pool, retry));
}

void pg_pool_close(pg_pool *p, void (*cb)(pg_pool *p)) {
  if (p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  p->start_cb = NULL; /* a start still pending is not told */
  fail_waiters(p, ENGRAM_ECLOSED, "the store is closing");
  uv_timer_stop(&p->retry);
  uv_close((uv_handle_t *)&p->retry, retry_closed);
  for (unsigned i = 0; i < p->nconns; i++) {
    pg_slot *s = &p->slots[i];
    /* Held ones close when released, a rollback's when it is done. */
    if (s->c && !s->held && !s->rolling_back)
      pg_conn_close(s->c);
  }
}

void pg_pool_free(pg_pool *p) {
  free(p->slots);
  free(p->conns);
  p->slots = NULL;
  p->conns = NULL;
  p->nconns = 0;
}
