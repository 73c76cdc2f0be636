/*
 * vector_index.c — the vector index's scheduling: namespaces held and
 * evicted, catch-ups shared by concurrent searches, scans, cancellation
 * and close (vector_index.h says what it does; vector_index_ns.c holds a
 * namespace's data).
 *
 * A search goes through these states:
 *   NEXT   waiting for the namespace's next catch-up to start;
 *   GROUP  served by the catch-up running now (every search of the group
 *          wants the same space);
 *   SCAN   its scans run (one per wanted type whose set has rows);
 *   DEFERRED its callback is due from the index's zero-delay timer (an
 *          error, a cancel before its scans, or nothing to scan);
 *   DONE   called back (and freed when the callback returns).
 *
 * A catch-up of a namespace reads pages from the store, the first from the
 * namespace's watermark (or from scratch when the space differs or nothing
 * is loaded), the next ones after the last row read. A page that changes
 * the namespace is held (`pending`) until no scan of it runs; then it is
 * applied and the next page read. At the end the watermark becomes the
 * sequence of the first page (rows re-read later are harmless; a delete
 * missed would not be), the group's searches start their scans, and the
 * next group's catch-up starts, its pages waiting for those scans. So the
 * sets never change under a scan, and searches alternate with catch-ups
 * without starving either.
 *
 * Freeing happens only at the end of a loop callback of the index (a store
 * page, a scan, the timer): a callback of the caller that closes the index
 * or cancels a search never has memory freed under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/vector_index.h"
#include "search/vector_index_ns.h"

#define DEFAULT_MAX_NAMESPACES 256u
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define DEFAULT_PAGE_ROWS 1024u
#define DEFAULT_QUANTIZE_ROWS 20000u
#define DEFAULT_PARALLEL 2u
#define MSG_LEN 256

enum { R_NEXT, R_GROUP, R_SCAN, R_DEFERRED, R_DONE };

typedef struct req_list {
  vector_index_req *head, *tail;
} req_list;

typedef struct vi_ns vi_ns;

struct vector_index_req {
  vector_index *x;
  vi_ns *ns;
  int state;
  int cancelled;
  char space[STORE_SPACE_LEN]; /* "NAME/DIM" */
  char name[STORE_SPACE_LEN];
  uint32_t dim;
  float *vector;
  size_t k;
  unsigned types;
  vector_index_cb cb;
  void *data;
  vector_scan *scans[ENGRAM_TYPE_COUNT];
  unsigned nscans;
  vector_index_hit *hits;
  size_t nhits;
  int status;
  char msg[MSG_LEN];
  vector_index_req *prev, *next; /* in one of the namespace's lists, or
                                    the index's deferred list */
};

struct vi_ns {
  vector_index *x;
  char *ns;
  char space[STORE_SPACE_LEN]; /* what data holds; "" when nothing */
  int64_t watermark;           /* the sequence seen; -1: nothing loaded */
  vi_data data;
  size_t bytes;
  unsigned scans; /* scans of data running */
  req_list next, group, scanning;
  /* the catch-up */
  int catching; /* from its start to its end */
  int reading;  /* a store read is out */
  int reload;   /* from scratch (space changed, or first load) */
  store_vectors_req vreq;
  store_vectors *pending; /* a page waiting for scans to end */
  int64_t first_seq;      /* the first page's sequence; -2 before it */
  int64_t last_seq;       /* the last row read, to continue after */
  char last_id[ENGRAM_ID_LEN + 1];
  char cu_space[STORE_SPACE_LEN], cu_name[STORE_SPACE_LEN];
  uint32_t cu_dim;
  vi_ns *newer, *older; /* the LRU list */
};

struct vector_index {
  rt *rt;
  store *st;
  vector_index_options o;
  vi_ns *newest, *oldest;
  size_t nns;
  unsigned busy; /* store reads and scans out, all namespaces */
  req_list deferred;
  uv_timer_t timer;
  int closing, finalized;
  void (*close_cb)(void *data);
  void *close_data;
  vector_index_stats stats;
};

/* ------------------------------------------------------------- lists */

static void list_push(req_list *l, vector_index_req *r) {
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail)
    l->tail->next = r;
  else
    l->head = r;
  l->tail = r;
}

static void list_unlink(req_list *l, vector_index_req *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    l->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    l->tail = r->prev;
  r->prev = r->next = NULL;
}

