/*
 * lexical_ns.c — one namespace's inverted index (lexical_ns.h): the
 * documents, the id map, the term dictionary with each term's posting
 * list, applying a catch-up page, compaction, and the exact BM25 top k.
 *
 * Documents are numbered in the order they were added; a posting list is
 * in document order because a new document always has the highest number.
 * Each document also keeps the indexes of its terms (doc_terms), so that
 * its death can lower each of its terms' live document frequency. A dead
 * document keeps its postings until compaction, which renumbers the live
 * documents densely in the same order, rewrites every list, drops the
 * terms left without a live posting and shrinks every array; it runs when
 * dead postings and documents outweigh half the live ones, so each change
 * pays for it a constant amortized share.
 *
 * Both hash tables (id to document, text to term) are open addressing
 * with linear probing over indexes plus one (0 is an empty slot), at most
 * half full. The id map loses entries as documents die and shifts the
 * following run back instead of leaving a tombstone (as vector_index_ns.c
 * does); the dictionary only loses terms at compaction, which rebuilds it.
 * Term texts sit one after another, NUL-terminated, in one arena.
 *
 * A term's score bounds (largest tf in content and in metadata, smallest
 * document length over its postings) only widen between compactions, so
 * they stay upper bounds however documents die. The search is MaxScore:
 * the lists sorted by their bound, the longest prefix of them whose bounds
 * add up to less than the k-th best score so far is "non-essential" (a
 * document found only there cannot enter the top k); the essential lists
 * are walked document at a time, the others only probed, by galloping
 * search, while the partial score plus their bounds can still reach the
 * k-th best. The threshold starts from a cheap lower bound of the k-th
 * best score (seed_threshold), so that lists of very common terms can be
 * non-essential from the first document on. The heap of the best k lives
 * in the caller's output array.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search/lexical_ns.h"

/* Dead postings and documents below which compaction never runs: a small
 * namespace would otherwise rewrite itself at every change. */
#define COMPACT_MIN_DEAD 1024u
#define TF_MAX 65535u
/* Bounds are multiplied by this before they are compared with scores: a
 * sum of rounded contributions, taken in another order than the bound's,
 * can differ from it in the last bits, and a document that scores exactly
 * the k-th best (and wins the tie as the newer) must never be pruned. */
#define BOUND_SLACK (1.0 + 1e-9)
#define NO_INDEX UINT32_MAX

typedef struct posting {
  uint32_t doc;
  uint16_t tf_content;
  uint16_t tf_meta;
} posting;

typedef struct term {
  posting *postings; /* live and dead, in document order */
  uint32_t n, cap;
  uint32_t df;   /* postings of live documents */
  uint32_t text; /* offset of its text in the arena */
  uint32_t hash;
  uint32_t min_len; /* bounds over its postings since the last compaction */
  uint16_t max_tf_content, max_tf_meta;
} term;

/* What a search reads of a document: small, so that more of them stay
 * in the cache. */
typedef struct document {
  uint32_t len;
  unsigned char type;
  unsigned char alive;
} document;

/* Where a document's terms' indexes are: doc_terms[first .. + n). */
typedef struct doc_span {
  uint32_t first, n;
} doc_span;

struct lx_data {
  /* Three arrays by document number, of docs_cap room each. */
  document *docs;
  doc_span *spans;
  char (*ids)[ENGRAM_ID_LEN + 1];
  size_t ndocs, docs_cap;
  uint32_t *doc_terms;
  size_t ndoc_terms, doc_terms_cap;
  uint32_t *map; /* id -> live document + 1 */
  size_t map_cap, map_used;
  term *terms;
  size_t nterms, terms_cap;
  uint32_t *dict; /* text -> term + 1; holds every term */
  size_t dict_cap;
  char *text;
  size_t text_len, text_cap;
  size_t postings_cap; /* room of every list together */
  size_t live_docs, dead_docs;
  size_t live_postings, dead_postings;
  uint64_t live_len; /* total length of the live documents */
};

lx_data *lx_data_new(void) {
  return calloc(1, sizeof(lx_data));
}

void lx_data_free(lx_data *d) {
  if (!d)
    return;
  for (size_t t = 0; t < d->nterms; t++)
    free(d->terms[t].postings);
  free(d->docs);
  free(d->spans);
  free(d->ids);
  free(d->doc_terms);
  free(d->map);
  free(d->terms);
  free(d->dict);
  free(d->text);
  free(d);
}

