/*
 * test_store_streams.c — the stream contract (src/rt/stream.h, design.md)
 * kept by the store's own streams, list, search and traverse, on the
 * backend under test (test_store_streams on SQLite, test_store_streams_pg
 * on PostgreSQL): test_stream.c proves the runtime with a fake producer;
 * this proves that a real producer, with its chunks on the thread pool or
 * its cursors on a server, feeds the runtime correctly.
 *
 * Every consumer here is a probe that checks, on every callback: no item
 * beyond what was requested, none after the probe cancelled, each item
 * once, done exactly once and never inside a request, cancel or deadline
 * call. The cases: tiny chunks (1, 2, 3 rows) with odd request sizes;
 * nothing produced before the first request; cancel from inside an item
 * callback and from inside an error callback (a row another program wrote
 * that engram cannot decode); cancel while a chunk runs; deadlines racing
 * the end of data; a paused stream that holds no thread and resumes where
 * it stopped. After each, no query is running and no stream is open.
 */
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_tu.h"
#include "testloop.h"
#include "tu.h"

#define NS "streams"
#define MEMORIES 40 /* all hold "stream word" */
#define SPOKES 29   /* memories 1..SPOKES linked from memory 0 */
#define MAXN 64

enum kind { LIST, SEARCH, TRAVERSE };
static const char *const kind_name[] = {"list", "search", "traverse"};
static const size_t kind_total[] = {MEMORIES, MEMORIES, SPOKES + 1};

typedef struct sample {
  engram *eg;
  char path[1536];
  char ids[MEMORIES][ENGRAM_ID_LEN + 1];
} sample;

static const char *stream_text(size_t i, void *arg) {
  static char buf[64];
  (void)arg;
  snprintf(buf, sizeof buf, "stream word number %zu", i);
  return buf;
}

/* MEMORIES memories in NS, memory 0 linked to 1..SPOKES. */
static void db_fill(sample *d) {
  for (size_t i = 0; i < MEMORIES; i++)
    assert_int_equal(
        tu_add(d->eg, NS, stream_text(i, NULL), ENGRAM_EPISODIC, d->ids[i]), 0);
  for (size_t i = 1; i <= SPOKES; i++)
    assert_int_equal(stu_link(d->eg, NS, d->ids[0], d->ids[i], "spoke", 1.0),
                     0);
}

static void db_open(sample *d, const char *name, unsigned chunk_rows,
                    unsigned readers) {
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = chunk_rows;
  o.readers = readers;
  snprintf(d->path, sizeof d->path, "%s", tu_db_path(name));
  d->eg = tu_open(d->path, &o);
  db_fill(d);
}

static void assert_idle(engram *eg) {
  engram_stats st;
  engram_get_stats(eg, &st);
  assert_int_equal(st.queries_running, 0);
  assert_int_equal(st.streams_open, 0);
}

/* ----------------------------------------------------------------- probe */

typedef struct probe {
  engram *eg;
  engram_stream *s;
  size_t step;      /* asks for step more when the last ask is served; 0: no */
  size_t cancel_at; /* cancels inside the item callback of this item */
  int cancel_on_error;
  size_t requested, received, errors;
  int cancelled; /* the probe called cancel: nothing may arrive after it */
  int in_call;   /* inside engram_stream_request/cancel/set_deadline */
  int done, status;
  char ids[MAXN][ENGRAM_ID_LEN + 1];
  double relevance[MAXN];
  uint32_t depth[MAXN];
} probe;

static void probe_request(probe *p, size_t n) {
  p->requested += n;
  p->in_call++;
  assert_int_equal(engram_stream_request(p->s, n), 0);
  p->in_call--;
}

static void probe_cancel(probe *p) {
  p->in_call++;
  engram_stream_cancel(p->s);
  engram_stream_cancel(p->s); /* idempotent */
  p->in_call--;
  assert_false(p->done); /* done follows later, never inside cancel */
  p->cancelled = 1;
}

static void probe_deadline(probe *p, uint64_t ms) {
  p->in_call++;
  assert_int_equal(engram_stream_set_deadline(p->s, ms), 0);
  p->in_call--;
}

static void probe_item(engram_stream *s, const engram_node *node, void *data) {
  probe *p = data;
  assert_ptr_equal(s, p->s);
  assert_false(p->done);
  assert_false(p->cancelled);
  p->received++;
  assert_true(p->received <= p->requested); /* never beyond demand */
  assert_true(p->received <= MAXN);
  size_t k = p->received - 1;
  for (size_t i = 0; i < k; i++)
    assert_string_not_equal(p->ids[i], node->id); /* each item once */
  memcpy(p->ids[k], node->id, ENGRAM_ID_LEN + 1);
  p->relevance[k] = node->relevance;
  p->depth[k] = node->depth;
  if (p->cancel_at && p->received == p->cancel_at) {
    probe_cancel(p);
    return;
  }
  if (p->step && p->received == p->requested)
    probe_request(p, p->step);
}

