/*
 * hybrid.h — hybrid search: lexical matches, the conversation around them,
 * and optional vector similarity, ranked into one stream (internal to the
 * library).
 *
 * search_hybrid_start() attaches a producer to a stream. At the first pull
 * it asks the store for candidates (store_ops.candidates: the best BM25
 * matches and `window` memories around each), ranks them on the loop with
 * search_hybrid_rank() (bounded work: candidates * (2 * window + 1)
 * memories at most), then delivers them best first as the consumer asks.
 * Cancelling while the store works cancels the store's request.
 *
 * The ranking (docs/retrieval.md has the measurements behind each step):
 *   1. base score: a match's BM25 score; times (1 + speaker_boost) when the
 *      memory's metadata "speaker" is named in the query;
 *   2. propagation: each match adds neighbour_weight * base / d to the
 *      memories d = 1..window places before and after it, within a run of
 *      adjacent memories of the same session;
 *   3. session prior: every candidate gets session_weight * the best base
 *      score of its session;
 *   4. vector (vector_weight > 0 and a query vector): weighted reciprocal
 *      rank fusion of the ranks by steps 1-3 and by cosine similarity;
 *   5. importance and temporal decay multiply the result;
 *   6. filters (metadata key = value, creation time range), min_relevance.
 * Steps 2 and 3 concern conversations, that is episodic memories: a
 * memory of another type neither gives nor takes neighbour and session
 * scores (a fact written a minute after another is not its context).
 * Sessions: two memories next to each other in the candidate list are in
 * the same session when both have a metadata "session" and its values are
 * equal; when either lacks it, when their creation times are at most
 * session_gap_ms apart.
 */
#ifndef ENGRAM_SEARCH_HYBRID_H
#define ENGRAM_SEARCH_HYBRID_H

#include "engram.h"
#include "rt/stream.h"
#include "store/store.h"

/* A hybrid query; the start function copies what it keeps. opt is
 * complete and valid (search_options_check). */
typedef struct search_hybrid_query {
  const char *ns;
  const char *text;
  size_t text_len;
  unsigned types;
  double min_relevance;
  const engram_search_options *opt;
  const char *meta_key; /* filter: NULL for none */
  const char *meta_value;
  int64_t created_after_ms; /* filter: 0 for no bound */
  int64_t created_before_ms;
  int64_t now_ms; /* for decay */
} search_hybrid_query;

/* 0, or ENGRAM_EINVAL with a message in msg (which field is wrong). */
int search_options_check(const engram_search_options *o, char *msg,
                         size_t msglen);

/* Attaches the hybrid producer to s. ENGRAM_EINVAL when the store has no
 * candidates operation (PostgreSQL, for now), ENGRAM_ENOMEM. */
int search_hybrid_start(store *st, const search_hybrid_query *q,
                        engram_stream *s);

/* The ranking alone: the indexes of the candidates to deliver, best first,
 * in *order (n of them) with their relevance in [0, 1] in *relevance (both
 * malloc'd, to free). qvec (dim floats, L2-normalized) may be NULL. 0 or
 * ENGRAM_ENOMEM. */
int search_hybrid_rank(const store_candidates *c, const search_hybrid_query *q,
                       const float *qvec, size_t dim, size_t **order,
                       double **relevance, size_t *n);

#endif
