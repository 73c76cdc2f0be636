/*
 * pg_candidates.c — hybrid search's candidates on PostgreSQL (store.h,
 * store_candidates_query): the best lexical matches of a query in a
 * namespace, the vector hits, and the memories just before and after
 * them, on one reader connection, in one read-only REPEATABLE READ
 * transaction (one snapshot, as SQLite's one read transaction), in two
 * exchanges:
 *   1. the lexical step (pg_terms.c): which rows to score, at a cost
 *      bounded by max_scored, and their BM25 scores, computed here from
 *      what the statement returns; the best `limit` of the wanted types
 *      are the matches (ties: the older first);
 *   2. read_sql: the matches (by id, with their scores), the vector hits
 *      (store_candidates_query.ids), and for every vector hit and the best
 *      window_matches matches that are conversation turns (episodic: no
 *      other type takes neighbours, see sqlite_candidates.c), through
 *      LATERAL subqueries on the (ns, id) index, the `window` memories of
 *      the wanted types before and after it (ids are UUIDv7: id order is
 *      creation order, a conversation's turns in order). A seed and its
 *      neighbours form a run of consecutive memories; a member of a run
 *      that has its predecessor in the run is adjacent to it. The runs are
 *      merged by id (a memory is adjacent when it is in any run) and the
 *      rows read in id order.
 * Since every run is a stretch of the same order (one snapshot), a memory
 * whose predecessor is in some run comes right after that predecessor in
 * the merged list: SQLite's merge (sqlite_candidates.c) gives the same
 * flags. A row that does not decode is left out, and the memory after it
 * loses its adjacency. With no word to match (or limit 0) only exchange 2
 * runs, with the vector hits and the matches the caller found (the
 * lexical index's, store_candidates_query.match_ids). The second exchange starts from the
 * first one's done callback: the connection is held between them, and the
 * statement of exchange 2 needs what exchange 1 found (one round trip
 * more; see pg_terms.c for why the scoring is not in SQL).
 *
 * The scores differ from SQLite's where search's do (pg_stream.c: the
 * statistics are the namespace's, not the table's), which hybrid ranking
 * normalises away; the order of matches is the same in the common cases.
 *
 * The callback runs once, on the loop, never inside pg_candidates: after
 * the last exchange's done, or from a no-op thread-pool task (nothing to
 * look for, or a cancel while waiting for a connection). Cancel while an
 * exchange runs asks the server to cancel it (pg_conn_cancel); no further
 * exchange starts, and the callback follows the exchange's end with
 * ENGRAM_ECANCELED, whatever the server answered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

#define CAND_FILTER(alias) PG_TYPE_FILTER(alias, "$3")

/* PG_NODE_COLUMNS, with the vector only when VEC (store_candidates_query
 * .vectors: unread, a ranking without vectors does not pay for them). */
#define CAND_NODE_COLUMNS(VEC)                                                 \
  "m.id, m.ns, m.type, m.content, m.content_hash, m.created_ms,"               \
  " m.updated_ms, m.accessed_ms, m.importance, m.metadata,"                    \
  " CASE WHEN " VEC " THEN m.embedding END, m.embedding_dim, m.embedder"

/* $1 ns, $2 the vector hits' ids (uuid[]), $3 the types mask, $4 window,
 * $5 whether the rows carry their vectors, $6 the matches' ids (uuid[],
 * of the wanted types already), $7 their scores (float8[]), $8
 * window_matches. Rows: PG_NODE_COLUMNS, the score (NULL: not a match),
 * adjacent, vhit.
 *   seed: the matches and the vector hits (tid, id, score s, vector hit v,
 *     whether it takes neighbours x: a conversation turn, e, that is a
 *     vector hit or one of the best $8 such matches);
 *   run: each seed's run, the seed and the window memories of the wanted
 *     types before and after it when it takes them (a member is linked
 *     when its predecessor is in the run);
 *   member: the runs merged by id (adjacent when linked in any run; the
 *     seed's own row brings its score and vector flag).
 * Every set is small and reached through what indexes serve (ids through
 * the primary key, rows through their ctids), so a generic plan (which
 * PostgreSQL may keep after a few runs of the prepared statement) is as
 * good as one made for the parameters. */
