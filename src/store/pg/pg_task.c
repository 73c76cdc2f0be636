/*
 * pg_task.c — a read that holds one reader connection (pg_internal.h,
 * pg_read_task): the lifecycle the candidates and the vectors operations
 * share. The connection is acquired from the readers' pool (or waited for,
 * by callback); the operation's exchanges run on it; when the last ends
 * the connection goes back to the pool first, so that waiting work goes on
 * (the pool rolls back a transaction an aborted exchange left open), then
 * the operation calls back. A request with nothing to ask, or cancelled
 * while it waited, calls back from a no-op thread-pool task, so never
 * inside the call that started or cancelled it.
 */
#include <stdio.h>

#include "store/pg/pg_internal.h"

static void task_finish(pg_read_task *t) {
  if (t->cancelled) {
    t->status = ENGRAM_ECANCELED;
    snprintf(t->msg, sizeof t->msg, "%s was cancelled", t->what);
  } else if (t->status != 0) {
    rt_log(t->st->head.rt, ENGRAM_LOG_ERROR, "%s failed: %s", t->what, t->msg);
  }
  t->finish(t);
}

static void task_ex_done(pg_exchange *ex, int status, const char *msg) {
  pg_read_task *t = ex->data;
  pg_store *st = t->st;
  t->running = 0;
  if (status != 0 && t->status == 0) {
    t->status = status;
    snprintf(t->msg, sizeof t->msg, "%s lost its connection: %s", t->what,
             msg ? msg : "no reason given");
  }
  if (t->status == 0 && !t->cancelled && t->more && t->more(t))
    return;
  pg_conn *c = t->conn;
  t->conn = NULL;
  st->head.queries_running--;
  pg_pool_release(&st->readers, c);
  task_finish(t);
}

void pg_read_task_begin(pg_read_task *t) {
  t->running = 1;
  t->ex.data = t;
  t->ex.done = task_ex_done;
  pg_exchange_begin(t->conn, &t->ex);
}

static void task_send(pg_read_task *t, pg_conn *c) {
  t->conn = c;
  t->st->head.queries_running++;
  t->send(t);
}

/* A connection came to the queued task, from another operation's
 * callback: calling back here is not inside the start. */
static void task_granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  pg_read_task *t = PG_CONTAINER(w, pg_read_task, wait);
  if (status != 0) {
    t->status = status;
    if (msg)
      snprintf(t->msg, sizeof t->msg, "%s", msg);
    else
      snprintf(t->msg, sizeof t->msg, "no PostgreSQL connection for %s",
               t->what);
    task_finish(t);
    return;
  }
  task_send(t, c);
}

static void deferred_run(rt_work *w) {
  (void)w;
}

static void deferred_after(rt_work *w, int status) {
  pg_read_task *t = PG_CONTAINER(w, pg_read_task, work);
  pg_store *st = t->st;
  (void)status;
  st->tasks--;
  t->deferred = 0;
  task_finish(t);
  pg_maybe_close(st);
}

/* Calls back from a no-op task: 0, or ENGRAM_ENOMEM. */
static int defer(pg_read_task *t) {
  if (rt_offload(t->st->head.rt, &t->work, deferred_run, deferred_after) != 0)
    return ENGRAM_ENOMEM;
  t->deferred = 1;
  t->st->tasks++;
  return 0;
}

int pg_read_task_start(pg_read_task *t, int connection) {
  pg_store *st = t->st;
  t->running = t->deferred = t->cancelled = 0;
  t->conn = NULL;
  if (!connection)
    return defer(t);
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(&st->readers, &t->wait, task_granted, &c);
  if (rc != 0) {
    if (rc == ENGRAM_EIO)
      rt_log(st->head.rt, ENGRAM_LOG_ERROR, "%s failed: %s", t->what,
             pg_pool_error(&st->readers));
    return rc;
  }
  if (c)
    task_send(t, c);
  return 0;
}

void pg_read_task_cancel(pg_read_task *t) {
  if (t->cancelled)
    return;
  t->cancelled = 1;
  if (t->running) {
    pg_conn_cancel(t->conn); /* the exchange ends, task_ex_done calls back */
    return;
  }
  if (t->deferred)
    return; /* deferred_after calls back, cancelled */
  /* Waiting for a connection: leave the queue, call back from a task. */
  if (t->wait.queued)
    pg_pool_unwait(&t->st->readers, &t->wait);
  if (defer(t) != 0)
    /* The thread pool refuses only malformed work; kept safe all the
     * same: the request stays cancelled, its caller waits for nothing. */
    rt_log(t->st->head.rt, ENGRAM_LOG_ERROR,
           "cannot finish a cancelled %s: out of memory", t->what);
}