static void probe_error(engram_stream *s, int code, const char *message,
                        void *data) {
  probe *p = data;
  assert_ptr_equal(s, p->s);
  assert_false(p->done);
  assert_false(p->cancelled);
  assert_int_not_equal(code, 0);
  assert_true(strlen(message) > 0);
  p->errors++;
  if (p->cancel_on_error)
    probe_cancel(p);
}

static void probe_done(engram_stream *s, int status, void *data) {
  probe *p = data;
  assert_ptr_equal(s, p->s);
  assert_false(p->done); /* exactly once */
  assert_int_equal(p->in_call, 0);
  p->done = 1;
  p->status = status;
}

/* Starts a stream of kind on d (nothing requested yet). */
static void probe_start(probe *p, sample *d, enum kind kind, size_t step) {
  memset(p, 0, sizeof *p);
  p->eg = d->eg;
  p->step = step;
  engram_stream_cbs cbs = {probe_item, probe_error, probe_done, p};
  engram_query q = {.ns = NS, .text = "stream word"};
  int rc = kind == LIST     ? engram_list(d->eg, &q, &cbs, &p->s)
           : kind == SEARCH ? engram_search(d->eg, &q, &cbs, &p->s)
                            : engram_traverse(d->eg, NS, d->ids[0], 1, 0.0,
                                              &cbs, &p->s);
  assert_int_equal(rc, 0);
  assert_non_null(p->s);
}

static void probe_wait(probe *p) {
  tu_run_until(p->eg, &p->done);
  assert_true(p->done);
}

/* What a complete stream of kind must have delivered, in its order. */
static void assert_complete(const probe *p, const sample *d, enum kind kind) {
  assert_int_equal(p->status, 0);
  assert_int_equal(p->errors, 0);
  assert_int_equal(p->received, kind_total[kind]);
  if (kind == LIST) {
    for (size_t i = 0; i < p->received; i++)
      assert_string_equal(p->ids[i], d->ids[i]); /* id (creation) order */
  } else if (kind == SEARCH) {
    for (size_t i = 1; i < p->received; i++)
      assert_true(p->relevance[i] <= p->relevance[i - 1]);
  } else {
    assert_string_equal(p->ids[0], d->ids[0]);
    assert_int_equal(p->depth[0], 0);
    for (size_t i = 1; i < p->received; i++)
      assert_int_equal(p->depth[i], 1);
  }
}

/* ------------------------------------------------------------------ cases */

/* Chunks of 1, 2 and 3 rows, asked for 1, 2, 5 or 7 at a time: never more
 * than asked, every item once, in order, and the same whole as one big
 * request. */
static void test_tiny_chunks_never_exceed_demand(void **state) {
  (void)state;
  static const unsigned chunks[] = {1, 2, 3};
  static const size_t steps[] = {1, 2, 5, 7};
  for (size_t c = 0; c < 3; c++) {
    sample d;
    db_open(&d, "tiny-chunks", chunks[c], 2);
    for (int kind = LIST; kind <= TRAVERSE; kind++) {
      for (size_t k = 0; k < 4; k++) {
        probe p;
        probe_start(&p, &d, (enum kind)kind, steps[k]);
        probe_request(&p, steps[k]);
        probe_wait(&p);
        assert_complete(&p, &d, (enum kind)kind);
      }
      probe big;
      probe_start(&big, &d, (enum kind)kind, 0);
      probe_request(&big, 1000);
      probe_wait(&big);
      assert_complete(&big, &d, (enum kind)kind);
    }
    assert_idle(d.eg);
    tu_close(d.eg);
  }
}

/* A stream that was never asked produces nothing and runs no query; asked
 * then, it delivers everything and ends with 0. */
static void test_nothing_before_the_first_request(void **state) {
  (void)state;
  sample d;
  db_open(&d, "no-request", 2, 2);
  for (int kind = LIST; kind <= TRAVERSE; kind++) {
    probe p;
    probe_start(&p, &d, (enum kind)kind, 0);
    tl_run_for(engram_loop(d.eg), 50);
    assert_int_equal(p.received, 0);
    assert_false(p.done);
    assert_int_equal(stu_stats(d.eg).queries_running, 0);
    probe_request(&p, kind_total[kind] + 1);
    probe_wait(&p);
    assert_complete(&p, &d, (enum kind)kind);
  }
  assert_idle(d.eg);
  tu_close(d.eg);
}

