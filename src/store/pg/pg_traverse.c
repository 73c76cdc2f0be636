/*
 * pg_traverse.c — the traverse stream of the PostgreSQL backend:
 * breadth-first over relationships (both directions, strength >=
 * min_strength, in the namespace) from a start memory, up to max_depth
 * hops, each memory once, start first at depth 0.
 *
 * The walk is driven level by level from here rather than by one recursive
 * CTE. A recursive CTE cannot remember which memories it has seen (its
 * working table holds only the last level), so it is cycle-safe only by
 * carrying paths, and on a dense graph the paths multiply with every hop;
 * the order in which it would list a level is not SQLite's either. Here,
 * as in sqlite_traverse.c, a FIFO of discovered ids with a visited set
 * (what a breadth-first walk has to remember: it grows with the memories
 * reached, never with the edges) and two positions: `emit`, the next id
 * whose row is read and emitted, and `expand`, the next id whose
 * neighbours are looked up. Emitting goes first, so memories leave in
 * discovery order, and the walk discovers no further than the demand
 * needs. Both steps are bounded server work:
 *  - rows: one statement reads the rows of up to min(demand, chunk_rows)
 *    ids of the FIFO, in FIFO order (a memory deleted since its link was
 *    read is skipped; a missing start is ENGRAM_ENOTFOUND);
 *  - neighbours: a server-side cursor over the links of up to chunk_rows
 *    ids of the FIFO still under max_depth, fetched chunk_rows rows at a
 *    time; expanding them together discovers in the same order as one by
 *    one. Neighbours come per parent in FIFO order, out-links (by target)
 *    before in-links (by source), which is the order of SQLite's indexes.
 * Everything runs in one REPEATABLE READ READ ONLY transaction: the walk
 * sees one snapshot of the graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/pg/pg_cursor.h"
#include "store/store_walk.h"

#define NBR_CURSOR "eg_n"

static const pg_stmt rows_stmt = {
    "eg_traverse_rows",
    "SELECT b.ord, " PG_NODE_COLUMNS
    " FROM unnest($1::uuid[]) WITH ORDINALITY AS b(id, ord)"
    " JOIN memories m ON m.id = b.id WHERE m.ns = $2::text ORDER BY b.ord",
    2};

/* $1 the parents (uuid[]), $2 ns, $3 min_strength. */
static const char neighbours_sql[] =
    "DECLARE " NBR_CURSOR " NO SCROLL CURSOR FOR"
    " SELECT x.other, b.ord"
    " FROM unnest($1::uuid[]) WITH ORDINALITY AS b(id, ord)"
    " CROSS JOIN LATERAL ("
    "  SELECT r.target AS other, 0 AS dir FROM relationships r"
    "  WHERE r.source = b.id AND r.ns = $2::text AND r.strength >= $3::float8"
    "  UNION ALL"
    "  SELECT r.source, 1 FROM relationships r"
    "  WHERE r.target = b.id AND r.ns = $2::text AND r.strength >= $3::float8"
    " ) x ORDER BY b.ord, x.dir, x.other";

enum { STEP_ROWS, STEP_NEIGHBOURS };

typedef struct trav_cursor {
  pg_cursor c; /* first */
  char *ns;
  char start[ENGRAM_ID_LEN + 1];
  uint32_t max_depth;
  char min_strength[32];
  store_walk walk; /* the breadth-first FIFO and its visited set */
  size_t emit, expand;
  /* the server side */
  int began;        /* BEGIN queued */
  int nbr_open;     /* the neighbour cursor has rows left */
  int nbr_declared; /* it exists (closed before the next DECLARE) */
  size_t batch_end; /* it covers the parents ids[expand..batch_end) */
  /* the step in flight */
  int step;
  unsigned data_cmd; /* its command that returns rows */
  size_t from;       /* rows: ids[from..emit) were asked */
  size_t asked;      /* neighbours: rows the FETCH asked for */
  char *param;       /* its uuid[] literal, alive until its results came */
} trav_cursor;

/* "{id,id,...}" for ids[from..to), in t->param. 0 or ENGRAM_ENOMEM. */
static int make_param(trav_cursor *t, size_t from, size_t to) {
  free(t->param);
  t->param = malloc((to - from) * (ENGRAM_ID_LEN + 1) + 2);
  if (!t->param)
    return ENGRAM_ENOMEM;
  char *p = t->param;
  for (size_t i = from; i < to; i++) {
    *p++ = i == from ? '{' : ',';
    memcpy(p, t->walk.ids[i], ENGRAM_ID_LEN);
    p += ENGRAM_ID_LEN;
  }
  *p++ = '}';
  *p = '\0';
  return 0;
}

static void queue_rows(trav_cursor *t, size_t want) {
  size_t to = t->emit + want < t->walk.n ? t->emit + want : t->walk.n;
  if (make_param(t, t->emit, to) != 0) {
    pg_cursor_fail(&t->c, ENGRAM_ENOMEM, "out of memory walking relationships");
    return;
  }
  const char *values[2] = {t->param, t->ns};
  t->step = STEP_ROWS;
  t->from = t->emit;
  t->emit = to;
  t->data_cmd = t->c.ncmds;
  pg_cursor_stmt(&t->c, &rows_stmt, values);
}

static void queue_fetch(trav_cursor *t, size_t chunk) {
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %zu FROM " NBR_CURSOR, chunk);
  t->step = STEP_NEIGHBOURS;
  t->asked = chunk;
  t->data_cmd = t->c.ncmds;
  pg_cursor_sql(&t->c, fetch, 0, NULL);
}

