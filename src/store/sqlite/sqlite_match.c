/*
 * sqlite_match.c — a user's words as an FTS5 MATCH expression.
 *
 * The expression is built only from core_tokenize tokens, each quoted as
 * an FTS5 string and joined with OR. A token never holds ASCII punctuation
 * (so no quote, no operator, no column filter), which makes the expression
 * a plain disjunction of phrases whatever the user typed; it is bound as a
 * parameter, never spliced into SQL. Inside the quotes FTS5's own
 * tokenizer splits a token the way it split the stored content, so "café"
 * finds "cafe" and "foo—bar" finds the phrase "foo bar".
 *
 * Which words: core_search_words (src/core/search_words.c), the policy
 * both backends share — stop words dropped unless nothing else is left (a
 * token of symbols only, an empty phrase to FTS5, does not count: "😀 or"
 * must still find "or"), at most 256 words, a word the tokenizer may have
 * cut matched as a prefix.
 *
 * sqlite_match_build_ns() ANDs the disjunction, restricted to the word
 * columns, with the namespace's tag (schema v2: "n" and the hex of the
 * namespace's bytes, in the ns_tag column): the index then visits only the
 * namespace's rows. The tag is hex, so it is a token and never syntax.
 *
 * Hybrid search prunes (sqlite_candidates.c): it keeps the words apart
 * (sqlite_words_collect) and ANDs groups of them with
 * sqlite_match_build_groups(), each group a disjunction, for example
 * `tag AND (E) AND (E OR NE)`, the word columns' filter `{content meta} :`
 * on the words that could be a tag term only: the rows
 * that have one of the essential words E; every word is still a phrase of
 * the query, so FTS5 reports where the others occur in those rows and
 * each row gets its whole score.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite/sqlite_internal.h"

typedef struct builder {
  char *buf;
  size_t len, cap;
  size_t tokens;
  int failed;
} builder;

/* Appends n bytes as they are (the expression's own syntax). */
static void add_raw(builder *b, const char *s, size_t n) {
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->buf = p;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}

/* A token as a phrase: `"tok"`, or `"tok"*` when cut (a cut token
 * matches its word as a prefix). */
static void add_phrase(builder *b, const char *tok, size_t len, int cut) {
  add_raw(b, "\"", 1);
  add_raw(b, tok, len);
  add_raw(b, "\"*", cut ? 2 : 1);
}

static void add_token(const char *tok, size_t len, int cut, void *data) {
  builder *b = data;
  if (b->tokens > 0)
    add_raw(b, " OR ", 4);
  add_phrase(b, tok, len, cut);
  b->tokens++;
}

int sqlite_match_build(const char *text, size_t len, char **out,
                       size_t *tokens) {
  builder b = {0};
  core_search_words(text, len, add_token, &b);
  if (b.failed) {
    free(b.buf);
    return ENGRAM_ENOMEM;
  }
  *out = b.buf;
  *tokens = b.tokens;
  return 0;
}

/* The tag and the AND that follows it: `ns_tag : "n<HEX>" AND `. The tag
 * is hex, so it is a token and never syntax. */
static void add_tag(builder *b, const char *ns) {
  static const char hex[] = "0123456789ABCDEF";
  add_raw(b, "ns_tag : \"n", 11);
  for (const unsigned char *p = (const unsigned char *)ns; *p && !b->failed;
       p++) {
    char pair[2] = {hex[*p >> 4], hex[*p & 15]};
    add_raw(b, pair, 2);
  }
  add_raw(b, "\" AND ", 6);
}

/* A group: with no tagged array, `{content meta} : ("a" OR "b")`; else
 * the filter only on the words that need it, `("a" OR {content meta} :
 * "n1f")`. FTS5 checks a filter on every row it visits, reading where
 * each of the phrase's occurrences is: a third of a plain walk of the
 * rows, a tenth of hybrid search's ranked walk at 100,000 memories
 * (bench/search's questions), spent for the rare word that could be a
 * tag. */
