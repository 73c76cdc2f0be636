/*
 * test_liveness.c — the property engram exists for: with one thread in the
 * pool, 10,000 context injections in flight at once all complete, with the
 * right memories; and against a store slowed below the deadline, all of
 * them come back timed out with what arrived in time, and no query is left
 * running afterwards.
 *
 * On PostgreSQL (test_liveness_pg) the same 10,000 injections share a pool
 * of 8 reader connections, with one thread in the libuv pool still: the
 * network I/O runs on the loop, and a query waiting for a connection waits
 * in a queue on the loop, not on a thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tu.h"

/* Lexical: these tests are about streams, whose items arrive one by one
 * (a deadline keeps those that arrived); hybrid search ranks only once the
 * store has answered (tests/test_hybrid.c covers its cancellation). */
#define LIVE_STRATEGY ENGRAM_STRATEGY_LEXICAL
#define MEMORIES 10000
#define INJECTIONS 10000
#define MESSAGES 100
#define MAX_MEMORIES 10

/* A vocabulary of 1,600 made-up words (two syllables each): every word is
 * in about 40 of the 10,000 memories, so a two-word question matches on the
 * order of a hundred, as in a real memory of varied text. */
#define NWORDS 1600u
static const char *const syllables[40] = {
    "ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu",
    "na", "pe", "qui", "ro", "su", "ta", "ve", "wi", "xo", "zu",
    "bra", "cle", "dri", "flo", "gru", "pla", "sne", "tri", "vlo", "stu",
    "mar", "nel", "pir", "sol", "tur", "kan", "ler", "mis", "dor", "fen"};

static const char *word(size_t i, char buf[16]) {
  snprintf(buf, 16, "%s%s", syllables[i % 40], syllables[(i / 40) % 40]);
  return buf;
}

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static const char *memory_text(size_t i, void *arg) {
  static char buf[256];
  (void)arg;
  uint64_t r = mix(i);
  char w[16];
  int n = snprintf(buf, sizeof buf, "memory %zu:", i);
  for (int k = 0; k < 6; k++) {
    n += snprintf(buf + n, sizeof buf - (size_t)n, " %s",
                  word((r >> (k * 10)) % NWORDS, w));
  }
  return buf;
}

static char messages[MESSAGES][64];

static void make_messages(void) {
  for (size_t m = 0; m < MESSAGES; m++) {
    uint64_t r = mix(1000000 + m);
    char a[16], b[16];
    snprintf(messages[m], sizeof messages[m], "what about the %s and %s?",
             word(r % NWORDS, a), word((r >> 16) % NWORDS, b));
  }
}

typedef struct answer {
  size_t count;
  char ids[MAX_MEMORIES][ENGRAM_ID_LEN + 1];
} answer;

static answer reference[MESSAGES];

typedef struct run {
  int message;
  int done;
  int status;
  int timed_out;
  answer got;
} run;

static size_t finished;

static void on_context(const engram_context_result *r, void *data) {
  run *x = data;
  x->done++;
  x->status = r->status;
  x->timed_out = r->timed_out;
  x->got.count = r->count;
  for (size_t i = 0; i < r->count && i < MAX_MEMORIES; i++)
    memcpy(x->got.ids[i], r->ids[i], ENGRAM_ID_LEN + 1);
  finished++;
}

static const char *db_path;
static engram_options live_opts; /* PostgreSQL: 8 reader connections */

static int setup(void **state) {
  (void)state;
  make_messages();
  engram_options_init(&live_opts);
  if (tu_backend_is_pg())
    live_opts.readers = 8;
  db_path = strdup(tu_db_path("liveness"));
  engram *eg = tu_open(db_path, &live_opts);
  assert_int_equal(tu_add_many(eg, "live", MEMORIES, memory_text, NULL), 0);
  /* The reference answers, one at a time. */
  for (int m = 0; m < MESSAGES; m++) {
    run x = {.message = m};
    engram_context_options o = {.strategy = LIVE_STRATEGY,
                                .max_memories = MAX_MEMORIES,
                                .timeout_ms = 60000};
    assert_int_equal(engram_context_inject(eg, "live", messages[m], &o,
                                           on_context, &x, NULL), 0);
    tu_run_until(eg, &x.done);
    assert_int_equal(x.status, 0);
    assert_false(x.timed_out);
    assert_int_equal(x.got.count, MAX_MEMORIES); /* every word is common */
    reference[m] = x.got;
  }
  tu_close(eg);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  free((void *)db_path);
  return 0;
}