static req_list *list_of(vector_index_req *r) {
  switch (r->state) {
  case R_NEXT:
    return &r->ns->next;
  case R_GROUP:
    return &r->ns->group;
  case R_SCAN:
    return &r->ns->scanning;
  case R_DEFERRED:
    return &r->x->deferred;
  }
  return NULL;
}

/* ------------------------------------------------- calling back */

static void on_timer(uv_timer_t *t);

static void req_free(vector_index_req *r) {
  free(r->vector);
  free(r->hits);
  free(r);
}

static int by_score(const void *a, const void *b) {
  const vector_index_hit *x = a, *y = b;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return strcmp(x->id, y->id);
}

/* Calls r back (it is in no list) and frees it. */
static void finish(vector_index_req *r) {
  r->state = R_DONE;
  int status = r->cancelled ? ENGRAM_ECANCELED : r->status;
  if (status == ENGRAM_ECANCELED)
    snprintf(r->msg, sizeof r->msg, "the vector search was cancelled");
  size_t n = 0;
  if (status == 0) {
    if (r->nhits > 1)
      qsort(r->hits, r->nhits, sizeof *r->hits, by_score);
    n = r->nhits < r->k ? r->nhits : r->k;
  }
  r->cb(r, status, status ? r->msg : NULL, status ? NULL : r->hits, n, r->data);
  req_free(r);
}

/* r's callback comes from the timer, with status (unless cancelled). */
static void defer(vector_index_req *r, int status, const char *msg) {
  vector_index *x = r->x;
  if (!r->status && status) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : engram_strerror(status));
  }
  r->state = R_DEFERRED;
  list_push(&x->deferred, r);
  uv_timer_start(&x->timer, on_timer, 0, 0);
}

/* ----------------------------------------------------- namespaces */

static void ns_unlink_lru(vector_index *x, vi_ns *n) {
  if (n->newer)
    n->newer->older = n->older;
  else
    x->newest = n->older;
  if (n->older)
    n->older->newer = n->newer;
  else
    x->oldest = n->newer;
  n->newer = n->older = NULL;
}

static void ns_touch(vector_index *x, vi_ns *n) {
  if (x->newest == n)
    return;
  if (n->newer || n->older || x->oldest == n)
    ns_unlink_lru(x, n);
  n->older = x->newest;
  if (x->newest)
    x->newest->newer = n;
  x->newest = n;
  if (!x->oldest)
    x->oldest = n;
}

static vi_ns *ns_find(vector_index *x, const char *ns) {
  for (vi_ns *n = x->newest; n; n = n->older)
    if (strcmp(n->ns, ns) == 0)
      return n;
  return NULL;
}

static vi_ns *ns_get(vector_index *x, const char *ns) {
  vi_ns *n = ns_find(x, ns);
  if (n)
    return n;
  n = calloc(1, sizeof *n);
  if (!n || !(n->ns = strdup(ns))) {
    free(n);
    return NULL;
  }
  n->x = x;
  n->watermark = -1;
  vi_data_init(&n->data, 0);
  x->nns++;
  ns_touch(x, n);
  return n;
}

static int ns_idle(const vi_ns *n) {
  return !n->catching && !n->reading && !n->pending && n->scans == 0 &&
         !n->next.head && !n->group.head && !n->scanning.head;
}

static void ns_free(vector_index *x, vi_ns *n) {
  ns_unlink_lru(x, n);
  x->nns--;
  store_vectors_free(n->pending);
  vi_data_free(&n->data);
  free(n->ns);
  free(n);
}

/* Drops idle namespaces, least recently used first, while there are too
 * many or they hold too much; the most recently used one stays. */
static void evict(vector_index *x) {
  size_t bytes = 0;
  for (vi_ns *n = x->newest; n; n = n->older)
    bytes += n->bytes;
  vi_ns *n = x->oldest;
  while (n && n != x->newest &&
         (x->nns > x->o.max_namespaces || bytes > x->o.max_bytes)) {
    vi_ns *newer = n->newer;
    if (ns_idle(n)) {
      bytes -= n->bytes;
      ns_free(x, n);
      x->stats.evictions++;
    }
    n = newer;
  }
}

static void on_closed(uv_handle_t *h) {
  vector_index *x = h->data;
  void (*cb)(void *) = x->close_cb;
  void *data = x->close_data;
  free(x);
  if (cb)
    cb(data);
}

/* The end of every loop callback of the index: evicts, or finishes a
 * close once nothing is out. */
