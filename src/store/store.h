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

/* The vector space of a database: the embedder whose vectors it holds and
 * their dimension, recorded in the database (table engram_meta, key
 * "embedder", value "NAME/DIM") by the first write of a vector and changed
 * only by an op of kind STORE_OP_SET_SPACE (engram_reembed). A write of a
 * vector of another space fails with ENGRAM_EEMBEDDER; vectors of an older
 * space stay stored until re-embedded, but vector search skips them. */
#define STORE_SPACE_LEN 160
/* "NAME/DIM" into out (STORE_SPACE_LEN); 0, or ENGRAM_EINVAL when the name
 * is empty or too long. */
int store_space_format(char *out, const char *name, uint32_t dim);
/* 1 when op writes a vector: an ADD, an UPDATE with ENGRAM_SET_EMBEDDING,
 * or STORE_OP_SET_VECTOR, carrying one. */
int store_op_writes_vector(const engram_op *op);
/* Fails op with ENGRAM_EEMBEDDER: its vector (space `wanted`) is not of
 * the database's (`have`). Returns the code. */
int store_space_mismatch(engram_op *op, const char *have, const char *wanted);

/* An internal op kind, never accepted from a caller: sets the database's
 * vector space to op->embedder / op->embedding_dim (ns and the other fields
 * unused). engram_reembed's first batch. */
#define STORE_OP_SET_SPACE ((engram_op_kind)100)
/* Another (engram_reembed): sets the vector of memory op->id in op->ns to
 * op->embedding / embedding_dim / embedder (checked against the space like
 * any vector) if the memory still has the content whose hash is the
 * batch's content_hash of the op (of op->content); a memory deleted or
 * changed since is left alone, which is not an error. Advances the change
 * sequence; writes no history and leaves updated_ms as it is. */
#define STORE_OP_SET_VECTOR ((engram_op_kind)101)

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

/* Every ADD, UPDATE and DELETE also advances its namespace's change
 * sequence (table ns_seq) in the same transaction and stamps the memory
 * with it (column vseq; a deleted memory leaves its id and the sequence in
 * table removed), so that a cache of a namespace (the vector index) can
 * catch up with every writer, in this process or another, by asking what
 * changed after the sequence it has seen (store_ops.vectors). Writers of a
 * namespace serialize on its ns_seq row, so sequence order is commit order
 * on both backends. */

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
  size_t window;      /* neighbours taken before and after each match
                         that is a conversation turn (episodic; a memory
                         of another type takes none) */
  size_t window_matches; /* ... of the best this many such matches (by
                            score); every such vector hit takes them */
  size_t max_scored;  /* matches scored at most (the newest, when the rarest
                         words match more); 0: no cap */
  double k1, b;       /* BM25 parameters */
  double meta_weight; /* a word found in the metadata values counts this
                         much against one found in the content */
  int vectors;        /* 1: the nodes carry their vectors; 0: left out
                         (1.5 KB a memory at 384 floats, unread) */
  /* Vector hits (hybrid search's vector step): memories of ns taken as
   * well, with their neighbours, like matches but marked vhit (unknown
   * ids, other namespaces and unwanted types are left out). With text of
   * no word, or limit 0, only these. */
  const char *const *ids;
  size_t nids;
  /* Lexical matches found by the caller (the lexical index): memories of
   * ns taken as matches, hit with their score (match_scores[i], > 0),
   * exactly as the full-text match's would be (neighbours for the best
   * window_matches turns). limit must be 0 with them (the store matches
   * nothing itself) and every id needs its score: else ENGRAM_EINVAL.
   * Unknown ids, other namespaces and unwanted types are left out. */
  const char *const *match_ids;
  const double *match_scores;
  size_t nmatch_ids;
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
  unsigned char *vhit;     /* 1: one of the query's ids */
} store_candidates;

/* An empty set with room for n entries (the backends fill it and set n);
 * NULL when out of memory. */
store_candidates *store_candidates_new(size_t n);
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

/* The vector index's catch-up (src/search/vector_index.c): one page of the
 * memories of ns stamped after a point, with their vectors of one space.
 * Owned by the caller until the start function returns. */
