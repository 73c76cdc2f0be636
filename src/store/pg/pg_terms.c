/*
 * pg_terms.c — hybrid search's lexical step on PostgreSQL: which rows of
 * the namespace to score for a query's words, and their BM25 scores, at a
 * cost that grows with the budget (store_candidates_query.max_scored, B),
 * not with the number of rows that have a word. pg_candidates.c runs the
 * statement, then reads the best rows and their neighbours.
 *
 * The statement (terms_parts), on one snapshot:
 *   1. each word's lexemes (the words are one bound text[]; a word becomes
 *      a query through phraseto_tsquery, a lexeme a one-lexeme query made
 *      from the lexeme's tsvector text form: never from the user's text)
 *      and how many rows of the namespace hold each lexeme, counted
 *      through the GIN index up to B + 1 rows. Not counted: a lexeme that
 *      PostgreSQL's statistics put in more than B rows of the namespace (a
 *      GIN scan of a lexeme in tens of thousands of rows costs tens of
 *      milliseconds, whatever its LIMIT), and, when the namespace is alone
 *      in the table (two index seeks tell), any lexeme the statistics know
 *      (their shares are then the namespace's); the statistics' estimate
 *      stands for their count. A word is in as many rows as its rarest
 *      lexeme, at most; words in no row are left out. A namespace of B
 *      rows or fewer (counted exactly) is read whole
 *      through its (ns, id) index, without counting and without GIN, whose
 *      posting lists are the whole table's: the cost of a small namespace
 *      in a large table stays its own;
 *   2. from those counts, SQLite's three forms (sqlite_candidates.c):
 *        ALL   the counts add up to B or less (or one word, or a small
 *              namespace): every row that has a word, the unpruned set;
 *        ESS   the rarest word fits in B: the rows that have one of the
 *              rarest words while their counts add up to B ("essential");
 *        PAIR  even the rarest word w1 is in more than B rows: the newest
 *              B rows that have w1 and another word; if fewer than `limit`
 *              of them are of the wanted types, the newest B rows of w1.
 *      ALL with a single word in more than B rows takes its newest B. The
 *      newest B rows of a query q are read one of two ways, chosen from
 *      q's estimated rows n: walking the namespace newest first, stopping
 *      at the B-th match (about B * N / n rows read), or q's GIN bitmap and
 *      the top B by id (n rows fetched). The walk wins past n ~ sqrt(B * N)
 *      / 2 (a row walked costs about a quarter of a row fetched through a
 *      bitmap); a word whose count reached the cap is taken as not common
 *      enough to walk for;
 *   3. per row chosen: its id, type, length dl (the number of positions
 *      of its tsvector: ts_rank with normalization 2 divides the rank by
 *      exactly that, so dl = rank / rank_2, rounded, without unnesting the
 *      tsvector, which costs several times more; tests/test_pg_candidates.c
 *      checks it against the unnested sum) and the positions of the query's
 *      lexemes only (the tsvector reduced to them, as text), all positions
 *      and those in the metadata (weight B) apart.
 * With those rows come the query's lexemes (word, lexeme, count, flags:
 * a cut word's prefix, and whether every row that has it is among the rows
 * chosen, N), and the scoring happens here, in C (pg_terms_rank): in SQL
 * it cost more than choosing and reading the rows together (each row's
 * lexemes unnested, joined and summed: about 4 us a row, against well under
 * one here).
 *
 * The scores are those of PG_SCORE_CTES (search's): per row and query
 * lexeme, tf = positions + (meta_weight - 1) * metadata positions (a cut
 * word's lexeme matches as a prefix, its matching lexemes summed),
 * idf = ln(1 + (max(N - n, 0) + 0.5) / (n + 0.5)), and the sum of
 * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)); N as search
 * counts it (the namespace's rows up to PG_COUNT_CAP, past that the table's
 * estimated row count; when the namespace is alone in the table and the
 * estimate is twice the cap, the estimate without counting), avgdl the
 * average dl of the rows chosen (of every type). n, the rows that have the
 * lexeme:
 *   - when every row that has it is chosen (every lexeme in ALL, the
 *     lexeme of a one-lexeme essential word in ESS), counted among them:
 *     exact. So ALL gives exactly the unpruned scores;
 *   - else, counted below the cap: exact;
 *   - else, not counted: its share of the table's rows in ANALYZE's
 *     sample (pg_stats.most_common_elem_freqs) times N. PostgreSQL's own
 *     estimate: free, and good to a few percent for the common lexemes it
 *     stands for, whose idf is small and changes slowly with n;
 *   - else, counted to the cap (a lexeme the statistics do not know: a
 *     table never analysed, or a lexeme common in this namespace only):
 *     B + 1, a lower bound, so its idf is too high, as if it were rarer.
 * In ESS and PAIR avgdl is a sample's: the rows that have a rarer word.
 * Without statistics every word is counted (to B + 1 rows at most) and the
 * newest rows are always read through the bitmap: correct, slower for the
 * commonest words.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

#define BUDGET "$3::float8"
#define N_ROWS "(SELECT n FROM total)"
/* The namespace holds B rows or fewer (counted): read it all, no GIN. */
#define SMALL "(SELECT n <= " BUDGET " AND n < " PG_COUNT_CAP " FROM total)"
#define WANTED(alias) PG_TYPE_FILTER(alias, "$5")
/* A walk or a bitmap for the newest B rows of the query in column Q of
 * plan; WALK names plan's choice of the walk (see the top). */
