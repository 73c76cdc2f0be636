/*
 * test_lexical_ns.c — one namespace's inverted index (src/search/
 * lexical_ns.c) against a model of the same namespace kept by the test.
 *
 * Pages (store_vectors, built by hand as the store would hand them over)
 * add, replace and remove documents; the model applies the same changes
 * and scores every live document by the formula of lexical_ns.h, by brute
 * force. Randomized runs (Zipf-drawn terms, many identical documents,
 * enough churn for several compactions) compare the search with that
 * reference over thousands of queries: common, rare, absent and repeated
 * terms, every k from 1 to more than match, k1, b and meta_weight at and
 * between their edges, type filters. A search must give as many hits as
 * match (up to k), each hit's score the reference's at its rank (relative
 * 1e-9) and its own document's, ties broken by the newer document, and of
 * identical documents the newer ones first and always before any older
 * one (exact ties: what a search that prunes on "<=" or lets an equal
 * score lose would get wrong). Also: hand-computed scores, documents
 * without terms, every document removed then added again, counts and
 * memory after churn, term frequencies past 65535, a term twice in a row,
 * a long query, a malformed page, and searches from two threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/lexical_ns.h"
#include "store/store.h"

#define TOL 1e-9
#define MAX_DOC_TERMS 24
#define MAX_QUERY_WORDS 10
#define VOCAB 400

/* ------------------------------------------------------------- random */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static size_t rng_below(size_t n) {
  return (size_t)(rng_next() % n);
}

static double rng_unit(void) {
  return (double)(rng_next() >> 11) * 0x1.0p-53;
}

static double zipf_cdf[VOCAB];

static void zipf_init(void) {
  double sum = 0;
  for (size_t i = 0; i < VOCAB; i++)
    zipf_cdf[i] = sum += 1.0 / pow((double)i + 1.0, 1.0);
  for (size_t i = 0; i < VOCAB; i++)
    zipf_cdf[i] /= sum;
}

/* A vocabulary index, the most frequent first. */
static uint32_t zipf_draw(void) {
  double u = rng_unit();
  size_t lo = 0, hi = VOCAB - 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (zipf_cdf[mid] < u)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (uint32_t)lo;
}

/* ---------------------------------------------------------------- ids */

static void id_of(size_t n, char out[ENGRAM_ID_LEN + 1]) {
  snprintf(out, ENGRAM_ID_LEN + 1, "0190a1b2-0000-7000-8000-%012x",
           (unsigned)n);
}

static size_t id_number(const char *id) {
  return (size_t)strtoull(id + 24, NULL, 16);
}

static void word_of(uint32_t t, char *out, size_t cap) {
  snprintf(out, cap, "w%u", t);
}

/* -------------------------------------------------------------- pages */

/* A page with room for rows rows of at most MAX_DOC_TERMS terms and for
 * nremoved removed ids; each array its own allocation, as
 * store_vectors_free expects. content[i]: the model's content of row i. */
typedef struct page {
  store_vectors *v;
  size_t rows_cap, removed_cap, terms_cap, text_cap;
  uint32_t *content;
} page;

static page page_new(size_t rows, size_t nremoved) {
  page p = {.rows_cap = rows,
            .removed_cap = nremoved,
            .terms_cap = rows * MAX_DOC_TERMS + 1,
            .text_cap = (rows * MAX_DOC_TERMS + 1) * 16};
  p.v = calloc(1, sizeof *p.v);
  assert_non_null(p.v);
  store_vectors *v = p.v;
  v->ids = malloc((rows + 1) * sizeof *v->ids);
  v->seq = malloc((rows + 1) * sizeof *v->seq);
  v->type = malloc(rows + 1);
  v->has_vector = calloc(rows + 1, 1);
  v->removed = malloc((nremoved + 1) * sizeof *v->removed);
  v->term_start = malloc((rows + 1) * sizeof *v->term_start);
  v->terms = malloc(p.terms_cap * sizeof *v->terms);
  v->doc_len = malloc((rows + 1) * sizeof *v->doc_len);
  v->term_text = malloc(p.text_cap);
  p.content = malloc((rows + 1) * sizeof *p.content);
  assert_true(v->ids && v->seq && v->type && v->has_vector && v->removed &&
              v->term_start && v->terms && v->doc_len && v->term_text &&
              p.content);
  v->term_start[0] = 0;
  return p;
}

static void page_free(page *p) {
  store_vectors_free(p->v);
  free(p->content);
}

static void page_remove(page *p, const char *id) {
  assert_true(p->v->nremoved < p->removed_cap);
  memcpy(p->v->removed[p->v->nremoved++], id, ENGRAM_ID_LEN + 1);
}

