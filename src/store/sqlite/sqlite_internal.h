/*
 * sqlite_internal.h — the SQLite backend's shared state (internal to
 * src/store/sqlite/).
 *
 * One sqlite_store per engram handle. It owns one writer connection, fed by
 * a queue of batches that commit in groups (sqlite_writer.c), and a pool of
 * read-only connections handed out in FIFO order (sqlite_pool.c) to point
 * reads (sqlite_read.c) and to streams (sqlite_stream.c, sqlite_traverse.c).
 * Every field is touched on the loop thread only, except a connection (and
 * its cached statements) while the one thread-pool task that holds it runs:
 * a connection is never used by two threads at once, which is why they are
 * opened with SQLITE_OPEN_NOMUTEX.
 *
 * Closing waits, by callback, until the write queue is empty, every
 * offloaded task has returned (`tasks`) and every reader is free; only then
 * are the connections closed, on the thread pool.
 */
#ifndef ENGRAM_SQLITE_INTERNAL_H
#define ENGRAM_SQLITE_INTERNAL_H

#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>

#include "store/store.h"

#define SQ_SCHEMA_VERSION 3 /* the newest schema this code knows */
#define SQ_DEFAULT_PATH "./data/engram.db"
#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_MSG_LEN 256
#define SQ_READER_MMAP "268435456" /* bytes a reader maps of the file */

/* The struct that embeds member at ptr. */
#define SQ_CONTAINER(ptr, type, member)                                        \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* The columns every memory row is read with, in this order (sqlite_row.c
 * decodes them starting at a given column index). */
#define SQ_NODE_COLUMNS                                                        \
  "m.id, m.ns, m.type, m.content, m.content_hash, m.created_ms, "              \
  "m.updated_ms, m.accessed_ms, m.importance, m.metadata, m.embedding, "       \
  "m.embedding_dim, m.embedder"
#define SQ_NODE_NCOLUMNS 13

/* The text values of a row's metadata object, space-joined (NULL when it
 * has none): what the full-text index holds beside the content, so that a
 * speaker, a session's date or a tag is found like a word of the memory
 * (the column `meta` of memories_fts, sqlite_schema.c). The vectors
 * operation computes it again to split it as the index did. */
#define SQ_META_TEXT(row)                                                      \
  "(SELECT group_concat(value, ' ') FROM json_each(" row ".metadata)"          \
  " WHERE type = 'text')"

/* Statements a reader connection prepares once and keeps (sqlite_pool.c). */
typedef enum reader_stmt_kind {
  RS_GET_NS,     /* memory by id in a namespace */
  RS_GET_ANY,    /* memory by id, any namespace */
  RS_HISTORY,    /* history of an id in a namespace */
  RS_RELS,       /* relationships of an id, both directions */
  RS_LIST_NS,    /* keyset page in one namespace */
  RS_LIST_ALL,   /* keyset page over all namespaces */
  RS_SEARCH,     /* FTS5 match, ranked */
  RS_NEIGHBOURS, /* traverse: ids linked to an id, both directions */
  RS_CAND_HITS,   /* candidates: the newest matches, to engram_rank's sink */
  RS_CAND_HITS_ALL, /* candidates: every match, to engram_rank's sink */
  RS_CAND_BEFORE, /* candidates: ids before an id in a namespace */
  RS_CAND_AFTER,  /* candidates: ids after an id in a namespace */
  RS_CAND_NODES,  /* candidates: memories by rowid (a JSON array) */
  RS_CAND_IDS,    /* candidates: memories by id (a JSON array), in ns */
  RS_TERM_DF,     /* rows holding an index term (sqlite_terms.c) */
  RS_DATA_VERSION, /* PRAGMA data_version (sqlite_terms.c) */
  RS_NS_ALONE,    /* candidates: is a namespace the only one? */
  RS_DOCSIZE,     /* candidates: a row's length in words (FTS5's docsize) */
  RS_CAND_ROW,    /* candidates: a matching row's id and type */
  RS_VEC_SEQ,     /* vectors: the namespace's change sequence */
  RS_VEC_PAGE,    /* vectors: rows after a (vseq, id), in that order */
  RS_VEC_PAGE_NOVEC,       /* the same, without the vector columns */
  RS_VEC_PAGE_TERMS,       /* the same, with the indexed text */
  RS_VEC_PAGE_TERMS_NOVEC, /* the indexed text, no vector */
  RS_VEC_REMOVED, /* vectors: ids removed after a sequence */
  RS_COUNT
} reader_stmt_kind;

