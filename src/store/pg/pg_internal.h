/*
 * pg_internal.h — the PostgreSQL backend's shared state (internal to
 * src/store/pg/).
 *
 * Everything runs on the loop thread. A connection is a libpq PGconn in
 * non-blocking mode, always in pipeline mode once connected, whose socket is
 * watched by a uv_poll handle: no thread ever waits for the server. The one
 * blocking libpq call engram makes, PQcancel, runs as bounded work on the
 * thread pool (pg_conn_cancel).
 *
 * Layers inside the backend:
 *  - pg_conn.c: one connection. Connecting (PQconnectStart/PQconnectPoll),
 *    and the *exchange*: a holder queues commands (prepared statements from
 *    a static registry, prepared lazily on each connection, or plain
 *    parameterised SQL), ends them with a pipeline sync, and receives every
 *    result in order, then exactly one done callback.
 *  - pg_pool.c: a bounded set of connections. Holders wait in a FIFO queue
 *    on the loop; a released connection left inside a transaction is rolled
 *    back before anyone else gets it; a broken one is reconnected with
 *    backoff. While the server is unreachable, new requests fail at once
 *    with ENGRAM_EIO naming the server and the reason, instead of queueing
 *    without end.
 *  - pg_store.c (open/close, the vtable), pg_schema.c (migrations),
 *    pg_writer.c (group commit on the writer pool), pg_read.c (get, history,
 *    relationships), pg_stream.c (search and list as server-side cursors
 *    fetched as the consumer asks), pg_traverse.c, pg_row.c (decoding).
 *
 * Two pools: `writer` (one connection; every write goes through it, in
 * group commits like SQLite's writer) and `readers` (opts->readers
 * connections, default PG_DEFAULT_READERS), for point reads and streams.
 */
#ifndef ENGRAM_PG_INTERNAL_H
#define ENGRAM_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define PG_SCHEMA_VERSION 2 /* the newest schema this code knows */
#define PG_DEFAULT_READERS 8
#define PG_MSG_LEN 256
#define PG_MAX_STMTS 48        /* prepared statements one connection keeps */
#define PG_BACKOFF_MIN_MS 50   /* first reconnect delay after a failure */
#define PG_BACKOFF_MAX_MS 5000 /* reconnect delays double up to this */
#define PG_CONNECT_TIMEOUT_MS 10000

#define PG_CONTAINER(ptr, type, member)                                        \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* The columns every memory row is read with, in this order (pg_row.c
 * decodes them starting at a given column index). Text result format. */
#define PG_NODE_COLUMNS                                                        \
  "m.id, m.ns, m.type, m.content, m.content_hash, m.created_ms, "              \
  "m.updated_ms, m.accessed_ms, m.importance, m.metadata, m.embedding, "       \
  "m.embedding_dim, m.embedder"
#define PG_NODE_NCOLUMNS 13

/* The text search configuration (an SQL expression) that search parses
 * the user's words with (pg_stream.c, pg_candidates.c); it must be the one
 * memories.tsv is built with (pg_schema.c: accents folded, English stems,
 * no stop words), or words will not meet their lexemes. Found through the
 * search_path, like the tables. */
#define PG_TS_CONFIG "'engram_text'::regconfig"

/* Words this long may have been cut by core_tokenize: they match as a
 * prefix. */
#define PG_TOKEN_CUT "60" /* CORE_SEARCH_WORD_CUT, as SQL text */
/* Rows of a namespace counted exactly for BM25's N; past that, an
 * estimate. */
#define PG_COUNT_CAP "20000"
/* The types filter on a row alias: the mask is any unsigned int, which a
 * bigint holds. */
#define PG_TYPE_FILTER(alias, mask)                                            \
  "(" mask "::bigint = 0 OR ((1::bigint << " alias ".type) & " mask            \
  "::bigint) <> 0)"

