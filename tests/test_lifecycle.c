/*
 * test_lifecycle.c — the handle's life from engram_init to engram_free,
 * through the public API only (include/engram.h).
 *
 * What it pins down: a handle runs on its own loop or on the caller's (and
 * then leaves that loop with no handle of its own, so uv_loop_close
 * succeeds); an open that cannot succeed says so in its callback and names
 * the path; engram_close lets every queued write commit and call back
 * before the close callback, and cancels open streams (done with
 * ENGRAM_ECANCELED) before it completes; once closing, every call answers
 * ENGRAM_ECLOSED; a handle that was never opened frees cleanly. The test
 * binary runs under ASan and UBSan, so every path here is also a leak and
 * use-after-free check.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engram.h"

static char tmp_dir[512];

/* ----------------------------------------------------------- test kit */

static void make_dirs(const char *path) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0755);
      *p = '/';
    }
  }
  mkdir(buf, 0755);
}

static void remove_db(const char *db) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char path[600];
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, suffix[i]);
    unlink(path);
  }
}

/* A fresh database path for one test (files a failed run left removed). */
static void db_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/lifecycle-%s.db", tmp_dir, name);
  remove_db(out);
}

/* Runs the handle's loop one turn at a time until *flag is set. A loop
 * that runs dry first means a callback was lost: fail, do not spin. */
static void run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag) {
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !*flag)
      fail_msg("the loop ran dry before the awaited callback");
  }
}

typedef struct open_result {
  int done;
  int status;
  char message[1024];
} open_result;

static void on_open(engram *eg, int status, const char *message, void *data) {
  open_result *r = data;
  (void)eg;
  r->done++;
  r->status = status;
  assert_non_null(message);
  snprintf(r->message, sizeof r->message, "%s", message);
}

static void on_close_flag(engram *eg, void *data) {
  (void)eg;
  (*(int *)data)++;
}

static engram *open_db(const char *db, uv_loop_t *loop) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, loop, &opts), 0);
  open_result r = {0};
  assert_int_equal(engram_open(eg, on_open, &r), 0);
  run_until(engram_loop(eg), &r.done);
  if (r.status != 0)
    fail_msg("open %s: %s (%s)", db, engram_errname(r.status), r.message);
  return eg;
}

static void close_and_free(engram *eg) {
  int closed = 0;
  engram_close(eg, on_close_flag, &closed);
  run_until(engram_loop(eg), &closed);
  assert_int_equal(closed, 1);
  engram_free(eg);
}

typedef struct write_wait {
  int done;
  int status;
  char id[ENGRAM_ID_LEN + 1];
} write_wait;

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  write_wait *w = data;
  w->done++;
  w->status = status;
  if (n > 0)
    memcpy(w->id, ops[0].result_id, sizeof w->id);
}

/* Adds one memory and waits for its acknowledgement; returns its id. */
static void add_sync(engram *eg, const char *ns, const char *content,
                     char id[ENGRAM_ID_LEN + 1]) {
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = ns, .content = content};
  write_wait w = {0};
  assert_int_equal(engram_write(eg, &op, 1, on_written, &w), 0);
  run_until(engram_loop(eg), &w.done);
  assert_int_equal(w.status, 0);
  memcpy(id, w.id, ENGRAM_ID_LEN + 1);
}

typedef struct get_wait {
  int done;
  int status;
  char content[256];
} get_wait;

static void on_got(int status, const engram_node *node, void *data) {
  get_wait *g = data;
  g->done++;
  g->status = status;
  if (status == 0)
    snprintf(g->content, sizeof g->content, "%.*s", (int)node->content_len,
             node->content);
}

static void expect_content(engram *eg, const char *ns, const char *id,
                           const char *content) {
  get_wait g = {0};
  assert_int_equal(engram_get(eg, ns, id, on_got, &g), 0);
  run_until(engram_loop(eg), &g.done);
  assert_int_equal(g.status, 0);
  assert_string_equal(g.content, content);
}

/* ------------------------------------------------------- init and loops */

/* NULL loop: engram makes, runs and frees its own; engram_run returns once
 * the work chained from callbacks is over. */
typedef struct chain {
  int opened, written, got, closed;
  char id[ENGRAM_ID_LEN + 1];
} chain;

static void chain_closed(engram *eg, void *data) {
  (void)eg;
  ((chain *)data)->closed++;
}

static engram *chain_eg;