typedef struct store_vectors_query {
  const char *ns;
  const char *embedder; /* the space: name and dim */
  uint32_t dim;
  int64_t after_seq;    /* rows stamped after this; -1: every row */
  /* Continuing a catch-up: rows after (after_row_seq, after_id) in
   * (vseq, id) order; after_id NULL: from the start (after_seq). */
  int64_t after_row_seq;
  const char *after_id;
  size_t limit;         /* rows per page, >= 1 */
  int removed;          /* 1: also the ids removed after after_seq */
  /* The lexical index's catch-up (src/search/lexical_*.c) reads the same
   * pages: embedder NULL reads no vector (has_vector all 0, vectors
   * NULL); terms 1 gives each row its indexed terms (store_vectors:
   * term_start, terms, doc_len). */
  int terms;
  /* With terms (the cache asks on a catch-up's first page): these
   * search words (core_search_words') as the index sees them, in
   * page->qterms: each word through the backend's own tokenizer and
   * stemmer, every term it gives (distinct within the word). Several
   * searches share a catch-up, so the words are theirs together and the
   * answer is per word. NULL or 0: none. */
  const char *const *query_words;
  size_t nquery_words;
} store_vectors_query;

/* One indexed term of a row: its text (NUL-terminated, at
 * store_vectors.term_text + text) and how often it occurs in the row's
 * content and in its metadata's text values, as the backend's full-text
 * index counts them. */
typedef struct store_term {
  uint32_t text;
  uint32_t tf_content;
  uint32_t tf_meta;
} store_term;

/* One page, one owned allocation per array, freed by store_vectors_free.
 * Rows are in (vseq, id) order. */
typedef struct store_vectors {
  int64_t ns_seq;   /* the namespace's sequence at the read (0: never
                       written) */
  size_t n;
  char (*ids)[ENGRAM_ID_LEN + 1];
  int64_t *seq;     /* each row's vseq */
  unsigned char *type; /* engram_type */
  unsigned char *has_vector; /* 0: no vector of the space (drop the id) */
  float *vectors;   /* n * dim; a row without a vector is zeros */
  size_t nremoved;
  char (*removed)[ENGRAM_ID_LEN + 1];
  /* With terms (else all NULL / 0): row i's distinct terms are
   * terms[term_start[i] .. term_start[i + 1]) (term_start has n + 1
   * entries), its length doc_len[i]: the tokens of its content and
   * metadata values the index counts (what BM25's length normalization
   * uses). Query word w's terms are qterms[qterm_start[w] ..
   * qterm_start[w + 1]) (qterm_start has nquery_words + 1 entries; NULL
   * without query words), offsets into term_text like store_term.text. */
  uint32_t *term_start;
  store_term *terms;
  uint32_t *doc_len;
  char *term_text;
  size_t term_text_len;
  uint32_t *qterm_start;
  uint32_t *qterms;
  size_t nqterms;
} store_vectors;

void store_vectors_free(store_vectors *v);

/* A vectors operation in flight, like store_candidates_req: cb exactly
 * once, on the loop, never inside the start function; with 0 and the page
 * (the callee owns it), an error and a message, or ENGRAM_ECANCELED. */
typedef struct store_vectors_req store_vectors_req;
typedef void (*store_vectors_cb)(store_vectors_req *req, int status,
                                 const char *message, store_vectors *page);
struct store_vectors_req {
  store_vectors_cb cb;
  void *data;
  void *impl;
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
  /* The vector index's catch-up (see store_vectors_query). 0: req->cb
   * follows; else an error and no callback. */
  int (*vectors)(store *st, const store_vectors_query *q,
                 store_vectors_req *req);
  void (*vectors_cancel)(store *st, store_vectors_req *req);
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
  /* The database's vector space ("NAME/DIM", "" when it has none yet):
   * read by open, kept current by the writer after each commit (on the
   * loop). Another process may change it (engram_reembed there); the
   * writer checks the recorded value inside each transaction. */
  char space[STORE_SPACE_LEN];
};

/* Counts one group commit of ops writes in the store's statistics. */
void store_count_group(store *st, uint64_t ops);
/* Marks batch b failed: its first op with a status keeps its own status
 * and message and becomes the batch's; every other op says it was not
 * written because of that op, or, when no op failed, gets code and why. */
void store_batch_fail(store_batch *b, int code, const char *why);
/* Free n history entries / relationships a backend built for a read
 * callback (the strings and the array). */
/* Rows a backend's stream has decoded and holds for its consumer, in
 * order: a node (owned), or a row that failed to decode (node NULL; code
 * and msg say why). */
typedef struct store_item {
  engram_node *node;
  int code;
  char *msg;
} store_item;

typedef struct store_items {
  store_item *v;
  size_t n, cap;
} store_items;

/* Appends a row: node (owned from now on), or NULL with code and msg. 0, or
 * ENGRAM_ENOMEM (node freed). */
int store_items_push(store_items *b, engram_node *node, int code,
                     const char *msg);
/* Frees the rows from index `from` on (those before were handed over) and
 * empties the buffer. */
void store_items_drop(store_items *b, size_t from);
/* Drops every row and frees the array. */
void store_items_free(store_items *b);

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