typedef struct sqlite_terms sqlite_terms;
typedef struct sqlite_reader {
  sqlite3 *db;
  sqlite3_stmt *stmt[RS_COUNT];
  sqlite_terms *terms; /* sqlite_terms.c, made at first use; NULL before */
  struct sqlite_reader *next_free;
} sqlite_reader;

/* A request for a reader: queued on the loop, never on a thread. */
typedef struct reader_wait reader_wait;
struct reader_wait {
  void (*granted)(reader_wait *w, sqlite_reader *rd);
  reader_wait *prev, *next;
  int queued;
};

/* The writer's statements, prepared on first use and kept. */
typedef enum writer_stmt_kind {
  WS_FIND_DUP,
  WS_INSERT,
  WS_FIND_FOR_CHANGE,
  WS_UPDATE,
  WS_DELETE,
  WS_DELETE_RELS_SOURCE,
  WS_DELETE_RELS_TARGET,
  WS_HISTORY,
  WS_EXISTS,
  WS_LINK,
  WS_UNLINK,
  WS_BUMP_SEQ,
  WS_REMOVED,
  WS_GET_SPACE,
  WS_SET_SPACE,
  WS_SET_VECTOR,
  WS_COUNT
} writer_stmt_kind;

enum { SS_NEW, SS_OPENING, SS_OPEN, SS_FAILED, SS_CLOSING, SS_CLOSED };

/* One group commit in flight: whole batches taken from the queue. */
typedef struct write_group {
  rt_work work;
  struct sqlite_store *st;
  store_batch *batches; /* linked by ->next */
  int committed;        /* COMMIT succeeded */
} write_group;

typedef struct sqlite_store {
  struct store head; /* first: a sqlite_store is a store */
  char *path;
  int durability;
  unsigned nreaders;
  unsigned batch_max;
  unsigned chunk_rows;
  int state;
  uint64_t tasks; /* thread-pool tasks of this store not yet returned */

  /* open */
  rt_work open_work;
  store_open_cb open_cb;
  void *open_data;
  int open_status;
  rt_work reject_work; /* an open in the wrong state, refused */
  store_open_cb reject_cb;
  void *reject_data;
  char open_msg[SQ_MSG_LEN];

  /* close */
  int close_requested;
  int close_started;
  rt_work close_work;
  store_close_cb close_cb;
  void *close_data;

  /* writer */
  sqlite3 *writer;
  sqlite3_stmt *wstmt[WS_COUNT];
  store_batch *queue_head, *queue_tail;
  int writing; /* a group is on the thread pool */
  write_group group;
  /* The vector space as the running group sees it (thread-pool side);
   * copied to head.space after a commit. */
  char wspace[STORE_SPACE_LEN];

  /* readers */
  sqlite_reader *readers; /* nreaders of them */
  sqlite_reader *free_readers;
  unsigned readers_held;
  reader_wait *wait_head, *wait_tail;
} sqlite_store;

/* sqlite_store.c */
/* Counts a task of this store and offloads it. */
int sqlite_offload(sqlite_store *st, rt_work *w, rt_work_fn run,
                   rt_after_fn after);
/* Call at the start of every `after` of a task started by sqlite_offload. */
void sqlite_task_returned(sqlite_store *st);
/* Starts closing once the store is quiet (no task, no reader, no write). */
void sqlite_maybe_close(sqlite_store *st);

/* sqlite_schema.c (thread-pool side) */
/* Opens the writer, sets pragmas, migrates; then opens the readers.
 * Returns 0 or an ENGRAM_E* code with a message in msg. */