static void chain_got(int status, const engram_node *node, void *data) {
  chain *c = data;
  assert_int_equal(status, 0);
  assert_string_equal(node->content, "the sky was green on Tuesday");
  assert_string_equal(node->ns, "life");
  c->got++;
  engram_close(chain_eg, chain_closed, c);
}

static void chain_written(int status, engram_op *ops, size_t n, void *data) {
  chain *c = data;
  assert_int_equal(status, 0);
  assert_int_equal(n, 1);
  c->written++;
  memcpy(c->id, ops[0].result_id, sizeof c->id);
  assert_int_equal(engram_get(chain_eg, "life", c->id, chain_got, c), 0);
}

static void chain_opened(engram *eg, int status, const char *message,
                         void *data) {
  chain *c = data;
  if (status != 0)
    fail_msg("open: %s", message);
  c->opened++;
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = "life",
                  .content = "the sky was green on Tuesday"};
  assert_int_equal(engram_write(eg, &op, 1, chain_written, c), 0);
}

static void test_init_own_loop(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "own");
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &opts), 0);
  assert_non_null(eg);
  assert_non_null(engram_loop(eg));
  chain c = {0};
  chain_eg = eg;
  assert_int_equal(engram_open(eg, chain_opened, &c), 0);
  /* The whole program runs inside this one call and it returns. */
  assert_int_equal(engram_run(eg), 0);
  assert_int_equal(c.opened, 1);
  assert_int_equal(c.written, 1);
  assert_int_equal(c.got, 1);
  assert_int_equal(c.closed, 1);
  engram_free(eg);

  /* The data is in the file for a fresh handle. */
  eg = open_db(db, NULL);
  expect_content(eg, "life", c.id, "the sky was green on Tuesday");
  close_and_free(eg);
  remove_db(db);
}

static void on_caller_timer(uv_timer_t *t) {
  (*(int *)t->data)++;
}

/* The caller's loop: engram shares it with the caller's own handles and,
 * once closed and freed, leaves nothing of its own on it. */
static void test_init_caller_loop(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "caller");
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  int ticks = 0;
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &ticks;
  uv_timer_start(&timer, on_caller_timer, 1, 1);

  engram *eg = open_db(db, &loop);
  assert_ptr_equal(engram_loop(eg), &loop);
  char id[ENGRAM_ID_LEN + 1];
  add_sync(eg, "life", "caller loop memory", id);
  expect_content(eg, "life", id, "caller loop memory");

  int closed = 0;
  engram_close(eg, on_close_flag, &closed);
  run_until(&loop, &closed);
  engram_free(eg);

  uv_timer_stop(&timer);
  uv_close((uv_handle_t *)&timer, NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  /* UV_EBUSY here would mean engram left a handle open on our loop. */
  assert_int_equal(uv_loop_close(&loop), 0);
  remove_db(db);
}

/* --------------------------------------------------------- open failures */

static void expect_open_failure(const char *db) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &opts), 0);
  open_result r = {0};
  assert_int_equal(engram_open(eg, on_open, &r), 0);
  run_until(engram_loop(eg), &r.done);
  assert_int_equal(r.done, 1);
  assert_true(r.status < 0);
  /* The message names the file, or the directory that could not be made
   * for it. */
  char dir[600];
  snprintf(dir, sizeof dir, "%s", db);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  if (!strstr(r.message, db) && !strstr(r.message, dir))
    fail_msg("open of %s failed (%s) but the message does not name the "
             "path: \"%s\"",
             db, engram_errname(r.status), r.message);
  print_message("  open %s -> %s: %s\n", db, engram_errname(r.status),
                r.message);

  /* A handle whose open failed is not open: work is refused. */
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = "life", .content = "x"};
  assert_int_equal(engram_write(eg, &op, 1, on_written, NULL), ENGRAM_ECLOSED);
  int closed = 0;
  engram_close(eg, on_close_flag, &closed);
  run_until(engram_loop(eg), &closed);
  engram_free(eg);
}

static void test_open_directory(void **state) {
  (void)state;
  char dir[600];
  snprintf(dir, sizeof dir, "%s/lifecycle-a-directory", tmp_dir);
  make_dirs(dir);
  expect_open_failure(dir);
  rmdir(dir);
}

