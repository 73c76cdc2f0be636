/*
 * test_vector.c — exact vector search: the set (normalized rows, padding,
 * removal), the kernels (AVX2 and scalar agree on the top k, ids exactly,
 * scores within 1e-5, and both agree with a double-precision reference),
 * int8 with float re-ranking (recall@10 >= 0.99 against exact on random
 * data), edge cases (k > n, n = 0, ties, bad arguments) and the scan on the
 * thread pool (same answer as the synchronous search whatever the chunking
 * and parallelism; cancel from the loop stops within one chunk and calls
 * back once with ENGRAM_ECANCELED).
 *
 * main() sets UV_THREADPOOL_SIZE=1: with one pool thread at most one chunk
 * runs at a time, so "within one chunk" is exact. A violation inside a
 * callback is recorded by CHECK, never asserted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "search/vector.h"
#include "testloop.h"

static unsigned long g_violations;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (g_violations++ < 20)                                                 \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
                #cond);                                                        \
    }                                                                          \
  } while (0)

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Roughly normal: a sum of four uniforms, centred. */
static float rng_gauss(void) {
  double s = 0;
  for (int i = 0; i < 4; i++)
    s += (double)(rng_next() >> 11) * 0x1.0p-53;
  return (float)(s - 2.0);
}

static void random_vector(float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++)
    v[i] = rng_gauss();
}

/* A set of n random vectors, ids 1000 + row. */
static void random_set(vector_set *s, size_t n, size_t dim, int quantized,
                       uint64_t seed) {
  rng_state = seed;
  assert_int_equal(vector_set_init(s, dim, quantized), 0);
  assert_int_equal(vector_set_reserve(s, n), 0);
  float *v = malloc(dim * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) {
    random_vector(v, dim);
    assert_int_equal(vector_set_add(s, (int64_t)(1000 + i), v), 0);
  }
  free(v);
}

/* The exact top k in double precision: the reference. */
static size_t reference_topk(const vector_set *s, const float *query, size_t k,
                             vector_hit *out) {
  double qn = 0;
  for (size_t j = 0; j < s->dim; j++)
    qn += (double)query[j] * (double)query[j];
  qn = qn > 0 ? 1.0 / sqrt(qn) : 0;
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++) {
    const float *row = vector_set_row(s, i);
    double d = 0;
    for (size_t j = 0; j < s->dim; j++)
      d += (double)row[j] * (double)query[j];
    float score = (float)(d * qn);
    size_t at = n < k ? n++ : k;
    while (at > 0 && out[at - 1].score < score) {
      if (at < k)
        out[at] = out[at - 1];
      at--;
    }
    if (at < k)
      out[at] = (vector_hit){s->ids[i], score};
  }
  return n;
}

static vector_search_options opts(size_t k, vector_kernel kern, int int8) {
  vector_search_options o = {.k = k, .kernel = kern, .use_int8 = int8};
  return o;
}

static size_t search(const vector_set *s, const float *q, size_t k,
                     vector_kernel kern, int int8, vector_hit *out) {
  vector_search_options o = opts(k, kern, int8);
  size_t n = 0;
  assert_int_equal(vector_search(s, q, &o, out, &n), 0);
  return n;
}

static int have_avx2(void) {
  if (!vector_kernel_available(VECTOR_KERNEL_AVX2)) {
    fprintf(stderr, "no AVX2+FMA on this CPU: AVX2 kernels not tested\n");
    return 0;
  }
  return 1;
}

/* ---------------------------------------------------------------- set */

