/*
 * sqlite_pool.c — the reader pool: read-only connections lent to one
 * operation at a time, and the statements each connection keeps.
 *
 * Acquiring happens on the loop. A free reader is returned at once;
 * otherwise the request joins a FIFO queue of reader_wait records and its
 * `granted` callback runs, on the loop, when a reader comes back. No thread
 * ever waits for a connection. An operation holds its reader from its first
 * chunk to its last (a paused stream keeps its statement, and therefore its
 * reader, between chunks); on release every statement of the connection is
 * reset and unbound, so the next holder starts with no open read
 * transaction and no pointer into the previous holder's memory.
 *
 * Statements are prepared lazily, on the thread that holds the reader, and
 * kept (SQLITE_PREPARE_PERSISTENT) until the store closes.
 */
#include "store/sqlite/sqlite_internal.h"

/* The vectors operation's page, in four forms of the same columns (the
 * vector's three NULL when no vector is read; the indexed text after
 * them when the terms are), so that one decoder reads them all. */
#define VEC_PAGE_SQL(columns)                                                  \
  "SELECT id, vseq, type, " columns " FROM memories"                           \
  " WHERE ns = ?1 AND (vseq, id) > (?2, ?3)"                                   \
  " ORDER BY vseq, id LIMIT ?4"
#define VEC_COLUMNS "embedder, embedding_dim, embedding"
#define NO_VEC_COLUMNS "NULL, NULL, NULL"
#define TEXT_COLUMNS ", content, " SQ_META_TEXT("memories")

