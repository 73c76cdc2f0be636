/*
 * hybrid.h — hybrid search: lexical matches, the conversation around them,
 * and optional vector similarity, ranked into one stream (internal to the
 * library).
 *
 * search_hybrid_start() attaches a producer to a stream. At the first pull
 * it asks the store for candidates (store_ops.candidates: the best BM25
 * matches and `window` memories around each that is a conversation turn),
 * ranks them on the loop with search_hybrid_rank() (bounded work:
 * candidates * (2 * window + 1) memories at most), then delivers them best
 * first as the consumer asks.
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
 *      rank fusion of the ranks by steps 1-3 and by cosine similarity
 *      (of every candidate whose stored vector is of the query's space:
 *      matches, their neighbours, and the vector index's best
 *      `candidates` memories, which the store adds with their own
 *      neighbours);
 *   5. importance and temporal decay multiply the result;
 *   6. filters (metadata key = value, creation time range), min_relevance.
 * Steps 2 and 3 concern conversations, that is episodic memories: a
 * memory of another type neither gives nor takes neighbour and session
 * scores (a fact written a minute after another is not its context).
 * Sessions: two memories next to each other in the candidate list are in
 * the same session when both have a metadata "session" and its values are
 * equal; when either lacks it, when their creation times are at most
 * session_gap_ms apart.
 *
 * The vector strategy is the same stream without the lexical step: the
 * query's vector, the vector index's best `candidates` memories of the
 * wanted types, read from the store (no neighbours), ranked by cosine,
 * the filters of step 6 applied.
 */
#ifndef ENGRAM_SEARCH_HYBRID_H
#define ENGRAM_SEARCH_HYBRID_H

#include "engram.h"
#include "rt/stream.h"
#include "search/embed.h"
#include "search/lexical_index.h"
#include "search/vector_index.h"
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
  /* Vectors (the vector strategy, or vector_weight > 0): the handle's
   * embedder and vector index, both NULL without an embedder. The space is
   * the embedder's name and dimension (0: not known yet, an HTTP embedder
   * that has not answered); db_space the database's ("NAME/DIM", "" when
   * it has no vector yet; NULL: the store's st->space). */
  search_embedder *embedder;
  vector_index *index;
  const char *space_name;
  uint32_t space_dim;
  const char *db_space;
  int vector_only; /* the vector strategy: no lexical step */
  /* The handle's lexical index: the matches are its exact BM25 top
   * `candidates`, which the store reads with their neighbours; NULL: the
   * store's own full-text match (pruned at max_scored). */
  lexical_index *lexical;
} search_hybrid_query;

/* 0, or ENGRAM_EINVAL with a message in msg (which field is wrong). */
int search_options_check(const engram_search_options *o, char *msg,
                         size_t msglen);

/* Attaches the hybrid producer to s (the vector strategy too, with
 * q->vector_only). ENGRAM_EINVAL when the store has no candidates
 * operation, or the vector strategy is asked of a handle without an
 * embedder; ENGRAM_EEMBEDDER when the database's vectors are another
 * embedder's (both logged with what to do); ENGRAM_ENOMEM. */
int search_hybrid_start(store *st, const search_hybrid_query *q,
                        engram_stream *s);

/* The ranking alone: the indexes of the candidates to deliver, best first,
 * in *order (n of them) with their relevance in [0, 1] in *relevance (both
 * malloc'd, to free). qvec (dim floats) may be NULL; a candidate's cosine
 * comes from its stored vector when that is of the query's space
 * (q->space_name, dim). q->vector_only: the vector hits (c->vhit) with a
 * positive cosine, by cosine, relevance = cosine, filters applied. 0 or
 * ENGRAM_ENOMEM. */
int search_hybrid_rank(const store_candidates *c, const search_hybrid_query *q,
                       const float *qvec, size_t dim, size_t **order,
                       double **relevance, size_t *n);

#endif
