/*
 * search_words.c — which of a user's words a search looks for, the same
 * for every backend: core_tokenize's tokens without English stop words —
 * unless the text holds nothing else, then the stop words are what was
 * asked — and at most CORE_SEARCH_MAX_WORDS of them (an OR of more ranks
 * no better). A token that is only symbols (punctuation, combining marks,
 * emoji: nothing an index keeps) does not count as a word when deciding
 * whether only stop words are there.
 */
#include <stdint.h>

#include "core/core.h"

/* Code points full-text indexes treat as separators, or might:
 * punctuation, symbols, combining marks, emoji. Generous on purpose: taking
 * a letter for a symbol only keeps stop words in a query. */
static int symbol_code_point(uint32_t cp) {
  static const uint32_t ranges[][2] = {
      {0x0080, 0x00BF}, {0x00D7, 0x00D7},   {0x00F7, 0x00F7},
      {0x0300, 0x036F}, {0x2000, 0x2BFF},   {0x2E00, 0x2E7F},
      {0x3000, 0x303F}, {0xFE00, 0xFE6F},   {0xFF00, 0xFF0F},
      {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40},   {0xFF5B, 0xFF65},
      {0xFFF0, 0xFFFF}, {0x1F000, 0x1FBFF}, {0xE0000, 0xE01EF},
  };
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
    if (cp >= ranges[i][0] && cp <= ranges[i][1])
      return 1;
  return 0;
}

/* 1 when the token (valid UTF-8) holds a character an index keeps. */
static int indexable(const char *tok, size_t len) {
  const unsigned char *p = (const unsigned char *)tok;
  for (size_t i = 0; i < len;) {
    unsigned b = p[i];
    if (b < 0x80) {
      if ((b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') ||
          (b >= 'A' && b <= 'Z'))
        return 1;
      i++;
      continue;
    }
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (i + n > len)
      break;
    uint32_t cp = b & (n == 4 ? 0x07u : n == 3 ? 0x0Fu : 0x1Fu);
    for (size_t k = 1; k < n; k++)
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    if (!symbol_code_point(cp))
      return 1;
    i += n;
  }
  return 0;
}

static void count_word(const char *tok, size_t len, void *data) {
  if (!core_is_stopword(tok, len) && indexable(tok, len))
    (*(size_t *)data)++;
}

typedef struct picker {
  core_search_word_cb cb;
  void *data;
  int keep_stopwords;
  size_t words;
} picker;

static void pick(const char *tok, size_t len, void *data) {
  picker *p = data;
  if (p->words >= CORE_SEARCH_MAX_WORDS)
    return;
  if (!p->keep_stopwords && core_is_stopword(tok, len))
    return;
  p->cb(tok, len, len >= CORE_SEARCH_WORD_CUT, p->data);
  p->words++;
}

size_t core_search_words(const char *text, size_t len, core_search_word_cb cb,
                         void *data) {
  size_t plain = 0;
  core_tokenize(text, len, count_word, &plain);
  picker p = {.cb = cb, .data = data, .keep_stopwords = plain == 0};
  core_tokenize(text, len, pick, &p);
  return p.words;
}
