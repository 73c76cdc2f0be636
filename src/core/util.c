/*
 * util.c — time, hashing, UTF-8 and JSON checks for the memory model.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "core/core.h"

int64_t core_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t core_hash(const void *p, size_t n) {
  return XXH3_64bits(p, n);
}

/* Length of the well-formed UTF-8 sequence at p (<= n bytes), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80)
    return c == 0 ? 0 : 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    if (c == 0xed)
      hi = 0x9f; /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    if (c == 0xf4)
      hi = 0x8f; /* > U+10FFFF */
  } else
    return 0;
  if (n < len)
    return 0;
  if (p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xbf)
      return 0;
  return len;
}

int core_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    /* Runs of ASCII without NUL, the common case, 8 bytes at a time
     * (memcpy: no alignment assumption). A word with a high bit or a zero
     * byte goes to the byte-wise check. */
    while (n - i >= 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      uint64_t zero = (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
      if ((w & 0x8080808080808080ull) || zero)
        break;
      i += 8;
    }
    if (i == n)
      break;
    size_t k = utf8_seq(p + i, n - i);
    if (k == 0)
      return 0;
    i += k;
  }
  return 1;
}

size_t core_utf8_cut(const char *s, size_t n, size_t max) {
  if (n <= max)
    return n;
  const unsigned char *p = (const unsigned char *)s;
  size_t cut = max;
  while (cut > 0 && (p[cut] & 0xc0u) == 0x80u)
    cut--; /* p[cut] is a continuation byte: the cut would split a char */
  return cut;
}

int core_json_is_object(const char *text, char *err, size_t errlen) {
  json_error_t e;
  json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
  if (!v) {
    if (err)
      snprintf(err, errlen,
               "metadata is not valid JSON (line %d column %d: %s)", e.line,
               e.column, e.text);
    return 0;
  }
  int ok = json_is_object(v);
  if (!ok && err)
    snprintf(err, errlen,
             "metadata must be a JSON object, like {\"k\": \"v\"}");
  json_decref(v);
  return ok;
}

int core_ns_valid(const char *ns) {
  if (!ns)
    return 0;
  size_t n = strlen(ns);
  if (n == 0 || n > CORE_MAX_NS || !core_utf8_valid(ns, n))
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)ns[i] < 0x20 || ns[i] == 0x7f)
      return 0;
  return 1;
}
