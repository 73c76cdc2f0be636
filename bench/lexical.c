/*
 * lexical.c — the lexical index's exact BM25 top k (src/search/
 * lexical_ns.c, MaxScore) beside an exhaustive term-at-a-time scorer over
 * the same postings, on the same questions, in the same run.
 *
 * --n corpus sentences (bench/common/corpus.c) are tokenized the simplest
 * way (lower case, split on anything not a letter or digit; a term's tf
 * is its count in the content, no metadata; a document's length its
 * tokens), cut into pages of 1024 rows as the store would hand them over,
 * and applied to an empty index: rows/s of that (adds), and of applying
 * every page once more to a second index that already holds them all
 * (replacements: a dead document per row, compaction included). The
 * reference keeps the same postings in plain arrays of its own, in the
 * same document order.
 *
 * --queries corpus questions, tokenized alike (the first 50 asked once,
 * untimed, on every side first); for each, k = 100 and k = 10, both
 * sides, the order rotating from question to question:
 *   maxscore    lx_data_search (k1 1.2, b 0.75);
 *   exhaustive  every posting of every query term into an accumulator
 *               per document (an array over all documents, reset after
 *               each question through the list of those touched), then
 *               the top k of the touched documents by a heap.
 * Both use the formula of lexical_ns.h and break ties by the newer
 * document; their answers must agree (the same documents, scores within
 * 1e-9 relative; documents may swap only between scores that close), or
 * the benchmark fails with exit status 1. Printed: p50 and p95 of each
 * side and k, the ratio of the p50s, bytes per posting (lx_data_bytes /
 * lx_data_postings) and the apply rates.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "corpus.h"
#include "search/lexical_ns.h"
#include "stats.h"
#include "store/store.h"

#define PAGE_ROWS 1024
#define MAX_TOKENS 128
#define MAX_Q 16
#define WARMUP 50
#define K1 1.2
#define B 0.75

typedef struct options {
  size_t n;
  size_t queries;
  uint64_t seed;
} options;

static options opt = {.n = 100000, .queries = 1000, .seed = 1};

/* ---------------------------------------------------------- vocabulary */

/* The bench's own dictionary: term text -> term number, open addressing
 * over an arena of NUL-terminated texts. */
typedef struct vocab {
  char *text;
  size_t text_len, text_cap;
  uint32_t *offset; /* by term number */
  size_t n, cap;
  uint32_t *slots; /* term + 1 */
  size_t nslots;
} vocab;

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "lexical: out of memory\n");
    exit(1);
  }
  return q;
}

static size_t vocab_slot(const vocab *v, const char *s) {
  size_t mask = v->nslots - 1;
  size_t i = (size_t)fnv1a(s) & mask;
  while (v->slots[i] && strcmp(v->text + v->offset[v->slots[i] - 1], s) != 0)
    i = (i + 1) & mask;
  return i;
}

/* The term number of s, or -1. */
static long vocab_find(const vocab *v, const char *s) {
  if (!v->nslots)
    return -1;
  uint32_t t = v->slots[vocab_slot(v, s)];
  return t ? (long)t - 1 : -1;
}

static uint32_t vocab_get(vocab *v, const char *s) {
  long t = vocab_find(v, s);
  if (t >= 0)
    return (uint32_t)t;
  if ((v->n + 1) * 2 > v->nslots) {
    size_t n = v->nslots ? v->nslots * 2 : 1024;
    free(v->slots);
    v->slots = xrealloc(NULL, n * sizeof *v->slots);
    memset(v->slots, 0, n * sizeof *v->slots);
    v->nslots = n;
    for (size_t i = 0; i < v->n; i++)
      v->slots[vocab_slot(v, v->text + v->offset[i])] = (uint32_t)i + 1;
  }
  if (v->n == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 1024;
    v->offset = xrealloc(v->offset, v->cap * sizeof *v->offset);
  }
  size_t len = strlen(s) + 1;
  if (v->text_len + len > v->text_cap) {
    v->text_cap = v->text_cap ? 2 * v->text_cap : 65536;
    v->text = xrealloc(v->text, v->text_cap);
  }
  memcpy(v->text + v->text_len, s, len);
  v->offset[v->n] = (uint32_t)v->text_len;
  v->text_len += len;
  v->slots[vocab_slot(v, s)] = (uint32_t)v->n + 1;
  return (uint32_t)v->n++;
}

