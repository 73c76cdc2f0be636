/*
 * test_store_terms.c — the catch-up page's indexed terms (store.h,
 * store_vectors_query.terms), through the store's vectors operation
 * directly, as the lexical index reads them: each row's terms as the
 * backend's full-text index stems and folds them, with their frequencies
 * in the content and in the metadata's string values, and the row's
 * length; the query words' terms; paging, removed ids and rows updated
 * after a watermark; a page without vectors, and a page without terms
 * (unchanged: no term array at all).
 *
 * Every row read is also held to the index itself, read independently:
 * on SQLite, FTS5's own record of the row (an fts5vocab instance table
 * for its terms per column, memories_fts_docsize for its column sizes);
 * on PostgreSQL, ts_stat over the row's tsvector by weight (A content, B
 * metadata) and the number of its positions (the length this backend
 * reports, see pg_vectors.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "engram_internal.h"
#include "search/embed.h"
#include "store/store.h"
#include "store_tu.h"
#include "tu.h"

static search_hashed g_emb; /* engram's default embedder: the db's space */
#define DIM SEARCH_HASHED_DEFAULT_DIM

/* ---------------------------------------------------------- reading */

typedef struct page_read {
  int done, calls, status;
  char msg[256];
  store_vectors *page;
} page_read;

static void on_page(store_vectors_req *req, int status, const char *message,
                    store_vectors *page) {
  page_read *pr = req->data;
  pr->calls++;
  assert_int_equal(pr->calls, 1);
  pr->done = 1;
  pr->status = status;
  snprintf(pr->msg, sizeof pr->msg, "%s", message ? message : "");
  pr->page = page;
}

/* One page, read and waited for; the caller frees it. */
static store_vectors *read_page(engram *eg, const store_vectors_query *q) {
  page_read pr = {0};
  store_vectors_req req = {.cb = on_page, .data = &pr};
  assert_int_equal(eg->st->ops->vectors(eg->st, q, &req), 0);
  assert_false(pr.done); /* never inside the start function */
  tu_run_until(eg, &pr.done);
  assert_true(pr.done);
  if (pr.status != 0)
    fail_msg("reading a page: %s", pr.msg);
  assert_non_null(pr.page);
  return pr.page;
}

/* The lexical index's query: every row of ns, terms, no vector. */
static store_vectors_query terms_query(const char *ns) {
  store_vectors_query q = {.ns = ns, .after_seq = -1, .limit = 100, .terms = 1};
  return q;
}

static int row_of(const store_vectors *p, const char *id) {
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->ids[i], id) == 0)
      return (int)i;
  return -1;
}

static const char *text_at(const store_vectors *p, uint32_t off) {
  assert_true(off < p->term_text_len);
  return p->term_text + off;
}

static size_t nterms(const store_vectors *p, size_t i) {
  return p->term_start[i + 1] - p->term_start[i];
}

/* Row i's term with that text, or NULL. */
static const store_term *term_of(const store_vectors *p, size_t i,
                                 const char *text) {
  for (uint32_t t = p->term_start[i]; t < p->term_start[i + 1]; t++)
    if (strcmp(text_at(p, p->terms[t].text), text) == 0)
      return &p->terms[t];
  return NULL;
}

static void expect_term(const store_vectors *p, size_t i, const char *text,
                        uint32_t tf_content, uint32_t tf_meta) {
  const store_term *t = term_of(p, i, text);
  if (!t)
    fail_msg("row %zu has no term \"%s\"", i, text);
  if (t->tf_content != tf_content || t->tf_meta != tf_meta)
    fail_msg("row %zu, \"%s\": tf content %u meta %u, expected %u and %u", i,
             text, t->tf_content, t->tf_meta, tf_content, tf_meta);
}

/* What holds for every page read with terms. */
static void check_shape(const store_vectors *p) {
  assert_non_null(p->term_start);
  assert_non_null(p->terms);
  assert_non_null(p->doc_len);
  assert_non_null(p->term_text);
  assert_int_equal(p->term_start[0], 0);
  for (size_t i = 0; i < p->n; i++) {
    assert_true(p->term_start[i] <= p->term_start[i + 1]);
    uint64_t sum = 0;
    for (uint32_t t = p->term_start[i]; t < p->term_start[i + 1]; t++) {
      const store_term *x = &p->terms[t];
      assert_true(x->tf_content + x->tf_meta > 0);
      sum += x->tf_content + x->tf_meta;
      const char *s = text_at(p, x->text);
      assert_true(strlen(s) > 0);
      for (uint32_t u = p->term_start[i]; u < t; u++) /* distinct */
        assert_string_not_equal(text_at(p, p->terms[u].text), s);
    }
    /* each token is one occurrence of one term (no synonyms here) */
    assert_int_equal(sum, p->doc_len[i]);
  }
}

