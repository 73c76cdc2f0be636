/*
 * vector.c — exact vector search: engram's scan against a plain scalar
 * loop and against FAISS IndexFlatIP, on the same vectors and queries, in
 * the same run, with the machine's memory read bandwidth measured beside
 * them.
 *
 * Sets: --n levels of random vectors (uniform in [-1, 1)^dim, normalized;
 * fixed seed), and --hashed-n vectors of the built-in hashed embedder over
 * synthetic sentences (bench/common/corpus.c), queried with corpus
 * questions. For each query, every path runs once, the order rotating from
 * query to query so that drift in the machine's speed hits all alike:
 *
 *   - scalar loop: one row after another, one multiply-add at a time into
 *     one float, a sorted array of the best k; the code anyone would write
 *     first (the compiler cannot vectorize a float sum without
 *     -ffast-math, and the build does not use it);
 *   - engram float: vector_scan_start() on the libuv pool, kernel chosen at
 *     run time (AVX2+FMA here), chunks of --chunk rows, --parallel chunks
 *     in flight, latency from the call to the callback on the loop;
 *   - engram int8: the same scan over the int8 rows, the best k * --rerank
 *     re-ranked with the float rows;
 *   - FAISS IndexFlatIP: index.search() with one query, OpenMP threads =
 *     --parallel (FAISS uses one thread for a single query anyway);
 *   - bandwidth: a streaming sum (AVX2 when the CPU has it) over the same
 *     float rows, as fast as the memory gives them: the reference.
 *
 * The scalar loop, FAISS and the bandwidth pass run on the same libuv
 * pool thread as engram's chunks (uv_queue_work), timed inside the task,
 * so every path reads memory from the same thread under the same
 * conditions; engram's latency also includes its trips between pool and
 * loop. The reference reads exactly the bytes the float scan reads, just
 * as often: on a virtual machine the speed of memory depends on how
 * recently it was touched (a buffer left alone for a few seconds reads at
 * a third of the speed of one in use), so a separate buffer would not be
 * a fair yardstick. "of bandwidth" = bytes a path must read per query
 * (the rows it scans) / its p50 latency / the p50 rate of that pass.
 *
 * Answers are checked against the scalar loop: engram float must return
 * the same ids (recall@k 1 up to float ties), int8 + re-rank recall@k must
 * be at least 0.99 on random vectors; else the benchmark fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "args.h"
#include "corpus.h"
#include "rng.h"
#include "search/embed.h"
#include "search/vector.h"
#include "stats.h"
#ifdef ENGRAM_HAVE_FAISS
#include "faiss_shim.h"
#endif

#define MAX_LEVELS 8
#define MAX_K 1000

typedef struct options {
  size_t levels[MAX_LEVELS];
  size_t nlevels;
  size_t hashed_n;
  size_t dim;
  size_t queries;
  size_t k;
  size_t chunk;
  unsigned rerank;
  unsigned parallel;
  uint64_t seed;
} options;

static options opt = {
    .levels = {100000, 1000000},
    .nlevels = 2,
    .hashed_n = 100000,
    .dim = 384,
    .queries = 200,
    .k = 10,
    .chunk = VECTOR_DEFAULT_CHUNK_ROWS,
    .rerank = VECTOR_DEFAULT_RERANK,
    .parallel = 1,
    .seed = 1,
};

/* The paths of the table, then the bandwidth pass (in the rotation, not
 * in the table). */
enum { P_SCALAR, P_FLOAT, P_INT8, P_FAISS, P_BW, P_COUNT };
static const char *const path_name[P_COUNT] = {
    "scalar loop", "engram float", "engram int8 + re-rank", "FAISS IndexFlatIP",
    "bandwidth pass"};

static uv_loop_t loop;
static rt runtime;

/* ----------------------------------------------------------- bandwidth */

static volatile uint64_t bw_sink;

#if defined(__x86_64__)
#include <immintrin.h>

