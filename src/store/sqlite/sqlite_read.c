/*
 * sqlite_read.c — point reads: a memory by id, its history, its
 * relationships.
 *
 * Each is one request: acquire a reader (at once or, queued on the loop,
 * later), run one chunk on the thread pool that steps the statement and
 * copies every row into memory the request owns, then back on the loop
 * release the reader first (so waiting work proceeds) and call back with
 * pointers valid for the duration of the callback. The results of one id
 * are small (one row, a history, the links of one memory), so one chunk is
 * bounded work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite/sqlite_internal.h"

typedef enum { READ_GET, READ_HISTORY, READ_RELS } read_kind;

typedef struct read_req {
  sqlite_store *st;
  rt_work work;
  reader_wait wait;
  sqlite_reader *rd;
  read_kind kind;
  char *ns; /* NULL: any namespace (get only) */
  char id[ENGRAM_ID_LEN + 1];
  engram_get_cb get_cb;
  engram_history_cb history_cb;
  engram_rels_cb rels_cb;
  void *data;
  /* results, filled on the thread pool */
  int status;
  char msg[SQ_MSG_LEN];
  engram_node *node;
  engram_history_entry *entries;
  engram_rel *rels;
  size_t n, cap;
} read_req;

static char *dup_col(sqlite3_stmt *stmt, int col, int *ok) {
  if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
    return NULL;
  const unsigned char *p = sqlite3_column_text(stmt, col);
  size_t n = (size_t)sqlite3_column_bytes(stmt, col);
  if (!p || !core_utf8_valid((const char *)p, n)) {
    *ok = 0;
    return NULL;
  }
  char *s = malloc(n + 1);
  if (!s) {
    *ok = 0;
    return NULL;
  }
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

static int grow(read_req *r, size_t elem, void **array) {
  if (r->n < r->cap)
    return 1;
  size_t cap = r->cap ? r->cap * 2 : 8;
  void *p = realloc(*array, cap * elem);
  if (!p)
    return 0;
  *array = p;
  r->cap = cap;
  return 1;
}

static void run_get(read_req *r, sqlite3_stmt *stmt) {
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    r->status = sqlite_row_node(stmt, 0, &r->node, r->msg, sizeof r->msg);
  else if (rc == SQLITE_DONE)
    r->status = ENGRAM_ENOTFOUND;
  else
    r->status =
        sqlite_fail(r->rd->db, rc, "reading a memory", r->msg, sizeof r->msg);
}

static void run_history(read_req *r, sqlite3_stmt *stmt) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!grow(r, sizeof *r->entries, (void **)&r->entries)) {
      r->status = ENGRAM_ENOMEM;
      return;
    }
    engram_history_entry *e = &r->entries[r->n];
    memset(e, 0, sizeof *e);
    r->n++; /* counted first: freed with the rest on any failure below */
    int ok = 1;
    sqlite3_int64 event = sqlite3_column_int64(stmt, 0);
    e->old_content = dup_col(stmt, 1, &ok);
    e->new_content = dup_col(stmt, 2, &ok);
    e->at_ms = sqlite3_column_int64(stmt, 3);
    if (!ok || event < ENGRAM_EVENT_ADD || event > ENGRAM_EVENT_DELETE) {
      snprintf(r->msg, sizeof r->msg,
               "the history of memory %s has a damaged entry", r->id);
      r->status = ENGRAM_ECORRUPT;
      return;
    }
    e->event = (engram_event)event;
  }
  if (rc != SQLITE_DONE)
    r->status =
        sqlite_fail(r->rd->db, rc, "reading history", r->msg, sizeof r->msg);
  else if (r->n == 0)
    r->status = ENGRAM_ENOTFOUND;
}

static void run_rels(read_req *r, sqlite3_stmt *stmt) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!grow(r, sizeof *r->rels, (void **)&r->rels)) {
      r->status = ENGRAM_ENOMEM;
      return;
    }
    engram_rel *l = &r->rels[r->n];
    memset(l, 0, sizeof *l);
    r->n++;
    int ok = 1;
    l->source = dup_col(stmt, 0, &ok);
    l->target = dup_col(stmt, 1, &ok);
    l->kind = dup_col(stmt, 2, &ok);
    l->strength = sqlite3_column_double(stmt, 3);
    l->created_ms = sqlite3_column_int64(stmt, 4);
    if (!ok || !l->source || !l->target || !l->kind) {
      snprintf(r->msg, sizeof r->msg, "a relationship of memory %s is damaged",
               r->id);
      r->status = ENGRAM_ECORRUPT;
      return;
    }
  }
  if (rc != SQLITE_DONE)
    r->status = sqlite_fail(r->rd->db, rc, "reading relationships", r->msg,
                            sizeof r->msg);
}

