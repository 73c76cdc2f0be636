/*
 * store.c — the storage benchmark: engram's SQLite backend measured beside
 * raw SQLite doing the same work on the same schema, data and queries, in
 * the same run, with the ratio printed.
 *
 * For each corpus size N (sentences from corpus.c), on fresh files:
 *
 *  1. Ingest. engram: engram_write() batches of --batch ADD ops, up to
 *     --inflight batches queued at once so that the writer can group-commit,
 *     timed from the first write to the last acknowledgement (durable at
 *     the configured level). Raw, the reference: a separate fresh file with
 *     engram's schema replayed from an empty engram file's sqlite_master
 *     (the same tables, indexes and FTS triggers; FTS5 makes its own shadow
 *     tables), engram's pragmas, and a prepared-statement loop in ONE
 *     transaction writing the rows engram writes for an ADD: the memory
 *     (which the FTS trigger indexes) and its history row. Two variants
 *     are printed beside it: without the history rows (what that table
 *     costs), and with a transaction per 1024 rows, engram's group size
 *     (what grouping costs SQLite itself, so the rest is engram's own).
 *     Odd runs ingest raw first; sync() runs before every timed phase.
 *  2. Search. The same --queries questions, one at a time: through
 *     engram_search() + engram_stream_take(10), as an application asks for
 *     its top ten, timed from the call to the done callback; and raw: the
 *     SQL engram's reader runs, with LIMIT 10, on a read-only connection to
 *     the same file, with the MATCH expression engram builds. The two
 *     alternate query by query (which one goes first alternates too) after
 *     an untimed warm-up of both, so drift hits both alike. Reported: p50,
 *     p90, p99 and queries/s per side, the CPU time per query of the whole
 *     process (which, unlike latency, does not count waiting for a CPU),
 *     and the median of the per-query latency ratios. Both sides must
 *     return the same ids in the same order; mismatches are counted and
 *     make the program exit 1.
 *
 * The SQL below is a copy of src/store/sqlite/sqlite_pool.c (RS_SEARCH)
 * and sqlite_writer.c (WS_INSERT, WS_HISTORY); keep them in step (the id
 * comparison fails when the search SQL drifts). The MATCH expression and
 * the ranking function come from engram itself (sqlite_match.c,
 * sqlite_rank.c).
 */
#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "corpus.h"
#include "engram.h"
#include "pgraw.h"
#include "stats.h"
#include "store/sqlite/sqlite_internal.h"

#define NS "bench"
#define TOP 10
#define MAX_SIZES 8
#define MAX_RUNS 15
#define GROUP_ROWS 1024 /* engram's default write_batch_max */

/* engram's search statement (sqlite_pool.c, RS_SEARCH, with the columns
 * of SQ_NODE_COLUMNS), plus the LIMIT a raw SQLite user asking for the top
 * ten would write. It ranks with engram_rank() (sqlite_rank.c), which the
 * raw connection registers with engram's own sqlite_rank_register(). */
#define NODE_COLUMNS                                                           \
  "m.id, m.ns, m.type, m.content, m.content_hash, m.created_ms, "              \
  "m.updated_ms, m.accessed_ms, m.importance, m.metadata, m.embedding, "       \
  "m.embedding_dim"
#define SEARCH_SQL                                                             \
  "SELECT " NODE_COLUMNS ", memories_fts.rank"                                 \
  " FROM memories_fts JOIN memories m"                                         \
  " ON m.rowid = memories_fts.rowid"                                           \
  " WHERE memories_fts MATCH ?1"                                               \
  " AND memories_fts.rank MATCH 'engram_rank()' AND m.ns = ?2"                 \
  " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"                                 \
  " ORDER BY memories_fts.rank"
#define RAW_SEARCH_SQL SEARCH_SQL " LIMIT 10"
#define COUNT_SQL                                                              \
  "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1"

/* engram's writer statements for an ADD (sqlite_writer.c). */
#define INSERT_SQL                                                             \
  "INSERT INTO memories(id, ns, type, content, content_hash,"                  \
  " created_ms, updated_ms, accessed_ms, importance, metadata,"                \
  " embedding, embedding_dim)"                                                 \
  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8, ?9, ?10)"
#define HISTORY_SQL                                                            \
  "INSERT INTO history(memory_id, ns, event, old_content,"                     \
  " new_content, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"

typedef struct config {
  size_t sizes[MAX_SIZES];
  size_t nsizes;
  size_t queries;
  size_t warmup;
  const char *dir;
  uint64_t seed;
  size_t vocab;
  size_t batch;
  size_t inflight;
  unsigned runs;
  int keep;
  engram_durability durability;
  const char *db; /* a PostgreSQL conninfo: benchmark that backend */
  const char *embedder; /* --embedder: engram's; "none" by default */
} config;

typedef struct dataset {
  size_t n;
  char *text; /* the sentences, each NUL-terminated */
  size_t *off;
  size_t *len;
} dataset;

typedef struct idlist {
  size_t n;
  char id[TOP][ENGRAM_ID_LEN + 1];
} idlist;

typedef struct run_result {
  double ingest_engram;  /* memories per second */
  double ingest_raw;     /* same rows as engram: memory + history */
  double ingest_raw_mem; /* memory rows only */
  double ingest_raw_txn; /* same rows, a transaction per GROUP_ROWS */
  uint64_t group_commits;
  double e_p50, e_p90, e_p99, e_mean, e_qps; /* microseconds, queries/s */
  double r_p50, r_p90, r_p99, r_mean, r_qps;
  double e_cpu, r_cpu; /* mean CPU microseconds per query, all threads */
  double paired;       /* median over queries of engram / raw latency */
  size_t mismatches;   /* different ids */
  size_t reordered;    /* same ids, another order */
} run_result;

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench_store: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void remove_db(const char *path) {
  char p[4200];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
}

/* ------------------------------------------------------------- the data */