#define NEWEST_BITMAP(GATE, Q)                                                 \
  "SELECT m.id, m.type, m.tsv FROM memories m"                                 \
  " WHERE (" GATE ") AND m.ns = $1::text AND m.tsv @@ (SELECT " Q              \
  " FROM plan) ORDER BY m.id DESC LIMIT $3::bigint"
/* The inner LIMIT fences the walk: the planner keeps the newest-first
 * index scan, and the outer LIMIT stops it at the B-th match. */
#define NEWEST_WALK(GATE, Q)                                                   \
  "SELECT w.* FROM (SELECT m.id, m.type, m.tsv FROM memories m"                \
  "  WHERE (" GATE ") AND m.ns = $1::text ORDER BY m.id DESC"                  \
  "  LIMIT (SELECT 2 * n + 1000 FROM total)::bigint) w"                        \
  " WHERE w.tsv @@ (SELECT " Q " FROM plan) LIMIT $3::bigint"
/* The lexemes a row's tsvector is reduced to: the query's, and for a cut
 * word the row's lexemes that start with it. */
#define ROW_LEXEMES(TSV)                                                       \
  "CASE WHEN a.prefixed THEN a.lexes || ARRAY(SELECT x FROM"                   \
  " unnest(tsvector_to_array(" TSV ")) x WHERE EXISTS (SELECT FROM lex"        \
  " WHERE lex.prefix AND starts_with(x, lex.lex))) ELSE a.lexes END"

/* $1 ns, $2 the words (text[]), $3 the budget B, $4 meta_weight, $5 the
 * types mask, $6 limit. Rows (kind, a, b, c, d, e), in no set order:
 *   0, word index, lexeme, n (counted or estimated), flags ('p': a cut
 *      word's, a prefix; 'f': every row that has it is chosen), N
 *                                                   one per query lexeme
 *   1, id, type, dl, positions (tsvector text), metadata positions (NULL
 *      when meta_weight is 1)                       one per row chosen */
