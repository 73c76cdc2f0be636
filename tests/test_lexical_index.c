/*
 * test_lexical_index.c — the in-process lexical index (src/search/
 * lexical_index.*, the lexical kind of ns_cache.*) over a real store, and
 * hybrid search taking its matches from it (src/search/hybrid.c):
 *
 *   - catch-up: adds, content and metadata updates (the old words no
 *     longer find the memory), metadata text values (meta_weight), type
 *     filters and type changes, deletes, other and unknown namespaces,
 *     catch-ups of several pages, the stats;
 *   - a second handle on the same database writing (another process, as
 *     far as the index can tell);
 *   - the backend's own stemming and stop words; absent words; bad queries;
 *   - exactness: the index's top k, ids and scores, against the store's
 *     own unpruned full-text candidates on a Zipf-ish corpus (on
 *     PostgreSQL only where both take the same avgdl, see test_exact);
 *   - hybrid search through the public API: the same answer as the
 *     store's unpruned match where that must hold, and a planted old
 *     memory the pruned match (max_scored) misses; the store's match
 *     while a namespace loads, engram_preload, a cancel in the index step;
 *   - cancellation at every step (a read cancelled is called back only
 *     once it has stopped), close with searches out;
 *   - 1000 concurrent searches with writes interleaved, searches started
 *     from callbacks, writes (and a compaction) landing while a search
 *     task runs, eviction by count and by bytes.
 * main() sets UV_THREADPOOL_SIZE=1: every store read (on SQLite) and
 * every search task queues behind the others on one thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "engram_internal.h"
#include "scale_corpus.h"
#include "search/lexical_index.h"
#include "store_tu.h"
#include "tu.h"

#define NS "lix"
#define K1 0.6
#define B 0.3
#define NO_CAP 10000000u

/* ------------------------------------------------------- query words */

/* The words of text as hybrid search gives them to the index
 * (core_search_words: stop words dropped unless nothing else is left). */
typedef struct qwords {
  char *w[CORE_SEARCH_MAX_WORDS];
  size_t n;
} qwords;

static void take_word(const char *word, size_t len, int cut, void *data) {
  qwords *q = data;
  (void)cut;
  char *copy = malloc(len + 1);
  assert_non_null(copy);
  memcpy(copy, word, len);
  copy[len] = '\0';
  q->w[q->n++] = copy;
}

static void qwords_of(const char *text, qwords *q) {
  memset(q, 0, sizeof *q);
  core_search_words(text, strlen(text), take_word, q);
}

static void qwords_free(qwords *q) {
  for (size_t i = 0; i < q->n; i++)
    free(q->w[i]);
  q->n = 0;
}

/* ------------------------------------------------------- one search */

typedef struct params {
  size_t k;
  unsigned types;
  double k1, b, meta_weight;
} params;

static params P(size_t k, unsigned types) {
  return (params){k, types, K1, B, 1.0};
}

/* One search and what came back. */
typedef struct ls {
  lexical_index *x;
  lexical_index_req *req;
  int done;
  int calls;
  int status;
  char msg[256];
  size_t n;
  lexical_index_hit *hits; /* a copy, ls_clear frees it */
  /* in the callback: */
  engram *idle_of; /* record its store's queries_running */
  uint64_t queries_in_cb;
  struct ls *cancel_other;
  int cancel_self;
  struct ls *nested; /* started from the callback, query nested_text */
  const char *nested_text;
  int *counter; /* incremented when done */
} ls;

static int start_p(lexical_index *x, const char *ns, const char *text, params p,
                   ls *v);

static void on_search(lexical_index_req *req, int status, const char *msg,
                      const lexical_index_hit *hits, size_t n, void *data) {
  ls *v = data;
  assert_ptr_equal(req, v->req);
  v->calls++;
  assert_int_equal(v->calls, 1); /* exactly once */
  v->done = 1;
  v->status = status;
  snprintf(v->msg, sizeof v->msg, "%s", msg ? msg : "");
  if (status == 0) {
    assert_true(n == 0 ? hits == NULL : hits != NULL);
    v->n = n;
    if (n) {
      v->hits = malloc(n * sizeof *hits);
      assert_non_null(v->hits);
      memcpy(v->hits, hits, n * sizeof *hits);
    }
    for (size_t i = 0; i < n; i++) {
      assert_true(hits[i].score > 0);
      assert_int_equal(strlen(hits[i].id), ENGRAM_ID_LEN);
      if (i > 0)
        assert_true(hits[i].score <= hits[i - 1].score);
    }
  } else {
    assert_null(hits);
    assert_int_equal(n, 0);
    assert_non_null(msg);
  }
  if (v->idle_of) {
    engram_stats st;
    engram_get_stats(v->idle_of, &st);
    v->queries_in_cb = st.queries_running;
  }
  if (v->cancel_self)
    lexical_index_cancel(req); /* a no-op here */
  if (v->cancel_other)
    lexical_index_cancel(v->cancel_other->req);
  if (v->nested) {
    memset(v->nested, 0, sizeof *v->nested);
    v->nested->counter = v->counter;
    assert_int_equal(start_p(v->x, NS, v->nested_text, P(3, 0), v->nested), 0);
    assert_false(v->nested->done);
  }
  if (v->counter)
    (*v->counter)++;
}

static void ls_clear(ls *v) {
  free(v->hits);
  memset(v, 0, sizeof *v);
}

/* Starts a search of text's words; the words are freed at once (the
 * index copies the query). */
static int start_p(lexical_index *x, const char *ns, const char *text, params p,
                   ls *v) {
  qwords q;
  qwords_of(text, &q);
  lexical_index_query lq = {.ns = ns,
                            .words = (const char *const *)q.w,
                            .nwords = q.n,
                            .k1 = p.k1,
                            .b = p.b,
                            .meta_weight = p.meta_weight,
                            .types = p.types,
                            .k = p.k};
  v->x = x;
  int rc = lexical_index_search(x, &lq, on_search, v, &v->req);
  qwords_free(&q);
  return rc;
}

static void start(lexical_index *x, const char *ns, const char *text, params p,
                  ls *v) {
  assert_int_equal(start_p(x, ns, text, p, v), 0);
  assert_false(v->done); /* never inside the start function */
}

/* Runs a search to its end (v is cleared first); returns its status. */
static int search_p(engram *eg, lexical_index *x, const char *ns,
                    const char *text, params p, ls *v) {
  ls_clear(v);
  start(x, ns, text, p, v);
  tu_run_until(eg, &v->done);
  assert_true(v->done);
  return v->status;
}

static int search(engram *eg, lexical_index *x, const char *text, size_t k,
                  unsigned types, ls *v) {
  return search_p(eg, x, NS, text, P(k, types), v);
}

static int hit_of(const ls *v, const char *id) {
  for (size_t i = 0; i < v->n; i++)
    if (strcmp(v->hits[i].id, id) == 0)
      return (int)i;
  return -1;
}

static void on_index_closed(void *data) {
  *(int *)data = 1;
}

static void index_close(engram *eg, lexical_index *x) {
  int closed = 0;
  lexical_index_close(x, on_index_closed, &closed);
  assert_false(closed);
  tu_run_until(eg, &closed);
  assert_true(closed);
}

static lexical_index *index_new(engram *eg, const lexical_index_options *o) {
  lexical_index *x = NULL;
  assert_int_equal(lexical_index_new(engram_rt(eg), eg->st, o, &x), 0);
  return x;
}

static lexical_index_stats stats_of(const lexical_index *x) {
  lexical_index_stats s;
  lexical_index_get_stats(x, &s);
  return s;
}

static void add_md(engram *eg, const char *ns, const char *content,
                   engram_type type, const char *metadata,
                   char id[ENGRAM_ID_LEN + 1]) {
  engram_id_new(id);
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = ns,
                  .id = id,
                  .type = type,
                  .content = content,
                  .metadata = metadata};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
}

