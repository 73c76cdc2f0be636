/*
 * test_store.c — the store through the public API: every write op and its
 * failure paths, batch atomicity and group commit, point reads, search
 * ranking and filters, list pagination under concurrent inserts,
 * traversal, history, schema versions and foreign databases, reopening,
 * and streams that are cancelled or paused (nothing may keep running).
 *
 * It runs unchanged on both backends (test_store on SQLite files,
 * test_store_pg on PostgreSQL, see tu.h). A case about SQLite's files
 * (paths, file contents, PRAGMA user_version, file locks) has a
 * PostgreSQL counterpart where the behaviour has one (a newer schema
 * version, a foreign database, an unreachable server, a lock held by
 * another session, a row written by another program), and is skipped
 * there, saying so, where it has none. Relevance scores may differ between
 * the backends (both BM25, but PostgreSQL's statistics are per namespace
 * and its lengths count distinct words, see pg_stream.c): the cases check
 * order and ranges, and where one checks values it states the tolerance.
 */
#include <math.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "store_tu.h"
/* The schema versions this engram writes (sqlite_internal.h, pg_internal.h
 * hold them; restated so the test sees when they move). */
#define SQLITE_SCHEMA_VERSION_NOW 3
#define PG_SCHEMA_VERSION_NOW 2
#include "testloop.h"
#include "tu.h"

#define NS "test-ns"
#define OTHER "other-ns"

static engram *open_fresh(const char *name, const engram_options *opts) {
  return tu_open(tu_db_path(name), opts);
}

static void add_ok(engram *eg, const char *ns, const char *content,
                   engram_type type, char id[ENGRAM_ID_LEN + 1]) {
  assert_int_equal(tu_add(eg, ns, content, type, id), 0);
}

/* ------------------------------------------------------------------ writes */

/* Without an embedder, a caller's vectors are stored as given (with one,
 * engram computes them: test_embeddings.c). */
static engram *open_without_embedder(const char *name) {
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_NONE;
  return open_fresh(name, &o);
}

static void test_add_and_get(void **state) {
  (void)state;
  engram *eg = open_without_embedder("add-get");
  float emb[3] = {0.25f, -1.5f, 3.0f};
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = NS,
                  .type = ENGRAM_SEMANTIC,
                  .content = "the sky is blue",
                  .importance = 0.9,
                  .set = ENGRAM_SET_IMPORTANCE,
                  .metadata = "{\"source\":\"test\"}",
                  .embedding = emb,
                  .embedding_dim = 3};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  assert_int_equal(op.status, 0);
  assert_true(engram_id_valid(op.result_id));
  assert_int_equal(op.deduplicated, 0);

  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, op.result_id, &n), 0);
  assert_string_equal(n->id, op.result_id);
  assert_string_equal(n->ns, NS);
  assert_int_equal(n->type, ENGRAM_SEMANTIC);
  assert_string_equal(n->content, "the sky is blue");
  assert_int_equal(n->content_len, strlen("the sky is blue"));
  assert_true(n->content_hash != 0);
  assert_true(fabs(n->importance - 0.9) < 1e-9);
  assert_string_equal(n->metadata, "{\"source\":\"test\"}");
  assert_int_equal(n->embedding_dim, 3);
  assert_non_null(n->embedding);
  assert_true(n->embedding[0] == 0.25f && n->embedding[1] == -1.5f &&
              n->embedding[2] == 3.0f);
  assert_true(n->created_ms > 0);
  assert_true(n->created_ms == n->updated_ms);
  assert_true(n->accessed_ms == n->created_ms);
  assert_true(n->relevance == 0 && n->depth == 0);
  engram_node_free(n);

  /* Defaults: importance 0.5, metadata {}, no embedding. */
  char id[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "plain", ENGRAM_EPISODIC, id);
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_true(fabs(n->importance - 0.5) < 1e-9);
  assert_string_equal(n->metadata, "{}");
  assert_null(n->embedding);
  assert_int_equal(n->embedding_dim, 0);
  engram_node_free(n);

  /* ns NULL crosses namespaces; the wrong namespace does not find it. */
  assert_int_equal(stu_get_node(eg, NULL, id, &n), 0);
  assert_string_equal(n->ns, NS);
  engram_node_free(n);
  assert_int_equal(stu_get_node(eg, OTHER, id, NULL), ENGRAM_ENOTFOUND);
  char unknown[ENGRAM_ID_LEN + 1];
  engram_id_new(unknown);
  assert_int_equal(stu_get_node(eg, NS, unknown, NULL), ENGRAM_ENOTFOUND);
  assert_int_equal(stu_get_node(eg, NULL, unknown, NULL), ENGRAM_ENOTFOUND);
  tu_close(eg);
}

static void test_add_with_given_id_and_duplicate(void **state) {
  (void)state;
  engram *eg = open_fresh("dup-id", NULL);
  char id[ENGRAM_ID_LEN + 1];
  engram_id_new(id);
  engram_op op = {
      .kind = ENGRAM_OP_ADD, .ns = NS, .id = id, .content = "first"};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  assert_string_equal(op.result_id, id);

  engram_op again = {
      .kind = ENGRAM_OP_ADD, .ns = NS, .id = id, .content = "second"};
  assert_int_equal(stu_write_ops(eg, &again, 1), ENGRAM_EEXIST);
  assert_int_equal(again.status, ENGRAM_EEXIST);
  assert_non_null(strstr(again.message, id));

  /* Ids are unique across namespaces too. */
  engram_op other = {
      .kind = ENGRAM_OP_ADD, .ns = OTHER, .id = id, .content = "third"};
  assert_int_equal(stu_write_ops(eg, &other, 1), ENGRAM_EEXIST);

  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NULL, id, &n), 0);
  assert_string_equal(n->content, "first");
  engram_node_free(n);
  tu_close(eg);
}

static void test_dedup(void **state) {
  (void)state;
  engram *eg = open_fresh("dedup", NULL);
  engram_op a = {
      .kind = ENGRAM_OP_ADD, .ns = NS, .content = "remember this", .dedup = 1};
  assert_int_equal(stu_write_ops(eg, &a, 1), 0);
  assert_int_equal(a.deduplicated, 0);

  engram_op b = a;
  b.result_id[0] = '\0';
  assert_int_equal(stu_write_ops(eg, &b, 1), 0);
  assert_int_equal(b.deduplicated, 1);
  assert_string_equal(b.result_id, a.result_id);

  /* Without dedup, the same content is a new memory. */
  engram_op c = {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "remember this"};
  assert_int_equal(stu_write_ops(eg, &c, 1), 0);
  assert_string_not_equal(c.result_id, a.result_id);

  /* Dedup is per namespace, and needs identical content. */
  engram_op d = {.kind = ENGRAM_OP_ADD,
                 .ns = OTHER,
                 .content = "remember this",
                 .dedup = 1};
  assert_int_equal(stu_write_ops(eg, &d, 1), 0);
  assert_int_equal(d.deduplicated, 0);
  engram_op e = {
      .kind = ENGRAM_OP_ADD, .ns = NS, .content = "remember this!", .dedup = 1};
  assert_int_equal(stu_write_ops(eg, &e, 1), 0);
  assert_int_equal(e.deduplicated, 0);

  /* Within one batch, the second add finds the first. */
  engram_op batch[2] = {
      {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "twice", .dedup = 1},
      {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "twice", .dedup = 1}};
  assert_int_equal(stu_write_ops(eg, batch, 2), 0);
  assert_int_equal(batch[1].deduplicated, 1);
  assert_string_equal(batch[1].result_id, batch[0].result_id);

  assert_int_equal(tu_count(eg, NS), 4);
  tu_close(eg);
}

static void test_batch_atomicity(void **state) {
  (void)state;
  engram *eg = open_fresh("atomic", NULL);
  char missing[ENGRAM_ID_LEN + 1];
  engram_id_new(missing);
  engram_op ops[3] = {{.kind = ENGRAM_OP_ADD, .ns = NS, .content = "alpha"},
                      {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "beta"},
                      {.kind = ENGRAM_OP_UPDATE,
                       .ns = NS,
                       .id = missing,
                       .content = "x",
                       .set = ENGRAM_SET_CONTENT}};
  assert_int_equal(stu_write_ops(eg, ops, 3), ENGRAM_ENOTFOUND);
  assert_int_equal(ops[2].status, ENGRAM_ENOTFOUND);
  assert_non_null(strstr(ops[2].message, missing));
  assert_non_null(strstr(ops[2].message, NS));
  assert_int_not_equal(ops[0].status, 0); /* not written, and says so */
  assert_int_not_equal(ops[1].status, 0);
  assert_int_equal(stu_get_node(eg, NS, ops[0].result_id, NULL),
                   ENGRAM_ENOTFOUND);
  assert_int_equal(stu_get_node(eg, NS, ops[1].result_id, NULL),
                   ENGRAM_ENOTFOUND);
  assert_int_equal(tu_count(eg, NS), 0);
  /* Nothing of it in the history either. */
  stu_history h;
  assert_int_equal(stu_history_of(eg, NS, ops[0].result_id, &h),
                   ENGRAM_ENOTFOUND);
  engram_stats s = stu_stats(eg);
  assert_int_equal(s.writes_committed, 0);
  tu_close(eg);
}

