/*
 * test_pg_writer.c — the PostgreSQL backend's writer (pg_writer.c) through
 * the public API, checked against the rows it leaves in the database:
 * every op kind and its failures with their per-op messages, the bytes it
 * stores (content hash, embedding, timestamps, history), batch atomicity
 * inside a group of several batches, a deadlock with another session (the
 * group runs again), a lock held past the lock timeout (EBUSY),
 * de-duplication racing between two handles, and a server restarted while
 * writes are in flight.
 *
 * It runs as test_pg_writer_pg only. The server comes from ENGRAM_TEST_PG
 * (a libpq conninfo, or a file holding one); unset, the test skips and says
 * why. The restart case starts a server of its own with scripts/pgtest.sh,
 * so the shared one is never disturbed.
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

#include "core/core.h"
#include "store_tu.h"
#include "testloop.h"
#include "tu.h"

#define NS "writer-ns"
#define OTHER "writer-other"

/* ------------------------------------------------------------ libpq side */

/* Runs sql on db (blocking: tests only) and returns its result. */
/* Options that keep the caller's vectors as given (no embedder). */
static const engram_options no_embedder = {
    .embedder = {.kind = ENGRAM_EMBEDDER_NONE}};

static PGresult *query(const char *db, const char *sql) {
  PGconn *c = PQconnectdb(db);
  if (PQstatus(c) != CONNECTION_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(c));
    PQfinish(c);
    fail_msg("connect %s: %s", db, why);
  }
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    fail_msg("%s: %s", sql, why);
  }
  PQfinish(c);
  return r;
}

/* The first column of the first row as text ("" when no row), formatted
 * from a printf-style SQL. */
static const char *scalar(const char *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *scalar(const char *db, const char *fmt, ...) {
  static char out[4096];
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGresult *r = query(db, sql);
  snprintf(out, sizeof out, "%s",
           PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0)
                                                     : "");
  PQclear(r);
  return out;
}

