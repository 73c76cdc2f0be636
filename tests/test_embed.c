/*
 * test_embed.c — the hashed n-gram embedder: the vectors themselves
 * (deterministic down to the bit, pinned by golden values so that a change
 * of features shows up as a failing test and a new name; normalized; the
 * zero vector for text without words; similar texts closer than unrelated
 * ones at every dim from 64 to 1024) and the embedder object on the loop
 * (callbacks always later and exactly once, small batches on the loop,
 * large ones in chunks on the thread pool, cancel from anywhere, close with
 * requests in flight).
 *
 * A violation inside a callback is recorded by CHECK, never asserted (a
 * failure must not longjmp out of uv_run); each test asserts that none was
 * recorded. main() sets UV_THREADPOOL_SIZE=1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/embed.h"
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

/* ---------------------------------------------------------- helpers */

static float *embed_new(const search_hashed *h, const char *text) {
  float *v = malloc(h->opt.dim * sizeof *v);
  assert_non_null(v);
  assert_int_equal(search_hashed_embed(h, text, strlen(text), v), 0);
  return v;
}

static double dot(const float *a, const float *b, size_t dim) {
  double s = 0;
  for (size_t i = 0; i < dim; i++)
    s += (double)a[i] * (double)b[i];
  return s;
}

static double cosine(const search_hashed *h, const char *a, const char *b) {
  float *x = embed_new(h, a), *y = embed_new(h, b);
  double c = dot(x, y, h->opt.dim);
  free(x);
  free(y);
  return c;
}

static search_hashed hashed_dim(size_t dim) {
  search_hashed_options o;
  search_hashed_options_default(&o);
  o.dim = dim;
  search_hashed h;
  assert_int_equal(search_hashed_init(&h, &o), 0);
  return h;
}

static const size_t dims[] = {64, 100, 128, 256, 384, 512, 768, 1000, 1024};
#define NDIMS (sizeof dims / sizeof dims[0])

/* ------------------------------------------------------- the vectors */

static void test_init_and_names(void **state) {
  (void)state;
  search_hashed h;
  assert_int_equal(search_hashed_init(&h, NULL), 0);
  assert_string_equal(h.name, "hashed-v1");
  assert_int_equal(h.opt.dim, SEARCH_HASHED_DEFAULT_DIM);

  search_hashed_options o;
  search_hashed_options_default(&o);
  o.dim = 1024; /* the dim is recorded beside the name */
  assert_int_equal(search_hashed_init(&h, &o), 0);
  assert_string_equal(h.name, "hashed-v1");

  o.pair_weight = 0.9f; /* other weights, other vectors, another name */
  assert_int_equal(search_hashed_init(&h, &o), 0);
  assert_int_equal(strncmp(h.name, "hashed-v1-", 10), 0);
  assert_int_equal(strlen(h.name), 18);
  char first[32];
  strcpy(first, h.name);
  o.pair_weight = 0.8f;
  assert_int_equal(search_hashed_init(&h, &o), 0);
  assert_string_not_equal(h.name, first);

  search_hashed_options_default(&o);
  o.dim = SEARCH_HASHED_MIN_DIM - 1;
  assert_int_equal(search_hashed_init(&h, &o), ENGRAM_EINVAL);
  o.dim = SEARCH_HASHED_MAX_DIM + 1;
  assert_int_equal(search_hashed_init(&h, &o), ENGRAM_EINVAL);
  search_hashed_options_default(&o);
  o.char_weight = -1;
  assert_int_equal(search_hashed_init(&h, &o), ENGRAM_EINVAL);
  o.char_weight = NAN;
  assert_int_equal(search_hashed_init(&h, &o), ENGRAM_EINVAL);
  o.char_weight = 0; /* a family may be switched off */
  assert_int_equal(search_hashed_init(&h, &o), 0);
}

/* The same text gives the same bits, run after run; and on any machine:
 * the golden values below were computed once and must never change
 * without a new name (hashed-v2). */
