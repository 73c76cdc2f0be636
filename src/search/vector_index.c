/*
 * vector_index.c — the vector index: the vector kind of ns_cache (the
 * namespaces' vectors held and caught up, ns_cache.c) and its work, the
 * scans of the wanted types' sets on the thread pool (vector_scan_start;
 * vector_index.h says what it does; vector_index_ns.c holds a namespace's
 * vectors).
 *
 * A request's key is its space ("NAME/DIM"): searches of one space share
 * catch-ups, a namespace loaded for another space is loaded again. Its
 * work is one scan per wanted type whose set has rows; each scan's hits
 * are copied out (ids from the set's rows) before the scan's end is
 * reported, after which the set may change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/ns_cache.h"
#include "search/vector_index.h"
#include "search/vector_index_ns.h"

#define DEFAULT_PAGE_ROWS 1024u
#define DEFAULT_QUANTIZE_ROWS 20000u
#define DEFAULT_PARALLEL 2u

struct vector_index {
  ns_cache *c;
  vector_index_options o;
};

struct vector_index_req {
  ns_cache_req head; /* first: the cache's part */
  vector_index *x;
  char name[STORE_SPACE_LEN];
  uint32_t dim;
  float *vector;
  size_t k;
  unsigned types;
  vector_index_cb cb;
  void *data;
  vector_scan *scans[ENGRAM_TYPE_COUNT];
  vector_index_hit *hits;
  size_t nhits;
};

static void req_free(vector_index_req *r) {
  free(r->vector);
  free(r->hits);
  free(r);
}

/* ----------------------------------------------------- the kind */

static void *vk_data_new(void *ctx, const ns_cache_req *first) {
  (void)ctx;
  const vector_index_req *r = (const vector_index_req *)first;
  vi_data *d = malloc(sizeof *d);
  if (d)
    vi_data_init(d, r->dim);
  return d;
}

static void vk_data_free(void *data) {
  vi_data_free(data);
  free(data);
}

static int vk_apply(void *data, const store_vectors *page) {
  return vi_data_apply(data, page);
}

static void vk_settle(void *ctx, void *data) {
  const vector_index *x = ctx;
  vi_data_tune(data, x->o.quantize_rows); /* float if it fails */
}

static size_t vk_bytes(const void *data) {
  return vi_data_bytes(data);
}

static size_t vk_rows(const void *data) {
  return vi_data_rows(data);
}

static int vk_page_query(ns_cache_req *head, int first, store_vectors_query *q,
                         void **scratch) {
  (void)first;
  (void)scratch;
  const vector_index_req *r = (const vector_index_req *)head;
  q->embedder = r->name;
  q->dim = r->dim;
  return 0;
}

/* Rows per page: page_rows, fewer for long vectors, so that a page holds
 * at most PAGE_BYTES of floats. */
#define PAGE_BYTES (16u << 20)
static size_t vk_page_limit(void *ctx, const ns_cache_req *first) {
  const vector_index *x = ctx;
  uint32_t dim = ((const vector_index_req *)first)->dim;
  size_t fit = PAGE_BYTES / ((size_t)(dim ? dim : 1) * sizeof(float));
  if (fit < 16)
    fit = 16;
  return x->o.page_rows < fit ? x->o.page_rows : fit;
}

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t nhits, void *data);

static void fail(vector_index_req *r, int status, const char *msg) {
  if (!r->head.status) {
    r->head.status = status;
    snprintf(r->head.msg, sizeof r->head.msg, "%s: %s", msg,
             engram_strerror(status));
  }
}

static unsigned vk_work_start(ns_cache_req *head, const void *data) {
  vector_index_req *r = (vector_index_req *)head;
  const vi_data *d = data;
  size_t want = 0;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    if ((!r->types || (r->types & (1u << t))) && d->sets[t].n > 0)
      want += r->k < d->sets[t].n ? r->k : d->sets[t].n;
  if (want == 0)
    return 0; /* nothing to scan: no hits */
  if (!(r->hits = malloc(want * sizeof *r->hits))) {
    fail(r, ENGRAM_ENOMEM, "cannot start a vector search");
    return 0;
  }
  unsigned started = 0;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++) {
    const vector_set *s = &d->sets[t];
    if ((r->types && !(r->types & (1u << t))) || s->n == 0)
      continue;
    vector_search_options so = {.k = r->k < s->n ? r->k : s->n,
                                .use_int8 = s->quantized,
                                .chunk_rows = r->x->o.chunk_rows,
                                .parallel = r->x->o.parallel};
    int rc = vector_scan_start(ns_cache_rt(head->x), s, r->vector, &so, on_scan,
                               r, &r->scans[t]);
    if (rc != 0) {
      r->scans[t] = NULL;
      fail(r, rc, "cannot start a vector scan");
      break;
    }
    started++;
  }
  return started;
}