/* Four independent 256-bit sums: the adds keep up with any memory system,
 * so the pass is bound by the reads (as the scan kernels are). */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p,
                                                         size_t words) {
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
  for (size_t i = 0; i + 16 <= words; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 12)));
  }
  __m256i s =
      _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t out[4];
  _mm256_storeu_si256((__m256i *)out, s);
  return out[0] + out[1] + out[2] + out[3];
}
#endif

/* Eight independent sums: what a CPU without AVX2 gets. */
static uint64_t sum_plain(const uint64_t *p, size_t words) {
  uint64_t s[8] = {0};
  for (size_t i = 0; i + 8 <= words; i += 8)
    for (int j = 0; j < 8; j++)
      s[j] += p[i + (size_t)j];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* Bytes a bandwidth pass over s reads: its float rows, in whole blocks of
 * 128 bytes (what both sums read). */
static size_t bandwidth_bytes(const vector_set *s) {
  size_t bytes = s->n * s->stride * sizeof(float);
  return bytes - bytes % 128;
}

/* Streams through the set's float rows. */
static void bandwidth_pass(const vector_set *s) {
  const uint64_t *p = (const uint64_t *)(const void *)s->rows;
  size_t words = bandwidth_bytes(s) / sizeof(uint64_t);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2"))
    bw_sink += sum_avx2(p, words);
  else
#endif
    bw_sink += sum_plain(p, words);
}

/* ------------------------------------------------------------- paths */

typedef struct result {
  int64_t ids[MAX_K];
  float scores[MAX_K];
  size_t n;
} result;

/* Plain loop; ids are rows' ids. */
static void scalar_topk(const vector_set *s, const float *q, size_t k,
                        result *out) {
  out->n = 0;
  for (size_t r = 0; r < s->n; r++) {
    const float *row = vector_set_row(s, r);
    float d = 0;
    for (size_t j = 0; j < s->dim; j++)
      d += row[j] * q[j];
    if (out->n == k && d <= out->scores[k - 1])
      continue;
    size_t at = out->n < k ? out->n++ : k - 1;
    while (at > 0 && out->scores[at - 1] < d) {
      out->scores[at] = out->scores[at - 1];
      out->ids[at] = out->ids[at - 1];
      at--;
    }
    out->scores[at] = d;
    out->ids[at] = s->ids[r];
  }
}

typedef struct scan_wait {
  result *out;
  int done, status;
  uint64_t end_ns;
} scan_wait;

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t n, void *data) {
  (void)scan;
  scan_wait *w = data;
  w->end_ns = stats_now_ns();
  w->status = status;
  w->done = 1;
  w->out->n = n;
  for (size_t i = 0; i < n; i++) {
    w->out->ids[i] = hits[i].id;
    w->out->scores[i] = hits[i].score;
  }
}

/* One scan on the pool; returns its latency in ns (0 on error). */
static uint64_t engram_scan(const vector_set *s, const float *q, int int8,
                            result *out) {
  vector_search_options o = {.k = opt.k,
                             .use_int8 = int8,
                             .rerank_factor = opt.rerank,
                             .chunk_rows = opt.chunk,
                             .parallel = opt.parallel};
  scan_wait w = {.out = out};
  vector_scan *scan;
  uint64_t t = stats_now_ns();
  if (vector_scan_start(&runtime, s, q, &o, on_scan, &w, &scan) != 0)
    return 0;
  uv_run(&loop, UV_RUN_DEFAULT);
  return w.done && w.status == 0 ? w.end_ns - t : 0;
}

#ifdef ENGRAM_HAVE_FAISS
static faiss_flat *faiss_index;

static int faiss_build(const vector_set *s) {
  faiss_set_threads((int)opt.parallel);
  faiss_index = faiss_flat_new(s->dim);
  if (!faiss_index)
    return -1;
  if (s->stride == s->dim)
    return faiss_flat_add(faiss_index, s->n, s->rows);
  for (size_t r = 0; r < s->n; r++) /* rows are padded: one at a time */
    if (faiss_flat_add(faiss_index, 1, vector_set_row(s, r)) != 0)
      return -1;
  return 0;
}