/*
 * The BM25 scoring of search (pg_stream.c; hybrid search's candidates
 * compute the same scores from fewer rows, pg_terms.c, and
 * tests/test_pg_candidates.c holds them to these), as the
 * common table expressions of one statement (follow it with the SELECT
 * that reads `score`). Parameters: $1 the namespace, $2 the words (a
 * text[] of core_tokenize tokens), $3 the types mask; K1, B and MW (the
 * weight of a word found in the metadata) are SQL expressions.
 *
 * Every CTE is MATERIALIZED: inlined, the planner would recompute the
 * statistics once per hit.
 *  - tok: each word, and its query (phraseto_tsquery: plain text, no
 *    character of it is tsquery syntax); a cut word's last lexeme is a
 *    prefix. The hits match the OR of them.
 *  - lex: each word's lexemes.
 *  - hit: the namespace's matches of any type (the statistics do not
 *    depend on the type filter), by ctid (the caller's join reads the row
 *    without a second index lookup), with dl, the words of the row
 *    (content and metadata: every position).
 *  - occ: per hit and lexeme of a word, the term frequency: an occurrence
 *    in the content (weight A) counts 1, one in the metadata (B) MW; read
 *    in one pass over each hit's lexemes.
 *  - total: N (the namespace's rows, counted up to PG_COUNT_CAP; past
 *    that the table's estimated row count) and the hits' average length.
 *  - score: per hit of the wanted types, sum over the lexemes of
 *    idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl)), idf =
 *    ln(1 + (N - n + 0.5) / (n + 0.5)), n the hits that hold the lexeme:
 *    the formula of SQLite's engram_rank().
 */
#define PG_SCORE_CTES(K1, B, MW)                                               \
  "tok AS MATERIALIZED ("                                                      \
  " SELECT u.i, u.t, octet_length(u.t) >= " PG_TOKEN_CUT " AS prefix,"         \
  "  phraseto_tsquery(" PG_TS_CONFIG ", u.t) AS q"                             \
  " FROM unnest($2::text[]) WITH ORDINALITY AS u(t, i)),"                      \
  "lex AS MATERIALIZED ("                                                      \
  " SELECT tok.i, l.lex, tok.prefix FROM tok, unnest("                         \
  "  tsvector_to_array(to_tsvector(" PG_TS_CONFIG ", tok.t))) AS l(lex)),"     \
  "hit AS MATERIALIZED ("                                                      \
  " SELECT m.ctid AS tid, m.id, m.type, m.tsv,"                                \
  "  (SELECT greatest(sum(cardinality(u.positions)), 1) FROM unnest(m.tsv) u)" \
  "  ::float8 AS dl"                                                           \
  " FROM memories m WHERE m.ns = $1::text AND m.tsv @@ ("                      \
  "  SELECT string_agg('(' || q::text ||"                                      \
  "   CASE WHEN prefix THEN ':*' ELSE '' END || ')', ' | ')::tsquery"          \
  "  FROM tok WHERE numnode(q) > 0)),"                                         \
  "occ AS MATERIALIZED ("                                                      \
  " SELECT h.tid, h.id, h.type, h.dl, w.i, w.lex,"                             \
  "  sum(coalesce(cardinality(u.positions), 1) + ((" MW ") - 1)"               \
  "   * coalesce(cardinality(array_positions(u.weights, 'B')), 0))::float8"    \
  "   AS tf"                                                                   \
  " FROM hit h CROSS JOIN LATERAL unnest(h.tsv) u"                             \
  " JOIN lex w ON u.lexeme = w.lex"                                            \
  "  OR (w.prefix AND starts_with(u.lexeme, w.lex))"                           \
  " GROUP BY h.tid, h.id, h.type, h.dl, w.i, w.lex),"                          \
  "total AS MATERIALIZED ("                                                    \
  " SELECT CASE WHEN c.n < " PG_COUNT_CAP " THEN c.n ELSE greatest(c.n,"       \
  "  (SELECT reltuples FROM pg_class WHERE oid = 'memories'::regclass))"       \
  "  END AS n, (SELECT greatest(avg(dl), 1) FROM hit) AS avgdl"                \
  " FROM (SELECT count(*)::float8 AS n FROM (SELECT FROM memories"             \
  "  WHERE ns = $1::text LIMIT " PG_COUNT_CAP ") x) c),"                       \
  "score AS MATERIALIZED ("                                                    \
  " SELECT o.tid, o.id, sum(ln(1 + (greatest(t.n - o.n, 0) + 0.5)"             \
  "  / (o.n + 0.5)) * o.tf * ((" K1 ") + 1) / (o.tf + (" K1 ")"                \
  "  * (1 - (" B ") + (" B ") * o.dl / t.avgdl))) AS s"                        \
  " FROM (SELECT occ.*, count(*) OVER (PARTITION BY occ.i, occ.lex)::float8"   \
  "  AS n FROM occ) o CROSS JOIN total t"                                      \
  " WHERE " PG_TYPE_FILTER("o", "$3") " GROUP BY o.tid, o.id)"