static void add(engram *eg, const char *ns, const char *content,
                engram_type type, char id[ENGRAM_ID_LEN + 1]) {
  add_md(eg, ns, content, type, NULL, id);
}

static int near_rel(double a, double b) {
  double m = a > b ? a : b;
  if (m < 0)
    m = -m;
  double d = a - b;
  if (d < 0)
    d = -d;
  return d <= 1e-9 * (m > 1 ? m : 1);
}

/* ------------------------------------------------------------ catch-up */

static void test_catch_up(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-basic"), NULL);
  lexical_index *x = index_new(eg, NULL);
  char a[ENGRAM_ID_LEN + 1], b[ENGRAM_ID_LEN + 1], c[ENGRAM_ID_LEN + 1];
  add(eg, NS, "the cat sat on the warm mat", ENGRAM_EPISODIC, a);
  add(eg, NS, "we booked a table at the italian restaurant", ENGRAM_EPISODIC,
      b);
  add_md(eg, NS, "quarterly revenue grew by four percent", ENGRAM_SEMANTIC,
         "{\"place\": \"zanzibar harbour\", \"n\": 7}", c);

  ls v = {0};
  assert_int_equal(search(eg, x, "italian restaurant", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, b);
  assert_int_equal(search(eg, x, "cat restaurant revenue", 10, 0, &v), 0);
  assert_int_equal(v.n, 3);
  assert_int_equal(search(eg, x, "cat restaurant revenue", 2, 0, &v), 0);
  assert_int_equal(v.n, 2); /* at most k */
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.namespaces, 1);
  assert_int_equal(s.docs, 3);
  assert_int_equal(s.reloads, 1);
  assert_true(s.bytes > 0);
  uint64_t catchups = s.catchups;
  assert_true(catchups >= 3); /* one a search: nothing changed between */

  /* A new memory is found by the next search. */
  char d[ENGRAM_ID_LEN + 1];
  add(eg, NS, "a recipe for sourdough bread", ENGRAM_PROCEDURAL, d);
  assert_int_equal(search(eg, x, "sourdough", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, d);

  /* New content replaces the old terms. */
  assert_int_equal(stu_update_content(eg, NS, b, "the dog chased a red ball"),
                   0);
  assert_int_equal(search(eg, x, "italian restaurant booked", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "dog", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, b);

  /* Metadata text values count, meta_weight times a content word. */
  params p = P(10, 0);
  assert_int_equal(search_p(eg, x, NS, "zanzibar", p, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);
  double one = v.hits[0].score;
  p.meta_weight = 2.0;
  assert_int_equal(search_p(eg, x, NS, "zanzibar", p, &v), 0);
  assert_int_equal(v.n, 1);
  assert_true(v.hits[0].score > one * 1.01);
  p.meta_weight = 0.0; /* a score of 0 is no hit */
  assert_int_equal(search_p(eg, x, NS, "zanzibar harbour", p, &v), 0);
  assert_int_equal(v.n, 0);
  /* ... and it scales only the metadata's words. */
  assert_int_equal(search_p(eg, x, NS, "revenue", p, &v), 0);
  assert_int_equal(v.n, 1);
  double content_only = v.hits[0].score;
  assert_int_equal(search(eg, x, "revenue", 10, 0, &v), 0);
  assert_true(near_rel(v.hits[0].score, content_only));
  /* New metadata replaces the old. */
  engram_op mop = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = c,
                   .metadata = "{\"place\": \"lisbon\"}",
                   .set = ENGRAM_SET_METADATA};
  assert_int_equal(stu_write_ops(eg, &mop, 1), 0);
  assert_int_equal(search(eg, x, "zanzibar", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "lisbon", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);

  /* Types. */
  const char *all = "cat dog revenue sourdough";
  assert_int_equal(search(eg, x, all, 10, 0, &v), 0);
  assert_int_equal(v.n, 4);
  assert_int_equal(search(eg, x, all, 10, 1u << ENGRAM_SEMANTIC, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);
  assert_int_equal(search(eg, x, all, 10, 1u << ENGRAM_EPISODIC, &v), 0);
  assert_int_equal(v.n, 2);
  assert_true(hit_of(&v, a) >= 0 && hit_of(&v, b) >= 0);
  assert_int_equal(search(eg, x, all, 10,
                          (1u << ENGRAM_PROCEDURAL) | (1u << ENGRAM_SEMANTIC),
                          &v),
                   0);
  assert_int_equal(v.n, 2);
  assert_true(hit_of(&v, c) >= 0 && hit_of(&v, d) >= 0);
  /* A type change moves the memory. */
  engram_op top = {.kind = ENGRAM_OP_UPDATE,
                   .ns = NS,
                   .id = c,
                   .type = ENGRAM_WORKING,
                   .set = ENGRAM_SET_TYPE};
  assert_int_equal(stu_write_ops(eg, &top, 1), 0);
  assert_int_equal(search(eg, x, all, 10, 1u << ENGRAM_SEMANTIC, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, all, 10, 1u << ENGRAM_WORKING, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, c);

  /* A delete takes it out. */
  assert_int_equal(stu_delete(eg, NS, a), 0);
  assert_int_equal(search(eg, x, "cat", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, all, 10, 0, &v), 0);
  assert_int_equal(v.n, 3);
  assert_true(hit_of(&v, a) < 0);
  s = stats_of(x);
  assert_int_equal(s.docs, 3);
  assert_int_equal(s.reloads, 1); /* all of it incremental */

  /* Another namespace is separate; an unknown one is empty. */
  char other[ENGRAM_ID_LEN + 1];
  add(eg, "lix-other", "the cat sat on the warm mat", ENGRAM_EPISODIC, other);
  assert_int_equal(search(eg, x, "cat mat", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search_p(eg, x, "lix-other", "cat mat", P(10, 0), &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, other);
  assert_int_equal(search_p(eg, x, "lix-none", "cat mat", P(10, 0), &v), 0);
  assert_int_equal(v.n, 0);
  s = stats_of(x);
  assert_int_equal(s.namespaces, 3);
  assert_int_equal(s.docs, 4);
  assert_int_equal(s.reloads, 3);
  ls_clear(&v);
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

/* The ids of memory i of numbered() in ns (n of them), by content. */
static char (*numbered_ids(engram *eg, const char *ns,
                           size_t n))[ENGRAM_ID_LEN + 1] {
  char(*ids)[ENGRAM_ID_LEN + 1] = calloc(n, sizeof *ids);
  assert_non_null(ids);
  engram_query lq = {.ns = ns};
  stu_coll c;
  assert_int_equal(stu_list(eg, &lq, 1000, &c), 0);
  for (size_t j = 0; j < c.n; j++) {
    size_t i;
    if (sscanf(c.nodes[j]->content, "note %zu about", &i) == 1 && i < n)
      memcpy(ids[i], c.nodes[j]->id, sizeof ids[i]);
  }
  for (size_t i = 0; i < n; i++)
    assert_int_equal(strlen(ids[i]), ENGRAM_ID_LEN);
  stu_coll_free(&c);
  return ids;
}

/* Catch-ups of several pages: the first load (the query's terms come with
 * its first page), then changes spread over pages. */
static void test_pages(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-pages"), NULL);
  lexical_index_options o = {.page_rows = 7};
  lexical_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 150, numbered, NULL), 0);
  char(*ids)[ENGRAM_ID_LEN + 1] = numbered_ids(eg, NS, 150);
  ls v = {0};
  assert_int_equal(search(eg, x, numbered(42, NULL), 3, 0, &v), 0);
  assert_int_equal(v.n, 3);
  assert_string_equal(v.hits[0].id, ids[42]);
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.docs, 150);
  assert_true(s.catchups >= 150 / 7 + 1);

  for (size_t i = 0; i < 20; i++) {
    char text[64];
    snprintf(text, sizeof text, "changed %zu zebra%zu", i, i);
    assert_int_equal(stu_update_content(eg, NS, ids[i], text), 0);
    assert_int_equal(stu_delete(eg, NS, ids[149 - i]), 0);
  }
  assert_int_equal(search(eg, x, "zebra7", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, ids[7]);
  assert_int_equal(search(eg, x, "item7", 5, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "note", 200, 0, &v), 0);
  assert_int_equal(v.n, 110);
  for (size_t i = 0; i < 20; i++) {
    assert_true(hit_of(&v, ids[i]) < 0);
    assert_true(hit_of(&v, ids[149 - i]) < 0);
  }
  s = stats_of(x);
  assert_int_equal(s.docs, 130);
  assert_int_equal(s.reloads, 1);
  ls_clear(&v);
  free(ids);
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

/* A handle on loop (shared with other handles), without an embedder: its
 * writes need no thread of the pool, where they would wait behind a
 * search task. */
static engram *open_on(uv_loop_t *loop, const char *path) {
  engram_options o;
  engram_options_init(&o);
  o.db = path;
  o.embedder.kind = ENGRAM_EMBEDDER_NONE;
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

/* Runs the loop until the index has started `reads` more page reads than
 * `from` (or v is done); then cancels v and runs it to its callback. */
static void cancel_after_reads(engram *eg, lexical_index *x, ls *v,
                               uint64_t from, uint64_t reads) {
  while (!v->done && stats_of(x).catchups < from + reads)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_false(v->done);
  lexical_index_cancel(v->req);
  tu_run_until(eg, &v->done);
  assert_int_equal(v->status, ENGRAM_ECANCELED);
}

/* A catch-up whose searches are all cancelled keeps what it applied, and
 * the next one goes on after it: a namespace far behind still catches up,
 * however short its searches' deadlines (each cut search used to throw
 * the pages away, and the next started over). On a first load and on a
 * loaded namespace; a delete and an update among the rows already read
 * are seen. */
static void test_resume(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-resume"), NULL);
  lexical_index_options o = {.page_rows = 10};
  lexical_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 100, numbered, NULL), 0);
  char(*ids)[ENGRAM_ID_LEN + 1] = numbered_ids(eg, NS, 100);

  ls v = {0};
  start(x, NS, "note", P(200, 0), &v);
  cancel_after_reads(eg, x, &v, 0, 4); /* three pages applied */
  lexical_index_stats s = stats_of(x);
  assert_true(s.docs >= 20 && s.docs < 100);
  assert_int_equal(s.reloads, 1);
  assert_int_equal(stu_delete(eg, NS, ids[5]), 0);
  assert_int_equal(stu_update_content(eg, NS, ids[6], "resumed zebra"), 0);
  uint64_t before = s.catchups;
  assert_int_equal(search(eg, x, "note", 200, 0, &v), 0);
  assert_int_equal(v.n, 98);
  assert_true(hit_of(&v, ids[5]) < 0 && hit_of(&v, ids[6]) < 0);
  s = stats_of(x);
  assert_int_equal(s.reloads, 1); /* resumed, not loaded again */
  assert_int_equal(s.docs, 99);
  assert_true(s.catchups - before < 100 / 10 + 1); /* not every page */
  assert_int_equal(search(eg, x, "zebra", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, ids[6]);

  /* Loaded, then 60 memories behind. */
  assert_int_equal(tu_add_many(eg, NS, 60, numbered, NULL), 0);
  ls_clear(&v);
  before = stats_of(x).catchups;
  start(x, NS, "note", P(200, 0), &v);
  cancel_after_reads(eg, x, &v, before, 3);
  assert_int_equal(stu_delete(eg, NS, ids[7]), 0);
  before = stats_of(x).catchups;
  assert_int_equal(search(eg, x, "note", 200, 0, &v), 0);
  assert_int_equal(v.n, 157);
  assert_true(hit_of(&v, ids[7]) < 0);
  s = stats_of(x);
  assert_true(s.catchups - before < 60 / 10 + 1);
  assert_int_equal(s.reloads, 1);
  assert_int_equal(s.docs, 158);
  ls_clear(&v);
  free(ids);
  index_close(eg, x);
  tu_close(eg);
}

/* A second handle on the same database (the same schema on PostgreSQL)
 * writes; the first one's index sees its adds, updates and deletes. */
static void test_second_handle(void **state) {
  (void)state;
  const char *path = tu_db_path("lix-two");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *a = tu_open(saved, NULL);
  engram *b = tu_open(saved, NULL);
  lexical_index *x = index_new(a, NULL);
  char id1[ENGRAM_ID_LEN + 1], id2[ENGRAM_ID_LEN + 1];
  add(a, NS, "the lighthouse keeper lit the lamp", ENGRAM_EPISODIC, id1);
  ls v = {0};
  assert_int_equal(search(a, x, "lighthouse keeper submarine", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);

  add(b, NS, "a submarine dived beneath the arctic ice", ENGRAM_EPISODIC, id2);
  assert_int_equal(search(a, x, "lighthouse keeper submarine", 5, 0, &v), 0);
  assert_int_equal(v.n, 2);
  assert_int_equal(search(a, x, "submarine", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, id2);

  assert_int_equal(
      stu_update_content(b, NS, id1, "volcanic ash covered the village"), 0);
  assert_int_equal(search(a, x, "volcanic village", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, id1);
  assert_int_equal(search(a, x, "lighthouse keeper", 5, 0, &v), 0);
  assert_int_equal(v.n, 0);

  assert_int_equal(stu_delete(b, NS, id2), 0);
  assert_int_equal(search(a, x, "submarine arctic volcanic", 5, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, id1);
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.docs, 1);
  assert_int_equal(s.reloads, 1); /* all of it incremental */
  ls_clear(&v);
  index_close(a, x);
  tu_close(b);
  tu_close(a);
}

/* ------------------------------------------------- words and stems */

/* The store's own unpruned matches of text (window 0), as (id, score). */
static scale_hits store_matches(engram *eg, const char *ns, const char *text,
                                params p, size_t limit) {
  store_candidates_query q = {.ns = ns,
                              .text = text,
                              .text_len = strlen(text),
                              .limit = limit,
                              .types = p.types,
                              .window = 0,
                              .max_scored = NO_CAP,
                              .k1 = p.k1,
                              .b = p.b,
                              .meta_weight = p.meta_weight};
  return scale_pruned(eg, eg->st, &q);
}

static void test_words(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-words"), NULL);
  lexical_index *x = index_new(eg, NULL);
  char r1[ENGRAM_ID_LEN + 1], r2[ENGRAM_ID_LEN + 1], q[ENGRAM_ID_LEN + 1],
      st[ENGRAM_ID_LEN + 1];
  add(eg, NS, "she runs every morning", ENGRAM_EPISODIC, r1);
  add(eg, NS, "we run along the river", ENGRAM_EPISODIC, r2);
  add(eg, NS, "a quiet evening at home", ENGRAM_EPISODIC, q);
  add(eg, NS, "to be or not to be", ENGRAM_EPISODIC, st);

  /* Both backends stem: "running" is "run" as the index holds it. */
  ls v = {0};
  assert_int_equal(search(eg, x, "running", 10, 0, &v), 0);
  assert_int_equal(v.n, 2);
  assert_true(hit_of(&v, r1) >= 0 && hit_of(&v, r2) >= 0);
  assert_int_equal(search(eg, x, "RUNS", 10, 0, &v), 0);
  assert_int_equal(v.n, 2);
  assert_int_equal(search(eg, x, "the running", 10, 0, &v), 0);
  assert_int_equal(v.n, 2); /* "the" is dropped beside another word */
  /* Two words of one term: the term counts once. */
  assert_int_equal(search(eg, x, "run", 10, 0, &v), 0);
  assert_int_equal(v.n, 2);
  double run = v.hits[0].score;
  assert_int_equal(search(eg, x, "running runs", 10, 0, &v), 0);
  assert_int_equal(v.n, 2);
  assert_true(near_rel(v.hits[0].score, run));
  assert_int_equal(search(eg, x, "quiet evenings", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, q);

  /* Stop words alone are the words (both backends index them: FTS5's
   * porter tokenizer, and engram_text's stemmer has no stop list), as
   * the store's own full-text match takes them. */
  assert_int_equal(search(eg, x, "to be", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, st);
  scale_hits ref = store_matches(eg, NS, "to be", P(10, 0), 10);
  assert_int_equal(ref.n, 1);
  assert_string_equal(ref.v[0].id, st);
  free(ref.v);

  /* Words no memory has, and no word at all. */
  assert_int_equal(search(eg, x, "xylophone quasar", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  assert_int_equal(search(eg, x, "...!?", 10, 0, &v), 0);
  assert_int_equal(v.n, 0);
  /* Non-ASCII and a repeated word. */
  char u[ENGRAM_ID_LEN + 1];
  add(eg, NS, "un caf\xc3\xa9 cr\xc3\xa8me au lait", ENGRAM_EPISODIC, u);
  assert_int_equal(search(eg, x, "caf\xc3\xa9 caf\xc3\xa9", 10, 0, &v), 0);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.hits[0].id, u);
  double twice = v.hits[0].score;
  assert_int_equal(search(eg, x, "caf\xc3\xa9", 10, 0, &v), 0);
  assert_true(near_rel(v.hits[0].score, twice)); /* a term counts once */

  /* Bad queries are refused at once, without a callback. */
  const char *w[2] = {"run", NULL};
  lexical_index_query lq = {
      .ns = NS, .words = w, .nwords = 1, .k1 = K1, .b = B, .k = 0};
  ls_clear(&v);
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  lq.k = 1;
  lq.ns = NULL;
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  lq.ns = NS;
  lq.nwords = 2;
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  lq.words = NULL;
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req),
                   ENGRAM_EINVAL);
  lq.words = w;
  lq.nwords = 1;
  lq.k = 5;
  assert_int_equal(lexical_index_search(x, &lq, NULL, &v, &v.req),
                   ENGRAM_EINVAL);
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req), 0);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, 0);
  assert_int_equal(v.n, 2);
  assert_int_equal(v.calls, 1);
  ls_clear(&v);
  index_close(eg, x);
  tu_close(eg);
}

/* ---------------------------------------------------------- exactness */

typedef struct lcg {
  uint64_t s;
} lcg;

static unsigned rnd(lcg *g, unsigned n) {
  g->s = g->s * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)((g->s >> 33) % n);
}

#define VOCAB 160
static const char *const real_words[] = {
    "river",   "coffee",  "garden",   "running",  "runs",     "walked",
    "walking", "music",   "letter",   "window",   "market",   "doctor",
    "winter",  "summer",  "painted",  "painting", "travel",   "train",
    "station", "beach",   "mountain", "dinner",   "birthday", "sister",
    "brother", "teacher", "school",   "bicycle",  "garage",   "kitchen"};
#define NREAL (sizeof real_words / sizeof real_words[0])

/* Word of rank r (0: the most frequent). */
static void vocab_word(unsigned r, char *out, size_t len) {
  if (r < NREAL)
    snprintf(out, len, "%s", real_words[r]);
  else
    snprintf(out, len, "kw%u", r);
}

/* A rank drawn with probability proportional to 1 / (rank + 1). */
static unsigned zipf(lcg *g) {
  static double cum[VOCAB];
  static int ready;
  if (!ready) {
    double t = 0;
    for (unsigned r = 0; r < VOCAB; r++)
      cum[r] = (t += 1.0 / (r + 1));
    ready = 1;
  }
  double u = (double)rnd(g, 1u << 30) / (double)(1u << 30) * cum[VOCAB - 1];
  unsigned r = 0;
  while (r + 1 < VOCAB && cum[r] < u)
    r++;
  return r;
}

/* Text of words drawn by zipf(), after "daybook" (in every memory: a
 * query with it matches every row, see test_exact). */
static const char *zipf_text(lcg *g, unsigned words) {
  static char buf[1024];
  size_t len = (size_t)snprintf(buf, sizeof buf, "daybook ");
  for (unsigned i = 0; i < words; i++) {
    char w[32];
    vocab_word(zipf(g), w, sizeof w);
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s",
                            i ? (rnd(g, 6) == 0 ? " the " : " ") : "", w);
  }
  return buf;
}

/* The index's hits against the store's matches (all of them, best
 * first): as many as min(k, matches), at each place the reference's score
 * (relative 1e-9), the same id but where the reference's scores tie. */
static void check_exact(const ls *v, const scale_hits *ref, size_t k,
                        const char *text) {
  size_t want = ref->n < k ? ref->n : k;
  if (v->n != want)
    fail_msg("\"%s\" k %zu: %zu hits, the store has %zu", text, k, v->n, want);
  for (size_t i = 0; i < want; i++) {
    if (!near_rel(v->hits[i].score, ref->v[i].score))
      fail_msg("\"%s\" #%zu: score %.17g, the store's %.17g", text, i,
               v->hits[i].score, ref->v[i].score);
    const scale_hit *r = scale_find(ref, v->hits[i].id);
    if (!r)
      fail_msg("\"%s\" #%zu: %s is not a match of the store", text, i,
               v->hits[i].id);
    if (strcmp(v->hits[i].id, ref->v[i].id) != 0 &&
        !near_rel(r->score, ref->v[i].score))
      fail_msg("\"%s\" #%zu: %s (%.17g), the store's %s", text, i,
               v->hits[i].id, r->score, ref->v[i].id);
  }
}

/* The index's top k (ids and scores) is the store's unpruned full-text
 * match's, in a database holding one namespace (SQLite's FTS5 statistics
 * are the table's): several queries, k1, b, meta_weight, a type filter and
 * k, after updates and deletes. */
static void test_exact(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-exact"), NULL);
  lexical_index *x = index_new(eg, NULL);
  enum { N = 400 };
  static char ids[N][ENGRAM_ID_LEN + 1];
  lcg g = {12345};
  engram_op ops[50];
  char *texts[50], *metas[50];
  for (size_t i = 0; i < N;) {
    size_t k = 0;
    for (; k < 50 && i < N; k++, i++) {
      texts[k] = strdup(zipf_text(&g, 3 + rnd(&g, 12)));
      metas[k] = NULL;
      if (i % 7 == 0) {
        char m[256];
        lcg h = {i};
        snprintf(m, sizeof m, "{\"topic\": \"%s\", \"n\": %zu}",
                 zipf_text(&h, 1 + rnd(&h, 3)), i);
        metas[k] = strdup(m);
      }
      engram_id_new(ids[i]);
      ops[k] =
          (engram_op){.kind = ENGRAM_OP_ADD,
                      .ns = NS,
                      .id = ids[i],
                      .type = i % 5 == 0 ? ENGRAM_SEMANTIC : ENGRAM_EPISODIC,
                      .content = texts[k],
                      .metadata = metas[k]};
    }
    assert_int_equal(stu_write_ops(eg, ops, k), 0);
    for (size_t j = 0; j < k; j++) {
      free(texts[j]);
      free(metas[j]);
    }
  }
  ls v = {0};
  /* Loaded, then changed: updates and deletes leave dead entries. */
  assert_int_equal(search(eg, x, "river", 5, 0, &v), 0);
  for (size_t i = 0; i < 30; i++) {
    if (i % 2)
      assert_int_equal(stu_delete(eg, NS, ids[i * 11]), 0);
    else
      assert_int_equal(
          stu_update_content(eg, NS, ids[i * 11], zipf_text(&g, 6)), 0);
  }

  static const char *const queries[] = {
      "river coffee",
      "running garden kw40",
      "kw77 kw120 kw150",
      "the river the coffee",
      "painting walked doctor winter summer kw33 kw90",
      "kitchen",
      "river",
      "kw159 kw158",
      "market station train beach mountain dinner birthday sister",
      "daybook river coffee",
      "daybook kw77 kw120 painting",
      "daybook running walked market train"};
  /* PostgreSQL's store scores with avgdl the average length of the rows
   * it chose (pg_terms.c), the index with the namespace's: the same only
   * when every row is chosen, as with a word in every row. */
  int pg = tu_backend_is_pg();
  if (pg)
    printf("PostgreSQL: only the queries with \"daybook\" (a word of every "
           "memory) are compared: the store's BM25 takes avgdl over the rows "
           "that match, the index over the namespace\n");
  static const params ps[] = {{0, 0, 0.6, 0.3, 1.0},
                              {0, 0, 1.2, 0.75, 2.5},
                              {0, 0, 2.0, 1.0, 0.0},
                              {0, 1u << ENGRAM_SEMANTIC, 0.9, 0.0, 0.5}};
  static const size_t ks[] = {1, 10, 37, 1000};
  size_t compared = 0;
  for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++)
    for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
      if (pg && !strstr(queries[qi], "daybook"))
        continue;
      params p = ps[pi];
      scale_hits ref = store_matches(eg, NS, queries[qi], p, N);
      /* A match with no score (meta_weight 0) is no hit of either. */
      size_t kept = 0;
      for (size_t i = 0; i < ref.n; i++)
        if (ref.v[i].score > 0)
          ref.v[kept++] = ref.v[i];
      ref.n = kept;
      for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        p.k = ks[ki];
        assert_int_equal(search_p(eg, x, NS, queries[qi], p, &v), 0);
        check_exact(&v, &ref, p.k, queries[qi]);
        compared += v.n;
      }
      free(ref.v);
    }
  assert_true(compared > 1000);
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.docs, N - 15);
  assert_int_equal(s.reloads, 1);
  ls_clear(&v);
  index_close(eg, x);
  tu_close(eg);
}

/* ----------------------------------------------------- hybrid search */

/* All of a hybrid search's items (ids in order, relevances). */
typedef struct ranked {
  size_t n;
  char (*id)[ENGRAM_ID_LEN + 1];
  double *rel;
} ranked;

static ranked hybrid_of(engram *eg, const char *text,
                        const engram_search_options *o) {
  engram_query q = {
      .ns = NS, .text = text, .strategy = ENGRAM_STRATEGY_HYBRID, .options = o};
  stu_coll c;
  assert_int_equal(stu_search(eg, &q, 100, &c), 0);
  ranked r = {c.n, calloc(c.n + 1, sizeof *r.id),
              calloc(c.n + 1, sizeof *r.rel)};
  assert_non_null(r.id);
  assert_non_null(r.rel);
  for (size_t i = 0; i < c.n; i++) {
    memcpy(r.id[i], c.nodes[i]->id, sizeof r.id[i]);
    r.rel[i] = c.nodes[i]->relevance;
  }
  stu_coll_free(&c);
  return r;
}

static void ranked_free(ranked *r) {
  free(r->id);
  free(r->rel);
}

static int ranked_find(const ranked *r, const char *id) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->id[i], id) == 0)
      return (int)i;
  return -1;
}