static void test_set_basics(void **state) {
  (void)state;
  vector_set s;
  assert_int_equal(vector_set_init(&s, 0, 0), ENGRAM_EINVAL);
  assert_int_equal(vector_set_init(&s, VECTOR_MAX_DIM + 1, 0), ENGRAM_EINVAL);
  assert_int_equal(vector_set_init(&s, 5, 1), 0);
  assert_int_equal(s.stride, 8);
  assert_int_equal(s.qstride, 32);

  float v[5] = {3, 4, 0, 0, 0};
  assert_int_equal(vector_set_add(&s, 7, v), 0);
  const float *row = vector_set_row(&s, 0);
  assert_true(fabsf(row[0] - 0.6f) < 1e-6f && fabsf(row[1] - 0.8f) < 1e-6f);
  for (size_t i = 5; i < s.stride; i++)
    assert_true(row[i] == 0.0f); /* padding */
  assert_int_equal((uintptr_t)row % 32, 0);
  assert_int_equal((uintptr_t)s.qrows % 32, 0);
  assert_int_equal(s.qrows[1], 127);
  assert_true(fabsf(s.qscale[0] * 127 - 0.8f) < 1e-6f);

  float zero[5] = {0};
  assert_int_equal(vector_set_add(&s, 8, zero), 0); /* stays zero */
  row = vector_set_row(&s, 1);
  for (size_t i = 0; i < s.stride; i++)
    assert_true(row[i] == 0.0f);
  float bad[5] = {1, NAN, 0, 0, 0};
  assert_int_equal(vector_set_add(&s, 9, bad), ENGRAM_EINVAL);
  bad[1] = INFINITY;
  assert_int_equal(vector_set_add(&s, 9, bad), ENGRAM_EINVAL);
  assert_int_equal(s.n, 2);

  /* Growth keeps rows (and int8 rows) intact and aligned. */
  for (int64_t i = 0; i < 1000; i++) {
    float w[5] = {(float)i, 1, 2, 3, (float)-i};
    assert_int_equal(vector_set_add(&s, 100 + i, w), 0);
  }
  assert_int_equal(s.n, 1002);
  assert_int_equal((uintptr_t)s.rows % 64, 0);
  assert_true(fabsf(vector_set_row(&s, 0)[1] - 0.8f) < 1e-6f);
  assert_int_equal(s.qrows[1], 127);
  assert_int_equal(vector_set_find(&s, 7), 0);
  assert_int_equal(vector_set_find(&s, 600), 502);
  assert_int_equal(vector_set_find(&s, 5), SIZE_MAX);

  /* Removal: the last row moves in. */
  vector_set_remove_at(&s, 0);
  assert_int_equal(s.n, 1001);
  assert_int_equal(s.ids[0], 100 + 999);
  assert_int_equal(vector_set_find(&s, 7), SIZE_MAX);
  vector_set_remove_at(&s, s.n - 1);
  assert_int_equal(s.n, 1000);
  vector_set_free(&s);
}

static void test_quantize(void **state) {
  (void)state;
  float v[40];
  int8_t q[64];
  for (int i = 0; i < 40; i++)
    v[i] = (float)(i - 20) / 20.0f;
  float scale = vector_quantize(v, 40, q, 64);
  assert_true(fabsf(scale - 1.0f / 127.0f) < 1e-7f);
  assert_int_equal(q[0], -127); /* never -128 */
  assert_int_equal(q[20], 0);
  for (int i = 0; i < 40; i++)
    assert_true(fabsf(scale * q[i] - v[i]) <= scale / 2 + 1e-6f);
  for (int i = 40; i < 64; i++)
    assert_int_equal(q[i], 0);
  float zero[8] = {0};
  assert_true(vector_quantize(zero, 8, q, 32) == 0.0f);
}

/* ------------------------------------------------------------ kernels */

static void compare_kernels(size_t n, size_t dim, size_t k, int queries) {
  vector_set s;
  random_set(&s, n, dim, 1, 42 + dim);
  float *q = malloc(dim * sizeof *q);
  vector_hit *a = malloc(k * sizeof *a), *b = malloc(k * sizeof *b);
  vector_hit *ref = malloc(k * sizeof *ref);
  assert_true(q && a && b && ref);
  for (int t = 0; t < queries; t++) {
    random_vector(q, dim);
    size_t nr = reference_topk(&s, q, k, ref);
    size_t ns = search(&s, q, k, VECTOR_KERNEL_SCALAR, 0, a);
    assert_int_equal(ns, nr);
    for (size_t i = 0; i < ns; i++) {
      assert_int_equal(a[i].id, ref[i].id);
      assert_true(fabsf(a[i].score - ref[i].score) < 1e-5f);
    }
    if (vector_kernel_available(VECTOR_KERNEL_AVX2)) {
      size_t nv = search(&s, q, k, VECTOR_KERNEL_AVX2, 0, b);
      assert_int_equal(nv, ns);
      for (size_t i = 0; i < ns; i++) {
        assert_int_equal(a[i].id, b[i].id);
        assert_true(fabsf(a[i].score - b[i].score) < 1e-5f);
      }
      /* int8: integer dot products, so both kernels agree exactly. */
      size_t n8 = search(&s, q, k, VECTOR_KERNEL_SCALAR, 1, a);
      size_t v8 = search(&s, q, k, VECTOR_KERNEL_AVX2, 1, b);
      assert_int_equal(n8, v8);
      for (size_t i = 0; i < n8; i++) {
        assert_int_equal(a[i].id, b[i].id);
        assert_true(fabsf(a[i].score - b[i].score) < 1e-5f);
      }
    }
  }
  free(q);
  free(a);
  free(b);
  free(ref);
  vector_set_free(&s);
}