static const char read_sql[] =
    "WITH vec AS MATERIALIZED ("
    " SELECT m.ctid AS tid, m.id, m.type = 0 AS e FROM memories m"
    " WHERE m.id = ANY($2::uuid[]) AND m.ns = $1::text"
    " AND " CAND_FILTER("m") "),"
    "top AS MATERIALIZED ("
    " SELECT m.ctid AS tid, m.id, t.s, m.type = 0 AS e FROM memories m"
    " JOIN unnest($6::uuid[], $7::float8[]) AS t(id, s)"
    " ON t.id = m.id WHERE m.id = ANY($6::uuid[]) AND m.ns = $1::text"
    " AND " CAND_FILTER("m") "),"
    "seed AS MATERIALIZED ("
    " SELECT top.tid, top.id, top.s, v.id IS NOT NULL AS v,"
    "  top.e AND (v.id IS NOT NULL OR row_number() OVER"
    "   (PARTITION BY top.e ORDER BY top.s DESC, top.id) <= $8::bigint) AS x"
    " FROM top LEFT JOIN vec v ON v.id = top.id UNION ALL"
    " SELECT vec.tid, vec.id, NULL, true, vec.e FROM vec"
    " WHERE vec.id NOT IN (SELECT id FROM top)),"
    "run AS MATERIALIZED ("
    " SELECT r.tid, r.id, r.s, r.v,"
    "  lag(r.id) OVER (PARTITION BY t.id ORDER BY r.id) IS NOT NULL AS linked"
    " FROM seed t CROSS JOIN LATERAL ("
    "  SELECT t.tid, t.id, t.s, t.v"
    "  UNION ALL (SELECT m.ctid, m.id, NULL::float8, false FROM memories m"
    "   WHERE t.x AND m.ns = $1::text AND m.id < t.id AND " CAND_FILTER("m")
    "   ORDER BY m.id DESC LIMIT $4::bigint)"
    "  UNION ALL (SELECT m.ctid, m.id, NULL::float8, false FROM memories m"
    "   WHERE t.x AND m.ns = $1::text AND m.id > t.id AND " CAND_FILTER("m")
    "   ORDER BY m.id LIMIT $4::bigint)) r),"
    "member AS MATERIALIZED ("
    " SELECT run.tid, run.id, max(run.s) AS s, bool_or(run.v) AS v,"
    "  bool_or(run.linked) AS adjacent FROM run GROUP BY run.tid, run.id)"
    "SELECT " CAND_NODE_COLUMNS("$5::boolean") ", mb.s, mb.adjacent, mb.v"
    " FROM memories m JOIN member mb ON mb.tid = m.ctid"
    " WHERE m.ctid = ANY(ARRAY(SELECT tid FROM member)) ORDER BY mb.id";

_Static_assert(ENGRAM_EPISODIC == 0, "read_sql tests m.type = 0");

static const pg_stmt read_stmt = {"eg_cand_read", read_sql, 8};

/* As for search (pg_stream.c): JIT costs more than the query; a word with
 * no lexeme raises a notice. Both end with the transaction. */
static const char settings_sql[] =
    "SELECT set_config('jit', 'off', true),"
    " set_config('client_min_messages', 'warning', true)";

#define BEGIN_SQL "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
#define TERMS_CMD 2 /* BEGIN, settings, then the lexical step */

enum { P_TERMS, P_READ }; /* the exchange on the connection */
enum { V_NS, V_WORDS, V_BUDGET, V_META, V_TYPES, V_LIMIT, V_IDS, V_WINDOW,
       V_VECTORS, V_MATCHES_EXPANDED, V_SEEDS, V_SCORES, NVALUES };

typedef struct cand_req {
  pg_read_task t; /* the connection, the exchanges, cancellation */
  store_candidates_req *req;
  int lexical;    /* words to match: the lexical step runs first */
  int phase;      /* P_* */
  unsigned read_cmd; /* read_sql's command number in its exchange */
  pg_rank_args rank;
  char *values[NVALUES];
  pg_hit *hits;   /* the matches, best first */
  size_t nhits;
  store_candidates *set;
} cand_req;

static void cand_free(cand_req *r) {
  store_candidates_free(r->set);
  for (int i = 0; i < NVALUES; i++)
    free(r->values[i]);
  free(r->hits);
  free(r);
}

/* Calls back with r's outcome and frees r; nothing of r is held. */
static void cand_finish(pg_read_task *t) {
  cand_req *r = PG_CONTAINER(t, cand_req, t);
  store_candidates *set = NULL;
  if (r->t.status == 0) {
    if (!r->set)
      r->set = store_candidates_new(0);
    if (!r->set) {
      r->t.status = ENGRAM_ENOMEM;
      snprintf(r->t.msg, sizeof r->t.msg, "out of memory gathering candidates");
    }
  }
  if (r->t.status == 0) {
    set = r->set;
    r->set = NULL;
  }
  store_candidates_req *req = r->req;
  req->impl = NULL;
  int status = r->t.status;
  char msg[PG_MSG_LEN];
  snprintf(msg, sizeof msg, "%s", r->t.msg);
  cand_free(r);
  req->cb(req, status, status ? msg : NULL, set);
}