static void test_deterministic(void **state) {
  (void)state;
  search_hashed h = hashed_dim(384);
  const char *text = "Caroline went to the LGBTQ support group on 7 May 2023.";
  float *a = embed_new(&h, text);
  for (int i = 0; i < 3; i++) {
    float *b = embed_new(&h, text);
    assert_memory_equal(a, b, h.opt.dim * sizeof *a);
    free(b);
  }
  /* Case and punctuation are the tokenizer's business: same words, same
   * vector. */
  float *c = embed_new(&h, "caroline WENT to the lgbtq support-group, on 7 "
                           "may 2023!!");
  assert_memory_equal(a, c, h.opt.dim * sizeof *a);
  free(c);

  /* Golden: a checksum of every bit, and a few values. */
  uint64_t sum = 0;
  size_t nonzero = 0;
  for (size_t i = 0; i < h.opt.dim; i++) {
    uint32_t bits;
    memcpy(&bits, &a[i], sizeof bits);
    sum = sum * 1099511628211ull + bits;
    nonzero += a[i] != 0;
  }
  if (sum != 7687549947082474873ull || nonzero != 95)
    fprintf(stderr, "golden: sum %llu, nonzero %zu\n", (unsigned long long)sum,
            nonzero);
  assert_true(sum == 7687549947082474873ull);
  assert_int_equal(nonzero, 95);
  free(a);
}

static void test_normalized(void **state) {
  (void)state;
  const char *texts[] = {
      "a",
      "hello",
      "hello world",
      "The quick brown fox jumps over the lazy dog",
      "the the the the the", /* stop words only */
      "Zürich café naïve résumé 東京 タワー",
      "x1 y2 z3 2023-05-07 10:30",
  };
  for (size_t d = 0; d < NDIMS; d++) {
    search_hashed h = hashed_dim(dims[d]);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
      float *v = embed_new(&h, texts[t]);
      double n = sqrt(dot(v, v, h.opt.dim));
      assert_true(fabs(n - 1.0) < 1e-5);
      free(v);
    }
  }
}

/* No words, no features: the zero vector (documented in embed.h), whose
 * cosine with anything is 0. */
static void test_empty_is_zero(void **state) {
  (void)state;
  search_hashed h = hashed_dim(384);
  const char *texts[] = {"", " ", "  \t\n ", "!!! ... ??? -- ,,, \"'()[]{}"};
  for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
    float *v = embed_new(&h, texts[t]);
    for (size_t i = 0; i < h.opt.dim; i++)
      assert_true(v[i] == 0.0f);
    free(v);
  }
  float v[SEARCH_HASHED_MIN_DIM];
  search_hashed small = hashed_dim(SEARCH_HASHED_MIN_DIM);
  assert_int_equal(search_hashed_embed(&small, NULL, 0, v), 0);
  for (size_t i = 0; i < SEARCH_HASHED_MIN_DIM; i++)
    assert_true(v[i] == 0.0f);
}

typedef struct triple {
  const char *query, *similar, *unrelated;
} triple;

static const triple triples[] = {
    {"The cat sat on the mat", "A cat was sitting on the mat",
     "Quarterly revenue grew by twelve percent"},
    {"running shoes for the marathon", "she runs marathons in new shoes",
     "the committee approved the budget"},
    {"When did Melanie paint a sunrise?",
     "Melanie painted the sunrise last year",
     "Caroline is researching adoption agencies"},
    {"my favourite programming language is Python",
     "I love programming in python", "we hiked up the mountain at dawn"},
    {"photographs of the beach", "a photograph taken at the beach",
     "interest rates on mortgages"},
};

static void test_similar_beats_unrelated(void **state) {
  (void)state;
  for (size_t d = 0; d < NDIMS; d++) {
    search_hashed h = hashed_dim(dims[d]);
    for (size_t t = 0; t < sizeof triples / sizeof triples[0]; t++) {
      double s = cosine(&h, triples[t].query, triples[t].similar);
      double u = cosine(&h, triples[t].query, triples[t].unrelated);
      if (!(s > u + 0.1))
        fprintf(stderr, "dim %zu, \"%s\": similar %.3f, unrelated %.3f\n",
                dims[d], triples[t].query, s, u);
      assert_true(s > u + 0.1);
      assert_true(s > 0.2);
    }
  }
  /* Same text: 1. Character n-grams tie word forms together. */
  search_hashed h = hashed_dim(384);
  assert_true(fabs(cosine(&h, "hello world", "hello world") - 1.0) < 1e-5);
  assert_true(cosine(&h, "painting", "paintings") > 0.4);
  assert_true(cosine(&h, "painting", "mortgage") < 0.3);
  /* Word order counts through pairs, a little. */
  double same = cosine(&h, "new york city", "new york city");
  double swapped = cosine(&h, "new york city", "city york new");
  assert_true(swapped < same);
  assert_true(swapped > 0.6);
}

/* Longer than the stack buffer of features, and bytes that are not UTF-8:
 * still deterministic and normalized. */
