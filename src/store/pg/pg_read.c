/*
 * pg_read.c — point reads of the PostgreSQL backend: a memory by id, its
 * history, its relationships.
 *
 * Each is one request: acquire a reader connection (at once, or queued on
 * the loop; ENGRAM_EIO at once when the server is unreachable), one
 * exchange of one prepared statement whose result is copied into memory
 * the request owns, then release the connection first (so waiting work
 * proceeds) and call back with pointers valid for the duration of the
 * callback. Results and errors are those of sqlite_read.c: an unknown id
 * (or one in another namespace) is ENGRAM_ENOTFOUND for get and history,
 * and an empty list for relationships; a get does not touch accessed_ms.
 * A request whose connection broke fails with ENGRAM_EIO, the reason in the
 * log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/pg/pg_internal.h"

static const pg_stmt get_ns_stmt = {
    "eg_read_get_ns",
    "SELECT " PG_NODE_COLUMNS
    " FROM memories m WHERE m.id = $1::uuid AND m.ns = $2::text",
    2};
static const pg_stmt get_any_stmt = {
    "eg_read_get_any",
    "SELECT " PG_NODE_COLUMNS " FROM memories m WHERE m.id = $1::uuid", 1};
static const pg_stmt history_stmt = {
    "eg_read_history",
    "SELECT event, old_content, new_content, at_ms FROM history"
    " WHERE memory_id = $1::uuid AND ns = $2::text ORDER BY seq",
    2};
/* Out-links by target, then in-links (not self-links again) by source:
 * the order of SQLite's primary key and target index. */
static const pg_stmt rels_stmt = {
    "eg_read_rels",
    "SELECT source, target, kind, strength, created_ms FROM ("
    " SELECT source, target, kind, strength, created_ms, 0 AS dir,"
    "  target AS other FROM relationships"
    " WHERE source = $1::uuid AND ns = $2::text"
    " UNION ALL"
    " SELECT source, target, kind, strength, created_ms, 1, source"
    " FROM relationships"
    " WHERE target = $1::uuid AND source <> $1::uuid AND ns = $2::text) r"
    " ORDER BY dir, other, kind COLLATE \"C\"",
    2};

typedef enum { READ_GET, READ_HISTORY, READ_RELS } read_kind;

typedef struct read_req {
  pg_store *st;
  pg_wait wait;
  pg_exchange ex;
  pg_conn *conn;
  read_kind kind;
  char *ns; /* NULL: any namespace (get only) */
  char id[ENGRAM_ID_LEN + 1];
  engram_get_cb get_cb;
  engram_history_cb history_cb;
  engram_rels_cb rels_cb;
  void *data;
  /* results */
  int status;
  char msg[PG_MSG_LEN];
  engram_node *node;
  engram_history_entry *entries;
  engram_rel *rels;
  size_t n;
} read_req;

