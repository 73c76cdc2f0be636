/*
 * sqlite_candidates.c — hybrid search's candidates on SQLite: the best
 * lexical matches of a query in a namespace, and the memories just before
 * and after each of them, in one thread-pool task.
 *
 * The task holds one reader and, in one read transaction, runs three
 * kinds of statement:
 *   1. the full-text match, restricted to the namespace by its tag
 *      (sqlite_match_build_ns), ranked by engram_rank(k1, b, meta_weight)
 *      and cut at `limit` (the best first): rowid, id, score;
 *   2. the `window` ids before and after each match in the namespace,
 *      through the (ns, id) index (ids are UUIDv7, so id order is creation
 *      order, which for a conversation is the order of its turns); matches
 *      are visited in id order so that a cluster of them costs one query
 *      per side, not one per match;
 *   3. the rows of the distinct memories (one statement, the rowids bound
 *      as a JSON array), decoded into owned nodes.
 * Each match and its neighbours form a run of consecutive memories; the
 * runs are merged by id, and a memory whose predecessor in some run is the
 * memory before it in the merged list is marked adjacent to it (nothing of
 * the namespace lies between them). The work is bounded by
 * limit * (2 * window + 1) rows, which the API layer caps.
 *
 * Cancellation: a task not yet started is dropped by libuv; a running one
 * sees the stop flag between statements and is interrupted inside one
 * (sqlite3_interrupt); a request still waiting for a reader leaves the
 * queue and its callback comes from a task that does nothing. Either way
 * the callback runs once, on the loop, with ENGRAM_ECANCELED.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

typedef struct cand_entry {
  char id[ENGRAM_ID_LEN + 1];
  sqlite3_int64 rowid;
  double score;
  unsigned char hit;
  unsigned char has_prev; /* the memory before it in the namespace is in
                             the same run */
} cand_entry;

typedef struct cand_req {
  sqlite_store *st;
  store_candidates_req *req;
  rt_work work;
  reader_wait wait;
  sqlite_reader *rd;
  atomic_int stop;
  int running; /* the task is queued or running */
  int cancelled;
  /* the query, copied */
  char *ns;
  char *match;
  unsigned types;
  size_t limit, window;
  double k1, b, meta_weight;
  /* results, filled on the thread pool */
  int status;
  char msg[SQ_MSG_LEN];
  cand_entry *entries;
  size_t n, cap;
  store_candidates *set;
} cand_req;

static int push_entry(cand_req *r, const char *id, sqlite3_int64 rowid,
                      double score, int hit, int has_prev) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    cand_entry *p = realloc(r->entries, cap * sizeof *p);
    if (!p)
      return ENGRAM_ENOMEM;
    r->entries = p;
    r->cap = cap;
  }
  cand_entry *e = &r->entries[r->n++];
  snprintf(e->id, sizeof e->id, "%s", id);
  e->rowid = rowid;
  e->score = score;
  e->hit = (unsigned char)hit;
  e->has_prev = (unsigned char)has_prev;
  return 0;
}

static int fail(cand_req *r, int rc, const char *what) {
  r->status = sqlite_fail(r->rd->db, rc, what, r->msg, sizeof r->msg);
  return r->status;
}

/* An id column, checked: a row whose id is not one is skipped. */
static const char *id_col(sqlite3_stmt *stmt, int col) {
  const char *id = (const char *)sqlite3_column_text(stmt, col);
  return id && strlen(id) == ENGRAM_ID_LEN ? id : NULL;
}

/* Step 1: the matches, best first. */
static int find_hits(cand_req *r) {
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->rd, RS_CAND_HITS, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the candidates query");
  sqlite3_bind_text(stmt, 1, r->match, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, (sqlite3_int64)r->types);
  sqlite3_bind_double(stmt, 4, r->k1);
  sqlite3_bind_double(stmt, 5, r->b);
  sqlite3_bind_double(stmt, 6, r->meta_weight);
  sqlite3_bind_int64(stmt, 7, (sqlite3_int64)r->limit);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = id_col(stmt, 1);
    if (!id)
      continue;
    double score = -sqlite3_column_double(stmt, 2);
    if (push_entry(r, id, sqlite3_column_int64(stmt, 0), score > 0 ? score : 0,
                   1, 0) != 0) {
      r->status = ENGRAM_ENOMEM;
      return r->status;
    }
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : fail(r, rc, "matching the query");
}

