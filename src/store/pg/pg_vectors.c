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
 * other rows come back with has_vector 0. Without a space (the lexical
 * index's catch-up) no vector is fetched.
 *
 * With terms, the server splits each row's tsvector (unnest: lexeme,
 * positions, weights) and the page statement answers rows of two kinds:
 * the page's rows, numbered in page order, and one per (row, lexeme) with
 * the weight of each of its positions: A (engram_tsv's content) counts in
 * tf_content, B (the metadata's string values) in tf_meta. Every position
 * of tsv has one of the two weights, so a row's length, doc_len, is their
 * sum: the number of positions of its tsvector, the length search's BM25
 * uses on this backend (PG_SCORE_CTES' dl, pg_terms.c's), rather than a
 * count of tokens the server would have to parse the text again for. It
 * is not quite the number of words: a tsvector keeps at most 256
 * positions per lexeme and no position past 16383 (the words after it
 * all sit at 16383, one position per lexeme), so a memory that repeats a
 * word more than 256 times, or that has more than 16383 words (content
 * and metadata), counts fewer than it has, and its tfs are capped alike.
 * The first page's query words go through engram_tsv too (as the content
 * of a memory of that one word, a bound text[]), which gives exactly the
 * lexemes tsv holds for them; a word is data, never tsquery syntax.
 *
 * The callback runs once, on the loop, never inside pg_vectors: after the
 * exchange's done, or from a no-op thread-pool task (a cancel while
 * waiting for a connection). A cancel while the exchange runs asks the
 * server to cancel it; the callback then says ENGRAM_ECANCELED.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"
#include "store/store_terms.h"

static const char seq_sql[] = "SELECT seq FROM ns_seq WHERE ns = $1::text";
/* $1 ns, $2 and $3 the row value to start after, $4 the page's rows. */
static const char page_sql[] =
    "SELECT id, vseq, type, embedder, embedding_dim, embedding"
    " FROM memories WHERE ns = $1::text"
    " AND (vseq, id) > ($2::bigint, $3::uuid)"
    " ORDER BY vseq, id LIMIT $4::bigint";
/* The same without a space: no vector column (take_row reads none). */
static const char page_novec_sql[] =
    "SELECT id, vseq, type FROM memories WHERE ns = $1::text"
    " AND (vseq, id) > ($2::bigint, $3::uuid)"
    " ORDER BY vseq, id LIMIT $4::bigint";
/* The page with its terms, same parameters. Rows (kind, r, a, b, c, d, e,
 * f, w) in no set order:
 *   0, the row's place in the page (1...), id, vseq, type, embedder,
 *      embedding_dim, embedding, NULL                    one per row
 *   1, the row's place, lexeme, NULL..., the weight of each of its
 *      positions (text[]: {A,B,A})                one per row and lexeme
 * The weights are counted here: counting them in SQL (array_positions)
 * doubled the statement's time. */
#define TERMS_PAGE_SQL(VECTOR_COLUMNS)                                         \
  "WITH p AS MATERIALIZED ("                                                   \
  " SELECT row_number() OVER (ORDER BY x.vseq, x.id) AS r, x.* FROM ("         \
  "  SELECT id, vseq, type, " VECTOR_COLUMNS ", tsv FROM memories"             \
  "  WHERE ns = $1::text AND (vseq, id) > ($2::bigint, $3::uuid)"              \
  "  ORDER BY vseq, id LIMIT $4::bigint) x)"                                   \
  " SELECT 0 AS kind, p.r, p.id::text AS a, p.vseq::text AS b,"                \
  "  p.type::text AS c, p.embedder AS d, p.embedding_dim AS e,"                \
  "  p.embedding AS f, NULL::text[] AS w FROM p"                               \
  " UNION ALL SELECT 1, p.r, u.lexeme, NULL, NULL, NULL, NULL, NULL,"          \
  "  u.weights FROM p CROSS JOIN LATERAL unnest(p.tsv) u"
static const char terms_page_sql[] =
    TERMS_PAGE_SQL("embedder, embedding_dim, embedding");
static const char terms_page_novec_sql[] =
    TERMS_PAGE_SQL("NULL::text AS embedder, NULL::integer AS embedding_dim,"
                   " NULL::bytea AS embedding");
/* $1 the query words (text[]): rows (word number from 1, lexeme), in
 * word order. */