static void same_ranking(const ranked *a, const ranked *b, const char *text) {
  if (a->n != b->n)
    fail_msg("\"%s\": %zu items with the index, %zu without", text, a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    if (!near_rel(a->rel[i], b->rel[i]))
      fail_msg("\"%s\" #%zu: relevance %.17g with the index, %.17g without",
               text, i, a->rel[i], b->rel[i]);
    int j = ranked_find(b, a->id[i]);
    if (strcmp(a->id[i], b->id[i]) != 0 &&
        (j < 0 || !near_rel(b->rel[j], a->rel[i])))
      fail_msg("\"%s\" #%zu: %s with the index, %s without", text, i, a->id[i],
               b->id[i]);
  }
}

/* engram_preload(ns), run to its callback. */
static void preload(engram *eg, const char *ns) {
  assert_int_equal(tu_preload(eg, ns), 0);
  assert_non_null(eg->lexical);
  assert_true(lexical_index_ready(eg->lexical, ns));
}

static const char *scale_text(size_t i, void *arg) {
  (void)arg;
  return scale_memory(i, 0, SCALE_SPACES);
}

/* Where neither cuts (fewer matches than candidates, max_scored at its
 * most), the index's matches are the store's: the same ranking. */
static void test_hybrid_same(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-hybrid"), NULL);
  assert_int_equal(tu_add_many(eg, NS, 300, scale_text, NULL), 0);
  preload(eg, NS); /* else the first search is the store's */
  engram_search_options with, without;
  engram_search_options_init(&with);
  engram_search_options_init(&without);
  without.lexical_index = 0;
  without.max_scored = NO_CAP;
  /* PostgreSQL's store scores with avgdl over the rows it chose
   * (pg_terms.c), the index over the namespace: the same only when every
   * row matches, as with "filler", in every memory. */
  int pg = tu_backend_is_pg();
  if (pg)
    printf("PostgreSQL: only queries with a word of every memory are "
           "compared: the store's BM25 takes avgdl over the rows that "
           "match, the index over the namespace\n");
  static const char *const few[] = {"rare7 mid3", "rare12 rare150 rare33",
                                    "mid1 mid2", "running", "u17 u18 mid9"};
  size_t indexed = 0;
  for (size_t i = 0; !pg && i < sizeof few / sizeof *few; i++) {
    ranked a = hybrid_of(eg, few[i], &with);
    ranked b = hybrid_of(eg, few[i], &without);
    indexed++;
    assert_true(a.n > 0);
    same_ranking(&a, &b, few[i]);
    ranked_free(&a);
    ranked_free(&b);
  }
  /* Common words: every match ranked on both sides, and every one takes
   * its neighbours (many matches tie: which of the tied ones are the best
   * window_matches is the store's arbitrary pick, not the same with the
   * index's matches as with its own). */
  with.candidates = without.candidates = 1000;
  with.window_matches = without.window_matches = 1000;
  static const char *const many[] = {"alpha beta gamma filler",
                                     "alpha running filler",
                                     "filler words rare33 mid9"};
  for (size_t i = 0; i < sizeof many / sizeof *many; i++) {
    ranked a = hybrid_of(eg, many[i], &with);
    ranked b = hybrid_of(eg, many[i], &without);
    indexed++;
    assert_int_equal(a.n, 300);
    same_ranking(&a, &b, many[i]);
    ranked_free(&a);
    ranked_free(&b);
  }
  /* The index served the default, and only it (lexical_index=0 reads
   * nothing through it). */
  assert_non_null(eg->lexical);
  lexical_index_stats s = stats_of(eg->lexical);
  assert_int_equal(s.docs, 300);
  assert_int_equal(s.catchups, indexed + 1);
  assert_int_equal(s.reloads, 1);
  tu_close(eg);
}

