/*
 * test_pg_conn.c — the core of the PostgreSQL backend against a real
 * server: opening and closing, migrations (idempotent, concurrent, a newer
 * version refused, another program's tables left alone), a server that is
 * down or a connection string that is wrong, and, through the internal
 * header, the pool and the exchange: pipelined results in order, prepared
 * statements, cancel, rollback of a connection released in a transaction,
 * FIFO waiters, and connection loss followed by reconnection.
 *
 * The server comes from ENGRAM_TEST_PG (a conninfo, or a file holding one,
 * as scripts/pgtest.sh writes DIR/conninfo); unset or "off", everything is
 * skipped. Each test works in a schema of its own. The loss test restarts
 * and stops a server, so it starts a private one with scripts/pgtest.sh
 * rather than disturb tests running beside it. Blocking libpq calls here
 * are the test's own (setting up schemas, tampering with engram_schema);
 * the library never blocks.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "engram_internal.h"
#include "store/pg/pg_internal.h"

static char base_conninfo[1024];
static char pgtest[1024];      /* scripts/pgtest.sh */
static char private_dir[1024]; /* the loss test's own server */

/* ------------------------------------------------------------- helpers */

static void load_setting(void) {
  const char *env = getenv("ENGRAM_TEST_PG");
  if (!env || !*env || strcmp(env, "off") == 0)
    return;
  struct stat sb;
  if (stat(env, &sb) == 0 && S_ISREG(sb.st_mode)) {
    FILE *f = fopen(env, "r");
    size_t n = f ? fread(base_conninfo, 1, sizeof base_conninfo - 1, f) : 0;
    if (f)
      fclose(f);
    base_conninfo[n] = '\0';
    base_conninfo[strcspn(base_conninfo, "\r\n")] = '\0';
  } else {
    snprintf(base_conninfo, sizeof base_conninfo, "%s", env);
  }
  snprintf(pgtest, sizeof pgtest, "%s", __FILE__);
  char *tests = strrchr(pgtest, '/');
  if (tests) {
    *tests = '\0';
    tests = strrchr(pgtest, '/');
  }
  if (tests)
    snprintf(tests, sizeof pgtest - (size_t)(tests - pgtest),
             "/scripts/pgtest.sh");
}

static int pgtest_run(const char *cmd, const char *dir) {
  char line[3000];
  snprintf(line, sizeof line, "bash '%s' %s '%s' >/dev/null 2>&1", pgtest, cmd,
           dir);
  return system(line);
}

/* Blocking SQL on the test's own connection. */
static void quiet(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static void admin_sql(const char *fmt, ...) {
  char sql[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGconn *pg = PQconnectdb(base_conninfo);
  assert_int_equal(PQstatus(pg), CONNECTION_OK);
  PQsetNoticeProcessor(pg, quiet, NULL);
  PGresult *res = PQexec(pg, sql);
  ExecStatusType rs = PQresultStatus(res);
  if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(pg));
  PQclear(res);
  PQfinish(pg);
}

static long admin_long(const char *sql) {
  PGconn *pg = PQconnectdb(base_conninfo);
  assert_int_equal(PQstatus(pg), CONNECTION_OK);
  PGresult *res = PQexec(pg, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
    fail_msg("%s: %s", sql, PQerrorMessage(pg));
  long v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
  PQfinish(pg);
  return v;
}

/* A new empty schema; out: the conninfo that puts engram in it. */
static void fresh_schema(const char *name, char *schema, char *out,
                         size_t size) {
  snprintf(schema, 64, "tpc_%s_%d", name, (int)getpid());
  admin_sql("DROP SCHEMA IF EXISTS %s CASCADE", schema);
  admin_sql("CREATE SCHEMA %s", schema);
  snprintf(out, size, "%s options=-csearch_path=%s", base_conninfo, schema);
}

static void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Runs loop until *flag or timeout_ms; returns 0 on timeout. */
static int run_until(uv_loop_t *loop, const int *flag, uint64_t timeout_ms) {
  int late = 0;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &late;
  uv_timer_start(&t, on_deadline, timeout_ms, 0);
  while (!*flag && !late)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag != 0;
}

static void pause_ms(uv_loop_t *loop, uint64_t ms) {
  int never = 0;
  run_until(loop, &never, ms);
}

typedef struct outcome {
  int done;
  int status;
  char msg[1024];
} outcome;

static void on_open(engram *eg, int status, const char *message, void *data) {
  outcome *o = data;
  (void)eg;
  o->done = 1;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", message ? message : "");
}

static void on_closed(engram *eg, void *data) {
  (void)eg;
  *(int *)data = 1;
}

static store *captured;
static store *capture(store *inner, void *arg) {
  (void)arg;
  captured = inner;
  return inner;
}

/* A handle on db with its own loop, opened (or not: see o). */
static engram *open_db(const char *db, unsigned readers, outcome *o) {
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  opts.readers = readers;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &opts), 0);
  assert_int_equal(engram_wrap_store(eg, capture, NULL), 0);
  memset(o, 0, sizeof *o);
  assert_int_equal(engram_open(eg, on_open, o), 0);
  if (!run_until(engram_loop(eg), &o->done, 30000))
    fail_msg("open did not finish within 30 s");
  return eg;
}