static void dataset_make(dataset *d, corpus *c, size_t n) {
  d->n = n;
  d->off = malloc(n * sizeof *d->off);
  d->len = malloc(n * sizeof *d->len);
  size_t cap = n * 128 + CORPUS_MAX_SENTENCE;
  d->text = malloc(cap);
  if (!d->off || !d->len || !d->text)
    die("out of memory for %zu sentences", n);
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    if (cap - used < CORPUS_MAX_SENTENCE) {
      cap *= 2;
      d->text = realloc(d->text, cap);
      if (!d->text)
        die("out of memory for %zu sentences", n);
    }
    d->off[i] = used;
    d->len[i] = corpus_sentence(c, d->text + used, CORPUS_MAX_SENTENCE);
    used += d->len[i] + 1;
  }
}

static void dataset_free(dataset *d) {
  free(d->text);
  free(d->off);
  free(d->len);
}

/* ------------------------------------------------------- engram handles */

typedef struct flag {
  int done;
  int status;
  char msg[256];
} flag;

/* Runs the loop until *done; this program owns the loop and calls this
 * only from main, never from a callback. */
static void run_until(uv_loop_t *loop, const int *done) {
  while (!*done)
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !*done)
      die("the loop ran dry before the operation completed");
}

static void on_open(engram *eg, int status, const char *message, void *data) {
  flag *f = data;
  (void)eg;
  f->status = status;
  snprintf(f->msg, sizeof f->msg, "%s", message ? message : "");
  f->done = 1;
}

static void on_closed(engram *eg, void *data) {
  (void)eg;
  ((flag *)data)->done = 1;
}

static engram *engram_start(const config *cfg, const char *path) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = path;
  opts.durability = cfg->durability;
  char why[200];
  if (engram_embedder_parse(cfg->embedder, &opts.embedder, why, sizeof why))
    die("--embedder: %s", why);
  engram *eg;
  if (engram_init(&eg, NULL, &opts) != 0)
    die("engram_init failed");
  flag f = {0};
  int rc = engram_open(eg, on_open, &f);
  if (rc != 0)
    die("engram_open: %s", engram_strerror(rc));
  run_until(engram_loop(eg), &f.done);
  if (f.status != 0)
    die("opening %s: %s", path, f.msg);
  return eg;
}

static void engram_stop(engram *eg) {
  flag f = {0};
  engram_close(eg, on_closed, &f);
  run_until(engram_loop(eg), &f.done);
  engram_free(eg);
}

/* --------------------------------------------------------- ingest: engram */

typedef struct ingest {
  engram *eg;
  engram_op *ops;
  size_t n, next, batch, inflight, max_inflight, acked;
  int status;
  char msg[200];
  int finished;
} ingest;

static void ingest_submit(ingest *in);

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  ingest *in = data;
  in->inflight--;
  in->acked += n;
  if (status != 0 && in->status == 0) {
    in->status = status;
    for (size_t i = 0; i < n; i++)
      if (ops[i].status == status) {
        snprintf(in->msg, sizeof in->msg, "%s", ops[i].message);
        break;
      }
  }
  ingest_submit(in);
}

/* Keeps up to max_inflight batches queued; called again by every
 * acknowledgement, as an application feeding a stream of writes would. */
static void ingest_submit(ingest *in) {
  while (in->status == 0 && in->inflight < in->max_inflight &&
         in->next < in->n) {
    size_t k = in->n - in->next < in->batch ? in->n - in->next : in->batch;
    int rc = engram_write(in->eg, in->ops + in->next, k, on_written, in);
    if (rc != 0) {
      in->status = rc;
      snprintf(in->msg, sizeof in->msg, "%s", in->ops[in->next].message);
      break;
    }
    in->next += k;
    in->inflight++;
  }
  if (in->inflight == 0 && (in->status != 0 || in->acked == in->n))
    in->finished = 1;
}

static double ingest_engram(const config *cfg, engram *eg, const dataset *d,
                            uint64_t *groups) {
  engram_op *ops = calloc(d->n, sizeof *ops);
  if (!ops)
    die("out of memory");
  for (size_t i = 0; i < d->n; i++) {
    ops[i].kind = ENGRAM_OP_ADD;
    ops[i].ns = NS;
    ops[i].type = ENGRAM_EPISODIC;
    ops[i].content = d->text + d->off[i];
    ops[i].content_len = d->len[i];
  }
  engram_stats before, after;
  engram_get_stats(eg, &before);
  ingest in = {.eg = eg,
               .ops = ops,
               .n = d->n,
               .batch = cfg->batch,
               .max_inflight = cfg->inflight};
  uint64_t t0 = stats_now_ns();
  ingest_submit(&in);
  run_until(engram_loop(eg), &in.finished);
  uint64_t t1 = stats_now_ns();
  if (in.status != 0)
    die("engram ingest failed: %s (%s)", engram_strerror(in.status), in.msg);
  engram_get_stats(eg, &after);
  if (after.writes_committed - before.writes_committed != d->n)
    die("engram committed %llu writes, expected %zu",
        (unsigned long long)(after.writes_committed - before.writes_committed),
        d->n);
  *groups = after.write_batches - before.write_batches;
  free(ops);
  return (double)d->n / ((double)(t1 - t0) / 1e9);
}

/* ------------------------------------------------------------ ingest: raw */

static void exec_or_die(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    die("%s: %s", sql, err ? err : sqlite3_errmsg(db));
}

static sqlite3 *open_db(const char *path, int flags) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK)
    die("open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_busy_timeout(db, 5000);
  return db;
}

static sqlite3_stmt *prepare_or_die(sqlite3 *db, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
    die("prepare %s: %s", sql, sqlite3_errmsg(db));
  return stmt;
}

/* Gives the fresh raw file engram's schema, read from an engram file:
 * every table, index, virtual table and trigger in creation order, but not
 * the FTS5 shadow tables (the virtual table creates its own) nor SQLite's
 * internal ones. */