static void vk_work_cancel(ns_cache_req *head) {
  vector_index_req *r = (vector_index_req *)head;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    if (r->scans[t])
      vector_scan_cancel(r->scans[t]);
}

static int by_score(const void *a, const void *b) {
  const vector_index_hit *x = a, *y = b;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return strcmp(x->id, y->id);
}

static void vk_finish(ns_cache_req *head, int status) {
  vector_index_req *r = (vector_index_req *)head;
  size_t n = 0;
  if (status == 0) {
    if (r->nhits > 1)
      qsort(r->hits, r->nhits, sizeof *r->hits, by_score);
    n = r->nhits < r->k ? r->nhits : r->k;
  }
  r->cb(r, status, status ? head->msg : NULL, status ? NULL : r->hits, n,
        r->data);
  req_free(r);
}

static const ns_cache_kind vector_kind = {
    .what = "vector",
    .data_new = vk_data_new,
    .data_free = vk_data_free,
    .apply = vk_apply,
    .settle = vk_settle,
    .bytes = vk_bytes,
    .rows = vk_rows,
    .page_query = vk_page_query,
    .page_limit = vk_page_limit,
    .work_start = vk_work_start,
    .work_cancel = vk_work_cancel,
    .finish = vk_finish,
    .ctx_free = free,
};

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t nhits, void *data) {
  vector_index_req *r = data;
  const vi_data *d = ns_cache_data(&r->head);
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    if (r->scans[t] == scan)
      r->scans[t] = NULL;
  /* The set is as the scan saw it until the unit is reported done. */
  if (status == 0 && !r->head.cancelled)
    for (size_t i = 0; i < nhits; i++) {
      vector_index_hit *h = &r->hits[r->nhits++];
      memcpy(h->id, vi_data_id(d, hits[i].id), sizeof h->id);
      h->score = hits[i].score;
    }
  else if (status != 0)
    fail(r, status, "a vector scan failed");
  ns_cache_work_done(&r->head);
}

/* ------------------------------------------------------------ the API */

int vector_index_new(rt *r, store *st, const vector_index_options *o,
                     vector_index **out) {
  vector_index *x = calloc(1, sizeof *x);
  if (!x)
    return ENGRAM_ENOMEM;
  if (o)
    x->o = *o;
  if (!x->o.page_rows)
    x->o.page_rows = DEFAULT_PAGE_ROWS;
  if (!x->o.quantize_rows)
    x->o.quantize_rows = DEFAULT_QUANTIZE_ROWS;
  if (!x->o.parallel)
    x->o.parallel = DEFAULT_PARALLEL;
  ns_cache_options co = {.max_namespaces = x->o.max_namespaces,
                         .max_bytes = x->o.max_bytes};
  int rc = ns_cache_new(r, st, &vector_kind, x, &co, &x->c);
  if (rc != 0) {
    free(x);
    return rc;
  }
  *out = x;
  return 0;
}

void vector_index_close(vector_index *x, void (*cb)(void *data), void *data) {
  ns_cache_close(x->c, cb, data);
}

int vector_index_search(vector_index *x, const vector_index_query *q,
                        vector_index_cb cb, void *data,
                        vector_index_req **out) {
  if (!x || !q || !q->ns || !q->space_name || !q->vector || q->dim == 0 ||
      q->dim > VECTOR_MAX_DIM || q->k == 0 || !cb || !out)
    return ENGRAM_EINVAL;
  vector_index_req *r = calloc(1, sizeof *r);
  if (!r)
    return ENGRAM_ENOMEM;
  if (store_space_format(r->head.key, q->space_name, q->dim) != 0) {
    free(r);
    return ENGRAM_EINVAL;
  }
  snprintf(r->name, sizeof r->name, "%s", q->space_name);
  if (!(r->vector = malloc((size_t)q->dim * sizeof *r->vector))) {
    req_free(r);
    return ENGRAM_ENOMEM;
  }
  memcpy(r->vector, q->vector, (size_t)q->dim * sizeof *r->vector);
  r->x = x;
  r->dim = q->dim;
  r->k = q->k;
  r->types = q->types;
  r->cb = cb;
  r->data = data;
  int rc = ns_cache_start(x->c, q->ns, &r->head);
  if (rc != 0) {
    req_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void vector_index_cancel(vector_index_req *r) {
  if (r)
    ns_cache_cancel(&r->head);
}

void vector_index_get_stats(const vector_index *x, vector_index_stats *out) {
  ns_cache_stats s;
  ns_cache_get_stats(x->c, &s);
  *out = (vector_index_stats){.namespaces = s.namespaces,
                              .rows = s.rows,
                              .bytes = s.bytes,
                              .catchups = s.catchups,
                              .reloads = s.reloads,
                              .evictions = s.evictions};
}