static long count_rows(const char *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static long count_rows(const char *db, const char *fmt, ...) {
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  return strtol(scalar(db, "%s", sql), NULL, 10);
}

/* A copy of tu_db_path(name) (the caller frees it). */
static char *fresh_db(const char *name) {
  return strdup(tu_db_path(name));
}

/* ----------------------------------------------------------------- writes */

/* One write in flight, its results kept. */
typedef struct pending {
  int done;
  int status;
  size_t n;
  engram_op ops[8];
} pending;

static void on_pending(int status, engram_op *ops, size_t n, void *data) {
  pending *p = data;
  p->done = 1;
  p->status = status;
  p->n = n < 8 ? n : 8;
  memcpy(p->ops, ops, p->n * sizeof *ops);
}

static engram_op add_op(const char *ns, const char *content) {
  return (engram_op){.kind = ENGRAM_OP_ADD,
                     .ns = ns,
                     .type = ENGRAM_SEMANTIC,
                     .content = content};
}

static void add(engram *eg, const char *ns, const char *content,
                char id[ENGRAM_ID_LEN + 1]) {
  engram_op op = add_op(ns, content);
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  memcpy(id, op.result_id, ENGRAM_ID_LEN + 1);
}

/* ------------------------------------------------------------ op kinds */

static void test_add_stores_every_column(void **state) {
  (void)state;
  char *db = fresh_db("w_add");
  engram *eg = tu_open(db, &no_embedder); /* the caller's vectors, kept */
  static const float emb[3] = {1.0f, -2.5f, 0.0f};
  char given[ENGRAM_ID_LEN + 1];
  engram_id_new(given);
  engram_op ops[2] = {{.kind = ENGRAM_OP_ADD,
                       .ns = NS,
                       .id = given,
                       .type = ENGRAM_PROCEDURAL,
                       .content = "how to brew: grind, pour, wait",
                       .importance = 0.75,
                       .set = ENGRAM_SET_IMPORTANCE,
                       .metadata = "{\"source\": \"manual\"}",
                       .embedding = emb,
                       .embedding_dim = 3},
                      add_op(NS, "second, with defaults")};
  assert_int_equal(stu_write_ops(eg, ops, 2), 0);
  assert_string_equal(ops[0].result_id, given);
  assert_int_equal(ops[0].deduplicated, 0);
  assert_true(engram_id_valid(ops[1].result_id));

  PGresult *r = query(db, "SELECT ns, type, content, content_hash,"
                          " created_ms = updated_ms AND"
                          " updated_ms = accessed_ms, importance,"
                          " metadata, encode(embedding, 'hex'), embedding_dim"
                          " FROM memories ORDER BY created_ms, content");
  assert_int_equal(PQntuples(r), 2);
  int row = strcmp(PQgetvalue(r, 0, 2), "how to brew: grind, pour, wait") == 0
                ? 0
                : 1;
  assert_string_equal(PQgetvalue(r, row, 0), NS);
  assert_string_equal(PQgetvalue(r, row, 1), "2");
  const char *content = "how to brew: grind, pour, wait";
  char hash[32];
  snprintf(hash, sizeof hash, "%lld",
           (long long)(int64_t)core_hash(content, strlen(content)));
  assert_string_equal(PQgetvalue(r, row, 3), hash);
  assert_string_equal(PQgetvalue(r, row, 4), "t");
  assert_string_equal(PQgetvalue(r, row, 5), "0.75");
  assert_string_equal(PQgetvalue(r, row, 6), "{\"source\": \"manual\"}");
  /* float32 little-endian: 1.0 = 00 00 80 3f, -2.5 = 00 00 20 c0 */
  assert_string_equal(PQgetvalue(r, row, 7), "0000803f000020c000000000");
  assert_string_equal(PQgetvalue(r, row, 8), "3");
  int other = 1 - row;
  assert_string_equal(PQgetvalue(r, other, 5), "0.5");
  assert_string_equal(PQgetvalue(r, other, 6), "{}");
  assert_true(PQgetisnull(r, other, 7));
  assert_string_equal(PQgetvalue(r, other, 8), "0");
  PQclear(r);

  /* One ADD history row each, with the new content. */
  assert_int_equal(count_rows(db,
                              "SELECT count(*) FROM history WHERE event = 0"
                              " AND old_content IS NULL AND memory_id = '%s'"
                              " AND new_content = '%s'",
                              given, content),
                   1);
  /* The same id again: EEXIST, and the batch writes nothing. */
  engram_op again[2] = {add_op(NS, "would be new"), add_op(NS, "dup id")};
  again[1].id = given;
  assert_int_equal(stu_write_ops(eg, again, 2), ENGRAM_EEXIST);
  assert_int_equal(again[1].status, ENGRAM_EEXIST);
  assert_non_null(strstr(again[1].message, "already exists"));
  assert_int_equal(again[0].status, ENGRAM_ECANCELED);
  assert_int_equal(count_rows(db,
                              "SELECT count(*) FROM memories WHERE content = "
                              "'would be new'"),
                   0);
  engram_stats s;
  engram_get_stats(eg, &s);
  assert_int_equal(s.writes_committed, 2);
  tu_close(eg);
  free(db);
}

static void test_dedup_returns_existing(void **state) {
  (void)state;
  char *db = fresh_db("w_dedup");
  engram *eg = tu_open(db, NULL);
  char first[ENGRAM_ID_LEN + 1];
  add(eg, NS, "the same words", first);
  engram_op ops[3] = {add_op(NS, "the same words"),
                      add_op(OTHER, "the same words"),
                      add_op(NS, "fresh words")};
  for (int i = 0; i < 3; i++)
    ops[i].dedup = 1;
  assert_int_equal(stu_write_ops(eg, ops, 3), 0);
  assert_int_equal(ops[0].deduplicated, 1);
  assert_string_equal(ops[0].result_id, first);
  assert_int_equal(ops[1].deduplicated, 0); /* another namespace */
  assert_string_not_equal(ops[1].result_id, first);
  assert_int_equal(ops[2].deduplicated, 0);
  /* Within one batch: the second finds the first. */
  engram_op twice[2] = {add_op(NS, "twice in a batch"),
                        add_op(NS, "twice in a batch")};
  twice[0].dedup = twice[1].dedup = 1;
  assert_int_equal(stu_write_ops(eg, twice, 2), 0);
  assert_int_equal(twice[0].deduplicated, 0);
  assert_int_equal(twice[1].deduplicated, 1);
  assert_string_equal(twice[0].result_id, twice[1].result_id);
  assert_int_equal(count_rows(db,
                              "SELECT count(*) FROM memories WHERE content = "
                              "'the same words'"),
                   2);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories"), 4);
  /* A deduplicated add writes no history row. */
  assert_int_equal(count_rows(db, "SELECT count(*) FROM history"), 4);
  tu_close(eg);
  free(db);
}

static void test_update_each_field_and_history(void **state) {
  (void)state;
  char *db = fresh_db("w_update");
  engram *eg = tu_open(db, &no_embedder); /* the caller's vectors, kept */
  char id[ENGRAM_ID_LEN + 1];
  static const float emb[2] = {0.5f, 0.25f};
  engram_op a = add_op(NS, "before");
  a.embedding = emb;
  a.embedding_dim = 2;
  assert_int_equal(stu_write_ops(eg, &a, 1), 0);
  memcpy(id, a.result_id, sizeof id);

  engram_op u = {.kind = ENGRAM_OP_UPDATE,
                 .ns = NS,
                 .id = id,
                 .content = "after",
                 .type = ENGRAM_WORKING,
                 .importance = 0.125,
                 .metadata = "{\"k\": 1}",
                 .set = ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE |
                        ENGRAM_SET_IMPORTANCE | ENGRAM_SET_METADATA};
  assert_int_equal(stu_write_ops(eg, &u, 1), 0);
  PGresult *r = query(db, "SELECT content, content_hash, type, importance,"
                          " metadata, encode(embedding, 'hex'),"
                          " embedding_dim, updated_ms >= created_ms"
                          " FROM memories");
  assert_int_equal(PQntuples(r), 1);
  char hash[32];
  snprintf(hash, sizeof hash, "%lld",
           (long long)(int64_t)core_hash("after", 5));
  assert_string_equal(PQgetvalue(r, 0, 0), "after");
  assert_string_equal(PQgetvalue(r, 0, 1), hash);
  assert_string_equal(PQgetvalue(r, 0, 2), "3");
  assert_string_equal(PQgetvalue(r, 0, 3), "0.125");
  assert_string_equal(PQgetvalue(r, 0, 4), "{\"k\": 1}");
  assert_string_equal(PQgetvalue(r, 0, 5), "0000003f0000803e"); /* kept */
  assert_string_equal(PQgetvalue(r, 0, 6), "2");
  assert_string_equal(PQgetvalue(r, 0, 7), "t");
  PQclear(r);

  /* Only the embedding: removed; the history row repeats the content. */
  engram_op e = {.kind = ENGRAM_OP_UPDATE,
                 .ns = NS,
                 .id = id,
                 .set = ENGRAM_SET_EMBEDDING};
  assert_int_equal(stu_write_ops(eg, &e, 1), 0);
  assert_string_equal(scalar(db,
                             "SELECT (embedding IS NULL)::text || embedding_dim"
                             " FROM memories"),
                      "true0");
  r = query(db, "SELECT event, old_content, new_content FROM history"
                " ORDER BY seq");
  assert_int_equal(PQntuples(r), 3);
  assert_string_equal(PQgetvalue(r, 1, 0), "1");
  assert_string_equal(PQgetvalue(r, 1, 1), "before");
  assert_string_equal(PQgetvalue(r, 1, 2), "after");
  assert_string_equal(PQgetvalue(r, 2, 1), "after");
  assert_string_equal(PQgetvalue(r, 2, 2), "after");
  PQclear(r);

  /* A missing id, and an id of another namespace: ENOTFOUND, named. */
  char missing[ENGRAM_ID_LEN + 1];
  engram_id_new(missing);
  engram_op m = {.kind = ENGRAM_OP_UPDATE,
                 .ns = NS,
                 .id = missing,
                 .content = "x",
                 .set = ENGRAM_SET_CONTENT};
  assert_int_equal(stu_write_ops(eg, &m, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(m.message, missing));
  assert_non_null(strstr(m.message, NS));
  m.id = id;
  m.ns = OTHER;
  assert_int_equal(stu_write_ops(eg, &m, 1), ENGRAM_ENOTFOUND);
  assert_string_equal(scalar(db, "SELECT content FROM memories"), "after");
  tu_close(eg);
  free(db);
}

static void test_delete_link_unlink(void **state) {
  (void)state;
  char *db = fresh_db("w_links");
  engram *eg = tu_open(db, NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1], c[ENGRAM_ID_LEN + 1],
      elsewhere[ENGRAM_ID_LEN + 1];
  add(eg, NS, "node a", a);
  add(eg, NS, "node b", b);
  add(eg, NS, "node c", c);
  add(eg, OTHER, "node elsewhere", elsewhere);

  assert_int_equal(stu_link(eg, NS, a, b, "next", 0.5), 0);
  assert_int_equal(stu_link(eg, NS, c, a, "next", 0.5), 0);
  /* Linking again replaces the strength. */
  assert_int_equal(stu_link(eg, NS, a, b, "next", 0.9), 0);
  assert_string_equal(
      scalar(db,
             "SELECT count(*) || ':' || max(strength) FROM relationships"
             " WHERE source = '%s'",
             a),
      "1:0.9");

  /* Ends that are missing or in another namespace: ENOTFOUND, which end. */
  engram_op l = {.kind = ENGRAM_OP_LINK,
                 .ns = NS,
                 .source = a,
                 .target = elsewhere,
                 .rel_kind = "next",
                 .strength = 1};
  assert_int_equal(stu_write_ops(eg, &l, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(l.message, "target"));
  assert_non_null(strstr(l.message, elsewhere));
  l.source = elsewhere;
  l.target = a;
  assert_int_equal(stu_write_ops(eg, &l, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(l.message, "source"));

  /* Unlink: once, then ENOTFOUND. */
  engram_op u = {.kind = ENGRAM_OP_UNLINK,
                 .ns = NS,
                 .source = c,
                 .target = a,
                 .rel_kind = "next"};
  assert_int_equal(stu_write_ops(eg, &u, 1), 0);
  assert_int_equal(stu_write_ops(eg, &u, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(u.message, "relationship"));
  assert_int_equal(count_rows(db, "SELECT count(*) FROM relationships"), 1);

  /* Delete removes the memory, its relationships, and records history. */
  assert_int_equal(stu_link(eg, NS, c, a, "next", 0.3), 0);
  assert_int_equal(stu_delete(eg, NS, a), 0);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM relationships"), 0);
  assert_int_equal(
      count_rows(db, "SELECT count(*) FROM memories WHERE id = '%s'", a), 0);
  assert_int_equal(count_rows(db,
                              "SELECT count(*) FROM history WHERE event = 2"
                              " AND memory_id = '%s' AND old_content ="
                              " 'node a' AND new_content IS NULL",
                              a),
                   1);
  engram_op d = {.kind = ENGRAM_OP_DELETE, .ns = NS, .id = a};
  assert_int_equal(stu_write_ops(eg, &d, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(d.message, a));
  /* Another namespace's memory cannot be deleted from this one. */
  d.id = elsewhere;
  assert_int_equal(stu_write_ops(eg, &d, 1), ENGRAM_ENOTFOUND);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories"), 3);
  tu_close(eg);
  free(db);
}

/* ------------------------------------------------------------ atomicity */

static void test_failing_batch_in_a_group(void **state) {
  (void)state;
  char *db = fresh_db("w_group");
  engram *eg = tu_open(db, NULL);
  char keep[ENGRAM_ID_LEN + 1], missing[ENGRAM_ID_LEN + 1];
  add(eg, NS, "kept", keep);
  engram_id_new(missing);
  engram_stats before;
  engram_get_stats(eg, &before);

  /* Five batches queued at once: the first goes alone (the writer was
   * idle), the other four form one group in which two batches fail in
   * their middle. */
  enum { N = 5 };
  pending p[N];
  memset(p, 0, sizeof p);
  engram_op b0[1] = {add_op(NS, "batch 0")};
  engram_op b1[3] = {add_op(NS, "batch 1 first"),
                     {.kind = ENGRAM_OP_UPDATE,
                      .ns = NS,
                      .id = missing,
                      .importance = 1,
                      .set = ENGRAM_SET_IMPORTANCE},
                     add_op(NS, "batch 1 last")};
  engram_op b2[2] = {add_op(NS, "batch 2 first"),
                     {.kind = ENGRAM_OP_UPDATE,
                      .ns = NS,
                      .id = keep,
                      .content = "kept, updated",
                      .set = ENGRAM_SET_CONTENT}};
  engram_op b3[3] = {{.kind = ENGRAM_OP_DELETE, .ns = NS, .id = keep},
                     {.kind = ENGRAM_OP_UNLINK,
                      .ns = NS,
                      .source = keep,
                      .target = missing,
                      .rel_kind = "none"},
                     add_op(NS, "batch 3 last")};
  engram_op b4[1] = {add_op(NS, "batch 4")};
  engram_op *batches[N] = {b0, b1, b2, b3, b4};
  size_t sizes[N] = {1, 3, 2, 3, 1};
  for (int i = 0; i < N; i++)
    assert_int_equal(engram_write(eg, batches[i], sizes[i], on_pending, &p[i]),
                     0);
  for (int i = 0; i < N; i++)
    tu_run_until(eg, &p[i].done);

  assert_int_equal(p[0].status, 0);
  assert_int_equal(p[1].status, ENGRAM_ENOTFOUND);
  assert_int_equal(p[1].ops[0].status, ENGRAM_ECANCELED);
  assert_int_equal(p[1].ops[1].status, ENGRAM_ENOTFOUND);
  assert_non_null(strstr(p[1].ops[1].message, missing));
  assert_int_equal(p[1].ops[2].status, ENGRAM_ECANCELED);
  assert_non_null(strstr(p[1].ops[2].message, "op 1"));
  assert_int_equal(p[2].status, 0);
  assert_int_equal(p[3].status, ENGRAM_ENOTFOUND);
  assert_int_equal(p[3].ops[1].status, ENGRAM_ENOTFOUND);
  assert_non_null(strstr(p[3].ops[1].message, "\"none\""));
  assert_int_equal(p[4].status, 0);

  /* Nothing of the failed batches, everything of the others. */
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories WHERE"
                                  " content LIKE 'batch 1%%' OR content LIKE"
                                  " 'batch 3%%'"),
                   0);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories WHERE"
                                  " content IN ('batch 0', 'batch 2 first',"
                                  " 'batch 4', 'kept, updated')"),
                   4);
  assert_string_equal(
      scalar(db, "SELECT content FROM memories WHERE id = '%s'", keep),
      "kept, updated");
  assert_int_equal(
      count_rows(db,
                 "SELECT count(*) FROM history WHERE memory_id = '%s'"
                 " AND event = 2",
                 keep),
      0);
  engram_stats after;
  engram_get_stats(eg, &after);
  assert_int_equal(after.writes_committed - before.writes_committed, 4);
  tu_close(eg);
  free(db);
}

/* ------------------------------------------------ locks held elsewhere */

typedef struct other_session {
  PGconn *pg;
  const char *sql;
  int ok; /* its statement succeeded */
} other_session;

static void other_exec(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(pg));
  PQclear(r);
}

static void other_send(void *data) {
  other_session *o = data;
  assert_int_equal(PQsendQuery(o->pg, o->sql), 1);
}

/* Takes the answer of other_send (the server answered long ago: blocking
 * here is for a moment), then commits, releasing the writer. */
static void other_finish(void *data) {
  other_session *o = data;
  PGresult *r;
  o->ok = 1;
  while ((r = PQgetResult(o->pg)) != NULL) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      o->ok = 0;
    PQclear(r);
  }
  other_exec(o->pg, o->ok ? "COMMIT" : "ROLLBACK");
}