static void close_db(engram *eg) {
  int closed = 0;
  engram_close(eg, on_closed, &closed);
  if (!run_until(engram_loop(eg), &closed, 30000))
    fail_msg("close did not finish within 30 s");
  engram_free(eg);
}

/* ------------------------------------------------- exchanges, directly */

typedef struct xres {
  pg_exchange ex;
  int done, status;
  char msg[512];
  unsigned n;
  unsigned cmd[16];
  ExecStatusType rs[16];
  char sqlstate[16][8];
  char value[16][64];
} xres;

static void x_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  xres *x = ex->data;
  if (x->n >= 16)
    return;
  x->cmd[x->n] = cmd;
  x->rs[x->n] = PQresultStatus(res);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  snprintf(x->sqlstate[x->n], 8, "%s", state ? state : "");
  snprintf(x->value[x->n], 64, "%s",
           PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
  x->n++;
}

static void x_done(pg_exchange *ex, int status, const char *msg) {
  xres *x = ex->data;
  x->done = 1;
  x->status = status;
  snprintf(x->msg, sizeof x->msg, "%s", msg ? msg : "");
}

static void x_begin(xres *x, pg_conn *c) {
  memset(x, 0, sizeof *x);
  x->ex.result = x_result;
  x->ex.done = x_done;
  x->ex.data = x;
  pg_exchange_begin(c, &x->ex);
}

static void x_wait(engram *eg, xres *x) {
  if (!run_until(engram_loop(eg), &x->done, 30000))
    fail_msg("exchange did not finish within 30 s");
}

typedef struct grant {
  pg_wait w;
  int done, status;
  pg_conn *c;
} grant;

static void on_granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  grant *g = PG_CONTAINER(w, grant, w);
  (void)msg;
  g->done = 1;
  g->status = status;
  g->c = c;
}

/* A connection of p (waiting on the loop if need be); NULL with *status. */
static pg_conn *take(engram *eg, pg_pool *p, int *status) {
  grant g;
  memset(&g, 0, sizeof g);
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(p, &g.w, on_granted, &c);
  *status = rc;
  if (rc != 0 || c)
    return c;
  if (!run_until(engram_loop(eg), &g.done, 30000))
    fail_msg("no connection granted within 30 s");
  *status = g.status;
  return g.c;
}

static pg_store *pg_of(void) {
  return (pg_store *)(void *)captured;
}

/* ------------------------------------------------------------- tests */