/* -------------------------------------------- the index, read apart */

typedef struct index_term {
  char text[64];
  uint32_t tf_content, tf_meta;
} index_term;

typedef struct index_row {
  index_term t[64];
  size_t n;
  uint32_t len;
} index_row;

static index_term *index_term_at(index_row *x, const char *text) {
  for (size_t i = 0; i < x->n; i++)
    if (strcmp(x->t[i].text, text) == 0)
      return &x->t[i];
  assert_true(x->n < 64);
  snprintf(x->t[x->n].text, sizeof x->t[x->n].text, "%s", text);
  return &x->t[x->n++];
}

static uint64_t varint(const unsigned char **p, const unsigned char *end) {
  uint64_t v = 0;
  for (int shift = 0; *p < end; shift += 7) {
    unsigned char b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      break;
  }
  return v;
}

/* FTS5's record of the memory id: its terms per column (fts5vocab) and
 * its column sizes (memories_fts_docsize, varints: content, meta,
 * ns_tag), the tag column left out. */
static void index_row_sqlite(const char *db, const char *id, index_row *x) {
  sqlite3 *s = NULL;
  assert_int_equal(sqlite3_open_v2(db, &s, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_exec(s,
                                "CREATE VIRTUAL TABLE temp.v USING"
                                " fts5vocab(main, memories_fts, instance)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_stmt *q = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(s,
                         "SELECT term, col, count(*) FROM temp.v WHERE doc ="
                         " (SELECT rowid FROM memories WHERE id = ?1)"
                         " AND col IN ('content', 'meta') GROUP BY term, col",
                         -1, &q, NULL),
      SQLITE_OK);
  sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
  while (sqlite3_step(q) == SQLITE_ROW) {
    index_term *t = index_term_at(x, (const char *)sqlite3_column_text(q, 0));
    uint32_t n = (uint32_t)sqlite3_column_int64(q, 2);
    if (strcmp((const char *)sqlite3_column_text(q, 1), "content") == 0)
      t->tf_content = n;
    else
      t->tf_meta = n;
  }
  sqlite3_finalize(q);
  assert_int_equal(
      sqlite3_prepare_v2(s,
                         "SELECT sz FROM memories_fts_docsize WHERE id ="
                         " (SELECT rowid FROM memories WHERE id = ?1)",
                         -1, &q, NULL),
      SQLITE_OK);
  sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  const unsigned char *b = sqlite3_column_blob(q, 0);
  const unsigned char *end = b + sqlite3_column_bytes(q, 0);
  uint64_t content = varint(&b, end), meta = varint(&b, end);
  x->len = (uint32_t)(content + meta);
  sqlite3_finalize(q);
  sqlite3_close(s);
}

static PGresult *pg_query(PGconn *c, const char *sql, const char *id) {
  const char *params[1] = {id};
  PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  return r;
}

/* The memory's tsvector: its lexemes' occurrences by weight (ts_stat:
 * A, the content; B, the metadata) and its number of positions. */
static void index_row_pg(const char *db, const char *id, index_row *x) {
  PGconn *c = PQconnectdb(db);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  static const char *const weights[2] = {"a", "b"};
  for (int w = 0; w < 2; w++) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT word, nentry FROM ts_stat(format("
             "'SELECT tsv FROM memories WHERE id = %%L', $1::text), '%s')",
             weights[w]);
    PGresult *r = pg_query(c, sql, id);
    for (int i = 0; i < PQntuples(r); i++) {
      index_term *t = index_term_at(x, PQgetvalue(r, i, 0));
      uint32_t n = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10);
      if (w == 0)
        t->tf_content = n;
      else
        t->tf_meta = n;
    }
    PQclear(r);
  }
  PGresult *r = pg_query(c,
                         "SELECT coalesce(sum(cardinality(u.positions)), 0)"
                         " FROM memories m, unnest(m.tsv) u"
                         " WHERE m.id = $1::uuid",
                         id);
  x->len = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(c);
}

