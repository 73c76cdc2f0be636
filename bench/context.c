/*
 * context.c — context injection latency and throughput against the raw
 * FTS5 query that finds the same rows, issued directly with sqlite3 on the
 * same file, measured in the same run.
 *
 * The raw query is the statement engram's SQLite reader prepares for a
 * search (sqlite_pool.c's RS_SEARCH, ranked by engram_rank(), copied below
 * with the same column list) plus LIMIT max, bound with the MATCH
 * expression engram builds for the same text (sqlite_match_build, the
 * library's own function). It runs on the same libuv pool
 * (UV_THREADPOOL_SIZE=4) through uv_queue_work, on read-only connections
 * opened like engram's readers (engram_rank() registered), one per pool
 * thread and so as many as engram's readers (4), each preparing the
 * statement once. The raw side steps the rows and reads every column;
 * engram decodes each row into a memory, collects, formats the prompt
 * section and calls back. At concurrency 1 the raw query is also run
 * inline on the loop thread, without the pool hop, for reference.
 *
 * Concurrency c: c requests in flight at all times (each completion starts
 * the next); latency is from the start of a request to its completion
 * callback on the loop. Within a run the queries go in blocks that every
 * path runs in turn, the order rotating from block to block, so that drift
 * in the machine's speed hits all paths alike; ratios are taken per run
 * and the median over runs is printed. Rows are compared once (concurrency
 * 1, first run): engram must return the same ids, in the same order, as
 * the raw query, or the benchmark fails.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "benchdb.h"
#include "corpus.h"
#include "engram.h"
#include "stats.h"
#include "store/sqlite/sqlite_internal.h"

#define NS "bench"
#define MAX_LEVELS 8
#define MAX_MEMORIES 64

/* sqlite_pool.c's RS_SEARCH (ranked by engram_rank(), which each raw
 * connection registers as engram's readers do), with a LIMIT. Keep in step
 * with sqlite_pool.c. */
static const char raw_sql[] =
    "SELECT " SQ_NODE_COLUMNS ", memories_fts.rank"
    " FROM memories_fts JOIN memories m"
    " ON m.rowid = memories_fts.rowid"
    " WHERE memories_fts MATCH ?1"
    " AND memories_fts.rank MATCH 'engram_rank()' AND m.ns = ?2"
    " AND (?3 = 0 OR ((1 << m.type) & ?3) <> 0)"
    " ORDER BY memories_fts.rank LIMIT ?4";

typedef struct options {
  size_t n;
  size_t queries;
  size_t runs;
  size_t levels[MAX_LEVELS];
  size_t nlevels;
  unsigned pool;
  unsigned readers;
  unsigned max_memories;
  uint64_t timeout_ms;
  uint64_t seed;
} options;

static options opt = {
    .n = 100000,
    .queries = 2000,
    .runs = 3,
    .levels = {1, 64},
    .nlevels = 2,
    .pool = 4,
    .readers = 4,
    .max_memories = 10,
    .timeout_ms = 60000,
    .seed = 42,
};

static uv_loop_t loop;
static engram *eg;
static char db_path[4200];
static char **queries; /* the user's text */
static char **matches; /* engram's MATCH expression for it */

/* ------------------------------------------------ raw connections */

typedef struct raw_conn {
  sqlite3 *db;
  sqlite3_stmt *stmt;
} raw_conn;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static raw_conn *conns[256];
static size_t nconns;
static _Thread_local raw_conn *tl_conn;

static raw_conn *conn_open(void) {
  raw_conn *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  int rc = sqlite3_open_v2(db_path, &c->db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);
    rc = sqlite_rank_register(c->db);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v3(c->db, raw_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &c->stmt, NULL);
  }
  if (rc != SQLITE_OK) {
    fprintf(stderr, "raw: %s\n", sqlite3_errmsg(c->db));
    abort();
  }
  pthread_mutex_lock(&conns_mu);
  if (nconns == sizeof conns / sizeof conns[0])
    abort();
  conns[nconns++] = c;
  pthread_mutex_unlock(&conns_mu);
  return c;
}

