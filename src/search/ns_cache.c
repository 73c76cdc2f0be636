/*
 * ns_cache.c — a cache's scheduling: namespaces held and evicted,
 * catch-ups shared by concurrent requests, work, cancellation and close
 * (ns_cache.h says what it does; the kinds, vector_index.c and
 * lexical_index.c, say what the data is).
 *
 * A request goes through these states:
 *   NEXT     waiting for the namespace's next catch-up to start;
 *   GROUP    served by the catch-up running now (every request of the
 *            group has the same key);
 *   WORK     its work runs on the data;
 *   DEFERRED its callback is due from the cache's zero-delay timer (an
 *            error, a cancel before its work, or nothing to do);
 *   DONE     called back (and freed by the kind's finish).
 *
 * A catch-up of a namespace reads pages from the store, the first from the
 * namespace's watermark (or from scratch when the key differs or nothing
 * is loaded), the next ones after the last row read. A page that changes
 * the namespace is held (`pending`) until no work on it runs; then it is
 * applied and the next page read. At the end the watermark becomes the
 * sequence of the first page (rows re-read later are harmless; a delete
 * missed would not be), the group's requests start their work, and the
 * next group's catch-up starts, its pages waiting for that work. So the
 * data never changes under work, and requests alternate with catch-ups
 * without starving either.
 *
 * Freeing happens only at the end of a loop callback of the cache (a store
 * page, the end of a work unit, the timer): a callback of the caller that
 * closes the cache or cancels a request never has memory freed under it.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/ns_cache.h"

#define DEFAULT_MAX_NAMESPACES 256u
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)

enum { R_NEXT, R_GROUP, R_WORK, R_DEFERRED, R_DONE };

typedef struct req_list {
  ns_cache_req *head, *tail;
} req_list;

struct ns_cache_ns {
  ns_cache *x;
  char *ns;
  char key[STORE_SPACE_LEN]; /* what data holds; "" when nothing */
  int64_t watermark;         /* the sequence seen; -1: nothing loaded */
  void *data;                /* NULL: nothing loaded */
  size_t bytes;
  unsigned works; /* work units on data running */
  req_list next, group, working;
  /* the catch-up */
  int catching; /* from its start to its end */
  int reading;  /* a store read is out */
  int reload;   /* from scratch (key changed, or first load) */
  store_vectors_req vreq;
  store_vectors *pending; /* a page waiting for work to end */
  int64_t first_seq;      /* the first page's sequence; -2 before it */
  int64_t last_seq;       /* the last row read, to continue after */
  char last_id[ENGRAM_ID_LEN + 1];
  char cu_key[STORE_SPACE_LEN];
  size_t cu_limit;          /* rows per page of this catch-up */
  int64_t cu_removed_after; /* its removed ids: after this sequence */
  int have_last;            /* last_seq/last_id name a row applied */
  int changed;              /* a page of this catch-up changed data */
  /* A catch-up nobody waited for any more left its applied pages: the
   * next one of the same key resumes after the last row applied (a
   * namespace far behind still catches up, however short the searches'
   * deadlines), the removed ids after resume_removed_after. */
  int resume, resuming;
  char resume_key[STORE_SPACE_LEN];
  int64_t resume_removed_after;
  /* A page applied on the thread pool (the data may be large: a page of
   * a first load, a compaction, freeing the old data of a reload). */
  rt_work apply_work;
  store_vectors *applying;
  void *apply_old; /* the data a reload replaced, freed by the task */
  int apply_changes, apply_settle, apply_rc;
  size_t apply_bytes;
  ns_cache_ns *newer, *older; /* the LRU list */
};

struct ns_cache {
  rt *rt;
  store *st;
  const ns_cache_kind *kind;
  void *ctx;
  ns_cache_options o;
  ns_cache_ns *newest, *oldest;
  size_t nns;
  unsigned busy; /* store reads and work out, all namespaces */
  req_list deferred;
  uv_timer_t timer;
  int closing, finalized;
  void (*close_cb)(void *data);
  void *close_data;
  ns_cache_stats stats;
};

/* ------------------------------------------------------------- lists */

static void list_push(req_list *l, ns_cache_req *r) {
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail)
    l->tail->next = r;
  else
    l->head = r;
  l->tail = r;
}