/* ------------------------------------------------------------- arrays */

/* Room for need elements: cap doubled until it fits. 0 when it would
 * overflow a size_t count of bytes. */
static size_t grown(size_t cap, size_t need, size_t elem) {
  size_t c = cap ? cap : 16;
  while (c < need) {
    if (c > SIZE_MAX / 2)
      return 0;
    c *= 2;
  }
  return c > SIZE_MAX / elem ? 0 : c;
}

/* p reallocated to exactly n elements (freed when n is 0); p itself,
 * still valid, when the smaller block cannot be had. */
static void *fit(void *p, size_t n, size_t elem, size_t *cap) {
  if (n == 0) {
    free(p);
    *cap = 0;
    return NULL;
  }
  if (n >= *cap)
    return p;
  void *q = realloc(p, n * elem);
  if (!q)
    return p;
  *cap = n;
  return q;
}

static size_t pow2_at_least(size_t n) {
  size_t c = 64;
  while (c < n)
    c *= 2;
  return c;
}

/* ------------------------------------------------------------ id map */

static size_t id_home(const char *id, size_t cap) {
  return (size_t)core_hash(id, ENGRAM_ID_LEN) & (cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t map_slot(const lx_data *d, const char *id) {
  size_t mask = d->map_cap - 1;
  size_t i = id_home(id, d->map_cap);
  while (d->map[i] && memcmp(d->ids[d->map[i] - 1], id, ENGRAM_ID_LEN) != 0)
    i = (i + 1) & mask;
  return i;
}

/* Every live document into map (cap slots, zeroed, none there yet). */
static void map_fill(lx_data *d, uint32_t *map, size_t cap) {
  size_t mask = cap - 1;
  for (size_t doc = 0; doc < d->ndocs; doc++) {
    if (!d->docs[doc].alive)
      continue;
    size_t i = id_home(d->ids[doc], cap);
    while (map[i])
      i = (i + 1) & mask;
    map[i] = (uint32_t)doc + 1;
  }
}

static int map_reserve(lx_data *d, size_t used) {
  if (used * 2 <= d->map_cap)
    return 0;
  size_t cap = pow2_at_least(used * 2);
  uint32_t *map = calloc(cap, sizeof *map);
  if (!map)
    return ENGRAM_ENOMEM;
  map_fill(d, map, cap);
  free(d->map);
  d->map = map;
  d->map_cap = cap;
  return 0;
}

/* Takes slot i out, shifting back the entries of its run that would no
 * longer be found from their home slot. */
static void map_delete(lx_data *d, size_t i) {
  size_t mask = d->map_cap - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!d->map[j])
      break;
    size_t k = id_home(d->ids[d->map[j] - 1], d->map_cap);
    /* The entry at j may move to i when its home is not in (i, j]. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      d->map[i] = d->map[j];
      i = j;
    }
  }
  d->map[i] = 0;
  d->map_used--;
}

/* -------------------------------------------------------- dictionary */

static uint32_t text_hash(const char *s) {
  return (uint32_t)core_hash(s, strlen(s));
}

/* The dictionary slot of s, or the empty slot where it would go. */
static size_t dict_slot(const lx_data *d, const char *s, uint32_t hash) {
  size_t mask = d->dict_cap - 1;
  size_t i = hash & mask;
  for (;;) {
    uint32_t t = d->dict[i];
    if (!t)
      return i;
    const term *tm = &d->terms[t - 1];
    if (tm->hash == hash && strcmp(d->text + tm->text, s) == 0)
      return i;
    i = (i + 1) & mask;
  }
}

/* The index of term s, or NO_INDEX. */
static uint32_t term_find(const lx_data *d, const char *s) {
  if (!d->dict_cap)
    return NO_INDEX;
  uint32_t t = d->dict[dict_slot(d, s, text_hash(s))];
  return t ? t - 1 : NO_INDEX;
}

/* Terms 0 .. nterms into dict (cap slots, zeroed). */
static void dict_fill(const term *terms, size_t nterms, uint32_t *dict,
                      size_t cap) {
  size_t mask = cap - 1;
  for (size_t t = 0; t < nterms; t++) {
    size_t i = terms[t].hash & mask;
    while (dict[i])
      i = (i + 1) & mask;
    dict[i] = (uint32_t)t + 1;
  }
}

/* The index of term s, added (with no posting) when new; NO_INDEX when
 * out of memory, nothing changed then. */
static uint32_t term_get(lx_data *d, const char *s) {
  uint32_t hash = text_hash(s);
  if (d->dict_cap) {
    uint32_t t = d->dict[dict_slot(d, s, hash)];
    if (t)
      return t - 1;
  }
  if (d->nterms >= NO_INDEX - 1)
    return NO_INDEX;
  if ((d->nterms + 1) * 2 > d->dict_cap) {
    size_t cap = pow2_at_least((d->nterms + 1) * 2);
    uint32_t *dict = calloc(cap, sizeof *dict);
    if (!dict)
      return NO_INDEX;
    dict_fill(d->terms, d->nterms, dict, cap);
    free(d->dict);
    d->dict = dict;
    d->dict_cap = cap;
  }
  if (d->nterms == d->terms_cap) {
    size_t cap = grown(d->terms_cap, d->nterms + 1, sizeof(term));
    term *p = cap ? realloc(d->terms, cap * sizeof *p) : NULL;
    if (!p)
      return NO_INDEX;
    d->terms = p;
    d->terms_cap = cap;
  }
  size_t len = strlen(s) + 1;
  if (d->text_len + len > UINT32_MAX)
    return NO_INDEX;
  if (d->text_len + len > d->text_cap) {
    size_t cap = grown(d->text_cap, d->text_len + len, 1);
    char *p = cap ? realloc(d->text, cap) : NULL;
    if (!p)
      return NO_INDEX;
    d->text = p;
    d->text_cap = cap;
  }
  memcpy(d->text + d->text_len, s, len);
  uint32_t t = (uint32_t)d->nterms++;
  d->terms[t] = (term){
      .text = (uint32_t)d->text_len, .hash = hash, .min_len = UINT32_MAX};
  d->text_len += len;
  d->dict[dict_slot(d, s, hash)] = t + 1;
  return t;
}

/* Room in term t's list for one more posting. */
static int list_reserve(lx_data *d, term *t) {
  if (t->n < t->cap)
    return 0;
  if (t->cap >= NO_INDEX - 1)
    return ENGRAM_ENOMEM;
  /* 1.5 times: most lists are short, and their slack is most of the
   * index's memory beyond the postings themselves. */
  uint32_t cap = t->cap + t->cap / 2 + 2;
  posting *p = realloc(t->postings, (size_t)cap * sizeof *p);
  if (!p)
    return ENGRAM_ENOMEM;
  d->postings_cap += cap - t->cap;
  t->postings = p;
  t->cap = cap;
  return 0;
}

/* --------------------------------------------------------- documents */

static void doc_kill(lx_data *d, uint32_t n) {
  document *x = &d->docs[n];
  doc_span span = d->spans[n];
  x->alive = 0;
  for (uint32_t j = 0; j < span.n; j++)
    d->terms[d->doc_terms[span.first + j]].df--;
  d->live_docs--;
  d->dead_docs++;
  d->live_postings -= span.n;
  d->dead_postings += span.n;
  d->live_len -= x->len;
}

/* Room for one more document in docs, spans and ids. */
static int docs_reserve(lx_data *d) {
  if (d->ndocs < d->docs_cap)
    return 0;
  size_t cap = grown(d->docs_cap, d->ndocs + 1, sizeof *d->ids);
  if (!cap)
    return ENGRAM_ENOMEM;
  /* Each array that did grow keeps its new block: docs_cap, the room all
   * three have, changes once they all did. */
  document *docs = realloc(d->docs, cap * sizeof *docs);
  if (!docs)
    return ENGRAM_ENOMEM;
  d->docs = docs;
  doc_span *spans = realloc(d->spans, cap * sizeof *spans);
  if (!spans)
    return ENGRAM_ENOMEM;
  d->spans = spans;
  char(*ids)[ENGRAM_ID_LEN + 1] = realloc(d->ids, cap * sizeof *ids);
  if (!ids)
    return ENGRAM_ENOMEM;
  d->ids = ids;
  d->docs_cap = cap;
  return 0;
}

static uint16_t tf_clamp(uint32_t tf) {
  return (uint16_t)(tf < TF_MAX ? tf : TF_MAX);
}

/* Row r of page is the memory's live document as it stands (the row came
 * again for another reason: a vector written, metadata the index does not
 * hold): nothing to replace. Replacing would leave dead postings behind,
 * and compactions, for every vector an embedder adds later. */
static int row_unchanged(const lx_data *d, const store_vectors *page,
                         size_t r) {
  if (!d->map_cap)
    return 0;
  size_t slot = map_slot(d, page->ids[r]);
  if (!d->map[slot])
    return 0;
  uint32_t n = d->map[slot] - 1;
  size_t nterms = page->term_start[r + 1] - page->term_start[r];
  const document *x = &d->docs[n];
  if (!x->alive || x->type != page->type[r] || x->len != page->doc_len[r] ||
      d->spans[n].n != nterms)
    return 0;
  const store_term *terms = page->terms + page->term_start[r];
  for (size_t j = 0; j < nterms; j++) {
    uint32_t t = term_find(d, page->term_text + terms[j].text);
    if (t == NO_INDEX)
      return 0;
    const term *tm = &d->terms[t];
    uint32_t lo = 0, hi = tm->n; /* the posting of document n */
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo) / 2;
      if (tm->postings[mid].doc < n)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == tm->n || tm->postings[lo].doc != n ||
        tm->postings[lo].tf_content != tf_clamp(terms[j].tf_content) ||
        tm->postings[lo].tf_meta != tf_clamp(terms[j].tf_meta))
      return 0;
  }
  return 1;
}

