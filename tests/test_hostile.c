/*
 * test_hostile.c — search input is data, never syntax. Quotes, FTS5
 * operators (NEAR, AND/OR/NOT, *, ^, -, +, :), column filters, braces,
 * SQL, invalid UTF-8, empty and stop-word-only input, and a seeded fuzz
 * loop of random byte strings: never a crash, never a query error (a
 * search ends with status 0, or is refused with ENGRAM_EUTF8 before any
 * stream exists), and a memory holding such text is found by searching
 * that text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "store_tu.h"
#include "tu.h"

#define NS "hostile"

static const char *const hostile[] = {
    "\"unbalanced quote",
    "\"",
    "\"\"",
    "\"\" OR \"\"",
    "NEAR(alpha beta, 2)",
    "NEAR/3 alpha",
    "alpha NEAR beta",
    "alpha*",
    "*alpha",
    "* * *",
    "^alpha",
    "^",
    "content:alpha",
    "content : alpha",
    "memories_fts:alpha",
    "rank:alpha",
    "{content id}: alpha",
    "{a b}",
    "{",
    "}",
    "-alpha",
    "alpha - beta",
    "- -",
    "alpha + beta",
    "+",
    "(alpha OR beta",
    "alpha)",
    "((((((((((alpha))))))))))",
    "()",
    "alpha AND beta",
    "AND",
    "OR",
    "NOT",
    "NOT alpha",
    "alpha NOT beta",
    "alpha AND OR NOT beta",
    ":",
    "::::",
    "alpha:beta:gamma",
    "'; DROP TABLE memories; --",
    "' OR 1=1 --",
    "\\\"alpha\\\"",
    "alpha\tbeta\ncontent\r:",
    "ALPHA OR NEAR(content:beta*, ^gamma)",
    "\"alpha\" \"beta\" NEAR(\"gamma\" \"delta\")",
    "%_%",
    "$1 ?1 :name @x",
    "\x01\x02\x1f control",
    "日本語:テキスト NEAR(検索)",
    "café-crème: ^naïve* \"smörgåsbord\"",
    "😀 OR 🚀*",
};

static int has_word(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
        (*p >= '0' && *p <= '9'))
      return 1;
  return 0;
}

/* Adds content (deduplicated) and returns its id. */
static void add_text(engram *eg, const char *ns, const char *text, size_t len,
                     char id[ENGRAM_ID_LEN + 1]) {
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = ns,
                  .content = text,
                  .content_len = len,
                  .dedup = 1};
  assert_int_equal(stu_write_ops(eg, &op, 1), 0);
  memcpy(id, op.result_id, ENGRAM_ID_LEN + 1);
}

static int search_status(engram *eg, const char *ns, const char *text,
                         size_t len, stu_coll *c) {
  engram_query q = {.ns = ns, .text = text, .text_len = len};
  return stu_search(eg, &q, 1000, c);
}

static void test_syntax_is_data(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hostile-syntax"), NULL);
  char plain[ENGRAM_ID_LEN + 1];
  add_text(eg, NS, "alpha beta gamma delta", 0, plain);
  size_t n = sizeof hostile / sizeof *hostile;
  char(*ids)[ENGRAM_ID_LEN + 1] = calloc(n, sizeof *ids);
  for (size_t i = 0; i < n; i++)
    add_text(eg, NS, hostile[i], 0, ids[i]);

  for (size_t i = 0; i < n; i++) {
    stu_coll c;
    int status = search_status(eg, NS, hostile[i], 0, &c);
    if (status != 0)
      fail_msg("search for [%s] ended with %s", hostile[i],
               engram_errname(status));
    assert_int_equal(c.errors, 0);
    if (has_word(hostile[i]) || strstr(hostile[i], "日本語") ||
        strstr(hostile[i], "café")) {
      if (stu_find(&c, ids[i]) < 0)
        fail_msg("a memory holding [%s] was not found by searching it",
                 hostile[i]);
    }
    /* Words of the plain memory are found whatever surrounds them; an
     * operator is never applied (NOT alpha still finds alpha). */
    if (strstr(hostile[i], "alpha") || strstr(hostile[i], "ALPHA"))
      assert_true(stu_find(&c, plain) >= 0);
    stu_coll_free(&c);
  }
  /* The SQL in the input did nothing. */
  assert_int_equal(tu_count(eg, NS), n + 1);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  free(ids);
  tu_close(eg);
}