static void copy_schema(const char *schema_path, sqlite3 *raw) {
  sqlite3 *src = open_db(schema_path, SQLITE_OPEN_READONLY);
  sqlite3_stmt *q =
      prepare_or_die(src, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"
                          " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                          " AND name NOT IN (SELECT name FROM pragma_table_list"
                          "                  WHERE type = 'shadow')"
                          " ORDER BY rowid");
  exec_or_die(raw, "BEGIN");
  int objects = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    exec_or_die(raw, (const char *)sqlite3_column_text(q, 0));
    objects++;
  }
  sqlite3_finalize(q);
  q = prepare_or_die(src, "PRAGMA user_version");
  int version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
  sqlite3_finalize(q);
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
  exec_or_die(raw, sql);
  exec_or_die(raw, "COMMIT");
  sqlite3_close(src);
  if (objects < 3)
    die("%s has no engram schema to copy", schema_path);
}

/* with_history: write the history row engram writes for an ADD.
 * commit_every: rows per transaction; 0: all rows in one. */
static double ingest_raw(const config *cfg, const char *schema_path,
                         const char *raw_path, const dataset *d,
                         int with_history, size_t commit_every) {
  remove_db(raw_path);
  sqlite3 *db = open_db(raw_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  /* engram's pragmas (sqlite_schema.c, open_writer). */
  exec_or_die(db, "PRAGMA journal_mode = WAL");
  exec_or_die(db, cfg->durability == ENGRAM_DURABILITY_FULL
                      ? "PRAGMA synchronous = FULL"
                      : "PRAGMA synchronous = NORMAL");
  copy_schema(schema_path, db);
  sqlite3_stmt *ins = prepare_or_die(db, INSERT_SQL);
  sqlite3_stmt *hist = prepare_or_die(db, HISTORY_SQL);
  char id[ENGRAM_ID_LEN + 1];

  uint64_t t0 = stats_now_ns();
  exec_or_die(db, "BEGIN IMMEDIATE");
  for (size_t i = 0; i < d->n; i++) {
    const char *content = d->text + d->off[i];
    size_t len = d->len[i];
    if (commit_every && i > 0 && i % commit_every == 0) {
      exec_or_die(db, "COMMIT");
      exec_or_die(db, "BEGIN IMMEDIATE");
    }
    int64_t now = wall_ms();
    engram_id_new(id);
    sqlite3_bind_text(ins, 1, id, ENGRAM_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, NS, -1, SQLITE_STATIC);
    sqlite3_bind_int(ins, 3, ENGRAM_EPISODIC);
    sqlite3_bind_text64(ins, 4, content, len, SQLITE_STATIC, SQLITE_UTF8);
    sqlite3_bind_int64(ins, 5, (sqlite3_int64)XXH3_64bits(content, len));
    sqlite3_bind_int64(ins, 6, now);
    sqlite3_bind_double(ins, 7, 0.5);
    sqlite3_bind_text(ins, 8, "{}", 2, SQLITE_STATIC);
    sqlite3_bind_null(ins, 9);
    sqlite3_bind_int64(ins, 10, 0);
    if (sqlite3_step(ins) != SQLITE_DONE)
      die("raw insert: %s", sqlite3_errmsg(db));
    sqlite3_reset(ins);
    if (with_history) {
      sqlite3_bind_text(hist, 1, id, ENGRAM_ID_LEN, SQLITE_STATIC);
      sqlite3_bind_text(hist, 2, NS, -1, SQLITE_STATIC);
      sqlite3_bind_int(hist, 3, ENGRAM_EVENT_ADD);
      sqlite3_bind_null(hist, 4);
      sqlite3_bind_text64(hist, 5, content, len, SQLITE_STATIC, SQLITE_UTF8);
      sqlite3_bind_int64(hist, 6, now);
      if (sqlite3_step(hist) != SQLITE_DONE)
        die("raw history insert: %s", sqlite3_errmsg(db));
      sqlite3_reset(hist);
    }
  }
  exec_or_die(db, "COMMIT");
  uint64_t t1 = stats_now_ns();
  sqlite3_finalize(ins);
  sqlite3_finalize(hist);
  sqlite3_close(db);
  if (!cfg->keep)
    remove_db(raw_path);
  return (double)d->n / ((double)(t1 - t0) / 1e9);
}

/* --------------------------------------------------------- search: engram */

typedef struct search_one {
  int done;
  int status;
  uint64_t t_done;
  idlist *out;
} search_one;

static void on_item(engram_stream *s, const engram_node *node, void *data) {
  search_one *so = data;
  (void)s;
  if (so->out->n < TOP)
    memcpy(so->out->id[so->out->n++], node->id, ENGRAM_ID_LEN + 1);
}

static void on_search_done(engram_stream *s, int status, void *data) {
  search_one *so = data;
  (void)s;
  so->t_done = stats_now_ns();
  so->status = status;
  so->done = 1;
}

/* One top-10 search as an application writes it; returns nanoseconds from
 * the call to the done callback. */
static uint64_t search_engram(engram *eg, const char *text, idlist *out) {
  search_one so = {.out = out};
  out->n = 0;
  engram_query q = {.ns = NS, .text = text};
  engram_stream_cbs cbs = {on_item, NULL, on_search_done, &so};
  engram_stream *src, *top;
  uint64_t t0 = stats_now_ns();
  int rc = engram_search(eg, &q, NULL, &src);
  if (rc != 0)
    die("engram_search(\"%s\"): %s", text, engram_strerror(rc));
  rc = engram_stream_take(src, TOP, &cbs, &top);
  if (rc != 0)
    die("engram_stream_take: %s", engram_strerror(rc));
  engram_stream_request(top, TOP);
  run_until(engram_loop(eg), &so.done);
  if (so.status != 0)
    die("search \"%s\" ended with %s", text, engram_strerror(so.status));
  return so.t_done - t0;
}

/* ------------------------------------------------------------ search: raw */

/* The MATCH expression: engram's own builder (sqlite_match.c), so both
 * sides run the identical expression; building it (tokenize, drop stop
 * words, quote, join with OR) is timed on both sides. Returns the token
 * count; *expr is NULL when the text has no word. */
static size_t build_match(const char *text, char **expr) {
  size_t tokens = 0;
  *expr = NULL;
  if (sqlite_match_build(text, strlen(text), expr, &tokens) != 0)
    die("out of memory building a MATCH expression");
  return tokens;
}

typedef struct raw_reader {
  sqlite3 *db;
  sqlite3_stmt *search;
  sqlite3_stmt *count;
  size_t sink; /* bytes read, so reading the columns is not optimized out */
} raw_reader;

static uint64_t search_raw(raw_reader *r, const char *text, idlist *out) {
  uint64_t t0 = stats_now_ns();
  char *expr;
  out->n = 0;
  if (build_match(text, &expr) > 0) {
    sqlite3_stmt *s = r->search;
    sqlite3_bind_text(s, 1, expr, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, NS, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, 0);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      /* Every column engram reads, as a caller of raw SQLite would. */
      const unsigned char *id = sqlite3_column_text(s, 0);
      r->sink += (size_t)sqlite3_column_bytes(s, 1) +
                 (size_t)sqlite3_column_bytes(s, 3) +
                 (size_t)sqlite3_column_bytes(s, 9) +
                 (size_t)sqlite3_column_bytes(s, 10);
      r->sink += (size_t)sqlite3_column_int(s, 2) +
                 (size_t)sqlite3_column_int64(s, 4) +
                 (size_t)sqlite3_column_int64(s, 5) +
                 (size_t)sqlite3_column_int64(s, 6) +
                 (size_t)sqlite3_column_int64(s, 7) +
                 (size_t)sqlite3_column_double(s, 8) +
                 (size_t)sqlite3_column_int64(s, 11) +
                 (size_t)(-sqlite3_column_double(s, 12));
      if (id && out->n < TOP)
        snprintf(out->id[out->n++], ENGRAM_ID_LEN + 1, "%s", (const char *)id);
    }
    if (rc != SQLITE_DONE)
      die("raw search \"%s\": %s", text, sqlite3_errmsg(r->db));
    sqlite3_reset(s);
  }
  free(expr);
  return stats_now_ns() - t0;
}

