/*
 * test_pg_stream.c — the PostgreSQL backend's streams (search, list,
 * traverse over server-side cursors) and point reads, against a real
 * server, in the places where a network server differs from SQLite: a
 * FETCH running on the server when the consumer cancels or its deadline
 * passes, a table locked by another session, a server restarted under a
 * paused stream, a server that is gone, and search input full of tsquery
 * and FTS5 syntax. test_store and test_store_streams (run on PostgreSQL as
 * their _pg variants) cover the results and the stream contract in
 * general; this adds what only PostgreSQL has.
 *
 * The server comes from ENGRAM_TEST_PG (a conninfo or a file holding one);
 * unset or "off", everything is skipped with the reason printed. Each test
 * works in a schema of its own. The connection-loss test restarts and kills
 * a server, so it starts a private one with scripts/pgtest.sh rather than
 * disturb the tests running beside it. Blocking libpq calls here are the
 * test's own (holding a lock as another session would); the library never
 * blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "store_tu.h"
#include "testloop.h"
#include "tu.h"

#define NS "pgs"
#define OTHER "pgs-other"

static char pgtest[1024];      /* scripts/pgtest.sh */
static char private_dir[1024]; /* the loss test's own server */

/* ------------------------------------------------------------- helpers */

static void find_pgtest(void) {
  snprintf(pgtest, sizeof pgtest, "%s", __FILE__);
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(pgtest, '/');
    if (slash)
      *slash = '\0';
  }
  size_t n = strlen(pgtest);
  snprintf(pgtest + n, sizeof pgtest - n, "/scripts/pgtest.sh");
}

static int pgtest_run(const char *cmd, const char *dir) {
  char line[3000];
  snprintf(line, sizeof line, "bash '%s' %s '%s' >/dev/null 2>&1", pgtest, cmd,
           dir);
  return system(line);
}

static void quiet(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* A blocking session of the test's own on db (a tu_db_path() result). */
static PGconn *session(const char *db) {
  PGconn *pg = PQconnectdb(db);
  if (PQstatus(pg) != CONNECTION_OK)
    fail_msg("connecting to %s: %s", db, PQerrorMessage(pg));
  PQsetNoticeProcessor(pg, quiet, NULL);
  return pg;
}

static void session_exec(PGconn *pg, const char *sql) {
  PGresult *res = PQexec(pg, sql);
  ExecStatusType rs = PQresultStatus(res);
  if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(pg));
  PQclear(res);
}

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000u;
}

static engram *open_pg(const char *name, unsigned chunk_rows,
                       const char **db_out) {
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = chunk_rows;
  const char *db = tu_db_path(name);
  static char keep[2048];
  snprintf(keep, sizeof keep, "%s", db);
  if (db_out)
    *db_out = keep;
  return tu_open(keep, &o);
}

static const char *numbered(size_t i, void *arg) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s memory number %zu", (const char *)arg, i);
  return buf;
}

static int coll_done(void *arg) {
  return ((stu_coll *)arg)->done;
}

/* Starts a stream of kind k ('l' list, 's' search, 't' traverse) into c
 * without requesting anything. */
static void start(engram *eg, int k, const engram_query *q,
                  const char *start_id, stu_coll *c, size_t step) {
  stu_coll_init(c, eg, step);
  engram_stream_cbs cbs = stu_cbs(c);
  int rc = k == 'l'   ? engram_list(eg, q, &cbs, &c->s)
           : k == 's' ? engram_search(eg, q, &cbs, &c->s)
                      : engram_traverse(eg, NS, start_id, 5, 0, &cbs, &c->s);
  assert_int_equal(rc, 0);
}

static void request(stu_coll *c, size_t n) {
  c->requested += n;
  assert_int_equal(engram_stream_request(c->s, n), 0);
}

static void assert_quiet(engram *eg) {
  engram_stats s = stu_stats(eg);
  assert_int_equal(s.queries_running, 0);
  assert_int_equal(s.streams_open, 0);
}