/* Cancelled from inside an item callback, at the first item, at a chunk's
 * end and inside a chunk: ECANCELED with exactly the items until then. */
static void test_cancel_inside_item_callback(void **state) {
  (void)state;
  sample d;
  db_open(&d, "cancel-item", 3, 2);
  static const size_t at[] = {1, 3, 4, 17};
  for (int kind = LIST; kind <= TRAVERSE; kind++) {
    for (size_t i = 0; i < 4; i++) {
      probe p;
      probe_start(&p, &d, (enum kind)kind, 2);
      p.cancel_at = at[i];
      probe_request(&p, 2);
      probe_wait(&p);
      if (p.status != ENGRAM_ECANCELED)
        fail_msg("%s cancelled at item %zu ended with %s", kind_name[kind],
                 at[i], engram_errname(p.status));
      assert_int_equal(p.received, at[i]);
      assert_idle(d.eg);
    }
  }
  /* The readers are fit for the next stream. */
  probe p;
  probe_start(&p, &d, LIST, 0);
  probe_request(&p, 100);
  probe_wait(&p);
  assert_complete(&p, &d, LIST);
  tu_close(d.eg);
}

/* Writes a row engram cannot decode (a type it does not know) with the id
 * given, as another program would: with SQLite's library on the file, with
 * SQL on PostgreSQL. */
static void write_undecodable_row(const char *path, const char *id) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO memories(id, ns, type, content, content_hash, "
           "created_ms, updated_ms, accessed_ms, importance) VALUES "
           "('%s', '%s', 9, 'stream word undecodable', 0, 0, 0, 0, 0.5)",
           id, NS);
  if (tu_backend_is_pg()) {
    tu_pg_exec(path, sql);
    return;
  }
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* A bad row in the middle of a list: the error callback cancels, and the
 * stream ends there, with the items before it; without the cancel the
 * stream goes on past it. */
static void test_cancel_inside_error_callback(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 4;
  o.readers = 2;
  char path[1536];
  snprintf(path, sizeof path, "%s", tu_db_path("cancel-error"));
  engram *eg = tu_open(path, &o);
  assert_int_equal(tu_add_many(eg, NS, 10, stream_text, NULL), 0);
  /* Ids are time-ordered: made apart from the others' milliseconds, it
   * lists after the first 10 and before the last 10. */
  char bad[ENGRAM_ID_LEN + 1];
  usleep(2000);
  engram_id_new(bad);
  usleep(2000);
  assert_int_equal(tu_add_many(eg, NS, 10, stream_text, NULL), 0);
  tu_close(eg);
  write_undecodable_row(path, bad);
  eg = tu_open(path, &o);
  sample d = {.eg = eg};

  probe p;
  probe_start(&p, &d, LIST, 3);
  p.cancel_on_error = 1;
  probe_request(&p, 3);
  probe_wait(&p);
  assert_int_equal(p.status, ENGRAM_ECANCELED);
  assert_int_equal(p.errors, 1);
  assert_int_equal(p.received, 10);
  assert_idle(eg);

  probe_start(&p, &d, LIST, 3);
  probe_request(&p, 3);
  probe_wait(&p);
  assert_int_equal(p.status, 0);
  assert_int_equal(p.errors, 1);
  assert_int_equal(p.received, 20);
  assert_idle(eg);
  tu_close(eg);
}

static void cancel_later(void *data) {
  probe *p = data;
  if (!p->done && !p->cancelled)
    probe_cancel(p);
}

/* Cancelled right after the request (the first chunk or query is out) and
 * a few milliseconds later: ECANCELED, never beyond demand, nothing left
 * running, and the readers work afterwards. */
static void test_cancel_while_a_chunk_runs(void **state) {
  (void)state;
  sample d;
  db_open(&d, "cancel-chunk", 2, 2);
  for (int kind = LIST; kind <= TRAVERSE; kind++) {
    for (int round = 0; round < 20; round++) {
      probe p;
      probe_start(&p, &d, (enum kind)kind, 0);
      probe_request(&p, 50);
      if (round % 2 == 0)
        probe_cancel(&p);
      else
        tl_after(engram_loop(d.eg), (uint64_t)(round % 4), cancel_later, &p);
      probe_wait(&p);
      /* A cancel that lost the race to the end of data ends with 0, and
       * then with everything. */
      assert_true(p.status == ENGRAM_ECANCELED || p.status == 0);
      if (p.status == 0)
        assert_int_equal(p.received, kind_total[kind]);
      if (round % 2 == 0)
        assert_int_equal(p.received, 0);
      assert_idle(d.eg);
      /* A timer that did not fire yet must not fire on a dead probe. */
      tl_run_for(engram_loop(d.eg), 5);
    }
    probe p;
    probe_start(&p, &d, (enum kind)kind, 4);
    probe_request(&p, 4);
    probe_wait(&p);
    assert_complete(&p, &d, (enum kind)kind);
  }
  tu_close(d.eg);
}

