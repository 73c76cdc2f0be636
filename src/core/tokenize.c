/*
 * tokenize.c — turns a user's words into search tokens.
 *
 * A token is a run of ASCII letters and digits or of non-ASCII characters
 * (letters of other scripts); everything else — spaces, quotes, operators,
 * control bytes — separates tokens. ASCII is lower-cased; other scripts are
 * left for the backend's own tokenizer to fold. Because no token can hold
 * an ASCII punctuation character, no input can become FTS5 or tsquery
 * syntax, whatever it contains.
 */
#include <string.h>

#include "core/core.h"

#define MAX_TOKEN 64 /* longer runs are cut: no real word is that long */

static int is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c >= 0x80;
}

size_t core_tokenize(const char *text, size_t len, core_token_cb cb,
                     void *data) {
  char buf[MAX_TOKEN + 4];
  size_t count = 0, i = 0;
  while (i < len) {
    while (i < len && !is_word_byte((unsigned char)text[i]))
      i++;
    size_t start = i;
    while (i < len && is_word_byte((unsigned char)text[i]))
      i++;
    if (i == start)
      break;
    size_t n = core_utf8_cut(text + start, i - start, MAX_TOKEN);
    for (size_t k = 0; k < n; k++) {
      char c = text[start + k];
      buf[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    buf[n] = '\0';
    if (n > 0) {
      cb(buf, n, data);
      count++;
    }
  }
  return count;
}

/* Sorted, for bsearch. */
static const char *const stopwords[] = {
    "a",       "about",  "above",   "after",  "again",   "against", "all",
    "am",      "an",     "and",     "any",    "are",     "as",      "at",
    "be",      "because", "been",   "before", "being",   "below",   "between",
    "both",    "but",    "by",      "can",    "could",   "did",     "do",
    "does",    "doing",  "down",    "during", "each",    "few",     "for",
    "from",    "further", "had",    "has",    "have",    "having",  "he",
    "her",     "here",   "hers",    "herself", "him",    "himself", "his",
    "how",     "i",      "if",      "in",     "into",    "is",      "it",
    "its",     "itself", "just",    "me",     "more",    "most",    "my",
    "myself",  "no",     "nor",     "not",    "now",     "of",      "off",
    "on",      "once",   "only",    "or",     "other",   "our",     "ours",
    "ourselves", "out",  "over",    "own",    "s",       "same",    "she",
    "should",  "so",     "some",    "such",   "t",       "than",    "that",
    "the",     "their",  "theirs",  "them",   "themselves", "then", "there",
    "these",   "they",   "this",    "those",  "through", "to",      "too",
    "under",   "until",  "up",      "very",   "was",     "we",      "were",
    "what",    "when",   "where",   "which",  "while",   "who",     "whom",
    "why",     "will",   "with",    "would",  "you",     "your",    "yours",
    "yourself", "yourselves",
};

int core_is_stopword(const char *tok, size_t len) {
  size_t lo = 0, hi = sizeof stopwords / sizeof stopwords[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const char *w = stopwords[mid];
    size_t wl = strlen(w);
    int c = memcmp(tok, w, len < wl ? len : wl);
    if (c == 0)
      c = (len > wl) - (len < wl);
    if (c == 0)
      return 1;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return 0;
}
