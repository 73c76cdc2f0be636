/*
 * test_embeddings.c — vectors computed on write (issue 6): the default
 * hashed embedder gives every ADD and content UPDATE its vector, a
 * caller's vector is refused unless it is the configured embedder's (or
 * there is none), the database's vector space refuses mixing, switching
 * embedders through engram_reembed (progress, errors, closing mid-run,
 * resuming), the write queue keeping writes in order while they wait for
 * their vectors, an embedder that fails, the change sequence the vector
 * index catches up with, and engram_embedder_parse.
 *
 * It runs unchanged on both backends (test_embeddings on SQLite files,
 * test_embeddings_pg on PostgreSQL, see tu.h). The expected vectors are
 * computed here with search_hashed_embed (src/search/embed.h), the same
 * code the library runs, so a test fails when the library stores another
 * text's vector, another dimension's, or none.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "search/embed.h"
#include "store_tu.h"
#include "testloop.h"
#include "tu.h"

#define NS "emb-ns"
#define NS2 "emb-other"

/* ---------------------------------------------------------------- helpers */

static engram_options opts_hashed(unsigned dim) {
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_HASHED;
  o.embedder.dim = dim;
  return o;
}

static engram_options opts_none(void) {
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_NONE;
  return o;
}

/* tu_db_path's buffer is static: tests that reopen keep a copy. */
static char *fresh_db(const char *name) {
  char *p = strdup(tu_db_path(name));
  assert_non_null(p);
  return p;
}

/* Fails unless n holds the hashed-v1 vector of its own content, dim dim. */
static void expect_hashed_vector(const engram_node *n, size_t dim) {
  assert_non_null(n->embedding);
  assert_int_equal(n->embedding_dim, dim);
  assert_non_null(n->embedder);
  assert_string_equal(n->embedder, "hashed-v1");
  search_hashed_options o;
  search_hashed_options_default(&o);
  o.dim = dim;
  search_hashed h;
  assert_int_equal(search_hashed_init(&h, &o), 0);
  float *want = calloc(dim, sizeof *want);
  assert_non_null(want);
  assert_int_equal(search_hashed_embed(&h, n->content, n->content_len, want),
                   0);
  double norm = 0;
  for (size_t i = 0; i < dim; i++) {
    norm += (double)want[i] * want[i];
    if (fabsf(want[i] - n->embedding[i]) > 1e-6f) {
      float w = want[i], g = n->embedding[i];
      free(want);
      fail_msg("memory %s (\"%s\"): vector[%zu] is %g, the hashed embedder "
               "gives %g",
               n->id, n->content, i, (double)g, (double)w);
    }
  }
  free(want);
  assert_true(norm > 0.5); /* the content has words: a unit vector */
}

static void add_ok(engram *eg, const char *ns, const char *content,
                   char id[ENGRAM_ID_LEN + 1]) {
  int rc = tu_add(eg, ns, content, ENGRAM_SEMANTIC, id);
  if (rc != 0)
    fail_msg("add \"%s\" in %s: %s", content, ns, engram_errname(rc));
}

/* An ADD that is accepted by engram_write and fails in its callback. */
static int add_failing(engram *eg, const char *ns, const char *content,
                       char *message, size_t len) {
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = ns, .content = content};
  int rc = stu_write_ops(eg, &op, 1);
  snprintf(message, len, "%s", op.message);
  return rc;
}

static uint64_t count_all(engram *eg) {
  stu_coll c;
  engram_query q = {.ns = NULL};
  assert_int_equal(stu_list(eg, &q, 256, &c), 0);
  uint64_t n = c.n;
  stu_coll_free(&c);
  return n;
}

/* Every memory of the database (all namespaces) has the hashed-v1 vector
 * of its content at dim; returns how many there are. */
static size_t expect_all_hashed(engram *eg, size_t dim) {
  stu_coll c;
  engram_query q = {.ns = NULL};
  assert_int_equal(stu_list(eg, &q, 256, &c), 0);
  for (size_t i = 0; i < c.n; i++)
    expect_hashed_vector(c.nodes[i], dim);
  size_t n = c.n;
  stu_coll_free(&c);
  return n;
}

/* engram_reembed's callbacks. */
typedef struct reembed_state {
  int progress; /* done == 0 calls */
  int finals;   /* done == 1 calls: exactly one */
  int bad_progress;
  int status;
  char message[256];
  uint64_t scanned, reembedded;
  uint64_t last_reembedded;
  int *closed; /* when set: whether the handle's close callback had run */
  int final_after_close;
} reembed_state;

