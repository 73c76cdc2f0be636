/*
 * engram.h — long-term memory for LLM agents: the public C API.
 *
 * Shape (after libuv): opaque handles, every asynchronous operation is
 * "start with a callback", every error a negative ENGRAM_E* integer that
 * engram_strerror() explains. All callbacks run on the handle's libuv loop
 * thread; no engram function may be called from another thread.
 *
 * Lifecycle:
 *
 *   engram *eg;
 *   engram_init(&eg, NULL, NULL);        // NULL loop: engram makes its own
 *   engram_open(eg, on_open, app);       // async: schema, connections
 *   engram_run(eg);                      // runs the loop until idle
 *   engram_free(eg);                     // after engram_close() completed
 *
 * Ownership rules, everywhere in this header:
 *   - Input strings and arrays are copied before a start function returns;
 *     the caller may free them at once.
 *   - Pointers handed to a callback are valid only until it returns; use
 *     engram_node_copy() to keep a node.
 *   - A start function that returns an error never calls its callback.
 */
#ifndef ENGRAM_H
#define ENGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENGRAM_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

enum {
  ENGRAM_OK = 0,
  ENGRAM_EINVAL = -1,     /* an argument is invalid (the message says which) */
  ENGRAM_ENOMEM = -2,     /* out of memory */
  ENGRAM_ENOTFOUND = -3,  /* no such memory (in that namespace) */
  ENGRAM_EEXIST = -4,     /* a memory with that id already exists */
  ENGRAM_ECANCELED = -5,  /* the operation was cancelled */
  ENGRAM_ETIMEDOUT = -6,  /* the deadline passed */
  ENGRAM_EIO = -7,        /* the storage failed (disk, I/O, server) */
  ENGRAM_ETOOBIG = -8,    /* content is over the configured size limit */
  ENGRAM_EUTF8 = -9,      /* text is not valid UTF-8 */
  ENGRAM_EVERSION = -10,  /* the database was made by a newer engram */
  ENGRAM_ECLOSED = -11,   /* the handle is closing or not open */
  ENGRAM_EJSON = -12,     /* metadata is not a JSON object */
  ENGRAM_ECORRUPT = -13,  /* the file is not an engram database */
  ENGRAM_EBUSY = -14,     /* the storage is locked by someone else */
  ENGRAM_EEMBEDDER = -15, /* the database's vectors are another embedder's
                             (see engram_reembed) */
};

/* A sentence explaining code; never NULL. */
const char *engram_strerror(int code);
/* The symbolic name of code ("ENGRAM_ENOTFOUND"); never NULL. */
const char *engram_errname(int code);

/* --------------------------------------------------------- memory model */

typedef enum engram_type {
  ENGRAM_EPISODIC = 0, /* something that happened: a conversation turn */
  ENGRAM_SEMANTIC = 1, /* a fact */
  ENGRAM_PROCEDURAL = 2, /* how to do something */
  ENGRAM_WORKING = 3,  /* short-lived context: an exchange, a scratch note */
} engram_type;
#define ENGRAM_TYPE_COUNT 4

/* "episodic", ...; NULL for an out-of-range value. */
const char *engram_type_name(engram_type type);
/* Parses a type name; 0 or ENGRAM_EINVAL. */
int engram_type_parse(const char *name, engram_type *out);

#define ENGRAM_ID_LEN 36 /* UUIDv7 text, lower-case hex with dashes */

/* One memory. In a stream item or a callback the strings point into storage
 * owned by engram; engram_node_copy() makes a single-allocation copy that
 * engram_node_free() releases. Text fields are NUL-terminated. */
