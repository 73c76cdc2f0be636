/*
 * embed_hashed.c — the built-in hashed n-gram embedder, "hashed-v1".
 *
 * A text becomes a bag of features (words, pairs of consecutive content
 * words, character 3..5-grams of content words: embed.h lists them), each
 * hashed with XXH3 under its family's seed to one 64-bit key. Equal keys
 * are counted in a small hash table (sub-linear tf: weight * sqrt(count))
 * and each distinct feature is added to the vector once, in table order.
 * That order depends only on the text; with IEEE sqrt, no other libm call
 * and no contraction of multiply-adds (ISO C mode), the vector is the same
 * bits on every run and machine. It is then L2-normalized.
 *
 * Words come from core_tokenize(), the tokenizer of lexical search, so both
 * kinds of search see the same words. Changing anything here that changes
 * a vector (a family, a seed, the hashing of a key, the default weights)
 * must change the name: vectors made under another name are not
 * comparable.
 *
 * The embedder object (search_hashed_embedder_new) wraps this pure function
 * for the loop: small batches on the loop from an idle callback, large ones
 * in chunks on the thread pool; callbacks always come later, on the loop.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <xxhash.h>

#include "core/core.h"
#include "search/embed.h"

/* Feature families: the top two bits of a key. */
enum { FAM_WORD = 0, FAM_STOPWORD = 1, FAM_PAIR = 2, FAM_CHAR = 3 };

static const uint64_t family_seed[4] = {
    0x68617368776f7264ull, /* "hashword" */
    0x6861736873746f70ull, /* "hashstop" */
    0x6861736870616972ull, /* "hashpair" */
    0x6861736863686172ull, /* "hashchar" */
};

#define KEY_BITS 62
#define KEY_MASK ((1ull << KEY_BITS) - 1)
#define CHAR_MIN_N 3
#define CHAR_MAX_N 5
#define WORD_MAX 64     /* core_tokenize cuts longer words to this */
#define STACK_KEYS 1024 /* keys kept on the stack for short texts */

void search_hashed_options_default(search_hashed_options *o) {
  o->dim = SEARCH_HASHED_DEFAULT_DIM;
  o->word_weight = 1.0f;
  o->stopword_weight = 0.15f;
  o->pair_weight = 0.6f;
  o->char_weight = 0.25f;
}

static int weight_ok(float w) {
  return isfinite(w) && w >= 0;
}

int search_hashed_init(search_hashed *h, const search_hashed_options *o) {
  search_hashed_options d;
  search_hashed_options_default(&d);
  if (!o)
    o = &d;
  if (o->dim < SEARCH_HASHED_MIN_DIM || o->dim > SEARCH_HASHED_MAX_DIM ||
      !weight_ok(o->word_weight) || !weight_ok(o->stopword_weight) ||
      !weight_ok(o->pair_weight) || !weight_ok(o->char_weight))
    return ENGRAM_EINVAL;
  h->opt = *o;
  if (o->word_weight == d.word_weight &&
      o->stopword_weight == d.stopword_weight &&
      o->pair_weight == d.pair_weight && o->char_weight == d.char_weight) {
    snprintf(h->name, sizeof h->name, "hashed-v1");
  } else {
    /* Text, not the floats' bytes, so the name is the same everywhere. */
    char w[128];
    int n = snprintf(w, sizeof w, "%.9g %.9g %.9g %.9g", (double)o->word_weight,
                     (double)o->stopword_weight, (double)o->pair_weight,
                     (double)o->char_weight);
    snprintf(h->name, sizeof h->name, "hashed-v1-%08x",
             (unsigned)(XXH3_64bits(w, (size_t)n) & 0xffffffffu));
  }
  return 0;
}

/* ------------------------------------------------------------ features */

typedef struct features {
  uint64_t *keys;
  size_t n, cap;
  int heap; /* keys was malloc'ed */
  int nomem;
  /* The previous content word, for pairs. */
  char prev[WORD_MAX + 1];
  size_t prev_len;
} features;

static void push(features *f, int family, const void *p, size_t len) {
  if (f->n == f->cap) {
    size_t cap = f->cap * 2;
    uint64_t *k =
        f->heap ? realloc(f->keys, cap * sizeof *k) : malloc(cap * sizeof *k);
    if (!k) {
      f->nomem = 1;
      return;
    }
    if (!f->heap)
      memcpy(k, f->keys, f->n * sizeof *k);
    f->keys = k;
    f->cap = cap;
    f->heap = 1;
  }
  uint64_t h = XXH3_64bits_withSeed(p, len, family_seed[family]);
  f->keys[f->n++] = ((uint64_t)family << KEY_BITS) | (h & KEY_MASK);
}