static const char *const terms_parts[] = {
    "WITH "
    "tok AS MATERIALIZED ("
    " SELECT u.i, u.t, octet_length(u.t) >= " PG_TOKEN_CUT " AS prefix,"
    "  phraseto_tsquery(" PG_TS_CONFIG ", u.t) AS q"
    " FROM unnest($2::text[]) WITH ORDINALITY AS u(t, i)),"
    /* each word's query as tsquery text (a cut word's last lexeme a
     * prefix), ready to be ORed */
    "word AS MATERIALIZED ("
    " SELECT tok.i, '(' || tok.q::text"
    "  || CASE WHEN tok.prefix THEN ':*' ELSE '' END || ')' AS qt"
    " FROM tok WHERE numnode(tok.q) > 0),"
    "lex AS MATERIALIZED ("
    " SELECT tok.i, l.lex, tok.prefix, count(*) OVER (PARTITION BY tok.i)"
    "  AS nlex, (array_to_tsvector(ARRAY[l.lex])::text"
    "  || CASE WHEN tok.prefix THEN ':*' ELSE '' END)::tsquery AS q"
    " FROM tok, unnest(tsvector_to_array(to_tsvector(" PG_TS_CONFIG
    ", tok.t))) AS l(lex)),"
    "anyq AS MATERIALIZED ("
    " SELECT string_agg(word.qt, ' | ')::tsquery AS q,"
    "  (SELECT array_agg(DISTINCT lex.lex) FROM lex) AS lexes,"
    "  (SELECT bool_or(lex.prefix) FROM lex) AS prefixed FROM word),"
    /* N: as search counts it; two index seeks tell whether the namespace
     * is the table's only one */
    "tab AS MATERIALIZED ("
    " SELECT coalesce((SELECT min(ns) FROM memories) = $1::text"
    "  AND (SELECT max(ns) FROM memories) = $1::text, false) AS alone,"
    "  (SELECT reltuples FROM pg_class WHERE oid = 'memories'::regclass)"
    "  ::float8 AS rows),"
    "total AS MATERIALIZED ("
    " SELECT CASE WHEN t.alone AND t.rows >= 2 * " PG_COUNT_CAP
    " THEN t.rows ELSE (SELECT CASE WHEN c.n < " PG_COUNT_CAP
    "  THEN c.n ELSE greatest(c.n, t.rows) END FROM (SELECT count(*)::float8"
    "  AS n FROM (SELECT FROM memories WHERE ns = $1::text LIMIT " PG_COUNT_CAP
    ") x) c) END AS n FROM tab t),",
    /* ANALYZE's most common lexemes of memories.tsv and their shares */
    "mce AS MATERIALIZED ("
    " SELECT s.most_common_elems::text::text[] AS elems,"
    "  s.most_common_elem_freqs AS freqs FROM pg_stats s"
    " WHERE s.schemaname = (SELECT n.nspname FROM pg_class c JOIN"
    "  pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE c.oid = 'memories'::regclass)"
    "  AND s.tablename = 'memories' AND s.attname = 'tsv'),"
    "est AS MATERIALIZED ("
    " SELECT lex.*, CASE WHEN NOT lex.prefix AND NOT " SMALL " THEN (SELECT"
    "  mce.freqs[array_position(mce.elems, lex.lex)] * total.n"
    "  FROM mce, total) END AS est FROM lex),"
    /* a phrase's lexeme is counted among the rows that match a word, as
     * the unpruned query counts it */
    "cnt AS MATERIALIZED ("
    " SELECT e.i, e.lex, e.prefix, e.nlex, e.est, CASE WHEN " SMALL
    "  OR e.est > " BUDGET " OR (e.est IS NOT NULL AND (SELECT alone FROM tab))"
    "  THEN NULL ELSE (SELECT count(*) FROM (SELECT FROM memories m"
    "  WHERE m.ns = $1::text AND m.tsv @@ CASE WHEN e.nlex > 1"
    "  THEN e.q && (SELECT q FROM anyq) ELSE e.q END"
    "  LIMIT $3::bigint + 1) x)::float8 END AS n FROM est e),"
    /* the words present, the rarest first, with their running sum */
    "ranked AS MATERIALIZED ("
    " SELECT w.i, w.sel, w.qt, row_number() OVER o AS r,"
    "  sum(w.sel) OVER o AS cum FROM (SELECT c.i, min(coalesce(c.n, c.est,"
    "  0)) AS sel, word.qt FROM cnt c JOIN word ON word.i = c.i"
    "  GROUP BY c.i, word.qt) w"
    " WHERE w.sel > 0 OR " SMALL " WINDOW o AS (ORDER BY w.sel, w.i)),"
    /* form: 0 ALL, 1 ESS, 2 PAIR, -1 no word in any row */
    "plan AS MATERIALIZED ("
    " SELECT CASE WHEN count(*) = 0 THEN -1"
    "  WHEN " SMALL " OR count(*) = 1 OR sum(sel) <= " BUDGET " THEN 0"
    "  WHEN min(sel) <= " BUDGET " THEN 1 ELSE 2 END AS form,"
    "  " SMALL " AS small, min(sel) > " BUDGET " AND NOT " SMALL " AS capped,"
    "  string_agg(qt, ' | ')::tsquery AS allq,"
    "  string_agg(qt, ' | ') FILTER (WHERE r = 1 OR cum <= " BUDGET
    ")::tsquery AS essq,"
    "  min(qt) FILTER (WHERE r = 1)::tsquery AS w1q,"
    "  (min(qt) FILTER (WHERE r = 1) || ' & (' || string_agg(qt, ' | ')"
    "   FILTER (WHERE r > 1) || ')')::tsquery AS pairq,"
    "  min(sel) > sqrt(" BUDGET " * " N_ROWS ") / 2 AS walk1,"
    /* w1's rows with another word, the words taken as independent */
    "  min(sel) * (1 - exp(sum(ln(greatest(1 - sel / greatest(" N_ROWS
    ", 1), 1e-9))) FILTER (WHERE r > 1))) > sqrt(" BUDGET " * " N_ROWS
    ") / 2 AS walkpair"
    " FROM ranked),",
    "pair AS MATERIALIZED ("
    NEWEST_BITMAP("SELECT form = 2 AND NOT walkpair FROM plan", "pairq") "),"
    "pairwalk AS MATERIALIZED ("
    NEWEST_WALK("SELECT form = 2 AND walkpair FROM plan", "pairq") "),"
    "few AS MATERIALIZED ("
    " SELECT (SELECT form = 0 AND capped FROM plan) OR ((SELECT form = 2"
    "  FROM plan) AND (SELECT count(*) FROM (SELECT type FROM pair UNION ALL"
    "  SELECT type FROM pairwalk) p WHERE " WANTED("p") ") < $6::bigint)"
    "  AS newest),"
    "newest AS MATERIALIZED ("
    NEWEST_BITMAP("SELECT newest AND NOT walk1 FROM few, plan", "w1q") "),"
    "newestwalk AS MATERIALIZED ("
    NEWEST_WALK("SELECT newest AND walk1 FROM few, plan", "w1q") "),"
    "pick AS ("
    " SELECT m.id, m.type, m.tsv FROM memories m"
    " WHERE (SELECT form = 0 AND NOT capped AND NOT small FROM plan)"
    "  AND m.ns = $1::text AND m.tsv @@ (SELECT allq FROM plan)"
    " UNION ALL SELECT w.* FROM (SELECT m.id, m.type, m.tsv FROM memories m"
    "  WHERE (SELECT small FROM plan) AND m.ns = $1::text ORDER BY m.id"
    "  LIMIT (SELECT 2 * n + 1000 FROM total)::bigint) w"
    " WHERE w.tsv @@ (SELECT allq FROM plan)"
    " UNION ALL SELECT m.id, m.type, m.tsv FROM memories m"
    " WHERE (SELECT form = 1 FROM plan) AND m.ns = $1::text"
    "  AND m.tsv @@ (SELECT essq FROM plan)"
    " UNION ALL SELECT * FROM pair WHERE NOT (SELECT newest FROM few)"
    " UNION ALL SELECT * FROM pairwalk WHERE NOT (SELECT newest FROM few)"
    " UNION ALL SELECT * FROM newest"
    " UNION ALL SELECT * FROM newestwalk)"
    "SELECT 0 AS kind, c.i::text AS a, c.lex AS b, coalesce(c.n, c.est, 0)"
    " AS c, CASE WHEN c.prefix THEN 'p' ELSE '' END"
    " || CASE WHEN (p.form = 0 AND NOT p.capped) OR (p.form = 1"
    "  AND c.nlex = 1 AND (k.r = 1 OR k.cum <= " BUDGET "))"
    "  THEN 'f' ELSE '' END AS d, " N_ROWS "::text AS e"
    " FROM cnt c CROSS JOIN plan p LEFT JOIN ranked k ON k.i = c.i"
    " UNION ALL "
    "SELECT 1, p.id::text, p.type::text,"
    " greatest(coalesce(round(ts_rank(p.tsv, a.q, 0)::float8"
    "  / nullif(ts_rank(p.tsv, a.q, 2), 0)::float8),"
    "  (SELECT sum(cardinality(u.positions)) FROM unnest(p.tsv) u)), 1),"
    " ts_filter(setweight(p.tsv, 'D', " ROW_LEXEMES("p.tsv") "), '{d}')::text,"
    " CASE WHEN $4::float8 <> 1 THEN ts_filter(setweight(ts_filter(p.tsv,"
    "  '{b}'), 'D', " ROW_LEXEMES("p.tsv") "), '{d}')::text END"
    " FROM pick p, anyq a"};