static size_t count_matches(raw_reader *r, const char *text) {
  char *expr;
  if (build_match(text, &expr) == 0)
    return 0;
  sqlite3_bind_text(r->count, 1, expr, -1, SQLITE_STATIC);
  size_t n = 0;
  if (sqlite3_step(r->count) == SQLITE_ROW)
    n = (size_t)sqlite3_column_int64(r->count, 0);
  sqlite3_reset(r->count);
  free(expr);
  return n;
}

static void print_plan(sqlite3 *db, const char *label, const char *sql) {
  char buf[2048];
  snprintf(buf, sizeof buf, "EXPLAIN QUERY PLAN %s", sql);
  sqlite3_stmt *q = prepare_or_die(db, buf);
  sqlite3_bind_text(q, 1, "\"x\"", -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, NS, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, 0);
  printf("  plan (%s):", label);
  while (sqlite3_step(q) == SQLITE_ROW)
    printf(" [%s]", (const char *)sqlite3_column_text(q, 3));
  printf("\n");
  sqlite3_finalize(q);
}

/* ------------------------------------------------------------------ runs */

static int idlist_same_set(const idlist *a, const idlist *b) {
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n; i++) {
    size_t j = 0;
    while (j < b->n && strcmp(a->id[i], b->id[j]) != 0)
      j++;
    if (j == b->n)
      return 0;
  }
  return 1;
}

static void latency_summary(uint64_t *ns, size_t n, double *p50, double *p90,
                            double *p99, double *mean, double *qps) {
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += ns[i];
  stats_sort_u64(ns, n);
  *p50 = stats_percentile(ns, n, 50) / 1e3;
  *p90 = stats_percentile(ns, n, 90) / 1e3;
  *p99 = stats_percentile(ns, n, 99) / 1e3;
  *mean = (double)total / (double)n / 1e3;
  *qps = (double)n / ((double)total / 1e9);
}

/* The three raw ingests: the reference (one transaction, the rows engram
 * writes), the same without history rows, and the same committed in
 * transactions of engram's group size, which separates what grouping costs
 * SQLite (FTS5 segments, page writes per commit) from engram's own cost. */
static void raw_ingests(const config *cfg, const char *schema_path,
                        const char *raw_path, const dataset *d,
                        run_result *res) {
  sync();
  res->ingest_raw = ingest_raw(cfg, schema_path, raw_path, d, 1, 0);
  sync();
  res->ingest_raw_mem = ingest_raw(cfg, schema_path, raw_path, d, 0, 0);
  sync();
  res->ingest_raw_txn =
      ingest_raw(cfg, schema_path, raw_path, d, 1, GROUP_ROWS);
}

/* The search comparison both backends share: a warm-up of both sides,
 * then every query on both, back to back, alternating which goes first;
 * fills the latency, CPU, paired-ratio and same-ids fields of res. */