static void conns_close(void) {
  for (size_t i = 0; i < nconns; i++) {
    sqlite3_finalize(conns[i]->stmt);
    sqlite3_close_v2(conns[i]->db);
    free(conns[i]);
  }
  nconns = 0;
}

/* ------------------------------------------------------------- requests */

enum { P_ENGRAM, P_RAW, P_INLINE, P_COUNT };
static const char *const path_name[P_COUNT] = {"engram", "raw FTS5 (pool)",
                                               "raw FTS5 (inline, no pool)"};

/* What one path accumulated over its blocks of a run at one level. */
typedef struct acc {
  uint64_t *lat;
  size_t n;
  uint64_t busy_ns; /* time spent running this path's blocks */
  size_t rows, empty, errors, timed_out;
  char (*ids)[MAX_MEMORIES][ENGRAM_ID_LEN + 1]; /* per query, or NULL */
  size_t *nids;
} acc;

typedef struct measure measure;

typedef struct slot {
  measure *m;
  uv_work_t work;
  size_t qi;
  uint64_t start_ns;
  size_t nrows;
  int rc;
  char ids[MAX_MEMORIES][ENGRAM_ID_LEN + 1];
} slot;

struct measure {
  int path;
  size_t next, end, done, total;
  acc *a;
};

/* Steps the raw query for queries[qi] on conn, reading every column of up
 * to max rows; ids go to out. Returns rows, or -1 on error. */
static int raw_query(raw_conn *c, size_t qi, char out[][ENGRAM_ID_LEN + 1]) {
  sqlite3_stmt *st = c->stmt;
  sqlite3_bind_text(st, 1, matches[qi], -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, NS, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, 0);
  sqlite3_bind_int64(st, 4, opt.max_memories);
  int n = 0, rc;
  volatile uint64_t sink = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *id = sqlite3_column_text(st, 0);
    if (id && n < MAX_MEMORIES)
      snprintf(out[n], ENGRAM_ID_LEN + 1, "%s", (const char *)id);
    for (int col = 1; col <= SQ_NODE_NCOLUMNS; col++) {
      switch (sqlite3_column_type(st, col)) {
      case SQLITE_TEXT:
        sink += (uint64_t)sqlite3_column_bytes(st, col) +
                sqlite3_column_text(st, col)[0];
        break;
      case SQLITE_BLOB:
        sink += (uint64_t)sqlite3_column_bytes(st, col);
        break;
      default:
        sink += (uint64_t)sqlite3_column_int64(st, col);
        break;
      }
    }
    n++;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  (void)sink;
  return rc == SQLITE_DONE ? n : -1;
}

static void record(acc *a, size_t qi, uint64_t lat, size_t nrows, int rc,
                   char ids[][ENGRAM_ID_LEN + 1]) {
  a->lat[a->n++] = lat;
  if (rc != 0)
    a->errors++;
  a->rows += nrows;
  if (nrows == 0)
    a->empty++;
  if (a->ids) {
    memcpy(a->ids[qi], ids, sizeof a->ids[qi]);
    a->nids[qi] = nrows;
  }
}

static void start_next(slot *s);

static void finish(slot *s) {
  measure *m = s->m;
  record(m->a, s->qi, stats_now_ns() - s->start_ns, s->nrows, s->rc, s->ids);
  m->done++;
  start_next(s);
}

static void raw_work(uv_work_t *req) {
  slot *s = req->data;
  if (!tl_conn)
    tl_conn = conn_open();
  int n = raw_query(tl_conn, s->qi, s->ids);
  s->rc = n < 0;
  s->nrows = n < 0 ? 0 : (size_t)n;
}

static void raw_after(uv_work_t *req, int status) {
  slot *s = req->data;
  if (status != 0)
    s->rc = 1;
  finish(s);
}