static int faiss_query(const vector_set *s, const float *q, result *out) {
  int64_t labels[MAX_K];
  out->n = 0;
  if (faiss_flat_search(faiss_index, 1, q, opt.k, out->scores, labels) != 0)
    return -1;
  for (size_t i = 0; i < opt.k && labels[i] >= 0; i++)
    out->ids[out->n++] = s->ids[labels[i]];
  return 0;
}
#endif

/* A reference path (scalar loop, FAISS, bandwidth pass) as one task on
 * the pool thread, timed inside the task. */
typedef struct pool_job {
  uv_work_t req;
  int path;
  const vector_set *s;
  const float *q;
  result *out;
  uint64_t ns;
  int failed;
} pool_job;

static void pool_job_run(uv_work_t *req) {
  pool_job *j = req->data;
  uint64_t t = stats_now_ns();
  switch (j->path) {
  case P_SCALAR:
    scalar_topk(j->s, j->q, opt.k, j->out);
    break;
  case P_FAISS:
#ifdef ENGRAM_HAVE_FAISS
    j->failed = faiss_query(j->s, j->q, j->out) != 0;
#endif
    break;
  case P_BW:
    bandwidth_pass(j->s);
    break;
  }
  j->ns = stats_now_ns() - t;
}

static void pool_job_after(uv_work_t *req, int status) {
  pool_job *j = req->data;
  j->failed |= status != 0;
}

/* Its latency in ns, 0 on error. */
static uint64_t on_pool(int path, const vector_set *s, const float *q,
                        result *out) {
  pool_job j = {.path = path, .s = s, .q = q, .out = out};
  j.req.data = &j;
  if (uv_queue_work(&loop, &j.req, pool_job_run, pool_job_after) != 0)
    return 0;
  uv_run(&loop, UV_RUN_DEFAULT);
  return j.failed ? 0 : j.ns;
}

/* ----------------------------------------------------------- one set */

typedef struct figures {
  double p50_ms, p95_ms;
  double vectors_per_s; /* n / p50 */
  double gb_per_s;      /* bytes read / p50 */
  double of_bw;
  double recall; /* recall@k against the scalar loop */
  size_t same;   /* queries with the scalar loop's ids in its order */
  int ran;
} figures;

static size_t overlap(const result *a, const result *b) {
  size_t hit = 0;
  for (size_t i = 0; i < a->n; i++)
    for (size_t j = 0; j < b->n; j++)
      if (a->ids[i] == b->ids[j]) {
        hit++;
        break;
      }
  return hit;
}

static int same_order(const result *a, const result *b) {
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->ids[i] != b->ids[i])
      return 0;
  return 1;
}

static int has_path(int p) {
#ifdef ENGRAM_HAVE_FAISS
  (void)p;
  return 1;
#else
  return p != P_FAISS;
#endif
}

/* Runs every path over queries[0..nq) (dim floats each), the order
 * rotating from query to query; fills f[0..P_BW) and *bw (GB/s of the
 * p50 bandwidth pass). */
