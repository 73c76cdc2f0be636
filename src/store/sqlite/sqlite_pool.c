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
    /* score is negative (engram_rank), lower is better; ?1 starts with
     * the namespace tag (sqlite_match_build_ns), not scored. */
    [RS_CAND_HITS] = "SELECT m.rowid, m.id,"
                     " engram_rank(memories_fts, ?4, ?5, ?6, 1) AS score"
                     " FROM memories_fts JOIN memories m"
                     " ON m.rowid = memories_fts.rowid"
                     " WHERE memories_fts MATCH ?1 AND m.ns = ?2"
                     " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                     " ORDER BY score LIMIT ?7",
    [RS_CAND_BEFORE] = "SELECT m.rowid, m.id FROM memories m"
                       " WHERE m.ns = ?1 AND m.id < ?2"
                       " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                       " ORDER BY m.ns DESC, m.id DESC LIMIT ?4",
    [RS_CAND_AFTER] = "SELECT m.rowid, m.id FROM memories m"
                      " WHERE m.ns = ?1 AND m.id > ?2"
                      " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
                      " ORDER BY m.ns, m.id LIMIT ?4",
    [RS_CAND_NODES] = "SELECT m.rowid, " SQ_NODE_COLUMNS
                      " FROM memories m WHERE m.rowid IN"
                      " (SELECT value FROM json_each(?1))",
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
