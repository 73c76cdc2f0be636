/*
 * vector.c — vector sets, the scalar kernels, the top-k heap and the
 * synchronous search; vector_scan.c runs the same pieces on the thread
 * pool in chunks, vector_simd.c holds the AVX2 kernels.
 *
 * A search is: prepare the query (normalize, pad, quantize for int8), score
 * every row in blocks with a kernel and keep the best ncand in a min-heap,
 * then finish (re-rank int8 candidates with float rows, sort, map rows to
 * ids). Each piece works on its own memory, so chunks of one search can run
 * on different threads at once, each with its own heap.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engram.h"
#include "search/vector_internal.h"

#define ALIGN 64
#define BLOCK 64 /* rows scored per kernel call */

static size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

/* 64-byte aligned, not zeroed (every writer pads its rows with zeros);
 * size rounded up as aligned_alloc wants. */
static void *alloc_aligned(size_t size) {
  return aligned_alloc(ALIGN, round_up(size ? size : 1, ALIGN));
}

/* --------------------------------------------------------------- sets */

int vector_set_init(vector_set *s, size_t dim, int quantized) {
  memset(s, 0, sizeof *s);
  if (dim == 0 || dim > VECTOR_MAX_DIM)
    return ENGRAM_EINVAL;
  s->dim = dim;
  s->stride = round_up(dim, 8);
  s->qstride = round_up(dim, 32);
  s->quantized = quantized != 0;
  return 0;
}

void vector_set_free(vector_set *s) {
  free(s->ids);
  free(s->rows);
  free(s->qrows);
  free(s->qscale);
  memset(s, 0, sizeof *s);
}

int vector_set_reserve(vector_set *s, size_t cap) {
  if (cap <= s->cap)
    return 0;
  if (cap > SIZE_MAX / (s->stride * sizeof(float) + s->qstride))
    return ENGRAM_ENOMEM;
  int64_t *ids = realloc(s->ids, cap * sizeof *ids);
  if (!ids)
    return ENGRAM_ENOMEM;
  s->ids = ids;
  float *rows = alloc_aligned(cap * s->stride * sizeof *rows);
  if (!rows)
    return ENGRAM_ENOMEM;
  int8_t *qrows = NULL;
  float *qscale = NULL;
  if (s->quantized) {
    qrows = alloc_aligned(cap * s->qstride);
    qscale = realloc(s->qscale, cap * sizeof *qscale);
    if (!qrows || !qscale) {
      free(rows);
      free(qrows);
      if (qscale)
        s->qscale = qscale;
      return ENGRAM_ENOMEM;
    }
    if (s->n)
      memcpy(qrows, s->qrows, s->n * s->qstride);
    free(s->qrows);
    s->qrows = qrows;
    s->qscale = qscale;
  }
  if (s->n)
    memcpy(rows, s->rows, s->n * s->stride * sizeof *rows);
  free(s->rows);
  s->rows = rows;
  s->cap = cap;
  return 0;
}

int vector_set_add(vector_set *s, int64_t id, const float *v) {
  double norm = 0;
  for (size_t i = 0; i < s->dim; i++) {
    if (!isfinite(v[i]))
      return ENGRAM_EINVAL;
    norm += (double)v[i] * (double)v[i];
  }
  if (s->n == s->cap) {
    int rc = vector_set_reserve(s, s->cap ? s->cap * 2 : 64);
    if (rc != 0)
      return rc;
  }
  float scale = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
  float *row = s->rows + s->n * s->stride;
  for (size_t i = 0; i < s->dim; i++)
    row[i] = v[i] * scale;
  for (size_t i = s->dim; i < s->stride; i++)
    row[i] = 0;
  if (s->quantized)
    s->qscale[s->n] =
        vector_quantize(row, s->dim, s->qrows + s->n * s->qstride, s->qstride);
  s->ids[s->n++] = id;
  return 0;
}

size_t vector_set_find(const vector_set *s, int64_t id) {
  for (size_t i = 0; i < s->n; i++)
    if (s->ids[i] == id)
      return i;
  return SIZE_MAX;
}

void vector_set_remove_at(vector_set *s, size_t row) {
  size_t last = --s->n;
  if (row == last)
    return;
  s->ids[row] = s->ids[last];
  memcpy(s->rows + row * s->stride, s->rows + last * s->stride,
         s->stride * sizeof *s->rows);
  if (s->quantized) {
    memcpy(s->qrows + row * s->qstride, s->qrows + last * s->qstride,
           s->qstride);
    s->qscale[row] = s->qscale[last];
  }
}

