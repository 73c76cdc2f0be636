/*
 * test_pg_candidates.c — hybrid search's pruned candidates on PostgreSQL
 * (pg_candidates.c, pg_terms.c), against the unpruned scoring that ranks
 * every match (PG_SCORE_CTES, search's statement, run here on a blocking
 * libpq connection as the reference), on a generated namespace with
 * frequent, middling and rare words, some in the metadata, a few phrases
 * and cut (prefix) words.
 *
 *   - A budget that does not bind gives the reference's best matches: the
 *     same ids in the same order (rows whose scores tie may swap), the
 *     same scores to 1e-9; with max_scored at its maximum (the namespace
 *     read whole) and below the namespace's size where the words' rows
 *     fit (read through the index); with a type filter, other
 *     meta_weights, with and without PostgreSQL's statistics, and for a
 *     namespace alone in its table (the words the statistics know then
 *     go uncounted).
 *   - A budget of 100, where a common word is in a thousand rows: a
 *     planted memory with the query's rare words is still the best match;
 *     the lexical step scores at most 100 rows (its statement run here and
 *     its rows counted), and a word in more rows than the budget gives its
 *     newest 100, read through the GIN bitmap (no statistics) and by
 *     walking the namespace newest first (with them); each row's length
 *     is the number of its positions.
 *   - Hostile text never becomes tsquery syntax: the words stay bound,
 *     the answer is the reference's; invalid UTF-8 is refused at the API.
 *   - Cancel, at once and while the statements run: one callback,
 *     ENGRAM_ECANCELED.
 * The store's candidates operation is called directly (the handle's store
 * captured with engram_wrap_store), window 0: the matches alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "engram_internal.h"
#include "scale_corpus.h"
#include "store/pg/pg_internal.h"
#include "store_tu.h"
#include "tu.h"

#define NS "scale"
#define OTHER "other"
#define LIMIT 40
#define NO_CAP 10000000u
#define ROWS 3000

/* ------------------------------------------------------------- the data */

/* tu_add_many's generator: arg non-NULL picks the other sequence. */
static const char *make_memory(size_t i, void *arg) {
  return scale_memory(i, arg != NULL, SCALE_DASH);
}

/* Memories with words in their metadata, some semantic: 48 of them. */
static void add_metadata_rows(engram *eg, const char *ns) {
  for (size_t batch = 0; batch < 3; batch++) {
    engram_op ops[16];
    char content[16][64], meta[16][96];
    memset(ops, 0, sizeof ops);
    for (size_t k = 0; k < 16; k++) {
      size_t i = batch * 16 + k;
      snprintf(content[k], sizeof content[k], "meta row %zu gamma%s", i,
               i % 3 ? "" : " rare7");
      snprintf(meta[k], sizeof meta[k],
               "{\"topic\": \"rare7 mid3 alpha\", \"n\": %zu, \"who\": "
               "\"rare12\"}",
               i);
      ops[k].kind = ENGRAM_OP_ADD;
      ops[k].ns = ns;
      ops[k].content = content[k];
      ops[k].metadata = meta[k];
      ops[k].type = k % 2 ? ENGRAM_SEMANTIC : ENGRAM_EPISODIC;
      ops[k].importance = 0.5;
    }
    assert_int_equal(stu_write_ops(eg, ops, 16), 0);
  }
}

/* ------------------------------------------------------ the two sides */

static store *captured;
static char db[2048]; /* the conninfo of the test's schema */
static PGconn *pg;    /* the reference's connection */

static engram *open_capturing(void) {
  return scale_open_capturing(db, &captured);
}

typedef struct query {
  const char *ns;
  const char *text;
  unsigned types;
  size_t max_scored;
  double meta_weight;
} query;

static store_candidates_query make_query(const query *q) {
  return (store_candidates_query){.ns = q->ns,
                                  .text = q->text,
                                  .limit = LIMIT,
                                  .types = q->types,
                                  .window = 0,
                                  .max_scored = q->max_scored,
                                  .k1 = 0.6,
                                  .b = 0.3,
                                  .meta_weight = q->meta_weight};
}