static void on_reembed(const engram_reembed_progress *p, void *data) {
  reembed_state *r = data;
  if (r->finals)
    r->finals++; /* a callback after the final one: counted, then failed */
  if (!p->done) {
    r->progress++;
    if (p->status != 0 || p->message || p->reembedded < r->last_reembedded)
      r->bad_progress++;
    r->last_reembedded = p->reembedded;
    return;
  }
  if (!r->finals)
    r->finals = 1;
  if (r->closed && *r->closed)
    r->final_after_close = 1;
  r->status = p->status;
  snprintf(r->message, sizeof r->message, "%s", p->message ? p->message : "");
  r->scanned = p->scanned;
  r->reembedded = p->reembedded;
}

static void reembed_wait(engram *eg, reembed_state *r) {
  memset(r, 0, sizeof *r);
  assert_int_equal(engram_reembed(eg, on_reembed, r), 0);
  tu_run_until(eg, &r->finals);
  assert_int_equal(r->finals, 1);
  if (r->status != 0)
    fail_msg("reembed: %s: %s", engram_errname(r->status), r->message);
  assert_int_equal(r->bad_progress, 0);
}

typedef struct close_state {
  int closed;
} close_state;

static void on_closed(engram *eg, void *data) {
  (void)eg;
  ((close_state *)data)->closed = 1;
}

static void close_and_free(engram *eg, close_state *c) {
  engram_close(eg, on_closed, c);
  engram_run(eg);
  assert_true(c->closed);
  engram_free(eg);
}

/* A query of one integer through the backend's own client (tests may
 * block); param (may be NULL) is $1. -1 when there is no row. */
static long long db_int(const char *db, const char *sql, const char *param) {
  long long v = -1;
  if (tu_backend_is_pg()) {
    PGconn *c = PQconnectdb(db);
    if (PQstatus(c) != CONNECTION_OK) {
      PQfinish(c);
      fail_msg("connecting to %s failed", db);
    }
    const char *params[1] = {param};
    PGresult *r =
        PQexecParams(c, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      char why[256];
      snprintf(why, sizeof why, "%s", PQerrorMessage(c));
      PQclear(r);
      PQfinish(c);
      fail_msg("%s: %s", sql, why);
    }
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
      v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
  }
  sqlite3 *s = NULL;
  assert_int_equal(sqlite3_open_v2(db, &s, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(s, sql, -1, &q, NULL) != SQLITE_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", sqlite3_errmsg(s));
    sqlite3_close(s);
    fail_msg("%s: %s", sql, why);
  }
  if (param)
    sqlite3_bind_text(q, 1, param, -1, SQLITE_STATIC);
  if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
    v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(s);
  return v;
}

/* ---------------------------------------------------- 1. default embedder */

static void test_default_embedder_vector(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("emb-default"), NULL);
  uint32_t dim = 0;
  const char *name = engram_embedder_name(eg, &dim);
  assert_non_null(name);
  assert_string_equal(name, "hashed-v1");
  assert_int_equal(dim, 384);

  char id[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "Caroline went to the LGBTQ support group on Tuesday", id);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_int_equal(n->embedding_dim, 384);
  expect_hashed_vector(n, 384);
  engram_node_free(n);

  /* A text without words gets the zero vector, still stored and named. */
  add_ok(eg, NS, "...", id);
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_non_null(n->embedding);
  assert_int_equal(n->embedding_dim, 384);
  assert_string_equal(n->embedder, "hashed-v1");
  for (size_t i = 0; i < 384; i++)
    assert_true(n->embedding[i] == 0.0f);
  engram_node_free(n);
  tu_close(eg);
}

/* ------------------------------------------------------------- 2. updates */

static void test_update_recomputes_vector(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("emb-update"), NULL);
  char id[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "the garden has tomatoes and basil", id);
  engram_node *before = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &before), 0);
  expect_hashed_vector(before, 384);

  assert_int_equal(
      stu_update_content(eg, NS, id, "the bicycle needs a new chain"), 0);
  engram_node *after = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &after), 0);
  assert_string_equal(after->content, "the bicycle needs a new chain");
  expect_hashed_vector(after, 384);
  assert_true(
      memcmp(before->embedding, after->embedding, 384 * sizeof(float)) != 0);

  /* Importance only: the vector stays bit for bit. */
  engram_op op = {.kind = ENGRAM_OP_UPDATE,
                  .ns = NS,
                  .id = id,
                  .importance = 0.9,
                  .set = ENGRAM_SET_IMPORTANCE};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  engram_node *same = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &same), 0);
  assert_true(fabs(same->importance - 0.9) < 1e-9);
  assert_int_equal(same->embedding_dim, 384);
  assert_string_equal(same->embedder, "hashed-v1");
  assert_memory_equal(same->embedding, after->embedding, 384 * sizeof(float));

  /* Content and type together: still the new content's vector. */
  engram_op both = {.kind = ENGRAM_OP_UPDATE,
                    .ns = NS,
                    .id = id,
                    .content = "a recipe for lentil soup",
                    .type = ENGRAM_PROCEDURAL,
                    .set = ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE};
  assert_int_equal(stu_write_ops(eg, &both, 1), 0);
  engram_node *third = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &third), 0);
  assert_int_equal(third->type, ENGRAM_PROCEDURAL);
  expect_hashed_vector(third, 384);
  engram_node_free(before);
  engram_node_free(after);
  engram_node_free(same);
  engram_node_free(third);
  tu_close(eg);
}