/* -------------------------------------------------------------- demand */

/* Every kind, chunks of 3 rows, odd request sizes: never an item beyond
 * demand (the collector checks each one), everything once, in order. */
static void test_demand_small_chunks(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-demand", 3, NULL);
  assert_int_equal(tu_add_many(eg, NS, 25, numbered, "alpha"), 0);
  char hub[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(eg, NS, "hub alpha", ENGRAM_SEMANTIC, hub), 0);
  stu_coll all;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 100, &all), 0);
  assert_int_equal(all.n, 26);
  for (size_t i = 0; i + 1 < all.n; i++) {
    assert_true(strcmp(all.nodes[i]->id, all.nodes[i + 1]->id) < 0);
    if (strcmp(all.nodes[i]->id, hub) != 0)
      assert_int_equal(stu_link(eg, NS, hub, all.nodes[i]->id, "spoke", 1), 0);
  }

  size_t steps[] = {1, 2, 5, 7, 26, 1000};
  for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
    stu_coll c;
    assert_int_equal(stu_list(eg, &q, steps[k], &c), 0);
    assert_int_equal(c.n, 26);
    for (size_t i = 0; i < c.n; i++)
      assert_string_equal(c.nodes[i]->id, all.nodes[i]->id);
    stu_coll_free(&c);

    engram_query sq = {.ns = NS, .text = "alpha"};
    assert_int_equal(stu_search(eg, &sq, steps[k], &c), 0);
    assert_int_equal(c.n, 26);
    for (size_t i = 0; i < c.n; i++) {
      assert_true(c.nodes[i]->relevance > 0 && c.nodes[i]->relevance < 1);
      if (i > 0)
        assert_true(c.nodes[i]->relevance <= c.nodes[i - 1]->relevance);
    }
    stu_coll_free(&c);

    assert_int_equal(stu_traverse(eg, NS, hub, 3, 0, steps[k], &c), 0);
    assert_int_equal(c.n, 26);
    assert_string_equal(c.nodes[0]->id, hub);
    for (size_t i = 1; i < c.n; i++)
      assert_int_equal(c.nodes[i]->depth, 1);
    stu_coll_free(&c);
  }
  stu_coll_free(&all);
  assert_quiet(eg);
  tu_close(eg);
}

/* A paused stream keeps its connection and its cursor, and no thread: no
 * thread-pool task runs while it waits, and it resumes where it stopped. */
static void test_paused_holds_no_thread(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-pause", 4, NULL);
  assert_int_equal(tu_add_many(eg, NS, 30, numbered, "beta"), 0);
  for (int k = 0; k < 3; k++) {
    stu_coll c;
    engram_query q = {.ns = NS, .text = "beta"};
    start(eg, k == 0 ? 'l' : 's', &q, NULL, &c, 5);
    c.auto_request = 0;
    /* Nothing before the first request. */
    tl_run_for(engram_loop(eg), 30);
    assert_int_equal(c.received, 0);
    assert_int_equal(stu_stats(eg).queries_running, 0);
    request(&c, 5);
    tl_run_for(engram_loop(eg), 150);
    assert_int_equal(c.received, 5);
    assert_false(c.done);
    engram_stats s = stu_stats(eg);
    assert_int_equal(s.queries_running, 1);
    assert_int_equal(s.pool_tasks, 0);
    assert_int_equal(s.streams_open, 1);
    c.auto_request = 1;
    request(&c, 5);
    tu_run_until(eg, &c.done);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.n, 30);
    stu_coll_free(&c);
  }
  assert_quiet(eg);
  tu_close(eg);
}

/* ------------------------------------------------------------- cancel */

