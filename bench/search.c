/*
 * search.c — hybrid search at scale: engram's hybrid search beside the
 * naive FTS5 query, on the same file and the same questions, in the same
 * run, with the latency ratio and the recall of each printed.
 *
 * For each size N (--sizes, default 100,000 and 1,000,000): one namespace
 * of N corpus sentences (bench/common/corpus.c: a Zipf vocabulary, so a
 * few words are in thousands of rows), written through engram_write in
 * batches (benchdb_fill), as memories of one type (--type, default
 * semantic: the sentences are facts, not the turns of a conversation;
 * episodic memories take neighbours, see docs/api-search.md). The file is
 * kept in --db-dir, named after the seed, the vocabulary, N, the type and
 * the embedder engram writes vectors with, and reused by the next run
 * that asks for the same (it is written under another name and renamed
 * once complete, so a file that is there is whole); the output says
 * which.
 *
 * Questions with a planted answer: a random memory of the file (seeded),
 * and a question made of 2-4 of its words (stop words aside) and 1-3 of
 * the corpus's 200 most frequent words (which it may or may not contain),
 * shuffled. Recall@10: the fraction of questions whose memory is in a
 * side's top ten.
 *
 * The sides, each timed from its call to its last row (engram: to the
 * done callback of engram_search + engram_stream_take(10)):
 *   naive   raw sqlite3 on a read-only connection to the same file:
 *           SELECT rowid FROM memories_fts WHERE memories_fts MATCH
 *           '{content meta} : ("w1" OR "w2" ...)' ORDER BY
 *           bm25(memories_fts) LIMIT 10, the words chosen and quoted by
 *           engram's own builder (sqlite_match_build), then the ten rowids
 *           mapped to ids. It scores every row that has any of the words.
 *           The file has one namespace, so no namespace filter is needed
 *           (engram's side filters by namespace, which costs it, if
 *           anything).
 *   hybrid  engram_search, strategy hybrid, default options (--budget
 *           sets max_scored).
 *   lexical engram_search, strategy lexical (for information: it ranks
 *           every match, as naive does).
 *   exact   (--exact) hybrid with max_scored at its maximum, so that no
 *           cap binds: what the cap costs in recall, if anything.
 * Naive and hybrid alternate question by question (which goes first
 * alternates too) after an untimed warm-up of every side; lexical and
 * exact then get a pass each of their own (they use engram's connections,
 * whose page caches they would otherwise churn under hybrid). Per size: p50,
 * p95 and queries/s of each side, the ratio naive p50 / hybrid p50 (target: at
 * least 10) and the recall of each (target: hybrid at least naive), each target
 * marked PASS or MISS. With --runs R, the questions are asked R times and the
 * medians printed. The exit status is 1 on an error only; a missed target
 * is a result.
 */
#include <libpq-fe.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "benchdb.h"
#include "core/core.h"
#include "corpus.h"
#include "engram.h"
#include "pgraw.h"
#include "rng.h"
#include "stats.h"
#include "store/sqlite/sqlite_internal.h"

#define NS "bench"
#define TOP 10
#define MAX_SIZES 8
#define MAX_RUNS 15
#define FREQUENT 200 /* the question's common words come from these */
#define COUNTED 50   /* questions whose match count is printed */

#define NAIVE_SQL                                                              \
  "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?1"                 \
  " ORDER BY bm25(memories_fts) LIMIT 10"
#define COUNT_SQL                                                              \
  "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?1"

typedef struct config {
  size_t sizes[MAX_SIZES];
  size_t nsizes;
  size_t queries;
  size_t warmup;
  uint64_t seed;
  size_t vocab;
  const char *dir;
  unsigned budget;
  const char *weights; /* engram_search_options_set text; NULL: defaults */
  unsigned runs;
  int quick;
  int exact;
  const char *only;      /* one side alone (profiling); NULL: all */
  const char *db;        /* a PostgreSQL conninfo (--db): that backend */
  const char *type_name; /* --type: the memories' type */
  engram_type type;
  char space[64]; /* the default embedder's name and dimension */
} config;

enum { S_NAIVE, S_HYBRID, S_LEXICAL, S_EXACT, S_COUNT };
static const char *const side_name[S_COUNT] = {"naive", "hybrid", "lexical",
                                               "exact"};

typedef struct side_result {
  double p50, p95, qps; /* microseconds, queries per second */
  double cpu;           /* CPU microseconds per query, the whole process */
  size_t found;         /* questions whose answer was in the top ten */
  size_t alone;         /* ... and not in the other side's (naive and
                           hybrid): the paired difference behind recall */
} side_result;

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench_search: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* ------------------------------------------------------------- the file */

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void remove_db(const char *path) {
  char p[4400];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
}

/* "<name>-<dim>" of the embedder a handle with default options has: part
 * of a kept file's name, so that a file written without vectors, or with
 * another embedder's, is not reused as if it were what engram writes. */
static void default_space(char *out, size_t cap) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = "unused.db"; /* the handle is never opened */
  engram *eg;
  if (engram_init(&eg, NULL, &opts) != 0)
    die("engram_init failed");
  uint32_t dim = 0;
  const char *name = engram_embedder_name(eg, &dim);
  snprintf(out, cap, "%s-%u", name ? name : "none", (unsigned)dim);
  engram_free(eg);
}

static engram *open_engram(const char *path) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = path;
  engram *eg;
  if (engram_init(&eg, NULL, &opts) != 0)
    die("engram_init failed");
  if (benchdb_open(eg) != 0)
    die("cannot open %s", path);
  return eg;
}

static void close_engram(engram *eg) {
  benchdb_close(eg);
  engram_free(eg);
}

