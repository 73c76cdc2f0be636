/*
 * store_terms.h — builds the term arrays of a catch-up page (store.h,
 * store_vectors: term_start, terms, doc_len, term_text, qterm_start,
 * qterms), for both backends' vectors operations. The backend feeds it
 * what its full-text index holds, row by row in page order, then the
 * query words' terms word by word; the builder keeps each term's text
 * once per page (rows and words share it), merges a row's repeated term
 * into one entry whose frequencies add up, and keeps a word's terms
 * distinct. Plain data, no I/O; owned by the operation that reads the
 * page until store_terms_finish hands the arrays over.
 */
#ifndef ENGRAM_STORE_TERMS_H
#define ENGRAM_STORE_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct store_terms_entry store_terms_entry;

typedef struct store_terms {
  /* the page's arrays as they grow (store_vectors' meaning) */
  uint32_t *term_start; /* rows + 1 entries once a row started */
  uint32_t *doc_len;
  size_t nrows, rows_cap, len_cap;
  store_term *terms;
  size_t nterms, terms_cap;
  char *text;
  size_t text_len, text_cap;
  uint32_t *qterm_start; /* words + 1 entries once a word started */
  size_t nwords, words_cap;
  uint32_t *qterms;
  size_t nqterms, qterms_cap;
  /* the distinct texts: entries, and a hash set over them (slot = entry
   * index + 1, 0 = empty; at most half full) */
  store_terms_entry *entries;
  size_t nentries, entries_cap;
  uint32_t *slots;
  size_t nslots;
} store_terms;

/* A zeroed builder is empty and ready to use. */

/* Starts the next row of the page (length 0, no term yet). 0 or
 * ENGRAM_ENOMEM. */
int store_terms_row(store_terms *b);
/* Adds occurrences of a term (len bytes, no NUL inside) to the current
 * row (a row must have started). 0, or ENGRAM_ENOMEM (also when the
 * page's texts would pass 4 GiB, which uint32_t offsets cannot reach:
 * read fewer rows a page). */
int store_terms_add(store_terms *b, const char *term, size_t len,
                    uint32_t tf_content, uint32_t tf_meta);
/* Sets the current row's length (store_vectors.doc_len). */
void store_terms_row_len(store_terms *b, uint32_t doc_len);
/* Starts the next query word (no term yet). 0 or ENGRAM_ENOMEM. */
int store_terms_word(store_terms *b);
/* Adds a term of the current word, unless the word has it already. 0 or
 * ENGRAM_ENOMEM. */
int store_terms_word_term(store_terms *b, const char *term, size_t len);
/* Moves the arrays into page (whose term fields are NULL / 0): the row
 * arrays always (allocated, term_start holding rows + 1 entries, even for
 * no row), the query's only when a word was started. b is empty after,
 * whatever the outcome. 0 or ENGRAM_ENOMEM (page left unchanged). */
int store_terms_finish(store_terms *b, store_vectors *page);
/* Frees whatever b holds; b is empty after. */
void store_terms_free(store_terms *b);

#endif