/* Row r of page as a new document, replacing the id's old one. Everything
 * that can fail comes before the first change that matters: on failure
 * the data is as it was, but for terms added with no posting (harmless,
 * dropped at the next compaction) and room. */
static int add_row(lx_data *d, const store_vectors *page, size_t r) {
  const store_term *terms = page->terms + page->term_start[r];
  size_t nterms = page->term_start[r + 1] - page->term_start[r];
  if (d->ndocs >= NO_INDEX - 1 || d->ndoc_terms + nterms >= NO_INDEX)
    return ENGRAM_ENOMEM;
  if (docs_reserve(d) != 0)
    return ENGRAM_ENOMEM;
  if (d->ndoc_terms + nterms > d->doc_terms_cap) {
    size_t cap =
        grown(d->doc_terms_cap, d->ndoc_terms + nterms, sizeof(uint32_t));
    uint32_t *p = cap ? realloc(d->doc_terms, cap * sizeof *p) : NULL;
    if (!p)
      return ENGRAM_ENOMEM;
    d->doc_terms = p;
    d->doc_terms_cap = cap;
  }
  if (map_reserve(d, d->map_used + 1) != 0)
    return ENGRAM_ENOMEM;
  /* The new document's term indexes go past the end of doc_terms until
   * they are committed. */
  uint32_t *mine = d->doc_terms + d->ndoc_terms;
  for (size_t j = 0; j < nterms; j++) {
    uint32_t t = term_get(d, page->term_text + terms[j].text);
    if (t == NO_INDEX || list_reserve(d, &d->terms[t]) != 0)
      return ENGRAM_ENOMEM;
    mine[j] = t;
  }

  const char *id = page->ids[r];
  size_t slot = map_slot(d, id);
  if (d->map[slot])
    doc_kill(d, d->map[slot] - 1);
  else
    d->map_used++;
  uint32_t n = (uint32_t)d->ndocs++;
  d->map[slot] = n + 1;
  memcpy(d->ids[n], id, ENGRAM_ID_LEN);
  d->ids[n][ENGRAM_ID_LEN] = '\0';
  uint32_t len = page->doc_len[r];
  uint32_t kept = 0;
  for (size_t j = 0; j < nterms; j++) {
    term *t = &d->terms[mine[j]];
    uint16_t tfc = tf_clamp(terms[j].tf_content);
    uint16_t tfm = tf_clamp(terms[j].tf_meta);
    posting *last = t->n ? &t->postings[t->n - 1] : NULL;
    if (last && last->doc == n) {
      /* The same term twice in a row (a page breaking its promise of
       * distinct terms): one posting, the frequencies added. */
      last->tf_content = tf_clamp((uint32_t)last->tf_content + tfc);
      last->tf_meta = tf_clamp((uint32_t)last->tf_meta + tfm);
      tfc = last->tf_content;
      tfm = last->tf_meta;
    } else {
      t->postings[t->n++] = (posting){n, tfc, tfm};
      t->df++;
      mine[kept++] = mine[j];
    }
    if (tfc > t->max_tf_content)
      t->max_tf_content = tfc;
    if (tfm > t->max_tf_meta)
      t->max_tf_meta = tfm;
    if (len < t->min_len)
      t->min_len = len;
  }
  d->docs[n] = (document){.len = len, .type = page->type[r], .alive = 1};
  d->spans[n] = (doc_span){(uint32_t)d->ndoc_terms, kept};
  d->ndoc_terms += kept;
  d->live_docs++;
  d->live_postings += kept;
  d->live_len += len;
  return 0;
}