static void test_long_and_odd_text(void **state) {
  (void)state;
  search_hashed h = hashed_dim(256);
  size_t len = 200000;
  char *text = malloc(len);
  assert_non_null(text);
  uint64_t x = 42;
  for (size_t i = 0; i < len; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    unsigned r = (unsigned)(x >> 59); /* 0..31 */
    text[i] = r < 5 ? ' ' : (char)('a' + r % 26);
  }
  float *a = malloc(h.opt.dim * sizeof *a), *b = malloc(h.opt.dim * sizeof *b);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(search_hashed_embed(&h, text, len, a), 0);
  assert_int_equal(search_hashed_embed(&h, text, len, b), 0);
  assert_memory_equal(a, b, h.opt.dim * sizeof *a);
  assert_true(fabs(sqrt(dot(a, a, h.opt.dim)) - 1.0) < 1e-5);

  const char odd[] = "caf\xc3 \xff\xfe word \xe2\x82 na\xcc\x88ive";
  assert_int_equal(search_hashed_embed(&h, odd, sizeof odd - 1, a), 0);
  assert_true(fabs(sqrt(dot(a, a, h.opt.dim)) - 1.0) < 1e-5);
  free(a);
  free(b);
  free(text);
}

/* ------------------------------------------------- the embedder object */

typedef struct fixture {
  uv_loop_t loop;
  rt rt;
  search_hashed h;
  search_embedder *e;
  int closed;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || uv_loop_init(&f->loop) != 0)
    return -1;
  rt_init(&f->rt, &f->loop);
  if (search_hashed_init(&f->h, NULL) != 0 ||
      search_hashed_embedder_new(&f->rt, &f->h, &f->e) != 0)
    return -1;
  g_violations = 0;
  *state = f;
  return 0;
}

static void on_closed(void *data) {
  (*(int *)data)++;
}

static int is_set(void *arg) {
  return *(int *)arg != 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  if (f->e) {
    search_embedder_close(f->e, on_closed, &f->closed);
    tl_run_until(&f->loop, is_set, &f->closed, 10000);
  }
  int leftover = 0;
  int rc = tl_loop_finish(&f->loop, &leftover);
  int ok = f->closed == 1 && leftover == 0 && rc == 0 &&
           f->rt.work_inflight == 0 && g_violations == 0;
  free(f);
  return ok ? 0 : -1;
}

/* One request and what happened to it. */
typedef struct call {
  search_embed_req req;
  int calls, status;
  int in_api;  /* set while the test is inside search_embed/cancel */
  float *copy; /* the vectors, copied */
  size_t n, dim;
  const char *msg;
  void (*then)(struct call *c); /* run inside the callback */
  void *ctx;
} call;

static void on_embedded(search_embed_req *req, int status, const char *msg,
                        float *vectors, void *data) {
  call *c = data;
  CHECK(req == &c->req);
  CHECK(!c->in_api);
  CHECK(!req->active);
  c->calls++;
  c->status = status;
  c->msg = msg;
  CHECK((status == 0) == (vectors != NULL));
  CHECK((status == 0) == (msg == NULL));
  if (vectors) {
    c->copy = malloc(c->n * c->dim * sizeof *c->copy);
    CHECK(c->copy != NULL);
    if (c->copy)
      memcpy(c->copy, vectors, c->n * c->dim * sizeof *c->copy);
  }
  if (c->then)
    c->then(c);
}

static int start(fixture *f, call *c, const char *const *texts,
                 const size_t *lens, size_t n) {
  c->n = n;
  c->dim = f->e->dim;
  c->in_api = 1;
  int rc = search_embed(f->e, &c->req, texts, lens, n, on_embedded, c);
  c->in_api = 0;
  return rc;
}

static int called(void *arg) {
  return ((call *)arg)->calls != 0;
}

static void expect_same_as_sync(fixture *f, const call *c,
                                const char *const *texts, const size_t *lens) {
  float *v = malloc(f->e->dim * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < c->n; i++) {
    assert_int_equal(search_hashed_embed(&f->h, texts[i], lens[i], v), 0);
    assert_memory_equal(v, c->copy + i * f->e->dim, f->e->dim * sizeof *v);
  }
  free(v);
}

