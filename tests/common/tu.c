/*
 * tu.c — test utilities (see tu.h): scratch databases on the backend under
 * test (SQLite files, or PostgreSQL schemas made with blocking libpq, which
 * only tests may use), and loop-driving wrappers of the API.
 */
#include "tu.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "engram_internal.h"

int tu_backend_is_pg(void) {
  const char *b = getenv("ENGRAM_TEST_BACKEND");
  return b && strcmp(b, "pg") == 0;
}

/* ENGRAM_TEST_PG resolved once: a conninfo, "off", "" (unset), or "?" when
 * it names a file that does not exist (then pg_missing_file holds it). */
static char pg_value[1024];
static char pg_missing_file[1024];

static const char *pg_setting(void) {
  static int loaded;
  if (loaded)
    return pg_value;
  loaded = 1;
  const char *env = getenv("ENGRAM_TEST_PG");
  if (!env)
    env = "";
  struct stat sb;
  if (strcmp(env, "off") != 0 && stat(env, &sb) == 0 && S_ISREG(sb.st_mode)) {
    FILE *f = fopen(env, "r");
    size_t n = f ? fread(pg_value, 1, sizeof pg_value - 1, f) : 0;
    if (f)
      fclose(f);
    pg_value[n] = '\0';
  } else if (env[0] == '/') {
    snprintf(pg_missing_file, sizeof pg_missing_file, "%s", env);
    snprintf(pg_value, sizeof pg_value, "?");
    return pg_value;
  } else {
    snprintf(pg_value, sizeof pg_value, "%s", env);
  }
  size_t len = strlen(pg_value);
  while (len > 0 && (pg_value[len - 1] == '\n' || pg_value[len - 1] == '\r' ||
                     pg_value[len - 1] == ' ' || pg_value[len - 1] == '\t'))
    pg_value[--len] = '\0';
  return pg_value;
}

const char *tu_pg_base(void) {
  const char *v = pg_setting();
  if (!*v || strcmp(v, "off") == 0 || pg_missing_file[0])
    return NULL;
  return v;
}

int tu_backend_check(void) {
  const char *only = getenv("ENGRAM_TEST_ONLY");
  const char *skipped = getenv("ENGRAM_TEST_SKIP");
  if (only && *only)
    cmocka_set_test_filter(only);
  if (skipped && *skipped)
    cmocka_set_skip_filter(skipped);
  if (!tu_backend_is_pg())
    return 0;
  const char *v = pg_setting();
  if (pg_missing_file[0]) {
    printf("ENGRAM_TEST_PG names %s, which does not exist: the PostgreSQL "
           "test server was not started (ctest starts it with the test "
           "pg_server_start)\n",
           pg_missing_file);
    return 1;
  }
  if (strcmp(v, "off") == 0) {
    printf("PostgreSQL tests skipped: ENGRAM_TEST_PG=off\n");
    return TU_SKIP;
  }
  if (!*v) {
    printf("PostgreSQL tests skipped: ENGRAM_TEST_PG is not set (a libpq "
           "conninfo, or a file holding one; ctest sets it)\n");
    return TU_SKIP;
  }
  return 0;
}

void tu_skip_unless_sqlite(const char *reason) {
  if (!tu_backend_is_pg())
    return;
  print_message("skipped on PostgreSQL: %s\n", reason);
  skip();
}

static PGconn *pg_connect(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(c));
    PQfinish(c);
    fail_msg("PostgreSQL test server (%s): %s", conninfo, why);
  }
  return c;
}

void tu_pg_exec(const char *db, const char *sql) {
  PGconn *c = pg_connect(db);
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    fail_msg("%s: %s", sql, why);
  }
  PQclear(r);
  PQfinish(c);
}

static const char *pg_db_path(const char *name) {
  static char conninfo[1536];
  static int counter;
  const char *base = tu_pg_base();
  if (!base)
    fail_msg("PostgreSQL tests without a server (ENGRAM_TEST_PG)");
  /* An identifier that needs no quoting: lower case, digits, '_'. */
  char clean[33];
  size_t n = 0;
  for (const char *p = name; *p && n < sizeof clean - 1; p++) {
    char ch = *p;
    if (ch >= 'A' && ch <= 'Z')
      ch = (char)(ch - 'A' + 'a');
    clean[n++] = ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
                     ? ch
                     : '_';
  }
  clean[n] = '\0';
  char schema[64];
  snprintf(schema, sizeof schema, "%s%s_%d_%d",
           (clean[0] >= 'a' && clean[0] <= 'z') ? "" : "t_", clean,
           (int)getpid(), counter++);
  char sql[256];
  snprintf(sql, sizeof sql,
           "SET client_min_messages = warning; "
           "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s",
           schema, schema);
  tu_pg_exec(base, sql);
  if (strncmp(base, "postgres://", 11) == 0 ||
      strncmp(base, "postgresql://", 13) == 0)
    snprintf(conninfo, sizeof conninfo, "%s%soptions=-csearch_path%%3D%s",
             base, strchr(base, '?') ? "&" : "?", schema);
  else
    snprintf(conninfo, sizeof conninfo, "%s options='-csearch_path=%s'", base,
             schema);
  return conninfo;
}

const char *tu_db_path(const char *name) {
  static char path[1024];
  static int counter;
  if (tu_backend_is_pg())
    return pg_db_path(name);
  const char *dir = getenv("ENGRAM_TEST_TMP");
  if (!dir || !*dir)
    dir = "/tmp/engram-test";
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/%s-%d-%d.db", dir, name, (int)getpid(),
           counter++);
  char extra[1100];
  unlink(path);
  snprintf(extra, sizeof extra, "%s-wal", path);
  unlink(extra);
  snprintf(extra, sizeof extra, "%s-shm", path);
  unlink(extra);
  return path;
}