/* Appends a row: its terms as words, each with its frequencies. */
static void page_row(page *p, const char *id, unsigned type, uint32_t len,
                     size_t nterms, const char *const *words,
                     const uint32_t *tf_content, const uint32_t *tf_meta) {
  store_vectors *v = p->v;
  assert_true(v->n < p->rows_cap);
  size_t r = v->n++;
  memcpy(v->ids[r], id, ENGRAM_ID_LEN + 1);
  v->seq[r] = (int64_t)r + 1;
  v->type[r] = (unsigned char)type;
  v->doc_len[r] = len;
  uint32_t at = v->term_start[r];
  assert_true(at + nterms <= p->terms_cap);
  for (size_t j = 0; j < nterms; j++) {
    size_t len_word = strlen(words[j]) + 1;
    assert_true(v->term_text_len + len_word <= p->text_cap);
    memcpy(v->term_text + v->term_text_len, words[j], len_word);
    v->terms[at + j] = (store_term){.text = (uint32_t)v->term_text_len,
                                    .tf_content = tf_content[j],
                                    .tf_meta = tf_meta[j]};
    v->term_text_len += len_word;
  }
  v->term_start[r + 1] = at + (uint32_t)nterms;
}

/* -------------------------------------------------------------- model */

/* A document's content: distinct vocabulary terms with frequencies. */
typedef struct content {
  uint32_t n, len;
  uint32_t term[MAX_DOC_TERMS], tf_content[MAX_DOC_TERMS],
      tf_meta[MAX_DOC_TERMS];
} content;

typedef struct mdoc {
  int alive;
  unsigned type;
  uint32_t content;
  uint64_t seq; /* when its current document was added */
} mdoc;

typedef struct model {
  mdoc *docs; /* by id number */
  size_t nids, ids_cap;
  content *pool;
  size_t npool, pool_cap;
  uint64_t next_seq;
} model;

static void model_free(model *m) {
  free(m->docs);
  free(m->pool);
  memset(m, 0, sizeof *m);
}

static uint32_t pool_add(model *m, const content *c) {
  if (m->npool == m->pool_cap) {
    m->pool_cap = m->pool_cap ? 2 * m->pool_cap : 256;
    m->pool = realloc(m->pool, m->pool_cap * sizeof *m->pool);
    assert_non_null(m->pool);
  }
  m->pool[m->npool] = *c;
  return (uint32_t)m->npool++;
}

static mdoc *model_doc(model *m, size_t id) {
  if (id >= m->ids_cap) {
    size_t cap = m->ids_cap ? m->ids_cap : 256;
    while (cap <= id)
      cap *= 2;
    m->docs = realloc(m->docs, cap * sizeof *m->docs);
    assert_non_null(m->docs);
    memset(m->docs + m->ids_cap, 0, (cap - m->ids_cap) * sizeof *m->docs);
    m->ids_cap = cap;
  }
  if (id >= m->nids)
    m->nids = id + 1;
  return &m->docs[id];
}

/* Adds a row of content c for id number id to the page. */
static void page_content(page *p, size_t id, unsigned type, const model *m,
                         uint32_t c) {
  const content *ct = &m->pool[c];
  char words[MAX_DOC_TERMS][16];
  const char *w[MAX_DOC_TERMS];
  for (uint32_t j = 0; j < ct->n; j++) {
    word_of(ct->term[j], words[j], sizeof words[j]);
    w[j] = words[j];
  }
  char idt[ENGRAM_ID_LEN + 1];
  id_of(id, idt);
  p->content[p->v->n] = c;
  page_row(p, idt, type, ct->len, ct->n, w, ct->tf_content, ct->tf_meta);
}

/* The page's changes on the model, in the order apply makes them; then
 * applied to d. */
static void apply(lx_data *d, model *m, const page *p) {
  for (size_t i = 0; i < p->v->nremoved; i++) {
    size_t id = id_number(p->v->removed[i]);
    if (id < m->nids)
      m->docs[id].alive = 0;
  }
  for (size_t r = 0; r < p->v->n; r++) {
    mdoc *x = model_doc(m, id_number(p->v->ids[r]));
    x->alive = 1;
    x->type = p->v->type[r];
    x->content = p->content[r];
    x->seq = m->next_seq++;
  }
  assert_int_equal(lx_data_apply(d, p->v), 0);
}

static size_t model_live(const model *m, size_t *postings) {
  size_t n = 0;
  *postings = 0;
  for (size_t i = 0; i < m->nids; i++)
    if (m->docs[i].alive) {
      n++;
      *postings += m->pool[m->docs[i].content].n;
    }
  return n;
}

/* ---------------------------------------------------------- reference */

typedef struct ref {
  double ndocs, avgdl;
  uint32_t df[VOCAB];
  /* Live ids grouped by content, the newest first in each group. */
  uint32_t *by_content;
  size_t *group_start; /* npool + 1 */
} ref;

static const model *sort_model;