/* ------------------------------------------ 3. a caller's vector, default */

static void test_caller_vector_with_default_embedder(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("emb-caller"), NULL);
  float small[3] = {0.5f, 0.5f, 0.70710678f};
  static float big[384];
  for (size_t i = 0; i < 384; i++)
    big[i] = (i % 7 == 0) ? 0.125f : -0.0625f;

  struct {
    const char *embedder;
    const float *v;
    uint32_t dim;
  } refused[] = {
      {NULL, small, 3},        {"other", small, 3},     {"other", big, 384},
      {"hashed-v1", small, 3}, {"hashed-v1", big, 383}, {NULL, big, 384},
  };
  for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
    engram_op op = {.kind = ENGRAM_OP_ADD,
                    .ns = NS,
                    .content = "a memory with its own vector",
                    .embedding = refused[k].v,
                    .embedding_dim = refused[k].dim,
                    .embedder = refused[k].embedder};
    int rc = engram_write(eg, &op, 1, stu_on_write, NULL);
    if (rc != ENGRAM_EEMBEDDER)
      fail_msg("vector %zu (%s, dim %u): engram_write gave %s, not "
               "ENGRAM_EEMBEDDER",
               k, refused[k].embedder ? refused[k].embedder : "NULL",
               refused[k].dim, engram_errname(rc));
    assert_int_equal(op.status, ENGRAM_EEMBEDDER);
    assert_non_null(strstr(op.message, "hashed-v1"));
  }
  assert_int_equal(tu_count(eg, NS), 0);

  /* The configured embedder's name and dimension: a backup restored, kept
   * as given (not recomputed). */
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = NS,
                  .content = "a memory with its own vector",
                  .embedding = big,
                  .embedding_dim = 384,
                  .embedder = "hashed-v1"};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, op.result_id, &n), 0);
  assert_int_equal(n->embedding_dim, 384);
  assert_string_equal(n->embedder, "hashed-v1");
  assert_memory_equal(n->embedding, big, sizeof big);
  engram_node_free(n);
  assert_int_equal(tu_count(eg, NS), 1);
  tu_close(eg);
}

/* ---------------------------------------------------- 4. embedder none */