static const char *harbor_text(size_t i, void *arg) {
  static char buf[64];
  (void)arg;
  snprintf(buf, sizeof buf, "harbor %s u%zu", i % 2 ? "lantern" : "compass", i);
  return buf;
}

/* A word in more rows than max_scored: the store's pruned match scores
 * the newest of them and misses the oldest memory, the only one with all
 * three words; the index's exact top finds it. */
static void test_hybrid_pruned(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-pruned"), NULL);
  char oldest[ENGRAM_ID_LEN + 1];
  add(eg, NS, "harbor lantern compass", ENGRAM_EPISODIC, oldest);
  assert_int_equal(tu_add_many(eg, NS, 500, harbor_text, NULL), 0);
  const char *text = "harbor lantern compass";
  engram_search_options with, pruned;
  engram_search_options_init(&with);
  engram_search_options_init(&pruned);
  pruned.lexical_index = 0;
  pruned.max_scored = 100;
  with.max_scored = 100; /* the index ignores it */
  /* Not loaded yet: the first search is the store's (pruned) while the
   * namespace loads in the background. */
  assert_null(eg->lexical);
  ranked a = hybrid_of(eg, text, &with);
  assert_true(ranked_find(&a, oldest) < 0);
  ranked_free(&a);
  assert_non_null(eg->lexical);
  for (int i = 0; i < 100000 && !lexical_index_ready(eg->lexical, NS); i++)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_true(lexical_index_ready(eg->lexical, NS));
  assert_int_equal(stats_of(eg->lexical).docs, 501);
  preload(eg, NS); /* loaded already: called back all the same */
  assert_int_equal(tu_preload(eg, NULL), ENGRAM_EINVAL);
  assert_int_equal(engram_preload(eg, NS, NULL, NULL), ENGRAM_EINVAL);
  a = hybrid_of(eg, text, &with);
  ranked b = hybrid_of(eg, text, &pruned);
  assert_true(ranked_find(&a, oldest) >= 0);
  assert_true(ranked_find(&b, oldest) < 0);
  ranked_free(&a);
  ranked_free(&b);
  /* Ranked on its own score alone, it is the best. */
  with.window = pruned.window = 0;
  with.session_weight = pruned.session_weight = 0;
  a = hybrid_of(eg, text, &with);
  b = hybrid_of(eg, text, &pruned);
  assert_true(a.n > 0);
  assert_string_equal(a.id[0], oldest);
  assert_true(ranked_find(&b, oldest) < 0);
  ranked_free(&a);
  ranked_free(&b);
  /* Cancelled while the index's step runs: one done callback, nothing
   * left running. */
  engram_query q = {.ns = NS,
                    .text = text,
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = &with};
  stu_coll c;
  stu_coll_init(&c, eg, 10);
  engram_stream_cbs cbs = stu_cbs(&c);
  uint64_t catchups = stats_of(eg->lexical).catchups;
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 10;
  assert_int_equal(engram_stream_request(c.s, 10), 0);
  assert_int_equal(stats_of(eg->lexical).catchups, catchups + 1);
  engram_stream_cancel(c.s);
  assert_false(c.done);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_int_equal(c.n, 0);
  engram_stats est;
  engram_get_stats(eg, &est);
  assert_int_equal(est.queries_running, 0);
  assert_int_equal(est.streams_open, 0);
  stu_coll_free(&c);

  pruned.max_scored = NO_CAP; /* the store finds it when it does not cut */
  b = hybrid_of(eg, text, &pruned);
  assert_string_equal(b.id[0], oldest);
  ranked_free(&b);
  tu_close(eg);
}