static void after(vector_index *x) {
  if (x->finalized)
    return;
  if (!x->closing) {
    evict(x);
    return;
  }
  if (x->busy || x->deferred.head)
    return;
  x->finalized = 1;
  while (x->newest)
    ns_free(x, x->newest);
  uv_timer_stop(&x->timer);
  uv_close((uv_handle_t *)&x->timer, on_closed);
}

/* ------------------------------------------------------------- scans */

static void on_page(store_vectors_req *vreq, int status, const char *message,
                    store_vectors *page);
static void catchup_start(vi_ns *n);

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t nhits, void *data);

/* Starts r's scans (the namespace is caught up); r is in no list. */
static void scan_start(vector_index_req *r) {
  vi_ns *n = r->ns;
  vector_index *x = r->x;
  size_t want = 0;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    if ((!r->types || (r->types & (1u << t))) && n->data.sets[t].n > 0)
      want += r->k < n->data.sets[t].n ? r->k : n->data.sets[t].n;
  if (want == 0) {
    defer(r, 0, NULL); /* nothing to scan: no hits */
    return;
  }
  if (!(r->hits = malloc(want * sizeof *r->hits))) {
    defer(r, ENGRAM_ENOMEM, "out of memory starting a vector search");
    return;
  }
  r->state = R_SCAN;
  list_push(&n->scanning, r);
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++) {
    const vector_set *s = &n->data.sets[t];
    if ((r->types && !(r->types & (1u << t))) || s->n == 0)
      continue;
    vector_search_options so = {.k = r->k < s->n ? r->k : s->n,
                                .use_int8 = s->quantized,
                                .chunk_rows = x->o.chunk_rows,
                                .parallel = x->o.parallel};
    int rc =
        vector_scan_start(x->rt, s, r->vector, &so, on_scan, r, &r->scans[t]);
    if (rc != 0) {
      r->scans[t] = NULL;
      if (!r->status) {
        r->status = rc;
        snprintf(r->msg, sizeof r->msg, "cannot start a vector scan: %s",
                 engram_strerror(rc));
      }
      break;
    }
    r->nscans++;
    n->scans++;
    x->busy++;
  }
  if (r->status) /* stop what started; their callbacks finish r */
    for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
      if (r->scans[t])
        vector_scan_cancel(r->scans[t]);
  if (r->nscans == 0) {
    list_unlink(&n->scanning, r);
    defer(r, r->status, r->msg);
  }
}

/* ---------------------------------------------------------- catch-up */

/* The catch-up ends: its group scans (status 0) or fails; the next group's
 * catch-up starts. */
static void catchup_end(vi_ns *n, int status, const char *msg) {
  n->catching = 0;
  vector_index_req *r;
  while ((r = n->group.head)) {
    list_unlink(&n->group, r);
    if (status)
      defer(r, status, msg);
    else
      scan_start(r);
  }
  if (n->next.head && !n->x->closing)
    catchup_start(n);
}

/* Rows per page: page_rows, fewer for long vectors, so that a page holds
 * at most PAGE_BYTES of floats. */
#define PAGE_BYTES (16u << 20)
static size_t page_limit(const vector_index *x, uint32_t dim) {
  size_t fit = PAGE_BYTES / ((size_t)(dim ? dim : 1) * sizeof(float));
  if (fit < 16)
    fit = 16;
  return x->o.page_rows < fit ? x->o.page_rows : fit;
}

static void read_page(vi_ns *n, int first) {
  vector_index *x = n->x;
  store_vectors_query q = {.ns = n->ns,
                           .embedder = n->cu_name,
                           .dim = n->cu_dim,
                           .after_seq = n->reload ? -1 : n->watermark,
                           .after_row_seq = n->last_seq,
                           .after_id = first ? NULL : n->last_id,
                           .limit = page_limit(x, n->cu_dim),
                           .removed = first && !n->reload};
  n->vreq.cb = on_page;
  n->vreq.data = n;
  int rc = x->st->ops->vectors ? x->st->ops->vectors(x->st, &q, &n->vreq)
                               : ENGRAM_EINVAL;
  if (rc != 0) {
    char msg[MSG_LEN];
    snprintf(msg, sizeof msg, "cannot read the vectors of namespace %s: %s",
             n->ns,
             x->st->ops->vectors ? engram_strerror(rc)
                                 : "this store has no vector reads");
    catchup_end(n, rc, msg);
    return;
  }
  n->reading = 1;
  x->busy++;
  x->stats.catchups++;
}

