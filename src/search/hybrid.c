/*
 * hybrid.c — the hybrid search stream: asks the store for candidates at
 * the first pull, ranks them (hybrid_rank.c), and delivers them best first
 * on demand; also the search options' defaults and checks.
 *
 * States: idle (attached, nothing asked yet) -> waiting (the store's
 * candidates request runs) -> ranked (the set and its order are held;
 * items go out as the consumer asks) -> ended. Cancel while waiting
 * cancels the store's request and ends when its callback comes (so nothing
 * of this producer runs after stream_finish); otherwise it ends at once.
 *
 * The query vector, when the options ask for vectors, comes from the
 * built-in hashed embedder (search/embed.h), computed on the loop at the
 * start (tens of microseconds for a question): only stored vectors of the
 * same dimension are compared with it. TODO: stored vectors come only from
 * callers (engram_op.embedding) for now; computing them on write with the
 * hashed embedder (when an op has none) is what makes vector_weight useful
 * by default, and is not done yet.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/embed.h"
#include "search/hybrid.h"

#define DEFAULT_CANDIDATES 100u
#define DEFAULT_WINDOW 2u
#define DEFAULT_K1 0.6
#define DEFAULT_B 0.3
#define DEFAULT_META_WEIGHT 1.0
#define DEFAULT_NEIGHBOUR_WEIGHT 0.5
#define DEFAULT_SESSION_WEIGHT 0.3
#define DEFAULT_SPEAKER_BOOST 1.0
#define DEFAULT_SESSION_GAP_MS (30 * 60 * 1000)
#define DEFAULT_VECTOR_WEIGHT 0.0
#define DEFAULT_RRF_K 60.0
#define DEFAULT_IMPORTANCE_WEIGHT 0.2
#define MAX_CANDIDATES 1000u
#define MAX_WINDOW 16u

void engram_search_options_init(engram_search_options *o) {
  memset(o, 0, sizeof *o);
  o->candidates = DEFAULT_CANDIDATES;
  o->window = DEFAULT_WINDOW;
  o->k1 = DEFAULT_K1;
  o->b = DEFAULT_B;
  o->meta_weight = DEFAULT_META_WEIGHT;
  o->neighbour_weight = DEFAULT_NEIGHBOUR_WEIGHT;
  o->session_weight = DEFAULT_SESSION_WEIGHT;
  o->speaker_boost = DEFAULT_SPEAKER_BOOST;
  o->session_gap_ms = DEFAULT_SESSION_GAP_MS;
  o->vector_weight = DEFAULT_VECTOR_WEIGHT;
  o->rrf_k = DEFAULT_RRF_K;
  o->importance_weight = DEFAULT_IMPORTANCE_WEIGHT;
  o->half_life_ms = 0;
}

static int in_range(double v, double lo, double hi) {
  return isfinite(v) && v >= lo && v <= hi;
}

int search_options_check(const engram_search_options *o, char *msg,
                         size_t msglen) {
  const char *bad = NULL;
  if (o->candidates < 1 || o->candidates > MAX_CANDIDATES)
    bad = "candidates must be from 1 to 1000";
  else if (o->window > MAX_WINDOW)
    bad = "window must be from 0 to 16";
  else if (!in_range(o->k1, 0, 100))
    bad = "k1 must be in [0, 100]";
  else if (!in_range(o->b, 0, 1))
    bad = "b must be in [0, 1]";
  else if (!in_range(o->meta_weight, 0, 100))
    bad = "meta_weight must be in [0, 100]";
  else if (!in_range(o->neighbour_weight, 0, 10))
    bad = "neighbour_weight must be in [0, 10]";
  else if (!in_range(o->session_weight, 0, 10))
    bad = "session_weight must be in [0, 10]";
  else if (!in_range(o->speaker_boost, 0, 10))
    bad = "speaker_boost must be in [0, 10]";
  else if (o->session_gap_ms < 0)
    bad = "session_gap_ms must not be negative";
  else if (!in_range(o->vector_weight, 0, 10))
    bad = "vector_weight must be in [0, 10]";
  else if (!in_range(o->rrf_k, 1, 1e6))
    bad = "rrf_k must be at least 1";
  else if (!in_range(o->importance_weight, 0, 1))
    bad = "importance_weight must be in [0, 1]";
  else if (o->half_life_ms < 0)
    bad = "half_life_ms must not be negative (0: no decay)";
  if (!bad)
    return 0;
  snprintf(msg, msglen, "search options: %s", bad);
  return ENGRAM_EINVAL;
}

int engram_strategy_parse(const char *name, engram_strategy *out) {
  if (name && strcmp(name, "lexical") == 0)
    *out = ENGRAM_STRATEGY_LEXICAL;
  else if (name && strcmp(name, "hybrid") == 0)
    *out = ENGRAM_STRATEGY_HYBRID;
  else if (name && strcmp(name, "default") == 0)
    *out = ENGRAM_STRATEGY_DEFAULT;
  else
    return ENGRAM_EINVAL;
  return 0;
}

const char *engram_strategy_name(engram_strategy strategy) {
  switch (strategy) {
  case ENGRAM_STRATEGY_DEFAULT:
    return "default";
  case ENGRAM_STRATEGY_LEXICAL:
    return "lexical";
  case ENGRAM_STRATEGY_HYBRID:
    return "hybrid";
  }
  return NULL;
}

/* ------------------------------------------------------------ stream */

enum { H_IDLE, H_WAITING, H_RANKED, H_ENDED };