static int by_id(const void *a, const void *b) {
  return strcmp(((const cand_entry *)a)->id, ((const cand_entry *)b)->id);
}

/* Up to `max` ids on one side of `from` (after: ascending; before: nearest
 * first), pushed as neighbours. The first one pushed after `from` follows
 * it; before, each one pushed precedes the one pushed previously (or the
 * entry at index first_prev for the first). Returns how many, or -1. */
static long fetch_side(cand_req *r, int after, const char *from, size_t max,
                       size_t first_prev) {
  int rc;
  sqlite3_stmt *stmt =
      sqlite_reader_stmt(r->rd, after ? RS_CAND_AFTER : RS_CAND_BEFORE, &rc);
  if (!stmt) {
    fail(r, rc, "preparing the neighbours query");
    return -1;
  }
  char key[ENGRAM_ID_LEN + 1];
  memcpy(key, from, sizeof key);
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, key, ENGRAM_ID_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, (sqlite3_int64)r->types);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)max);
  long got = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = id_col(stmt, 1);
    if (!id)
      break; /* the run would have a hole: stop it here */
    if (push_entry(r, id, sqlite3_column_int64(stmt, 0), 0, 0, after) != 0) {
      sqlite3_reset(stmt);
      r->status = ENGRAM_ENOMEM;
      return -1;
    }
    if (!after)
      r->entries[got == 0 ? first_prev : r->n - 2].has_prev = 1;
    got++;
  }
  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fail(r, rc, "reading neighbours");
    return -1;
  }
  return got;
}

/* Step 2: the neighbours of the `hits` first entries (the matches). They
 * are taken in id order; a match that falls among the memories just
 * fetched after the previous one needs no query for what precedes it (the
 * previous match and its predecessors are known), and only the missing
 * part of what follows. A conversation's matches cluster, so this saves
 * most of the queries. */
static int find_neighbours(cand_req *r, size_t hits) {
  if (hits == 0)
    return 0;
  qsort(r->entries, hits, sizeof *r->entries, by_id);
  size_t w = r->window;
  char(*tail)[ENGRAM_ID_LEN + 1] = malloc(w * sizeof *tail);
  if (!tail) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  size_t tail_n = 0;  /* ids known right after the previous match, in order */
  int tail_ended = 0; /* the namespace ends after them */
  for (size_t h = 0; h < hits && r->status == 0; h++) {
    if (atomic_load(&r->stop)) {
      r->status = ENGRAM_ECANCELED;
      break;
    }
    char id[ENGRAM_ID_LEN + 1];
    memcpy(id, r->entries[h].id, sizeof id);
    size_t at = tail_n;
    for (size_t i = 0; i < tail_n; i++)
      if (strcmp(tail[i], id) == 0) {
        at = i;
        break;
      }
    size_t known = 0;
    if (at < tail_n) {
      known = tail_n - at - 1;
      memmove(tail, tail + at + 1, known * sizeof *tail);
    } else {
      if (fetch_side(r, 0, id, w, h) < 0)
        break;
      tail_ended = 0;
    }
    tail_n = known;
    if (known == w || tail_ended)
      continue;
    long got = fetch_side(r, 1, known ? tail[known - 1] : id, w - known, 0);
    if (got < 0)
      break;
    for (long i = 0; i < got; i++)
      memcpy(tail[tail_n++], r->entries[r->n - (size_t)got + (size_t)i].id,
             sizeof *tail);
    tail_ended = (size_t)got < w - known;
  }
  free(tail);
  return r->status;
}

/* Merges the runs: one entry per id, a hit if any copy is, adjacent if any
 * copy had its predecessor in its run. */
static void merge_entries(cand_req *r) {
  if (r->n == 0)
    return;
  qsort(r->entries, r->n, sizeof *r->entries, by_id);
  size_t out = 0;
  for (size_t i = 1; i < r->n; i++) {
    cand_entry *e = &r->entries[i], *last = &r->entries[out];
    if (strcmp(e->id, last->id) == 0) {
      last->hit |= e->hit;
      last->has_prev |= e->has_prev;
      if (e->score > last->score)
        last->score = e->score;
    } else {
      r->entries[++out] = *e;
    }
  }
  r->n = out + 1;
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
  if (!c->nodes || !c->score || !c->hit || !c->adjacent) {
    store_candidates_free(c);
    return NULL;
  }
  return c;
}

typedef struct by_rowid_item {
  sqlite3_int64 rowid;
  size_t entry;
} by_rowid_item;