static void test_cancel_inside_item(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-cancel-item", 2, NULL);
  assert_int_equal(tu_add_many(eg, NS, 12, numbered, "gamma"), 0);
  const int kinds[] = {'l', 's'};
  for (size_t k = 0; k < 2; k++)
    for (size_t after = 1; after <= 5; after++) {
      stu_coll c;
      engram_query q = {.ns = NS, .text = "gamma"};
      start(eg, kinds[k], &q, NULL, &c, 3);
      c.cancel_after = after;
      stu_drain(&c);
      assert_int_equal(c.status, ENGRAM_ECANCELED);
      assert_int_equal(c.n, after);
      stu_coll_free(&c);
      assert_quiet(eg);
      /* The connection went back in the middle of a transaction: the
       * next stream on it starts clean. */
      assert_int_equal(stu_list(eg, &q, 50, &c), 0);
      assert_int_equal(c.n, 12);
      stu_coll_free(&c);
    }
  tu_close(eg);
}

/* Another session holds an exclusive lock: the stream's first exchange
 * waits on the server. Cancel and the deadline both reach the server
 * (the query is cancelled, not abandoned) and the stream ends at once. */
static void test_cancel_while_server_works(void **state) {
  (void)state;
  const char *db;
  engram *eg = open_pg("pgs-cancel-run", 8, &db);
  assert_int_equal(tu_add_many(eg, NS, 10, numbered, "delta"), 0);
  PGconn *locker = session(db);
  for (int round = 0; round < 4; round++) {
    session_exec(locker, "BEGIN");
    session_exec(locker, "LOCK TABLE memories IN ACCESS EXCLUSIVE MODE");
    stu_coll c;
    engram_query q = {.ns = NS, .text = "delta"};
    start(eg, round % 2 ? 's' : 'l', &q, NULL, &c, 10);
    if (round >= 2)
      assert_int_equal(engram_stream_set_deadline(c.s, 80), 0);
    request(&c, 10);
    tl_run_for(engram_loop(eg), 50);
    assert_int_equal(c.received, 0);
    assert_false(c.done);
    assert_int_equal(stu_stats(eg).queries_running, 1);
    uint64_t t0 = now_ms();
    if (round < 2)
      engram_stream_cancel(c.s);
    assert_true(tl_run_until(engram_loop(eg), coll_done, &c, 5000));
    uint64_t took = now_ms() - t0;
    printf("round %d: ended %s after %llu ms\n", round,
           engram_errname(c.status), (unsigned long long)took);
    assert_int_equal(c.status, round < 2 ? ENGRAM_ECANCELED : ENGRAM_ETIMEDOUT);
    assert_int_equal(c.n, 0);
    assert_true(took < 3000);
    assert_quiet(eg);
    stu_coll_free(&c);
    session_exec(locker, "ROLLBACK");
    /* The same connections serve the next streams. */
    assert_int_equal(stu_search(eg, &q, 4, &c), 0);
    assert_int_equal(c.n, 10);
    stu_coll_free(&c);
  }
  PQfinish(locker);
  assert_quiet(eg);
  tu_close(eg);
}

/* A real query that takes a while (ranking every hit of a common word)
 * cancelled as it runs, and deadlines racing the end of the data. */