typedef struct open_state {
  int done;
  int status;
  char message[512];
} open_state;

static void on_open(engram *eg, int status, const char *message, void *data) {
  open_state *s = data;
  (void)eg;
  s->done = 1;
  s->status = status;
  snprintf(s->message, sizeof s->message, "%s", message ? message : "");
}

void tu_run_until(engram *eg, const int *flag) {
  while (!*flag)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && !*flag)
      break;
}

typedef struct preloaded {
  int done, calls, status;
} preloaded;

static void on_preload(int status, const char *message, void *data) {
  preloaded *p = data;
  p->calls++;
  p->done = 1;
  p->status = status;
  assert_true(status == 0 ? message == NULL : message != NULL);
}

int tu_preload(engram *eg, const char *ns) {
  preloaded p = {0};
  int rc = engram_preload(eg, ns, on_preload, &p);
  if (rc != 0)
    return rc;
  assert_false(p.done);
  tu_run_until(eg, &p.done);
  assert_int_equal(p.calls, 1);
  return p.status;
}

static store *wrap_delay(store *inner, void *arg) {
  return store_delay_new(inner, *(uint64_t *)arg);
}

static engram *open_with(const char *path, const engram_options *opts,
                         uint64_t *delay) {
  engram_options o;
  if (opts)
    o = *opts;
  else
    engram_options_init(&o);
  o.db = path;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &o), 0);
  if (delay)
    assert_int_equal(engram_wrap_store(eg, wrap_delay, delay), 0);
  open_state st = {0};
  assert_int_equal(engram_open(eg, on_open, &st), 0);
  tu_run_until(eg, &st.done);
  if (st.status != 0)
    fail_msg("open %s: %s", path, st.message);
  return eg;
}

engram *tu_open(const char *path, const engram_options *opts) {
  return open_with(path, opts, NULL);
}

engram *tu_open_delayed(const char *path, const engram_options *opts,
                        uint64_t delay_ms) {
  return open_with(path, opts, &delay_ms);
}

static void on_closed(engram *eg, void *data) {
  (void)eg;
  *(int *)data = 1;
}

void tu_close(engram *eg) {
  int closed = 0;
  engram_close(eg, on_closed, &closed);
  engram_run(eg);
  assert_true(closed);
  engram_free(eg);
}

typedef struct add_state {
  int done;
  int status;
  char id[ENGRAM_ID_LEN + 1];
} add_state;

static void on_added(int status, engram_op *ops, size_t n, void *data) {
  add_state *s = data;
  s->done = 1;
  s->status = status;
  if (status == 0 && n > 0)
    memcpy(s->id, ops[0].result_id, sizeof s->id);
}

int tu_add(engram *eg, const char *ns, const char *content, engram_type type,
           char out[ENGRAM_ID_LEN + 1]) {
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = ns, .type = type,
                  .content = content};
  add_state s = {0};
  int rc = engram_write(eg, &op, 1, on_added, &s);
  if (rc != 0)
    return rc;
  tu_run_until(eg, &s.done);
  if (s.status == 0 && out)
    memcpy(out, s.id, ENGRAM_ID_LEN + 1);
  return s.status;
}

typedef struct many_state {
  int outstanding;
  int status;
} many_state;

static void on_batch(int status, engram_op *ops, size_t n, void *data) {
  many_state *s = data;
  (void)ops;
  (void)n;
  s->outstanding--;
  if (status != 0 && s->status == 0)
    s->status = status;
}

int tu_add_many(engram *eg, const char *ns, size_t n,
                const char *(*make)(size_t i, void *arg), void *arg) {
  enum { BATCH = 256 };
  engram_op ops[BATCH];
  many_state s = {0, 0};
  size_t i = 0;
  while (i < n) {
    size_t k = 0;
    memset(ops, 0, sizeof ops);
    /* make() may reuse a static buffer: engram_write copies each batch
     * before returning, but within a batch every content must differ in
     * memory, so keep copies until the write call returns. */
    char *copies[BATCH];
    for (; k < BATCH && i < n; k++, i++) {
      copies[k] = strdup(make(i, arg));
      ops[k] = (engram_op){.kind = ENGRAM_OP_ADD, .ns = ns,
                           .type = ENGRAM_EPISODIC, .content = copies[k]};
    }
    int rc = engram_write(eg, ops, k, on_batch, &s);
    for (size_t j = 0; j < k; j++)
      free(copies[j]);
    if (rc != 0)
      return rc;
    s.outstanding++;
    while (s.outstanding >= 8)
      uv_run(engram_loop(eg), UV_RUN_ONCE);
  }
  while (s.outstanding > 0)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  return s.status;
}

typedef struct count_state {
  size_t n;
  int done;
} count_state;

static void count_item(engram_stream *s, const engram_node *node, void *data) {
  (void)node;
  count_state *c = data;
  c->n++;
  engram_stream_request(s, 1);
}

static void count_done(engram_stream *s, int status, void *data) {
  (void)s;
  assert_int_equal(status, 0);
  ((count_state *)data)->done = 1;
}

size_t tu_count(engram *eg, const char *ns) {
  count_state c = {0, 0};
  engram_stream_cbs cbs = {count_item, NULL, count_done, &c};
  engram_query q = {.ns = ns};
  engram_stream *s;
  assert_int_equal(engram_list(eg, &q, &cbs, &s), 0);
  engram_stream_request(s, 64);
  tu_run_until(eg, &c.done);
  return c.n;
}