/* -------------------------------------------------------- cancellation */

static const char *colours(size_t i, void *arg) {
  static char buf[128];
  static const char *const c[] = {"red",    "green", "blue", "amber",
                                  "violet", "ochre", "teal", "cyan"};
  (void)arg;
  size_t len = (size_t)snprintf(buf, sizeof buf, "c%zu", i);
  for (size_t k = 0; k < 8; k++)
    if ((i * 2654435761u >> k) % 3 != 0)
      len += (size_t)snprintf(buf + len, sizeof buf - len, " %s", c[k]);
  return buf;
}

#define ALL_COLOURS "red green blue amber violet ochre teal cyan"

/* Runs the loop until v's search task is out: no store read runs, a pool
 * task does, no callback yet. */
static int until_working(engram *eg, const ls *v) {
  for (int i = 0; i < 100000 && !v->done; i++) {
    engram_stats st;
    engram_get_stats(eg, &st);
    if (st.queries_running == 0 && st.pool_tasks > 0)
      return 1;
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  }
  return 0;
}

static void test_cancel(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-cancel"), NULL);
  lexical_index_options o = {.page_rows = 64};
  lexical_index *x = index_new(eg, &o);
  assert_int_equal(tu_add_many(eg, NS, 3000, colours, NULL), 0);
  char lone[ENGRAM_ID_LEN + 1];
  add(eg, "lix-small", "a lone red fox", ENGRAM_EPISODIC, lone);

  /* Right after the start (the first load's read runs): one callback,
   * later, once the read has stopped. */
  ls v = {0};
  v.idle_of = eg;
  start(x, NS, "red", P(5, 0), &v);
  lexical_index_cancel(v.req);
  lexical_index_cancel(v.req); /* idempotent */
  assert_false(v.done);        /* never inside cancel */
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, ENGRAM_ECANCELED);
  assert_int_equal(v.calls, 1);
  assert_int_equal(v.queries_in_cb, 0);

  /* While the catch-up's read is the only thing running, pages in: the
   * callback comes after the read stopped. */
  ls_clear(&v);
  v.idle_of = eg;
  uint64_t before = stats_of(x).catchups;
  start(x, NS, "red", P(5, 0), &v);
  while (stats_of(x).catchups < before + 4 && !v.done)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  assert_false(v.done);
  engram_stats est;
  engram_get_stats(eg, &est);
  assert_int_equal(est.queries_running, 1);
  lexical_index_cancel(v.req);
  assert_false(v.done);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, ENGRAM_ECANCELED);
  assert_int_equal(v.queries_in_cb, 0);
  engram_get_stats(eg, &est);
  assert_int_equal(est.queries_running, 0);
  if (!tu_backend_is_pg()) /* there PQcancel may still run on the pool */
    assert_int_equal(est.pool_tasks, 0);
  /* The namespace loads after all, whole, for the next one: resumed
   * where the cancelled load stopped (test_resume). */
  uint64_t reloads = stats_of(x).reloads;
  assert_int_equal(search(eg, x, "c7 " ALL_COLOURS, 3, 0, &v), 0);
  assert_int_equal(v.n, 3);
  engram_node *node = NULL;
  assert_int_equal(stu_get_node(eg, NS, v.hits[0].id, &node), 0);
  assert_string_equal(node->content, colours(7, NULL));
  engram_node_free(node);
  assert_int_equal(stats_of(x).docs, 3000);
  assert_int_equal(stats_of(x).reloads, reloads);

  /* From another search's callback: the second waits for the catch-up
   * after the first's, so it is out when the first calls back.
   * Cancelling one's own search in its callback is a no-op. */
  ls first = {0}, second = {0};
  first.cancel_other = &second;
  first.cancel_self = 1;
  start(x, NS, "c9 red", P(5, 0), &first);
  start(x, NS, ALL_COLOURS, P(1000, 0), &second);
  tu_run_until(eg, &first.done);
  tu_run_until(eg, &second.done);
  assert_int_equal(first.status, 0);
  assert_true(first.n > 0);
  assert_int_equal(second.status, ENGRAM_ECANCELED);
  assert_int_equal(second.calls, 1);
  ls_clear(&first);
  ls_clear(&second);

  /* While its search task runs (or is queued on the pool). */
  ls_clear(&v);
  start(x, NS, ALL_COLOURS, P(1000, 0), &v);
  assert_true(until_working(eg, &v));
  lexical_index_cancel(v.req);
  assert_false(v.done);
  tu_run_until(eg, &v.done);
  assert_int_equal(v.status, ENGRAM_ECANCELED);
  assert_int_equal(v.calls, 1);

  /* A search queued behind another's catch-up, cancelled there; the
   * other goes on. */
  ls kept = {0}, dropped = {0};
  start(x, "lix-small", "fox", P(5, 0), &kept);
  start(x, "lix-small", "fox", P(5, 0), &dropped);
  lexical_index_cancel(dropped.req);
  tu_run_until(eg, &kept.done);
  tu_run_until(eg, &dropped.done);
  assert_int_equal(kept.status, 0);
  assert_int_equal(kept.n, 1);
  assert_string_equal(kept.hits[0].id, lone);
  assert_int_equal(dropped.status, ENGRAM_ECANCELED);
  ls_clear(&kept);
  ls_clear(&dropped);

  /* Close with searches at every stage: working, catching up, waiting
   * for the next catch-up, loading a namespace; all are called back once
   * (cancelled, or done before the close came). */
  ls at[5];
  memset(at, 0, sizeof at);
  start(x, NS, ALL_COLOURS, P(1000, 0), &at[0]);
  assert_true(until_working(eg, &at[0]));
  start(x, NS, "red", P(5, 0), &at[1]);
  start(x, NS, "blue", P(5, 0), &at[2]);
  start(x, "lix-small", "fox", P(5, 0), &at[3]);
  start(x, "lix-unloaded", "fox", P(5, 0), &at[4]);
  int closed = 0;
  lexical_index_close(x, on_index_closed, &closed);
  assert_false(closed);
  ls_clear(&v);
  const char *w[1] = {"red"};
  lexical_index_query lq = {
      .ns = NS, .words = w, .nwords = 1, .k1 = K1, .b = B, .k = 1};
  assert_int_equal(lexical_index_search(x, &lq, on_search, &v, &v.req),
                   ENGRAM_ECLOSED);
  for (int i = 0; i < 5; i++)
    assert_false(at[i].done); /* never inside close */
  tu_run_until(eg, &closed);
  assert_true(closed);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(at[i].calls, 1);
    assert_true(at[i].status == ENGRAM_ECANCELED || at[i].status == 0);
    ls_clear(&at[i]);
  }
  assert_false(v.done);
  engram_get_stats(eg, &est);
  assert_int_equal(est.queries_running, 0);
  if (!tu_backend_is_pg()) /* there PQcancel may still run on the pool */
    assert_int_equal(est.pool_tasks, 0);
  tu_close(eg);
}

