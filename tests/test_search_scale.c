/*
 * test_search_scale.c — hybrid search's pruned candidates on SQLite
 * (sqlite_candidates.c, sqlite_terms.c, engram_rank's counts and skip):
 * against the unpruned query that ranks every match (the statement hybrid
 * search ran before pruning, kept here as the reference), on a generated
 * namespace of a few thousand memories with frequent, middling and rare
 * words.
 *
 *   - A budget that does not bind gives the unpruned query's best matches:
 *     the same ids, the same scores (1e-9), with and without the namespace
 *     tag (a file of two namespaces, a file of one), after deletes and
 *     updates, and after writes that change the words' counts (the cache
 *     of counts is emptied).
 *   - A tiny budget still gives matches, each with its whole score (the
 *     unpruned score of the same row), and for a word in more rows than
 *     the budget, the newest of them.
 *   - Cut (prefix) words, a query of frequent words only, of absent words
 *     only, and hostile text.
 *   - max_scored's range check names the field.
 * The store's candidates operation is called directly (the handle's store
 * is captured with engram_wrap_store), window 0: the hits alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "engram_internal.h"
#include "scale_corpus.h"
#include "search/hybrid.h"
#include "store/sqlite/sqlite_internal.h"
#include "store_tu.h"
#include "tu.h"

#define NS "scale"
#define OTHER "other"
#define LIMIT 40
#define NO_CAP 10000000u

/* ------------------------------------------------------------- the data */

/* tu_add_many's generator: arg non-NULL picks the other sequence. */
static const char *make_memory(size_t i, void *arg) {
  return scale_memory(i, arg != NULL, SCALE_SPACES);
}

/* ------------------------------------------------------ the two sides */

static store *captured;
static unsigned want_types; /* the candidates' type filter; 0: all */

static engram *open_capturing(const char *path) {
  return scale_open_capturing(path, &captured);
}

/* The pruned side: the store's candidates, hits only, best first. */
static scale_hits pruned(engram *eg, const char *ns, const char *text,
                         size_t max_scored) {
  store_candidates_query q = {.ns = ns,
                              .text = text,
                              .limit = LIMIT,
                              .types = want_types,
                              .window = 0,
                              .max_scored = max_scored,
                              .k1 = 0.6,
                              .b = 0.3,
                              .meta_weight = 1.0};
  return scale_pruned(eg, captured, &q);
}

/* The reference: every match of the namespace ranked, as hybrid search
 * did before pruning (engram_rank counting each phrase itself). */
static scale_hits unpruned(const char *path, const char *ns, const char *text) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite_rank_register(db), SQLITE_OK);
  char *match = NULL;
  size_t tokens = 0;
  assert_int_equal(
      sqlite_match_build_ns(ns, text, strlen(text), &match, &tokens), 0);
  scale_hits h = {calloc(8192, sizeof *h.v), 0};
  assert_non_null(h.v);
  if (match) {
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(
            db,
            "SELECT m.id, m.rowid, engram_rank(memories_fts, 0.6, 0.3, 1.0, 1)"
            " AS score FROM memories_fts JOIN memories m"
            " ON m.rowid = memories_fts.rowid"
            " WHERE memories_fts MATCH ?1 AND m.ns = ?2 ORDER BY score",
            -1, &stmt, NULL),
        SQLITE_OK);
    sqlite3_bind_text(stmt, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, ns, -1, SQLITE_STATIC);
    while (sqlite3_step(stmt) == SQLITE_ROW && h.n < 8192) {
      snprintf(h.v[h.n].id, sizeof h.v[h.n].id, "%s",
               (const char *)sqlite3_column_text(stmt, 0));
      h.v[h.n].rowid = sqlite3_column_int64(stmt, 1);
      h.v[h.n++].score = -sqlite3_column_double(stmt, 2);
    }
    assert_int_equal(sqlite3_finalize(stmt), SQLITE_OK);
  }
  free(match);
  sqlite3_close(db);
  scale_hits_sort(&h); /* ties by id, as the pruned side */
  return h;
}

static void compare(engram *eg, const char *path, const char *ns,
                    const char *text) {
  scale_hits p = pruned(eg, ns, text, NO_CAP);
  scale_hits ref = unpruned(path, ns, text);
  scale_check_exact(&p, &ref, LIMIT, text);
  free(p.v);
  free(ref.v);
}

static const char *const queries[] = {
    "rare7 alpha beta",
    "mid3 rare12 gamma",
    "alpha beta gamma",
    "mid1 mid2 mid3 mid4",
    "running alpha",
    "rare150",
    "alpha",
    "filler words rare33 mid9",
    "rare1 rare2 rare3 rare4 rare5 alpha beta gamma mid0 mid1",
};
#define NQUERIES (sizeof queries / sizeof queries[0])

static char path_two[1024], path_one[1024];

/* ------------------------------------------------------------- the tests */