static const char *const reader_sql[RS_COUNT] = {
    [RS_GET_NS] = "SELECT " SQ_NODE_COLUMNS
                  " FROM memories m WHERE m.id = ?1 AND m.ns = ?2",
    [RS_GET_ANY] = "SELECT " SQ_NODE_COLUMNS " FROM memories m WHERE m.id = ?1",
    [RS_HISTORY] = "SELECT event, old_content, new_content, at_ms FROM history"
                   " WHERE memory_id = ?1 AND ns = ?2 ORDER BY seq",
    [RS_RELS] = "SELECT source, target, kind, strength, created_ms"
                " FROM relationships WHERE source = ?1 AND ns = ?2"
                " UNION ALL "
                "SELECT source, target, kind, strength, created_ms"
                " FROM relationships WHERE target = ?1 AND source <> ?1"
                " AND ns = ?2",
    [RS_LIST_NS] = "SELECT " SQ_NODE_COLUMNS
                   " FROM memories m WHERE m.ns = ?1 AND m.id > ?2"
                   " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                   " ORDER BY m.ns, m.id",
    [RS_LIST_ALL] = "SELECT " SQ_NODE_COLUMNS " FROM memories m WHERE m.id > ?2"
                    " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                    " ORDER BY m.id",
    /* rank is engram_rank() (sqlite_rank.c): negative, lower is better. */
    [RS_SEARCH] = "SELECT " SQ_NODE_COLUMNS ", memories_fts.rank"
                  " FROM memories_fts JOIN memories m"
                  " ON m.rowid = memories_fts.rowid"
                  " WHERE memories_fts MATCH ?1"
                  " AND memories_fts.rank MATCH 'engram_rank()' AND m.ns = ?2"
                  " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                  " ORDER BY memories_fts.rank",
    [RS_NEIGHBOURS] = "SELECT target FROM relationships"
                      " WHERE source = ?1 AND ns = ?2 AND strength >= ?3"
                      " UNION ALL "
                      "SELECT source FROM relationships"
                      " WHERE target = ?1 AND ns = ?2 AND strength >= ?3",
    /* ?1 is an expression of sqlite_match_build_groups whose first ?5
     * phrases are filters, ?6 the document counts of the others; the
     * matches' term frequencies go to the sink ?7 (engram_rank gives
     * NULL), at most ?8 of them, the newest (FTS5 walks rowids backwards,
     * no sort); sqlite_candidates.c ranks them. */
#define CAND_HITS_SQL(order)                                                   \
  "SELECT engram_rank(memories_fts, ?2, ?3, ?4, ?5, ?6, ?7)"                   \
  " FROM memories_fts WHERE memories_fts MATCH ?1" order " LIMIT ?8"
    [RS_CAND_HITS] = CAND_HITS_SQL(" ORDER BY rowid DESC"),
    /* The same in FTS5's own order (forwards, cheaper), every match. */
    [RS_CAND_HITS_ALL] = CAND_HITS_SQL(""),
    [RS_CAND_BEFORE] = "SELECT m.rowid, m.id FROM memories m"
                       " WHERE m.ns = ?1 AND m.id < ?2"
                       " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                       " ORDER BY m.ns DESC, m.id DESC LIMIT ?4",
    [RS_CAND_AFTER] = "SELECT m.rowid, m.id FROM memories m"
                      " WHERE m.ns = ?1 AND m.id > ?2"
                      " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                      " ORDER BY m.ns, m.id LIMIT ?4",
    /* SQ_NODE_COLUMNS, with the vector only when ?2 */
    [RS_CAND_NODES] =
        "SELECT m.rowid, m.id, m.ns, m.type, m.content, m.content_hash,"
        " m.created_ms, m.updated_ms, m.accessed_ms, m.importance, m.metadata,"
        " CASE WHEN ?2 THEN m.embedding END, m.embedding_dim, m.embedder"
        " FROM memories m WHERE m.rowid IN (SELECT value FROM json_each(?1))",
    /* the vocabulary table sqlite_terms_open makes on the connection */
    [RS_TERM_DF] = "SELECT doc FROM temp.engram_vocab WHERE term = ?1",
    [RS_DATA_VERSION] = "PRAGMA data_version",
    /* 1 when ?1 is the only namespace (two index seeks; min() and max()
     * in one SELECT would scan) */
    [RS_NS_ALONE] = "SELECT (SELECT min(ns) FROM memories) IS ?1"
                    " AND (SELECT max(ns) FROM memories) IS ?1",
    /* one varint per column (content, meta, ns_tag), FTS5's format */
    [RS_DOCSIZE] = "SELECT sz FROM memories_fts_docsize WHERE id = ?1",
    [RS_CAND_ROW] = "SELECT id, type FROM memories WHERE rowid = ?1"
                    " AND ns = ?2",
    [RS_CAND_IDS] = "SELECT m.rowid, m.id, m.type FROM memories m"
                    " WHERE m.id IN (SELECT value FROM json_each(?1))"
                    " AND m.ns = ?2 AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)",
    /* The vector index's catch-up (sqlite_vectors.c); the page walks the
     * index memories_ns_vseq(ns, vseq, id) from a row value. */
    [RS_VEC_SEQ] = "SELECT seq FROM ns_seq WHERE ns = ?1",
    [RS_VEC_PAGE] = VEC_PAGE_SQL(VEC_COLUMNS),
    [RS_VEC_PAGE_NOVEC] = VEC_PAGE_SQL(NO_VEC_COLUMNS),
    [RS_VEC_PAGE_TERMS] = VEC_PAGE_SQL(VEC_COLUMNS TEXT_COLUMNS),
    [RS_VEC_PAGE_TERMS_NOVEC] = VEC_PAGE_SQL(NO_VEC_COLUMNS TEXT_COLUMNS),
    [RS_VEC_REMOVED] = "SELECT id FROM removed WHERE ns = ?1 AND seq > ?2",
};

sqlite3_stmt *sqlite_reader_stmt(sqlite_reader *rd, reader_stmt_kind kind,
                                 int *rc) {
  if (!rd->stmt[kind]) {
    *rc = sqlite3_prepare_v3(rd->db, reader_sql[kind], -1,
                             SQLITE_PREPARE_PERSISTENT, &rd->stmt[kind], NULL);
    if (*rc != SQLITE_OK) {
      sqlite3_finalize(rd->stmt[kind]);
      rd->stmt[kind] = NULL;
      return NULL;
    }
  }
  *rc = SQLITE_OK;
  return rd->stmt[kind];
}

void sqlite_reader_reset(sqlite_reader *rd) {
  for (int k = 0; k < RS_COUNT; k++)
    if (rd->stmt[k]) {
      sqlite3_reset(rd->stmt[k]);
      sqlite3_clear_bindings(rd->stmt[k]);
    }
}