/* ------------------------------------------------------- compaction */

static int compaction_due(const lx_data *d) {
  size_t dead = d->dead_postings + d->dead_docs;
  size_t live = d->live_postings + d->live_docs;
  return dead >= COMPACT_MIN_DEAD && dead > live / 2;
}

/* Renumbers the live documents densely (same order), rewrites the lists
 * and drops the terms with no live document. When the scratch it needs
 * cannot be had, nothing changes: the data stays right, only larger. */
static void compact(lx_data *d) {
  size_t live_terms = 0;
  for (size_t t = 0; t < d->nterms; t++)
    live_terms += d->terms[t].df > 0;
  size_t dict_cap = pow2_at_least(live_terms * 2);
  size_t map_cap = pow2_at_least(d->live_docs * 2);
  uint32_t *doc_at = malloc((d->ndocs ? d->ndocs : 1) * sizeof *doc_at);
  uint32_t *term_at = malloc((d->nterms ? d->nterms : 1) * sizeof *term_at);
  uint32_t *dict = calloc(dict_cap, sizeof *dict);
  uint32_t *map = calloc(map_cap, sizeof *map);
  if (!doc_at || !term_at || !dict || !map) {
    free(doc_at);
    free(term_at);
    free(dict);
    free(map);
    return;
  }
  uint32_t nt = 0;
  for (size_t t = 0; t < d->nterms; t++)
    term_at[t] = d->terms[t].df > 0 ? nt++ : NO_INDEX;

  /* Documents and their term lists move down, never up: in place. */
  uint32_t nd = 0;
  size_t w = 0;
  for (size_t i = 0; i < d->ndocs; i++) {
    if (!d->docs[i].alive) {
      doc_at[i] = NO_INDEX;
      continue;
    }
    doc_at[i] = nd;
    doc_span span = d->spans[i];
    for (uint32_t j = 0; j < span.n; j++)
      d->doc_terms[w + j] = term_at[d->doc_terms[span.first + j]];
    d->spans[nd] = (doc_span){(uint32_t)w, span.n};
    w += span.n;
    d->docs[nd] = d->docs[i];
    if (nd != i)
      memcpy(d->ids[nd], d->ids[i], sizeof d->ids[nd]);
    nd++;
  }

  /* Terms, their lists and their texts, also in place. */
  size_t text_len = 0;
  nt = 0;
  for (size_t i = 0; i < d->nterms; i++) {
    term x = d->terms[i];
    if (!x.df) {
      d->postings_cap -= x.cap;
      free(x.postings);
      continue;
    }
    uint32_t kept = 0;
    x.max_tf_content = x.max_tf_meta = 0;
    x.min_len = UINT32_MAX;
    for (uint32_t j = 0; j < x.n; j++) {
      posting p = x.postings[j];
      if (doc_at[p.doc] == NO_INDEX)
        continue;
      p.doc = doc_at[p.doc];
      x.postings[kept++] = p;
      if (p.tf_content > x.max_tf_content)
        x.max_tf_content = p.tf_content;
      if (p.tf_meta > x.max_tf_meta)
        x.max_tf_meta = p.tf_meta;
      if (d->docs[p.doc].len < x.min_len)
        x.min_len = d->docs[p.doc].len;
    }
    x.n = kept;
    size_t cap = x.cap;
    x.postings = fit(x.postings, kept, sizeof(posting), &cap);
    d->postings_cap -= x.cap - cap;
    x.cap = (uint32_t)cap;
    size_t len = strlen(d->text + x.text) + 1;
    memmove(d->text + text_len, d->text + x.text, len);
    x.text = (uint32_t)text_len;
    text_len += len;
    d->terms[nt++] = x;
  }

  d->ndocs = nd;
  d->ndoc_terms = w;
  d->nterms = nt;
  d->text_len = text_len;
  d->dead_docs = d->dead_postings = 0;
  dict_fill(d->terms, d->nterms, dict, dict_cap);
  free(d->dict);
  d->dict = dict;
  d->dict_cap = dict_cap;
  map_fill(d, map, map_cap);
  free(d->map);
  d->map = map;
  d->map_cap = map_cap;
  d->map_used = d->live_docs;

  size_t docs_cap = d->docs_cap, spans_cap = d->docs_cap, ids_cap = d->docs_cap;
  d->docs = fit(d->docs, nd, sizeof *d->docs, &docs_cap);
  d->spans = fit(d->spans, nd, sizeof *d->spans, &spans_cap);
  d->ids = fit(d->ids, nd, sizeof *d->ids, &ids_cap);
  /* All three have at least the smallest room. */
  d->docs_cap = docs_cap < spans_cap ? docs_cap : spans_cap;
  if (ids_cap < d->docs_cap)
    d->docs_cap = ids_cap;
  d->doc_terms = fit(d->doc_terms, w, sizeof(uint32_t), &d->doc_terms_cap);
  d->terms = fit(d->terms, nt, sizeof(term), &d->terms_cap);
  d->text = fit(d->text, text_len, 1, &d->text_cap);
  free(doc_at);
  free(term_at);
}