static void test_deadlock_victim_runs_again(void **state) {
  (void)state;
  char *db = fresh_db("w_deadlock");
  engram *eg = tu_open(db, NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1];
  add(eg, NS, "row a", a);
  add(eg, NS, "row b", b);
  other_session o = {.pg = PQconnectdb(db)};
  assert_int_equal(PQstatus(o.pg), CONNECTION_OK);
  char sql[256];
  snprintf(sql, sizeof sql,
           "BEGIN; UPDATE memories SET importance = 0.9 WHERE id = '%s'", a);
  other_exec(o.pg, sql);
  /* The writer locks b, then waits for a; 300 ms later the other session
   * asks for b: a deadlock, which the writer's backend (waiting longest)
   * finds after deadlock_timeout (1 s) and breaks by failing the group.
   * The group then runs again once the other session commits. */
  engram_op ops[2] = {{.kind = ENGRAM_OP_UPDATE,
                       .ns = NS,
                       .id = b,
                       .content = "row b, updated",
                       .set = ENGRAM_SET_CONTENT},
                      {.kind = ENGRAM_OP_UPDATE,
                       .ns = NS,
                       .id = a,
                       .content = "row a, updated",
                       .set = ENGRAM_SET_CONTENT}};
  char other_sql[128];
  snprintf(other_sql, sizeof other_sql,
           "UPDATE memories SET importance = 0.1 WHERE id = '%s'", b);
  o.sql = other_sql;
  pending p = {0};
  assert_int_equal(engram_write(eg, ops, 2, on_pending, &p), 0);
  tl_after(engram_loop(eg), 300, other_send, &o);
  tl_after(engram_loop(eg), 2500, other_finish, &o);
  tu_run_until(eg, &p.done);
  assert_int_equal(p.status, 0);
  assert_true(o.ok); /* the other session won: the writer ran again */
  assert_string_equal(scalar(db,
                             "SELECT content || ' ' || importance FROM memories"
                             " WHERE id = '%s'",
                             a),
                      "row a, updated 0.9");
  assert_string_equal(scalar(db,
                             "SELECT content || ' ' || importance FROM memories"
                             " WHERE id = '%s'",
                             b),
                      "row b, updated 0.1");
  assert_int_equal(count_rows(db, "SELECT count(*) FROM history"), 4);
  PQfinish(o.pg);
  tu_close(eg);
  free(db);
}

