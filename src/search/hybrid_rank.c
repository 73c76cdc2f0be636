/*
 * hybrid_rank.c — the ranking of hybrid search over a candidate set: pure
 * computation on the loop, no I/O (hybrid.h lists the steps).
 *
 * Candidates come in namespace order with adjacency flags (store.h), so a
 * memory's neighbours are the entries next to it in the array, as far as
 * the run of adjacent entries goes. The metadata fields the ranking reads
 * ("session", "speaker", and the filter's key) are top-level members of a
 * JSON object that the API layer validated on write; they are found with a
 * small scanner rather than a JSON parser (a few hundred candidates per
 * query, each parsed in full would cost more than the rest of the ranking).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search/hybrid.h"

/* ------------------------------------------------- metadata members */

/* Skips a JSON string starting at p (on its opening quote). */
static const char *skip_string(const char *p) {
  for (p++; *p && *p != '"'; p++)
    if (*p == '\\' && p[1])
      p++;
  return *p ? p + 1 : p;
}

/* Skips one JSON value starting at p (after blanks). */
static const char *skip_value(const char *p) {
  if (*p == '"')
    return skip_string(p);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (*p) {
      if (*p == '"') {
        p = skip_string(p);
        continue;
      }
      if (*p == '{' || *p == '[')
        depth++;
      else if ((*p == '}' || *p == ']') && --depth == 0)
        return p + 1;
      p++;
    }
    return p;
  }
  while (*p && *p != ',' && *p != '}' && *p != ' ' && *p != '\n' &&
         *p != '\t' && *p != '\r')
    p++;
  return p;
}

static const char *skip_blanks(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
    p++;
  return p;
}

/* The value of top-level member key of the JSON object json: for a string
 * its raw text between the quotes (escapes as written), for a number or a
 * literal its text; objects and arrays are not values here. Sets *len and
 * returns the start, or NULL when absent. */
static const char *meta_member(const char *json, const char *key, size_t *len) {
  size_t klen = strlen(key);
  const char *p = skip_blanks(json ? json : "");
  if (*p != '{')
    return NULL;
  p = skip_blanks(p + 1);
  while (*p == '"') {
    const char *kstart = p + 1;
    const char *kend = skip_string(p);
    int match =
        (size_t)(kend - 1 - kstart) == klen && memcmp(kstart, key, klen) == 0;
    p = skip_blanks(kend);
    if (*p != ':')
      return NULL;
    p = skip_blanks(p + 1);
    const char *vend = skip_value(p);
    if (match) {
      if (*p == '{' || *p == '[')
        return NULL;
      if (*p == '"') {
        *len = (size_t)(vend - p) - 2;
        return p + 1;
      }
      *len = (size_t)(vend - p);
      return p;
    }
    p = skip_blanks(vend);
    if (*p != ',')
      return NULL;
    p = skip_blanks(p + 1);
  }
  return NULL;
}

/* ------------------------------------------------------ query words */

typedef struct words {
  char **w;
  size_t n, cap;
  int failed;
} words;

static void add_word(const char *tok, size_t len, void *data) {
  words *ws = data;
  if (ws->failed || core_is_stopword(tok, len))
    return;
  if (ws->n == ws->cap) {
    size_t cap = ws->cap ? ws->cap * 2 : 16;
    char **p = realloc(ws->w, cap * sizeof *p);
    if (!p) {
      ws->failed = 1;
      return;
    }
    ws->w = p;
    ws->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) {
    ws->failed = 1;
    return;
  }
  memcpy(copy, tok, len);
  copy[len] = '\0';
  ws->w[ws->n++] = copy;
}

static void words_free(words *ws) {
  for (size_t i = 0; i < ws->n; i++)
    free(ws->w[i]);
  free(ws->w);
}

typedef struct name_match {
  const words *query;
  int found;
} name_match;

static void check_name_word(const char *tok, size_t len, void *data) {
  name_match *m = data;
  if (m->found || core_is_stopword(tok, len))
    return;
  for (size_t i = 0; i < m->query->n; i++)
    if (strlen(m->query->w[i]) == len && memcmp(m->query->w[i], tok, len) == 0)
      m->found = 1;
}

/* 1 when a word of the speaker's name (not a stop word) is a query word. */
static int speaker_named(const words *query, const char *name, size_t len) {
  name_match m = {query, 0};
  core_tokenize(name, len, check_name_word, &m);
  return m.found;
}

/* ---------------------------------------------------------- ranking */