static void test_kernels_agree(void **state) {
  (void)state;
  have_avx2();
  compare_kernels(20000, 384, 10, 20);
  compare_kernels(5000, 384, 100, 5);
  /* Dims that exercise padding and the kernels' tails. */
  static const size_t odd_dims[] = {1, 7, 8, 31, 33, 100, 129, 1024};
  for (size_t i = 0; i < sizeof odd_dims / sizeof odd_dims[0]; i++)
    compare_kernels(3000, odd_dims[i], 10, 5);
}

static void test_kernel_choice(void **state) {
  (void)state;
  const char *forced = getenv("ENGRAM_VECTOR_KERNEL");
  char saved[32] = "";
  if (forced)
    snprintf(saved, sizeof saved, "%s", forced);
  unsetenv("ENGRAM_VECTOR_KERNEL");
  vector_kernel best = vector_kernel_best();
  assert_true(best == VECTOR_KERNEL_SCALAR || best == VECTOR_KERNEL_AVX2);
  assert_int_equal(best == VECTOR_KERNEL_AVX2,
                   vector_kernel_available(VECTOR_KERNEL_AVX2));
  setenv("ENGRAM_VECTOR_KERNEL", "scalar", 1);
  assert_int_equal(vector_kernel_best(), VECTOR_KERNEL_SCALAR);
  unsetenv("ENGRAM_VECTOR_KERNEL");
  assert_int_equal(vector_kernel_best(), best);
  if (forced) /* the whole run asked for the scalar kernels */
    setenv("ENGRAM_VECTOR_KERNEL", saved, 1);
  assert_string_equal(vector_kernel_name(VECTOR_KERNEL_AVX2), "avx2");
  assert_string_equal(vector_kernel_name(VECTOR_KERNEL_SCALAR), "scalar");
}

/* int8 scan + float re-rank against exact float search. */
static void test_int8_recall(void **state) {
  (void)state;
  const size_t n = 50000, dim = 384, k = 10;
  const int queries = 50;
  vector_set s;
  random_set(&s, n, dim, 1, 7);
  float q[384];
  vector_hit exact[10], approx[10];
  size_t found = 0, total = 0;
  for (int t = 0; t < queries; t++) {
    random_vector(q, dim);
    size_t ne = search(&s, q, k, VECTOR_KERNEL_AUTO, 0, exact);
    size_t na = search(&s, q, k, VECTOR_KERNEL_AUTO, 1, approx);
    assert_int_equal(ne, k);
    assert_int_equal(na, k);
    for (size_t i = 0; i < k; i++) {
      /* Re-ranked scores are float scores. */
      assert_true(approx[i].score <= exact[0].score + 1e-6f);
      for (size_t j = 0; j < k; j++)
        if (approx[i].id == exact[j].id) {
          found++;
          assert_true(fabsf(approx[i].score - exact[j].score) < 1e-6f);
        }
    }
    total += k;
  }
  double recall = (double)found / (double)total;
  fprintf(stderr, "int8 + re-rank recall@10 = %.4f (%zu of %zu)\n", recall,
          found, total);
  assert_true(recall >= 0.99);

  /* Even a re-rank factor of 1 (no extra candidates) keeps most. */
  vector_search_options o = opts(k, VECTOR_KERNEL_AUTO, 1);
  o.rerank_factor = 1;
  size_t nh;
  random_vector(q, dim);
  assert_int_equal(vector_search(&s, q, &o, approx, &nh), 0);
  assert_int_equal(nh, k);
  vector_set_free(&s);
}

/* ------------------------------------------------------- edge cases */

