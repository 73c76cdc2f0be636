/*
 * sqlite_rank.c — engram_rank(), the FTS5 ranking function of searches.
 *
 * It is BM25 (k1 = 1.2, b = 0.75) like FTS5's built-in bm25(), with one
 * difference that matters for memory: the inverse document frequency is
 * Lucene's ln(1 + (N - n + 0.5) / (n + 0.5)), which stays positive, where
 * bm25() uses ln((N - n + 0.5) / (n + 0.5)) and clamps it to 1e-6 once a
 * word is in half the rows. With bm25(), every hit of a word found in most
 * of a small namespace scored ~0 — relevance 0.000 for a memory that is
 * plainly relevant, and no usable minimum-relevance threshold. Ranking
 * order for rare words is unchanged.
 *
 * Like bm25(), it returns the negated score (FTS5 sorts rank ascending).
 * Per-query statistics (row count, average length, each phrase's document
 * count) are computed once per query and kept as FTS5 auxiliary data. A
 * phrase's document count comes from the caller when it knows it (the
 * dfs argument: hybrid search looks words up in the index's vocabulary,
 * sqlite_terms.c), else from xQueryPhrase, which walks the phrase's whole
 * list of rows: O(rows with the word) per query, the cost that made a
 * frequent word slow at scale.
 *
 * The two columns (content, and the metadata's text values) are one bag of
 * words: one document length, one term frequency, where an occurrence in
 * the metadata counts meta_weight. The third column, the namespace tag, is
 * a filter, never a word: it counts in no length. The query's first
 * `skip` phrases are filters, not scored: the tag (see sqlite_match.c)
 * and, in a pruned hybrid query, the group of rare words every row must
 * have (sqlite_candidates.c).
 *
 * Arguments, all optional: engram_rank(k1, b, meta_weight, skip, dfs,
 * sink); without them SQ_RANK_K1, SQ_RANK_B, 1, 0, NULL and NULL. dfs is a
 * blob of one double per scored phrase (the phrases after the first
 * skip): the number of rows that have it, or -1 where xQueryPhrase must
 * count. A value out of range (k1 < 0, b outside [0, 1], weight < 0, skip
 * negative or beyond the phrases, a dfs blob of another size) is an
 * error of the statement.
 *
 * With a sink (a sixth argument, a pointer bound as SQ_RANK_SINK), it
 * scores no row: it records each row's rowid and term frequencies, and the
 * query's statistics, in the caller's sqlite_rank_sink, and gives NULL.
 * Hybrid search's candidates (sqlite_candidates.c) rank those rows
 * themselves, reading the length only of the rows that can still be among
 * the best: the length is the costly part of a row's score (FTS5 looks it
 * up in its docsize table, a couple of microseconds), the frequencies are
 * already at hand as FTS5 walks the rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

typedef struct rank_stats {
  int nphrase;
  double avgdl;
  double idf[]; /* per phrase, then as many term frequencies (scratch) */
} rank_stats;

static int count_row(const Fts5ExtensionApi *api, Fts5Context *fts,
                     void *data) {
  (void)api;
  (void)fts;
  (*(sqlite3_int64 *)data)++;
  return SQLITE_OK;
}

/* Tokens of the current row (dl) or of the table (total) in the columns
 * that are words: content and meta, not the namespace tag. */
static int words_size(const Fts5ExtensionApi *api, Fts5Context *fts,
                      sqlite3_int64 *out, int total) {
  *out = 0;
  int ncol = api->xColumnCount(fts);
  for (int col = 0; col < ncol && col < 2; col++) {
    int rc;
    sqlite3_int64 n = 0;
    if (total) {
      rc = api->xColumnTotalSize(fts, col, &n);
    } else {
      int size = 0;
      rc = api->xColumnSize(fts, col, &size);
      n = size;
    }
    if (rc != SQLITE_OK)
      return rc;
    *out += n;
  }
  return SQLITE_OK;
}

/* idf from a document count: Lucene's, see above. */
static double idf_of(sqlite3_int64 nrow, double n) {
  return log(1.0 + ((double)nrow - n + 0.5) / (n + 0.5));
}

/* dfs: NULL, or one double per phrase from skip on (checked by the
 * caller; a blob, so read with memcpy: it need not be aligned). */
