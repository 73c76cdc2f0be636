/*
 * hybrid.c — the hybrid search stream: asks the store for candidates at
 * the first pull, ranks them (hybrid_rank.c), and delivers them best first
 * on demand; also the search options' defaults and checks.
 *
 * States: idle (attached, nothing asked yet) -> [embedding (the query's
 * vector) -> index (the vector index's best memories)] -> waiting (the
 * store's candidates request runs) -> ranked (the set and its order are
 * held; items go out as the consumer asks) -> ended. The bracketed steps
 * run for the vector strategy, and for hybrid with vector_weight > 0 when
 * the handle has an embedder (without a vector index, the fusion ranks the
 * lexical candidates alone). Cancel in a waiting state cancels what runs
 * (the embedding, the index search, the store's request) and ends when its
 * callback comes, so nothing of this producer runs after stream_finish;
 * otherwise it ends at once.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search/embed.h"
#include "search/hybrid.h"

#define DEFAULT_CANDIDATES 100u
#define DEFAULT_WINDOW 2u
#define DEFAULT_WINDOW_MATCHES 40u
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
#define DEFAULT_MAX_SCORED 1536u
#define MIN_MAX_SCORED 100u
#define MAX_MAX_SCORED 10000000u

void engram_search_options_init(engram_search_options *o) {
  memset(o, 0, sizeof *o);
  o->candidates = DEFAULT_CANDIDATES;
  o->max_scored = DEFAULT_MAX_SCORED;
  o->lexical_index = 1;
  o->window = DEFAULT_WINDOW;
  o->window_matches = DEFAULT_WINDOW_MATCHES;
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

/* One NAME=VALUE (value up to ',' or the end) into o; 0, or -1 when the
 * name is unknown or the value is not a number of the field's kind. */
static int set_field(engram_search_options *o, const char *name, size_t nlen,
                     const char *value) {
  static const struct {
    const char *name;
    size_t offset;
    char kind; /* u: unsigned, d: double, m: int64 milliseconds */
  } fields[] = {
      {"candidates", offsetof(engram_search_options, candidates), 'u'},
      {"max_scored", offsetof(engram_search_options, max_scored), 'u'},
      {"lexical_index", offsetof(engram_search_options, lexical_index), 'u'},
      {"window", offsetof(engram_search_options, window), 'u'},
      {"window_matches", offsetof(engram_search_options, window_matches), 'u'},
      {"k1", offsetof(engram_search_options, k1), 'd'},
      {"b", offsetof(engram_search_options, b), 'd'},
      {"meta_weight", offsetof(engram_search_options, meta_weight), 'd'},
      {"neighbour_weight", offsetof(engram_search_options, neighbour_weight),
       'd'},
      {"session_weight", offsetof(engram_search_options, session_weight), 'd'},
      {"speaker_boost", offsetof(engram_search_options, speaker_boost), 'd'},
      {"session_gap_ms", offsetof(engram_search_options, session_gap_ms), 'm'},
      {"vector_weight", offsetof(engram_search_options, vector_weight), 'd'},
      {"rrf_k", offsetof(engram_search_options, rrf_k), 'd'},
      {"importance_weight", offsetof(engram_search_options, importance_weight),
       'd'},
      {"half_life_ms", offsetof(engram_search_options, half_life_ms), 'm'},
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    if (strlen(fields[i].name) != nlen ||
        memcmp(fields[i].name, name, nlen) != 0)
      continue;
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || (*end != ',' && *end != '\0') || errno || !isfinite(v))
      return -1;
    char *field = (char *)o + fields[i].offset;
    if (fields[i].kind == 'd') {
      memcpy(field, &v, sizeof v);
    } else if (fields[i].kind == 'u') {
      if (v < 0 || v > 1e8 || v != floor(v))
        return -1;
      unsigned u = (unsigned)v;
      memcpy(field, &u, sizeof u);
    } else {
      if (v < 0 || v > 1e15 || v != floor(v))
        return -1;
      int64_t ms = (int64_t)v;
      memcpy(field, &ms, sizeof ms);
    }
    return 0;
  }
  return -1;
}