static int by_rowid(const void *a, const void *b) {
  sqlite3_int64 x = ((const by_rowid_item *)a)->rowid;
  sqlite3_int64 y = ((const by_rowid_item *)b)->rowid;
  return (x > y) - (x < y);
}

/* Step 3: the rows, in one statement (the rowids go in as a JSON array:
 * one statement instead of one per memory). A row that does not decode is
 * left out, and the memory after it loses its adjacency. */
static int load_nodes(cand_req *r) {
  store_candidates *c = set_new(r->n);
  engram_node **found = calloc(r->n ? r->n : 1, sizeof *found);
  by_rowid_item *index = malloc((r->n ? r->n : 1) * sizeof *index);
  char *list = malloc(r->n * 21 + 3);
  if (!c || !found || !index || !list) {
    store_candidates_free(c);
    free(found);
    free(index);
    free(list);
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  r->set = c;
  size_t len = 0;
  list[len++] = '[';
  for (size_t i = 0; i < r->n; i++) {
    index[i] = (by_rowid_item){r->entries[i].rowid, i};
    len += (size_t)snprintf(list + len, 22, "%s%lld", i ? "," : "",
                            (long long)r->entries[i].rowid);
  }
  list[len++] = ']';
  list[len] = '\0';
  qsort(index, r->n, sizeof *index, by_rowid);
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->rd, RS_CAND_NODES, &rc);
  if (!stmt) {
    fail(r, rc, "preparing the candidates rows");
  } else {
    sqlite3_bind_text(stmt, 1, list, (int)len, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      by_rowid_item key = {sqlite3_column_int64(stmt, 0), 0};
      by_rowid_item *at = bsearch(&key, index, r->n, sizeof *index, by_rowid);
      if (!at || found[at->entry])
        continue;
      char msg[SQ_MSG_LEN];
      int code = sqlite_row_node(stmt, 1, &found[at->entry], msg, sizeof msg);
      if (code == ENGRAM_ENOMEM) {
        r->status = code;
        break;
      }
    }
    if (r->status == 0 && rc != SQLITE_DONE)
      fail(r, rc, "reading the candidates");
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
  int lost_prev = 0;
  for (size_t i = 0; i < r->n; i++) {
    engram_node *node = found[i];
    if (!node || r->status != 0) {
      engram_node_free(node);
      lost_prev = 1;
      continue;
    }
    c->nodes[c->n] = node;
    c->score[c->n] = r->entries[i].score;
    c->hit[c->n] = r->entries[i].hit;
    c->adjacent[c->n] =
        (unsigned char)(c->n > 0 && !lost_prev && r->entries[i].has_prev);
    lost_prev = 0;
    c->n++;
  }
  free(found);
  free(index);
  free(list);
  return r->status;
}

static void cand_run(rt_work *w) {
  cand_req *r = SQ_CONTAINER(w, cand_req, work);
  if (atomic_load(&r->stop)) {
    r->status = ENGRAM_ECANCELED;
    return;
  }
  if (r->limit == 0) { /* no word to look for */
    if (!(r->set = set_new(0)))
      r->status = ENGRAM_ENOMEM;
    return;
  }
  /* One read transaction for the whole task: one snapshot, and one set of
   * WAL locks instead of one per statement (hundreds of fcntl calls). */
  int rc = sqlite3_exec(r->rd->db, "BEGIN", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    fail(r, rc, "starting a read");
    return;
  }
  if (find_hits(r) == 0) {
    size_t hits = r->n;
    if (r->window > 0)
      find_neighbours(r, hits);
    if (r->status == 0) {
      merge_entries(r);
      load_nodes(r);
    }
  }
  /* The reader must leave its transaction, or it would keep an old
   * snapshot: an interrupt that lands on the COMMIT is cleared once that
   * statement is finalized, so the ROLLBACK runs. */
  if (sqlite3_exec(r->rd->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    sqlite3_exec(r->rd->db, "ROLLBACK", NULL, NULL, NULL);
}

static void cand_free(cand_req *r) {
  store_candidates_free(r->set);
  free(r->entries);
  free(r->ns);
  free(r->match);
  free(r);
}

static void cand_after(rt_work *w, int status) {
  cand_req *r = SQ_CONTAINER(w, cand_req, work);
  sqlite_store *st = r->st;
  sqlite_task_returned(st);
  r->running = 0;
  st->head.queries_running--;
  if (r->rd) {
    sqlite_reader_release(st, r->rd);
    r->rd = NULL;
  }
  if (status != 0 || r->cancelled)
    r->status = ENGRAM_ECANCELED;
  store_candidates_req *req = r->req;
  req->impl = NULL;
  store_candidates *set = NULL;
  if (r->status == 0) {
    set = r->set;
    r->set = NULL;
  } else if (r->status == ENGRAM_ECANCELED) {
    snprintf(r->msg, sizeof r->msg, "the search was cancelled");
  } else if (r->status == ENGRAM_ENOMEM && !r->msg[0]) {
    snprintf(r->msg, sizeof r->msg, "out of memory gathering candidates");
  }
  const char *msg = r->status ? r->msg : NULL;
  req->cb(req, r->status, msg, set);
  cand_free(r);
  sqlite_maybe_close(st);
}

/* Queues the task (rt_offload fails only on invalid arguments). */
static int cand_offload(cand_req *r) {
  r->running = 1;
  r->st->head.queries_running++;
  int rc = sqlite_offload(r->st, &r->work, cand_run, cand_after);
  if (rc != 0) {
    r->running = 0;
    r->st->head.queries_running--;
  }
  return rc;
}

static void cand_granted(reader_wait *w, sqlite_reader *rd) {
  cand_req *r = SQ_CONTAINER(w, cand_req, wait);
  r->rd = rd;
  if (cand_offload(r) != 0) {
    /* Called from another operation's callback: calling back here is not
     * inside the start function. */
    sqlite_reader_release(r->st, rd);
    r->rd = NULL;
    store_candidates_req *req = r->req;
    req->impl = NULL;
    req->cb(req, ENGRAM_ENOMEM, "out of memory starting a search", NULL);
    cand_free(r);
  }
}

int sqlite_candidates(store *base, const store_candidates_query *q,
                      store_candidates_req *req) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!q->ns || !q->text || !req || !req->cb)
    return ENGRAM_EINVAL;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  char *match = NULL;
  size_t tokens = 0;
  if (sqlite_match_build_ns(q->ns, q->text, len, &match, &tokens) != 0)
    return ENGRAM_ENOMEM;
  cand_req *r = calloc(1, sizeof *r);
  if (!r || !(r->ns = strdup(q->ns))) {
    free(match);
    free(r);
    return ENGRAM_ENOMEM;
  }
  r->st = st;
  r->req = req;
  r->match = match; /* NULL: no word, nothing matches */
  r->types = q->types;
  r->limit = tokens == 0 ? 0 : q->limit;
  r->window = q->window;
  r->k1 = q->k1;
  r->b = q->b;
  r->meta_weight = q->meta_weight;
  atomic_init(&r->stop, 0);
  req->impl = r;
  if (r->limit == 0) {
    /* Nothing to look for: an empty set, still from the loop, later. */
    if (cand_offload(r) != 0) {
      req->impl = NULL;
      cand_free(r);
      return ENGRAM_ENOMEM;
    }
    return 0;
  }
  r->rd = sqlite_reader_acquire(st, &r->wait, cand_granted);
  if (r->rd && cand_offload(r) != 0) {
    sqlite_reader_release(st, r->rd);
    req->impl = NULL;
    cand_free(r);
    return ENGRAM_ENOMEM;
  }
  return 0;
}

void sqlite_candidates_cancel(store *base, store_candidates_req *req) {
  sqlite_store *st = (sqlite_store *)base;
  cand_req *r = req ? req->impl : NULL;
  if (!r || r->cancelled)
    return;
  r->cancelled = 1;
  atomic_store(&r->stop, 1);
  if (r->running) {
    /* A queued task is dropped by libuv (cand_after gets UV_ECANCELED); a
     * running one stops at its next statement or inside this one. */
    if (uv_cancel((uv_req_t *)&r->work.req) != 0 && r->rd)
      sqlite3_interrupt(r->rd->db);
    return;
  }
  /* Waiting for a reader: leave the queue, and call back from a task that
   * sees the stop flag and does nothing. */
  sqlite_reader_unwait(st, &r->wait);
  if (cand_offload(r) != 0) {
    /* Cannot happen with libuv's queue (it never fails to queue); kept
     * safe: the request stays cancelled and is freed at close. */
    rt_log(st->head.rt, ENGRAM_LOG_ERROR,
           "cannot finish a cancelled search: out of memory");
  }
}