static void on_context(const engram_context_result *r, void *data) {
  slot *s = data;
  s->rc = r->status != 0;
  s->nrows = r->count;
  if (r->timed_out)
    s->m->a->timed_out++;
  for (size_t i = 0; i < r->count && i < MAX_MEMORIES; i++)
    memcpy(s->ids[i], r->ids[i], ENGRAM_ID_LEN + 1);
  finish(s);
}

static void start_next(slot *s) {
  measure *m = s->m;
  if (m->next == m->end)
    return;
  s->qi = m->next++;
  s->nrows = 0;
  s->rc = 0;
  s->start_ns = stats_now_ns();
  if (m->path == P_RAW) {
    s->work.data = s;
    if (uv_queue_work(&loop, &s->work, raw_work, raw_after) != 0)
      abort();
  } else {
    /* Lexical: the raw side runs the same FTS5 query, and the ids of
     * both must match (hybrid re-ranks; docs/retrieval.md measures it). */
    engram_context_options co = {.max_memories = opt.max_memories,
                                 .timeout_ms = opt.timeout_ms,
                                 .strategy = ENGRAM_STRATEGY_LEXICAL};
    int rc =
        engram_context_inject(eg, NS, queries[s->qi], &co, on_context, s, NULL);
    if (rc != 0) {
      fprintf(stderr, "inject: %s\n", engram_strerror(rc));
      abort();
    }
  }
}

static raw_conn *inline_conn;

/* Queries [from, to) on one path with c in flight (inline: one at a time on
 * this thread), added to a. */
static void run_block(int path, size_t c, size_t from, size_t to, acc *a) {
  uint64_t t0 = stats_now_ns();
  if (path == P_INLINE) {
    char ids[MAX_MEMORIES][ENGRAM_ID_LEN + 1];
    if (!inline_conn)
      inline_conn = conn_open();
    for (size_t i = from; i < to; i++) {
      uint64_t s = stats_now_ns();
      int n = raw_query(inline_conn, i, ids);
      record(a, i, stats_now_ns() - s, n < 0 ? 0 : (size_t)n, n < 0, ids);
    }
  } else {
    measure m = {
        .path = path, .next = from, .end = to, .total = to - from, .a = a};
    slot *slots = calloc(c, sizeof *slots);
    if (!slots)
      abort();
    for (size_t i = 0; i < c; i++) {
      slots[i].m = &m;
      start_next(&slots[i]);
    }
    while (m.done < m.total)
      uv_run(&loop, UV_RUN_ONCE);
    free(slots);
  }
  a->busy_ns += stats_now_ns() - t0;
}

typedef struct figures {
  double p50_ms, p99_ms, qps, rows_per_query;
  size_t empty, errors, timed_out;
} figures;

static void acc_figures(acc *a, figures *f) {
  stats_sort_u64(a->lat, a->n);
  f->p50_ms = stats_percentile(a->lat, a->n, 50) / 1e6;
  f->p99_ms = stats_percentile(a->lat, a->n, 99) / 1e6;
  f->qps = (double)a->n / ((double)a->busy_ns / 1e9);
  f->rows_per_query = a->n ? (double)a->rows / (double)a->n : 0;
  f->empty = a->empty;
  f->errors = a->errors;
  f->timed_out = a->timed_out;
}

/* One run at concurrency c: the queries in blocks, each block run by every
 * path in turn (the order rotating), so that drift in the machine's speed
 * hits all paths alike. */
static void run_level(size_t c, int npaths, figures *out, acc *keep) {
  size_t nq = opt.queries;
  size_t block = c == 1 ? 25 : 8 * c;
  acc a[P_COUNT];
  memset(a, 0, sizeof a);
  for (int p = 0; p < npaths; p++) {
    a[p].lat = calloc(nq, sizeof *a[p].lat);
    if (!a[p].lat)
      abort();
    if (keep) {
      a[p].ids = keep[p].ids;
      a[p].nids = keep[p].nids;
    }
  }
  size_t k = 0;
  for (size_t from = 0; from < nq; from += block, k++) {
    size_t to = from + block < nq ? from + block : nq;
    for (int i = 0; i < npaths; i++) {
      int p = (int)((k + (size_t)i) % (size_t)npaths);
      run_block(p, c, from, to, &a[p]);
    }
  }
  for (int p = 0; p < npaths; p++) {
    acc_figures(&a[p], &out[p]);
    free(a[p].lat);
  }
}

