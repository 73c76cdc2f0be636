/*
 * pg_schema.c — the PostgreSQL schema and its forward migrations, run as
 * exchanges on the writer connection while the store opens.
 *
 * The version lives in a one-row table engram_schema(version). Everything
 * happens in one transaction that first takes a transaction-scoped advisory
 * lock with a fixed key, so two processes opening the same database at once
 * serialise: the second reads the version only after the first committed,
 * and finds nothing left to do. steps[i] turns version i into i + 1; all
 * the steps a database needs run before the COMMIT, so a failure leaves the
 * old version intact (the pool rolls back a connection released inside a
 * transaction).
 *
 * A database of a newer version is refused (ENGRAM_EVERSION) before
 * anything changes. Tables named like engram's (memories, relationships,
 * history) with no engram_schema beside them belong to another program:
 * ENGRAM_ECORRUPT, and they are left untouched.
 *
 * Schema v2 (vectors computed on write) mirrors SQLite's v3: which
 * embedder made each vector, the database's vector space (engram_meta),
 * the per-namespace change sequence (ns_seq, memories.vseq, removed); see
 * store.h. The writer bumps ns_seq's row inside each transaction, so
 * writers of one namespace serialize on that row and a sequence number is
 * visible only once everything before it is.
 *
 * Names are unqualified, so the connection's search_path decides where the
 * tables live: `options=-csearch_path=X` in the connection string puts an
 * instance in schema X (which must exist).
 *
 * Schema v1 mirrors SQLite's (sqlite_schema.c) column for column: ids are
 * uuid, the content hash is XXH3-64 stored as a signed bigint, times are
 * Unix milliseconds, the embedding is float32 little-endian bytes.
 *
 * Full-text search matches SQLite's v2 index (porter unicode61
 * remove_diacritics 2, content and metadata values): memories.tsv, a
 * generated tsvector under a GIN index, is engram_tsv(content, metadata,
 * config): the content at weight A and the metadata object's top-level
 * string values at weight B (so BM25 can count a word found in the
 * metadata apart from one in the content), ASCII punctuation turned into
 * spaces first (so "a.b", "x@y.z", URLs and paths split into the words
 * core_tokenize makes of a query, where PostgreSQL's parser would keep
 * them whole). The configuration engram_text maps every kind of token
 * through `unaccent` (accents folded: "cafe" finds "café") then
 * engram_stem, the English snowball stemmer with no stop words (FTS5's
 * porter keeps every word too; engram drops stop words from queries
 * itself). Search parses query words with the same configuration
 * (PG_TS_CONFIG), so they fold and stem alike.
 *
 * Where things live: the configuration, the stemmer and engram_tsv in the
 * schema of the tables (the search_path's), so that dropping an instance's
 * schema drops them with it; the unaccent extension in schema public,
 * shared by every instance of the database, where dropping one instance
 * cannot take it away from the others (the configuration refers to its
 * dictionary wherever an earlier install put it). unaccent is a trusted
 * extension (PostgreSQL 13+): the database owner may create it. When it
 * cannot be created, the open fails and says how to install it: a
 * fallback without accent folding would make search quietly differ from
 * SQLite's, database by database. The generated column names the
 * configuration as a constant (an OID fixed at CREATE TABLE), so writes do
 * not depend on the search_path of the session, and engram_tsv uses only
 * built-in functions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

/* "engram01" read as a 64-bit integer: one lock for every engram schema of
 * a database (migrations are rare and short). */
#define SCHEMA_LOCK_KEY "7308604897068083249"

/* ASCII punctuation, and as many spaces: what engram_tsv blanks out before
 * parsing (core_tokenize splits words at each of these). */
#define PUNCTUATION "'!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~'"
#define PUNCTUATION_SPACES "'                                '"
/* Every token type of the default parser that holds letters or digits. */
#define WORD_TOKENS                                                            \
  "asciiword, word, numword, asciihword, hword, numhword, hword_asciipart,"    \
  " hword_part, hword_numpart, email, protocol, url, host, url_path, file,"    \
  " sfloat, float, int, uint, version"

/* The command of v1 that creates the extension: its failure gets a
 * message of its own. */
#define V1_EXTENSION_CMD 0

