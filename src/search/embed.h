/*
 * embed.h — embedders: turning texts into vectors, asynchronously, on the
 * loop (internal to the library).
 *
 * An embedder is a small table of functions behind a common header, shaped
 * like a libuv request: the caller owns a search_embed_req, starts it with
 * search_embed(), and its callback runs exactly once, later, on the loop —
 * never inside search_embed() or search_embed_cancel(), whatever the
 * embedder does inside. Two embedders implement it: the built-in hashed
 * n-gram embedder (embed_hashed.c, no model, deterministic; the default)
 * and the HTTP embedder for OpenAI-compatible /v1/embeddings servers.
 *
 * Every vector an embedder gives is dim floats, L2-normalized (or all zero
 * when the text has nothing to embed), so that a dot product between two
 * of them is their cosine. The embedder's name ("hashed-v1", "http:MODEL")
 * is recorded with each stored vector: vectors of different names (or
 * dims) are never compared.
 */
#ifndef ENGRAM_SEARCH_EMBED_H
#define ENGRAM_SEARCH_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "engram.h"
#include "rt/rt.h"

typedef struct search_embedder search_embedder;
typedef struct search_embed_req search_embed_req;

/* status: 0, ENGRAM_ECANCELED, or the embedder's error with msg saying what
 * went wrong (msg is NULL when status is 0). vectors: n * dim floats, row i
 * for texts[i], owned by the embedder and valid only until the callback
 * returns (copy to keep); NULL unless status is 0. */
typedef void (*search_embed_cb)(search_embed_req *req, int status,
                                const char *msg, float *vectors, void *data);

/* One batch in flight. Owned by the caller, who keeps it alive until its
 * callback has run; the embedder fills the private fields. */
struct search_embed_req {
  search_embedder *embedder;
  search_embed_cb cb;
  void *data;
  size_t n;   /* texts in the batch */
  int active; /* 1 from a successful search_embed() until the callback */
  void *impl; /* the embedder's state for this request */
};

typedef struct search_embedder_vtable {
  /* Starts the batch (req->embedder, cb, data and n are already set). The
   * embedder copies what it needs of texts before returning. 0, or an
   * error (then no callback). */
  int (*embed)(search_embedder *e, search_embed_req *req,
               const char *const *texts, const size_t *lens);
  /* req is active. Makes its callback come with ENGRAM_ECANCELED as soon as
   * possible, later on the loop (a result that is already computed may be
   * dropped). */
  void (*cancel)(search_embedder *e, search_embed_req *req);
  /* Cancels every active request (their callbacks follow), then frees the
   * embedder and calls cb(data) on the loop once all have run. */
  void (*close)(search_embedder *e, void (*cb)(void *data), void *data);
} search_embedder_vtable;

/* The common head of every embedder. */
struct search_embedder {
  const search_embedder_vtable *vt;
  const char *name; /* recorded with each vector, e.g. "hashed-v1" */
  size_t dim;       /* floats per vector */
  int closing;      /* set by search_embedder_close: no new requests */
};

/* Embeds texts[0..n) (lens[i] bytes each, UTF-8; need not be
 * NUL-terminated), n >= 1. The texts may be freed when this returns.
 * 0: cb(req, ...) follows exactly once, later, on the loop. Else
 * ENGRAM_EINVAL (n == 0, a NULL argument), ENGRAM_ECLOSED (the embedder is
 * closing), ENGRAM_ENOMEM or the embedder's error, and no callback. */
static inline int search_embed(search_embedder *e, search_embed_req *req,
                               const char *const *texts, const size_t *lens,
                               size_t n, search_embed_cb cb, void *data) {
  if (!e || !req || !texts || !lens || n == 0 || !cb)
    return ENGRAM_EINVAL;
  if (e->closing)
    return ENGRAM_ECLOSED;
  req->embedder = e;
  req->cb = cb;
  req->data = data;
  req->n = n;
  req->impl = NULL;
  req->active = 0;
  int rc = e->vt->embed(e, req, texts, lens);
  if (rc == 0)
    req->active = 1;
  return rc;
}