/* The pruned side: the store's candidates, matches only, best first. */
static scale_hits pruned(engram *eg, const query *q) {
  store_candidates_query cq = make_query(q);
  return scale_pruned(eg, captured, &cq);
}

static char *words_of(const char *text) {
  char *words = NULL;
  size_t n = 0;
  assert_int_equal(pg_search_words(text, strlen(text), &words, &n), 0);
  return words;
}

static PGresult *exec(const char *sql, int n, const char *const *values) {
  PGresult *res = PQexecParams(pg, sql, n, NULL, values, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s", PQerrorMessage(pg));
  return res;
}

/* The reference: every match of the namespace scored, best first. */
static scale_hits unpruned(const query *q) {
  char mw[32], types[16];
  snprintf(mw, sizeof mw, "%.17g", q->meta_weight);
  snprintf(types, sizeof types, "%u", q->types);
  static const char sql[] = "WITH " PG_SCORE_CTES(
      "0.6", "0.3", "$4::float8") " SELECT id::text, s"
                                  " FROM score ORDER BY s DESC, id";
  char *words = words_of(q->text);
  const char *values[4] = {q->ns, words, types, mw};
  PGresult *res = exec(sql, 4, values);
  free(words);
  scale_hits h = {calloc((size_t)PQntuples(res) + 1, sizeof *h.v), 0};
  assert_non_null(h.v);
  for (int i = 0; i < PQntuples(res); i++) {
    snprintf(h.v[h.n].id, sizeof h.v[h.n].id, "%s", PQgetvalue(res, i, 0));
    h.v[h.n++].score = strtod(PQgetvalue(res, i, 1), NULL);
  }
  PQclear(res);
  return h;
}

/* The pruned matches are the reference's best LIMIT. */
static void compare_exact(engram *eg, const query *q) {
  scale_hits p = pruned(eg, q);
  scale_hits ref = unpruned(q);
  scale_check_exact(&p, &ref, LIMIT, q->text);
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
    "caf\xc3\xa9\xe2\x80\x94rare1 alpha",
    LONG_WORD " gamma",
    "meta row rare12",
    "zzqqxx nothinghere",
};
#define NQUERIES (sizeof queries / sizeof queries[0])

/* ------------------------------------------------ the lexical statement */

/* Runs the lexical step's statement as the store runs it; the caller
 * clears the result. */
static PGresult *run_terms(const char *ns, const char *text, size_t budget) {
  char b[24];
  snprintf(b, sizeof b, "%zu", budget);
  char *words = words_of(text);
  const char *values[6] = {ns, words, b, "1", "0", "40"};
  PGresult *res = exec(pg_terms_stmt()->sql, 6, values);
  free(words);
  return res;
}

static size_t rows_scored(const PGresult *res) {
  size_t n = 0;
  for (int i = 0; i < PQntuples(res); i++)
    n += *PQgetvalue(res, i, 0) == '1';
  return n;
}

static int scored_has(const PGresult *res, const char *id) {
  for (int i = 0; i < PQntuples(res); i++)
    if (*PQgetvalue(res, i, 0) == '1' && strcmp(PQgetvalue(res, i, 1), id) == 0)
      return 1;
  return 0;
}

/* ------------------------------------------------------------- the tests */

static char planted[ENGRAM_ID_LEN + 1];

static void sql(const char *text) {
  PGresult *res = PQexec(pg, text);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", text, PQerrorMessage(pg));
  PQclear(res);
}

/* PostgreSQL's statistics of the table, made or dropped (autovacuum is
 * off for it: nothing else makes them). */
static void analyze(void) {
  sql("ANALYZE memories");
}

static void drop_statistics(void) {
  sql("DELETE FROM pg_statistic WHERE starelid = 'memories'::regclass");
}

static int setup(void **state) {
  (void)state;
  snprintf(db, sizeof db, "%s", tu_db_path("pgcand"));
  pg = PQconnectdb(db);
  if (PQstatus(pg) != CONNECTION_OK)
    fail_msg("%s", PQerrorMessage(pg));
  PQclear(PQexec(pg, "SET client_min_messages = warning"));
  engram *eg = open_capturing();
  sql("ALTER TABLE memories SET (autovacuum_enabled = off)");
  assert_int_equal(tu_add_many(eg, NS, ROWS, make_memory, NULL), 0);
  add_metadata_rows(eg, NS);
  assert_int_equal(tu_add(eg, NS, "zyxplanted quuxhidden alpha beta gamma",
                          ENGRAM_EPISODIC, planted),
                   0);
  assert_int_equal(tu_add_many(eg, NS, 200, make_memory, (void *)2), 0);
  assert_int_equal(tu_add_many(eg, OTHER, 500, make_memory, (void *)1), 0);
  tu_close(eg);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  PQfinish(pg);
  return 0;
}

/* 1 when the lexical step scores every row that has a word of text (the
 * form ALL, every lexeme flagged as counted among the rows scored). */
static int scores_all(const char *ns, const char *text, size_t budget) {
  PGresult *res = run_terms(ns, text, budget);
  int all = 1;
  for (int i = 0; i < PQntuples(res); i++)
    if (*PQgetvalue(res, i, 0) == '0' && !strchr(PQgetvalue(res, i, 4), 'f'))
      all = 0;
  PQclear(res);
  return all;
}

/* Every query with no budget (the namespace is smaller: read whole) and,
 * where the words' rows fit, with a budget below the namespace's size
 * (read through the index): the reference's best, exactly. Returns how
 * many queries took the second way. */
static size_t exact_pass(engram *eg, const char *ns, size_t below) {
  size_t through_index = 0;
  for (size_t i = 0; i < NQUERIES; i++) {
    query q = {ns, queries[i], 0, NO_CAP, 1.0};
    compare_exact(eg, &q);
    q.meta_weight = 2.5;
    compare_exact(eg, &q);
    q.meta_weight = 1.0;
    q.types = 1u << ENGRAM_SEMANTIC;
    compare_exact(eg, &q);
    q.types = 0;
    q.max_scored = below;
    if (!scores_all(ns, q.text, below))
      continue;
    through_index++;
    compare_exact(eg, &q);
    q.meta_weight = 0.25;
    q.types = 1u << ENGRAM_EPISODIC;
    compare_exact(eg, &q);
  }
  return through_index;
}

/* Budgets that do not bind: exactly the unpruned best, before and after
 * ANALYZE (the statistics then spare the commonest words their counts). */
static void test_exact_without_budget(void **state) {
  (void)state;
  engram *eg = open_capturing();
  drop_statistics();
  assert_true(exact_pass(eg, NS, 2000) >= 5);
  analyze();
  assert_true(exact_pass(eg, NS, 2000) >= 5);
  query other = {OTHER, "rare7 alpha beta", 0, NO_CAP, 1.0};
  compare_exact(eg, &other);
  tu_close(eg);
}

/* A namespace alone in its table, with statistics: the words the
 * statistics know are not counted at all; where every row that has them
 * is scored, their counts are made from those rows. */
static void test_exact_alone(void **state) {
  (void)state;
  char saved[sizeof db];
  PGconn *saved_pg = pg;
  snprintf(saved, sizeof saved, "%s", db);
  snprintf(db, sizeof db, "%s", tu_db_path("pgcand-alone"));
  pg = PQconnectdb(db);
  if (PQstatus(pg) != CONNECTION_OK)
    fail_msg("%s", PQerrorMessage(pg));
  PQclear(PQexec(pg, "SET client_min_messages = warning"));
  engram *eg = open_capturing();
  assert_int_equal(tu_add_many(eg, NS, ROWS, make_memory, NULL), 0);
  add_metadata_rows(eg, NS);
  analyze();
  /* Below 3048 rows: the words the statistics know (alpha, beta, gamma,
   * mid*, filler...) go uncounted, and where they fit they are counted
   * among the rows scored. */
  assert_true(exact_pass(eg, NS, 3000) >= 8);
  tu_close(eg);
  PQfinish(pg);
  pg = saved_pg;
  snprintf(db, sizeof db, "%s", saved);
}

/* The rows of ns that match the tsquery q, newest first, the first n. */
static PGresult *newest_of(const char *ns, const char *q, size_t n) {
  char limit[24];
  snprintf(limit, sizeof limit, "%zu", n);
  const char *values[3] = {ns, q, limit};
  return exec("SELECT id::text FROM memories WHERE ns = $1 AND tsv @@ "
              "$2::tsquery ORDER BY id DESC LIMIT $3::bigint",
              3, values);
}

/* The rows the lexical step scores are the expected ones. */
static void check_scored_set(const PGresult *got, const PGresult *want) {
  assert_int_equal(rows_scored(got), PQntuples(want));
  for (int i = 0; i < PQntuples(want); i++)
    if (!scored_has(got, PQgetvalue(want, i, 0)))
      fail_msg("%s is not among the rows scored", PQgetvalue(want, i, 0));
}

static void tiny_budget_pass(engram *eg) {
  /* The planted memory: its rare words, among words in ~1300 rows. */
  query q = {NS, "alpha beta zyxplanted gamma quuxhidden", 0, 100, 1.0};
  scale_hits p = pruned(eg, &q);
  assert_true(p.n > 0);
  assert_string_equal(p.v[0].id, planted);
  free(p.v);
  PGresult *res = run_terms(NS, q.text, 100);
  assert_true(rows_scored(res) >= 1 && rows_scored(res) <= 100);
  assert_true(scored_has(res, planted));
  PQclear(res);
  /* Every query: at most 100 rows scored, each match a match. */
  for (size_t i = 0; i < NQUERIES; i++) {
    q.text = queries[i];
    res = run_terms(NS, q.text, 100);
    size_t n = rows_scored(res);
    PQclear(res);
    assert_true(n <= 100);
    p = pruned(eg, &q);
    scale_hits ref = unpruned(&q);
    for (size_t k = 0; k < p.n; k++)
      if (!scale_find(&ref, p.v[k].id))
        fail_msg("\"%s\": %s is not a match", q.text, p.v[k].id);
    assert_true(p.n <= LIMIT && (ref.n == 0) == (p.n == 0));
    free(p.v);
    free(ref.v);
  }
  /* A word in ~1300 rows alone: its newest 100 are scored. */
  res = run_terms(NS, "alpha", 100);
  PGresult *want = newest_of(NS, "alpha", 100);
  check_scored_set(res, want);
  PQclear(res);
  PQclear(want);
  /* Frequent words only (PAIR): the newest 100 rows of the rarest with
   * another of them. */
  res = run_terms(NS, "alpha gamma", 100);
  assert_int_equal(rows_scored(res), 100);
  PGresult *a = newest_of(NS, "alpha & gamma", 100);
  PGresult *g = newest_of(NS, "gamma & alpha", 100);
  assert_int_equal(PQntuples(a), 100);
  check_scored_set(res, a);
  PQclear(a);
  PQclear(g);
  PQclear(res);
  /* Each row's length is its number of positions. */
  char sql[8192];
  snprintf(sql, sizeof sql,
           "SELECT count(*), count(*) FILTER (WHERE x.c <> (SELECT"
           " greatest(sum(cardinality(u.positions)), 1) FROM unnest(m.tsv) u))"
           " FROM (%s) x JOIN memories m ON m.id = x.a::uuid"
           " WHERE x.kind = 1",
           pg_terms_stmt()->sql);
  static const char *const texts[] = {"rare7 alpha beta", "alpha",
                                      "meta row rare12", LONG_WORD};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    char *words = words_of(texts[i]);
    const char *values[6] = {NS, words, "100000", "1", "0", "40"};
    res = exec(sql, 6, values);
    free(words);
    assert_true(atoi(PQgetvalue(res, 0, 0)) > 0);
    assert_string_equal(PQgetvalue(res, 0, 1), "0");
    PQclear(res);
  }
}

