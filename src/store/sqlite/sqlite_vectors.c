/*
 * sqlite_vectors.c — the vector index's catch-up on SQLite (store.h,
 * store_vectors_query): one page of a namespace's memories stamped after a
 * point of its change sequence, with their vectors of one space, and the
 * ids removed since, in one thread-pool task.
 *
 * The task holds one reader and, in one read transaction (so that the
 * sequence, the rows and the removed ids are one snapshot), reads:
 *   1. the namespace's sequence (ns_seq; 0 when it was never written);
 *   2. up to `limit` rows after the row value (vseq, id), in that order,
 *      through the index memories_ns_vseq(ns, vseq, id); the first page of
 *      a catch-up starts at (after_seq + 1, ''), that is every row stamped
 *      after after_seq;
 *   3. when asked, the ids removed after after_seq.
 * A row "has a vector of the space" when its embedder and dimension are
 * the space's and its blob holds dim float32 (little-endian, as stored);
 * any other row comes back with has_vector 0, so that the index drops it.
 * Without a space (the lexical index's catch-up) the page reads no
 * vector column at all.
 *
 * With terms, each row's content and metadata text (SQ_META_TEXT, what
 * the triggers gave memories_fts) are split again, on this thread, by the
 * reader's instance of the index's own tokenizer (sqlite_terms.c): the
 * terms are what FTS5 stored for the row, and the length is what FTS5
 * counts for the columns content and meta (xColumnSize; a colocated
 * token takes no place of its own, and the namespace tag column is not
 * the memory's text). The query words of a first page go through the same
 * tokenizer, as a query's words do. A few microseconds a row, paid only
 * when asked for.
 *
 * Cancellation is sqlite_candidates.c's: a queued task is withdrawn, a
 * running one sees the stop flag between statements and is interrupted
 * inside one, a request waiting for a reader leaves the queue and is
 * called back from a task that does nothing. The callback runs once, on
 * the loop, never inside sqlite_vectors().
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"
#include "store/store_terms.h"

typedef struct vec_req {
  sqlite_read_task t; /* the reader, the task, cancellation */
  store_vectors_req *req;
  /* the query, copied */
  char *ns;
  char *embedder;
  uint32_t dim;
  int64_t after_seq;
  int64_t from_seq; /* the row value the page starts after */
  char from_id[ENGRAM_ID_LEN + 1];
  size_t limit;
  int removed;
  int terms;
  char **words; /* the query words (first page with terms), owned */
  size_t nwords;
  /* the answer, filled on the thread pool */
  int status;
  char msg[SQ_MSG_LEN];
  store_vectors *page;
  store_terms split; /* the page's terms as they are read */
} vec_req;

static int fail(vec_req *r, int rc, const char *what) {
  r->status = sqlite_fail(r->t.rd->db, rc, what, r->msg, sizeof r->msg);
  return r->status;
}

static int out_of_memory(vec_req *r) {
  r->status = ENGRAM_ENOMEM;
  snprintf(r->msg, sizeof r->msg, "out of memory reading vectors");
  return r->status;
}