static void fill(engram *eg, const char *ns, size_t n, void *arg) {
  assert_int_equal(tu_add_many(eg, ns, n, make_memory, arg), 0);
}

/* Words that are (or fold to) namespace tag terms: "n" and hex digits. */
static const char *const tag_words[] = {
    "n7363616c65",
    "N7363616C65 rare1",
    "n6f74686572 alpha",
    "\xc3\xb1"
    "7363616"
    "\xc3\xa7"
    "65",
    "need mid3",
    "n alpha",
};

/* No budget: exactly the unpruned best, in a file of two namespaces (the
 * tag restricts the match) and of one (no tag). */
static void test_exact_without_budget(void **state) {
  (void)state;
  snprintf(path_two, sizeof path_two, "%s", tu_db_path("scale-two"));
  engram *eg = open_capturing(path_two);
  fill(eg, NS, 3000, NULL);
  fill(eg, OTHER, 500, (void *)1);
  for (size_t i = 0; i < NQUERIES; i++)
    compare(eg, path_two, NS, queries[i]);
  compare(eg, path_two, OTHER, "rare7 alpha beta");
  /* The default budget binds nowhere here either. */
  scale_hits p = pruned(eg, NS, "mid3 rare12 gamma", 4096);
  scale_hits ref = unpruned(path_two, NS, "mid3 rare12 gamma");
  scale_check_exact(&p, &ref, LIMIT, "mid3 rare12 gamma");
  free(p.v);
  free(ref.v);
  tu_close(eg);

  snprintf(path_one, sizeof path_one, "%s", tu_db_path("scale-one"));
  eg = open_capturing(path_one);
  fill(eg, NS, 2000, NULL);
  for (size_t i = 0; i < NQUERIES; i++)
    compare(eg, path_one, NS, queries[i]);
  /* The namespace's tag term ("n" and the hex of "scale") is in every
   * row's tag column: as a search word it must match the word columns
   * only, here where the match has no tag, and through the tokenizer's
   * folding (ñ, ç). */
  for (size_t i = 0; i < sizeof tag_words / sizeof tag_words[0]; i++)
    compare(eg, path_one, NS, tag_words[i]);
  tu_close(eg);
}

/* A tiny budget: matches with their whole scores; a word in more rows
 * than the budget gives the newest of them. */
static void test_tiny_budget(void **state) {
  (void)state;
  engram *eg = open_capturing(path_two);
  for (size_t i = 0; i < NQUERIES; i++) {
    scale_hits p = pruned(eg, NS, queries[i], 100);
    scale_hits ref = unpruned(path_two, NS, queries[i]);
    scale_check_scores(&p, &ref, queries[i]);
    assert_true(p.n > 0 && p.n <= LIMIT);
    free(p.v);
    free(ref.v);
  }
  /* "gamma" is in ~1200 rows: the best LIMIT of its 100 newest. */
  scale_hits p = pruned(eg, NS, "gamma", 100);
  scale_hits ref = unpruned(path_two, NS, "gamma");
  assert_true(ref.n > 1000);
  assert_int_equal(p.n, LIMIT);
  long long *rowids = malloc(ref.n * sizeof *rowids);
  assert_non_null(rowids);
  for (size_t i = 0; i < ref.n; i++)
    rowids[i] = ref.v[i].rowid;
  long long newest_cut = 0; /* the 100th largest rowid */
  for (size_t k = 0; k < 100; k++) {
    size_t best = 0;
    for (size_t i = 1; i < ref.n; i++)
      if (rowids[i] > rowids[best])
        best = i;
    newest_cut = rowids[best];
    rowids[best] = -1;
  }
  free(rowids);
  scale_check_scores(&p, &ref, "gamma");
  for (size_t i = 0; i < p.n; i++)
    assert_true(scale_find(&ref, p.v[i].id)->rowid >= newest_cut);
  free(p.v);
  free(ref.v);
  tu_close(eg);
}

