/*
 * test_hybrid.c — hybrid search (src/search/hybrid.*, the SQLite
 * candidates operation): propagation to neighbours, session boundaries
 * (metadata and time gaps), the speaker boost, filters, decay, importance,
 * a memory alone, empty queries, option checks, and cancellation at every
 * stage. The ranking's quality is measured by `engram eval` (see
 * docs/retrieval.md); these tests pin its mechanics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "engram_internal.h"
#include "scale_corpus.h"
#include "store/store.h"
#include "store_tu.h"
#include "testloop.h"
#include "tu.h"

#define NS "hyb"

/* Adds one memory of a type; the id goes to out. */
static void add_typed(engram *eg, const char *ns, engram_type type,
                      const char *content, const char *metadata,
                      char out[ENGRAM_ID_LEN + 1]) {
  char id[ENGRAM_ID_LEN + 1];
  engram_id_new(id);
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = ns,
                  .id = id,
                  .type = type,
                  .content = content,
                  .metadata = metadata};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  if (out)
    memcpy(out, id, sizeof id);
}

/* Adds one conversation turn with metadata (NULL: none). */
static void add_md(engram *eg, const char *ns, const char *content,
                   const char *metadata, char out[ENGRAM_ID_LEN + 1]) {
  add_typed(eg, ns, ENGRAM_EPISODIC, content, metadata, out);
}

static void add_imp(engram *eg, const char *content, double importance,
                    char out[ENGRAM_ID_LEN + 1]) {
  engram_id_new(out);
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = NS,
                  .id = out,
                  .type = ENGRAM_SEMANTIC,
                  .content = content,
                  .importance = importance,
                  .set = ENGRAM_SET_IMPORTANCE};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
}

static int hybrid(engram *eg, const char *text,
                  const engram_search_options *opts, stu_coll *c) {
  engram_query q = {.ns = NS,
                    .text = text,
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .options = opts};
  return stu_search(eg, &q, 100, c);
}

static void check_ranked(const stu_coll *c) {
  for (size_t i = 0; i < c->n; i++) {
    assert_true(c->nodes[i]->relevance > 0 && c->nodes[i]->relevance <= 1);
    if (i > 0)
      assert_true(c->nodes[i]->relevance <= c->nodes[i - 1]->relevance);
  }
}

/* Sets created_ms of a memory behind engram's back (closed handle). */
static void set_created(const char *path, const char *id, long long ms) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "UPDATE memories SET created_ms = %lld WHERE id = '%s'", ms, id);
  if (tu_backend_is_pg()) {
    tu_pg_exec(path, sql);
    return;
  }
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* A conversation of one session: the match pulls in the turns around it,
 * the nearer with more weight, and nothing beyond the window. */
