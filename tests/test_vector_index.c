/*
 * test_vector_index.c — the in-process vector index (src/search/
 * vector_index.*) over a real store: catch-up with adds, content updates
 * (a new vector), type changes and deletes; a second handle writing the
 * same database (another process, as far as the index can tell); writes
 * landing while a scan runs; multi-page catch-ups; the int8 copy of a large
 * set; eviction; a change of space; cancellation while catching up and
 * while scanning, also from inside callbacks; close with work out; and
 * 1000 concurrent searches. main() sets UV_THREADPOOL_SIZE=1: every
 * catch-up and scan chunk queues behind the others on one thread.
 *
 * Vectors are the ones engram computes on write with its default hashed
 * embedder; queries are embedded here with the same embedder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engram_internal.h"
#include "search/embed.h"
#include "search/vector_index.h"
#include "store_tu.h"
#include "tu.h"

#define NS "vix"
#define DIM SEARCH_HASHED_DEFAULT_DIM
#define MAX_HITS 64

static search_hashed g_emb;

static void embed(const char *text, float *out) {
  assert_int_equal(search_hashed_embed(&g_emb, text, strlen(text), out), 0);
}

/* One search and what came back. */
typedef struct vs {
  engram *eg;
  vector_index_req *req;
  int done;
  int calls;
  int status;
  size_t n;
  vector_index_hit hits[MAX_HITS];
  /* in the callback: */
  struct vs *cancel_other;
  int cancel_self;
  int *counter; /* incremented when done */
} vs;

static void on_search(vector_index_req *req, int status, const char *msg,
                      const vector_index_hit *hits, size_t n, void *data) {
  vs *v = data;
  (void)msg;
  assert_ptr_equal(req, v->req);
  v->calls++;
  assert_int_equal(v->calls, 1); /* exactly once */
  v->done = 1;
  v->status = status;
  v->n = n < MAX_HITS ? n : MAX_HITS;
  if (status == 0 && v->n)
    memcpy(v->hits, hits, v->n * sizeof *hits);
  else if (status != 0)
    assert_null(hits);
  if (v->cancel_self)
    vector_index_cancel(req); /* a no-op here */
  if (v->cancel_other)
    vector_index_cancel(v->cancel_other->req);
  if (v->counter)
    (*v->counter)++;
}

static int start_with(vector_index *x, const char *ns, const char *text,
                      size_t k, unsigned types, uint32_t dim, vs *v) {
  float q[DIM];
  embed(text, q);
  vector_index_query vq = {.ns = ns,
                           .space_name = g_emb.name,
                           .dim = dim,
                           .vector = q,
                           .k = k,
                           .types = types};
  return vector_index_search(x, &vq, on_search, v, &v->req);
}

static void start(vector_index *x, const char *text, size_t k, unsigned types,
                  vs *v) {
  assert_int_equal(start_with(x, NS, text, k, types, DIM, v), 0);
}

/* Runs a search to its end; returns its status. */
static int search(engram *eg, vector_index *x, const char *text, size_t k,
                  unsigned types, vs *v) {
  memset(v, 0, sizeof *v);
  start(x, text, k, types, v);
  assert_false(v->done); /* never inside the start function */
  tu_run_until(eg, &v->done);
  assert_true(v->done);
  return v->status;
}

static int hit_of(const vs *v, const char *id) {
  for (size_t i = 0; i < v->n; i++)
    if (strcmp(v->hits[i].id, id) == 0)
      return (int)i;
  return -1;
}

static void on_index_closed(void *data) {
  *(int *)data = 1;
}

static void index_close(engram *eg, vector_index *x) {
  int closed = 0;
  vector_index_close(x, on_index_closed, &closed);
  assert_false(closed);
  tu_run_until(eg, &closed);
  assert_true(closed);
}

static vector_index *index_new(engram *eg, const vector_index_options *o) {
  vector_index *x = NULL;
  assert_int_equal(vector_index_new(engram_rt(eg), eg->st, o, &x), 0);
  return x;
}

static void add_typed(engram *eg, const char *ns, const char *content,
                      engram_type type, char id[ENGRAM_ID_LEN + 1]) {
  assert_int_equal(tu_add(eg, ns, content, type, id), 0);
}

/* ------------------------------------------------------------ catch-up */