static void test_open_under_regular_file(void **state) {
  (void)state;
  char file[600], db[700];
  snprintf(file, sizeof file, "%s/lifecycle-plain-file", tmp_dir);
  int fd = open(file, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  assert_true(fd >= 0);
  close(fd);
  /* "nested/dir" can never be created: its parent is a regular file. */
  snprintf(db, sizeof db, "%s/nested/dir/engram.db", file);
  expect_open_failure(db);
  unlink(file);
}

/* ------------------------------------------------- close with writes queued */

enum { QUEUED_WRITES = 200 };

typedef struct queued {
  engram *eg;
  int order; /* callbacks seen so far, of any kind */
  int write_order[QUEUED_WRITES];
  int write_status[QUEUED_WRITES];
  int writes_done;
  int close_order;
  int closed;
  int late_write_rc; /* engram_write from inside a write callback */
  char ids[QUEUED_WRITES][3][ENGRAM_ID_LEN + 1];
  size_t nops[QUEUED_WRITES];
} queued;

static queued Q;

static void queued_written(int status, engram_op *ops, size_t n, void *data) {
  size_t i = (size_t)(uintptr_t)data;
  Q.write_order[i] = ++Q.order;
  Q.write_status[i] = status;
  Q.writes_done++;
  assert_int_equal(n, Q.nops[i]);
  for (size_t k = 0; k < n; k++)
    memcpy(Q.ids[i][k], ops[k].result_id, ENGRAM_ID_LEN + 1);
  if (Q.writes_done == 1) {
    engram_op op = {.kind = ENGRAM_OP_ADD, .ns = "q", .content = "too late"};
    Q.late_write_rc = engram_write(Q.eg, &op, 1, queued_written, NULL);
  }
}

static void queued_closed(engram *eg, void *data) {
  (void)eg;
  (void)data;
  Q.close_order = ++Q.order;
  Q.closed++;
}

static void queued_content(char *buf, size_t size, size_t i, size_t k) {
  snprintf(buf, size, "queued write %zu op %zu", i, k);
}

static void test_close_with_writes_queued(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "queued");
  memset(&Q, 0, sizeof Q);
  Q.eg = open_db(db, NULL);

  /* Queue every write without giving the loop a turn, then close at once:
   * none of them can have committed yet. */
  for (size_t i = 0; i < QUEUED_WRITES; i++) {
    engram_op ops[3];
    char content[3][64];
    Q.nops[i] = 1 + i % 3;
    memset(ops, 0, sizeof ops);
    for (size_t k = 0; k < Q.nops[i]; k++) {
      queued_content(content[k], sizeof content[k], i, k);
      ops[k].kind = ENGRAM_OP_ADD;
      ops[k].ns = "q";
      ops[k].content = content[k];
    }
    assert_int_equal(engram_write(Q.eg, ops, Q.nops[i], queued_written,
                                  (void *)(uintptr_t)i),
                     0);
  }
  engram_close(Q.eg, queued_closed, NULL);

  /* Closing: new work is refused at once. */
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = "q", .content = "refused"};
  assert_int_equal(engram_write(Q.eg, &op, 1, queued_written, NULL),
                   ENGRAM_ECLOSED);
  assert_int_equal(Q.writes_done, 0); /* no callback inside a start call */

  assert_int_equal(engram_run(Q.eg), 0);
  assert_int_equal(Q.closed, 1);
  assert_int_equal(Q.writes_done, QUEUED_WRITES);
  assert_int_equal(Q.late_write_rc, ENGRAM_ECLOSED);
  for (size_t i = 0; i < QUEUED_WRITES; i++) {
    assert_int_equal(Q.write_status[i], 0);
    if (Q.write_order[i] >= Q.close_order)
      fail_msg("write %zu called back after the close callback", i);
  }
  engram_free(Q.eg);

  /* Every acknowledged write is in the file. */
  engram *eg = open_db(db, NULL);
  for (size_t i = 0; i < QUEUED_WRITES; i++) {
    for (size_t k = 0; k < Q.nops[i]; k++) {
      char content[64];
      queued_content(content, sizeof content, i, k);
      expect_content(eg, "q", Q.ids[i][k], content);
    }
  }
  close_and_free(eg);
  remove_db(db);
}

/* -------------------------------------------------- close with open streams */

enum { STREAM_COUNT = 5 };

typedef struct streams {
  engram *eg;
  int order;
  int done_order[STREAM_COUNT];
  int done_status[STREAM_COUNT];
  int done_calls[STREAM_COUNT];
  uint64_t items[STREAM_COUNT];
  uint64_t streams_open_at_close;
  int close_order;
  int closed;
} streams;

static streams S;