static void test_propagation(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-prop"), NULL);
  char t[7][ENGRAM_ID_LEN + 1];
  const char *turns[7] = {"good morning",        "how was the weekend",
                          "we went hiking",      "we climbed a volcano",
                          "that sounds amazing", "it was really steep",
                          "anyway see you later"};
  for (int i = 0; i < 7; i++)
    add_md(eg, NS, turns[i], "{\"session\":1}", t[i]);

  stu_coll c;
  engram_query lq = {.ns = NS, .text = "volcano"};
  assert_int_equal(stu_search(eg, &lq, 10, &c), 0);
  assert_int_equal(c.n, 1); /* lexical: the match alone */
  stu_coll_free(&c);

  assert_int_equal(hybrid(eg, "volcano", NULL, &c), 0);
  assert_int_equal(c.n, 5); /* the match and two each side */
  check_ranked(&c);
  assert_string_equal(c.nodes[0]->id, t[3]);
  /* d = 1 before d = 2; turns 0 and 6 are out of the window */
  int at[7];
  for (int i = 0; i < 7; i++)
    at[i] = stu_find(&c, t[i]);
  assert_true(at[0] < 0 && at[6] < 0);
  assert_true(at[2] > 0 && at[4] > 0 && at[1] > 0 && at[5] > 0);
  assert_true(at[2] < at[1] && at[4] < at[5]);
  stu_coll_free(&c);

  /* window 0 and no session prior: the match alone again. */
  engram_search_options o;
  engram_search_options_init(&o);
  o.window = 0;
  assert_int_equal(hybrid(eg, "volcano", &o, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  tu_close(eg);
}

/* window_matches: only the best matches take their neighbours. Two
 * matches far apart, "volcano volcano" scoring above "volcano": with 1,
 * the weaker one comes alone; with 2 (and by default), both windows. */
static void test_window_matches(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-wm"), NULL);
  char t[11][ENGRAM_ID_LEN + 1];
  const char *turns[11] = {"alpha one",   "beta two",   "volcano volcano",
                           "gamma three", "delta four", "epsilon five",
                           "zeta six",    "eta seven",  "volcano",
                           "theta eight", "iota nine"};
  for (int i = 0; i < 11; i++)
    add_md(eg, NS, turns[i], "{\"session\":1}", t[i]);
  engram_search_options o;
  engram_search_options_init(&o);
  o.window = 1;
  o.session_weight = 0;
  stu_coll c;
  assert_int_equal(hybrid(eg, "volcano", &o, &c), 0);
  assert_int_equal(c.n, 6); /* both matches and one each side of each */
  assert_true(stu_find(&c, t[7]) >= 0 && stu_find(&c, t[9]) >= 0);
  stu_coll_free(&c);
  o.window_matches = 1;
  assert_int_equal(hybrid(eg, "volcano", &o, &c), 0);
  assert_int_equal(c.n, 4);
  assert_string_equal(c.nodes[0]->id, t[2]);
  assert_true(stu_find(&c, t[1]) >= 0 && stu_find(&c, t[3]) >= 0);
  assert_true(stu_find(&c, t[8]) >= 0); /* the weaker match, alone */
  assert_true(stu_find(&c, t[7]) < 0 && stu_find(&c, t[9]) < 0);
  stu_coll_free(&c);
  o.window_matches = 0; /* no neighbours at all */
  assert_int_equal(hybrid(eg, "volcano", &o, &c), 0);
  assert_int_equal(c.n, 2);
  stu_coll_free(&c);
  o.window_matches = 1001;
  engram_stream *s;
  engram_query q = {
      .ns = NS, .text = "x", .strategy = ENGRAM_STRATEGY_HYBRID, .options = &o};
  assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);
  tu_close(eg);
}

/* The store's candidates for text (limit 10) and the vector hits ids,
 * window 1; the ids of the set, in its order, into out (n of them). */
static size_t store_candidates_of(engram *eg, store *st, const char *text,
                                  const char *const *ids, size_t nids,
                                  char out[][ENGRAM_ID_LEN + 1], size_t cap) {
  store_candidates_query q = {.ns = NS,
                              .text = text,
                              .text_len = strlen(text),
                              .limit = 10,
                              .window = 1,
                              .window_matches = 100,
                              .max_scored = 1000,
                              .k1 = 0.6,
                              .b = 0.3,
                              .meta_weight = 1.0,
                              .ids = ids,
                              .nids = nids};
  store_candidates *set = scale_candidates(eg, st, &q);
  assert_true(set->n <= cap);
  for (size_t i = 0; i < set->n; i++)
    memcpy(out[i], set->nodes[i]->id, ENGRAM_ID_LEN + 1);
  size_t n = set->n;
  store_candidates_free(set);
  return n;
}

static int has_id(char ids[][ENGRAM_ID_LEN + 1], size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0)
      return 1;
  return 0;
}

/* Only conversation turns (episodic) take neighbours, as matches and as
 * vector hits: the ranking gives a fact none and takes none from it, so
 * the store does not read them. Asked of the store directly, since the
 * ranking leaves a scoreless neighbour out of the results either way. */
static void test_facts_take_no_neighbours(void **state) {
  (void)state;
  store *st = NULL;
  engram *eg = scale_open_capturing(tu_db_path("hybrid-facts"), &st);
  static const struct {
    engram_type type;
    const char *content;
  } mem[8] = {{ENGRAM_EPISODIC, "alpha one"},
              {ENGRAM_SEMANTIC, "granite is hard"},
              {ENGRAM_EPISODIC, "the volcano erupted"},
              {ENGRAM_EPISODIC, "gamma three"},
              {ENGRAM_SEMANTIC, "delta is a letter"},
              {ENGRAM_SEMANTIC, "a volcano is a mountain"},
              {ENGRAM_PROCEDURAL, "to climb, start early"},
              {ENGRAM_EPISODIC, "zeta seven"}};
  char id[8][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 8; i++)
    add_typed(eg, NS, mem[i].type, mem[i].content, NULL, id[i]);
  char got[16][ENGRAM_ID_LEN + 1];
  /* The turn (2) takes 1 and 3; the fact (5) comes alone. */
  size_t n = store_candidates_of(eg, st, "volcano", NULL, 0, got, 16);
  assert_int_equal(n, 4);
  assert_true(has_id(got, n, id[1]) && has_id(got, n, id[2]) &&
              has_id(got, n, id[3]) && has_id(got, n, id[5]));
  /* Vector hits: the turn (0) takes 1; the procedure (6) comes alone. */
  const char *hits[2] = {id[6], id[0]};
  n = store_candidates_of(eg, st, "", hits, 2, got, 16);
  assert_int_equal(n, 3);
  assert_true(has_id(got, n, id[0]) && has_id(got, n, id[1]) &&
              has_id(got, n, id[6]));
  tu_close(eg);
}

