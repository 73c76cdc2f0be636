/*
 * sqlite_stream.c — memory streams over SQLite: the cursor that drives a
 * statement chunk by chunk as the consumer asks, and the search and list
 * producers built on it (traverse is in sqlite_traverse.c).
 *
 * A cursor does nothing until the first pull. Then it acquires a reader
 * (queued on the loop if none is free) and runs chunks on the thread pool:
 * each steps at most min(demand, chunk_rows) rows and copies them into
 * owned memory, and back on the loop they are emitted in order. The
 * statement stays open between chunks while the consumer is paused, so a
 * paused stream holds its reader and its read snapshot but no thread. When
 * a chunk returns and demand is left, the next chunk starts at once.
 *
 * Ending, whichever way, goes through one place (cursor_end): reset the
 * statements, release the reader, stop counting the query, and call
 * stream_finish. Cancellation while a chunk runs interrupts that reader's
 * connection (sqlite3_interrupt is safe from another thread) and ends the
 * cursor when the chunk comes back; an idle cursor (paused, or queued for a
 * reader) ends at once. The interrupt flag of a connection clears only when
 * no statement is active, which the reset at release guarantees before the
 * next holder runs anything.
 *
 * A row that cannot be decoded is reported with stream_emit_error and
 * skipped; the stream goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

/* ------------------------------------------------------------- the cursor */

static void cursor_pull(engram_stream *s, void *impl);
static void cursor_cancel(engram_stream *s, void *impl);
static void cursor_destroy(void *impl);

static const stream_producer cursor_producer = {cursor_pull, cursor_cancel,
                                                cursor_destroy};

void sqlite_cursor_attach(sqlite_cursor *cur, sqlite_store *st,
                          engram_stream *s, const cursor_kind *kind) {
  cur->st = st;
  cur->s = s;
  cur->kind = kind;
  stream_attach(s, &cursor_producer, cur);
}

int sqlite_cursor_push(sqlite_cursor *cur, engram_node *node, int code,
                       const char *msg) {
  return store_items_push(&cur->items, node, code, msg);
}

int sqlite_cursor_push_row(sqlite_cursor *cur, sqlite3_stmt *stmt, int col,
                           double relevance, uint32_t depth) {
  engram_node *node;
  char msg[SQ_MSG_LEN];
  int code = sqlite_row_node(stmt, col, &node, msg, sizeof msg);
  if (code == ENGRAM_ENOMEM) {
    cur->rc = code;
    snprintf(cur->msg, sizeof cur->msg, "%s", msg);
    return 0;
  }
  if (code == 0) {
    node->relevance = relevance;
    node->depth = depth;
  }
  if (sqlite_cursor_push(cur, code == 0 ? node : NULL, code, msg) != 0) {
    cur->rc = ENGRAM_ENOMEM;
    snprintf(cur->msg, sizeof cur->msg, "out of memory reading a stream");
    return 0;
  }
  return code == 0;
}

/* The one way out: nothing of the cursor runs after this. */
static void cursor_end(sqlite_cursor *cur, int status) {
  if (cur->ended)
    return;
  cur->ended = 1;
  sqlite_reader_unwait(cur->st, &cur->wait);
  if (cur->counted) {
    cur->counted = 0;
    cur->st->head.queries_running--;
  }
  if (cur->rd) {
    sqlite_reader *rd = cur->rd;
    cur->rd = NULL;
    sqlite_reader_release(cur->st, rd); /* resets its statements */
  }
  stream_finish(cur->s, status);
}

static void chunk_run(rt_work *w) {
  sqlite_cursor *cur = SQ_CONTAINER(w, sqlite_cursor, work);
  cur->kind->chunk(cur);
}

static void chunk_after(rt_work *w, int status);

static void chunk_start(sqlite_cursor *cur) {
  size_t want = stream_demand(cur->s);
  if (want > cur->st->chunk_rows)
    want = cur->st->chunk_rows;
  cur->want = want;
  if (!cur->counted) {
    /* From the first step until the reset at cursor_end. */
    cur->counted = 1;
    cur->st->head.queries_running++;
  }
  cur->running = 1;
  if (sqlite_offload(cur->st, &cur->work, chunk_run, chunk_after) != 0) {
    cur->running = 0;
    cursor_end(cur, ENGRAM_ENOMEM);
  }
}