/* Batches queued together commit in one group; a failing one is rolled
 * back alone. */
typedef struct group_state {
  int done;
  int status[3];
} group_state;

static void on_group_write(int status, engram_op *ops, size_t n, void *data) {
  group_state *g = data;
  (void)n;
  int which = ops[0].content[0] - 'a'; /* contents start with a, b, c */
  g->status[which] = status;
  g->done++;
}

static void test_group_commit_isolates_failing_batch(void **state) {
  (void)state;
  engram *eg = open_fresh("group", NULL);
  char missing[ENGRAM_ID_LEN + 1];
  engram_id_new(missing);
  engram_stats before = stu_stats(eg);
  group_state g = {0};
  engram_op a[2] = {{.kind = ENGRAM_OP_ADD, .ns = NS, .content = "a one"},
                    {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "a two"}};
  engram_op b[2] = {{.kind = ENGRAM_OP_ADD, .ns = NS, .content = "b one"},
                    {.kind = ENGRAM_OP_DELETE, .ns = NS, .id = missing}};
  engram_op c[1] = {{.kind = ENGRAM_OP_ADD, .ns = NS, .content = "c one"}};
  /* b[1] has no content; on_group_write looks at ops[0] only. */
  assert_int_equal(engram_write(eg, a, 2, on_group_write, &g), 0);
  assert_int_equal(engram_write(eg, b, 2, on_group_write, &g), 0);
  assert_int_equal(engram_write(eg, c, 1, on_group_write, &g), 0);
  while (g.done < 3)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_int_equal(g.status[0], 0);
  assert_int_equal(g.status[1], ENGRAM_ENOTFOUND);
  assert_int_equal(g.status[2], 0);
  assert_int_equal(tu_count(eg, NS), 3);
  engram_stats after = stu_stats(eg);
  assert_int_equal(after.writes_committed - before.writes_committed, 3);
  /* a went alone (the writer was idle); b and c waited for the next group */
  assert_int_equal(after.write_batches - before.write_batches, 2);
  tu_close(eg);
}

static void test_write_batch_max_splits_groups(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.write_batch_max = 2;
  engram *eg = open_fresh("batch-max", &o);
  group_state g = {0};
  static engram_op ops[3][2];
  const char *contents[3][2] = {{"a1", "a2"}, {"b1", "b2"}, {"c1", "c2"}};
  for (int i = 0; i < 3; i++) {
    for (int k = 0; k < 2; k++)
      ops[i][k] = (engram_op){
          .kind = ENGRAM_OP_ADD, .ns = NS, .content = contents[i][k]};
    assert_int_equal(engram_write(eg, ops[i], 2, on_group_write, &g), 0);
  }
  while (g.done < 3)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  engram_stats s = stu_stats(eg);
  assert_int_equal(s.writes_committed, 6);
  assert_int_equal(s.write_batches, 3); /* 2 ops per group at most */
  /* Each group of 2 ops falls in the "at most 4" bucket. */
  assert_int_equal(s.write_batch_sizes[0], 0);
  assert_int_equal(s.write_batch_sizes[1], 3);
  for (int i = 2; i < ENGRAM_BATCH_BUCKETS; i++)
    assert_int_equal(s.write_batch_sizes[i], 0);
  tu_close(eg);
}

static void test_update(void **state) {
  (void)state;
  engram *eg = open_without_embedder("update");
  char id[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "the old words about giraffes", ENGRAM_EPISODIC, id);
  engram_node *before = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &before), 0);
  usleep(3000); /* updated_ms must move */

  float emb[2] = {1.0f, 2.0f};
  engram_op op = {.kind = ENGRAM_OP_UPDATE,
                  .ns = NS,
                  .id = id,
                  .content = "new words about zebras",
                  .type = ENGRAM_PROCEDURAL,
                  .importance = 0.1,
                  .metadata = "{\"k\":1}",
                  .embedding = emb,
                  .embedding_dim = 2,
                  .set = ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE |
                         ENGRAM_SET_IMPORTANCE | ENGRAM_SET_METADATA |
                         ENGRAM_SET_EMBEDDING};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_string_equal(n->content, "new words about zebras");
  assert_int_equal(n->type, ENGRAM_PROCEDURAL);
  assert_true(fabs(n->importance - 0.1) < 1e-9);
  assert_string_equal(n->metadata, "{\"k\":1}");
  assert_int_equal(n->embedding_dim, 2);
  assert_true(n->embedding[1] == 2.0f);
  assert_true(n->content_hash != before->content_hash);
  assert_true(n->created_ms == before->created_ms);
  assert_true(n->updated_ms > before->updated_ms);
  engram_node_free(n);
  engram_node_free(before);

  /* Only what is in `set` changes. */
  engram_op imp = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = id,
                   .importance = 0.7,
                   .content = "ignored",
                   .set = ENGRAM_SET_IMPORTANCE};
  assert_int_equal(stu_write_ops(eg, &imp, 1), 0);
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_string_equal(n->content, "new words about zebras");
  assert_int_equal(n->type, ENGRAM_PROCEDURAL);
  assert_true(fabs(n->importance - 0.7) < 1e-9);
  assert_int_equal(n->embedding_dim, 2);
  engram_node_free(n);

  /* Removing the embedding: set it with none. */
  engram_op noemb = {.kind = ENGRAM_OP_UPDATE,
                     .ns = NS,
                     .id = id,
                     .set = ENGRAM_SET_EMBEDDING};
  assert_int_equal(stu_write_ops(eg, &noemb, 1), 0);
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_null(n->embedding);
  assert_int_equal(n->embedding_dim, 0);
  engram_node_free(n);

  /* The index follows the content. */
  stu_coll c;
  engram_query q = {.ns = NS, .text = "giraffes"};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  q.text = "zebras";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);

  /* Wrong namespace, unknown id. */
  engram_op wrong = {.kind = ENGRAM_OP_UPDATE,
                     .ns = OTHER,
                     .id = id,
                     .content = "x",
                     .set = ENGRAM_SET_CONTENT};
  assert_int_equal(stu_write_ops(eg, &wrong, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(wrong.message, id));
  assert_non_null(strstr(wrong.message, OTHER));
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_string_equal(n->content, "new words about zebras");
  engram_node_free(n);
  tu_close(eg);
}