/* Many reads at once, more than the store has readers: the candidates and
 * the vectors operations (they share the read task of each backend).
 * Every request calls back once; those cancelled before the loop ran (in
 * the pool's queue, or waiting for a reader) with ENGRAM_ECANCELED; the
 * others with their answer. Then a second round where the first callback
 * cancels every request still out, from inside itself. The store serves a
 * read afterwards. */
enum { FLOOD = 24 };

typedef struct flood {
  store *st;
  store_candidates_req creq[FLOOD];
  store_vectors_req vreq[FLOOD];
  int calls[2 * FLOOD];
  int status[2 * FLOOD];
  size_t found[2 * FLOOD];
  int cancel_rest; /* the first callback cancels the others */
  int total;
} flood;

static void flood_cancel_rest(flood *f) {
  f->cancel_rest = 0;
  for (int i = 0; i < FLOOD; i++) {
    if (!f->calls[i])
      f->st->ops->candidates_cancel(f->st, &f->creq[i]);
    if (!f->calls[FLOOD + i])
      f->st->ops->vectors_cancel(f->st, &f->vreq[i]);
  }
}

/* Request i called back with status and n rows. */
static void flood_record(flood *f, int i, int status, size_t n) {
  f->calls[i]++;
  f->status[i] = status;
  f->found[i] = n;
  f->total++;
  if (f->cancel_rest)
    flood_cancel_rest(f);
}

static void flood_on_candidates(store_candidates_req *req, int status,
                                const char *message, store_candidates *set) {
  flood *f = req->data;
  (void)message;
  size_t n = set ? set->n : 0;
  store_candidates_free(set);
  flood_record(f, (int)(req - f->creq), status, n);
}

static void flood_on_vectors(store_vectors_req *req, int status,
                             const char *message, store_vectors *page) {
  flood *f = req->data;
  (void)message;
  size_t n = page ? page->n : 0;
  store_vectors_free(page);
  flood_record(f, FLOOD + (int)(req - f->vreq), status, n);
}

static void flood_start(flood *f, const store_candidates_query *cq,
                        const store_vectors_query *vq) {
  for (int i = 0; i < FLOOD; i++) {
    f->creq[i] = (store_candidates_req){.cb = flood_on_candidates, .data = f};
    f->vreq[i] = (store_vectors_req){.cb = flood_on_vectors, .data = f};
    assert_int_equal(f->st->ops->candidates(f->st, cq, &f->creq[i]), 0);
    assert_int_equal(f->st->ops->vectors(f->st, vq, &f->vreq[i]), 0);
  }
  assert_int_equal(f->total, 0); /* never inside the start function */
}

static int flood_done(void *arg) {
  flood *f = arg;
  return f->total == 2 * FLOOD;
}

typedef struct holder {
  int items, done;
} holder;

static void holder_item(engram_stream *s, const engram_node *node, void *data) {
  (void)s;
  (void)node;
  ((holder *)data)->items++;
}

static void holder_done(engram_stream *s, int status, void *data) {
  (void)s;
  (void)status;
  ((holder *)data)->done++;
}

static int one_call(void *arg) {
  return *(int *)arg > 0;
}

/* A read waiting for a reader that is cancelled calls back at once, while
 * every reader stays held: HOLDERS list streams of more rows than a chunk,
 * paused after their first item, hold their readers (more streams than
 * either backend has readers by default). */
enum { HOLDERS = 10 };