static int is_continuation(unsigned char c) {
  return (c & 0xc0) == 0x80;
}

/* Character n-grams of "<word>", n = 3..5 characters (not bytes). */
static void push_char_grams(features *f, const char *tok, size_t len) {
  char w[WORD_MAX + 2];
  size_t starts[WORD_MAX + 3]; /* byte offset of each character, and the end */
  size_t nchars = 0;
  w[0] = '<';
  memcpy(w + 1, tok, len);
  w[len + 1] = '>';
  size_t wl = len + 2;
  for (size_t i = 0; i < wl; i++)
    if (!is_continuation((unsigned char)w[i]))
      starts[nchars++] = i;
  starts[nchars] = wl;
  for (size_t n = CHAR_MIN_N; n <= CHAR_MAX_N && n <= nchars; n++)
    for (size_t i = 0; i + n <= nchars; i++)
      push(f, FAM_CHAR, w + starts[i], starts[i + n] - starts[i]);
}

static void on_token(const char *tok, size_t len, void *data) {
  features *f = data;
  if (core_is_stopword(tok, len)) {
    push(f, FAM_STOPWORD, tok, len);
    return;
  }
  push(f, FAM_WORD, tok, len);
  if (f->prev_len > 0) {
    char pair[2 * WORD_MAX + 2];
    memcpy(pair, f->prev, f->prev_len);
    pair[f->prev_len] = ' ';
    memcpy(pair + f->prev_len + 1, tok, len);
    push(f, FAM_PAIR, pair, f->prev_len + 1 + len);
  }
  push_char_grams(f, tok, len);
  memcpy(f->prev, tok, len);
  f->prev_len = len;
}

/* Counts equal keys in an open-addressing table (a power of two at least
 * twice their number) and adds each distinct feature to out once, in slot
 * order: a function of the keys' sequence only, so the same text always
 * sums in the same order. */
static void accumulate(const search_hashed *h, const uint64_t *keys, size_t n,
                       uint64_t *slot_key, uint32_t *slot_count, size_t cap,
                       float *out) {
  const float weight[4] = {h->opt.word_weight, h->opt.stopword_weight,
                           h->opt.pair_weight, h->opt.char_weight};
  size_t dim = h->opt.dim, mask = cap - 1;
  memset(slot_count, 0, cap * sizeof *slot_count);
  for (size_t i = 0; i < n; i++) {
    size_t at = (size_t)((keys[i] * 0x9e3779b97f4a7c15ull) >> 32) & mask;
    while (slot_count[at] && slot_key[at] != keys[i])
      at = (at + 1) & mask;
    slot_key[at] = keys[i];
    slot_count[at]++;
  }
  for (size_t at = 0; at < cap; at++) {
    if (!slot_count[at])
      continue;
    uint64_t key = slot_key[at];
    float w = weight[key >> KEY_BITS] * (float)sqrt((double)slot_count[at]);
    /* Bit 0 is the sign; the next 32 bits, scaled to [0, dim), the index
     * (a multiply-shift, even for a dim that is not a power of two). */
    size_t index = (size_t)((((key >> 1) & 0xffffffffull) * dim) >> 32);
    out[index] += (key & 1) ? -w : w;
  }
}