/* Joined once, on first use: C's pedantic limit on a string literal is
 * 4095 bytes. */
static char terms_sql[8192];
static pg_stmt terms_stmt = {"eg_terms", terms_sql, 6};

const pg_stmt *pg_terms_stmt(void) {
  if (!terms_sql[0]) {
    size_t len = 0;
    for (size_t i = 0; i < sizeof terms_parts / sizeof terms_parts[0]; i++) {
      size_t n = strlen(terms_parts[i]);
      if (len + n >= sizeof terms_sql)
        abort(); /* a fixed text that outgrew its buffer: a build error */
      memcpy(terms_sql + len, terms_parts[i], n);
      len += n;
    }
    terms_sql[len] = '\0';
  }
  return &terms_stmt;
}

/* ------------------------------------------------------------- scoring */

/* A query lexeme (a row of kind 0). */
typedef struct term {
  const char *lex; /* in the result */
  size_t len;
  int prefix;  /* a cut word's: matches the lexemes it starts */
  int sampled; /* every row that has it is scored: n is counted here */
  double n;    /* rows that have it (counted, estimated or counted here) */
  double idf;
} term;

/* A row scored, pointing into the result. */
typedef struct scored {
  const char *id;
  double score;
} scored;

enum { KIND, COL_A, COL_B, COL_C, COL_D, COL_E, NCOLS };