static void cancel_while_waiting(engram *eg, store *st,
                                 const store_candidates_query *cq) {
  engram_stream *hs[HOLDERS];
  holder h[HOLDERS];
  memset(h, 0, sizeof h);
  for (int i = 0; i < HOLDERS; i++) {
    engram_query q = {.ns = NS};
    engram_stream_cbs cbs = {holder_item, NULL, holder_done, &h[i]};
    assert_int_equal(engram_list(eg, &q, &cbs, &hs[i]), 0);
    assert_int_equal(engram_stream_request(hs[i], 1), 0);
  }
  tl_run_for(engram_loop(eg), 300);
  int holding = 0;
  for (int i = 0; i < HOLDERS; i++) {
    assert_int_equal(h[i].done, 0); /* paused, not finished */
    holding += h[i].items == 1;
  }
  assert_true(holding >= 1);
  scale_cand_wait w = {0};
  store_candidates_req req = {.cb = scale_on_candidates, .data = &w};
  assert_int_equal(st->ops->candidates(st, cq, &req), 0);
  tl_run_for(engram_loop(eg), 100);
  assert_int_equal(w.calls, 0); /* no reader free: it waits */
  st->ops->candidates_cancel(st, &req);
  assert_int_equal(w.calls, 0);
  assert_true(tl_run_until(engram_loop(eg), one_call, &w.calls, 5000));
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, ENGRAM_ECANCELED);
  for (int i = 0; i < HOLDERS; i++)
    assert_int_equal(h[i].done, 0); /* the readers were still held */
  for (int i = 0; i < HOLDERS; i++)
    engram_stream_cancel(hs[i]);
  for (int i = 0; i < HOLDERS; i++)
    assert_true(tl_run_until(engram_loop(eg), one_call, &h[i].done, 5000));
}

static void test_store_reads_cancelled(void **state) {
  (void)state;
  store *st = NULL;
  engram *eg = scale_open_capturing(tu_db_path("hybrid-flood"), &st);
  for (int i = 0; i < 40; i++) {
    char text[64];
    snprintf(text, sizeof text, "the harbour light number %d", i);
    add_typed(eg, NS, ENGRAM_EPISODIC, text, NULL, NULL);
  }
  for (int i = 0; i < 300; i++) { /* for the lists that hold readers */
    char text[64];
    snprintf(text, sizeof text, "a quiet street, house %d", i);
    add_typed(eg, NS, ENGRAM_EPISODIC, text, NULL, NULL);
  }
  store_candidates_query cq = {.ns = NS,
                               .text = "harbour light",
                               .text_len = strlen("harbour light"),
                               .limit = 10,
                               .window = 0,
                               .window_matches = 10,
                               .max_scored = 1000,
                               .k1 = 0.6,
                               .b = 0.3,
                               .meta_weight = 1.0};
  char space[STORE_SPACE_LEN];
  snprintf(space, sizeof space, "%s", st->space);
  char *slash = strchr(space, '/');
  assert_non_null(slash); /* the default embedder wrote vectors */
  *slash = '\0';
  store_vectors_query vq = {.ns = NS,
                            .embedder = space,
                            .dim = (uint32_t)strtoul(slash + 1, NULL, 10),
                            .after_seq = -1,
                            .limit = 400};
  cancel_while_waiting(eg, st, &cq);
  /* Round 1: every other request cancelled before the loop runs. */
  flood *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->st = st;
  flood_start(f, &cq, &vq);
  for (int i = 0; i < FLOOD; i += 2) {
    st->ops->candidates_cancel(st, &f->creq[i]);
    st->ops->vectors_cancel(st, &f->vreq[i]);
    st->ops->vectors_cancel(st, &f->vreq[i]); /* idempotent */
  }
  assert_int_equal(f->total, 0); /* never inside cancel */
  assert_true(tl_run_until(engram_loop(eg), flood_done, f, 30000));
  for (int i = 0; i < 2 * FLOOD; i++) {
    assert_int_equal(f->calls[i], 1);
    if ((i % FLOOD) % 2 == 0) {
      assert_int_equal(f->status[i], ENGRAM_ECANCELED);
    } else {
      assert_int_equal(f->status[i], 0);
      assert_int_equal(f->found[i], i < FLOOD ? 10 : 340);
    }
  }
  /* Round 2: the first callback cancels the rest from inside itself. */
  memset(f, 0, sizeof *f);
  f->st = st;
  f->cancel_rest = 1;
  flood_start(f, &cq, &vq);
  assert_true(tl_run_until(engram_loop(eg), flood_done, f, 30000));
  int answered = 0, cancelled = 0;
  for (int i = 0; i < 2 * FLOOD; i++) {
    assert_int_equal(f->calls[i], 1);
    assert_true(f->status[i] == 0 || f->status[i] == ENGRAM_ECANCELED);
    answered += f->status[i] == 0;
    cancelled += f->status[i] == ENGRAM_ECANCELED;
  }
  assert_true(answered >= 1);
  assert_true(cancelled >= 1); /* more reads than readers: some waited */
  free(f);
  /* The readers are fine afterwards. */
  char got[40][ENGRAM_ID_LEN + 1];
  assert_true(store_candidates_of(eg, st, "harbour", NULL, 0, got, 40) >= 10);
  tu_close(eg);
}