typedef struct engram_node {
  char id[ENGRAM_ID_LEN + 1];
  const char *ns;
  engram_type type;
  const char *content; /* UTF-8 */
  size_t content_len;  /* bytes, without the NUL */
  uint64_t content_hash; /* XXH3-64 of content; de-duplication key in ns */
  int64_t created_ms;  /* Unix time, milliseconds */
  int64_t updated_ms;
  int64_t accessed_ms;
  double importance;   /* [0,1] */
  const char *metadata; /* a JSON object's text; "{}" when none */
  const float *embedding; /* NULL when none */
  uint32_t embedding_dim;
  const char *embedder; /* what made embedding ("hashed-v1", "http:MODEL",
                           "client"); NULL when there is none */
  /* Result-only fields: */
  double relevance; /* search: [0,1], higher is more relevant; else 0 */
  uint32_t depth;   /* traversal: hops from the start node; else 0 */
} engram_node;

engram_node *engram_node_copy(const engram_node *node);
void engram_node_free(engram_node *node);

/* Writes a fresh UUIDv7 (time-ordered, monotonic within the process). */
void engram_id_new(char out[ENGRAM_ID_LEN + 1]);
/* 1 when text is a UUID in engram's canonical form, else 0. */
int engram_id_valid(const char *text);

/* ------------------------------------------------------------- the handle */

typedef struct engram engram;

typedef enum engram_durability {
  ENGRAM_DURABILITY_NORMAL = 0, /* an acknowledged write survives a process crash */
  ENGRAM_DURABILITY_FULL = 1,   /* ... and a power loss (fsync per commit) */
} engram_durability;

/* Which embedder turns memories and queries into vectors
 * (docs/retrieval.md). Vectors are computed when a memory is written
 * (ADD, and UPDATE of the content) and stored with it, with the embedder's
 * name and dimension; the database records the one its vectors come from
 * and refuses to mix in another's (ENGRAM_EEMBEDDER) until engram_reembed()
 * has switched it. */
typedef enum engram_embedder_kind {
  ENGRAM_EMBEDDER_HASHED = 0, /* built in: hashed n-grams, no model; the
                                 default */
  ENGRAM_EMBEDDER_NONE = 1,   /* no vectors computed (yours are kept) */
  ENGRAM_EMBEDDER_HTTP = 2,   /* an OpenAI-compatible /v1/embeddings server */
} engram_embedder_kind;

typedef struct engram_embedder_options {
  engram_embedder_kind kind;
  unsigned dim;          /* hashed: 16..65536, 0: 384; http: 0: the
                            server's (learned from its first answer) */
  const char *url;       /* http: the server's root, "http://host:port" */
  const char *model;     /* http: the "model" field */
  size_t model_len;      /* bytes of model; 0: strlen(model) */
  const char *api_key;   /* http: sent as a Bearer token; NULL: none */
  unsigned batch;        /* http: texts per request; 0: 32 */
  unsigned concurrency;  /* http: requests in flight; 0: 4 */
  uint64_t timeout_ms;   /* http: per attempt; 0: 30000 */
  unsigned retries;      /* http: retries of 429/5xx/timeouts; 0: none */
} engram_embedder_options;

/* Parses a command-line style spec: "hashed", "hashed:DIM", "none", or
 * "http:MODEL@URL" (e.g. "http:nomic-embed-text@http://127.0.0.1:11434").
 * The strings of out point into spec. 0, or ENGRAM_EINVAL with a message
 * in msg (may be NULL). */
int engram_embedder_parse(const char *spec, engram_embedder_options *out,
                          char *msg, size_t msglen);

typedef struct engram_options {
  const char *db;            /* path of the SQLite file, or a PostgreSQL
                                connection string/URI ("postgres://...",
                                "host=... dbname=..."); NULL:
                                ./data/engram.db */
  engram_durability durability;
  size_t max_content_bytes;  /* 0: 65536 */
  unsigned readers;          /* reader connections; 0: 4 (SQLite) / 8
                                (PostgreSQL) */
  unsigned write_batch_max;  /* writes per group commit; 0: 1024 */
  unsigned chunk_rows;       /* rows a stream reads per thread-pool task; 0: 64 */
  engram_embedder_options embedder; /* zero: the hashed embedder, dim 384 */
} engram_options;

/* Fills opts with the defaults (all zero / NULL). */
void engram_options_init(engram_options *opts);