static void test_lock_held_past_timeout(void **state) {
  (void)state;
  char *db = fresh_db("w_locked");
  engram *eg = tu_open(db, NULL);
  char a[ENGRAM_ID_LEN + 1];
  add(eg, NS, "before the lock", a);
  PGconn *other = PQconnectdb(db);
  assert_int_equal(PQstatus(other), CONNECTION_OK);
  other_exec(other, "BEGIN; LOCK TABLE memories IN EXCLUSIVE MODE");
  engram_op op = add_op(NS, "refused");
  assert_int_equal(stu_write_ops(eg, &op, 1), ENGRAM_EBUSY);
  assert_non_null(strstr(op.message, "lock"));
  other_exec(other, "COMMIT");
  PQfinish(other);
  op = add_op(NS, "after the lock");
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories"), 2);
  tu_close(eg);
  free(db);
}

/* ------------------------------------------------------ dedup race */

enum { RACE = 40 };

typedef struct racer {
  engram *eg;
  pending p[RACE];
  engram_op ops[RACE];
  char content[RACE][32];
} racer;

static void race_start(racer *r, int reverse) {
  for (int k = 0; k < RACE; k++) {
    int i = reverse ? RACE - 1 - k : k;
    snprintf(r->content[i], sizeof r->content[i], "raced content %d", i);
    r->ops[i] = add_op(NS, r->content[i]);
    r->ops[i].dedup = 1;
    assert_int_equal(engram_write(r->eg, &r->ops[i], 1, on_pending, &r->p[i]),
                     0);
  }
}