/* Propagation stops at a session boundary (metadata "session"); another
 * namespace never contributes neighbours. */
static void test_session_boundary_metadata(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-sess"), NULL);
  char a1[ENGRAM_ID_LEN + 1], a2[ENGRAM_ID_LEN + 1], hit[ENGRAM_ID_LEN + 1];
  char b1[ENGRAM_ID_LEN + 1], other[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "first words", "{\"session\":\"s1\"}", a1);
  add_md(eg, NS, "more words", "{\"session\":\"s1\"}", a2);
  add_md(eg, "elsewhere", "between the two", "{\"session\":\"s1\"}", other);
  add_md(eg, NS, "the lighthouse keeper", "{\"session\":\"s1\"}", hit);
  add_md(eg, NS, "a new day begins", "{\"session\":\"s2\"}", b1);

  stu_coll c;
  assert_int_equal(hybrid(eg, "lighthouse", NULL, &c), 0);
  check_ranked(&c);
  assert_string_equal(c.nodes[0]->id, hit);
  assert_true(stu_find(&c, a2) > 0 && stu_find(&c, a1) > 0);
  assert_true(stu_find(&c, b1) < 0);    /* next session */
  assert_true(stu_find(&c, other) < 0); /* other namespace */
  for (size_t i = 0; i < c.n; i++)
    assert_string_equal(c.nodes[i]->ns, NS);
  stu_coll_free(&c);
  tu_close(eg);
}

/* Without a metadata session, a gap of more than session_gap_ms between
 * creation times ends a session. */
static void test_session_boundary_time(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("hybrid-gap"));
  engram *eg = tu_open(path, NULL);
  char before[ENGRAM_ID_LEN + 1], hit[ENGRAM_ID_LEN + 1];
  char after[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "we talked about rain", NULL, before);
  add_md(eg, NS, "the orchard needs pruning", NULL, hit);
  add_md(eg, NS, "completely different topic", NULL, after);
  tu_close(eg);
  long long t0 = 1700000000000LL;
  set_created(path, before, t0);
  set_created(path, hit, t0 + 60 * 1000);             /* a minute later */
  set_created(path, after, t0 + 2 * 3600 * 1000 + 1); /* two hours later */

  eg = tu_open(path, NULL);
  stu_coll c;
  assert_int_equal(hybrid(eg, "orchard", NULL, &c), 0);
  assert_string_equal(c.nodes[0]->id, hit);
  assert_true(stu_find(&c, before) > 0);
  assert_true(stu_find(&c, after) < 0);
  stu_coll_free(&c);

  /* A longer gap allowed: one session. */
  engram_search_options o;
  engram_search_options_init(&o);
  o.session_gap_ms = 3 * 3600 * 1000;
  assert_int_equal(hybrid(eg, "orchard", &o, &c), 0);
  assert_true(stu_find(&c, after) > 0);
  stu_coll_free(&c);
  tu_close(eg);
}

/* A match whose speaker is named in the query ranks above an equal match
 * of another speaker. */