static int by_content_then_newest(const void *a, const void *b) {
  const mdoc *x = &sort_model->docs[*(const uint32_t *)a];
  const mdoc *y = &sort_model->docs[*(const uint32_t *)b];
  if (x->content != y->content)
    return x->content < y->content ? -1 : 1;
  return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static void ref_build(ref *st, const model *m) {
  memset(st->df, 0, sizeof st->df);
  double total = 0;
  size_t n = 0;
  st->by_content = malloc((m->nids + 1) * sizeof *st->by_content);
  st->group_start = calloc(m->npool + 1, sizeof *st->group_start);
  assert_true(st->by_content && st->group_start);
  for (size_t i = 0; i < m->nids; i++) {
    const mdoc *x = &m->docs[i];
    if (!x->alive)
      continue;
    const content *c = &m->pool[x->content];
    for (uint32_t j = 0; j < c->n; j++)
      st->df[c->term[j]]++;
    total += c->len;
    st->by_content[n++] = (uint32_t)i;
    st->group_start[x->content + 1]++;
  }
  for (size_t c = 0; c < m->npool; c++)
    st->group_start[c + 1] += st->group_start[c];
  sort_model = m;
  qsort(st->by_content, n, sizeof *st->by_content, by_content_then_newest);
  st->ndocs = (double)n;
  st->avgdl = n && total > 0 ? total / (double)n : 1.0;
}

static void ref_free(ref *st) {
  free(st->by_content);
  free(st->group_start);
}

static double clamp_tf(uint32_t tf) {
  return tf > 65535 ? 65535.0 : (double)tf;
}

/* lexical_ns.h's formula, term by term as written there. */
static double ref_score(const ref *st, const content *c, const uint32_t *q,
                        size_t nq, const lx_query *lq) {
  double score = 0;
  for (size_t i = 0; i < nq; i++) {
    for (uint32_t j = 0; j < c->n; j++) {
      if (c->term[j] != q[i])
        continue;
      double tf = clamp_tf(c->tf_content[j]) +
                  lq->meta_weight * clamp_tf(c->tf_meta[j]);
      double n = st->df[q[i]];
      double idf = log(1.0 + (st->ndocs - n + 0.5) / (n + 0.5));
      if (tf > 0)
        score += idf * tf * (lq->k1 + 1.0) /
                 (tf + lq->k1 * (1.0 - lq->b + lq->b * c->len / st->avgdl));
    }
  }
  return score;
}

typedef struct ref_hit {
  double score;
  uint64_t seq;
  size_t id;
} ref_hit;

static int best_first(const void *a, const void *b) {
  const ref_hit *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static int wanted(unsigned types, unsigned type) {
  return !types || ((types >> type) & 1u);
}

static int close_to(double a, double b) {
  return fabs(a - b) <= TOL * fmax(fabs(a), fabs(b));
}

typedef struct doc_seq {
  uint32_t doc;
  uint64_t seq;
} doc_seq;

static int by_doc(const void *a, const void *b) {
  const doc_seq *x = a, *y = b;
  return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* Vocabulary indexes of the query's words, each once (an absent word,
 * "x...", is none). */
static size_t query_vocab(const lx_query *q, uint32_t *out) {
  size_t n = 0;
  for (size_t i = 0; i < q->nterms; i++) {
    if (q->terms[i][0] != 'w')
      continue;
    uint32_t t = (uint32_t)strtoul(q->terms[i] + 1, NULL, 10);
    size_t j = 0;
    while (j < n && out[j] != t)
      j++;
    if (j == n)
      out[n++] = t;
  }
  return n;
}

static unsigned long g_queries, g_hits;

/* Runs q on d and checks the answer against the model. */
static void check_query(const lx_data *d, const model *m, const ref *st,
                        const lx_query *q) {
  uint32_t qv[MAX_QUERY_WORDS];
  size_t nq = query_vocab(q, qv);
  ref_hit *want = malloc((m->nids + 1) * sizeof *want);
  int *pos = malloc((m->nids + 1) * sizeof *pos);
  lx_hit *got = malloc(q->k * sizeof *got);
  doc_seq *order = malloc((q->k + 1) * sizeof *order);
  assert_true(want && pos && got && order);
  size_t nwant = 0;
  for (size_t i = 0; i < m->nids; i++) {
    pos[i] = -1;
    const mdoc *x = &m->docs[i];
    if (!x->alive || !wanted(q->types, x->type))
      continue;
    double s = ref_score(st, &m->pool[x->content], qv, nq, q);
    if (s > 0)
      want[nwant++] = (ref_hit){s, x->seq, i};
  }
  qsort(want, nwant, sizeof *want, best_first);

  size_t n = 12345;
  assert_int_equal(lx_data_search(d, q, got, &n), 0);
  assert_int_equal(n, nwant < q->k ? nwant : q->k);
  g_queries++;
  g_hits += n;
  for (size_t i = 0; i < n; i++) {
    size_t id = id_number(lx_data_id(d, got[i].doc));
    assert_true(id < m->nids);
    const mdoc *x = &m->docs[id];
    assert_true(x->alive);
    assert_true(wanted(q->types, x->type));
    assert_int_equal(pos[id], -1); /* each memory once */
    pos[id] = (int)i;
    assert_true(got[i].score > 0);
    if (!close_to(got[i].score, want[i].score) ||
        !close_to(got[i].score, ref_score(st, &m->pool[x->content], qv, nq, q)))
      fail_msg("rank %zu: doc %u (id %zu) scores %.17g; reference %.17g at "
               "that rank, %.17g for that document",
               i, got[i].doc, id, got[i].score, want[i].score,
               ref_score(st, &m->pool[x->content], qv, nq, q));
    if (i > 0) {
      assert_true(got[i - 1].score >= got[i].score);
      if (got[i - 1].score == got[i].score)
        assert_true(got[i - 1].doc > got[i].doc); /* the newer first */
    }
    order[i] = (doc_seq){got[i].doc, x->seq};
  }
  /* Document numbers follow the order the documents were added in: the
   * hits are the ids' current documents. */
  qsort(order, n, sizeof *order, by_doc);
  for (size_t i = 1; i < n; i++)
    assert_true(order[i - 1].seq < order[i].seq);
  /* Of identical documents, every newer one ranks before an older one. */
  for (size_t i = 0; i < n; i++) {
    size_t id = id_number(lx_data_id(d, got[i].doc));
    const mdoc *x = &m->docs[id];
    for (size_t g = st->group_start[x->content];
         g < st->group_start[x->content + 1]; g++) {
      const mdoc *y = &m->docs[st->by_content[g]];
      if (y->seq <= x->seq)
        break;
      if (!wanted(q->types, y->type))
        continue;
      int at = pos[st->by_content[g]];
      if (at < 0 || at >= (int)i)
        fail_msg("id %u is identical to id %zu, newer, and not before it "
                 "(position %d, %zu; k %zu)",
                 st->by_content[g], id, at, i, q->k);
    }
  }
  free(want);
  free(pos);
  free(got);
  free(order);
}

/* ----------------------------------------------------- random corpora */

static const double k1s[] = {0, 0.6, 1.2};
static const double bs[] = {0, 0.3, 0.75, 1};
static const double weights[] = {0, 1, 2.5};
static const size_t ks[] = {1, 5, 10, 100, 5000};

static void random_content(content *c) {
  memset(c, 0, sizeof *c);
  size_t want = rng_below(8) == 0 ? 0 : 1 + rng_below(MAX_DOC_TERMS - 4);
  uint32_t len = 0;
  while (c->n < want) {
    uint32_t t = rng_below(3) ? zipf_draw() : (uint32_t)rng_below(VOCAB);
    uint32_t j = 0;
    while (j < c->n && c->term[j] != t)
      j++;
    if (j < c->n)
      continue;
    c->term[c->n] = t;
    c->tf_content[c->n] = rng_below(6) ? 1 + (uint32_t)rng_below(3) : 0;
    c->tf_meta[c->n] = rng_below(4) ? 0 : 1 + (uint32_t)rng_below(2);
    if (!c->tf_content[c->n] && !c->tf_meta[c->n])
      c->tf_content[c->n] = 1;
    len += c->tf_content[c->n] + c->tf_meta[c->n];
    c->n++;
  }
  c->len = len + (uint32_t)rng_below(12);
}

/* A random query of 0 to 9 words: frequent, uniform, absent, repeated. */
static void random_query(lx_query *q, char words[][16], const char **w) {
  size_t n = rng_below(12) == 0 ? 0 : 1 + rng_below(7);
  for (size_t i = 0; i < n; i++) {
    size_t kind = rng_below(20);
    if (kind < 9)
      word_of(zipf_draw(), words[i], 16);
    else if (kind < 15)
      word_of((uint32_t)rng_below(VOCAB), words[i], 16);
    else if (kind < 17)
      snprintf(words[i], 16, "x%zu", rng_below(5));
    else if (i > 0)
      memcpy(words[i], words[rng_below(i)], 16);
    else
      word_of(0, words[i], 16);
    w[i] = words[i];
  }
  q->terms = w;
  q->nterms = n;
  q->k1 = k1s[rng_below(3)];
  q->b = bs[rng_below(4)];
  q->meta_weight = weights[rng_below(3)];
  q->types = rng_below(2) ? 0 : 1u + (unsigned)rng_below(15);
  q->k = ks[rng_below(5)];
}

static void check_counts(const lx_data *d, const model *m) {
  size_t postings;
  size_t live = model_live(m, &postings);
  assert_int_equal(lx_data_docs(d), live);
  assert_int_equal(lx_data_postings(d), postings);
}

static void run_queries(const lx_data *d, const model *m, size_t nqueries) {
  ref st;
  ref_build(&st, m);
  char words[MAX_QUERY_WORDS][16];
  const char *w[MAX_QUERY_WORDS];
  for (size_t i = 0; i < nqueries; i++) {
    lx_query q;
    random_query(&q, words, w);
    check_query(d, m, &st, &q);
  }
  ref_free(&st);
}

/* pages of churn over at most nids ids; returns how many times the
 * memory held went down (compactions). */
static size_t random_run(uint64_t seed, size_t nids, size_t npages,
                         size_t queries_per_page) {
  rng_state = seed;
  model m = {0};
  lx_data *d = lx_data_new();
  assert_non_null(d);
  size_t used = 0, shrinks = 0;
  size_t bytes = lx_data_bytes(d);
  for (size_t p = 0; p < npages; p++) {
    size_t nrows = rng_below(10) == 0 ? 0 : 1 + rng_below(48);
    size_t nremoved = rng_below(3) == 0 ? 0 : rng_below(24);
    page pg = page_new(nrows, nremoved);
    for (size_t i = 0; i < nremoved; i++) {
      char id[ENGRAM_ID_LEN + 1];
      if (used && rng_below(5))
        id_of(rng_below(used), id);
      else
        id_of(0xfff000 + rng_below(100), id); /* never added: ignored */
      page_remove(&pg, id);
    }
    for (size_t i = 0; i < nrows; i++) {
      size_t id =
          used < nids && (!used || rng_below(5) < 2) ? used++ : rng_below(used);
      uint32_t c;
      if (m.npool && rng_below(10) < 3) {
        c = (uint32_t)rng_below(m.npool);
      } else {
        content ct;
        random_content(&ct);
        c = pool_add(&m, &ct);
      }
      page_content(&pg, id, (unsigned)rng_below(4), &m, c);
    }
    apply(d, &m, &pg);
    page_free(&pg);
    check_counts(d, &m);
    size_t now = lx_data_bytes(d);
    shrinks += now < bytes;
    bytes = now;
    run_queries(d, &m, queries_per_page);
  }
  lx_data_free(d);
  model_free(&m);
  return shrinks;
}

static void test_random_against_reference(void **state) {
  (void)state;
  size_t shrinks = random_run(1, 1500, 160, 25);
  /* ~9000 changes of ~11 postings each: compaction several times. */
  assert_true(shrinks >= 3);
  shrinks = random_run(2, 60, 300, 10); /* a small, busy namespace */
  assert_true(shrinks >= 2);
  random_run(3, 400, 80, 40);
  fprintf(stderr, "%lu queries, %lu hits checked\n", g_queries, g_hits);
}

/* ------------------------------------------------------- fixed cases */

static void add_doc(lx_data *d, size_t id, unsigned type, uint32_t len,
                    size_t n, const char *const *words, const uint32_t *tfc,
                    const uint32_t *tfm) {
  page p = page_new(1, 0);
  char idt[ENGRAM_ID_LEN + 1];
  id_of(id, idt);
  page_row(&p, idt, type, len, n, words, tfc, tfm);
  assert_int_equal(lx_data_apply(d, p.v), 0);
  page_free(&p);
}

static void remove_ids(lx_data *d, size_t from, size_t to) {
  page p = page_new(0, to - from);
  for (size_t i = from; i < to; i++) {
    char idt[ENGRAM_ID_LEN + 1];
    id_of(i, idt);
    page_remove(&p, idt);
  }
  assert_int_equal(lx_data_apply(d, p.v), 0);
  page_free(&p);
}

static size_t search(const lx_data *d, const char *const *terms, size_t n,
                     size_t k, lx_hit *out) {
  lx_query q = {.terms = terms,
                .nterms = n,
                .k1 = 1.2,
                .b = 0.75,
                .meta_weight = 1,
                .k = k};
  size_t got = 99;
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  return got;
}

static void test_empty(void **state) {
  (void)state;
  lx_data_free(NULL);
  lx_data *d = lx_data_new();
  assert_non_null(d);
  assert_int_equal(lx_data_docs(d), 0);
  assert_int_equal(lx_data_postings(d), 0);
  assert_true(lx_data_bytes(d) > 0);
  lx_hit out[4];
  const char *terms[] = {"w1", "w2"};
  assert_int_equal(search(d, terms, 2, 4, out), 0);
  remove_ids(d, 0, 5);     /* unknown ids: ignored */
  page p = page_new(0, 0); /* nothing at all */
  assert_int_equal(lx_data_apply(d, p.v), 0);
  page_free(&p);
  assert_int_equal(lx_data_docs(d), 0);

  const uint32_t one[] = {1, 1}, zero[] = {0, 0};
  add_doc(d, 1, 0, 4, 2, terms, one, zero);
  assert_int_equal(search(d, terms, 0, 4, out), 0); /* no terms */
  const char *absent[] = {"nothing", "w3"};
  assert_int_equal(search(d, absent, 2, 4, out), 0);
  assert_int_equal(search(d, terms, 2, 4, out), 1);
  assert_string_equal(lx_data_id(d, out[0].doc),
                      "0190a1b2-0000-7000-8000-000000000001");
  lx_data_free(d);
}

/* Scores computed by hand; documents without terms count in N and avgdl;
 * metadata counts meta_weight; a score of 0 is no hit. */
static void test_scores_by_hand(void **state) {
  (void)state;
  lx_data *d = lx_data_new();
  const char *ab[] = {"alpha", "beta"};
  const uint32_t tfc1[] = {2, 0}, tfm1[] = {0, 3};
  add_doc(d, 1, 0, 5, 2, ab, tfc1, tfm1); /* alpha 2, beta 3 in meta */
  add_doc(d, 2, 1, 7, 0, NULL, NULL, NULL);
  add_doc(d, 3, 2, 0, 0, NULL, NULL, NULL);
  const uint32_t tfc4[] = {1}, tfm4[] = {0};
  add_doc(d, 4, 3, 4, 1, ab + 1, tfc4, tfm4); /* beta 1 */
  assert_int_equal(lx_data_docs(d), 4);
  assert_int_equal(lx_data_postings(d), 3);

  double n = 4, avgdl = (5 + 7 + 0 + 4) / 4.0, k1 = 0.9, b = 0.4, mw = 0.5;
  double idf1 = log(1 + (n - 1 + 0.5) / 1.5),
         idf2 = log(1 + (n - 2 + 0.5) / 2.5);
  double norm1 = k1 * (1 - b + b * 5 / avgdl),
         norm4 = k1 * (1 - b + b * 4 / avgdl);
  double s1 =
      idf1 * 2 * (k1 + 1) / (2 + norm1) + idf2 * 1.5 * (k1 + 1) / (1.5 + norm1);
  double s4 = idf2 * 1 * (k1 + 1) / (1 + norm4);
  lx_hit out[8];
  size_t got;
  lx_query q = {
      .terms = ab, .nterms = 2, .k1 = k1, .b = b, .meta_weight = mw, .k = 8};
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(got, 2);
  assert_true(close_to(out[0].score, s1));
  assert_true(close_to(out[1].score, s4));
  assert_string_equal(lx_data_id(d, out[1].doc),
                      "0190a1b2-0000-7000-8000-000000000004");

  /* meta_weight 0: document 1's beta weighs nothing; alone it is no hit. */
  q.terms = ab + 1;
  q.nterms = 1;
  q.meta_weight = 0;
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(got, 1);
  assert_string_equal(lx_data_id(d, out[0].doc),
                      "0190a1b2-0000-7000-8000-000000000004");

  /* Type filter: document 4 is working (3). */
  q.types = 1u << 0;
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(got, 0);

  /* Without the two documents that have no term, N and avgdl change. */
  remove_ids(d, 2, 4);
  assert_int_equal(lx_data_docs(d), 2);
  n = 2;
  avgdl = 4.5;
  idf2 = log(1 + (n - 2 + 0.5) / 2.5);
  norm4 = k1 * (1 - b + b * 4 / avgdl);
  q.types = 0;
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(got, 1);
  assert_true(close_to(out[0].score, idf2 * (k1 + 1) / (1 + norm4)));
  lx_data_free(d);
}

/* A row that comes again unchanged (a vector written later) keeps its
 * document: no dead posting, the same document number; a changed one
 * (another frequency, type or length) is replaced. */
static void test_unchanged_rows(void **state) {
  (void)state;
  lx_data *d = lx_data_new();
  const char *ab[] = {"alpha", "beta"};
  const uint32_t tfc[] = {2, 1}, tfm[] = {0, 1}, tfc2[] = {3, 1};
  lx_hit out[4];
  size_t got;
  lx_query q = {.terms = ab, .nterms = 2, .k1 = 1.2, .b = 0.75,
                .meta_weight = 1, .k = 4};
  add_doc(d, 1, 0, 6, 2, ab, tfc, tfm);
  size_t bytes = lx_data_bytes(d);
  for (int again = 0; again < 3; again++)
    add_doc(d, 1, 0, 6, 2, ab, tfc, tfm);
  assert_int_equal(lx_data_docs(d), 1);
  assert_int_equal(lx_data_postings(d), 2);
  assert_int_equal(lx_data_bytes(d), bytes);
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(got, 1);
  assert_int_equal(out[0].doc, 0);
  add_doc(d, 1, 0, 6, 2, ab, tfc2, tfm); /* another frequency */
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(out[0].doc, 1);
  add_doc(d, 1, 1, 6, 2, ab, tfc2, tfm); /* another type */
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(out[0].doc, 2);
  add_doc(d, 1, 1, 7, 2, ab, tfc2, tfm); /* another length */
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(out[0].doc, 3);
  add_doc(d, 1, 1, 7, 1, ab, tfc2, tfm); /* a term fewer */
  assert_int_equal(lx_data_search(d, &q, out, &got), 0);
  assert_int_equal(out[0].doc, 4);
  assert_int_equal(lx_data_docs(d), 1);
  assert_int_equal(lx_data_postings(d), 1);
  lx_data_free(d);
}

/* Identical documents tie exactly; the newer wins, whether the tie is
 * decided in the heap or while the lists are pruned. */
static void test_exact_ties(void **state) {
  (void)state;
  lx_data *d = lx_data_new();
  const char *words[] = {"common", "rare", "other"};
  const uint32_t c1[] = {1}, m0[] = {0, 0, 0};
  const uint32_t both[] = {1, 2};
  /* 0..59: "common" only; 60..79: "common" and "rare" (every 3rd of the
   * ids, interleaved); all of length 6. */
  for (size_t i = 0; i < 80; i++) {
    if (i % 4 == 1)
      add_doc(d, i, 0, 6, 2, words, both, m0);
    else
      add_doc(d, i, 0, 6, 1, words, c1, m0);
  }
  lx_hit out[100];
  for (size_t k = 1; k <= 30; k++) {
    size_t got = search(d, words, 2, k, out);
    assert_int_equal(got, k);
    /* The 20 with both terms, newest first, then the newest others. */
    size_t expect_both = 77;
    size_t expect_one = 79;
    for (size_t i = 0; i < got; i++) {
      size_t id = id_number(lx_data_id(d, out[i].doc));
      if (i < 20) {
        assert_int_equal(id, expect_both);
        expect_both -= 4;
      } else {
        if (expect_one % 4 == 1)
          expect_one--;
        assert_int_equal(id, expect_one);
        expect_one--;
      }
      if (i > 0 && i != 20)
        assert_true(out[i].score == out[i - 1].score);
    }
  }
  /* One list: the k newest of 80 equal hits. */
  for (size_t k = 1; k <= 12; k += 11) {
    size_t got = search(d, words, 1, k, out);
    assert_int_equal(got, k);
    for (size_t i = 0; i < k; i++)
      assert_int_equal(id_number(lx_data_id(d, out[i].doc)), 79 - i);
  }
  /* A replaced document is the newest: it wins its ties. */
  add_doc(d, 5, 0, 6, 1, words, c1, m0);
  assert_int_equal(search(d, words, 1, 1, out), 1);
  assert_int_equal(id_number(lx_data_id(d, out[0].doc)), 5);
  lx_data_free(d);
}

static void test_remove_all_and_add_again(void **state) {
  (void)state;
  rng_state = 7;
  model m = {0};
  lx_data *d = lx_data_new();
  for (int round = 0; round < 3; round++) {
    page p = page_new(600, 0);
    for (size_t i = 0; i < 600; i++) {
      content ct;
      random_content(&ct);
      page_content(&p, i, (unsigned)rng_below(4), &m, pool_add(&m, &ct));
    }
    apply(d, &m, &p);
    page_free(&p);
    check_counts(d, &m);
    run_queries(d, &m, 100);
    page r = page_new(0, 610);
    for (size_t i = 0; i < 610; i++) { /* ten of them unknown */
      char id[ENGRAM_ID_LEN + 1];
      id_of(i, id);
      page_remove(&r, id);
    }
    apply(d, &m, &r);
    page_free(&r);
    assert_int_equal(lx_data_docs(d), 0);
    assert_int_equal(lx_data_postings(d), 0);
    lx_hit out[4];
    const char *w[] = {"w0", "w1", "w2"};
    assert_int_equal(search(d, w, 3, 4, out), 0);
  }
  lx_data_free(d);
  model_free(&m);
}

static void test_counts_and_bytes(void **state) {
  (void)state;
  rng_state = 11;
  model m = {0};
  lx_data *d = lx_data_new();
  page p = page_new(5000, 0);
  for (size_t i = 0; i < 5000; i++) {
    content ct;
    random_content(&ct);
    page_content(&p, i, 0, &m, pool_add(&m, &ct));
  }
  apply(d, &m, &p);
  page_free(&p);
  check_counts(d, &m);
  size_t full = lx_data_bytes(d);
  size_t per = full / lx_data_postings(d);
  fprintf(stderr, "5000 documents: %zu postings, %zu bytes (%zu a posting)\n",
          lx_data_postings(d), full, per);
  assert_true(per < 40);

  /* Remove all but every 50th: compaction gives most of it back. */
  page r = page_new(0, 5000);
  for (size_t i = 0; i < 5000; i++)
    if (i % 50) {
      char id[ENGRAM_ID_LEN + 1];
      id_of(i, id);
      page_remove(&r, id);
    }
  apply(d, &m, &r);
  page_free(&r);
  check_counts(d, &m);
  assert_int_equal(lx_data_docs(d), 100);
  size_t after = lx_data_bytes(d);
  fprintf(stderr, "100 left: %zu bytes\n", after);
  assert_true(after < full / 8);
  run_queries(d, &m, 200);

  /* Replacing the same ids again and again keeps memory bounded. */
  for (int round = 0; round < 40; round++) {
    page u = page_new(100, 0);
    for (size_t i = 0; i < 5000; i += 50) {
      content ct;
      random_content(&ct);
      page_content(&u, i, (unsigned)round % 4, &m, pool_add(&m, &ct));
    }
    apply(d, &m, &u);
    page_free(&u);
  }
  check_counts(d, &m);
  assert_true(lx_data_bytes(d) < full / 4);
  run_queries(d, &m, 200);
  lx_data_free(d);
  model_free(&m);
}

/* Frequencies past 65535 count as 65535; a term twice in one row counts
 * once, its frequencies added. */
static void test_odd_rows(void **state) {
  (void)state;
  lx_data *d = lx_data_new();
  const char *w[] = {"big", "big", "small"};
  const uint32_t huge[] = {100000}, max[] = {65535}, none[] = {0, 0, 0};
  add_doc(d, 1, 0, 9, 1, w, huge, none);
  add_doc(d, 2, 0, 9, 1, w, max, none);
  add_doc(d, 3, 0, 9, 1, w, none, huge); /* in the metadata */
  add_doc(d, 4, 0, 9, 1, w, none, max);
  lx_hit out[8];
  assert_int_equal(search(d, w, 1, 8, out), 4);
  for (size_t i = 0; i < 4; i++) {
    assert_true(out[i].score == out[0].score);
    assert_int_equal(id_number(lx_data_id(d, out[i].doc)), 4 - i);
  }

  /* "big" twice: tf 2 + 3 = 5, one posting; the same as document 6. */
  const uint32_t twice[] = {2, 3, 1}, once[] = {5, 1};
  add_doc(d, 5, 0, 9, 3, w, twice, none);
  add_doc(d, 6, 0, 9, 2, w + 1, once, none);
  assert_int_equal(lx_data_postings(d), 4 + 2 + 2);
  assert_int_equal(search(d, w, 1, 8, out), 6);
  assert_true(out[4].score == out[5].score && out[4].score < out[3].score);
  assert_int_equal(id_number(lx_data_id(d, out[4].doc)), 6);
  assert_int_equal(id_number(lx_data_id(d, out[5].doc)), 5);

  /* A long query (more terms than the search keeps on its stack), its
   * terms repeated and absent ones among them: as the distinct ones. */
  const char *many[40];
  for (size_t i = 0; i < 40; i++)
    many[i] = i % 3 == 0 ? "big" : i % 3 == 1 ? "small" : "absent";
  lx_hit alone[8];
  const char *distinct[] = {"small", "big"};
  assert_int_equal(search(d, many, 40, 8, out), 6);
  assert_int_equal(search(d, distinct, 2, 8, alone), 6);
  for (size_t i = 0; i < 6; i++) {
    assert_int_equal(out[i].doc, alone[i].doc);
    assert_true(close_to(out[i].score, alone[i].score));
  }
  lx_data_free(d);

  /* A page without its terms is refused. */
  d = lx_data_new();
  page p = page_new(1, 0);
  page_row(&p, "0190a1b2-0000-7000-8000-000000000001", 0, 1, 0, NULL, NULL,
           NULL);
  free(p.v->term_start);
  p.v->term_start = NULL;
  assert_int_equal(lx_data_apply(d, p.v), ENGRAM_EINVAL);
  page_free(&p);
  lx_data_free(d);
}

/* ----------------------------------------------------------- threads */

#define THREAD_QUERIES 300

typedef struct thread_work {
  const lx_data *d;
  const lx_query *queries;
  lx_hit (*hits)[100];
  size_t *n;
  int failed;
} thread_work;

static void *thread_search(void *arg) {
  thread_work *w = arg;
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < THREAD_QUERIES; i++)
      w->failed |= lx_data_search(w->d, &w->queries[i], w->hits[i], &w->n[i]);
  return NULL;
}

static void test_concurrent_searches(void **state) {
  (void)state;
  rng_state = 13;
  model m = {0};
  lx_data *d = lx_data_new();
  page p = page_new(3000, 0);
  for (size_t i = 0; i < 3000; i++) {
    content ct;
    random_content(&ct);
    page_content(&p, i, (unsigned)rng_below(4), &m, pool_add(&m, &ct));
  }
  apply(d, &m, &p);
  page_free(&p);

  static char words[THREAD_QUERIES][MAX_QUERY_WORDS][16];
  static const char *w[THREAD_QUERIES][MAX_QUERY_WORDS];
  static lx_query queries[THREAD_QUERIES];
  static lx_hit want[THREAD_QUERIES][100], got[2][THREAD_QUERIES][100];
  static size_t nwant[THREAD_QUERIES], ngot[2][THREAD_QUERIES];
  for (size_t i = 0; i < THREAD_QUERIES; i++) {
    random_query(&queries[i], words[i], w[i]);
    if (queries[i].k > 100)
      queries[i].k = 100;
    assert_int_equal(lx_data_search(d, &queries[i], want[i], &nwant[i]), 0);
  }
  thread_work work[2];
  pthread_t th[2];
  for (int t = 0; t < 2; t++) {
    work[t] = (thread_work){d, queries, got[t], ngot[t], 0};
    assert_int_equal(pthread_create(&th[t], NULL, thread_search, &work[t]), 0);
  }
  for (int t = 0; t < 2; t++) {
    assert_int_equal(pthread_join(th[t], NULL), 0);
    assert_false(work[t].failed);
    for (size_t i = 0; i < THREAD_QUERIES; i++) {
      assert_int_equal(ngot[t][i], nwant[i]);
      for (size_t j = 0; j < nwant[i]; j++) {
        assert_int_equal(got[t][i][j].doc, want[i][j].doc);
        assert_true(got[t][i][j].score == want[i][j].score);
      }
    }
  }
  lx_data_free(d);
  model_free(&m);
}

int main(void) {
  zipf_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_scores_by_hand),
      cmocka_unit_test(test_unchanged_rows),
      cmocka_unit_test(test_exact_ties),
      cmocka_unit_test(test_odd_rows),
      cmocka_unit_test(test_remove_all_and_add_again),
      cmocka_unit_test(test_counts_and_bytes),
      cmocka_unit_test(test_concurrent_searches),
      cmocka_unit_test(test_random_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