/* Writes the corpus's first n memories (of cfg's type) into the database
 * at `where`, a file or a conninfo, in batches of 1000; the seconds it
 * took. */
static double fill_timed(const config *cfg, const char *where, size_t n) {
  corpus *c = corpus_new(cfg->seed, cfg->vocab);
  if (!c)
    die("out of memory for the corpus");
  engram *eg = open_engram(where);
  uint64_t t0 = stats_now_ns();
  if (benchdb_fill(eg, NS, cfg->type, c, n, 1000) != 0)
    die("filling %s failed", where);
  double secs = (double)(stats_now_ns() - t0) / 1e9;
  close_engram(eg);
  corpus_free(c);
  return secs;
}

/* The file for (seed, vocab, n, type, embedder), written when missing: into a
 * scratch name, renamed once engram closed it (the WAL checkpointed). */
static void ensure_file(const config *cfg, size_t n, char *path, size_t cap) {
  snprintf(path, cap, "%s/search-s%llu-v%zu-n%zu-%s-%s.db", cfg->dir,
           (unsigned long long)cfg->seed, cfg->vocab, n, cfg->type_name,
           cfg->space);
  if (file_exists(path)) {
    printf("  file %s: reused (same seed, vocabulary, size, type and "
           "embedder)\n",
           path);
    return;
  }
  char scratch[4200];
  snprintf(scratch, sizeof scratch, "%s.partial", path);
  remove_db(scratch);
  double secs = fill_timed(cfg, scratch, n);
  if (rename(scratch, path) != 0)
    die("cannot rename %s to %s", scratch, path);
  printf("  file %s: written, %zu memories in %.1f s (%.0f/s, engram_write "
         "batches of 1000)\n",
         path, n, secs, (double)n / secs);
}

/* --------------------------------------------------------- the questions */

/* Document frequencies of the corpus's words (core_tokenize's tokens, stop
 * words aside): an open-addressing table of arena strings. */
typedef struct word_entry {
  char *word;
  size_t df;
  size_t last_doc; /* counted once per memory */
} word_entry;

typedef struct word_table {
  word_entry *slots;
  size_t cap, n;
  size_t doc;
} word_table;

static uint64_t hash_word(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static void table_grow(word_table *t) {
  size_t cap = t->cap ? t->cap * 2 : 1 << 14;
  word_entry *slots = calloc(cap, sizeof *slots);
  if (!slots)
    die("out of memory for the word table");
  for (size_t i = 0; i < t->cap; i++) {
    if (!t->slots[i].word)
      continue;
    size_t at =
        hash_word(t->slots[i].word, strlen(t->slots[i].word)) & (cap - 1);
    while (slots[at].word)
      at = (at + 1) & (cap - 1);
    slots[at] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
}

static void count_token(const char *tok, size_t len, void *data) {
  word_table *t = data;
  if (core_is_stopword(tok, len))
    return;
  if (2 * (t->n + 1) > t->cap)
    table_grow(t);
  size_t at = hash_word(tok, len) & (t->cap - 1);
  while (t->slots[at].word && (strlen(t->slots[at].word) != len ||
                               memcmp(t->slots[at].word, tok, len) != 0))
    at = (at + 1) & (t->cap - 1);
  word_entry *e = &t->slots[at];
  if (!e->word) {
    if (!(e->word = strndup(tok, len)))
      die("out of memory for the word table");
    t->n++;
    e->last_doc = (size_t)-1;
  }
  if (e->last_doc != t->doc) {
    e->last_doc = t->doc;
    e->df++;
  }
}

static int by_df_desc(const void *a, const void *b) {
  const word_entry *x = a, *y = b;
  if (x->df != y->df)
    return x->df < y->df ? 1 : -1;
  return strcmp(x->word, y->word);
}

static sqlite3 *open_raw(const char *path) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK)
    die("open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_busy_timeout(db, 5000);
  /* engram's readers map the file (SQ_READER_MMAP): so does the
   * reference, so that the ratio is about the queries. */
  sqlite3_exec(db, "PRAGMA mmap_size = " SQ_READER_MMAP, NULL, NULL, NULL);
  return db;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) !=
      SQLITE_OK)
    die("prepare %s: %s", sql, sqlite3_errmsg(db));
  return stmt;
}

/* The FREQUENT most frequent words of a filled table (strings owned by the
 * caller; the table is emptied), and the distinct word count. */
static char **top_words(word_table *t, size_t *distinct) {
  word_entry *all = malloc(t->n * sizeof *all);
  if (!all)
    die("out of memory");
  size_t k = 0;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i].word)
      all[k++] = t->slots[i];
  qsort(all, k, sizeof *all, by_df_desc);
  char **top = calloc(FREQUENT, sizeof *top);
  if (!top || k < FREQUENT)
    die("the corpus has fewer than %d distinct words", FREQUENT);
  for (size_t i = 0; i < k; i++) {
    if (i < FREQUENT)
      top[i] = all[i].word;
    else
      free(all[i].word);
  }
  *distinct = k;
  free(all);
  free(t->slots);
  return top;
}

/* The FREQUENT most frequent words of the file's memories (strings owned
 * by the caller), and the distinct word count. */
static char **frequent_words(sqlite3 *db, size_t *distinct) {
  word_table t = {0};
  table_grow(&t);
  sqlite3_stmt *q = prepare(db, "SELECT content FROM memories");
  while (sqlite3_step(q) == SQLITE_ROW) {
    const char *text = (const char *)sqlite3_column_text(q, 0);
    core_tokenize(text, (size_t)sqlite3_column_bytes(q, 0), count_token, &t);
    t.doc++;
  }
  sqlite3_finalize(q);
  return top_words(&t, distinct);
}