static void test_ten_thousand_on_one_thread(void **state) {
  (void)state;
  engram *eg = tu_open(db_path, &live_opts);
  run *runs = calloc(INJECTIONS, sizeof *runs);
  assert_non_null(runs);
  finished = 0;
  engram_context_options o = {.strategy = LIVE_STRATEGY,
                                .max_memories = MAX_MEMORIES,
                              .timeout_ms = 600000};
  uint64_t start = uv_hrtime();
  for (int i = 0; i < INJECTIONS; i++) {
    runs[i].message = i % MESSAGES;
    assert_int_equal(engram_context_inject(eg, "live",
                                           messages[runs[i].message], &o,
                                           on_context, &runs[i], NULL), 0);
  }
  engram_stats st;
  engram_get_stats(eg, &st);
  assert_int_equal(st.streams_open, INJECTIONS); /* all in flight at once */
  while (finished < INJECTIONS)
    assert_true(uv_run(engram_loop(eg), UV_RUN_ONCE) != 0 ||
                finished == INJECTIONS);
  for (int i = 0; i < INJECTIONS; i++) {
    const answer *want = &reference[runs[i].message];
    assert_int_equal(runs[i].done, 1);
    assert_int_equal(runs[i].status, 0);
    assert_false(runs[i].timed_out);
    assert_int_equal(runs[i].got.count, want->count);
    for (size_t k = 0; k < want->count; k++)
      assert_string_equal(runs[i].got.ids[k], want->ids[k]);
  }
  engram_get_stats(eg, &st);
  assert_int_equal(st.streams_open, 0);
  assert_int_equal(st.queries_running, 0);
  print_message("%d concurrent injections on one pool thread (%s): %.2f s\n",
                INJECTIONS,
                tu_backend_is_pg() ? "PostgreSQL, 8 connections" : "SQLite",
                (double)(uv_hrtime() - start) / 1e9);
  free(runs);
  tu_close(eg);
}

typedef struct slow_outcome {
  size_t partial; /* injections that returned some memories */
  size_t most;    /* the most memories one injection returned */
  double secs;
} slow_outcome;

/* 10,000 injections against the store slowed to delay_ms per item, with a
 * deadline of timeout_ms: every one must come back timed out (the store
 * needs 10 x delay_ms for a full answer), with the top of the right ranking
 * as far as it arrived, and leave nothing running. */
static slow_outcome run_slow(uint64_t delay_ms, uint64_t timeout_ms) {
  engram *eg = tu_open_delayed(db_path, &live_opts, delay_ms);
  run *runs = calloc(INJECTIONS, sizeof *runs);
  assert_non_null(runs);
  finished = 0;
  engram_context_options o = {.strategy = LIVE_STRATEGY,
                                .max_memories = MAX_MEMORIES,
                              .timeout_ms = timeout_ms};
  uint64_t start = uv_hrtime();
  for (int i = 0; i < INJECTIONS; i++) {
    runs[i].message = i % MESSAGES;
    assert_int_equal(engram_context_inject(eg, "live",
                                           messages[runs[i].message], &o,
                                           on_context, &runs[i], NULL), 0);
    /* The loop turns between chunks of starts: on a busy machine the
     * whole burst can outlast the first deadlines, and the first items
     * must be able to arrive meanwhile (each deadline counts from its own
     * injection's start). */
    if (i % 500 == 499)
      uv_run(engram_loop(eg), UV_RUN_NOWAIT);
  }
  while (finished < INJECTIONS)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  slow_outcome out = {0, 0, (double)(uv_hrtime() - start) / 1e9};
  for (int i = 0; i < INJECTIONS; i++) {
    const answer *want = &reference[runs[i].message];
    assert_int_equal(runs[i].done, 1);
    assert_int_equal(runs[i].status, 0);
    assert_true(runs[i].timed_out);
    assert_true(runs[i].got.count < MAX_MEMORIES);
    for (size_t k = 0; k < runs[i].got.count; k++)
      assert_string_equal(runs[i].got.ids[k], want->ids[k]);
    out.partial += runs[i].got.count > 0;
    if (runs[i].got.count > out.most)
      out.most = runs[i].got.count;
  }
  /* Cancelled, not abandoned: nothing is left running or open. */
  engram_stats st;
  engram_get_stats(eg, &st);
  assert_int_equal(st.queries_running, 0);
  assert_int_equal(st.streams_open, 0);
  free(runs);
  tu_close(eg);
  return out;
}

static void test_slow_store_returns_what_arrived(void **state) {
  (void)state;
  /* 1 s per item, deadline 2.5 s (a deadline counts from each start): the
   * injections whose query ran early get one or two memories, the rest
   * none; all are timed out. */
  slow_outcome o = run_slow(1000, 2500);
  print_message("slow store, deadline 2.5 s: %zu of %d returned partial "
                "results (at most %zu) in %.2f s\n",
                o.partial, INJECTIONS, o.most, o.secs);
  assert_true(o.partial > 0);
  assert_true(o.most <= 3);
}

static void test_deadline_shorter_than_delay(void **state) {
  (void)state;
  /* Deadline 50 ms, 300 ms per item: nothing can arrive in time; every
   * injection answers at its deadline, empty, marked timed out. */
  slow_outcome o = run_slow(300, 50);
  print_message("slow store, deadline 50 ms: all timed out in %.2f s\n",
                o.secs);
  assert_int_equal(o.partial, 0);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  /* One pool thread: set before libuv starts its pool. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ten_thousand_on_one_thread),
      cmocka_unit_test(test_slow_store_returns_what_arrived),
      cmocka_unit_test(test_deadline_shorter_than_delay),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