static int measure(const vector_set *s, const float *queries, size_t nq,
                   figures *f, double *bw) {
  uint64_t *lat[P_COUNT];
  size_t hits[P_COUNT] = {0}, wanted = 0;
  for (int p = 0; p < P_COUNT; p++) {
    lat[p] = calloc(nq, sizeof *lat[p]);
    if (!lat[p])
      return -1;
    memset(&f[p], 0, sizeof f[p]);
  }
  for (size_t i = 0; i < nq; i++) {
    const float *q = queries + i * s->dim;
    result r[P_COUNT];
    memset(r, 0, sizeof r);
    for (int j = 0; j < P_COUNT; j++) {
      int p = (int)((i + (size_t)j) % P_COUNT);
      if (!has_path(p))
        continue;
      if (p == P_FLOAT || p == P_INT8)
        lat[p][i] = engram_scan(s, q, p == P_INT8, &r[p]);
      else
        lat[p][i] = on_pool(p, s, q, &r[p]);
      if (!lat[p][i]) {
#ifdef ENGRAM_HAVE_FAISS
        if (p == P_FAISS)
          fprintf(stderr, "vector: FAISS: %s\n", faiss_last_error());
#endif
        fprintf(stderr, "vector: %s failed\n", path_name[p]);
        return -1;
      }
    }
    wanted += r[P_SCALAR].n;
    for (int p = 0; p < P_BW; p++) {
      hits[p] += overlap(&r[p], &r[P_SCALAR]);
      f[p].same += (size_t)same_order(&r[p], &r[P_SCALAR]);
    }
  }
  stats_sort_u64(lat[P_BW], nq);
  *bw = (double)bandwidth_bytes(s) / stats_percentile(lat[P_BW], nq, 50);
  for (int p = 0; p < P_BW; p++) {
    if (!has_path(p))
      continue;
    stats_sort_u64(lat[p], nq);
    double p50 = stats_percentile(lat[p], nq, 50);
    f[p].ran = 1;
    f[p].p50_ms = p50 / 1e6;
    f[p].p95_ms = stats_percentile(lat[p], nq, 95) / 1e6;
    f[p].vectors_per_s = (double)s->n / (p50 / 1e9);
    double bytes = p == P_INT8    ? (double)(s->n * s->qstride)
                   : p == P_FLOAT ? (double)(s->n * s->stride * sizeof(float))
                                  : (double)(s->n * s->dim * sizeof(float));
    f[p].gb_per_s = bytes / p50; /* bytes per ns = GB/s */
    f[p].of_bw = f[p].gb_per_s / *bw;
    f[p].recall = wanted ? (double)hits[p] / (double)wanted : 1.0;
  }
  for (int p = 0; p < P_COUNT; p++)
    free(lat[p]);
  return 0;
}

static void print_table(const char *title, const vector_set *s,
                        const figures *f, double bw, size_t nq) {
  printf("\n## %s: %zu vectors, dim %zu (float %.1f MiB, int8 %.1f MiB), "
         "%zu queries, k = %zu\n\n",
         title, s->n, s->dim,
         (double)(s->n * s->stride * sizeof(float)) / 1048576.0,
         (double)(s->n * s->qstride) / 1048576.0, nq, opt.k);
  printf("memory read bandwidth (streaming sum over these float rows on the "
         "pool thread, once per query in the rotation, p50): %.2f GB/s\n\n",
         bw);
  printf("| path | p50 ms | p95 ms | vectors/s (p50) | GB/s read | of "
         "bandwidth | recall@%zu vs scalar | same ids, same order |\n",
         opt.k);
  printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
  for (int p = 0; p < P_BW; p++) {
    char name[64];
    if (p == P_FLOAT)
      snprintf(name, sizeof name, "%s (%s)", path_name[p],
               vector_kernel_name(vector_kernel_best()));
    else if (p == P_INT8)
      snprintf(name, sizeof name, "%s (%s, R = %u)", path_name[p],
               vector_kernel_name(vector_kernel_best()), opt.rerank);
    else
      snprintf(name, sizeof name, "%s", path_name[p]);
    if (!f[p].ran) {
      printf("| %s | FAISS not found: install libfaiss-dev (scripts/bench.sh "
             "does) | | | | | | |\n",
             name);
      continue;
    }
    printf("| %s | %.3f | %.3f | %.3g | %.2f | %.0f %% | %.4f | %zu of %zu "
           "|\n",
           name, f[p].p50_ms, f[p].p95_ms, f[p].vectors_per_s, f[p].gb_per_s,
           100 * f[p].of_bw, f[p].recall, f[p].same, nq);
  }
}

/* ----------------------------------------------------------- the sets */