typedef struct question {
  char *text;
  char answer[ENGRAM_ID_LEN + 1];
} question;

typedef struct token_list {
  char words[64][64];
  size_t n;
} token_list;

static void collect_token(const char *tok, size_t len, void *data) {
  token_list *l = data;
  if (core_is_stopword(tok, len) || len >= sizeof l->words[0] ||
      l->n == sizeof l->words / sizeof l->words[0])
    return;
  for (size_t i = 0; i < l->n; i++)
    if (strlen(l->words[i]) == len && memcmp(l->words[i], tok, len) == 0)
      return;
  memcpy(l->words[l->n], tok, len);
  l->words[l->n][len] = '\0';
  l->n++;
}

/* A question about a memory whose words (stop words aside) are own: 2-4
 * of them and 1-3 of the frequent words, shuffled; its text into q (the
 * caller set q->answer). */
static void plant_question(bench_rng *rng, token_list *own, char **frequent,
                           question *q) {
  const char *pick[8];
  size_t np = 0;
  size_t k = (size_t)bench_rng_range(rng, 2, 4);
  if (k > own->n)
    k = own->n;
  for (size_t j = 0; j < k; j++) { /* a partial Fisher-Yates shuffle */
    size_t r = j + (size_t)bench_rng_below(rng, own->n - j);
    char tmp[64];
    memcpy(tmp, own->words[j], sizeof tmp);
    memcpy(own->words[j], own->words[r], sizeof tmp);
    memcpy(own->words[r], tmp, sizeof tmp);
    pick[np++] = own->words[j];
  }
  size_t f = (size_t)bench_rng_range(rng, 1, 3);
  for (size_t j = 0; j < f; j++) {
    const char *w = frequent[bench_rng_below(rng, FREQUENT)];
    int dup = 0;
    for (size_t m = 0; m < np; m++)
      dup |= strcmp(pick[m], w) == 0;
    if (!dup)
      pick[np++] = w;
  }
  for (size_t j = np; j > 1; j--) {
    size_t r = (size_t)bench_rng_below(rng, j);
    const char *tmp = pick[j - 1];
    pick[j - 1] = pick[r];
    pick[r] = tmp;
  }
  char buf[600];
  size_t len = 0;
  for (size_t j = 0; j < np; j++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", j ? " " : "",
                            pick[j]);
  if (!(q->text = strdup(buf)))
    die("out of memory");
}

static question *make_questions(const config *cfg, sqlite3 *db, size_t n,
                                char **frequent) {
  question *qs = calloc(cfg->queries, sizeof *qs);
  if (!qs)
    die("out of memory");
  sqlite3_stmt *get =
      prepare(db, "SELECT id, content FROM memories WHERE rowid = ?1");
  bench_rng rng;
  bench_rng_seed(&rng, cfg->seed ^ 0x5eed0f5ea5c4ull);
  for (size_t i = 0; i < cfg->queries;) {
    sqlite3_bind_int64(get, 1, (sqlite3_int64)(1 + bench_rng_below(&rng, n)));
    if (sqlite3_step(get) != SQLITE_ROW)
      die("memory rowids are not 1..%zu: %s", n, sqlite3_errmsg(db));
    token_list own = {0};
    const char *id = (const char *)sqlite3_column_text(get, 0);
    core_tokenize((const char *)sqlite3_column_text(get, 1),
                  (size_t)sqlite3_column_bytes(get, 1), collect_token, &own);
    if (own.n < 2 || !id || strlen(id) != ENGRAM_ID_LEN) {
      sqlite3_reset(get);
      continue;
    }
    snprintf(qs[i].answer, sizeof qs[i].answer, "%s", id);
    sqlite3_reset(get);
    plant_question(&rng, &own, frequent, &qs[i]);
    i++;
  }
  sqlite3_finalize(get);
  return qs;
}

/* ------------------------------------------------------------ the sides */

typedef struct naive_conn {
  sqlite3 *db;
  sqlite3_stmt *search, *id_of, *count;
} naive_conn;

/* '{content meta} : (<engram's disjunction of the words>)'; NULL when the
 * text has no word. */
static char *naive_match(const char *text) {
  char *words = NULL;
  size_t tokens = 0;
  if (sqlite_match_build(text, strlen(text), &words, &tokens) != 0)
    die("out of memory building a MATCH expression");
  if (!words)
    return NULL;
  size_t len = strlen(words) + 32;
  char *expr = malloc(len);
  if (!expr)
    die("out of memory");
  snprintf(expr, len, "{content meta} : (%s)", words);
  free(words);
  return expr;
}

/* The naive query; 1 when the answer is in its top ten. */
static int search_naive(naive_conn *c, const question *q, uint64_t *ns) {
  uint64_t t0 = stats_now_ns();
  char *expr = naive_match(q->text);
  int found = 0;
  if (expr) {
    sqlite3_int64 rowids[TOP];
    size_t n = 0;
    sqlite3_bind_text(c->search, 1, expr, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(c->search)) == SQLITE_ROW)
      if (n < TOP)
        rowids[n++] = sqlite3_column_int64(c->search, 0);
    if (rc != SQLITE_DONE)
      die("naive query \"%s\": %s", q->text, sqlite3_errmsg(c->db));
    sqlite3_reset(c->search);
    for (size_t i = 0; i < n; i++) {
      sqlite3_bind_int64(c->id_of, 1, rowids[i]);
      if (sqlite3_step(c->id_of) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(c->id_of, 0);
        found |= id && strcmp(id, q->answer) == 0;
      }
      sqlite3_reset(c->id_of);
    }
  }
  *ns = stats_now_ns() - t0;
  free(expr);
  return found;
}

