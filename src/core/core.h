/*
 * core.h — engram's memory model helpers (internal): ids, hashes, time,
 * UTF-8, JSON metadata checks and the query tokenizer. Pure functions with
 * no I/O and no loop; safe on any thread unless stated.
 */
#ifndef ENGRAM_CORE_H
#define ENGRAM_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engram.h"

#define CORE_DEFAULT_MAX_CONTENT 65536u
#define CORE_DEFAULT_IMPORTANCE 0.5
#define CORE_MAX_NS 256u      /* bytes in a namespace name */
#define CORE_MAX_REL_KIND 64u /* bytes in a relationship kind */
#define CORE_MAX_EMBEDDER_NAME 120u /* bytes in an embedder's name */

/* Milliseconds since the Unix epoch (wall clock). */
int64_t core_now_ms(void);

/* XXH3-64 of the bytes. */
uint64_t core_hash(const void *p, size_t n);

/* 1 when p[0..n) is well-formed UTF-8 (no overlongs, no surrogates, no NUL
 * byte: engram text is NUL-terminated), else 0. */
int core_utf8_valid(const char *p, size_t n);

/* A node in one allocation (engram_node_free releases it): view's fields,
 * its strings copied (ns, content_len bytes of content, metadata, and the
 * embedder's name when there is an embedding; as engram_node_copy), and
 * room for view->embedding_dim floats, copied from the bytes at vector
 * (any alignment) or, vector NULL, left for the caller to write at
 * n->embedding. view->embedding is not read. NULL when out of memory. */
engram_node *core_node_pack(const engram_node *view, const void *vector);

/* A stored vector's size checked against its recorded dimension: *dim is
 * set to 0 when there are no bytes; ENGRAM_ECORRUPT, with a message naming
 * memory id, when they disagree or dim is out of range. */
int core_node_vector_check(const char *id, size_t bytes, int64_t *dim,
                           char *msg, size_t msglen);
/* The largest length <= max that ends on a character boundary of p[0..n). */
size_t core_utf8_cut(const char *p, size_t n, size_t max);

/* 1 when text is a JSON object, else 0 (and a reason in err). */
int core_json_is_object(const char *text, char *err, size_t errlen);

/* Namespace names: 1..CORE_MAX_NS bytes of valid UTF-8 without control
 * characters. */
int core_ns_valid(const char *ns);

/* Tokenizer for search input: splits text into words (runs of ASCII letters
 * and digits, and of non-ASCII characters), lower-cases ASCII, and calls
 * cb for each. Whatever the input, tokens contain no ASCII punctuation or
 * space, so they can never form query syntax. Returns the token count. */
typedef void (*core_token_cb)(const char *tok, size_t len, void *data);
size_t core_tokenize(const char *text, size_t len, core_token_cb cb,
                     void *data);
/* 1 when the lower-case word is an English stop word. */
int core_is_stopword(const char *tok, size_t len);

/* The words a search looks for in text (search_words.c): the tokens
 * without stop words, or with them when nothing else is there; at most
 * CORE_SEARCH_MAX_WORDS. cut is 1 for a token CORE_SEARCH_WORD_CUT bytes or
 * longer, which core_tokenize may have cut: match it as a prefix. Returns
 * how many words cb got. */
#define CORE_SEARCH_MAX_WORDS 256
#define CORE_SEARCH_WORD_CUT 60
typedef void (*core_search_word_cb)(const char *word, size_t len, int cut,
                                    void *data);
size_t core_search_words(const char *text, size_t len, core_search_word_cb cb,
                         void *data);

#endif