int sqlite_schema_open(sqlite_store *st, char *msg, size_t msglen);
/* Finalizes cached statements and closes every connection. */
void sqlite_schema_close_all(sqlite_store *st);

/* sqlite_pool.c (loop side, except reader_stmt) */
/* A free reader now, or NULL: then w->granted runs later, on the loop. */
sqlite_reader *sqlite_reader_acquire(sqlite_store *st, reader_wait *w,
                                     void (*granted)(reader_wait *,
                                                     sqlite_reader *));
/* Takes w out of the wait queue (it was not granted). */
void sqlite_reader_unwait(sqlite_store *st, reader_wait *w);
/* Resets and unbinds the reader's statements, gives it to the next waiter. */
void sqlite_reader_release(sqlite_store *st, sqlite_reader *rd);
/* The reader's cached statement of that kind, prepared on first use; on the
 * thread that holds the reader. NULL with *rc set on failure. */
sqlite3_stmt *sqlite_reader_stmt(sqlite_reader *rd, reader_stmt_kind kind,
                                 int *rc);
/* Resets every statement of the reader (ends its read transaction). */
void sqlite_reader_reset(sqlite_reader *rd);

/* A read that runs as one task holding a reader (the candidates and the
 * vectors operations): waiting for the reader, the task, its return to
 * the loop and cancellation, kept in one place. Embed it in the request;
 * set st, run and done, then start it. */
typedef struct sqlite_read_task sqlite_read_task;
struct sqlite_read_task {
  sqlite_store *st;
  /* On a pool thread, with rd (NULL when started without a reader, or
   * cancelled while waiting for one: stop is then set). */
  void (*run)(sqlite_read_task *t);
  /* On the loop, once, the reader given back: status 0 (what run found
   * stands), ENGRAM_ECANCELED, or ENGRAM_ENOMEM (the task could not be
   * queued when a reader came). Calls the request back and frees it;
   * t is gone when it returns. */
  void (*done)(sqlite_read_task *t, int status);
  const char *what; /* for the log: "search", "vector read" */
  sqlite_reader *rd;
  atomic_int stop; /* cancelled: run stops at its next statement */
  int running;     /* the task is queued or running */
  int cancelled;
  rt_work work;
  reader_wait wait;
};
/* Starts t: with a reader (or once one is free) when `reader`, else at
 * once without one. 0, or ENGRAM_ENOMEM when nothing started (done will
 * not run; the caller frees the request). */
int sqlite_read_task_start(sqlite_read_task *t, int reader);
/* Cancels t; idempotent. A queued task is withdrawn, a running one stops
 * at its next statement or inside this one (sqlite3_interrupt), one still
 * waiting for a reader leaves the queue and runs with nothing to do;
 * either way done follows once, later, with ENGRAM_ECANCELED. */
void sqlite_read_task_cancel(sqlite_read_task *t);

/* sqlite_row.c (any thread) */
/* Decodes the SQ_NODE_COLUMNS starting at column col into one owned
 * allocation (engram_node_free releases it). Returns 0, or ENGRAM_ECORRUPT /
 * ENGRAM_EUTF8 / ENGRAM_ENOMEM with a message naming the row. */
int sqlite_row_node(sqlite3_stmt *stmt, int col, engram_node **out, char *msg,
                    size_t msglen);
/* Maps an SQLite result code to an ENGRAM_E* code. */
int sqlite_code(int rc);
/* Writes "what: sqlite's message" into msg; returns sqlite_code(rc). */
int sqlite_fail(sqlite3 *db, int rc, const char *what, char *msg,
                size_t msglen);

/* sqlite_writer.c */
int sqlite_writer_write(store *base, store_batch *b);
/* Starts a group when idle and the queue is not empty (loop). */
void sqlite_writer_kick(sqlite_store *st);
/* Finalizes the writer's statements (thread pool, at close). */
void sqlite_writer_finalize(sqlite_store *st);

/* sqlite_read.c */
int sqlite_read_get(store *base, const char *ns, const char *id,
                    engram_get_cb cb, void *data);