typedef struct pg_store pg_store;
typedef struct pg_conn pg_conn;
typedef struct pg_pool pg_pool;

/* ------------------------------------------------------------ statements */

/* A statement prepared once per connection, on first use, under `name`.
 * Define them `static const` next to the code that runs them; parameters
 * are text and typed in the SQL ($1::uuid, $2::bigint, ...). */
typedef struct pg_stmt {
  const char *name; /* unique across the backend, e.g. "eg_get_ns" */
  const char *sql;
  int nparams;
} pg_stmt;

/* -------------------------------------------------------------- exchange */

/*
 * An exchange: a holder of an idle connection queues commands, then ends
 * the exchange; the connection flushes them and reads the results.
 *
 *  result(ex, cmd, res): for each PGresult of command number cmd (0-based,
 *    in the order queued), in order. Usually one per command; a command
 *    skipped because an earlier one failed gets PGRES_PIPELINE_ABORTED. res
 *    is freed by the connection when result returns (PQclear).
 *  done(ex, status, msg): exactly once, after the last result, never
 *    re-entrantly inside pg_exchange_end. status 0: every command answered
 *    (a command's own error came as its result); ENGRAM_EIO: the connection
 *    broke before every answer arrived (msg says why; what the server did
 *    with the commands is unknown). After done the connection is idle
 *    again (or broken) and may be given a new exchange or released.
 *
 * The exchange struct is the holder's (embed it); it must live until done.
 */
typedef struct pg_exchange pg_exchange;
struct pg_exchange {
  void (*result)(pg_exchange *ex, unsigned cmd, PGresult *res);
  void (*done)(pg_exchange *ex, int status, const char *msg);
  void *data;
  /* private to pg_conn.c */
  unsigned ncmds; /* commands queued */
  unsigned next;  /* the command whose results arrive now */
};

/* Starts an exchange on c (held, connected, idle). */
void pg_exchange_begin(pg_conn *c, pg_exchange *ex);
/* Queues a registered statement with text parameters (values[i] NULL: SQL
 * NULL). A failure to queue (libpq out of memory, connection gone) is
 * remembered and reported by done with ENGRAM_EIO after pg_exchange_end. */
void pg_exchange_stmt(pg_conn *c, const pg_stmt *stmt, const char *const *values,
                      const int *lengths);
/* Queues one SQL command without parameters, or with text parameters
 * (nparams may be 0). For BEGIN/COMMIT/DECLARE/FETCH and the like. */
void pg_exchange_sql(pg_conn *c, const char *sql, int nparams,
                     const char *const *values, const int *lengths);
/* Ends the exchange (pipeline sync) and starts sending; results follow. */
void pg_exchange_end(pg_conn *c);

/* Asks the server to cancel what c is running now (PQcancel, which blocks
 * on its own short-lived connection to the server, runs as bounded work on
 * the thread pool). The exchange still ends through its results: the
 * cancelled command fails with SQLSTATE 57014, or completes if it finished
 * first. The pool does not hand c to anyone else until the cancel request
 * has returned. No effect when c runs nothing. */