typedef uint64_t (*raw_search_fn)(void *ctx, const char *text, idlist *out);
static void compare_searches(const config *cfg, engram *eg, char **queries,
                             raw_search_fn raw, void *ctx, run_result *res) {
  size_t nq = cfg->queries;
  idlist *e_ids = calloc(nq, sizeof *e_ids);
  idlist *r_ids = calloc(nq, sizeof *r_ids);
  uint64_t *e_ns = calloc(nq, sizeof *e_ns);
  uint64_t *r_ns = calloc(nq, sizeof *r_ns);
  if (!e_ids || !r_ids || !e_ns || !r_ns)
    die("out of memory");

  /* Warm-up: statements prepared, caches filled, for both. */
  for (size_t i = 0; i < cfg->warmup && i < nq; i++) {
    search_engram(eg, queries[i], &e_ids[i]);
    raw(ctx, queries[i], &r_ids[i]);
  }
  /* CPU time of the whole process (the thread pool included) is summed
   * per side: unlike latency it does not count waiting for a CPU, so on a
   * busy machine it shows what each side costs. */
  uint64_t e_cpu = 0, r_cpu = 0;
  for (size_t i = 0; i < nq; i++) {
    /* Alternate which goes first, so neither always finds the other's
     * pages freshly touched. */
    for (int k = 0; k < 2; k++) {
      uint64_t c0 = stats_cpu_ns();
      if ((i + (size_t)k) % 2 == 0) {
        e_ns[i] = search_engram(eg, queries[i], &e_ids[i]);
        e_cpu += stats_cpu_ns() - c0;
      } else {
        r_ns[i] = raw(ctx, queries[i], &r_ids[i]);
        r_cpu += stats_cpu_ns() - c0;
      }
    }
  }
  res->e_cpu = (double)e_cpu / (double)nq / 1e3;
  res->r_cpu = (double)r_cpu / (double)nq / 1e3;
  /* Each query's two timings ran back to back, under the same conditions:
   * the median of their ratios is the comparison least moved by noise. */
  double *ratios = calloc(nq, sizeof *ratios);
  if (!ratios)
    die("out of memory");
  for (size_t i = 0; i < nq; i++)
    ratios[i] = (double)e_ns[i] / (double)(r_ns[i] ? r_ns[i] : 1);
  res->paired = stats_median(ratios, nq);
  free(ratios);
  for (size_t i = 0; i < nq; i++) {
    int same = e_ids[i].n == r_ids[i].n;
    for (size_t k = 0; same && k < e_ids[i].n; k++)
      same = strcmp(e_ids[i].id[k], r_ids[i].id[k]) == 0;
    if (!same) {
      if (idlist_same_set(&e_ids[i], &r_ids[i]))
        res->reordered++;
      else
        res->mismatches++;
      if (res->mismatches + res->reordered <= 3)
        fprintf(stderr, "  mismatch on \"%s\": engram %zu ids, raw %zu ids\n",
                queries[i], e_ids[i].n, r_ids[i].n);
    }
  }
  latency_summary(e_ns, nq, &res->e_p50, &res->e_p90, &res->e_p99, &res->e_mean,
                  &res->e_qps);
  latency_summary(r_ns, nq, &res->r_p50, &res->r_p90, &res->r_p99, &res->r_mean,
                  &res->r_qps);

  free(e_ids);
  free(r_ids);
  free(e_ns);
  free(r_ns);
}

static uint64_t raw_sqlite_search(void *ctx, const char *text, idlist *out) {
  return search_raw(ctx, text, out);
}

