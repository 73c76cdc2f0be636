/*
 * pg_stream.c — the search and list streams of the PostgreSQL backend:
 * one server-side cursor each, fetched as the consumer asks (the
 * machinery is pg_cursor.c).
 *
 * The first step pipelines BEGIN READ ONLY, the DECLARE of a NO SCROLL
 * cursor over the query (its parameters bound through the extended
 * protocol, never spliced into the SQL) and the first FETCH; every later
 * step is one FETCH of min(demand, chunk_rows) rows. A FETCH that returns
 * fewer rows than it asked for is the end of the data.
 *
 * List is a keyset walk in id order: `id > after`, ORDER BY id, on the
 * (ns, id) index or the primary key; never OFFSET. UUIDv7 ids in uuid
 * order are creation order, and the same order as their canonical text,
 * which is what SQLite sorts.
 *
 * Search takes its words from core_tokenize, like SQLite's backend
 * (sqlite_match.c): stop words are dropped unless nothing else is left,
 * at most CORE_SEARCH_MAX_WORDS words (core_search_words, shared with
 * SQLite), and a word the tokenizer cut short
 * matches as a prefix (pg_search_words, which hybrid search's candidates
 * use too). The words travel as one bound text[] parameter; the server
 * turns each into a query with phraseto_tsquery (plain text: no character
 * of it is tsquery syntax) and ORs them. No word: an empty stream,
 * without a query.
 *
 * Text is split as SQLite splits it: memories.tsv blanks out ASCII
 * punctuation, folds accents and stems English words (pg_schema.c), and
 * query words go through the same configuration (PG_TS_CONFIG).
 *
 * Ranking is BM25 (k1 1.2, b 0.75, idf ln(1 + (N - n + 0.5)/(n + 0.5)),
 * the same formula as SQLite's engram_rank(); PG_SCORE_CTES), computed in
 * SQL from the tsvector of each hit, and relevance is score / (1 + score)
 * in [0,1), ordered by score, then id. Where it differs from SQLite:
 *  - statistics are per namespace, not over the whole table: n is counted
 *    among the namespace's hits, N is the namespace's row count (counted
 *    up to PG_COUNT_CAP rows; past that, the table's estimated row
 *    count), and the average length is the hits' average, not the
 *    table's. Relevance therefore differs from SQLite's by a few
 *    hundredths on the same small data set, more where other namespaces
 *    are large; the order of results is the same in the common cases;
 *  - PostgreSQL's parser and snowball's English stemmer are not FTS5's
 *    unicode61 and porter: the same words match in the common cases
 *    (case, accents, plurals and -ing forms, punctuation), though the two
 *    stemmers differ on some words, and in a C locale non-ASCII symbols
 *    join the letters around them into one word (on both sides, so a
 *    memory is still found by its own text);
 *  - a word joined by non-ASCII punctuation ("foo—bar") must match as a
 *    phrase, as in FTS5, but it scores as its separate words.
 * The work of a search is proportional to its hits in the namespace, like
 * SQLite's, plus counting up to PG_COUNT_CAP index entries for N:
 * every hit is scored before the first row leaves (that is what ranking
 * costs), then rows leave as they are fetched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/pg/pg_cursor.h"

#define CURSOR_NAME "eg_c"
#define DECLARE "DECLARE " CURSOR_NAME " NO SCROLL CURSOR FOR "
#define TYPE_FILTER(alias) PG_TYPE_FILTER(alias, "$3")

/* Every variant takes the same parameters, $1 ns, $2 after, $3 the types
 * mask; one a variant does not use is NULL, typed with an IS NULL test (an
 * unused parameter would have no type). */
static const char list_ns_sql[] =
    DECLARE "SELECT " PG_NODE_COLUMNS " FROM memories m"
            " WHERE m.ns = $1::text AND m.id > $2::uuid"
            " AND " TYPE_FILTER("m") " ORDER BY m.id";
static const char list_ns_first_sql[] =
    DECLARE "SELECT " PG_NODE_COLUMNS " FROM memories m"
            " WHERE m.ns = $1::text AND $2::text IS NULL"
            " AND " TYPE_FILTER("m") " ORDER BY m.id";