/* Splits text into lower-case tokens (in buf, NUL-separated); returns
 * how many, at most MAX_TOKENS. */
static size_t tokenize(const char *text, char *buf, const char **tok) {
  size_t n = 0, w = 0;
  const char *p = text;
  while (*p && n < MAX_TOKENS) {
    while (*p && !isalnum((unsigned char)*p))
      p++;
    if (!*p)
      break;
    tok[n++] = buf + w;
    while (*p && isalnum((unsigned char)*p))
      buf[w++] = (char)tolower((unsigned char)*p++);
    buf[w++] = '\0';
  }
  return n;
}

/* ----------------------------------------------------------- reference */

typedef struct ref_list {
  uint32_t *doc;
  uint16_t *tf;
  size_t n, cap;
} ref_list;

typedef struct ref_index {
  ref_list *lists; /* by term number */
  size_t nlists;
  uint32_t *len; /* by document */
  size_t ndocs;
  double avgdl;
  double *acc;       /* by document, 0 between questions */
  uint32_t *touched; /* documents with acc != 0 */
} ref_index;

static void ref_add(ref_index *r, uint32_t term, uint32_t doc, uint32_t tf) {
  if (term >= r->nlists) {
    size_t n = r->nlists ? r->nlists : 1024;
    while (n <= term)
      n *= 2;
    r->lists = xrealloc(r->lists, n * sizeof *r->lists);
    memset(r->lists + r->nlists, 0, (n - r->nlists) * sizeof *r->lists);
    r->nlists = n;
  }
  ref_list *l = &r->lists[term];
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 4;
    l->doc = xrealloc(l->doc, l->cap * sizeof *l->doc);
    l->tf = xrealloc(l->tf, l->cap * sizeof *l->tf);
  }
  l->doc[l->n] = doc;
  l->tf[l->n++] = (uint16_t)(tf < 65535 ? tf : 65535);
}

static int hit_below(lx_hit a, lx_hit b) {
  return a.score < b.score || (a.score == b.score && a.doc < b.doc);
}

static void sift_down(lx_hit *h, size_t n, size_t i) {
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      return;
    if (c + 1 < n && hit_below(h[c + 1], h[c]))
      c++;
    if (!hit_below(h[c], h[i]))
      return;
    lx_hit t = h[c];
    h[c] = h[i];
    h[i] = t;
    i = c;
  }
}

/* The exhaustive top k of the distinct terms q[0..nq), best first. */
static size_t ref_search(ref_index *r, const uint32_t *q, size_t nq, size_t k,
                         lx_hit *out) {
  size_t ntouched = 0;
  double ndocs = (double)r->ndocs;
  for (size_t i = 0; i < nq; i++) {
    const ref_list *l = &r->lists[q[i]];
    double df = (double)l->n;
    double idf = log(1.0 + (ndocs - df + 0.5) / (df + 0.5));
    for (size_t j = 0; j < l->n; j++) {
      uint32_t doc = l->doc[j];
      double tf = l->tf[j];
      double norm = K1 * (1.0 - B + B * r->len[doc] / r->avgdl);
      if (r->acc[doc] == 0)
        r->touched[ntouched++] = doc;
      r->acc[doc] += idf * tf * (K1 + 1.0) / (tf + norm);
    }
  }
  size_t n = 0;
  for (size_t i = 0; i < ntouched; i++) {
    lx_hit h = {r->touched[i], r->acc[r->touched[i]]};
    r->acc[h.doc] = 0;
    if (n < k) {
      out[n++] = h;
      for (size_t c = n - 1; c > 0 && hit_below(out[c], out[(c - 1) / 2]);
           c = (c - 1) / 2) {
        lx_hit t = out[c];
        out[c] = out[(c - 1) / 2];
        out[(c - 1) / 2] = t;
      }
    } else if (hit_below(out[0], h)) {
      out[0] = h;
      sift_down(out, n, 0);
    }
  }
  for (size_t left = n; left > 1; left--) {
    lx_hit t = out[0];
    out[0] = out[left - 1];
    out[left - 1] = t;
    sift_down(out, left - 1, 0);
  }
  return n;
}

