/*
 * pg_vectors.c — the vector index's catch-up on PostgreSQL (store.h,
 * store_vectors_query): one page of a namespace's memories stamped after a
 * point of its change sequence, with their vectors of one space, and the
 * ids removed since, in one exchange on a reader connection.
 *
 * The exchange is one REPEATABLE READ transaction, so that the sequence,
 * the rows and the removed ids are one snapshot, as SQLite's one read
 * transaction makes them (sqlite_vectors.c):
 *   BEGIN; the namespace's sequence; the page — rows after the row value
 *   (vseq, id) in that order, through the index (ns, vseq, id) (the first
 *   page starts after (after_seq, the greatest uuid), that is at every row
 *   stamped after after_seq); the removed ids when asked; COMMIT.
 * A row has a vector of the space when its embedder and dimension are the
 * space's and its bytea holds dim float32 (little-endian, as stored);
 * other rows come back with has_vector 0.
 *
 * The callback runs once, on the loop, never inside pg_vectors: after the
 * exchange's done, or from a no-op thread-pool task (a cancel while
 * waiting for a connection). A cancel while the exchange runs asks the
 * server to cancel it; the callback then says ENGRAM_ECANCELED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

static const char seq_sql[] = "SELECT seq FROM ns_seq WHERE ns = $1::text";
/* $1 ns, $2 and $3 the row value to start after, $4 the page's rows. */
static const char page_sql[] =
    "SELECT id, vseq, type, embedder, embedding_dim, embedding"
    " FROM memories WHERE ns = $1::text"
    " AND (vseq, id) > ($2::bigint, $3::uuid)"
    " ORDER BY vseq, id LIMIT $4::bigint";
static const char removed_sql[] =
    "SELECT id FROM removed WHERE ns = $1::text AND seq > $2::bigint";

#define MAX_UUID "ffffffff-ffff-ffff-ffff-ffffffffffff"
enum { CMD_BEGIN, CMD_SEQ, CMD_PAGE, CMD_REMOVED };

typedef struct vec_req {
  pg_read_task t; /* the connection, the exchange, cancellation */
  store_vectors_req *req;
  /* the query, as text parameters */
  char *ns;
  char *embedder;
  uint32_t dim;
  char after_seq[24];
  char from_seq[24];
  char from_id[ENGRAM_ID_LEN + 1];
  char limit[24];
  int removed;
  /* the answer */
  store_vectors *page;
} vec_req;

static void vec_free(vec_req *r) {
  store_vectors_free(r->page);
  free(r->ns);
  free(r->embedder);
  free(r);
}

static void vec_finish(pg_read_task *t) {
  vec_req *r = PG_CONTAINER(t, vec_req, t);
  store_vectors *page = NULL;
  if (r->t.status == 0) {
    page = r->page;
    r->page = NULL;
  }
  store_vectors_req *req = r->req;
  req->impl = NULL;
  int status = r->t.status;
  char msg[PG_MSG_LEN];
  snprintf(msg, sizeof msg, "%s", r->t.msg);
  vec_free(r);
  req->cb(req, status, status ? msg : NULL, page);
}

/* ----------------------------------------------------------- the answer */

static int out_of_memory(vec_req *r) {
  r->t.status = ENGRAM_ENOMEM;
  snprintf(r->t.msg, sizeof r->t.msg, "out of memory reading vectors");
  return r->t.status;
}

static void read_seq(vec_req *r, const PGresult *res) {
  r->page->ns_seq =
      PQntuples(res) > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
}

static void read_page(vec_req *r, const PGresult *res) {
  store_vectors *p = r->page;
  size_t rows = (size_t)PQntuples(res), m = rows ? rows : 1;
  p->ids = malloc(m * sizeof *p->ids);
  p->seq = malloc(m * sizeof *p->seq);
  p->type = malloc(m);
  p->has_vector = malloc(m);
  p->vectors = malloc(m * r->dim * sizeof *p->vectors);
  if (!p->ids || !p->seq || !p->type || !p->has_vector || !p->vectors) {
    out_of_memory(r);
    return;
  }
  size_t bytes = (size_t)r->dim * sizeof(float);
  for (size_t i = 0; i < rows; i++) {
    int row = (int)i;
    const char *id = PQgetvalue(res, row, 0);
    long type = strtol(PQgetvalue(res, row, 2), NULL, 10);
    if (strlen(id) != ENGRAM_ID_LEN || type < 0 || type >= ENGRAM_TYPE_COUNT)
      continue;
    size_t at = p->n;
    memcpy(p->ids[at], id, ENGRAM_ID_LEN + 1);
    p->seq[at] = strtoll(PQgetvalue(res, row, 1), NULL, 10);
    p->type[at] = (unsigned char)type;
    float *v = p->vectors + at * r->dim;
    int ok = !PQgetisnull(res, row, 3) && !PQgetisnull(res, row, 5) &&
             strcmp(PQgetvalue(res, row, 3), r->embedder) == 0 &&
             strtoul(PQgetvalue(res, row, 4), NULL, 10) == r->dim;
    if (ok) {
      ok = pg_bytea_read(PQgetvalue(res, row, 5),
                         (size_t)PQgetlength(res, row, 5), v, bytes);
      if (ok < 0) {
        out_of_memory(r);
        return;
      }
    }
    if (!ok)
      memset(v, 0, bytes);
    p->has_vector[at] = (unsigned char)ok;
    p->n++;
  }
}