static const char *const v1[] = {
    [V1_EXTENSION_CMD] = "CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public",
    "CREATE TEXT SEARCH DICTIONARY engram_stem"
    " (TEMPLATE = snowball, Language = english)",
    "CREATE TEXT SEARCH CONFIGURATION engram_text (PARSER = default)",
    /* The dictionary is named by the extension's schema, wherever it is. */
    "DO $$BEGIN EXECUTE format('ALTER TEXT SEARCH CONFIGURATION engram_text"
    " ADD MAPPING FOR " WORD_TOKENS " WITH %I.unaccent, engram_stem',"
    " (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n"
    " ON n.oid = e.extnamespace WHERE e.extname = 'unaccent')); END$$",
    /* A metadata string "\u0000" has no text value: it is left out of
     * the words rather than failing the write. */
    "CREATE FUNCTION engram_tsv(content text, metadata text, config regconfig)"
    " RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$"
    " SELECT setweight(to_tsvector(config, translate(content,"
    " " PUNCTUATION ", " PUNCTUATION_SPACES ")), 'A') ||"
    " setweight(to_tsvector(config, translate(coalesce(("
    "  SELECT string_agg(e.value #>> '{}', ' ') FROM json_each(CASE"
    "   WHEN json_typeof(j.doc) = 'object' THEN j.doc ELSE '{}' END) e"
    "  WHERE json_typeof(e.value) = 'string'), ''),"
    " " PUNCTUATION ", " PUNCTUATION_SPACES ")), 'B')"
    " FROM (SELECT replace(metadata, '\\u0000', '')::json AS doc) j $$",
    "CREATE TABLE memories("
    " id uuid PRIMARY KEY,"
    " ns text NOT NULL,"
    " type smallint NOT NULL,"
    " content text NOT NULL,"
    " content_hash bigint NOT NULL,"
    " created_ms bigint NOT NULL,"
    " updated_ms bigint NOT NULL,"
    " accessed_ms bigint NOT NULL,"
    " importance double precision NOT NULL,"
    " metadata text NOT NULL DEFAULT '{}',"
    " embedding bytea,"
    " embedding_dim integer NOT NULL DEFAULT 0,"
    " tsv tsvector GENERATED ALWAYS AS"
    " (engram_tsv(content, metadata, 'engram_text'::regconfig)) STORED)",
    "CREATE INDEX memories_tsv ON memories USING gin (tsv)",
    "CREATE INDEX memories_ns_hash ON memories (ns, content_hash)",
    "CREATE INDEX memories_ns_id ON memories (ns, id)",
    "CREATE TABLE relationships("
    " ns text NOT NULL,"
    " source uuid NOT NULL,"
    " target uuid NOT NULL,"
    " kind text NOT NULL,"
    " strength double precision NOT NULL,"
    " created_ms bigint NOT NULL,"
    " PRIMARY KEY (source, target, kind))",
    "CREATE INDEX relationships_target ON relationships (target)",
    "CREATE TABLE history("
    " seq bigserial PRIMARY KEY,"
    " memory_id uuid NOT NULL,"
    " ns text NOT NULL,"
    " event smallint NOT NULL,"
    " old_content text,"
    " new_content text,"
    " at_ms bigint NOT NULL)",
    "CREATE INDEX history_memory ON history (memory_id, seq)",
};

static const char *const v2[] = {
    "ALTER TABLE memories ADD COLUMN embedder text",
    "ALTER TABLE memories ADD COLUMN vseq bigint NOT NULL DEFAULT 0",
    "UPDATE memories SET embedder = 'client' WHERE embedding IS NOT NULL",
    "CREATE INDEX memories_ns_vseq ON memories (ns, vseq, id)",
    "CREATE TABLE ns_seq(ns text PRIMARY KEY, seq bigint NOT NULL)",
    "CREATE TABLE removed(ns text NOT NULL, id uuid NOT NULL,"
    " seq bigint NOT NULL)",
    "CREATE INDEX removed_ns_seq ON removed (ns, seq)",
    "CREATE TABLE engram_meta(key text PRIMARY KEY, value text NOT NULL)",
};

static const struct {
  const char *const *sql;
  size_t n;
} steps[PG_SCHEMA_VERSION] = {
    {v1, sizeof v1 / sizeof v1[0]}, /* 0 -> 1 */
    {v2, sizeof v2 / sizeof v2[0]}, /* 1 -> 2 */
};

