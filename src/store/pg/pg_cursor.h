/*
 * pg_cursor.h — the machinery every PostgreSQL stream runs on (internal to
 * src/store/pg/; pg_cursor.c): a reader connection held for the life of
 * the stream, driven one exchange at a time as the consumer asks.
 *
 * A stream kind (search and list in pg_stream.c, traverse in
 * pg_traverse.c) says what to send next (`queue`) and what each result
 * means (`result`); the machinery owns the rest: acquiring the connection
 * at the first pull, demand, buffering decoded rows, emitting them, the
 * query count, cancellation, connection loss and the one way out.
 */
#ifndef ENGRAM_PG_CURSOR_H
#define ENGRAM_PG_CURSOR_H

#include "store/pg/pg_internal.h"

typedef struct pg_cursor pg_cursor;

typedef struct pg_cursor_kind {
  /* Queues the commands of the next step with pg_cursor_sql /
   * pg_cursor_stmt; want = min(demand, chunk_rows) > 0 rows may be read.
   * Either it queues at least one command, or it queues nothing and sets
   * cur->at_end (or fails with pg_cursor_fail): the stream then ends once
   * the rows buffered so far are emitted. cur->ncmds numbers the commands
   * queued so far in this exchange. */
  void (*queue)(pg_cursor *cur, size_t want);
  /* Each result of that exchange, in order (res is the connection's: it is
   * cleared when this returns). Push rows with pg_cursor_push_row; on a
   * failure set the stream's error with pg_cursor_fail (the first one
   * counts, later results of the exchange are then only drained). */
  void (*result)(pg_cursor *cur, unsigned cmd, PGresult *res);
  /* Frees the kind's state and the cursor (after the stream's done). */
  void (*destroy)(pg_cursor *cur);
} pg_cursor_kind;

struct pg_cursor {
  pg_store *st;
  engram_stream *s;
  const pg_cursor_kind *kind;
  pg_conn *conn; /* held from the first pull to the end */
  pg_wait wait;
  pg_exchange ex;
  int begun;      /* the current step's exchange was begun */
  unsigned ncmds; /* commands queued in it */
  int running;    /* an exchange is on the connection */
  int emitting;   /* handing buffered rows to the consumer */
  int cancelled;  /* cancel arrived while an exchange ran */
  int ended;      /* connection released, stream_finish called */
  int counted;    /* counted in queries_running */
  int empty;      /* nothing to query: end at the first pull */
  int at_end;     /* no row left after the buffered ones */
  int rc;         /* the stream's error (first one), 0 while none */
  char msg[PG_MSG_LEN];
  /* decoded rows not yet emitted: items.v[first..items.n) */
  store_items items;
  size_t first;
};

/* Initialises the cursor (zeroed by the caller, with its kind's fields)
 * and attaches it as s's producer; from now on the stream owns it. */
void pg_cursor_attach(pg_cursor *cur, pg_store *st, engram_stream *s,
                      const pg_cursor_kind *kind);
/* Queue a command in the step's exchange (begun on first use). */
void pg_cursor_sql(pg_cursor *cur, const char *sql, int nparams,
                   const char *const *values);
void pg_cursor_stmt(pg_cursor *cur, const pg_stmt *stmt,
                    const char *const *values);
/* Decodes PG_NODE_COLUMNS of row `row` from column col, sets relevance and
 * depth, and buffers it (or its failure, reported as an item error).
 * Returns 1 when a row was buffered as an item. Out of memory fails the
 * stream. */
int pg_cursor_push_row(pg_cursor *cur, const PGresult *res, int row, int col,
                       double relevance, uint32_t depth);
/* Records the stream's error (the first one wins); returns code. */
int pg_cursor_fail(pg_cursor *cur, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A failed result: pg_result_fail's code and message become the stream's
 * error. */
void pg_cursor_fail_result(pg_cursor *cur, const PGresult *res,
                           const char *what);

#endif