static float *random_queries(bench_rng *rng, size_t nq, size_t dim) {
  float *q = malloc(nq * dim * sizeof *q);
  if (!q)
    return NULL;
  for (size_t i = 0; i < nq * dim; i++)
    q[i] = (float)(2 * bench_rng_double(rng) - 1);
  for (size_t i = 0; i < nq; i++) {
    double n = 0;
    for (size_t j = 0; j < dim; j++)
      n += (double)q[i * dim + j] * q[i * dim + j];
    for (size_t j = 0; j < dim; j++)
      q[i * dim + j] = (float)(q[i * dim + j] / sqrt(n));
  }
  return q;
}

static int random_set(vector_set *s, size_t n, size_t dim, bench_rng *rng) {
  float *v = malloc(dim * sizeof *v);
  if (!v || vector_set_init(s, dim, 1) != 0 || vector_set_reserve(s, n) != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < dim; j++)
      v[j] = (float)(2 * bench_rng_double(rng) - 1);
    if (vector_set_add(s, (int64_t)i, v) != 0)
      return -1;
  }
  free(v);
  return 0;
}

/* Sentences and questions of the synthetic corpus, hashed-embedded. */
static int hashed_set(vector_set *s, size_t n, float **queries,
                      double *embed_s) {
  search_hashed_options ho;
  search_hashed_options_default(&ho);
  ho.dim = opt.dim;
  search_hashed h;
  corpus *c = corpus_new(opt.seed, 0);
  float *v = malloc(opt.dim * sizeof *v);
  *queries = malloc(opt.queries * opt.dim * sizeof **queries);
  if (!c || !v || !*queries || search_hashed_init(&h, &ho) != 0 ||
      vector_set_init(s, opt.dim, 1) != 0 || vector_set_reserve(s, n) != 0)
    return -1;
  char buf[CORPUS_MAX_SENTENCE];
  uint64_t busy = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = corpus_sentence(c, buf, sizeof buf);
    uint64_t t = stats_now_ns();
    if (search_hashed_embed(&h, buf, len, v) != 0)
      return -1;
    busy += stats_now_ns() - t;
    if (vector_set_add(s, (int64_t)i, v) != 0)
      return -1;
  }
  *embed_s = (double)busy / 1e9;
  for (size_t i = 0; i < opt.queries; i++) {
    size_t len = corpus_query(c, buf, sizeof buf);
    if (search_hashed_embed(&h, buf, len, *queries + i * opt.dim) != 0)
      return -1;
  }
  free(v);
  corpus_free(c);
  return 0;
}

/* ------------------------------------------------------------- ratios */

typedef struct level {
  char title[64];
  size_t n;
  figures f[P_COUNT];
  int random; /* random vectors: the int8 recall target applies */
} level;

static void print_ratios(const level *lv, size_t nlv) {
  printf("\nRATIOS (p50 latency per query, same run, paths interleaved "
         "query by query)\n");
  for (size_t i = 0; i < nlv; i++) {
    const figures *f = lv[i].f;
    printf("  %-16s scalar loop / engram float   %6.2f  (engram float is "
           "that many times faster)\n",
           lv[i].title, f[P_SCALAR].p50_ms / f[P_FLOAT].p50_ms);
    printf("  %-16s scalar loop / engram int8    %6.2f\n", lv[i].title,
           f[P_SCALAR].p50_ms / f[P_INT8].p50_ms);
    printf("  %-16s engram int8 / engram float   %6.2f\n", lv[i].title,
           f[P_INT8].p50_ms / f[P_FLOAT].p50_ms);
    if (f[P_FAISS].ran) {
      printf("  %-16s engram float / FAISS         %6.2f  (< 1: engram "
             "faster)\n",
             lv[i].title, f[P_FLOAT].p50_ms / f[P_FAISS].p50_ms);
      printf("  %-16s engram int8 / FAISS          %6.2f\n", lv[i].title,
             f[P_INT8].p50_ms / f[P_FAISS].p50_ms);
    } else {
      printf("  %-16s against FAISS: FAISS not found: install libfaiss-dev "
             "(scripts/bench.sh does)\n",
             lv[i].title);
    }
    printf("  %-16s of bandwidth: float %.0f %%, int8 %.0f %%, scalar %.0f "
           "%%",
           lv[i].title, 100 * f[P_FLOAT].of_bw, 100 * f[P_INT8].of_bw,
           100 * f[P_SCALAR].of_bw);
    if (f[P_FAISS].ran)
      printf(", FAISS %.0f %%", 100 * f[P_FAISS].of_bw);
    printf("\n");
  }
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_vector [options]\n"
          "  --n A,B          random vectors per set (100000,1000000)\n"
          "  --hashed-n N     hashed-embedder vectors of corpus sentences "
          "(100000; 0: none)\n"
          "  --dim N          dimension (384)\n"
          "  --queries N      queries per set (200)\n"
          "  --k N            hits per query (10; at most %d)\n"
          "  --chunk N        engram: rows per thread-pool task (%u)\n"
          "  --rerank N       engram int8: candidates = k * N (%u)\n"
          "  --parallel N     engram: chunks in flight = pool threads; "
          "FAISS: OpenMP threads (1)\n"
          "  --seed N         vectors, queries and corpus seed (1)\n",
          MAX_K, VECTOR_DEFAULT_CHUNK_ROWS, VECTOR_DEFAULT_RERANK);
}