static const char words_sql[] =
    "SELECT u.i, l.lex FROM unnest($1::text[]) WITH ORDINALITY AS u(w, i)"
    " CROSS JOIN LATERAL unnest(tsvector_to_array(engram_tsv(u.w, '{}',"
    " " PG_TS_CONFIG "))) AS l(lex) ORDER BY u.i";
static const char removed_sql[] =
    "SELECT id FROM removed WHERE ns = $1::text AND seq > $2::bigint";

#define MAX_UUID "ffffffff-ffff-ffff-ffff-ffffffffffff"
enum { CMD_BEGIN, CMD_SEQ, CMD_PAGE }; /* then the words, the removed ids */
#define NO_CMD UINT_MAX
enum { T_KIND, T_R, T_A, T_W = 8, T_NCOLS }; /* terms_page_sql's */

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
  int terms;
  char *words; /* the query words as a text[] literal, or NULL */
  size_t nwords;
  unsigned cmd_words, cmd_removed; /* their command numbers, or NO_CMD */
  /* the answer */
  store_vectors *page;
  store_terms split; /* the page's terms as they are read */
} vec_req;

static void vec_free(vec_req *r) {
  store_vectors_free(r->page);
  store_terms_free(&r->split);
  free(r->words);
  free(r->ns);
  free(r->embedder);
  free(r);
}

static int out_of_memory(vec_req *r);