static int read_seq(vec_req *r) {
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_VEC_SEQ, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the change sequence query");
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  r->page->ns_seq = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  sqlite3_reset(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return fail(r, rc, "reading the change sequence");
  return 0;
}

/* Row i of the page from the statement's current row; 0 when the row is
 * not a memory (a malformed id or type: skipped). */
static int take_row(vec_req *r, sqlite3_stmt *stmt, size_t i) {
  store_vectors *p = r->page;
  const char *id = (const char *)sqlite3_column_text(stmt, 0);
  sqlite3_int64 type = sqlite3_column_int64(stmt, 2);
  if (!id || strlen(id) != ENGRAM_ID_LEN || type < 0 ||
      type >= ENGRAM_TYPE_COUNT)
    return 0;
  memcpy(p->ids[i], id, ENGRAM_ID_LEN + 1);
  p->seq[i] = sqlite3_column_int64(stmt, 1);
  p->type[i] = (unsigned char)type;
  if (!r->embedder) {
    p->has_vector[i] = 0;
    return 1;
  }
  float *v = p->vectors + i * r->dim;
  const char *embedder = (const char *)sqlite3_column_text(stmt, 3);
  sqlite3_int64 dim = sqlite3_column_int64(stmt, 4);
  const void *blob = sqlite3_column_blob(stmt, 5);
  size_t bytes = (size_t)sqlite3_column_bytes(stmt, 5);
  if (embedder && strcmp(embedder, r->embedder) == 0 && dim == r->dim && blob &&
      bytes == (size_t)r->dim * sizeof(float)) {
    memcpy(v, blob, bytes); /* stored little-endian, like the host */
    p->has_vector[i] = 1;
  } else {
    memset(v, 0, (size_t)r->dim * sizeof(float));
    p->has_vector[i] = 0;
  }
  return 1;
}

/* Splitting one column of a row, or a query word. */
typedef struct split_ctx {
  store_terms *b;
  int meta;      /* the row's metadata text (else its content) */
  int word;      /* a query word (else a row's column) */
  uint32_t size; /* the column's size as FTS5 counts it */
  int nomem;
} split_ctx;

static int on_token(void *data, int tflags, const char *token, int len,
                    int start, int end) {
  split_ctx *c = data;
  (void)start;
  (void)end;
  size_t n = (size_t)(len < SQ_FTS5_MAX_TOKEN ? len : SQ_FTS5_MAX_TOKEN);
  if (!(tflags & FTS5_TOKEN_COLOCATED) || c->size == 0)
    c->size++;
  int rc = c->word ? store_terms_word_term(c->b, token, n)
                   : store_terms_add(c->b, token, n, c->meta ? 0u : 1u,
                                     c->meta ? 1u : 0u);
  if (rc != 0) {
    c->nomem = 1;
    return SQLITE_NOMEM;
  }
  return SQLITE_OK;
}

/* Splits text (len bytes) into c's builder. 0 or the request's error. */
static int split(vec_req *r, split_ctx *c, int flags, const char *text,
                 size_t len) {
  int rc = sqlite_terms_tokenize(r->t.rd, flags, text, len, c, on_token);
  if (c->nomem)
    return out_of_memory(r);
  return rc == SQLITE_OK ? 0 : fail(r, rc, "splitting a memory's text");
}

/* The current row's terms and length, from its content (column 6) and
 * its metadata's text (column 7, NULL when it has none). */
static int row_terms(vec_req *r, sqlite3_stmt *stmt) {
  if (store_terms_row(&r->split) != 0)
    return out_of_memory(r);
  split_ctx c = {.b = &r->split};
  uint32_t len = 0;
  for (int col = 6; col <= 7; col++) {
    const char *text = (const char *)sqlite3_column_text(stmt, col);
    size_t bytes = (size_t)sqlite3_column_bytes(stmt, col);
    c.meta = col == 7;
    c.size = 0;
    if (split(r, &c, FTS5_TOKENIZE_DOCUMENT, text, bytes) != 0)
      return r->status;
    len += c.size;
  }
  store_terms_row_len(&r->split, len);
  return 0;
}

static int read_rows(vec_req *r) {
  store_vectors *p = r->page;
  p->ids = malloc(r->limit * sizeof *p->ids);
  p->seq = malloc(r->limit * sizeof *p->seq);
  p->type = malloc(r->limit);
  p->has_vector = malloc(r->limit);
  if (r->embedder)
    p->vectors = malloc(r->limit * r->dim * sizeof *p->vectors);
  if (!p->ids || !p->seq || !p->type || !p->has_vector ||
      (r->embedder && !p->vectors))
    return out_of_memory(r);
  reader_stmt_kind kind =
      r->terms ? (r->embedder ? RS_VEC_PAGE_TERMS : RS_VEC_PAGE_TERMS_NOVEC)
               : (r->embedder ? RS_VEC_PAGE : RS_VEC_PAGE_NOVEC);
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, kind, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the vectors query");
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, r->from_seq);
  sqlite3_bind_text(stmt, 3, r->from_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)r->limit);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!take_row(r, stmt, p->n))
      continue;
    p->n++;
    if (r->terms && row_terms(r, stmt) != 0) {
      sqlite3_reset(stmt);
      return r->status;
    }
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : fail(r, rc, "reading vectors");
}

/* The query words' terms, word by word, as a query's words are split. */
static int read_query_terms(vec_req *r) {
  split_ctx c = {.b = &r->split, .word = 1};
  for (size_t i = 0; i < r->nwords; i++) {
    if (store_terms_word(&r->split) != 0)
      return out_of_memory(r);
    if (split(r, &c, FTS5_TOKENIZE_QUERY, r->words[i], strlen(r->words[i])) !=
        0)
      return r->status;
  }
  return 0;
}

static int read_removed(vec_req *r) {
  store_vectors *p = r->page;
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_VEC_REMOVED, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the removed ids query");
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, r->after_seq);
  size_t cap = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(stmt, 0);
    if (!id || strlen(id) != ENGRAM_ID_LEN)
      continue;
    if (p->nremoved == cap) {
      cap = cap ? cap * 2 : 64;
      char(*more)[ENGRAM_ID_LEN + 1] = realloc(p->removed, cap * sizeof *more);
      if (!more) {
        sqlite3_reset(stmt);
        return out_of_memory(r);
      }
      p->removed = more;
    }
    memcpy(p->removed[p->nremoved++], id, ENGRAM_ID_LEN + 1);
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : fail(r, rc, "reading removed ids");
}

