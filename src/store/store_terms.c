/*
 * store_terms.c — see store_terms.h.
 *
 * Each distinct text is an entry that remembers, besides where its text
 * is, the last row and the last word it was added to (index + 1) and its
 * place in that row's terms: a row's repeated term is then found in one
 * hash lookup, without a set per row.
 */
#include "store/store_terms.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct store_terms_entry {
  uint32_t text; /* offset in b->text */
  uint32_t len;
  uint32_t hash;
  uint32_t row;  /* the last row that has it, + 1 (0: none) */
  uint32_t at;   /* its index in b->terms for that row */
  uint32_t word; /* the last word that has it, + 1 (0: none) */
};

/* Array p (capacity *cap elements of `size` bytes) with room for `need`:
 * p itself, or p grown (the capacity doubled until it fits), or NULL when
 * out of memory (p untouched). */
static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return p;
  size_t n = *cap ? *cap : 16;
  while (n < need)
    n *= 2;
  void *q = realloc(p, n * size);
  if (q)
    *cap = n;
  return q;
}

/* grow() for each type of array: 0, or ENGRAM_ENOMEM (*a untouched). */
static int reserve_u32(uint32_t **a, size_t *cap, size_t need) {
  uint32_t *p = grow(*a, cap, need, sizeof **a);
  if (!p)
    return ENGRAM_ENOMEM;
  *a = p;
  return 0;
}

static int reserve_terms(store_term **a, size_t *cap, size_t need) {
  store_term *p = grow(*a, cap, need, sizeof **a);
  if (!p)
    return ENGRAM_ENOMEM;
  *a = p;
  return 0;
}

static int reserve_text(char **a, size_t *cap, size_t need) {
  char *p = grow(*a, cap, need, 1);
  if (!p)
    return ENGRAM_ENOMEM;
  *a = p;
  return 0;
}

static int reserve_entries(store_terms_entry **a, size_t *cap, size_t need) {
  store_terms_entry *p = grow(*a, cap, need, sizeof **a);
  if (!p)
    return ENGRAM_ENOMEM;
  *a = p;
  return 0;
}

static void slot_put(store_terms *b, uint32_t index) {
  size_t mask = b->nslots - 1;
  size_t i = b->entries[index].hash & mask;
  while (b->slots[i])
    i = (i + 1) & mask;
  b->slots[i] = index + 1;
}

/* The entry of text (interned now if new), or NULL when out of memory. */
static store_terms_entry *intern(store_terms *b, const char *term, size_t len) {
  uint32_t hash = (uint32_t)core_hash(term, len);
  if (b->nslots) {
    size_t mask = b->nslots - 1;
    for (size_t i = hash & mask; b->slots[i]; i = (i + 1) & mask) {
      store_terms_entry *e = &b->entries[b->slots[i] - 1];
      if (e->hash == hash && e->len == len &&
          memcmp(b->text + e->text, term, len) == 0)
        return e;
    }
  }
  /* Offsets and counts are uint32_t in the page. */
  if (len >= UINT32_MAX || b->text_len + len + 1 > UINT32_MAX ||
      b->nentries + 1 >= UINT32_MAX)
    return NULL;
  if (reserve_text(&b->text, &b->text_cap, b->text_len + len + 1) ||
      reserve_entries(&b->entries, &b->entries_cap, b->nentries + 1))
    return NULL;
  if ((b->nentries + 1) * 2 > b->nslots) {
    size_t nslots = b->nslots ? b->nslots * 2 : 256;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
      return NULL;
    free(b->slots);
    b->slots = slots;
    b->nslots = nslots;
    for (size_t i = 0; i < b->nentries; i++)
      slot_put(b, (uint32_t)i);
  }
  store_terms_entry *e = &b->entries[b->nentries];
  *e = (store_terms_entry){
      .text = (uint32_t)b->text_len, .len = (uint32_t)len, .hash = hash};
  memcpy(b->text + b->text_len, term, len);
  b->text[b->text_len + len] = '\0';
  b->text_len += len + 1;
  slot_put(b, (uint32_t)b->nentries++);
  return e;
}