/* ------------------------------------------------------------ many */

static void test_thousand_concurrent(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-many"), NULL);
  lexical_index *x = index_new(eg, NULL);
  assert_int_equal(tu_add_many(eg, NS, 500, numbered, NULL), 0);
  char(*ids)[ENGRAM_ID_LEN + 1] = numbered_ids(eg, NS, 500);
  enum { N = 1000, NESTED = N / 50 };
  ls *v = calloc(N + NESTED, sizeof *v);
  assert_non_null(v);
  ls *nested = v + N;
  char texts[NESTED][128];
  int finished = 0;
  stu_write w[N / 100];
  engram_op ops[N / 100];
  memset(w, 0, sizeof w);
  for (size_t i = 0; i < N; i++) {
    v[i].counter = &finished;
    if (i % 50 == 7) { /* a search started from this one's callback */
      snprintf(texts[i / 50], sizeof texts[i / 50], "%s",
               numbered((i + 1) % 500, NULL));
      v[i].nested = &nested[i / 50];
      v[i].nested_text = texts[i / 50];
    }
    start(x, NS, numbered(i % 500, NULL), P(3, 0), &v[i]);
    if (i % 100 == 99) { /* writes interleave with the searches */
      engram_op *op = &ops[i / 100];
      *op = (engram_op){.kind = ENGRAM_OP_ADD,
                        .ns = NS,
                        .type = ENGRAM_EPISODIC,
                        .content = "interleaved note"};
      assert_int_equal(engram_write(eg, op, 1, stu_on_write, &w[i / 100]), 0);
    }
  }
  while (finished < N + NESTED || !w[N / 100 - 1].done)
    if (uv_run(engram_loop(eg), UV_RUN_ONCE) == 0 && finished < N + NESTED)
      fail_msg("the loop ran dry with %d of %d searches finished", finished,
               N + NESTED);
  for (size_t i = 0; i < N / 100; i++)
    assert_int_equal(w[i].status, 0);
  for (size_t i = 0; i < N + NESTED; i++) {
    size_t want = i < N ? i % 500 : ((i - N) * 50 + 7 + 1) % 500;
    assert_int_equal(v[i].calls, 1);
    assert_int_equal(v[i].status, 0);
    assert_int_equal(v[i].n, 3);
    assert_string_equal(v[i].hits[0].id, ids[want]);
    ls_clear(&v[i]);
  }
  lexical_index_stats s = stats_of(x);
  /* Searches share catch-ups: far fewer store reads than searches. */
  assert_true(s.catchups < N / 4);
  assert_int_equal(s.reloads, 1);
  free(v);
  free(ids);
  /* Every write is seen by the next search. */
  ls one = {0};
  assert_int_equal(search(eg, x, "interleaved", 20, 0, &one), 0);
  assert_int_equal(one.n, N / 100);
  ls_clear(&one);
  index_close(eg, x);
  tu_close(eg);
}