int search_hashed_embed(const search_hashed *h, const char *text, size_t len,
                        float *out) {
  size_t dim = h->opt.dim;
  uint64_t stack[STACK_KEYS];
  uint64_t stack_slot_key[2 * STACK_KEYS];
  uint32_t stack_slot_count[2 * STACK_KEYS];
  features f = {.keys = stack, .cap = STACK_KEYS};
  uint64_t *slot_key = stack_slot_key;
  uint32_t *slot_count = stack_slot_count;
  int rc = 0;
  memset(out, 0, dim * sizeof *out);
  core_tokenize(text, len, on_token, &f);
  if (f.nomem) {
    rc = ENGRAM_ENOMEM;
    goto done;
  }
  size_t cap = 64;
  while (cap < 2 * f.n)
    cap *= 2;
  if (cap > 2 * STACK_KEYS) {
    slot_key = malloc(cap * sizeof *slot_key);
    slot_count = malloc(cap * sizeof *slot_count);
    if (!slot_key || !slot_count) {
      rc = ENGRAM_ENOMEM;
      goto done;
    }
  }
  accumulate(h, f.keys, f.n, slot_key, slot_count, cap, out);
  double norm = 0;
  for (size_t i = 0; i < dim; i++)
    norm += (double)out[i] * (double)out[i];
  if (norm > 0) {
    float scale = (float)(1.0 / sqrt(norm));
    for (size_t i = 0; i < dim; i++)
      out[i] *= scale;
  }
done:
  if (slot_key != stack_slot_key) {
    free(slot_key);
    free(slot_count);
  }
  if (f.heap)
    free(f.keys);
  return rc;
}

/* ------------------------------------------------------------ embedder */

typedef struct hashed_embedder hashed_embedder;

/* One batch: its own copy of the texts and the vectors being filled. */
typedef struct batch {
  hashed_embedder *e;
  search_embed_req *req;
  rt_work work;
  struct batch *prev, *next; /* every active batch of the embedder */
  struct batch *queued;      /* next in the idle queue */
  size_t n, done;            /* texts, texts embedded so far */
  size_t *off, *len;         /* text i is bytes[off[i] .. + len[i]) */
  char *bytes;
  float *vectors; /* n * dim */
  int canceled;
  int on_pool;   /* a chunk is queued or running */
  int run_error; /* set by a chunk on the pool, read in its after */
} batch;

struct hashed_embedder {
  search_embedder base;
  search_hashed h;
  rt *rt;
  uv_idle_t idle;
  batch *active;                  /* list of active batches */
  batch *queue_head, *queue_tail; /* small batches waiting for idle */
  void (*close_cb)(void *data);
  void *close_data;
};

static void batch_free(batch *b) {
  free(b->vectors);
  free(b);
}

static void embedder_closed(uv_handle_t *handle) {
  hashed_embedder *e = handle->data;
  void (*cb)(void *) = e->close_cb;
  void *data = e->close_data;
  free(e);
  if (cb)
    cb(data);
}

static void maybe_finish_close(hashed_embedder *e) {
  if (e->base.closing && !e->active && !uv_is_closing((uv_handle_t *)&e->idle))
    uv_close((uv_handle_t *)&e->idle, embedder_closed);
}

/* Delivers b's result and frees it. */
static void batch_finish(batch *b, int status, const char *msg) {
  hashed_embedder *e = b->e;
  if (b->prev)
    b->prev->next = b->next;
  else
    e->active = b->next;
  if (b->next)
    b->next->prev = b->prev;
  if (b->canceled && status == 0) {
    status = ENGRAM_ECANCELED;
    msg = "the embedding was cancelled";
  }
  search_embed_finish(b->req, status, msg, b->vectors);
  batch_free(b);
  maybe_finish_close(e);
}

/* Embeds texts from b->done on, until about max_bytes are done. */
static int embed_some(batch *b, size_t max_bytes) {
  const search_hashed *h = &b->e->h;
  size_t bytes = 0;
  while (b->done < b->n && (bytes == 0 || bytes < max_bytes)) {
    size_t i = b->done;
    int rc = search_hashed_embed(h, b->bytes + b->off[i], b->len[i],
                                 b->vectors + i * h->opt.dim);
    if (rc != 0)
      return rc;
    bytes += b->len[i] + 1;
    b->done++;
  }
  return 0;
}

static void on_idle(uv_idle_t *idle) {
  hashed_embedder *e = idle->data;
  /* Only what was queued before this iteration: a callback that starts a
   * new batch gets its answer on a later iteration, never re-entrantly. */
  batch *b = e->queue_head;
  e->queue_head = e->queue_tail = NULL;
  uv_idle_stop(idle);
  while (b) {
    batch *next = b->queued;
    int rc = b->canceled ? 0 : embed_some(b, SIZE_MAX);
    batch_finish(b, rc, "out of memory while embedding");
    b = next;
  }
}

static void chunk_run(rt_work *w) {
  batch *b = (batch *)((char *)w - offsetof(batch, work));
  b->run_error = embed_some(b, SEARCH_HASHED_CHUNK_BYTES);
}

