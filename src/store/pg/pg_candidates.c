/*
 * pg_candidates.c — hybrid search's candidates on PostgreSQL (store.h,
 * store_candidates_query): the best lexical matches of a query in a
 * namespace and the memories just before and after each of them, in one
 * statement, in one round trip on a reader connection.
 *
 * The statement (candidates_sql):
 *   1. scores the namespace's hits by BM25 (PG_SCORE_CTES, the scoring of
 *      search, with the query's k1, b and meta_weight: an occurrence in
 *      the content, weight A in memories.tsv, counts 1, one in the
 *      metadata values, weight B, counts meta_weight) and keeps the
 *      `limit` best of the wanted types (ties: the older first);
 *   2. for each, through LATERAL subqueries on the (ns, id) index, the
 *      `window` memories of the wanted types before it and after it (ids
 *      are UUIDv7: id order is creation order, a conversation's turns in
 *      order). A match and its neighbours form a run of consecutive
 *      memories; a member of a run that has its predecessor in the run is
 *      adjacent to it;
 *   3. merges the runs by id (a memory adjacent when it is in any run),
 *      and reads the rows by ctid, in id order, with the match's score.
 * Since every run is a stretch of the same order (one snapshot), a memory
 * whose predecessor is in some run comes right after that predecessor in
 * the merged list: SQLite's merge (sqlite_candidates.c) gives the same
 * flags. A row that does not decode is left out, and the memory after it
 * loses its adjacency. The work is bounded by the namespace's hits (every
 * hit is scored, as search does) plus limit * (2 * window + 1) rows, which
 * the API layer caps.
 *
 * Vector hits (store_candidates_query.ids) are seeds of runs like the
 * matches, marked vhit, without a score; with no word to match, a smaller
 * statement (vector_hits_sql) reads them and their neighbours alone.
 *
 * The scores differ from SQLite's where search's do (pg_stream.c: the
 * statistics are the namespace's, not the table's), which hybrid ranking
 * normalises away; the order of matches is the same in the common cases.
 *
 * The callback runs once, on the loop, never inside pg_candidates: after
 * the exchange's done, or from a no-op thread-pool task (nothing to look
 * for, or a cancel while waiting for a connection). Cancel while the
 * statement runs asks the server to cancel it (pg_conn_cancel); the
 * callback follows the exchange's end with ENGRAM_ECANCELED, whatever the
 * server answered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

#define CAND_FILTER(alias) PG_TYPE_FILTER(alias, "$3")

/* The runs around each seed (a CTE of tid, id): the seed and the WINDOW
 * memories of the wanted types ($3) of namespace $1 before and after it,
 * merged by id, a member adjacent when its predecessor is in one of its
 * runs. */
#define RUN_CTES(SEED, WINDOW)                                                 \
  "run AS MATERIALIZED ("                                                      \
  " SELECT r.tid, r.id,"                                                       \
  "  lag(r.id) OVER (PARTITION BY t.id ORDER BY r.id) IS NOT NULL AS linked"   \
  " FROM " SEED " t CROSS JOIN LATERAL ("                                      \
  "  SELECT t.tid, t.id"                                                       \
  "  UNION ALL (SELECT m.ctid, m.id FROM memories m"                           \
  "   WHERE m.ns = $1::text AND m.id < t.id AND " CAND_FILTER("m")             \
  "   ORDER BY m.id DESC LIMIT " WINDOW ")"                                    \
  "  UNION ALL (SELECT m.ctid, m.id FROM memories m"                           \
  "   WHERE m.ns = $1::text AND m.id > t.id AND " CAND_FILTER("m")             \
  "   ORDER BY m.id LIMIT " WINDOW ")) r),"                                    \
  "member AS MATERIALIZED ("                                                   \
  " SELECT run.tid, run.id, bool_or(run.linked) AS adjacent FROM run"          \
  " GROUP BY run.tid, run.id)"

/* The vector hits: the memories of ids IDS (a uuid[]) in namespace $1, of
 * the wanted types. */
#define VEC_CTE(IDS)                                                           \
  "vec AS MATERIALIZED ("                                                      \
  " SELECT m.ctid AS tid, m.id FROM memories m"                                \
  " WHERE m.id = ANY(" IDS "::uuid[]) AND m.ns = $1::text"                     \
  " AND " CAND_FILTER("m") "),"

/* PG_NODE_COLUMNS, with the vector only when VEC (store_candidates_query
 * .vectors: unread, a ranking without vectors does not pay for them). */
#define CAND_NODE_COLUMNS(VEC)                                                 \
  "m.id, m.ns, m.type, m.content, m.content_hash, m.created_ms,"               \
  " m.updated_ms, m.accessed_ms, m.importance, m.metadata,"                    \
  " CASE WHEN " VEC " THEN m.embedding END, m.embedding_dim, m.embedder"