static void test_embedder_none_keeps_caller_space(void **state) {
  (void)state;
  engram_options o = opts_none();
  engram *eg = tu_open(tu_db_path("emb-none"), &o);
  assert_null(engram_embedder_name(eg, NULL));
  uint32_t dim = 7;
  assert_null(engram_embedder_name(eg, &dim));
  assert_int_equal(dim, 0);

  float v3[3] = {0.25f, -1.5f, 3.0f};
  engram_op first = {.kind = ENGRAM_OP_ADD,
                     .ns = NS,
                     .content = "three floats",
                     .embedding = v3,
                     .embedding_dim = 3};
  assert_int_equal(stu_write_ops(eg, &first, 1), 0);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, first.result_id, &n), 0);
  assert_int_equal(n->embedding_dim, 3);
  assert_non_null(n->embedder);
  assert_string_equal(n->embedder, "client");
  assert_memory_equal(n->embedding, v3, sizeof v3);
  engram_node_free(n);

  /* No vector given: none computed. */
  char plain[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "no vector at all", plain);
  assert_int_equal(stu_get_node(eg, NS, plain, &n), 0);
  assert_null(n->embedding);
  assert_int_equal(n->embedding_dim, 0);
  assert_null(n->embedder);
  engram_node_free(n);

  float v4[4] = {1, 2, 3, 4};
  engram_op second = {.kind = ENGRAM_OP_ADD,
                      .ns = NS,
                      .content = "four floats",
                      .embedding = v4,
                      .embedding_dim = 4};
  assert_int_equal(stu_write_ops(eg, &second, 1), ENGRAM_EEMBEDDER);
  assert_int_equal(second.status, ENGRAM_EEMBEDDER);
  if (!strstr(second.message, "client/3") ||
      !strstr(second.message, "client/4"))
    fail_msg("the message should name client/3 and client/4: %s",
             second.message);
  assert_int_equal(tu_count(eg, NS), 2);

  /* An UPDATE setting a vector of another space is refused the same way. */
  engram_op upd = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = first.result_id,
                   .embedding = v4,
                   .embedding_dim = 4,
                   .set = ENGRAM_SET_EMBEDDING};
  assert_int_equal(stu_write_ops(eg, &upd, 1), ENGRAM_EEMBEDDER);

  assert_int_equal(stu_get_node(eg, NS, first.result_id, &n), 0);
  assert_string_equal(n->content, "three floats");
  assert_int_equal(n->embedding_dim, 3);
  assert_string_equal(n->embedder, "client");
  assert_memory_equal(n->embedding, v3, sizeof v3);
  engram_node_free(n);

  /* engram_reembed needs an embedder. */
  reembed_state r = {0};
  assert_int_equal(engram_reembed(eg, on_reembed, &r), ENGRAM_EINVAL);
  assert_int_equal(r.finals, 0);
  tu_close(eg);

  /* A name of the caller's is kept, and makes its own space. */
  eg = tu_open(tu_db_path("emb-none-named"), &o);
  engram_op named = {.kind = ENGRAM_OP_ADD,
                     .ns = NS,
                     .content = "named vector",
                     .embedding = v3,
                     .embedding_dim = 3,
                     .embedder = "mine"};
  assert_int_equal(stu_write_ops(eg, &named, 1), 0);
  assert_int_equal(stu_get_node(eg, NS, named.result_id, &n), 0);
  assert_string_equal(n->embedder, "mine");
  engram_node_free(n);
  engram_op unnamed = {.kind = ENGRAM_OP_ADD,
                       .ns = NS,
                       .content = "unnamed vector",
                       .embedding = v3,
                       .embedding_dim = 3};
  assert_int_equal(stu_write_ops(eg, &unnamed, 1), ENGRAM_EEMBEDDER);
  if (!strstr(unnamed.message, "mine/3") ||
      !strstr(unnamed.message, "client/3"))
    fail_msg("the message should name mine/3 and client/3: %s",
             unnamed.message);
  tu_close(eg);
}

/* ------------------------------------------------------------ 5. switching */

static void test_switch_embedder_with_reembed(void **state) {
  (void)state;
  char *db = fresh_db("emb-switch");
  engram *eg = tu_open(db, NULL);
  enum { N = 5 };
  char ids[N][ENGRAM_ID_LEN + 1];
  static const char *const contents[N] = {
      "Melanie painted a sunrise over the lake",
      "the meeting moved to Thursday afternoon",
      "Caroline is researching adoption agencies",
      "the dog chewed through the garden hose",
      "a recipe for sourdough needs a starter",
  };
  for (size_t i = 0; i < N; i++)
    add_ok(eg, i < 3 ? NS : NS2, contents[i], ids[i]);
  assert_int_equal(
      stu_update_content(eg, NS, ids[0], "Melanie painted a sunset instead"),
      0);
  assert_int_equal(stu_link(eg, NS, ids[0], ids[1], "reply-to", 0.7), 0);
  engram_node *before[N];
  size_t history_before[N];
  for (size_t i = 0; i < N; i++) {
    const char *ns = i < 3 ? NS : NS2;
    assert_int_equal(stu_get_node(eg, ns, ids[i], &before[i]), 0);
    expect_hashed_vector(before[i], 384);
    stu_history h;
    assert_int_equal(stu_history_of(eg, ns, ids[i], &h), 0);
    history_before[i] = h.n;
  }
  assert_int_equal(history_before[0], 2);
  tu_close(eg);

  /* Another dimension: the database's 384 vectors are another space. */
  engram_options o64 = opts_hashed(64);
  eg = tu_open(db, &o64);
  uint32_t dim = 0;
  assert_string_equal(engram_embedder_name(eg, &dim), "hashed-v1");
  assert_int_equal(dim, 64);
  char msg[160];
  assert_int_equal(
      add_failing(eg, NS, "refused until reembed", msg, sizeof msg),
      ENGRAM_EEMBEDDER);
  if (!strstr(msg, "hashed-v1/384") || !strstr(msg, "hashed-v1/64"))
    fail_msg("the message should name hashed-v1/384 and hashed-v1/64: %s", msg);
  assert_int_equal(count_all(eg), N);

  reembed_state r;
  reembed_wait(eg, &r);
  assert_true(r.progress >= 1);
  assert_int_equal(r.reembedded, N);
  assert_int_equal(r.scanned, N);
  assert_int_equal(r.last_reembedded, N);

  assert_int_equal(expect_all_hashed(eg, 64), N);
  for (size_t i = 0; i < N; i++) {
    const char *ns = i < 3 ? NS : NS2;
    engram_node *n = NULL;
    assert_int_equal(stu_get_node(eg, ns, ids[i], &n), 0);
    expect_hashed_vector(n, 64);
    assert_string_equal(n->content, before[i]->content);
    assert_true(n->updated_ms == before[i]->updated_ms);
    assert_true(n->created_ms == before[i]->created_ms);
    engram_node_free(n);
    stu_history h;
    assert_int_equal(stu_history_of(eg, ns, ids[i], &h), 0);
    assert_int_equal(h.n, history_before[i]);
  }
  stu_rels rels;
  assert_int_equal(stu_rels_of(eg, NS, ids[0], &rels), 0);
  assert_int_equal(rels.n, 1);
  assert_string_equal(rels.target[0], ids[1]);

  char added[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "accepted after the switch", added);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, added, &n), 0);
  expect_hashed_vector(n, 64);
  engram_node_free(n);

  /* Nothing left to do: a second run re-embeds nothing. */
  reembed_wait(eg, &r);
  assert_int_equal(r.reembedded, 0);
  assert_int_equal(r.scanned, N + 1);
  tu_close(eg);

  /* The database is 64 now: the default (384) is refused. */
  eg = tu_open(db, NULL);
  assert_int_equal(add_failing(eg, NS, "refused again", msg, sizeof msg),
                   ENGRAM_EEMBEDDER);
  if (!strstr(msg, "hashed-v1/64") || !strstr(msg, "hashed-v1/384"))
    fail_msg("the message should name hashed-v1/64 and hashed-v1/384: %s", msg);
  assert_int_equal(count_all(eg), N + 1);
  tu_close(eg);
  for (size_t i = 0; i < N; i++)
    engram_node_free(before[i]);
  free(db);
}