static void vec_run(sqlite_read_task *t) {
  vec_req *r = SQ_CONTAINER(t, vec_req, t);
  if (atomic_load(&r->t.stop)) {
    r->status = ENGRAM_ECANCELED;
    return;
  }
  if (!(r->page = calloc(1, sizeof *r->page))) {
    out_of_memory(r);
    return;
  }
  int rc;
  /* The tokenizer is made outside the transaction (with the vocabulary
   * table it comes with, sqlite_terms_open). */
  if (r->terms && (rc = sqlite_terms_open(r->t.rd)) != SQLITE_OK) {
    fail(r, rc, "preparing the full-text tokenizer");
    return;
  }
  /* One snapshot for the sequence, the rows and the removed ids. */
  rc = sqlite3_exec(r->t.rd->db, "BEGIN", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    fail(r, rc, "starting a read");
    return;
  }
  if (read_seq(r) == 0 && !atomic_load(&r->t.stop) && read_rows(r) == 0 &&
      r->removed && !atomic_load(&r->t.stop))
    read_removed(r);
  if (r->status == 0 && r->terms && read_query_terms(r) == 0 &&
      store_terms_finish(&r->split, r->page) != 0)
    out_of_memory(r);
  if (r->status == 0 && atomic_load(&r->t.stop))
    r->status = ENGRAM_ECANCELED;
  /* Leave the transaction, or the reader keeps an old snapshot (see
   * sqlite_candidates.c about an interrupt landing on the COMMIT). */
  if (sqlite3_exec(r->t.rd->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    sqlite3_exec(r->t.rd->db, "ROLLBACK", NULL, NULL, NULL);
}

static void vec_free(vec_req *r) {
  store_vectors_free(r->page);
  store_terms_free(&r->split);
  for (size_t i = 0; i < r->nwords; i++)
    free(r->words[i]);
  free(r->words);
  free(r->ns);
  free(r->embedder);
  free(r);
}

/* Copies the query words a first page with terms reports. 0 or
 * ENGRAM_ENOMEM. */
static int copy_words(vec_req *r, const store_vectors_query *q) {
  if (!q->terms || !q->query_words || !q->nquery_words)
    return 0;
  if (!(r->words = calloc(q->nquery_words, sizeof *r->words)))
    return ENGRAM_ENOMEM;
  for (; r->nwords < q->nquery_words; r->nwords++)
    if (!(r->words[r->nwords] = strdup(q->query_words[r->nwords])))
      return ENGRAM_ENOMEM;
  return 0;
}

/* Every query word is a string (with terms). */
static int words_valid(const store_vectors_query *q) {
  if (!q->terms || !q->query_words)
    return 1;
  for (size_t i = 0; i < q->nquery_words; i++)
    if (!q->query_words[i])
      return 0;
  return 1;
}

static void vec_done(sqlite_read_task *t, int status) {
  vec_req *r = SQ_CONTAINER(t, vec_req, t);
  if (status != 0)
    r->status = status;
  if (r->status == ENGRAM_ECANCELED)
    snprintf(r->msg, sizeof r->msg, "reading vectors was cancelled");
  else if (r->status == ENGRAM_ENOMEM && !r->msg[0])
    snprintf(r->msg, sizeof r->msg, "out of memory reading vectors");
  store_vectors_req *req = r->req;
  req->impl = NULL;
  store_vectors *page = NULL;
  if (r->status == 0) {
    page = r->page;
    r->page = NULL;
  }
  req->cb(req, r->status, r->status ? r->msg : NULL, page);
  vec_free(r);
}

int sqlite_vectors(store *base, const store_vectors_query *q,
                   store_vectors_req *req) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!q || !q->ns || (q->embedder && q->dim == 0) || q->limit == 0 || !req ||
      !req->cb || (q->after_id && strlen(q->after_id) != ENGRAM_ID_LEN) ||
      !words_valid(q))
    return ENGRAM_EINVAL;
  vec_req *r = calloc(1, sizeof *r);
  if (!r || !(r->ns = strdup(q->ns)) ||
      (q->embedder && !(r->embedder = strdup(q->embedder))) ||
      copy_words(r, q) != 0) {
    if (r)
      vec_free(r);
    return ENGRAM_ENOMEM;
  }
  r->t.st = st;
  r->t.run = vec_run;
  r->t.done = vec_done;
  r->t.what = "vector read";
  r->req = req;
  r->dim = q->embedder ? q->dim : 0;
  r->terms = q->terms;
  r->after_seq = q->after_seq;
  if (q->after_id) {
    r->from_seq = q->after_row_seq;
    memcpy(r->from_id, q->after_id, ENGRAM_ID_LEN + 1);
  } else {
    r->from_seq = q->after_seq + 1; /* (s + 1, '') < every row of s + 1 */
  }
  r->limit = q->limit;
  r->removed = q->removed;
  req->impl = r;
  if (sqlite_read_task_start(&r->t, 1) != 0) {
    req->impl = NULL;
    vec_free(r);
    return ENGRAM_ENOMEM;
  }
  return 0;
}

void sqlite_vectors_cancel(store *base, store_vectors_req *req) {
  (void)base;
  vec_req *r = req ? req->impl : NULL;
  if (r)
    sqlite_read_task_cancel(&r->t);
}