static void test_delete_and_history(void **state) {
  (void)state;
  engram *eg = open_fresh("delete", NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "version one", ENGRAM_EPISODIC, a);
  add_ok(eg, NS, "neighbour", ENGRAM_EPISODIC, b);
  assert_int_equal(stu_link(eg, NS, a, b, "next", 0.5), 0);
  assert_int_equal(stu_link(eg, NS, b, a, "prev", 0.5), 0);
  assert_int_equal(stu_update_content(eg, NS, a, "version two"), 0);
  engram_op imp = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = a,
                   .importance = 1.0,
                   .set = ENGRAM_SET_IMPORTANCE};
  assert_int_equal(stu_write_ops(eg, &imp, 1), 0);

  /* Deleting in the wrong namespace finds nothing and changes nothing. */
  assert_int_equal(stu_delete(eg, OTHER, a), ENGRAM_ENOTFOUND);
  assert_int_equal(stu_get_node(eg, NS, a, NULL), 0);

  assert_int_equal(stu_delete(eg, NS, a), 0);
  assert_int_equal(stu_get_node(eg, NS, a, NULL), ENGRAM_ENOTFOUND);
  assert_int_equal(stu_delete(eg, NS, a), ENGRAM_ENOTFOUND);

  /* Its relationships went with it, both directions. */
  stu_rels r;
  assert_int_equal(stu_rels_of(eg, NS, b, &r), 0);
  assert_int_equal(r.n, 0);

  /* The history stays, oldest first. */
  stu_history h;
  assert_int_equal(stu_history_of(eg, NS, a, &h), 0);
  assert_int_equal(h.n, 4);
  assert_int_equal(h.event[0], ENGRAM_EVENT_ADD);
  assert_false(h.has_old[0]);
  assert_string_equal(h.new_[0], "version one");
  assert_int_equal(h.event[1], ENGRAM_EVENT_UPDATE);
  assert_string_equal(h.old[1], "version one");
  assert_string_equal(h.new_[1], "version two");
  assert_int_equal(h.event[2], ENGRAM_EVENT_UPDATE); /* importance only */
  assert_string_equal(h.old[2], "version two");
  assert_string_equal(h.new_[2], "version two");
  assert_int_equal(h.event[3], ENGRAM_EVENT_DELETE);
  assert_string_equal(h.old[3], "version two");
  assert_false(h.has_new[3]);
  for (size_t i = 1; i < h.n; i++)
    assert_true(h.at[i] >= h.at[i - 1]);

  /* History is per namespace, and unknown ids have none. */
  assert_int_equal(stu_history_of(eg, OTHER, a, &h), ENGRAM_ENOTFOUND);
  char unknown[ENGRAM_ID_LEN + 1];
  engram_id_new(unknown);
  assert_int_equal(stu_history_of(eg, NS, unknown, &h), ENGRAM_ENOTFOUND);

  /* Search no longer finds the deleted content. */
  stu_coll c;
  engram_query q = {.ns = NS, .text = "version"};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_link_unlink(void **state) {
  (void)state;
  engram *eg = open_fresh("link", NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1], x[ENGRAM_ID_LEN + 1];
  char missing[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "a", ENGRAM_EPISODIC, a);
  add_ok(eg, NS, "b", ENGRAM_EPISODIC, b);
  add_ok(eg, OTHER, "x", ENGRAM_EPISODIC, x);
  engram_id_new(missing);

  engram_op bad = {.kind = ENGRAM_OP_LINK,
                   .ns = NS,
                   .source = a,
                   .target = missing,
                   .rel_kind = "k",
                   .strength = 1};
  assert_int_equal(stu_write_ops(eg, &bad, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(bad.message, "target"));
  assert_non_null(strstr(bad.message, missing));
  bad.source = missing;
  bad.target = a;
  assert_int_equal(stu_write_ops(eg, &bad, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(bad.message, "source"));
  /* No relationship crosses namespaces. */
  bad.source = a;
  bad.target = x;
  assert_int_equal(stu_write_ops(eg, &bad, 1), ENGRAM_ENOTFOUND);

  assert_int_equal(stu_link(eg, NS, a, b, "reply-to", 0.4), 0);
  stu_rels r;
  assert_int_equal(stu_rels_of(eg, NS, a, &r), 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.source[0], a);
  assert_string_equal(r.target[0], b);
  assert_string_equal(r.kind[0], "reply-to");
  assert_true(fabs(r.strength[0] - 0.4) < 1e-9);
  /* Seen from the target too. */
  assert_int_equal(stu_rels_of(eg, NS, b, &r), 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.source[0], a);
  /* Not from another namespace. */
  assert_int_equal(stu_rels_of(eg, OTHER, a, &r), 0);
  assert_int_equal(r.n, 0);

  /* Linking again replaces the strength; another kind is another link. */
  assert_int_equal(stu_link(eg, NS, a, b, "reply-to", 0.9), 0);
  assert_int_equal(stu_link(eg, NS, a, b, "mentions", 0.2), 0);
  assert_int_equal(stu_rels_of(eg, NS, a, &r), 0);
  assert_int_equal(r.n, 2);
  for (size_t i = 0; i < r.n; i++)
    if (strcmp(r.kind[i], "reply-to") == 0)
      assert_true(fabs(r.strength[i] - 0.9) < 1e-9);

  /* A self-link shows once. */
  assert_int_equal(stu_link(eg, NS, a, a, "self", 1.0), 0);
  assert_int_equal(stu_rels_of(eg, NS, a, &r), 0);
  assert_int_equal(r.n, 3);

  engram_op un = {.kind = ENGRAM_OP_UNLINK,
                  .ns = NS,
                  .source = a,
                  .target = b,
                  .rel_kind = "reply-to"};
  assert_int_equal(stu_write_ops(eg, &un, 1), 0);
  assert_int_equal(stu_write_ops(eg, &un, 1), ENGRAM_ENOTFOUND);
  assert_non_null(strstr(un.message, "reply-to"));
  un.ns = OTHER;
  un.rel_kind = "mentions";
  assert_int_equal(stu_write_ops(eg, &un, 1), ENGRAM_ENOTFOUND);
  assert_int_equal(stu_rels_of(eg, NS, b, &r), 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.kind[0], "mentions");
  tu_close(eg);
}

/* ----------------------------------------------------------------- search */

static void test_search_ranking(void **state) {
  (void)state;
  engram *eg = open_fresh("search-rank", NULL);
  char strong[ENGRAM_ID_LEN + 1], weak[ENGRAM_ID_LEN + 1];
  char none[ENGRAM_ID_LEN + 1], other[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "coffee coffee coffee: espresso beans and coffee grinders",
         ENGRAM_SEMANTIC, strong);
  add_ok(eg, NS,
         "I once had a coffee at a station, while waiting for a very long "
         "delayed train to the mountains in the rain",
         ENGRAM_EPISODIC, weak);
  add_ok(eg, NS, "tea is also nice", ENGRAM_SEMANTIC, none);
  add_ok(eg, OTHER, "coffee in another namespace", ENGRAM_SEMANTIC, other);
  for (int i = 0; i < 20; i++) {
    char filler[64];
    snprintf(filler, sizeof filler, "unrelated filler memory number %d", i);
    add_ok(eg, NS, filler, ENGRAM_WORKING, NULL);
  }

  stu_coll c;
  engram_query q = {.ns = NS, .text = "Coffee"};
  assert_int_equal(stu_search(eg, &q, 1, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, strong);
  assert_string_equal(c.nodes[1]->id, weak);
  for (size_t i = 0; i < c.n; i++) {
    assert_true(c.nodes[i]->relevance > 0 && c.nodes[i]->relevance < 1);
    assert_string_equal(c.nodes[i]->ns, NS);
  }
  assert_true(c.nodes[0]->relevance > c.nodes[1]->relevance);
  double weak_relevance = c.nodes[1]->relevance;
  double strong_relevance = c.nodes[0]->relevance;
  stu_coll_free(&c);

  /* Types filter. */
  q.types = 1u << ENGRAM_EPISODIC;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, weak);
  stu_coll_free(&c);
  q.types = (1u << ENGRAM_PROCEDURAL) | (1u << ENGRAM_WORKING);
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  q.types = 0;

  /* min_relevance drops the weaker hit and keeps the stronger. */
  q.min_relevance = (weak_relevance + strong_relevance) / 2;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, strong);
  assert_true(c.nodes[0]->relevance >= q.min_relevance);
  stu_coll_free(&c);
  q.min_relevance = 0.999999;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  q.min_relevance = 0;

  /* Any word matches (OR); diacritics and case fold. */
  q.text = "TEA or espresso";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_true(stu_find(&c, strong) >= 0 && stu_find(&c, none) >= 0);
  stu_coll_free(&c);
  char cafe[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "un café crème", ENGRAM_EPISODIC, cafe);
  q.text = "cafe creme";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, cafe);
  stu_coll_free(&c);
  q.text = "CAFÉ";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  tu_close(eg);
}

/* A word found in every memory of a small namespace still scores: the idf
 * of engram_rank() stays positive where FTS5's bm25() clamps it to 1e-6.
 *
 * Both backends rank with BM25 (PostgreSQL computes it in SQL from the
 * tsvector, with the statistics of the namespace's hits: pg_stream.c), and
 * on this data their scores agree (about 0.166 and 0.144 for "alice",
 * 0.447 and 0.166 for "alice lisbon"). The checks leave each backend a
 * tolerance of several hundredths: the 0.05 floor, the 0.1 gap and the 0.3
 * threshold hold for any scores within 0.05 of those. */