/* Row i of p is what the index holds for it, term for term. */
static void check_index(const char *db, const store_vectors *p, size_t i) {
  index_row x = {0};
  if (tu_backend_is_pg())
    index_row_pg(db, p->ids[i], &x);
  else
    index_row_sqlite(db, p->ids[i], &x);
  assert_int_equal(nterms(p, i), x.n);
  for (size_t k = 0; k < x.n; k++)
    expect_term(p, i, x.t[k].text, x.t[k].tf_content, x.t[k].tf_meta);
  assert_int_equal(p->doc_len[i], x.len);
}

/* ---------------------------------------------------------- writing */

static void add(engram *eg, const char *ns, const char *content,
                const char *metadata, char id[ENGRAM_ID_LEN + 1]) {
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = ns,
                  .type = ENGRAM_SEMANTIC,
                  .content = content,
                  .metadata = metadata};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  assert_int_equal(op.status, 0);
  memcpy(id, op.result_id, ENGRAM_ID_LEN + 1);
}

/* ------------------------------------------------------------ cases */

static void test_row_terms(void **state) {
  (void)state;
  char db[1024];
  snprintf(db, sizeof db, "%s", tu_db_path("terms-rows"));
  engram *eg = tu_open(db, NULL);
  char stems[ENGRAM_ID_LEN + 1], both[ENGRAM_ID_LEN + 1];
  char accents[ENGRAM_ID_LEN + 1], plain[ENGRAM_ID_LEN + 1];
  char symbols[ENGRAM_ID_LEN + 1], meta_only[ENGRAM_ID_LEN + 1];
  add(eg, "t", "Running runners ran", NULL, stems);
  add(eg, "t", "melon melon banana",
      "{\"speaker\": \"Banana Lemon\", \"n\": 3, \"note\": \"lemon\","
      " \"deep\": {\"x\": \"robot\"}}",
      both);
  add(eg, "t", "Café naïve RÉSUMÉ", NULL, accents);
  add(eg, "t", "cafe naive resume", NULL, plain);
  add(eg, "t", "?! ... --", NULL, symbols);
  add(eg, "t", "...", "{\"speaker\": \"melon\"}", meta_only);
  char other[ENGRAM_ID_LEN + 1];
  add(eg, "elsewhere", "melon robot", NULL, other);

  store_vectors_query q = terms_query("t");
  store_vectors *p = read_page(eg, &q);
  assert_int_equal(p->n, 6);
  assert_true(p->ns_seq > 0);
  check_shape(p);
  assert_null(p->vectors); /* no space asked for */
  for (size_t i = 0; i < p->n; i++) {
    assert_int_equal(p->has_vector[i], 0);
    check_index(db, p, i);
  }

  /* stems: both backends' English stemmers agree on these */
  int i = row_of(p, stems);
  assert_true(i >= 0);
  assert_int_equal(nterms(p, (size_t)i), 3);
  expect_term(p, (size_t)i, "run", 1, 0);
  expect_term(p, (size_t)i, "runner", 1, 0);
  expect_term(p, (size_t)i, "ran", 1, 0);
  assert_int_equal(p->doc_len[i], 3);

  /* content, metadata string values (not the number, not a nested
   * object's), and a word in both */
  i = row_of(p, both);
  assert_int_equal(nterms(p, (size_t)i), 3);
  expect_term(p, (size_t)i, "melon", 2, 0);
  expect_term(p, (size_t)i, "banana", 1, 1);
  expect_term(p, (size_t)i, "lemon", 0, 2);
  assert_null(term_of(p, (size_t)i, "robot"));
  assert_int_equal(p->doc_len[i], 6);

  /* diacritics folded: the same terms as the plain spelling */
  int a = row_of(p, accents), b = row_of(p, plain);
  assert_int_equal(nterms(p, (size_t)a), 3);
  assert_int_equal(nterms(p, (size_t)b), 3);
  for (uint32_t t = p->term_start[b]; t < p->term_start[b + 1]; t++)
    expect_term(p, (size_t)a, text_at(p, p->terms[t].text), 1, 0);
  expect_term(p, (size_t)a, "cafe", 1, 0);
  assert_int_equal(p->doc_len[a], 3);

  /* a content of no word: no term, length 0; its metadata still counts */
  i = row_of(p, symbols);
  assert_int_equal(nterms(p, (size_t)i), 0);
  assert_int_equal(p->doc_len[i], 0);
  i = row_of(p, meta_only);
  assert_int_equal(nterms(p, (size_t)i), 1);
  expect_term(p, (size_t)i, "melon", 0, 1);
  assert_int_equal(p->doc_len[i], 1);
  store_vectors_free(p);
  tu_close(eg);
}