int lx_data_apply(lx_data *d, const store_vectors *page) {
  if (page->n &&
      (!page->term_start || !page->doc_len || !page->type ||
       (page->term_start[page->n] && (!page->terms || !page->term_text))))
    return ENGRAM_EINVAL;
  for (size_t i = 0; i < page->nremoved; i++) {
    if (!d->map_cap)
      break;
    size_t slot = map_slot(d, page->removed[i]);
    if (d->map[slot]) {
      doc_kill(d, d->map[slot] - 1);
      map_delete(d, slot);
    }
  }
  for (size_t r = 0; r < page->n; r++) {
    int rc = row_unchanged(d, page, r) ? 0 : add_row(d, page, r);
    if (rc != 0)
      return rc;
  }
  if (compaction_due(d))
    compact(d);
  return 0;
}

/* ------------------------------------------------------------ search */

typedef struct cursor {
  const posting *postings;
  uint32_t n, at;
  uint32_t term;
  double weight; /* idf * (k1 + 1) */
  double bound;  /* above any contribution of the list (with slack) */
  double upto;   /* bounds of this list and of every one before it */
  double part;   /* the current document's contribution */
} cursor;

/* The query's parameters as the scoring loops use them. */
typedef struct scorer {
  const document *docs;
  unsigned types;
  double k1, one_minus_b, b_per_avgdl, meta_weight;
} scorer;