static void test_edges(void **state) {
  (void)state;
  vector_set s;
  float q[16];
  vector_hit hits[64];
  size_t nh = 99;
  rng_state = 3;
  random_vector(q, 16);

  /* n = 0. */
  assert_int_equal(vector_set_init(&s, 16, 1), 0);
  assert_int_equal(search(&s, q, 10, VECTOR_KERNEL_AUTO, 0, hits), 0);
  assert_int_equal(search(&s, q, 10, VECTOR_KERNEL_AUTO, 1, hits), 0);

  /* k > n: all n, best first. */
  for (int i = 0; i < 5; i++) {
    float v[16];
    random_vector(v, 16);
    assert_int_equal(vector_set_add(&s, i, v), 0);
  }
  for (int int8 = 0; int8 <= 1; int8++) {
    size_t n = search(&s, q, 64, VECTOR_KERNEL_AUTO, int8, hits);
    assert_int_equal(n, 5);
    for (size_t i = 1; i < n; i++)
      assert_true(hits[i - 1].score >= hits[i].score);
  }

  /* Bad arguments. */
  vector_search_options o = opts(0, VECTOR_KERNEL_AUTO, 0);
  assert_int_equal(vector_search(&s, q, &o, hits, &nh), ENGRAM_EINVAL);
  assert_int_equal(nh, 0);
  o.k = 3;
  assert_int_equal(vector_search(&s, NULL, &o, hits, &nh), ENGRAM_EINVAL);
  q[3] = NAN;
  assert_int_equal(vector_search(&s, q, &o, hits, &nh), ENGRAM_EINVAL);
  q[3] = 0.5f;
  o.kernel = (vector_kernel)77;
  assert_int_equal(vector_search(&s, q, &o, hits, &nh), ENGRAM_EINVAL);
  vector_set_free(&s);

  assert_int_equal(vector_set_init(&s, 16, 0), 0);
  o = opts(3, VECTOR_KERNEL_AUTO, 1); /* int8 on a float-only set */
  assert_int_equal(vector_search(&s, q, &o, hits, &nh), ENGRAM_EINVAL);

  /* Ties: equal rows come back in row order; a zero query scores 0. */
  float same[16] = {1, 2, 3};
  for (int i = 0; i < 20; i++)
    assert_int_equal(vector_set_add(&s, 100 - i, same), 0);
  size_t n = search(&s, same, 5, VECTOR_KERNEL_SCALAR, 0, hits);
  assert_int_equal(n, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(hits[i].id, 100 - i);
  if (have_avx2()) {
    n = search(&s, same, 5, VECTOR_KERNEL_AVX2, 0, hits);
    for (int i = 0; i < 5; i++)
      assert_int_equal(hits[i].id, 100 - i);
  }
  float zero[16] = {0};
  n = search(&s, zero, 3, VECTOR_KERNEL_AUTO, 0, hits);
  assert_int_equal(n, 3);
  assert_true(hits[0].score == 0.0f);
  assert_int_equal(hits[0].id, 100);
  vector_set_free(&s);
}

/* ------------------------------------------------------- async scans */

typedef struct fixture {
  uv_loop_t loop;
  rt rt;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || uv_loop_init(&f->loop) != 0)
    return -1;
  rt_init(&f->rt, &f->loop);
  g_violations = 0;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  int leftover = 0;
  int rc = tl_loop_finish(&f->loop, &leftover);
  int ok =
      leftover == 0 && rc == 0 && f->rt.work_inflight == 0 && g_violations == 0;
  free(f);
  return ok ? 0 : -1;
}

typedef struct scan_result {
  vector_scan *scan;
  int calls, status;
  int in_api;
  vector_hit hits[128];
  size_t nhits;
  size_t rows_at_cb;
  int cancel_inside;
} scan_result;

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t nhits, void *data) {
  scan_result *r = data;
  CHECK(scan == r->scan);
  CHECK(!r->in_api);
  r->calls++;
  r->status = status;
  r->nhits = nhits;
  CHECK((status == 0) || (hits == NULL && nhits == 0));
  CHECK(nhits <= 128);
  if (hits && nhits <= 128)
    memcpy(r->hits, hits, nhits * sizeof *hits);
  r->rows_at_cb = vector_scan_rows_scanned(scan);
  if (r->cancel_inside)
    vector_scan_cancel(scan); /* a no-op inside the callback */
}

static int done(void *arg) {
  return ((scan_result *)arg)->calls != 0;
}

static int is_set(void *arg) {
  return *(int *)arg != 0;
}

static int start_scan(fixture *f, const vector_set *s, const float *q,
                      const vector_search_options *o, scan_result *r) {
  r->in_api = 1;
  int rc = vector_scan_start(&f->rt, s, q, o, on_scan, r, &r->scan);
  r->in_api = 0;
  return rc;
}