/* -------------------------------------------------------- 6. reembed errors */

#define MANY 3000

static const char *many_content(size_t i, void *arg) {
  static char buf[96];
  (void)arg;
  snprintf(buf, sizeof buf, "memory number %zu about topic %zu and day %zu", i,
           i % 37, i % 11);
  return buf;
}

static void test_reembed_busy_and_none(void **state) {
  (void)state;
  char *db = fresh_db("emb-busy");
  engram *eg = tu_open(db, NULL);
  for (int i = 0; i < 3; i++)
    add_ok(eg, NS, many_content((size_t)i, NULL), NULL);
  tu_close(eg);

  engram_options o64 = opts_hashed(64);
  eg = tu_open(db, &o64);
  reembed_state r = {0}, second = {0};
  assert_int_equal(engram_reembed(eg, on_reembed, &r), 0);
  assert_int_equal(engram_reembed(eg, on_reembed, &second), ENGRAM_EBUSY);
  tu_run_until(eg, &r.finals);
  assert_int_equal(r.finals, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.reembedded, 3);
  assert_int_equal(second.finals + second.progress, 0);
  /* Finished: another may start. */
  reembed_wait(eg, &r);
  assert_int_equal(r.reembedded, 0);
  tu_close(eg);

  engram_options none = opts_none();
  eg = tu_open(db, &none);
  assert_int_equal(engram_reembed(eg, on_reembed, &r), ENGRAM_EINVAL);
  assert_int_equal(engram_reembed(NULL, on_reembed, &r), ENGRAM_EINVAL);
  tu_close(eg);
  free(db);
}