/* Idempotent; safe from any callback, including req's own (then a no-op:
 * the request is already finished). */
static inline void search_embed_cancel(search_embed_req *req) {
  if (req && req->active)
    req->embedder->vt->cancel(req->embedder, req);
}

/* Closes e: see search_embedder_vtable.close. cb may be NULL. e must not be
 * used after this call, except by callbacks of its active requests. */
static inline void search_embedder_close(search_embedder *e,
                                         void (*cb)(void *data), void *data) {
  e->closing = 1;
  e->vt->close(e, cb, data);
}

/* For embedders: finishes req, calling its callback (at most once). */
static inline void search_embed_finish(search_embed_req *req, int status,
                                       const char *msg, float *vectors) {
  if (!req->active)
    return;
  req->active = 0;
  req->impl = NULL;
  req->cb(req, status, status == 0 ? NULL : msg, status == 0 ? vectors : NULL,
          req->data);
}

/* ----------------------------------------------------- hashed embedder */

/* The hashed n-gram embedder, "hashed-v1" (embed_hashed.c has the details).
 * Features of a text, after engram's tokenizer (core_tokenize: lower-cased
 * words):
 *   - each word (a stop word with stopword_weight, others word_weight);
 *   - each pair of consecutive non-stop words (pair_weight);
 *   - each character 3-, 4- and 5-gram of each non-stop word wrapped in
 *     boundary markers ("<word>"), counted in characters (char_weight).
 * Each feature is hashed (XXH3, one seed per family) to an index in
 * [0, dim) and a sign; its weight is the family's weight times the square
 * root of its count in the text (sub-linear tf); the sum is L2-normalized.
 * A text without words gives the zero vector. The result depends only on
 * the text and these options: the same on every run and machine. */
#define SEARCH_HASHED_DEFAULT_DIM 384u
#define SEARCH_HASHED_MIN_DIM 16u
#define SEARCH_HASHED_MAX_DIM 65536u

typedef struct search_hashed_options {
  size_t dim;            /* default 384; SEARCH_HASHED_MIN..MAX_DIM */
  float word_weight;     /* default 1.0 */
  float stopword_weight; /* default 0.15 */
  float pair_weight;     /* default 0.6 */
  float char_weight;     /* default 0.25, per n-gram */
} search_hashed_options;

/* Parameters of the hashed embedder: immutable after init, so any thread
 * may embed with one at the same time. */
typedef struct search_hashed {
  search_hashed_options opt;
  /* "hashed-v1" with the default weights; "hashed-v1-XXXXXXXX" (a hash of
   * the weights) otherwise, since other weights give other vectors. The
   * dim is recorded beside the name, not in it. */
  char name[32];
} search_hashed;

void search_hashed_options_default(search_hashed_options *o);
/* o NULL: the defaults. ENGRAM_EINVAL when dim is out of range or a weight
 * is negative or not finite. */
int search_hashed_init(search_hashed *h, const search_hashed_options *o);

/* Embeds text[0..len) into out[0..dim), synchronously, on the calling
 * thread (a thread-pool chunk, a test). 0 or ENGRAM_ENOMEM (a long text
 * needs scratch memory; out is then zero). */
int search_hashed_embed(const search_hashed *h, const char *text, size_t len,
                        float *out);

/* The hashed embedder on r's loop (copies h). A batch of at most
 * SEARCH_HASHED_INLINE_BYTES bytes is embedded on the loop thread, from an
 * idle callback on the next iteration: about 30 ns a byte, so 5 us for a
 * typical query and at most ~30 us, less than a trip through the thread
 * pool, and it never queues there behind storage work. A larger batch runs
 * on the thread pool in chunks of about SEARCH_HASHED_CHUNK_BYTES (~2 ms),
 * checking for cancellation between chunks. 0 or ENGRAM_ENOMEM. */
#define SEARCH_HASHED_INLINE_BYTES 1024u
#define SEARCH_HASHED_CHUNK_BYTES 65536u
int search_hashed_embedder_new(rt *r, const search_hashed *h,
                               search_embedder **out);

#endif
