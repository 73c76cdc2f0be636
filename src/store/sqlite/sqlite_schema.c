/*
 * sqlite_schema.c — connections and the schema, on the thread pool: opening
 * the writer and the readers, the pragmas, and the forward migrations that
 * bring a file to SQ_SCHEMA_VERSION.
 *
 * The schema version lives in PRAGMA user_version. migrations[i] turns
 * version i into version i + 1; all the steps a file needs run in one
 * transaction, so a crash mid-way leaves the old version intact. A file of a
 * newer version is refused (ENGRAM_EVERSION) before anything is written to
 * it; a file that is not SQLite is ENGRAM_ECORRUPT, and so is an SQLite file
 * of another program (tables, but no engram version), which engram leaves
 * untouched.
 *
 * Schema v1. Memories are keyed by a text UUIDv7 id; the integer rowid
 * exists for FTS5, whose external-content index is kept in step by
 * triggers (an update re-indexes only when the content really changed).
 * Relationships are WITHOUT ROWID, keyed (source, target, kind), with an
 * index on target for the reverse direction. History rows outlive their
 * memory. Ids are unique across namespaces, so `id` alone finds a memory
 * and the namespace is checked alongside.
 *
 * Schema v2 (hybrid search) re-creates the full-text index: the porter
 * stemmer over unicode61 ("running" finds "run"), a second column holding
 * the text values of the metadata (a speaker, a session's date), and a
 * third holding the namespace as one token. The index is contentless: the
 * triggers compute the columns, and the migration fills it from the
 * memories.
 *
 * Schema v3 (vectors computed on write) records which embedder made each
 * vector (memories.embedder) and the database's vector space
 * (engram_meta 'embedder' = "NAME/DIM", see store.h), and the change
 * sequence a cache catches up with: ns_seq per namespace, memories.vseq
 * and the removed ids (store.h). Memories of older files keep vseq 0 and
 * no embedder until `engram reembed` gives them a vector.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/sqlite/sqlite_internal.h"

/* The row's namespace as one token ("n" and the hex of its bytes): a query
 * ANDs it with the words (sqlite_match_build_ns), so the index looks only
 * at the namespace's rows instead of every namespace's. */
#define SQ_NS_TAG(row) "('n' || hex(" row ".ns))"