static void one_run(const config *cfg, const char *schema_path,
                    const dataset *d, char **queries, size_t run, int first,
                    run_result *res) {
  char engram_path[4096], raw_path[4096];
  snprintf(engram_path, sizeof engram_path, "%s/store-engram-%zu-%zu.db",
           cfg->dir, d->n, run);
  snprintf(raw_path, sizeof raw_path, "%s/store-raw-%zu-%zu.db", cfg->dir, d->n,
           run);
  remove_db(engram_path);
  memset(res, 0, sizeof *res);

  /* Odd runs ingest raw first, so that neither side always runs while
   * the other's writes are still being flushed; sync() before each timed
   * phase settles the previous phase's dirty pages. */
  engram *eg = engram_start(cfg, engram_path);
  if (run % 2 == 1)
    raw_ingests(cfg, schema_path, raw_path, d, res);
  sync();
  res->ingest_engram = ingest_engram(cfg, eg, d, &res->group_commits);
  if (run % 2 == 0)
    raw_ingests(cfg, schema_path, raw_path, d, res);
  sync();

  raw_reader r = {0};
  r.db = open_db(engram_path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
  if (sqlite_rank_register(r.db) != SQLITE_OK)
    die("registering engram_rank(): %s", sqlite3_errmsg(r.db));
  r.search = prepare_or_die(r.db, RAW_SEARCH_SQL);
  r.count = prepare_or_die(r.db, COUNT_SQL);
  if (first) {
    print_plan(r.db, "engram", SEARCH_SQL);
    print_plan(r.db, "raw", RAW_SEARCH_SQL);
  }

  size_t nq = cfg->queries;
  uint64_t *e_ns = calloc(nq, sizeof *e_ns);
  if (!e_ns)
    die("out of memory");
  compare_searches(cfg, eg, queries, raw_sqlite_search, &r, res);
  if (first) {
    /* How many rows the queries match: a realism check of the corpus. */
    for (size_t i = 0; i < nq; i++)
      e_ns[i] = count_matches(&r, queries[i]);
    stats_sort_u64(e_ns, nq);
    printf("  queries match rows: p10 %.0f, median %.0f, p90 %.0f of %zu\n",
           stats_percentile(e_ns, nq, 10), stats_percentile(e_ns, nq, 50),
           stats_percentile(e_ns, nq, 90), d->n);
  }

  sqlite3_finalize(r.search);
  sqlite3_finalize(r.count);
  sqlite3_close(r.db);
  engram_stop(eg);
  if (!cfg->keep)
    remove_db(engram_path);
  free(e_ns);

  printf("  run %zu: ingest/s engram %.0f (%llu group commits), raw %.0f, "
         "raw memories only %.0f, raw txn per %d %.0f | search p50 engram "
         "%.1f us, raw %.1f us | cpu/query engram %.1f us, raw %.1f us | "
         "mismatches %zu, reordered %zu | load %.2f\n",
         run + 1, res->ingest_engram, (unsigned long long)res->group_commits,
         res->ingest_raw, res->ingest_raw_mem, GROUP_ROWS, res->ingest_raw_txn,
         res->e_p50, res->r_p50, res->e_cpu, res->r_cpu, res->mismatches,
         res->reordered, stats_loadavg());
  fflush(stdout);
}

/* ------------------------------------------------------------ PostgreSQL */

/* The raw side of a PostgreSQL run: engram's own search SQL as one plain
 * query with LIMIT 10 on a blocking connection. */
static uint64_t raw_pg_search(void *ctx, const char *text, idlist *out) {
  uint64_t t0 = stats_now_ns();
  out->n = pgraw_search(ctx, NS, text, TOP, out->id);
  return stats_now_ns() - t0;
}

/* One run on PostgreSQL: engram and raw libpq each ingest the corpus into
 * a fresh schema of their own (the raw one made by engram's migrations, so
 * both have the same tables, indexes and functions), then the searches
 * are compared on engram's data, as on SQLite. The raw ingest pipelines
 * the ADD statement engram's writer runs, a transaction per GROUP_ROWS
 * (engram's group size), which is what careful libpq code does. */
static void one_run_pg(const config *cfg, const dataset *d, char **queries,
                       size_t run, run_result *res) {
  char es[64], rs[64], econn[2048], rconn[2048];
  snprintf(es, sizeof es, "bench_e_%d_%zu_%zu", (int)getpid(), d->n, run);
  snprintf(rs, sizeof rs, "bench_r_%d_%zu_%zu", (int)getpid(), d->n, run);
  memset(res, 0, sizeof *res);
  PGconn *admin = pgraw_connect(cfg->db);
  pgraw_schema(admin, cfg->db, es, econn, sizeof econn);
  pgraw_schema(admin, cfg->db, rs, rconn, sizeof rconn);
  engram_stop(engram_start(cfg, rconn)); /* the raw schema's tables */

  const char **texts = malloc(d->n * sizeof *texts);
  if (!texts)
    die("out of memory");
  for (size_t i = 0; i < d->n; i++)
    texts[i] = d->text + d->off[i];
  PGconn *raw = pgraw_connect(rconn);
  engram *eg = engram_start(cfg, econn);
  if (run % 2 == 1)
    res->ingest_raw_txn = pgraw_ingest(raw, NS, texts, d->len, d->n,
                                       GROUP_ROWS);
  res->ingest_engram = ingest_engram(cfg, eg, d, &res->group_commits);
  if (run % 2 == 0)
    res->ingest_raw_txn = pgraw_ingest(raw, NS, texts, d->len, d->n,
                                       GROUP_ROWS);
  /* The PostgreSQL reference is the grouped one (a transaction per
   * GROUP_ROWS); one transaction of everything is not measured. */
  res->ingest_raw = res->ingest_raw_txn;
  pgraw_exec(admin, "ANALYZE");
  PQfinish(raw);
  free(texts);

  PGconn *reader = pgraw_connect(econn);
  compare_searches(cfg, eg, queries, raw_pg_search, reader, res);
  PQfinish(reader);
  engram_stop(eg);
  if (!cfg->keep) {
    pgraw_drop_schema(admin, es);
    pgraw_drop_schema(admin, rs);
  }
  PQfinish(admin);
  printf("  run %zu: ingest/s engram %.0f (%llu group commits), raw libpq "
         "(txn per %d) %.0f | search p50 engram %.1f us, raw %.1f us | "
         "cpu/query engram %.1f us, raw %.1f us | mismatches %zu, reordered "
         "%zu | load %.2f\n",
         run + 1, res->ingest_engram, (unsigned long long)res->group_commits,
         GROUP_ROWS, res->ingest_raw_txn, res->e_p50, res->r_p50, res->e_cpu,
         res->r_cpu, res->mismatches, res->reordered, stats_loadavg());
  fflush(stdout);
}

typedef struct summary {
  size_t n;
  double ingest_engram, ingest_raw, ingest_raw_mem, ingest_raw_txn,
      ingest_ratio, ingest_txn_ratio;
  double e_p50, e_p90, e_p99, e_qps, r_p50, r_p90, r_p99, r_qps, p50_ratio,
      p99_ratio;
  double e_cpu, r_cpu, cpu_ratio, paired;
  size_t mismatches, reordered;
} summary;

static double median_field(const run_result *rs, unsigned runs, size_t offset) {
  double v[MAX_RUNS];
  for (unsigned k = 0; k < runs; k++)
    v[k] = *(const double *)(const void *)((const char *)&rs[k] + offset);
  return stats_median(v, runs);
}

static double median_ratio(const run_result *rs, unsigned runs, size_t num,
                           size_t den) {
  double v[MAX_RUNS];
  for (unsigned k = 0; k < runs; k++)
    v[k] = *(const double *)(const void *)((const char *)&rs[k] + num) /
           *(const double *)(const void *)((const char *)&rs[k] + den);
  return stats_median(v, runs);
}

#define MED(f) median_field(rs, runs, offsetof(run_result, f))
#define RATIO(a, b)                                                            \
  median_ratio(rs, runs, offsetof(run_result, a), offsetof(run_result, b))

static void summarize(const run_result *rs, unsigned runs, size_t n,
                      summary *s) {
  s->n = n;
  s->ingest_engram = MED(ingest_engram);
  s->ingest_raw = MED(ingest_raw);
  s->ingest_raw_mem = MED(ingest_raw_mem);
  s->ingest_raw_txn = MED(ingest_raw_txn);
  s->ingest_txn_ratio = RATIO(ingest_engram, ingest_raw_txn);
  s->ingest_ratio = RATIO(ingest_engram, ingest_raw);
  s->e_p50 = MED(e_p50);
  s->e_p90 = MED(e_p90);
  s->e_p99 = MED(e_p99);
  s->e_qps = MED(e_qps);
  s->r_p50 = MED(r_p50);
  s->r_p90 = MED(r_p90);
  s->r_p99 = MED(r_p99);
  s->r_qps = MED(r_qps);
  s->p50_ratio = RATIO(e_p50, r_p50);
  s->p99_ratio = RATIO(e_p99, r_p99);
  s->e_cpu = MED(e_cpu);
  s->r_cpu = MED(r_cpu);
  s->cpu_ratio = RATIO(e_cpu, r_cpu);
  s->paired = MED(paired);
  s->mismatches = 0;
  s->reordered = 0;
  for (unsigned k = 0; k < runs; k++) {
    s->mismatches += rs[k].mismatches;
    s->reordered += rs[k].reordered;
  }
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_store [options]\n"
          "  --n N[,N...]      corpus sizes (default 10000,100000)\n"
          "  --queries Q       search queries per size (default 2000)\n"
          "  --warmup W        untimed queries first, each side (default 500)\n"
          "  --runs R          runs per size; medians are reported (default "
          "1, max %d)\n"
          "  --batch B         ADD ops per engram_write (default 256)\n"
          "  --inflight K      engram_write batches queued at once (default "
          "8)\n"
          "  --durability D    normal or full (default normal)\n"
          "  --vocab V         corpus vocabulary size (default %u)\n"
          "  --seed S          corpus and query seed (default 42)\n"
          "  --dir DIR         where the database files go (default "
          "$ENGRAM_BENCH_TMP, else $TMPDIR, else /tmp)\n"
          "  --keep            keep the database files\n"
          "  --embedder E      engram's embedder (none, hashed, hashed:DIM);\n"
          "                    default none: the raw side computes no\n"
          "                    vectors either, so both do the same work\n"
          "  --db CONNINFO     benchmark the PostgreSQL backend on that server\n"
          "                    (postgres://... or key=value) against raw libpq\n"
          "                    running the same statements; each run works in\n"
          "                    fresh schemas of its own, dropped afterwards\n",
          MAX_RUNS, CORPUS_DEFAULT_VOCAB);
}

