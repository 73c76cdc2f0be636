/*
 * benchdb.c — see benchdb.h. Filling keeps a few write batches in flight,
 * each with its own op array and sentence buffer (kept until its callback
 * ran), and starts the next batch from the callback of the last one.
 */
#include "benchdb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILL_INFLIGHT 4

int benchdb_mkdir(const char *tag, char *out, size_t cap) {
  const char *tmp = getenv("ENGRAM_BENCH_TMP");
  if (!tmp || !*tmp)
    tmp = getenv("TMPDIR");
  if (!tmp || !*tmp)
    tmp = "/tmp";
  int n = snprintf(out, cap, "%s/engram-%s-XXXXXX", tmp, tag);
  if (n < 0 || (size_t)n >= cap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return mkdtemp(out) ? 0 : -1;
}

void benchdb_rmdir(const char *path) {
  static const char *const files[] = {"engram.db", "engram.db-wal",
                                      "engram.db-shm"};
  char p[4096];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", path, files[i]);
    unlink(p);
  }
  rmdir(path);
}

/* ------------------------------------------------------------------ open */

typedef struct opening {
  int done;
  int status;
} opening;

static void on_open(engram *eg, int status, const char *message, void *data) {
  opening *o = data;
  (void)eg;
  o->done = 1;
  o->status = status;
  if (status != 0)
    fprintf(stderr, "open: %s\n", message);
}

int benchdb_open(engram *eg) {
  opening o = {0, 0};
  int rc = engram_open(eg, on_open, &o);
  if (rc != 0) {
    fprintf(stderr, "open: %s\n", engram_strerror(rc));
    return rc;
  }
  while (!o.done)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  return o.status;
}

/* ------------------------------------------------------------------ fill */

typedef struct fill fill;

typedef struct fill_batch {
  fill *f;
  engram_op *ops;
  char *text; /* batch * CORPUS_MAX_SENTENCE bytes */
  int busy;
} fill_batch;

struct fill {
  engram *eg;
  const char *ns;
  engram_type type;
  corpus *c;
  size_t n, batch;
  size_t queued, written;
  int inflight;
  int status;
  fill_batch b[FILL_INFLIGHT];
};

static void start_batch(fill_batch *fb);

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  fill_batch *fb = data;
  fill *f = fb->f;
  (void)ops;
  fb->busy = 0;
  f->inflight--;
  if (status != 0 && f->status == 0) {
    f->status = status;
    fprintf(stderr, "fill: %s (%s)\n", engram_strerror(status),
            fb->ops[0].message);
  }
  f->written += n;
  if (f->status == 0)
    start_batch(fb);
}

static void start_batch(fill_batch *fb) {
  fill *f = fb->f;
  size_t k = f->n - f->queued;
  if (k == 0)
    return;
  if (k > f->batch)
    k = f->batch;
  for (size_t i = 0; i < k; i++) {
    char *t = fb->text + i * CORPUS_MAX_SENTENCE;
    size_t len = corpus_sentence(f->c, t, CORPUS_MAX_SENTENCE);
    memset(&fb->ops[i], 0, sizeof fb->ops[i]);
    fb->ops[i].kind = ENGRAM_OP_ADD;
    fb->ops[i].ns = f->ns;
    fb->ops[i].type = f->type;
    fb->ops[i].content = t;
    fb->ops[i].content_len = len;
  }
  int rc = engram_write(f->eg, fb->ops, k, on_written, fb);
  if (rc != 0) {
    f->status = rc;
    fprintf(stderr, "fill: %s (%s)\n", engram_strerror(rc), fb->ops[0].message);
    return;
  }
  f->queued += k;
  fb->busy = 1;
  f->inflight++;
}

int benchdb_fill(engram *eg, const char *ns, engram_type type, corpus *c,
                 size_t n, size_t batch) {
  fill f;
  memset(&f, 0, sizeof f);
  f.eg = eg;
  f.ns = ns;
  f.type = type;
  f.c = c;
  f.n = n;
  f.batch = batch ? batch : 1000;
  for (int i = 0; i < FILL_INFLIGHT; i++) {
    f.b[i].f = &f;
    f.b[i].ops = calloc(f.batch, sizeof *f.b[i].ops);
    f.b[i].text = malloc(f.batch * CORPUS_MAX_SENTENCE);
    if (!f.b[i].ops || !f.b[i].text)
      f.status = ENGRAM_ENOMEM;
  }
  for (int i = 0; i < FILL_INFLIGHT && f.status == 0; i++)
    start_batch(&f.b[i]);
  while (f.inflight > 0)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  for (int i = 0; i < FILL_INFLIGHT; i++) {
    free(f.b[i].ops);
    free(f.b[i].text);
  }
  return f.status;
}

/* ----------------------------------------------------------------- close */

static void on_closed(engram *eg, void *data) {
  (void)eg;
  *(int *)data = 1;
}

void benchdb_close(engram *eg) {
  int closed = 0;
  engram_close(eg, on_closed, &closed);
  while (!closed)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
}