static void s_item(engram_stream *s, const engram_node *node, void *data) {
  size_t i = (size_t)(uintptr_t)data;
  (void)node;
  S.items[i]++;
  /* Stream 3 keeps asking for one more, up to half the rows: at close it
   * is mid-production or paused, never at its end. */
  if (i == 3 && S.items[3] < 150)
    assert_int_equal(engram_stream_request(s, 1), 0);
}

static void s_done(engram_stream *s, int status, void *data) {
  size_t i = (size_t)(uintptr_t)data;
  (void)s;
  S.done_calls[i]++;
  S.done_status[i] = status;
  S.done_order[i] = ++S.order;
}

static void s_closed(engram *eg, void *data) {
  (void)data;
  engram_stats st;
  engram_get_stats(eg, &st);
  S.streams_open_at_close = st.streams_open;
  S.close_order = ++S.order;
  S.closed++;
}

static void test_close_with_open_streams(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "streams");
  memset(&S, 0, sizeof S);
  engram *eg = open_db(db, NULL);
  S.eg = eg;

  /* Enough rows for several chunks of the default 64. */
  enum { ROWS = 300 };
  for (size_t base = 0; base < ROWS; base += 50) {
    engram_op ops[50];
    char content[50][64];
    memset(ops, 0, sizeof ops);
    for (size_t k = 0; k < 50; k++) {
      snprintf(content[k], sizeof content[k], "stream row %zu about apples",
               base + k);
      ops[k].kind = ENGRAM_OP_ADD;
      ops[k].ns = "s";
      ops[k].content = content[k];
    }
    write_wait w = {0};
    assert_int_equal(engram_write(eg, ops, 50, on_written, &w), 0);
    run_until(engram_loop(eg), &w.done);
    assert_int_equal(w.status, 0);
  }

  engram_stream *st[STREAM_COUNT];
  engram_query list_q = {.ns = "s"};
  engram_query search_q = {.ns = "s", .text = "apples"};
  for (size_t i = 0; i < STREAM_COUNT; i++) {
    engram_stream_cbs cbs = {
        .item = s_item, .done = s_done, .data = (void *)(uintptr_t)i};
    if (i == 2)
      assert_int_equal(engram_search(eg, &search_q, &cbs, &st[i]), 0);
    else
      assert_int_equal(engram_list(eg, &list_q, &cbs, &st[i]), 0);
  }
  /* 0: never asked for anything. 1: asked for 2, paused. 2: a search that
   * asked for 2, paused. 3: asks one by one, busy. 4: asked for
   * 5 and cancelled by the consumer before close (cancel stays idempotent
   * when close cancels it again). */
  assert_int_equal(engram_stream_request(st[1], 2), 0);
  assert_int_equal(engram_stream_request(st[2], 2), 0);
  assert_int_equal(engram_stream_request(st[3], 1), 0);
  assert_int_equal(engram_stream_request(st[4], 5), 0);
  /* Let the paused streams fill their demand. */
  for (int turns = 0;
       turns < 10000 && (S.items[1] < 2 || S.items[2] < 2 || S.items[3] < 1);
       turns++)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_int_equal(S.items[1], 2);
  assert_int_equal(S.items[2], 2);
  engram_stream_cancel(st[4]);
  engram_stream_cancel(st[4]);

  engram_stats stats;
  engram_get_stats(eg, &stats);
  assert_int_equal(stats.streams_open, STREAM_COUNT);

  engram_close(eg, s_closed, NULL);
  /* done never runs inside the close call itself. */
  for (size_t i = 0; i < STREAM_COUNT; i++)
    assert_int_equal(S.done_calls[i], 0);

  /* Closing refuses new streams. */
  engram_stream *late = NULL;
  engram_stream_cbs cbs = {.item = s_item, .done = s_done};
  assert_int_equal(engram_list(eg, &list_q, &cbs, &late), ENGRAM_ECLOSED);
  assert_null(late);

  assert_int_equal(engram_run(eg), 0);
  assert_int_equal(S.closed, 1);
  assert_int_equal(S.streams_open_at_close, 0);
  for (size_t i = 0; i < STREAM_COUNT; i++) {
    assert_int_equal(S.done_calls[i], 1);
    if (S.done_status[i] != ENGRAM_ECANCELED)
      fail_msg("stream %zu ended with %s, expected ENGRAM_ECANCELED", i,
               engram_errname(S.done_status[i]));
    if (S.done_order[i] >= S.close_order)
      fail_msg("stream %zu's done ran after the close callback", i);
  }
  assert_int_equal(S.items[0], 0);
  assert_true(S.items[3] < ROWS);
  assert_true(S.items[4] <= 5);
  engram_free(eg);
  remove_db(db);
}

