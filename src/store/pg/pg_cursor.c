/*
 * pg_cursor.c — the stream machinery of the PostgreSQL backend: one reader
 * connection per stream, driven by the consumer's demand.
 *
 * A cursor does nothing until the first pull. Then it acquires a reader
 * (queued on the loop when none is free; at once ENGRAM_EIO when the server
 * is unreachable) and runs steps: each step is one exchange whose commands
 * the stream's kind queues (BEGIN, DECLARE and the first FETCH pipelined
 * together, then one FETCH per step), asking for at most
 * min(demand, chunk_rows) rows. Decoded rows wait in a buffer and leave
 * with stream_emit while demand lasts, so the buffer never holds more than
 * one step's rows. Between steps a paused stream holds its connection and
 * its open server-side cursor, and no thread: the socket is idle and no
 * callback is pending.
 *
 * Everything ends in one place (cursor_end): leave the pool's queue, stop
 * counting the query, release the connection and call stream_finish. A
 * connection released inside the stream's transaction is rolled back by the
 * pool before anyone else gets it, which also closes the server-side
 * cursor; at the end of the data, that rollback is the cursor's CLOSE (a
 * read-only transaction has nothing to commit), and the stream's done does
 * not wait for it. Cancellation (the consumer's, or the deadline's) while
 * no exchange runs ends the cursor at once; while one runs, the server is
 * asked to cancel it (pg_conn_cancel) and the cursor ends when the exchange
 * comes back, so a connection is never released with a command in flight.
 * A lost connection fails the stream with ENGRAM_EIO, after the rows that
 * did arrive.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_cursor.h"

static void cursor_pull(engram_stream *s, void *impl);
static void cursor_cancel(engram_stream *s, void *impl);
static void cursor_destroy(void *impl);

static const stream_producer cursor_producer = {cursor_pull, cursor_cancel,
                                                cursor_destroy};

void pg_cursor_attach(pg_cursor *cur, pg_store *st, engram_stream *s,
                      const pg_cursor_kind *kind) {
  cur->st = st;
  cur->s = s;
  cur->kind = kind;
  stream_attach(s, &cursor_producer, cur);
}

int pg_cursor_fail(pg_cursor *cur, int code, const char *fmt, ...) {
  if (cur->rc != 0)
    return code;
  cur->rc = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cur->msg, sizeof cur->msg, fmt, ap);
  va_end(ap);
  return code;
}

void pg_cursor_fail_result(pg_cursor *cur, const PGresult *res,
                           const char *what) {
  char msg[PG_MSG_LEN];
  int code = pg_result_fail(res, what, msg, sizeof msg);
  pg_cursor_fail(cur, code, "%s", msg);
}

/* ------------------------------------------------------------ the buffer */

static int push(pg_cursor *cur, engram_node *node, int code, const char *msg) {
  return store_items_push(&cur->items, node, code, msg);
}

int pg_cursor_push_row(pg_cursor *cur, const PGresult *res, int row, int col,
                       double relevance, uint32_t depth) {
  engram_node *node = NULL;
  char msg[PG_MSG_LEN] = "";
  int code = pg_row_node(res, row, col, &node, msg, sizeof msg);
  if (code == ENGRAM_ENOMEM) {
    pg_cursor_fail(cur, code, "%s", msg);
    return 0;
  }
  if (code == 0) {
    node->relevance = relevance;
    node->depth = depth;
  }
  if (push(cur, code == 0 ? node : NULL, code, msg) != 0) {
    pg_cursor_fail(cur, ENGRAM_ENOMEM, "out of memory reading a stream");
    return 0;
  }
  return code == 0;
}

/* ------------------------------------------------------------ the ending */

/* The one way out: nothing of the cursor runs after this. */
static void cursor_end(pg_cursor *cur, int status) {
  if (cur->ended)
    return;
  cur->ended = 1;
  pg_store *st = cur->st;
  if (cur->wait.queued)
    pg_pool_unwait(&st->readers, &cur->wait);
  if (cur->counted) {
    cur->counted = 0;
    st->head.queries_running--;
  }
  if (cur->conn) {
    pg_conn *c = cur->conn;
    cur->conn = NULL;
    pg_pool_release(&st->readers, c); /* rolls back the transaction */
  }
  stream_finish(cur->s, status);
}

static void end_failed(pg_cursor *cur) {
  /* The status ends the stream; the log keeps the sentence. */
  if (cur->rc != ENGRAM_ENOTFOUND)
    rt_log(cur->st->head.rt, ENGRAM_LOG_ERROR, "a stream failed: %s", cur->msg);
  cursor_end(cur, cur->rc);
}

/* ------------------------------------------------------------- the steps */

static void ex_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  pg_cursor *cur = ex->data;
  if (cur->cancelled || cur->rc != 0)
    return; /* drained: the stream ends when the exchange does */
  cur->kind->result(cur, cmd, res);
}

static void advance(pg_cursor *cur);

static void ex_done(pg_exchange *ex, int status, const char *msg) {
  pg_cursor *cur = ex->data;
  cur->running = 0;
  if (cur->cancelled) {
    cursor_end(cur, ENGRAM_ECANCELED); /* the stream keeps its reason */
    return;
  }
  if (status != 0)
    pg_cursor_fail(cur, status, "a stream lost its connection: %s",
                   msg ? msg : "no reason given");
  advance(cur);
}

