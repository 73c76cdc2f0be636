/*
 * store.h — the storage interface: a table of asynchronous operations that
 * every backend implements (SQLite now, PostgreSQL later), and the write
 * batch that carries validated, owned ops from the API to a backend.
 *
 * Every operation starts on the loop thread and completes with a callback on
 * the loop thread. How a backend waits is its own business (thread-pool
 * chunks for SQLite, polled non-blocking sockets for a network server), but
 * it never parks a thread on another task and never calls back before the
 * start function has returned.
 *
 * Inputs are validated by the API layer (src/engram.c) before they reach a
 * backend: ids are canonical UUIDs, content is valid UTF-8 within the size
 * limit, metadata is a JSON object, numbers are in range. A backend checks
 * only what needs the database (existence, de-duplication).
 */
#ifndef ENGRAM_STORE_H
#define ENGRAM_STORE_H

#include "engram.h"
#include "rt/rt.h"
#include "rt/stream.h"

typedef struct store store;

/* A unit of writes that commits atomically. Built and owned by the API
 * layer: ops and every string they point to live as long as the batch.
 * For ADD ops, result_id is already set to the id to insert, and
 * content_hash/at_ms below are filled. */
typedef struct store_batch store_batch;
struct store_batch {
  engram_op *ops;
  size_t n;
  uint64_t *content_hash; /* per op: XXH3 of content (ADD, UPDATE with content) */
  int64_t at_ms;          /* the batch's timestamp */
  int status;             /* set by the backend: 0 or the first op's error */
  void (*done)(store_batch *b); /* called by the backend, on the loop, once
                                   the batch committed or failed */
  void *data;
  store_batch *next;      /* for the backend's queue */
};

/* A read query, owned by the caller until the stream's producer is attached
 * (the backend copies what it keeps). */
typedef struct store_query {
  const char *ns;     /* NULL (list only): all namespaces */
  const char *text;   /* search: valid UTF-8, NUL-terminated */
  size_t text_len;
  unsigned types;     /* bitmask of 1u << engram_type; 0: all */
  const char *after;  /* list: cursor id or NULL */
  double min_relevance;
  uint32_t max_depth;     /* traverse */
  double min_strength;    /* traverse */
  const char *start_id;   /* traverse */
} store_query;

typedef void (*store_open_cb)(store *st, int status, const char *message,
                              void *data);
typedef void (*store_close_cb)(store *st, void *data);

typedef struct store_ops {
  const char *name;
  /* Opens connections, applies migrations. */
  void (*open)(store *st, store_open_cb cb, void *data);
  /* Finishes queued writes, waits (by callback) for running work to return,
   * closes connections. Streams must already be finished. */
  void (*close)(store *st, store_close_cb cb, void *data);
  /* Frees a closed (or never opened) store. */
  void (*destroy)(store *st);

  int (*write)(store *st, store_batch *b);
  int (*get)(store *st, const char *ns, const char *id, engram_get_cb cb,
             void *data);
  int (*history)(store *st, const char *ns, const char *id,
                 engram_history_cb cb, void *data);
  int (*relationships)(store *st, const char *ns, const char *id,
                       engram_rels_cb cb, void *data);
  /* Streams: attach a producer to s (created by the caller) or fail. */
  int (*search)(store *st, const store_query *q, engram_stream *s);
  int (*list)(store *st, const store_query *q, engram_stream *s);
  int (*traverse)(store *st, const store_query *q, engram_stream *s);
} store_ops;

/* The common head of every backend's store object. */
struct store {
  const store_ops *ops;
  rt *rt;
  const engram_options *opts;
  uint64_t writes_committed;
  uint64_t write_batches;
  uint64_t write_batch_sizes[ENGRAM_BATCH_BUCKETS]; /* see engram_stats */
  uint64_t queries_running; /* statements started and not yet reset */
};

/* Counts one group commit of ops writes in the store's statistics. */
void store_count_group(store *st, uint64_t ops);

/* Backends. */
store *store_sqlite_new(rt *r, const engram_options *opts);

/* Decorators. The delay store holds every stream item delay_ms before
 * delivering it (tests, benchmarks); it owns inner. */
store *store_delay_new(store *inner, uint64_t delay_ms);

#endif
