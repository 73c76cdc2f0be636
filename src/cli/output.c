/*
 * output.c — how memories are printed: for people (aligned columns, one
 * line per memory, content cut to a readable width) or, with --json, as
 * JSON Lines (one object per memory per line, for programs).
 *
 * The JSON object of a memory is the same everywhere — id, ns, type,
 * content, importance, metadata (an object), created_ms, updated_ms — plus
 * relevance in search results, depth in related, and with OUT_EXPORT the
 * fields that a backup keeps (accessed_ms, content_hash, embedding). Export
 * writes reals with 17 significant digits so they read back identical;
 * other output uses 15, which prints typed numbers as they were typed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Characters of content in one line of a list. */
#define SNIPPET_CHARS 100

const char *out_type(engram_type t) {
  const char *name = engram_type_name(t);
  return name ? name : "?";
}

void out_time(char buf[32], int64_t ms) {
  time_t secs = (time_t)(ms / 1000);
  int milli = (int)(ms % 1000);
  if (milli < 0) {
    milli += 1000;
    secs--;
  }
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) {
    snprintf(buf, 32, "%" PRId64 "ms", ms);
    return;
  }
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", milli);
}

static size_t utf8_len(unsigned char lead) {
  if (lead < 0x80)
    return 1;
  if ((lead & 0xE0) == 0xC0)
    return 2;
  if ((lead & 0xF0) == 0xE0)
    return 3;
  if ((lead & 0xF8) == 0xF0)
    return 4;
  return 1;
}

void out_snippet(char *buf, size_t size, const char *text, size_t len,
                 size_t max_chars) {
  size_t out = 0, chars = 0, i = 0;
  int space = 0;
  /* Skip leading white space: a snippet starts at the first word. */
  while (i < len && (unsigned char)text[i] <= 0x20)
    i++;
  while (i < len) {
    unsigned char ch = (unsigned char)text[i];
    if (ch < 0x20 || ch == 0x7F || ch == ' ') {
      space = 1; /* runs of white space and control characters: one space */
      i++;
      continue;
    }
    size_t n = utf8_len(ch);
    if (i + n > len)
      n = len - i;
    size_t need = (size_t)space + n;
    if (chars + (size_t)space + 1 > max_chars || out + need + 4 > size) {
      /* Too long: end with the ellipsis within max_chars. */
      while (chars + 1 > max_chars && out > 0) {
        do
          out--;
        while (out > 0 && ((unsigned char)buf[out] & 0xC0) == 0x80);
        chars--;
      }
      memcpy(buf + out, "\xE2\x80\xA6", 3);
      out += 3;
      buf[out] = '\0';
      return;
    }
    if (space) {
      buf[out++] = ' ';
      chars++;
      space = 0;
    }
    memcpy(buf + out, text + i, n);
    out += n;
    chars++;
    i += n;
  }
  buf[out] = '\0';
}

json_t *out_node_json(const engram_node *n, unsigned fields) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "id", json_string(n->id));
  json_object_set_new(o, "ns", json_string(n->ns ? n->ns : ""));
  json_object_set_new(o, "type", json_string(out_type(n->type)));
  json_object_set_new(o, "content", json_stringn(n->content, n->content_len));
  json_object_set_new(o, "importance", json_real(n->importance));
  json_t *md = n->metadata ? json_loads(n->metadata, 0, NULL) : NULL;
  if (!md)
    md = n->metadata ? json_string(n->metadata) : json_object();
  json_object_set_new(o, "metadata", md);
  json_object_set_new(o, "created_ms", json_integer(n->created_ms));
  json_object_set_new(o, "updated_ms", json_integer(n->updated_ms));
  if (fields & OUT_RELEVANCE)
    json_object_set_new(o, "relevance", json_real(n->relevance));
  if (fields & OUT_DEPTH)
    json_object_set_new(o, "depth", json_integer(n->depth));
  if (fields & OUT_EXPORT) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, n->content_hash);
    json_object_set_new(o, "accessed_ms", json_integer(n->accessed_ms));
    json_object_set_new(o, "content_hash", json_string(hex));
    if (n->embedding && n->embedding_dim) {
      json_t *e = json_array();
      for (uint32_t i = 0; i < n->embedding_dim; i++)
        json_array_append_new(e, json_real((double)n->embedding[i]));
      json_object_set_new(o, "embedding", e);
      if (n->embedder)
        json_object_set_new(o, "embedder", json_string(n->embedder));
    }
  }
  return o;
}

/* 1 when every real in v reads back identical from 15 digits. */
static int short_enough(const json_t *v) {
  char buf[32];
  size_t i;
  const char *key;
  json_t *item;
  switch (json_typeof(v)) {
  case JSON_REAL:
    snprintf(buf, sizeof buf, "%.15g", json_real_value(v));
    return strtod(buf, NULL) == json_real_value(v);
  case JSON_OBJECT:
    json_object_foreach((json_t *)v, key, item) {
      if (!short_enough(item))
        return 0;
    }
    return 1;
  case JSON_ARRAY:
    json_array_foreach(v, i, item) {
      if (!short_enough(item))
        return 0;
    }
    return 1;
  default:
    return 1;
  }
}

int out_json_line(FILE *f, json_t *obj, int exact) {
  if (!obj)
    return -1;
  /* 17 digits: a double printed this way reads back as the same double;
   * 15 print the numbers people typed as they typed them (0.1, not
   * 0.10000000000000001), so exact output uses 17 only where needed. */
  size_t prec = exact && !short_enough(obj) ? JSON_REAL_PRECISION(17)
                                            : JSON_REAL_PRECISION(15);
  char *s = json_dumps(obj, JSON_COMPACT | prec);
  json_decref(obj);
  if (!s)
    return -1;
  int rc = fputs(s, f) < 0 || fputc('\n', f) == EOF ? -1 : 0;
  free(s);
  return rc;
}

void out_search_line(size_t rank, const engram_node *n) {
  char snip[4 * SNIPPET_CHARS + 4];
  out_snippet(snip, sizeof snip, n->content, n->content_len, SNIPPET_CHARS);
  printf("%3zu  %.3f  %-10s  %s  %s\n", rank, n->relevance, out_type(n->type),
         n->id, snip);
}

void out_list_line(const engram_node *n) {
  char snip[4 * SNIPPET_CHARS + 4];
  out_snippet(snip, sizeof snip, n->content, n->content_len, SNIPPET_CHARS);
  printf("%s  %-10s  %s\n", n->id, out_type(n->type), snip);
}

void out_related_line(const engram_node *n) {
  char snip[4 * SNIPPET_CHARS + 4];
  out_snippet(snip, sizeof snip, n->content, n->content_len, SNIPPET_CHARS);
  printf("%5" PRIu32 "  %-10s  %s  %s\n", n->depth, out_type(n->type), n->id,
         snip);
}

void out_node_block(const engram_node *n) {
  char created[32], updated[32];
  out_time(created, n->created_ms);
  out_time(updated, n->updated_ms);
  printf("id:         %s\n"
         "namespace:  %s\n"
         "type:       %s\n"
         "importance: %.2f\n"
         "created:    %s\n"
         "updated:    %s\n"
         "metadata:   %s\n"
         "content:\n",
         n->id, n->ns ? n->ns : "", out_type(n->type), n->importance, created,
         updated, n->metadata ? n->metadata : "{}");
  /* Indented, line by line, so a multi-line memory stays readable. */
  const char *p = n->content, *end = n->content + n->content_len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    printf("  %.*s\n", (int)len, p);
    p += len + (nl ? 1 : 0);
  }
}
