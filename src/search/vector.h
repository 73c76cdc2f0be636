/*
 * vector.h — exact vector search: a contiguous set of vectors and a top-k
 * scan over it by dot product (internal to the library).
 *
 * A vector_set holds n rows of dim float32, each stored L2-normalized (so
 * that a dot product is a cosine), with a caller's 64-bit id per row, and
 * optionally an int8 copy of every row with a per-row scale. Rows are
 * contiguous, 64-byte aligned and zero-padded to a multiple of 8 floats
 * (32 bytes for int8), so that a kernel reads them as one stream with no
 * tail to handle.
 *
 * Search is exact: every row's score is computed, the best k kept in a
 * k-sized min-heap. With int8, the int8 rows are scanned (a quarter of the
 * bytes) for the best k * rerank_factor candidates, which are then scored
 * again with the float rows; the final scores are always float dot
 * products. Ties go to the lower row. The kernels (scalar, and AVX2 with
 * FMA in vector_simd.c) are chosen at run time from what the CPU supports.
 *
 * vector_scan_start() runs a search on the thread pool in chunks of
 * chunk_rows rows, one rt_offload task each, and calls back on the loop;
 * vector_scan_cancel() takes effect between chunks. The set must not change
 * while a scan of it is running (the caller's rule: e.g. copy on write, or
 * a count of running scans).
 */
#ifndef ENGRAM_SEARCH_VECTOR_H
#define ENGRAM_SEARCH_VECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "rt/rt.h"

#define VECTOR_MAX_DIM 65536u

typedef struct vector_set {
  size_t dim;     /* floats per vector */
  size_t stride;  /* floats per stored row: dim rounded up to 8 */
  size_t qstride; /* bytes per int8 row: dim rounded up to 32 */
  size_t n, cap;  /* rows, rows allocated */
  int64_t *ids;
  float *rows;   /* n * stride */
  int8_t *qrows; /* n * qstride when quantized, else NULL */
  float *qscale; /* row i ~= qscale[i] * qrows[i] */
  int quantized;
} vector_set;

/* An empty set of dim-float vectors (1..VECTOR_MAX_DIM); quantized: keep an
 * int8 copy of every row too. 0 or ENGRAM_EINVAL. Allocates nothing. */
int vector_set_init(vector_set *s, size_t dim, int quantized);
void vector_set_free(vector_set *s);
/* Room for cap rows without reallocating. 0 or ENGRAM_ENOMEM. */
int vector_set_reserve(vector_set *s, size_t cap);
/* Appends v[0..dim) (copied and L2-normalized; a zero vector stays zero)
 * under id. 0, ENGRAM_EINVAL (a value is not finite) or ENGRAM_ENOMEM. */
int vector_set_add(vector_set *s, int64_t id, const float *v);
/* The row holding id (the first), or SIZE_MAX. O(n). */
size_t vector_set_find(const vector_set *s, int64_t id);
/* Removes a row: the last row moves into its place. */
void vector_set_remove_at(vector_set *s, size_t row);
static inline const float *vector_set_row(const vector_set *s, size_t row) {
  return s->rows + row * s->stride;
}

/* Quantizes v[0..dim) into q[0..dim), values in [-127, 127] (never -128:
 * the AVX2 kernel relies on it), zero-padding q up to qlen; returns the
 * scale (v ~= scale * q; 0 for a zero vector). */
float vector_quantize(const float *v, size_t dim, int8_t *q, size_t qlen);

typedef enum vector_kernel {
  VECTOR_KERNEL_AUTO = 0, /* the best this CPU runs */
  VECTOR_KERNEL_SCALAR,
  VECTOR_KERNEL_AVX2, /* AVX2 + FMA */
} vector_kernel;

/* AUTO resolved for this CPU: AVX2 when it has AVX2 and FMA, else scalar;
 * the environment variable ENGRAM_VECTOR_KERNEL=scalar forces the scalar
 * kernels (to test the fallback on any machine). */
vector_kernel vector_kernel_best(void);
/* 1 when this CPU can run k. */
int vector_kernel_available(vector_kernel k);
const char *vector_kernel_name(vector_kernel k);

typedef struct vector_hit {
  int64_t id;
  float score; /* cosine, in [-1, 1] */
} vector_hit;

#define VECTOR_DEFAULT_CHUNK_ROWS 16384u
#define VECTOR_DEFAULT_RERANK 8u

typedef struct vector_search_options {
  size_t k;               /* hits wanted, >= 1 (fewer when n < k) */
  vector_kernel kernel;   /* AUTO by default */
  int use_int8;           /* scan the int8 rows, re-rank with float */
  unsigned rerank_factor; /* int8: k * this candidates; 0: the default */
  size_t chunk_rows;      /* rows per thread-pool task; 0: the default */
  unsigned parallel;      /* chunks in flight at once; 0: 1 */
} vector_search_options;

/* The best min(k, n) rows for query[0..dim) (normalized here), best first,
 * into hits[0..k); *nhits gets their count. Synchronous, on the calling
 * thread (tests, benchmarks; thread-pool code). 0, ENGRAM_EINVAL (k == 0,
 * an unavailable kernel, int8 on a set that is not quantized, a query value
 * that is not finite) or ENGRAM_ENOMEM. */
int vector_search(const vector_set *s, const float *query,
                  const vector_search_options *o, vector_hit *hits,
                  size_t *nhits);

/* --------------------------------------------------------- async scans */

typedef struct vector_scan vector_scan;

/* status: 0, ENGRAM_ECANCELED or ENGRAM_ENOMEM. hits: best first, owned by
 * the scan, valid until the callback returns; NULL and 0 unless status is
 * 0. The scan is freed when the callback returns. */
typedef void (*vector_scan_cb)(vector_scan *scan, int status,
                               const vector_hit *hits, size_t nhits,
                               void *data);

/* Starts the search of vector_search() on r's thread pool: the rows in
 * chunks of chunk_rows, up to `parallel` chunks in flight, each chunk an
 * rt_offload task with its own heap; the heaps are merged on the loop (and
 * int8 candidates re-ranked in one more task). The query is copied. 0 and
 * *out (valid until the callback returns): cb follows exactly once, later,
 * on the loop, even when the set is empty. Else an error as
 * vector_search()'s, and no callback. */
int vector_scan_start(rt *r, const vector_set *s, const float *query,
                      const vector_search_options *o, vector_scan_cb cb,
                      void *data, vector_scan **out);
/* Idempotent; from the loop, including the scan's callback (a no-op
 * there). No chunk starts after it: chunks still in the pool's queue are
 * dropped, a running one finishes; the callback follows with
 * ENGRAM_ECANCELED. */
void vector_scan_cancel(vector_scan *scan);
/* Rows scored so far by completed chunks. */
size_t vector_scan_rows_scanned(const vector_scan *scan);

#endif