static int parse_args(int argc, char **argv) {
  const bench_arg opts[] = {
      {"--n", ARG_LEVELS, opt.levels, &opt.nlevels, MAX_LEVELS},
      {"--hashed-n", ARG_SIZE, &opt.hashed_n, NULL, 0},
      {"--dim", ARG_SIZE, &opt.dim, NULL, 0},
      {"--queries", ARG_SIZE, &opt.queries, NULL, 0},
      {"--k", ARG_SIZE, &opt.k, NULL, 0},
      {"--chunk", ARG_SIZE, &opt.chunk, NULL, 0},
      {"--rerank", ARG_UNSIGNED, &opt.rerank, NULL, 0},
      {"--parallel", ARG_UNSIGNED, &opt.parallel, NULL, 0},
      {"--seed", ARG_U64, &opt.seed, NULL, 0},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "vector", opts, usage) != 0)
    return -1;
  if (!opt.dim || opt.dim > VECTOR_MAX_DIM || !opt.queries || !opt.k ||
      opt.k > MAX_K || !opt.chunk || !opt.rerank || !opt.parallel) {
    fprintf(stderr, "vector: every count must be positive (--k <= %d)\n",
            MAX_K);
    return -1;
  }
  if (opt.hashed_n &&
      (opt.dim < SEARCH_HASHED_MIN_DIM || opt.dim > SEARCH_HASHED_MAX_DIM)) {
    fprintf(stderr, "vector: --hashed-n needs --dim in [%u, %u]\n",
            SEARCH_HASHED_MIN_DIM, SEARCH_HASHED_MAX_DIM);
    return -1;
  }
  return 0;
}

static int run_set(level *lv, vector_set *s, const float *queries) {
#ifdef ENGRAM_HAVE_FAISS
  uint64_t t = stats_now_ns();
  if (faiss_build(s) != 0) {
    fprintf(stderr, "vector: FAISS: %s\n", faiss_last_error());
    return -1;
  }
  printf("%s: FAISS index built in %.1f s\n", lv->title,
         (double)(stats_now_ns() - t) / 1e9);
#endif
  /* Warm-up: page in every copy of the rows, settle the pool. */
  figures warm[P_COUNT];
  double bw;
  if (measure(s, queries, 2, warm, &bw) != 0 ||
      measure(s, queries, opt.queries, lv->f, &bw) != 0)
    return -1;
  print_table(lv->title, s, lv->f, bw, opt.queries);
#ifdef ENGRAM_HAVE_FAISS
  faiss_flat_free(faiss_index);
  faiss_index = NULL;
#endif
  return 0;
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) != 0)
    return 2;
  char pool[16];
  snprintf(pool, sizeof pool, "%u", opt.parallel);
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  setvbuf(stdout, NULL, _IOLBF, 0);
  uv_loop_init(&loop);
  rt_init(&runtime, &loop);

  printf("# bench_vector\n\n");
  printf("kernel %s (AVX2+FMA %s on this CPU); engram chunks of %zu rows, %u "
         "in flight on a pool of %u; int8 re-rank factor %u; seed %llu\n",
         vector_kernel_name(vector_kernel_best()),
         vector_kernel_available(VECTOR_KERNEL_AVX2) ? "available"
                                                     : "not available",
         opt.chunk, opt.parallel, opt.parallel, opt.rerank,
         (unsigned long long)opt.seed);