/* The rows of ns in pages of `limit`, from after_seq, the removed ids
 * asked for on the first: every page checked, then merged into one page
 * (rows, their terms by text, lengths) for comparison. */
typedef struct merged {
  size_t n;
  char ids[16][ENGRAM_ID_LEN + 1];
  int64_t seq[16];
  char terms[16][256]; /* "text:c:m " in page order */
  uint32_t len[16];
  size_t nremoved;
  char removed[16][ENGRAM_ID_LEN + 1];
  size_t pages;
} merged;

static void read_all(engram *eg, const char *db, const char *ns,
                     int64_t after_seq, size_t limit, merged *m) {
  memset(m, 0, sizeof *m);
  store_vectors_query q = terms_query(ns);
  q.after_seq = after_seq;
  q.limit = limit;
  q.removed = 1;
  char last[ENGRAM_ID_LEN + 1];
  for (;;) {
    store_vectors *p = read_page(eg, &q);
    m->pages++;
    check_shape(p);
    for (size_t i = 0; i < p->n; i++) {
      check_index(db, p, i);
      assert_true(m->n < 16);
      memcpy(m->ids[m->n], p->ids[i], ENGRAM_ID_LEN + 1);
      m->seq[m->n] = p->seq[i];
      m->len[m->n] = p->doc_len[i];
      size_t used = 0;
      for (uint32_t t = p->term_start[i]; t < p->term_start[i + 1]; t++)
        used += (size_t)snprintf(m->terms[m->n] + used, 256 - used, "%s:%u:%u ",
                                 text_at(p, p->terms[t].text),
                                 p->terms[t].tf_content, p->terms[t].tf_meta);
      m->n++;
    }
    for (size_t i = 0; i < p->nremoved && m->nremoved < 16; i++)
      memcpy(m->removed[m->nremoved++], p->removed[i], ENGRAM_ID_LEN + 1);
    size_t n = p->n;
    if (n > 0) {
      memcpy(last, p->ids[n - 1], sizeof last);
      q.after_row_seq = p->seq[n - 1];
      q.after_id = last;
    }
    q.removed = 0;
    store_vectors_free(p);
    if (n < limit)
      break;
  }
}

static int has_removed(const merged *m, const char *id) {
  for (size_t i = 0; i < m->nremoved; i++)
    if (strcmp(m->removed[i], id) == 0)
      return 1;
  return 0;
}

static void test_pages_removed_updates(void **state) {
  (void)state;
  char db[1024];
  snprintf(db, sizeof db, "%s", tu_db_path("terms-pages"));
  engram *eg = tu_open(db, NULL);
  char ids[7][ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 7; i++) {
    char content[64];
    snprintf(content, sizeof content, "robot %d robot zebra%s", i,
             i % 2 ? " melon" : "");
    add(eg, "p", content, i == 3 ? "{\"who\": \"robot\"}" : NULL, ids[i]);
  }
  merged one, paged;
  read_all(eg, db, "p", -1, 100, &one);
  assert_int_equal(one.pages, 1);
  read_all(eg, db, "p", -1, 2, &paged);
  assert_int_equal(paged.pages, 4); /* 2, 2, 2, 1 */
  assert_int_equal(one.n, 7);
  assert_int_equal(paged.n, 7);
  for (size_t i = 0; i < 7; i++) {
    assert_string_equal(paged.ids[i], one.ids[i]);
    assert_int_equal(paged.seq[i], one.seq[i]);
    assert_string_equal(paged.terms[i], one.terms[i]);
    assert_int_equal(paged.len[i], one.len[i]);
    assert_string_equal(one.ids[i], ids[i]); /* written in order */
  }
  /* robot 2 + the number 1 + zebra 1 (+ melon 1) (+ robot in metadata) */
  assert_int_equal(one.len[0], 4);
  assert_int_equal(one.len[1], 5);
  assert_int_equal(one.len[3], 6);
  assert_non_null(strstr(one.terms[3], "robot:2:1 "));
  assert_non_null(strstr(one.terms[4], "robot:2:0 "));
  assert_non_null(strstr(one.terms[4], "4:1:0 "));

  /* after the watermark: a delete, an update of content and metadata */
  store_vectors_query q = terms_query("p");
  store_vectors *p = read_page(eg, &q);
  int64_t watermark = p->ns_seq;
  store_vectors_free(p);
  assert_int_equal(stu_delete(eg, "p", ids[1]), 0);
  engram_op up = {.kind = ENGRAM_OP_UPDATE,
                  .ns = "p",
                  .id = ids[5],
                  .content = "lemon lemon lemon",
                  .metadata = "{\"note\": \"banana\"}",
                  .set = ENGRAM_SET_CONTENT | ENGRAM_SET_METADATA};
  assert_int_equal(stu_write_ops(eg, &up, 1), 0);
  assert_int_equal(up.status, 0);
  merged after;
  read_all(eg, db, "p", watermark, 2, &after);
  assert_int_equal(after.n, 1);
  assert_string_equal(after.ids[0], ids[5]);
  /* the new terms only (in the backend's order) */
  assert_non_null(strstr(after.terms[0], "lemon:3:0 "));
  assert_non_null(strstr(after.terms[0], "banana:0:1 "));
  assert_int_equal(strlen(after.terms[0]), strlen("lemon:3:0 banana:0:1 "));
  assert_int_equal(after.len[0], 4);
  assert_int_equal(after.nremoved, 1);
  assert_true(has_removed(&after, ids[1]));
  tu_close(eg);
}