/* 1 when db names a PostgreSQL database (a postgres:// or postgresql://
 * URI, or a libpq "keyword=value ..." string), 0 when it is an SQLite
 * file path. */
int engram_db_is_postgres(const char *db);

/* Allocates a handle; no I/O. loop NULL: engram creates and owns a loop.
 * opts NULL: defaults. Strings in opts are copied. */
int engram_init(engram **out, uv_loop_t *loop, const engram_options *opts);

/* message: what went wrong, for a person (valid during the callback). */
typedef void (*engram_open_cb)(engram *eg, int status, const char *message,
                               void *data);
/* Opens (creating when missing) the database and applies migrations. */
int engram_open(engram *eg, engram_open_cb cb, void *data);

typedef void (*engram_close_cb)(engram *eg, void *data);
/* Stops accepting work, cancels open streams, lets queued writes commit
 * (acknowledged writes are never lost), closes the storage. cb may be NULL. */
void engram_close(engram *eg, engram_close_cb cb, void *data);

/* Frees a handle that is closed (or was never opened), and its own loop. */
void engram_free(engram *eg);

uv_loop_t *engram_loop(engram *eg);
/* Runs the handle's loop until nothing is left to do (uv_run DEFAULT).
 * For programs that let engram own the loop; never call from a callback. */
int engram_run(engram *eg);

#define ENGRAM_BATCH_BUCKETS 7

/* Counters for tests and metrics. */
typedef struct engram_stats {
  uint64_t streams_open;    /* streams whose done callback has not run */
  uint64_t queries_running; /* storage statements started and not finished */
  uint64_t writes_committed;
  uint64_t write_batches;   /* group commits */
  /* Group commits by the number of ops they committed: bucket i counts
   * groups of at most 4^i ops (1, 4, 16, 64, 256, 1024); the last, larger. */
  uint64_t write_batch_sizes[ENGRAM_BATCH_BUCKETS];
  uint64_t items_failed;    /* per-item errors reported by streams */
  uint64_t pool_tasks;      /* thread-pool tasks queued or running */
} engram_stats;
void engram_get_stats(engram *eg, engram_stats *out);

/* ----------------------------------------------------------------- writes */

typedef enum engram_op_kind {
  ENGRAM_OP_ADD = 0,
  ENGRAM_OP_UPDATE = 1,
  ENGRAM_OP_DELETE = 2,
  ENGRAM_OP_LINK = 3,   /* create or replace a relationship */
  ENGRAM_OP_UNLINK = 4, /* delete a relationship */
} engram_op_kind;

/* engram_op.set: which fields an UPDATE changes (ADD: which are given). */
#define ENGRAM_SET_CONTENT 0x1u
#define ENGRAM_SET_TYPE 0x2u
#define ENGRAM_SET_IMPORTANCE 0x4u
#define ENGRAM_SET_METADATA 0x8u
#define ENGRAM_SET_EMBEDDING 0x10u

/* One write. Zero-initialise, then fill what the kind needs. */
typedef struct engram_op {
  engram_op_kind kind;
  const char *ns; /* required */
  /* ADD: optional id to use (engram_id_new()); UPDATE, DELETE: the memory. */
  const char *id;
  engram_type type;    /* ADD, UPDATE */
  const char *content; /* ADD (required), UPDATE */
  size_t content_len;  /* 0: strlen(content) */
  double importance;   /* used when set has ENGRAM_SET_IMPORTANCE; ADD default 0.5 */
  const char *metadata; /* JSON object text; NULL: "{}" (ADD) */
  /* Your own vector. With an embedder configured (the default), engram
   * computes every vector itself, and one given here is accepted only when
   * `embedder` names the configured embedder and the dimension matches
   * (a restored backup); with ENGRAM_EMBEDDER_NONE it is stored as given,
   * under `embedder` (NULL: "client"). UPDATE: with ENGRAM_SET_EMBEDDING,
   * embedding NULL removes the vector. */
  const float *embedding;
  uint32_t embedding_dim;
  const char *embedder;
  unsigned set;   /* ENGRAM_SET_* */
  int dedup;      /* ADD: same content in ns returns the existing memory */
  /* LINK, UNLINK */
  const char *source;
  const char *target;
  const char *rel_kind; /* e.g. "reply-to"; 1..64 bytes */
  double strength;      /* [0,1] */

  /* Results, filled by engram. */
  int status;           /* 0 or ENGRAM_E* */
  int deduplicated;     /* ADD: 1 when an existing memory was returned */
  char result_id[ENGRAM_ID_LEN + 1]; /* ADD: the id stored (or found) */
  char message[160];    /* on error: what was wrong, for a person */
} engram_op;