static void test_search_common_words_still_score(void **state) {
  (void)state;
  engram *eg = open_fresh("search-common", NULL);
  char lisbon[ENGRAM_ID_LEN + 1], tea[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "Alice moved to Lisbon in March", ENGRAM_SEMANTIC, lisbon);
  add_ok(eg, NS, "Alice prefers green tea", ENGRAM_SEMANTIC, tea);

  stu_coll c;
  engram_query q = {.ns = NS, .text = "alice"};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  for (size_t i = 0; i < c.n; i++)
    assert_true(c.nodes[i]->relevance > 0.05 && c.nodes[i]->relevance < 1.0);
  /* The shorter memory ranks first for a word both hold once (BM25's
   * length normalization). */
  assert_string_equal(c.nodes[0]->id, tea);
  stu_coll_free(&c);

  /* The rarer word decides: "lisbon" is in one memory, "alice" in both. */
  q.text = "alice lisbon";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, lisbon);
  assert_true(c.nodes[0]->relevance > c.nodes[1]->relevance + 0.1);
  assert_true(c.nodes[0]->relevance < 1.0);
  stu_coll_free(&c);

  /* A usable threshold: keeps the two-word match, drops the one-word one. */
  q.min_relevance = 0.3;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, lisbon);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_search_stopwords_and_empty(void **state) {
  (void)state;
  engram *eg = open_fresh("search-stop", NULL);
  char cat[ENGRAM_ID_LEN + 1], the[ENGRAM_ID_LEN + 1];
  add_ok(eg, NS, "a cat sat", ENGRAM_EPISODIC, cat);
  add_ok(eg, NS, "to be or not to be", ENGRAM_EPISODIC, the);
  stu_coll c;
  /* Stop words are dropped when other words remain: "the" would match
   * nothing here anyway, "to" would match the second memory. */
  engram_query q = {.ns = NS, .text = "to the cat"};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, cat);
  stu_coll_free(&c);
  /* All stop words: kept. */
  q.text = "To be, or not to be?";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, the);
  stu_coll_free(&c);
  /* Nothing searchable: an empty stream that still ends with 0. */
  const char *empties[] = {"", "   ", "!!! ??? ...", "\"\"", "*", "()"};
  for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
    q.text = empties[i];
    assert_int_equal(stu_search(eg, &q, 10, &c), 0);
    assert_int_equal(c.n, 0);
    stu_coll_free(&c);
  }
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

/* ------------------------------------------------------------------- list */

static const char *numbered(size_t i, void *arg) {
  static char buf[64];
  snprintf(buf, sizeof buf, "%s memory %zu", (const char *)arg, i);
  return buf;
}

static void test_list_order_and_filters(void **state) {
  (void)state;
  engram *eg = open_fresh("list", NULL);
  char ids[10][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 10; i++)
    add_ok(eg, i % 2 ? OTHER : NS, numbered((size_t)i, "l"),
           (engram_type)(i % 4), ids[i]);
  stu_coll c;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 3, &c), 0);
  assert_int_equal(c.n, 5);
  for (size_t i = 0; i < c.n; i++)
    assert_string_equal(c.nodes[i]->id, ids[2 * i]);
  stu_coll_free(&c);

  /* All namespaces, in id (creation) order. */
  q.ns = NULL;
  assert_int_equal(stu_list(eg, &q, 4, &c), 0);
  assert_int_equal(c.n, 10);
  for (size_t i = 0; i < c.n; i++)
    assert_string_equal(c.nodes[i]->id, ids[i]);
  stu_coll_free(&c);

  /* Types: 0,2 in NS are episodic and procedural (i % 4 for i = 0,4,8 ->
   * 0,0,0 and i = 2,6 -> 2,2). */
  q.ns = NS;
  q.types = 1u << ENGRAM_PROCEDURAL;
  assert_int_equal(stu_list(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, ids[2]);
  assert_string_equal(c.nodes[1]->id, ids[6]);
  stu_coll_free(&c);

  /* After a cursor. */
  q.types = 0;
  q.after = ids[4];
  assert_int_equal(stu_list(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, ids[6]);
  stu_coll_free(&c);
  tu_close(eg);
}

/* Pages of 7 through 60 memories while new ones arrive between pages:
 * every pre-existing memory exactly once, in order. */
typedef struct page_state {
  stu_coll c;
  size_t page;
} page_state;

static void page_item(engram_stream *s, const engram_node *node, void *data) {
  page_state *p = data;
  stu_item(s, node, &p->c);
  if (p->c.n % p->page == 0)
    engram_stream_cancel(s); /* a page is full */
}

static void test_list_pagination_under_inserts(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 4;
  engram *eg = open_fresh("paginate", &o);
  assert_int_equal(tu_add_many(eg, NS, 60, numbered, "old"), 0);
  stu_coll all;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 100, &all), 0);
  assert_int_equal(all.n, 60);

  char cursor[ENGRAM_ID_LEN + 1] = "";
  char **seen = calloc(1000, sizeof *seen);
  size_t nseen = 0;
  for (int round = 0; round < 100; round++) {
    page_state p;
    stu_coll_init(&p.c, eg, 7);
    p.c.auto_request = 0;
    p.page = 7;
    engram_stream_cbs cbs = {page_item, stu_error, stu_done, &p};
    q.after = cursor[0] ? cursor : NULL;
    assert_int_equal(engram_list(eg, &q, &cbs, &p.c.s), 0);
    stu_drain(&p.c);
    assert_true(p.c.status == 0 || p.c.status == ENGRAM_ECANCELED);
    for (size_t i = 0; i < p.c.n; i++) {
      if (nseen > 0)
        assert_true(strcmp(seen[nseen - 1], p.c.nodes[i]->id) < 0);
      seen[nseen++] = strdup(p.c.nodes[i]->id);
    }
    size_t got = p.c.n;
    if (got > 0)
      memcpy(cursor, p.c.nodes[got - 1]->id, sizeof cursor);
    stu_coll_free(&p.c);
    if (got < 7)
      break;
    /* Two concurrent inserts while the reader is between pages. */
    assert_int_equal(tu_add(eg, NS, numbered((size_t)round, "new-a"), 0, NULL),
                     0);
    assert_int_equal(tu_add(eg, NS, numbered((size_t)round, "new-b"), 0, NULL),
                     0);
  }
  for (size_t i = 0; i < all.n; i++) {
    size_t hits = 0;
    for (size_t k = 0; k < nseen; k++)
      hits += strcmp(seen[k], all.nodes[i]->id) == 0;
    assert_int_equal(hits, 1);
  }
  /* Paging reaches the end: it saw the new ones as well. */
  assert_true(nseen > all.n);
  assert_int_equal(nseen, tu_count(eg, NS));
  for (size_t k = 0; k < nseen; k++)
    free(seen[k]);
  free(seen);
  stu_coll_free(&all);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

/* A paused list keeps its snapshot: inserts during the pause do not make
 * it repeat or skip older rows. */