static void test_open_migrates_once(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("open", schema, db, sizeof db);
  outcome o;
  engram *eg = open_db(db, 2, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal(captured->ops->name, "postgresql");
  /* Idle connections watch their sockets but keep no loop alive. */
  assert_int_equal(uv_run(engram_loop(eg), UV_RUN_DEFAULT), 0);
  close_db(eg);
  char q[256];
  snprintf(q, sizeof q, "SELECT version FROM %s.engram_schema", schema);
  assert_int_equal(admin_long(q), PG_SCHEMA_VERSION);
  /* Again: nothing to do, one row still. */
  eg = open_db(db, 2, &o);
  assert_int_equal(o.status, 0);
  close_db(eg);
  snprintf(q, sizeof q, "SELECT count(*) FROM %s.engram_schema", schema);
  assert_int_equal(admin_long(q), 1);
  snprintf(q, sizeof q,
           "SELECT count(*) FROM pg_tables WHERE schemaname = '%s'"
           " AND tablename IN ('memories', 'relationships', 'history')",
           schema);
  assert_int_equal(admin_long(q), 3);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

/* Closed while opening: the open still calls back, then the close. */
static void test_close_while_opening(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("early", schema, db, sizeof db);
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  const char *down = "host=127.0.0.1 port=1 dbname=engram user=postgres";
  for (int round = 0; round < 2; round++) {
    if (round == 1)
      opts.db = down;
    engram *eg = NULL;
    assert_int_equal(engram_init(&eg, NULL, &opts), 0);
    outcome o;
    memset(&o, 0, sizeof o);
    assert_int_equal(engram_open(eg, on_open, &o), 0);
    int closed = 0;
    engram_close(eg, on_closed, &closed);
    assert_true(run_until(engram_loop(eg), &closed, 30000));
    assert_true(o.done);
    assert_int_equal(o.status, round == 0 ? 0 : ENGRAM_EIO);
    engram_free(eg);
  }
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

static void test_concurrent_open(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("twice", schema, db, sizeof db);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  opts.readers = 1;
  engram *a = NULL, *b = NULL;
  assert_int_equal(engram_init(&a, &loop, &opts), 0);
  assert_int_equal(engram_init(&b, &loop, &opts), 0);
  outcome oa, ob;
  memset(&oa, 0, sizeof oa);
  memset(&ob, 0, sizeof ob);
  assert_int_equal(engram_open(a, on_open, &oa), 0);
  assert_int_equal(engram_open(b, on_open, &ob), 0);
  while (!oa.done || !ob.done)
    uv_run(&loop, UV_RUN_ONCE);
  if (oa.status || ob.status)
    fail_msg("a: %s / b: %s", oa.msg, ob.msg);
  int ca = 0, cb = 0;
  engram_close(a, on_closed, &ca);
  engram_close(b, on_closed, &cb);
  while (!ca || !cb)
    uv_run(&loop, UV_RUN_ONCE);
  engram_free(a);
  engram_free(b);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  char q[256];
  snprintf(q, sizeof q, "SELECT count(*) FROM %s.engram_schema", schema);
  assert_int_equal(admin_long(q), 1);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

static void test_newer_version_refused(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("newer", schema, db, sizeof db);
  outcome o;
  close_db(open_db(db, 1, &o));
  assert_int_equal(o.status, 0);
  admin_sql("UPDATE %s.engram_schema SET version = 99", schema);
  engram *eg = open_db(db, 1, &o);
  assert_int_equal(o.status, ENGRAM_EVERSION);
  assert_non_null(strstr(o.msg, "99"));
  assert_non_null(strstr(o.msg, "upgrade engram"));
  close_db(eg);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

static void test_foreign_tables_untouched(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("foreign", schema, db, sizeof db);
  admin_sql("CREATE TABLE %s.memories(x integer)", schema);
  admin_sql("INSERT INTO %s.memories VALUES (7)", schema);
  outcome o;
  engram *eg = open_db(db, 1, &o);
  assert_int_equal(o.status, ENGRAM_ECORRUPT);
  assert_non_null(strstr(o.msg, "not an engram database"));
  close_db(eg);
  char q[256];
  snprintf(q, sizeof q, "SELECT x FROM %s.memories", schema);
  assert_int_equal(admin_long(q), 7);
  snprintf(q, sizeof q,
           "SELECT count(*) FROM pg_tables WHERE schemaname = '%s'", schema);
  assert_int_equal(admin_long(q), 1);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

static void test_server_down(void **state) {
  (void)state;
  /* Port 1: nothing listens there. */
  const char *db = "host=127.0.0.1 port=1 dbname=engram user=postgres";
  outcome o;
  uint64_t t0 = uv_hrtime();
  engram *eg = open_db(db, 2, &o);
  assert_int_equal(o.status, ENGRAM_EIO);
  assert_non_null(strstr(o.msg, "cannot connect to PostgreSQL at "
                                "127.0.0.1:1/engram"));
  assert_non_null(strstr(o.msg, "refused"));
  assert_true(uv_hrtime() - t0 < 5000000000ull);
  close_db(eg);

  eg = open_db("host=127.0.0.1 bogus_option=1", 1, &o);
  assert_int_equal(o.status, ENGRAM_EINVAL);
  assert_non_null(strstr(o.msg, "bogus_option"));
  close_db(eg);
}

/* A server that accepts the TCP connection and never answers: the connect
 * timeout ends the attempt. */
static void test_connect_timeout(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  char db[128];
  snprintf(db, sizeof db,
           "host=127.0.0.1 port=%d dbname=x user=y sslmode=disable",
           ntohs(sa.sin_port));
  outcome o;
  uint64_t t0 = uv_hrtime();
  engram *eg = open_db(db, 1, &o);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(o.status, ENGRAM_EIO);
  assert_non_null(strstr(o.msg, "timed out"));
  assert_true(ms >= PG_CONNECT_TIMEOUT_MS - 100 &&
              ms < PG_CONNECT_TIMEOUT_MS + 3000);
  close_db(eg);
  close(fd);
}

/* A host name is resolved on the thread pool, not by libpq on the loop. */
static void test_host_name(void **state) {
  (void)state;
  const char *port = strstr(base_conninfo, "port=");
  if (!strstr(base_conninfo, "host=127.0.0.1") || !port) {
    printf("skipped: the server is not on 127.0.0.1\n");
    skip();
  }
  char schema[64], db[1200];
  fresh_schema("name", schema, db, sizeof db);
  char named[1400];
  snprintf(named, sizeof named, "host=localhost %s", strstr(db, "port="));
  outcome o;
  engram *eg = open_db(named, 1, &o);
  if (o.status != 0)
    fail_msg("%s", o.msg);
  assert_non_null(strstr(pg_of()->server, "localhost:"));
  close_db(eg);
  eg = open_db("host=no-such-host.invalid dbname=x", 1, &o);
  assert_int_equal(o.status, ENGRAM_EIO);
  assert_non_null(strstr(o.msg, "no-such-host.invalid"));
  close_db(eg);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

static void test_exchange_pipeline(void **state) {
  (void)state;
  char schema[64], db[1200];
  fresh_schema("pipe", schema, db, sizeof db);
  outcome o;
  engram *eg = open_db(db, 1, &o);
  assert_int_equal(o.status, 0);
  pg_store *st = pg_of();
  int status = 0;
  pg_conn *c = take(eg, &st->readers, &status);
  assert_non_null(c);

  static const pg_stmt add_one = {"t_add_one", "SELECT $1::integer + 1", 1};
  static const pg_stmt broken = {"t_broken", "SELECT no_such_column", 0};
  const char *v41[] = {"41"}, *v1[] = {"1"};
  xres x;
  x_begin(&x, c);
  pg_exchange_stmt(c, &add_one, v41, NULL);
  pg_exchange_sql(c, "SELECT 1/0", 0, NULL, NULL);
  pg_exchange_stmt(c, &add_one, v1, NULL);
  pg_exchange_end(c);
  assert_int_equal(x.done, 0); /* never inside pg_exchange_end */
  x_wait(eg, &x);
  assert_int_equal(x.status, 0);
  assert_int_equal(x.n, 3);
  assert_int_equal(x.rs[0], PGRES_TUPLES_OK);
  assert_string_equal(x.value[0], "42");
  assert_int_equal(x.rs[1], PGRES_FATAL_ERROR);
  assert_string_equal(x.sqlstate[1], "22012");
  assert_int_equal(x.rs[2], PGRES_PIPELINE_ABORTED);
  assert_int_equal(x.cmd[2], 2);

  /* Prepared before: reused; a statement that cannot be prepared gives
   * its own error to the command, and is tried again next time. */
  for (int round = 0; round < 2; round++) {
    x_begin(&x, c);
    pg_exchange_stmt(c, &add_one, v1, NULL);
    pg_exchange_stmt(c, &broken, NULL, NULL);
    pg_exchange_end(c);
    x_wait(eg, &x);
    assert_int_equal(x.status, 0);
    assert_int_equal(x.n, 2);
    assert_string_equal(x.value[0], "2");
    assert_int_equal(x.rs[1], PGRES_FATAL_ERROR);
    assert_string_equal(x.sqlstate[1], "42703");
  }

  /* Far more than a socket buffer holds: sent as the socket drains. */
  enum { MANY = 3000 };
  static char big[4096];
  memset(big, 'x', sizeof big - 1);
  const char *vbig[] = {big};
  x_begin(&x, c);
  for (int i = 0; i < MANY; i++)
    pg_exchange_sql(c, "SELECT length($1::text)", 1, vbig, NULL);
  pg_exchange_end(c);
  x_wait(eg, &x);
  assert_int_equal(x.status, 0);
  assert_int_equal(x.ex.next, MANY);
  assert_string_equal(x.value[15], "4095");

  /* Cancel: the running command fails with 57014 -> ENGRAM_ECANCELED. */
  x_begin(&x, c);
  pg_exchange_sql(c, "SELECT pg_sleep(30)", 0, NULL, NULL);
  pg_exchange_end(c);
  pause_ms(engram_loop(eg), 200);
  pg_conn_cancel(c);
  x_wait(eg, &x);
  assert_int_equal(x.status, 0);
  assert_int_equal(x.n, 1);
  assert_string_equal(x.sqlstate[0], "57014");

  /* Released inside a transaction: rolled back before the next holder. */
  x_begin(&x, c);
  pg_exchange_sql(c, "BEGIN", 0, NULL, NULL);
  pg_exchange_end(c);
  x_wait(eg, &x);
  assert_int_equal(PQtransactionStatus(pg_conn_pg(c)), PQTRANS_INTRANS);
  pg_pool_release(&st->readers, c);
  c = take(eg, &st->readers, &status);
  assert_non_null(c);
  assert_int_equal(PQtransactionStatus(pg_conn_pg(c)), PQTRANS_IDLE);

  /* FIFO: with the only reader held, the next one waits for it. */
  grant g;
  memset(&g, 0, sizeof g);
  pg_conn *now = NULL;
  assert_int_equal(pg_pool_acquire(&st->readers, &g.w, on_granted, &now), 0);
  assert_null(now);
  pg_pool_release(&st->readers, c);
  assert_true(run_until(engram_loop(eg), &g.done, 5000));
  assert_ptr_equal(g.c, c);
  pg_pool_release(&st->readers, c);
  close_db(eg);
  admin_sql("DROP SCHEMA %s CASCADE", schema);
}

/* Acquire and run SELECT 1 until it works or timeout_ms passes. */
static int works_again(engram *eg, pg_pool *p, uint64_t timeout_ms,
                       int *failures) {
  uint64_t end = uv_hrtime() + timeout_ms * 1000000ull;
  while (uv_hrtime() < end) {
    int status = 0;
    pg_conn *c = take(eg, p, &status);
    if (!c) {
      assert_int_equal(status, ENGRAM_EIO);
      assert_non_null(strstr(pg_pool_error(p), "PostgreSQL at 127.0.0.1:"));
      (*failures)++;
      pause_ms(engram_loop(eg), 100);
      continue;
    }
    xres x;
    x_begin(&x, c);
    pg_exchange_sql(c, "SELECT 1", 0, NULL, NULL);
    pg_exchange_end(c);
    x_wait(eg, &x);
    pg_pool_release(p, c);
    if (x.status == 0 && x.n == 1 && x.rs[0] == PGRES_TUPLES_OK)
      return 1;
    assert_int_equal(x.status, ENGRAM_EIO);
    (*failures)++;
    pause_ms(engram_loop(eg), 100);
  }
  return 0;
}

typedef struct api_call {
  int done, status;
  char id[ENGRAM_ID_LEN + 1];
  char content[128];
} api_call;

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  api_call *a = data;
  (void)n;
  a->done = 1;
  a->status = status;
  snprintf(a->id, sizeof a->id, "%s", ops[0].result_id);
}

static void on_got(int status, const engram_node *node, void *data) {
  api_call *a = data;
  a->done = 1;
  a->status = status;
  snprintf(a->content, sizeof a->content, "%s", node ? node->content : "");
}

/* engram_get of id through the public API; its status. */
static int api_get(engram *eg, const char *id, api_call *a) {
  memset(a, 0, sizeof *a);
  int rc = engram_get(eg, "loss", id, on_got, a);
  if (rc != 0)
    return rc;
  if (!run_until(engram_loop(eg), &a->done, 30000))
    fail_msg("engram_get did not call back within 30 s");
  return a->status;
}

/* Adds content and reads it back, retrying while the store reconnects. */
static int api_roundtrip(engram *eg, const char *content, uint64_t timeout_ms,
                         char id[ENGRAM_ID_LEN + 1]) {
  uint64_t end = uv_hrtime() + timeout_ms * 1000000ull;
  while (uv_hrtime() < end) {
    engram_op op = {.kind = ENGRAM_OP_ADD,
                    .ns = "loss",
                    .type = ENGRAM_SEMANTIC,
                    .content = content};
    api_call a;
    memset(&a, 0, sizeof a);
    int rc = engram_write(eg, &op, 1, on_written, &a);
    if (rc == 0 && !run_until(engram_loop(eg), &a.done, 30000))
      fail_msg("engram_write did not call back within 30 s");
    char written[ENGRAM_ID_LEN + 1];
    snprintf(written, sizeof written, "%s", a.id);
    if (rc == 0 && a.status == 0 && api_get(eg, written, &a) == 0) {
      assert_string_equal(a.content, content);
      if (id)
        snprintf(id, ENGRAM_ID_LEN + 1, "%s", written);
      return 1;
    }
    pause_ms(engram_loop(eg), 100);
  }
  return 0;
}

static int stop_private_server(void **state) {
  (void)state;
  if (private_dir[0]) {
    pgtest_run("stop", private_dir);
    char line[1100];
    snprintf(line, sizeof line, "rm -rf '%s'", private_dir);
    if (system(line) != 0)
      printf("could not remove %s\n", private_dir);
    private_dir[0] = '\0';
  }
  return 0;
}

/* Starts a server of the test's own (private_dir) and reads its conninfo
 * into db; skips the test when there is none to start. */
static void start_private_server(const char *name, char db[1024]) {
  const char *tmp = getenv("ENGRAM_TEST_TMP");
  if (!tmp || strlen(tmp) > 60) /* the server's socket path is short */
    tmp = "/tmp";
  snprintf(private_dir, sizeof private_dir, "%s/%s-%d", tmp, name,
           (int)getpid());
  if (pgtest_run("start", private_dir) != 0) {
    printf("skipped: cannot start a private server with %s\n", pgtest);
    skip();
  }
  char path[1100];
  snprintf(path, sizeof path, "%s/conninfo", private_dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(db, 1, 1023, f);
  fclose(f);
  db[n] = '\0';
  db[strcspn(db, "\r\n")] = '\0';
}

static void test_connection_loss(void **state) {
  (void)state;
  char db[1024];
  start_private_server("pgloss", db);

  outcome o;
  engram *eg = open_db(db, 2, &o);
  assert_int_equal(o.status, 0);
  pg_store *st = pg_of();
  char before[ENGRAM_ID_LEN + 1];
  assert_true(api_roundtrip(eg, "written before the restart", 5000, before));
  int status = 0;
  pg_conn *c = take(eg, &st->readers, &status);
  assert_non_null(c);
  xres x;
  x_begin(&x, c);
  pg_exchange_sql(c, "SELECT pg_sleep(60)", 0, NULL, NULL);
  pg_exchange_end(c);
  pause_ms(engram_loop(eg), 200);

  /* The in-flight command fails with a clear status... */
  assert_int_equal(pgtest_run("restart", private_dir), 0);
  x_wait(eg, &x);
  assert_int_equal(x.status, ENGRAM_EIO);
  assert_non_null(strstr(x.msg, "PostgreSQL at 127.0.0.1:"));
  assert_non_null(strstr(x.msg, "connection lost"));
  pg_pool_release(&st->readers, c);
  /* ...and the pool reconnects. */
  int failures = 0;
  assert_true(works_again(eg, &st->readers, 20000, &failures));
  assert_true(works_again(eg, &st->writer, 20000, &failures));
  api_call a;
  assert_int_equal(api_get(eg, before, &a), 0);
  assert_string_equal(a.content, "written before the restart");

  /* Down: requests fail at once, naming the server; back: they work. */
  assert_int_equal(pgtest_run("kill", private_dir), 0);
  failures = 0;
  uint64_t end = uv_hrtime() + 20000000000ull;
  while (uv_hrtime() < end && !st->readers.unreachable) {
    works_again(eg, &st->readers, 200, &failures);
    pause_ms(engram_loop(eg), 50);
  }
  assert_true(st->readers.unreachable);
  c = take(eg, &st->readers, &status);
  assert_null(c);
  assert_int_equal(status, ENGRAM_EIO);
  assert_int_equal(pgtest_run("start", private_dir), 0);
  failures = 0;
  assert_true(works_again(eg, &st->readers, 30000, &failures));
  assert_true(works_again(eg, &st->writer, 30000, &failures));
  assert_true(
      api_roundtrip(eg, "written after the server came back", 30000, NULL));
  close_db(eg);
}

/* ------------------------------------------------- restarts under load */

/* One holder in the restart storm: acquires a connection of its pool, runs
 * one exchange, releases. Every callback is counted, so that a done that
 * comes twice, never, re-entrantly or before a result is seen. */
typedef struct storm_job {
  pg_wait w;
  pg_exchange ex;
  pg_pool *p;
  pg_conn *c;
  int kind;
  int in_end;     /* inside pg_exchange_end */
  int dones;      /* done callbacks */
  int late;       /* results after done */
  int reentrant;  /* dones inside pg_exchange_end */
  int finished;   /* done, or the acquire failed */
  int status;
  char msg[512];
  int *nfinished;
} storm_job;

enum { STORM_CYCLES = 20, STORM_READER_JOBS = 8, STORM_JOBS = 10 };

static void storm_finish(storm_job *j, int status, const char *msg) {
  j->finished = 1;
  j->status = status;
  snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "");
  (*j->nfinished)++;
}

static void storm_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  storm_job *j = ex->data;
  (void)cmd;
  (void)res;
  if (j->dones)
    j->late++;
}

static void storm_done(pg_exchange *ex, int status, const char *msg) {
  storm_job *j = ex->data;
  if (j->in_end)
    j->reentrant++;
  if (++j->dones > 1)
    return;
  pg_pool_release(j->p, j->c);
  storm_finish(j, status, msg);
}

/* The exchanges a restart meets: a large result the client has not read
 * yet with more pipelined behind it (the server dies with unread input,
 * so the client sees a reset after a full buffer), a transaction asleep,
 * and a quick one. */
static void storm_run(storm_job *j, pg_conn *c) {
  static char big[65536];
  memset(big, 'y', sizeof big - 1);
  const char *vbig[] = {big};
  j->c = c;
  j->ex.result = storm_result;
  j->ex.done = storm_done;
  j->ex.data = j;
  pg_exchange_begin(c, &j->ex);
  switch (j->kind % 3) {
  case 0:
    pg_exchange_sql(c, "SELECT repeat('x', 1000000) FROM generate_series(1, 8)",
                    0, NULL, NULL);
    pg_exchange_sql(c, "SELECT pg_sleep(2)", 0, NULL, NULL);
    for (int i = 0; i < 40; i++)
      pg_exchange_sql(c, "SELECT length($1::text)", 1, vbig, NULL);
    break;
  case 1:
    pg_exchange_sql(c, "BEGIN", 0, NULL, NULL);
    pg_exchange_sql(c, "SELECT pg_sleep(2)", 0, NULL, NULL);
    break;
  default:
    pg_exchange_sql(c, "SELECT 1", 0, NULL, NULL);
    break;
  }
  j->in_end = 1;
  pg_exchange_end(c);
  j->in_end = 0;
}

static void storm_granted(pg_wait *w, pg_conn *c, int status,
                          const char *msg) {
  storm_job *j = PG_CONTAINER(w, storm_job, w);
  if (status != 0)
    storm_finish(j, status, msg);
  else
    storm_run(j, c);
}

static void storm_start(storm_job *j) {
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(j->p, &j->w, storm_granted, &c);
  if (rc != 0)
    storm_finish(j, rc, pg_pool_error(j->p));
  else if (c)
    storm_run(j, c);
}

typedef struct spawned {
  uv_process_t proc;
  int exited;
  int64_t status;
} spawned;

static void on_spawned_exit(uv_process_t *proc, int64_t status, int sig) {
  spawned *sp = PG_CONTAINER(proc, spawned, proc);
  (void)sig;
  sp->exited = 1;
  sp->status = status;
  uv_close((uv_handle_t *)proc, NULL);
}

/* `pgtest.sh restart` while the loop runs, so the exchanges see the server
 * die as it happens; returns its exit status. */
static int64_t restart_on_loop(uv_loop_t *loop) {
  spawned sp;
  memset(&sp, 0, sizeof sp);
  char *args[] = {"bash", pgtest, "restart", private_dir, NULL};
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; i++)
    stdio[i].flags = UV_IGNORE;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = "bash";
  po.args = args;
  po.exit_cb = on_spawned_exit;
  po.stdio = stdio;
  po.stdio_count = 3;
  assert_int_equal(uv_spawn(loop, &sp.proc, &po), 0);
  if (!run_until(loop, &sp.exited, 90000))
    fail_msg("pgtest.sh restart did not finish within 90 s");
  uv_run(loop, UV_RUN_NOWAIT); /* the process handle's close */
  return sp.status;
}

/* The server restarts again and again while exchanges run on every
 * connection: each exchange ends with exactly one done (never inside
 * pg_exchange_end, no result after it), a failure names the server and
 * says the connection was lost (libpq's reason, not a poll error), and the
 * pool works again after each restart. */
static void test_restart_storm(void **state) {
  (void)state;
  char db[1024];
  start_private_server("pgstorm", db);
  outcome o;
  engram *eg = open_db(db, 4, &o);
  assert_int_equal(o.status, 0);
  pg_store *st = pg_of();
  uv_loop_t *loop = engram_loop(eg);
  int lost = 0;
  for (int cycle = 0; cycle < STORM_CYCLES; cycle++) {
    storm_job jobs[STORM_JOBS];
    int nfinished = 0;
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < STORM_JOBS; i++) {
      jobs[i].p = i < STORM_READER_JOBS ? &st->readers : &st->writer;
      jobs[i].kind = i + cycle;
      jobs[i].nfinished = &nfinished;
      storm_start(&jobs[i]);
    }
    pause_ms(loop, 150 + (uint64_t)(cycle % 4) * 50);
    /* Odd cycles: the loop is busy elsewhere while the server dies, and
     * finds everything at once afterwards. */
    if (cycle % 2)
      assert_int_equal(pgtest_run("restart", private_dir), 0);
    else
      assert_int_equal(restart_on_loop(loop), 0);
    uint64_t end = uv_hrtime() + 60000000000ull;
    while (nfinished < STORM_JOBS && uv_hrtime() < end)
      pause_ms(loop, 20);
    for (int i = 0; i < STORM_JOBS; i++) {
      storm_job *j = &jobs[i];
      if (!j->finished)
        fail_msg("cycle %d job %d: no done within 60 s", cycle, i);
      if (j->dones > 1 || j->late || j->reentrant)
        fail_msg("cycle %d job %d: %d dones, %d late results, %d re-entrant",
                 cycle, i, j->dones, j->late, j->reentrant);
      if (j->status == 0)
        continue;
      if (j->status != ENGRAM_EIO)
        fail_msg("cycle %d job %d: status %d (%s)", cycle, i, j->status,
                 j->msg);
      if (!strstr(j->msg, "PostgreSQL at 127.0.0.1:") ||
          strstr(j->msg, "bad file descriptor") ||
          strstr(j->msg, "file exists"))
        fail_msg("cycle %d job %d: %s", cycle, i, j->msg);
      if (j->dones && strstr(j->msg, "connection lost"))
        lost++;
    }
    /* Every running exchange is still held or done; none is left over. */
    assert_int_equal(st->readers.held, 0);
    assert_int_equal(st->writer.held, 0);
    int failures = 0;
    if (!works_again(eg, &st->readers, 30000, &failures) ||
        !works_again(eg, &st->writer, 30000, &failures))
      fail_msg("cycle %d: the pool did not recover: %s", cycle,
               pg_pool_error(&st->readers));
  }
  assert_true(lost > 0);
  close_db(eg);
}

int main(void) {
  load_setting();
  if (!base_conninfo[0] || strcmp(base_conninfo, "off") == 0) {
    printf("skipped: ENGRAM_TEST_PG not set\n");
    return 77;
  }
  const char *only = getenv("ENGRAM_TEST_ONLY"); /* as tu_backend_check */
  if (only && *only)
    cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_migrates_once),
      cmocka_unit_test(test_close_while_opening),
      cmocka_unit_test(test_concurrent_open),
      cmocka_unit_test(test_newer_version_refused),
      cmocka_unit_test(test_foreign_tables_untouched),
      cmocka_unit_test(test_server_down),
      cmocka_unit_test(test_connect_timeout),
      cmocka_unit_test(test_host_name),
      cmocka_unit_test(test_exchange_pipeline),
      cmocka_unit_test_teardown(test_connection_loss, stop_private_server),
      cmocka_unit_test_teardown(test_restart_storm, stop_private_server),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