static void test_operators_are_not_applied(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hostile-ops"), NULL);
  char a[37], b[37], ab[37];
  add_text(eg, NS, "apples only", 0, a);
  add_text(eg, NS, "bananas only", 0, b);
  add_text(eg, NS, "apples and bananas", 0, ab);
  stu_coll c;
  /* As FTS5 syntax, "apples NOT bananas" would exclude ab and b. As words
   * ("not" a stop word) it finds all three. */
  assert_int_equal(search_status(eg, NS, "apples NOT bananas", 0, &c), 0);
  assert_int_equal(c.n, 3);
  stu_coll_free(&c);
  /* As syntax, AND would require both. */
  assert_int_equal(search_status(eg, NS, "apples AND bananas", 0, &c), 0);
  assert_int_equal(c.n, 3);
  stu_coll_free(&c);
  /* As syntax, a prefix query would match "apples". */
  assert_int_equal(search_status(eg, NS, "app*", 0, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  /* As syntax, a column filter on a missing column is an error. */
  assert_int_equal(search_status(eg, NS, "nosuchcolumn:apples", 0, &c), 0);
  assert_int_equal(c.n, 2);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_invalid_utf8_refused(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hostile-utf8"), NULL);
  static const struct {
    const char *text;
    size_t len;
  } bad[] = {
      {"\xff", 1},
      {"abc\xc3", 4},          /* truncated sequence */
      {"\xc0\xaf", 2},         /* overlong '/' */
      {"\xed\xa0\x80", 3},     /* UTF-16 surrogate */
      {"\xf4\x90\x80\x80", 4}, /* beyond U+10FFFF */
      {"ok \x80 ok", 7},       /* lone continuation byte */
      {"ab\0cd", 5},           /* NUL inside the given length */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    stu_coll c;
    stu_coll_init(&c, eg, 10);
    engram_stream_cbs cbs = stu_cbs(&c);
    engram_query q = {.ns = NS, .text = bad[i].text, .text_len = bad[i].len};
    c.s = NULL;
    assert_int_equal(engram_search(eg, &q, &cbs, &c.s), ENGRAM_EUTF8);
    assert_null(c.s);
    engram_run(eg);
    assert_false(c.done); /* refused: no stream, no callback */
  }
  assert_int_equal(stu_stats(eg).streams_open, 0);
  tu_close(eg);
}

/* The validator reads ASCII 8 bytes at a time: every bad sequence (and a
 * NUL) must be caught at every offset and word alignment, inside runs of
 * ASCII long enough for the fast path on both sides. */
static void test_utf8_every_offset(void **state) {
  (void)state;
  static const struct {
    const char *seq;
    size_t len;
  } bad[] = {{"\xff", 1},
             {"\xc3", 1},
             {"\xc0\xaf", 2},
             {"\xed\xa0\x80", 3},
             {"\xf4\x90\x80\x80", 4},
             {"\x80", 1},
             {"\0", 1}};
  char buf[64];
  memset(buf, 'a', sizeof buf);
  assert_true(core_utf8_valid(buf, sizeof buf));
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    for (size_t at = 0; at + bad[i].len <= 40; at++) {
      memset(buf, 'a', sizeof buf);
      memcpy(buf + at, bad[i].seq, bad[i].len);
      for (size_t start = 0; start < 8 && start <= at; start++)
        assert_false(core_utf8_valid(buf + start, sizeof buf - start));
    }
  /* Good multi-byte characters at every offset stay valid. */
  static const char *const good[] = {"\xc3\xa9", "\xe2\x82\xac",
                                     "\xf0\x9f\x98\x80"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    for (size_t at = 0; at + strlen(good[i]) <= 40; at++) {
      memset(buf, 'a', sizeof buf);
      memcpy(buf + at, good[i], strlen(good[i]));
      assert_true(core_utf8_valid(buf, sizeof buf));
    }
}

static void test_empty_and_stopwords(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hostile-empty"), NULL);
  char id[37];
  add_text(eg, NS, "it is what it is", 0, id);
  stu_coll c;
  const char *nothing[] = {"", " ", "\t\n", "...", "\"\" \"\"", "-+*^:(){}"};
  for (size_t i = 0; i < sizeof nothing / sizeof *nothing; i++) {
    assert_int_equal(search_status(eg, NS, nothing[i], 0, &c), 0);
    assert_int_equal(c.n, 0);
    stu_coll_free(&c);
  }
  assert_int_equal(search_status(eg, NS, "What is it?", 0, &c), 0);
  assert_int_equal(c.n, 1);
  stu_coll_free(&c);
  assert_int_equal(search_status(eg, NS, "THE AND OR NOT", 0, &c), 0);
  assert_int_equal(c.n, 0);
  stu_coll_free(&c);
  tu_close(eg);
}

static void test_long_input(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("hostile-long"), NULL);
  char id[37];
  /* One word far longer than a search token, and many words. */
  char word[200];
  memset(word, 'x', sizeof word - 1);
  word[sizeof word - 1] = '\0';
  add_text(eg, NS, word, 0, id);
  stu_coll c;
  assert_int_equal(search_status(eg, NS, word, 0, &c), 0);
  assert_true(stu_find(&c, id) >= 0);
  stu_coll_free(&c);

  size_t len = 60000;
  char *text = malloc(len + 1);
  for (size_t i = 0; i < len; i++)
    text[i] = (i % 7 == 6) ? ' ' : (char)('a' + (i * 31 / 7) % 26);
  memcpy(text + len - 12, " xxxxxxxxxx ", 12);
  text[len] = '\0';
  assert_int_equal(search_status(eg, NS, text, len, &c), 0);
  stu_coll_free(&c);
  /* Thousands of operators in a row. */
  for (size_t i = 0; i < len; i++)
    text[i] = "()\"*^:-+ NEAR AND OR NOT {}"[i % 27];
  assert_int_equal(search_status(eg, NS, text, len, &c), 0);
  stu_coll_free(&c);
  free(text);
  tu_close(eg);
}

/* ------------------------------------------------------------------ fuzz */

static uint64_t rng_state;

static uint64_t rng(void) {
  /* xorshift64*: deterministic for a seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

static const char *const pieces[] = {
    "\"", "*",  "^",  ":",    "-",      "+",   "(",  ")",   "{",        "}",
    " ",  "  ", "\t", "NEAR", "NEAR/2", "AND", "OR", "NOT", "content:", "rank",
    "'",  ";",  "\\", ",",    ".",      "/",   "%",  "_",
};
static const char *const letters[] = {
    "é", "日本", "ß", "Ω", "ñ", "ü", "ж", "e\xcc\x81" /* e + combining */,
};
static const char *const symbols[] = {"😀", "—", "“", "”", "\xc2\xa0", "€"};

/* A random string; *words tells whether it holds a searchable word. */
static size_t fuzz_string(char *out, size_t cap, int *words) {
  size_t len = 0;
  size_t parts = (size_t)(rng() % 12);
  *words = 0;
  for (size_t i = 0; i < parts; i++) {
    const char *add = NULL;
    char tmp[16];
    unsigned kind = (unsigned)(rng() % 10);
    if (kind < 3) {
      size_t n = 1 + (size_t)(rng() % 8);
      for (size_t k = 0; k < n; k++) {
        unsigned r = (unsigned)(rng() % 36);
        tmp[k] = (char)(r < 26 ? 'a' + r : '0' + (r - 26));
        if (rng() % 5 == 0 && r < 26)
          tmp[k] = (char)(tmp[k] - 'a' + 'A');
      }
      tmp[n] = '\0';
      add = tmp;
      *words = 1;
    } else if (kind < 6) {
      add = pieces[rng() % (sizeof pieces / sizeof *pieces)];
    } else if (kind < 7) {
      add = letters[rng() % (sizeof letters / sizeof *letters)];
      *words = 1;
    } else if (kind < 8) {
      add = symbols[rng() % (sizeof symbols / sizeof *symbols)];
    } else {
      /* raw bytes, usually making the string invalid UTF-8 */
      size_t n = 1 + (size_t)(rng() % 3);
      for (size_t k = 0; k < n; k++)
        tmp[k] = (char)(1 + rng() % 255);
      tmp[n] = '\0';
      add = tmp;
    }
    size_t n = strlen(add);
    if (len + n >= cap)
      break;
    memcpy(out + len, add, n);
    len += n;
  }
  out[len] = '\0';
  return len;
}

static void test_fuzz(void **state) {
  (void)state;
  engram_options o;
  engram_options_init(&o);
  o.chunk_rows = 16;
  engram *eg = tu_open(tu_db_path("hostile-fuzz"), &o);
  rng_state = 0x9e3779b97f4a7c15ull;
  size_t valid = 0, invalid = 0, stored = 0;
  for (int i = 0; i < 3000; i++) {
    char text[256];
    int words;
    size_t len = fuzz_string(text, sizeof text, &words);
    int ok = core_utf8_valid(text, len);
    char id[ENGRAM_ID_LEN + 1] = "";
    /* Every tenth valid string with a word is stored first, and must then
     * be found by searching that same text. */
    int store = ok && words && len > 0 && i % 10 == 0;
    if (store) {
      add_text(eg, NS, text, len, id);
      stored++;
    }
    stu_coll c;
    int rc = search_status(eg, NS, text, len, &c);
    if (!ok) {
      assert_int_equal(rc, ENGRAM_EUTF8);
      invalid++;
      continue;
    }
    valid++;
    if (rc != 0)
      fail_msg("fuzz case %d [%s] ended with %s", i, text, engram_errname(rc));
    assert_int_equal(c.errors, 0);
    if (store && stu_find(&c, id) < 0)
      fail_msg("fuzz case %d: memory [%s] not found by searching it", i, text);
    for (size_t k = 0; k < c.n; k++)
      assert_true(c.nodes[k]->relevance >= 0 && c.nodes[k]->relevance < 1);
    stu_coll_free(&c);
  }
  /* The generator exercised both sides. */
  assert_true(valid > 1000 && invalid > 300 && stored > 50);
  assert_int_equal(stu_stats(eg).queries_running, 0);
  tu_close(eg);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_syntax_is_data),
      cmocka_unit_test(test_operators_are_not_applied),
      cmocka_unit_test(test_invalid_utf8_refused),
      cmocka_unit_test(test_utf8_every_offset),
      cmocka_unit_test(test_empty_and_stopwords),
      cmocka_unit_test(test_long_input),
      cmocka_unit_test(test_fuzz),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
