/*
 * ns_cache.h — namespaces held in memory and kept up to date with every
 * writer: the machinery the vector index and the lexical index share
 * (internal to src/search).
 *
 * A cache holds, per namespace, data of one kind (the vectors of a space,
 * or an inverted index of terms) built from the store's catch-up pages
 * (store_ops.vectors). A namespace is loaded at its first search and kept
 * (within a bound of namespaces and bytes, least recently used first
 * out). Every search first catches up with the database: it asks the
 * store what changed in the namespace since the sequence the cache has
 * seen — rows written, rows removed, by this process or any other —
 * applies that, then runs its work on the data (on the thread pool). So a
 * search sees every write acknowledged before it started.
 *
 * Concurrent searches of a namespace share catch-ups: a search joins the
 * next catch-up to start (never one already running, whose snapshot may
 * predate it); the data is changed only while no work on it runs, so a
 * catch-up's pages wait for running work to end. Nothing waits on a
 * thread: it is all callbacks on the loop.
 *
 * A request's key says what data it wants (the vector index: the space):
 * requests of one key share a catch-up; data of another key is reloaded
 * from scratch. Cancellation at any step gives exactly one callback,
 * ENGRAM_ECANCELED, later on the loop (never inside ns_cache_cancel).
 *
 * The kind (ns_cache_kind) says how its data is made, changed and
 * searched; its requests embed ns_cache_req first.
 */
#ifndef ENGRAM_SEARCH_NS_CACHE_H
#define ENGRAM_SEARCH_NS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "engram.h"
#include "rt/rt.h"
#include "store/store.h"

#define NS_CACHE_MSG_LEN 256

typedef struct ns_cache ns_cache;
typedef struct ns_cache_req ns_cache_req;
typedef struct ns_cache_ns ns_cache_ns;

/* The head of a kind's request (the kind's struct starts with it). The
 * kind may read key, status and msg; the rest is the cache's. */
struct ns_cache_req {
  ns_cache *x;
  ns_cache_ns *ns;
  int state;
  int cancelled;
  char key[STORE_SPACE_LEN];
  unsigned works; /* work units running */
  int status;
  char msg[NS_CACHE_MSG_LEN];
  ns_cache_req *prev, *next;
};

typedef struct ns_cache_kind {
  const char *what; /* "vector", "lexical": for messages */
  /* Empty data for the key of a group's first request; NULL when out of
   * memory. */
  void *(*data_new)(void *ctx, const ns_cache_req *first);
  void (*data_free)(void *data);
  /* One catch-up page: 0 or ENGRAM_ENOMEM (the page is then partly
   * applied, and the catch-up fails). */
  int (*apply)(void *data, const store_vectors *page);
  /* The end of a catch-up, no work running (may be NULL). */
  void (*settle)(void *ctx, void *data);
  size_t (*bytes)(const void *data);
  size_t (*rows)(const void *data);
  /* The kind's fields of a page read for the group whose requests are
   * the list from head (embedder, dim, terms, query words; the cache sets
   * ns, the sequences, limit and removed). first: the catch-up's first
   * page. What q points to must live until the store's start function
   * returns: the kind may put it in one allocation at *scratch, which the
   * cache frees then. 0 or ENGRAM_ENOMEM. */
  int (*page_query)(ns_cache_req *head, int first, store_vectors_query *q,
                    void **scratch);
  size_t (*page_limit)(void *ctx, const ns_cache_req *first);
  /* The first page of a catch-up has come (before it is applied): each
   * request of the group may take what it needs of it (the lexical
   * kind's query terms). May be NULL. 0, or an error (ENGRAM_ENOMEM,
   * ENGRAM_EIO when the page lacks what was asked): that request fails. */
  int (*first_page)(ns_cache_req *r, const store_vectors *page);
  /* Starts r's work on the caught-up data: the number of work units
   * started, each to end with ns_cache_work_done(r); 0 when there is
   * nothing to do or r->status was set (the callback follows). */
  unsigned (*work_start)(ns_cache_req *r, const void *data);
  /* r's work runs and r is cancelled: stop it soon (its units still end
   * with ns_cache_work_done). */
  void (*work_cancel)(ns_cache_req *r);
  /* Calls r's caller back with status (r->msg says why when it is not 0)
   * and frees r. */
  void (*finish)(ns_cache_req *r, int status);
  /* Frees the kind's ctx once the cache is closed, before the close's
   * callback (may be NULL). */
  void (*ctx_free)(void *ctx);
} ns_cache_kind;

typedef struct ns_cache_options {
  size_t max_namespaces; /* 0: 256 */
  size_t max_bytes;      /* 0: 1 GiB; the most recently used namespace is
                            kept even when it alone is larger */
} ns_cache_options;

typedef struct ns_cache_stats {
  size_t namespaces;
  size_t rows;
  size_t bytes;
  uint64_t catchups; /* store reads started (pages) */
  uint64_t reloads;  /* namespaces loaded from scratch */
  uint64_t evictions;
} ns_cache_stats;

/* A new cache of kind reading from st (both must outlive it); ctx is
 * the kind's (its options), given to the hooks that have no request. 0
 * or ENGRAM_ENOMEM. */
int ns_cache_new(rt *r, store *st, const ns_cache_kind *kind, void *ctx,
                 const ns_cache_options *o, ns_cache **out);

/* Cancels every request (their callbacks follow), waits by callback for
 * the store reads and work still running, frees the cache (and the kind's
 * ctx, kind->ctx_free), then calls cb(data) on the loop (never inside
 * this call). cb may be NULL. */
void ns_cache_close(ns_cache *x, void (*cb)(void *data), void *data);

/* Queues r (the kind's request, zeroed but for the kind's fields and
 * r->key) for namespace ns: its catch-up, then its work, then exactly
 * one finish, later, on the loop. 0, or ENGRAM_ECLOSED / ENGRAM_ENOMEM
 * and r is not taken. */
int ns_cache_start(ns_cache *x, const char *ns, ns_cache_req *r);

/* Idempotent; safe from any callback, including r's own finish (a no-op
 * there). */
void ns_cache_cancel(ns_cache_req *r);

/* One of r's work units has ended (the kind has taken what it needs of
 * the data: the data may change after this). On the loop, the last thing
 * the kind's loop callback does: r, and the cache when it is closing,
 * may be freed inside. */
void ns_cache_work_done(ns_cache_req *r);

/* Whether namespace ns is loaded (caught up at least once; it may have
 * changed since), or being loaded from scratch now. */
int ns_cache_loaded(const ns_cache *x, const char *ns);
int ns_cache_loading(const ns_cache *x, const char *ns);

/* The data of r's namespace, for its work and its work's ends. */
const void *ns_cache_data(const ns_cache_req *r);

rt *ns_cache_rt(const ns_cache *x);

void ns_cache_get_stats(const ns_cache *x, ns_cache_stats *out);

#endif