static int race_done(const racer *r) {
  for (int i = 0; i < RACE; i++)
    if (!r->p[i].done)
      return 0;
  return 1;
}

static void test_dedup_race_two_handles(void **state) {
  (void)state;
  char *db = fresh_db("w_race");
  racer *r = calloc(2, sizeof *r);
  assert_non_null(r);
  r[0].eg = tu_open(db, NULL);
  r[1].eg = tu_open(db, NULL);
  /* Opposite orders: the advisory locks are taken in opposite orders too,
   * so the two transactions may deadlock; the loser's group runs again. */
  race_start(&r[0], 0);
  race_start(&r[1], 1);
  while (!race_done(&r[0]) || !race_done(&r[1])) {
    uv_run(engram_loop(r[0].eg), UV_RUN_NOWAIT);
    uv_run(engram_loop(r[1].eg), UV_RUN_NOWAIT);
  }
  for (int i = 0; i < RACE; i++) {
    assert_int_equal(r[0].p[i].status, 0);
    assert_int_equal(r[1].p[i].status, 0);
    /* Both were told the same id; exactly one of them stored it. */
    assert_string_equal(r[0].p[i].ops[0].result_id, r[1].p[i].ops[0].result_id);
    assert_int_equal(
        r[0].p[i].ops[0].deduplicated + r[1].p[i].ops[0].deduplicated, 1);
  }
  assert_int_equal(count_rows(db, "SELECT count(*) FROM memories"), RACE);
  assert_int_equal(count_rows(db, "SELECT count(DISTINCT content) FROM"
                                  " memories"),
                   RACE);
  assert_int_equal(count_rows(db, "SELECT count(*) FROM history"), RACE);
  tu_close(r[0].eg);
  tu_close(r[1].eg);
  free(r);
  free(db);
}

