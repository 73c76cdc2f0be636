/*
 * vector_scan.c — a vector search as a job on the thread pool.
 *
 * The rows are cut into chunks of chunk_rows. A scan owns `parallel` slots;
 * each slot is one rt_offload task at a time, scoring one chunk into the
 * slot's own heap, and the loop hands a slot its next chunk from the
 * after-callback. So the loop is the only place that decides what runs
 * next, and cancellation is a flag it reads there: after cancel no chunk
 * starts, chunks still in the pool's queue are withdrawn (uv_cancel), and
 * the one running finishes. No thread ever waits for another.
 *
 * When every slot is idle, the heaps are merged on the loop (k entries
 * each). A float search ends there; an int8 search re-ranks its k * R
 * candidates against the float rows in one more task, since that reads
 * k * R scattered rows. The callback runs once, from an after-callback
 * (never inside start or cancel), and the scan is freed when it returns.
 */
#include <stdlib.h>
#include <string.h>

#include "engram.h"
#include "search/vector_internal.h"

typedef struct slot {
  rt_work work;
  vector_scan *scan;
  size_t begin, end; /* the chunk in hand */
  vk_topk heap;
  int busy; /* queued or running on the pool */
} slot;

struct vector_scan {
  rt *rt;
  vk_query query;
  size_t chunk_rows;
  size_t next_row;     /* first row no chunk has taken yet */
  size_t rows_scanned; /* rows of completed chunks */
  slot *slots;
  unsigned nslots, busy;
  vk_topk merged; /* candidates of all slots */
  vk_topk final;  /* int8: the re-ranked best k */
  rt_work rerank;
  int rerank_busy;
  vector_hit *hits;
  size_t nhits;
  int canceled, delivering, error;
  vector_scan_cb cb;
  void *data;
};

static void scan_free(vector_scan *sc) {
  for (unsigned i = 0; sc->slots && i < sc->nslots; i++)
    vk_topk_free(&sc->slots[i].heap);
  free(sc->slots);
  vk_topk_free(&sc->merged);
  vk_topk_free(&sc->final);
  free(sc->hits);
  vk_query_free(&sc->query);
  free(sc);
}

static void deliver(vector_scan *sc, int status) {
  sc->delivering = 1;
  if (status == 0)
    sc->cb(sc, 0, sc->hits, sc->nhits, sc->data);
  else
    sc->cb(sc, status, NULL, 0, sc->data);
  scan_free(sc);
}

static void slot_run(rt_work *w) {
  slot *s = (slot *)((char *)w - offsetof(slot, work));
  vk_scan_range(&s->scan->query, s->begin, s->end, &s->heap);
}

static void slot_after(rt_work *w, int status);

/* Gives s the next chunk; 0 when it is on the pool. */
static int slot_start(slot *s) {
  vector_scan *sc = s->scan;
  size_t n = sc->query.set->n;
  s->begin = sc->next_row;
  s->end = n - s->begin < sc->chunk_rows ? n : s->begin + sc->chunk_rows;
  int rc = rt_offload(sc->rt, &s->work, slot_run, slot_after);
  if (rc != 0)
    return rc;
  sc->next_row = s->end;
  s->busy = 1;
  sc->busy++;
  return 0;
}

static void rerank_run(rt_work *w) {
  vector_scan *sc = (vector_scan *)((char *)w - offsetof(vector_scan, rerank));
  sc->nhits = vk_finish(&sc->query, &sc->merged, &sc->final, sc->hits);
}

static void rerank_after(rt_work *w, int status) {
  vector_scan *sc = (vector_scan *)((char *)w - offsetof(vector_scan, rerank));
  sc->rerank_busy = 0;
  deliver(sc, status != 0 || sc->canceled ? ENGRAM_ECANCELED : 0);
}

