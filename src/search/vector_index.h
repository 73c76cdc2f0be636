/*
 * vector_index.h — the in-process vector index of an engram handle: per
 * namespace, the vectors of one space held in memory and kept up to date
 * with every writer (internal to the library).
 *
 * One index per engram handle. A namespace is loaded at its first search
 * and kept (within a bound of namespaces and bytes, least recently used
 * first out). Every search first catches up with the database: it asks the
 * store (store_ops.vectors) for what changed in the namespace since the
 * sequence the index has seen — rows written, rows removed, by this
 * process or any other — applies that, then scans the vectors
 * (vector_scan_start, on the thread pool, in chunks) for the best k of the
 * wanted types. So a search sees every write acknowledged before it
 * started.
 *
 * Concurrent searches of a namespace share catch-ups: a search joins the
 * next catch-up to start (never one already running, whose snapshot may
 * predate it); the set is changed only while no scan of it runs, so a
 * catch-up's pages wait for running scans to end. Nothing waits on a
 * thread: it is all callbacks on the loop.
 *
 * Cancellation at any step gives exactly one callback, ENGRAM_ECANCELED,
 * later on the loop (never inside vector_index_cancel).
 */
#ifndef ENGRAM_SEARCH_VECTOR_INDEX_H
#define ENGRAM_SEARCH_VECTOR_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "engram.h"
#include "rt/rt.h"
#include "store/store.h"

typedef struct vector_index vector_index;
typedef struct vector_index_req vector_index_req;

typedef struct vector_index_options {
  size_t max_namespaces; /* namespaces held at once; 0: 256 */
  size_t max_bytes;      /* memory of all of them; 0: 1 GiB. The most
                            recently used namespace is kept even when it
                            alone is larger */
  size_t page_rows;      /* rows per catch-up read; 0: 1024 */
  size_t quantize_rows;  /* a set this large also keeps int8 rows and is
                            scanned with them (float re-rank); 0: 20000 */
  size_t chunk_rows;     /* rows per scan task; 0: vector.h's default */
  unsigned parallel;     /* scan tasks in flight per set; 0: 2 */
} vector_index_options;

/* A new index reading from st (which must outlive it); o NULL: defaults.
 * 0 or ENGRAM_ENOMEM. */
int vector_index_new(rt *r, store *st, const vector_index_options *o,
                     vector_index **out);

/* Cancels every search (their callbacks follow), waits by callback for
 * the store reads and scans still running, frees the index, then calls
 * cb(data) on the loop (never inside this call). cb may be NULL. */
void vector_index_close(vector_index *x, void (*cb)(void *data), void *data);

typedef struct vector_index_query {
  const char *ns;
  const char *space_name; /* the embedder's name, e.g. "hashed-v1" */
  uint32_t dim;           /* its dimension */
  const float *vector;    /* dim floats (normalized by the scan) */
  size_t k;               /* hits wanted, >= 1 */
  unsigned types;         /* bitmask of 1u << engram_type; 0: all */
} vector_index_query;

typedef struct vector_index_hit {
  char id[ENGRAM_ID_LEN + 1];
  float score; /* cosine, in [-1, 1] */
} vector_index_hit;

/* status: 0 with the hits (best first, at most k; valid until the callback
 * returns; NULL when n is 0), ENGRAM_ECANCELED, or the store's error with
 * msg. req is freed when the callback returns. */
typedef void (*vector_index_cb)(vector_index_req *req, int status,
                                const char *msg, const vector_index_hit *hits,
                                size_t n, void *data);

/* Starts a search (the query is copied). 0 and *out (valid until the
 * callback has run): cb follows exactly once, later, on the loop. Else
 * ENGRAM_EINVAL (no ns or vector, dim 0 or above VECTOR_MAX_DIM, k 0, a
 * space name that does not fit), ENGRAM_ECLOSED (closing) or
 * ENGRAM_ENOMEM, and no callback. */
int vector_index_search(vector_index *x, const vector_index_query *q,
                        vector_index_cb cb, void *data, vector_index_req **out);

/* Idempotent; safe from any callback, including req's own (a no-op
 * there). */
void vector_index_cancel(vector_index_req *req);

/* What the index holds, for tests and statistics. */
typedef struct vector_index_stats {
  size_t namespaces;
  size_t rows;       /* vectors held, all namespaces */
  size_t bytes;      /* their memory, approximately */
  uint64_t catchups; /* store reads started (pages) */
  uint64_t reloads;  /* namespaces loaded from scratch */
  uint64_t evictions;
} vector_index_stats;
void vector_index_get_stats(const vector_index *x, vector_index_stats *out);

#endif