static size_t parse_size(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || v == 0)
    die("%s must be a positive integer, not \"%s\"", what, s);
  return (size_t)v;
}

/* Where scratch files go unless --dir says: scripts/bench.sh's directory,
 * else the system's temporary directory. */
static const char *default_dir(void) {
  const char *d = getenv("ENGRAM_BENCH_TMP");
  if (!d || !*d)
    d = getenv("TMPDIR");
  return d && *d ? d : "/tmp";
}

static void parse_args(int argc, char **argv, config *cfg) {
  static const struct option longopts[] = {
      {"n", required_argument, NULL, 'n'},
      {"queries", required_argument, NULL, 'q'},
      {"warmup", required_argument, NULL, 'w'},
      {"runs", required_argument, NULL, 'r'},
      {"batch", required_argument, NULL, 'b'},
      {"inflight", required_argument, NULL, 'k'},
      {"durability", required_argument, NULL, 'D'},
      {"vocab", required_argument, NULL, 'v'},
      {"seed", required_argument, NULL, 's'},
      {"dir", required_argument, NULL, 'd'},
      {"keep", no_argument, NULL, 'K'},
      {"db", required_argument, NULL, 'P'},
      {"embedder", required_argument, NULL, 'E'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  *cfg = (config){.sizes = {10000, 100000},
                  .nsizes = 2,
                  .queries = 2000,
                  .warmup = 500,
                  .dir = default_dir(),
                  .seed = 42,
                  .vocab = CORPUS_DEFAULT_VOCAB,
                  .batch = 256,
                  .inflight = 8,
                  .runs = 1,
                  .durability = ENGRAM_DURABILITY_NORMAL,
                  .embedder = "none"};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'n': {
      cfg->nsizes = 0;
      char *list = strdup(optarg);
      for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (cfg->nsizes == MAX_SIZES)
          die("at most %d sizes", MAX_SIZES);
        cfg->sizes[cfg->nsizes++] = parse_size(tok, "--n");
      }
      free(list);
      break;
    }
    case 'q':
      cfg->queries = parse_size(optarg, "--queries");
      break;
    case 'w':
      cfg->warmup =
          strcmp(optarg, "0") == 0 ? 0 : parse_size(optarg, "--warmup");
      break;
    case 'r':
      cfg->runs = (unsigned)parse_size(optarg, "--runs");
      if (cfg->runs > MAX_RUNS)
        die("--runs is at most %d", MAX_RUNS);
      break;
    case 'b':
      cfg->batch = parse_size(optarg, "--batch");
      break;
    case 'k':
      cfg->inflight = parse_size(optarg, "--inflight");
      break;
    case 'D':
      if (strcmp(optarg, "normal") == 0)
        cfg->durability = ENGRAM_DURABILITY_NORMAL;
      else if (strcmp(optarg, "full") == 0)
        cfg->durability = ENGRAM_DURABILITY_FULL;
      else
        die("--durability is normal or full, not \"%s\"", optarg);
      break;
    case 'v':
      cfg->vocab = parse_size(optarg, "--vocab");
      break;
    case 's':
      cfg->seed = strtoull(optarg, NULL, 0);
      break;
    case 'd':
      cfg->dir = optarg;
      break;
    case 'K':
      cfg->keep = 1;
      break;
    case 'E':
      cfg->embedder = optarg;
      break;
    case 'P':
      if (!store_db_is_pg(optarg))
        die("--db takes a PostgreSQL connection string or URI (the SQLite "
            "files go to --dir), not \"%s\"",
            optarg);
      cfg->db = optarg;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      exit(2);
    }
  }
  if (optind < argc) {
    usage(stderr);
    exit(2);
  }
}

static const char *verdict(int ok) {
  return ok ? "PASS" : "MISS";
}