/* --------------------------------------------------------- server restart */

/* scripts/pgtest.sh of this source tree. */
static const char *pgtest_script(void) {
  static char path[1024];
  const char *file = __FILE__;
  const char *slash = strrchr(file, '/');
  if (!slash) {
    snprintf(path, sizeof path, "../scripts/pgtest.sh");
    return path;
  }
  snprintf(path, sizeof path, "%.*s/../scripts/pgtest.sh", (int)(slash - file),
           file);
  return path;
}

static void pgtest(const char *cmd, const char *dir) {
  char line[2048];
  snprintf(line, sizeof line, "bash %s %s %s >/dev/null", pgtest_script(), cmd,
           dir);
  assert_int_equal(system(line), 0);
}

enum { FLOOD = 400 };

typedef struct flood {
  pending p[FLOOD];
  engram_op ops[FLOOD];
  char content[FLOOD][32];
  int refused[FLOOD]; /* engram_write itself returned this */
  int issued;
} flood;

static void flood_issue(engram *eg, flood *f, int upto) {
  for (; f->issued < upto; f->issued++) {
    int i = f->issued;
    snprintf(f->content[i], sizeof f->content[i], "flood %d", i);
    f->ops[i] = add_op(NS, f->content[i]);
    int rc = engram_write(eg, &f->ops[i], 1, on_pending, &f->p[i]);
    if (rc != 0) {
      f->refused[i] = rc;
      f->p[i].done = 1;
      f->p[i].status = rc;
    }
  }
}