static void test_reembed_close_midway_then_resume(void **state) {
  (void)state;
  char *db = fresh_db("emb-resume");
  engram *eg = tu_open(db, NULL);
  assert_int_equal(tu_add_many(eg, NS, MANY, many_content, NULL), 0);
  tu_close(eg);

  /* Closed right after it started: the probe or the switch is in flight. */
  engram_options o64 = opts_hashed(64);
  eg = tu_open(db, &o64);
  close_state cs = {0};
  reembed_state early = {0};
  early.closed = &cs.closed;
  assert_int_equal(engram_reembed(eg, on_reembed, &early), 0);
  close_and_free(eg, &cs);
  assert_int_equal(early.finals, 1);
  assert_false(early.final_after_close);
  if (early.status != ENGRAM_ECANCELED && early.status != 0)
    fail_msg("reembed closed at once ended with %s: %s",
             engram_errname(early.status), early.message);

  /* Closed after its first committed page. */
  eg = tu_open(db, &o64);
  cs.closed = 0;
  reembed_state mid = {0};
  mid.closed = &cs.closed;
  assert_int_equal(engram_reembed(eg, on_reembed, &mid), 0);
  tu_run_until(eg, &mid.progress);
  if (mid.progress < 1)
    fail_msg("no progress: finals %d, status %s: %s (early: %s, %llu)",
             mid.finals, engram_errname(mid.status), mid.message,
             engram_errname(early.status),
             (unsigned long long)early.reembedded);
  assert_int_equal(mid.finals, 0);
  close_and_free(eg, &cs);
  assert_int_equal(mid.finals, 1);
  assert_false(mid.final_after_close);
  assert_int_equal(mid.bad_progress, 0);
  if (mid.status != ENGRAM_ECANCELED && mid.status != 0)
    fail_msg("reembed closed midway ended with %s: %s",
             engram_errname(mid.status), mid.message);
  if (mid.status == ENGRAM_ECANCELED)
    assert_true(mid.message[0] != '\0');
  uint64_t done_before = early.reembedded + mid.reembedded;
  assert_true(mid.reembedded >= 1);

  /* Reopened: the run picks up what is left, and only that. */
  eg = tu_open(db, &o64);
  reembed_state rest;
  reembed_wait(eg, &rest);
  assert_int_equal(rest.scanned, MANY);
  assert_int_equal(rest.reembedded, MANY - done_before);
  assert_int_equal(expect_all_hashed(eg, 64), MANY);
  tu_close(eg);
  free(db);
}

/* --------------------------------------------------------------- 7. order */

typedef struct order_state {
  int calls;
  int order[8];
  int status[8];
  char message[8][160];
} order_state;

typedef struct order_slot {
  order_state *s;
  int which;
} order_slot;

static void on_ordered(int status, engram_op *ops, size_t n, void *data) {
  order_slot *slot = data;
  order_state *s = slot->s;
  assert_true(s->calls < 8);
  s->order[s->calls] = slot->which;
  s->status[s->calls] = status;
  snprintf(s->message[s->calls], sizeof s->message[0], "%s",
           n > 0 ? ops[0].message : "");
  s->calls++;
}

static int order_done(void *arg) {
  return ((order_state *)arg)->calls >= 3;
}

static void test_writes_keep_their_order(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("emb-order"), NULL);
  char earlier[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "added earlier, deleted later", earlier);

  char x[ENGRAM_ID_LEN + 1];
  engram_id_new(x);
  order_state s = {0};
  order_slot slots[3] = {{&s, 0}, {&s, 1}, {&s, 2}};
  engram_op add = {.kind = ENGRAM_OP_ADD,
                   .ns = NS,
                   .id = x,
                   .content = "the first words of X"};
  engram_op upd = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = x,
                   .content = "the second words of X",
                   .set = ENGRAM_SET_CONTENT};
  engram_op del = {.kind = ENGRAM_OP_DELETE, .ns = NS, .id = earlier};
  assert_int_equal(engram_write(eg, &add, 1, on_ordered, &slots[0]), 0);
  assert_int_equal(engram_write(eg, &upd, 1, on_ordered, &slots[1]), 0);
  assert_int_equal(engram_write(eg, &del, 1, on_ordered, &slots[2]), 0);
  assert_int_equal(s.calls, 0); /* never inside engram_write */
  tl_run_until(engram_loop(eg), order_done, &s, 10000);
  assert_int_equal(s.calls, 3);
  for (int i = 0; i < 3; i++) {
    if (s.status[i] != 0)
      fail_msg("write %d failed: %s: %s", s.order[i],
               engram_errname(s.status[i]), s.message[i]);
    assert_int_equal(s.order[i], i);
  }

  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, x, &n), 0);
  assert_string_equal(n->content, "the second words of X");
  expect_hashed_vector(n, 384);
  engram_node_free(n);
  assert_int_equal(stu_get_node(eg, NS, earlier, NULL), ENGRAM_ENOTFOUND);
  stu_history h;
  assert_int_equal(stu_history_of(eg, NS, x, &h), 0);
  assert_int_equal(h.n, 2);
  tu_close(eg);
}

/* ------------------------------------------- 8. close while vectors pending */

#define PENDING 200

typedef struct pending_state {
  int calls;
  int failed;
  int first_failure;
  char message[160];
} pending_state;

static void on_pending(int status, engram_op *ops, size_t n, void *data) {
  pending_state *p = data;
  p->calls++;
  if (status != 0 && !p->failed++) {
    p->first_failure = status;
    snprintf(p->message, sizeof p->message, "%s", n ? ops[0].message : "");
  }
}

