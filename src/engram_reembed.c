/*
 * engram_reembed.c — engram_reembed(): switching a database to the
 * handle's embedder, and giving every memory a vector from it.
 *
 * Steps, all callbacks on the loop:
 *   1. the embedder's dimension, when it is not known yet (an HTTP
 *      embedder learns it from its first answer): one probe text;
 *   2. the switch: when the database records another space, a batch of one
 *      STORE_OP_SET_SPACE; from its commit on, writes of the handle's
 *      vectors are accepted (and other embedders' refused);
 *   3. a page of memories (engram_list over all namespaces, after the last
 *      id seen), keeping those whose vector is not of the handle's space;
 *   4. their contents to the embedder as one request;
 *   5. one write batch of STORE_OP_SET_VECTOR ops, each setting a memory's
 *      vector only if it still has the content that was embedded (an
 *      UPDATE in between gave it the new content's vector already), without
 *      touching updated_ms or writing history: the memory did not change,
 *      its index did;
 *   6. the progress callback, then the next page, until the list ends.
 * A memory already of the space is skipped, so a run that was stopped
 * resumes where it was. The vector index catches up with the new vectors
 * through the change sequence like with any write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram_internal.h"

#define REEMBED_PAGE 256

struct reembed {
  engram *eg;
  engram_reembed_cb cb;
  void *data;
  char space[STORE_SPACE_LEN]; /* the handle's: what every vector becomes */
  char after[ENGRAM_ID_LEN + 1];
  int stop;
  int nomem; /* a memory of the page could not be kept */
  int list_ended;
  int page_full; /* the page's list was cancelled after REEMBED_PAGE items */
  int switching; /* the write in flight is the switch */
  uint64_t scanned, reembedded;
  /* the page */
  engram_node **nodes;
  size_t n;
  engram_stream *list;
  search_embed_req embed;
  engram_op *ops;
  float *vectors;
};

static void finish(reembed *r, int status, const char *message) {
  engram *eg = r->eg;
  eg->reembed = NULL;
  for (size_t i = 0; i < r->n; i++)
    engram_node_free(r->nodes[i]);
  free(r->nodes);
  free(r->ops);
  free(r->vectors);
  engram_reembed_progress p = {.done = 1,
                               .status = status,
                               .message = status ? message : NULL,
                               .scanned = r->scanned,
                               .reembedded = r->reembedded};
  engram_reembed_cb cb = r->cb;
  void *data = r->data;
  free(r);
  cb(&p, data);
}

static void next_page(reembed *r);

static void clear_page(reembed *r) {
  for (size_t i = 0; i < r->n; i++)
    engram_node_free(r->nodes[i]);
  r->n = 0;
  free(r->ops);
  free(r->vectors);
  r->ops = NULL;
  r->vectors = NULL;
}

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  reembed *r = data;
  if (status != 0) {
    const char *why = "the write failed";
    for (size_t i = 0; i < n; i++)
      if (ops[i].status && ops[i].message[0]) {
        why = ops[i].message;
        break;
      }
    char msg[240];
    snprintf(msg, sizeof msg, "re-embedding stopped: %s", why);
    finish(r, status, msg);
    return;
  }
  if (r->switching) {
    r->switching = 0;
    clear_page(r);
  } else {
    r->reembedded += r->n;
    clear_page(r);
    engram_reembed_progress p = {.scanned = r->scanned,
                                 .reembedded = r->reembedded};
    r->cb(&p, r->data);
  }
  next_page(r);
}

/* Hands ops[0..n) (engram's own, valid) to the write queue. */
static void submit(reembed *r, size_t n) {
  int rc = engram_write_submit(r->eg, r->ops, n, on_written, r);
  if (rc != 0)
    finish(r, rc, "re-embedding stopped: the write was refused");
}