#ifdef ENGRAM_HAVE_FAISS
  printf("FAISS IndexFlatIP (libfaiss-dev), %u OpenMP thread(s)\n",
         opt.parallel);
#else
  printf("FAISS not found: install libfaiss-dev (scripts/bench.sh does)\n");
#endif
  printf("bandwidth reference: a streaming sum over each set's float rows, "
         "on the pool thread, once per query\n");

  level lv[MAX_LEVELS + 1];
  size_t nlv = 0;
  int failed = 0;
  bench_rng rng;
  for (size_t l = 0; l < opt.nlevels; l++) {
    level *x = &lv[nlv++];
    memset(x, 0, sizeof *x);
    x->n = opt.levels[l];
    x->random = 1;
    snprintf(x->title, sizeof x->title, "random %zuk", x->n / 1000);
    bench_rng_seed(&rng, opt.seed * 1000003 + x->n);
    vector_set s;
    uint64_t t = stats_now_ns();
    float *queries = random_queries(&rng, opt.queries, opt.dim);
    if (!queries || random_set(&s, x->n, opt.dim, &rng) != 0) {
      fprintf(stderr, "vector: out of memory building %zu vectors\n", x->n);
      return 1;
    }
    printf("\n%s: built in %.1f s\n", x->title,
           (double)(stats_now_ns() - t) / 1e9);
    if (run_set(x, &s, queries) != 0)
      return 1;
    vector_set_free(&s);
    free(queries);
  }
  if (opt.hashed_n) {
    level *x = &lv[nlv++];
    memset(x, 0, sizeof *x);
    x->n = opt.hashed_n;
    snprintf(x->title, sizeof x->title, "hashed %zuk", x->n / 1000);
    vector_set s;
    float *queries;
    double embed_s;
    if (hashed_set(&s, x->n, &queries, &embed_s) != 0) {
      fprintf(stderr, "vector: could not build the hashed set\n");
      return 1;
    }
    printf("\n%s: %zu corpus sentences embedded by hashed-v1 in %.2f s "
           "(%.0f sentences/s, one thread)\n",
           x->title, x->n, embed_s, (double)x->n / embed_s);
    if (run_set(x, &s, queries) != 0)
      return 1;
    vector_set_free(&s);
    free(queries);
  }

  print_ratios(lv, nlv);
  printf("\nCHECKS (answers against the scalar loop)\n");
  for (size_t i = 0; i < nlv; i++) {
    const figures *f = lv[i].f;
    int ok_float = f[P_FLOAT].recall >= 0.999;
    int ok_int8 = !lv[i].random || f[P_INT8].recall >= 0.99;
    printf("  %-16s engram float recall@%zu %.4f (target >= 0.999)  %s\n",
           lv[i].title, opt.k, f[P_FLOAT].recall, ok_float ? "PASS" : "FAIL");
    printf("  %-16s engram int8  recall@%zu %.4f (target >= 0.99%s)  %s\n",
           lv[i].title, opt.k, f[P_INT8].recall,
           lv[i].random ? "" : "; none for hashed vectors",
           ok_int8 ? "PASS" : "FAIL");
    if (f[P_FAISS].ran)
      printf("  %-16s FAISS        recall@%zu %.4f\n", lv[i].title, opt.k,
             f[P_FAISS].recall);
    failed |= !ok_float || !ok_int8;
  }
  printf("\npeak RSS: %.1f MiB\n", (double)stats_peak_rss_kb() / 1024.0);
  uv_loop_close(&loop);
  return failed;
}