static int doc_wanted(const scorer *s, const document *x) {
  return x->alive &&
         (!s->types || (x->type < 32 && ((s->types >> x->type) & 1u)));
}

/* k1 * (1 - b + b * dl / avgdl) of a document. */
static double doc_norm(const scorer *s, const document *x) {
  return s->k1 * (s->one_minus_b + s->b_per_avgdl * x->len);
}

/* What a posting adds to its document's score (0 for tf 0: with k1 0 the
 * formula would divide 0 by 0). */
static double contribution(const scorer *s, const cursor *c, const posting *p,
                           double norm) {
  double tf = p->tf_content + s->meta_weight * p->tf_meta;
  return tf > 0 ? c->weight * tf / (tf + norm) : 0;
}

/* The first position from at on whose document is >= doc: a few steps,
 * then galloping and binary search; the probes of the non-essential
 * lists. */
static uint32_t seek(const posting *p, uint32_t n, uint32_t at, uint32_t doc) {
  /* The next few first, one after another: probes of a list of most
   * documents mostly land there. */
  uint32_t near = n - at < 8 ? n : at + 8;
  for (; at < near; at++)
    if (p[at].doc >= doc)
      return at;
  if (at >= n)
    return n;
  /* p[lo].doc < doc throughout; hi is n or p[hi].doc >= doc. */
  size_t lo = at - 1, step = 1;
  while (step < n - lo && p[lo + step].doc < doc) {
    lo += step;
    step *= 2;
  }
  size_t hi = step < n - lo ? lo + step : n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (p[mid].doc < doc)
      lo = mid;
    else
      hi = mid;
  }
  return (uint32_t)hi;
}

/* a ranks below b: a lower score, or the same score and older. */
static int ranks_below(lx_hit a, lx_hit b) {
  return a.score < b.score || (a.score == b.score && a.doc < b.doc);
}

/* Min-heap of hits, the lowest ranked at the root. */
static void heap_down(lx_hit *h, size_t n, size_t i) {
  lx_hit x = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && ranks_below(h[c + 1], h[c]))
      c++;
    if (!ranks_below(h[c], x))
      break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