/* ops: results filled in; status: 0 when the whole batch committed, else the
 * first failing op's code and nothing of the batch was written. */
typedef void (*engram_write_cb)(int status, engram_op *ops, size_t n,
                                void *data);

/* Writes n ops atomically: all commit in one transaction or none does. The
 * callback runs after the commit is durable at the configured level. Ops are
 * validated before this returns: an invalid op returns its error, sets that
 * op's status and message in the caller's array, and queues nothing. */
int engram_write(engram *eg, engram_op *ops, size_t n, engram_write_cb cb,
                 void *data);

/* The embedder of this handle: its name ("hashed-v1", "http:MODEL") and
 * dimension (0 for an HTTP embedder that has not answered yet); NULL and 0
 * with ENGRAM_EMBEDDER_NONE. */
const char *engram_embedder_name(engram *eg, uint32_t *dim);

/* Progress and end of engram_reembed: done is 0 while it runs (called
 * after each committed batch), 1 once, at the end, with status 0 or the
 * error that stopped it (message says what). */
typedef struct engram_reembed_progress {
  int done;
  int status;
  const char *message;
  uint64_t scanned;   /* memories looked at */
  uint64_t reembedded; /* memories given a vector of this embedder */
} engram_reembed_progress;
typedef void (*engram_reembed_cb)(const engram_reembed_progress *p,
                                  void *data);

/* Switches the database to this handle's embedder and gives every memory
 * (all namespaces) a vector from it, in batches (each committed before the
 * next is read). Memories whose vector is already this embedder's are
 * left alone, so an interrupted run resumes where it stopped. While it
 * runs, vector search sees only the memories already done. ENGRAM_EINVAL
 * with ENGRAM_EMBEDDER_NONE; ENGRAM_EBUSY when one is already running. */
int engram_reembed(engram *eg, engram_reembed_cb cb, void *data);

/* ------------------------------------------------------------------ reads */

typedef void (*engram_get_cb)(int status, const engram_node *node, void *data);
/* ns NULL: any namespace (explicitly crossing namespaces). */
int engram_get(engram *eg, const char *ns, const char *id, engram_get_cb cb,
               void *data);

typedef enum engram_event {
  ENGRAM_EVENT_ADD = 0,
  ENGRAM_EVENT_UPDATE = 1,
  ENGRAM_EVENT_DELETE = 2,
} engram_event;
const char *engram_event_name(engram_event event);

typedef struct engram_history_entry {
  engram_event event;
  const char *old_content; /* NULL for ADD */
  const char *new_content; /* NULL for DELETE */
  int64_t at_ms;
} engram_history_entry;
typedef void (*engram_history_cb)(int status,
                                  const engram_history_entry *entries,
                                  size_t n, void *data);
/* Oldest first. ENGRAM_ENOTFOUND when the memory never existed in ns. */
int engram_history(engram *eg, const char *ns, const char *id,
                   engram_history_cb cb, void *data);

typedef struct engram_rel {
  const char *source;
  const char *target;
  const char *kind;
  double strength;
  int64_t created_ms;
} engram_rel;
typedef void (*engram_rels_cb)(int status, const engram_rel *rels, size_t n,
                               void *data);
/* Relationships with id as source or target. */
int engram_relationships(engram *eg, const char *ns, const char *id,
                         engram_rels_cb cb, void *data);