static size_t count_matches(naive_conn *c, const char *text) {
  char *expr = naive_match(text);
  size_t n = 0;
  if (expr) {
    sqlite3_bind_text(c->count, 1, expr, -1, SQLITE_STATIC);
    if (sqlite3_step(c->count) == SQLITE_ROW)
      n = (size_t)sqlite3_column_int64(c->count, 0);
    sqlite3_reset(c->count);
  }
  free(expr);
  return n;
}

typedef struct search_one {
  const char *answer;
  int found;
  size_t n;
  int done;
  int status;
  uint64_t t_done;
} search_one;

static void on_item(engram_stream *s, const engram_node *node, void *data) {
  search_one *so = data;
  (void)s;
  so->n++;
  so->found |= strcmp(node->id, so->answer) == 0;
}

static void on_done(engram_stream *s, int status, void *data) {
  search_one *so = data;
  (void)s;
  so->t_done = stats_now_ns();
  so->status = status;
  so->done = 1;
}

static int search_engram(engram *eg, const question *q, engram_strategy how,
                         const engram_search_options *opt, uint64_t *ns) {
  search_one so = {.answer = q->answer};
  engram_query query = {
      .ns = NS, .text = q->text, .strategy = how, .options = opt};
  engram_stream_cbs cbs = {on_item, NULL, on_done, &so};
  engram_stream *src, *top;
  uint64_t t0 = stats_now_ns();
  int rc = engram_search(eg, &query, NULL, &src);
  if (rc != 0)
    die("engram_search(\"%s\"): %s", q->text, engram_strerror(rc));
  rc = engram_stream_take(src, TOP, &cbs, &top);
  if (rc != 0)
    die("engram_stream_take: %s", engram_strerror(rc));
  engram_stream_request(top, TOP);
  while (!so.done)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && !so.done)
      die("the loop ran dry before a search ended");
  if (so.status != 0)
    die("search \"%s\" ended with %s", q->text, engram_strerror(so.status));
  *ns = so.t_done - t0;
  return so.found;
}

typedef struct sides {
  engram *eg;
  naive_conn naive;
  PGconn *pg; /* --db: the naive side's libpq connection (naive unused) */
  engram_search_options hybrid, exact;
  int nsides;
} sides;

static int search_naive_pg(PGconn *c, const question *q, uint64_t *ns);

static int run_side(sides *s, int side, const question *q, uint64_t *ns) {
  switch (side) {
  case S_NAIVE:
    return s->pg ? search_naive_pg(s->pg, q, ns)
                 : search_naive(&s->naive, q, ns);
  case S_HYBRID:
    return search_engram(s->eg, q, ENGRAM_STRATEGY_HYBRID, &s->hybrid, ns);
  case S_LEXICAL:
    return search_engram(s->eg, q, ENGRAM_STRATEGY_LEXICAL, NULL, ns);
  default:
    return search_engram(s->eg, q, ENGRAM_STRATEGY_HYBRID, &s->exact, ns);
  }
}

/* One pass over the questions, every side per question, the first side
 * rotating. */
static void one_run(const config *cfg, sides *s, const question *qs,
                    side_result res[S_COUNT]) {
  size_t nq = cfg->queries;
  uint64_t *lat[S_COUNT];
  for (int k = 0; k < S_COUNT; k++) {
    lat[k] = calloc(nq, sizeof *lat[k]);
    if (!lat[k])
      die("out of memory");
    res[k] = (side_result){0};
  }
  uint64_t cpu[S_COUNT] = {0};
  int paired[S_COUNT] = {0}; /* the question's answer found, per side */
  /* Naive and hybrid alternate question by question, the first of the two
   * alternating too; lexical and exact get passes of their own afterwards:
   * they rank every match through engram's own connections, and
   * interleaved they would evict hybrid's pages from those connections'
   * caches (naive has a connection of its own). */
  static const int passes[][2] = {
      {S_NAIVE, S_HYBRID}, {S_LEXICAL, S_LEXICAL}, {S_EXACT, S_EXACT}};
  for (size_t pass = 0; pass < sizeof passes / sizeof passes[0]; pass++)
    for (size_t i = 0; i < nq; i++)
      for (size_t j = 0; j < 2; j++) {
        int side = passes[pass][(i + j) % 2];
        if ((j == 1 && passes[pass][0] == passes[pass][1]) ||
            side >= s->nsides ||
            (cfg->only && strcmp(cfg->only, side_name[side]) != 0))
          continue;
        /* CPU time of the whole process (the thread pool too): unlike
         * latency, it does not count waiting for a CPU on a busy machine. */
        uint64_t c0 = stats_cpu_ns();
        int found = run_side(s, side, &qs[i], &lat[side][i]);
        cpu[side] += stats_cpu_ns() - c0;
        res[side].found += (size_t)found;
        if (side == S_NAIVE || side == S_HYBRID)
          paired[side] = found;
        if (pass == 0 && j == 1 && !cfg->only) { /* both sides ran */
          res[S_NAIVE].alone += paired[S_NAIVE] && !paired[S_HYBRID];
          res[S_HYBRID].alone += paired[S_HYBRID] && !paired[S_NAIVE];
        }
      }
  for (int k = 0; k < s->nsides; k++) {
    uint64_t total = 0;
    for (size_t i = 0; i < nq; i++)
      total += lat[k][i];
    stats_sort_u64(lat[k], nq);
    res[k].p50 = stats_percentile(lat[k], nq, 50) / 1e3;
    res[k].p95 = stats_percentile(lat[k], nq, 95) / 1e3;
    res[k].qps = total ? (double)nq / ((double)total / 1e9) : 0;
    res[k].cpu = (double)cpu[k] / (double)nq / 1e3;
    free(lat[k]);
  }
  for (int k = s->nsides; k < S_COUNT; k++)
    free(lat[k]);
}

