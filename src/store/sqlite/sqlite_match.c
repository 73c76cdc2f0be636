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

static void add_token(const char *tok, size_t len, int cut, void *data) {
  builder *b = data;
  if (b->failed)
    return;
  size_t need = b->len + len + 8; /* ` OR "` + tok + `"*` + NUL */
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need)
      cap *= 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->buf = p;
    b->cap = cap;
  }
  if (b->tokens > 0) {
    memcpy(b->buf + b->len, " OR ", 4);
    b->len += 4;
  }
  b->buf[b->len++] = '"';
  memcpy(b->buf + b->len, tok, len);
  b->len += len;
  b->buf[b->len++] = '"';
  if (cut)
    b->buf[b->len++] = '*'; /* a cut token matches its word as a prefix */
  b->buf[b->len] = '\0';
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

int sqlite_match_build_ns(const char *ns, const char *text, size_t len,
                          char **out, size_t *tokens) {
  char *words = NULL;
  *out = NULL;
  int rc = sqlite_match_build(text, len, &words, tokens);
  if (rc != 0 || !words)
    return rc;
  static const char hex[] = "0123456789ABCDEF";
  static const char head[] = "ns_tag : \"n";
  static const char middle[] = "\" AND {content meta} : (";
  size_t nslen = strlen(ns), wlen = strlen(words);
  size_t cap = sizeof head + 2 * nslen + sizeof middle + wlen + 2;
  char *expr = malloc(cap);
  if (!expr) {
    free(words);
    return ENGRAM_ENOMEM;
  }
  char *p = expr;
  memcpy(p, head, sizeof head - 1);
  p += sizeof head - 1;
  for (size_t i = 0; i < nslen; i++) {
    unsigned char c = (unsigned char)ns[i];
    *p++ = hex[c >> 4];
    *p++ = hex[c & 15];
  }
  memcpy(p, middle, sizeof middle - 1);
  p += sizeof middle - 1;
  memcpy(p, words, wlen);
  p += wlen;
  *p++ = ')';
  *p = '\0';
  free(words);
  *out = expr;
  return 0;
}