static void vec_finish(pg_read_task *t) {
  vec_req *r = PG_CONTAINER(t, vec_req, t);
  if (r->t.status == 0 && r->terms &&
      store_terms_finish(&r->split, r->page) != 0)
    out_of_memory(r);
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

static int bad_answer(vec_req *r, const char *what) {
  r->t.status = ENGRAM_ECORRUPT;
  snprintf(r->t.msg, sizeof r->t.msg,
           "PostgreSQL answered the vectors read with %s", what);
  return r->t.status;
}

/* Room for m rows (m >= 1). 0 or the request's error. */
static int alloc_rows(vec_req *r, size_t m) {
  store_vectors *p = r->page;
  p->ids = malloc(m * sizeof *p->ids);
  p->seq = malloc(m * sizeof *p->seq);
  p->type = malloc(m);
  p->has_vector = malloc(m);
  if (r->embedder)
    p->vectors = malloc(m * r->dim * sizeof *p->vectors);
  if (!p->ids || !p->seq || !p->type || !p->has_vector ||
      (r->embedder && !p->vectors))
    return out_of_memory(r);
  return 0;
}

/* The page's next row from result row `row`, whose id, vseq, type,
 * embedder, embedding_dim and embedding start at column col: 1, 0 when
 * the row is not a memory (a malformed id or type: skipped), or -1 (the
 * request failed). */
static int take_row(vec_req *r, const PGresult *res, int row, int col) {
  store_vectors *p = r->page;
  const char *id = PQgetvalue(res, row, col);
  long type = strtol(PQgetvalue(res, row, col + 2), NULL, 10);
  if (strlen(id) != ENGRAM_ID_LEN || type < 0 || type >= ENGRAM_TYPE_COUNT)
    return 0;
  size_t at = p->n;
  memcpy(p->ids[at], id, ENGRAM_ID_LEN + 1);
  p->seq[at] = strtoll(PQgetvalue(res, row, col + 1), NULL, 10);
  p->type[at] = (unsigned char)type;
  p->has_vector[at] = 0;
  p->n++;
  if (!r->embedder)
    return 1;
  size_t bytes = (size_t)r->dim * sizeof(float);
  float *v = p->vectors + at * r->dim;
  int ok = !PQgetisnull(res, row, col + 3) && !PQgetisnull(res, row, col + 5) &&
           strcmp(PQgetvalue(res, row, col + 3), r->embedder) == 0 &&
           strtoul(PQgetvalue(res, row, col + 4), NULL, 10) == r->dim;
  if (ok) {
    ok = pg_bytea_read(PQgetvalue(res, row, col + 5),
                       (size_t)PQgetlength(res, row, col + 5), v, bytes);
    if (ok < 0) {
      out_of_memory(r);
      return -1;
    }
  }
  if (!ok)
    memset(v, 0, bytes);
  p->has_vector[at] = (unsigned char)ok;
  return 1;
}

static void read_page(vec_req *r, const PGresult *res) {
  size_t rows = (size_t)PQntuples(res);
  if (alloc_rows(r, rows ? rows : 1) != 0)
    return;
  for (size_t i = 0; i < rows; i++)
    if (take_row(r, res, (int)i, 0) < 0)
      return;
}

/* A term row's positions at weight A (the content) and B (the metadata),
 * from the text of its weights array ({A,B,A}: one letter a position).
 * 0, or -1 when the text is not that. */
static int count_weights(const char *w, uint32_t *a, uint32_t *b) {
  *a = *b = 0;
  if (*w++ != '{')
    return -1;
  for (; *w && *w != '}'; w++) {
    if (*w == 'A')
      (*a)++;
    else if (*w == 'B')
      (*b)++;
    else if (*w != ',' && *w != 'C' && *w != 'D')
      return -1;
  }
  return *w == '}' ? 0 : -1;
}

/* The page's rows and their terms from terms_page_sql's answer, whose
 * rows come in no set order: the term rows are grouped by the page row
 * they belong to (a counting sort on r), then the page rows are taken in
 * page order, each with its terms. */
static void read_terms_page(vec_req *r, const PGresult *res) {
  int rows = PQntuples(res);
  if (PQnfields(res) != T_NCOLS) {
    bad_answer(r, "an unexpected number of columns");
    return;
  }
  size_t n = 0; /* the page's rows */
  for (int i = 0; i < rows; i++)
    if (*PQgetvalue(res, i, T_KIND) == '0')
      n++;
  if (alloc_rows(r, n ? n : 1) != 0)
    return;
  int *page_row = malloc((n + 1) * sizeof *page_row); /* by r: its row */
  size_t *start = calloc(n + 2, sizeof *start);       /* by r: its first term */
  int *term_row = malloc(((size_t)rows - n + 1) * sizeof *term_row);
  if (!page_row || !start || !term_row) {
    out_of_memory(r);
    goto done;
  }
  for (size_t k = 0; k <= n; k++)
    page_row[k] = -1;
  for (int i = 0; i < rows; i++) {
    unsigned long long k = strtoull(PQgetvalue(res, i, T_R), NULL, 10);
    if (k < 1 || k > n) {
      bad_answer(r, "a row outside the page");
      goto done;
    }
    if (*PQgetvalue(res, i, T_KIND) != '0') {
      start[k + 1]++;
    } else if (page_row[k] >= 0) {
      bad_answer(r, "a row twice");
      goto done;
    } else {
      page_row[k] = i;
    }
  }
  for (size_t k = 1; k <= n; k++)
    start[k + 1] += start[k];
  for (int i = 0; i < rows; i++)
    if (*PQgetvalue(res, i, T_KIND) != '0')
      term_row[start[strtoull(PQgetvalue(res, i, T_R), NULL, 10)]++] = i;
  /* start[k] is now the end of row k's terms, the start of row k + 1's */
  for (size_t k = 1; k <= n; k++) {
    int taken = take_row(r, res, page_row[k], T_A);
    if (taken < 0)
      goto done;
    if (taken == 0)
      continue;
    if (store_terms_row(&r->split) != 0) {
      out_of_memory(r);
      goto done;
    }
    uint32_t len = 0;
    for (size_t t = start[k - 1]; t < start[k]; t++) {
      int i = term_row[t];
      uint32_t a, b;
      if (PQgetisnull(res, i, T_W))
        continue; /* no position (a stripped tsvector): nothing counts */
      if (count_weights(PQgetvalue(res, i, T_W), &a, &b) != 0) {
        bad_answer(r, "weights of an unknown form");
        goto done;
      }
      if (a + b == 0)
        continue; /* only weights C and D, which engram_tsv never gives */
      if (store_terms_add(&r->split, PQgetvalue(res, i, T_A),
                          (size_t)PQgetlength(res, i, T_A), a, b) != 0) {
        out_of_memory(r);
        goto done;
      }
      len += a + b;
    }
    store_terms_row_len(&r->split, len);
  }
done:
  free(page_row);
  free(start);
  free(term_row);
}

/* words_sql's answer: every word, in order, with its lexemes. */
static void read_words(vec_req *r, const PGresult *res) {
  int rows = PQntuples(res), i = 0;
  for (size_t w = 1; w <= r->nwords; w++) {
    if (store_terms_word(&r->split) != 0) {
      out_of_memory(r);
      return;
    }
    for (; i < rows && strtoull(PQgetvalue(res, i, 0), NULL, 10) == w; i++)
      if (store_terms_word_term(&r->split, PQgetvalue(res, i, 1),
                                (size_t)PQgetlength(res, i, 1)) != 0) {
        out_of_memory(r);
        return;
      }
  }
  if (i < rows)
    bad_answer(r, "a word out of order");
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
  else if (cmd == CMD_PAGE && r->terms)
    read_terms_page(r, res);
  else if (cmd == CMD_PAGE)
    read_page(r, res);
  else if (cmd == r->cmd_words)
    read_words(r, res);
  else if (cmd == r->cmd_removed)
    read_removed(r, res);
}

static void vec_send(pg_read_task *t) {
  vec_req *r = PG_CONTAINER(t, vec_req, t);
  pg_conn *c = t->conn;
  const char *seq_values[1] = {r->ns};
  const char *page_values[4] = {r->ns, r->from_seq, r->from_id, r->limit};
  const char *removed_values[2] = {r->ns, r->after_seq};
  const char *words_values[1] = {r->words};
  const char *sql = r->terms
                        ? (r->embedder ? terms_page_sql : terms_page_novec_sql)
                        : (r->embedder ? page_sql : page_novec_sql);
  pg_read_task_begin(t);
  pg_exchange_sql(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
                  NULL);
  pg_exchange_sql(c, seq_sql, 1, seq_values, NULL);
  pg_exchange_sql(c, sql, 4, page_values, NULL);
  if (r->words)
    pg_exchange_sql(c, words_sql, 1, words_values, NULL);
  if (r->removed)
    pg_exchange_sql(c, removed_sql, 2, removed_values, NULL);
  pg_exchange_sql(c, "COMMIT", 0, NULL, NULL);
  pg_exchange_end(c);
}

/* ----------------------------------------------------------- the start */

/* Every query word is a string (with terms). */
static int words_valid(const store_vectors_query *q) {
  if (!q->terms || !q->query_words)
    return 1;
  for (size_t i = 0; i < q->nquery_words; i++)
    if (!q->query_words[i])
      return 0;
  return 1;
}

/* The query words a first page with terms reports, as a text[] literal
 * ({"w1","w2"}: each element quoted, '"' and '\\' escaped) in r->words.
 * 0 or ENGRAM_ENOMEM. */
static int copy_words(vec_req *r, const store_vectors_query *q) {
  if (!q->terms || !q->query_words || !q->nquery_words)
    return 0;
  size_t bytes = 3; /* { } NUL */
  for (size_t i = 0; i < q->nquery_words; i++)
    bytes += 2 * strlen(q->query_words[i]) + 3; /* every byte escaped, "", */
  char *out = malloc(bytes);
  if (!out)
    return ENGRAM_ENOMEM;
  size_t len = 0;
  out[len++] = '{';
  for (size_t i = 0; i < q->nquery_words; i++) {
    if (i)
      out[len++] = ',';
    out[len++] = '"';
    for (const char *c = q->query_words[i]; *c; c++) {
      if (*c == '"' || *c == '\\')
        out[len++] = '\\';
      out[len++] = *c;
    }
    out[len++] = '"';
  }
  out[len++] = '}';
  out[len] = '\0';
  r->words = out;
  r->nwords = q->nquery_words;
  return 0;
}

int pg_vectors(store *base, const store_vectors_query *q,
               store_vectors_req *req) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q || !q->ns || (q->embedder && q->dim == 0) || q->limit == 0 || !req ||
      !req->cb || (q->after_id && strlen(q->after_id) != ENGRAM_ID_LEN) ||
      !words_valid(q))
    return ENGRAM_EINVAL;
  vec_req *r = calloc(1, sizeof *r);
  if (!r || !(r->ns = strdup(q->ns)) ||
      (q->embedder && !(r->embedder = strdup(q->embedder))) ||
      !(r->page = calloc(1, sizeof *r->page)) || copy_words(r, q) != 0) {
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
  r->dim = q->embedder ? q->dim : 0;
  r->removed = q->removed;
  r->terms = q->terms;
  /* command numbers after BEGIN, the sequence and the page */
  unsigned next = CMD_PAGE + 1;
  r->cmd_words = r->words ? next++ : NO_CMD;
  r->cmd_removed = r->removed ? next++ : NO_CMD;
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