static const char *const migrations[SQ_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE memories("
    "  rowid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  ns TEXT NOT NULL,"
    "  type INTEGER NOT NULL,"
    "  content TEXT NOT NULL,"
    "  content_hash INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  accessed_ms INTEGER NOT NULL,"
    "  importance REAL NOT NULL,"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  embedding BLOB,"
    "  embedding_dim INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX memories_ns_hash ON memories(ns, content_hash);"
    "CREATE INDEX memories_ns_id ON memories(ns, id);"
    "CREATE VIRTUAL TABLE memories_fts USING fts5(content,"
    "  content='memories', content_rowid='rowid',"
    "  tokenize='unicode61 remove_diacritics 2');"
    "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN"
    "  INSERT INTO memories_fts(rowid, content) VALUES (new.rowid, "
    "new.content);"
    "END;"
    "CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN"
    "  INSERT INTO memories_fts(memories_fts, rowid, content)"
    "    VALUES ('delete', old.rowid, old.content);"
    "END;"
    "CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories"
    "  WHEN old.content IS NOT new.content BEGIN"
    "  INSERT INTO memories_fts(memories_fts, rowid, content)"
    "    VALUES ('delete', old.rowid, old.content);"
    "  INSERT INTO memories_fts(rowid, content) VALUES (new.rowid, "
    "new.content);"
    "END;"
    "CREATE TABLE relationships("
    "  ns TEXT NOT NULL,"
    "  source TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  strength REAL NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (source, target, kind)) WITHOUT ROWID;"
    "CREATE INDEX relationships_target ON relationships(target);"
    "CREATE TABLE history("
    "  seq INTEGER PRIMARY KEY,"
    "  memory_id TEXT NOT NULL,"
    "  ns TEXT NOT NULL,"
    "  event INTEGER NOT NULL,"
    "  old_content TEXT,"
    "  new_content TEXT,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX history_memory ON history(memory_id, seq);",
    /* 1 -> 2: the full-text index stems (porter) and has a second column,
     * the metadata's text values; it holds no copy of the text
     * (contentless), so the triggers give it the old values to delete. */
    "DROP TRIGGER memories_fts_insert;"
    "DROP TRIGGER memories_fts_delete;"
    "DROP TRIGGER memories_fts_update;"
    "DROP TABLE memories_fts;"
    "CREATE VIRTUAL TABLE memories_fts USING fts5(content, meta, ns_tag,"
    "  content='', tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN"
    "  INSERT INTO memories_fts(rowid, content, meta, ns_tag) VALUES"
    "  (new.rowid, new.content, " SQ_META_TEXT("new") ", " SQ_NS_TAG("new")
    ");"
    "END;"
    "CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN"
    "  INSERT INTO memories_fts(memories_fts, rowid, content, meta, ns_tag)"
    "    VALUES ('delete', old.rowid, old.content, " SQ_META_TEXT("old")
    ", " SQ_NS_TAG("old") ");"
    "END;"
    "CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, metadata, ns"
    "  ON memories WHEN old.content IS NOT new.content"
    "  OR old.metadata IS NOT new.metadata OR old.ns IS NOT new.ns BEGIN"
    "  INSERT INTO memories_fts(memories_fts, rowid, content, meta, ns_tag)"
    "    VALUES ('delete', old.rowid, old.content, " SQ_META_TEXT("old")
    ", " SQ_NS_TAG("old") ");"
    "  INSERT INTO memories_fts(rowid, content, meta, ns_tag) VALUES"
    "  (new.rowid, new.content, " SQ_META_TEXT("new") ", " SQ_NS_TAG("new")
    ");"
    "END;"
    "INSERT INTO memories_fts(rowid, content, meta, ns_tag)"
    "  SELECT rowid, content, " SQ_META_TEXT("memories") ", "
    SQ_NS_TAG("memories") " FROM memories;",
    /* 2 -> 3: vectors on write, and the change sequence. A vector stored
     * before this version has no embedder: it is the caller's. */
    "ALTER TABLE memories ADD COLUMN embedder TEXT;"
    "ALTER TABLE memories ADD COLUMN vseq INTEGER NOT NULL DEFAULT 0;"
    "UPDATE memories SET embedder = 'client' WHERE embedding IS NOT NULL;"
    "CREATE INDEX memories_ns_vseq ON memories(ns, vseq, id);"
    "CREATE TABLE ns_seq(ns TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE removed(ns TEXT NOT NULL, id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL);"
    "CREATE INDEX removed_ns_seq ON removed(ns, seq);"
    "CREATE TABLE engram_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    "  WITHOUT ROWID;",
};

/* Creates the directory that will hold path, one level, when missing. */
static int make_parent(const char *path, char *msg, size_t msglen) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return 0;
  char dir[4096];
  size_t n = (size_t)(slash - path);
  if (n >= sizeof dir)
    return 0; /* let sqlite3_open report the unusable path */
  memcpy(dir, path, n);
  dir[n] = '\0';
  if (mkdir(dir, 0777) == 0 || errno == EEXIST)
    return 0;
  int err = errno;
  snprintf(msg, msglen, "cannot create directory %s for the database: %s", dir,
           strerror(err));
  return ENGRAM_EIO;
}