/* Many streams with deadlines from 0 to 90 ms racing their end (some with
 * none, some far away): each ends exactly once, with 0 and everything, or
 * ETIMEDOUT and what arrived before, in order; none is left running. */
static void test_deadline_races_completion(void **state) {
  (void)state;
  sample d;
  db_open(&d, "deadline-race", 3, 2);
  enum { N = 60 };
  probe *ps = calloc(N, sizeof *ps);
  assert_non_null(ps);
  for (int round = 0; round < 2; round++) {
    for (size_t i = 0; i < N; i++) {
      enum kind kind = (enum kind)(i % 3);
      probe_start(&ps[i], &d, kind, 1 + i % 5);
      probe_request(&ps[i], 1 + i % 5);
      if (i % 10 == 9)
        probe_deadline(&ps[i], 60000); /* far away: must not matter */
      else if (i % 10 != 0)
        probe_deadline(&ps[i], 3 * ((i * 7 + (size_t)round) % 31));
    }
    size_t ended = 0, timed_out = 0;
    while (ended < N) {
      ended = 0;
      for (size_t i = 0; i < N; i++)
        ended += (size_t)ps[i].done;
      if (ended < N)
        uv_run(engram_loop(d.eg), UV_RUN_ONCE);
    }
    for (size_t i = 0; i < N; i++) {
      enum kind kind = (enum kind)(i % 3);
      if (ps[i].status == 0) {
        assert_complete(&ps[i], &d, kind);
      } else {
        if (ps[i].status != ENGRAM_ETIMEDOUT)
          fail_msg("stream %zu (%s) ended with %s", i, kind_name[kind],
                   engram_errname(ps[i].status));
        assert_true(i % 10 != 0 && i % 10 != 9);
        assert_true(ps[i].received <= kind_total[kind]);
        if (kind == LIST)
          for (size_t k = 0; k < ps[i].received; k++)
            assert_string_equal(ps[i].ids[k], d.ids[k]);
        timed_out++;
      }
    }
    print_message("deadline race %d: %zu of %d timed out\n", round, timed_out,
                  N);
    assert_idle(d.eg);
  }
  free(ps);
  tu_close(d.eg);
}

/* A paused stream (its demand served) gets nothing more and ends not; the
 * one pool thread is free meanwhile (a point read completes on it), and a
 * new request resumes where it stopped. A deadline ends a paused stream
 * with ETIMEDOUT and the items it had. */
static void test_paused_stream(void **state) {
  (void)state;
  sample d;
  db_open(&d, "paused", 2, 2);
  for (int kind = LIST; kind <= TRAVERSE; kind++) {
    probe p;
    probe_start(&p, &d, (enum kind)kind, 0);
    probe_request(&p, 3);
    while (p.received < 3)
      uv_run(engram_loop(d.eg), UV_RUN_ONCE);
    tl_run_for(engram_loop(d.eg), 50);
    assert_int_equal(p.received, 3);
    assert_false(p.done);
    /* No thread is held: a get runs meanwhile (one pool thread, see main). */
    engram_node *n = NULL;
    assert_int_equal(stu_get_node(d.eg, NS, d.ids[5], &n), 0);
    assert_string_equal(n->content, stream_text(5, NULL));
    engram_node_free(n);
    p.step = 4;
    probe_request(&p, 4);
    probe_wait(&p);
    assert_complete(&p, &d, (enum kind)kind);

    probe_start(&p, &d, (enum kind)kind, 0);
    probe_request(&p, 2);
    while (p.received < 2)
      uv_run(engram_loop(d.eg), UV_RUN_ONCE);
    probe_deadline(&p, 20);
    probe_wait(&p);
    assert_int_equal(p.status, ENGRAM_ETIMEDOUT);
    assert_int_equal(p.received, 2);
    assert_idle(d.eg);
  }
  tu_close(d.eg);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  /* One pool thread: a stream that held a thread while paused would stall
   * every other query. Set before libuv starts its pool. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_chunks_never_exceed_demand),
      cmocka_unit_test(test_nothing_before_the_first_request),
      cmocka_unit_test(test_cancel_inside_item_callback),
      cmocka_unit_test(test_cancel_inside_error_callback),
      cmocka_unit_test(test_cancel_while_a_chunk_runs),
      cmocka_unit_test(test_deadline_races_completion),
      cmocka_unit_test(test_paused_stream),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