static void list_unlink(req_list *l, ns_cache_req *r) {
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

/* ------------------------------------------------- calling back */

static void on_timer(uv_timer_t *t);

/* Calls r back (it is in no list); the kind frees it. */
static void finish(ns_cache_req *r) {
  r->state = R_DONE;
  int status = r->cancelled ? ENGRAM_ECANCELED : r->status;
  if (status == ENGRAM_ECANCELED)
    snprintf(r->msg, sizeof r->msg, "the %s search was cancelled",
             r->x->kind->what);
  r->x->kind->finish(r, status);
}

/* r's callback comes from the timer, with status (unless cancelled). */
static void defer(ns_cache_req *r, int status, const char *msg) {
  ns_cache *x = r->x;
  if (!r->status && status) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : engram_strerror(status));
  }
  r->state = R_DEFERRED;
  list_push(&x->deferred, r);
  uv_timer_start(&x->timer, on_timer, 0, 0);
}

/* ----------------------------------------------------- namespaces */

static void ns_unlink_lru(ns_cache *x, ns_cache_ns *n) {
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

static void ns_touch(ns_cache *x, ns_cache_ns *n) {
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

static ns_cache_ns *ns_find(const ns_cache *x, const char *ns) {
  for (ns_cache_ns *n = x->newest; n; n = n->older)
    if (strcmp(n->ns, ns) == 0)
      return n;
  return NULL;
}

static ns_cache_ns *ns_get(ns_cache *x, const char *ns) {
  ns_cache_ns *n = ns_find(x, ns);
  if (n)
    return n;
  n = calloc(1, sizeof *n);
  if (!n || !(n->ns = strdup(ns))) {
    free(n);
    return NULL;
  }
  n->x = x;
  n->watermark = -1;
  x->nns++;
  ns_touch(x, n);
  return n;
}

/* Some request of the running catch-up's group still wants it. */
static int group_waiting(const ns_cache_ns *n) {
  for (const ns_cache_req *r = n->group.head; r; r = r->next)
    if (!r->cancelled)
      return 1;
  return 0;
}

static int ns_idle(const ns_cache_ns *n) {
  return !n->catching && !n->reading && !n->pending && !n->applying &&
         n->works == 0 && !n->next.head && !n->group.head && !n->working.head;
}

static void ns_drop_data(ns_cache *x, ns_cache_ns *n) {
  if (n->data)
    x->kind->data_free(n->data);
  n->data = NULL;
  n->bytes = 0;
}

static void ns_free(ns_cache *x, ns_cache_ns *n) {
  ns_unlink_lru(x, n);
  x->nns--;
  store_vectors_free(n->pending);
  ns_drop_data(x, n);
  free(n->ns);
  free(n);
}

/* Drops idle namespaces, least recently used first, while there are too
 * many or they hold too much; the most recently used one stays. */
static void evict(ns_cache *x) {
  size_t bytes = 0;
  for (ns_cache_ns *n = x->newest; n; n = n->older)
    bytes += n->bytes;
  ns_cache_ns *n = x->oldest;
  while (n && n != x->newest &&
         (x->nns > x->o.max_namespaces || bytes > x->o.max_bytes)) {
    ns_cache_ns *newer = n->newer;
    if (ns_idle(n)) {
      bytes -= n->bytes;
      ns_free(x, n);
      x->stats.evictions++;
    }
    n = newer;
  }
}

static void on_closed(uv_handle_t *h) {
  ns_cache *x = h->data;
  void (*cb)(void *) = x->close_cb;
  void *data = x->close_data;
  if (x->kind->ctx_free)
    x->kind->ctx_free(x->ctx);
  free(x);
  if (cb)
    cb(data);
}

/* The end of every loop callback of the cache: evicts, or finishes a
 * close once nothing is out. */
static void after(ns_cache *x) {
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

/* -------------------------------------------------------------- work */

static void on_page(store_vectors_req *vreq, int status, const char *message,
                    store_vectors *page);
static void catchup_start(ns_cache_ns *n);
static void catchup_continue(ns_cache_ns *n);

/* Starts r's work (the namespace is caught up); r is in no list. */
static void work_start(ns_cache_req *r) {
  ns_cache_ns *n = r->ns;
  ns_cache *x = r->x;
  r->state = R_WORK;
  list_push(&n->working, r);
  unsigned started = x->kind->work_start(r, n->data);
  r->works = started;
  n->works += started;
  x->busy += started;
  if (started == 0) {
    list_unlink(&n->working, r);
    defer(r, r->status, r->msg);
  } else if (r->status) { /* a unit failed to start: stop the others */
    x->kind->work_cancel(r);
  }
}

void ns_cache_work_done(ns_cache_req *r) {
  ns_cache_ns *n = r->ns;
  ns_cache *x = r->x;
  r->works--;
  n->works--;
  x->busy--;
  if (r->works == 0) {
    list_unlink(&n->working, r);
    finish(r);
  }
  if (n->works == 0 && n->pending)
    catchup_continue(n);
  after(x);
}

/* ---------------------------------------------------------- catch-up */

/* The catch-up ends: its group works (status 0) or fails; the next group's
 * catch-up starts. */
static void catchup_end(ns_cache_ns *n, int status, const char *msg) {
  n->catching = 0;
  ns_cache_req *r;
  while ((r = n->group.head)) {
    list_unlink(&n->group, r);
    if (status || r->cancelled)
      defer(r, status, msg);
    else
      work_start(r);
  }
  if (n->next.head && !n->x->closing)
    catchup_start(n);
}

static void read_page(ns_cache_ns *n, int first) {
  ns_cache *x = n->x;
  int from_start = first && !n->resuming; /* else after the last row */
  store_vectors_query q = {.ns = n->ns,
                           .after_seq = n->reload ? -1 : n->cu_removed_after,
                           .after_row_seq = n->last_seq,
                           .after_id = from_start ? NULL : n->last_id,
                           .limit = n->cu_limit,
                           .removed = first && !n->reload};
  void *scratch = NULL;
  int rc = x->kind->page_query(n->group.head, first, &q, &scratch);
  char msg[NS_CACHE_MSG_LEN];
  if (rc != 0) {
    free(scratch);
    snprintf(msg, sizeof msg, "out of memory reading namespace %s", n->ns);
    catchup_end(n, rc, msg);
    return;
  }
  n->vreq.cb = on_page;
  n->vreq.data = n;
  rc = x->st->ops->vectors ? x->st->ops->vectors(x->st, &q, &n->vreq)
                           : ENGRAM_EINVAL;
  free(scratch);
  if (rc != 0) {
    snprintf(msg, sizeof msg, "cannot read namespace %s for the %s index: %s",
             n->ns, x->kind->what,
             x->st->ops->vectors ? engram_strerror(rc)
                                 : "this store has no catch-up reads");
    catchup_end(n, rc, msg);
    return;
  }
  n->reading = 1;
  x->busy++;
  x->stats.catchups++;
}

static void catchup_start(ns_cache_ns *n) {
  ns_cache_req *first = n->next.head, *r, *next;
  if (!first || n->catching)
    return;
  snprintf(n->cu_key, sizeof n->cu_key, "%s", first->key);
  for (r = first; r; r = next) {
    next = r->next;
    if (strcmp(r->key, n->cu_key) != 0)
      continue; /* another key: a later catch-up */
    list_unlink(&n->next, r);
    r->state = R_GROUP;
    list_push(&n->group, r);
  }
  n->catching = 1;
  n->first_seq = -2;
  n->changed = 0;
  n->resuming = n->resume && strcmp(n->resume_key, n->cu_key) == 0;
  n->resume = 0;
  n->reload =
      !n->resuming && (n->watermark < 0 || strcmp(n->key, n->cu_key) != 0);
  n->cu_removed_after = n->resuming ? n->resume_removed_after : n->watermark;
  if (!n->resuming)
    n->have_last = 0;
  n->cu_limit = n->x->kind->page_limit(n->x->ctx, n->group.head);
  if (n->cu_limit == 0)
    n->cu_limit = 1;
  read_page(n, 1);
}

/* The catch-up stops with nobody waiting for it (or a close): what it
 * applied stays, and the next one resumes after it. */
static void catchup_abandon(ns_cache_ns *n) {
  if (n->first_seq != -2 && n->have_last) {
    n->resume = 1;
    memcpy(n->resume_key, n->cu_key, sizeof n->resume_key);
    /* A first load has seen no removal before its first snapshot. */
    n->resume_removed_after = n->reload ? n->first_seq : n->cu_removed_after;
  }
  catchup_end(n, ENGRAM_ECANCELED, NULL);
}

/* A page is done with (applied, or changing nothing): reads the next one
 * or ends the catch-up. */
static void page_done(ns_cache_ns *n, store_vectors *page) {
  size_t rows = page->n;
  if (rows > 0) {
    n->last_seq = page->seq[rows - 1];
    memcpy(n->last_id, page->ids[rows - 1], sizeof n->last_id);
    n->have_last = 1;
  }
  store_vectors_free(page);
  if (rows == n->cu_limit) {
    if (n->x->closing || !group_waiting(n))
      catchup_abandon(n);
    else
      read_page(n, 0);
    return;
  }
  n->watermark = n->first_seq;
  memcpy(n->key, n->cu_key, sizeof n->key);
  n->resume = n->resuming = 0;
  catchup_end(n, 0, NULL);
}

static void apply_run(rt_work *w) {
  ns_cache_ns *n =
      (ns_cache_ns *)(void *)((char *)w - offsetof(ns_cache_ns, apply_work));
  const ns_cache_kind *kind = n->x->kind;
  if (n->apply_old)
    kind->data_free(n->apply_old);
  n->apply_rc = n->apply_changes ? kind->apply(n->data, n->applying) : 0;
  if (n->apply_rc == 0 && n->apply_settle)
    kind->settle(n->x->ctx, n->data);
  n->apply_bytes = kind->bytes(n->data);
}

static void apply_after(rt_work *w, int status) {
  ns_cache_ns *n =
      (ns_cache_ns *)(void *)((char *)w - offsetof(ns_cache_ns, apply_work));
  ns_cache *x = n->x;
  store_vectors *page = n->applying;
  n->applying = NULL;
  n->apply_old = NULL;
  x->busy--;
  (void)status; /* never withdrawn: nothing cancels it */
  n->bytes = n->apply_bytes;
  n->changed |= n->apply_changes;
  if (n->apply_rc != 0) {
    store_vectors_free(page);
    char msg[NS_CACHE_MSG_LEN];
    snprintf(msg, sizeof msg, "cannot load namespace %s into the %s index: %s",
             n->ns, x->kind->what, engram_strerror(n->apply_rc));
    catchup_end(n, n->apply_rc, msg);
  } else {
    page_done(n, page);
  }
  after(x);
}

/* A page is pending: applies it once no work runs (on the thread pool),
 * then reads on or ends. */
static void catchup_continue(ns_cache_ns *n) {
  ns_cache *x = n->x;
  store_vectors *page = n->pending;
  if (!group_waiting(n) || x->closing) {
    /* Nobody waits for it: the watermark stays where it was. */
    n->pending = NULL;
    store_vectors_free(page);
    catchup_abandon(n);
    return;
  }
  int first = n->first_seq == -2;
  int reset = first && n->reload;
  int changes = page->n || page->nremoved || reset;
  int last = page->n < n->cu_limit;
  if (changes && n->works > 0)
    return; /* the last work unit to end comes back here */
  n->pending = NULL;
  if (first)
    n->first_seq = page->ns_seq;
  int settle =
      last && x->kind->settle && n->works == 0 && (changes || n->changed);
  if (!changes && !settle) {
    page_done(n, page);
    return;
  }
  if (reset) {
    n->apply_old = n->data;
    n->data = NULL;
    n->bytes = 0;
    n->key[0] = '\0';
    n->watermark = -1;
    x->stats.reloads++;
    if (!(n->data = x->kind->data_new(x->ctx, n->group.head))) {
      if (n->apply_old)
        x->kind->data_free(n->apply_old);
      n->apply_old = NULL;
      store_vectors_free(page);
      catchup_end(n, ENGRAM_ENOMEM, "out of memory loading a namespace");
      return;
    }
  }
  n->applying = page;
  n->apply_changes = changes;
  n->apply_settle = settle;
  if (rt_offload(x->rt, &n->apply_work, apply_run, apply_after) != 0) {
    n->applying = NULL;
    if (n->apply_old)
      x->kind->data_free(n->apply_old);
    n->apply_old = NULL;
    store_vectors_free(page);
    catchup_end(n, ENGRAM_ENOMEM, "cannot queue a catch-up page");
    return;
  }
  x->busy++;
}

static void on_page(store_vectors_req *vreq, int status, const char *message,
                    store_vectors *page) {
  ns_cache_ns *n = vreq->data;
  ns_cache *x = n->x;
  n->reading = 0;
  x->busy--;
  if (status == ENGRAM_ECANCELED && (!group_waiting(n) || x->closing)) {
    catchup_abandon(n); /* cancelled for want of a waiter */
    after(x);
    return;
  }
  if (status != 0) {
    catchup_end(n, status, message);
    after(x);
    return;
  }
  if (n->first_seq == -2 && x->kind->first_page) {
    ns_cache_req *r, *next;
    for (r = n->group.head; r; r = next) {
      next = r->next;
      int rc = x->kind->first_page(r, page);
      if (rc != 0) {
        list_unlink(&n->group, r);
        defer(r, rc,
              rc == ENGRAM_ENOMEM
                  ? "out of memory reading a search's terms"
                  : "the store's catch-up page lacks the search's terms");
      }
    }
  }
  n->pending = page;
  catchup_continue(n);
  after(x);
}

static void on_timer(uv_timer_t *t) {
  ns_cache *x = t->data;
  req_list due = x->deferred; /* newcomers wait for the next round */
  x->deferred.head = x->deferred.tail = NULL;
  ns_cache_req *r;
  while ((r = due.head)) {
    list_unlink(&due, r);
    finish(r);
  }
  after(x);
}

/* ------------------------------------------------------------ the API */

int ns_cache_new(rt *r, store *st, const ns_cache_kind *kind, void *ctx,
                 const ns_cache_options *o, ns_cache **out) {
  ns_cache *x = calloc(1, sizeof *x);
  if (!x)
    return ENGRAM_ENOMEM;
  if (o)
    x->o = *o;
  if (!x->o.max_namespaces)
    x->o.max_namespaces = DEFAULT_MAX_NAMESPACES;
  if (!x->o.max_bytes)
    x->o.max_bytes = DEFAULT_MAX_BYTES;
  x->rt = r;
  x->st = st;
  x->kind = kind;
  x->ctx = ctx;
  uv_timer_init(r->loop, &x->timer);
  x->timer.data = x;
  *out = x;
  return 0;
}

void ns_cache_close(ns_cache *x, void (*cb)(void *data), void *data) {
  if (x->closing)
    return;
  x->closing = 1;
  x->close_cb = cb;
  x->close_data = data;
  for (ns_cache_ns *n = x->newest; n; n = n->older) {
    ns_cache_req *r;
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
    for (r = n->working.head; r; r = r->next) {
      r->cancelled = 1;
      x->kind->work_cancel(r);
    }
    if (n->reading)
      x->st->ops->vectors_cancel(x->st, &n->vreq);
  }
  /* after() runs from the timer even when nothing else is out. */
  uv_timer_start(&x->timer, on_timer, 0, 0);
}

int ns_cache_start(ns_cache *x, const char *ns, ns_cache_req *r) {
  if (x->closing)
    return ENGRAM_ECLOSED;
  ns_cache_ns *n = ns_get(x, ns);
  if (!n)
    return ENGRAM_ENOMEM;
  r->x = x;
  r->ns = n;
  r->state = R_NEXT;
  list_push(&n->next, r);
  ns_touch(x, n);
  if (!n->catching)
    catchup_start(n); /* a failure to start defers the callbacks */
  return 0;
}

void ns_cache_cancel(ns_cache_req *r) {
  if (!r || r->cancelled || r->state == R_DONE)
    return;
  r->cancelled = 1; /* deferred already: its callback says ECANCELED */
  if (r->state == R_DEFERRED)
    return;
  ns_cache_ns *n = r->ns;
  ns_cache *x = r->x;
  switch (r->state) {
  case R_NEXT:
    list_unlink(&n->next, r);
    defer(r, ENGRAM_ECANCELED, NULL);
    break;
  case R_GROUP:
    if (n->reading && !group_waiting(n)) {
      /* Nobody waits for the store's read: it is cancelled, and r is
       * called back once it has stopped (catchup_end), so that nothing
       * started for r runs after its callback. */
      x->st->ops->vectors_cancel(x->st, &n->vreq);
    } else {
      list_unlink(&n->group, r);
      defer(r, ENGRAM_ECANCELED, NULL);
    }
    break;
  case R_WORK:
    x->kind->work_cancel(r);
    break;
  }
}

int ns_cache_loaded(const ns_cache *x, const char *ns) {
  const ns_cache_ns *n = ns_find(x, ns);
  return n && n->watermark >= 0;
}

int ns_cache_loading(const ns_cache *x, const char *ns) {
  const ns_cache_ns *n = ns_find(x, ns);
  return n && n->catching && n->reload;
}

const void *ns_cache_data(const ns_cache_req *r) {
  return r->ns->data;
}

rt *ns_cache_rt(const ns_cache *x) {
  return x->rt;
}

void ns_cache_get_stats(const ns_cache *x, ns_cache_stats *out) {
  *out = x->stats;
  out->namespaces = x->nns;
  out->rows = 0;
  out->bytes = 0;
  for (const ns_cache_ns *n = x->newest; n; n = n->older) {
    out->rows += n->data ? x->kind->rows(n->data) : 0;
    out->bytes += n->bytes;
  }
}