static double median_of(const side_result *runs, unsigned n, size_t offset) {
  double v[MAX_RUNS];
  for (unsigned i = 0; i < n; i++)
    v[i] = *(const double *)(const void *)((const char *)&runs[i] + offset);
  return stats_median(v, n);
}

typedef struct preloaded {
  int done, status;
} preloaded;

static void on_preloaded(int status, const char *message, void *data) {
  preloaded *p = data;
  p->status = status;
  p->done = 1;
  if (status != 0)
    fprintf(stderr, "bench_search: preload: %s\n", message);
}

/* The namespace into engram's lexical index before anything is timed (a
 * hybrid search of a namespace not loaded yet uses the store's match
 * while the index loads); prints how long the load took. */
static void preload(engram *eg) {
  preloaded p = {0};
  uint64_t t0 = stats_now_ns();
  int rc = engram_preload(eg, NS, on_preloaded, &p);
  if (rc != 0)
    die("engram_preload: %s", engram_strerror(rc));
  while (!p.done)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && !p.done)
      die("the loop ran dry before the preload ended");
  if (p.status != 0)
    die("engram_preload ended with %s", engram_strerror(p.status));
  printf("  lexical index: the namespace loaded in %.0f ms\n",
         (double)(stats_now_ns() - t0) / 1e6);
}

/* Warm-up, the runs, and the table, ratios and targets of one size (the
 * sides set up in s). */
static void measure_and_report(const config *cfg, sides *s, const question *qs,
                               size_t n, int *all_pass) {
  preload(s->eg);
  for (size_t i = 0; i < cfg->warmup && i < cfg->queries; i++)
    for (int k = 0; k < s->nsides; k++) {
      uint64_t ns;
      if (!cfg->only || strcmp(cfg->only, side_name[k]) == 0)
        run_side(s, k, &qs[i], &ns);
    }
  side_result runs[S_COUNT][MAX_RUNS];
  for (unsigned r = 0; r < cfg->runs; r++) {
    side_result res[S_COUNT];
    one_run(cfg, s, qs, res);
    printf("  run %u:", r + 1);
    for (int k = 0; k < s->nsides; k++) {
      runs[k][r] = res[k];
      printf(" %s p50 %.0f us%s", side_name[k], res[k].p50,
             k + 1 < s->nsides ? "," : "");
    }
    printf(" | load %.2f\n", stats_loadavg());
    fflush(stdout);
  }
  printf("  %-8s %12s %12s %10s %12s %10s\n", "side", "p50 us", "p95 us",
         "queries/s", "cpu/query us", "recall@10");
  double p50[S_COUNT], recall[S_COUNT];
  for (int k = 0; k < s->nsides; k++) {
    p50[k] = median_of(runs[k], cfg->runs, offsetof(side_result, p50));
    double p95 = median_of(runs[k], cfg->runs, offsetof(side_result, p95));
    double qps = median_of(runs[k], cfg->runs, offsetof(side_result, qps));
    double cpu = median_of(runs[k], cfg->runs, offsetof(side_result, cpu));
    recall[k] = (double)runs[k][0].found / (double)cfg->queries;
    printf("  %-8s %12.0f %12.0f %10.1f %12.0f %10.3f\n", side_name[k], p50[k],
           p95, qps, cpu, recall[k]);
  }
  double ratio = p50[S_NAIVE] / p50[S_HYBRID];
  int speed_ok = ratio >= 10, recall_ok = recall[S_HYBRID] >= recall[S_NAIVE];
  printf("  RATIOS N=%zu: naive p50 / hybrid p50 = %.1fx (target >= 10): "
         "%s; recall@10 hybrid %.3f vs naive %.3f (target >=): %s\n",
         n, ratio, speed_ok ? "PASS" : "MISS", recall[S_HYBRID],
         recall[S_NAIVE], recall_ok ? "PASS" : "MISS");
  if (!cfg->only)
    printf("  paired (run 1): the answer in hybrid's top ten only: %zu "
           "questions; in naive's only: %zu\n",
           runs[S_HYBRID][0].alone, runs[S_NAIVE][0].alone);
  *all_pass &= speed_ok && recall_ok;
  if (s->nsides > S_EXACT)
    printf("  what the cap costs: recall@10 hybrid %.3f, unpruned %.3f; p50 "
           "%.0f us against %.0f us\n",
           recall[S_HYBRID], recall[S_EXACT], p50[S_HYBRID], p50[S_EXACT]);
}

static size_t count_matches_pg(PGconn *c, const char *text);

/* One size, once the naive side and the questions are ready: the rows the
 * questions match, hybrid search's handle on `where` (a file or a
 * conninfo), the measurement; frees the questions and the words. */
