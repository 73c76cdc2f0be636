/*
 * engram_write.c — writes after validation: the copy that lets a caller free
 * its ops at once, the vectors computed on write, and the handle's write
 * queue that keeps writes in the order engram_write accepted them.
 *
 * With an embedder (the default), an ADD without a vector and an UPDATE of
 * the content get one from the embedder before the batch reaches the store:
 * the contents of the batch's ops go to the embedder as one request (the
 * hashed embedder runs a small batch on the loop, a large one on the thread
 * pool; the HTTP embedder sends it through curl on the loop), and the
 * vectors come back later on the loop. A write waiting for its vectors
 * holds back every write accepted after it, so that an UPDATE of an id
 * given in an earlier ADD still finds it: the queue hands writes to the
 * store strictly in order, each as soon as it and everything before it is
 * ready. A write that needs no vector and has nothing ahead of it goes to
 * the store at once, as before.
 *
 * A write whose vectors could not be computed fails as a whole with the
 * embedder's error (nothing of it is stored) and the writes behind it go
 * on. Closing waits for the queue to empty (engram.c): an accepted write
 * is never dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "engram_internal.h"

struct write_req {
  store_batch batch;
  engram *eg;
  engram_write_cb cb;
  void *data;
  char *strings;  /* every copied string, one allocation */
  float *vectors; /* computed vectors, n_embed * dim */
  search_embed_req embed;
  size_t *embed_ops; /* indexes of the ops to embed */
  size_t n_embed;
  int ready;  /* nothing to wait for: may go to the store */
  int failed; /* the vectors failed: fails without reaching the store */
  char fail_msg[160];
  write_req *next; /* the handle's queue */
};

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static const char *put_str(char **p, const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  memcpy(*p, s, n);
  const char *out = *p;
  *p += n;
  return out;
}

static const char *put_bytes(char **p, const char *s, size_t n) {
  memcpy(*p, s, n);
  (*p)[n] = '\0';
  const char *out = *p;
  *p += n + 1;
  return out;
}

static void write_free(write_req *w) {
  free(w->strings);
  free(w->vectors);
  free(w->embed_ops);
  free(w->batch.ops);
  free(w->batch.content_hash);
  free(w);
}

static void write_done(store_batch *b) {
  write_req *w = b->data;
  if (w->cb)
    w->cb(b->status, b->ops, b->n, w->data);
  write_free(w);
}

int engram_writes_handed(const engram *eg) { return eg->wq_head == NULL; }

/* Hands the ready writes at the head of the queue to the store, in order.
 * `first` is a write engram_write is submitting right now: its store error
 * is returned (no callback), with the ops' statuses and messages copied
 * to first_ops, the caller's; any other's is reported by its callback. */
static int flush(engram *eg, write_req *first, engram_op *first_ops) {
  int first_rc = 0;
  while (eg->wq_head && eg->wq_head->ready) {
    write_req *w = eg->wq_head;
    eg->wq_head = w->next;
    if (!eg->wq_head)
      eg->wq_tail = NULL;
    w->next = NULL;
    int rc = w->failed ? w->batch.status
                       : eg->st->ops->write(eg->st, &w->batch);
    if (rc == 0)
      continue;
    if (w == first) {
      first_rc = rc;
      for (size_t i = 0; i < w->batch.n; i++) {
        first_ops[i].status = w->batch.ops[i].status;
        memcpy(first_ops[i].message, w->batch.ops[i].message,
               sizeof first_ops[i].message);
      }
      write_free(w);
      continue;
    }
    if (!w->failed && w->batch.ops[0].status == 0) {
      /* The store gave no reason of its own in the ops. */
      snprintf(w->fail_msg, sizeof w->fail_msg,
               "the store refused the write: %s", engram_strerror(rc));
      store_batch_fail(&w->batch, rc, w->fail_msg);
    }
    w->batch.status = rc;
    write_done(&w->batch);
  }
  if (!eg->wq_head && eg->on_writes_handed)
    eg->on_writes_handed(eg);
  return first_rc;
}

static void on_vectors(search_embed_req *req, int status, const char *msg,
                       float *vectors, void *data) {
  write_req *w = data;
  engram *eg = w->eg;
  (void)req;
  eg->writes_embedding--;
  search_embedder *e = eg->embedder;
  size_t dim = e ? e->dim : 0;
  if (status == 0 && dim > 0 && dim <= 65536) {
    w->vectors = malloc(w->n_embed * dim * sizeof *w->vectors);
    if (!w->vectors) {
      status = ENGRAM_ENOMEM;
      msg = "out of memory keeping the vectors";
    } else {
      memcpy(w->vectors, vectors, w->n_embed * dim * sizeof *w->vectors);
      for (size_t k = 0; k < w->n_embed; k++) {
        engram_op *op = &w->batch.ops[w->embed_ops[k]];
        op->embedding = w->vectors + k * dim;
        op->embedding_dim = (uint32_t)dim;
        op->embedder = e->name;
      }
    }
  } else if (status == 0) {
    status = ENGRAM_EIO;
    msg = "the embedder gave vectors of no usable dimension";
  }
  if (status != 0) {
    int code = status == ENGRAM_ECANCELED || status == ENGRAM_ENOMEM ||
                       status == ENGRAM_EUTF8
                   ? status
                   : ENGRAM_EIO;
    snprintf(w->fail_msg, sizeof w->fail_msg,
             "computing the vectors of the write failed: %s",
             msg ? msg : engram_strerror(status));
    w->failed = 1;
    store_batch_fail(&w->batch, code, w->fail_msg);
    w->batch.status = code;
  }
  w->ready = 1;
  flush(eg, NULL, NULL);
}