float vector_quantize(const float *v, size_t dim, int8_t *q, size_t qlen) {
  float max = 0;
  for (size_t i = 0; i < dim; i++)
    if (fabsf(v[i]) > max)
      max = fabsf(v[i]);
  memset(q, 0, qlen);
  if (max == 0)
    return 0;
  float scale = max / 127.0f, inv = 127.0f / max;
  for (size_t i = 0; i < dim; i++) {
    long x = lrintf(v[i] * inv);
    q[i] = (int8_t)(x > 127 ? 127 : x < -127 ? -127 : x);
  }
  return scale;
}

/* ------------------------------------------------------------ kernels */

/* Eight running sums, as the AVX2 kernel keeps eight lanes. */
void vk_f32_scalar(const float *q, const float *rows, size_t stride, size_t n,
                   float *out) {
  for (size_t r = 0; r < n; r++) {
    const float *x = rows + r * stride;
    float acc[8] = {0};
    for (size_t j = 0; j < stride; j += 8)
      for (size_t l = 0; l < 8; l++)
        acc[l] += q[j + l] * x[j + l];
    out[r] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) +
             ((acc[1] + acc[5]) + (acc[3] + acc[7]));
  }
}

/* Sixteen running sums, lane by lane, which a compiler can vectorize
 * without reordering anything. */
void vk_i8_scalar(const int8_t *q, const int8_t *rows, size_t stride, size_t n,
                  int32_t *out) {
  for (size_t r = 0; r < n; r++) {
    const int8_t *x = rows + r * stride;
    int32_t acc[16] = {0};
    for (size_t j = 0; j < stride; j += 16)
      for (size_t l = 0; l < 16; l++)
        acc[l] += (int32_t)q[j + l] * (int32_t)x[j + l];
    int32_t sum = 0;
    for (size_t l = 0; l < 16; l++)
      sum += acc[l];
    out[r] = sum;
  }
}

int vector_kernel_available(vector_kernel k) {
  switch (k) {
  case VECTOR_KERNEL_AUTO:
  case VECTOR_KERNEL_SCALAR:
    return 1;
  case VECTOR_KERNEL_AVX2:
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
  }
  return 0;
}

vector_kernel vector_kernel_best(void) {
  const char *force = getenv("ENGRAM_VECTOR_KERNEL");
  if (force && strcmp(force, "scalar") == 0)
    return VECTOR_KERNEL_SCALAR;
  return vector_kernel_available(VECTOR_KERNEL_AVX2) ? VECTOR_KERNEL_AVX2
                                                     : VECTOR_KERNEL_SCALAR;
}

const char *vector_kernel_name(vector_kernel k) {
  switch (k) {
  case VECTOR_KERNEL_AUTO:
    return "auto";
  case VECTOR_KERNEL_SCALAR:
    return "scalar";
  case VECTOR_KERNEL_AVX2:
    return "avx2";
  }
  return "?";
}

/* ----------------------------------------------------------- the heap */

static int worse(const vk_cand *a, const vk_cand *b) {
  return a->score < b->score || (a->score == b->score && a->row > b->row);
}

int vk_topk_init(vk_topk *t, size_t k) {
  t->k = k;
  t->n = 0;
  t->c = NULL;
  if (k == 0)
    return 0;
  t->c = malloc(k * sizeof *t->c);
  return t->c ? 0 : ENGRAM_ENOMEM;
}

void vk_topk_free(vk_topk *t) {
  free(t->c);
  t->c = NULL;
  t->k = t->n = 0;
}

static void sift_down(vk_topk *t, size_t i) {
  vk_cand *c = t->c;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n && worse(&c[l], &c[m]))
      m = l;
    if (r < t->n && worse(&c[r], &c[m]))
      m = r;
    if (m == i)
      return;
    vk_cand tmp = c[i];
    c[i] = c[m];
    c[m] = tmp;
    i = m;
  }
}

void vk_topk_push(vk_topk *t, float score, size_t row) {
  vk_cand x = {score, row};
  if (t->n < t->k) {
    size_t i = t->n++;
    while (i > 0) {
      size_t parent = (i - 1) / 2;
      if (!worse(&x, &t->c[parent]))
        break;
      t->c[i] = t->c[parent];
      i = parent;
    }
    t->c[i] = x;
  } else if (t->k > 0 && worse(&t->c[0], &x)) {
    t->c[0] = x;
    sift_down(t, 0);
  }
}

static int cmp_best_first(const void *a, const void *b) {
  const vk_cand *x = a, *y = b;
  return worse(x, y) - worse(y, x);
}

void vk_topk_sort(vk_topk *t) {
  if (t->n > 1)
    qsort(t->c, t->n, sizeof *t->c, cmp_best_first);
}

void vk_topk_merge(vk_topk *dst, const vk_topk *src) {
  for (size_t i = 0; i < src->n; i++)
    vk_topk_push(dst, src->c[i].score, src->c[i].row);
}

/* ---------------------------------------------------------- searching */