static void read_removed(vec_req *r, const PGresult *res) {
  store_vectors *p = r->page;
  size_t rows = (size_t)PQntuples(res);
  p->removed = malloc((rows ? rows : 1) * sizeof *p->removed);
  if (!p->removed) {
    out_of_memory(r);
    return;
  }
  for (size_t i = 0; i < rows; i++) {
    const char *id = PQgetvalue(res, (int)i, 0);
    if (strlen(id) == ENGRAM_ID_LEN)
      memcpy(p->removed[p->nremoved++], id, ENGRAM_ID_LEN + 1);
  }
}

static void ex_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  vec_req *r = PG_CONTAINER((pg_read_task *)ex->data, vec_req, t);
  if (r->t.status != 0 || r->t.cancelled)
    return;
  if (!pg_result_ok(res)) {
    r->t.status =
        pg_result_fail(res, "reading vectors", r->t.msg, sizeof r->t.msg);
    return;
  }
  if (cmd == CMD_SEQ)
    read_seq(r, res);
  else if (cmd == CMD_PAGE)
    read_page(r, res);
  else if (cmd == CMD_REMOVED && r->removed)
    read_removed(r, res);
}

static void vec_send(pg_read_task *t) {
  vec_req *r = PG_CONTAINER(t, vec_req, t);
  pg_conn *c = t->conn;
  const char *seq_values[1] = {r->ns};
  const char *page_values[4] = {r->ns, r->from_seq, r->from_id, r->limit};
  const char *removed_values[2] = {r->ns, r->after_seq};
  pg_read_task_begin(t);
  pg_exchange_sql(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
                  NULL);
  pg_exchange_sql(c, seq_sql, 1, seq_values, NULL);
  pg_exchange_sql(c, page_sql, 4, page_values, NULL);
  if (r->removed)
    pg_exchange_sql(c, removed_sql, 2, removed_values, NULL);
  pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
  pg_exchange_end(c);
}

/* ----------------------------------------------------------- the start */

int pg_vectors(store *base, const store_vectors_query *q,
               store_vectors_req *req) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q || !q->ns || !q->embedder || q->dim == 0 || q->limit == 0 || !req ||
      !req->cb || (q->after_id && strlen(q->after_id) != ENGRAM_ID_LEN))
    return ENGRAM_EINVAL;
  vec_req *r = calloc(1, sizeof *r);
  if (!r || !(r->ns = strdup(q->ns)) || !(r->embedder = strdup(q->embedder)) ||
      !(r->page = calloc(1, sizeof *r->page))) {
    if (r)
      vec_free(r);
    return ENGRAM_ENOMEM;
  }
  r->t.st = st;
  r->t.what = "reading vectors";
  r->t.send = vec_send;
  r->t.finish = vec_finish;
  r->t.ex.result = ex_result;
  r->req = req;
  r->dim = q->dim;
  r->removed = q->removed;
  snprintf(r->after_seq, sizeof r->after_seq, "%lld", (long long)q->after_seq);
  snprintf(r->from_seq, sizeof r->from_seq, "%lld",
           (long long)(q->after_id ? q->after_row_seq : q->after_seq));
  snprintf(r->from_id, sizeof r->from_id, "%s",
           q->after_id ? q->after_id : MAX_UUID);
  snprintf(r->limit, sizeof r->limit, "%zu", q->limit);
  req->impl = r;
  int rc = pg_read_task_start(&r->t, 1);
  if (rc != 0) {
    req->impl = NULL;
    vec_free(r);
    return rc;
  }
  return 0;
}

void pg_vectors_cancel(store *base, store_vectors_req *req) {
  (void)base;
  vec_req *r = req ? req->impl : NULL;
  if (r)
    pg_read_task_cancel(&r->t);
}