static void test_slow_query_and_deadlines(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-slow", 500, NULL);
  assert_int_equal(tu_add_many(eg, NS, 4000, numbered, "epsilon"), 0);
  engram_query q = {.ns = NS, .text = "epsilon memory number"};
  stu_coll c;
  uint64_t t0 = now_ms();
  assert_int_equal(stu_search(eg, &q, 4000, &c), 0);
  uint64_t full = now_ms() - t0;
  assert_int_equal(c.n, 4000);
  stu_coll_free(&c);
  for (uint64_t after = 0; after < 6; after++) {
    start(eg, 's', &q, NULL, &c, 100);
    request(&c, 100);
    tl_run_for(engram_loop(eg), after);
    t0 = now_ms();
    if (!c.done)
      engram_stream_cancel(c.s);
    tu_run_until(eg, &c.done);
    printf("full search %llu ms; cancelled after %llu ms: done in %llu ms "
           "with %zu items (%s)\n",
           (unsigned long long)full, (unsigned long long)after,
           (unsigned long long)(now_ms() - t0), c.n, engram_errname(c.status));
    assert_true(c.status == ENGRAM_ECANCELED || c.status == 0);
    stu_coll_free(&c);
    assert_quiet(eg);
  }
  /* Deadlines racing the end of a small stream: either ending is fine,
   * with everything or with what came in time, and nothing left running. */
  assert_int_equal(tu_add_many(eg, OTHER, 40, numbered, "epsilon"), 0);
  int timed_out = 0, rounds = 0;
  for (uint64_t deadline = 1; deadline < 120; deadline += 4, rounds++) {
    engram_query lq = {.ns = OTHER, .text = "epsilon"};
    start(eg, deadline % 8 == 1 ? 'l' : 's', &lq, NULL, &c, 7);
    assert_int_equal(engram_stream_set_deadline(c.s, deadline), 0);
    request(&c, 7);
    tu_run_until(eg, &c.done);
    assert_true(c.status == 0 || c.status == ENGRAM_ETIMEDOUT);
    if (c.status == 0)
      assert_int_equal(c.n, 40);
    else
      timed_out++;
    stu_coll_free(&c);
    assert_quiet(eg);
  }
  printf("deadlines: %d of %d timed out\n", timed_out, rounds);
  tu_close(eg);
}

/* ----------------------------------------------------- connection loss */

static void stop_private_server(void) {
  if (!private_dir[0])
    return;
  pgtest_run("stop", private_dir);
  char line[1200];
  snprintf(line, sizeof line, "rm -rf '%s'", private_dir);
  if (system(line) != 0)
    printf("could not remove %s\n", private_dir);
  private_dir[0] = '\0';
}

static int teardown_private(void **state) {
  (void)state;
  stop_private_server();
  return 0;
}

typedef struct get_wait {
  int done, status;
} get_wait;

static void on_get(int status, const engram_node *node, void *data) {
  (void)node;
  get_wait *g = data;
  g->done = 1;
  g->status = status;
}

/* Runs one get; returns its status (the start's or the callback's). */
static int try_get(engram *eg, const char *id) {
  get_wait g = {0};
  int rc = engram_get(eg, NS, id, on_get, &g);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &g.done);
  return g.status;
}