/* A budget of 100: bounded work, the planted memory found; the newest
 * rows read through the bitmap (without statistics every word is counted,
 * to 101 rows: none looks common enough to walk for) and by the walk (with
 * them). */
static void test_tiny_budget(void **state) {
  (void)state;
  engram *eg = open_capturing();
  drop_statistics();
  tiny_budget_pass(eg);
  analyze();
  tiny_budget_pass(eg);
  tu_close(eg);
}

/* Text that is tsquery or SQL syntax stays words. */
static void test_hostile_text(void **state) {
  (void)state;
  engram *eg = open_capturing();
  static const char *const hostile[] = {
      "'alpha':* & !beta | (gamma <-> rare7)",
      "alpha:* beta:A rare12:*B",
      "!!alpha && ||| <2> <-> :* \\ \\\\ '' \"",
      "rare1' | 'rare2",
      "(rare1 OR rare2) AND NOT mid3; DROP TABLE memories; --",
      "$1 $$ E'\\x41' ::tsquery ::text[] {alpha,beta} [1]",
      "caf\xc3\xa9\xe2\x80\x94rare2 \xe2\x80\x94 \xe2\x80\x94"
      "alpha",
      "'' '''' rare9",
  };
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    query q = {NS, hostile[i], 0, NO_CAP, 1.0};
    compare_exact(eg, &q);
    q.max_scored = 100;
    scale_hits p = pruned(eg, &q);
    free(p.v);
  }
  /* Invalid UTF-8 never reaches the store. */
  engram_search_options o;
  engram_search_options_init(&o);
  engram_query eq = {.ns = NS,
                     .text = "alpha \xff\xfe rare7",
                     .strategy = ENGRAM_STRATEGY_HYBRID,
                     .options = &o};
  engram_stream *s = NULL;
  assert_int_equal(engram_search(eg, &eq, NULL, &s), ENGRAM_EUTF8);
  tu_close(eg);
}