static const char list_all_sql[] =
    DECLARE "SELECT " PG_NODE_COLUMNS " FROM memories m"
            " WHERE $1::text IS NULL AND m.id > $2::uuid"
            " AND " TYPE_FILTER("m") " ORDER BY m.id";
static const char list_all_first_sql[] =
    DECLARE "SELECT " PG_NODE_COLUMNS " FROM memories m"
            " WHERE $1::text IS NULL AND $2::text IS NULL"
            " AND " TYPE_FILTER("m") " ORDER BY m.id";

/* $1 ns, $2 the words (text[]), $3 the types mask, $4 min_relevance; BM25
 * with SQLite's search parameters (k1 1.2, b 0.75, a word of the metadata
 * counting as one of the content). */
static const char search_sql[] = DECLARE "WITH " PG_SCORE_CTES(
    "1.2", "0.75", "1") " SELECT " PG_NODE_COLUMNS ", sc.s / (1 + sc.s)"
                        " FROM score sc JOIN memories m ON m.ctid = sc.tid"
                        " WHERE sc.s / (1 + sc.s) >= $4::float8"
                        " ORDER BY sc.s DESC, m.id";
const char *const pg_search_sql = search_sql + sizeof DECLARE - 1;

/* JIT compiling this query costs more than running it; notices
 * (phraseto_tsquery of a word with no lexeme) would reach libpq's stderr
 * printer. Both settings end with the transaction. */
static const char search_settings_sql[] =
    "SELECT set_config('jit', 'off', true),"
    " set_config('client_min_messages', 'warning', true)";

typedef struct query_cursor {
  pg_cursor c;         /* first */
  const char *declare; /* the DECLARE statement (static) */
  char *values[4];
  int nparams;
  int search; /* rows carry a relevance column */
  int declared;
  unsigned fetch_cmd; /* the FETCH's command number in its exchange */
  size_t asked;       /* rows that FETCH asked for */
} query_cursor;

static void query_queue(pg_cursor *c, size_t want) {
  query_cursor *q = (query_cursor *)c;
  if (!q->declared) {
    q->declared = 1;
    pg_cursor_sql(c, "BEGIN READ ONLY", 0, NULL);
    if (q->search)
      pg_cursor_sql(c, search_settings_sql, 0, NULL);
    pg_cursor_sql(c, q->declare, q->nparams, (const char *const *)q->values);
  }
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %zu FROM " CURSOR_NAME, want);
  q->fetch_cmd = c->ncmds;
  q->asked = want;
  pg_cursor_sql(c, fetch, 0, NULL);
}

static void query_result(pg_cursor *c, unsigned cmd, PGresult *res) {
  query_cursor *q = (query_cursor *)c;
  if (!pg_result_ok(res)) {
    pg_cursor_fail_result(
        c, res, q->search ? "searching memories" : "listing memories");
    return;
  }
  if (cmd != q->fetch_cmd)
    return;
  int rows = PQntuples(res);
  for (int i = 0; i < rows && c->rc == 0; i++) {
    double relevance = 0;
    if (q->search) {
      relevance = strtod(PQgetvalue(res, i, PG_NODE_NCOLUMNS), NULL);
      if (!(relevance >= 0))
        relevance = 0;
      if (relevance > 1)
        relevance = 1;
    }
    pg_cursor_push_row(c, res, i, 0, relevance, 0);
  }
  if ((size_t)rows < q->asked)
    c->at_end = 1;
}

static void query_destroy(pg_cursor *c) {
  query_cursor *q = (query_cursor *)c;
  for (int i = 0; i < 4; i++)
    free(q->values[i]);
  free(q);
}

static const pg_cursor_kind query_kind = {query_queue, query_result,
                                          query_destroy};

static char *format_uint(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof buf, "%u", v);
  return strdup(buf);
}

static char *dup_or_null(const char *s, int *ok) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *ok = 0;
  return d;
}