static int bad(char *msg, size_t msglen, const char *what) {
  snprintf(msg, msglen, "PostgreSQL answered the lexical step with %s", what);
  return ENGRAM_ECORRUPT;
}

/* The next entry of a tsvector's text form ('lex':1,5 'it''s':2): its
 * lexeme, unescaped into buf (cap bytes; a longer one is cut, and then
 * matches nothing), and its number of positions. 1, 0 at the end, -1 when
 * the text is not that form. */
static int next_entry(const char **pp, char *buf, size_t cap, size_t *len,
                      unsigned *npos) {
  const char *p = *pp;
  while (*p == ' ')
    p++;
  if (*p == '\0')
    return 0;
  if (*p++ != '\'')
    return -1;
  size_t n = 0;
  int cut = 0;
  for (;;) {
    char ch = *p++;
    if (ch == '\0')
      return -1;
    if (ch == '\'') {
      if (*p != '\'')
        break;
      p++;
    } else if (ch == '\\') {
      if (*p == '\0')
        return -1;
      ch = *p++;
    }
    if (n + 1 < cap)
      buf[n++] = ch;
    else
      cut = 1;
  }
  buf[n] = '\0';
  *len = cut ? cap : n; /* a cut lexeme's length matches no term */
  *npos = 0;
  if (*p == ':') {
    p++;
    *npos = 1;
    for (; *p && *p != ' '; p++)
      if (*p == ',')
        (*npos)++;
  }
  *pp = p;
  return 1;
}