static void test_speaker_boost(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-speaker"), NULL);
  char alice[ENGRAM_ID_LEN + 1], bob[ENGRAM_ID_LEN + 1];
  /* The names are in the metadata only, and metadata words do not count
   * (meta_weight 0): only the boost can tell the speakers apart. */
  add_md(eg, NS,
         "I adopted a puppy last week after thinking about it for a very "
         "long time",
         "{\"speaker\":\"Alice\",\"session\":1}", alice);
  add_md(eg, NS, "a puppy", "{\"speaker\":\"Bob\",\"session\":2}", bob);

  engram_search_options o;
  engram_search_options_init(&o);
  o.meta_weight = 0;
  o.session_weight = 0;
  o.speaker_boost = 0;
  stu_coll c;
  assert_int_equal(hybrid(eg, "when did Alice get a puppy", &o, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, bob); /* shorter: BM25 prefers it */
  stu_coll_free(&c);

  o.speaker_boost = 1.0;
  assert_int_equal(hybrid(eg, "when did ALICE get a puppy", &o, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, alice);
  assert_true(c.nodes[0]->relevance > c.nodes[1]->relevance);
  stu_coll_free(&c);
  /* A name that is only part of a word is not named. */
  assert_int_equal(hybrid(eg, "aliced puppy", &o, &c), 0);
  assert_string_equal(c.nodes[0]->id, bob);
  stu_coll_free(&c);
  tu_close(eg);
}

/* Metadata words are searchable (schema v2's second column). */
static void test_metadata_words_match(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-meta"), NULL);
  char id[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "we met at the cafe",
         "{\"session_time\":\"8 May 2023\",\"n\":5}", id);
  stu_coll c;
  assert_int_equal(hybrid(eg, "what happened in 2023", NULL, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, id);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_filters(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("hybrid-filter"));
  engram *eg = tu_open(path, NULL);
  char red[ENGRAM_ID_LEN + 1], blue[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "the red kite flies", "{\"tag\":\"red\",\"n\":7}", red);
  add_md(eg, NS, "the blue kite flies", "{\"tag\":\"blue\",\"n\":8}", blue);
  tu_close(eg);
  set_created(path, red, 1000000);
  set_created(path, blue, 2000000);
  eg = tu_open(path, NULL);

  stu_coll c;
  engram_query q = {.ns = NS,
                    .text = "kite",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .meta_key = "tag",
                    .meta_value = "blue"};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, blue);
  stu_coll_free(&c);
  q.meta_key = "n"; /* a number compares by its JSON text */
  q.meta_value = "7";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, red);
  stu_coll_free(&c);
  q.meta_key = "absent";
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);

  q.meta_key = q.meta_value = NULL;
  q.created_after_ms = 1500000;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, blue);
  stu_coll_free(&c);
  q.created_after_ms = 0;
  q.created_before_ms = 1500000;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, red);
  stu_coll_free(&c);
  q.created_before_ms = 0;

  /* Types apply to matches and neighbours alike. */
  q.types = 1u << ENGRAM_SEMANTIC;
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);

  /* Filters are the hybrid strategy's; half a filter is an error. */
  q.types = 0;
  q.strategy = ENGRAM_STRATEGY_LEXICAL;
  q.meta_key = "tag";
  q.meta_value = "red";
  stu_coll_init(&c, eg, 10);
  engram_stream_cbs cbs = stu_cbs(&c);
  engram_stream *s;
  assert_int_equal(engram_search(eg, &q, &cbs, &s), ENGRAM_EINVAL);
  q.strategy = ENGRAM_STRATEGY_HYBRID;
  q.meta_value = NULL;
  assert_int_equal(engram_search(eg, &q, &cbs, &s), ENGRAM_EINVAL);
  q.meta_key = NULL;
  q.created_after_ms = 10;
  q.created_before_ms = 5;
  assert_int_equal(engram_search(eg, &q, &cbs, &s), ENGRAM_EINVAL);
  tu_close(eg);
}

/* Half-life decay prefers the newer of two equal matches; importance the
 * more important. */
