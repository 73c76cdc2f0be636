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
  uint64_t
      *content_hash; /* per op: XXH3 of content (ADD, UPDATE with content) */
  int64_t at_ms;     /* the batch's timestamp */
  int status;        /* set by the backend: 0 or the first op's error */
  void (*done)(store_batch *b); /* called by the backend, on the loop, once
                                   the batch committed or failed */
  void *data;
  store_batch *next; /* for the backend's queue */
};

/* A read query, owned by the caller until the stream's producer is attached
 * (the backend copies what it keeps). */
typedef struct store_query {
  const char *ns;   /* NULL (list only): all namespaces */
  const char *text; /* search: valid UTF-8, NUL-terminated */
  size_t text_len;
  unsigned types;    /* bitmask of 1u << engram_type; 0: all */
  const char *after; /* list: cursor id or NULL */
  double min_relevance;
  uint32_t max_depth;   /* traverse */
  double min_strength;  /* traverse */
  const char *start_id; /* traverse */
} store_query;

/* Hybrid search's first step (src/search/hybrid.c): the best lexical
 * matches of a query and the memories around each of them. Owned by the
 * caller until the start function returns (the backend copies what it
 * keeps). */
typedef struct store_candidates_query {
  const char *ns;   /* required */
  const char *text; /* valid UTF-8, NUL-terminated */
  size_t text_len;
  unsigned types;     /* bitmask of 1u << engram_type; 0: all. Applies to the
                         matches and to their neighbours alike */
  size_t limit;       /* lexical matches, best first: at most this many */
  size_t window;      /* neighbours taken before and after each match */
  double k1, b;       /* BM25 parameters */
  double meta_weight; /* a word found in the metadata values counts this
                         much against one found in the content */
} store_candidates_query;

/* The answer, one owned allocation per array, freed by
 * store_candidates_free. Nodes are in namespace order (creation order);
 * adjacent[i] says that nodes[i - 1] comes right before nodes[i] in the
 * namespace (among the memories of the wanted types), so a run of adjacent
 * nodes is a stretch of the conversation with nothing left out. */
typedef struct store_candidates {
  size_t n;
  engram_node **nodes;
  double *score;           /* the raw BM25 score of a match; 0 otherwise */
  unsigned char *hit;      /* 1: a lexical match; 0: a neighbour only */
  unsigned char *adjacent; /* adjacent[0] is 0 */
} store_candidates;

void store_candidates_free(store_candidates *c);

/* A candidates operation in flight: owned by the caller, who keeps it alive
 * until its callback has run. cb runs exactly once, on the loop, never
 * inside the start function: with 0 and the set (the callee owns it and
 * frees it with store_candidates_free), or with an error and a message
 * (set NULL), or with ENGRAM_ECANCELED after a cancel. */
typedef struct store_candidates_req store_candidates_req;
typedef void (*store_candidates_cb)(store_candidates_req *req, int status,
                                    const char *message, store_candidates *set);
struct store_candidates_req {
  store_candidates_cb cb;
  void *data;
  void *impl; /* the backend's state while the operation runs */
};

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
  /* Hybrid search's candidates (see store_candidates_query). NULL when the
   * backend has none: hybrid search is then refused. 0: req->cb follows;
   * else an error and no callback. */
  int (*candidates)(store *st, const store_candidates_query *q,
                    store_candidates_req *req);
  /* req is running: its callback comes with ENGRAM_ECANCELED as soon as
   * possible (never inside this call). Idempotent. */
  void (*candidates_cancel)(store *st, store_candidates_req *req);
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
/* Marks batch b failed: its first op with a status keeps its own status
 * and message and becomes the batch's; every other op says it was not
 * written because of that op, or, when no op failed, gets code and why. */
void store_batch_fail(store_batch *b, int code, const char *why);
/* Free n history entries / relationships a backend built for a read
 * callback (the strings and the array). */
void store_history_free(engram_history_entry *entries, size_t n);
void store_rels_free(engram_rel *rels, size_t n);

/* Backends. */
store *store_sqlite_new(rt *r, const engram_options *opts);
/* opts->db is a libpq connection string or URI (see store_db_is_pg). */
store *store_pg_new(rt *r, const engram_options *opts);
/* 1 when db names a PostgreSQL database rather than an SQLite file: a
 * postgres:// or postgresql:// URI, or a libpq key=value string (it starts
 * with a keyword followed by '=', e.g. "host=... dbname=..."). */
int store_db_is_pg(const char *db);

/* Decorators. The delay store holds every stream item delay_ms before
 * delivering it (tests, benchmarks); it owns inner. */
store *store_delay_new(store *inner, uint64_t delay_ms);

#endif