static void test_list_paused_stream_with_inserts(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 3;
  engram *eg = open_fresh("paused-list", &o);
  assert_int_equal(tu_add_many(eg, NS, 20, numbered, "p"), 0);
  stu_coll c;
  stu_coll_init(&c, eg, 5);
  c.auto_request = 0;
  engram_stream_cbs cbs = stu_cbs(&c);
  engram_query q = {.ns = NS};
  assert_int_equal(engram_list(eg, &q, &cbs, &c.s), 0);
  while (!c.done) {
    c.requested += 5;
    assert_int_equal(engram_stream_request(c.s, 5), 0);
    size_t target = c.requested;
    while (c.received < target && !c.done)
      uv_run(engram_loop(eg), UV_RUN_ONCE);
    if (c.done)
      break;
    /* Paused: a statement is open, no thread holds it. */
    assert_int_equal(stu_stats(eg).queries_running, 1);
    assert_int_equal(tu_add(eg, NS, "inserted while paused", 0, NULL), 0);
  }
  assert_int_equal(c.status, 0);
  assert_true(c.n >= 20);
  for (size_t i = 1; i < c.n; i++)
    assert_true(strcmp(c.nodes[i - 1]->id, c.nodes[i]->id) < 0);
  stu_coll_free(&c);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

/* --------------------------------------------------------------- traverse */

static void test_traverse(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 2;
  engram *eg = open_fresh("traverse", &o);
  /*   a -0.9- b -0.9- c -0.9- d
   *   a -0.1- w (weak)        b <-0.8- e (reverse direction)
   *   c -0.9- a (cycle)       x in another namespace                  */
  char a[37], b[37], c_[37], d[37], w[37], e[37], x[37];
  add_ok(eg, NS, "a", 0, a);
  add_ok(eg, NS, "b", 0, b);
  add_ok(eg, NS, "c", 0, c_);
  add_ok(eg, NS, "d", 0, d);
  add_ok(eg, NS, "w", 0, w);
  add_ok(eg, NS, "e", 0, e);
  add_ok(eg, OTHER, "x", 0, x);
  assert_int_equal(stu_link(eg, NS, a, b, "next", 0.9), 0);
  assert_int_equal(stu_link(eg, NS, b, c_, "next", 0.9), 0);
  assert_int_equal(stu_link(eg, NS, c_, d, "next", 0.9), 0);
  assert_int_equal(stu_link(eg, NS, a, w, "weak", 0.1), 0);
  assert_int_equal(stu_link(eg, NS, e, b, "points", 0.8), 0);
  assert_int_equal(stu_link(eg, NS, c_, a, "cycle", 0.9), 0);

  stu_coll col;
  assert_int_equal(stu_traverse(eg, NS, a, 10, 0.0, 1, &col), 0);
  assert_int_equal(col.n, 6); /* a b c d w e, each once */
  assert_string_equal(col.nodes[0]->id, a);
  assert_int_equal(col.nodes[0]->depth, 0);
  uint32_t depth_of[6];
  const char *ids[6] = {a, b, c_, d, w, e};
  uint32_t expect[6] = {0, 1, 1, 2, 1, 2};
  for (int i = 0; i < 6; i++) {
    int k = stu_find(&col, ids[i]);
    assert_true(k >= 0);
    depth_of[i] = col.nodes[k]->depth;
    assert_int_equal(depth_of[i], expect[i]);
  }
  for (size_t i = 1; i < col.n; i++) /* breadth-first: depth never drops */
    assert_true(col.nodes[i]->depth >= col.nodes[i - 1]->depth);
  stu_coll_free(&col);

  /* Depth limit. */
  assert_int_equal(stu_traverse(eg, NS, a, 1, 0.0, 10, &col), 0);
  assert_int_equal(col.n, 4); /* a, b, c (via the cycle link), w */
  assert_true(stu_find(&col, d) < 0 && stu_find(&col, e) < 0);
  stu_coll_free(&col);
  assert_int_equal(stu_traverse(eg, NS, a, 0, 0.0, 10, &col), 0);
  assert_int_equal(col.n, 1);
  stu_coll_free(&col);

  /* Strength filter. */
  assert_int_equal(stu_traverse(eg, NS, a, 10, 0.85, 10, &col), 0);
  assert_int_equal(col.n, 4); /* a b c d: no w (0.1), no e (0.8) */
  assert_true(stu_find(&col, w) < 0 && stu_find(&col, e) < 0);
  stu_coll_free(&col);

  /* From the far end, against the direction of the links. */
  assert_int_equal(stu_traverse(eg, NS, d, 1, 0.0, 10, &col), 0);
  assert_int_equal(col.n, 2);
  assert_string_equal(col.nodes[1]->id, c_);
  stu_coll_free(&col);

  /* A start that is not in the namespace. */
  assert_int_equal(stu_traverse(eg, NS, x, 3, 0.0, 10, &col), ENGRAM_ENOTFOUND);
  assert_int_equal(col.n, 0);
  stu_coll_free(&col);
  assert_int_equal(stu_traverse(eg, OTHER, x, 3, 0.0, 10, &col), 0);
  assert_int_equal(col.n, 1);
  stu_coll_free(&col);

  /* Cancel part-way. */
  stu_coll_init(&col, eg, 1);
  col.cancel_after = 2;
  engram_stream_cbs cbs = stu_cbs(&col);
  assert_int_equal(engram_traverse(eg, NS, a, 10, 0.0, &cbs, &col.s), 0);
  stu_drain(&col);
  assert_int_equal(col.status, ENGRAM_ECANCELED);
  assert_int_equal(col.n, 2);
  stu_coll_free(&col);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

static void test_traverse_wide(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 8;
  engram *eg = open_fresh("traverse-wide", &o);
  char hub[37];
  add_ok(eg, NS, "hub", 0, hub);
  enum { SPOKES = 300 };
  engram_op *ops = calloc(SPOKES * 2, sizeof *ops);
  char(*ids)[37] = calloc(SPOKES, sizeof *ids);
  for (int i = 0; i < SPOKES; i++) {
    engram_id_new(ids[i]);
    ops[2 * i] = (engram_op){
        .kind = ENGRAM_OP_ADD, .ns = NS, .id = ids[i], .content = "spoke"};
    ops[2 * i + 1] = (engram_op){.kind = ENGRAM_OP_LINK,
                                 .ns = NS,
                                 .source = hub,
                                 .target = ids[i],
                                 .rel_kind = "spoke",
                                 .strength = 1};
  }
  stu_write w = {0};
  assert_int_equal(engram_write(eg, ops, SPOKES * 2, stu_on_write, &w), 0);
  tu_run_until(eg, &w.done);
  assert_int_equal(w.status, 0);
  stu_coll col;
  assert_int_equal(stu_traverse(eg, NS, hub, 2, 0.0, 13, &col), 0);
  assert_int_equal(col.n, SPOKES + 1);
  for (size_t i = 1; i < col.n; i++)
    assert_int_equal(col.nodes[i]->depth, 1);
  stu_coll_free(&col);
  free(ops);
  free(ids);
  tu_close(eg);
}

/* --------------------------------------------------- files and versions */

static void set_user_version(const char *path, int version) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* The schema version a PostgreSQL database records (engram_schema). */
static void set_pg_schema_version(const char *db, int version) {
  char sql[128];
  snprintf(sql, sizeof sql, "UPDATE engram_schema SET version = %d", version);
  tu_pg_exec(db, sql);
}

/* A database made by a newer engram is refused before anything is written,
 * with a message that says so; SQLite keeps the version in PRAGMA
 * user_version, PostgreSQL in engram_schema.version. */
static void test_newer_schema_version_refused(void **state) {
  (void)state;
  int pg = tu_backend_is_pg();
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("version"));
  engram *eg = tu_open(path, NULL);
  add_ok(eg, NS, "kept", 0, NULL);
  tu_close(eg);
  if (pg)
    set_pg_schema_version(path, 99);
  else
    set_user_version(path, 7);
  char msg[512];
  assert_int_equal(stu_try_open(path, NULL, &eg, msg, sizeof msg),
                   ENGRAM_EVERSION);
  assert_null(eg);
  if (!pg)
    assert_non_null(strstr(msg, path));
  assert_non_null(strstr(msg, pg ? "99" : "7"));
  assert_non_null(strstr(msg, "upgrade"));
  /* Untouched: back at its own version it opens with its data. */
  if (pg)
    set_pg_schema_version(path, PG_SCHEMA_VERSION_NOW);
  else
    set_user_version(path, SQLITE_SCHEMA_VERSION_NOW);
  eg = tu_open(path, NULL);
  assert_int_equal(tu_count(eg, NS), 1);
  tu_close(eg);
}

static void test_not_a_database(void **state) {
  (void)state;
  tu_skip_unless_sqlite("a file that is not a database is SQLite's case "
                        "(PostgreSQL's is test_foreign_database)");
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("garbage"));
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (int i = 0; i < 4096; i++)
    fputc("this is not sqlite\n"[i % 19], f);
  fclose(f);
  engram *eg;
  char msg[512];
  assert_int_equal(stu_try_open(path, NULL, &eg, msg, sizeof msg),
                   ENGRAM_ECORRUPT);
  assert_non_null(strstr(msg, path));
  /* And it is left as it was. */
  f = fopen(path, "rb");
  char head[19];
  assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
  fclose(f);
  assert_memory_equal(head, "this is not sqlite\n", sizeof head);
}

/* A database of another program is refused, and left as it was. On
 * SQLite: a file with tables of its own. On PostgreSQL, where a database
 * (and a schema) may well hold other programs' tables, a table of engram's
 * name that is not engram's: a foreign `memories` in the schema. */
static void test_foreign_database(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("foreign"));
  if (tu_backend_is_pg()) {
    tu_pg_exec(path, "CREATE TABLE memories(x integer)");
    engram *eg;
    char msg[512];
    assert_int_equal(stu_try_open(path, NULL, &eg, msg, sizeof msg),
                     ENGRAM_ECORRUPT);
    assert_null(eg);
    assert_non_null(strstr(msg, "memories"));
    /* Left as it was: the table has its one column, and takes rows. */
    tu_pg_exec(path, "INSERT INTO memories(x) VALUES (1)");
    return;
  }
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "CREATE TABLE accounts(x)", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  engram *eg;
  char msg[512];
  assert_int_equal(stu_try_open(path, NULL, &eg, msg, sizeof msg),
                   ENGRAM_ECORRUPT);
  assert_non_null(strstr(msg, path));
}

/* A database that cannot be reached: ENGRAM_EIO, and the message names it.
 * SQLite: a path that cannot be made. PostgreSQL: a server that is not
 * there (nothing listens on port 1 of the loopback), as a key=value
 * conninfo and as a URI. */
