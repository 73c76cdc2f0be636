/*
 * lexical_ns.h — what the lexical index holds for one namespace: an
 * inverted index of its memories' indexed terms (as the store's full-text
 * index tokenizes and stems them, store_term), and the exact BM25 top k of
 * a query over it (internal to src/search/lexical_index*.c).
 *
 * A memory is a document: its id, its type, its length (store_vectors
 * doc_len) and its terms. A term has a posting list: (document, tf in the
 * content, tf in the metadata) in document order. Documents are numbered
 * in the order they were added; a removed or replaced document leaves a
 * dead entry (its postings are skipped by a search) until compaction,
 * which rewrites the lists once dead postings are a large share of them.
 *
 * Scoring is engram_rank's (sqlite_rank.c) with the namespace as the
 * collection: N documents, average length avgdl, a term in n of them has
 * idf ln(1 + (N - n + 0.5) / (n + 0.5)); a document of length dl with
 * term frequency tf = tf_content + meta_weight * tf_meta scores
 * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)) for it, and
 * its score is the sum over the query's terms. The search finds the k
 * best exactly (MaxScore: lists in order of their bound, the lists that
 * cannot lift a document into the top k on their own only probed), ties
 * broken by the newer document first.
 *
 * Nothing here is asynchronous or locked: the caller guarantees that no
 * search runs while the data is changed (apply); searches may run at the
 * same time on several threads.
 */
#ifndef ENGRAM_SEARCH_LEXICAL_NS_H
#define ENGRAM_SEARCH_LEXICAL_NS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct lx_data lx_data;

/* A new empty namespace; NULL when out of memory. */
lx_data *lx_data_new(void);
void lx_data_free(lx_data *d);

/* Applies one catch-up page (a page read with terms): first its removed
 * ids, then each row, which adds the memory's document or replaces it
 * (a row with no terms is still a document: it counts in N and avgdl).
 * 0, ENGRAM_EINVAL for rows without their terms (a page read without
 * them), or ENGRAM_ENOMEM (the page is then partly applied: the caller
 * reads it again, which is harmless). */
int lx_data_apply(lx_data *d, const store_vectors *page);

typedef struct lx_query {
  const char *const *terms; /* as the store's index has them (qterms) */
  size_t nterms;            /* repeated terms count once */
  double k1, b, meta_weight;
  unsigned types; /* bitmask of 1u << engram_type; 0: all */
  size_t k;       /* >= 1 */
} lx_query;

typedef struct lx_hit {
  uint32_t doc; /* lx_data_id() gives its memory */
  double score; /* > 0 */
} lx_hit;

/* The k best documents with at least one of the terms, best first, in
 * out (room for q->k), their number in *n. A document whose score is 0
 * (its terms only in the metadata, meta_weight 0) is not one. 0 or
 * ENGRAM_ENOMEM. */
int lx_data_search(const lx_data *d, const lx_query *q, lx_hit *out, size_t *n);

/* The memory of a hit's document. */
const char *lx_data_id(const lx_data *d, uint32_t doc);

size_t lx_data_docs(const lx_data *d);     /* live documents */
size_t lx_data_postings(const lx_data *d); /* live postings */
size_t lx_data_bytes(const lx_data *d);    /* memory held, approximately */

#endif