int engram_search_options_set(engram_search_options *opts, const char *text,
                              char *err, size_t errlen) {
  if (!opts || !text) {
    if (err && errlen)
      snprintf(err, errlen, "search options: no options or no text");
    return ENGRAM_EINVAL;
  }
  engram_search_options o = *opts;
  for (const char *p = text; *p;) {
    const char *eq = strchr(p, '=');
    const char *comma = strchr(p, ',');
    size_t part = comma ? (size_t)(comma - p) : strlen(p);
    if (!eq || (comma && comma < eq) ||
        set_field(&o, p, (size_t)(eq - p), eq + 1) != 0) {
      if (err && errlen)
        snprintf(err, errlen,
                 "search options: '%.*s' is not NAME=VALUE with a number of "
                 "the field's kind; names: candidates, max_scored, "
                 "lexical_index, window, "
                 "window_matches, "
                 "k1, b, meta_weight, neighbour_weight, session_weight, "
                 "speaker_boost, session_gap_ms, vector_weight, rrf_k, "
                 "importance_weight, half_life_ms",
                 (int)(part > 200 ? 200 : part), p);
      return ENGRAM_EINVAL;
    }
    p = comma ? comma + 1 : p + part;
  }
  *opts = o;
  return 0;
}

static int in_range(double v, double lo, double hi) {
  return isfinite(v) && v >= lo && v <= hi;
}

int search_options_check(const engram_search_options *o, char *msg,
                         size_t msglen) {
  const char *bad = NULL;
  if (o->candidates < 1 || o->candidates > MAX_CANDIDATES)
    bad = "candidates must be from 1 to 1000";
  else if (o->max_scored < MIN_MAX_SCORED || o->max_scored > MAX_MAX_SCORED)
    bad = "max_scored must be from 100 to 10000000";
  else if (o->lexical_index > 1)
    bad = "lexical_index must be 0 or 1";
  else if (o->window > MAX_WINDOW)
    bad = "window must be from 0 to 16";
  else if (o->window_matches > MAX_CANDIDATES)
    bad = "window_matches must be from 0 to 1000";
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
  else if (name && strcmp(name, "vector") == 0)
    *out = ENGRAM_STRATEGY_VECTOR;
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
  case ENGRAM_STRATEGY_VECTOR:
    return "vector";
  }
  return NULL;
}

/* ------------------------------------------------------------ stream */

enum {
  H_IDLE,
  H_EMBEDDING,
  H_INDEX,
  H_LEXICAL,
  H_WAITING,
  H_RANKED,
  H_ENDED
};