/* Cancel at once, and after a few turns of the loop (the statements
 * running): one callback, ENGRAM_ECANCELED. */
static void test_cancel(void **state) {
  (void)state;
  engram *eg = open_capturing();
  query q = {NS, "alpha beta gamma rare7", 0, 2048, 1.0};
  for (int turns = 0; turns < 6; turns++) {
    store_candidates_query cq = make_query(&q);
    scale_cand_wait w = {0};
    store_candidates_req req = {.cb = scale_on_candidates, .data = &w};
    assert_int_equal(captured->ops->candidates(captured, &cq, &req), 0);
    for (int k = 0; k < turns && !w.calls; k++)
      uv_run(engram_loop(eg), UV_RUN_ONCE);
    int early = w.calls;
    captured->ops->candidates_cancel(captured, &req);
    captured->ops->candidates_cancel(captured, &req); /* idempotent */
    tu_run_until(eg, &w.calls);
    assert_int_equal(w.calls, 1);
    if (!early)
      assert_int_equal(w.status, ENGRAM_ECANCELED);
    store_candidates_free(w.set);
  }
  /* The connections are fine afterwards. */
  scale_hits p = pruned(eg, &q);
  assert_true(p.n > 0);
  free(p.v);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  if (!tu_backend_is_pg()) {
    printf("skipped: PostgreSQL's candidates need ENGRAM_TEST_BACKEND=pg\n");
    return TU_SKIP;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_without_budget),
      cmocka_unit_test(test_exact_alone),
      cmocka_unit_test(test_tiny_budget),
      cmocka_unit_test(test_hostile_text),
      cmocka_unit_test(test_cancel),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