/* Adds each entry's positions in text (a reduced tsvector's text form) to
 * tf[t] of every term t it is (or, for a prefix term, starts with). 0, or
 * -1 when text is not that form. */
static int add_positions(const char *text, const term *terms, size_t nterms,
                         double *tf) {
  char lex[2048];
  size_t len;
  unsigned npos;
  int rc;
  while ((rc = next_entry(&text, lex, sizeof lex, &len, &npos)) == 1)
    for (size_t t = 0; t < nterms; t++)
      if (terms[t].prefix ? len >= terms[t].len &&
                                memcmp(lex, terms[t].lex, terms[t].len) == 0
                          : len == terms[t].len &&
                                memcmp(lex, terms[t].lex, len) == 0)
        tf[t] += npos;
  return rc;
}

/* Better first: the higher score, between equal scores the older (the
 * smaller id: ids are UUIDv7, canonical lower-case text). */
static int by_score(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return strcmp(x->id, y->id);
}

/* 1 when the row's type is wanted, 0 when not, -1 when it is no type. */
static int wanted(unsigned types, const char *type) {
  char *end = NULL;
  long t = strtol(type, &end, 10);
  if (end == type || *end != '\0' || t < 0 || t > 31)
    return -1;
  return types == 0 || (types & (1u << t)) != 0;
}

/* The query's terms (rows of kind 0) into terms, N into *N. */
static int read_terms(const PGresult *res, term *terms, double *N, char *msg,
                      size_t msglen) {
  size_t t = 0;
  for (int i = 0; i < PQntuples(res); i++) {
    if (*PQgetvalue(res, i, KIND) != '0')
      continue;
    term *x = &terms[t++];
    const char *flags = PQgetvalue(res, i, COL_D);
    x->lex = PQgetvalue(res, i, COL_B);
    x->len = (size_t)PQgetlength(res, i, COL_B);
    x->prefix = strchr(flags, 'p') != NULL;
    x->sampled = strchr(flags, 'f') != NULL;
    x->n = strtod(PQgetvalue(res, i, COL_C), NULL);
    *N = strtod(PQgetvalue(res, i, COL_E), NULL);
    if (PQgetisnull(res, i, COL_C) || !(x->n >= 0) || !(*N >= 0))
      return bad(msg, msglen, "a word without a count");
  }
  return 0;
}

/* One scored row's term frequencies (tf: all positions, then the metadata
 * ones) and length; *want as wanted(). */
static int read_row(const PGresult *res, int i, const pg_rank_args *a,
                    const term *terms, size_t nterms, double *tf, double *dl,
                    int *want, char *msg, size_t msglen) {
  *want = wanted(a->types, PQgetvalue(res, i, COL_B));
  if (*want < 0 || PQgetlength(res, i, COL_A) != ENGRAM_ID_LEN ||
      PQgetisnull(res, i, COL_C))
    return bad(msg, msglen, "a row without an id, a type or a length");
  *dl = strtod(PQgetvalue(res, i, COL_C), NULL);
  memset(tf, 0, 2 * nterms * sizeof *tf);
  if (add_positions(PQgetvalue(res, i, COL_D), terms, nterms, tf) < 0 ||
      (!PQgetisnull(res, i, COL_E) &&
       add_positions(PQgetvalue(res, i, COL_E), terms, nterms, tf + nterms) <
           0))
    return bad(msg, msglen, "a row's positions in an unknown form");
  return 0;
}