static rank_stats *compute_stats(const Fts5ExtensionApi *api, Fts5Context *fts,
                                 int skip, const void *dfs, int *rc) {
  int nphrase = api->xPhraseCount(fts);
  rank_stats *st = sqlite3_malloc64(sizeof *st + 2 * (sqlite3_uint64)nphrase *
                                                     sizeof(double));
  if (!st) {
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  st->nphrase = nphrase;
  sqlite3_int64 nrow = 0, ntoken = 0;
  *rc = api->xRowCount(fts, &nrow);
  if (*rc == SQLITE_OK)
    *rc = words_size(api, fts, &ntoken, 1);
  st->avgdl = nrow > 0 ? (double)ntoken / (double)nrow : 1.0;
  if (st->avgdl <= 0)
    st->avgdl = 1.0;
  for (int i = 0; *rc == SQLITE_OK && i < nphrase; i++) {
    sqlite3_int64 n = 0;
    if (i < skip) { /* a filter (the namespace tag): not scored */
      st->idf[i] = 0;
      continue;
    }
    double df = -1;
    if (dfs)
      memcpy(&df, (const char *)dfs + (size_t)(i - skip) * sizeof df,
             sizeof df);
    if (df >= 0) {
      st->idf[i] = idf_of(nrow, df);
      continue;
    }
    *rc = api->xQueryPhrase(fts, i, &n, count_row);
    st->idf[i] = idf_of(nrow, (double)n);
  }
  if (*rc != SQLITE_OK) {
    sqlite3_free(st);
    return NULL;
  }
  *rc = api->xSetAuxdata(fts, st, sqlite3_free);
  return *rc == SQLITE_OK ? st : NULL;
}

void sqlite_rank_sink_free(sqlite_rank_sink *s) {
  free(s->idf);
  free(s->rowid);
  free(s->tf);
  memset(s, 0, sizeof *s);
}

/* Records the current row (and, at the first, the query's statistics). */
static int sink_add(sqlite_rank_sink *s, const Fts5ExtensionApi *api,
                    Fts5Context *fts, const rank_stats *st, int skip,
                    const double *tf) {
  size_t m = (size_t)(st->nphrase - skip);
  if (!s->ready) {
    if (m > 0 && !(s->idf = malloc(m * sizeof *s->idf)))
      return SQLITE_NOMEM;
    memcpy(s->idf, st->idf + skip, m * sizeof *s->idf);
    s->nscored = m;
    s->avgdl = st->avgdl;
    s->ready = 1;
  }
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    sqlite3_int64 *rowid = realloc(s->rowid, cap * sizeof *rowid);
    if (rowid)
      s->rowid = rowid;
    double *tfs = m ? realloc(s->tf, cap * m * sizeof *tfs) : s->tf;
    if (tfs)
      s->tf = tfs;
    if (!rowid || (m && !tfs))
      return SQLITE_NOMEM;
    s->cap = cap;
  }
  s->rowid[s->n] = api->xRowid(fts);
  if (m)
    memcpy(s->tf + s->n * m, tf + skip, m * sizeof *tf);
  s->n++;
  return SQLITE_OK;
}

/* The nth argument as a number, or fallback when it is absent. */
static double arg_or(int nval, sqlite3_value **vals, int n, double fallback) {
  if (n >= nval || sqlite3_value_type(vals[n]) == SQLITE_NULL)
    return fallback;
  return sqlite3_value_double(vals[n]);
}

static void engram_rank(const Fts5ExtensionApi *api, Fts5Context *fts,
                        sqlite3_context *ctx, int nval, sqlite3_value **vals) {
  double k1 = arg_or(nval, vals, 0, SQ_RANK_K1);
  double b = arg_or(nval, vals, 1, SQ_RANK_B);
  double meta_weight = arg_or(nval, vals, 2, 1.0);
  double skip = arg_or(nval, vals, 3, 0);
  int nphrase = api->xPhraseCount(fts);
  if (!(k1 >= 0 && k1 <= 100 && b >= 0 && b <= 1 && meta_weight >= 0 &&
        meta_weight <= 100 && skip >= 0 && skip <= nphrase)) {
    sqlite3_result_error(
        ctx, "engram_rank: k1, b, meta_weight or skip out of range", -1);
    return;
  }
  const void *dfs = NULL;
  if (nval > 4 && sqlite3_value_type(vals[4]) != SQLITE_NULL) {
    dfs = sqlite3_value_blob(vals[4]);
    size_t want = (size_t)(nphrase - (int)skip) * sizeof(double);
    if ((size_t)sqlite3_value_bytes(vals[4]) != want || (want > 0 && !dfs)) {
      sqlite3_result_error(
          ctx, "engram_rank: dfs must hold one double per scored phrase", -1);
      return;
    }
  }
  sqlite_rank_sink *sink =
      nval > 5 ? sqlite3_value_pointer(vals[5], SQ_RANK_SINK) : NULL;
  int rc = SQLITE_OK;
  rank_stats *st = api->xGetAuxdata(fts, 0);
  if (!st && !(st = compute_stats(api, fts, (int)skip, dfs, &rc))) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  int ninst = 0;
  rc = api->xInstCount(fts, &ninst);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  /* Term frequencies per phrase, whatever order the instances come in. */
  double *tf = st->idf + st->nphrase;
  for (int p = 0; p < st->nphrase; p++)
    tf[p] = 0;
  for (int i = 0; i < ninst; i++) {
    int p = -1, col = 0, off;
    if (api->xInst(fts, i, &p, &col, &off) != SQLITE_OK)
      break;
    if (p >= 0 && p < st->nphrase && col < 2)
      tf[p] += col == 0 ? 1.0 : meta_weight;
  }
  if (sink) {
    rc = sink_add(sink, api, fts, st, (int)skip, tf);
    if (rc != SQLITE_OK)
      sqlite3_result_error_code(ctx, rc);
    else
      sqlite3_result_null(ctx);
    return;
  }
  sqlite3_int64 dl = 0;
  rc = words_size(api, fts, &dl, 0);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  double score = 0;
  double norm = k1 * (1.0 - b + b * (double)dl / st->avgdl);
  for (int p = 0; p < st->nphrase; p++)
    if (tf[p] > 0)
      score += st->idf[p] * tf[p] * (k1 + 1.0) / (tf[p] + norm);
  sqlite3_result_double(ctx, -score);
}

int sqlite_rank_register(sqlite3 *db) {
  fts5_api *api = NULL;
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &stmt, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_pointer(stmt, 1, (void *)&api, "fts5_api_ptr", NULL);
  sqlite3_step(stmt);
  rc = sqlite3_finalize(stmt);
  if (rc != SQLITE_OK || !api)
    return rc != SQLITE_OK ? rc : SQLITE_ERROR;
  return api->xCreateFunction(api, "engram_rank", NULL, engram_rank, NULL);
}
