/*
 * writer.c — batched, pipelined writes for bulk loading; see writer.h.
 *
 * Ownership: the pending batch holds copies of the caller's ops, whose
 * strings live in what the caller handed over (keep, own_a, own_b) until
 * engram_write has copied them, i.e. until the batch is submitted. A
 * submitted batch is owned by engram; its `inflight` record (locations,
 * one per op) is ours and is freed in the write callback.
 */
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WHERE_LEN 48

typedef struct where {
  const char *file;
  char at[WHERE_LEN];
} where;

/* One batch handed to engram_write. */
typedef struct inflight {
  cli_writer *w;
  size_t n;
  where at[]; /* per op */
} inflight;

struct cli_writer {
  cli *c;
  size_t cap;          /* ops per batch */
  unsigned max_flight; /* batches committing at once */
  unsigned flying;
  int broken; /* the loop stopped working: give up */
  int tty;    /* stderr is a terminal: clear the progress line first */
  /* the pending batch */
  size_t n;
  engram_op *ops;
  where *at;
  json_t **keep;
  void **own; /* 2 per op */
  uint64_t added, existing, failed;
};

cli_writer *writer_new(cli *c, size_t batch, unsigned inflight_max) {
  cli_writer *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->c = c;
  w->cap = batch;
  w->max_flight = inflight_max;
  w->tty = isatty(STDERR_FILENO);
  w->ops = calloc(batch, sizeof *w->ops);
  w->at = calloc(batch, sizeof *w->at);
  w->keep = calloc(batch, sizeof *w->keep);
  w->own = calloc(batch * 2, sizeof *w->own);
  if (!w->ops || !w->at || !w->keep || !w->own) {
    writer_free(w);
    return NULL;
  }
  return w;
}

void writer_free(cli_writer *w) {
  if (!w)
    return;
  free(w->ops);
  free(w->at);
  free(w->keep);
  free(w->own);
  free(w);
}

uint64_t writer_added(const cli_writer *w) {
  return w->added;
}
uint64_t writer_existing(const cli_writer *w) {
  return w->existing;
}
uint64_t writer_failed(const cli_writer *w) {
  return w->failed;
}

static void report(cli_writer *w, const where *at, const char *message) {
  if (w->tty)
    fputs("\r\033[K", stderr);
  fprintf(stderr, "%s:%s: %s\n", at->file, at->at, message);
  w->failed++;
}

static void on_batch(int status, engram_op *ops, size_t n, void *data);

/* Hands ops[0..n) to engram as one batch. An op that fails validation is
 * reported, taken out, and the rest tried again; a failure that is no
 * op's fault fails them all. ops and at are edited in place. */
static void submit(cli_writer *w, engram_op *ops, where *at, size_t n) {
  while (n > 0) {
    inflight *f = malloc(sizeof *f + n * sizeof *at);
    if (!f) {
      for (size_t i = 0; i < n; i++)
        report(w, &at[i], "out of memory");
      return;
    }
    f->w = w;
    f->n = n;
    memcpy(f->at, at, n * sizeof *at);
    int rc = engram_write(w->c->eg, ops, n, on_batch, f);
    if (rc == 0) {
      w->flying++;
      return;
    }
    free(f);
    size_t bad = n;
    for (size_t i = 0; i < n; i++)
      if (ops[i].status != 0) {
        bad = i;
        break;
      }
    if (bad == n) {
      for (size_t i = 0; i < n; i++)
        report(w, &at[i], engram_strerror(rc));
      return;
    }
    report(w, &at[bad],
           ops[bad].message[0] ? ops[bad].message : engram_strerror(rc));
    memmove(&ops[bad], &ops[bad + 1], (n - bad - 1) * sizeof *ops);
    memmove(&at[bad], &at[bad + 1], (n - bad - 1) * sizeof *at);
    n--;
  }
}

/* Failures that belong to one op (retrying the others can succeed). */
static int per_op_error(int status) {
  return status == ENGRAM_EINVAL || status == ENGRAM_EEXIST ||
         status == ENGRAM_ENOTFOUND || status == ENGRAM_ETOOBIG ||
         status == ENGRAM_EUTF8 || status == ENGRAM_EJSON ||
         status == ENGRAM_EEMBEDDER;
}

static void on_batch(int status, engram_op *ops, size_t n, void *data) {
  inflight *f = data;
  cli_writer *w = f->w;
  w->flying--;
  if (status == 0) {
    for (size_t i = 0; i < n; i++) {
      if (ops[i].deduplicated)
        w->existing++;
      else
        w->added++;
    }
  } else if (n > 1 && per_op_error(status)) {
    /* Nothing of the batch was written: again one by one, so only the bad
     * ops are lost. ops are engram's copies, valid during this callback;
     * engram_write copies them again. */
    for (size_t i = 0; i < n; i++)
      submit(w, &ops[i], &f->at[i], 1);
  } else {
    for (size_t i = 0; i < n; i++)
      report(w, &f->at[i], cli_op_message(&ops[i], 1, status));
  }
  free(f);
}

static int has_slot(void *arg) {
  cli_writer *w = arg;
  return w->flying < w->max_flight;
}

static int all_done(void *arg) {
  cli_writer *w = arg;
  return w->flying == 0;
}

/* Submits the pending batch and releases what its strings pointed into. */
static int flush(cli_writer *w) {
  if (w->n == 0)
    return w->broken ? -1 : 0;
  if (!w->broken && cli_wait_for(w->c, has_slot, w) != 0)
    w->broken = 1;
  if (w->broken) {
    for (size_t i = 0; i < w->n; i++)
      report(w, &w->at[i], "not written: the storage stopped responding");
  } else {
    submit(w, w->ops, w->at, w->n);
  }
  for (size_t i = 0; i < w->n; i++) {
    json_decref(w->keep[i]);
    free(w->own[2 * i]);
    free(w->own[2 * i + 1]);
  }
  memset(w->keep, 0, w->n * sizeof *w->keep);
  memset(w->own, 0, 2 * w->n * sizeof *w->own);
  w->n = 0;
  return w->broken ? -1 : 0;
}

int writer_add(cli_writer *w, const engram_op *op, const char *file,
               const char *where_at, json_t *keep, void *own_a, void *own_b) {
  size_t i = w->n++;
  w->ops[i] = *op;
  w->at[i].file = file;
  snprintf(w->at[i].at, sizeof w->at[i].at, "%s", where_at);
  w->keep[i] = keep;
  w->own[2 * i] = own_a;
  w->own[2 * i + 1] = own_b;
  if (w->n == w->cap)
    return flush(w);
  return 0;
}

int writer_finish(cli_writer *w) {
  int rc = flush(w);
  if (!w->broken && cli_wait_for(w->c, all_done, w) != 0)
    w->broken = 1;
  return w->broken ? -1 : rc;
}