static void test_unopenable_path(void **state) {
  (void)state;
  engram *eg;
  char msg[512];
  if (tu_backend_is_pg()) {
    const char *unreachable[] = {
        "host=127.0.0.1 port=1 dbname=engram user=postgres connect_timeout=5",
        "postgresql://postgres@127.0.0.1:1/engram?connect_timeout=5"};
    for (size_t i = 0; i < 2; i++) {
      int rc = stu_try_open(unreachable[i], NULL, &eg, msg, sizeof msg);
      assert_int_equal(rc, ENGRAM_EIO);
      assert_null(eg);
      if (!strstr(msg, "127.0.0.1:1"))
        fail_msg("the message does not name the server: %s", msg);
    }
    return;
  }
  int rc = stu_try_open("/proc/engram-no-such-dir/x/y.db", NULL, &eg, msg,
                        sizeof msg);
  assert_int_equal(rc, ENGRAM_EIO);
  assert_true(strlen(msg) > 0);
}

/* No path: ./data/engram.db, its directory made on the way; an empty file
 * is a new database. */
static void test_default_path_and_empty_file(void **state) {
  (void)state;
  tu_skip_unless_sqlite("the default path and an empty file are SQLite "
                        "files");
  char dir[1024], cwd[1024];
  snprintf(dir, sizeof dir, "%s", tu_db_path("default-path"));
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(dir), 0);
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, NULL), 0);
  stu_open o = {0};
  assert_int_equal(engram_open(eg, stu_on_open, &o), 0);
  tu_run_until(eg, &o.done);
  assert_int_equal(o.status, 0);
  add_ok(eg, NS, "in the default place", 0, NULL);
  tu_close(eg);
  assert_int_equal(access("data/engram.db", F_OK), 0);
  unlink("data/engram.db");
  rmdir("data");
  assert_int_equal(chdir(cwd), 0);

  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("empty-file"));
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fclose(f);
  eg = tu_open(path, NULL);
  add_ok(eg, NS, "fresh", 0, NULL);
  assert_int_equal(tu_count(eg, NS), 1);
  tu_close(eg);
}

static void test_reopen_keeps_data(void **state) {
  (void)state;
  int pg = tu_backend_is_pg();
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("reopen"));
  if (!pg) {
    /* Also checks that a missing parent directory is created (the call
     * above made sure the scratch directory exists). */
    const char *dir = getenv("ENGRAM_TEST_TMP");
    snprintf(path, sizeof path, "%s/reopen-%d/engram.db",
             dir && *dir ? dir : "/tmp/engram-test", (int)getpid());
    unlink(path);
  }
  char id[37], a[37], b[37];
  engram_options o;
  engram_options_init(&o);
  o.durability = ENGRAM_DURABILITY_FULL;
  engram *eg = tu_open(path, &o);
  add_ok(eg, NS, "durable words", ENGRAM_SEMANTIC, id);
  add_ok(eg, NS, "a", 0, a);
  add_ok(eg, NS, "b", 0, b);
  assert_int_equal(stu_link(eg, NS, a, b, "k", 0.5), 0);
  tu_close(eg);

  eg = tu_open(path, NULL);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, id, &n), 0);
  assert_string_equal(n->content, "durable words");
  engram_node_free(n);
  stu_coll c;
  engram_query q = {.ns = NS, .text = "durable"};
  assert_int_equal(stu_search(eg, &q, 5, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  stu_rels r;
  assert_int_equal(stu_rels_of(eg, NS, a, &r), 0);
  assert_int_equal(r.n, 1);
  stu_history h;
  assert_int_equal(stu_history_of(eg, NS, id, &h), 0);
  assert_int_equal(h.n, 1);
  tu_close(eg);
  if (pg)
    return;
  unlink(path);
  char dirpath[1024];
  snprintf(dirpath, sizeof dirpath, "%s", path);
  *strrchr(dirpath, '/') = '\0';
  rmdir(dirpath);
}

/* Another process holding the write lock: reads go on meanwhile; a write
 * waits (on a pool thread, within the busy timeout) and commits when the
 * lock is released, or fails with ENGRAM_EBUSY when it is not. */
static void release_lock(void *data) {
  assert_int_equal(sqlite3_exec(data, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

/* PostgreSQL's counterpart: another session holds a lock that blocks
 * writes to the memories table (EXCLUSIVE lets readers through). Reads go
 * on; the write waits on the server, with no thread of ours held, and
 * commits when the lock is released. (PostgreSQL waits for a lock without
 * a timeout unless told to; there is no busy timeout to run out here.) */
static void pg_release_lock(void *data) {
  PGresult *r = PQexec(data, "COMMIT");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
}

static void pg_lock_held_elsewhere(const char *path) {
  engram *eg = tu_open(path, NULL);
  char id[37];
  add_ok(eg, NS, "readable while locked", 0, id);
  PGconn *other = PQconnectdb(path);
  assert_int_equal(PQstatus(other), CONNECTION_OK);
  PGresult *r = PQexec(other, "BEGIN; LOCK TABLE memories IN EXCLUSIVE MODE");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);

  stu_write w = {0};
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "waited"};
  assert_int_equal(engram_write(eg, &op, 1, stu_on_write, &w), 0);
  stu_get g = {0};
  assert_int_equal(engram_get(eg, NS, id, stu_on_get, &g), 0);
  tu_run_until(eg, &g.done);
  assert_int_equal(g.status, 0); /* a reader is not held up by the lock */
  assert_false(w.done);
  engram_node_free(g.node);
  stu_coll c;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  assert_false(w.done);
  tl_after(engram_loop(eg), 300, pg_release_lock, other);
  tu_run_until(eg, &w.done);
  assert_int_equal(w.status, 0);
  PQfinish(other);
  assert_int_equal(tu_count(eg, NS), 2);
  tu_close(eg);
}

static void test_write_lock_held_elsewhere(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("locked"));
  if (tu_backend_is_pg()) {
    pg_lock_held_elsewhere(path);
    return;
  }
  engram *eg = tu_open(path, NULL);
  char id[37];
  add_ok(eg, NS, "readable while locked", 0, id);
  sqlite3 *other;
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);

  /* Released after 300 ms: the write waits, then commits. */
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  stu_write w = {0};
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "waited"};
  assert_int_equal(engram_write(eg, &op, 1, stu_on_write, &w), 0);
  stu_get g = {0};
  assert_int_equal(engram_get(eg, NS, id, stu_on_get, &g), 0);
  tu_run_until(eg, &g.done);
  assert_int_equal(g.status, 0); /* a reader is not held up by the lock */
  assert_false(w.done);
  engram_node_free(g.node);
  tl_after(engram_loop(eg), 300, release_lock, other);
  tu_run_until(eg, &w.done);
  assert_int_equal(w.status, 0);

  /* Held past the busy timeout: the batch fails, and says why. */
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  engram_op op2 = {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "refused"};
  assert_int_equal(stu_write_ops(eg, &op2, 1), ENGRAM_EBUSY);
  assert_int_equal(op2.status, ENGRAM_EBUSY);
  assert_true(strlen(op2.message) > 0);
  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  engram_op op3 = {.kind = ENGRAM_OP_ADD, .ns = NS, .content = "after"};
  assert_int_equal(stu_write_ops(eg, &op3, 1), 0);
  sqlite3_close(other);
  assert_int_equal(tu_count(eg, NS), 3);
  tu_close(eg);
}

/* Writes queued when close is called still commit, and are acknowledged. */
static void on_counted_write(int status, engram_op *ops, size_t n, void *data) {
  (void)ops;
  (void)n;
  assert_int_equal(status, 0);
  (*(int *)data)++;
}

static void test_close_commits_queued_writes(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("close-queued"));
  engram *eg = tu_open(path, NULL);
  int acked = 0;
  static engram_op ops[50];
  char contents[50][32];
  for (int i = 0; i < 50; i++) {
    snprintf(contents[i], sizeof contents[i], "queued %d", i);
    ops[i] =
        (engram_op){.kind = ENGRAM_OP_ADD, .ns = NS, .content = contents[i]};
    assert_int_equal(engram_write(eg, &ops[i], 1, on_counted_write, &acked), 0);
  }
  tu_close(eg); /* without running the loop first */
  assert_int_equal(acked, 50);
  eg = tu_open(path, NULL);
  assert_int_equal(tu_count(eg, NS), 50);
  tu_close(eg);
}

/* ------------------------------------------------------------ cancelling */