static void chunk_after(rt_work *w, int status) {
  batch *b = (batch *)((char *)w - offsetof(batch, work));
  b->on_pool = 0;
  if (status != 0 || b->canceled) {
    batch_finish(b, ENGRAM_ECANCELED, "the embedding was cancelled");
    return;
  }
  if (b->run_error != 0) {
    batch_finish(b, b->run_error, "out of memory while embedding");
    return;
  }
  if (b->done == b->n) {
    batch_finish(b, 0, NULL);
    return;
  }
  int rc = rt_offload(b->e->rt, &b->work, chunk_run, chunk_after);
  if (rc != 0) {
    batch_finish(b, rc, "could not queue an embedding chunk");
    return;
  }
  b->on_pool = 1;
}

static int hashed_embed(search_embedder *base, search_embed_req *req,
                        const char *const *texts, const size_t *lens) {
  hashed_embedder *e = (hashed_embedder *)base;
  size_t n = req->n, total = 0;
  for (size_t i = 0; i < n; i++) {
    if (!texts[i] && lens[i] > 0)
      return ENGRAM_EINVAL;
    if (lens[i] > SIZE_MAX / 4 - total)
      return ENGRAM_ENOMEM;
    total += lens[i];
  }
  if (n > SIZE_MAX / (2 * sizeof(size_t) + e->h.opt.dim * sizeof(float)))
    return ENGRAM_ENOMEM;
  batch *b = malloc(sizeof *b + 2 * n * sizeof(size_t) + total + 1);
  float *vectors = malloc(n * e->h.opt.dim * sizeof *vectors);
  if (!b || !vectors) {
    free(b);
    free(vectors);
    return ENGRAM_ENOMEM;
  }
  memset(b, 0, sizeof *b);
  b->e = e;
  b->req = req;
  b->n = n;
  b->off = (size_t *)(b + 1);
  b->len = b->off + n;
  b->bytes = (char *)(b->len + n);
  b->vectors = vectors;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    b->off[i] = at;
    b->len[i] = lens[i];
    if (lens[i] > 0)
      memcpy(b->bytes + at, texts[i], lens[i]);
    at += lens[i];
  }
  if (total <= SEARCH_HASHED_INLINE_BYTES) {
    int rc = uv_idle_start(&e->idle, on_idle);
    if (rc != 0) {
      batch_free(b);
      return ENGRAM_ENOMEM;
    }
    if (e->queue_tail)
      e->queue_tail->queued = b;
    else
      e->queue_head = b;
    e->queue_tail = b;
  } else {
    int rc = rt_offload(e->rt, &b->work, chunk_run, chunk_after);
    if (rc != 0) {
      batch_free(b);
      return rc;
    }
    b->on_pool = 1;
  }
  b->next = e->active;
  if (e->active)
    e->active->prev = b;
  e->active = b;
  req->impl = b;
  return 0;
}

static void hashed_cancel(search_embedder *base, search_embed_req *req) {
  (void)base;
  batch *b = req->impl;
  if (!b || b->canceled)
    return;
  b->canceled = 1;
  /* A chunk still in the pool's queue is dropped (its after gets
   * UV_ECANCELED); a running one finishes and its result is dropped. */
  if (b->on_pool)
    uv_cancel((uv_req_t *)&b->work.req);
}

static void hashed_close(search_embedder *base, void (*cb)(void *data),
                         void *data) {
  hashed_embedder *e = (hashed_embedder *)base;
  e->close_cb = cb;
  e->close_data = data;
  for (batch *b = e->active; b; b = b->next)
    hashed_cancel(base, b->req);
  maybe_finish_close(e);
}

static const search_embedder_vtable hashed_vtable = {
    .embed = hashed_embed,
    .cancel = hashed_cancel,
    .close = hashed_close,
};

int search_hashed_embedder_new(rt *r, const search_hashed *h,
                               search_embedder **out) {
  hashed_embedder *e = calloc(1, sizeof *e);
  if (!e)
    return ENGRAM_ENOMEM;
  e->h = *h;
  e->rt = r;
  e->base.vt = &hashed_vtable;
  e->base.name = e->h.name;
  e->base.dim = e->h.opt.dim;
  if (uv_idle_init(r->loop, &e->idle) != 0) {
    free(e);
    return ENGRAM_ENOMEM;
  }
  e->idle.data = e;
  *out = &e->base;
  return 0;
}
