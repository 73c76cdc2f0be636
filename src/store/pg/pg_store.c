/*
 * pg_store.c — the PostgreSQL backend's lifecycle and its store_ops table:
 * creating the store object, opening it (writer pool, migrations, reader
 * pool) and closing it without losing an acknowledged write.
 *
 * States: NEW -> OPENING -> OPEN (or FAILED, which may be opened again) ->
 * CLOSING -> CLOSED. Opening connects the writer pool's one connection,
 * brings the schema up to date on it (pg_schema.c), then connects the
 * readers; the open completes once every reader's first attempt finished.
 * A failure closes whatever was started before the open callback tells it,
 * so a FAILED store holds no handle and no connection.
 *
 * Closing is a wait by callback: the store stops taking work, and every
 * place that finishes work (a write group, a connection released, a cancel
 * task returning) calls pg_maybe_close(), which closes both pools once the
 * write queue is empty, no connection is held and no task is out.
 *
 * Messages name the server as HOST:PORT/DB, taken from the connection
 * string itself (never its password), so even a server that cannot be
 * reached is named.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

/* The store with what only this file touches. */
typedef struct pg_life {
  pg_store st; /* first */
  int close_requested;
  int close_started;
  int pools_live; /* the pools are initialised and not freed yet */
  unsigned pools_closing;
  int open_failing; /* the pools close before open_cb hears the failure */
  int open_status;
  pg_wait open_wait;
  pg_conn *open_conn; /* the writer connection the migrations run on */
  char bad_conninfo[PG_MSG_LEN]; /* why the connection string is invalid */
  /* Callbacks that must not run inside the call that caused them go
   * through a no-op task on the thread pool. */
  rt_work defer_work;
  int deferring;
  int defer_open;   /* an open that failed at once is told */
  int defer_close;  /* the close, when nothing was open */
  int defer_reject; /* an open refused */
  store_open_cb reject_cb;
  void *reject_data;
} pg_life;

static pg_life *life_of(pg_store *st) {
  return (pg_life *)(void *)st;
}

/* ------------------------------------------------------------- deferral */

static void defer_run(rt_work *w) {
  (void)w;
}

static void open_finished(pg_life *l);
static void closed(pg_life *l);

static void defer_after(rt_work *w, int status) {
  pg_life *l = PG_CONTAINER(w, pg_life, defer_work);
  (void)status;
  l->st.tasks--;
  l->deferring = 0;
  if (l->defer_reject) {
    l->defer_reject = 0;
    store_open_cb cb = l->reject_cb;
    l->reject_cb = NULL;
    cb(&l->st.head, ENGRAM_ECLOSED,
       "the store is already open, opening or closed", l->reject_data);
  }
  if (l->defer_close) {
    l->defer_close = 0;
    closed(l);
    return;
  }
  if (l->defer_open) {
    l->defer_open = 0;
    open_finished(l);
  }
  pg_maybe_close(&l->st);
}

/* 0, or an error when the thread pool refused the task. */
static int defer(pg_life *l) {
  if (l->deferring)
    return 0;
  if (rt_offload(l->st.head.rt, &l->defer_work, defer_run, defer_after) != 0)
    return ENGRAM_ENOMEM;
  l->deferring = 1;
  l->st.tasks++;
  return 0;
}

/* ------------------------------------------------------------------ open */

/* Tells the open's outcome (open_status, open_msg). The store holds no
 * pool any more when it failed. */
static void open_finished(pg_life *l) {
  pg_store *st = &l->st;
  int status = l->open_status;
  if (status != 0)
    st->state = PS_FAILED;
  else
    st->state = l->close_requested ? PS_CLOSING : PS_OPEN;
  if (st->open_cb)
    st->open_cb(&st->head, status, status ? st->open_msg : NULL, st->open_data);
  pg_maybe_close(st);
}

static void pool_closed(pg_pool *p) {
  pg_life *l = life_of(p->st);
  if (--l->pools_closing > 0)
    return;
  pg_pool_free(&l->st.writer);
  pg_pool_free(&l->st.readers);
  l->pools_live = 0;
  if (l->open_failing) {
    l->open_failing = 0;
    open_finished(l);
  } else {
    closed(l);
  }
}

static void close_pools(pg_life *l) {
  l->pools_closing = 2;
  pg_pool_close(&l->st.writer, pool_closed);
  pg_pool_close(&l->st.readers, pool_closed);
}