typedef struct ranked {
  size_t index;
  double score;
} ranked;

static int by_score(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return (x->index > y->index) - (x->index < y->index);
}

/* Conversations are made of episodic memories (turns); a fact, a
 * procedure or a working note stands alone: it neither gives nor takes
 * neighbour or session scores. */
static int conversational(const engram_node *n) {
  return n->type == ENGRAM_EPISODIC;
}

static int same_session(const engram_node *a, const engram_node *b,
                        int64_t gap_ms) {
  size_t la = 0, lb = 0;
  const char *sa = meta_member(a->metadata, "session", &la);
  const char *sb = meta_member(b->metadata, "session", &lb);
  if (sa && sb)
    return la == lb && memcmp(sa, sb, la) == 0;
  int64_t d = b->created_ms - a->created_ms;
  return (d < 0 ? -d : d) <= gap_ms;
}

static int passes_filters(const engram_node *n, const search_hybrid_query *q) {
  if (q->created_after_ms && n->created_ms < q->created_after_ms)
    return 0;
  if (q->created_before_ms && n->created_ms >= q->created_before_ms)
    return 0;
  if (q->meta_key) {
    size_t len = 0;
    const char *v = meta_member(n->metadata, q->meta_key, &len);
    if (!v || strlen(q->meta_value) != len ||
        memcmp(v, q->meta_value, len) != 0)
      return 0;
  }
  return 1;
}

/* The cosine of the query (dim floats, norm qnorm > 0) and the stored
 * vector of node, 0 when that is not of the query's space. */
static double cosine(const engram_node *node, const search_hybrid_query *q,
                     const float *qvec, size_t dim, double qnorm) {
  if (!node->embedding || node->embedding_dim != dim ||
      (q->space_name &&
       (!node->embedder || strcmp(node->embedder, q->space_name) != 0)))
    return 0;
  double dot = 0, norm = 0;
  for (size_t k = 0; k < dim; k++) {
    dot += (double)qvec[k] * (double)node->embedding[k];
    norm += (double)node->embedding[k] * (double)node->embedding[k];
  }
  return norm > 0 ? dot / (qnorm * sqrt(norm)) : 0;
}

/* Fills order[] (indexes by score, best first) over the candidates with a
 * positive score; returns how many. */
static size_t rank_by(const double *score, size_t n, ranked *scratch) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (score[i] > 0)
      scratch[m++] = (ranked){i, score[i]};
  qsort(scratch, m, sizeof *scratch, by_score);
  return m;
}