static const char *same_word(size_t i, void *arg) {
  (void)arg;
  static char buf[64];
  snprintf(buf, sizeof buf, "needle haystack item %zu", i);
  return buf;
}

static void test_cancel_mid_stream(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 4;
  o.readers = 2;
  engram *eg = open_fresh("cancel", &o);
  assert_int_equal(tu_add_many(eg, NS, 200, same_word, NULL), 0);

  /* Cancel from inside an item callback. */
  stu_coll c;
  stu_coll_init(&c, eg, 3);
  c.cancel_after = 10;
  engram_stream_cbs cbs = stu_cbs(&c);
  engram_query q = {.ns = NS, .text = "needle"};
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  stu_drain(&c);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_int_equal(c.n, 10);
  stu_coll_free(&c);
  engram_stats s = stu_stats(eg);
  assert_int_equal(s.queries_running, 0);
  assert_int_equal(s.streams_open, 0);

  /* Cancel while a chunk is on the thread pool (right after requesting). */
  for (int i = 0; i < 20; i++) {
    stu_coll_init(&c, eg, 50);
    cbs = stu_cbs(&c);
    engram_query lq = {.ns = NS};
    assert_int_equal(engram_list(eg, &lq, &cbs, &c.s), 0);
    c.requested = 50;
    assert_int_equal(engram_stream_request(c.s, 50), 0);
    engram_stream_cancel(c.s);
    tu_run_until(eg, &c.done);
    assert_int_equal(c.status, ENGRAM_ECANCELED);
    assert_int_equal(c.n, 0);
    stu_coll_free(&c);
    assert_int_equal(stu_stats(eg).queries_running, 0);
  }

  /* Cancel while paused. */
  stu_coll_init(&c, eg, 5);
  c.auto_request = 0;
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 5;
  assert_int_equal(engram_stream_request(c.s, 5), 0);
  while (c.received < 5)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_int_equal(stu_stats(eg).queries_running, 1);
  engram_stream_cancel(c.s);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_int_equal(c.n, 5);
  stu_coll_free(&c);
  assert_int_equal(stu_stats(eg).queries_running, 0);

  /* The readers still work after all those interrupts. */
  assert_int_equal(tu_count(eg, NS), 200);
  assert_int_equal(stu_search(eg, &q, 64, &c), 0);
  assert_int_equal(c.n, 200);
  stu_coll_free(&c);
  tu_close(eg);
}

/* A cancel that lands while a long statement step runs on the thread pool
 * (ranking tens of thousands of matches) interrupts it, and the one reader
 * connection is fit for the next query afterwards. */
static void cancel_now(void *data) {
  engram_stream_cancel(data);
}

static void test_cancel_interrupts_long_query(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.readers = 1;
  engram *eg = open_fresh("interrupt", &o);
  assert_int_equal(tu_add_many(eg, NS, 20000, same_word, NULL), 0);
  engram_query q = {.ns = NS, .text = "needle haystack"};

  uint64_t t0 = uv_hrtime();
  stu_coll c;
  stu_coll_init(&c, eg, 1);
  c.auto_request = 0;
  engram_stream_cbs cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 1;
  engram_stream_request(c.s, 1);
  while (c.received < 1)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  uint64_t full = uv_hrtime() - t0;
  engram_stream_cancel(c.s);
  tu_run_until(eg, &c.done);
  stu_coll_free(&c);

  uint64_t fastest = UINT64_MAX;
  for (int round = 0; round < 5; round++) {
    stu_coll_init(&c, eg, 10);
    cbs = stu_cbs(&c);
    assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
    c.requested = 10;
    engram_stream_request(c.s, 10);
    t0 = uv_hrtime();
    tl_after(engram_loop(eg), (uint64_t)round, cancel_now, c.s);
    tu_run_until(eg, &c.done);
    uint64_t cancelled = uv_hrtime() - t0;
    if (cancelled < fastest)
      fastest = cancelled;
    assert_int_equal(c.status, ENGRAM_ECANCELED);
    assert_true(c.n <= 10);
    print_message("first chunk %.1f ms; cancelled after %d ms: done in "
                  "%.1f ms with %zu items\n",
                  (double)full / 1e6, round, (double)cancelled / 1e6, c.n);
    stu_coll_free(&c);
    assert_int_equal(stu_stats(eg).queries_running, 0);
  }
  /* The step was cut short, not waited out. */
  assert_true(fastest < full / 2);
  /* The same (only) connection answers the next query in full. */
  stu_coll_init(&c, eg, 5);
  c.cancel_after = 25;
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  stu_drain(&c);
  assert_int_equal(c.n, 25);
  stu_coll_free(&c);
  char id[37];
  add_ok(eg, NS, "after the interrupts", 0, id);
  assert_int_equal(stu_get_node(eg, NS, id, NULL), 0);
  tu_close(eg);
}

/* One reader: a paused stream holds it; others queue on the loop, and a
 * queued stream can be cancelled; when the holder ends, the queue moves. */
static void test_reader_queue(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.readers = 1;
  o.chunk_rows = 2;
  engram *eg = open_fresh("reader-queue", &o);
  char id[37];
  assert_int_equal(tu_add_many(eg, NS, 10, numbered, "q"), 0);
  add_ok(eg, NS, "target", 0, id);

  stu_coll holder;
  stu_coll_init(&holder, eg, 2);
  holder.auto_request = 0;
  engram_stream_cbs cbs = stu_cbs(&holder);
  engram_query q = {.ns = NS};
  assert_int_equal(engram_list(eg, &q, &cbs, &holder.s), 0);
  holder.requested = 2;
  engram_stream_request(holder.s, 2);
  while (holder.received < 2)
    uv_run(engram_loop(eg), UV_RUN_ONCE);

  /* Queued: a list and three gets. */
  stu_coll waiter;
  stu_coll_init(&waiter, eg, 100);
  engram_stream_cbs wcbs = stu_cbs(&waiter);
  assert_int_equal(engram_list(eg, &q, &wcbs, &waiter.s), 0);
  waiter.requested = 100;
  engram_stream_request(waiter.s, 100);
  stu_get gets[3] = {{0}};
  for (int i = 0; i < 3; i++)
    assert_int_equal(engram_get(eg, NS, id, stu_on_get, &gets[i]), 0);
  uv_run(engram_loop(eg), UV_RUN_NOWAIT);
  assert_false(gets[0].done); /* the only reader is held */

  engram_stream_cancel(waiter.s); /* cancelled while queued */
  tu_run_until(eg, &waiter.done);
  assert_int_equal(waiter.status, ENGRAM_ECANCELED);
  assert_int_equal(waiter.n, 0);
  assert_false(gets[0].done);

  engram_stream_cancel(holder.s);
  tu_run_until(eg, &holder.done);
  for (int i = 0; i < 3; i++) {
    tu_run_until(eg, &gets[i].done);
    assert_int_equal(gets[i].status, 0);
    assert_string_equal(gets[i].node->content, "target");
    engram_node_free(gets[i].node);
  }
  stu_coll_free(&holder);
  stu_coll_free(&waiter);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

/* Closing with open streams cancels them; nothing is left running. */
static void test_close_with_open_streams(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.readers = 1;
  o.chunk_rows = 2;
  engram *eg = open_fresh("close-streams", &o);
  assert_int_equal(tu_add_many(eg, NS, 10, numbered, "c"), 0);
  stu_coll a, b;
  stu_coll_init(&a, eg, 2);
  stu_coll_init(&b, eg, 2);
  a.auto_request = b.auto_request = 0;
  engram_stream_cbs ca = stu_cbs(&a), cb = stu_cbs(&b);
  engram_query q = {.ns = NS};
  assert_int_equal(engram_list(eg, &q, &ca, &a.s), 0);
  assert_int_equal(engram_list(eg, &q, &cb, &b.s), 0);
  a.requested = b.requested = 2;
  engram_stream_request(a.s, 2);
  engram_stream_request(b.s, 2); /* queued behind a */
  while (a.received < 2)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  tu_close(eg);
  assert_true(a.done && b.done);
  assert_int_equal(a.status, ENGRAM_ECANCELED);
  assert_int_equal(b.status, ENGRAM_ECANCELED);
  stu_coll_free(&a);
  stu_coll_free(&b);
}

/* PostgreSQL's counterpart: a row of a type engram does not know (content
 * that is not UTF-8 cannot be stored in a UTF8 database: the server
 * refuses it). */
static void pg_undecodable_row(const char *path) {
  engram *eg = tu_open(path, NULL);
  char first[37], last[37], bad[37], sql[512];
  add_ok(eg, NS, "good first word", 0, first);
  engram_id_new(bad);
  snprintf(sql, sizeof sql,
           "INSERT INTO memories(id, ns, type, content, content_hash, "
           "created_ms, updated_ms, accessed_ms, importance) VALUES "
           "('%s', '%s', 9, 'bad word type', 0, 0, 0, 0, 0.5)",
           bad, NS);
  tu_pg_exec(path, sql);
  add_ok(eg, NS, "good last word", 0, last);
  stu_coll c;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 1, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, first);
  assert_string_equal(c.nodes[1]->id, last);
  assert_int_equal(c.errors, 1);
  assert_int_equal(c.last_error, ENGRAM_ECORRUPT);
  stu_coll_free(&c);
  assert_int_equal(stu_stats(eg).items_failed, 1);

  q.text = "word";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_true(c.errors <= 1); /* the bad type, if it was indexed */
  stu_coll_free(&c);
  assert_int_equal(stu_get_node(eg, NS, bad, NULL), ENGRAM_ECORRUPT);
  tu_close(eg);
}

