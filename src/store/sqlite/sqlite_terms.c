/*
 * sqlite_terms.c — a search word as the full-text index sees it: its
 * terms (the word through the index's own tokenizer) and how many rows
 * hold it (the index's vocabulary), on the thread that holds a reader.
 *
 * Hybrid search (sqlite_candidates.c) needs each word's document
 * frequency twice: to choose the rare words that drive the match, and
 * for BM25's idf. Counting a phrase through FTS5 (xQueryPhrase) runs a
 * query over all its rows; here a word's terms are looked up in an
 * fts5vocab table (`temp.engram_vocab`, one per connection), which seeks
 * to the term and counts its list of rows without running a query. That
 * is still a walk of the list (about 25 ns a row: a millisecond for a
 * word in 40,000 rows), so each connection keeps the counts it has looked
 * up, valid until the database changes: `PRAGMA data_version` (read in
 * each search's transaction) moves when another connection commits, and
 * the cache is then emptied. A search after a write pays the walks again;
 * searches between writes pay a hash lookup per word.
 *
 * The index stems: memories_fts is `porter unicode61 remove_diacritics 2`
 * (sqlite_schema.c), and each word goes through that same tokenizer
 * (FTS5's own, found with xFindTokenizer; one instance per connection), so
 * "running" is looked up as "run". Keep the arguments below in step with
 * the schema's tokenize option. The vectors operation splits each row's
 * text with the same instance (sqlite_terms_tokenize), so the terms it
 * reports are the index's own.
 *
 * What a word's count means:
 *   - one term: the rows that hold it in any column; exact, and what
 *     engram_rank's idf uses, but for a term that could also be a
 *     namespace tag ("n" and hex digits: the tag column holds those), for
 *     which FTS5 counts (its column filter leaves the tag column out);
 *   - several terms ("foo—bar" is the phrase "foo bar"): the fewest rows
 *     of any of its terms, an upper bound of the phrase's rows; FTS5
 *     counts the phrase for the idf;
 *   - no term (only symbols): no row;
 *   - a cut word (matched as a prefix, CORE_SEARCH_WORD_CUT bytes or
 *     more): taken as rare (one row) and counted by FTS5 for the idf; a
 *     60-byte prefix is all but unique (if it were not, the search would
 *     rank all its rows, as it did before pruning).
 * The vocabulary leaves out rows whose deletion the index has recorded,
 * as any FTS5 query does (tests/test_search_scale.c compares the scores).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

#define TOKENIZER "porter"
/* a word's terms looked up; more only loosen the bound */
#define MAX_TERMS 16
#define MAX_TERM_LEN                                                           \
  256                    /* bytes; a word with a longer term is counted as     \
                            a cut word is (words are cut at 60 bytes, so       \
                            only case folding could get there) */
#define CACHE_SLOTS 4096 /* power of two; emptied when 3/4 full */

typedef struct cached_term {
  char *term; /* NULL: a free slot */
  size_t len;
  double rows;
} cached_term;

struct sqlite_terms {
  fts5_tokenizer methods;
  Fts5Tokenizer *tok;
  sqlite3_int64 data_version; /* of the counts in the cache */
  size_t cached;
  cached_term cache[CACHE_SLOTS];
};

static void cache_clear(sqlite_terms *t) {
  for (size_t i = 0; i < CACHE_SLOTS && t->cached > 0; i++)
    if (t->cache[i].term) {
      free(t->cache[i].term);
      t->cache[i].term = NULL;
      t->cached--;
    }
  t->cached = 0;
}

void sqlite_terms_free(sqlite_terms *t) {
  if (!t)
    return;
  cache_clear(t);
  if (t->tok)
    t->methods.xDelete(t->tok);
  free(t);
}

static fts5_api *get_fts5_api(sqlite3 *db) {
  fts5_api *api = NULL;
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &stmt, NULL) != SQLITE_OK)
    return NULL;
  sqlite3_bind_pointer(stmt, 1, (void *)&api, "fts5_api_ptr", NULL);
  sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  return api;
}