/* ---------------------------------------------------------------- streams */

/* A stream delivers memories on demand:
 *  - engram_stream_request(s, n): the consumer can take n more items; the
 *    producer never delivers more than requested, and produces nothing
 *    until asked.
 *  - item: one memory, valid until the callback returns.
 *  - error (optional): one item failed; the stream goes on.
 *  - done: exactly once, with 0 (end of data), ENGRAM_ECANCELED,
 *    ENGRAM_ETIMEDOUT (deadline) or another error. After it no callback of
 *    the stream runs again and the stream handle is freed.
 *  - engram_stream_cancel(s): idempotent, safe from inside any callback of
 *    the stream; done follows later, never inside the cancel call.
 * A stream's memory use is bounded by what was requested. */
typedef struct engram_stream engram_stream;

typedef struct engram_stream_cbs {
  void (*item)(engram_stream *s, const engram_node *node, void *data);
  void (*error)(engram_stream *s, int code, const char *message, void *data);
  void (*done)(engram_stream *s, int status, void *data);
  void *data;
} engram_stream_cbs;

int engram_stream_request(engram_stream *s, size_t n);
void engram_stream_cancel(engram_stream *s);
/* Cancels the stream with ENGRAM_ETIMEDOUT timeout_ms from now (replacing an
 * earlier deadline). */
int engram_stream_set_deadline(engram_stream *s, uint64_t timeout_ms);
uint64_t engram_stream_delivered(const engram_stream *s);
uint64_t engram_stream_failed(const engram_stream *s);

/* How a search ranks (docs/api-search.md, docs/retrieval.md). */
typedef enum engram_strategy {
  ENGRAM_STRATEGY_DEFAULT = 0, /* the operation's own: lexical for
                                  engram_search, hybrid for context
                                  injection */
  ENGRAM_STRATEGY_LEXICAL = 1, /* BM25 over content, each memory alone */
  ENGRAM_STRATEGY_HYBRID = 2,  /* BM25 matches, the conversation around
                                  them (neighbours, session, speaker),
                                  optional vector fusion, importance, decay */
  ENGRAM_STRATEGY_VECTOR = 3,  /* cosine similarity of the embedder's
                                  vectors alone */
} engram_strategy;

/* The "engram_strategy" of a name ("lexical", "hybrid", "vector"); 0 or
 * ENGRAM_EINVAL. */
int engram_strategy_parse(const char *name, engram_strategy *out);
/* "lexical", "hybrid", "vector"; "default" for ENGRAM_STRATEGY_DEFAULT;
 * NULL when out of range. */
const char *engram_strategy_name(engram_strategy strategy);

/* The weights of hybrid search. Call engram_search_options_init() for the
 * defaults (measured on LoCoMo, see docs/retrieval.md), then change what
 * you want; every field is checked when a search starts (ENGRAM_EINVAL). */
typedef struct engram_search_options {
  unsigned candidates;     /* lexical matches ranked: 100 (1..1000) */
  unsigned max_scored;     /* the store's full-text match (lexical_index
                              0, or a namespace still loading): matches
                              scored at most per search, the newest kept
                              when the query's rarest words match more:
                              1536 (100..10000000; docs/retrieval.md,
                              "Scale") */
  unsigned lexical_index;  /* 1: the matches are the exact BM25 best of
                              the in-memory lexical index (the default);
                              0: the store's full-text match, pruned at
                              max_scored (docs/retrieval.md, "Scale") */
  unsigned window;         /* neighbours taken each side of a match: 2
                              (0..16) */
  unsigned window_matches; /* the best this many matches take their
                              neighbours (every vector hit does): 40
                              (0..1000; docs/retrieval.md) */
  double k1, b;            /* BM25: 0.6, 0.3 (k1 in [0,100], b in [0,1]) */
  double meta_weight;      /* a word in a metadata text value against one in
                              the content: 1.0 ([0,100]) */
  double neighbour_weight; /* a match gives weight * score / d to the
                              memory d places away: 0.5 ([0,10]) */
  double session_weight;   /* each memory gets weight * the best match of
                              its session: 0.3 ([0,10]) */
  double speaker_boost;    /* a match whose metadata "speaker" is named in
                              the query: score * (1 + boost): 1.0 ([0,10]) */
  int64_t session_gap_ms;  /* without a metadata "session", a gap longer
                              than this starts a new one: 30 minutes */
  double vector_weight;    /* weight of the vector ranking in the fusion:
                              0 (off; [0,10]) */
  double rrf_k;            /* reciprocal rank fusion constant: 60 (>= 1) */
  double importance_weight; /* score * (1 + w * (2 * importance - 1)):
                               0.2 ([0,1]) */
  int64_t half_life_ms;    /* temporal decay: score * 0.5^(age / half
                              life); 0: off (the default) */
} engram_search_options;