static void chunk_after(rt_work *w, int status) {
  sqlite_cursor *cur = SQ_CONTAINER(w, sqlite_cursor, work);
  sqlite_task_returned(cur->st);
  cur->running = 0;
  if (cur->cancelled || status != 0) {
    store_items_drop(&cur->items, 0);
    cursor_end(cur, ENGRAM_ECANCELED); /* the stream keeps its reason */
    return;
  }
  /* Emit in order. A callback may cancel the stream: cursor_cancel then
   * ends the cursor (no chunk runs now) and emitting stops. A callback may
   * also request more: pull waits for the end of this loop, which starts
   * the next chunk (a chunk must not fill `items` while they are emitted). */
  cur->emitting = 1;
  size_t i = 0;
  for (; i < cur->items.n && !cur->ended; i++) {
    store_item *it = &cur->items.v[i];
    if (it->node) {
      int more = stream_emit(cur->s, it->node);
      engram_node_free(it->node);
      it->node = NULL;
      if (!more) {
        i++;
        break;
      }
    } else {
      stream_emit_error(cur->s, it->code, it->msg ? it->msg : "bad row");
      free(it->msg);
      it->msg = NULL;
    }
  }
  cur->emitting = 0;
  store_items_drop(&cur->items, i);
  if (cur->ended)
    return;
  if (!stream_open(cur->s)) {
    /* Closed without our cancel having ended us (cannot happen with the
     * stream of rt/stream.c, which calls cancel): end anyway. */
    cursor_end(cur, ENGRAM_ECANCELED);
    return;
  }
  if (cur->rc != 0) {
    /* The status ends the stream; the log keeps the sentence. */
    if (cur->rc != ENGRAM_ENOTFOUND)
      rt_log(cur->st->head.rt, ENGRAM_LOG_ERROR, "a stream failed: %s",
             cur->msg);
    cursor_end(cur, cur->rc);
    return;
  }
  if (cur->at_end) {
    cursor_end(cur, 0);
    return;
  }
  if (stream_demand(cur->s) > 0)
    chunk_start(cur);
  /* else paused: the statement and the reader wait for the next pull */
}

static void reader_granted(reader_wait *w, sqlite_reader *rd) {
  sqlite_cursor *cur = SQ_CONTAINER(w, sqlite_cursor, wait);
  cur->rd = rd;
  if (stream_demand(cur->s) > 0)
    chunk_start(cur);
}

static void cursor_pull(engram_stream *s, void *impl) {
  sqlite_cursor *cur = impl;
  (void)s;
  if (cur->ended || cur->running || cur->emitting || cur->wait.queued)
    return; /* chunk_after looks at the demand when it is done */
  if (cur->empty) {
    cursor_end(cur, 0);
    return;
  }
  if (cur->st->state != SS_OPEN) {
    cursor_end(cur, ENGRAM_ECLOSED);
    return;
  }
  if (!cur->rd) {
    cur->rd = sqlite_reader_acquire(cur->st, &cur->wait, reader_granted);
    if (!cur->rd)
      return;
  }
  chunk_start(cur);
}

static void cursor_cancel(engram_stream *s, void *impl) {
  sqlite_cursor *cur = impl;
  (void)s;
  if (cur->ended)
    return;
  if (cur->running) {
    /* chunk_after ends the cursor. A chunk still queued is dropped by
     * libuv; a running one stops at its next step (the stop flag) or
     * inside it (the interrupt). */
    cur->cancelled = 1;
    atomic_store(&cur->stop, 1);
    if (uv_cancel((uv_req_t *)&cur->work.req) != 0)
      sqlite3_interrupt(cur->rd->db);
    return;
  }
  cursor_end(cur, ENGRAM_ECANCELED);
}

static void cursor_destroy(void *impl) {
  sqlite_cursor *cur = impl;
  /* After done: ended, so no chunk, no reader, no place in the queue. */
  store_items_free(&cur->items);
  cur->kind->destroy(cur);
}

/* ----------------------------------------------------------- list, search */