/* Closes the pools, then tells status and open_msg (already written). */
static void open_failed(pg_life *l, int status) {
  l->open_status = status;
  l->open_failing = 1;
  close_pools(l);
}

/* open_msg for a server that could not be reached. */
static void cannot_connect(pg_life *l, const char *reason) {
  snprintf(l->st.open_msg, sizeof l->st.open_msg,
           "cannot connect to PostgreSQL at %s: %s", l->st.server, reason);
}

static void readers_started(pg_pool *p, int status, const char *msg) {
  pg_life *l = life_of(p->st);
  if (status != 0) {
    cannot_connect(l, msg);
    open_failed(l, ENGRAM_EIO);
    return;
  }
  l->open_status = 0;
  open_finished(l);
}

static void migrated(pg_store *st, int status, const char *msg) {
  pg_life *l = life_of(st);
  pg_pool_release(&st->writer, l->open_conn);
  l->open_conn = NULL;
  if (status != 0) {
    snprintf(st->open_msg, sizeof st->open_msg, "%s", msg);
    open_failed(l, status);
    return;
  }
  pg_pool_start(&st->readers, readers_started);
}

static void writer_granted(pg_wait *w, pg_conn *c, int status,
                           const char *msg) {
  pg_life *l = PG_CONTAINER(w, pg_life, open_wait);
  if (status != 0) {
    if (status == ENGRAM_EIO)
      cannot_connect(l, l->st.writer.reason);
    else
      snprintf(l->st.open_msg, sizeof l->st.open_msg, "%s", msg);
    open_failed(l, status);
    return;
  }
  l->open_conn = c;
  pg_schema_migrate(&l->st, c, migrated);
}

static void writer_started(pg_pool *p, int status, const char *msg) {
  pg_life *l = life_of(p->st);
  if (status != 0) {
    cannot_connect(l, msg);
    open_failed(l, ENGRAM_EIO);
    return;
  }
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(&l->st.writer, &l->open_wait, writer_granted, &c);
  if (rc != 0)
    writer_granted(&l->open_wait, NULL, rc, pg_pool_error(&l->st.writer));
  else if (c)
    writer_granted(&l->open_wait, c, 0, NULL);
}

static void store_open(store *base, store_open_cb cb, void *data) {
  pg_store *st = (pg_store *)base;
  pg_life *l = life_of(st);
  if ((st->state != PS_NEW && st->state != PS_FAILED) || l->close_requested) {
    if (!cb || l->defer_reject)
      return; /* one refusal at a time is enough to tell the caller */
    l->reject_cb = cb;
    l->reject_data = data;
    l->defer_reject = 1;
    if (defer(l) != 0)
      l->defer_reject = 0;
    return;
  }
  st->open_cb = cb;
  st->open_data = data;
  st->open_msg[0] = '\0';
  st->state = PS_OPENING;
  if (l->bad_conninfo[0]) {
    l->open_status = ENGRAM_EINVAL;
    snprintf(st->open_msg, sizeof st->open_msg, "%s", l->bad_conninfo);
  } else {
    l->pools_live = 1;
    int rc = pg_pool_init(&st->writer, st, "writer", 1);
    if (rc == 0)
      rc = pg_pool_init(&st->readers, st, "reader", st->nreaders);
    else
      pg_pool_init(&st->readers, st, "reader", 0);
    if (rc == 0) {
      pg_pool_start(&st->writer, writer_started);
      return;
    }
    snprintf(st->open_msg, sizeof st->open_msg,
             "out of memory for the connection pools of PostgreSQL at %s",
             st->server);
    open_failed(l, rc);
    return;
  }
  l->defer_open = 1;
  if (defer(l) != 0) {
    l->defer_open = 0;
    st->state = PS_FAILED;
    if (cb)
      cb(base, ENGRAM_ENOMEM, "could not queue the open on the thread pool",
         data);
  }
}

/* ----------------------------------------------------------------- close */

static void closed(pg_life *l) {
  l->st.state = PS_CLOSED;
  if (l->st.close_cb)
    l->st.close_cb(&l->st.head, l->st.close_data);
}

void pg_maybe_close(pg_store *st) {
  pg_life *l = life_of(st);
  if (!l->close_requested || l->close_started)
    return;
  if (st->state == PS_OPENING || l->open_failing)
    return; /* the open's end comes back here */
  if (st->writing || st->queue_head || st->tasks > 0)
    return;
  if (l->pools_live && (st->writer.held > 0 || st->readers.held > 0))
    return;
  l->close_started = 1;
  st->state = PS_CLOSING;
  if (l->pools_live) {
    close_pools(l);
    return;
  }
  l->defer_close = 1;
  if (defer(l) != 0) {
    l->defer_close = 0;
    closed(l); /* no thread pool: nothing is open to wait for */
  }
}