/* $1 ns, $2 the words (text[]), $3 the types mask, $4 k1, $5 b,
 * $6 meta_weight, $7 limit, $8 window, $9 the vector hits' ids (uuid[]),
 * $10 whether the rows carry their vectors.
 * Rows: PG_NODE_COLUMNS, the score (NULL: not a match), adjacent, vhit. */
static const char candidates_sql[] =
    "WITH " PG_SCORE_CTES("$4::float8", "$5::float8", "$6::float8") ","
    "top AS MATERIALIZED ("
    " SELECT sc.tid, sc.id, sc.s FROM score sc"
    " ORDER BY sc.s DESC, sc.id LIMIT $7::bigint),"
    VEC_CTE("$9")
    "seed AS MATERIALIZED ("
    " SELECT tid, id FROM top UNION ALL"
    " SELECT tid, id FROM vec WHERE id NOT IN (SELECT id FROM top)),"
    RUN_CTES("seed", "$8::bigint")
    "SELECT " CAND_NODE_COLUMNS("$10::boolean")
    ", t.s, mb.adjacent, v.id IS NOT NULL"
    " FROM member mb JOIN memories m ON m.ctid = mb.tid"
    " LEFT JOIN top t ON t.id = mb.id LEFT JOIN vec v ON v.id = mb.id"
    " ORDER BY mb.id";

/* No word to match: the vector hits alone and their neighbours. $1 ns,
 * $2 the ids (uuid[]), $3 the types mask, $4 window, $5 whether the rows
 * carry their vectors; rows as above. */
static const char vector_hits_sql[] =
    "WITH " VEC_CTE("$2") RUN_CTES("vec", "$4::bigint")
    "SELECT " CAND_NODE_COLUMNS("$5::boolean")
    ", NULL::float8, mb.adjacent, v.id IS NOT NULL"
    " FROM member mb JOIN memories m ON m.ctid = mb.tid"
    " LEFT JOIN vec v ON v.id = mb.id ORDER BY mb.id";

/* As for search (pg_stream.c): JIT costs more than the query; a word with
 * no lexeme raises a notice. Both end with the transaction. */
static const char settings_sql[] =
    "SELECT set_config('jit', 'off', true),"
    " set_config('client_min_messages', 'warning', true)";

#define QUERY_CMD 2 /* BEGIN, settings, the query, COMMIT */
#define NPARAMS 10

typedef struct cand_req {
  pg_store *st;
  store_candidates_req *req;
  pg_wait wait;
  pg_exchange ex;
  pg_conn *conn;  /* held while the exchange runs */
  rt_work work;   /* the no-op task that calls back from the loop */
  int running;    /* the exchange is on the connection */
  int deferred;   /* the task is out */
  int cancelled;
  int empty;      /* nothing to look for */
  int ids_only;   /* no word: the vector hits alone (vector_hits_sql) */
  char *values[NPARAMS];
  int status;
  char msg[PG_MSG_LEN];
  store_candidates *set;
} cand_req;

static void cand_free(cand_req *r) {
  store_candidates_free(r->set);
  for (int i = 0; i < NPARAMS; i++)
    free(r->values[i]);
  free(r);
}

static store_candidates *set_new(size_t n) {
  store_candidates *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  size_t m = n ? n : 1;
  c->nodes = calloc(m, sizeof *c->nodes);
  c->score = calloc(m, sizeof *c->score);
  c->hit = calloc(m, 1);
  c->adjacent = calloc(m, 1);
  c->vhit = calloc(m, 1);
  if (!c->nodes || !c->score || !c->hit || !c->adjacent || !c->vhit) {
    store_candidates_free(c);
    return NULL;
  }
  return c;
}

/* Calls back with r's outcome and frees r; nothing of r is held. */
static void cand_finish(cand_req *r) {
  if (r->cancelled) {
    r->status = ENGRAM_ECANCELED;
    snprintf(r->msg, sizeof r->msg, "the search was cancelled");
  }
  store_candidates *set = NULL;
  if (r->status == 0) {
    if (!r->set)
      r->set = set_new(0);
    if (!r->set) {
      r->status = ENGRAM_ENOMEM;
      snprintf(r->msg, sizeof r->msg, "out of memory gathering candidates");
    }
  }
  if (r->status == 0) {
    set = r->set;
    r->set = NULL;
  } else if (r->status != ENGRAM_ECANCELED) {
    rt_log(r->st->head.rt, ENGRAM_LOG_ERROR, "a hybrid search failed: %s",
           r->msg);
  }
  store_candidates_req *req = r->req;
  req->impl = NULL;
  int status = r->status;
  char msg[PG_MSG_LEN];
  snprintf(msg, sizeof msg, "%s", r->msg);
  cand_free(r);
  req->cb(req, status, status ? msg : NULL, set);
}