static void test_close_while_writes_wait_for_vectors(void **state) {
  (void)state;
  char *db = fresh_db("emb-pending");
  engram *eg = tu_open(db, NULL);
  pending_state p = {0};
  for (size_t i = 0; i < PENDING; i++) {
    engram_op op = {
        .kind = ENGRAM_OP_ADD, .ns = NS, .content = many_content(i, NULL)};
    assert_int_equal(engram_write(eg, &op, 1, on_pending, &p), 0);
  }
  close_state cs = {0};
  close_and_free(eg, &cs);
  assert_int_equal(p.calls, PENDING);
  if (p.failed)
    fail_msg("%d writes failed, the first with %s: %s", p.failed,
             engram_errname(p.first_failure), p.message);

  eg = tu_open(db, NULL);
  assert_int_equal(tu_count(eg, NS), PENDING);
  assert_int_equal(expect_all_hashed(eg, 384), PENDING);
  tu_close(eg);
  free(db);
}

/* ------------------------------------------------- 9. a failing embedder */

/* A loopback port nothing listens on (bound, read, closed). */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_failing_embedder(void **state) {
  (void)state;
  char *db = fresh_db("emb-failing");
  /* Two memories without vectors, made with no embedder. */
  engram_options none = opts_none();
  engram *eg = tu_open(db, &none);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "first memory without a vector", a);
  add_ok(eg, NS, "second memory without a vector", b);
  tu_close(eg);

  char url[64], port_text[16];
  int port = dead_port();
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  snprintf(port_text, sizeof port_text, ":%d", port);
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_HTTP;
  o.embedder.url = url;
  o.embedder.model = "test-model";
  o.embedder.retries = 0;
  o.embedder.timeout_ms = 2000;
  eg = tu_open(db, &o);
  uint32_t dim = 99;
  assert_string_equal(engram_embedder_name(eg, &dim), "http:test-model");
  assert_int_equal(dim, 0);

  /* The ADD fails in its callback; a LINK written right behind it (it
   * waits its turn in the queue) goes through. */
  order_state s = {0};
  order_slot slots[2] = {{&s, 0}, {&s, 1}};
  engram_op add = {
      .kind = ENGRAM_OP_ADD, .ns = NS, .content = "this one needs a vector"};
  engram_op link = {.kind = ENGRAM_OP_LINK,
                    .ns = NS,
                    .source = a,
                    .target = b,
                    .rel_kind = "follows",
                    .strength = 0.5};
  assert_int_equal(engram_write(eg, &add, 1, on_ordered, &slots[0]), 0);
  assert_int_equal(engram_write(eg, &link, 1, on_ordered, &slots[1]), 0);
  while (s.calls < 2)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && s.calls < 2)
      break;
  assert_int_equal(s.calls, 2);
  assert_int_equal(s.order[0], 0);
  assert_int_equal(s.order[1], 1);
  assert_true(s.status[0] != 0);
  if (!strstr(s.message[0], "embed") || !strstr(s.message[0], port_text))
    fail_msg("the ADD's message should say the embedder (at %s) failed: %s",
             url, s.message[0]);
  if (s.status[1] != 0)
    fail_msg("the LINK behind the failed ADD: %s: %s",
             engram_errname(s.status[1]), s.message[1]);
  assert_int_equal(tu_count(eg, NS), 2);

  /* After it: writes that need no vector still work. */
  stu_rels rels;
  assert_int_equal(stu_rels_of(eg, NS, a, &rels), 0);
  assert_int_equal(rels.n, 1);
  assert_int_equal(stu_delete(eg, NS, b), 0);
  assert_int_equal(stu_get_node(eg, NS, b, NULL), ENGRAM_ENOTFOUND);
  engram_op imp = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = a,
                   .importance = 0.8,
                   .set = ENGRAM_SET_IMPORTANCE};
  assert_int_equal(stu_write_ops(eg, &imp, 1), 0);
  /* ... and one that does fails again, storing nothing. */
  char msg[160];
  assert_true(
      add_failing(eg, NS, "another that needs a vector", msg, sizeof msg) != 0);
  assert_int_equal(tu_count(eg, NS), 1);

  /* engram_reembed cannot learn the dimension: it ends with the error. */
  reembed_state r = {0};
  assert_int_equal(engram_reembed(eg, on_reembed, &r), 0);
  tu_run_until(eg, &r.finals);
  assert_int_equal(r.finals, 1);
  assert_true(r.status != 0);
  assert_non_null(strstr(r.message, "embed"));
  tu_close(eg);
  free(db);
}

/* ------------------------------------------------- 10. the change sequence */