typedef struct query_cursor {
  sqlite_cursor c; /* first */
  reader_stmt_kind stmt_kind;
  sqlite3_stmt *stmt; /* bound on the first chunk; reset by the release */
  char *ns;
  char *arg; /* list: the cursor id ("" for the start); search: the match */
  unsigned types;
  double min_relevance;
} query_cursor;

static void query_chunk(sqlite_cursor *c) {
  query_cursor *q = (query_cursor *)c;
  sqlite3 *db = c->rd->db;
  int rc;
  if (!q->stmt) {
    q->stmt = sqlite_reader_stmt(c->rd, q->stmt_kind, &rc);
    if (!q->stmt) {
      c->rc = sqlite_fail(db, rc, "preparing a query", c->msg, sizeof c->msg);
      return;
    }
    int arg = q->stmt_kind == RS_SEARCH ? 1 : 2;
    if (q->ns)
      sqlite3_bind_text(q->stmt, q->stmt_kind == RS_SEARCH ? 2 : 1, q->ns, -1,
                        SQLITE_STATIC);
    sqlite3_bind_text(q->stmt, arg, q->arg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q->stmt, 3, (sqlite3_int64)q->types);
  }
  size_t emitted = 0;
  /* Rows that fail to decode count against the chunk too: work per chunk
   * stays bounded whatever the data. */
  for (size_t stepped = 0; stepped < c->want && emitted < c->want; stepped++) {
    if (atomic_load(&c->stop))
      return; /* cancelled: chunk_after ends the cursor */
    rc = sqlite3_step(q->stmt);
    if (rc == SQLITE_DONE) {
      c->at_end = 1;
      return;
    }
    if (rc != SQLITE_ROW) {
      c->rc = sqlite_fail(db, rc, "reading memories", c->msg, sizeof c->msg);
      return;
    }
    double relevance = 0;
    if (q->stmt_kind == RS_SEARCH) {
      double score = -sqlite3_column_double(q->stmt, SQ_NODE_NCOLUMNS);
      if (score < 0)
        score = 0;
      relevance = score / (1.0 + score);
      if (relevance < q->min_relevance) {
        c->at_end = 1; /* ranked: every later row is lower still */
        return;
      }
    }
    emitted += (size_t)sqlite_cursor_push_row(c, q->stmt, 0, relevance, 0);
    if (c->rc != 0)
      return;
  }
}

static void query_destroy(sqlite_cursor *c) {
  query_cursor *q = (query_cursor *)c;
  free(q->ns);
  free(q->arg);
  free(q);
}

static const cursor_kind query_kind = {query_chunk, query_destroy};

static query_cursor *query_new(const store_query *q, const char *arg) {
  query_cursor *qc = calloc(1, sizeof *qc);
  if (!qc)
    return NULL;
  qc->types = q->types;
  qc->min_relevance = q->min_relevance;
  if ((q->ns && !(qc->ns = strdup(q->ns))) || !(qc->arg = strdup(arg))) {
    free(qc->ns);
    free(qc);
    return NULL;
  }
  return qc;
}

int sqlite_stream_list(store *base, const store_query *q, engram_stream *s) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  /* Ids sort as text in creation order; "" precedes them all. */
  query_cursor *qc = query_new(q, q->after ? q->after : "");
  if (!qc)
    return ENGRAM_ENOMEM;
  qc->stmt_kind = q->ns ? RS_LIST_NS : RS_LIST_ALL;
  sqlite_cursor_attach(&qc->c, st, s, &query_kind);
  return 0;
}

int sqlite_stream_search(store *base, const store_query *q, engram_stream *s) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!q->ns || !q->text)
    return ENGRAM_EINVAL;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  char *match = NULL;
  size_t tokens = 0;
  if (sqlite_match_build(q->text, len, &match, &tokens) != 0)
    return ENGRAM_ENOMEM;
  query_cursor *qc = query_new(q, match ? match : "");
  free(match);
  if (!qc)
    return ENGRAM_ENOMEM;
  qc->stmt_kind = RS_SEARCH;
  qc->c.empty = tokens == 0; /* no word to look for: an empty stream */
  sqlite_cursor_attach(&qc->c, st, s, &query_kind);
  return 0;
}