static void read_run(rt_work *w) {
  read_req *r = SQ_CONTAINER(w, read_req, work);
  reader_stmt_kind kind = r->kind == READ_HISTORY ? RS_HISTORY
                          : r->kind == READ_RELS  ? RS_RELS
                          : r->ns                 ? RS_GET_NS
                                                  : RS_GET_ANY;
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->rd, kind, &rc);
  if (!stmt) {
    r->status =
        sqlite_fail(r->rd->db, rc, "preparing a read", r->msg, sizeof r->msg);
    return;
  }
  sqlite3_bind_text(stmt, 1, r->id, ENGRAM_ID_LEN, SQLITE_STATIC);
  if (r->ns)
    sqlite3_bind_text(stmt, 2, r->ns, -1, SQLITE_STATIC);
  if (r->kind == READ_GET)
    run_get(r, stmt);
  else if (r->kind == READ_HISTORY)
    run_history(r, stmt);
  else
    run_rels(r, stmt);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

static void read_free(read_req *r) {
  engram_node_free(r->node);
  store_history_free(r->entries, r->n);
  store_rels_free(r->rels, r->n);
  free(r->ns);
  free(r);
}

static void read_after(rt_work *w, int status) {
  read_req *r = SQ_CONTAINER(w, read_req, work);
  sqlite_store *st = r->st;
  sqlite_task_returned(st);
  if (status != 0)
    r->status = ENGRAM_ECANCELED;
  sqlite_reader_release(st, r->rd);
  r->rd = NULL;
  int ok = r->status == 0;
  switch (r->kind) {
  case READ_GET:
    r->get_cb(r->status, ok ? r->node : NULL, r->data);
    break;
  case READ_HISTORY:
    r->history_cb(r->status, ok ? r->entries : NULL, ok ? r->n : 0, r->data);
    break;
  case READ_RELS:
    r->rels_cb(r->status, ok ? r->rels : NULL, ok ? r->n : 0, r->data);
    break;
  }
  read_free(r);
}

static int read_start(read_req *r) {
  return sqlite_offload(r->st, &r->work, read_run, read_after);
}

/* A reader came back to a queued request: from another operation's
 * callback, so calling back here is not inside the start function. */
static void read_granted(reader_wait *w, sqlite_reader *rd) {
  read_req *r = SQ_CONTAINER(w, read_req, wait);
  r->rd = rd;
  if (read_start(r) != 0) {
    r->status = ENGRAM_ENOMEM;
    r->st->tasks++; /* read_after counts it back */
    read_after(&r->work, 0);
  }
}

static int read_begin(sqlite_store *st, read_kind kind, const char *ns,
                      const char *id, void *data, read_req **out) {
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!id || strlen(id) != ENGRAM_ID_LEN)
    return ENGRAM_EINVAL;
  read_req *r = calloc(1, sizeof *r);
  if (!r)
    return ENGRAM_ENOMEM;
  if (ns && !(r->ns = strdup(ns))) {
    free(r);
    return ENGRAM_ENOMEM;
  }
  r->st = st;
  r->kind = kind;
  memcpy(r->id, id, ENGRAM_ID_LEN + 1);
  r->data = data;
  *out = r;
  return 0;
}

/* Starts r, or frees it and returns the error (no callback then). */
static int read_go(read_req *r) {
  r->rd = sqlite_reader_acquire(r->st, &r->wait, read_granted);
  if (!r->rd || read_start(r) == 0)
    return 0;
  sqlite_reader_release(r->st, r->rd);
  read_free(r);
  return ENGRAM_ENOMEM;
}

int sqlite_read_get(store *base, const char *ns, const char *id,
                    engram_get_cb cb, void *data) {
  read_req *r;
  if (!cb)
    return ENGRAM_EINVAL;
  int rc = read_begin((sqlite_store *)base, READ_GET, ns, id, data, &r);
  if (rc != 0)
    return rc;
  r->get_cb = cb;
  return read_go(r);
}

int sqlite_read_history(store *base, const char *ns, const char *id,
                        engram_history_cb cb, void *data) {
  read_req *r;
  if (!cb || !ns)
    return ENGRAM_EINVAL;
  int rc = read_begin((sqlite_store *)base, READ_HISTORY, ns, id, data, &r);
  if (rc != 0)
    return rc;
  r->history_cb = cb;
  return read_go(r);
}

int sqlite_read_relationships(store *base, const char *ns, const char *id,
                              engram_rels_cb cb, void *data) {
  read_req *r;
  if (!cb || !ns)
    return ENGRAM_EINVAL;
  int rc = read_begin((sqlite_store *)base, READ_RELS, ns, id, data, &r);
  if (rc != 0)
    return rc;
  r->rels_cb = cb;
  return read_go(r);
}