static int exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* One integer from a one-row statement (a pragma, a count). */
static int query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out) {
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(stmt, 0);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int open_failed(sqlite3 *db, int rc, const char *path, char *msg,
                       size_t msglen) {
  int code = sqlite_code(rc);
  const char *why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (code == ENGRAM_ECORRUPT)
    snprintf(msg, msglen,
             "%s is not an engram database: it is not an SQLite file, or it "
             "is damaged (%s)",
             path, why);
  else if (code == ENGRAM_EBUSY)
    snprintf(msg, msglen,
             "database %s is locked by another process (%s); try again when "
             "it is done",
             path, why);
  else
    snprintf(msg, msglen, "cannot open database %s: %s", path, why);
  return code;
}

/* Brings the writer's file to the current schema, in one transaction. */
static int migrate(sqlite_store *st, sqlite3 *db, char *msg, size_t msglen) {
  sqlite3_int64 version = 0;
  int rc = exec(db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    return open_failed(db, rc, st->path, msg, msglen);
  /* Read again inside the transaction: another process may have migrated
   * the file since we looked. */
  rc = query_int(db, "PRAGMA user_version", &version);
  if (rc != SQLITE_OK)
    goto failed;
  if (version > SQ_SCHEMA_VERSION) {
    exec(db, "ROLLBACK");
    snprintf(msg, msglen,
             "database %s has schema version %lld; this engram supports up "
             "to %d: upgrade engram",
             st->path, (long long)version, SQ_SCHEMA_VERSION);
    return ENGRAM_EVERSION;
  }
  if (version == 0) {
    sqlite3_int64 objects = 0;
    rc = query_int(db,
                   "SELECT count(*) FROM sqlite_master "
                   "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                   &objects);
    if (rc != SQLITE_OK)
      goto failed;
    if (objects > 0) {
      exec(db, "ROLLBACK");
      snprintf(msg, msglen,
               "%s is an SQLite database of another program (it has tables "
               "but no engram schema version); engram leaves it untouched",
               st->path);
      return ENGRAM_ECORRUPT;
    }
  }
  for (sqlite3_int64 v = version; v < SQ_SCHEMA_VERSION; v++) {
    rc = exec(db, migrations[v]);
    if (rc != SQLITE_OK)
      goto failed;
  }
  char set[64];
  snprintf(set, sizeof set, "PRAGMA user_version = %d", SQ_SCHEMA_VERSION);
  rc = exec(db, set);
  if (rc != SQLITE_OK)
    goto failed;
  rc = exec(db, "COMMIT");
  if (rc != SQLITE_OK)
    goto failed;
  return 0;
failed:;
  int code = sqlite_code(rc);
  snprintf(msg, msglen, "cannot bring %s to schema version %d: %s", st->path,
           SQ_SCHEMA_VERSION, sqlite3_errmsg(db));
  exec(db, "ROLLBACK");
  return code;
}

/* The database's vector space into st->head.space ("" when none). */
static int read_space(sqlite_store *st, char *msg, size_t msglen) {
  sqlite3_stmt *stmt = NULL;
  st->head.space[0] = '\0';
  int rc = sqlite3_prepare_v2(
      st->writer, "SELECT value FROM engram_meta WHERE key = 'embedder'", -1,
      &stmt, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *v = (const char *)sqlite3_column_text(stmt, 0);
    snprintf(st->head.space, sizeof st->head.space, "%s", v ? v : "");
  }
  sqlite3_finalize(stmt);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return 0;
  snprintf(msg, msglen, "cannot read the embedder of %s: %s", st->path,
           sqlite3_errmsg(st->writer));
  int code = sqlite_code(rc);
  sqlite3_close_v2(st->writer);
  st->writer = NULL;
  return code;
}

static int open_writer(sqlite_store *st, char *msg, size_t msglen) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(
      st->path, &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    int code = open_failed(db, rc, st->path, msg, msglen);
    sqlite3_close(db);
    return code;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS);

  /* The version first, before anything changes the file. */
  sqlite3_int64 version = 0;
  rc = query_int(db, "PRAGMA user_version", &version);
  if (rc != SQLITE_OK) {
    int code = open_failed(db, rc, st->path, msg, msglen);
    sqlite3_close(db);
    return code;
  }
  if (version > SQ_SCHEMA_VERSION) {
    snprintf(msg, msglen,
             "database %s has schema version %lld; this engram supports up "
             "to %d: upgrade engram",
             st->path, (long long)version, SQ_SCHEMA_VERSION);
    sqlite3_close(db);
    return ENGRAM_EVERSION;
  }
  const char *sync = st->durability == ENGRAM_DURABILITY_FULL
                         ? "PRAGMA synchronous = FULL"
                         : "PRAGMA synchronous = NORMAL";
  /* temp_store = MEMORY: each batch of a group commit runs in a SAVEPOINT
   * whose sub-journal would otherwise spill to a temporary file past 64 KiB
   * (13 page writes per ADD measured, against 1.3 in memory); the cost is
   * the pages one batch touches, held in memory until it is released. */
  if ((rc = exec(db, "PRAGMA journal_mode = WAL")) != SQLITE_OK ||
      (rc = exec(db, sync)) != SQLITE_OK ||
      (rc = exec(db, "PRAGMA temp_store = MEMORY")) != SQLITE_OK) {
    int code = open_failed(db, rc, st->path, msg, msglen);
    sqlite3_close(db);
    return code;
  }
  if (version < SQ_SCHEMA_VERSION) {
    int code = migrate(st, db, msg, msglen);
    if (code != 0) {
      sqlite3_close(db);
      return code;
    }
  }
  st->writer = db;
  return read_space(st, msg, msglen);
}

static int open_readers(sqlite_store *st, char *msg, size_t msglen) {
  st->free_readers = NULL;
  for (unsigned i = st->nreaders; i-- > 0;) {
    sqlite_reader *rd = &st->readers[i];
    memset(rd, 0, sizeof *rd);
    int rc = sqlite3_open_v2(st->path, &rd->db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
      int code = open_failed(rd->db, rc, st->path, msg, msglen);
      sqlite3_close(rd->db);
      rd->db = NULL;
      return code;
    }
    sqlite3_extended_result_codes(rd->db, 1);
    sqlite3_busy_timeout(rd->db, SQ_BUSY_TIMEOUT_MS);
    /* Reads through the OS page cache, mapped, instead of a read() into
     * a 2 MB per-connection cache for every page a search touches: at
     * 100k memories hybrid search's p50 fell by about a third
     * (docs/benchmarks.md, bench_search). Address space, not memory. */
    sqlite3_exec(rd->db, "PRAGMA mmap_size = " SQ_READER_MMAP, NULL, NULL,
                 NULL);
    rc = sqlite_rank_register(rd->db);
    if (rc != SQLITE_OK) {
      snprintf(msg, msglen, "cannot register the ranking function: %s",
               sqlite3_errstr(rc));
      return ENGRAM_EIO;
    }
    rd->next_free = st->free_readers;
    st->free_readers = rd;
  }
  return 0;
}

int sqlite_schema_open(sqlite_store *st, char *msg, size_t msglen) {
  int code = make_parent(st->path, msg, msglen);
  if (code != 0)
    return code;
  code = open_writer(st, msg, msglen);
  if (code != 0)
    return code;
  code = open_readers(st, msg, msglen);
  if (code != 0)
    sqlite_schema_close_all(st);
  return code;
}

void sqlite_schema_close_all(sqlite_store *st) {
  /* Readers first: the writer, closing last, checkpoints the WAL into the
   * database and removes it. */
  for (unsigned i = 0; i < st->nreaders; i++) {
    sqlite_reader *rd = &st->readers[i];
    for (int k = 0; k < RS_COUNT; k++) {
      sqlite3_finalize(rd->stmt[k]);
      rd->stmt[k] = NULL;
    }
    sqlite_terms_free(rd->terms);
    rd->terms = NULL;
    sqlite3_close_v2(rd->db);
    rd->db = NULL;
  }
  st->free_readers = NULL;
  sqlite_writer_finalize(st);
  sqlite3_close_v2(st->writer);
  st->writer = NULL;
}