static void embedder_failed(reembed *r, int status, const char *msg) {
  char m[240];
  snprintf(m, sizeof m, "re-embedding stopped: the embedder failed: %s",
           msg ? msg : engram_strerror(status));
  finish(r, status == ENGRAM_ECANCELED ? status : ENGRAM_EIO, m);
}

static void on_vectors(search_embed_req *req, int status, const char *msg,
                       float *vectors, void *data) {
  reembed *r = data;
  (void)req;
  engram *eg = r->eg;
  if (status != 0) {
    embedder_failed(r, status, msg);
    return;
  }
  if (r->stop || eg->state != H_OPEN) {
    finish(r, ENGRAM_ECANCELED, "re-embedding was stopped");
    return;
  }
  size_t dim = eg->embedder->dim;
  r->vectors = malloc(r->n * dim * sizeof *r->vectors);
  r->ops = calloc(r->n, sizeof *r->ops);
  if (!r->vectors || !r->ops) {
    finish(r, ENGRAM_ENOMEM, "out of memory re-embedding");
    return;
  }
  memcpy(r->vectors, vectors, r->n * dim * sizeof *r->vectors);
  for (size_t i = 0; i < r->n; i++) {
    engram_op *op = &r->ops[i];
    op->kind = STORE_OP_SET_VECTOR;
    op->ns = r->nodes[i]->ns;
    op->id = r->nodes[i]->id;
    op->content = r->nodes[i]->content;
    op->content_len = r->nodes[i]->content_len;
    op->embedding = r->vectors + i * dim;
    op->embedding_dim = (uint32_t)dim;
    op->embedder = eg->embedder->name;
  }
  submit(r, r->n);
}

static void embed_page(reembed *r) {
  const char **texts = malloc(r->n * sizeof *texts);
  size_t *lens = malloc(r->n * sizeof *lens);
  int rc = ENGRAM_ENOMEM;
  if (texts && lens) {
    for (size_t i = 0; i < r->n; i++) {
      texts[i] = r->nodes[i]->content;
      lens[i] = r->nodes[i]->content_len;
    }
    rc = search_embed(r->eg->embedder, &r->embed, texts, lens, r->n,
                      on_vectors, r);
  }
  free(texts);
  free(lens);
  if (rc != 0)
    finish(r, rc, "re-embedding stopped: the embedder refused the batch");
}

/* Whether node's vector is already of the space. */
static int up_to_date(const reembed *r, const engram_node *n) {
  char space[STORE_SPACE_LEN];
  return n->embedding && n->embedder &&
         store_space_format(space, n->embedder, n->embedding_dim) == 0 &&
         strcmp(space, r->space) == 0;
}

static void on_item(engram_stream *s, const engram_node *node, void *data) {
  reembed *r = data;
  (void)s;
  r->scanned++;
  memcpy(r->after, node->id, sizeof r->after);
  if (up_to_date(r, node))
    return;
  engram_node *copy = engram_node_copy(node);
  if (!copy) {
    r->nomem = 1;
    engram_stream_cancel(r->list);
    return;
  }
  r->nodes[r->n++] = copy;
}

/* A list stream with its demand met pauses, it does not end: once the
 * page is full, cancel it, and on_list_done takes that as the page's end. */
static void on_page_item(engram_stream *s, const engram_node *node,
                         void *data) {
  reembed *r = data;
  on_item(s, node, data);
  if (!r->nomem && engram_stream_delivered(s) >= REEMBED_PAGE) {
    r->page_full = 1;
    engram_stream_cancel(s);
  }
}

static void on_list_done(engram_stream *s, int status, void *data) {
  reembed *r = data;
  (void)s;
  r->list = NULL;
  if (r->nomem)
    status = ENGRAM_ENOMEM; /* on_item could not keep a memory */
  else if (status == ENGRAM_ECANCELED && r->page_full && !r->stop &&
           r->eg->state == H_OPEN)
    status = 0; /* cancelled by on_page_item, not by a close */
  if (status != 0) {
    finish(r, status,
           status == ENGRAM_ECANCELED
               ? "re-embedding was stopped"
               : "re-embedding stopped: reading the memories failed");
    return;
  }
  r->list_ended = !r->page_full;
  r->page_full = 0;
  if (r->n > 0)
    embed_page(r);
  else
    next_page(r);
}