/* ----------------------------------------------------------- the answer */

static void read_rows(cand_req *r, const PGresult *res) {
  int rows = PQntuples(res);
  store_candidates *c = store_candidates_new((size_t)rows);
  if (!c) {
    r->t.status = ENGRAM_ENOMEM;
    snprintf(r->t.msg, sizeof r->t.msg, "out of memory reading candidates");
    return;
  }
  r->set = c;
  int lost_prev = 0;
  for (int i = 0; i < rows; i++) {
    engram_node *node = NULL;
    char msg[PG_MSG_LEN];
    int code = pg_row_node(res, i, 0, &node, msg, sizeof msg);
    if (code == ENGRAM_ENOMEM) {
      r->t.status = code;
      snprintf(r->t.msg, sizeof r->t.msg, "%s", msg);
      return;
    }
    if (code != 0) {
      /* Left out; what came after it is no longer known to follow. */
      rt_log(r->t.st->head.rt, ENGRAM_LOG_WARN, "a candidate was left out: %s",
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
  cand_req *r = PG_CONTAINER((pg_read_task *)ex->data, cand_req, t);
  if (r->t.status != 0 || r->t.cancelled)
    return;
  if (!pg_result_ok(res)) {
    r->t.status =
        pg_result_fail(res, "gathering hybrid search candidates", r->t.msg,
                       sizeof r->t.msg);
    return;
  }
  if (r->phase == P_TERMS && cmd == TERMS_CMD)
    r->t.status = pg_terms_rank(res, &r->rank, &r->hits, &r->nhits, r->t.msg,
                                sizeof r->t.msg);
  else if (r->phase == P_READ && cmd == r->read_cmd)
    read_rows(r, res);
}

/* ------------------------------------------------------- the exchanges */

/* The matches as read_sql's $6 (ids) and $7 (scores). 0 or
 * ENGRAM_ENOMEM. */
static int format_hits(cand_req *r) {
  size_t n = r->nhits;
  char *ids = malloc(n * (ENGRAM_ID_LEN + 1) + 3);
  char *scores = malloc(n * 26 + 3);
  if (!ids || !scores) {
    free(ids);
    free(scores);
    return ENGRAM_ENOMEM;
  }
  size_t li = 0, ls = 0;
  ids[li++] = scores[ls++] = '{';
  for (size_t i = 0; i < n; i++) {
    if (i)
      ids[li++] = scores[ls++] = ',';
    memcpy(ids + li, r->hits[i].id, ENGRAM_ID_LEN);
    li += ENGRAM_ID_LEN;
    ls += (size_t)snprintf(scores + ls, 26, "%.17g", r->hits[i].score);
  }
  ids[li++] = scores[ls++] = '}';
  ids[li] = scores[ls] = '\0';
  r->values[V_SEEDS] = ids;
  r->values[V_SCORES] = scores;
  return 0;
}

/* Queues read_sql, command `at` of the exchange, and the end of the
 * transaction. */
static void queue_read(cand_req *r, pg_conn *c, unsigned at) {
  r->read_cmd = at;
  const char *values[8] = {r->values[V_NS],      r->values[V_IDS],
                           r->values[V_TYPES],   r->values[V_WINDOW],
                           r->values[V_VECTORS], r->values[V_SEEDS],
                           r->values[V_SCORES],
                           r->values[V_MATCHES_EXPANDED]};
  pg_exchange_stmt(c, &read_stmt, values, NULL);
  pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
}

/* The second exchange, on the connection the first one leaves idle and
 * inside the transaction (the task's `more`): 1 when it was begun. */
static int cand_more(pg_read_task *t) {
  cand_req *r = PG_CONTAINER(t, cand_req, t);
  if (r->phase != P_TERMS)
    return 0;
  if (format_hits(r) != 0) {
    r->t.status = ENGRAM_ENOMEM;
    snprintf(r->t.msg, sizeof r->t.msg, "out of memory gathering candidates");
    return 0;
  }
  r->phase = P_READ;
  pg_read_task_begin(t);
  queue_read(r, t->conn, 0);
  pg_exchange_end(t->conn);
  return 1;
}

static void cand_send(pg_read_task *t) {
  cand_req *r = PG_CONTAINER(t, cand_req, t);
  pg_conn *c = t->conn;
  pg_read_task_begin(t);
  pg_exchange_sql(c, BEGIN_SQL, 0, NULL, NULL);
  pg_exchange_sql(c, settings_sql, 0, NULL, NULL);
  if (r->lexical) {
    r->phase = P_TERMS;
    const char *values[6] = {r->values[V_NS],    r->values[V_WORDS],
                             r->values[V_BUDGET], r->values[V_META],
                             r->values[V_TYPES], r->values[V_LIMIT]};
    pg_exchange_stmt(c, pg_terms_stmt(), values, NULL);
  } else {
    r->phase = P_READ;
    queue_read(r, c, TERMS_CMD);
  }
  pg_exchange_end(c);
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

/* The caller's matches (the lexical index's), the canonical ids only, as
 * the lexical step's hits. 0 or ENGRAM_ENOMEM. */
static int take_matches(cand_req *r, const store_candidates_query *q) {
  if (!q->nmatch_ids)
    return 0;
  if (!(r->hits = malloc(q->nmatch_ids * sizeof *r->hits)))
    return ENGRAM_ENOMEM;
  for (size_t i = 0; i < q->nmatch_ids; i++) {
    if (!q->match_ids[i] || !engram_id_valid(q->match_ids[i]))
      continue;
    memcpy(r->hits[r->nhits].id, q->match_ids[i], ENGRAM_ID_LEN + 1);
    r->hits[r->nhits++].score = q->match_scores[i];
  }
  return 0;
}

int pg_candidates(store *base, const store_candidates_query *q,
                  store_candidates_req *req) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q || !q->ns || !q->text || !req || !req->cb ||
      (q->nmatch_ids && (!q->match_ids || !q->match_scores || q->limit)))
    return ENGRAM_EINVAL;
  cand_req *r = calloc(1, sizeof *r);
  if (!r)
    return ENGRAM_ENOMEM;
  r->t.st = st;
  r->t.what = "a hybrid search";
  r->t.send = cand_send;
  r->t.more = cand_more;
  r->t.finish = cand_finish;
  r->t.ex.result = ex_result;
  r->req = req;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  size_t words = 0;
  if (pg_search_words(q->text, len, &r->values[V_WORDS], &words) != 0) {
    free(r);
    return ENGRAM_ENOMEM;
  }
  char types[16];
  snprintf(types, sizeof types, "%u", q->types);
  r->values[V_NS] = strdup(q->ns);
  r->values[V_BUDGET] =
      q->max_scored ? format_size(q->max_scored) : strdup(PG_NO_BUDGET);
  r->values[V_META] = format_double(q->meta_weight);
  r->values[V_TYPES] = strdup(types);
  r->values[V_LIMIT] = format_size(q->limit);
  size_t nids = 0;
  r->values[V_IDS] = format_ids(q->ids, q->ids ? q->nids : 0, &nids);
  r->values[V_WINDOW] = format_size(q->window);
  r->values[V_VECTORS] = strdup(q->vectors ? "true" : "false");
  r->values[V_MATCHES_EXPANDED] = format_size(q->window_matches);
  for (int i = 0; i < V_SEEDS; i++)
    if (!r->values[i]) {
      cand_free(r);
      return ENGRAM_ENOMEM;
    }
  r->rank = (pg_rank_args){.k1 = q->k1,
                           .b = q->b,
                           .meta_weight = q->meta_weight,
                           .types = q->types,
                           .limit = q->limit};
  r->lexical = words > 0 && q->limit > 0;
  if (!r->lexical && take_matches(r, q) != 0) {
    cand_free(r);
    return ENGRAM_ENOMEM;
  }
  if (!r->lexical && format_hits(r) != 0) { /* the caller's, or none */
    cand_free(r);
    return ENGRAM_ENOMEM;
  }
  req->impl = r;
  /* Nothing to look for: an empty set, still from the loop, later. */
  int rc = pg_read_task_start(&r->t, r->lexical || nids > 0 || r->nhits > 0);
  if (rc != 0) {
    req->impl = NULL;
    cand_free(r);
    return rc;
  }
  return 0;
}

void pg_candidates_cancel(store *base, store_candidates_req *req) {
  (void)base;
  cand_req *r = req ? req->impl : NULL;
  if (r)
    pg_read_task_cancel(&r->t);
}