int vk_query_init(vk_query *p, const vector_set *s, const float *query,
                  const vector_search_options *o) {
  memset(p, 0, sizeof *p);
  if (!o || o->k == 0 || !query)
    return ENGRAM_EINVAL;
  vector_kernel kern =
      o->kernel == VECTOR_KERNEL_AUTO ? vector_kernel_best() : o->kernel;
  if (!vector_kernel_available(kern) || (o->use_int8 && !s->quantized))
    return ENGRAM_EINVAL;
  double norm = 0;
  for (size_t i = 0; i < s->dim; i++) {
    if (!isfinite(query[i]))
      return ENGRAM_EINVAL;
    norm += (double)query[i] * (double)query[i];
  }
  p->set = s;
  p->f32 = kern == VECTOR_KERNEL_AVX2 ? vk_f32_avx2 : vk_f32_scalar;
  p->k = o->k < s->n ? o->k : s->n;
  p->ncand = p->k;
  p->q = alloc_aligned(s->stride * sizeof *p->q);
  if (!p->q)
    return ENGRAM_ENOMEM;
  float scale = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
  for (size_t i = 0; i < s->dim; i++)
    p->q[i] = query[i] * scale;
  for (size_t i = s->dim; i < s->stride; i++)
    p->q[i] = 0;
  if (o->use_int8) {
    size_t r = o->rerank_factor ? o->rerank_factor : VECTOR_DEFAULT_RERANK;
    p->i8 = kern == VECTOR_KERNEL_AVX2 ? vk_i8_avx2 : vk_i8_scalar;
    p->ncand = p->k > s->n / r ? s->n : p->k * r;
    p->qi = alloc_aligned(s->qstride);
    if (!p->qi) {
      vk_query_free(p);
      return ENGRAM_ENOMEM;
    }
    vector_quantize(p->q, s->dim, p->qi, s->qstride);
  }
  return 0;
}

void vk_query_free(vk_query *p) {
  free(p->q);
  free(p->qi);
  p->q = NULL;
  p->qi = NULL;
}

/* Rows scanned in order: a later row never wins a tie, so a full heap only
 * takes a strictly higher score. */
static void take(vk_topk *t, const float *score, size_t first, size_t m) {
  for (size_t i = 0; i < m; i++) {
    if (t->n < t->k) {
      vk_topk_push(t, score[i], first + i);
    } else if (score[i] > t->c[0].score) {
      t->c[0].score = score[i];
      t->c[0].row = first + i;
      sift_down(t, 0);
    }
  }
}

void vk_scan_range(const vk_query *p, size_t begin, size_t end, vk_topk *t) {
  const vector_set *s = p->set;
  float score[BLOCK];
  if (t->k == 0)
    return;
  for (size_t r = begin; r < end; r += BLOCK) {
    size_t m = end - r < BLOCK ? end - r : BLOCK;
    if (p->i8) {
      int32_t dot[BLOCK];
      p->i8(p->qi, s->qrows + r * s->qstride, s->qstride, m, dot);
      for (size_t i = 0; i < m; i++)
        score[i] = (float)dot[i] * s->qscale[r + i];
    } else {
      p->f32(p->q, s->rows + r * s->stride, s->stride, m, score);
    }
    take(t, score, r, m);
  }
}

size_t vk_finish(const vk_query *p, vk_topk *cand, vk_topk *scratch,
                 vector_hit *hits) {
  const vector_set *s = p->set;
  vk_topk *best = cand;
  if (p->i8) {
    scratch->n = 0;
    for (size_t i = 0; i < cand->n; i++) {
      float score;
      size_t row = cand->c[i].row;
      p->f32(p->q, s->rows + row * s->stride, s->stride, 1, &score);
      vk_topk_push(scratch, score, row);
    }
    best = scratch;
  }
  vk_topk_sort(best);
  size_t n = best->n < p->k ? best->n : p->k;
  for (size_t i = 0; i < n; i++) {
    hits[i].id = s->ids[best->c[i].row];
    hits[i].score = best->c[i].score;
  }
  return n;
}

int vector_search(const vector_set *s, const float *query,
                  const vector_search_options *o, vector_hit *hits,
                  size_t *nhits) {
  vk_query p;
  vk_topk cand, fin;
  *nhits = 0;
  int rc = vk_query_init(&p, s, query, o);
  if (rc != 0)
    return rc;
  rc = vk_topk_init(&cand, p.ncand);
  if (rc == 0 && (rc = vk_topk_init(&fin, p.k)) != 0)
    vk_topk_free(&cand);
  if (rc != 0) {
    vk_query_free(&p);
    return rc;
  }
  vk_scan_range(&p, 0, s->n, &cand);
  *nhits = vk_finish(&p, &cand, &fin, hits);
  vk_topk_free(&cand);
  vk_topk_free(&fin);
  vk_query_free(&p);
  return 0;
}
