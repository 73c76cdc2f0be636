/*
 * scale_corpus.h — what the tests of the store's candidates operation
 * share (test_search_scale.c on SQLite, test_pg_candidates.c on
 * PostgreSQL, test_hybrid.c on both): the generated namespaces' memory i,
 * deterministic, with words of known frequencies; a handle whose backend
 * store is captured, so that a test calls the operation directly; and
 * one call of it, run to its callback.
 */
#ifndef ENGRAM_SCALE_CORPUS_H
#define ENGRAM_SCALE_CORPUS_H

#include <stddef.h>

#include "engram_internal.h"

/* A word long enough to be cut (matched as a prefix). */
#define LONG_WORD                                                              \
  "supercalifragilisticexpialidociouslyextraordinarilylongwordforprefixes"

enum {
  SCALE_SPACES = 1, /* now and then two spaces after a frequent word */
  SCALE_DASH = 2,   /* "café—rare<k>" in ~3% of the rows: a phrase joined
                       by a non-ASCII dash */
};

/* Memory i: frequent words (alpha, beta, gamma in about 40% of the rows
 * each), middling ones (mid0..mid29, ~3% each), rare ones (rare0..rare299,
 * ~0.3% each), a stemmed form now and then, the long word in a few rows,
 * and u<i> so that every content differs; `alt` picks another sequence,
 * flags add the variations above. The text lives in a static buffer until
 * the next call. */
const char *scale_memory(size_t i, int alt, unsigned flags);

/* A handle on db (a path or a conninfo), opened (the test fails if it
 * cannot), its backend store in *captured. */
engram *scale_open_capturing(const char *db, store **captured);

/* How a candidates request ended, as its callback saw it. */
typedef struct scale_cand_wait {
  int calls;
  int status;
  store_candidates *set;
} scale_cand_wait;

/* A store_candidates_req callback recording into req->data (a
 * scale_cand_wait). */
void scale_on_candidates(store_candidates_req *req, int status,
                         const char *message, store_candidates *set);

/* Runs st's candidates operation for q, eg's loop turning until it calls
 * back; the test fails unless the callback comes once, never from inside
 * the start, with status 0. Returns the set (store_candidates_free). */
store_candidates *scale_candidates(engram *eg, store *st,
                                   const store_candidates_query *q);

/* Matches with their scores, best first, for comparing the pruned
 * candidates with a reference that scores every match. */
typedef struct scale_hit {
  char id[ENGRAM_ID_LEN + 1];
  long long rowid; /* the reference's, where it has one; else 0 */
  double score;
} scale_hit;

typedef struct scale_hits {
  scale_hit *v; /* free() it */
  size_t n;
} scale_hits;

/* Sorts best first (ties by id). */
void scale_hits_sort(scale_hits *h);

/* The store's candidates for q (whose window must be 0: matches only),
 * best first. */
scale_hits scale_pruned(engram *eg, store *st, const store_candidates_query *q);

const scale_hit *scale_find(const scale_hits *h, const char *id);

/* Scores equal within 1e-9. */
int scale_near(double a, double b);

/* Every pruned hit is a match of the reference, with its whole score. */
void scale_check_scores(const scale_hits *p, const scale_hits *ref,
                        const char *text);

/* The pruned hits are the reference's best `limit`: as many, at each
 * place the same score, and the same id but where scores tie. */
void scale_check_exact(const scale_hits *p, const scale_hits *ref, size_t limit,
                       const char *text);

#endif