static char *dup_value(const PGresult *res, int row, int col, int *ok) {
  if (PQgetisnull(res, row, col))
    return NULL;
  const char *p = PQgetvalue(res, row, col);
  size_t n = (size_t)PQgetlength(res, row, col);
  if (!core_utf8_valid(p, n)) {
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

/* A bigint or float column, text format; 0 when it does not parse. */
static int int_value(const PGresult *res, int row, int col, long long *out) {
  if (PQgetisnull(res, row, col))
    return 0;
  char *end;
  *out = strtoll(PQgetvalue(res, row, col), &end, 10);
  return *end == '\0';
}

static int double_value(const PGresult *res, int row, int col, double *out) {
  if (PQgetisnull(res, row, col))
    return 0;
  char *end;
  *out = strtod(PQgetvalue(res, row, col), &end);
  return *end == '\0';
}

static void get_result(read_req *r, const PGresult *res) {
  if (PQntuples(res) == 0)
    r->status = ENGRAM_ENOTFOUND;
  else
    r->status = pg_row_node(res, 0, 0, &r->node, r->msg, sizeof r->msg);
}

static void history_result(read_req *r, const PGresult *res) {
  int rows = PQntuples(res);
  if (rows == 0) {
    r->status = ENGRAM_ENOTFOUND;
    return;
  }
  r->entries = calloc((size_t)rows, sizeof *r->entries);
  if (!r->entries) {
    r->status = ENGRAM_ENOMEM;
    return;
  }
  for (int i = 0; i < rows; i++) {
    engram_history_entry *e = &r->entries[i];
    r->n++; /* counted first: freed with the rest on any failure below */
    int ok = 1;
    long long event = -1, at = 0;
    ok &= int_value(res, i, 0, &event);
    e->old_content = dup_value(res, i, 1, &ok);
    e->new_content = dup_value(res, i, 2, &ok);
    ok &= int_value(res, i, 3, &at);
    if (!ok || event < ENGRAM_EVENT_ADD || event > ENGRAM_EVENT_DELETE) {
      snprintf(r->msg, sizeof r->msg,
               "the history of memory %s has a damaged entry", r->id);
      r->status = ENGRAM_ECORRUPT;
      return;
    }
    e->event = (engram_event)event;
    e->at_ms = (int64_t)at;
  }
}

static void rels_result(read_req *r, const PGresult *res) {
  int rows = PQntuples(res);
  if (rows == 0)
    return;
  r->rels = calloc((size_t)rows, sizeof *r->rels);
  if (!r->rels) {
    r->status = ENGRAM_ENOMEM;
    return;
  }
  for (int i = 0; i < rows; i++) {
    engram_rel *l = &r->rels[i];
    r->n++;
    int ok = 1;
    long long created = 0;
    l->source = dup_value(res, i, 0, &ok);
    l->target = dup_value(res, i, 1, &ok);
    l->kind = dup_value(res, i, 2, &ok);
    ok &= double_value(res, i, 3, &l->strength);
    ok &= int_value(res, i, 4, &created);
    l->created_ms = (int64_t)created;
    if (!ok || !l->source || !l->target || !l->kind) {
      snprintf(r->msg, sizeof r->msg, "a relationship of memory %s is damaged",
               r->id);
      r->status = ENGRAM_ECORRUPT;
      return;
    }
  }
}

static void read_free(read_req *r) {
  engram_node_free(r->node);
  store_history_free(r->entries, r->n);
  store_rels_free(r->rels, r->n);
  free(r->ns);
  free(r);
}

/* Calls back and frees r; the connection is back already. */
static void read_finish(read_req *r) {
  if (r->status != 0 && r->status != ENGRAM_ENOTFOUND && r->msg[0])
    rt_log(r->st->head.rt, ENGRAM_LOG_ERROR, "a read failed: %s", r->msg);
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

static void ex_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  read_req *r = ex->data;
  (void)cmd;
  if (r->status != 0)
    return;
  if (!pg_result_ok(res)) {
    r->status =
        pg_result_fail(res,
                       r->kind == READ_GET       ? "reading a memory"
                       : r->kind == READ_HISTORY ? "reading history"
                                                 : "reading relationships",
                       r->msg, sizeof r->msg);
    return;
  }
  if (r->kind == READ_GET)
    get_result(r, res);
  else if (r->kind == READ_HISTORY)
    history_result(r, res);
  else
    rels_result(r, res);
}

static void ex_done(pg_exchange *ex, int status, const char *msg) {
  read_req *r = ex->data;
  if (status != 0) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "a read lost its connection: %s",
             msg ? msg : "no reason given");
  }
  pg_store *st = r->st;
  pg_conn *c = r->conn;
  r->conn = NULL;
  pg_pool_release(&st->readers, c);
  read_finish(r);
}

/* Sends r's statement on c (held). */
static void read_send(read_req *r, pg_conn *c) {
  r->conn = c;
  r->ex.result = ex_result;
  r->ex.done = ex_done;
  r->ex.data = r;
  const char *values[2] = {r->id, r->ns};
  const pg_stmt *stmt = r->kind == READ_HISTORY ? &history_stmt
                        : r->kind == READ_RELS  ? &rels_stmt
                        : r->ns                 ? &get_ns_stmt
                                                : &get_any_stmt;
  pg_exchange_begin(c, &r->ex);
  pg_exchange_stmt(c, stmt, values, NULL);
  pg_exchange_end(c);
}

/* A connection came back to a queued request, from another operation's
 * callback: calling back here is not inside the start function. */
static void read_granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  read_req *r = PG_CONTAINER(w, read_req, wait);
  if (status != 0) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s",
             msg ? msg : "no PostgreSQL connection for a read");
    read_finish(r);
    return;
  }
  read_send(r, c);
}

static int read_start(pg_store *st, read_kind kind, const char *ns,
                      const char *id, void *data, engram_get_cb get_cb,
                      engram_history_cb history_cb, engram_rels_cb rels_cb) {
  if (st->state != PS_OPEN)
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
  r->get_cb = get_cb;
  r->history_cb = history_cb;
  r->rels_cb = rels_cb;
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(&st->readers, &r->wait, read_granted, &c);
  if (rc != 0) {
    if (rc == ENGRAM_EIO)
      rt_log(st->head.rt, ENGRAM_LOG_ERROR, "a read failed: %s",
             pg_pool_error(&st->readers));
    read_free(r);
    return rc;
  }
  if (c)
    read_send(r, c);
  return 0;
}

int pg_read_get(store *base, const char *ns, const char *id, engram_get_cb cb,
                void *data) {
  if (!cb)
    return ENGRAM_EINVAL;
  return read_start((pg_store *)base, READ_GET, ns, id, data, cb, NULL, NULL);
}

int pg_read_history(store *base, const char *ns, const char *id,
                    engram_history_cb cb, void *data) {
  if (!cb || !ns)
    return ENGRAM_EINVAL;
  return read_start((pg_store *)base, READ_HISTORY, ns, id, data, NULL, cb,
                    NULL);
}

int pg_read_relationships(store *base, const char *ns, const char *id,
                          engram_rels_cb cb, void *data) {
  if (!cb || !ns)
    return ENGRAM_EINVAL;
  return read_start((pg_store *)base, READ_RELS, ns, id, data, NULL, NULL, cb);
}