enum { P_PROBE, P_VERSION, P_APPLY, P_COMMIT };

/* The database's vector space (store.h), read as the open finishes. */
#define SPACE_SQL "SELECT value FROM engram_meta WHERE key = 'embedder'"

struct pg_migrate {
  pg_exchange ex;
  pg_store *st;
  pg_conn *c;
  void (*cb)(pg_store *st, int status, const char *msg);
  int phase;
  int status; /* the first failure */
  char msg[PG_MSG_LEN];
  /* what the probe found */
  int has_schema_dir; /* the search_path names an existing schema */
  int has_version_table;
  const char *foreign; /* an engram table name without engram_schema */
  /* what engram_schema holds */
  int rows;
  long version;
  /* the command number of the unaccent extension's creation in the
   * P_APPLY exchange, or -1 */
  long extension_cmd;
  long space_cmd; /* the command reading the vector space, or -1 */
};

static void finish(pg_migrate *m, int status, const char *msg) {
  void (*cb)(pg_store *, int, const char *) = m->cb;
  pg_store *st = m->st;
  char copy[PG_MSG_LEN];
  snprintf(copy, sizeof copy, "%s", msg ? msg : "");
  free(m);
  cb(st, status, status ? copy : NULL);
}

/* Remembers the first failure of the running phase. */
static void failed(pg_migrate *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void failed(pg_migrate *m, int status, const char *fmt, ...) {
  if (m->status)
    return;
  m->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->msg, sizeof m->msg, fmt, ap);
  va_end(ap);
}

static int yes(const PGresult *res, int col) {
  return !PQgetisnull(res, 0, col) && PQgetvalue(res, 0, col)[0] == 't';
}

static void on_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  pg_migrate *m = ex->data;
  if (!pg_result_ok(res) && m->phase == P_APPLY &&
      (long)cmd == m->extension_cmd &&
      PQresultStatus(res) != PGRES_PIPELINE_ABORTED) {
    const char *why = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    failed(m, ENGRAM_EIO,
           "PostgreSQL database %s: engram needs the unaccent extension "
           "(accent-insensitive search) and cannot create it (%s); run "
           "CREATE EXTENSION unaccent SCHEMA public as the database owner or "
           "a superuser (the server needs PostgreSQL's contrib modules)",
           m->st->server, why ? why : "no reason given");
    return;
  }
  if (!pg_result_ok(res)) {
    char what[224];
    snprintf(what, sizeof what,
             "cannot bring PostgreSQL database %s to engram schema version %d",
             m->st->server, PG_SCHEMA_VERSION);
    char msg[PG_MSG_LEN];
    int code = pg_result_fail(res, what, msg, sizeof msg);
    failed(m, code, "%s", msg);
    return;
  }
  if (m->phase == P_PROBE && cmd == 2 && PQntuples(res) == 1 &&
      PQnfields(res) == 5) {
    static const char *const tables[] = {"memories", "relationships",
                                         "history"};
    m->has_schema_dir = yes(res, 0);
    m->has_version_table = yes(res, 1);
    for (int i = 0; i < 3 && !m->foreign; i++)
      if (yes(res, 2 + i))
        m->foreign = tables[i];
  } else if ((m->phase == P_APPLY || m->phase == P_COMMIT) &&
             (long)cmd == m->space_cmd) {
    m->st->head.space[0] = '\0';
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
      snprintf(m->st->head.space, sizeof m->st->head.space, "%s",
               PQgetvalue(res, 0, 0));
  } else if (m->phase == P_VERSION && cmd == 0) {
    m->rows = PQntuples(res);
    if (m->rows == 1 && !PQgetisnull(res, 0, 0))
      m->version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    else
      m->rows = 0; /* a NULL version is no version */
  }
}

static void run_phase(pg_migrate *m);