static void test_adds_updates_deletes(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vix-basic"), NULL);
  vector_index *x = index_new(eg, NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1], c[ENGRAM_ID_LEN + 1];
  add_typed(eg, NS, "the cat sat on the warm mat", ENGRAM_EPISODIC, a);
  add_typed(eg, NS, "we booked a table at the italian restaurant",
            ENGRAM_EPISODIC, b);
  add_typed(eg, NS, "quarterly revenue grew by four percent", ENGRAM_SEMANTIC,
            c);

  vs v;
  assert_int_equal(
      search(eg, x, "we booked a table at the italian restaurant", 10, 0, &v),
      0);
  assert_int_equal(v.n, 3);
  assert_string_equal(v.hits[0].id, b);
  assert_true(v.hits[0].score > 0.999f);
  for (size_t i = 1; i < v.n; i++)
    assert_true(v.hits[i].score <= v.hits[i - 1].score);
  vector_index_stats s;
  vector_index_get_stats(x, &s);
  assert_int_equal(s.namespaces, 1);
  assert_int_equal(s.rows, 3);
  assert_int_equal(s.reloads, 1);

  /* A new memory is seen by the next search. */
  char d[ENGRAM_ID_LEN + 1];
  add_typed(eg, NS, "a recipe for sourdough bread", ENGRAM_PROCEDURAL, d);
  assert_int_equal(search(eg, x, "a recipe for sourdough bread", 1, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, d);

  /* An update of the content gives the memory a new vector. */
  assert_int_equal(stu_update_content(eg, NS, b, "the dog chased a red ball"),
                   0);
  assert_int_equal(search(eg, x, "the dog chased a red ball", 1, 0, &v), 0);
  assert_string_equal(v.hits[0].id, b);
  assert_true(v.hits[0].score > 0.999f);
  assert_int_equal(
      search(eg, x, "we booked a table at the italian restaurant", 4, 0, &v),
      0);
  assert_true(hit_of(&v, b) < 0 || v.hits[hit_of(&v, b)].score < 0.5f);

  /* A delete takes it out. */
  assert_int_equal(stu_delete(eg, NS, a), 0);
  assert_int_equal(search(eg, x, "the cat sat on the warm mat", 10, 0, &v), 0);
  assert_int_equal(v.n, 3);
  assert_true(hit_of(&v, a) < 0);

  /* Nothing changed: a search reads no row again, loads nothing anew. */
  vector_index_get_stats(x, &s);
  assert_int_equal(s.rows, 3);
  assert_int_equal(s.reloads, 1);

  /* Types: only the wanted sets are scanned. */
  assert_int_equal(search(eg, x, "revenue", 10, 1u << ENGRAM_SEMANTIC, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);
  assert_int_equal(search(eg, x, "revenue", 10,
                          (1u << ENGRAM_EPISODIC) | (1u << ENGRAM_PROCEDURAL),
                          &v),
                   0);
  assert_int_equal(v.n, 2);
  assert_true(hit_of(&v, c) < 0);
  /* A type change moves the memory to the other set. */
  engram_op op = {.kind = ENGRAM_OP_UPDATE,
                  .ns = NS,
                  .id = c,
                  .type = ENGRAM_WORKING,
                  .set = ENGRAM_SET_TYPE};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  assert_int_equal(search(eg, x, "revenue", 10, 1u << ENGRAM_SEMANTIC, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "revenue", 10, 1u << ENGRAM_WORKING, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);

  /* Another namespace is another set; an unknown one is empty. */
  char other[ENGRAM_ID_LEN + 1];
  add_typed(eg, "vix-other", "the cat sat on the warm mat", ENGRAM_EPISODIC,
            other);
  memset(&v, 0, sizeof v);
  assert_int_equal(start_with(x, "vix-other", "cat on a mat", 10, 0, DIM, &v),
                   0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, other);
  memset(&v, 0, sizeof v);
  assert_int_equal(start_with(x, "vix-none", "cat", 10, 0, DIM, &v), 0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, 0);
  assert_int_equal(v.n, 0);

  index_close(eg, x);
  tu_close(eg);
}

static const char *numbered(size_t i, void *arg) {
  static char buf[128];
  (void)arg;
  snprintf(buf, sizeof buf, "note %zu about topic%zu and item%zu", i, i % 37,
           i);
  return buf;
}

/* Catch-ups of several pages: a first load, then changes spread over
 * pages; the int8 copy of a set past quantize_rows. */
static void test_pages_and_quantized(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vix-pages"), NULL);
  vector_index_options o = {
      .page_rows = 7, .quantize_rows = 100, .chunk_rows = 32, .parallel = 2};
  vector_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 150, numbered, NULL), 0);
  vs v;
  assert_int_equal(search(eg, x, "note 42 about topic5 and item42", 3, 0, &v),
                   0);
  assert_int_equal(v.n, 3);
  vector_index_stats s;
  vector_index_get_stats(x, &s);
  assert_int_equal(s.rows, 150);
  assert_true(s.catchups >= 150 / 7 + 1);
  /* The best is exact although the scan ran on int8 rows (float
   * re-rank). */
  assert_true(v.hits[0].score > 0.999f);
  engram_node *n = NULL;
  assert_int_equal(stu_get_node(eg, NS, v.hits[0].id, &n), 0);
  assert_string_equal(n->content, "note 42 about topic5 and item42");
  engram_node_free(n);

  /* Changes that span pages: 20 updates, 20 deletes. */
  engram_query lq = {.ns = NS};
  stu_coll c;
  assert_int_equal(stu_list(eg, &lq, 200, &c), 0);
  assert_int_equal(c.n, 150);
  for (size_t i = 0; i < 20; i++) {
    char text[64];
    snprintf(text, sizeof text, "changed %zu zebra%zu", i, i);
    assert_int_equal(stu_update_content(eg, NS, c.nodes[i]->id, text), 0);
    assert_int_equal(stu_delete(eg, NS, c.nodes[149 - i]->id), 0);
  }
  assert_int_equal(search(eg, x, "changed 7 zebra7", 1, 0, &v), 0);
  assert_string_equal(v.hits[0].id, c.nodes[7]->id);
  vector_index_get_stats(x, &s);
  assert_int_equal(s.rows, 130);
  assert_int_equal(search(eg, x, numbered(149, NULL), 130, 0, &v), 0);
  assert_int_equal(v.n, MAX_HITS);
  for (size_t i = 0; i < 20; i++)
    assert_true(hit_of(&v, c.nodes[149 - i]->id) < 0);
  stu_coll_free(&c);

  /* Below half of quantize_rows the set goes back to floats. */
  assert_int_equal(stu_list(eg, &lq, 200, &c), 0);
  for (size_t i = 0; i < 90; i++)
    assert_int_equal(stu_delete(eg, NS, c.nodes[i]->id), 0);
  assert_int_equal(search(eg, x, "note 120 about topic9 and item120", 1, 0, &v),
                   0);
  vector_index_get_stats(x, &s);
  assert_int_equal(s.rows, 40);
  stu_coll_free(&c);
  index_close(eg, x);
  tu_close(eg);
}

/* ------------------------------------------------- other writers */

typedef struct shared_open {
  int done, status;
} shared_open;

static void on_shared_open(engram *eg, int status, const char *message,
                           void *data) {
  shared_open *s = data;
  (void)eg;
  (void)message;
  s->done = 1;
  s->status = status;
}

/* A handle on loop (shared with other handles). */
static engram *open_on(uv_loop_t *loop, const char *path) {
  engram_options o;
  engram_options_init(&o);
  o.db = path;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, loop, &o), 0);
  shared_open s = {0};
  assert_int_equal(engram_open(eg, on_shared_open, &s), 0);
  while (!s.done)
    uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(s.status, 0);
  return eg;
}

