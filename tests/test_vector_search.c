/*
 * test_vector_search.c — the vector strategy and vectors inside hybrid
 * search, through engram_search (src/search/hybrid.c over the vector
 * index and the store's candidates with ids): a memory found by character
 * n-grams alone (a typo, a plural), the type, metadata and time filters,
 * queries with nothing to embed, hybrid with vector_weight returning both
 * lexical matches and vector-only hits, the errors (no embedder, a
 * database whose vectors are another embedder's), cancellation at every
 * step, and 1000 concurrent vector searches on one pool thread (main()
 * sets UV_THREADPOOL_SIZE=1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_tu.h"
#include "tu.h"

#define NS "vsearch"

static void add_full(engram *eg, const char *content, engram_type type,
                     const char *metadata, char id[ENGRAM_ID_LEN + 1]) {
  engram_id_new(id);
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = NS,
                  .id = id,
                  .type = type,
                  .content = content,
                  .metadata = metadata};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
}

static void add(engram *eg, const char *content, char id[ENGRAM_ID_LEN + 1]) {
  add_full(eg, content, ENGRAM_EPISODIC, NULL, id);
}

static int vsearch(engram *eg, const char *text, engram_query *base,
                   stu_coll *c) {
  engram_query q = base ? *base : (engram_query){0};
  q.ns = NS;
  q.text = text;
  q.strategy = ENGRAM_STRATEGY_VECTOR;
  return stu_search(eg, &q, 100, c);
}

static void check_ranked(const stu_coll *c) {
  for (size_t i = 0; i < c->n; i++) {
    assert_true(c->nodes[i]->relevance > 0 && c->nodes[i]->relevance <= 1);
    if (i > 0)
      assert_true(c->nodes[i]->relevance <= c->nodes[i - 1]->relevance);
  }
}

static const char *const distractors[] = {
    "the weather was cold and windy all week",
    "my sister adopted a small grey kitten",
    "the train to the airport was delayed again",
    "we painted the fence green last summer",
    "he is learning to play the violin",
};
#define NDISTRACTORS (sizeof distractors / sizeof distractors[0])

/* No word in common, character n-grams in common: only vectors find it. */
static void test_vector_finds_ngrams(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vs-ngrams"), NULL);
  char target[ENGRAM_ID_LEN + 1], other[ENGRAM_ID_LEN + 1];
  add(eg, distractors[0], other);
  add(eg, "we tried three new restaurants downtown", target);
  for (size_t i = 1; i < NDISTRACTORS; i++)
    add(eg, distractors[i], other);

  stu_coll c;
  engram_query lq = {.ns = NS, .text = "resturant"};
  assert_int_equal(stu_search(eg, &lq, 10, &c), 0);
  assert_int_equal(c.n, 0); /* lexical: a typo matches nothing */
  stu_coll_free(&c);
  lq.strategy = ENGRAM_STRATEGY_HYBRID;
  assert_int_equal(stu_search(eg, &lq, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);

  assert_int_equal(vsearch(eg, "resturant", NULL, &c), 0);
  assert_true(c.n >= 1);
  assert_string_equal(c.nodes[0]->id, target);
  check_ranked(&c);
  for (size_t i = 1; i < c.n; i++) /* the others share nothing much */
    assert_true(c.nodes[i]->relevance < c.nodes[0]->relevance / 2);
  stu_coll_free(&c);

  assert_int_equal(vsearch(eg, "restaurant", NULL, &c), 0);
  assert_string_equal(c.nodes[0]->id, target);
  stu_coll_free(&c);

  /* The same content: cosine 1. */
  assert_int_equal(
      vsearch(eg, "we tried three new restaurants downtown", NULL, &c), 0);
  assert_string_equal(c.nodes[0]->id, target);
  assert_true(c.nodes[0]->relevance > 0.999);
  stu_coll_free(&c);

  /* Nothing to embed: an empty result, not an error. */
  assert_int_equal(vsearch(eg, "", NULL, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  assert_int_equal(vsearch(eg, "?! ... --", NULL, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);

  /* What is written later is found by the next search; what is deleted
   * is not. */
  char later[ENGRAM_ID_LEN + 1];
  add(eg, "the restaurant critic wrote a review", later);
  assert_int_equal(vsearch(eg, "restaurant critic review", NULL, &c), 0);
  assert_string_equal(c.nodes[0]->id, later);
  stu_coll_free(&c);
  assert_int_equal(stu_delete(eg, NS, later), 0);
  assert_int_equal(vsearch(eg, "restaurant critic review", NULL, &c), 0);
  assert_true(stu_find(&c, later) < 0);
  stu_coll_free(&c);
  tu_close(eg);
}

/* The filters of hybrid apply; types come from the index. */
static void test_vector_filters(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vs-filters"), NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1], f[ENGRAM_ID_LEN + 1];
  /* Apart in time (the creation filter is by millisecond): tests may
   * sleep, the library never does. */
  add_full(eg, "the garden is full of sunflowers", ENGRAM_EPISODIC,
           "{\"speaker\":\"ann\"}", a);
  usleep(3000);
  add_full(eg, "sunflowers grow towards the sun", ENGRAM_SEMANTIC,
           "{\"speaker\":\"bob\"}", f);
  usleep(3000);
  add_full(eg, "the garden has sunflowers and roses", ENGRAM_EPISODIC,
           "{\"speaker\":\"bob\"}", b);

  stu_coll c;
  assert_int_equal(vsearch(eg, "sunflowers", NULL, &c), 0);
  assert_int_equal(c.n, 3);
  check_ranked(&c);
  stu_coll_free(&c);

  engram_query q = {.types = 1u << ENGRAM_SEMANTIC};
  assert_int_equal(vsearch(eg, "sunflowers", &q, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, f);
  stu_coll_free(&c);

  q = (engram_query){.meta_key = "speaker", .meta_value = "bob"};
  assert_int_equal(vsearch(eg, "garden sunflowers", &q, &c), 0);
  assert_int_equal(c.n, 2);
  assert_true(stu_find(&c, a) < 0);
  stu_coll_free(&c);

  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, b, &n), 0);
  q = (engram_query){.created_after_ms = n->created_ms};
  engram_node_free(n);
  assert_int_equal(vsearch(eg, "garden sunflowers", &q, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, b);
  stu_coll_free(&c);

  q = (engram_query){.min_relevance = 0.99};
  assert_int_equal(vsearch(eg, "the garden is full of sunflowers", &q, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, a);
  stu_coll_free(&c);

  /* Bad options are refused as for hybrid. */
  engram_search_options o;
  engram_search_options_init(&o);
  o.candidates = 0;
  q = (engram_query){.options = &o};
  assert_int_equal(vsearch(eg, "garden", &q, &c), ENGRAM_EINVAL);
  tu_close(eg);
}

/* Hybrid with vector_weight: the lexical matches and, fused in, memories
 * only the vectors found. */
static void test_hybrid_with_vectors(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vs-hybrid"), NULL);
  char lexical[ENGRAM_ID_LEN + 1], vec[ENGRAM_ID_LEN + 1],
      filler[ENGRAM_ID_LEN + 1];
  add_full(eg, "the menu prices went up again", ENGRAM_EPISODIC,
           "{\"session\":1}", lexical);
  for (size_t i = 0; i < NDISTRACTORS; i++)
    add_full(eg, distractors[i], ENGRAM_EPISODIC, "{\"session\":2}", filler);
  add_full(eg, "we tried three new restaurants downtown", ENGRAM_EPISODIC,
           "{\"session\":3}", vec);

  engram_search_options o;
  engram_search_options_init(&o);
  engram_query q = {.ns = NS,
                    .text = "resturant menu prices",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = &o};
  stu_coll c;
  assert_int_equal(stu_search(eg, &q, 100, &c), 0);
  assert_true(stu_find(&c, lexical) == 0);
  assert_true(stu_find(&c, vec) < 0); /* weight 0: no vector step */
  stu_coll_free(&c);

  o.vector_weight = 1.0;
  assert_int_equal(stu_search(eg, &q, 100, &c), 0);
  check_ranked(&c);
  assert_true(stu_find(&c, lexical) >= 0);
  assert_true(stu_find(&c, vec) >= 0); /* a vector-only hit */
  /* Both rankings put the lexical match first. */
  assert_int_equal(stu_find(&c, lexical), 0);
  stu_coll_free(&c);

  /* A query no memory shares a word with: the vector hits alone. */
  q.text = "resturant";
  assert_int_equal(stu_search(eg, &q, 100, &c), 0);
  assert_true(c.n >= 1);
  assert_string_equal(c.nodes[0]->id, vec);
  stu_coll_free(&c);
  tu_close(eg);
}

/* ------------------------------------------------------------ errors */

static void test_no_embedder(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_NONE;
  engram *eg = tu_open(tu_db_path("vs-none"), &o);
  char id[ENGRAM_ID_LEN + 1];
  add(eg, "we tried three new restaurants downtown", id);
  stu_coll c;
  assert_int_equal(vsearch(eg, "restaurants", NULL, &c), ENGRAM_EINVAL);
  /* Hybrid with a vector weight runs without the vector step. */
  engram_search_options so;
  engram_search_options_init(&so);
  so.vector_weight = 1;
  engram_query q = {.ns = NS,
                    .text = "restaurants",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = &so};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  tu_close(eg);
}

static int g_logged_mismatch;
static void capture_log(engram_log_level level, const char *message,
                        void *data) {
  (void)level;
  (void)data;
  if (strstr(message, "engram reembed") && strstr(message, "hashed-v1/384") &&
      strstr(message, "hashed-v1/64"))
    g_logged_mismatch++;
}

static void test_space_mismatch(void **state) {
  (void)state;
  const char *path = tu_db_path("vs-space");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *eg = tu_open(saved, NULL);
  char id[ENGRAM_ID_LEN + 1];
  add(eg, "we tried three new restaurants downtown", id);
  tu_close(eg);

  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_HASHED;
  o.embedder.dim = 64;
  eg = tu_open(saved, &o);
  g_logged_mismatch = 0;
  engram_set_log(eg, capture_log, NULL);
  stu_coll c;
  assert_int_equal(vsearch(eg, "restaurants", NULL, &c), ENGRAM_EEMBEDDER);
  assert_int_equal(g_logged_mismatch, 1);
  engram_search_options so;
  engram_search_options_init(&so);
  so.vector_weight = 1;
  engram_query q = {.ns = NS,
                    .text = "restaurants",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = &so};
  assert_int_equal(stu_search(eg, &q, 10, &c), ENGRAM_EEMBEDDER);
  so.vector_weight = 0; /* without vectors it still works */
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  engram_query lq = {.ns = NS, .text = "restaurants"};
  assert_int_equal(stu_search(eg, &lq, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  tu_close(eg);
}

/* ------------------------------------------------------- cancellation */

typedef struct one_done {
  int done, calls, status;
} one_done;

static void od_item(engram_stream *s, const engram_node *n, void *data) {
  (void)s;
  (void)n;
  (void)data;
}

static void od_done(engram_stream *s, int status, void *data) {
  one_done *d = data;
  (void)s;
  d->calls++;
  d->done = 1;
  d->status = status;
}

/* Cancels a vector (and a hybrid-with-vectors) search after 0, 1, 2, ...
 * loop iterations, through every step: exactly one done, ECANCELED (or 0
 * when it had finished). */
static void test_cancel_every_step(void **state) {
  (void)state;
  engram *eg = tu_open_delayed(tu_db_path("vs-cancel"), NULL, 2);
  char id[ENGRAM_ID_LEN + 1];
  for (size_t i = 0; i < NDISTRACTORS; i++)
    add(eg, distractors[i], id);
  engram_search_options o;
  engram_search_options_init(&o);
  o.vector_weight = 1;
  for (int hybrid = 0; hybrid < 2; hybrid++) {
    int finished = 0;
    for (int steps = 0; steps < 400 && !finished; steps++) {
      engram_query q = {.ns = NS,
                        .text = "the cold train to the airport",
                        .strategy = hybrid ? ENGRAM_STRATEGY_HYBRID
                                           : ENGRAM_STRATEGY_VECTOR,
                        .options = &o};
      one_done d = {0};
      engram_stream_cbs cbs = {od_item, NULL, od_done, &d};
      engram_stream *s = NULL;
      assert_int_equal(engram_search(eg, &q, &cbs, &s), 0);
      assert_int_equal(engram_stream_request(s, 100), 0);
      for (int i = 0; i < steps && !d.done; i++)
        uv_run(engram_loop(eg), UV_RUN_ONCE);
      if (!d.done)
        engram_stream_cancel(s);
      else
        finished = 1;
      tu_run_until(eg, &d.done);
      assert_int_equal(d.calls, 1);
      assert_true(d.status == ENGRAM_ECANCELED || d.status == 0);
      if (d.status == 0)
        finished = 1;
    }
    assert_true(finished);
  }
  /* A deadline in the middle: ETIMEDOUT. */
  engram_query q = {
      .ns = NS, .text = "the cold train", .strategy = ENGRAM_STRATEGY_VECTOR};
  one_done d = {0};
  engram_stream_cbs cbs = {od_item, NULL, od_done, &d};
  engram_stream *s = NULL;
  assert_int_equal(engram_search(eg, &q, &cbs, &s), 0);
  engram_stream_set_deadline(s, 1);
  assert_int_equal(engram_stream_request(s, 100), 0);
  tu_run_until(eg, &d.done);
  assert_true(d.status == ENGRAM_ETIMEDOUT || d.status == 0);
  /* Closing with searches out. */
  one_done many[8];
  memset(many, 0, sizeof many);
  for (int i = 0; i < 8; i++) {
    engram_stream_cbs mc = {od_item, NULL, od_done, &many[i]};
    assert_int_equal(engram_search(eg, &q, &mc, &s), 0);
    assert_int_equal(engram_stream_request(s, 100), 0);
  }
  uv_run(engram_loop(eg), UV_RUN_ONCE);
  tu_close(eg);
  for (int i = 0; i < 8; i++)
    assert_int_equal(many[i].calls, 1);
}

/* ------------------------------------------------------------- many */

typedef struct many_state {
  int finished, failed, first_right;
  char want[ENGRAM_ID_LEN + 1];
} many_state;

typedef struct many_one {
  many_state *m;
  int first;
} many_one;

static void many_item(engram_stream *s, const engram_node *n, void *data) {
  many_one *o = data;
  (void)s;
  if (!o->first++ && strcmp(n->id, o->m->want) == 0)
    o->m->first_right++;
}

static void many_done(engram_stream *s, int status, void *data) {
  many_one *o = data;
  (void)s;
  o->m->finished++;
  if (status != 0)
    o->m->failed++;
}

static void test_thousand_vector_searches(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vs-many"), NULL);
  char id[ENGRAM_ID_LEN + 1];
  many_state m = {0};
  for (size_t i = 0; i < NDISTRACTORS; i++)
    add(eg, distractors[i], id);
  add(eg, "we tried three new restaurants downtown", m.want);
  enum { N = 1000 };
  many_one *ones = calloc(N, sizeof *ones);
  assert_non_null(ones);
  for (size_t i = 0; i < N; i++) {
    ones[i].m = &m;
    engram_query q = {
        .ns = NS, .text = "resturants", .strategy = ENGRAM_STRATEGY_VECTOR};
    engram_stream_cbs cbs = {many_item, NULL, many_done, &ones[i]};
    engram_stream *s = NULL;
    assert_int_equal(engram_search(eg, &q, &cbs, &s), 0);
    assert_int_equal(engram_stream_request(s, 5), 0);
  }
  while (m.finished < N)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && m.finished < N)
      fail_msg("the loop ran dry: %d of %d searches finished", m.finished, N);
  assert_int_equal(m.failed, 0);
  assert_int_equal(m.first_right, N);
  free(ones);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vector_finds_ngrams),
      cmocka_unit_test(test_vector_filters),
      cmocka_unit_test(test_hybrid_with_vectors),
      cmocka_unit_test(test_no_embedder),
      cmocka_unit_test(test_space_mismatch),
      cmocka_unit_test(test_cancel_every_step),
      cmocka_unit_test(test_thousand_vector_searches),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