static void add_group(builder *b, const sqlite_words *w,
                      const unsigned char *tagged, const size_t *idx,
                      size_t n) {
  static const char filter[] = "{content meta} : ";
  if (!tagged)
    add_raw(b, filter, sizeof filter - 1);
  add_raw(b, "(", 1);
  for (size_t i = 0; i < n; i++) {
    size_t k = idx[i];
    if (i > 0)
      add_raw(b, " OR ", 4);
    if (tagged && tagged[k])
      add_raw(b, filter, sizeof filter - 1);
    add_phrase(b, w->text + w->off[k], w->len[k], w->cut[k]);
  }
  add_raw(b, ")", 1);
}

int sqlite_match_build_groups(const char *ns, const sqlite_words *w,
                              const unsigned char *tagged, const size_t *idx,
                              const size_t *group_len, size_t ngroups,
                              char **out) {
  builder b = {0};
  *out = NULL;
  if (ngroups == 0)
    return 0;
  if (ns)
    add_tag(&b, ns);
  for (size_t g = 0; g < ngroups; idx += group_len[g++]) {
    if (g > 0)
      add_raw(&b, " AND ", 5);
    add_group(&b, w, tagged, idx, group_len[g]);
  }
  if (b.failed) {
    free(b.buf);
    return ENGRAM_ENOMEM;
  }
  *out = b.buf;
  return 0;
}

int sqlite_match_build_ns(const char *ns, const char *text, size_t len,
                          char **out, size_t *tokens) {
  sqlite_words w;
  *out = NULL;
  int rc = sqlite_words_collect(text, len, &w);
  size_t *order = malloc((w.n ? w.n : 1) * sizeof *order);
  if (rc == 0 && !order)
    rc = ENGRAM_ENOMEM;
  if (rc == 0) {
    for (size_t i = 0; i < w.n; i++)
      order[i] = i;
    size_t all = w.n;
    rc = sqlite_match_build_groups(ns, &w, NULL, order, &all, w.n ? 1 : 0, out);
  }
  *tokens = rc == 0 ? w.n : 0;
  free(order);
  sqlite_words_free(&w);
  return rc;
}

/* ------------------------------------------------------------ words */

static void keep_word(const char *tok, size_t len, int cut, void *data) {
  sqlite_words *w = data;
  if (w->failed)
    return;
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 16;
    size_t *off = realloc(w->off, cap * sizeof *off);
    if (off)
      w->off = off;
    size_t *lens = realloc(w->len, cap * sizeof *lens);
    if (lens)
      w->len = lens;
    unsigned char *cuts = realloc(w->cut, cap);
    if (cuts)
      w->cut = cuts;
    if (!off || !lens || !cuts) {
      w->failed = 1;
      return;
    }
    w->cap = cap;
  }
  if (w->used + len + 1 > w->text_cap) {
    size_t cap = w->text_cap ? 2 * w->text_cap : 256;
    while (cap < w->used + len + 1)
      cap *= 2;
    char *text = realloc(w->text, cap);
    if (!text) {
      w->failed = 1;
      return;
    }
    w->text = text;
    w->text_cap = cap;
  }
  memcpy(w->text + w->used, tok, len);
  w->text[w->used + len] = '\0';
  w->off[w->n] = w->used;
  w->len[w->n] = len;
  w->cut[w->n] = (unsigned char)(cut != 0);
  w->used += len + 1;
  w->n++;
}

int sqlite_words_collect(const char *text, size_t len, sqlite_words *out) {
  memset(out, 0, sizeof *out);
  core_search_words(text, len, keep_word, out);
  if (out->failed) {
    sqlite_words_free(out);
    return ENGRAM_ENOMEM;
  }
  return 0;
}

void sqlite_words_free(sqlite_words *w) {
  free(w->text);
  free(w->off);
  free(w->len);
  free(w->cut);
  memset(w, 0, sizeof *w);
}