/* Adds hit to the heap of the best k (*n of them so far); 1 when it
 * entered. */
static int heap_offer(lx_hit *h, size_t *n, size_t k, lx_hit hit) {
  if (*n == k) {
    if (!ranks_below(h[0], hit))
      return 0;
    h[0] = hit;
    heap_down(h, k, 0);
    return 1;
  }
  size_t i = (*n)++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!ranks_below(hit, h[parent]))
      break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = hit;
  return 1;
}

/* The query's known terms, each once, with weights and bounds, in order
 * of their bound; returns how many. cursors has room for q->nterms. */
static size_t cursors_setup(const lx_data *d, const lx_query *q,
                            cursor *cursors) {
  double ndocs = (double)d->live_docs;
  double avgdl = d->live_len ? (double)d->live_len / ndocs : 1.0;
  size_t m = 0;
  for (size_t i = 0; i < q->nterms; i++) {
    if (!q->terms[i])
      continue;
    uint32_t t = term_find(d, q->terms[i]);
    if (t == NO_INDEX || d->terms[t].df == 0)
      continue;
    size_t seen = 0;
    while (seen < m && cursors[seen].term != t)
      seen++;
    if (seen < m)
      continue;
    const term *tm = &d->terms[t];
    double df = (double)tm->df;
    double idf = log(1.0 + (ndocs - df + 0.5) / (df + 0.5));
    double weight = idf * (q->k1 + 1.0);
    double tf = tm->max_tf_content + q->meta_weight * tm->max_tf_meta;
    double norm = q->k1 * (1.0 - q->b + q->b * tm->min_len / avgdl);
    double bound = tf > 0 ? weight * tf / (tf + norm) * BOUND_SLACK : 0;
    if (!(bound > 0))
      continue; /* no posting of it can score */
    cursor c = {.postings = tm->postings,
                .n = tm->n,
                .term = t,
                .weight = weight,
                .bound = bound};
    size_t at = m++;
    while (at > 0 && cursors[at - 1].bound > bound) {
      cursors[at] = cursors[at - 1];
      at--;
    }
    cursors[at] = c;
  }
  double upto = 0;
  for (size_t i = 0; i < m; i++)
    cursors[i].upto = upto += cursors[i].bound;
  return m;
}

/* A score the k-th best document is sure to reach, to start pruning with:
 * the k-th best of partial scores, each a document's contributions from
 * the lists of the highest bounds only (as many of them as have 8k + 256
 * postings together, or the start of the highest when even it is longer),
 * which cannot exceed its whole score. 0 when fewer than k documents were
 * seen. out (room for k) is scratch. Without it a query of rare and very
 * common terms walks the common lists until k documents with the rare
 * ones have come by, which may take most of the namespace; with more
 * postings than that, it costs more than it saves (bench_lexical). */
static double seed_threshold(const scorer *s, cursor *c, size_t m, size_t k,
                             lx_hit *out) {
  size_t budget = k < UINT32_MAX / 16 ? 8 * k + 256 : UINT32_MAX / 2;
  size_t first = m, total = 0;
  while (first > 0 && total + c[first - 1].n <= budget)
    total += c[--first].n;
  uint32_t last_end = c[m - 1].n;
  if (first == m) {
    first = m - 1;
    last_end = (uint32_t)budget; /* only the start of that longer list */
  } else if (total < k) {
    return 0;
  }
  size_t nheap = 0;
  for (;;) {
    uint32_t at = UINT32_MAX;
    for (size_t i = first; i < m; i++) {
      uint32_t end = i == m - 1 ? last_end : c[i].n;
      if (c[i].at < end && c[i].postings[c[i].at].doc < at)
        at = c[i].postings[c[i].at].doc;
    }
    if (at == UINT32_MAX)
      break;
    const document *x = &s->docs[at];
    int wanted = doc_wanted(s, x);
    double norm = doc_norm(s, x);
    lx_hit hit = {.doc = at, .score = 0};
    for (size_t i = first; i < m; i++) {
      if (c[i].at < c[i].n && c[i].postings[c[i].at].doc == at) {
        if (wanted)
          hit.score += contribution(s, &c[i], &c[i].postings[c[i].at], norm);
        c[i].at++;
      }
    }
    if (hit.score > 0)
      heap_offer(out, &nheap, k, hit);
  }
  for (size_t i = first; i < m; i++)
    c[i].at = 0;
  /* Lowered a hair: rounding must not lift it above a score it bounds. */
  return nheap == k ? out[0].score * (1.0 - 1e-12) : 0;
}

