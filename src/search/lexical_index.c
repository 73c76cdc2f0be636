/*
 * lexical_index.c — the lexical index: the lexical kind of ns_cache (the
 * namespaces' terms held and caught up, ns_cache.c) and its work, one
 * exact top-k search (lx_data_search) on the thread pool
 * (lexical_index.h says what it does; lexical_ns.c holds a namespace's
 * inverted index).
 *
 * Every request has the same key: the terms of a namespace do not depend
 * on the search. A catch-up's first page carries the words of its whole
 * group (each request remembers where its own start) and the store's
 * answer, each word's terms; each request copies its terms before the
 * page is applied. The search task reads the namespace's data, which
 * does not change until the task's end is reported; the hits' ids are
 * copied out on the loop before that.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/lexical_index.h"
#include "search/lexical_ns.h"
#include "search/ns_cache.h"

#define DEFAULT_PAGE_ROWS 1024u
struct lexical_index {
  ns_cache *c;
  lexical_index_options o;
};

struct lexical_index_req {
  ns_cache_req head; /* first: the cache's part */
  char **words;      /* the query's words, owned */
  size_t nwords;
  size_t word_base; /* where they start in the group's first page */
  char **terms;     /* their terms, distinct, owned (first_page) */
  size_t nterms;
  double k1, b, meta_weight;
  unsigned types;
  size_t k;
  lexical_index_cb cb;
  void *data;
  /* the search task */
  rt_work work;
  const lx_data *d;
  lx_hit *out;
  size_t nout;
  int search_status;
  lexical_index_hit *hits;
  size_t nhits;
};

/* The request whose search task w is. */
static lexical_index_req *req_of_work(rt_work *w) {
  return (lexical_index_req *)(void *)((char *)w -
                                       offsetof(lexical_index_req, work));
}