static void catchup_start(vi_ns *n) {
  vector_index_req *first = n->next.head, *r, *next;
  if (!first || n->catching)
    return;
  snprintf(n->cu_space, sizeof n->cu_space, "%s", first->space);
  snprintf(n->cu_name, sizeof n->cu_name, "%s", first->name);
  n->cu_dim = first->dim;
  for (r = first; r; r = next) {
    next = r->next;
    if (strcmp(r->space, n->cu_space) != 0)
      continue; /* another space: a later catch-up */
    list_unlink(&n->next, r);
    r->state = R_GROUP;
    list_push(&n->group, r);
  }
  n->catching = 1;
  n->first_seq = -2;
  n->reload = n->watermark < 0 || strcmp(n->space, n->cu_space) != 0;
  read_page(n, 1);
}

/* A page is pending: applies it once no scan runs, then reads on or
 * ends. */
static void catchup_continue(vi_ns *n) {
  vector_index *x = n->x;
  store_vectors *page = n->pending;
  if (!n->group.head || x->closing) {
    /* Nobody waits for it: the watermark stays where it was. */
    n->pending = NULL;
    store_vectors_free(page);
    catchup_end(n, ENGRAM_ECANCELED, NULL);
    return;
  }
  int first = n->first_seq == -2;
  int changes = page->n || page->nremoved || (first && n->reload);
  if (changes && n->scans > 0)
    return; /* the last scan to end comes back here */
  n->pending = NULL;
  if (first) {
    n->first_seq = page->ns_seq;
    if (n->reload) {
      vi_data_free(&n->data);
      vi_data_init(&n->data, n->cu_dim);
      n->space[0] = '\0';
      n->watermark = -1;
      x->stats.reloads++;
    }
  }
  int rc = vi_data_apply(&n->data, page);
  size_t rows = page->n;
  size_t limit = page_limit(x, n->cu_dim);
  if (rc == 0 && rows == limit) {
    n->last_seq = page->seq[rows - 1];
    memcpy(n->last_id, page->ids[rows - 1], sizeof n->last_id);
  }
  store_vectors_free(page);
  if (rc != 0) {
    n->bytes = vi_data_bytes(&n->data);
    catchup_end(n, rc, "out of memory loading vectors");
    return;
  }
  if (rows == limit) {
    read_page(n, 0);
    return;
  }
  if (n->scans == 0) /* (always, unless no page changed anything) */
    vi_data_tune(&n->data, x->o.quantize_rows); /* float if it fails */
  n->watermark = n->first_seq;
  memcpy(n->space, n->cu_space, sizeof n->space);
  n->bytes = vi_data_bytes(&n->data);
  catchup_end(n, 0, NULL);
}

static void on_page(store_vectors_req *vreq, int status, const char *message,
                    store_vectors *page) {
  vi_ns *n = vreq->data;
  vector_index *x = n->x;
  n->reading = 0;
  x->busy--;
  if (status != 0) {
    catchup_end(n, status, message);
  } else {
    n->pending = page;
    catchup_continue(n);
  }
  after(x);
}

static void on_scan(vector_scan *scan, int status, const vector_hit *hits,
                    size_t nhits, void *data) {
  vector_index_req *r = data;
  vi_ns *n = r->ns;
  vector_index *x = r->x;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    if (r->scans[t] == scan)
      r->scans[t] = NULL;
  /* The set is as the scan saw it until n->scans drops: ids first. */
  if (status == 0 && !r->cancelled)
    for (size_t i = 0; i < nhits; i++) {
      vector_index_hit *h = &r->hits[r->nhits++];
      memcpy(h->id, vi_data_id(&n->data, hits[i].id), sizeof h->id);
      h->score = hits[i].score;
    }
  else if (status != 0 && !r->status) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "a vector scan failed: %s",
             engram_strerror(status));
  }
  r->nscans--;
  n->scans--;
  x->busy--;
  if (r->nscans == 0) {
    list_unlink(&n->scanning, r);
    finish(r);
  }
  if (n->scans == 0 && n->pending)
    catchup_continue(n);
  after(x);
}

static void on_timer(uv_timer_t *t) {
  vector_index *x = t->data;
  req_list due = x->deferred; /* newcomers wait for the next round */
  x->deferred.head = x->deferred.tail = NULL;
  vector_index_req *r;
  while ((r = due.head)) {
    list_unlink(&due, r);
    finish(r);
  }
  after(x);
}

/* ------------------------------------------------------------ the API */