static void on_done(pg_exchange *ex, int status, const char *msg) {
  pg_migrate *m = ex->data;
  if (status != 0) {
    finish(m, status, msg);
    return;
  }
  if (m->status) {
    finish(m, m->status, m->msg);
    return;
  }
  const char *server = m->st->server;
  switch (m->phase) {
  case P_PROBE:
    if (!m->has_schema_dir) {
      failed(m, ENGRAM_EIO,
             "PostgreSQL database %s: the search_path names no schema that "
             "exists, so engram has nowhere to create its tables; create the "
             "schema first",
             server);
      break;
    }
    if (m->has_version_table) {
      m->phase = P_VERSION;
    } else if (m->foreign) {
      failed(m, ENGRAM_ECORRUPT,
             "PostgreSQL database %s is not an engram database: it has a "
             "table named %s but no engram_schema table; engram leaves it "
             "untouched (use another database, or another schema with "
             "options=-csearch_path=NAME)",
             server, m->foreign);
    } else {
      m->version = 0;
      m->phase = P_APPLY;
    }
    break;
  case P_VERSION:
    if (m->rows != 1)
      failed(m, ENGRAM_ECORRUPT,
             "PostgreSQL database %s: engram_schema should hold one version "
             "row; it is damaged or was not made by engram",
             server);
    else if (m->version > PG_SCHEMA_VERSION)
      failed(m, ENGRAM_EVERSION,
             "PostgreSQL database %s has engram schema version %ld; this "
             "engram supports up to %d: upgrade engram",
             server, m->version, PG_SCHEMA_VERSION);
    else if (m->version < 0)
      failed(m, ENGRAM_ECORRUPT,
             "PostgreSQL database %s: engram_schema holds version %ld, which "
             "no engram wrote",
             server, m->version);
    else
      m->phase = m->version < PG_SCHEMA_VERSION ? P_APPLY : P_COMMIT;
    break;
  default:
    finish(m, 0, NULL);
    return;
  }
  if (m->status) {
    finish(m, m->status, m->msg);
    return;
  }
  run_phase(m);
}

static void run_phase(pg_migrate *m) {
  pg_conn *c = m->c;
  pg_exchange_begin(c, &m->ex);
  switch (m->phase) {
  case P_PROBE:
    pg_exchange_sql(c, "BEGIN", 0, NULL, NULL);
    pg_exchange_sql(c, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", 0,
                    NULL, NULL);
    pg_exchange_sql(c,
                    "SELECT current_schema() IS NOT NULL,"
                    " to_regclass('engram_schema') IS NOT NULL,"
                    " to_regclass('memories') IS NOT NULL,"
                    " to_regclass('relationships') IS NOT NULL,"
                    " to_regclass('history') IS NOT NULL",
                    0, NULL, NULL);
    break;
  case P_VERSION:
    pg_exchange_sql(c, "SELECT version FROM engram_schema", 0, NULL, NULL);
    break;
  case P_APPLY: {
    long queued = 0;
    if (!m->has_version_table) {
      pg_exchange_sql(c, "CREATE TABLE engram_schema(version integer NOT NULL)",
                      0, NULL, NULL);
      pg_exchange_sql(c, "INSERT INTO engram_schema VALUES (0)", 0, NULL, NULL);
      queued = 2;
    }
    for (long v = m->version; v < PG_SCHEMA_VERSION; v++)
      for (size_t i = 0; i < steps[v].n; i++, queued++) {
        if (v == 0 && i == V1_EXTENSION_CMD)
          m->extension_cmd = queued;
        pg_exchange_sql(c, steps[v].sql[i], 0, NULL, NULL);
      }
    char version[16];
    snprintf(version, sizeof version, "%d", PG_SCHEMA_VERSION);
    const char *values[1] = {version};
    pg_exchange_sql(c, "UPDATE engram_schema SET version = $1::integer", 1,
                    values, NULL);
    m->space_cmd = queued + 1;
    pg_exchange_sql(c, SPACE_SQL, 0, NULL, NULL);
    pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
    break;
  }
  default:
    m->space_cmd = 0;
    pg_exchange_sql(c, SPACE_SQL, 0, NULL, NULL);
    pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
    break;
  }
  pg_exchange_end(c);
}

void pg_schema_migrate(pg_store *st, pg_conn *c,
                       void (*cb)(pg_store *st, int status, const char *msg)) {
  pg_migrate *m = calloc(1, sizeof *m);
  if (!m) {
    cb(st, ENGRAM_ENOMEM, "out of memory migrating the PostgreSQL schema");
    return;
  }
  m->st = st;
  m->c = c;
  m->cb = cb;
  m->ex.result = on_result;
  m->ex.done = on_done;
  m->ex.data = m;
  m->phase = P_PROBE;
  m->extension_cmd = -1;
  m->space_cmd = -1;
  run_phase(m);
}