/* Word w's terms, in q->qterms. */
static size_t word_terms(const store_vectors *p, size_t w, const char **out,
                         size_t cap) {
  size_t n = 0;
  for (uint32_t t = p->qterm_start[w]; t < p->qterm_start[w + 1]; t++) {
    assert_true(n < cap);
    out[n++] = text_at(p, p->qterms[t]);
  }
  return n;
}

static int listed(const char *const *terms, size_t n, const char *t) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(terms[i], t) == 0)
      return 1;
  return 0;
}

static void test_query_words(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("terms-query"), NULL);
  char id[ENGRAM_ID_LEN + 1], id2[ENGRAM_ID_LEN + 1];
  add(eg, "q", "the runner runs", NULL, id);
  add(eg, "q", "melon", NULL, id2);
  static const char *const words[] = {"Running", "the",  "!?",     "wi-fi",
                                      "bar-bar", "Café", "running"};
  enum { NWORDS = sizeof words / sizeof words[0] };
  store_vectors_query q = terms_query("q");
  q.query_words = words;
  q.nquery_words = NWORDS;
  q.limit = 1;
  store_vectors *p = read_page(eg, &q);
  assert_int_equal(p->n, 1);
  assert_non_null(p->qterm_start);
  assert_non_null(p->qterms);
  assert_int_equal(p->qterm_start[0], 0);
  assert_int_equal(p->qterm_start[NWORDS], p->nqterms);
  const char *t[8];
  assert_int_equal(word_terms(p, 0, t, 8), 1); /* its stem */
  assert_string_equal(t[0], "run");
  assert_int_equal(word_terms(p, 1, t, 8), 1); /* a stop word stays */
  assert_string_equal(t[0], "the");
  assert_int_equal(word_terms(p, 2, t, 8), 0); /* symbols: no term */
  assert_int_equal(word_terms(p, 3, t, 8), 2); /* two tokens */
  assert_true(listed(t, 2, "wi") && listed(t, 2, "fi"));
  assert_int_equal(word_terms(p, 4, t, 8), 1); /* distinct in the word */
  assert_string_equal(t[0], "bar");
  assert_int_equal(word_terms(p, 5, t, 8), 1);
  assert_string_equal(t[0], "cafe");
  assert_int_equal(word_terms(p, 6, t, 8), 1); /* per word, again */
  assert_string_equal(t[0], "run");
  /* the row's term and the query's are the same string */
  expect_term(p, 0, "run", 1, 0);

  /* a later page answers them too when asked (a resumed catch-up's
   * first page), and carries none when not */
  char last[ENGRAM_ID_LEN + 1];
  memcpy(last, p->ids[0], sizeof last);
  q.after_row_seq = p->seq[0];
  q.after_id = last;
  store_vectors_free(p);
  p = read_page(eg, &q);
  assert_int_equal(p->n, 1);
  assert_string_equal(p->ids[0], id2);
  assert_non_null(p->qterm_start);
  assert_int_equal(p->qterm_start[NWORDS], p->nqterms);
  store_vectors_free(p);
  q.query_words = NULL;
  q.nquery_words = 0;
  p = read_page(eg, &q);
  assert_int_equal(p->n, 1);
  assert_null(p->qterm_start);
  assert_null(p->qterms);
  assert_int_equal(p->nqterms, 0);
  store_vectors_free(p);

  /* a namespace of no row still has the query's terms */
  store_vectors_query e = terms_query("nothing here");
  e.query_words = words;
  e.nquery_words = 1;
  p = read_page(eg, &e);
  assert_int_equal(p->n, 0);
  assert_int_equal(p->ns_seq, 0);
  assert_int_equal(p->term_start[0], 0);
  assert_int_equal(word_terms(p, 0, t, 8), 1);
  assert_string_equal(t[0], "run");
  store_vectors_free(p);

  /* no words: none */
  q = terms_query("q");
  p = read_page(eg, &q);
  assert_null(p->qterm_start);
  assert_int_equal(p->nqterms, 0);
  store_vectors_free(p);

  /* refused, without a callback: a missing word, a space of no dim */
  static const char *const holes[] = {"run", NULL};
  page_read pr = {0};
  store_vectors_req req = {.cb = on_page, .data = &pr};
  q.query_words = holes;
  q.nquery_words = 2;
  assert_int_equal(eg->st->ops->vectors(eg->st, &q, &req), ENGRAM_EINVAL);
  q = terms_query("q");
  q.embedder = g_emb.name;
  assert_int_equal(eg->st->ops->vectors(eg->st, &q, &req), ENGRAM_EINVAL);
  assert_int_equal(pr.calls, 0);
  tu_close(eg);
}