static void free_strings(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void req_free(lexical_index_req *r) {
  free_strings(r->words, r->nwords);
  free_strings(r->terms, r->nterms);
  free(r->out);
  free(r->hits);
  free(r);
}

/* ----------------------------------------------------- the kind */

static void *lk_data_new(void *ctx, const ns_cache_req *first) {
  (void)ctx;
  (void)first;
  return lx_data_new();
}

static void lk_data_free(void *data) {
  lx_data_free(data);
}

static int lk_apply(void *data, const store_vectors *page) {
  return lx_data_apply(data, page);
}

static size_t lk_bytes(const void *data) {
  return lx_data_bytes(data);
}

static size_t lk_rows(const void *data) {
  return lx_data_docs(data);
}

/* Terms, no vectors; on the first page the words of the whole group. */
static int lk_page_query(ns_cache_req *head, int first, store_vectors_query *q,
                         void **scratch) {
  q->embedder = NULL;
  q->dim = 0;
  q->terms = 1;
  if (!first)
    return 0;
  size_t n = 0;
  for (ns_cache_req *h = head; h; h = h->next)
    n += ((lexical_index_req *)h)->nwords;
  if (n == 0)
    return 0;
  const char **words = malloc(n * sizeof *words);
  if (!words)
    return ENGRAM_ENOMEM;
  n = 0;
  for (ns_cache_req *h = head; h; h = h->next) {
    lexical_index_req *r = (lexical_index_req *)h;
    r->word_base = n;
    for (size_t i = 0; i < r->nwords; i++)
      words[n++] = r->words[i];
  }
  q->query_words = words;
  q->nquery_words = n;
  *scratch = words;
  return 0;
}

static size_t lk_page_limit(void *ctx, const ns_cache_req *first) {
  (void)first;
  return ((const lexical_index *)ctx)->o.page_rows;
}

/* r's words' terms from the first page, each once. */
static int lk_first_page(ns_cache_req *head, const store_vectors *page) {
  lexical_index_req *r = (lexical_index_req *)head;
  if (r->nwords == 0)
    return 0;
  if (!page->qterm_start) /* the store did not answer the words */
    return ENGRAM_EIO;
  uint32_t from = page->qterm_start[r->word_base];
  uint32_t to = page->qterm_start[r->word_base + r->nwords];
  if (to <= from)
    return 0;
  if (!(r->terms = calloc(to - from, sizeof *r->terms)))
    return ENGRAM_ENOMEM;
  for (uint32_t i = from; i < to; i++) {
    const char *t = page->term_text + page->qterms[i];
    size_t j = 0;
    while (j < r->nterms && strcmp(r->terms[j], t) != 0)
      j++;
    if (j < r->nterms)
      continue;
    if (!(r->terms[r->nterms] = strdup(t)))
      return ENGRAM_ENOMEM;
    r->nterms++;
  }
  return 0;
}

static void search_run(rt_work *w) {
  lexical_index_req *r = req_of_work(w);
  lx_query q = {.terms = (const char *const *)r->terms,
                .nterms = r->nterms,
                .k1 = r->k1,
                .b = r->b,
                .meta_weight = r->meta_weight,
                .types = r->types,
                .k = r->k};
  r->search_status = lx_data_search(r->d, &q, r->out, &r->nout);
}

static void search_after(rt_work *w, int status) {
  lexical_index_req *r = req_of_work(w);
  /* status UV_ECANCELED: withdrawn by a cancel, which finish reports */
  int failed = status == 0 ? r->search_status : 0;
  if (!failed && status == 0 && !r->head.cancelled && r->nout > 0) {
    if ((r->hits = malloc(r->nout * sizeof *r->hits))) {
      for (size_t i = 0; i < r->nout; i++) {
        memcpy(r->hits[i].id, lx_data_id(r->d, r->out[i].doc),
               sizeof r->hits[i].id);
        r->hits[i].score = r->out[i].score;
      }
      r->nhits = r->nout;
    } else {
      failed = ENGRAM_ENOMEM;
    }
  }
  if (failed && !r->head.status) {
    r->head.status = failed;
    snprintf(r->head.msg, sizeof r->head.msg, "a lexical search failed: %s",
             engram_strerror(failed));
  }
  ns_cache_work_done(&r->head);
}

static unsigned lk_work_start(ns_cache_req *head, const void *data) {
  lexical_index_req *r = (lexical_index_req *)head;
  if (r->nterms == 0)
    return 0; /* no word the index knows: no hits */
  r->d = data;
  int rc = ENGRAM_ENOMEM;
  if ((r->out = malloc(r->k * sizeof *r->out)))
    rc = rt_offload(ns_cache_rt(head->x), &r->work, search_run, search_after);
  if (rc != 0) {
    head->status = rc;
    snprintf(head->msg, sizeof head->msg, "cannot start a lexical search: %s",
             engram_strerror(rc));
    return 0;
  }
  return 1;
}

static void lk_work_cancel(ns_cache_req *head) {
  lexical_index_req *r = (lexical_index_req *)head;
  uv_cancel((uv_req_t *)&r->work.req); /* a running search just ends */
}

static void lk_finish(ns_cache_req *head, int status) {
  lexical_index_req *r = (lexical_index_req *)head;
  r->cb(r, status, status ? head->msg : NULL, status ? NULL : r->hits,
        status ? 0 : r->nhits, r->data);
  req_free(r);
}

static const ns_cache_kind lexical_kind = {
    .what = "lexical",
    .data_new = lk_data_new,
    .data_free = lk_data_free,
    .apply = lk_apply,
    .settle = NULL,
    .bytes = lk_bytes,
    .rows = lk_rows,
    .page_query = lk_page_query,
    .page_limit = lk_page_limit,
    .first_page = lk_first_page,
    .work_start = lk_work_start,
    .work_cancel = lk_work_cancel,
    .finish = lk_finish,
    .ctx_free = free,
};

/* ------------------------------------------------------------ the API */

int lexical_index_new(rt *r, store *st, const lexical_index_options *o,
                      lexical_index **out) {
  lexical_index *x = calloc(1, sizeof *x);
  if (!x)
    return ENGRAM_ENOMEM;
  if (o)
    x->o = *o;
  if (!x->o.page_rows)
    x->o.page_rows = DEFAULT_PAGE_ROWS;
  ns_cache_options co = {.max_namespaces = x->o.max_namespaces,
                         .max_bytes = x->o.max_bytes};
  int rc = ns_cache_new(r, st, &lexical_kind, x, &co, &x->c);
  if (rc != 0) {
    free(x);
    return rc;
  }
  *out = x;
  return 0;
}

void lexical_index_close(lexical_index *x, void (*cb)(void *data), void *data) {
  ns_cache_close(x->c, cb, data);
}

int lexical_index_search(lexical_index *x, const lexical_index_query *q,
                         lexical_index_cb cb, void *data,
                         lexical_index_req **out) {
  if (!x || !q || !q->ns || q->k == 0 || (q->nwords && !q->words) || !cb ||
      !out)
    return ENGRAM_EINVAL;
  for (size_t i = 0; i < q->nwords; i++)
    if (!q->words[i])
      return ENGRAM_EINVAL;
  lexical_index_req *r = calloc(1, sizeof *r);
  if (!r || (q->nwords && !(r->words = calloc(q->nwords, sizeof *r->words)))) {
    free(r);
    return ENGRAM_ENOMEM;
  }
  for (; r->nwords < q->nwords; r->nwords++)
    if (!(r->words[r->nwords] = strdup(q->words[r->nwords]))) {
      req_free(r);
      return ENGRAM_ENOMEM;
    }
  r->k1 = q->k1;
  r->b = q->b;
  r->meta_weight = q->meta_weight;
  r->types = q->types;
  r->k = q->k;
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

void lexical_index_cancel(lexical_index_req *r) {
  if (r)
    ns_cache_cancel(&r->head);
}

int lexical_index_ready(const lexical_index *x, const char *ns) {
  return ns_cache_loaded(x->c, ns);
}

static void on_warmed(lexical_index_req *req, int status, const char *msg,
                      const lexical_index_hit *hits, size_t n, void *data) {
  (void)req;
  (void)hits;
  (void)n;
  lexical_index *x = data;
  if (status != 0 && status != ENGRAM_ECANCELED)
    rt_log(ns_cache_rt(x->c), ENGRAM_LOG_WARN,
           "loading a namespace into the lexical index failed: %s", msg);
}

int lexical_index_load(lexical_index *x, const char *ns, lexical_index_cb cb,
                       void *data) {
  lexical_index_query q = {.ns = ns, .k = 1}; /* no word: no search */
  lexical_index_req *r;
  return lexical_index_search(x, &q, cb, data, &r);
}

int lexical_index_warm(lexical_index *x, const char *ns) {
  if (ns_cache_loaded(x->c, ns) || ns_cache_loading(x->c, ns))
    return 0;
  return lexical_index_load(x, ns, on_warmed, x);
}

void lexical_index_get_stats(const lexical_index *x, lexical_index_stats *out) {
  ns_cache_stats s;
  ns_cache_get_stats(x->c, &s);
  *out = (lexical_index_stats){.namespaces = s.namespaces,
                               .docs = s.rows,
                               .bytes = s.bytes,
                               .catchups = s.catchups,
                               .reloads = s.reloads,
                               .evictions = s.evictions};
}