static void test_decay_and_importance(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", tu_db_path("hybrid-decay"));
  engram *eg = tu_open(path, NULL);
  char old[ENGRAM_ID_LEN + 1], recent[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "the harbour at dawn", "{\"session\":1}", old);
  add_md(eg, NS, "the harbour at dusk", "{\"session\":2}", recent);
  tu_close(eg);
  set_created(path, recent, 1700000000000LL);
  set_created(path, old, 1700000000000LL - 30LL * 86400 * 1000);
  eg = tu_open(path, NULL);

  engram_search_options o;
  engram_search_options_init(&o);
  o.half_life_ms = 7LL * 86400 * 1000;
  stu_coll c;
  assert_int_equal(hybrid(eg, "harbour", &o, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, recent);
  assert_true(c.nodes[1]->relevance < c.nodes[0]->relevance / 4);
  stu_coll_free(&c);
  tu_close(eg);

  eg = tu_open(tu_db_path("hybrid-importance"), NULL);
  char low[ENGRAM_ID_LEN + 1], high[ENGRAM_ID_LEN + 1];
  add_imp(eg, "espresso machine", 0.1, low);
  add_imp(eg, "espresso machine!", 0.9, high);
  engram_search_options_init(&o);
  o.window = 0;
  o.session_weight = 0;
  assert_int_equal(hybrid(eg, "espresso", &o, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.nodes[0]->id, high);
  stu_coll_free(&c);
  o.importance_weight = 0;
  assert_int_equal(hybrid(eg, "espresso", &o, &c), 0);
  assert_true(c.nodes[0]->relevance == c.nodes[1]->relevance);
  stu_coll_free(&c);
  tu_close(eg);
}

/* One memory, no neighbours; words found nowhere; no words at all. */
static void test_alone_and_empty(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-alone"), NULL);
  stu_coll c;
  assert_int_equal(hybrid(eg, "anything", NULL, &c), 0); /* empty ns */
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  char id[ENGRAM_ID_LEN + 1];
  add_md(eg, NS, "a solitary memory about glaciers", NULL, id);
  assert_int_equal(hybrid(eg, "glaciers", NULL, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.nodes[0]->id, id);
  check_ranked(&c);
  stu_coll_free(&c);
  assert_int_equal(hybrid(eg, "deserts", NULL, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  assert_int_equal(hybrid(eg, "", NULL, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  assert_int_equal(hybrid(eg, "?! ...", NULL, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  /* min_relevance above everything */
  engram_query q = {.ns = NS,
                    .text = "glaciers",
                    .strategy = ENGRAM_STRATEGY_HYBRID,
                    .min_relevance = 0.9999};
  assert_int_equal(stu_search(eg, &q, 10, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_options_checked(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-opts"), NULL);
  engram_search_options o;
  engram_stream *s;
  engram_query q = {
      .ns = NS, .text = "x", .strategy = ENGRAM_STRATEGY_HYBRID, .options = &o};
  struct {
    size_t offset;
    double value;
  } bad[] = {
      {offsetof(engram_search_options, k1), -1},
      {offsetof(engram_search_options, b), 1.5},
      {offsetof(engram_search_options, neighbour_weight), -0.1},
      {offsetof(engram_search_options, rrf_k), 0},
      {offsetof(engram_search_options, importance_weight), 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    engram_search_options_init(&o);
    memcpy((char *)&o + bad[i].offset, &bad[i].value, sizeof(double));
    assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);
  }
  engram_search_options_init(&o);
  o.candidates = 0;
  assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);
  engram_search_options_init(&o);
  o.window = 17;
  assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);
  engram_search_options_init(&o);
  q.strategy = (engram_strategy)42;
  assert_int_equal(engram_search(eg, &q, NULL, &s), ENGRAM_EINVAL);

  engram_strategy st;
  assert_int_equal(engram_strategy_parse("hybrid", &st), 0);
  assert_int_equal(st, ENGRAM_STRATEGY_HYBRID);
  assert_int_equal(engram_strategy_parse("vector", &st), 0);
  assert_int_equal(st, ENGRAM_STRATEGY_VECTOR);
  assert_string_equal(engram_strategy_name(ENGRAM_STRATEGY_VECTOR), "vector");
  assert_int_equal(engram_strategy_parse("vectors", &st), ENGRAM_EINVAL);
  assert_string_equal(engram_strategy_name(ENGRAM_STRATEGY_LEXICAL), "lexical");
  tu_close(eg);
}

/* engram_search_options_set: every kind of field, and a bad list changes
 * nothing and names the bad part. */
static void test_options_set(void **state) {
  (void)state;
  engram_search_options o, before;
  char err[512];
  engram_search_options_init(&o);
  assert_int_equal(
      engram_search_options_set(&o, "window=0,k1=1.25,half_life_ms=86400000",
                                err, sizeof err),
      0);
  assert_int_equal(o.window, 0);
  assert_true(o.k1 == 1.25);
  assert_int_equal(o.half_life_ms, 86400000);
  assert_int_equal(engram_search_options_set(&o, "", err, sizeof err), 0);
  const char *bad[] = {
      "k1",        "k1=",       "k1=x",     "nope=1",    "window=1.5",
      "window=-1", "b=0.5,k1",  "b=0.5,=1", "k1=1;DROP", "half_life_ms=1e20",
      "b=nan",     "window=2=3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    before = o;
    err[0] = '\0';
    assert_int_equal(engram_search_options_set(&o, bad[i], err, sizeof err),
                     ENGRAM_EINVAL);
    assert_memory_equal(&o, &before, sizeof o);
    assert_non_null(strstr(err, "search options:"));
  }
  assert_non_null(strstr(err, "window=2=3"));
  assert_int_equal(engram_search_options_set(NULL, "k1=1", NULL, 0),
                   ENGRAM_EINVAL);
}

/* Cancel before the store answered, from the first item, and with a
 * deadline: done comes once with ECANCELED (or ETIMEDOUT), nothing after. */
static void test_cancel(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hybrid-cancel"), NULL);
  for (int i = 0; i < 200; i++) {
    char text[64];
    snprintf(text, sizeof text, "turn %d about the river and the boats", i);
    add_md(eg, NS, text, "{\"session\":1}", NULL);
  }
  engram_query q = {
      .ns = NS, .text = "river boats", .strategy = ENGRAM_STRATEGY_HYBRID};
  /* 1. right after the request: the candidates task is queued or running */
  stu_coll c;
  stu_coll_init(&c, eg, 10);
  engram_stream_cbs cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 10;
  assert_int_equal(engram_stream_request(c.s, 10), 0);
  engram_stream_cancel(c.s);
  engram_stream_cancel(c.s);
  tu_run_until(eg, &c.done);
  assert_true(c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);

  /* 2. before any request: nothing started */
  stu_coll_init(&c, eg, 10);
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  engram_stream_cancel(c.s);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  stu_coll_free(&c);

  /* 3. from the item callback, after 3 items */
  stu_coll_init(&c, eg, 10);
  c.cancel_after = 3;
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  stu_drain(&c);
  assert_int_equal(c.n, 3);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  stu_coll_free(&c);

  /* 4. paused after a page, then the rest on demand */
  stu_coll_init(&c, eg, 7);
  c.auto_request = 0;
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 7;
  assert_int_equal(engram_stream_request(c.s, 7), 0);
  tu_run_until(eg, &c.done); /* returns when the loop idles: paused */
  assert_int_equal(c.n, 7);
  assert_false(c.done);
  engram_stream_cancel(c.s);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  stu_coll_free(&c);

  /* 5. closing the handle with a search in flight cancels it */
  stu_coll_init(&c, eg, 10);
  cbs = stu_cbs(&c);
  assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
  c.requested = 10;
  assert_int_equal(engram_stream_request(c.s, 10), 0);
  tu_close(eg);
  assert_true(c.done);
  stu_coll_free(&c);
}

/* The hybrid strategy over the delay store (a decorator): its candidates
 * are held for the delay, like a stream item; a deadline or a cancel
 * during the delay ends the search at once. */
static void test_through_decorator(void **state) {
  (void)state;
  engram *eg = tu_open_delayed(tu_db_path("hybrid-delay"), NULL, 300);
  add_md(eg, NS, "one two three", NULL, NULL);
  uv_loop_t *loop = engram_loop(eg);
  stu_coll c;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  assert_int_equal(hybrid(eg, "two", NULL, &c), 0);
  assert_int_equal(c.n, 1);
  uv_update_time(loop);
  assert_true(uv_now(loop) - t0 >= 300); /* the delay was felt */
  stu_coll_free(&c);

  engram_query q = {
      .ns = NS, .text = "two", .strategy = ENGRAM_STRATEGY_HYBRID};
  for (int k = 0; k < 2; k++) {
    stu_coll_init(&c, eg, 10);
    engram_stream_cbs cbs = stu_cbs(&c);
    assert_int_equal(engram_search(eg, &q, &cbs, &c.s), 0);
    c.requested = 10;
    assert_int_equal(engram_stream_request(c.s, 10), 0);
    uv_update_time(loop);
    t0 = uv_now(loop);
    if (k == 0) {
      assert_int_equal(engram_stream_set_deadline(c.s, 50), 0);
    } else {
      /* the candidates are in (or nearly): cancel inside the delay */
      uv_run(loop, UV_RUN_NOWAIT);
      engram_stream_cancel(c.s);
    }
    tu_run_until(eg, &c.done);
    uv_update_time(loop);
    assert_true(c.done);
    assert_int_equal(c.status, k == 0 ? ENGRAM_ETIMEDOUT : ENGRAM_ECANCELED);
    assert_int_equal(c.n, 0);
    assert_true(uv_now(loop) - t0 < 250); /* not after the whole delay */
    stu_coll_free(&c);
  }
  assert_int_equal(stu_stats(eg).streams_open, 0);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_propagation),
      cmocka_unit_test(test_window_matches),
      cmocka_unit_test(test_facts_take_no_neighbours),
      cmocka_unit_test(test_session_boundary_metadata),
      cmocka_unit_test(test_session_boundary_time),
      cmocka_unit_test(test_speaker_boost),
      cmocka_unit_test(test_metadata_words_match),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_decay_and_importance),
      cmocka_unit_test(test_alone_and_empty),
      cmocka_unit_test(test_options_checked),
      cmocka_unit_test(test_options_set),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_store_reads_cancelled),
      cmocka_unit_test(test_through_decorator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