static void test_embedder_small_batch(void **state) {
  fixture *f = *state;
  assert_string_equal(f->e->name, "hashed-v1");
  assert_int_equal(f->e->dim, 384);
  /* Copied at the call: the caller's buffers may change right after. */
  char t0[] = "the cat sat on the mat", t1[] = "", t2[] = "dogs bark";
  const char *texts[] = {t0, t1, t2};
  size_t lens[] = {strlen(t0), 0, strlen(t2)};
  call c = {0};
  assert_int_equal(start(f, &c, texts, lens, 3), 0);
  assert_int_equal(c.calls, 0); /* never inside search_embed */
  assert_true(c.req.active);
  char saved0[sizeof t0];
  memcpy(saved0, t0, sizeof t0);
  memset(t0, 'x', sizeof t0 - 1);
  assert_true(tl_run_until(&f->loop, called, &c, 5000));
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, 0);
  assert_false(c.req.active);
  assert_int_equal(f->rt.work_inflight, 0); /* on the loop, not the pool */
  memcpy(t0, saved0, sizeof t0);
  expect_same_as_sync(f, &c, texts, lens);
  free(c.copy);
  tl_run_for(&f->loop, 5);
  assert_int_equal(c.calls, 1);
}

/* Texts enough to need several chunks on the pool. */
typedef struct big {
  char **texts;
  size_t *lens;
  size_t n;
} big;

static big big_batch(size_t n, size_t len) {
  big b = {malloc(n * sizeof(char *)), malloc(n * sizeof(size_t)), n};
  assert_non_null(b.texts);
  assert_non_null(b.lens);
  for (size_t i = 0; i < n; i++) {
    b.texts[i] = malloc(len + 1);
    assert_non_null(b.texts[i]);
    for (size_t j = 0; j < len; j++)
      b.texts[i][j] = j % 7 == 6 ? ' ' : (char)('a' + (i * 31 + j * 7) % 26);
    b.texts[i][len] = '\0';
    b.lens[i] = len;
  }
  return b;
}

static void big_free(big *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->texts[i]);
  free(b->texts);
  free(b->lens);
}

static void test_embedder_large_batch(void **state) {
  fixture *f = *state;
  /* 64 texts of 4 KiB: 256 KiB, about four chunks. */
  big b = big_batch(64, 4096);
  call c = {0};
  assert_int_equal(start(f, &c, (const char *const *)b.texts, b.lens, b.n), 0);
  assert_int_equal(c.calls, 0);
  assert_int_equal(f->rt.work_inflight, 1);
  assert_true(tl_run_until(&f->loop, called, &c, 20000));
  assert_int_equal(c.status, 0);
  expect_same_as_sync(f, &c, (const char *const *)b.texts, b.lens);
  free(c.copy);
  big_free(&b);
}

static void test_embedder_bad_arguments(void **state) {
  fixture *f = *state;
  const char *texts[] = {"a"};
  size_t lens[] = {1};
  call c = {0};
  assert_int_equal(search_embed(f->e, &c.req, texts, lens, 0, on_embedded, &c),
                   ENGRAM_EINVAL);
  assert_int_equal(search_embed(f->e, &c.req, NULL, lens, 1, on_embedded, &c),
                   ENGRAM_EINVAL);
  assert_int_equal(search_embed(f->e, &c.req, texts, lens, 1, NULL, &c),
                   ENGRAM_EINVAL);
  const char *null_text[] = {NULL};
  assert_int_equal(start(f, &c, null_text, lens, 1), ENGRAM_EINVAL);
  assert_false(c.req.active);
  search_embed_cancel(&c.req); /* never started: nothing happens */
  tl_run_for(&f->loop, 5);
  assert_int_equal(c.calls, 0);
}

static void test_embedder_cancel_small(void **state) {
  fixture *f = *state;
  const char *texts[] = {"to be cancelled"};
  size_t lens[] = {strlen(texts[0])};
  call c = {0};
  assert_int_equal(start(f, &c, texts, lens, 1), 0);
  c.in_api = 1;
  search_embed_cancel(&c.req);
  search_embed_cancel(&c.req); /* idempotent */
  c.in_api = 0;
  assert_int_equal(c.calls, 0);
  assert_true(tl_run_until(&f->loop, called, &c, 5000));
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_non_null(c.msg);
  assert_null(c.copy);
  search_embed_cancel(&c.req); /* after the callback: nothing */
  tl_run_for(&f->loop, 5);
  assert_int_equal(c.calls, 1);
}

static void test_embedder_cancel_large(void **state) {
  fixture *f = *state;
  big b = big_batch(256, 4096); /* 1 MiB: about sixteen chunks */
  call c = {0};
  assert_int_equal(start(f, &c, (const char *const *)b.texts, b.lens, b.n), 0);
  tl_run_for(&f->loop, 1);
  c.in_api = 1;
  search_embed_cancel(&c.req);
  c.in_api = 0;
  assert_true(tl_run_until(&f->loop, called, &c, 20000));
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_int_equal(f->rt.work_inflight, 0);
  big_free(&b);
}