static void on_shared_closed(engram *eg, void *data) {
  (void)eg;
  (*(int *)data)++;
}

/* A second handle on the same database writes; the first one's index sees
 * its adds, updates and deletes (the store's change sequence is in the
 * database, not in the handle). */
static void test_second_handle(void **state) {
  (void)state;
  const char *path = tu_db_path("vix-two");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *a = tu_open(saved, NULL);
  engram *b = tu_open(saved, NULL);
  vector_index *x = index_new(a, NULL);
  char id1[ENGRAM_ID_LEN + 1], id2[ENGRAM_ID_LEN + 1];
  add_typed(a, NS, "the lighthouse keeper lit the lamp", ENGRAM_EPISODIC, id1);
  vs v;
  assert_int_equal(search(a, x, "lighthouse keeper", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);

  add_typed(b, NS, "a submarine dived beneath the arctic ice", ENGRAM_EPISODIC,
            id2);
  assert_int_equal(
      search(a, x, "a submarine dived beneath the arctic ice", 5, 0, &v), 0);
  assert_int_equal(v.n, 2);
  assert_string_equal(v.hits[0].id, id2);

  assert_int_equal(stu_update_content(b, NS, id1,
                                      "volcanic ash covered the "
                                      "village"),
                   0);
  assert_int_equal(search(a, x, "volcanic ash covered the village", 1, 0, &v),
                   0);
  assert_string_equal(v.hits[0].id, id1);
  assert_true(v.hits[0].score > 0.999f);

  assert_int_equal(stu_delete(b, NS, id2), 0);
  assert_int_equal(search(a, x, "submarine arctic", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, id1);
  vector_index_stats s;
  vector_index_get_stats(x, &s);
  assert_int_equal(s.reloads, 1); /* all of it incremental */
  index_close(a, x);
  tu_close(b);
  tu_close(a);
}

/* Writes (from this handle and another on the same loop) land while a
 * long scan runs; a second search queued behind it sees them. The scan's
 * set must not change under it (AddressSanitizer would see a freed row
 * array), and its hits are memories that existed when it started. */
static void test_writes_during_scan(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  const char *path = tu_db_path("vix-during");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *a = open_on(&loop, saved);
  engram *b = open_on(&loop, saved);
  vector_index_options o = {.chunk_rows = 16, .parallel = 1};
  vector_index *x = index_new(a, &o);
  assert_int_equal(tu_add_many(a, NS, 2000, numbered, NULL), 0);
  vs first;
  memset(&first, 0, sizeof first);
  start(x, "note 5 about topic5 and item5", 20, 0, &first);
  /* Let the catch-up finish and the scan begin. */
  vector_index_stats s;
  do {
    uv_run(&loop, UV_RUN_ONCE);
    vector_index_get_stats(x, &s);
  } while (s.rows < 2000 && !first.done);
  assert_false(first.done);

  char fresh[ENGRAM_ID_LEN + 1];
  engram_id_new(fresh);
  engram_op aop = {.kind = ENGRAM_OP_ADD,
                   .ns = NS,
                   .id = fresh,
                   .type = ENGRAM_EPISODIC,
                   .content = "note 5 about topic5 and item5 and more"};
  stu_write wa = {0}, wb = {0};
  assert_int_equal(engram_write(a, &aop, 1, stu_on_write, &wa), 0);
  char other[ENGRAM_ID_LEN + 1];
  engram_id_new(other);
  engram_op bop = {.kind = ENGRAM_OP_ADD,
                   .ns = NS,
                   .id = other,
                   .type = ENGRAM_EPISODIC,
                   .content = "an entirely different memory of penguins"};
  assert_int_equal(engram_write(b, &bop, 1, stu_on_write, &wb), 0);
  vs second;
  memset(&second, 0, sizeof second);
  int written = 0;
  while (!(wa.done && wb.done) || !first.done) {
    if (wa.done && wb.done && !written) {
      written = 1;
      start(x, "note 5 about topic5 and item5 and more", 20, 0, &second);
    }
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(wa.status, 0);
  assert_int_equal(wb.status, 0);
  assert_int_equal(first.status, 0);
  assert_int_equal(first.n, 20);
  assert_true(hit_of(&first, fresh) < 0); /* written after it caught up */
  if (!written)
    start(x, "note 5 about topic5 and item5 and more", 20, 0, &second);
  while (!second.done)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(second.status, 0);
  assert_string_equal(second.hits[0].id, fresh);
  vector_index_get_stats(x, &s);
  assert_int_equal(s.rows, 2002);

  int closed = 0;
  vector_index_close(x, on_index_closed, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  int handles = 0;
  engram_close(a, on_shared_closed, &handles);
  engram_close(b, on_shared_closed, &handles);
  while (handles < 2)
    uv_run(&loop, UV_RUN_ONCE);
  engram_free(a);
  engram_free(b);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* -------------------------------------------------------- cancellation */

static void test_cancel(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vix-cancel"), NULL);
  vector_index_options o = {.chunk_rows = 16, .parallel = 1};
  vector_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 3000, numbered, NULL), 0);
  char fact[ENGRAM_ID_LEN + 1];
  add_typed(eg, NS, "item7 is a semantic fact", ENGRAM_SEMANTIC, fact);

  /* While catching up (the first load), right after the start. */
  vs v;
  memset(&v, 0, sizeof v);
  start(x, "note 7", 5, 0, &v);
  vector_index_cancel(v.req);
  vector_index_cancel(v.req); /* idempotent */
  assert_false(v.done);       /* never inside cancel */
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, ENGRAM_ECANCELED);
  assert_int_equal(v.calls, 1);

  /* Waiting for the next catch-up (behind a running one). */
  vs ahead, behind;
  memset(&ahead, 0, sizeof ahead);
  memset(&behind, 0, sizeof behind);
  start(x, "note 8", 5, 0, &ahead);
  start(x, "note 8", 5, 0, &behind);
  vector_index_cancel(behind.req);
  tu_run_until(eg, &ahead.done);
  tu_run_until(eg, &behind.done);
  assert_int_equal(ahead.status, 0);
  assert_int_equal(behind.status, ENGRAM_ECANCELED);

  /* The namespace loads after all, for the next one. */
  assert_int_equal(search(eg, x, "note 7 about topic7 and item7", 5, 0, &v), 0);
  assert_int_equal(v.n, 5);

  /* During a scan, from another search's callback: both wait behind a
   * third one's catch-up and share the next, then the semantic set (one
   * row) is scanned at once and the episodic one (3000 rows, chunks of 16)
   * long after. Cancelling one's own search in its callback is a no-op. */
  vs first, quick, slow;
  memset(&first, 0, sizeof first);
  memset(&quick, 0, sizeof quick);
  memset(&slow, 0, sizeof slow);
  quick.cancel_other = &slow;
  quick.cancel_self = 1;
  start(x, "item7", 1, 1u << ENGRAM_SEMANTIC, &first);
  start(x, "item7 is a semantic fact", 5, 1u << ENGRAM_SEMANTIC, &quick);
  start(x, "note 7 about topic7 and item7", 5, 1u << ENGRAM_EPISODIC, &slow);
  tu_run_until(eg, &slow.done);
  assert_int_equal(first.status, 0);
  assert_int_equal(quick.status, 0);
  assert_int_equal(quick.n, 1);
  assert_string_equal(quick.hits[0].id, fact);
  assert_int_equal(slow.status, ENGRAM_ECANCELED);
  assert_int_equal(slow.calls, 1);

  /* During a catch-up of a namespace already loaded. */
  vs outer, inner;
  memset(&outer, 0, sizeof outer);
  memset(&inner, 0, sizeof inner);
  start(x, "note 9", 5, 0, &outer);
  tu_run_until(eg, &outer.done);
  start(x, "note 10", 5, 0, &inner); /* caught up already: a new catch-up */
  vector_index_cancel(inner.req);
  tu_run_until(eg, &inner.done);
  assert_int_equal(inner.status, ENGRAM_ECANCELED);

  /* A search cancelled while queued behind another's catch-up; the other
   * goes on. */
  vs kept, dropped;
  memset(&kept, 0, sizeof kept);
  memset(&dropped, 0, sizeof dropped);
  kept.cancel_other = &dropped;
  start(x, "item7 is a semantic fact", 1, 1u << ENGRAM_SEMANTIC, &kept);
  start(x, "note 11", 5, 0, &dropped);
  tu_run_until(eg, &kept.done);
  tu_run_until(eg, &dropped.done);
  assert_int_equal(kept.status, 0);
  assert_int_equal(dropped.status, ENGRAM_ECANCELED);

  /* Close with searches at every stage: all come back cancelled. */
  vs many[4];
  memset(many, 0, sizeof many);
  for (int i = 0; i < 4; i++)
    start(x, "note 12 about topic12", 5, 0, &many[i]);
  uv_run(engram_loop(eg), UV_RUN_ONCE);
  int closed = 0;
  vector_index_close(x, on_index_closed, &closed);
  assert_int_equal(
      vector_index_search(x,
                          &(vector_index_query){.ns = NS,
                                                .space_name = g_emb.name,
                                                .dim = DIM,
                                                .vector = (float[DIM]){1},
                                                .k = 1},
                          on_search, &v, &v.req),
      ENGRAM_ECLOSED);
  tu_run_until(eg, &closed);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(many[i].calls, 1);
    assert_true(many[i].status == ENGRAM_ECANCELED || many[i].status == 0);
  }
  tu_close(eg);
}

/* --------------------------------------------------- bounds and spaces */

static void test_eviction_and_space(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vix-evict"), NULL);
  vector_index_options o = {.max_namespaces = 2};
  vector_index *x = index_new(eg, &o);
  const char *names[3] = {"ev-a", "ev-b", "ev-c"};
  char ids[3][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 3; i++)
    add_typed(eg, names[i], "shared words in every namespace", ENGRAM_EPISODIC,
              ids[i]);
  vs v;
  for (int i = 0; i < 3; i++) {
    memset(&v, 0, sizeof v);
    assert_int_equal(start_with(x, names[i], "shared words", 5, 0, DIM, &v), 0);
    tu_run_until(eg, &v.done);
    assert_int_equal(v.status, 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.hits[0].id, ids[i]);
  }
  vector_index_stats s;
  vector_index_get_stats(x, &s);
  assert_int_equal(s.namespaces, 2);
  assert_int_equal(s.evictions, 1);
  assert_int_equal(s.reloads, 3);
  /* The evicted one loads again. */
  memset(&v, 0, sizeof v);
  assert_int_equal(start_with(x, names[0], "shared words", 5, 0, DIM, &v), 0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.n, 1);
  vector_index_get_stats(x, &s);
  assert_int_equal(s.reloads, 4);

  /* Another space (the same name, another dimension): the namespace is
   * dropped and read again; no stored vector is of that space. */
  float q[64] = {1};
  vector_index_query vq = {
      .ns = names[0], .space_name = g_emb.name, .dim = 64, .vector = q, .k = 5};
  memset(&v, 0, sizeof v);
  assert_int_equal(vector_index_search(x, &vq, on_search, &v, &v.req), 0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, 0);
  assert_int_equal(v.n, 0);
  memset(&v, 0, sizeof v);
  assert_int_equal(start_with(x, names[0], "shared words", 5, 0, DIM, &v), 0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.n, 1);
  vector_index_get_stats(x, &s);
  assert_int_equal(s.reloads, 6);

  /* Bad queries are refused at once. */
  vq.k = 0;
  assert_int_equal(vector_index_search(x, &vq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  vq.k = 1;
  vq.dim = 0;
  assert_int_equal(vector_index_search(x, &vq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  index_close(eg, x);
  tu_close(eg);
}

/* ------------------------------------------------------------ many */

static void test_thousand_concurrent(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("vix-many"), NULL);
  vector_index_options o = {.chunk_rows = 64};
  vector_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 500, numbered, NULL), 0);
  enum { N = 1000 };
  vs *v = calloc(N, sizeof *v);
  assert_non_null(v);
  int finished = 0;
  stu_write w[N / 100];
  engram_op ops[N / 100];
  memset(w, 0, sizeof w);
  for (size_t i = 0; i < N; i++) {
    v[i].counter = &finished;
    start(x, numbered(i % 500, NULL), 3, 0, &v[i]);
    if (i % 100 == 99) { /* writes interleave with the searches */
      engram_op *op = &ops[i / 100];
      *op = (engram_op){.kind = ENGRAM_OP_ADD,
                        .ns = NS,
                        .type = ENGRAM_EPISODIC,
                        .content = "interleaved"};
      assert_int_equal(engram_write(eg, op, 1, stu_on_write, &w[i / 100]), 0);
    }
  }
  while (finished < N || !w[N / 100 - 1].done)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && finished < N)
      fail_msg("the loop ran dry with %d of %d searches finished", finished, N);
  for (size_t i = 0; i < N / 100; i++)
    assert_int_equal(w[i].status, 0);
  for (size_t i = 0; i < N; i++) {
    assert_int_equal(v[i].calls, 1);
    assert_int_equal(v[i].status, 0);
    assert_int_equal(v[i].n, 3);
    assert_true(v[i].hits[0].score > 0.999f);
  }
  vector_index_stats s;
  vector_index_get_stats(x, &s);
  /* Searches share catch-ups: far fewer store reads than searches. */
  assert_true(s.catchups < N / 4);
  free(v);
  index_close(eg, x);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  if (search_hashed_init(&g_emb, NULL) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adds_updates_deletes),
      cmocka_unit_test(test_pages_and_quantized),
      cmocka_unit_test(test_second_handle),
      cmocka_unit_test(test_writes_during_scan),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_eviction_and_space),
      cmocka_unit_test(test_thousand_concurrent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