void pg_conn_cancel(pg_conn *c);

/* The connection's PGconn (for PQtransactionStatus, PQerrorMessage...). */
PGconn *pg_conn_pg(pg_conn *c);
/* 1 while c is connected and not broken. */
int pg_conn_ok(const pg_conn *c);

/* ------------------------------------------------------------------ pool */

typedef struct pg_wait pg_wait;
/* status 0: c is the waiter's until pg_pool_release. Otherwise c is NULL and
 * status is ENGRAM_EIO with msg naming the server and the reason (the
 * server became unreachable while the waiter queued) or ENGRAM_ECLOSED (the
 * store is closing). */
typedef void (*pg_granted_fn)(pg_wait *w, pg_conn *c, int status,
                              const char *msg);
struct pg_wait {
  pg_granted_fn granted;
  pg_wait *prev, *next;
  int queued;
};

/*
 * Acquires a connection of p:
 *  - 0 and *now set: a connection was free, it is the caller's now;
 *  - 0 and *now NULL: w is queued, w->granted follows later on the loop;
 *  - ENGRAM_EIO: the server is unreachable (every connection is down and
 *    the last attempt failed); pg_pool_error(p) says why. Nothing queued.
 *  - ENGRAM_ECLOSED: the pool is closing.
 */
int pg_pool_acquire(pg_pool *p, pg_wait *w, pg_granted_fn granted,
                    pg_conn **now);
/* Takes w out of the queue (it was not granted yet). */
void pg_pool_unwait(pg_pool *p, pg_wait *w);
/* Gives c back (no exchange running on it). Left in a transaction: the pool
 * rolls it back first; broken: the pool reconnects it. */
void pg_pool_release(pg_pool *p, pg_conn *c);
/* The last connection error, "PostgreSQL at HOST:PORT: reason". */
const char *pg_pool_error(const pg_pool *p);

/* ------------------------------------------------ pg_conn.c for pg_pool.c */

/* What a connection tells its owner (the pool). Never emitted re-entrantly
 * inside pg_conn_connect or pg_conn_close; PG_CONN_LOST may come from
 * inside pg_exchange_* (a send that failed) while the connection is held. */
typedef enum pg_conn_event {
  PG_CONN_UP,              /* connected: idle, non-blocking, pipeline mode */
  PG_CONN_FAILED,          /* an attempt failed; msg: libpq's reason */
  PG_CONN_LOST,            /* it broke; msg: "PostgreSQL at ...: connection
                              lost: ..." (a running exchange gets EIO) */
  PG_CONN_CANCEL_RETURNED, /* the PQcancel task has returned */
  PG_CONN_CLOSED           /* pg_conn_close finished; c is freed after */
} pg_conn_event;
typedef void (*pg_conn_event_fn)(pg_conn *c, void *data, pg_conn_event ev,
                                 const char *msg);
enum { PG_CONN_IS_DOWN, PG_CONN_IS_CONNECTING, PG_CONN_IS_READY,
       PG_CONN_IS_CLOSING };

/* A connection of st, not connected yet; NULL when out of memory. It owns a
 * timer handle from here on: only pg_conn_close ends it. */
pg_conn *pg_conn_new(pg_store *st, pg_conn_event_fn event, void *data);
/* Starts connecting a connection that is down: PG_CONN_UP or
 * PG_CONN_FAILED follows. */
void pg_conn_connect(pg_conn *c);
/* Closes c (no exchange may be running): handles, then PQfinish, waits for
 * a cancel task still out, then PG_CONN_CLOSED and c is freed. */
void pg_conn_close(pg_conn *c);
/* PG_CONN_IS_* */
int pg_conn_state(const pg_conn *c);
/* 1 while a PQcancel task of c is on the thread pool. */
int pg_conn_cancelling(const pg_conn *c);

/* ----------------------------------------------------------------- store */

