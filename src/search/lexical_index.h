/*
 * lexical_index.h — the in-process lexical index of an engram handle: per
 * namespace, an inverted index of the memories' indexed terms, held in
 * memory and kept up to date with every writer (internal to the library).
 *
 * It is the ns_cache kind of lexical_ns.h's data: a namespace is loaded
 * at its first search (its terms read through store_ops.vectors with
 * `terms`, so they are the backend's own: FTS5's porter tokenizer on
 * SQLite, the engram_text configuration on PostgreSQL) and every search
 * first catches up with the database, so it sees every write acknowledged
 * before it started. The first page of a catch-up also gives the
 * searches' words as the index has them (stemmed). The search itself,
 * the exact BM25 top k of the namespace (lx_data_search), runs on the
 * thread pool as one task.
 *
 * Why: FTS5 and GIN answer "which rows have this word" by walking lists in
 * pages of the database; the exact top k of a query with common words
 * costs a walk of every list (tens of thousands of rows at 100,000
 * memories) at 40-80 ns a row inside FTS5, or pruning that loses some
 * answers (docs/benchmarks.md, "Search at scale"). Over arrays in memory
 * the same walk costs a few nanoseconds a posting and MaxScore skips most
 * of it, so the exact answer is cheaper than the pruned one was.
 *
 * What "the query" is, where it differs from the store's full-text match:
 * a word the index splits into several terms ("wi-fi") contributes each
 * of them (FTS5 matches them as a phrase); a word given twice counts once;
 * a word cut at CORE_SEARCH_WORD_CUT bytes matches nothing (the store's
 * match takes it as a prefix).
 *
 * Cancellation at any step gives exactly one callback, ENGRAM_ECANCELED,
 * later on the loop (never inside lexical_index_cancel).
 */
#ifndef ENGRAM_SEARCH_LEXICAL_INDEX_H
#define ENGRAM_SEARCH_LEXICAL_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "engram.h"
#include "rt/rt.h"
#include "store/store.h"

typedef struct lexical_index lexical_index;
typedef struct lexical_index_req lexical_index_req;

typedef struct lexical_index_options {
  size_t max_namespaces; /* namespaces held at once; 0: 256 */
  size_t max_bytes;      /* memory of all of them; 0: 1 GiB */
  size_t page_rows;      /* rows per catch-up read; 0: 1024 */
} lexical_index_options;

int lexical_index_new(rt *r, store *st, const lexical_index_options *o,
                      lexical_index **out);

/* As vector_index_close. */
void lexical_index_close(lexical_index *x, void (*cb)(void *data), void *data);

typedef struct lexical_index_query {
  const char *ns;
  const char *const *words; /* core_search_words' words */
  size_t nwords;
  double k1, b, meta_weight; /* BM25, as engram_rank's */
  unsigned types;            /* bitmask of 1u << engram_type; 0: all */
  size_t k;                  /* hits wanted, >= 1 */
} lexical_index_query;

typedef struct lexical_index_hit {
  char id[ENGRAM_ID_LEN + 1];
  double score; /* BM25, > 0 */
} lexical_index_hit;

/* status: 0 with the hits (best first, at most k; valid until the callback
 * returns; NULL when n is 0), ENGRAM_ECANCELED, or an error with msg. req
 * is freed when the callback returns. */
typedef void (*lexical_index_cb)(lexical_index_req *req, int status,
                                 const char *msg, const lexical_index_hit *hits,
                                 size_t n, void *data);

/* Starts a search (the query is copied). 0 and *out (valid until the
 * callback has run): cb follows exactly once, later, on the loop. Else
 * ENGRAM_EINVAL (no ns, k 0, a word NULL), ENGRAM_ECLOSED or
 * ENGRAM_ENOMEM, and no callback. */
int lexical_index_search(lexical_index *x, const lexical_index_query *q,
                         lexical_index_cb cb, void *data,
                         lexical_index_req **out);

/* Idempotent; safe from any callback, including req's own. */
void lexical_index_cancel(lexical_index_req *req);

/* 1 when namespace ns is loaded: a search of it only catches up with what
 * changed since the last one. A first load reads every memory of the
 * namespace (about 10 us a memory on SQLite, read, tokenized and indexed;
 * 30 on PostgreSQL: seconds for a large namespace), so hybrid search does not
 * wait for it: it asks for the load in the background
 * (lexical_index_warm) and uses the store's full-text match meanwhile. */
int lexical_index_ready(const lexical_index *x, const char *ns);

/* Brings ns up to date (loads it when it is not loaded), then cb with no
 * hits, as lexical_index_search's. */
int lexical_index_load(lexical_index *x, const char *ns, lexical_index_cb cb,
                       void *data);

/* Starts loading ns in the background, unless it is loaded or loading:
 * the index owns that work (its close cancels it). 0, or ENGRAM_ECLOSED /
 * ENGRAM_ENOMEM. */
int lexical_index_warm(lexical_index *x, const char *ns);

typedef struct lexical_index_stats {
  size_t namespaces;
  size_t docs;  /* memories held, all namespaces */
  size_t bytes; /* their memory, approximately */
  uint64_t catchups;
  uint64_t reloads;
  uint64_t evictions;
} lexical_index_stats;
void lexical_index_get_stats(const lexical_index *x, lexical_index_stats *out);

#endif