/* Which ops need a vector from the embedder: an ADD without one, an UPDATE
 * of the content that does not set the vector itself (it gets the new
 * content's). Marks those UPDATEs as setting the vector. */
static int plan_vectors(write_req *w) {
  engram *eg = w->eg;
  if (!eg->embedder)
    return 0;
  engram_op *ops = w->batch.ops;
  size_t n = w->batch.n;
  for (size_t i = 0; i < n; i++) {
    engram_op *op = &ops[i];
    int wants = (op->kind == ENGRAM_OP_ADD && !op->embedding) ||
                (op->kind == ENGRAM_OP_UPDATE &&
                 (op->set & ENGRAM_SET_CONTENT) &&
                 !(op->set & ENGRAM_SET_EMBEDDING));
    if (!wants)
      continue;
    if (!w->embed_ops) {
      w->embed_ops = malloc(n * sizeof *w->embed_ops);
      if (!w->embed_ops)
        return ENGRAM_ENOMEM;
    }
    w->embed_ops[w->n_embed++] = i;
    if (op->kind == ENGRAM_OP_UPDATE)
      op->set |= ENGRAM_SET_EMBEDDING;
  }
  return 0;
}

static int start_vectors(write_req *w) {
  const char **texts = malloc(w->n_embed * sizeof *texts);
  size_t *lens = malloc(w->n_embed * sizeof *lens);
  int rc = ENGRAM_ENOMEM;
  if (texts && lens) {
    for (size_t k = 0; k < w->n_embed; k++) {
      const engram_op *op = &w->batch.ops[w->embed_ops[k]];
      texts[k] = op->content;
      lens[k] = op->content_len;
    }
    rc = search_embed(w->eg->embedder, &w->embed, texts, lens, w->n_embed,
                      on_vectors, w);
  }
  free(texts);
  free(lens);
  return rc;
}

int engram_write_submit(engram *eg, engram_op *ops, size_t n,
                        engram_write_cb cb, void *data) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const engram_op *op = &ops[i];
    size_t clen = op->content ? (op->content_len ? op->content_len
                                                 : strlen(op->content))
                              : 0;
    bytes += str_size(op->ns) + str_size(op->id) +
             (op->content ? clen + 1 : 0) + str_size(op->metadata) +
             str_size(op->source) + str_size(op->target) +
             str_size(op->rel_kind) + str_size(op->embedder);
    if (store_op_writes_vector(op))
      bytes += (size_t)op->embedding_dim * sizeof(float) + sizeof(float);
  }
  write_req *w = calloc(1, sizeof *w);
  engram_op *copy = calloc(n, sizeof *copy);
  uint64_t *hashes = calloc(n, sizeof *hashes);
  char *strings = malloc(bytes ? bytes : 1);
  if (!w || !copy || !hashes || !strings) {
    free(w);
    free(copy);
    free(hashes);
    free(strings);
    return ENGRAM_ENOMEM;
  }
  /* Embeddings first, so the floats stay aligned. */
  char *p = strings;
  for (size_t i = 0; i < n; i++) {
    copy[i] = ops[i];
    if (!store_op_writes_vector(&ops[i])) {
      copy[i].embedding = NULL; /* not looked at: not validated either */
      if (ops[i].kind != STORE_OP_SET_SPACE) /* whose dim is the space's */
        copy[i].embedding_dim = 0;
    } else {
      size_t eb = (size_t)ops[i].embedding_dim * sizeof(float);
      memcpy(p, ops[i].embedding, eb);
      copy[i].embedding = (const float *)(void *)p;
      p += eb + sizeof(float);
    }
  }
  for (size_t i = 0; i < n; i++) {
    engram_op *op = &copy[i];
    op->ns = put_str(&p, ops[i].ns);
    op->id = put_str(&p, ops[i].id);
    if (ops[i].content) {
      size_t clen = ops[i].content_len ? ops[i].content_len
                                       : strlen(ops[i].content);
      op->content = put_bytes(&p, ops[i].content, clen);
      op->content_len = clen;
      hashes[i] = core_hash(op->content, clen);
    }
    op->metadata = put_str(&p, ops[i].metadata);
    op->source = put_str(&p, ops[i].source);
    op->target = put_str(&p, ops[i].target);
    op->rel_kind = put_str(&p, ops[i].rel_kind);
    op->embedder = put_str(&p, ops[i].embedder);
    if (op->kind == ENGRAM_OP_ADD) {
      if (op->id)
        memcpy(op->result_id, op->id, ENGRAM_ID_LEN + 1);
      else
        engram_id_new(op->result_id);
    }
  }
  w->eg = eg;
  w->cb = cb;
  w->data = data;
  w->strings = strings;
  w->batch.ops = copy;
  w->batch.n = n;
  w->batch.content_hash = hashes;
  w->batch.at_ms = core_now_ms();
  w->batch.done = write_done;
  w->batch.data = w;

  int rc = plan_vectors(w);
  if (rc == 0 && w->n_embed > 0)
    rc = start_vectors(w);
  if (rc != 0) {
    write_free(w);
    return rc;
  }
  w->ready = w->n_embed == 0;
  if (!w->ready)
    eg->writes_embedding++;
  if (eg->wq_tail)
    eg->wq_tail->next = w;
  else
    eg->wq_head = w;
  eg->wq_tail = w;
  return w->ready ? flush(eg, w, ops) : 0;
}