static void all_chunks_done(vector_scan *sc) {
  if (sc->canceled) {
    deliver(sc, ENGRAM_ECANCELED);
    return;
  }
  if (sc->error) {
    deliver(sc, sc->error);
    return;
  }
  for (unsigned i = 0; i < sc->nslots; i++)
    vk_topk_merge(&sc->merged, &sc->slots[i].heap);
  if (!sc->query.i8) {
    sc->nhits = vk_finish(&sc->query, &sc->merged, &sc->final, sc->hits);
    deliver(sc, 0);
    return;
  }
  int rc = rt_offload(sc->rt, &sc->rerank, rerank_run, rerank_after);
  if (rc != 0) {
    deliver(sc, rc);
    return;
  }
  sc->rerank_busy = 1;
}

static void slot_after(rt_work *w, int status) {
  slot *s = (slot *)((char *)w - offsetof(slot, work));
  vector_scan *sc = s->scan;
  s->busy = 0;
  sc->busy--;
  if (status == 0)
    sc->rows_scanned += s->end - s->begin;
  else if (!sc->canceled)
    sc->error = ENGRAM_ECANCELED; /* withdrawn by someone else: libuv */
  if (!sc->canceled && !sc->error && sc->next_row < sc->query.set->n) {
    int rc = slot_start(s);
    if (rc == 0)
      return;
    sc->error = rc;
  }
  if (sc->busy == 0)
    all_chunks_done(sc);
}

int vector_scan_start(rt *r, const vector_set *s, const float *query,
                      const vector_search_options *o, vector_scan_cb cb,
                      void *data, vector_scan **out) {
  if (!cb)
    return ENGRAM_EINVAL;
  vector_scan *sc = calloc(1, sizeof *sc);
  if (!sc)
    return ENGRAM_ENOMEM;
  int rc = vk_query_init(&sc->query, s, query, o);
  if (rc != 0) {
    free(sc);
    return rc;
  }
  sc->rt = r;
  sc->cb = cb;
  sc->data = data;
  sc->chunk_rows = o->chunk_rows ? o->chunk_rows : VECTOR_DEFAULT_CHUNK_ROWS;
  size_t chunks = (s->n + sc->chunk_rows - 1) / sc->chunk_rows;
  size_t want = o->parallel ? o->parallel : 1;
  /* At least one slot, even for an empty set: the callback then comes from
   * its (empty) chunk's after-callback, like any other. */
  sc->nslots = (unsigned)(want < chunks ? want : chunks ? chunks : 1);
  sc->slots = calloc(sc->nslots, sizeof *sc->slots);
  sc->hits = malloc((sc->query.k ? sc->query.k : 1) * sizeof *sc->hits);
  rc = sc->slots && sc->hits ? 0 : ENGRAM_ENOMEM;
  for (unsigned i = 0; rc == 0 && i < sc->nslots; i++) {
    sc->slots[i].scan = sc;
    rc = vk_topk_init(&sc->slots[i].heap, sc->query.ncand);
  }
  if (rc == 0)
    rc = vk_topk_init(&sc->merged, sc->query.ncand);
  if (rc == 0)
    rc = vk_topk_init(&sc->final, sc->query.k);
  for (unsigned i = 0; rc == 0 && i < sc->nslots; i++) {
    int src = slot_start(&sc->slots[i]);
    if (src != 0 && i == 0)
      rc = src;
    if (src != 0)
      break; /* fewer slots in flight; the others stay idle */
  }
  if (rc != 0) {
    scan_free(sc);
    return rc;
  }
  *out = sc;
  return 0;
}

void vector_scan_cancel(vector_scan *sc) {
  if (!sc || sc->delivering || sc->canceled)
    return;
  sc->canceled = 1;
  for (unsigned i = 0; i < sc->nslots; i++)
    if (sc->slots[i].busy)
      uv_cancel((uv_req_t *)&sc->slots[i].work.req);
  if (sc->rerank_busy)
    uv_cancel((uv_req_t *)&sc->rerank.req);
}

size_t vector_scan_rows_scanned(const vector_scan *sc) {
  return sc->rows_scanned;
}