static void begin(pg_cursor *cur) {
  if (cur->begun)
    return;
  cur->begun = 1;
  cur->ex.result = ex_result;
  cur->ex.done = ex_done;
  cur->ex.data = cur;
  pg_exchange_begin(cur->conn, &cur->ex);
}

void pg_cursor_sql(pg_cursor *cur, const char *sql, int nparams,
                   const char *const *values) {
  begin(cur);
  pg_exchange_sql(cur->conn, sql, nparams, values, NULL);
  cur->ncmds++;
}

void pg_cursor_stmt(pg_cursor *cur, const pg_stmt *stmt,
                    const char *const *values) {
  begin(cur);
  pg_exchange_stmt(cur->conn, stmt, values, NULL);
  cur->ncmds++;
}

/* Hands buffered rows to the consumer while it wants them. A callback may
 * cancel (cursor_cancel then ends the cursor: no exchange runs now) or
 * request more (pull returns at once while emitting; this loop and the
 * caller look at the demand afterwards). */
static void emit_buffered(pg_cursor *cur) {
  cur->emitting = 1;
  while (cur->first < cur->items.n && !cur->ended) {
    store_item *it = &cur->items.v[cur->first];
    if (it->node) {
      if (stream_demand(cur->s) == 0)
        break;
      cur->first++;
      int more = stream_emit(cur->s, it->node);
      engram_node_free(it->node);
      it->node = NULL;
      if (!more)
        break;
    } else {
      cur->first++;
      stream_emit_error(cur->s, it->code,
                        it->msg ? it->msg : "a row could not be read");
      free(it->msg);
      it->msg = NULL;
    }
  }
  cur->emitting = 0;
  if (cur->first == cur->items.n)
    cur->first = cur->items.n = 0;
}

static void granted(pg_wait *w, pg_conn *c, int status, const char *msg);

/* Runs the cursor forward from an idle state (no exchange, not queued for
 * a connection, not emitting) as far as the demand allows. */
static void advance(pg_cursor *cur) {
  if (cur->first < cur->items.n) {
    emit_buffered(cur);
    if (cur->ended)
      return;
  }
  if (!stream_open(cur->s)) {
    /* Closed without our cancel having ended us (the stream of
     * rt/stream.c always calls cancel): end anyway. */
    cursor_end(cur, ENGRAM_ECANCELED);
    return;
  }
  if (cur->rc != 0) {
    end_failed(cur);
    return;
  }
  if (cur->first < cur->items.n)
    return; /* paused with rows in hand */
  if (cur->at_end) {
    cursor_end(cur, 0);
    return;
  }
  size_t demand = stream_demand(cur->s);
  if (demand == 0)
    return; /* paused: the server-side cursor waits for the next pull */
  pg_store *st = cur->st;
  if (!cur->conn) {
    pg_conn *c = NULL;
    int rc = pg_pool_acquire(&st->readers, &cur->wait, granted, &c);
    if (rc != 0) {
      pg_cursor_fail(cur, rc, "%s",
                     rc == ENGRAM_ECLOSED ? "the store is closing"
                                          : pg_pool_error(&st->readers));
      end_failed(cur);
      return;
    }
    if (!c)
      return; /* queued: granted() goes on */
    cur->conn = c;
  }
  size_t want = st->chunk_rows ? st->chunk_rows : 1;
  if (want > demand)
    want = demand;
  cur->begun = 0;
  cur->ncmds = 0;
  cur->kind->queue(cur, want);
  if (!cur->begun) {
    /* Nothing to ask: the kind found the end, or failed. */
    if (cur->rc != 0)
      end_failed(cur);
    else
      cursor_end(cur, 0);
    return;
  }
  if (!cur->counted) {
    /* From the first command to the release at cursor_end. */
    cur->counted = 1;
    st->head.queries_running++;
  }
  cur->running = 1;
  pg_exchange_end(cur->conn);
}

static void granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  pg_cursor *cur = PG_CONTAINER(w, pg_cursor, wait);
  if (status != 0) {
    pg_cursor_fail(cur, status, "%s",
                   msg ? msg : "no PostgreSQL connection for a stream");
    end_failed(cur);
    return;
  }
  cur->conn = c;
  advance(cur);
}

/* ------------------------------------------------------------- producer */

static void cursor_pull(engram_stream *s, void *impl) {
  pg_cursor *cur = impl;
  (void)s;
  if (cur->ended || cur->running || cur->emitting || cur->wait.queued)
    return; /* ex_done and granted look at the demand when they run */
  if (cur->empty) {
    cursor_end(cur, 0);
    return;
  }
  if (!cur->conn && cur->st->state != PS_OPEN) {
    cursor_end(cur, ENGRAM_ECLOSED);
    return;
  }
  advance(cur);
}

static void cursor_cancel(engram_stream *s, void *impl) {
  pg_cursor *cur = impl;
  (void)s;
  if (cur->ended)
    return;
  if (cur->running) {
    /* ex_done ends the cursor once the server answered. */
    if (!cur->cancelled) {
      cur->cancelled = 1;
      pg_conn_cancel(cur->conn);
    }
    return;
  }
  cursor_end(cur, ENGRAM_ECANCELED);
}

static void cursor_destroy(void *impl) {
  pg_cursor *cur = impl;
  /* After done: ended, so no exchange, no connection, no place in the
   * queue. */
  store_items_free(&cur->items);
  cur->kind->destroy(cur);
}