int pg_terms_rank(const PGresult *res, const pg_rank_args *a, pg_hit **out,
                  size_t *nout, char *msg, size_t msglen) {
  *out = NULL;
  *nout = 0;
  if (PQnfields(res) != NCOLS)
    return bad(msg, msglen, "an unexpected number of columns");
  int rows = PQntuples(res);
  size_t nterms = 0, nrows = 0;
  for (int i = 0; i < rows; i++) {
    if (*PQgetvalue(res, i, KIND) == '0')
      nterms++;
    else
      nrows++;
  }
  if (nterms == 0 || nrows == 0)
    return 0;
  term *terms = calloc(nterms, sizeof *terms);
  scored *sc = calloc(nrows, sizeof *sc);
  double *tf = calloc(2 * nterms, sizeof *tf);
  double *df = calloc(nterms, sizeof *df);
  if (!terms || !sc || !tf || !df) {
    free(terms);
    free(sc);
    free(tf);
    free(df);
    snprintf(msg, msglen, "out of memory scoring a hybrid search");
    return ENGRAM_ENOMEM;
  }
  double N = 0, dl_sum = 0, dl;
  int want;
  int status = read_terms(res, terms, &N, msg, msglen);
  /* First pass: the average length and the counts of the sampled terms,
   * over the rows of every type (as the unpruned query's statistics). */
  for (int i = 0; i < rows && status == 0; i++) {
    if (*PQgetvalue(res, i, KIND) == '0')
      continue;
    status = read_row(res, i, a, terms, nterms, tf, &dl, &want, msg, msglen);
    dl_sum += dl;
    for (size_t t = 0; t < nterms; t++)
      df[t] += tf[t] > 0;
  }
  /* Second pass: the scores of the rows of the wanted types, the unpruned
   * query's arithmetic operation for operation. */
  double k1 = a->k1, b = a->b, mw = a->meta_weight;
  double avgdl = fmax(dl_sum / (double)nrows, 1);
  for (size_t t = 0; t < nterms; t++) {
    double n = terms[t].sampled ? df[t] : terms[t].n;
    terms[t].idf = log(1 + (fmax(N - n, 0) + 0.5) / (n + 0.5));
  }
  size_t kept = 0;
  for (int i = 0; i < rows && status == 0; i++) {
    if (*PQgetvalue(res, i, KIND) == '0')
      continue;
    status = read_row(res, i, a, terms, nterms, tf, &dl, &want, msg, msglen);
    if (status != 0 || !want)
      continue;
    double s = 0;
    for (size_t t = 0; t < nterms; t++) {
      if (tf[t] == 0)
        continue;
      double x = tf[t] + (mw - 1) * tf[nterms + t];
      s += terms[t].idf * x * (k1 + 1) / (x + k1 * (1 - b + b * dl / avgdl));
    }
    sc[kept++] = (scored){PQgetvalue(res, i, COL_A), s};
  }
  pg_hit *hits = NULL;
  size_t n = kept < a->limit ? kept : a->limit;
  if (status == 0 && n > 0) {
    qsort(sc, kept, sizeof *sc, by_score);
    if (!(hits = malloc(n * sizeof *hits))) {
      snprintf(msg, msglen, "out of memory scoring a hybrid search");
      status = ENGRAM_ENOMEM;
    }
    for (size_t i = 0; hits && i < n; i++) {
      memcpy(hits[i].id, sc[i].id, ENGRAM_ID_LEN);
      hits[i].id[ENGRAM_ID_LEN] = '\0';
      hits[i].score = sc[i].score;
    }
  }
  free(terms);
  free(sc);
  free(tf);
  free(df);
  if (status == 0) {
    *out = hits;
    *nout = hits ? n : 0;
  }
  return status;
}