static void test_vectors_and_terms_off(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("terms-off"), NULL);
  char id[3][ENGRAM_ID_LEN + 1];
  add(eg, "v", "robot melon", NULL, id[0]);
  add(eg, "v", "zebra lemon", "{\"a\": \"robot\"}", id[1]);
  add(eg, "v", "banana", NULL, id[2]);
  static const char *const words[] = {"robot"};

  /* the vector index's read, as before: vectors, no term */
  store_vectors_query q = {.ns = "v",
                           .embedder = g_emb.name,
                           .dim = DIM,
                           .after_seq = -1,
                           .limit = 10,
                           .removed = 1,
                           .query_words = words,
                           .nquery_words = 1};
  store_vectors *p = read_page(eg, &q);
  assert_int_equal(p->n, 3);
  assert_non_null(p->vectors);
  float sum[3] = {0};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(p->has_vector[i], 1);
    for (size_t d = 0; d < DIM; d++)
      sum[i] += p->vectors[i * DIM + d] * p->vectors[i * DIM + d];
    assert_true(sum[i] > 0.99f && sum[i] < 1.01f); /* normalized */
  }
  assert_null(p->term_start);
  assert_null(p->terms);
  assert_null(p->doc_len);
  assert_null(p->term_text);
  assert_int_equal(p->term_text_len, 0);
  assert_null(p->qterm_start);
  assert_null(p->qterms);
  assert_int_equal(p->nqterms, 0);
  float *vectors = malloc(3 * DIM * sizeof *vectors);
  assert_non_null(vectors);
  memcpy(vectors, p->vectors, 3 * DIM * sizeof *vectors);
  store_vectors_free(p);

  /* both: the same vectors, and the terms */
  q.terms = 1;
  p = read_page(eg, &q);
  check_shape(p);
  assert_int_equal(p->n, 3);
  assert_memory_equal(p->vectors, vectors, 3 * DIM * sizeof *vectors);
  expect_term(p, 1, "robot", 0, 1);
  assert_non_null(p->qterm_start);
  store_vectors_free(p);
  free(vectors);

  /* no space, no terms: ids only */
  q.embedder = NULL;
  q.dim = 0;
  q.terms = 0;
  p = read_page(eg, &q);
  assert_int_equal(p->n, 3);
  assert_null(p->vectors);
  assert_null(p->term_start);
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(p->ids[i], id[i]);
    assert_int_equal(p->has_vector[i], 0);
  }
  store_vectors_free(p);
  tu_close(eg);
}

int main(void) {
  int rc = tu_backend_check();
  if (rc != 0)
    return rc;
  if (search_hashed_init(&g_emb, NULL) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_row_terms),
      cmocka_unit_test(test_pages_removed_updates),
      cmocka_unit_test(test_query_words),
      cmocka_unit_test(test_vectors_and_terms_off),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
