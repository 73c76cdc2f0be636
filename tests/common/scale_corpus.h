/*
 * scale_corpus.h — what the pruning tests share (test_search_scale.c on
 * SQLite, test_pg_candidates.c on PostgreSQL): the generated namespaces'
 * memory i, deterministic, with words of known frequencies; and a handle
 * whose backend store is captured, so that a test calls the store's
 * candidates operation directly.
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

#endif