/* Writes (adds, an update and a delete, from this handle and another on
 * the same loop) land while a long search task runs; a second search
 * queued behind it sees them, and the first's hits are memories that
 * existed when it started. (A change that frees what the task reads:
 * test_compaction_during_search.) */
static void test_writes_during_search(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  const char *path = tu_db_path("lix-during");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *a = open_on(&loop, saved);
  engram *b = open_on(&loop, saved);
  lexical_index *x = index_new(a, NULL);
  enum { N = 20000 };
  assert_int_equal(tu_add_many(a, NS, N, colours, NULL), 0);
  /* Two rows to update and delete while the task may score them. */
  engram_query lq = {.ns = NS};
  stu_coll c;
  stu_coll_init(&c, a, 2);
  c.auto_request = 0;
  c.cancel_after = 2;
  engram_stream_cbs cbs = stu_cbs(&c);
  assert_int_equal(engram_list(a, &lq, &cbs, &c.s), 0);
  stu_drain(&c);
  assert_int_equal(c.n, 2);
  ls first = {0};
  start(x, NS, ALL_COLOURS, P(N, 0), &first);
  /* Let the catch-up finish and the search task begin. */
  while (stats_of(x).docs < N && !first.done)
    uv_run(&loop, UV_RUN_ONCE);
  assert_false(first.done);

  char fresh[ENGRAM_ID_LEN + 1], other[ENGRAM_ID_LEN + 1];
  engram_id_new(fresh);
  engram_id_new(other);
  engram_op aop = {.kind = ENGRAM_OP_ADD,
                   .ns = NS,
                   .id = fresh,
                   .type = ENGRAM_EPISODIC,
                   .content = "freshword " ALL_COLOURS};
  engram_op bop = {.kind = ENGRAM_OP_ADD,
                   .ns = NS,
                   .id = other,
                   .type = ENGRAM_EPISODIC,
                   .content = "freshword and penguins"};
  engram_op cop[2] = {
      {.kind = ENGRAM_OP_UPDATE,
       .ns = NS,
       .id = c.nodes[0]->id,
       .content = "replaced words entirely",
       .set = ENGRAM_SET_CONTENT},
      {.kind = ENGRAM_OP_DELETE, .ns = NS, .id = c.nodes[1]->id}};
  stu_write wa = {0}, wb = {0}, wc = {0};
  assert_int_equal(engram_write(a, &aop, 1, stu_on_write, &wa), 0);
  assert_int_equal(engram_write(b, &bop, 1, stu_on_write, &wb), 0);
  assert_int_equal(engram_write(b, cop, 2, stu_on_write, &wc), 0);
  ls second = {0};
  int started = 0;
  while (!(wa.done && wb.done && wc.done) || !first.done) {
    if (wa.done && wb.done && wc.done && !started) {
      started = 1;
      start(x, NS, "freshword " ALL_COLOURS, P(50, 0), &second);
    }
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(wa.status, 0);
  assert_int_equal(wb.status, 0);
  assert_int_equal(wc.status, 0);
  assert_int_equal(first.status, 0);
  assert_true(first.n > N / 2);
  assert_true(hit_of(&first, fresh) < 0); /* written after it caught up */
  if (!started)
    start(x, NS, "freshword " ALL_COLOURS, P(50, 0), &second);
  while (!second.done)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(second.status, 0);
  assert_string_equal(second.hits[0].id, fresh);
  assert_true(hit_of(&second, other) >= 0);
  assert_true(hit_of(&second, c.nodes[0]->id) < 0);
  assert_true(hit_of(&second, c.nodes[1]->id) < 0);
  assert_int_equal(stats_of(x).docs, N + 1);
  stu_coll_free(&c);
  ls_clear(&first);
  ls_clear(&second);

  int closed = 0;
  lexical_index_close(x, on_index_closed, &closed);
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

static const char *wide(size_t i, void *arg) {
  static char buf[1024];
  (void)arg;
  size_t len = (size_t)snprintf(buf, sizeof buf, "d%zu", i);
  for (size_t k = 0; k < 100; k++)
    len +=
        (size_t)snprintf(buf + len, sizeof buf - len, " v%zu", (k + i) % 100);
  return buf;
}

/* Deletes ids[from, to) from eg, in batches, and waits. */
static void delete_ids(engram *eg, stu_coll *c, size_t from, size_t to) {
  enum { BATCH = 250 };
  engram_op ops[BATCH];
  while (from < to) {
    size_t k = 0;
    for (; k < BATCH && from < to; k++, from++)
      ops[k] = (engram_op){
          .kind = ENGRAM_OP_DELETE, .ns = NS, .id = c->nodes[from]->id};
    stu_write w = {0};
    assert_int_equal(engram_write(eg, ops, k, stu_on_write, &w), 0);
    while (!w.done)
      uv_run(engram_loop(eg), UV_RUN_ONCE);
    assert_int_equal(w.status, 0);
  }
}

/* The change that lands while a search task runs is the one that makes
 * the namespace compact (every list rewritten, the old ones freed): a
 * third of its memories are deleted and caught up beforehand, then one
 * more, while the task runs. The catch-up's page must wait for the task
 * (AddressSanitizer would see the freed lists). On PostgreSQL the read
 * runs on the loop beside the task; on SQLite it queues behind it on the
 * pool's one thread, and the test only checks the outcome. */
static void test_compaction_during_search(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  const char *path = tu_db_path("lix-compact");
  char saved[1600];
  snprintf(saved, sizeof saved, "%s", path);
  engram *a = open_on(&loop, saved);
  engram *b = open_on(&loop, saved);
  lexical_index *x = index_new(a, NULL);
  /* Every memory has the same 101 terms' worth of postings: dead
   * entries pass half the live ones at the 1001st delete of 3000. */
  enum { N = 3000, BEFORE = 1000 };
  assert_int_equal(tu_add_many(a, NS, N, wide, NULL), 0);
  engram_query lq = {.ns = NS};
  stu_coll c;
  assert_int_equal(stu_list(a, &lq, 1000, &c), 0);
  assert_int_equal(c.n, N);
  char query[1024];
  size_t len = 0;
  for (size_t k = 0; k < 100; k++)
    len += (size_t)snprintf(query + len, sizeof query - len, "v%zu ", k);
  ls v = {0};
  assert_int_equal(search_p(a, x, NS, query, P(5, 0), &v), 0);
  delete_ids(b, &c, 0, BEFORE);
  assert_int_equal(search_p(a, x, NS, query, P(5, 0), &v), 0);
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.docs, N - BEFORE);
  size_t bytes = s.bytes;

  ls first = {0};
  start(x, NS, query, P(N, 0), &first);
  assert_true(until_working(a, &first));
  engram_op op = {
      .kind = ENGRAM_OP_DELETE, .ns = NS, .id = c.nodes[BEFORE]->id};
  stu_write w = {0};
  assert_int_equal(engram_write(b, &op, 1, stu_on_write, &w), 0);
  ls second = {0};
  while (!w.done || !first.done) {
    if (w.done && !second.req)
      start(x, NS, query, P(N, 0), &second);
    uv_run(&loop, UV_RUN_ONCE);
  }
  assert_int_equal(w.status, 0);
  if (!second.req)
    start(x, NS, query, P(N, 0), &second);
  while (!second.done)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(first.status, 0);
  assert_int_equal(first.n, N - BEFORE);
  for (size_t i = 0; i < BEFORE; i++)
    assert_true(hit_of(&first, c.nodes[i]->id) < 0);
  assert_int_equal(second.status, 0);
  assert_int_equal(second.n, N - BEFORE - 1);
  assert_true(hit_of(&second, c.nodes[BEFORE]->id) < 0);
  s = stats_of(x);
  assert_int_equal(s.docs, N - BEFORE - 1);
  assert_true(s.bytes < bytes); /* compacted */
  stu_coll_free(&c);
  ls_clear(&v);
  ls_clear(&first);
  ls_clear(&second);

  int closed = 0;
  lexical_index_close(x, on_index_closed, &closed);
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

/* --------------------------------------------------------------- bounds */

static void test_eviction(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("lix-evict"), NULL);
  lexical_index_options o = {.max_namespaces = 2};
  lexical_index *x = index_new(eg, &o);
  const char *names[3] = {"ev-a", "ev-b", "ev-c"};
  char ids[3][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 3; i++)
    add(eg, names[i], "shared words in every namespace", ENGRAM_EPISODIC,
        ids[i]);
  ls v = {0};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(search_p(eg, x, names[i], "shared words", P(5, 0), &v), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.hits[0].id, ids[i]);
  }
  lexical_index_stats s = stats_of(x);
  assert_int_equal(s.namespaces, 2);
  assert_int_equal(s.docs, 2);
  assert_int_equal(s.evictions, 1);
  assert_int_equal(s.reloads, 3);
  /* The most recently used stay: b and c are served without a reload. */
  assert_int_equal(search_p(eg, x, names[2], "shared", P(5, 0), &v), 0);
  assert_int_equal(search_p(eg, x, names[1], "shared", P(5, 0), &v), 0);
  assert_int_equal(stats_of(x).reloads, 3);
  /* The evicted one loads again (and c, the least recent, goes). */
  char more[ENGRAM_ID_LEN + 1];
  add(eg, names[0], "shared words again", ENGRAM_EPISODIC, more);
  assert_int_equal(search_p(eg, x, names[0], "shared words", P(5, 0), &v), 0);
  assert_int_equal(v.n, 2);
  s = stats_of(x);
  assert_int_equal(s.reloads, 4);
  assert_int_equal(s.evictions, 2);
  assert_int_equal(s.namespaces, 2);
  assert_int_equal(search_p(eg, x, names[1], "shared", P(5, 0), &v), 0);
  assert_int_equal(stats_of(x).reloads, 4);
  ls_clear(&v);
  index_close(eg, x);

  /* A bound on bytes: only the most recently used namespace stays. */
  lexical_index_options tiny = {.max_bytes = 1};
  x = index_new(eg, &tiny);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(search_p(eg, x, names[i], "shared", P(5, 0), &v), 0);
    assert_true(v.n >= 1);
  }
  s = stats_of(x);
  assert_int_equal(s.namespaces, 1);
  assert_int_equal(s.evictions, 2);
  assert_int_equal(search_p(eg, x, names[2], "shared", P(5, 0), &v), 0);
  assert_int_equal(stats_of(x).reloads, 3);
  ls_clear(&v);
  index_close(eg, x);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_catch_up),
      cmocka_unit_test(test_pages),
      cmocka_unit_test(test_resume),
      cmocka_unit_test(test_second_handle),
      cmocka_unit_test(test_words),
      cmocka_unit_test(test_exact),
      cmocka_unit_test(test_hybrid_same),
      cmocka_unit_test(test_hybrid_pruned),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_thousand_concurrent),
      cmocka_unit_test(test_writes_during_search),
      cmocka_unit_test(test_compaction_during_search),
      cmocka_unit_test(test_eviction),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