void engram_search_options_init(engram_search_options *opts);

/* Sets fields from text "NAME=VALUE,NAME=VALUE" (the field names above;
 * the _ms fields in milliseconds). 0, or ENGRAM_EINVAL with a message in
 * err naming the part that is not a known name with a number of its kind;
 * on an error nothing of opts is changed. Ranges are checked when a search
 * starts. */
int engram_search_options_set(engram_search_options *opts, const char *text,
                              char *err, size_t errlen);

typedef struct engram_query {
  const char *ns;   /* required for search; NULL in list: all namespaces */
  const char *text; /* search: the user's words, plain text (never syntax) */
  size_t text_len;  /* 0: strlen(text) */
  unsigned types;   /* bit (1u << type) per type wanted; 0: all */
  const char *after; /* list: cursor, the last id of the previous page */
  double min_relevance; /* search: drop results below this */
  /* search only: */
  engram_strategy strategy;
  const engram_search_options *options; /* hybrid; NULL: the defaults */
  /* Filters of the hybrid strategy (ENGRAM_EINVAL with lexical): a
   * top-level metadata key whose value (a string, or a number's JSON text)
   * equals meta_value; creation time in [created_after_ms,
   * created_before_ms), 0 for no bound. */
  const char *meta_key;
  const char *meta_value;
  int64_t created_after_ms;
  int64_t created_before_ms;
} engram_query;

/* Ranked content search, relevance in [0,1], best first. Lexical (the
 * default): BM25 over each memory's content. Hybrid: see engram_strategy
 * and engram_search_options. Vector: cosine similarity between the query's
 * and the memories' vectors (ENGRAM_EINVAL without an embedder,
 * ENGRAM_EEMBEDDER when the database's vectors are another embedder's).
 * A hybrid search whose ranking uses no vectors (vector_weight 0, the
 * default) delivers its memories without their embedding (engram_get has
 * it): reading 1.5 KB a memory it does not need would slow it down.
 * Text with no searchable word gives an empty stream; invalid UTF-8 is
 * ENGRAM_EUTF8. */
int engram_search(engram *eg, const engram_query *q,
                  const engram_stream_cbs *cbs, engram_stream **out);

/* Loads namespace ns into the handle's lexical index (hybrid search's
 * exact matches), then calls cb(0) — or cb with an error — on the loop,
 * never inside this call. Optional: a hybrid search of a namespace not
 * loaded yet starts the load itself and, rather than wait for it (a
 * namespace of 100,000 memories takes about a second on SQLite, three on
 * PostgreSQL), uses the store's pruned full-text match until it is done.
 * Call it where the first searches must be exact (a benchmark, a service
 * warming up). ENGRAM_EINVAL (no ns), ENGRAM_ECLOSED, ENGRAM_ENOMEM:
 * no callback. */
typedef void (*engram_preload_cb)(int status, const char *message,
                                  void *data);
int engram_preload(engram *eg, const char *ns, engram_preload_cb cb,
                   void *data);

/* Memories in id order (creation order), after q->after. Stable under
 * concurrent inserts: a page never repeats or skips an existing memory. */