typedef struct hybrid {
  store *st;
  engram_stream *s;
  store_candidates_req req;
  int state;
  int cancelled;
  /* the query, owned */
  search_hybrid_query q;
  engram_search_options opt;
  char *ns, *text, *meta_key, *meta_value;
  float *qvec;
  size_t dim;
  /* the ranking */
  store_candidates *set;
  size_t *order;
  double *relevance;
  size_t n, next;
} hybrid;

static void h_end(hybrid *h, int status) {
  if (h->state == H_ENDED)
    return;
  h->state = H_ENDED;
  stream_finish(h->s, status);
}

static void h_emit(hybrid *h) {
  while (h->state == H_RANKED && h->next < h->n && stream_demand(h->s) > 0) {
    engram_node *node = h->set->nodes[h->order[h->next]];
    node->relevance = h->relevance[h->next];
    h->next++;
    if (!stream_emit(h->s, node))
      return; /* cancelled from the item callback: cancel ended us */
  }
  if (h->state == H_RANKED && h->next == h->n)
    h_end(h, 0);
}

static void on_candidates(store_candidates_req *req, int status,
                          const char *message, store_candidates *set) {
  hybrid *h = req->data;
  if (h->cancelled || status == ENGRAM_ECANCELED) {
    store_candidates_free(set);
    h_end(h, ENGRAM_ECANCELED); /* the stream keeps its own reason */
    return;
  }
  if (status != 0) {
    rt_log(stream_rt(h->s), ENGRAM_LOG_ERROR, "a hybrid search failed: %s",
           message ? message : engram_strerror(status));
    h_end(h, status);
    return;
  }
  h->set = set;
  if (search_hybrid_rank(set, &h->q, h->qvec, h->dim, &h->order, &h->relevance,
                         &h->n) != 0) {
    h_end(h, ENGRAM_ENOMEM);
    return;
  }
  h->state = H_RANKED;
  h_emit(h);
}

static void h_pull(engram_stream *s, void *impl) {
  hybrid *h = impl;
  (void)s;
  if (h->state == H_RANKED) {
    h_emit(h);
    return;
  }
  if (h->state != H_IDLE)
    return;
  store_candidates_query cq = {.ns = h->ns,
                               .text = h->text,
                               .text_len = h->q.text_len,
                               .types = h->q.types,
                               .limit = h->opt.candidates,
                               .window = h->opt.window,
                               .k1 = h->opt.k1,
                               .b = h->opt.b,
                               .meta_weight = h->opt.meta_weight};
  h->req.cb = on_candidates;
  h->req.data = h;
  h->state = H_WAITING;
  int rc = h->st->ops->candidates(h->st, &cq, &h->req);
  if (rc != 0) {
    h->state = H_IDLE;
    h_end(h, rc);
  }
}

static void h_cancel(engram_stream *s, void *impl) {
  hybrid *h = impl;
  (void)s;
  if (h->state == H_ENDED || h->cancelled)
    return;
  h->cancelled = 1;
  if (h->state == H_WAITING) {
    h->st->ops->candidates_cancel(h->st, &h->req); /* on_candidates ends */
    return;
  }
  h_end(h, ENGRAM_ECANCELED);
}

static void h_destroy(void *impl) {
  hybrid *h = impl;
  store_candidates_free(h->set);
  free(h->order);
  free(h->relevance);
  free(h->ns);
  free(h->text);
  free(h->meta_key);
  free(h->meta_value);
  free(h->qvec);
  free(h);
}

static const stream_producer hybrid_producer = {h_pull, h_cancel, h_destroy};

static char *dup_or_null(const char *s, int *failed) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *failed = 1;
  return d;
}

/* The query's vector from the hashed embedder with its default weights. */
static int embed_query(hybrid *h) {
  search_hashed emb;
  if (search_hashed_init(&emb, NULL) != 0)
    return ENGRAM_ENOMEM;
  h->dim = emb.opt.dim;
  h->qvec = malloc(h->dim * sizeof *h->qvec);
  if (!h->qvec)
    return ENGRAM_ENOMEM;
  return search_hashed_embed(&emb, h->text, h->q.text_len, h->qvec);
}

int search_hybrid_start(store *st, const search_hybrid_query *q,
                        engram_stream *s) {
  if (!st->ops->candidates || !st->ops->candidates_cancel) {
    rt_log(st->rt, ENGRAM_LOG_ERROR,
           "hybrid search is not available on %s yet; use the lexical "
           "strategy",
           strcmp(st->ops->name, "postgresql") == 0 ? "PostgreSQL"
                                                    : st->ops->name);
    return ENGRAM_EINVAL;
  }
  hybrid *h = calloc(1, sizeof *h);
  if (!h)
    return ENGRAM_ENOMEM;
  int failed = 0;
  h->st = st;
  h->s = s;
  h->q = *q;
  h->opt = *q->opt;
  h->q.opt = &h->opt;
  h->q.text_len = q->text_len ? q->text_len : strlen(q->text);
  h->ns = dup_or_null(q->ns, &failed);
  h->text = dup_or_null(q->text, &failed);
  h->meta_key = dup_or_null(q->meta_key, &failed);
  h->meta_value = dup_or_null(q->meta_value, &failed);
  h->q.ns = h->ns;
  h->q.text = h->text;
  h->q.meta_key = h->meta_key;
  h->q.meta_value = h->meta_value;
  if (!failed && h->opt.vector_weight > 0 && embed_query(h) != 0)
    failed = 1;
  if (failed) {
    h_destroy(h);
    return ENGRAM_ENOMEM;
  }
  stream_attach(s, &hybrid_producer, h);
  return 0;
}