/* ------------------------------------------------------ calls after close */

static void never_called_get(int status, const engram_node *node, void *data) {
  (void)status;
  (void)node;
  (void)data;
  fail_msg("a refused call ran its callback");
}

static void never_called_history(int status, const engram_history_entry *e,
                                 size_t n, void *data) {
  (void)status;
  (void)e;
  (void)n;
  (void)data;
  fail_msg("a refused call ran its callback");
}

static void never_called_rels(int status, const engram_rel *r, size_t n,
                              void *data) {
  (void)status;
  (void)r;
  (void)n;
  (void)data;
  fail_msg("a refused call ran its callback");
}

static void never_called_write(int status, engram_op *ops, size_t n,
                               void *data) {
  (void)status;
  (void)ops;
  (void)n;
  (void)data;
  fail_msg("a refused call ran its callback");
}

static void never_called_open(engram *eg, int status, const char *message,
                              void *data) {
  (void)eg;
  (void)status;
  (void)message;
  (void)data;
  fail_msg("a refused call ran its callback");
}

static void never_item(engram_stream *s, const engram_node *n, void *data) {
  (void)s;
  (void)n;
  (void)data;
  fail_msg("a refused stream delivered an item");
}

static void never_done(engram_stream *s, int status, void *data) {
  (void)s;
  (void)status;
  (void)data;
  fail_msg("a refused stream called done");
}

static void expect_all_closed(engram *eg, const char *id) {
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = "life", .content = "late"};
  assert_int_equal(engram_write(eg, &op, 1, never_called_write, NULL),
                   ENGRAM_ECLOSED);
  assert_int_equal(engram_get(eg, "life", id, never_called_get, NULL),
                   ENGRAM_ECLOSED);
  assert_int_equal(engram_get(eg, NULL, id, never_called_get, NULL),
                   ENGRAM_ECLOSED);
  assert_int_equal(engram_history(eg, "life", id, never_called_history, NULL),
                   ENGRAM_ECLOSED);
  assert_int_equal(
      engram_relationships(eg, "life", id, never_called_rels, NULL),
      ENGRAM_ECLOSED);
  engram_stream_cbs cbs = {.item = never_item, .done = never_done};
  engram_stream *s = NULL;
  engram_query lq = {.ns = "life"};
  engram_query sq = {.ns = "life", .text = "late"};
  assert_int_equal(engram_list(eg, &lq, &cbs, &s), ENGRAM_ECLOSED);
  assert_int_equal(engram_search(eg, &sq, &cbs, &s), ENGRAM_ECLOSED);
  assert_int_equal(engram_traverse(eg, "life", id, 2, 0.0, &cbs, &s),
                   ENGRAM_ECLOSED);
  assert_null(s);
  assert_int_equal(engram_open(eg, never_called_open, NULL), ENGRAM_ECLOSED);
}

static void test_calls_after_close(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "after");
  engram *eg = open_db(db, NULL);
  char id[ENGRAM_ID_LEN + 1];
  add_sync(eg, "life", "before the close", id);

  int closed = 0;
  engram_close(eg, on_close_flag, &closed);
  expect_all_closed(eg, id); /* while closing */
  run_until(engram_loop(eg), &closed);
  assert_int_equal(closed, 1);
  expect_all_closed(eg, id);    /* closed */
  engram_close(eg, NULL, NULL); /* a second close is harmless */
  assert_int_equal(engram_run(eg), 0);
  assert_int_equal(closed, 1);
  engram_free(eg);
  remove_db(db);
}

/* ------------------------------------------------ handles never opened */

static void test_free_never_opened(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "never");
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;

  /* Own loop, straight to free. */
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &opts), 0);
  engram_free(eg);

  /* Default options, own loop: no I/O happens, so no ./data is made. */
  assert_int_equal(engram_init(&eg, NULL, NULL), 0);
  engram_free(eg);

  /* Caller's loop: free leaves the loop closable. */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(engram_init(&eg, &loop, &opts), 0);
  engram_free(eg);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);

  /* Closed without ever opening: the close callback still runs. */
  assert_int_equal(engram_init(&eg, NULL, &opts), 0);
  int closed = 0;
  engram_close(eg, on_close_flag, &closed);
  assert_int_equal(engram_run(eg), 0);
  assert_int_equal(closed, 1);
  expect_all_closed(eg, "0190a5e2-7b3c-7def-8123-456789abcdef");
  engram_free(eg);

  engram_free(NULL);
  assert_int_equal(engram_init(NULL, NULL, &opts), ENGRAM_EINVAL);
  /* Nothing was created on disk by handles that never opened. */
  assert_int_equal(access(db, F_OK), -1);
}