int vector_index_new(rt *r, store *st, const vector_index_options *o,
                     vector_index **out) {
  vector_index *x = calloc(1, sizeof *x);
  if (!x)
    return ENGRAM_ENOMEM;
  if (o)
    x->o = *o;
  if (!x->o.max_namespaces)
    x->o.max_namespaces = DEFAULT_MAX_NAMESPACES;
  if (!x->o.max_bytes)
    x->o.max_bytes = DEFAULT_MAX_BYTES;
  if (!x->o.page_rows)
    x->o.page_rows = DEFAULT_PAGE_ROWS;
  if (!x->o.quantize_rows)
    x->o.quantize_rows = DEFAULT_QUANTIZE_ROWS;
  if (!x->o.parallel)
    x->o.parallel = DEFAULT_PARALLEL;
  x->rt = r;
  x->st = st;
  uv_timer_init(r->loop, &x->timer);
  x->timer.data = x;
  *out = x;
  return 0;
}

void vector_index_close(vector_index *x, void (*cb)(void *data), void *data) {
  if (x->closing)
    return;
  x->closing = 1;
  x->close_cb = cb;
  x->close_data = data;
  for (vi_ns *n = x->newest; n; n = n->older) {
    vector_index_req *r;
    while ((r = n->next.head)) {
      list_unlink(&n->next, r);
      r->cancelled = 1;
      defer(r, ENGRAM_ECANCELED, NULL);
    }
    while ((r = n->group.head)) {
      list_unlink(&n->group, r);
      r->cancelled = 1;
      defer(r, ENGRAM_ECANCELED, NULL);
    }
    for (r = n->scanning.head; r; r = r->next) {
      r->cancelled = 1;
      for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
        if (r->scans[t])
          vector_scan_cancel(r->scans[t]);
    }
    if (n->reading)
      x->st->ops->vectors_cancel(x->st, &n->vreq);
  }
  /* after() runs from the timer even when nothing else is out. */
  uv_timer_start(&x->timer, on_timer, 0, 0);
}

int vector_index_search(vector_index *x, const vector_index_query *q,
                        vector_index_cb cb, void *data,
                        vector_index_req **out) {
  if (!x || !q || !q->ns || !q->space_name || !q->vector || q->dim == 0 ||
      q->dim > VECTOR_MAX_DIM || q->k == 0 || !cb || !out)
    return ENGRAM_EINVAL;
  if (x->closing)
    return ENGRAM_ECLOSED;
  vector_index_req *r = calloc(1, sizeof *r);
  if (!r)
    return ENGRAM_ENOMEM;
  if (store_space_format(r->space, q->space_name, q->dim) != 0) {
    free(r);
    return ENGRAM_EINVAL;
  }
  snprintf(r->name, sizeof r->name, "%s", q->space_name);
  r->vector = malloc((size_t)q->dim * sizeof *r->vector);
  vi_ns *n = r->vector ? ns_get(x, q->ns) : NULL;
  if (!n) {
    req_free(r);
    return ENGRAM_ENOMEM;
  }
  memcpy(r->vector, q->vector, (size_t)q->dim * sizeof *r->vector);
  r->x = x;
  r->ns = n;
  r->dim = q->dim;
  r->k = q->k;
  r->types = q->types;
  r->cb = cb;
  r->data = data;
  r->state = R_NEXT;
  list_push(&n->next, r);
  ns_touch(x, n);
  *out = r;
  if (!n->catching)
    catchup_start(n); /* a failure to start defers the callbacks */
  return 0;
}

void vector_index_cancel(vector_index_req *r) {
  if (!r || r->cancelled || r->state == R_DONE || r->state == R_DEFERRED)
    return;
  r->cancelled = 1;
  vi_ns *n = r->ns;
  vector_index *x = r->x;
  switch (r->state) {
  case R_NEXT:
  case R_GROUP:
    list_unlink(list_of(r), r);
    defer(r, ENGRAM_ECANCELED, NULL);
    if (!n->group.head && n->reading)
      x->st->ops->vectors_cancel(x->st, &n->vreq); /* nobody waits */
    break;
  case R_SCAN:
    for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
      if (r->scans[t])
        vector_scan_cancel(r->scans[t]);
    break;
  }
}

void vector_index_get_stats(const vector_index *x, vector_index_stats *out) {
  *out = x->stats;
  out->namespaces = x->nns;
  out->rows = 0;
  out->bytes = 0;
  for (const vi_ns *n = x->newest; n; n = n->older) {
    out->rows += vi_data_rows(&n->data);
    out->bytes += n->bytes;
  }
}
