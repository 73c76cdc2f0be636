/*
 * scale_corpus.c — the pruning tests' generated memories (scale_corpus.h).
 */
#include "scale_corpus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>

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
