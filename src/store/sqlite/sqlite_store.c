/*
 * sqlite_store.c — the SQLite backend's lifecycle: creating the store
 * object, opening it (schema and connections, on the thread pool), and
 * closing it without losing an acknowledged write.
 *
 * States: NEW -> OPENING -> OPEN (or FAILED, which may be opened again) ->
 * CLOSING -> CLOSED. Closing is a wait by callback, never by a thread: the
 * store stops accepting work, and every place that finishes work (a task's
 * `after`, a reader release, the end of a write group) calls
 * sqlite_maybe_close(), which closes the connections on the thread pool
 * once the write queue is empty, no task of the store is out and every
 * reader is back. sqlite3_close may checkpoint the WAL, so it is blocking
 * work like any other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

int sqlite_offload(sqlite_store *st, rt_work *w, rt_work_fn run,
                   rt_after_fn after) {
  int rc = rt_offload(st->head.rt, w, run, after);
  if (rc == 0)
    st->tasks++;
  return rc;
}

void sqlite_task_returned(sqlite_store *st) {
  st->tasks--;
}

/* ------------------------------------------------------------------ open */

static void open_run(rt_work *w) {
  sqlite_store *st = SQ_CONTAINER(w, sqlite_store, open_work);
  st->open_status = sqlite_schema_open(st, st->open_msg, sizeof st->open_msg);
}

static void open_after(rt_work *w, int status) {
  sqlite_store *st = SQ_CONTAINER(w, sqlite_store, open_work);
  sqlite_task_returned(st);
  if (status != 0 && st->open_status == 0) {
    /* libuv cancelled the task before it ran: nothing was opened. */
    st->open_status = ENGRAM_ECANCELED;
    snprintf(st->open_msg, sizeof st->open_msg, "opening %s was cancelled",
             st->path);
  }
  st->state = st->open_status == 0 ? SS_OPEN : SS_FAILED;
  if (st->open_cb)
    st->open_cb(&st->head, st->open_status,
                st->open_status ? st->open_msg : NULL, st->open_data);
  if (st->close_requested)
    sqlite_maybe_close(st);
}

/* An open in the wrong state is refused from the loop, like any failure,
 * without touching the open (or the store) in progress. */
static void reject_run(rt_work *w) {
  (void)w;
}

static void reject_after(rt_work *w, int status) {
  sqlite_store *st = SQ_CONTAINER(w, sqlite_store, reject_work);
  (void)status;
  sqlite_task_returned(st);
  store_open_cb cb = st->reject_cb;
  st->reject_cb = NULL;
  cb(&st->head, ENGRAM_ECLOSED, "the store is already open, opening or closed",
     st->reject_data);
  sqlite_maybe_close(st);
}

static void store_open(store *base, store_open_cb cb, void *data) {
  sqlite_store *st = (sqlite_store *)base;
  if ((st->state != SS_NEW && st->state != SS_FAILED) || st->close_requested) {
    if (!cb || st->reject_cb)
      return; /* one refusal at a time is enough to tell the caller */
    st->reject_cb = cb;
    st->reject_data = data;
    if (sqlite_offload(st, &st->reject_work, reject_run, reject_after) != 0)
      st->reject_cb = NULL;
    return;
  }
  st->open_cb = cb;
  st->open_data = data;
  st->open_msg[0] = '\0';
  st->open_status = 0;
  st->state = SS_OPENING;
  if (sqlite_offload(st, &st->open_work, open_run, open_after) != 0) {
    st->state = SS_FAILED;
    if (cb)
      cb(base, ENGRAM_ENOMEM, "could not queue the open on the thread pool",
         data);
  }
}

/* ----------------------------------------------------------------- close */

static void close_run(rt_work *w) {
  sqlite_store *st = SQ_CONTAINER(w, sqlite_store, close_work);
  sqlite_schema_close_all(st);
}

static void close_after(rt_work *w, int status) {
  sqlite_store *st = SQ_CONTAINER(w, sqlite_store, close_work);
  (void)status;
  sqlite_task_returned(st);
  st->state = SS_CLOSED;
  if (st->close_cb)
    st->close_cb(&st->head, st->close_data);
}

void sqlite_maybe_close(sqlite_store *st) {
  if (!st->close_requested || st->close_started)
    return;
  if (st->state == SS_OPENING)
    return; /* open_after comes back here */
  if (st->tasks > 0 || st->writing || st->queue_head || st->readers_held > 0)
    return;
  st->close_started = 1;
  st->state = SS_CLOSING;
  if (sqlite_offload(st, &st->close_work, close_run, close_after) != 0) {
    /* No thread pool: closing here is the only way left. */
    sqlite_schema_close_all(st);
    st->state = SS_CLOSED;
    if (st->close_cb)
      st->close_cb(&st->head, st->close_data);
  }
}

static void store_close(store *base, store_close_cb cb, void *data) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->close_requested)
    return; /* closing already; the first caller gets the callback */
  st->close_requested = 1;
  st->close_cb = cb;
  st->close_data = data;
  /* Queued writes still commit: the writer keeps going while CLOSING is
   * only requested, and new writes are refused from now on. */
  sqlite_writer_kick(st);
  sqlite_maybe_close(st);
}

static void store_destroy(store *base) {
  sqlite_store *st = (sqlite_store *)base;
  if (!st)
    return;
  /* Normally closed (or never opened) by now. A store freed while open
   * and idle still closes its files: this is teardown, not a request. */
  if (st->tasks == 0 && st->state != SS_CLOSED)
    sqlite_schema_close_all(st);
  free(st->readers);
  free(st->path);
  free(st);
}

static const store_ops sqlite_ops = {
    .name = "sqlite",
    .open = store_open,
    .close = store_close,
    .destroy = store_destroy,
    .write = sqlite_writer_write,
    .get = sqlite_read_get,
    .history = sqlite_read_history,
    .relationships = sqlite_read_relationships,
    .search = sqlite_stream_search,
    .list = sqlite_stream_list,
    .traverse = sqlite_stream_traverse,
    .candidates = sqlite_candidates,
    .candidates_cancel = sqlite_candidates_cancel,
    .vectors = sqlite_vectors,
    .vectors_cancel = sqlite_vectors_cancel,
};

store *store_sqlite_new(rt *r, const engram_options *opts) {
  sqlite_store *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  const char *path = opts && opts->db ? opts->db : SQ_DEFAULT_PATH;
  st->path = strdup(path);
  st->nreaders = opts && opts->readers ? opts->readers : 4;
  st->readers = calloc(st->nreaders, sizeof *st->readers);
  if (!st->path || !st->readers) {
    free(st->path);
    free(st->readers);
    free(st);
    return NULL;
  }
  st->head.ops = &sqlite_ops;
  st->head.rt = r;
  st->head.opts = opts;
  st->durability = opts ? (int)opts->durability : ENGRAM_DURABILITY_NORMAL;
  st->batch_max = opts && opts->write_batch_max ? opts->write_batch_max : 1024;
  st->chunk_rows = opts && opts->chunk_rows ? opts->chunk_rows : 64;
  st->state = SS_NEW;
  return &st->head;
}