int search_hybrid_rank(const store_candidates *c, const search_hybrid_query *q,
                       const float *qvec, size_t dim, size_t **order_out,
                       double **relevance_out, size_t *n_out) {
  const engram_search_options *o = q->opt;
  size_t n = c->n, m = n ? n : 1;
  *order_out = NULL;
  *relevance_out = NULL;
  *n_out = 0;
  words qw = {0};
  core_tokenize(q->text, q->text_len ? q->text_len : strlen(q->text), add_word,
                &qw);
  size_t *session = malloc(m * sizeof *session);
  double *base = calloc(m, sizeof *base);
  double *total = calloc(m, sizeof *total);
  double *best = calloc(m, sizeof *best); /* per session */
  double *fused = calloc(m, sizeof *fused);
  ranked *scratch = malloc(m * sizeof *scratch);
  size_t *order = malloc(m * sizeof *order);
  double *relevance = malloc(m * sizeof *relevance);
  int rc = ENGRAM_ENOMEM;
  if (qw.failed || !session || !base || !total || !best || !fused || !scratch ||
      !order || !relevance)
    goto done;

  /* Sessions, and the base scores of the matches. */
  for (size_t i = 0; i < n; i++) {
    const engram_node *node = c->nodes[i];
    session[i] = i == 0 ? 0
                 : same_session(c->nodes[i - 1], node, o->session_gap_ms)
                     ? session[i - 1]
                     : session[i - 1] + 1;
    if (!c->hit[i])
      continue;
    base[i] = c->score[i];
    size_t len = 0;
    const char *speaker = meta_member(node->metadata, "speaker", &len);
    if (speaker && o->speaker_boost > 0 && speaker_named(&qw, speaker, len))
      base[i] *= 1.0 + o->speaker_boost;
    if (conversational(node) && base[i] > best[session[i]])
      best[session[i]] = base[i];
  }

  /* Propagation along runs of adjacent memories of one session. */
  for (size_t i = 0; i < n; i++) {
    total[i] += base[i];
    if (base[i] <= 0 || o->neighbour_weight <= 0 ||
        !conversational(c->nodes[i]))
      continue;
    for (size_t d = 1; d <= o->window && d <= i; d++) {
      size_t j = i - d;
      if (!c->adjacent[j + 1] || session[j] != session[i] ||
          !conversational(c->nodes[j]))
        break;
      total[j] += o->neighbour_weight * base[i] / (double)d;
    }
    for (size_t d = 1; d <= o->window && i + d < n; d++) {
      size_t j = i + d;
      if (!c->adjacent[j] || session[j] != session[i] ||
          !conversational(c->nodes[j]))
        break;
      total[j] += o->neighbour_weight * base[i] / (double)d;
    }
  }
  /* The session prior. */
  for (size_t i = 0; i < n; i++)
    if (conversational(c->nodes[i]))
      total[i] += o->session_weight * best[session[i]];

  double qnorm = 0;
  for (size_t k = 0; qvec && k < dim; k++)
    qnorm += (double)qvec[k] * (double)qvec[k];
  qnorm = sqrt(qnorm);

  /* The vector strategy: the vector hits by cosine, and nothing else. */
  if (q->vector_only) {
    size_t out = 0;
    for (size_t i = 0; i < n && qnorm > 0; i++) {
      double sim =
          c->vhit && c->vhit[i] ? cosine(c->nodes[i], q, qvec, dim, qnorm) : 0;
      if (sim > 0 && passes_filters(c->nodes[i], q))
        scratch[out++] = (ranked){i, sim > 1 ? 1 : sim};
    }
    qsort(scratch, out, sizeof *scratch, by_score);
    size_t kept = 0;
    for (size_t r = 0; r < out; r++) {
      if (scratch[r].score < q->min_relevance)
        continue;
      order[kept] = scratch[r].index;
      relevance[kept++] = scratch[r].score;
    }
    *order_out = order;
    *relevance_out = relevance;
    *n_out = kept;
    order = NULL;
    relevance = NULL;
    rc = 0;
    goto done;
  }

  /* Fusion with the vector ranking, or the lexical total alone. */
  int fuse = o->vector_weight > 0 && qvec && dim > 0 && qnorm > 0;
  if (fuse) {
    size_t lex = rank_by(total, n, scratch);
    for (size_t r = 0; r < lex; r++)
      fused[scratch[r].index] = 1.0 / (o->rrf_k + (double)r + 1.0);
    double *sims = total; /* reused: the lexical ranks are taken */
    for (size_t i = 0; i < n; i++)
      sims[i] = cosine(c->nodes[i], q, qvec, dim, qnorm);
    size_t vec = rank_by(sims, n, scratch);
    for (size_t r = 0; r < vec; r++)
      fused[scratch[r].index] +=
          o->vector_weight / (o->rrf_k + (double)r + 1.0);
  } else {
    memcpy(fused, total, n * sizeof *fused);
  }

  /* Importance and decay, filters. */
  for (size_t i = 0; i < n; i++) {
    const engram_node *node = c->nodes[i];
    if (fused[i] <= 0)
      continue;
    if (!passes_filters(node, q)) {
      fused[i] = 0;
      continue;
    }
    fused[i] *= 1.0 + o->importance_weight * (2.0 * node->importance - 1.0);
    if (o->half_life_ms > 0) {
      double age = (double)(q->now_ms - node->created_ms);
      if (age > 0)
        fused[i] *= pow(0.5, age / (double)o->half_life_ms);
    }
  }
  size_t kept = rank_by(fused, n, scratch);
  size_t out = 0;
  /* The best possible fused score: first in both rankings, most important,
   * no decay. */
  double top = (1.0 + o->vector_weight) / (o->rrf_k + 1.0) *
               (1.0 + o->importance_weight);
  for (size_t r = 0; r < kept; r++) {
    double s = scratch[r].score;
    double rel = fuse ? s / top : s / (1.0 + s);
    if (rel > 1)
      rel = 1;
    if (rel < q->min_relevance)
      continue;
    order[out] = scratch[r].index;
    relevance[out] = rel;
    out++;
  }
  *order_out = order;
  *relevance_out = relevance;
  *n_out = out;
  order = NULL;
  relevance = NULL;
  rc = 0;
done:
  words_free(&qw);
  free(session);
  free(base);
  free(total);
  free(best);
  free(fused);
  free(scratch);
  free(order);
  free(relevance);
  return rc;
}
