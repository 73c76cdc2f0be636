/*
 * sqlite_traverse.c — the traverse stream: breadth-first over
 * relationships (both directions, strength >= min_strength), from a start
 * memory, up to max_depth hops, each memory once.
 *
 * The walk is a FIFO of discovered ids with two positions: `emit` (the
 * next id whose row is read and emitted) and `expand` (the next id whose
 * neighbours are looked up). Emitting always goes first, so items leave in
 * discovery order, which is breadth-first order, and the walk discovers no
 * further than the consumer's demand requires. A chunk on the thread pool
 * does a bounded number of steps (row reads and neighbour rows); the
 * neighbour statement of a busy memory may stay open across chunks, like
 * any stream statement. The visited set (a hash set over the FIFO) is what
 * a breadth-first walk has to remember; it grows with the memories reached,
 * never with the edges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite/sqlite_internal.h"
#include "store/store_walk.h"

typedef struct trav_cursor {
  sqlite_cursor c; /* first */
  char *ns;
  char start[ENGRAM_ID_LEN + 1];
  uint32_t max_depth;
  double min_strength;
  store_walk walk; /* the breadth-first FIFO and its visited set */
  size_t emit, expand;
  sqlite3_stmt *nbr; /* active while expanding ids[expand] */
} trav_cursor;

/* Reads and pushes the row of ids[emit]. Returns 1 when an item was
 * pushed. */
static int emit_next(trav_cursor *t) {
  sqlite_cursor *c = &t->c;
  int rc;
  sqlite3_stmt *get = sqlite_reader_stmt(c->rd, RS_GET_NS, &rc);
  if (!get) {
    c->rc =
        sqlite_fail(c->rd->db, rc, "preparing a read", c->msg, sizeof c->msg);
    return 0;
  }
  size_t i = t->emit++;
  sqlite3_bind_text(get, 1, t->walk.ids[i], ENGRAM_ID_LEN, SQLITE_TRANSIENT);
  sqlite3_bind_text(get, 2, t->ns, -1, SQLITE_STATIC);
  rc = sqlite3_step(get);
  int pushed = 0;
  if (rc == SQLITE_ROW) {
    pushed = sqlite_cursor_push_row(c, get, 0, 0, t->walk.depth[i]);
  } else if (rc == SQLITE_DONE) {
    if (i == 0) {
      c->rc = ENGRAM_ENOTFOUND;
      snprintf(c->msg, sizeof c->msg, "no memory %s in namespace \"%s\"",
               t->start, t->ns);
    }
    /* else: linked, then deleted since the link was read; nothing to show */
  } else {
    c->rc =
        sqlite_fail(c->rd->db, rc, "reading a memory", c->msg, sizeof c->msg);
  }
  sqlite3_reset(get);
  return pushed;
}

/* One neighbour row of ids[expand]; moves on when they are exhausted. */
static void expand_step(trav_cursor *t) {
  sqlite_cursor *c = &t->c;
  int rc;
  if (!t->nbr) {
    t->nbr = sqlite_reader_stmt(c->rd, RS_NEIGHBOURS, &rc);
    if (!t->nbr) {
      c->rc = sqlite_fail(c->rd->db, rc, "preparing a traversal", c->msg,
                          sizeof c->msg);
      return;
    }
    /* Transient: discovering may move the FIFO. */
    sqlite3_bind_text(t->nbr, 1, t->walk.ids[t->expand], ENGRAM_ID_LEN,
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(t->nbr, 2, t->ns, -1, SQLITE_STATIC);
    sqlite3_bind_double(t->nbr, 3, t->min_strength);
  }
  rc = sqlite3_step(t->nbr);
  if (rc == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(t->nbr, 0);
    if (id && sqlite3_column_bytes(t->nbr, 0) == ENGRAM_ID_LEN &&
        !store_walk_seen(&t->walk, id) &&
        store_walk_add(&t->walk, id, t->walk.depth[t->expand] + 1) != 0) {
      c->rc = ENGRAM_ENOMEM;
      snprintf(c->msg, sizeof c->msg, "out of memory walking relationships");
    }
    return;
  }
  sqlite3_reset(t->nbr);
  t->nbr = NULL;
  t->expand++;
  if (rc != SQLITE_DONE)
    c->rc = sqlite_fail(c->rd->db, rc, "reading relationships", c->msg,
                        sizeof c->msg);
}

static void trav_chunk(sqlite_cursor *c) {
  trav_cursor *t = (trav_cursor *)c;
  if (t->walk.n == 0 && store_walk_add(&t->walk, t->start, 0) != 0) {
    c->rc = ENGRAM_ENOMEM;
    snprintf(c->msg, sizeof c->msg, "out of memory starting a traversal");
    return;
  }
  /* Reading a row and stepping the neighbour statement each count as one
   * step; a chunk does a bounded number of them. */
  size_t budget = (size_t)c->st->chunk_rows * 4 + c->want;
  size_t emitted = 0;
  for (size_t steps = 0; emitted < c->want && steps < budget && c->rc == 0;
       steps++) {
    if (atomic_load(&c->stop))
      return; /* cancelled: chunk_after ends the cursor */
    if (t->emit < t->walk.n) {
      emitted += (size_t)emit_next(t);
    } else if (t->expand < t->walk.n &&
               t->walk.depth[t->expand] < t->max_depth) {
      expand_step(t);
    } else {
      /* Everything found is emitted, and what is left to expand is at
       * max_depth (the FIFO is in depth order), or nothing is left. */
      c->at_end = 1;
      return;
    }
  }
}

static void trav_destroy(sqlite_cursor *c) {
  trav_cursor *t = (trav_cursor *)c;
  store_walk_free(&t->walk);
  free(t->ns);
  free(t);
}

static const cursor_kind trav_kind = {trav_chunk, trav_destroy};

int sqlite_stream_traverse(store *base, const store_query *q,
                           engram_stream *s) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
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
  t->min_strength = q->min_strength;
  sqlite_cursor_attach(&t->c, st, s, &trav_kind);
  return 0;
}