static void run_size(const config *cfg, sides *s, question *qs, char **frequent,
                     size_t n, const char *where, int *all_pass) {
  size_t counted = cfg->queries < COUNTED ? cfg->queries : COUNTED;
  uint64_t *matches = calloc(counted, sizeof *matches);
  if (!matches)
    die("out of memory");
  for (size_t i = 0; i < counted; i++)
    matches[i] = s->pg ? count_matches_pg(s->pg, qs[i].text)
                       : count_matches(&s->naive, qs[i].text);
  stats_sort_u64(matches, counted);
  printf("  rows matching a question (any of its words, first %zu): p10 "
         "%.0f, median %.0f, p90 %.0f\n",
         counted, stats_percentile(matches, counted, 10),
         stats_percentile(matches, counted, 50),
         stats_percentile(matches, counted, 90));
  free(matches);

  s->eg = open_engram(where);
  engram_search_options_init(&s->hybrid);
  if (cfg->weights) /* checked in main */
    engram_search_options_set(&s->hybrid, cfg->weights, NULL, 0);
  if (cfg->budget)
    s->hybrid.max_scored = cfg->budget;
  s->exact = s->hybrid;
  s->exact.max_scored = 10000000u;
  printf("  hybrid: %s%s, max_scored %u\n",
         cfg->weights ? "default options but " : "default options",
         cfg->weights ? cfg->weights : "", s->hybrid.max_scored);

  measure_and_report(cfg, s, qs, n, all_pass);

  close_engram(s->eg);
  for (size_t i = 0; i < cfg->queries; i++)
    free(qs[i].text);
  free(qs);
  for (size_t i = 0; i < FREQUENT; i++)
    free(frequent[i]);
  free(frequent);
}

static void bench_size(const config *cfg, size_t n, int *all_pass) {
  char path[4096];
  printf("\nN = %zu memories, one namespace\n", n);
  ensure_file(cfg, n, path, sizeof path);

  sides s = {0};
  s.nsides = cfg->exact ? S_COUNT : S_EXACT;
  s.naive.db = open_raw(path);
  sqlite3_stmt *cnt = prepare(s.naive.db, "SELECT count(*) FROM memories");
  if (sqlite3_step(cnt) != SQLITE_ROW ||
      (size_t)sqlite3_column_int64(cnt, 0) != n)
    die("%s does not hold %zu memories: remove it", path, n);
  sqlite3_finalize(cnt);

  uint64_t t0 = stats_now_ns();
  size_t distinct = 0;
  char **frequent = frequent_words(s.naive.db, &distinct);
  question *qs = make_questions(cfg, s.naive.db, n, frequent);
  printf("  %zu distinct words (stop words aside), the most frequent "
         "\"%s\"; %zu questions made in %.1f s, e.g. \"%s\"\n",
         distinct, frequent[0], cfg->queries,
         (double)(stats_now_ns() - t0) / 1e9, qs[0].text);
  s.naive.search = prepare(s.naive.db, NAIVE_SQL);
  s.naive.id_of =
      prepare(s.naive.db, "SELECT id FROM memories WHERE rowid = ?1");
  s.naive.count = prepare(s.naive.db, COUNT_SQL);

  run_size(cfg, &s, qs, frequent, n, path, all_pass);
  sqlite3_finalize(s.naive.search);
  sqlite3_finalize(s.naive.id_of);
  sqlite3_finalize(s.naive.count);
  sqlite3_close(s.naive.db);
}

/* ------------------------------------------------- PostgreSQL (--db URL) */

/* With --db the same benchmark runs on the PostgreSQL backend: one schema
 * of the server per (seed, vocabulary, size), search_s<seed>_v<vocab>_n<N>,
 * kept and reused like the SQLite files (written under a scratch name and
 * renamed once complete, then VACUUM ANALYZE: the statistics and
 * visibility map autovacuum would make on a settled database). The
 * questions are made the same way, memory k being the k-th by id (the
 * SQLite file's rowid k + 1), so a seed gives the same questions on both.
 * The naive side is the plain full-text query a PostgreSQL user writes,
 * on its own libpq connection:
 *   SELECT id FROM memories WHERE ns = $1 AND tsv @@ q ORDER BY
 *   ts_rank(tsv, q) DESC LIMIT 10
 * with q = websearch_to_tsquery('engram_text', 'w1 or w2 ...'), the words
 * engram's own tokenizer takes from the question (the configuration is
 * the one memories.tsv is built with). It ranks every row that has any of
 * the words. Lexical search (engram's unpruned ranking, seconds a query at
 * 100,000) runs only with --exact. */

#define PG_NAIVE_SQL                                                           \
  "SELECT id::text FROM memories WHERE ns = $1"                                \
  " AND tsv @@ websearch_to_tsquery('engram_text', $2)"                        \
  " ORDER BY ts_rank(tsv, websearch_to_tsquery('engram_text', $2)) DESC"       \
  " LIMIT 10"
#define PG_COUNT_SQL                                                           \
  "SELECT count(*) FROM memories WHERE ns = $1"                                \
  " AND tsv @@ websearch_to_tsquery('engram_text', $2)"