static int flood_done(void *arg) {
  flood *f = arg;
  for (int i = 0; i < f->issued; i++)
    if (!f->p[i].done)
      return 0;
  return 1;
}

/* 1 when r (id, content rows) holds the memory id with content. */
static int has_row(const PGresult *r, const char *id, const char *content) {
  for (int row = 0; row < PQntuples(r); row++)
    if (strcmp(PQgetvalue(r, row, 0), id) == 0)
      return strcmp(PQgetvalue(r, row, 1), content) == 0;
  return 0;
}

/* Every acknowledged write is in the database; every other one failed
 * with EIO (after the write was queued, or at once). Returns how many
 * failed. */
static int flood_check(const char *db, flood *f) {
  int failed = 0;
  const char *last = "";
  PGresult *r = query(db, "SELECT id, content FROM memories");
  for (int i = 0; i < f->issued; i++) {
    pending *p = &f->p[i];
    if (p->status == 0) {
      if (!has_row(r, p->ops[0].result_id, f->content[i]))
        fail_msg("acknowledged write %d (%s) is missing", i,
                 p->ops[0].result_id);
      continue;
    }
    const char *said =
        f->refused[i] ? "(refused by engram_write)" : p->ops[0].message;
    if (failed++ == 0 || strcmp(said, last) != 0)
      print_message("write %d failed: %s: %s\n", i, engram_errname(p->status),
                    said);
    last = said;
    if (p->status != ENGRAM_EIO)
      fail_msg("write %d failed with %s: %s", i, engram_errname(p->status),
               said);
    if (!f->refused[i] && !strstr(said, "may or may not") &&
        !strstr(said, "PostgreSQL at"))
      fail_msg("write %d: EIO without a useful message: %s", i, said);
  }
  PQclear(r);
  return failed;
}

static int marker_exists(void *arg) {
  return access((const char *)arg, F_OK) == 0;
}

typedef struct retry_state {
  engram *eg;
  pending p;
  engram_op op;
  int ok;
  int tries;
} retry_state;

/* Writes until one write succeeds (the pool reconnects with backoff). */
static void write_until_ok(retry_state *r) {
  for (;;) {
    memset(&r->p, 0, sizeof r->p);
    r->op = add_op(NS, "after the restart");
    r->tries++;
    int rc = engram_write(r->eg, &r->op, 1, on_pending, &r->p);
    if (rc == 0) {
      tu_run_until(r->eg, &r->p.done);
      if (r->p.status == 0) {
        r->ok = 1;
        return;
      }
      assert_int_equal(r->p.status, ENGRAM_EIO);
    } else {
      assert_int_equal(rc, ENGRAM_EIO);
    }
    if (r->tries > 400)
      fail_msg("no write succeeded within 400 tries after the restart");
    tl_run_for(engram_loop(r->eg), 50);
  }
}