sqlite_reader *sqlite_reader_acquire(sqlite_store *st, reader_wait *w,
                                     void (*granted)(reader_wait *,
                                                     sqlite_reader *)) {
  sqlite_reader *rd = st->free_readers;
  if (rd && !st->wait_head) {
    st->free_readers = rd->next_free;
    rd->next_free = NULL;
    st->readers_held++;
    return rd;
  }
  w->granted = granted;
  w->next = NULL;
  w->prev = st->wait_tail;
  if (st->wait_tail)
    st->wait_tail->next = w;
  else
    st->wait_head = w;
  st->wait_tail = w;
  w->queued = 1;
  return NULL;
}

void sqlite_reader_unwait(sqlite_store *st, reader_wait *w) {
  if (!w->queued)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    st->wait_head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    st->wait_tail = w->prev;
  w->prev = w->next = NULL;
  w->queued = 0;
}

void sqlite_reader_release(sqlite_store *st, sqlite_reader *rd) {
  /* Resetting ends the holder's read transaction: a WAL read lock, no I/O
   * that can block. */
  sqlite_reader_reset(rd);
  reader_wait *w = st->wait_head;
  if (w) {
    /* Handed over as is: still held, readers_held unchanged. */
    sqlite_reader_unwait(st, w);
    w->granted(w, rd);
    return;
  }
  rd->next_free = st->free_readers;
  st->free_readers = rd;
  st->readers_held--;
  sqlite_maybe_close(st);
}

/* ------------------------------------------------------ one-task reads */

static void read_task_run(rt_work *w) {
  sqlite_read_task *t = SQ_CONTAINER(w, sqlite_read_task, work);
  t->run(t);
}

static void read_task_after(rt_work *w, int status) {
  sqlite_read_task *t = SQ_CONTAINER(w, sqlite_read_task, work);
  sqlite_store *st = t->st;
  sqlite_task_returned(st);
  t->running = 0;
  st->head.queries_running--;
  if (t->rd) {
    sqlite_reader_release(st, t->rd);
    t->rd = NULL;
  }
  /* status: UV_ECANCELED when the queued task was withdrawn */
  t->done(t, status != 0 || t->cancelled ? ENGRAM_ECANCELED : 0);
  sqlite_maybe_close(st);
}

static int read_task_offload(sqlite_read_task *t) {
  t->running = 1;
  t->st->head.queries_running++;
  int rc = sqlite_offload(t->st, &t->work, read_task_run, read_task_after);
  if (rc != 0) {
    t->running = 0;
    t->st->head.queries_running--;
  }
  return rc;
}

static void read_task_granted(reader_wait *w, sqlite_reader *rd) {
  sqlite_read_task *t = SQ_CONTAINER(w, sqlite_read_task, wait);
  t->rd = rd;
  if (read_task_offload(t) != 0) {
    /* Called from another operation's callback: calling back here is not
     * inside the start function. */
    sqlite_reader_release(t->st, rd);
    t->rd = NULL;
    t->done(t, ENGRAM_ENOMEM);
  }
}

int sqlite_read_task_start(sqlite_read_task *t, int reader) {
  atomic_init(&t->stop, 0);
  t->running = t->cancelled = 0;
  t->rd = NULL;
  if (!reader)
    return read_task_offload(t) != 0 ? ENGRAM_ENOMEM : 0;
  t->rd = sqlite_reader_acquire(t->st, &t->wait, read_task_granted);
  if (t->rd && read_task_offload(t) != 0) {
    sqlite_reader_release(t->st, t->rd);
    t->rd = NULL;
    return ENGRAM_ENOMEM;
  }
  return 0;
}

void sqlite_read_task_cancel(sqlite_read_task *t) {
  if (t->cancelled)
    return;
  t->cancelled = 1;
  atomic_store(&t->stop, 1);
  if (t->running) {
    /* A queued task is dropped by libuv (read_task_after gets
     * UV_ECANCELED); a running one stops at its next statement or inside
     * this one. */
    if (uv_cancel((uv_req_t *)&t->work.req) != 0 && t->rd)
      sqlite3_interrupt(t->rd->db);
    return;
  }
  /* Waiting for a reader: leave the queue, and call back from a task that
   * sees the stop flag and does nothing. */
  sqlite_reader_unwait(t->st, &t->wait);
  if (read_task_offload(t) != 0)
    /* Cannot happen with libuv's queue (it never fails to queue); kept
     * safe: the request stays cancelled and is freed at close. */
    rt_log(t->st->head.rt, ENGRAM_LOG_ERROR,
           "cannot finish a cancelled %s: out of memory", t->what);
}