static void store_close(store *base, store_close_cb cb, void *data) {
  pg_store *st = (pg_store *)base;
  pg_life *l = life_of(st);
  if (l->close_requested)
    return; /* closing already; the first caller gets the callback */
  l->close_requested = 1;
  st->close_cb = cb;
  st->close_data = data;
  if (st->state == PS_OPEN)
    st->state = PS_CLOSING; /* queued writes still commit; new ones not */
  pg_writer_kick(st);
  pg_maybe_close(st);
}

static void store_destroy(store *base) {
  pg_store *st = (pg_store *)base;
  if (!st)
    return;
  pg_life *l = life_of(st);
  if (l->pools_live || st->tasks > 0) {
    /* Freed while connections or tasks are out: their callbacks would
     * touch freed memory, so the store is left behind instead. */
    rt_log(st->head.rt, ENGRAM_LOG_ERROR,
           "the PostgreSQL store was freed before it closed; it leaks");
    return;
  }
  free(st->conninfo);
  free(l);
}

static const store_ops pg_ops = {
    .name = "postgresql",
    .open = store_open,
    .close = store_close,
    .destroy = store_destroy,
    .write = pg_writer_write,
    .get = pg_read_get,
    .history = pg_read_history,
    .relationships = pg_read_relationships,
    .search = pg_stream_search,
    .list = pg_stream_list,
    .traverse = pg_stream_traverse,
    .candidates = pg_candidates,
    .candidates_cancel = pg_candidates_cancel,
    .vectors = pg_vectors,
    .vectors_cancel = pg_vectors_cancel,
};

/* ------------------------------------------------------------------ new */

static const char *option(const PQconninfoOption *opts, const char *key) {
  for (const PQconninfoOption *o = opts; o->keyword; o++)
    if (strcmp(o->keyword, key) == 0 && o->val && *o->val)
      return o->val;
  return NULL;
}

static const char *first(const char *a, const char *b, const char *c) {
  return a && *a ? a : b && *b ? b : c;
}

/* server and addr from the connection string and libpq's environment
 * defaults; a string libpq cannot parse is remembered for open. */
static void describe_server(pg_life *l) {
  pg_store *st = &l->st;
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(st->conninfo, &err);
  if (!opts) {
    char why[PG_MSG_LEN - 48];
    snprintf(why, sizeof why, "%s", err ? err : "out of memory");
    why[strcspn(why, "\n")] = '\0';
    snprintf(l->bad_conninfo, sizeof l->bad_conninfo,
             "invalid PostgreSQL connection string: %s", why);
    PQfreemem(err);
    snprintf(st->server, sizeof st->server, "(invalid connection string)");
    snprintf(st->addr, sizeof st->addr, "(invalid connection string)");
    return;
  }
  const char *host =
      first(option(opts, "host"), option(opts, "hostaddr"),
            first(getenv("PGHOST"), getenv("PGHOSTADDR"), "localhost"));
  const char *port = first(option(opts, "port"), getenv("PGPORT"), "5432");
  const char *db =
      first(option(opts, "dbname"), getenv("PGDATABASE"),
            first(option(opts, "user"), getenv("PGUSER"), "postgres"));
  snprintf(st->addr, sizeof st->addr, "%s:%s", host, port);
  snprintf(st->server, sizeof st->server, "%s:%s/%s", host, port, db);
  PQconninfoFree(opts);
}

store *store_pg_new(rt *r, const engram_options *opts) {
  pg_life *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  pg_store *st = &l->st;
  st->conninfo = strdup(opts && opts->db ? opts->db : "");
  if (!st->conninfo) {
    free(l);
    return NULL;
  }
  st->head.ops = &pg_ops;
  st->head.rt = r;
  st->head.opts = opts;
  st->nreaders = opts && opts->readers ? opts->readers : PG_DEFAULT_READERS;
  st->batch_max = opts && opts->write_batch_max ? opts->write_batch_max : 1024;
  st->chunk_rows = opts && opts->chunk_rows ? opts->chunk_rows : 64;
  st->state = PS_NEW;
  describe_server(l);
  return &st->head;
}