/* ----------------------------------------------------------- the answer */

static void read_rows(cand_req *r, const PGresult *res) {
  int rows = PQntuples(res);
  store_candidates *c = set_new((size_t)rows);
  if (!c) {
    r->status = ENGRAM_ENOMEM;
    snprintf(r->msg, sizeof r->msg, "out of memory reading candidates");
    return;
  }
  r->set = c;
  int lost_prev = 0;
  for (int i = 0; i < rows; i++) {
    engram_node *node = NULL;
    char msg[PG_MSG_LEN];
    int code = pg_row_node(res, i, 0, &node, msg, sizeof msg);
    if (code == ENGRAM_ENOMEM) {
      r->status = code;
      snprintf(r->msg, sizeof r->msg, "%s", msg);
      return;
    }
    if (code != 0) {
      /* Left out; what came after it is no longer known to follow. */
      rt_log(r->st->head.rt, ENGRAM_LOG_WARN, "a candidate was left out: %s",
             msg);
      lost_prev = 1;
      continue;
    }
    int hit = !PQgetisnull(res, i, PG_NODE_NCOLUMNS);
    double score = hit ? strtod(PQgetvalue(res, i, PG_NODE_NCOLUMNS), NULL) : 0;
    const char *adjacent = PQgetvalue(res, i, PG_NODE_NCOLUMNS + 1);
    const char *vhit = PQgetvalue(res, i, PG_NODE_NCOLUMNS + 2);
    c->nodes[c->n] = node;
    c->score[c->n] = score > 0 ? score : 0;
    c->hit[c->n] = (unsigned char)hit;
    c->vhit[c->n] = (unsigned char)(vhit[0] == 't');
    c->adjacent[c->n] =
        (unsigned char)(c->n > 0 && !lost_prev && adjacent[0] == 't');
    lost_prev = 0;
    c->n++;
  }
}

static void ex_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  cand_req *r = ex->data;
  if (r->status != 0 || r->cancelled)
    return;
  if (!pg_result_ok(res)) {
    r->status =
        pg_result_fail(res, "gathering hybrid search candidates", r->msg,
                       sizeof r->msg);
    return;
  }
  if (cmd == QUERY_CMD)
    read_rows(r, res);
}

static void ex_done(pg_exchange *ex, int status, const char *msg) {
  cand_req *r = ex->data;
  pg_store *st = r->st;
  r->running = 0;
  st->head.queries_running--;
  if (status != 0 && r->status == 0) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg,
             "a hybrid search lost its connection: %s",
             msg ? msg : "no reason given");
  }
  pg_conn *c = r->conn;
  r->conn = NULL;
  /* Given back first, so that waiting work goes on; it rolls back what
   * an aborted exchange left open. */
  pg_pool_release(&st->readers, c);
  cand_finish(r);
}

static void cand_send(cand_req *r, pg_conn *c) {
  r->conn = c;
  r->running = 1;
  r->st->head.queries_running++;
  r->ex.result = ex_result;
  r->ex.done = ex_done;
  r->ex.data = r;
  pg_exchange_begin(c, &r->ex);
  pg_exchange_sql(c, "BEGIN READ ONLY", 0, NULL, NULL);
  pg_exchange_sql(c, settings_sql, 0, NULL, NULL);
  if (r->ids_only) {
    const char *values[5] = {r->values[0], r->values[8], r->values[2],
                             r->values[7], r->values[9]};
    pg_exchange_sql(c, vector_hits_sql, 5, values, NULL);
  } else {
    pg_exchange_sql(c, candidates_sql, NPARAMS,
                    (const char *const *)r->values, NULL);
  }
  pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
  pg_exchange_end(c);
}

/* A connection came back to the queued request, from another operation's
 * callback: calling back here is not inside pg_candidates. */
static void cand_granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  cand_req *r = PG_CONTAINER(w, cand_req, wait);
  if (status != 0) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s",
             msg ? msg : "no PostgreSQL connection for a hybrid search");
    cand_finish(r);
    return;
  }
  cand_send(r, c);
}

/* ------------------------------------------------- calling back later */

static void deferred_run(rt_work *w) {
  (void)w;
}

static void deferred_after(rt_work *w, int status) {
  cand_req *r = PG_CONTAINER(w, cand_req, work);
  (void)status;
  pg_store *st = r->st;
  st->tasks--;
  r->deferred = 0;
  cand_finish(r);
  pg_maybe_close(st);
}

