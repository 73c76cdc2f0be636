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
 * Stop words are dropped unless nothing else is left. "Else" means a word
 * FTS5 indexes: a token made only of symbols (an emoji, a dash) is an
 * empty phrase to FTS5, and counting it as a word would drop the only
 * stop words that could match ("😀 or" must still find "or"). The test for
 * symbols is deliberately generous: wrongly calling a letter a symbol only
 * keeps stop words in the query.
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

#define MATCH_MAX_TOKENS 256 /* an OR of more words ranks no better */
#define TOKEN_CUT 60         /* core_tokenize may have cut a token this long */

/* Code points FTS5's unicode61 tokenizer treats as separators (or might):
 * punctuation, symbols, combining marks, emoji. */
static int separator_like(uint32_t cp) {
  static const struct {
    uint32_t lo, hi;
  } ranges[] = {
      {0x0080, 0x00BF}, {0x00D7, 0x00D7},   {0x00F7, 0x00F7},
      {0x0300, 0x036F}, {0x2000, 0x2BFF},   {0x2E00, 0x2E7F},
      {0x3000, 0x303F}, {0xFE00, 0xFE6F},   {0xFF00, 0xFF0F},
      {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40},   {0xFF5B, 0xFF65},
      {0xFFF0, 0xFFFF}, {0x1F000, 0x1FBFF}, {0xE0000, 0xE01EF},
  };
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
    if (cp >= ranges[i].lo && cp <= ranges[i].hi)
      return 1;
  return 0;
}

/* 1 when the token (valid UTF-8) has a character FTS5 would index. */
static int has_word_char(const char *tok, size_t len) {
  const unsigned char *p = (const unsigned char *)tok;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    if (c < 0x80) {
      if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z'))
        return 1;
      i++;
      continue;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (i + n > len)
      break;
    uint32_t cp = c & (n == 4 ? 0x07u : n == 3 ? 0x0Fu : 0x1Fu);
    for (size_t k = 1; k < n; k++)
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    if (!separator_like(cp))
      return 1;
    i += n;
  }
  return 0;
}

typedef struct builder {
  char *buf;
  size_t len, cap;
  int keep_stopwords;
  size_t tokens;
  int failed;
} builder;

static void count_word(const char *tok, size_t len, void *data) {
  if (!core_is_stopword(tok, len) && has_word_char(tok, len))
    (*(size_t *)data)++;
}

static void add_token(const char *tok, size_t len, void *data) {
  builder *b = data;
  if (b->failed || b->tokens >= MATCH_MAX_TOKENS)
    return;
  if (!b->keep_stopwords && core_is_stopword(tok, len))
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
  if (len >= TOKEN_CUT)
    b->buf[b->len++] = '*'; /* a cut token matches its word as a prefix */
  b->buf[b->len] = '\0';
  b->tokens++;
}

int sqlite_match_build(const char *text, size_t len, char **out,
                       size_t *tokens) {
  size_t words = 0;
  core_tokenize(text, len, count_word, &words);
  builder b = {.keep_stopwords = words == 0};
  core_tokenize(text, len, add_token, &b);
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