static void test_scan_matches_sync(void **state) {
  fixture *f = *state;
  vector_set s;
  random_set(&s, 30011, 96, 1, 11); /* not a multiple of any chunk size */
  float q[96];
  static const size_t chunks[] = {1000, 4096, 16384, 100000};
  static const unsigned parallel[] = {1, 2, 3, 64};
  for (int int8 = 0; int8 <= 1; int8++) {
    for (size_t c = 0; c < 4; c++) {
      for (size_t p = 0; p < 4; p++) {
        random_vector(q, 96);
        vector_search_options o = opts(20, VECTOR_KERNEL_AUTO, int8);
        o.chunk_rows = chunks[c];
        o.parallel = parallel[p];
        vector_hit want[20];
        size_t nwant;
        assert_int_equal(vector_search(&s, q, &o, want, &nwant), 0);
        scan_result r;
        memset(&r, 0, sizeof r);
        r.cancel_inside = 1;
        assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
        assert_int_equal(r.calls, 0);
        assert_true(tl_run_until(&f->loop, done, &r, 20000));
        assert_int_equal(r.status, 0);
        assert_int_equal(r.nhits, nwant);
        assert_int_equal(r.rows_at_cb, s.n);
        for (size_t i = 0; i < nwant; i++) {
          assert_int_equal(r.hits[i].id, want[i].id);
          assert_true(r.hits[i].score == want[i].score);
        }
        tl_run_for(&f->loop, 1);
        assert_int_equal(r.calls, 1);
      }
    }
  }
  vector_set_free(&s);
}