int sqlite_read_history(store *base, const char *ns, const char *id,
                        engram_history_cb cb, void *data);
int sqlite_read_relationships(store *base, const char *ns, const char *id,
                              engram_rels_cb cb, void *data);

/* sqlite_stream.c: the cursor machinery shared by the three streams. */
typedef struct sqlite_cursor sqlite_cursor;
typedef struct cursor_kind {
  /* Thread pool: produce up to cur->want items with bounded work; set
   * cur->at_end at the end of data, or cur->rc and cur->msg on failure. */
  void (*chunk)(sqlite_cursor *cur);
  /* Frees the kind's own state (after the stream's done). */
  void (*destroy)(sqlite_cursor *cur);
} cursor_kind;

struct sqlite_cursor {
  sqlite_store *st;
  engram_stream *s;
  const cursor_kind *kind;
  sqlite_reader *rd; /* held from the first chunk to the end */
  reader_wait wait;
  rt_work work;
  int running;     /* a chunk is on the thread pool */
  int emitting;    /* chunk_after is handing items to the consumer */
  int cancelled;   /* cancel arrived while a chunk ran */
  atomic_int stop; /* the same, for the chunk on the thread pool to see */
  int ended;       /* reader released, stream_finish called */
  int counted;     /* counted in queries_running */
  int empty;       /* nothing to query: finish at the first pull */
  size_t want;
  store_items items; /* the chunk's rows, handed over by chunk_after */
  int at_end;
  int rc;
  char msg[SQ_MSG_LEN];
};

/* Initialises the cursor and attaches it as s's producer. */
void sqlite_cursor_attach(sqlite_cursor *cur, sqlite_store *st,
                          engram_stream *s, const cursor_kind *kind);
/* Worker side: appends a decoded row (or its failure). 0, or ENGRAM_ENOMEM. */
int sqlite_cursor_push(sqlite_cursor *cur, engram_node *node, int code,
                       const char *msg);
/* Chunk worker helper: decode the memory row at column col and push it;
 * returns 1 when an item (not an error) was pushed. */
int sqlite_cursor_push_row(sqlite_cursor *cur, sqlite3_stmt *stmt, int col,
                           double relevance, uint32_t depth);

/* sqlite_match.c: the FTS5 expression for a user's words, in *out (free
 * it; NULL when there is no word), and how many tokens it has. 0 or
 * ENGRAM_ENOMEM. */
int sqlite_match_build(const char *text, size_t len, char **out,
                       size_t *tokens);
/* The same, ANDed with the namespace's tag: `ns_tag : "n<HEX>" AND
 * {content meta} : (...)`. The tag is the expression's first phrase
 * (engram_rank's skip). Hybrid search's match before pruning, kept as the
 * reference tests/test_search_scale.c compares the pruned one with. */
int sqlite_match_build_ns(const char *ns, const char *text, size_t len,
                          char **out, size_t *tokens);
/* A query's search words, kept apart (core_search_words): word i is the
 * NUL-terminated text + off[i], len[i] bytes, matched as a prefix when
 * cut[i]. */
typedef struct sqlite_words {
  char *text;
  size_t *off, *len;
  unsigned char *cut;
  size_t n;
  size_t cap, used, text_cap; /* building */
  int failed;
} sqlite_words;
/* 0 or ENGRAM_ENOMEM (then *out holds nothing to free). */
int sqlite_words_collect(const char *text, size_t len, sqlite_words *out);
void sqlite_words_free(sqlite_words *w);
/* An expression of hybrid search's candidates: the namespace's tag (ns
 * NULL: none, the file holds that namespace alone), AND `ngroups` groups,
 * each a disjunction of words that match in the word columns: group g is
 * the next group_len[g] words of idx (indices into w). tagged: per word of
 * w, whether it needs the word columns' filter (sqlite_terms_df); NULL:
 * every word does. The phrases are numbered in that order after the tag
 * (engram_rank's skip counts the tag and any group that is a filter
 * only). *out NULL when ngroups is 0. 0 or ENGRAM_ENOMEM. */