/* ------------------------------------------- close while the open runs */

typedef struct early {
  engram *eg;
  int order;
  int open_order, open_status;
  int close_order, close_calls;
  int second_close_calls;
  int write_rc;
  int write_done_order;
  int write_status;
  int list_rc;
  int list_done_order, list_done_status;
} early;

static void early_item(engram_stream *s, const engram_node *n, void *data) {
  (void)s;
  (void)n;
  (void)data;
}

static void early_list_done(engram_stream *s, int status, void *data) {
  early *e = data;
  (void)s;
  e->list_done_status = status;
  e->list_done_order = ++e->order;
}

static void early_second_closed(engram *eg, void *data) {
  early *e = data;
  (void)eg;
  e->second_close_calls++;
}

static void early_written(int status, engram_op *ops, size_t n, void *data) {
  early *e = data;
  (void)ops;
  (void)n;
  e->write_status = status;
  e->write_done_order = ++e->order;
}

static void early_opened(engram *eg, int status, const char *message,
                         void *data) {
  early *e = data;
  (void)message;
  e->open_status = status;
  e->open_order = ++e->order;
  /* The handle is closing: work started here must be refused, or else
   * complete before the close callback. */
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = "life", .content = "racing"};
  e->write_rc = engram_write(eg, &op, 1, early_written, e);
  engram_query q = {.ns = "life"};
  engram_stream_cbs cbs = {
      .item = early_item, .done = early_list_done, .data = e};
  engram_stream *s = NULL;
  e->list_rc = engram_list(eg, &q, &cbs, &s);
  if (e->list_rc == 0)
    engram_stream_request(s, 10);
  /* A program whose work was refused closes the handle: a close on top of
   * the close in progress must not take its callback away. */
  engram_close(eg, early_second_closed, e);
}

static void early_closed(engram *eg, void *data) {
  early *e = data;
  (void)eg;
  e->close_order = ++e->order;
  e->close_calls++;
}

static void test_close_while_opening(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "early");
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  early e = {0};
  assert_int_equal(engram_init(&e.eg, NULL, &opts), 0);
  assert_int_equal(engram_open(e.eg, early_opened, &e), 0);
  engram_close(e.eg, early_closed, &e);
  assert_int_equal(engram_run(e.eg), 0);
  assert_true(e.open_order > 0);
  if (e.close_calls != 1)
    fail_msg("the first engram_close's callback ran %d times (a second "
             "close from the open callback ran its own %d times)",
             e.close_calls, e.second_close_calls);
  assert_true(e.close_order > e.open_order);
  print_message("  open during close -> %s; in the open callback: write -> "
                "%s, list -> %s\n",
                engram_errname(e.open_status), engram_errname(e.write_rc),
                engram_errname(e.list_rc));
  if (e.list_rc == 0) {
    assert_true(e.list_done_order > 0);
    assert_true(e.list_done_order < e.close_order);
  } else {
    assert_int_equal(e.list_rc, ENGRAM_ECLOSED);
  }
  if (e.write_rc == 0) {
    assert_true(e.write_done_order > 0);
    assert_true(e.write_done_order < e.close_order);
  } else {
    assert_int_equal(e.write_rc, ENGRAM_ECLOSED);
  }
  expect_all_closed(e.eg, "0190a5e2-7b3c-7def-8123-456789abcdef");
  engram_free(e.eg);
  remove_db(db);
}

int main(void) {
  const char *base = getenv("ENGRAM_TEST_TMP");
  if (base && *base)
    snprintf(tmp_dir, sizeof tmp_dir, "%s", base);
  else
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/engram-test");
  make_dirs(tmp_dir);
  alarm(120); /* a lost callback hangs no CI job */

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_own_loop),
      cmocka_unit_test(test_init_caller_loop),
      cmocka_unit_test(test_open_directory),
      cmocka_unit_test(test_open_under_regular_file),
      cmocka_unit_test(test_close_with_writes_queued),
      cmocka_unit_test(test_close_with_open_streams),
      cmocka_unit_test(test_calls_after_close),
      cmocka_unit_test(test_free_never_opened),
      cmocka_unit_test(test_close_while_opening),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