/* Calls back from a no-op task: 0, or ENGRAM_ENOMEM when the thread pool
 * refused it. */
static int defer(cand_req *r) {
  if (rt_offload(r->st->head.rt, &r->work, deferred_run, deferred_after) != 0)
    return ENGRAM_ENOMEM;
  r->deferred = 1;
  r->st->tasks++;
  return 0;
}

/* ----------------------------------------------------------- the start */

static char *format_double(double v) {
  char buf[40];
  snprintf(buf, sizeof buf, "%.17g", v);
  return strdup(buf);
}

/* The ids as a uuid[] literal, the canonical ones only (nothing else
 * could be a memory's id); *kept gets their count. */
static char *format_ids(const char *const *ids, size_t n, size_t *kept) {
  char *text = malloc(n * (ENGRAM_ID_LEN + 1) + 3);
  if (!text)
    return NULL;
  size_t len = 0;
  *kept = 0;
  text[len++] = '{';
  for (size_t i = 0; i < n; i++) {
    if (!ids[i] || !engram_id_valid(ids[i]))
      continue;
    if ((*kept)++)
      text[len++] = ',';
    memcpy(text + len, ids[i], ENGRAM_ID_LEN);
    len += ENGRAM_ID_LEN;
  }
  text[len++] = '}';
  text[len] = '\0';
  return text;
}

static char *format_size(size_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%zu", v);
  return strdup(buf);
}

int pg_candidates(store *base, const store_candidates_query *q,
                  store_candidates_req *req) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q || !q->ns || !q->text || !req || !req->cb)
    return ENGRAM_EINVAL;
  cand_req *r = calloc(1, sizeof *r);
  if (!r)
    return ENGRAM_ENOMEM;
  r->st = st;
  r->req = req;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  size_t words = 0;
  if (pg_search_words(q->text, len, &r->values[1], &words) != 0) {
    free(r);
    return ENGRAM_ENOMEM;
  }
  char types[16];
  snprintf(types, sizeof types, "%u", q->types);
  r->values[0] = strdup(q->ns);
  r->values[2] = strdup(types);
  r->values[3] = format_double(q->k1);
  r->values[4] = format_double(q->b);
  r->values[5] = format_double(q->meta_weight);
  r->values[6] = format_size(q->limit);
  r->values[7] = format_size(q->window);
  size_t nids = 0;
  r->values[8] = format_ids(q->ids, q->ids ? q->nids : 0, &nids);
  r->values[9] = strdup(q->vectors ? "true" : "false");
  /* q->max_scored is not used yet: every hit of the namespace is scored
   * (SQLite caps the matches it scores, see sqlite_candidates.c). */
  for (int i = 0; i < NPARAMS; i++)
    if (!r->values[i]) {
      cand_free(r);
      return ENGRAM_ENOMEM;
    }
  req->impl = r;
  r->ids_only = (words == 0 || q->limit == 0) && nids > 0;
  if ((words == 0 || q->limit == 0) && !r->ids_only) {
    /* Nothing to look for: an empty set, still from the loop, later. */
    r->empty = 1;
    if (defer(r) != 0) {
      req->impl = NULL;
      cand_free(r);
      return ENGRAM_ENOMEM;
    }
    return 0;
  }
  pg_conn *c = NULL;
  int rc = pg_pool_acquire(&st->readers, &r->wait, cand_granted, &c);
  if (rc != 0) {
    if (rc == ENGRAM_EIO)
      rt_log(st->head.rt, ENGRAM_LOG_ERROR, "a hybrid search failed: %s",
             pg_pool_error(&st->readers));
    req->impl = NULL;
    cand_free(r);
    return rc;
  }
  if (c)
    cand_send(r, c);
  return 0;
}

void pg_candidates_cancel(store *base, store_candidates_req *req) {
  pg_store *st = (pg_store *)base;
  cand_req *r = req ? req->impl : NULL;
  if (!r || r->cancelled)
    return;
  r->cancelled = 1;
  if (r->running) {
    pg_conn_cancel(r->conn); /* ex_done calls back */
    return;
  }
  if (r->deferred)
    return; /* deferred_after calls back, cancelled */
  /* Waiting for a connection: leave the queue, call back from a task. */
  if (r->wait.queued)
    pg_pool_unwait(&st->readers, &r->wait);
  if (defer(r) != 0) {
    /* libuv's queue does not refuse work; kept safe all the same: the
     * request stays cancelled, and its caller waits for nothing else. */
    rt_log(st->head.rt, ENGRAM_LOG_ERROR,
           "cannot finish a cancelled hybrid search: out of memory");
  }
}