/* ------------------------------------------------------------- corpus */

typedef struct built {
  store_vectors **pages;
  size_t npages;
  size_t postings;
} built;

static void *xmalloc(size_t n) {
  return xrealloc(NULL, n);
}

/* Tokenizes n sentences into pages and into the reference. */
static void build(corpus *c, vocab *v, ref_index *r, built *out) {
  out->npages = (opt.n + PAGE_ROWS - 1) / PAGE_ROWS;
  out->pages = xmalloc(out->npages * sizeof *out->pages);
  out->postings = 0;
  r->len = xmalloc(opt.n * sizeof *r->len);
  r->ndocs = opt.n;
  char sentence[CORPUS_MAX_SENTENCE], buf[2 * CORPUS_MAX_SENTENCE];
  const char *tok[MAX_TOKENS];
  uint32_t term[MAX_TOKENS], count[MAX_TOKENS];
  uint64_t total = 0;
  for (size_t p = 0; p < out->npages; p++) {
    size_t rows =
        opt.n - p * PAGE_ROWS < PAGE_ROWS ? opt.n - p * PAGE_ROWS : PAGE_ROWS;
    store_vectors *pg = calloc(1, sizeof *pg);
    if (!pg)
      exit(1);
    pg->n = rows;
    pg->ids = xmalloc(rows * sizeof *pg->ids);
    pg->type = calloc(rows, 1);
    pg->term_start = xmalloc((rows + 1) * sizeof *pg->term_start);
    pg->doc_len = xmalloc(rows * sizeof *pg->doc_len);
    pg->terms = xmalloc(rows * MAX_TOKENS * sizeof *pg->terms);
    pg->term_text = xmalloc(rows * CORPUS_MAX_SENTENCE * 2);
    pg->term_start[0] = 0;
    size_t nterms = 0;
    for (size_t i = 0; i < rows; i++) {
      size_t doc = p * PAGE_ROWS + i;
      snprintf(pg->ids[i], sizeof pg->ids[i], "0190a1b2-0000-7000-8000-%012x",
               (unsigned)doc);
      corpus_sentence(c, sentence, sizeof sentence);
      size_t ntok = tokenize(sentence, buf, tok);
      size_t distinct = 0;
      for (size_t t = 0; t < ntok; t++) {
        uint32_t id = vocab_get(v, tok[t]);
        size_t j = 0;
        while (j < distinct && term[j] != id)
          j++;
        if (j == distinct) {
          term[distinct] = id;
          count[distinct++] = 0;
        }
        count[j]++;
      }
      for (size_t j = 0; j < distinct; j++) {
        const char *text = v->text + v->offset[term[j]];
        size_t len = strlen(text) + 1;
        memcpy(pg->term_text + pg->term_text_len, text, len);
        pg->terms[nterms++] = (store_term){.text = (uint32_t)pg->term_text_len,
                                           .tf_content = count[j]};
        pg->term_text_len += len;
        ref_add(r, term[j], (uint32_t)doc, count[j]);
      }
      pg->term_start[i + 1] = (uint32_t)nterms;
      pg->doc_len[i] = (uint32_t)ntok;
      r->len[doc] = (uint32_t)ntok;
      total += ntok;
      out->postings += distinct;
    }
    out->pages[p] = pg;
  }
  r->avgdl = total ? (double)total / (double)opt.n : 1.0;
  r->acc = calloc(opt.n, sizeof *r->acc);
  r->touched = xmalloc(opt.n * sizeof *r->touched);
  if (!r->acc)
    exit(1);
}

/* Applies every page; returns the seconds it took. */
static double apply_all(lx_data *d, const built *b) {
  uint64_t t = stats_now_ns();
  for (size_t p = 0; p < b->npages; p++)
    if (lx_data_apply(d, b->pages[p]) != 0) {
      fprintf(stderr, "lexical: lx_data_apply failed\n");
      exit(1);
    }
  return (double)(stats_now_ns() - t) / 1e9;
}

/* ------------------------------------------------------------ queries */

typedef struct question {
  char buf[2 * CORPUS_MAX_SENTENCE];
  const char *terms[MAX_Q]; /* distinct, for lx_data_search */
  size_t nterms;
  uint32_t known[MAX_Q]; /* those in the vocabulary, for the reference */
  size_t nknown;
} question;