static void test_change_sequence(void **state) {
  (void)state;
  char *db = fresh_db("emb-seq");
  engram *eg = tu_open(db, NULL);
  char x[ENGRAM_ID_LEN + 1], y[ENGRAM_ID_LEN + 1];
  add_ok(eg, "a", "x in namespace a", x);
  assert_int_equal(stu_update_content(eg, "a", x, "x changed"), 0);
  add_ok(eg, "b", "y in namespace b", y);
  tu_close(eg);

  assert_int_equal(db_int(db, "SELECT seq FROM ns_seq WHERE ns = 'a'", NULL),
                   2);
  assert_int_equal(db_int(db, "SELECT seq FROM ns_seq WHERE ns = 'b'", NULL),
                   1);
  assert_int_equal(db_int(db, "SELECT vseq FROM memories WHERE id = $1", x), 2);
  assert_int_equal(db_int(db, "SELECT vseq FROM memories WHERE id = $1", y), 1);

  eg = tu_open(db, NULL);
  assert_int_equal(stu_delete(eg, "a", x), 0);
  /* A write that changes no memory advances nothing. */
  assert_int_equal(stu_delete(eg, "a", x), ENGRAM_ENOTFOUND);
  tu_close(eg);

  assert_int_equal(db_int(db, "SELECT seq FROM ns_seq WHERE ns = 'a'", NULL),
                   3);
  assert_int_equal(db_int(db, "SELECT seq FROM ns_seq WHERE ns = 'b'", NULL),
                   1);
  assert_int_equal(
      db_int(db, "SELECT seq FROM removed WHERE ns = 'a' AND id = $1", x), 3);
  assert_int_equal(db_int(db, "SELECT count(*) FROM removed", NULL), 1);
  assert_int_equal(db_int(db, "SELECT count(*) FROM memories WHERE id = $1", x),
                   0);
  free(db);
}

/* ----------------------------------------------- 11. engram_embedder_parse */

static void test_embedder_parse(void **state) {
  (void)state;
  engram_embedder_options e;
  char msg[256];
  memset(&e, 0xff, sizeof e);
  assert_int_equal(engram_embedder_parse("hashed", &e, msg, sizeof msg), 0);
  assert_int_equal(e.kind, ENGRAM_EMBEDDER_HASHED);
  assert_int_equal(e.dim, 0);
  assert_null(e.url);
  assert_null(e.model);

  assert_int_equal(engram_embedder_parse("hashed:64", &e, msg, sizeof msg), 0);
  assert_int_equal(e.kind, ENGRAM_EMBEDDER_HASHED);
  assert_int_equal(e.dim, 64);

  assert_int_equal(engram_embedder_parse("none", &e, NULL, 0), 0);
  assert_int_equal(e.kind, ENGRAM_EMBEDDER_NONE);

  const char *spec = "http:nomic-embed-text@http://127.0.0.1:11434";
  assert_int_equal(engram_embedder_parse(spec, &e, msg, sizeof msg), 0);
  assert_int_equal(e.kind, ENGRAM_EMBEDDER_HTTP);
  assert_int_equal(e.model_len, strlen("nomic-embed-text"));
  assert_memory_equal(e.model, "nomic-embed-text", e.model_len);
  assert_non_null(e.url);
  assert_string_equal(e.url, "http://127.0.0.1:11434");
  assert_int_equal(e.dim, 0);

  static const char *const bad[] = {
      "hashed:7", "hashed:x", "http:@http://x", "http:m",
      "foo",      "hashed:",  "hashed:100000",  "hashed:64x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    msg[0] = '\0';
    int rc = engram_embedder_parse(bad[i], &e, msg, sizeof msg);
    if (rc != ENGRAM_EINVAL)
      fail_msg("'%s' parsed with %s", bad[i], engram_errname(rc));
    if (!strstr(msg, bad[i]))
      fail_msg("the message for '%s' does not name it: %s", bad[i], msg);
    assert_int_equal(engram_embedder_parse(bad[i], &e, NULL, 0), ENGRAM_EINVAL);
  }

  /* An out-of-range dimension in the options is refused at init. */
  engram_options o = opts_hashed(8);
  o.db = tu_db_path("emb-bad-dim");
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &o), ENGRAM_EINVAL);
  assert_null(eg);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_embedder_vector),
      cmocka_unit_test(test_update_recomputes_vector),
      cmocka_unit_test(test_caller_vector_with_default_embedder),
      cmocka_unit_test(test_embedder_none_keeps_caller_space),
      cmocka_unit_test(test_switch_embedder_with_reembed),
      cmocka_unit_test(test_reembed_busy_and_none),
      cmocka_unit_test(test_reembed_close_midway_then_resume),
      cmocka_unit_test(test_writes_keep_their_order),
      cmocka_unit_test(test_close_while_writes_wait_for_vectors),
      cmocka_unit_test(test_failing_embedder),
      cmocka_unit_test(test_change_sequence),
      cmocka_unit_test(test_embedder_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