/* From inside a callback: cancelling itself is a no-op; starting another
 * request works and its callback comes later, not nested. */
static void restart(call *c) {
  fixture *f = c->ctx;
  search_embed_cancel(&c->req);
  call *next = (call *)c + 1;
  static const char *texts[] = {"second"};
  static size_t lens[] = {6};
  next->in_api = 1;
  int rc = search_embed(f->e, &next->req, texts, lens, 1, on_embedded, next);
  next->in_api = 0;
  next->n = 1;
  next->dim = f->e->dim;
  CHECK(rc == 0);
  CHECK(next->calls == 0);
}

static void test_embedder_from_callback(void **state) {
  fixture *f = *state;
  call c[2];
  memset(c, 0, sizeof c);
  c[0].then = restart;
  c[0].ctx = f;
  const char *texts[] = {"first"};
  size_t lens[] = {5};
  assert_int_equal(start(f, &c[0], texts, lens, 1), 0);
  assert_true(tl_run_until(&f->loop, called, &c[1], 5000));
  assert_int_equal(c[0].calls, 1);
  assert_int_equal(c[0].status, 0);
  assert_int_equal(c[1].calls, 1);
  assert_int_equal(c[1].status, 0);
  free(c[0].copy);
  free(c[1].copy);
}

/* Close with a small and a large request in flight: both come back
 * cancelled, then the close callback; a request started from one of those
 * callbacks is refused. */
static void try_after_close(call *c) {
  fixture *f = c->ctx;
  static const char *texts[] = {"late"};
  static size_t lens[] = {4};
  call late = {0};
  int rc = search_embed(c->req.embedder, &late.req, texts, lens, 1, on_embedded,
                        &late);
  CHECK(rc == ENGRAM_ECLOSED);
  CHECK(f->closed == 0);
}

static void test_embedder_close_pending(void **state) {
  fixture *f = *state;
  big b = big_batch(128, 4096);
  call c[2];
  memset(c, 0, sizeof c);
  const char *texts[] = {"small one"};
  size_t lens[] = {9};
  c[0].then = try_after_close;
  c[0].ctx = f;
  assert_int_equal(start(f, &c[0], texts, lens, 1), 0);
  assert_int_equal(start(f, &c[1], (const char *const *)b.texts, b.lens, b.n),
                   0);
  search_embedder_close(f->e, on_closed, &f->closed);
  f->e = NULL;
  assert_int_equal(c[0].calls + c[1].calls + f->closed, 0);
  assert_true(tl_run_until(&f->loop, is_set, &f->closed, 20000));
  assert_int_equal(c[0].calls, 1);
  assert_int_equal(c[1].calls, 1);
  assert_int_equal(c[0].status, ENGRAM_ECANCELED);
  assert_int_equal(c[1].status, ENGRAM_ECANCELED);
  assert_int_equal(f->closed, 1);
  big_free(&b);
}

/* Many small requests on one iteration: each called back once, in order. */
static void test_embedder_many(void **state) {
  fixture *f = *state;
  enum { N = 200 };
  call *c = calloc(N, sizeof *c);
  assert_non_null(c);
  char buf[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(buf[i], sizeof buf[i], "memory number %d", i);
    const char *texts[] = {buf[i]};
    size_t lens[] = {strlen(buf[i])};
    assert_int_equal(start(f, &c[i], texts, lens, 1), 0);
    if (i % 10 == 3)
      search_embed_cancel(&c[i].req);
  }
  assert_true(tl_run_until(&f->loop, called, &c[N - 1], 5000));
  for (int i = 0; i < N; i++) {
    assert_int_equal(c[i].calls, 1);
    assert_int_equal(c[i].status, i % 10 == 3 ? ENGRAM_ECANCELED : 0);
    if (c[i].copy) {
      const char *texts[] = {buf[i]};
      size_t lens[] = {strlen(buf[i])};
      expect_same_as_sync(f, &c[i], texts, lens);
    }
    free(c[i].copy);
  }
  free(c);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_and_names),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_normalized),
      cmocka_unit_test(test_empty_is_zero),
      cmocka_unit_test(test_similar_beats_unrelated),
      cmocka_unit_test(test_long_and_odd_text),
      T(test_embedder_small_batch),
      T(test_embedder_large_batch),
      T(test_embedder_bad_arguments),
      T(test_embedder_cancel_small),
      T(test_embedder_cancel_large),
      T(test_embedder_from_callback),
      T(test_embedder_close_pending),
      T(test_embedder_many),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