enum { PS_NEW, PS_OPENING, PS_OPEN, PS_FAILED, PS_CLOSING, PS_CLOSED };

/* The group commit in flight on the writer connection: private to
 * pg_writer.c, embedded in pg_store so that it needs no allocation of its
 * own. */
typedef struct pg_write_cmd pg_write_cmd;
typedef struct pg_write_group {
  pg_wait wait;         /* acquiring the writer connection */
  pg_exchange ex;
  pg_conn *conn;        /* held while a group runs */
  store_batch *batches; /* the group, in queue order */
  size_t unfinished_ops; /* ops of batches written, not called back yet */
  pg_write_cmd *cmds;   /* what each queued command is for */
  size_t ncmds, cmds_cap;
  char *hex;            /* an embedding as bytea text */
  size_t hex_cap;
  int committed;        /* COMMIT answered COMMIT */
  int failed;           /* a command failed (the first one is recorded) */
  size_t failed_cmd;
  char failed_state[6];
  int failed_by_server; /* severity ERROR: the server aborted the group */
  char failed_msg[PG_MSG_LEN];
  PGconn *helper_pg;    /* the session that has the pg_temp helper */
  int helper_pid;
  unsigned retries;     /* reruns of this group after transient failures */
} pg_write_group;

struct pg_pool {
  pg_store *st;
  const char *role; /* "writer" or "reader", for messages */
  pg_conn **conns;
  unsigned nconns;
  unsigned held; /* connections out with holders */
  pg_wait *wait_head, *wait_tail;
  int closing;
  char error[PG_MSG_LEN];
  /* further private state of pg_pool.c may be added here */
  unsigned down;          /* connections not connected */
  uint64_t backoff_ms;    /* next reconnect delay */
  int unreachable;        /* every connection down and the last try failed */
  struct pg_slot *slots;  /* per connection: held, rolling back (nconns) */
  uv_timer_t retry;       /* the next reconnect round, after backoff_ms */
  int retry_armed;
  unsigned handles;       /* the timer and connections not closed yet */
  unsigned starting;      /* first attempts of pg_pool_start pending */
  void (*start_cb)(pg_pool *p, int status, const char *msg);
  void (*close_cb)(pg_pool *p);
  char reason[PG_MSG_LEN]; /* the last failure, libpq's words only */
};

struct pg_store {
  struct store head; /* first: a pg_store is a store */
  char *conninfo;     /* as given (postgres://... or key=value) */
  char server[128];   /* "HOST:PORT/DB" for messages */
  char addr[128];     /* "HOST:PORT", for messages about connections */
  unsigned nreaders;
  unsigned batch_max;
  unsigned chunk_rows; /* rows per FETCH */
  int state; /* PS_*; PS_CLOSING from the moment close is asked for (new
             * work is refused, queued writes still commit) */

  pg_pool writer; /* one connection */
  pg_pool readers;

  /* open */
  store_open_cb open_cb;
  void *open_data;
  char open_msg[PG_MSG_LEN + 192]; /* room for the server and a reason */

  /* close */
  store_close_cb close_cb;
  void *close_data;

  /* writer queue (pg_writer.c) */
  store_batch *queue_head, *queue_tail;
  int writing; /* a group is on the writer connection */
  pg_write_group group;
  uint64_t tasks; /* thread-pool tasks (PQcancel) not yet returned */
};

/* pg_store.c */
/* Starts closing once the store is quiet (no write, no held connection, no
 * cancel task). Called by the parts whenever they become quiet. */
void pg_maybe_close(pg_store *st);

/* pg_task.c: a read that holds one reader connection for one or more
 * exchanges (the candidates and the vectors operations): waiting for the
 * connection, its exchanges' end, giving it back, calling back later from
 * the loop when there is nothing to ask, and cancellation, kept in one
 * place. Embed it in the request; set st, what, send and finish (more
 * optionally), the exchange's result hook, then start it. The result hook
 * finds the task in ex->data. */