/* ----------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f, "usage: bench_context [options]\n"
             "  --n N            memories in the store (100000)\n"
             "  --queries N      queries per measurement (2000)\n"
             "  --runs N         runs; tables show medians (3)\n"
             "  --levels A,B     concurrency levels (1,64)\n"
             "  --readers N      engram readers = raw connections (4)\n"
             "  --pool N         UV_THREADPOOL_SIZE (4)\n"
             "  --max N          max_memories / LIMIT (10)\n"
             "  --timeout-ms MS  injection deadline (60000: long enough that "
             "no answer is cut, so both sides do the same work)\n"
             "  --seed N         corpus seed (42)\n");
}

static int parse_args(int argc, char **argv) {
  const bench_arg opts[] = {
      {"--n", ARG_SIZE, &opt.n, NULL, 0},
      {"--queries", ARG_SIZE, &opt.queries, NULL, 0},
      {"--runs", ARG_SIZE, &opt.runs, NULL, 0},
      {"--readers", ARG_UNSIGNED, &opt.readers, NULL, 0},
      {"--pool", ARG_UNSIGNED, &opt.pool, NULL, 0},
      {"--max", ARG_UNSIGNED, &opt.max_memories, NULL, 0},
      {"--timeout-ms", ARG_U64, &opt.timeout_ms, NULL, 0},
      {"--seed", ARG_U64, &opt.seed, NULL, 0},
      {"--levels", ARG_LEVELS, opt.levels, &opt.nlevels, MAX_LEVELS},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "context", opts, usage) != 0)
    return -1;
  if (!opt.n || !opt.queries || !opt.runs || !opt.nlevels || !opt.pool ||
      !opt.readers || !opt.max_memories || opt.max_memories > MAX_MEMORIES ||
      !opt.timeout_ms) {
    fprintf(stderr, "context: every count must be positive (--max <= %d)\n",
            MAX_MEMORIES);
    return -1;
  }
  return 0;
}

/* v[r] = the field at offset of run r's figures for level l, path p. */
static void fill(double *v, const figures *f, size_t runs, size_t l, int p,
                 size_t offset) {
  for (size_t r = 0; r < runs; r++) {
    double d;
    memcpy(&d, (const char *)&f[(l * runs + r) * P_COUNT + (size_t)p] + offset,
           sizeof d);
    v[r] = d;
  }
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) != 0)
    return 2;
  char pool[16];
  snprintf(pool, sizeof pool, "%u", opt.pool);
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  setvbuf(stdout, NULL, _IOLBF, 0);

  char dir[4096];
  if (benchdb_mkdir("context", dir, sizeof dir) != 0) {
    perror("context: mkdtemp");
    return 1;
  }
  snprintf(db_path, sizeof db_path, "%s/engram.db", dir);
  uv_loop_init(&loop);
  engram_options eo;
  engram_options_init(&eo);
  eo.db = db_path;
  eo.readers = opt.readers;
  if (engram_init(&eg, &loop, &eo) != 0 || benchdb_open(eg) != 0)
    return 1;
  corpus *cp = corpus_new(opt.seed, 0);
  if (!cp)
    return 1;
  uint64_t t = stats_now_ns();
  if (benchdb_fill(eg, NS, ENGRAM_EPISODIC, cp, opt.n, 1000) != 0)
    return 1;
  double fill_s = (double)(stats_now_ns() - t) / 1e9;

  size_t nq = opt.queries;
  queries = calloc(nq, sizeof *queries);
  matches = calloc(nq, sizeof *matches);
  if (!queries || !matches)
    return 1;
  for (size_t i = 0; i < nq; i++) {
    char buf[CORPUS_MAX_SENTENCE];
    size_t len = corpus_query(cp, buf, sizeof buf);
    size_t tokens;
    queries[i] = strdup(buf);
    if (!queries[i] || sqlite_match_build(buf, len, &matches[i], &tokens) != 0)
      return 1;
    if (!matches[i] && !(matches[i] = strdup("")))
      return 1;
  }

  printf("# bench_context\n\n");
  printf("store: %zu memories (corpus seed %llu), filled in %.1f s; libuv "
         "pool %u threads; engram readers %u = raw connections %u\n",
         opt.n, (unsigned long long)opt.seed, fill_s, opt.pool, opt.readers,
         opt.readers);
  printf("%zu queries per measurement, max_memories = LIMIT %u, injection "
         "deadline %llu ms, %zu runs (medians below); concurrency c = c "
         "requests in flight at all times\n",
         nq, opt.max_memories, (unsigned long long)opt.timeout_ms, opt.runs);
  printf("e.g. query: \"%s\" -> MATCH '%s'\n\n", queries[0], matches[0]);

  /* Warm-up: page cache, every connection's prepared statement. */
  figures w[P_COUNT];
  {
    size_t saved = opt.queries;
    opt.queries = nq < 512 ? nq : 512;
    run_level(64, 2, w, NULL);
    run_level(1, 3, w, NULL);
    opt.queries = saved;
  }

  /* Same rows? Once, at concurrency 1, engram against raw (pool). */
  acc keep[P_COUNT];
  memset(keep, 0, sizeof keep);
  for (int p = 0; p < 2; p++) {
    keep[p].ids = calloc(nq, sizeof *keep[p].ids);
    keep[p].nids = calloc(nq, sizeof *keep[p].nids);
    if (!keep[p].ids || !keep[p].nids)
      return 1;
  }

  size_t nl = opt.nlevels, runs = opt.runs;
  /* f[(l * runs + r) * P_COUNT + path] */
  figures *f = calloc(nl * runs * P_COUNT, sizeof *f);
  if (!f)
    return 1;
  int checked = 0;
  for (size_t r = 0; r < runs; r++) {
    for (size_t l = 0; l < nl; l++) {
      size_t c = opt.levels[l];
      int check = !checked && c == 1;
      figures *x = &f[(l * runs + r) * P_COUNT];
      run_level(c, c == 1 ? 3 : 2, x, check ? keep : NULL);
      checked |= check;
      printf("run %zu, c=%zu: engram p50 %.3f p99 %.3f ms %.0f/s | raw p50 "
             "%.3f p99 %.3f ms %.0f/s | engram/raw p50 %.2f",
             r + 1, c, x[P_ENGRAM].p50_ms, x[P_ENGRAM].p99_ms, x[P_ENGRAM].qps,
             x[P_RAW].p50_ms, x[P_RAW].p99_ms, x[P_RAW].qps,
             x[P_ENGRAM].p50_ms / x[P_RAW].p50_ms);
      if (c == 1)
        printf(" | inline p50 %.3f p99 %.3f ms %.0f/s", x[P_INLINE].p50_ms,
               x[P_INLINE].p99_ms, x[P_INLINE].qps);
      printf("\n");
    }
  }

  size_t same = 0, differ = 0;
  for (size_t i = 0; checked && i < nq; i++) {
    const acc *e = &keep[P_ENGRAM], *x = &keep[P_RAW];
    int eq = e->nids[i] == x->nids[i];
    for (size_t k = 0; eq && k < e->nids[i]; k++)
      eq = strcmp(e->ids[i][k], x->ids[i][k]) == 0;
    if (eq)
      same++;
    else if (differ++ < 3)
      printf("rows differ for \"%s\": engram %zu, raw %zu\n", queries[i],
             e->nids[i], x->nids[i]);
  }
  if (checked)
    printf("\nsame rows in the same order: %zu of %zu queries\n", same, nq);

  printf("\n## medians of %zu runs\n\n", runs);
  printf("| c | path | p50 ms | p99 ms | throughput /s | rows/query | empty | "
         "timed out | errors |\n");
  printf("|--:|---|--:|--:|--:|--:|--:|--:|--:|\n");
  double *v = calloc(runs, sizeof *v);
  if (!v)
    return 1;