int sqlite_match_build_groups(const char *ns, const sqlite_words *w,
                              const unsigned char *tagged, const size_t *idx,
                              const size_t *group_len, size_t ngroups,
                              char **out);

int sqlite_stream_search(store *base, const store_query *q, engram_stream *s);
int sqlite_stream_list(store *base, const store_query *q, engram_stream *s);
/* sqlite_candidates.c: store_ops.candidates and candidates_cancel. */
int sqlite_candidates(store *base, const store_candidates_query *q,
                      store_candidates_req *req);
void sqlite_candidates_cancel(store *base, store_candidates_req *req);
/* sqlite_vectors.c: store_ops.vectors and vectors_cancel. */
int sqlite_vectors(store *base, const store_vectors_query *q,
                   store_vectors_req *req);
void sqlite_vectors_cancel(store *base, store_vectors_req *req);

/* sqlite_terms.c (the thread that holds the reader) */
/* Makes the reader's vocabulary table, tokenizer and cache of counts when
 * it has none yet (before its read transaction). An SQLite result code. */
int sqlite_terms_open(sqlite_reader *rd);
/* Inside the read transaction, before sqlite_terms_df: empties the cache
 * of counts if the database changed since they were taken. */
int sqlite_terms_sync(sqlite_reader *rd);
/* How many rows hold a search word (cut: matched as a prefix): *select,
 * an upper bound to choose words by (0: no row can match it), and *exact,
 * the count engram_rank's idf needs, or -1 where engram_rank must count
 * itself; *tagged: 1 when the word could match a namespace tag (the
 * ns_tag column holds one term a row, "n" and hex digits), so its phrase
 * needs the word columns' filter. An SQLite result code. */
int sqlite_terms_df(sqlite_reader *rd, const char *word, size_t len, int cut,
                    double *select, double *exact, int *tagged);
/* Splits text as the full-text index does (flags: FTS5_TOKENIZE_DOCUMENT
 * as for a row's column, FTS5_TOKENIZE_QUERY as for a query) with the
 * reader's tokenizer, calling cb for each token as FTS5's xTokenize does.
 * An SQLite result code (cb's, if it stopped the split). */
int sqlite_terms_tokenize(sqlite_reader *rd, int flags, const char *text,
                          size_t len, void *ctx,
                          int (*cb)(void *ctx, int tflags, const char *token,
                                    int len, int start, int end));
/* FTS5 keeps this many bytes of a longer token (fts5Int.h's
 * FTS5_MAX_TOKEN_SIZE): the term the index holds for it. */
#define SQ_FTS5_MAX_TOKEN 32768
/* Frees a reader's term state (NULL: nothing), before its connection
 * closes. */
void sqlite_terms_free(sqlite_terms *t);

/* sqlite_traverse.c */
int sqlite_stream_traverse(store *base, const store_query *q, engram_stream *s);

/* BM25 parameters of engram_rank() without arguments (lexical search). */
#define SQ_RANK_K1 1.2
#define SQ_RANK_B 0.75

/* Registers engram_rank() (sqlite_rank.c) on a connection that searches. */
int sqlite_rank_register(sqlite3 *db);

/* engram_rank's sink: bound as its sixth argument with
 * sqlite3_bind_pointer(stmt, i, sink, SQ_RANK_SINK, NULL), engram_rank
 * scores no row but records, in order, each row's rowid and the term
 * frequencies of the scored phrases (the phrases after the first skip),
 * with the query's statistics, and gives NULL. The caller owns it (zeroed
 * before use, sqlite_rank_sink_free after). */
#define SQ_RANK_SINK "engram_rank_sink"
typedef struct sqlite_rank_sink {
  int ready;       /* the statistics are set (at the first row) */
  size_t nscored;  /* term frequencies per row */
  double avgdl;    /* words per row, on average */
  double *idf;     /* per scored phrase */
  size_t n, cap;   /* rows */
  sqlite3_int64 *rowid;
  double *tf;      /* row i's at tf + i * nscored */
} sqlite_rank_sink;
void sqlite_rank_sink_free(sqlite_rank_sink *s);

#endif