typedef struct pg_read_task pg_read_task;
struct pg_read_task {
  pg_store *st;
  const char *what; /* "a hybrid search": for messages and the log */
  /* Begins the operation's exchange on t->conn (pg_read_task_begin, then
   * its commands, then pg_exchange_end). */
  void (*send)(pg_read_task *t);
  /* After an exchange that ended well (status 0, not cancelled): 1 when
   * it began another on t->conn. NULL: one exchange. */
  int (*more)(pg_read_task *t);
  /* Once, on the loop, the connection given back, status and msg final
   * (ENGRAM_ECANCELED when cancelled; a failure already logged as "<what>
   * failed: <msg>"): calls the request back and frees it; t is gone when
   * it returns. */
  void (*finish)(pg_read_task *t);
  int status;
  char msg[PG_MSG_LEN];
  pg_exchange ex;
  pg_conn *conn; /* held from the first exchange to the end of the last */
  pg_wait wait;
  rt_work work; /* the no-op task that calls back from the loop */
  int running;  /* an exchange is on the connection */
  int deferred; /* the no-op task is out */
  int cancelled;
};
/* Starts t: with a connection (or once one is free) when `connection`,
 * else finish follows later from the loop with nothing asked. 0, or an
 * error (ENGRAM_EIO logged with the server's reason, ENGRAM_ECLOSED,
 * ENGRAM_ENOMEM): then nothing started and the caller frees. */
int pg_read_task_start(pg_read_task *t, int connection);
/* Begins an exchange of t on t->conn (from send, or from more). */
void pg_read_task_begin(pg_read_task *t);
/* Cancels t; idempotent. A running exchange is cancelled on the server, a
 * task waiting for a connection leaves the queue; either way finish
 * follows once, later, with ENGRAM_ECANCELED. */
void pg_read_task_cancel(pg_read_task *t);

/* pg_pool.c */
/* Sets p up (no connection is attempted yet). On ENGRAM_ENOMEM p is still
 * closed with pg_pool_close and freed with pg_pool_free. */
int pg_pool_init(pg_pool *p, pg_store *st, const char *role, unsigned n);
/* Starts connecting every connection; cb(p, status, msg) once the first
 * attempt of every connection finished (status 0 when at least one
 * connected; else ENGRAM_EIO and msg is libpq's reason, without the server
 * name). Connections that failed are retried in the background. */
void pg_pool_start(pg_pool *p, void (*cb)(pg_pool *p, int status,
                                          const char *msg));
/* Fails every waiter with ENGRAM_ECLOSED, closes connections as they come
 * back; cb once all are closed (their handles too). */
void pg_pool_close(pg_pool *p, void (*cb)(pg_pool *p));
void pg_pool_free(pg_pool *p);

/* pg_schema.c: brings the database to PG_SCHEMA_VERSION on c (held), in
 * one transaction under an advisory lock, so two processes opening at once
 * migrate once. cb(status, msg): 0, ENGRAM_EVERSION (a newer engram made
 * it), ENGRAM_ECORRUPT (tables of another program), ENGRAM_EIO. */
typedef struct pg_migrate pg_migrate;
void pg_schema_migrate(pg_store *st, pg_conn *c,
                       void (*cb)(pg_store *st, int status, const char *msg));

/* pg_row.c */
/* A bytea column's text (hex output, or escape output through libpq) into
 * out, exactly `bytes` bytes: 1, 0 when the text is not bytea of that
 * length, -1 when out of memory. */
int pg_bytea_read(const char *text, size_t len, void *out, size_t bytes);
/* Decodes PG_NODE_COLUMNS of row `row` starting at column col into one owned
 * allocation (engram_node_free releases it). 0, or ENGRAM_ECORRUPT /
 * ENGRAM_ENOMEM with a message naming the row. */
int pg_row_node(const PGresult *res, int row, int col, engram_node **out,
                char *msg, size_t msglen);