/* A row written by another program with a type engram does not know, or
 * content that is not UTF-8, is reported and skipped; the stream goes on. */
static void test_undecodable_rows_are_reported(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("bad-rows"));
  if (tu_backend_is_pg()) {
    pg_undecodable_row(path);
    return;
  }
  engram *eg = tu_open(path, NULL);
  char first[37], last[37];
  add_ok(eg, NS, "good first word", 0, first);
  tu_close(eg);

  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char bad1[37], bad2[37], sql[512];
  engram_id_new(bad1);
  engram_id_new(bad2);
  snprintf(sql, sizeof sql,
           "INSERT INTO memories(id, ns, type, content, content_hash, "
           "created_ms, updated_ms, accessed_ms, importance) VALUES "
           "('%s', '%s', 9, 'bad word type', 0, 0, 0, 0, 0.5);"
           "INSERT INTO memories(id, ns, type, content, content_hash, "
           "created_ms, updated_ms, accessed_ms, importance) VALUES "
           "('%s', '%s', 0, CAST(X'776F726420FF' AS TEXT), 0, 0, 0, 0, 0.5);",
           bad1, NS, bad2, NS);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  eg = tu_open(path, NULL);
  add_ok(eg, NS, "good last word", 0, last);
  stu_coll c;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 1, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, first);
  assert_string_equal(c.nodes[1]->id, last);
  assert_int_equal(c.errors, 2);
  stu_coll_free(&c);
  engram_stats s = stu_stats(eg);
  assert_int_equal(s.items_failed, 2);

  q.text = "word";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 2);
  assert_true(c.errors >= 1); /* the bad type; the bad UTF-8 if indexed */
  stu_coll_free(&c);

  /* A point read of a bad row fails with a status instead. */
  assert_int_equal(stu_get_node(eg, NS, bad1, NULL), ENGRAM_ECORRUPT);
  assert_int_equal(stu_get_node(eg, NS, bad2, NULL), ENGRAM_EUTF8);
  tu_close(eg);
}

/* A stored vector whose bytes disagree with its recorded dimension (a row
 * changed by another program) fails the point read and is reported and
 * skipped by a stream; a vector stored without an embedder's name reads
 * back under "client". Both backends. */
static void test_corrupt_vectors_are_reported(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("bad-vectors"));
  engram_options o;
  engram_options_init(&o);
  o.embedder.kind = ENGRAM_EMBEDDER_NONE;
  engram *eg = tu_open(path, &o);
  const float v[3] = {0.5f, -2.0f, 1e-3f};
  char id[3][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    char content[32];
    snprintf(content, sizeof content, "vector row %d", i);
    engram_op op = {.kind = ENGRAM_OP_ADD,
                    .ns = NS,
                    .type = ENGRAM_SEMANTIC,
                    .content = content,
                    .embedding = v,
                    .embedding_dim = 3};
    assert_int_equal(stu_write_ops(eg, &op, 1), 0);
    assert_int_equal(op.status, 0);
    memcpy(id[i], op.result_id, sizeof id[i]);
  }
  /* 1: twelve bytes said to be four floats; 2: two bytes for three. */
  char sql[512];
  if (tu_backend_is_pg()) {
    snprintf(sql, sizeof sql,
             "UPDATE memories SET embedding_dim = 4 WHERE id = '%s';"
             "UPDATE memories SET embedding = '\\x0102'::bytea"
             " WHERE id = '%s';",
             id[1], id[2]);
    tu_pg_exec(path, sql);
  } else {
    tu_close(eg);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql,
             "UPDATE memories SET embedding_dim = 4 WHERE id = '%s';"
             "UPDATE memories SET embedding = X'0102' WHERE id = '%s';",
             id[1], id[2]);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    eg = tu_open(path, &o);
  }
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, id[0], &n), 0);
  assert_int_equal(n->embedding_dim, 3);
  assert_true(n->embedding[0] == v[0] && n->embedding[1] == v[1] &&
              n->embedding[2] == v[2]);
  assert_string_equal(n->embedder, "client");
  assert_string_equal(n->content, "vector row 0");
  engram_node_free(n);
  assert_int_equal(stu_get_node(eg, NS, id[1], NULL), ENGRAM_ECORRUPT);
  assert_int_equal(stu_get_node(eg, NS, id[2], NULL), ENGRAM_ECORRUPT);
  stu_coll c;
  engram_query q = {.ns = NS};
  assert_int_equal(stu_list(eg, &q, 1, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, id[0]);
  assert_int_equal(c.errors, 2);
  assert_int_equal(c.last_error, ENGRAM_ECORRUPT);
  stu_coll_free(&c);
  tu_close(eg);
}

/* The consumer's demand bounds delivery: 1 at a time, and nothing before
 * the first request. */
static void test_demand_bounds_delivery(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 64;
  engram *eg = open_fresh("demand", &o);
  assert_int_equal(tu_add_many(eg, NS, 30, numbered, "d"), 0);
  stu_coll c;
  stu_coll_init(&c, eg, 1);
  c.auto_request = 0;
  engram_stream_cbs cbs = stu_cbs(&c);
  engram_query q = {.ns = NS};
  assert_int_equal(engram_list(eg, &q, &cbs, &c.s), 0);
  engram_run(eg); /* nothing asked: nothing runs, nothing arrives */
  assert_int_equal(c.received, 0);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  for (int i = 0; i < 30; i++) {
    c.requested++;
    engram_stream_request(c.s, 1);
    engram_run(eg);
    assert_int_equal(c.received, (size_t)i + 1);
  }
  c.requested++;
  engram_stream_request(c.s, 1);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 30);
  stu_coll_free(&c);
  tu_close(eg);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_and_get),
      cmocka_unit_test(test_add_with_given_id_and_duplicate),
      cmocka_unit_test(test_dedup),
      cmocka_unit_test(test_batch_atomicity),
      cmocka_unit_test(test_group_commit_isolates_failing_batch),
      cmocka_unit_test(test_write_batch_max_splits_groups),
      cmocka_unit_test(test_update),
      cmocka_unit_test(test_delete_and_history),
      cmocka_unit_test(test_link_unlink),
      cmocka_unit_test(test_search_ranking),
      cmocka_unit_test(test_search_common_words_still_score),
      cmocka_unit_test(test_search_stopwords_and_empty),
      cmocka_unit_test(test_list_order_and_filters),
      cmocka_unit_test(test_list_pagination_under_inserts),
      cmocka_unit_test(test_list_paused_stream_with_inserts),
      cmocka_unit_test(test_traverse),
      cmocka_unit_test(test_traverse_wide),
      cmocka_unit_test(test_newer_schema_version_refused),
      cmocka_unit_test(test_not_a_database),
      cmocka_unit_test(test_foreign_database),
      cmocka_unit_test(test_unopenable_path),
      cmocka_unit_test(test_default_path_and_empty_file),
      cmocka_unit_test(test_reopen_keeps_data),
      cmocka_unit_test(test_close_commits_queued_writes),
      cmocka_unit_test(test_write_lock_held_elsewhere),
      cmocka_unit_test(test_cancel_mid_stream),
      cmocka_unit_test(test_cancel_interrupts_long_query),
      cmocka_unit_test(test_reader_queue),
      cmocka_unit_test(test_close_with_open_streams),
      cmocka_unit_test(test_undecodable_rows_are_reported),
      cmocka_unit_test(test_corrupt_vectors_are_reported),
      cmocka_unit_test(test_demand_bounds_delivery),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