static PGresult *pg_query(PGconn *c, const char *sql, int n,
                          const char *const *values) {
  PGresult *r = PQexecParams(c, sql, n, NULL, values, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
    die("%s: %s", sql, PQerrorMessage(c));
  return r;
}

/* db (key=value or a postgres:// URI) with schema as the search path. */
static void schema_conninfo(const char *db, const char *schema, char *out,
                            size_t cap) {
  if (strncmp(db, "postgres://", 11) == 0 ||
      strncmp(db, "postgresql://", 13) == 0)
    snprintf(out, cap, "%s%soptions=-csearch_path%%3D%s", db,
             strchr(db, '?') ? "&" : "?", schema);
  else
    snprintf(out, cap, "%s options='-csearch_path=%s'", db, schema);
}

/* The schema for (seed, vocab, n), filled when missing; its conninfo in
 * conn. */
static void ensure_schema(const config *cfg, size_t n, char *conn, size_t cap) {
  char name[96], scratch[112];
  snprintf(name, sizeof name, "search_s%llu_v%zu_n%zu_%s",
           (unsigned long long)cfg->seed, cfg->vocab, n, cfg->type_name);
  snprintf(scratch, sizeof scratch, "%s_partial", name);
  PGconn *admin = pgraw_connect(cfg->db);
  const char *values[1] = {name};
  PGresult *r = pg_query(admin, "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                         1, values);
  int found = PQntuples(r) == 1;
  PQclear(r);
  schema_conninfo(cfg->db, name, conn, cap);
  if (found) {
    printf("  schema %s: reused (same seed, vocabulary, size and type)\n",
           name);
    PQfinish(admin);
    return;
  }
  char scratch_conn[2048];
  pgraw_schema(admin, cfg->db, scratch, scratch_conn, sizeof scratch_conn);
  schema_conninfo(cfg->db, scratch, scratch_conn, sizeof scratch_conn);
  double secs = fill_timed(cfg, scratch_conn, n);
  char sql[256];
  snprintf(sql, sizeof sql, "VACUUM ANALYZE %s.memories", scratch);
  pgraw_exec(admin, sql);
  snprintf(sql, sizeof sql, "ALTER SCHEMA %s RENAME TO %s", scratch, name);
  pgraw_exec(admin, sql);
  PQfinish(admin);
  printf("  schema %s: written, %zu memories in %.1f s (%.0f/s, "
         "engram_write batches of 1000), then VACUUM ANALYZE\n",
         name, n, secs, (double)n / secs);
}

/* The FREQUENT most frequent words of the memories (contents in column 1
 * of rows), as frequent_words. */
static char **frequent_words_of(const PGresult *rows, size_t *distinct) {
  word_table t = {0};
  table_grow(&t);
  for (int i = 0; i < PQntuples(rows); i++) {
    core_tokenize(PQgetvalue(rows, i, 1), (size_t)PQgetlength(rows, i, 1),
                  count_token, &t);
    t.doc++;
  }
  return top_words(&t, distinct);
}

/* As make_questions, memory k being row k of rows (id, content). */
static question *make_questions_of(const config *cfg, const PGresult *rows,
                                   char **frequent) {
  size_t n = (size_t)PQntuples(rows);
  question *qs = calloc(cfg->queries, sizeof *qs);
  if (!qs)
    die("out of memory");
  bench_rng rng;
  bench_rng_seed(&rng, cfg->seed ^ 0x5eed0f5ea5c4ull);
  for (size_t i = 0; i < cfg->queries;) {
    int row = (int)bench_rng_below(&rng, n);
    token_list own = {0};
    const char *id = PQgetvalue(rows, row, 0);
    core_tokenize(PQgetvalue(rows, row, 1), (size_t)PQgetlength(rows, row, 1),
                  collect_token, &own);
    if (own.n < 2 || strlen(id) != ENGRAM_ID_LEN)
      continue;
    snprintf(qs[i].answer, sizeof qs[i].answer, "%s", id);
    plant_question(&rng, &own, frequent, &qs[i]);
    i++;
  }
  return qs;
}

typedef struct or_words {
  char buf[4096];
  size_t len;
} or_words;

static void add_or_word(const char *word, size_t len, int cut, void *data) {
  or_words *w = data;
  (void)cut;
  if (w->len + len + 5 < sizeof w->buf)
    w->len += (size_t)snprintf(w->buf + w->len, sizeof w->buf - w->len,
                               "%s%.*s", w->len ? " or " : "", (int)len, word);
}

/* "w1 or w2 ...": the words engram searches for, as websearch_to_tsquery
 * takes them. */
static void naive_words(const char *text, or_words *w) {
  w->len = 0;
  w->buf[0] = '\0';
  core_search_words(text, strlen(text), add_or_word, w);
}

/* The naive query on PostgreSQL; 1 when the answer is in its top ten. */
static int search_naive_pg(PGconn *c, const question *q, uint64_t *ns) {
  uint64_t t0 = stats_now_ns();
  or_words w;
  naive_words(q->text, &w);
  int found = 0;
  if (w.len) {
    const char *values[2] = {NS, w.buf};
    PGresult *r = pg_query(c, PG_NAIVE_SQL, 2, values);
    for (int i = 0; i < PQntuples(r); i++)
      found |= strcmp(PQgetvalue(r, i, 0), q->answer) == 0;
    PQclear(r);
  }
  *ns = stats_now_ns() - t0;
  return found;
}

static size_t count_matches_pg(PGconn *c, const char *text) {
  or_words w;
  naive_words(text, &w);
  if (!w.len)
    return 0;
  const char *values[2] = {NS, w.buf};
  PGresult *r = pg_query(c, PG_COUNT_SQL, 2, values);
  size_t n = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return n;
}

static void bench_size_pg(const config *cfg, size_t n, int *all_pass) {
  char conn[2048];
  printf("\nN = %zu memories, one namespace (PostgreSQL)\n", n);
  ensure_schema(cfg, n, conn, sizeof conn);

  sides s = {0};
  s.nsides = cfg->exact ? S_COUNT : S_LEXICAL;
  s.pg = pgraw_connect(conn);
  const char *values[1] = {NS};
  PGresult *rows = pg_query(
      s.pg, "SELECT id::text, content FROM memories WHERE ns = $1 ORDER BY id",
      1, values);
  if ((size_t)PQntuples(rows) != n)
    die("schema of %s holds %d memories, not %zu: drop it", conn,
        PQntuples(rows), n);
  uint64_t t0 = stats_now_ns();
  size_t distinct = 0;
  char **frequent = frequent_words_of(rows, &distinct);
  question *qs = make_questions_of(cfg, rows, frequent);
  PQclear(rows);
  printf("  %zu distinct words (stop words aside), the most frequent "
         "\"%s\"; %zu questions made in %.1f s, e.g. \"%s\"\n",
         distinct, frequent[0], cfg->queries,
         (double)(stats_now_ns() - t0) / 1e9, qs[0].text);

  run_size(cfg, &s, qs, frequent, n, conn, all_pass);
  PQfinish(s.pg);
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_search [options]\n"
          "  --sizes A,B      memories per file (default 100000,1000000)\n"
          "  --queries N      questions per size (default 200)\n"
          "  --warmup N       untimed questions first (default 20)\n"
          "  --runs N         passes over the questions; medians printed "
          "(default 1, at most %d)\n"
          "  --seed N         corpus and question seed (default 42)\n"
          "  --vocab N        corpus vocabulary size (default %u)\n"
          "  --db-dir DIR     where the files are kept and reused (default "
          "$ENGRAM_BENCH_TMP, $TMPDIR or /tmp)\n"
          "  --budget N       hybrid's max_scored (default: engram's)\n"
          "  --weights LIST   hybrid's other options, NAME=VALUE,... as "
          "engram search --weights\n"
          "  --exact          also hybrid with no cap (max_scored at its "
          "maximum)\n"
          "  --quick          a smoke run: 20000 memories, 40 questions\n"
          "  --type NAME      the memories' type: semantic (facts, the "
          "default), episodic\n"
          "                   (conversation turns: they take neighbours), "
          "procedural, working\n"
          "  --only SIDE      time one side alone (naive, hybrid, lexical, "
          "exact), to profile it\n"
          "  --db URL         on the PostgreSQL backend at URL (a libpq "
          "conninfo):\n"
          "                   schemas search_s<seed>_v<vocab>_n<N>_<type> "
          "kept there, the naive\n"
          "                   side ts_rank over every match, lexical only "
          "with --exact\n",
          MAX_RUNS, CORPUS_DEFAULT_VOCAB);
}

int main(int argc, char **argv) {
  config cfg = {.sizes = {100000, 1000000},
                .nsizes = 2,
                .queries = 200,
                .warmup = 20,
                .seed = 42,
                .vocab = CORPUS_DEFAULT_VOCAB,
                .runs = 1,
                .type_name = "semantic"};
  const bench_arg opts[] = {
      {"--sizes", ARG_LEVELS, cfg.sizes, &cfg.nsizes, MAX_SIZES},
      {"--queries", ARG_SIZE, &cfg.queries, NULL, 0},
      {"--warmup", ARG_SIZE, &cfg.warmup, NULL, 0},
      {"--runs", ARG_UNSIGNED, &cfg.runs, NULL, 0},
      {"--seed", ARG_U64, &cfg.seed, NULL, 0},
      {"--vocab", ARG_SIZE, &cfg.vocab, NULL, 0},
      {"--db-dir", ARG_STR, &cfg.dir, NULL, 0},
      {"--budget", ARG_UNSIGNED, &cfg.budget, NULL, 0},
      {"--weights", ARG_STR, &cfg.weights, NULL, 0},
      {"--exact", ARG_FLAG, &cfg.exact, NULL, 0},
      {"--quick", ARG_FLAG, &cfg.quick, NULL, 0},
      {"--only", ARG_STR, &cfg.only, NULL, 0},
      {"--db", ARG_STR, &cfg.db, NULL, 0},
      {"--type", ARG_STR, &cfg.type_name, NULL, 0},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "bench_search", opts, usage) != 0)
    return 2;
  if (cfg.quick) {
    cfg.sizes[0] = 20000;
    cfg.nsizes = 1;
    cfg.queries = 40;
    cfg.warmup = 5;
  }
  engram_search_options check;
  char err[512];
  engram_search_options_init(&check);
  if (cfg.weights &&
      engram_search_options_set(&check, cfg.weights, err, sizeof err) != 0)
    die("--weights: %s", err);
  if (engram_type_parse(cfg.type_name, &cfg.type) != 0)
    die("--type must be episodic, semantic, procedural or working, not '%s'",
        cfg.type_name);
  default_space(cfg.space, sizeof cfg.space);
  if (cfg.runs < 1 || cfg.runs > MAX_RUNS || cfg.queries < 1 || cfg.vocab < 200)
    die("--runs must be 1..%d, --queries at least 1, --vocab at least 200",
        MAX_RUNS);
  if (!cfg.dir) {
    cfg.dir = getenv("ENGRAM_BENCH_TMP");
    if (!cfg.dir || !*cfg.dir)
      cfg.dir = getenv("TMPDIR");
    if (!cfg.dir || !*cfg.dir)
      cfg.dir = "/tmp";
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (cfg.db)
    printf("# bench_search: hybrid search beside the naive PostgreSQL "
           "full-text query (ts_rank() over every matching row), at %s\n",
           cfg.db);
  else
    printf("# bench_search: hybrid search beside the naive FTS5 query "
           "(bm25() over every matching row)\n");
  printf("seed %llu, vocabulary %zu, %s memories, %zu questions (2-4 words "
         "of a memory + 1-3 of the %d most frequent words), %u run(s), "
         "warm-up %zu, load %.2f\n",
         (unsigned long long)cfg.seed, cfg.vocab, cfg.type_name, cfg.queries,
         FREQUENT, cfg.runs, cfg.warmup, stats_loadavg());
  int all_pass = 1;
  for (size_t i = 0; i < cfg.nsizes; i++) {
    if (cfg.db)
      bench_size_pg(&cfg, cfg.sizes[i], &all_pass);
    else
      bench_size(&cfg, cfg.sizes[i], &all_pass);
  }
  printf("\nall targets: %s\n", all_pass ? "PASS" : "MISS");
  return 0;
}
