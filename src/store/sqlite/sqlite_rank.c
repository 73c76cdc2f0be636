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
 * count) are computed once per query and kept as FTS5 auxiliary data.
 */
#include <math.h>
#include <stdlib.h>

#include "store/sqlite/sqlite_internal.h"

#define K1 1.2
#define B 0.75

typedef struct rank_stats {
  int nphrase;
  double avgdl;
  double idf[]; /* per phrase */
} rank_stats;

static int count_row(const Fts5ExtensionApi *api, Fts5Context *fts,
                     void *data) {
  (void)api;
  (void)fts;
  (*(sqlite3_int64 *)data)++;
  return SQLITE_OK;
}

static rank_stats *compute_stats(const Fts5ExtensionApi *api,
                                 Fts5Context *fts, int *rc) {
  int nphrase = api->xPhraseCount(fts);
  rank_stats *st = sqlite3_malloc64(sizeof *st +
                                    (sqlite3_uint64)nphrase * sizeof(double));
  if (!st) {
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  st->nphrase = nphrase;
  sqlite3_int64 nrow = 0, ntoken = 0;
  *rc = api->xRowCount(fts, &nrow);
  if (*rc == SQLITE_OK)
    *rc = api->xColumnTotalSize(fts, -1, &ntoken);
  st->avgdl = nrow > 0 ? (double)ntoken / (double)nrow : 1.0;
  if (st->avgdl <= 0)
    st->avgdl = 1.0;
  for (int i = 0; *rc == SQLITE_OK && i < nphrase; i++) {
    sqlite3_int64 n = 0;
    *rc = api->xQueryPhrase(fts, i, &n, count_row);
    st->idf[i] = log(1.0 + ((double)nrow - (double)n + 0.5) / ((double)n + 0.5));
  }
  if (*rc != SQLITE_OK) {
    sqlite3_free(st);
    return NULL;
  }
  *rc = api->xSetAuxdata(fts, st, sqlite3_free);
  return *rc == SQLITE_OK ? st : NULL;
}

static void engram_rank(const Fts5ExtensionApi *api, Fts5Context *fts,
                        sqlite3_context *ctx, int nval, sqlite3_value **vals) {
  (void)nval;
  (void)vals;
  int rc = SQLITE_OK;
  rank_stats *st = api->xGetAuxdata(fts, 0);
  if (!st && !(st = compute_stats(api, fts, &rc))) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  int dl = 0, ninst = 0;
  rc = api->xColumnSize(fts, -1, &dl);
  if (rc == SQLITE_OK)
    rc = api->xInstCount(fts, &ninst);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  /* Term frequencies per phrase: the instances come sorted by phrase. */
  double score = 0;
  double norm = K1 * (1.0 - B + B * (double)dl / st->avgdl);
  int phrase = -1, tf = 0;
  for (int i = 0; i <= ninst; i++) {
    int p = -1, col, off;
    if (i < ninst && api->xInst(fts, i, &p, &col, &off) != SQLITE_OK)
      break;
    if (p != phrase) {
      if (phrase >= 0 && phrase < st->nphrase)
        score += st->idf[phrase] * tf * (K1 + 1.0) / (tf + norm);
      phrase = p;
      tf = 0;
    }
    tf++;
  }
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