static void test_scan_edges(void **state) {
  fixture *f = *state;
  vector_set s;
  float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  assert_int_equal(vector_set_init(&s, 8, 1), 0);

  /* n = 0: the callback still comes later, with no hits. */
  for (int int8 = 0; int8 <= 1; int8++) {
    vector_search_options o = opts(10, VECTOR_KERNEL_AUTO, int8);
    scan_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
    assert_int_equal(r.calls, 0);
    assert_true(tl_run_until(&f->loop, done, &r, 5000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nhits, 0);
  }

  /* k > n. */
  for (int i = 0; i < 3; i++) {
    float v[8] = {(float)i, 1};
    assert_int_equal(vector_set_add(&s, i, v), 0);
  }
  for (int int8 = 0; int8 <= 1; int8++) {
    vector_search_options o = opts(100, VECTOR_KERNEL_AUTO, int8);
    o.chunk_rows = 1;
    o.parallel = 2;
    scan_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
    assert_true(tl_run_until(&f->loop, done, &r, 5000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nhits, 3);
    assert_int_equal(r.hits[0].id, 2);
  }

  /* Bad arguments: an error and no callback. */
  vector_search_options o = opts(0, VECTOR_KERNEL_AUTO, 0);
  scan_result r;
  memset(&r, 0, sizeof r);
  assert_int_equal(start_scan(f, &s, q, &o, &r), ENGRAM_EINVAL);
  o.k = 1;
  assert_int_equal(vector_scan_start(&f->rt, &s, q, &o, NULL, NULL, &r.scan),
                   ENGRAM_EINVAL);
  tl_run_for(&f->loop, 2);
  assert_int_equal(r.calls, 0);
  vector_set_free(&s);
}

/* The one pool thread, held by a test task until released: what is queued
 * behind it has not started. (Tests may wait; the library never does.) */
typedef struct blocker {
  rt_work work;
  atomic_int release;
  int done;
} blocker;

static void blocker_run(rt_work *w) {
  blocker *b = (blocker *)w;
  struct timespec ts = {0, 100000};
  while (!atomic_load(&b->release))
    nanosleep(&ts, NULL);
}

static void blocker_after(rt_work *w, int status) {
  CHECK(status == 0);
  ((blocker *)w)->done = 1;
}

/* Cancel while every chunk waits in the pool's queue: none runs, the
 * callback comes once, later, with ECANCELED. */
static void test_scan_cancel_queued(void **state) {
  fixture *f = *state;
  vector_set s;
  random_set(&s, 50000, 64, 1, 5);
  float q[64];
  random_vector(q, 64);
  for (int int8 = 0; int8 <= 1; int8++) {
    blocker b = {.release = 0};
    assert_int_equal(rt_offload(&f->rt, &b.work, blocker_run, blocker_after),
                     0);
    vector_search_options o = opts(10, VECTOR_KERNEL_AUTO, int8);
    o.chunk_rows = 1000;
    o.parallel = 3;
    scan_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
    r.in_api = 1;
    vector_scan_cancel(r.scan);
    vector_scan_cancel(r.scan);
    r.in_api = 0;
    atomic_store(&b.release, 1);
    assert_int_equal(r.calls, 0);
    assert_true(tl_run_until(&f->loop, done, &r, 5000));
    assert_int_equal(r.status, ENGRAM_ECANCELED);
    assert_int_equal(r.nhits, 0);
    assert_int_equal(r.rows_at_cb, 0);
    assert_true(tl_run_until(&f->loop, is_set, &b.done, 5000));
    tl_run_for(&f->loop, 2);
    assert_int_equal(r.calls, 1);
  }
  vector_set_free(&s);
}

/* Cancel right after start, the pool free: at most the chunks that beat
 * the cancel ran (one thread: in practice the first at most). */
static void test_scan_cancel_at_once(void **state) {
  fixture *f = *state;
  vector_set s;
  random_set(&s, 50000, 64, 1, 5);
  float q[64];
  random_vector(q, 64);
  for (int int8 = 0; int8 <= 1; int8++) {
    vector_search_options o = opts(10, VECTOR_KERNEL_AUTO, int8);
    o.chunk_rows = 10000;
    scan_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
    r.in_api = 1;
    vector_scan_cancel(r.scan);
    r.in_api = 0;
    assert_int_equal(r.calls, 0);
    assert_true(tl_run_until(&f->loop, done, &r, 5000));
    assert_int_equal(r.status, ENGRAM_ECANCELED);
    assert_true(r.rows_at_cb <= o.chunk_rows);
    tl_run_for(&f->loop, 2);
    assert_int_equal(r.calls, 1);
  }
  vector_set_free(&s);
}

/* Cancel from the loop in the middle of a scan: a check handle watches the
 * rows scanned and cancels once a few chunks are done. */
typedef struct canceller {
  uv_check_t check;
  scan_result *r;
  size_t after_rows;
  size_t rows_at_cancel;
  int fired;
} canceller;

static void on_check(uv_check_t *h) {
  canceller *c = h->data;
  if (c->fired || c->r->calls)
    return;
  size_t rows = vector_scan_rows_scanned(c->r->scan);
  if (rows >= c->after_rows) {
    c->fired = 1;
    c->rows_at_cancel = rows;
    c->r->in_api = 1;
    vector_scan_cancel(c->r->scan);
    c->r->in_api = 0;
  }
}

static void test_scan_cancel_mid_scan(void **state) {
  fixture *f = *state;
  vector_set s;
  random_set(&s, 200000, 32, 1, 9);
  float q[32];
  random_vector(q, 32);
  static const unsigned parallel[] = {1, 2, 4};
  for (int int8 = 0; int8 <= 1; int8++) {
    for (size_t p = 0; p < 3; p++) {
      vector_search_options o = opts(10, VECTOR_KERNEL_AUTO, int8);
      o.chunk_rows = 2000;
      o.parallel = parallel[p];
      scan_result r;
      memset(&r, 0, sizeof r);
      canceller c = {.r = &r, .after_rows = 5 * o.chunk_rows};
      uv_check_init(&f->loop, &c.check);
      c.check.data = &c;
      uv_check_start(&c.check, on_check);
      assert_int_equal(start_scan(f, &s, q, &o, &r), 0);
      assert_true(tl_run_until(&f->loop, done, &r, 20000));
      uv_close((uv_handle_t *)&c.check, NULL);
      tl_run_for(&f->loop, 1);
      assert_int_equal(r.calls, 1);
      assert_true(c.fired);
      assert_int_equal(r.status, ENGRAM_ECANCELED);
      /* At cancel time `parallel` chunks were out (queued, running, or run
       * and waiting for the loop); none starts after it. With one slot
       * that is exactly "within one chunk"; test_scan_cancel_queued shows
       * that queued chunks are withdrawn. */
      assert_true(r.rows_at_cb - c.rows_at_cancel <= o.parallel * o.chunk_rows);
      assert_true(r.rows_at_cb < s.n);
    }
  }
  vector_set_free(&s);
}

int main(void) {
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_basics),
      cmocka_unit_test(test_quantize),
      cmocka_unit_test(test_kernel_choice),
      cmocka_unit_test(test_kernels_agree),
      cmocka_unit_test(test_int8_recall),
      cmocka_unit_test(test_edges),
      cmocka_unit_test_setup_teardown(test_scan_matches_sync, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scan_edges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scan_cancel_queued, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scan_cancel_at_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_scan_cancel_mid_scan, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