typedef struct hybrid {
  store *st;
  engram_stream *s;
  store_candidates_req req;
  search_embed_req ereq;
  vector_index_req *ireq;
  lexical_index_req *lreq;
  int state;
  int cancelled;
  int vectors; /* the vector step runs (embedder given, and asked for) */
  /* the query, owned */
  search_hybrid_query q;
  engram_search_options opt;
  char *ns, *text, *meta_key, *meta_value, *space_name, *db_space;
  float *qvec;
  size_t dim;
  /* the vector index's hits */
  char (*ids)[ENGRAM_ID_LEN + 1];
  const char **id_ptrs;
  size_t nids;
  /* the lexical index's hits (with q.lexical) */
  int matched; /* its step has run */
  char (*match_ids)[ENGRAM_ID_LEN + 1];
  const char **match_ptrs;
  double *match_scores;
  size_t nmatches;
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

static const char *what(const hybrid *h) {
  return h->q.vector_only ? "a vector search" : "a hybrid search";
}

/* Ends with status, logging msg (an error the caller cannot see
 * otherwise). */
static void h_fail(hybrid *h, int status, const char *msg) {
  if (status != ENGRAM_ECANCELED)
    rt_log(stream_rt(h->s), ENGRAM_LOG_ERROR, "%s failed: %s", what(h),
           msg ? msg : engram_strerror(status));
  h_end(h, status);
}

/* The end of an index step: 1 when the stream ended (cancelled, or the
 * step failed: logged). */
static int step_ended(hybrid *h, int status, const char *msg) {
  if (h->cancelled || status == ENGRAM_ECANCELED) {
    h_end(h, ENGRAM_ECANCELED);
    return 1;
  }
  if (status != 0) {
    h_fail(h, status, msg);
    return 1;
  }
  return 0;
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
    h_fail(h, status, message);
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

/* The store's step: lexical matches (none for the vector strategy), the
 * vector hits, and the neighbours of both. */
static void candidates_start(hybrid *h) {
  int only = h->q.vector_only;
  int store_matches = !only && !h->matched; /* else the index's, or none */
  store_candidates_query cq = {.ns = h->ns,
                               .text = only ? "" : h->text,
                               .text_len = only ? 0 : h->q.text_len,
                               .types = h->q.types,
                               .limit = store_matches ? h->opt.candidates : 0,
                               .window = only ? 0 : h->opt.window,
                               .window_matches = h->opt.window_matches,
                               .max_scored = h->opt.max_scored,
                               .k1 = h->opt.k1,
                               .b = h->opt.b,
                               .meta_weight = h->opt.meta_weight,
                               .ids = h->id_ptrs,
                               .nids = h->nids,
                               .match_ids = h->match_ptrs,
                               .match_scores = h->match_scores,
                               .nmatch_ids = h->nmatches,
                               .vectors = h->vectors};
  h->req.cb = on_candidates;
  h->req.data = h;
  h->state = H_WAITING;
  int rc = h->st->ops->candidates(h->st, &cq, &h->req);
  if (rc != 0) {
    h->state = H_IDLE;
    h_fail(h, rc, "the store refused the candidates query");
  }
}

static void on_lexical(lexical_index_req *req, int status, const char *msg,
                       const lexical_index_hit *hits, size_t n, void *data) {
  hybrid *h = data;
  (void)req;
  h->lreq = NULL;
  if (step_ended(h, status, msg))
    return;
  h->matched = 1;
  if (n > 0) {
    h->match_ids = malloc(n * sizeof *h->match_ids);
    h->match_ptrs = malloc(n * sizeof *h->match_ptrs);
    h->match_scores = malloc(n * sizeof *h->match_scores);
    if (!h->match_ids || !h->match_ptrs || !h->match_scores) {
      h_end(h, ENGRAM_ENOMEM);
      return;
    }
    for (size_t i = 0; i < n; i++) {
      memcpy(h->match_ids[i], hits[i].id, sizeof h->match_ids[i]);
      h->match_ptrs[i] = h->match_ids[i];
      h->match_scores[i] = hits[i].score;
    }
    h->nmatches = n;
  }
  candidates_start(h);
}

typedef struct word_list {
  char *words[CORE_SEARCH_MAX_WORDS];
  size_t n;
  int failed;
} word_list;

static void take_word(const char *word, size_t len, int cut, void *data) {
  word_list *w = data;
  (void)cut; /* the index has whole terms: a cut word matches none */
  char *copy = w->n < CORE_SEARCH_MAX_WORDS ? strndup(word, len) : NULL;
  if (!copy)
    w->failed = 1;
  else
    w->words[w->n++] = copy;
}

/* The lexical index's step, when there is one (else the store's match):
 * the exact best `candidates` matches of the query's words. */
static void start_candidates(hybrid *h) {
  if (!h->q.lexical || !h->opt.lexical_index || h->q.vector_only ||
      h->matched) {
    candidates_start(h);
    return;
  }
  if (!lexical_index_ready(h->q.lexical, h->ns)) {
    /* Not loaded yet: the store's match now, the index for later. */
    int rc = lexical_index_warm(h->q.lexical, h->ns);
    if (rc != 0 && rc != ENGRAM_ECLOSED)
      rt_log(stream_rt(h->s), ENGRAM_LOG_WARN,
             "cannot load namespace %s into the lexical index: %s", h->ns,
             engram_strerror(rc));
    candidates_start(h);
    return;
  }
  word_list w = {.n = 0};
  core_search_words(h->text, h->q.text_len, take_word, &w);
  int rc = w.failed ? ENGRAM_ENOMEM : 0;
  if (rc == 0 && w.n == 0) { /* no word: no match */
    h->matched = 1;
    candidates_start(h);
  } else if (rc == 0) {
    lexical_index_query lq = {.ns = h->ns,
                              .words = (const char *const *)w.words,
                              .nwords = w.n,
                              .k1 = h->opt.k1,
                              .b = h->opt.b,
                              .meta_weight = h->opt.meta_weight,
                              .types = h->q.types,
                              .k = h->opt.candidates};
    h->state = H_LEXICAL;
    rc = lexical_index_search(h->q.lexical, &lq, on_lexical, h, &h->lreq);
  }
  for (size_t i = 0; i < w.n; i++)
    free(w.words[i]);
  if (rc != 0) {
    h->state = H_IDLE;
    h_fail(h, rc, "the lexical index refused the search");
  }
}

static void on_index(vector_index_req *req, int status, const char *msg,
                     const vector_index_hit *hits, size_t n, void *data) {
  hybrid *h = data;
  (void)req;
  h->ireq = NULL;
  if (step_ended(h, status, msg))
    return;
  if (n == 0 && h->q.vector_only) {
    h_end(h, 0);
    return;
  }
  h->ids = malloc((n ? n : 1) * sizeof *h->ids);
  h->id_ptrs = malloc((n ? n : 1) * sizeof *h->id_ptrs);
  if (!h->ids || !h->id_ptrs) {
    h_end(h, ENGRAM_ENOMEM);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    memcpy(h->ids[i], hits[i].id, sizeof h->ids[i]);
    h->id_ptrs[i] = h->ids[i];
  }
  h->nids = n;
  start_candidates(h);
}

/* 0, or ENGRAM_EEMBEDDER with the reason in msg when the database's
 * vectors are not of the space name/dim. */
static int space_check(const hybrid *h, size_t dim, char *msg, size_t len) {
  char mine[STORE_SPACE_LEN];
  const char *db = h->db_space ? h->db_space : h->st->space;
  if (!db[0] || dim == 0 ||
      store_space_format(mine, h->space_name, (uint32_t)dim) != 0 ||
      strcmp(mine, db) == 0)
    return 0;
  snprintf(msg, len,
           "the database's vectors come from %s and this engram embeds with "
           "%s: vectors of different embedders are never compared (run "
           "`engram reembed` to switch the database to %s)",
           db, mine, mine);
  return ENGRAM_EEMBEDDER;
}

static int all_zero(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] != 0)
      return 0;
  return 1;
}