#define MED(l, p, field)                                                       \
  (fill(v, f, runs, l, p, offsetof(figures, field)), stats_median(v, runs))
  for (size_t l = 0; l < nl; l++) {
    int npaths = opt.levels[l] == 1 ? 3 : 2;
    for (int p = 0; p < npaths; p++) {
      const figures *x0 = &f[(l * runs) * P_COUNT + (size_t)p];
      printf("| %zu | %s | %.3f | %.3f | %.0f | %.2f | %zu | %zu | %zu |\n",
             opt.levels[l], path_name[p], MED(l, p, p50_ms), MED(l, p, p99_ms),
             MED(l, p, qps), x0->rows_per_query, x0->empty, x0->timed_out,
             x0->errors);
    }
  }

  /* Ratios: per run (both sides measured over the same stretch of time),
   * then the median over runs. */
  printf("\nRATIOS (engram / raw FTS5, same run, interleaved; median over "
         "runs)\n");
  for (size_t l = 0; l < nl; l++) {
    size_t c = opt.levels[l];
    for (size_t r = 0; r < runs; r++) {
      const figures *x = &f[(l * runs + r) * P_COUNT];
      v[r] = x[P_ENGRAM].p50_ms / x[P_RAW].p50_ms;
    }
    double r50 = stats_median(v, runs);
    for (size_t r = 0; r < runs; r++) {
      const figures *x = &f[(l * runs + r) * P_COUNT];
      v[r] = x[P_ENGRAM].p99_ms / x[P_RAW].p99_ms;
    }
    double r99 = stats_median(v, runs);
    for (size_t r = 0; r < runs; r++) {
      const figures *x = &f[(l * runs + r) * P_COUNT];
      v[r] = x[P_ENGRAM].qps / x[P_RAW].qps;
    }
    double rq = stats_median(v, runs);
    printf("  c=%-4zu p50 latency  %5.2f  (target <= 1.30)  %s\n", c, r50,
           r50 <= 1.3 ? "PASS" : "MISS");
    printf("  c=%-4zu p99 latency  %5.2f  (no target)\n", c, r99);
    printf("  c=%-4zu throughput   %5.2f  (engram / raw; no target)\n", c, rq);
    if (c == 1) {
      for (size_t r = 0; r < runs; r++) {
        const figures *x = &f[(l * runs + r) * P_COUNT];
        v[r] = x[P_ENGRAM].p50_ms / x[P_INLINE].p50_ms;
      }
      printf("  c=1    p50 vs raw inline on the loop thread (no pool hop) "
             "%5.2f  (no target)\n",
             stats_median(v, runs));
    }
  }
#undef MED
  if (checked)
    printf("  same ids, same order  %zu of %zu queries  (target all)  %s\n",
           same, nq, same == nq ? "PASS" : "FAIL");
  else
    printf("  same ids: not checked (no level 1)\n");

  free(v);
  free(f);
  for (int p = 0; p < 2; p++) {
    free(keep[p].ids);
    free(keep[p].nids);
  }
  conns_close();
  benchdb_close(eg);
  uv_run(&loop, UV_RUN_DEFAULT);
  engram_free(eg);
  uv_loop_close(&loop);
  for (size_t i = 0; i < nq; i++) {
    free(queries[i]);
    free(matches[i]);
  }
  free(queries);
  free(matches);
  corpus_free(cp);
  benchdb_rmdir(dir);
  /* A missed target is a result; different answers are a failure. */
  return checked && same != nq ? 1 : 0;
}