int main(int argc, char **argv) {
  config cfg;
  parse_args(argc, argv, &cfg);
  if (mkdir(cfg.dir, 0777) != 0 && errno != EEXIST)
    die("cannot create %s: %s", cfg.dir, strerror(errno));

  if (cfg.db)
    printf("bench_store: PostgreSQL backend at %s (libpq %d)\n", cfg.db,
           PQlibVersion());
  printf("bench_store: engram %s, SQLite %s, seed %llu, vocabulary %zu, "
         "%zu queries (top %d, concurrency 1, %zu warm-up), batches of %zu "
         "x %zu in flight, durability %s, embedder %s, %u run(s) per size, "
         "files in %s\n",
         ENGRAM_VERSION, sqlite3_libversion(), (unsigned long long)cfg.seed,
         cfg.vocab, cfg.queries, TOP, cfg.warmup, cfg.batch, cfg.inflight,
         cfg.durability == ENGRAM_DURABILITY_FULL ? "full" : "normal",
         cfg.embedder, cfg.runs, cfg.dir);

  corpus *c = corpus_new(cfg.seed, cfg.vocab);
  if (!c)
    die("out of memory building the corpus");
  char **queries = calloc(cfg.queries, sizeof *queries);
  if (!queries)
    die("out of memory");
  char buf[CORPUS_MAX_SENTENCE];
  for (size_t i = 0; i < cfg.queries; i++) {
    corpus_query(c, buf, sizeof buf);
    if (!(queries[i] = strdup(buf)))
      die("out of memory");
  }
  corpus_sentence(c, buf, sizeof buf);
  printf("sample sentence: \"%s\"\n", buf);
  printf("sample queries: \"%s\" | \"%s\" | \"%s\"\n", queries[0],
         queries[1 % cfg.queries], queries[2 % cfg.queries]);

  /* An empty engram database: the schema the raw files copy. */
  char schema_path[4096];
  snprintf(schema_path, sizeof schema_path, "%s/store-schema.db", cfg.dir);
  remove_db(schema_path);
  if (!cfg.db)
    engram_stop(engram_start(&cfg, schema_path));

  summary sums[MAX_SIZES];
  for (size_t si = 0; si < cfg.nsizes; si++) {
    size_t n = cfg.sizes[si];
    corpus_rewind(c);
    dataset d;
    dataset_make(&d, c, n);
    printf("\n== N = %zu ==\n", n);
    run_result rs[MAX_RUNS];
    for (unsigned run = 0; run < cfg.runs; run++)
      if (cfg.db)
        one_run_pg(&cfg, &d, queries, run, &rs[run]);
      else
        one_run(&cfg, schema_path, &d, queries, run, run == 0, &rs[run]);
    summarize(rs, cfg.runs, n, &sums[si]);
    dataset_free(&d);
  }

  printf("\nINGEST (memories/s, median of %u run(s))\n", cfg.runs);
  if (cfg.db)
    printf("  raw: libpq pipelining engram's ADD statement (memory + history), "
           "a transaction per\n  %d rows (engram's group size); raw(mem) "
           "not measured on PostgreSQL\n",
           GROUP_ROWS);
  else
    printf("  raw: one transaction, the rows engram writes (memory + "
           "history); raw(mem): without the\n  history rows; raw(txn): a "
           "transaction per %d rows, engram's group size\n",
           GROUP_ROWS);
  printf("%10s %10s %10s %7s | %10s %10s %7s\n", "N", "engram", "raw", "ratio",
         "raw(mem)", "raw(txn)", "ratio");
  for (size_t si = 0; si < cfg.nsizes; si++) {
    const summary *s = &sums[si];
    printf("%10zu %10.0f %10.0f %7.2f | %10.0f %10.0f %7.2f\n", s->n,
           s->ingest_engram, s->ingest_raw, s->ingest_ratio, s->ingest_raw_mem,
           s->ingest_raw_txn, s->ingest_txn_ratio);
  }
  printf("\nSEARCH top-%d, concurrency 1 (microseconds; queries/s; CPU us "
         "per query; median of %u run(s))\n",
         TOP, cfg.runs);
  printf("%10s %-7s %9s %9s %9s %9s %9s\n", "N", "", "p50", "p90", "p99", "q/s",
         "cpu/q");
  for (size_t si = 0; si < cfg.nsizes; si++) {
    const summary *s = &sums[si];
    printf("%10zu %-7s %9.1f %9.1f %9.1f %9.0f %9.1f\n", s->n, "engram",
           s->e_p50, s->e_p90, s->e_p99, s->e_qps, s->e_cpu);
    printf("%10s %-7s %9.1f %9.1f %9.1f %9.0f %9.1f\n", "", "raw", s->r_p50,
           s->r_p90, s->r_p99, s->r_qps, s->r_cpu);
    printf("%10s %-7s %9.2f %9s %9.2f %9s %9.2f\n", "", "ratio", s->p50_ratio,
           "", s->p99_ratio, "", s->cpu_ratio);
  }

  printf("\nRATIOS (engram / raw %s, same run; median over runs)\n",
         cfg.db ? "libpq" : "SQLite");
  size_t wrong = 0;
  for (size_t si = 0; si < cfg.nsizes; si++) {
    const summary *s = &sums[si];
    int ingest_ok = s->ingest_ratio >= 0.5;
    int search_ok = s->p50_ratio <= 1.2;
    int same_ok = s->mismatches == 0;
    wrong += s->mismatches;
    printf("  N=%-8zu ingest throughput  %5.2f  (target >= 0.50)  %s\n", s->n,
           s->ingest_ratio, verdict(ingest_ok));
    printf("  N=%-8zu ingest vs raw(txn) %5.2f  (no target)\n", s->n,
           s->ingest_txn_ratio);
    printf("  N=%-8zu search p50 latency %5.2f  (target <= 1.20)  %s\n", s->n,
           s->p50_ratio, verdict(search_ok));
    printf("  N=%-8zu search p99 latency %5.2f  (no target)\n", s->n,
           s->p99_ratio);
    printf("  N=%-8zu search paired p50  %5.2f  (no target; median of "
           "per-query ratios)\n",
           s->n, s->paired);
    printf("  N=%-8zu search CPU/query   %5.2f  (no target)\n", s->n,
           s->cpu_ratio);
    printf("  N=%-8zu same top-%d ids    %zu mismatches, %zu reordered "
           "(target 0)  %s\n",
           s->n, TOP, s->mismatches, s->reordered, verdict(same_ok));
  }
  printf("peak RSS %ld KiB\n", stats_peak_rss_kb());

  remove_db(schema_path);
  for (size_t i = 0; i < cfg.queries; i++)
    free(queries[i]);
  free(queries);
  corpus_free(c);
  /* A missed target is a result; different answers are a failure. */
  return wrong == 0 ? 0 : 1;
}
