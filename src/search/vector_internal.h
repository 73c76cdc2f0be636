/*
 * vector_internal.h — what vector.c (sets, synchronous search),
 * vector_scan.c (the chunked scan on the thread pool) and vector_simd.c
 * (the AVX2 kernels) share: the kernels, a k-sized heap of candidates, a
 * prepared query and the pieces of a search (score a range of rows, merge,
 * finish).
 */
#ifndef ENGRAM_SEARCH_VECTOR_INTERNAL_H
#define ENGRAM_SEARCH_VECTOR_INTERNAL_H

#include "search/vector.h"

/* Kernels: out[r] = dot(q, row r) for rows[0..n), rows `stride` apart; the
 * length is the stride (rows and query are zero-padded to it). q and rows
 * are 32-byte aligned; stride is a multiple of 8 floats / 32 bytes. */
typedef void (*vk_f32_fn)(const float *q, const float *rows, size_t stride,
                          size_t n, float *out);
typedef void (*vk_i8_fn)(const int8_t *q, const int8_t *rows, size_t stride,
                         size_t n, int32_t *out);

void vk_f32_scalar(const float *q, const float *rows, size_t stride, size_t n,
                   float *out);
void vk_i8_scalar(const int8_t *q, const int8_t *rows, size_t stride, size_t n,
                  int32_t *out);
/* vector_simd.c; call only when vector_kernel_available(AVX2). */
void vk_f32_avx2(const float *q, const float *rows, size_t stride, size_t n,
                 float *out);
void vk_i8_avx2(const int8_t *q, const int8_t *rows, size_t stride, size_t n,
                int32_t *out);

/* A candidate: a row and its score. Worse = lower score, or the same score
 * and a higher row. */
typedef struct vk_cand {
  float score;
  size_t row;
} vk_cand;

/* The best k candidates seen, as a min-heap (the worst at c[0]). */
typedef struct vk_topk {
  size_t k, n;
  vk_cand *c;
} vk_topk;

int vk_topk_init(vk_topk *t, size_t k); /* 0 or ENGRAM_ENOMEM */
void vk_topk_free(vk_topk *t);
void vk_topk_push(vk_topk *t, float score, size_t row);
/* Sorts c[0..n) best first (the heap order is lost). */
void vk_topk_sort(vk_topk *t);

/* A query prepared for one set: normalized, padded, quantized when int8. */
typedef struct vk_query {
  const vector_set *set;
  vk_f32_fn f32;
  vk_i8_fn i8;  /* NULL unless use_int8 */
  size_t k;     /* hits: min(k, n) */
  size_t ncand; /* candidates kept by the scan: k, or k * rerank (int8) */
  float *q;     /* stride floats */
  int8_t *qi;   /* qstride bytes, int8 only */
} vk_query;

/* Checks the options (vector_search()'s errors) and prepares. */
int vk_query_init(vk_query *p, const vector_set *s, const float *query,
                  const vector_search_options *o);
void vk_query_free(vk_query *p);
/* Scores rows [begin, end) into t (t->k == p->ncand). Any thread. */
void vk_scan_range(const vk_query *p, size_t begin, size_t end, vk_topk *t);
/* Adds src's candidates to dst. */
void vk_topk_merge(vk_topk *dst, const vk_topk *src);
/* From the scan's candidates to hits[0..p->k) (re-ranked with the float
 * rows when int8; scratch->k == p->k), best first; returns their count.
 * cand is consumed. Any thread. */
size_t vk_finish(const vk_query *p, vk_topk *cand, vk_topk *scratch,
                 vector_hit *hits);

#endif