static void on_embedded(search_embed_req *req, int status, const char *msg,
                        float *vectors, void *data) {
  hybrid *h = data;
  if (h->cancelled || status == ENGRAM_ECANCELED) {
    h_end(h, ENGRAM_ECANCELED);
    return;
  }
  if (status != 0) {
    char why[320];
    snprintf(why, sizeof why, "the query could not be embedded by %s: %s",
             h->space_name, msg ? msg : engram_strerror(status));
    h_fail(h, status, why);
    return;
  }
  size_t dim = req->embedder->dim; /* an HTTP embedder knows it now */
  char why[3 * STORE_SPACE_LEN + 200];
  int rc = space_check(h, dim, why, sizeof why);
  if (rc != 0) {
    h_fail(h, rc, why);
    return;
  }
  if (all_zero(vectors, dim)) {
    /* Nothing to compare (a query without words). */
    if (h->q.vector_only) {
      h_end(h, 0);
      return;
    }
    start_candidates(h);
    return;
  }
  if (!(h->qvec = malloc(dim * sizeof *h->qvec))) {
    h_end(h, ENGRAM_ENOMEM);
    return;
  }
  memcpy(h->qvec, vectors, dim * sizeof *h->qvec);
  h->dim = dim;
  if (!h->q.index) {
    start_candidates(h); /* fusion over the lexical candidates alone */
    return;
  }
  vector_index_query iq = {.ns = h->ns,
                           .space_name = h->space_name,
                           .dim = (uint32_t)dim,
                           .vector = h->qvec,
                           .k = h->opt.candidates,
                           .types = h->q.types};
  h->state = H_INDEX;
  rc = vector_index_search(h->q.index, &iq, on_index, h, &h->ireq);
  if (rc != 0)
    h_fail(h, rc, "the vector index refused the search");
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
  if (!h->vectors) {
    start_candidates(h);
    return;
  }
  if (h->q.text_len == 0) { /* nothing to embed */
    if (h->q.vector_only)
      h_end(h, 0);
    else
      start_candidates(h);
    return;
  }
  const char *texts[1] = {h->text};
  size_t lens[1] = {h->q.text_len};
  h->state = H_EMBEDDING;
  int rc =
      search_embed(h->q.embedder, &h->ereq, texts, lens, 1, on_embedded, h);
  if (rc != 0) {
    h->state = H_IDLE;
    h_fail(h, rc, "the embedder refused the query");
  }
}