/* Maps a failed result (its SQLSTATE) to an ENGRAM_E* code and writes
 * "what: server message" into msg. 57014 -> ENGRAM_ECANCELED; 08xxx and a
 * NULL or fatal result without SQLSTATE -> ENGRAM_EIO; 40001/40P01 ->
 * ENGRAM_EBUSY; others ENGRAM_EIO. */
int pg_result_fail(const PGresult *res, const char *what, char *msg,
                   size_t msglen);
/* 1 when res is PGRES_COMMAND_OK or PGRES_TUPLES_OK. */
int pg_result_ok(const PGresult *res);

/* pg_writer.c */
int pg_writer_write(store *base, store_batch *b);
/* The statement an ADD runs (memory + history row; parameters: id, ns,
 * type, content, hash, at, importance, metadata, embedding, dimension):
 * exported for bench/store's raw libpq reference, so the two stay equal. */
extern const char pg_writer_add_sql[];
/* Starts a group when idle and the queue is not empty. */
void pg_writer_kick(pg_store *st);
/* Fails every queued batch with status (closing, server unreachable). */
void pg_writer_fail_queued(pg_store *st, int status, const char *msg);

/* pg_read.c */
int pg_read_get(store *base, const char *ns, const char *id, engram_get_cb cb,
                void *data);
int pg_read_history(store *base, const char *ns, const char *id,
                    engram_history_cb cb, void *data);
int pg_read_relationships(store *base, const char *ns, const char *id,
                          engram_rels_cb cb, void *data);

/* pg_stream.c: the search query without its cursor ($1 ns, $2 words, $3
 * types mask, $4 min_relevance), for bench/store's raw libpq reference. */
extern const char *const pg_search_sql;
/* pg_stream.c: the search words of text (core_tokenize tokens, stop words
 * dropped unless nothing else is left, at most 256) as a PostgreSQL text[]
 * literal, "{}" when there is none; *out is the caller's to free. 0 or
 * ENGRAM_ENOMEM. */
int pg_search_words(const char *text, size_t len, char **out,
                    size_t *words);

/* pg_terms.c: hybrid search's lexical step (see the top of pg_terms.c).
 * The statement: $1 ns, $2 the words (a text[], pg_search_words), $3 the
 * budget max_scored (PG_NO_BUDGET for none), $4 meta_weight, $5 the types
 * mask, $6 limit; rows (kind, ...): one of kind 0 per query lexeme and
 * one of kind 1 per row scored (the tests count those). */
const pg_stmt *pg_terms_stmt(void);
#define PG_NO_BUDGET "1000000000000000"
typedef struct pg_rank_args {
  double k1, b, meta_weight;
  unsigned types; /* 0: all */
  size_t limit;
} pg_rank_args;
typedef struct pg_hit {
  char id[ENGRAM_ID_LEN + 1];
  double score; /* BM25 */
} pg_hit;
/* The best a->limit rows of the wanted types among those res scored, best
 * first (ties: the older first), into *hits (the caller frees it; NULL
 * when none). 0, ENGRAM_ENOMEM, or ENGRAM_ECORRUPT for an answer not of
 * the statement's form; msg says what. */
int pg_terms_rank(const PGresult *res, const pg_rank_args *a, pg_hit **hits,
                  size_t *n, char *msg, size_t msglen);

/* pg_candidates.c: hybrid search's candidates (store.h). */
int pg_candidates(store *base, const store_candidates_query *q,
                  store_candidates_req *req);
void pg_candidates_cancel(store *base, store_candidates_req *req);

/* pg_vectors.c: the vector index's catch-up (store.h). */
int pg_vectors(store *base, const store_vectors_query *q,
               store_vectors_req *req);
void pg_vectors_cancel(store *base, store_vectors_req *req);

/* pg_stream.c, pg_traverse.c */
int pg_stream_search(store *base, const store_query *q, engram_stream *s);
int pg_stream_list(store *base, const store_query *q, engram_stream *s);
int pg_stream_traverse(store *base, const store_query *q, engram_stream *s);

#endif