int sqlite_terms_open(sqlite_reader *rd) {
  if (rd->terms)
    return SQLITE_OK;
  int rc = sqlite3_exec(rd->db,
                        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.engram_vocab"
                        " USING fts5vocab(main, memories_fts, row)",
                        NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return rc;
  fts5_api *api = get_fts5_api(rd->db);
  if (!api)
    return SQLITE_ERROR;
  sqlite_terms *t = calloc(1, sizeof *t);
  if (!t)
    return SQLITE_NOMEM;
  t->data_version = -1;
  void *ctx = NULL;
  static const char *args[] = {"unicode61", "remove_diacritics", "2"};
  rc = api->xFindTokenizer(api, TOKENIZER, &ctx, &t->methods);
  if (rc == SQLITE_OK)
    rc = t->methods.xCreate(ctx, args, 3, &t->tok);
  if (rc != SQLITE_OK) {
    t->tok = NULL;
    sqlite_terms_free(t);
    return rc;
  }
  rd->terms = t;
  return SQLITE_OK;
}

int sqlite_terms_sync(sqlite_reader *rd) {
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(rd, RS_DATA_VERSION, &rc);
  if (!stmt)
    return rc;
  rc = sqlite3_step(stmt);
  sqlite3_int64 version = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_reset(stmt);
  if (rc != SQLITE_ROW)
    return rc;
  if (version != rd->terms->data_version) {
    cache_clear(rd->terms);
    rd->terms->data_version = version;
  }
  return SQLITE_OK;
}

static uint64_t hash_term(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

/* The slot of term: its entry, or the free slot where it would go. */
static cached_term *cache_slot(sqlite_terms *t, const char *term, size_t len) {
  size_t at = (size_t)hash_term(term, len) & (CACHE_SLOTS - 1);
  while (t->cache[at].term &&
         (t->cache[at].len != len || memcmp(t->cache[at].term, term, len) != 0))
    at = (at + 1) & (CACHE_SLOTS - 1);
  return &t->cache[at];
}

/* Rows that hold one index term, from the cache or the vocabulary. */
static int term_rows(sqlite_reader *rd, const char *term, size_t len,
                     double *rows) {
  sqlite_terms *t = rd->terms;
  cached_term *slot = cache_slot(t, term, len);
  if (slot->term) {
    *rows = slot->rows;
    return SQLITE_OK;
  }
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(rd, RS_TERM_DF, &rc);
  if (!stmt)
    return rc;
  sqlite3_bind_text(stmt, 1, term, (int)len, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  *rows = rc == SQLITE_ROW ? sqlite3_column_double(stmt, 0) : 0;
  sqlite3_reset(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return rc;
  if (t->cached + 1 > CACHE_SLOTS / 4 * 3) {
    cache_clear(t);
    slot = cache_slot(t, term, len);
  }
  if ((slot->term = malloc(len))) { /* else: not cached, still counted */
    memcpy(slot->term, term, len);
    slot->len = len;
    slot->rows = *rows;
    t->cached++;
  }
  return SQLITE_OK;
}

int sqlite_terms_tokenize(sqlite_reader *rd, int flags, const char *text,
                          size_t len, void *ctx,
                          int (*cb)(void *ctx, int tflags, const char *token,
                                    int len, int start, int end)) {
  if (len > INT_MAX)
    return SQLITE_TOOBIG;
  return rd->terms->methods.xTokenize(rd->terms->tok, ctx, flags,
                                      text ? text : "", (int)len, cb);
}

typedef struct term_list {
  char term[MAX_TERMS][MAX_TERM_LEN];
  int len[MAX_TERMS];
  int n;
  int too_long; /* a term did not fit: the word's count is unknown */
} term_list;

static int add_term(void *data, int flags, const char *tok, int len, int start,
                    int end) {
  term_list *l = data;
  (void)flags;
  (void)start;
  (void)end;
  if (len > MAX_TERM_LEN)
    l->too_long = 1;
  else if (l->n < MAX_TERMS && len > 0) {
    memcpy(l->term[l->n], tok, (size_t)len);
    l->len[l->n++] = len;
  }
  return SQLITE_OK;
}

/* "n" and hex digits only: a namespace tag could be that term (a tag,
 * "n" and the namespace's hex, stays such a term through the stemmer,
 * whose suffixes and replacements use other letters). */
static int tag_like(const char *t, int len) {
  if (len < 1 || t[0] != 'n')
    return 0;
  for (int i = 1; i < len; i++)
    if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
      return 0;
  return 1;
}

int sqlite_terms_df(sqlite_reader *rd, const char *word, size_t len, int cut,
                    double *select, double *exact, int *tagged) {
  *select = 1; /* a cut word: rare, and counted by FTS5 */
  *exact = -1;
  *tagged = 1; /* unless shown otherwise below */
  if (cut)
    return SQLITE_OK;
  term_list l;
  l.n = 0;
  l.too_long = 0;
  int rc = rd->terms->methods.xTokenize(rd->terms->tok, &l, FTS5_TOKENIZE_QUERY,
                                        word, (int)len, add_term);
  if (rc != SQLITE_OK || l.too_long)
    return rc;
  double fewest = 0;
  for (int i = 0; i < l.n; i++) {
    double rows = 0;
    rc = term_rows(rd, l.term[i], (size_t)l.len[i], &rows);
    if (rc != SQLITE_OK)
      return rc;
    if (i == 0 || rows < fewest)
      fewest = rows;
  }
  *select = fewest;
  *tagged = l.n == 1 && tag_like(l.term[0], l.len[0]);
  *exact = *tagged ? -1 : fewest;
  return SQLITE_OK;
}