static void test_server_restart_mid_commit(void **state) {
  (void)state;
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/engram-pgw-%d", (int)getpid());
  char line[2048];
  snprintf(line, sizeof line, "bash %s start %s >/dev/null", pgtest_script(),
           dir);
  if (system(line) != 0) {
    print_message("skipped: cannot start a private PostgreSQL server with "
                  "%s\n",
                  pgtest_script());
    skip();
  }
  char conninfo_path[300];
  snprintf(conninfo_path, sizeof conninfo_path, "%s/conninfo", dir);
  FILE *cf = fopen(conninfo_path, "r");
  assert_non_null(cf);
  char db[512] = {0};
  assert_non_null(fgets(db, sizeof db, cf));
  fclose(cf);
  db[strcspn(db, "\n")] = '\0';
  tu_pg_exec(db, "SET client_min_messages = warning;"
                 " DROP TABLE IF EXISTS memories, relationships, history,"
                 " engram_schema");

  engram *eg = tu_open(db, NULL);
  flood *f = calloc(1, sizeof *f);
  assert_non_null(f);

  /* Phase 1: the server goes away with a group on the wire (held there by
   * a trigger that sleeps on the first write) and batches queued behind
   * it, and is back before the loop runs again. The group's outcome is
   * unknown to the writer: it must say so, and the queued batches must go
   * through. */
  tu_pg_exec(db, "CREATE FUNCTION slow_first() RETURNS trigger"
                 " LANGUAGE plpgsql AS $$ BEGIN"
                 " IF NEW.content = 'flood 0' THEN PERFORM pg_sleep(60);"
                 " END IF; RETURN NEW; END $$;"
                 " CREATE TRIGGER slow_first BEFORE INSERT ON memories"
                 " FOR EACH ROW EXECUTE FUNCTION slow_first()");
  flood_issue(eg, f, 50);
  tl_run_for(engram_loop(eg), 200); /* the first group sleeps */
  flood_issue(eg, f, 150);
  pgtest("restart", dir);
  assert_true(tl_run_until(engram_loop(eg), flood_done, f, 60000));
  int failed1 = flood_check(db, f);
  assert_int_equal(f->p[0].status, ENGRAM_EIO);
  assert_non_null(strstr(f->p[0].ops[0].message, "may or may not"));
  assert_int_equal(f->p[149].status, 0);

  /* Phase 2: the server restarts in the background while writes keep
   * coming; some find it unreachable. */
  char marker[300];
  snprintf(marker, sizeof marker, "%s/restarted", dir);
  unlink(marker);
  snprintf(line, sizeof line,
           "(sleep 0.2; bash %s restart %s; touch %s) >/dev/null 2>&1 &",
           pgtest_script(), dir, marker);
  assert_int_equal(system(line), 0);
  while (f->issued < FLOOD) {
    flood_issue(eg, f, f->issued + 5);
    tl_run_for(engram_loop(eg), 10);
  }
  assert_true(tl_run_until(engram_loop(eg), flood_done, f, 60000));
  assert_true(tl_run_until(engram_loop(eg), marker_exists, marker, 60000));
  int failed = flood_check(db, f);
  print_message("restart: %d of %d writes failed with EIO (%d in phase 1)\n",
                failed, FLOOD, failed1);

  /* Later writes succeed once the server is back. */
  retry_state r = {.eg = eg};
  write_until_ok(&r);
  assert_true(r.ok);
  assert_int_equal(count_rows(db,
                              "SELECT count(*) FROM memories WHERE id = '%s'",
                              r.p.ops[0].result_id),
                   1);
  tu_close(eg);
  free(f);
  pgtest("stop", dir);
  snprintf(line, sizeof line, "rm -rf %s", dir);
  assert_int_equal(system(line), 0);
}

int main(void) {
  if (!tu_backend_is_pg()) {
    printf("test_pg_writer runs on PostgreSQL only (ENGRAM_TEST_BACKEND=pg)"
           "\n");
    return TU_SKIP;
  }
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_stores_every_column),
      cmocka_unit_test(test_dedup_returns_existing),
      cmocka_unit_test(test_update_each_field_and_history),
      cmocka_unit_test(test_delete_link_unlink),
      cmocka_unit_test(test_failing_batch_in_a_group),
      cmocka_unit_test(test_deadlock_victim_runs_again),
      cmocka_unit_test(test_lock_held_past_timeout),
      cmocka_unit_test(test_dedup_race_two_handles),
      cmocka_unit_test(test_server_restart_mid_commit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
