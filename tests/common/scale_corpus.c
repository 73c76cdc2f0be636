/*
 * scale_corpus.c — the pruning tests' generated memories (scale_corpus.h).
 */
#include "scale_corpus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_tu.h"
#include "tu.h"

typedef struct lcg {
  unsigned long long s;
} lcg;

static unsigned rnd(lcg *g, unsigned n) {
  g->s = g->s * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)((g->s >> 33) % n);
}

const char *scale_memory(size_t i, int alt, unsigned flags) {
  static char buf[512];
  lcg g = {(unsigned long long)i * 7919u + (alt ? 17u : 3u)};
  size_t len = (size_t)snprintf(buf, sizeof buf, "u%zu", i);
  static const char *const frequent[] = {"alpha", "beta", "gamma"};
  for (int k = 0; k < 3; k++)
    if (rnd(&g, 100) < 40)
      len += (size_t)snprintf(buf + len, sizeof buf - len, " %s%s", frequent[k],
                              (flags & SCALE_SPACES) && rnd(&g, 10) == 0 ? " "
                                                                         : "");
  for (int k = 0; k < 2; k++)
    if (rnd(&g, 100) < 45)
      len +=
          (size_t)snprintf(buf + len, sizeof buf - len, " mid%u", rnd(&g, 30));
  if (rnd(&g, 100) < 60)
    len +=
        (size_t)snprintf(buf + len, sizeof buf - len, " rare%u", rnd(&g, 300));
  if (rnd(&g, 100) < 10)
    len += (size_t)snprintf(buf + len, sizeof buf - len, " alpha running");
  if ((flags & SCALE_DASH) && rnd(&g, 100) < 3)
    len += (size_t)snprintf(buf + len, sizeof buf - len,
                            " caf\xc3\xa9\xe2\x80\x94rare%u", rnd(&g, 3));
  if (rnd(&g, 100) < 2)
    len += (size_t)snprintf(buf + len, sizeof buf - len, " " LONG_WORD "%u",
                            rnd(&g, 3));
  snprintf(buf + len, sizeof buf - len, " filler words here%s",
           i % 5 == 0 ? " and some more filler at the end" : "");
  return buf;
}

/* engram_wrap_store's wrapper: records the backend, wraps nothing. */
static store *capture(store *inner, void *arg) {
  *(store **)arg = inner;
  return inner;
}

engram *scale_open_capturing(const char *db, store **captured) {
  engram_options o;
  engram_options_init(&o);
  o.db = db;
  engram *eg = NULL;
  assert_int_equal(engram_init(&eg, NULL, &o), 0);
  assert_int_equal(engram_wrap_store(eg, capture, captured), 0);
  stu_open st = {0};
  assert_int_equal(engram_open(eg, stu_on_open, &st), 0);
  tu_run_until(eg, &st.done);
  assert_int_equal(st.status, 0);
  return eg;
}

void scale_on_candidates(store_candidates_req *req, int status,
                         const char *message, store_candidates *set) {
  scale_cand_wait *w = req->data;
  (void)message;
  w->calls++;
  w->status = status;
  w->set = set;
}

store_candidates *scale_candidates(engram *eg, store *st,
                                   const store_candidates_query *q) {
  scale_cand_wait w = {0};
  store_candidates_req req = {.cb = scale_on_candidates, .data = &w};
  assert_int_equal(st->ops->candidates(st, q, &req), 0);
  assert_int_equal(w.calls, 0); /* never inside the start */
  tu_run_until(eg, &w.calls);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, 0);
  assert_non_null(w.set);
  return w.set;
}

static int by_score_desc(const void *a, const void *b) {
  const scale_hit *x = a, *y = b;
  if (x->score != y->score)
    return (x->score < y->score) - (x->score > y->score);
  return strcmp(x->id, y->id);
}

void scale_hits_sort(scale_hits *h) {
  qsort(h->v, h->n, sizeof *h->v, by_score_desc);
}

scale_hits scale_pruned(engram *eg, store *st,
                        const store_candidates_query *q) {
  store_candidates *set = scale_candidates(eg, st, q);
  scale_hits h = {calloc(set->n + 1, sizeof *h.v), 0};
  assert_non_null(h.v);
  for (size_t i = 0; i < set->n; i++) {
    assert_true(set->hit[i]);
    snprintf(h.v[h.n].id, sizeof h.v[h.n].id, "%s", set->nodes[i]->id);
    h.v[h.n++].score = set->score[i];
  }
  store_candidates_free(set);
  scale_hits_sort(&h);
  return h;
}

const scale_hit *scale_find(const scale_hits *h, const char *id) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->v[i].id, id) == 0)
      return &h->v[i];
  return NULL;
}

int scale_near(double a, double b) {
  return a - b < 1e-9 && b - a < 1e-9;
}

void scale_check_scores(const scale_hits *p, const scale_hits *ref,
                        const char *text) {
  for (size_t i = 0; i < p->n; i++) {
    const scale_hit *r = scale_find(ref, p->v[i].id);
    if (!r)
      fail_msg("\"%s\": %s is not a match", text, p->v[i].id);
    if (!scale_near(p->v[i].score, r->score))
      fail_msg("\"%s\": %s scores %.17g, the reference %.17g", text, p->v[i].id,
               p->v[i].score, r->score);
  }
}

void scale_check_exact(const scale_hits *p, const scale_hits *ref, size_t limit,
                       const char *text) {
  size_t want = ref->n < limit ? ref->n : limit;
  if (p->n != want)
    fail_msg("\"%s\": %zu matches, the reference has %zu", text, p->n, want);
  for (size_t i = 0; i < want; i++) {
    if (!scale_near(p->v[i].score, ref->v[i].score))
      fail_msg("\"%s\" #%zu: score %.17g, the reference's %.17g", text, i,
               p->v[i].score, ref->v[i].score);
    const scale_hit *r = scale_find(ref, p->v[i].id);
    if (strcmp(p->v[i].id, ref->v[i].id) != 0 &&
        !(r && scale_near(r->score, ref->v[i].score)))
      fail_msg("\"%s\" #%zu: %s, the reference's %s", text, i, p->v[i].id,
               ref->v[i].id);
  }
}