static void h_cancel(engram_stream *s, void *impl) {
  hybrid *h = impl;
  (void)s;
  if (h->state == H_ENDED || h->cancelled)
    return;
  h->cancelled = 1;
  switch (h->state) {
  case H_WAITING:
    h->st->ops->candidates_cancel(h->st, &h->req); /* on_candidates ends */
    return;
  case H_EMBEDDING:
    search_embed_cancel(&h->ereq); /* on_embedded ends */
    return;
  case H_INDEX:
    vector_index_cancel(h->ireq); /* on_index ends */
    return;
  case H_LEXICAL:
    lexical_index_cancel(h->lreq); /* on_lexical ends */
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
  free(h->space_name);
  free(h->db_space);
  free(h->qvec);
  free(h->ids);
  free(h->id_ptrs);
  free(h->match_ids);
  free(h->match_ptrs);
  free(h->match_scores);
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

/* The vector step's preconditions: 0, or an error logged with what to
 * do. */
static int check_vectors(store *st, const search_hybrid_query *q) {
  if (!q->embedder || !q->space_name) {
    if (!q->vector_only)
      return 0; /* no embedder: hybrid without vectors */
    rt_log(st->rt, ENGRAM_LOG_ERROR,
           "the vector strategy needs an embedder, and this engram has none "
           "(embedder none): open it with one (hashed, or http:MODEL@URL) or "
           "use the lexical or hybrid strategy");
    return ENGRAM_EINVAL;
  }
  if (q->vector_only && !q->index) {
    rt_log(st->rt, ENGRAM_LOG_ERROR,
           "the vector strategy needs the handle's vector index");
    return ENGRAM_EINVAL;
  }
  char mine[STORE_SPACE_LEN];
  const char *db = q->db_space ? q->db_space : st->space;
  if (db[0] && q->space_dim &&
      store_space_format(mine, q->space_name, q->space_dim) == 0 &&
      strcmp(mine, db) != 0) {
    rt_log(st->rt, ENGRAM_LOG_ERROR,
           "%s: the database's vectors come from %s and this engram embeds "
           "with %s: vectors of different embedders are never compared (run "
           "`engram reembed` to switch the database to %s)",
           q->vector_only ? "vector search" : "hybrid search with vectors", db,
           mine, mine);
    return ENGRAM_EEMBEDDER;
  }
  return 0;
}

int search_hybrid_start(store *st, const search_hybrid_query *q,
                        engram_stream *s) {
  if (!st->ops->candidates || !st->ops->candidates_cancel) {
    rt_log(st->rt, ENGRAM_LOG_ERROR,
           "%s search is not available on %s; use the lexical strategy",
           q->vector_only ? "vector" : "hybrid", st->ops->name);
    return ENGRAM_EINVAL;
  }
  int want = q->vector_only || (q->opt->vector_weight > 0 && q->embedder);
  if (want) {
    int rc = check_vectors(st, q);
    if (rc != 0)
      return rc;
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
  h->vectors = want && q->embedder != NULL;
  h->ns = dup_or_null(q->ns, &failed);
  h->text = dup_or_null(q->text, &failed);
  h->meta_key = dup_or_null(q->meta_key, &failed);
  h->meta_value = dup_or_null(q->meta_value, &failed);
  h->space_name = dup_or_null(q->space_name, &failed);
  h->db_space = dup_or_null(q->db_space, &failed);
  h->q.ns = h->ns;
  h->q.text = h->text;
  h->q.meta_key = h->meta_key;
  h->q.meta_value = h->meta_value;
  h->q.space_name = h->space_name;
  h->q.db_space = h->db_space;
  if (failed) {
    h_destroy(h);
    return ENGRAM_ENOMEM;
  }
  stream_attach(s, &hybrid_producer, h);
  return 0;
}