/* Cut words, frequent words only, absent words only, hostile text. */
static void test_odd_queries(void **state) {
  (void)state;
  engram *eg = open_capturing(path_two);
  static const char *const odd[] = {
      LONG_WORD "1",
      LONG_WORD " alpha",
      "alpha beta",
      "\"quoted\" NEAR(alpha beta) al* ^beta content:alpha -gamma",
      "(rare1 OR rare2) AND NOT mid3; DROP TABLE memories; --",
      "ns_tag:n73 meta:alpha {content} : \"x\" + * ^ ) (",
      "AND OR NOT NEAR",
      "café naïve ÉTÉ — rare9",
      "😀 rare10",
      "n7363616c65",
      "n6f74686572 alpha",
      "\xc3\xb1"
      "7363616"
      "\xc3\xa7"
      "65 rare3",
  };
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    compare(eg, path_two, NS, odd[i]);
    scale_hits p = pruned(eg, NS, odd[i], 100);
    scale_hits ref = unpruned(path_two, NS, odd[i]);
    scale_check_scores(&p, &ref, odd[i]);
    free(p.v);
    free(ref.v);
  }
  scale_hits p = pruned(eg, NS, LONG_WORD, NO_CAP);
  assert_true(p.n > 0); /* the cut word matches as a prefix */
  free(p.v);
  /* A type filter: every memory here is episodic. */
  for (size_t budget = 100; budget <= NO_CAP; budget *= 100000) {
    scale_hits all = pruned(eg, NS, "mid3 rare12 gamma", budget);
    want_types = 1u << ENGRAM_EPISODIC;
    p = pruned(eg, NS, "mid3 rare12 gamma", budget);
    assert_int_equal(p.n, all.n);
    for (size_t i = 0; i < p.n; i++)
      assert_true(scale_near(p.v[i].score, all.v[i].score));
    free(p.v);
    want_types = 1u << ENGRAM_SEMANTIC;
    p = pruned(eg, NS, "mid3 rare12 gamma", budget);
    assert_int_equal(p.n, 0);
    free(p.v);
    want_types = 0;
    free(all.v);
  }
  static const char *const absent[] = {"zzqqxx nothinghere", "zzqqxx the of",
                                       "😀", "   ", ""};
  for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
    p = pruned(eg, NS, absent[i], NO_CAP);
    assert_int_equal(p.n, 0);
    free(p.v);
    p = pruned(eg, NS, absent[i], 100);
    assert_int_equal(p.n, 0);
    free(p.v);
  }
  tu_close(eg);
}

/* Deletes, updates and new rows change the words' counts: the cached
 * counts follow, and the scores stay those of the unpruned query. */
static void test_counts_follow_writes(void **state) {
  (void)state;
  engram *eg = open_capturing(path_two);
  compare(eg, path_two, NS, "rare7 alpha beta");
  compare(eg, path_two, NS, "mid3 rare12 gamma");
  scale_hits victims = unpruned(path_two, NS, "alpha rare7 mid3");
  assert_true(victims.n > 120);
  for (size_t i = 0; i < 96; i += 16) {
    engram_op ops[16];
    memset(ops, 0, sizeof ops);
    for (size_t k = 0; k < 16; k++) {
      ops[k].ns = NS;
      ops[k].id = victims.v[i + k].id;
      if (k % 2) {
        ops[k].kind = ENGRAM_OP_DELETE;
      } else {
        ops[k].kind = ENGRAM_OP_UPDATE;
        ops[k].content = "rewritten with rare7 rare7 and gamma";
        ops[k].set = ENGRAM_SET_CONTENT;
      }
    }
    assert_int_equal(stu_write_ops(eg, ops, 16), 0);
  }
  free(victims.v);
  compare(eg, path_two, NS, "rare7 alpha beta");
  compare(eg, path_two, NS, "mid3 rare12 gamma");
  fill(eg, NS, 300, (void *)2);
  for (size_t i = 0; i < NQUERIES; i++)
    compare(eg, path_two, NS, queries[i]);
  tu_close(eg);
}

static const char *logged;
static char log_text[512];

static void capture_log(engram_log_level level, const char *message,
                        void *data) {
  (void)level;
  (void)data;
  snprintf(log_text, sizeof log_text, "%s", message);
  logged = log_text;
}

/* max_scored: 100 to 10,000,000, and the error names it. */
static void test_option_checked(void **state) {
  (void)state;
  engram_search_options o;
  engram_search_options_init(&o);
  char msg[160];
  assert_int_equal(search_options_check(&o, msg, sizeof msg), 0);
  assert_true(o.max_scored >= 100 && o.max_scored <= 10000000);
  unsigned bad[] = {0, 99, 10000001};
  engram *eg = open_capturing(path_two);
  engram_set_log(eg, capture_log, NULL);
  engram_query q = {.ns = NS,
                    .text = "alpha",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = &o};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    engram_search_options_init(&o);
    o.max_scored = bad[i];
    assert_int_equal(search_options_check(&o, msg, sizeof msg), ENGRAM_EINVAL);
    assert_non_null(strstr(msg, "max_scored"));
    logged = NULL;
    engram_stream *s = NULL;
    assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);
    assert_non_null(logged);
    assert_non_null(strstr(logged, "max_scored"));
  }
  engram_search_options_init(&o);
  o.max_scored = 100;
  stu_coll c;
  assert_int_equal(stu_search(eg, &q, 100, &c), 0);
  assert_true(c.n > 0);
  stu_coll_free(&c);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  if (tu_backend_is_pg()) {
    printf("skipped on PostgreSQL: SQLite's pruned candidates\n");
    return TU_SKIP;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_without_budget),
      cmocka_unit_test(test_tiny_budget),
      cmocka_unit_test(test_odd_queries),
      cmocka_unit_test(test_counts_follow_writes),
      cmocka_unit_test(test_option_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