static void queue_neighbours(trav_cursor *t, size_t chunk) {
  size_t end = t->expand;
  while (end < t->walk.n && end - t->expand < chunk &&
         t->walk.depth[end] < t->max_depth)
    end++;
  if (make_param(t, t->expand, end) != 0) {
    pg_cursor_fail(&t->c, ENGRAM_ENOMEM, "out of memory walking relationships");
    return;
  }
  if (t->nbr_declared)
    pg_cursor_sql(&t->c, "CLOSE " NBR_CURSOR, 0, NULL);
  const char *values[3] = {t->param, t->ns, t->min_strength};
  pg_cursor_sql(&t->c, neighbours_sql, 3, values);
  t->nbr_declared = 1;
  t->nbr_open = 1;
  t->batch_end = end;
  queue_fetch(t, chunk);
}

static void trav_queue(pg_cursor *c, size_t want) {
  trav_cursor *t = (trav_cursor *)c;
  size_t chunk = c->st->chunk_rows ? c->st->chunk_rows : 1;
  if (t->walk.n == 0 && store_walk_add(&t->walk, t->start, 0) != 0) {
    pg_cursor_fail(c, ENGRAM_ENOMEM, "out of memory starting a traversal");
    return;
  }
  int emit = t->emit < t->walk.n;
  int fetch = !emit && t->nbr_open;
  /* The FIFO is in depth order: once the next parent is at max_depth,
   * every later one is too. */
  int expand = !emit && !fetch && t->expand < t->walk.n &&
               t->walk.depth[t->expand] < t->max_depth;
  if (!emit && !fetch && !expand) {
    c->at_end = 1;
    return;
  }
  if (!t->began) {
    t->began = 1;
    pg_cursor_sql(c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0,
                  NULL);
  }
  if (emit)
    queue_rows(t, want);
  else if (fetch)
    queue_fetch(t, chunk);
  else
    queue_neighbours(t, chunk);
}

static void rows_result(trav_cursor *t, PGresult *res) {
  pg_cursor *c = &t->c;
  int rows = PQntuples(res);
  int start_found = 0;
  for (int i = 0; i < rows && c->rc == 0; i++) {
    long ord = strtol(PQgetvalue(res, i, 0), NULL, 10);
    size_t at = t->from + (size_t)(ord > 0 ? ord - 1 : 0);
    if (at >= t->emit) {
      pg_cursor_fail(c, ENGRAM_EIO,
                     "a traversal read a row it did not ask for");
      return;
    }
    if (at == 0)
      start_found = 1;
    pg_cursor_push_row(c, res, i, 1, 0, t->walk.depth[at]);
  }
  /* Any other id missing: linked, then deleted since the link was read;
   * nothing to show. */
  if (t->from == 0 && !start_found)
    pg_cursor_fail(c, ENGRAM_ENOTFOUND, "no memory %s in namespace \"%s\"",
                   t->start, t->ns);
}

static void neighbours_result(trav_cursor *t, PGresult *res) {
  pg_cursor *c = &t->c;
  int rows = PQntuples(res);
  for (int i = 0; i < rows; i++) {
    const char *id = PQgetvalue(res, i, 0);
    long ord = strtol(PQgetvalue(res, i, 1), NULL, 10);
    size_t parent = t->expand + (size_t)(ord > 0 ? ord - 1 : 0);
    if (PQgetlength(res, i, 0) != ENGRAM_ID_LEN || parent >= t->batch_end)
      continue;
    if (!store_walk_seen(&t->walk, id) &&
        store_walk_add(&t->walk, id, t->walk.depth[parent] + 1) != 0) {
      pg_cursor_fail(c, ENGRAM_ENOMEM, "out of memory walking relationships");
      return;
    }
  }
  if ((size_t)rows < t->asked) {
    t->nbr_open = 0;
    t->expand = t->batch_end;
  }
}

static void trav_result(pg_cursor *c, unsigned cmd, PGresult *res) {
  trav_cursor *t = (trav_cursor *)c;
  if (!pg_result_ok(res)) {
    pg_cursor_fail_result(c, res, "walking relationships");
    return;
  }
  if (cmd != t->data_cmd)
    return;
  if (t->step == STEP_ROWS)
    rows_result(t, res);
  else
    neighbours_result(t, res);
}

static void trav_destroy(pg_cursor *c) {
  trav_cursor *t = (trav_cursor *)c;
  store_walk_free(&t->walk);
  free(t->param);
  free(t->ns);
  free(t);
}

static const pg_cursor_kind trav_kind = {trav_queue, trav_result, trav_destroy};

int pg_stream_traverse(store *base, const store_query *q, engram_stream *s) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q->ns || !q->start_id || strlen(q->start_id) != ENGRAM_ID_LEN)
    return ENGRAM_EINVAL;
  trav_cursor *t = calloc(1, sizeof *t);
  if (!t)
    return ENGRAM_ENOMEM;
  t->ns = strdup(q->ns);
  if (!t->ns) {
    free(t);
    return ENGRAM_ENOMEM;
  }
  memcpy(t->start, q->start_id, ENGRAM_ID_LEN + 1);
  t->max_depth = q->max_depth;
  snprintf(t->min_strength, sizeof t->min_strength, "%.17g", q->min_strength);
  pg_cursor_attach(&t->c, st, s, &trav_kind);
  return 0;
}