int store_terms_row(store_terms *b) {
  /* term_start keeps room for the closing entry finish writes */
  if (b->nrows + 2 >= UINT32_MAX ||
      reserve_u32(&b->term_start, &b->rows_cap, b->nrows + 2) ||
      reserve_u32(&b->doc_len, &b->len_cap, b->nrows + 1))
    return ENGRAM_ENOMEM;
  b->term_start[b->nrows] = (uint32_t)b->nterms;
  b->doc_len[b->nrows] = 0;
  b->nrows++;
  return 0;
}

int store_terms_add(store_terms *b, const char *term, size_t len,
                    uint32_t tf_content, uint32_t tf_meta) {
  store_terms_entry *e = intern(b, term, len);
  if (!e)
    return ENGRAM_ENOMEM;
  uint32_t row = (uint32_t)b->nrows; /* the current row, + 1 */
  if (e->row == row) {
    b->terms[e->at].tf_content += tf_content;
    b->terms[e->at].tf_meta += tf_meta;
    return 0;
  }
  if (b->nterms + 1 >= UINT32_MAX ||
      reserve_terms(&b->terms, &b->terms_cap, b->nterms + 1))
    return ENGRAM_ENOMEM;
  e->row = row;
  e->at = (uint32_t)b->nterms;
  b->terms[b->nterms++] = (store_term){e->text, tf_content, tf_meta};
  return 0;
}

void store_terms_row_len(store_terms *b, uint32_t doc_len) {
  b->doc_len[b->nrows - 1] = doc_len;
}

int store_terms_word(store_terms *b) {
  if (b->nwords + 2 >= UINT32_MAX ||
      reserve_u32(&b->qterm_start, &b->words_cap, b->nwords + 2))
    return ENGRAM_ENOMEM;
  b->qterm_start[b->nwords++] = (uint32_t)b->nqterms;
  return 0;
}

int store_terms_word_term(store_terms *b, const char *term, size_t len) {
  store_terms_entry *e = intern(b, term, len);
  if (!e)
    return ENGRAM_ENOMEM;
  uint32_t word = (uint32_t)b->nwords; /* the current word, + 1 */
  if (e->word == word)
    return 0;
  if (b->nqterms + 1 >= UINT32_MAX ||
      reserve_u32(&b->qterms, &b->qterms_cap, b->nqterms + 1))
    return ENGRAM_ENOMEM;
  e->word = word;
  b->qterms[b->nqterms++] = e->text;
  return 0;
}

int store_terms_finish(store_terms *b, store_vectors *page) {
  /* Every array is allocated (a page with terms has them all), even
   * empty; term_start and qterm_start have their closing entry. */
  if (reserve_u32(&b->term_start, &b->rows_cap, b->nrows + 1) ||
      reserve_u32(&b->doc_len, &b->len_cap, 1) ||
      reserve_terms(&b->terms, &b->terms_cap, 1) ||
      reserve_text(&b->text, &b->text_cap, 1) ||
      (b->nwords && reserve_u32(&b->qterms, &b->qterms_cap, 1))) {
    store_terms_free(b);
    return ENGRAM_ENOMEM;
  }
  b->term_start[b->nrows] = (uint32_t)b->nterms;
  if (b->nwords)
    b->qterm_start[b->nwords] = (uint32_t)b->nqterms;
  page->term_start = b->term_start;
  page->doc_len = b->doc_len;
  page->terms = b->terms;
  page->term_text = b->text;
  page->term_text_len = b->text_len;
  page->qterm_start = b->nwords ? b->qterm_start : NULL;
  page->qterms = b->nwords ? b->qterms : NULL;
  page->nqterms = b->nwords ? b->nqterms : 0;
  if (b->nwords)
    b->qterm_start = b->qterms = NULL;
  b->term_start = b->doc_len = NULL;
  b->terms = NULL;
  b->text = NULL;
  store_terms_free(b);
  return 0;
}

void store_terms_free(store_terms *b) {
  free(b->term_start);
  free(b->doc_len);
  free(b->terms);
  free(b->text);
  free(b->qterm_start);
  free(b->qterms);
  free(b->entries);
  free(b->slots);
  memset(b, 0, sizeof *b);
}