static void make_question(corpus *c, const vocab *v, question *q) {
  char text[CORPUS_MAX_SENTENCE];
  const char *tok[MAX_TOKENS];
  corpus_query(c, text, sizeof text);
  size_t ntok = tokenize(text, q->buf, tok);
  q->nterms = q->nknown = 0;
  for (size_t i = 0; i < ntok && q->nterms < MAX_Q; i++) {
    size_t j = 0;
    while (j < q->nterms && strcmp(q->terms[j], tok[i]) != 0)
      j++;
    if (j < q->nterms)
      continue;
    q->terms[q->nterms++] = tok[i];
    long t = vocab_find(v, tok[i]);
    if (t >= 0)
      q->known[q->nknown++] = (uint32_t)t;
  }
}

static int close_to(double a, double b) {
  return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b));
}

/* Same documents, scores within tolerance rank by rank; a document may
 * differ only where the other's is there too within a tied score. */
static int same_answer(const lx_hit *a, size_t na, const lx_hit *b, size_t nb) {
  if (na != nb)
    return 0;
  for (size_t i = 0; i < na; i++) {
    if (!close_to(a[i].score, b[i].score))
      return 0;
    if (a[i].doc == b[i].doc)
      continue;
    int found = 0;
    for (size_t j = 0; j < nb && !found; j++)
      found = b[j].doc == a[i].doc && close_to(b[j].score, a[i].score);
    /* Past the end of b, the tie may continue: accept an equal score. */
    if (!found && !close_to(a[i].score, b[nb - 1].score))
      return 0;
  }
  return 1;
}

/* --------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f, "usage: bench_lexical [options]\n"
             "  --n N        corpus sentences indexed (100000)\n"
             "  --queries N  corpus questions asked (1000)\n"
             "  --seed N     corpus seed (1)\n");
}

enum { S_MAXSCORE_100, S_REF_100, S_MAXSCORE_10, S_REF_10, S_COUNT };
static const char *const side_name[S_COUNT] = {
    "maxscore k=100", "exhaustive k=100", "maxscore k=10", "exhaustive k=10"};

/* Asks q on side s; returns the nanoseconds it took. */
static uint64_t ask(const lx_data *d, ref_index *r, int s, const question *q,
                    lx_hit *out, size_t *n) {
  size_t k = s == S_MAXSCORE_100 || s == S_REF_100 ? 100 : 10;
  uint64_t t = stats_now_ns();
  if (s == S_MAXSCORE_100 || s == S_MAXSCORE_10) {
    lx_query lq = {.terms = q->terms,
                   .nterms = q->nterms,
                   .k1 = K1,
                   .b = B,
                   .meta_weight = 1,
                   .k = k};
    if (lx_data_search(d, &lq, out, n) != 0) {
      fprintf(stderr, "lexical: lx_data_search failed\n");
      exit(1);
    }
  } else {
    *n = ref_search(r, q->known, q->nknown, k, out);
  }
  return stats_now_ns() - t;
}