static void test_connection_loss(void **state) {
  (void)state;
  const char *tmp = getenv("ENGRAM_TEST_TMP");
  snprintf(private_dir, sizeof private_dir, "%s/pgstream-%d",
           tmp && *tmp ? tmp : "/tmp", (int)getpid());
  if (pgtest_run("start", private_dir) != 0) {
    printf("skipped: cannot start a private server with %s\n", pgtest);
    private_dir[0] = '\0';
    skip();
  }
  char path[1200], conninfo[1024] = "";
  snprintf(path, sizeof path, "%s/conninfo", private_dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(conninfo, sizeof conninfo, f));
  fclose(f);
  conninfo[strcspn(conninfo, "\r\n")] = '\0';

  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 2;
  o.readers = 2;
  engram *eg = tu_open(conninfo, &o);
  assert_int_equal(tu_add_many(eg, NS, 10, numbered, "zeta"), 0);
  char id[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(eg, NS, "zeta the last one", ENGRAM_SEMANTIC, id), 0);

  /* A paused stream, then the server restarts under it. */
  const int kinds[] = {'l', 's'};
  for (int k = 0; k < 2; k++) {
    stu_coll c;
    engram_query q = {.ns = NS, .text = "zeta"};
    start(eg, kinds[k], &q, NULL, &c, 2);
    c.auto_request = 0;
    request(&c, 2);
    for (int i = 0; i < 100 && c.received < 2; i++)
      tl_run_for(engram_loop(eg), 50);
    tl_run_for(engram_loop(eg), 50);
    assert_int_equal(c.received, 2);
    assert_false(c.done);
    assert_int_equal(pgtest_run("restart", private_dir), 0);
    request(&c, 20);
    assert_true(tl_run_until(engram_loop(eg), coll_done, &c, 10000));
    assert_int_equal(c.status, ENGRAM_EIO);
    assert_int_equal(c.n, 2);
    stu_coll_free(&c);
    assert_quiet(eg);
    /* The pool notices the other broken connections and reconnects. */
    tl_run_for(engram_loop(eg), 300);
    assert_int_equal(stu_list(eg, &q, 3, &c), 0);
    assert_int_equal(c.n, 11);
    stu_coll_free(&c);
    assert_int_equal(try_get(eg, id), 0);
  }

  /* The server is gone: reads and streams fail with ENGRAM_EIO (at once,
   * once the pool knows), and recover when it is back. */
  assert_int_equal(pgtest_run("kill", private_dir), 0);
  int rc = 0;
  for (int i = 0; i < 100 && rc != ENGRAM_EIO; i++) {
    rc = try_get(eg, id);
    if (rc != ENGRAM_EIO)
      tl_run_for(engram_loop(eg), 50);
  }
  assert_int_equal(rc, ENGRAM_EIO);
  stu_coll c;
  engram_query q = {.ns = NS, .text = "zeta"};
  assert_int_equal(stu_search(eg, &q, 5, &c), ENGRAM_EIO);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  assert_quiet(eg);
  assert_int_equal(pgtest_run("start", private_dir), 0);
  rc = ENGRAM_EIO;
  for (int i = 0; i < 200 && rc != 0; i++) {
    tl_run_for(engram_loop(eg), 50);
    rc = try_get(eg, id);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(stu_search(eg, &q, 5, &c), 0);
  assert_int_equal(c.n, 11);
  stu_coll_free(&c);
  assert_quiet(eg);
  tu_close(eg);
}

/* ------------------------------------------------------ hostile input */

/* Words wrapped in every piece of tsquery, FTS5 and SQL syntax: never an
 * error, never an item error; the stored texts are found by searching
 * themselves. */
static void test_hostile_search(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-hostile", 16, NULL);
  static const char *const texts[] = {
      "it's a \"quoted\" 'word'",
      "alpha & beta | gamma",
      "!delta",
      "epsilon <-> zeta",
      "eta <2> theta",
      "iota:* kappa:A",
      "(lambda OR mu) AND NOT nu",
      "xi NEAR/3 omicron",
      "NEAR(pi rho, 2)",
      "sigma* ^tau",
      "upsilon -phi +chi",
      "psi\\omega back\\\\slash",
      "column:value title:x",
      "semi; DROP TABLE memories; --",
      "'); SELECT pg_sleep(10); --",
      "$1 $$dollar$$ quoting",
      "percent % and _under_score",
      "{curly} [square] <angle>",
      "émoji 😀 and ümlaut — dash",
      "tab\there\nnewline",
  };
  size_t n = sizeof texts / sizeof *texts;
  char ids[32][ENGRAM_ID_LEN + 1];
  for (size_t i = 0; i < n; i++)
    assert_int_equal(tu_add(eg, NS, texts[i], ENGRAM_SEMANTIC, ids[i]), 0);
  for (size_t i = 0; i < n; i++) {
    stu_coll c;
    engram_query q = {.ns = NS, .text = texts[i]};
    int rc = stu_search(eg, &q, 7, &c);
    if (rc != 0)
      fail_msg("search [%s]: %s", texts[i], engram_errname(rc));
    assert_int_equal(c.errors, 0);
    if (stu_find(&c, ids[i]) < 0)
      fail_msg("[%s] not found by searching it", texts[i]);
    for (size_t k = 0; k < c.n; k++)
      assert_true(c.nodes[k]->relevance >= 0 && c.nodes[k]->relevance < 1);
    stu_coll_free(&c);
  }
  /* Nothing but syntax: no word, an empty stream, no query at all. */
  static const char *const bare[] = {
      "",     " ",   "&", "|", "!", "<->", "<=>", ":*",   "()",
      "\"\"", "''",  "*", "^", "-", "+",   "\\",  "\\\\", "&&||!!",
      "(((",  ")))", ":", ";", "😀", "— –", "$",   "@#%",
  };
  for (size_t i = 0; i < sizeof bare / sizeof *bare; i++) {
    stu_coll c;
    engram_query q = {.ns = NS, .text = bare[i]};
    int rc = stu_search(eg, &q, 5, &c);
    if (rc != 0)
      fail_msg("search [%s]: %s", bare[i], engram_errname(rc));
    assert_int_equal(c.errors, 0);
    if (c.n != 0)
      fail_msg("search [%s] found %zu memories", bare[i], c.n);
    stu_coll_free(&c);
  }
  /* Stop words and operators only: the stop words are searched. */
  stu_coll c;
  engram_query q = {.ns = NS, .text = "AND OR NOT"};
  assert_int_equal(stu_search(eg, &q, 5, &c), 0);
  assert_true(stu_find(&c, ids[6]) >= 0);
  stu_coll_free(&c);
  assert_quiet(eg);
  tu_close(eg);
}

/* -------------------------------------------------------------- list */

/* ns NULL lists every namespace in one id order; the cursor pages without
 * repeating or skipping; types filter. */
static void test_list_pages(void **state) {
  (void)state;
  engram *eg = open_pg("pgs-list", 3, NULL);
  char ids[12][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 12; i++)
    assert_int_equal(tu_add(eg, i % 3 ? NS : OTHER, numbered((size_t)i, "eta"),
                            i % 2 ? ENGRAM_EPISODIC : ENGRAM_SEMANTIC, ids[i]),
                     0);
  stu_coll c;
  engram_query q = {0};
  assert_int_equal(stu_list(eg, &q, 5, &c), 0);
  assert_int_equal(c.n, 12);
  for (int i = 0; i < 12; i++)
    assert_string_equal(c.nodes[i]->id, ids[i]);
  stu_coll_free(&c);

  /* Pages of 3 in NS (the consumer cancels after its third item). */
  char after[ENGRAM_ID_LEN + 1] = "";
  size_t seen = 0;
  for (int page = 0; page < 10; page++) {
    engram_query pq = {.ns = NS, .after = after[0] ? after : NULL};
    stu_coll_init(&c, eg, 3);
    c.cancel_after = 3;
    engram_stream_cbs cbs = stu_cbs(&c);
    assert_int_equal(engram_list(eg, &pq, &cbs, &c.s), 0);
    stu_drain(&c);
    for (size_t i = 0; i < c.n; i++) {
      while (seen % 3 == 0)
        seen++; /* the ids of OTHER */
      assert_true(seen < 12);
      assert_string_equal(c.nodes[i]->ns, NS);
      assert_string_equal(c.nodes[i]->id, ids[seen]);
      seen++;
    }
    size_t got = c.n;
    if (got)
      snprintf(after, sizeof after, "%s", c.nodes[got - 1]->id);
    stu_coll_free(&c);
    if (got < 3)
      break;
  }
  assert_int_equal(seen, 12);

  q.ns = NS;
  q.types = 1u << ENGRAM_EPISODIC;
  assert_int_equal(stu_list(eg, &q, 2, &c), 0);
  for (size_t i = 0; i < c.n; i++)
    assert_int_equal(c.nodes[i]->type, ENGRAM_EPISODIC);
  assert_int_equal(c.n, 4); /* 1, 5, 7, 11 */
  stu_coll_free(&c);
  assert_quiet(eg);
  tu_close(eg);
}

int main(void) {
  find_pgtest();
  if (!getenv("ENGRAM_TEST_BACKEND"))
    setenv("ENGRAM_TEST_BACKEND", "pg", 1); /* PostgreSQL only */
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_demand_small_chunks),
      cmocka_unit_test(test_paused_holds_no_thread),
      cmocka_unit_test(test_cancel_inside_item),
      cmocka_unit_test(test_cancel_while_server_works),
      cmocka_unit_test(test_slow_query_and_deadlines),
      cmocka_unit_test(test_hostile_search),
      cmocka_unit_test(test_list_pages),
      cmocka_unit_test_teardown(test_connection_loss, teardown_private),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