int engram_list(engram *eg, const engram_query *q,
                const engram_stream_cbs *cbs, engram_stream **out);

/* Breadth-first from start_id over relationships (both directions) with
 * strength >= min_strength, up to max_depth hops; start_id itself first
 * (depth 0). Each memory once. */
int engram_traverse(engram *eg, const char *ns, const char *start_id,
                    uint32_t max_depth, double min_strength,
                    const engram_stream_cbs *cbs, engram_stream **out);

/* ------------------------------------------------------------ combinators */

/* A stream of at most n items of src; when it has them, src is cancelled
 * and the take stream ends with 0. Owns src from now on. */
int engram_stream_take(engram_stream *src, size_t n,
                       const engram_stream_cbs *cbs, engram_stream **out);

/* Collect-with-deadline: requests up to max items of src, and calls back
 * once with what arrived: status 0 (src ended or max reached), or
 * ENGRAM_ETIMEDOUT when timeout_ms passed first (src is cancelled, the items
 * that arrived in time are still given), or src's error. failed: per-item
 * errors seen. timeout_ms 0: no deadline. Owns src from now on. */
typedef struct engram_collect engram_collect;
typedef void (*engram_collect_cb)(int status, engram_node **nodes, size_t n,
                                  uint64_t failed, void *data);
int engram_collect_start(engram_stream *src, size_t max, uint64_t timeout_ms,
                         engram_collect_cb cb, void *data,
                         engram_collect **out);
/* Cancels: the callback follows with ENGRAM_ECANCELED and the items so far. */
void engram_collect_cancel(engram_collect *c);

/* ---------------------------------------------------------------- logging */

typedef enum engram_log_level {
  ENGRAM_LOG_ERROR = 0,
  ENGRAM_LOG_WARN = 1,
  ENGRAM_LOG_INFO = 2,
} engram_log_level;
typedef void (*engram_log_fn)(engram_log_level level, const char *message,
                              void *data);
/* Where engram reports what a caller cannot see otherwise (a per-item error
 * is logged once, where it happens). Default: stderr. fn NULL: silence. */
void engram_set_log(engram *eg, engram_log_fn fn, void *data);

/* ------------------------------------------------------ context injection */

typedef struct engram_context_options {
  unsigned max_memories;   /* 0: 10 */
  uint64_t timeout_ms;     /* 0: 250 */
  size_t max_memory_chars; /* characters of one memory's content; 0: 2000 */
  int no_headers;          /* 1: no section header line */
  double min_relevance;    /* [0,1] */
  unsigned types;          /* bit (1u << type) per type wanted; 0: all */
  engram_strategy strategy; /* default: hybrid */
  const engram_search_options *search; /* hybrid; NULL: the defaults */
} engram_context_options;

/* Valid during the callback. status: 0 (also when the deadline cut the
 * search short: timed_out is then 1 and the memories that arrived in time
 * are used), ENGRAM_ECANCELED, or the search's error; text and ids always
 * hold what arrived. */
typedef struct engram_context_result {
  int status;
  int timed_out;
  const char *text; /* the memory section for a prompt; "" when none */
  size_t text_len;
  size_t count;     /* memories used */
  const char *const *ids;
  double mean_relevance; /* over the memories used; 0 when none */
  uint64_t failed;  /* items that failed (each logged once) */
  double elapsed_ms;
} engram_context_result;

typedef struct engram_context_req engram_context_req;
typedef void (*engram_context_cb)(const engram_context_result *result,
                                  void *data);

/* Searches ns for message, collects up to max_memories as they stream in
 * (stopping the search the moment it has enough), and formats them. The
 * request is freed after the callback; out (optional) lets the caller
 * cancel it before then. */
int engram_context_inject(engram *eg, const char *ns, const char *message,
                          const engram_context_options *opts,
                          engram_context_cb cb, void *data,
                          engram_context_req **out);
/* Only before the callback ran: the search stops and the callback follows
 * with ENGRAM_ECANCELED (never inside this call). */
void engram_context_cancel(engram_context_req *req);