static void next_page(reembed *r) {
  if (r->stop || r->eg->state != H_OPEN) {
    finish(r, ENGRAM_ECANCELED, "re-embedding was stopped");
    return;
  }
  if (r->list_ended) {
    finish(r, 0, NULL);
    return;
  }
  engram_query q = {.ns = NULL, .after = r->after[0] ? r->after : NULL};
  engram_stream_cbs cbs = {
      .item = on_page_item, .done = on_list_done, .data = r};
  int rc = engram_list(r->eg, &q, &cbs, &r->list);
  if (rc == 0)
    rc = engram_stream_request(r->list, REEMBED_PAGE);
  if (rc != 0)
    finish(r, rc, "re-embedding stopped: cannot list the memories");
}

/* The dimension is known: switch the database (always: another process
 * may have switched it since this one read it; a switch to the same space
 * changes nothing), then the pages. */
static void begin(reembed *r) {
  engram *eg = r->eg;
  if (r->stop || eg->state != H_OPEN) {
    finish(r, ENGRAM_ECANCELED, "re-embedding was stopped");
    return;
  }
  if (engram_space(eg, r->space) != 0) {
    finish(r, ENGRAM_EINVAL, "the embedder's name is too long");
    return;
  }
  r->ops = calloc(1, sizeof *r->ops);
  if (!r->ops) {
    finish(r, ENGRAM_ENOMEM, "out of memory re-embedding");
    return;
  }
  r->ops[0].kind = STORE_OP_SET_SPACE;
  r->ops[0].ns = "-"; /* unused */
  r->ops[0].embedder = eg->embedder->name;
  r->ops[0].embedding_dim = (uint32_t)eg->embedder->dim;
  r->switching = 1;
  submit(r, 1);
}

static void on_probe(search_embed_req *req, int status, const char *msg,
                     float *vectors, void *data) {
  reembed *r = data;
  (void)req;
  (void)vectors;
  if (status != 0) {
    embedder_failed(r, status, msg);
    return;
  }
  begin(r);
}

int engram_reembed(engram *eg, engram_reembed_cb cb, void *data) {
  if (!eg || !cb)
    return ENGRAM_EINVAL;
  if (eg->state != H_OPEN)
    return ENGRAM_ECLOSED;
  if (!eg->embedder) {
    rt_log(&eg->rt, ENGRAM_LOG_ERROR,
           "reembed needs an embedder; this engram has none (embedder none)");
    return ENGRAM_EINVAL;
  }
  if (eg->reembed)
    return ENGRAM_EBUSY;
  reembed *r = calloc(1, sizeof *r);
  if (r)
    r->nodes = malloc(REEMBED_PAGE * sizeof *r->nodes);
  if (!r || !r->nodes) {
    free(r);
    return ENGRAM_ENOMEM;
  }
  r->eg = eg;
  r->cb = cb;
  r->data = data;
  eg->reembed = r;
  /* The probe learns the dimension of an HTTP embedder, and it makes the
   * first step come from the loop, never inside this call. */
  static const char probe[] = "engram";
  const char *texts[1] = {probe};
  size_t lens[1] = {sizeof probe - 1};
  int rc = search_embed(eg->embedder, &r->embed, texts, lens, 1, on_probe, r);
  if (rc != 0) {
    eg->reembed = NULL;
    free(r->nodes);
    free(r);
  }
  return rc;
}

void engram_reembed_stop(engram *eg) {
  reembed *r = eg->reembed;
  if (!r)
    return;
  r->stop = 1;
  if (r->list)
    engram_stream_cancel(r->list);
  search_embed_cancel(&r->embed);
}