int pg_stream_list(store *base, const store_query *q, engram_stream *s) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (q->after && strlen(q->after) != ENGRAM_ID_LEN)
    return ENGRAM_EINVAL;
  query_cursor *qc = calloc(1, sizeof *qc);
  if (!qc)
    return ENGRAM_ENOMEM;
  const char *sql = q->ns ? (q->after ? list_ns_sql : list_ns_first_sql)
                          : (q->after ? list_all_sql : list_all_first_sql);
  int ok = 1;
  qc->declare = sql;
  qc->values[0] = dup_or_null(q->ns, &ok);
  qc->values[1] = dup_or_null(q->after, &ok);
  qc->values[2] = format_uint(q->types);
  qc->nparams = 3;
  if (!ok || !qc->values[2]) {
    query_destroy(&qc->c);
    return ENGRAM_ENOMEM;
  }
  pg_cursor_attach(&qc->c, st, s, &query_kind);
  return 0;
}

/* --------------------------------------------------------------- words */

/* The words as a PostgreSQL text[] literal: {"w1","w2"}. */
typedef struct word_array {
  char *buf;
  size_t len, cap;
  size_t words;
  int failed;
} word_array;

static int reserve(word_array *a, size_t more) {
  if (a->len + more <= a->cap)
    return 1;
  size_t cap = a->cap ? a->cap * 2 : 256;
  while (cap < a->len + more)
    cap *= 2;
  char *p = realloc(a->buf, cap);
  if (!p)
    return 0;
  a->buf = p;
  a->cap = cap;
  return 1;
}

static void add_word(const char *tok, size_t len, int cut, void *data) {
  word_array *a = data;
  (void)cut; /* the SQL matches a word of PG_TOKEN_CUT bytes as a prefix */
  if (a->failed)
    return;
  /* Worst case every byte escaped, plus `,"` `"}` and the NUL. */
  if (!reserve(a, 2 * len + 6)) {
    a->failed = 1;
    return;
  }
  a->buf[a->len++] = a->words ? ',' : '{';
  a->buf[a->len++] = '"';
  for (size_t i = 0; i < len; i++) {
    /* Tokens hold no ASCII punctuation; escaped all the same, since this
     * is array syntax. */
    if (tok[i] == '"' || tok[i] == '\\')
      a->buf[a->len++] = '\\';
    a->buf[a->len++] = tok[i];
  }
  a->buf[a->len++] = '"';
  a->words++;
}

int pg_search_words(const char *text, size_t len, char **out, size_t *words) {
  word_array a = {0};
  core_search_words(text, len, add_word, &a);
  if (!a.failed && !reserve(&a, 3))
    a.failed = 1;
  if (a.failed) {
    free(a.buf);
    return ENGRAM_ENOMEM;
  }
  if (a.words == 0)
    a.buf[a.len++] = '{';
  a.buf[a.len++] = '}';
  a.buf[a.len] = '\0';
  *out = a.buf;
  *words = a.words;
  return 0;
}

int pg_stream_search(store *base, const store_query *q, engram_stream *s) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!q->ns || !q->text)
    return ENGRAM_EINVAL;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  char *words = NULL;
  size_t nwords = 0;
  if (pg_search_words(q->text, len, &words, &nwords) != 0)
    return ENGRAM_ENOMEM;
  query_cursor *qc = calloc(1, sizeof *qc);
  if (!qc) {
    free(words);
    return ENGRAM_ENOMEM;
  }
  qc->search = 1;
  qc->c.empty = nwords == 0; /* no word to look for: an empty stream */
  qc->values[1] = words;
  int ok = 1;
  qc->values[0] = dup_or_null(q->ns, &ok);
  qc->values[2] = format_uint(q->types);
  char rel[32];
  snprintf(rel, sizeof rel, "%.17g", q->min_relevance);
  qc->values[3] = dup_or_null(rel, &ok);
  qc->nparams = 4;
  qc->declare = search_sql;
  if (!ok || !qc->values[2]) {
    query_destroy(&qc->c);
    return ENGRAM_ENOMEM;
  }
  pg_cursor_attach(&qc->c, st, s, &query_kind);
  return 0;
}

_Static_assert(CORE_SEARCH_WORD_CUT == 60,
               "PG_TOKEN_CUT must be CORE_SEARCH_WORD_CUT");