/* ------------------------------------------------------------- memorizing */

/* ids: user turn, assistant reply, exchange (working memory). */
typedef void (*engram_turn_cb)(int status, const char *user_id,
                               const char *assistant_id,
                               const char *exchange_id, const char *message,
                               void *data);
/* Stores user_text and assistant_text as episodic memories and the exchange
 * as a working memory, linked (reply-to: assistant -> user; part-of: each
 * -> exchange), in one transaction. */
int engram_memorize_turn(engram *eg, const char *ns, const char *user_text,
                         const char *assistant_text, engram_turn_cb cb,
                         void *data);

/* ------------------------------------------------------------------- chat */

/* A chat session: inject -> complete -> memorize, all on the loop. The
 * completion step is the caller's: engram calls `complete` with the memory
 * section and the user's message, and the caller answers later (from any
 * callback on the loop) with engram_chat_reply(). */
typedef struct engram_chat engram_chat;
typedef struct engram_chat_turn engram_chat_turn;

typedef void (*engram_complete_fn)(engram_chat_turn *turn,
                                   const char *context, const char *message,
                                   void *data);
/* status 0: reply was produced and memorized (ids valid); else the step
 * that failed. context: the injection result used for this turn. */
typedef void (*engram_chat_cb)(engram_chat_turn *turn, int status,
                               const char *reply,
                               const engram_context_result *context,
                               const char *user_id, const char *assistant_id,
                               void *data);

int engram_chat_new(engram *eg, const char *ns,
                    const engram_context_options *opts,
                    engram_complete_fn complete, void *complete_data,
                    engram_chat **out);
/* Frees the session; turns in flight are cancelled (their callbacks run
 * with ENGRAM_ECANCELED). */
void engram_chat_free(engram_chat *chat);
int engram_chat_send(engram_chat *chat, const char *message,
                     engram_chat_cb cb, void *data, engram_chat_turn **out);
/* The completion step's answer: status 0 and the reply text, or an error. */
int engram_chat_reply(engram_chat_turn *turn, int status, const char *reply);
/* Cancels a turn before its callback: the callback follows with
 * ENGRAM_ECANCELED; a reply given later is ignored. */
void engram_chat_cancel(engram_chat_turn *turn);

/* ------------------------------------------------------- the HTTP service */

/* engram serve: an HTTP/1.1 (and HTTP/2) JSON service on the handle's loop
 * (h2o on libuv: no second loop, no thread per connection). */
typedef struct engram_server engram_server;

typedef enum engram_log_format {
  ENGRAM_LOG_TEXT = 0,
  ENGRAM_LOG_JSON = 1,
} engram_log_format;

typedef struct engram_server_options {
  const char *listen;       /* "HOST:PORT"; NULL: "127.0.0.1:8420" */
  const char *keys_file;    /* NULL: no keys (then only loopback binds) */
  size_t max_body;          /* request body limit in bytes; 0: 1 MiB */
  engram_log_format log_format;
  FILE *access_log;         /* NULL: stderr */
  unsigned max_inflight;    /* requests at once before 429; 0: 4096 */
  uint64_t io_timeout_ms;   /* idle connection / slow client; 0: 10000 */
  uint64_t request_timeout_ms; /* default deadline of a request; 0: 10000 */
} engram_server_options;

void engram_server_options_init(engram_server_options *opts);

/* Starts listening. On error returns it and writes a sentence for a person
 * into err (a keys file that cannot be read, a non-loopback address without
 * keys, an address in use). The handle must be open. */
int engram_server_start(engram *eg, const engram_server_options *opts,
                        engram_server **out, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int engram_server_port(const engram_server *srv);
typedef void (*engram_server_stop_cb)(engram_server *srv, void *data);
/* Graceful stop: stops accepting, lets in-flight requests finish and their
 * responses be written, closes idle connections, then calls cb; the server
 * is freed after cb returns. The engram handle stays open. */
void engram_server_stop(engram_server *srv, engram_server_stop_cb cb,
                        void *data);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_H */