int main(int argc, char **argv) {
  const bench_arg opts[] = {
      {"--n", ARG_SIZE, &opt.n, NULL, 0},
      {"--queries", ARG_SIZE, &opt.queries, NULL, 0},
      {"--seed", ARG_U64, &opt.seed, NULL, 0},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "lexical", opts, usage) != 0)
    return 2;
  if (!opt.n || !opt.queries) {
    fprintf(stderr, "lexical: --n and --queries must be positive\n");
    return 2;
  }
  printf("# bench_lexical: MaxScore top k beside an exhaustive "
         "term-at-a-time scorer\n");
  printf("n %zu, queries %zu, seed %llu, load %.2f\n", opt.n, opt.queries,
         (unsigned long long)opt.seed, stats_loadavg());

  corpus *c = corpus_new(opt.seed, 0);
  if (!c)
    return 1;
  vocab v = {0};
  ref_index r = {0};
  built b;
  build(c, &v, &r, &b);

  lx_data *d = lx_data_new();
  if (!d)
    return 1;
  double add_s = apply_all(d, &b);
  lx_data *again = lx_data_new();
  if (!again)
    return 1;
  apply_all(again, &b);
  double replace_s = apply_all(again, &b);
  lx_data_free(again);
  printf("%zu documents, %zu distinct terms, %zu postings (%.1f a "
         "document)\n",
         lx_data_docs(d), v.n, lx_data_postings(d),
         (double)lx_data_postings(d) / (double)lx_data_docs(d));
  printf("apply, pages of %d rows: adds %.0f rows/s, replacements %.0f "
         "rows/s (compaction included)\n",
         PAGE_ROWS, (double)opt.n / add_s, (double)opt.n / replace_s);
  printf("memory: %.1f MiB, %.1f bytes a posting\n",
         (double)lx_data_bytes(d) / 1048576.0,
         (double)lx_data_bytes(d) / (double)lx_data_postings(d));

  question *qs = xmalloc(opt.queries * sizeof *qs);
  size_t qterms = 0;
  for (size_t i = 0; i < opt.queries; i++) {
    make_question(c, &v, &qs[i]);
    qterms += qs[i].nterms;
  }
  uint64_t *lat[S_COUNT];
  for (int s = 0; s < S_COUNT; s++)
    lat[s] = xmalloc(opt.queries * sizeof *lat[s]);
  lx_hit got[S_COUNT][100];
  size_t n[S_COUNT];
  size_t mismatches = 0, matched = 0;
  /* Untimed: the first questions once on each side, so that neither
   * pays for the first touches of the data. */
  for (size_t i = 0; i < opt.queries && i < WARMUP; i++)
    for (int s = 0; s < S_COUNT; s++)
      ask(d, &r, s, &qs[i], got[s], &n[s]);
  for (size_t i = 0; i < opt.queries; i++) {
    question *q = &qs[i];
    for (size_t j = 0; j < q->nknown; j++)
      matched += r.lists[q->known[j]].n;
    for (int j = 0; j < S_COUNT; j++) {
      int s = (int)((i + (size_t)j) % S_COUNT);
      lat[s][i] = ask(d, &r, s, q, got[s], &n[s]);
    }
    if (!same_answer(got[S_MAXSCORE_100], n[S_MAXSCORE_100], got[S_REF_100],
                     n[S_REF_100]) ||
        !same_answer(got[S_MAXSCORE_10], n[S_MAXSCORE_10], got[S_REF_10],
                     n[S_REF_10])) {
      if (mismatches++ < 5)
        fprintf(stderr, "lexical: question %zu: the answers differ\n", i);
    }
  }
  printf("%.1f terms a question; %.0f postings in their lists on average\n",
         (double)qterms / (double)opt.queries,
         (double)matched / (double)opt.queries);
  double p50[S_COUNT];
  printf("\n| side | p50 ms | p95 ms |\n|---|--:|--:|\n");
  for (int s = 0; s < S_COUNT; s++) {
    stats_sort_u64(lat[s], opt.queries);
    p50[s] = stats_percentile(lat[s], opt.queries, 50) / 1e6;
    printf("| %s | %.4f | %.4f |\n", side_name[s], p50[s],
           stats_percentile(lat[s], opt.queries, 95) / 1e6);
  }
  printf("\nRATIOS (p50, same run, sides interleaved question by question)\n");
  printf("  exhaustive / maxscore, k=100: %.2f\n",
         p50[S_REF_100] / p50[S_MAXSCORE_100]);
  printf("  exhaustive / maxscore, k=10:  %.2f\n",
         p50[S_REF_10] / p50[S_MAXSCORE_10]);
  printf("answers: %s (%zu of %zu questions differ)\n",
         mismatches ? "MISMATCH" : "identical", mismatches, opt.queries);

  for (int s = 0; s < S_COUNT; s++)
    free(lat[s]);
  free(qs);
  lx_data_free(d);
  for (size_t p = 0; p < b.npages; p++)
    store_vectors_free(b.pages[p]);
  free(b.pages);
  for (size_t t = 0; t < r.nlists; t++) {
    free(r.lists[t].doc);
    free(r.lists[t].tf);
  }
  free(r.lists);
  free(r.len);
  free(r.acc);
  free(r.touched);
  free(v.text);
  free(v.offset);
  free(v.slots);
  corpus_free(c);
  return mismatches ? 1 : 0;
}