int lx_data_search(const lx_data *d, const lx_query *q, lx_hit *out,
                   size_t *n) {
  *n = 0;
  if (!d->live_docs || !q->nterms || !q->k)
    return 0;
  cursor local[16];
  cursor *c = local;
  if (q->nterms > sizeof local / sizeof local[0] &&
      !(c = malloc(q->nterms * sizeof *c)))
    return ENGRAM_ENOMEM;
  size_t m = cursors_setup(d, q, c);
  double avgdl = d->live_len ? (double)d->live_len / (double)d->live_docs : 1;
  const scorer s = {.docs = d->docs,
                    .types = q->types,
                    .k1 = q->k1,
                    .one_minus_b = 1.0 - q->b,
                    .b_per_avgdl = q->b / avgdl,
                    .meta_weight = q->meta_weight};
  const size_t k = q->k;
  size_t nhits = 0;
  /* A document below threshold cannot be among the best k: the k-th best
   * score once there are k, a sure lower bound of it before. Lists
   * [0, essential) only are probed. */
  double threshold = m ? seed_threshold(&s, c, m, k, out) : 0;
  size_t essential = 0;
  while (essential < m && c[essential].upto < threshold)
    essential++;

  while (essential < m) {
    uint32_t at = UINT32_MAX;
    for (size_t i = essential; i < m; i++)
      if (c[i].at < c[i].n && c[i].postings[c[i].at].doc < at)
        at = c[i].postings[c[i].at].doc;
    if (at == UINT32_MAX)
      break;
    const document *x = &d->docs[at];
    int wanted = doc_wanted(&s, x);
    double norm = doc_norm(&s, x);
    double sum = 0;
    for (size_t i = essential; i < m; i++) {
      c[i].part = 0;
      if (c[i].at < c[i].n && c[i].postings[c[i].at].doc == at) {
        if (wanted)
          sum += c[i].part =
              contribution(&s, &c[i], &c[i].postings[c[i].at], norm);
        c[i].at++;
      }
    }
    if (!wanted)
      continue;
    /* The non-essential lists, the largest bound first, while what they
     * could add still reaches the threshold (a document that only ties
     * it enters: it is newer than every one in the heap). */
    size_t i = essential;
    while (i > 0 && sum + c[i - 1].upto >= threshold) {
      cursor *ci = &c[--i];
      ci->part = 0;
      ci->at = seek(ci->postings, ci->n, ci->at, at);
      if (ci->at < ci->n && ci->postings[ci->at].doc == at)
        sum += ci->part = contribution(&s, ci, &ci->postings[ci->at], norm);
    }
    if (i > 0 || !(sum > 0))
      continue;
    /* The score in one order for every document, whichever lists were
     * essential when it came: equal documents score exactly equal. */
    lx_hit hit = {.doc = at, .score = 0};
    for (size_t j = 0; j < m; j++)
      hit.score += c[j].part;
    if (hit.score < threshold || !heap_offer(out, &nhits, k, hit))
      continue;
    if (nhits == k) {
      threshold = out[0].score;
      while (essential < m && c[essential].upto < threshold)
        essential++;
    }
  }

  for (size_t left = nhits; left > 1; left--) {
    lx_hit worst = out[0];
    out[0] = out[left - 1];
    out[left - 1] = worst;
    heap_down(out, left - 1, 0);
  }
  *n = nhits;
  if (c != local)
    free(c);
  return 0;
}

/* --------------------------------------------------------- accessors */

const char *lx_data_id(const lx_data *d, uint32_t doc) {
  return d->ids[doc];
}

size_t lx_data_docs(const lx_data *d) {
  return d->live_docs;
}

size_t lx_data_postings(const lx_data *d) {
  return d->live_postings;
}

size_t lx_data_bytes(const lx_data *d) {
  return sizeof *d +
         d->docs_cap * (sizeof *d->docs + sizeof *d->spans + sizeof *d->ids) +
         d->doc_terms_cap * sizeof(uint32_t) + d->map_cap * sizeof(uint32_t) +
         d->terms_cap * sizeof(term) + d->dict_cap * sizeof(uint32_t) +
         d->text_cap + d->postings_cap * sizeof(posting);
}
