/*
 * engram_internal.h — what the layers below the public API may ask of a
 * handle (internal): its runtime, its options, and the store stack, which
 * tests can wrap in a decorator (e.g. the delay store) before opening.
 */
#ifndef ENGRAM_INTERNAL_H
#define ENGRAM_INTERNAL_H

#include "engram.h"
#include "rt/rt.h"
#include "search/embed.h"
#include "store/store.h"

enum { H_NEW, H_OPENING, H_OPEN, H_CLOSING, H_CLOSED };

typedef struct write_req write_req;
typedef struct reembed reembed;
typedef struct vector_index vector_index;
typedef struct lexical_index lexical_index;

/* The handle, shared by engram.c (lifecycle, validation, reads),
 * engram_write.c (writes and their vectors) and engram_reembed.c. */
struct engram {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  int state;
  engram_options opts;
  char *strings; /* the copied strings of opts (db, embedder's) */
  rt rt;
  store *st;   /* the top of the store stack: what operations go to */
  store *base; /* the real backend: where statistics come from */
  search_embedder *embedder; /* NULL with ENGRAM_EMBEDDER_NONE */
  vector_index *index;       /* the vector index (src/search) */
  lexical_index *lexical;    /* the lexical index (src/search) */
  /* Writes in the order engram_write accepted them; one waiting for its
   * vectors holds back the ones behind it (engram_write.c). */
  write_req *wq_head, *wq_tail;
  size_t writes_embedding; /* accepted, not yet handed to the store */
  reembed *reembed;        /* the running engram_reembed, or NULL */
  void (*on_writes_handed)(engram *eg); /* closing: called when the
                                          queue is empty */
  engram_open_cb open_cb;
  void *open_data;
  engram_close_cb close_cb;
  void *close_data;
};

/* engram_write.c */
/* Validated ops of one write, copied; see engram_write. */
int engram_write_submit(engram *eg, engram_op *ops, size_t n,
                        engram_write_cb cb, void *data);
/* 1 when the queue of writes waiting for vectors is empty. */
int engram_writes_handed(const engram *eg);
/* The handle's vector space ("NAME/DIM") into out (STORE_SPACE_LEN);
 * ENGRAM_EINVAL when there is no embedder or its dim is not known yet. */
int engram_space(engram *eg, char *out);

/* engram_reembed.c: stops a running re-embedding (closing): it ends after
 * the batch in flight, with ENGRAM_ECANCELED. */
void engram_reembed_stop(engram *eg);

rt *engram_rt(engram *eg);
const engram_options *engram_opts(engram *eg);
/* Replaces the handle's store with wrap(current store); only before
 * engram_open. The wrapper owns the store it wraps. Statistics keep coming
 * from the innermost (real) store. */
int engram_wrap_store(engram *eg, store *(*wrap)(store *inner, void *arg),
                      void *arg);

/* 1 when the store stack can run hybrid searches. */
int engram_search_has_hybrid(engram *eg);
/* The handle's embedder (NULL with ENGRAM_EMBEDDER_NONE). */
search_embedder *engram_embedder(engram *eg);

#endif
