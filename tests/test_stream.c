/*
 * test_stream.c — the stream contract of design.md, attacked from the
 * consumer's side: demand, exactly one done, cancellation from every
 * callback, deadlines racing the producer, pauses that hold no thread,
 * per-item errors, ten thousand streams on a one-thread pool, and the take
 * and collect combinators.
 *
 * Items come from a test-only producer written against the internal
 * stream.h API, so each test decides how production behaves (synchronous
 * inside pull, or chunks on the libuv thread pool that take time, failing
 * every k-th item, finite or endless) and sees what the producer did:
 * items produced, chunks run, whether it was cancelled, whether it was
 * still working when done arrived. The producer poisons each item's
 * buffers as soon as the item callback returns, so a consumer (or a
 * combinator) that keeps a pointer instead of a copy is caught.
 *
 * A violation inside a callback is recorded by CHECK rather than asserted,
 * so that a failure never longjmps out of uv_run; every test ends in
 * finish_test(), which runs the loop dry and asserts that no check failed,
 * no stream is open and no pool work is in flight. The teardown then closes
 * the loop and fails when a handle was left behind.
 *
 * main() sets UV_THREADPOOL_SIZE=1 before anything starts the pool: one
 * pool thread makes contention worst and the tests check that it held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt/stream.h"
#include "testloop.h"

/* ------------------------------------------------------------ checking */

static unsigned long g_violations;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (g_violations++ < 20)                                                 \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
                #cond);                                                        \
    }                                                                          \
  } while (0)

/* Depth of the tests' calls into request/cancel/set_deadline/collect_cancel:
 * a done (or collect) callback must never run while it is above 0. */
static int g_api_depth;

static int api_request(engram_stream *s, size_t n) {
  g_api_depth++;
  int rc = engram_stream_request(s, n);
  g_api_depth--;
  return rc;
}

static void api_cancel(engram_stream *s) {
  g_api_depth++;
  engram_stream_cancel(s);
  g_api_depth--;
}

static int api_deadline(engram_stream *s, uint64_t ms) {
  g_api_depth++;
  int rc = engram_stream_set_deadline(s, ms);
  g_api_depth--;
  return rc;
}

static void api_collect_cancel(engram_collect *c) {
  g_api_depth++;
  engram_collect_cancel(c);
  g_api_depth--;
}

/* Pool threads inside a chunk right now, and the most ever seen. */
static atomic_int g_pool_running;
static atomic_int g_pool_max;

/* ------------------------------------------------------------- fixture */

typedef struct fixture {
  uv_loop_t loop;
  rt rt;
} fixture;

static fixture *F;

static int setup(void **state) {
  F = calloc(1, sizeof *F);
  if (!F || uv_loop_init(&F->loop) != 0)
    return -1;
  rt_init(&F->rt, &F->loop);
  g_violations = 0;
  g_api_depth = 0;
  *state = F;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  if (f->rt.streams_open || f->rt.work_inflight) {
    /* The test failed mid-way: its streams' consumers lived on its stack.
     * Running the loop would call into dead frames, so abandon (leak) it. */
    fprintf(stderr,
            "test left %llu stream(s) open, %llu chunk(s) out: loop "
            "abandoned\n",
            (unsigned long long)f->rt.streams_open,
            (unsigned long long)f->rt.work_inflight);
    F = NULL;
    return -1;
  }
  int leftover = 0;
  int rc = tl_loop_finish(&f->loop, &leftover);
  free(f);
  F = NULL;
  if (rc != 0 || leftover != 0) {
    fprintf(stderr, "loop did not close cleanly: %s, %d handle(s) left\n",
            uv_strerror(rc), leftover);
    return -1;
  }
  return 0;
}

/* Every test ends here. */
static void finish_test(void) {
  uv_run(&F->loop, UV_RUN_DEFAULT);
  assert_int_equal(F->rt.streams_open, 0);
  assert_null(F->rt.streams);
  assert_int_equal(F->rt.work_inflight, 0);
  assert_int_equal(g_api_depth, 0);
  assert_int_equal(g_violations, 0);
}

static uint64_t now_ms(void) {
  uv_update_time(&F->loop);
  return uv_now(&F->loop);
}

/* ------------------------------------------------------- test producer */

#define INF UINT64_MAX
#define CHUNK_MAX 8
#define BUF_MAX (2 * CHUNK_MAX + 2) /* items of a chunk and their errors */
#define EMB_DIM 3

typedef struct prod_cfg {
  int async;          /* 0: emit inside pull; 1: chunks on the thread pool */
  uint64_t total;     /* source positions; INF: endless */
  unsigned chunk;     /* async: items per chunk, 1..CHUNK_MAX (0: 4) */
  unsigned err_every; /* (p+1) % err_every == 0: position p fails; not 1 */
  long work_us;       /* async: the worker sleeps this long per chunk */
  unsigned spin;      /* async: busy-work iterations per chunk */
  uint64_t fail_at;   /* the stream ends with ENGRAM_EIO at this position */
  int uv_cancel;      /* cancel: uv_cancel() a chunk still queued */
} prod_cfg;

/* What a producer did; owned by the test, so it outlives the producer. */
typedef struct prod_stats {
  uint64_t pulls;
  uint64_t produced; /* items emitted */
  uint64_t errors;   /* failed items reported */
  uint64_t chunks;   /* chunks queued on the pool */
  uint64_t chunks_after_cancel;
  unsigned cancels; /* producer->cancel calls: the stream makes at most one */
  unsigned cancels_while_busy;    /* ... with a chunk queued or running */
  unsigned cancels_while_running; /* ... with the worker inside the chunk */
  unsigned uv_cancelled;          /* queued chunks libuv dropped unrun */
  unsigned destroyed;
  int busy;           /* a chunk is queued or running */
  size_t max_demand;  /* the largest stream_demand() the producer saw */
  atomic_int running; /* the worker is inside a chunk */
} prod_stats;

typedef struct entry {
  uint64_t pos;
  int failed;
  char content[32];
  char meta[48];
  float emb[EMB_DIM];
} entry;

typedef struct producer {
  engram_stream *s;
  prod_cfg cfg;
  prod_stats *st;
  /* The worker owns next, want, buf, nbuf and fail while st->busy. */
  uint64_t next; /* next source position */
  size_t want;   /* items the queued chunk may prepare: <= demand */
  entry buf[BUF_MAX];
  size_t nbuf;
  int fail;     /* the chunk reached cfg.fail_at */
  int in_after; /* emitting a chunk's items on the loop */
  int in_pull;  /* the stream never calls pull re-entrantly */
  atomic_int interrupt;
  rt_work work;
} producer;

static int failed_pos(const prod_cfg *c, uint64_t pos) {
  return c->err_every && (pos + 1) % c->err_every == 0;
}

static float emb_value(uint64_t pos, unsigned i) {
  return (float)(pos % 1000u) + 0.5f * (float)i;
}

static void make_id(char out[ENGRAM_ID_LEN + 1], uint64_t pos) {
  snprintf(out, ENGRAM_ID_LEN + 1, "01020304-0000-7000-8000-%012llx",
           (unsigned long long)(pos & 0xffffffffffffull));
}

static void entry_fill(entry *e, uint64_t pos, int failed) {
  e->pos = pos;
  e->failed = failed;
  snprintf(e->content, sizeof e->content, "item-%llu", (unsigned long long)pos);
  snprintf(e->meta, sizeof e->meta, "{\"pos\":%llu}", (unsigned long long)pos);
  for (unsigned i = 0; i < EMB_DIM; i++)
    e->emb[i] = emb_value(pos, i);
}

/* After its callback the item is no longer the consumer's: scribble on it. */
static void entry_poison(entry *e) {
  memset(e->content, 'X', sizeof e->content - 1);
  memset(e->meta, 'Y', sizeof e->meta - 1);
  for (unsigned i = 0; i < EMB_DIM; i++)
    e->emb[i] = -1.0f;
}

static void producer_finish(producer *p, int status) {
  stream_finish(p->s, status);
}

/* Delivers e; 1 while production may go on. */
static int emit_entry(producer *p, entry *e) {
  size_t d = stream_demand(p->s);
  if (d > p->st->max_demand)
    p->st->max_demand = d;
  if (e->failed) {
    char msg[64];
    snprintf(msg, sizeof msg, "item %llu failed", (unsigned long long)e->pos);
    p->st->errors++;
    stream_emit_error(p->s, ENGRAM_EIO, msg);
    memset(msg, 'Z', sizeof msg - 1);
    return stream_open(p->s);
  }
  CHECK(d > 0); /* a producer that obeys stream_demand() never overdelivers */
  if (d == 0)
    return 0;
  engram_node n;
  memset(&n, 0, sizeof n);
  make_id(n.id, e->pos);
  n.ns = "test-ns";
  n.type = (engram_type)(e->pos % ENGRAM_TYPE_COUNT);
  n.content = e->content;
  n.content_len = strlen(e->content);
  n.metadata = e->meta;
  n.embedding = e->emb;
  n.embedding_dim = EMB_DIM;
  n.importance = 0.5;
  p->st->produced++;
  int go = stream_emit(p->s, &n);
  entry_poison(e);
  return go;
}

static void sync_pull(producer *p) {
  for (;;) {
    if (!stream_open(p->s))
      return;
    if (p->next >= p->cfg.total) {
      producer_finish(p, 0);
      return;
    }
    if (p->cfg.fail_at && p->next == p->cfg.fail_at) {
      producer_finish(p, ENGRAM_EIO);
      return;
    }
    int failed = failed_pos(&p->cfg, p->next);
    if (!failed && stream_demand(p->s) == 0)
      return;
    entry e;
    entry_fill(&e, p->next++, failed);
    if (!emit_entry(p, &e))
      return;
  }
}

static producer *of_work(rt_work *w) {
  return (producer *)(void *)((char *)w - offsetof(producer, work));
}

/* On a pool thread: touches only what the worker owns while busy. */
static void chunk_run(rt_work *w) {
  producer *p = of_work(w);
  int now = atomic_fetch_add(&g_pool_running, 1) + 1;
  int max = atomic_load(&g_pool_max);
  while (now > max && !atomic_compare_exchange_weak(&g_pool_max, &max, now))
    ;
  atomic_store(&p->st->running, 1);
  if (p->cfg.work_us > 0) {
    struct timespec ts = {p->cfg.work_us / 1000000,
                          (p->cfg.work_us % 1000000) * 1000};
    nanosleep(&ts, NULL); /* a slow read: allowed in tests only */
  }
  for (volatile unsigned i = 0; i < p->cfg.spin; i++)
    ;
  p->nbuf = 0;
  p->fail = 0;
  size_t items = 0;
  while (!atomic_load(&p->interrupt) && p->nbuf < BUF_MAX &&
         p->next < p->cfg.total) {
    if (p->cfg.fail_at && p->next == p->cfg.fail_at) {
      p->fail = 1;
      break;
    }
    int failed = failed_pos(&p->cfg, p->next);
    if (!failed && items == p->want)
      break;
    entry_fill(&p->buf[p->nbuf++], p->next++, failed);
    if (!failed)
      items++;
  }
  atomic_store(&p->st->running, 0);
  atomic_fetch_sub(&g_pool_running, 1);
}

static void chunk_after(rt_work *w, int status);

static void start_chunk(producer *p) {
  size_t d = stream_demand(p->s);
  size_t chunk = p->cfg.chunk ? p->cfg.chunk : 4;
  p->want = d < chunk ? d : chunk;
  p->st->chunks++;
  if (p->st->cancels)
    p->st->chunks_after_cancel++;
  p->nbuf = 0; /* a chunk libuv cancels never runs to reset them */
  p->fail = 0;
  p->st->busy = 1;
  if (rt_offload(stream_rt(p->s), &p->work, chunk_run, chunk_after) != 0) {
    CHECK(!"rt_offload failed");
    p->st->busy = 0;
    producer_finish(p, ENGRAM_ENOMEM);
  }
}

static void chunk_after(rt_work *w, int status) {
  producer *p = of_work(w);
  CHECK(status == 0 || (status == UV_ECANCELED && p->st->uv_cancelled == 1));
  CHECK(p->st->busy);
  CHECK(atomic_load(&p->st->running) == 0);
  p->st->busy = 0;
  if (stream_open(p->s)) {
    p->in_after = 1;
    for (size_t i = 0; i < p->nbuf; i++)
      if (!emit_entry(p, &p->buf[i]))
        break;
    p->in_after = 0;
  }
  if (!stream_open(p->s))
    producer_finish(p, ENGRAM_ECANCELED); /* cancelled: the reason is kept */
  else if (p->fail)
    producer_finish(p, ENGRAM_EIO);
  else if (p->next >= p->cfg.total)
    producer_finish(p, 0);
  else if (stream_demand(p->s) > 0)
    start_chunk(p);
  /* else: paused, holding nothing on the pool */
}

static void prod_pull(engram_stream *s, void *impl) {
  producer *p = impl;
  CHECK(s == p->s);
  CHECK(stream_demand(s) > 0); /* pull is only called with demand */
  CHECK(!p->in_pull);
  p->st->pulls++;
  size_t d = stream_demand(s);
  if (d > p->st->max_demand)
    p->st->max_demand = d;
  if (!p->cfg.async) {
    p->in_pull = 1;
    sync_pull(p);
    p->in_pull = 0;
    return;
  }
  if (p->st->busy || p->in_after)
    return; /* working: the demand is looked at when the chunk returns */
  start_chunk(p);
}

static void prod_cancel(engram_stream *s, void *impl) {
  producer *p = impl;
  CHECK(s == p->s);
  p->st->cancels++;
  CHECK(p->st->cancels == 1);
  if (p->st->busy) {
    p->st->cancels_while_busy++;
    if (atomic_load(&p->st->running))
      p->st->cancels_while_running++;
    atomic_store(&p->interrupt, 1);
    if (p->cfg.uv_cancel && uv_cancel((uv_req_t *)&p->work.req) == 0)
      p->st->uv_cancelled++; /* after follows with UV_ECANCELED */
    return; /* chunk_after finishes once the pool gave the chunk back */
  }
  producer_finish(p, ENGRAM_ECANCELED);
}

static void prod_destroy(void *impl) {
  producer *p = impl;
  CHECK(!p->st->busy);
  CHECK(atomic_load(&p->st->running) == 0);
  p->st->destroyed++;
  free(p);
}

static const stream_producer test_producer = {prod_pull, prod_cancel,
                                              prod_destroy};

static void stats_init(prod_stats *st) {
  memset(st, 0, sizeof *st);
  atomic_init(&st->running, 0);
}

/* A stream fed by a test producer; cbs NULL: a source for a combinator. */
static engram_stream *produce(const engram_stream_cbs *cbs, const prod_cfg *cfg,
                              prod_stats *st) {
  engram_stream *s = stream_new(&F->rt, cbs);
  assert_non_null(s);
  producer *p = calloc(1, sizeof *p);
  assert_non_null(p);
  assert_true(cfg->err_every != 1);
  assert_true(cfg->chunk <= CHUNK_MAX);
  p->s = s;
  p->cfg = *cfg;
  p->st = st;
  atomic_init(&p->interrupt, 0);
  stream_attach(s, &test_producer, p);
  return s;
}

/* The position of the k-th item (from 0) a source with cfg gives. */
static uint64_t nth_item_pos(const prod_cfg *cfg, uint64_t k) {
  uint64_t pos = 0;
  for (;; pos++)
    if (!failed_pos(cfg, pos) && k-- == 0)
      return pos;
}

/* ------------------------------------------------------------ consumer */

enum { PROBE_LIVE = 0x11, PROBE_DONE = 0xdd };

typedef struct probe {
  int magic;
  engram_stream *s; /* NULL once done ran */
  prod_stats ps;    /* the producer of s, when s is produced directly */
  prod_stats *src;  /* the producer to check at done (&ps or a source's) */
  /* What the consumer does. */
  int request_each;         /* request(1) from every item callback */
  uint64_t batch;           /* request(batch) whenever nothing is outstanding */
  uint64_t cancel_at_item;  /* cancel from the item callback at this count */
  uint64_t cancel_at_error; /* cancel from the error callback at this count */
  int cancel_twice;         /* ... and at once again */
  int cancel_in_done;       /* cancel (twice) and request inside done */
  int keep;                 /* copy every node */
  int no_error_cb;          /* opened without an error callback */
  /* What it saw. */
  uint64_t requested;
  uint64_t items, errors;
  uint64_t last_pos;
  int any;
  int done;
  int status;
  uint64_t delivered, failed; /* the stream's counters, read inside done */
  engram_node **kept;
  size_t nkept, capkept;
} probe;

static void probe_init(probe *p) {
  memset(p, 0, sizeof *p);
  p->magic = PROBE_LIVE;
  stats_init(&p->ps);
  p->src = &p->ps;
}

static void probe_release(probe *p) {
  for (size_t i = 0; i < p->nkept; i++)
    engram_node_free(p->kept[i]);
  free(p->kept);
  p->kept = NULL;
  p->nkept = p->capkept = 0;
}

static void probe_request(probe *p, size_t n) {
  p->requested = p->requested > UINT64_MAX - n ? UINT64_MAX : p->requested + n;
  CHECK(api_request(p->s, n) == 0);
}

/* Checks every field the producer set; returns the item's position. */
static uint64_t check_node(const engram_node *n) {
  unsigned long long pos = 0;
  int used = 0;
  CHECK(n != NULL);
  if (!n)
    return 0;
  CHECK(n->content && strlen(n->content) == n->content_len);
  CHECK(sscanf(n->content, "item-%llu%n", &pos, &used) == 1 &&
        (size_t)used == n->content_len);
  char id[ENGRAM_ID_LEN + 1];
  make_id(id, pos);
  CHECK(strcmp(n->id, id) == 0);
  CHECK(n->ns && strcmp(n->ns, "test-ns") == 0);
  char meta[48];
  snprintf(meta, sizeof meta, "{\"pos\":%llu}", pos);
  CHECK(n->metadata && strcmp(n->metadata, meta) == 0);
  CHECK(n->embedding_dim == EMB_DIM && n->embedding);
  if (n->embedding)
    for (unsigned i = 0; i < EMB_DIM && i < n->embedding_dim; i++)
      CHECK(n->embedding[i] == emb_value(pos, i));
  CHECK(n->type == (engram_type)(pos % ENGRAM_TYPE_COUNT));
  return pos;
}

static void on_item(engram_stream *s, const engram_node *n, void *data) {
  probe *p = data;
  CHECK(p->magic == PROBE_LIVE);
  CHECK(s == p->s);
  CHECK(p->items < p->requested); /* never more than asked */
  uint64_t pos = check_node(n);
  if (p->any)
    CHECK(pos > p->last_pos);
  p->last_pos = pos;
  p->any = 1;
  p->items++;
  if (p->keep) {
    if (p->nkept == p->capkept) {
      p->capkept = p->capkept ? 2 * p->capkept : 16;
      p->kept = realloc(p->kept, p->capkept * sizeof *p->kept);
      CHECK(p->kept != NULL);
    }
    p->kept[p->nkept++] = engram_node_copy(n);
  }
  if (p->cancel_at_item && p->items == p->cancel_at_item) {
    api_cancel(s);
    if (p->cancel_twice)
      api_cancel(s);
    CHECK(p->done == 0);
    return;
  }
  if (p->request_each)
    probe_request(p, 1);
  else if (p->batch && p->items == p->requested)
    probe_request(p, p->batch);
  CHECK(p->done == 0);
}

static void on_error(engram_stream *s, int code, const char *message,
                     void *data) {
  probe *p = data;
  CHECK(p->magic == PROBE_LIVE);
  CHECK(s == p->s);
  CHECK(code == ENGRAM_EIO);
  CHECK(message && strncmp(message, "item ", 5) == 0);
  p->errors++;
  if (p->cancel_at_error && p->errors == p->cancel_at_error) {
    api_cancel(s);
    CHECK(p->done == 0);
  }
}

static void on_done(engram_stream *s, int status, void *data) {
  probe *p = data;
  CHECK(p->magic == PROBE_LIVE); /* exactly once */
  CHECK(s == p->s);
  CHECK(g_api_depth == 0); /* never inside request, cancel, set_deadline */
  p->done++;
  p->status = status;
  p->delivered = engram_stream_delivered(s);
  p->failed = engram_stream_failed(s);
  CHECK(p->delivered == p->items);
  CHECK(p->failed == p->errors || p->no_error_cb);
  if (p->src) {
    /* Nothing of the producer runs once done is told. */
    CHECK(!p->src->busy);
    CHECK(atomic_load(&p->src->running) == 0);
  }
  p->magic = PROBE_DONE; /* poison: any later callback is caught */
  p->s = NULL;
  if (p->cancel_in_done) {
    api_cancel(s);
    api_cancel(s);
    CHECK(api_request(s, 1) == 0);
    CHECK(api_deadline(s, 1) == ENGRAM_ECLOSED);
  }
}

static engram_stream_cbs probe_cbs(probe *p) {
  engram_stream_cbs cbs = {on_item, on_error, on_done, p};
  return cbs;
}

static engram_stream *probe_open(probe *p, const prod_cfg *cfg) {
  engram_stream_cbs cbs = probe_cbs(p);
  p->s = produce(&cbs, cfg, &p->ps);
  return p->s;
}

/* The kept copies are items 0.. of cfg's source, intact. */
static void check_kept(const probe *p, const prod_cfg *cfg) {
  assert_int_equal(p->nkept, p->items);
  for (size_t k = 0; k < p->nkept; k++)
    assert_int_equal(check_node(p->kept[k]), nth_item_pos(cfg, k));
}

/* Runs the loop until p has n items (a bounded wait: load may slow the
 * pool, and a test must not confuse slow with wrong). */
static uint64_t g_want_items;
static int items_reached(void *arg) {
  return ((probe *)arg)->items >= g_want_items;
}
static void wait_items(probe *p, uint64_t n) {
  g_want_items = n;
  assert_true(tl_run_until(&F->loop, items_reached, p, 20000));
}

/* Runs the loop until the producer's worker is inside a chunk. */
static int chunk_running(void *arg) {
  return atomic_load(&((prod_stats *)arg)->running) != 0;
}
static void wait_running(prod_stats *st) {
  assert_true(tl_run_until(&F->loop, chunk_running, st, 20000));
}

/* ============================================================== tests */

/* --------------------------------------------------------------- demand */

static void test_nothing_before_request(void **state) {
  (void)state;
  assert_int_equal(engram_stream_request(NULL, 1), ENGRAM_EINVAL);
  assert_int_equal(engram_stream_set_deadline(NULL, 1), ENGRAM_EINVAL);
  engram_stream_cancel(NULL);

  /* A stream without a producer cannot be asked for anything. */
  probe bare;
  probe_init(&bare);
  engram_stream_cbs bcbs = probe_cbs(&bare);
  engram_stream *b = stream_new(&F->rt, &bcbs);
  assert_non_null(b);
  assert_int_equal(engram_stream_request(b, 1), ENGRAM_EINVAL);
  stream_discard(b);
  assert_int_equal(bare.done, 0);

  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_cfg cfg = {.async = async, .total = 100, .chunk = 3};
    probe_open(&p, &cfg);
    tl_run_for(&F->loop, 20);
    assert_int_equal(p.ps.pulls, 0);
    assert_int_equal(p.ps.produced, 0);
    assert_int_equal(p.ps.chunks, 0);

    assert_int_equal(api_request(p.s, 0), 0); /* request(0) does nothing */
    tl_run_for(&F->loop, 5);
    assert_int_equal(p.ps.pulls, 0);
    assert_int_equal(p.ps.produced, 0);

    probe_request(&p, 3);
    if (!async)
      assert_int_equal(p.items, 3); /* delivered inside request */
    wait_items(&p, 3);
    tl_run_for(&F->loop, 10);
    assert_int_equal(p.items, 3);
    assert_int_equal(p.ps.produced, 3);
    assert_int_equal(p.ps.busy, 0);
    assert_int_equal(F->rt.work_inflight, 0);
    assert_int_equal(p.done, 0);

    api_cancel(p.s);
    assert_int_equal(p.done, 0); /* never inside cancel */
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.ps.cancels, 1);
    assert_int_equal(p.ps.produced, 3);
    assert_int_equal(p.ps.chunks_after_cancel, 0);
    assert_int_equal(p.ps.destroyed, 1);
  }
  finish_test();
}

static void test_demand_one_at_a_time(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.request_each = 1;
    prod_cfg cfg = {.async = async, .total = 50, .chunk = 4};
    probe_open(&p, &cfg);
    probe_request(&p, 1);
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 50);
    assert_int_equal(p.ps.produced, 50);
    assert_true(p.ps.max_demand <= 1);
    if (async)
      assert_int_equal(p.ps.chunks, 50); /* each chunk sized to demand 1 */
  }
  /* Batches of 7: the producer never sees more than 7 outstanding. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.batch = 7;
    prod_cfg cfg = {.async = async, .total = 40, .chunk = 5};
    probe_open(&p, &cfg);
    probe_request(&p, 7);
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 40);
    assert_true(p.ps.max_demand <= 7);
  }
  finish_test();
}

static void test_demand_budget_endless_source(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 4};
    probe_open(&p, &cfg);
    probe_request(&p, 10);
    wait_items(&p, 10);
    tl_run_for(&F->loop, 10);
    assert_int_equal(p.items, 10);
    assert_int_equal(p.ps.produced, 10);
    assert_int_equal(p.ps.busy, 0);
    assert_int_equal(F->rt.work_inflight, 0);
    /* Demand adds up; a huge request saturates instead of wrapping. */
    probe_request(&p, 5);
    wait_items(&p, 15);
    tl_run_for(&F->loop, 10);
    assert_int_equal(p.items, 15);
    assert_int_equal(p.done, 0);
    p.cancel_at_item = 40;
    probe_request(&p, SIZE_MAX);
    probe_request(&p, SIZE_MAX);
    uv_run(&F->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.items, 40);
    assert_int_equal(p.ps.produced, 40);
    assert_int_equal(p.ps.chunks_after_cancel, 0);
  }
  finish_test();
}

/* ----------------------------------------------------------------- done */

static void test_done_once_at_end(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    for (uint64_t total = 0; total <= 10; total += 10) {
      probe p;
      probe_init(&p);
      prod_cfg cfg = {.async = async, .total = total, .chunk = 3};
      probe_open(&p, &cfg);
      probe_request(&p, 1000);
      assert_int_equal(p.done, 0); /* sync: finished inside, told later */
      uv_run(&F->loop, UV_RUN_DEFAULT);
      assert_int_equal(p.done, 1);
      assert_int_equal(p.status, 0);
      assert_int_equal(p.items, total);
      assert_int_equal(p.delivered, total);
      assert_int_equal(p.ps.cancels, 0);
      assert_int_equal(p.ps.destroyed, 1);
      tl_run_for(&F->loop, 10); /* nothing more may fire */
      assert_int_equal(p.done, 1);
    }
  }
  /* Request exactly what there is: the end is still found and told. */
  probe p;
  probe_init(&p);
  prod_cfg cfg = {.async = 1, .total = 10, .chunk = 3, .err_every = 5};
  probe_open(&p, &cfg);
  probe_request(&p, 8); /* items 0-3 5-8, errors at 4 and 9 */
  uv_run(&F->loop, UV_RUN_DEFAULT);
  assert_int_equal(p.done, 1);
  assert_int_equal(p.status, 0);
  assert_int_equal(p.items, 8);
  assert_int_equal(p.errors, 2);
  finish_test();
}

/* A consumer that frees its state inside done: a callback of the stream
 * after done would be a heap-use-after-free, which ASan reports. */
static struct {
  int done;
  int status;
  uint64_t items;
} g_freed;

static void on_done_free(engram_stream *s, int status, void *data) {
  probe *p = data;
  on_done(s, status, p);
  g_freed.done++;
  g_freed.status = status;
  g_freed.items = p->items;
  free(p);
}

static void test_no_callback_after_done(void **state) {
  (void)state;
  for (int mode = 0; mode < 4; mode++) {
    memset(&g_freed, 0, sizeof g_freed);
    prod_stats st;
    stats_init(&st);
    probe *p = malloc(sizeof *p);
    assert_non_null(p);
    probe_init(p);
    p->src = &st;
    p->request_each = 1;
    if (mode >= 2)
      p->cancel_at_item = 4;
    prod_cfg cfg = {.async = mode & 1, .total = 12, .chunk = 2, .err_every = 3};
    engram_stream_cbs cbs = {on_item, on_error, on_done_free, p};
    p->s = produce(&cbs, &cfg, &st);
    probe_request(p, 1);
    uv_run(&F->loop, UV_RUN_DEFAULT);
    tl_run_for(&F->loop, 10);
    assert_int_equal(g_freed.done, 1);
    if (mode >= 2) {
      assert_int_equal(g_freed.status, ENGRAM_ECANCELED);
      assert_int_equal(g_freed.items, 4);
    } else {
      assert_int_equal(g_freed.status, 0);
      assert_int_equal(g_freed.items, 8);
    }
    assert_int_equal(st.destroyed, 1);
  }
  finish_test();
}

/* --------------------------------------------------------------- cancel */

static void run_dry(void) {
  uv_run(&F->loop, UV_RUN_DEFAULT);
}

static void test_cancel_from_item(void **state) {
  (void)state;
  for (int twice = 0; twice <= 1; twice++)
    for (int async = 0; async <= 1; async++) {
      probe p;
      probe_init(&p);
      p.request_each = 1;
      p.cancel_at_item = 5;
      p.cancel_twice = twice;
      prod_cfg cfg = {.async = async, .total = INF, .chunk = 3};
      probe_open(&p, &cfg);
      probe_request(&p, 1);
      run_dry();
      assert_int_equal(p.done, 1);
      assert_int_equal(p.status, ENGRAM_ECANCELED);
      assert_int_equal(p.items, 5);
      assert_int_equal(p.ps.produced, 5);
      assert_int_equal(p.ps.cancels, 1);
      assert_int_equal(p.ps.chunks_after_cancel, 0);
      assert_int_equal(p.ps.destroyed, 1);
    }
  /* The consumer asked for everything and cancels at item 5 of a chunk. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.cancel_at_item = 5;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 8};
    probe_open(&p, &cfg);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.items, 5);
    assert_int_equal(p.ps.produced, 5);
    assert_int_equal(p.ps.chunks_after_cancel, 0);
  }
  finish_test();
}

static void test_cancel_from_error(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.cancel_at_error = 2; /* errors at 2, 5: items 0, 1, 3, 4 before */
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 8, .err_every = 3};
    probe_open(&p, &cfg);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.errors, 2);
    assert_int_equal(p.items, 4);
    assert_int_equal(p.ps.produced, 4);
    assert_int_equal(p.ps.cancels, 1);
    assert_int_equal(p.ps.chunks_after_cancel, 0);
  }
  finish_test();
}

static void test_cancel_from_done(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++)
    for (int cancelled = 0; cancelled <= 1; cancelled++) {
      probe p;
      probe_init(&p);
      p.cancel_in_done = 1;
      p.request_each = 1;
      if (cancelled)
        p.cancel_at_item = 2;
      prod_cfg cfg = {.async = async, .total = 5, .chunk = 2};
      probe_open(&p, &cfg);
      probe_request(&p, 1);
      run_dry();
      tl_run_for(&F->loop, 5);
      assert_int_equal(p.done, 1);
      assert_int_equal(p.status, cancelled ? ENGRAM_ECANCELED : 0);
      assert_int_equal(p.items, cancelled ? 2 : 5);
      assert_int_equal(p.ps.cancels, cancelled ? 1 : 0);
      assert_int_equal(p.ps.destroyed, 1);
    }
  finish_test();
}

static void test_cancel_outside_callbacks(void **state) {
  (void)state;
  /* Before any request: the producer is never pulled. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_cfg cfg = {.async = async, .total = INF};
    probe_open(&p, &cfg);
    api_cancel(p.s);
    api_cancel(p.s);
    assert_int_equal(p.done, 0);
    assert_int_equal(api_request(p.s, 10), 0); /* ending: ignored */
    assert_int_equal(api_deadline(p.s, 1), ENGRAM_ECLOSED);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.ps.pulls, 0);
    assert_int_equal(p.ps.produced, 0);
    assert_int_equal(p.ps.cancels, 1);
  }
  /* Twice in a row while a slow chunk is on the pool: done waits for the
   * chunk to come back, and nothing the chunk read is delivered. */
  probe p;
  probe_init(&p);
  prod_cfg cfg = {.async = 1, .total = INF, .chunk = 4, .work_us = 60000};
  probe_open(&p, &cfg);
  probe_request(&p, 5);
  wait_running(&p.ps);
  assert_int_equal(p.ps.busy, 1);
  api_cancel(p.s);
  api_cancel(p.s);
  assert_int_equal(p.done, 0);
  run_dry(); /* on_done checks the chunk was back before done */
  assert_int_equal(p.done, 1);
  assert_int_equal(p.status, ENGRAM_ECANCELED);
  assert_int_equal(p.items, 0);
  assert_int_equal(p.ps.cancels, 1);
  assert_int_equal(p.ps.cancels_while_busy, 1);
  assert_int_equal(p.ps.chunks, 1);
  finish_test();
}

static void cancel_if_live(void *data) {
  probe *p = data;
  if (p->magic == PROBE_LIVE) /* after done the handle is gone */
    api_cancel(p->s);
}

/* Cancel from a timer (0..4 ms) while chunks taking 0.2..1.7 ms run on the
 * pool: one stream at a time, then 32 at a time so that most chunks wait in
 * the pool queue (half of those are dropped with uv_cancel). Every stream
 * ends once, with 0 or ECANCELED, and no chunk starts after the cancel. */
static void test_cancel_races_chunk(void **state) {
  (void)state;
  unsigned ok = 0, cancelled = 0, hit_running = 0, hit_queued = 0;
  unsigned dropped = 0;
  /* One stream at a time: the cancel meets a running chunk. */
  for (unsigned i = 0; i < 300; i++) {
    probe p;
    probe_init(&p);
    prod_cfg cfg = {.async = 1,
                    .total = i % 3 == 0 ? 3 : INF,
                    .chunk = 1,
                    .work_us = 200 + (long)((i * 677u) % 1500u)};
    probe_open(&p, &cfg);
    probe_request(&p, SIZE_MAX);
    tl_after(&F->loop, (i / 3) % 4, cancel_if_live, &p);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.ps.destroyed, 1);
    assert_int_equal(p.ps.chunks_after_cancel, 0);
    if (p.status == 0) {
      assert_int_equal(p.items, 3);
      assert_int_equal(cfg.total, 3);
      ok++;
    } else {
      assert_int_equal(p.status, ENGRAM_ECANCELED);
      assert_int_equal(p.ps.cancels, 1);
      if (cfg.total == 3)
        assert_true(p.items < 3);
      cancelled++;
    }
    hit_running += p.ps.cancels_while_running;
  }
  /* 32 at a time on one pool thread: most cancels meet a queued chunk. */
  enum { BATCH = 32 };
  probe *ps = calloc(BATCH, sizeof *ps);
  assert_non_null(ps);
  for (unsigned round = 0; round < 15; round++) {
    for (unsigned i = 0; i < BATCH; i++) {
      probe_init(&ps[i]);
      prod_cfg cfg = {.async = 1,
                      .total = i % 2 ? 4 : INF,
                      .chunk = 1 + i % 3,
                      .work_us = 100 + (long)((i * 131u + round) % 400u),
                      .uv_cancel = (i / 2) % 2};
      probe_open(&ps[i], &cfg);
      probe_request(&ps[i], SIZE_MAX);
      tl_after(&F->loop, (i + round) % 5, cancel_if_live, &ps[i]);
    }
    run_dry();
    for (unsigned i = 0; i < BATCH; i++) {
      probe *p = &ps[i];
      assert_int_equal(p->done, 1);
      assert_int_equal(p->ps.chunks_after_cancel, 0);
      assert_int_equal(p->ps.destroyed, 1);
      if (p->status == 0)
        assert_int_equal(p->items, 4);
      else
        assert_int_equal(p->status, ENGRAM_ECANCELED);
      if (p->ps.cancels_while_busy > p->ps.cancels_while_running)
        hit_queued++;
      hit_running += p->ps.cancels_while_running;
      dropped += p->ps.uv_cancelled;
    }
  }
  free(ps);
  print_message("cancel race: %u ended, %u cancelled, %u cancels met a "
                "running chunk, %u one not running (queued or returning; %u "
                "dropped by uv_cancel)\n",
                ok, cancelled, hit_running, hit_queued, dropped);
  assert_true(hit_running > 0);
  assert_true(hit_queued > 0);
  assert_true(dropped > 0);
  finish_test();
}

/* ------------------------------------------------------------- deadline */

static void test_deadline_keeps_items(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  p.keep = 1;
  prod_cfg cfg = {.async = 1, .total = INF, .chunk = 1, .work_us = 2000};
  probe_open(&p, &cfg);
  uint64_t t0 = now_ms();
  assert_int_equal(api_deadline(p.s, 60), 0);
  probe_request(&p, SIZE_MAX);
  run_dry();
  uint64_t elapsed = now_ms() - t0;
  assert_int_equal(p.done, 1);
  assert_int_equal(p.status, ENGRAM_ETIMEDOUT);
  assert_true(elapsed >= 59);
  assert_true(p.items >= 1);
  assert_int_equal(p.delivered, p.items);
  check_kept(&p, &cfg);
  assert_int_equal(p.ps.cancels, 1);
  assert_int_equal(p.ps.chunks_after_cancel, 0);
  probe_release(&p);

  /* Never asked: the deadline still ends it, and nothing was produced. */
  probe q;
  probe_init(&q);
  prod_cfg qc = {.async = 0, .total = INF};
  probe_open(&q, &qc);
  assert_int_equal(api_deadline(q.s, 10), 0);
  run_dry();
  assert_int_equal(q.status, ENGRAM_ETIMEDOUT);
  assert_int_equal(q.ps.pulls, 0);

  /* A later deadline replaces the earlier one. */
  probe r;
  probe_init(&r);
  probe_open(&r, &qc);
  t0 = now_ms();
  assert_int_equal(api_deadline(r.s, 5), 0);
  assert_int_equal(api_deadline(r.s, 200), 0);
  tl_run_for(&F->loop, 20);
  assert_int_equal(r.done, 0);
  run_dry();
  assert_int_equal(r.status, ENGRAM_ETIMEDOUT);
  assert_true(now_ms() - t0 >= 199);

  /* Finished before the deadline: 0, and the deadline timer does not keep
   * the loop alive (run_dry returns long before 5 s). */
  probe d;
  probe_init(&d);
  prod_cfg dc = {.async = 1, .total = 6, .chunk = 2};
  probe_open(&d, &dc);
  t0 = now_ms();
  assert_int_equal(api_deadline(d.s, 5000), 0);
  probe_request(&d, SIZE_MAX);
  run_dry();
  assert_int_equal(d.status, 0);
  assert_int_equal(d.items, 6);
  assert_true(now_ms() - t0 < 2000);

  /* Finished, not yet told: too late for a deadline. */
  probe e;
  probe_init(&e);
  prod_cfg ec = {.async = 0, .total = 3};
  probe_open(&e, &ec);
  probe_request(&e, 3);
  assert_int_equal(api_deadline(e.s, 1), ENGRAM_ECLOSED);
  run_dry();
  assert_int_equal(e.status, 0);
  finish_test();
}

/* Deadlines of 0..8 ms (some 0, some 500) against three chunks of 0.1..0.7
 * ms, four streams at a time: each stream ends exactly once, with 0 and all
 * its items or ETIMEDOUT and fewer, and no chunk starts after the deadline. */
static void test_deadline_races_end(void **state) {
  (void)state;
  enum { GROUP = 4, ROUNDS = 100 };
  unsigned ended = 0, ended_close = 0, timed_out = 0;
  uint64_t deadlines[GROUP];
  probe *ps = calloc(GROUP, sizeof *ps);
  assert_non_null(ps);
  for (unsigned round = 0; round < ROUNDS; round++) {
    for (unsigned i = 0; i < GROUP; i++) {
      unsigned k = round * GROUP + i;
      probe_init(&ps[i]);
      ps[i].request_each = k % 2;
      prod_cfg cfg = {.async = 1,
                      .total = 3,
                      .chunk = 1,
                      .work_us = 100 + (long)((k * 397u) % 600u)};
      probe_open(&ps[i], &cfg);
      uint64_t deadline = k % 10 == 0 ? 0 : k % 10 == 5 ? 500 : k % 9;
      deadlines[i] = deadline;
      assert_int_equal(api_deadline(ps[i].s, deadline), 0);
      probe_request(&ps[i], ps[i].request_each ? 1 : SIZE_MAX);
    }
    run_dry();
    for (unsigned i = 0; i < GROUP; i++) {
      probe *p = &ps[i];
      assert_int_equal(p->done, 1);
      assert_int_equal(p->ps.destroyed, 1);
      assert_int_equal(p->ps.chunks_after_cancel, 0);
      if (p->status == 0) {
        assert_int_equal(p->items, 3);
        assert_int_equal(p->ps.cancels, 0);
        ended++;
        ended_close += deadlines[i] < 500;
      } else {
        assert_int_equal(p->status, ENGRAM_ETIMEDOUT);
        assert_true(p->items < 3);
        assert_int_equal(p->ps.cancels, 1);
        timed_out++;
      }
    }
  }
  free(ps);
  print_message("deadline race: %u ended (%u with a deadline under 10 ms), "
                "%u timed out\n",
                ended, ended_close, timed_out);
  assert_true(ended > 0);
  assert_true(timed_out > 0);
  finish_test();
}

/* ---------------------------------------------------------------- pause */

typedef struct pause_watch {
  probe *p;
  unsigned ticks;
} pause_watch;

static void pause_tick(uv_timer_t *t) {
  pause_watch *w = t->data;
  w->ticks++;
  CHECK(F->rt.work_inflight == 0);
  CHECK(!w->p->ps.busy);
  CHECK(atomic_load(&w->p->ps.running) == 0);
  CHECK(w->p->ps.produced == 5);
  CHECK(w->p->items == 5);
}

static void test_pause_holds_no_thread(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  prod_cfg cfg = {.async = 1, .total = 12, .chunk = 2, .work_us = 500};
  probe_open(&p, &cfg);
  probe_request(&p, 5);
  wait_items(&p, 5);

  pause_watch w = {&p, 0};
  uv_timer_t mon;
  uv_timer_init(&F->loop, &mon);
  mon.data = &w;
  uv_timer_start(&mon, pause_tick, 0, 10);
  tl_run_for(&F->loop, 200);
  uv_timer_stop(&mon);
  uv_close((uv_handle_t *)&mon, NULL);
  assert_true(w.ticks >= 3); /* 20 when the machine is not loaded */
  assert_int_equal(g_violations, 0);
  assert_int_equal(p.done, 0);

  p.request_each = 1;
  probe_request(&p, 1);
  run_dry();
  assert_int_equal(p.done, 1);
  assert_int_equal(p.status, 0);
  assert_int_equal(p.items, 12);
  finish_test();
}

/* --------------------------------------------------------------- errors */

static void test_item_errors(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++)
    for (int with_cb = 0; with_cb <= 1; with_cb++) {
      uint64_t before = F->rt.items_failed;
      probe p;
      probe_init(&p);
      prod_cfg cfg = {.async = async, .total = 20, .chunk = 3, .err_every = 4};
      engram_stream_cbs cbs = probe_cbs(&p);
      if (!with_cb) {
        cbs.error = NULL;
        p.no_error_cb = 1;
      }
      p.s = produce(&cbs, &cfg, &p.ps);
      probe_request(&p, SIZE_MAX);
      run_dry();
      assert_int_equal(p.done, 1);
      assert_int_equal(p.status, 0);
      assert_int_equal(p.items, 15);
      assert_int_equal(p.errors, with_cb ? 5 : 0);
      assert_int_equal(p.failed, 5);
      assert_int_equal(p.ps.errors, 5);
      assert_int_equal(F->rt.items_failed - before, 5);
    }
  /* A failed stream ends with one clear status and keeps what came. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 3, .fail_at = 7};
    probe_open(&p, &cfg);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_EIO);
    assert_int_equal(p.items, 7);
  }
  finish_test();
}

/* ------------------------------------------------------- many at a time */

enum { MANY = 10000 };

static void test_many_streams(void **state) {
  (void)state;
  probe *ps = calloc(MANY, sizeof *ps);
  assert_non_null(ps);
  atomic_store(&g_pool_max, 0);
  prod_cfg cfg = {.async = 1, .total = 6, .chunk = 2, .spin = 200};
  for (unsigned i = 0; i < MANY; i++) {
    probe_init(&ps[i]);
    ps[i].request_each = i % 2;
    probe_open(&ps[i], &cfg);
  }
  assert_int_equal(F->rt.streams_open, MANY);
  uint64_t t0 = now_ms();
  for (unsigned i = 0; i < MANY; i++)
    probe_request(&ps[i], ps[i].request_each ? 1 : SIZE_MAX);
  run_dry();
  print_message("%u streams of 6 items in 3 chunks each: %llu ms\n", MANY,
                (unsigned long long)(now_ms() - t0));
  for (unsigned i = 0; i < MANY; i++) {
    assert_int_equal(ps[i].done, 1);
    assert_int_equal(ps[i].status, 0);
    assert_int_equal(ps[i].items, 6);
    assert_int_equal(ps[i].ps.produced, 6);
    assert_int_equal(ps[i].ps.destroyed, 1);
  }
  assert_int_equal(atomic_load(&g_pool_max), 1); /* UV_THREADPOOL_SIZE=1 held */
  free(ps);
  finish_test();
}

typedef struct many_cancel {
  probe *ps;
  unsigned third;
} many_cancel;

/* Class 4 in thirds: at 3 ms, 60 ms and 150 ms (all of it takes ~250). */
static void cancel_class4(void *data) {
  many_cancel *m = data;
  for (unsigned i = 4; i < MANY; i += 6)
    if ((i / 6) % 3 == m->third)
      cancel_if_live(&m->ps[i]);
}

/* Classes by i % 6: 0 plain; 1 cancel from item 3; 2 deadline 0..240 ms;
 * 3 cancel before any request; 4 cancel from a timer at 3, 60 or 150 ms;
 * 5 per-item errors. Every other stream of a class uv_cancel()s its queued
 * chunks. */
static void test_many_streams_mixed(void **state) {
  (void)state;
  probe *ps = calloc(MANY, sizeof *ps);
  assert_non_null(ps);
  uint64_t failed_before = F->rt.items_failed;
  for (unsigned i = 0; i < MANY; i++) {
    probe *p = &ps[i];
    probe_init(p);
    prod_cfg cfg = {.async = 1,
                    .total = 6,
                    .chunk = 2,
                    .spin = 100,
                    .uv_cancel = (int)((i / 6) % 2)};
    if (i % 6 == 5) {
      cfg.err_every = 3; /* errors at 2, 5, 8 */
      cfg.total = 9;
    }
    if (i % 6 == 1) {
      p->request_each = 1;
      p->cancel_at_item = 3;
    }
    probe_open(p, &cfg);
    if (i % 6 == 2)
      assert_int_equal(api_deadline(p->s, (i % 7) * 40), 0);
    if (i % 6 == 3)
      api_cancel(p->s);
    probe_request(p, p->request_each ? 1 : SIZE_MAX);
  }
  many_cancel m[3] = {{ps, 0}, {ps, 1}, {ps, 2}};
  tl_after(&F->loop, 3, cancel_class4, &m[0]);
  tl_after(&F->loop, 60, cancel_class4, &m[1]);
  tl_after(&F->loop, 150, cancel_class4, &m[2]);
  run_dry();
  unsigned timed_out = 0, cut = 0, dropped = 0;
  uint64_t errors = 0;
  for (unsigned i = 0; i < MANY; i++) {
    probe *p = &ps[i];
    assert_int_equal(p->done, 1);
    assert_int_equal(p->ps.destroyed, 1);
    assert_int_equal(p->ps.chunks_after_cancel, 0);
    errors += p->errors;
    dropped += p->ps.uv_cancelled;
    switch (i % 6) {
    case 0:
      assert_int_equal(p->status, 0);
      assert_int_equal(p->items, 6);
      break;
    case 1:
      assert_int_equal(p->status, ENGRAM_ECANCELED);
      assert_int_equal(p->items, 3);
      assert_int_equal(p->ps.produced, 3);
      break;
    case 2:
      if (p->status == ENGRAM_ETIMEDOUT) {
        assert_true(p->items < 6);
        timed_out++;
      } else {
        assert_int_equal(p->status, 0);
        assert_int_equal(p->items, 6);
      }
      break;
    case 3:
      assert_int_equal(p->status, ENGRAM_ECANCELED);
      assert_int_equal(p->ps.pulls, 0);
      assert_int_equal(p->items, 0);
      break;
    case 4:
      if (p->status == ENGRAM_ECANCELED) {
        assert_true(p->items < 6);
        cut++;
      } else {
        assert_int_equal(p->status, 0);
        assert_int_equal(p->items, 6);
      }
      break;
    case 5:
      assert_int_equal(p->status, 0);
      assert_int_equal(p->items, 6);
      assert_int_equal(p->errors, 3);
      assert_int_equal(p->failed, 3);
      break;
    }
  }
  assert_int_equal(F->rt.items_failed - failed_before, errors);
  print_message("mixed: %u of %u deadlines and %u of %u timer cancels cut "
                "streams short; %u queued chunks dropped by uv_cancel\n",
                timed_out, (MANY + 3) / 6, cut, (MANY + 1) / 6, dropped);
  free(ps);
  finish_test();
}

/* --------------------------------------------------- producer mistakes */

/* A producer that keeps going when it should stop: the stream's guards keep
 * the contract for the consumer anyway. */
typedef struct sloppy {
  engram_stream *s;
  int emit_rc[4];
  int cancels;
  int destroyed;
} sloppy;

static void sloppy_pull(engram_stream *s, void *impl) {
  sloppy *k = impl;
  entry e;
  entry_fill(&e, 0, 0);
  engram_node n;
  memset(&n, 0, sizeof n);
  make_id(n.id, 0);
  n.ns = "test-ns";
  n.content = e.content;
  n.content_len = strlen(e.content);
  n.metadata = e.meta;
  n.embedding = e.emb;
  n.embedding_dim = EMB_DIM;
  k->emit_rc[0] = stream_emit(s, &n); /* demand 3: delivered */
  stream_finish(s, 0);
  k->emit_rc[1] = stream_emit(s, &n); /* finished, demand left: refused */
  stream_emit_error(s, ENGRAM_EIO, "item 9 failed"); /* finished: dropped */
  stream_finish(s, ENGRAM_EIO);                      /* idempotent */
  CHECK(stream_demand(s) == 0);
  CHECK(!stream_open(s));
}

static void sloppy_cancel(engram_stream *s, void *impl) {
  (void)s;
  ((sloppy *)impl)->cancels++; /* "busy": finishes later, from a timer */
}

static void sloppy_destroy(void *impl) {
  ((sloppy *)impl)->destroyed++;
}

static const stream_producer sloppy_producer = {sloppy_pull, sloppy_cancel,
                                                sloppy_destroy};

static void sloppy_late(void *data) {
  sloppy *k = data;
  entry e;
  entry_fill(&e, 1, 0);
  engram_node n;
  memset(&n, 0, sizeof n);
  n.content = e.content;
  n.content_len = strlen(e.content);
  k->emit_rc[3] = stream_emit(k->s, &n); /* cancelling: refused */
  stream_finish(k->s, 0);
}

static void test_producer_mistakes_guarded(void **state) {
  (void)state;
  probe p;
  probe_init(&p);
  p.src = NULL;
  sloppy k = {0};
  engram_stream_cbs cbs = probe_cbs(&p);
  k.s = p.s = stream_new(&F->rt, &cbs);
  assert_non_null(p.s);
  stream_attach(p.s, &sloppy_producer, &k);
  probe_request(&p, 3);
  assert_int_equal(k.emit_rc[0], 1);
  assert_int_equal(k.emit_rc[1], 0);
  run_dry();
  assert_int_equal(p.done, 1);
  assert_int_equal(p.status, 0); /* the first ending counts */
  assert_int_equal(p.items, 1);
  assert_int_equal(p.errors, 0);
  assert_int_equal(p.failed, 0);
  assert_int_equal(k.destroyed, 1);

  /* Cancelled while "busy": a late emit is refused, the reason is kept. */
  probe q;
  probe_init(&q);
  q.src = NULL;
  sloppy k2 = {0};
  cbs = probe_cbs(&q);
  k2.s = q.s = stream_new(&F->rt, &cbs);
  assert_non_null(q.s);
  stream_attach(q.s, &sloppy_producer, &k2);
  api_cancel(q.s);
  assert_int_equal(k2.cancels, 1);
  k2.emit_rc[3] = -1;
  tl_after(&F->loop, 1, sloppy_late, &k2);
  run_dry();
  assert_int_equal(k2.emit_rc[3], 0);
  assert_int_equal(q.done, 1);
  assert_int_equal(q.status, ENGRAM_ECANCELED);
  assert_int_equal(q.items, 0);
  assert_int_equal(k2.destroyed, 1);
  finish_test();
}

/* ----------------------------------------------------------------- drain */

static int g_drained;
static void on_drained(rt *r, void *data) {
  (void)r;
  probe *ps = data;
  g_drained++;
  if (!ps)
    return;
  for (unsigned i = 0; i < 30; i++)
    CHECK(ps[i].done == 1); /* after the last done, not before */
}

static void test_drain(void **state) {
  (void)state;
  g_drained = 0;
  rt_drain(&F->rt, on_drained, NULL); /* none open: at once */
  assert_int_equal(g_drained, 1);
  probe ps[30];
  for (unsigned i = 0; i < 30; i++) {
    probe_init(&ps[i]);
    prod_cfg cfg = {.async = i % 3 != 2,
                    .total = INF,
                    .chunk = 2,
                    .work_us = i % 3 == 1 ? 3000 : 0};
    probe_open(&ps[i], &cfg);
    if (i % 3 != 0)
      probe_request(&ps[i], i % 3 == 1 ? SIZE_MAX : 4);
  }
  tl_run_for(&F->loop, 5);
  g_drained = 0;
  g_api_depth++;
  rt_drain(&F->rt, on_drained, ps);
  g_api_depth--;
  assert_int_equal(g_drained, 0);
  run_dry();
  assert_int_equal(g_drained, 1);
  for (unsigned i = 0; i < 30; i++) {
    assert_int_equal(ps[i].done, 1);
    assert_int_equal(ps[i].status, ENGRAM_ECANCELED);
    assert_int_equal(ps[i].ps.chunks_after_cancel, 0);
  }
  finish_test();
}

/* ------------------------------------------------------------------ take */

/* A take(n) of a fresh test source; the probe watches the take stream and
 * checks the source's producer at done. */
static void take_open(probe *p, prod_stats *src, const prod_cfg *cfg, size_t n,
                      int src_has_cbs) {
  probe dummy;
  probe_init(&dummy);
  engram_stream_cbs dcbs = probe_cbs(&dummy); /* replaced by take */
  stats_init(src);
  engram_stream *s = produce(src_has_cbs ? &dcbs : NULL, cfg, src);
  engram_stream_cbs cbs = probe_cbs(p);
  assert_int_equal(engram_stream_take(s, n, &cbs, &p->s), 0);
  p->src = src;
}

static void test_take_exact(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 4};
    take_open(&p, &src, &cfg, 5, async);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 5);
    assert_int_equal(src.produced, 5);
    assert_true(src.max_demand <= 5);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.chunks_after_cancel, 0);
    assert_int_equal(src.destroyed, 1);
  }
  /* Larger than the source: everything, 0, the source never cancelled. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = 3, .chunk = 2};
    take_open(&p, &src, &cfg, 10, 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 3);
    assert_int_equal(src.cancels, 0);
    assert_int_equal(src.destroyed, 1);
  }
  /* The source's own ending passes through: its error, its deadline. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 3, .fail_at = 4};
    take_open(&p, &src, &cfg, 10, 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, ENGRAM_EIO);
    assert_int_equal(p.items, 4);
    assert_int_equal(src.cancels, 0);
  }
  {
    prod_stats src;
    stats_init(&src);
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 1, .work_us = 2000};
    engram_stream *s = produce(NULL, &cfg, &src);
    assert_int_equal(api_deadline(s, 40), 0);
    probe p;
    probe_init(&p);
    p.src = &src;
    engram_stream_cbs cbs = probe_cbs(&p);
    assert_int_equal(engram_stream_take(s, 100, &cbs, &p.s), 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, ENGRAM_ETIMEDOUT);
    assert_true(p.items >= 1 && p.items < 100);
    assert_int_equal(src.cancels, 1);
  }
  /* take(0): nothing is ever pulled from the source. */
  for (int asked = 0; asked <= 1; asked++) {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF};
    take_open(&p, &src, &cfg, 0, 0);
    if (asked)
      probe_request(&p, 5);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 0);
    assert_int_equal(src.pulls, 0);
    assert_int_equal(src.produced, 0);
    assert_int_equal(src.destroyed, 1);
  }
  finish_test();
}

static void test_take_cancel(void **state) {
  (void)state;
  /* Mid-way, from the item callback. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.request_each = 1;
    p.cancel_at_item = 3;
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 4};
    take_open(&p, &src, &cfg, 10, 0);
    probe_request(&p, 1);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.items, 3);
    assert_int_equal(src.produced, 3);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.chunks_after_cancel, 0);
    assert_int_equal(src.destroyed, 1);
  }
  /* Before any request, from outside, twice. */
  {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF};
    take_open(&p, &src, &cfg, 10, 0);
    api_cancel(p.s);
    api_cancel(p.s);
    assert_int_equal(p.done, 0);
    run_dry();
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(src.pulls, 0);
    assert_int_equal(src.cancels, 1);
  }
  /* While the source's slow chunk is on the pool. */
  {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .work_us = 50000};
    take_open(&p, &src, &cfg, 10, 0);
    probe_request(&p, 10);
    wait_running(&src);
    assert_int_equal(src.busy, 1);
    api_cancel(p.s);
    run_dry();
    assert_int_equal(p.status, ENGRAM_ECANCELED);
    assert_int_equal(p.items, 0);
    assert_int_equal(src.cancels_while_busy, 1);
  }
  /* From inside done, and after the limit was reached. */
  {
    probe p;
    probe_init(&p);
    p.cancel_in_done = 1;
    prod_stats src;
    prod_cfg cfg = {.async = 0, .total = INF};
    take_open(&p, &src, &cfg, 4, 0);
    probe_request(&p, 4);
    assert_int_equal(p.items, 4);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
  }
  /* A deadline on the take reaches the source. */
  {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 1, .work_us = 3000};
    take_open(&p, &src, &cfg, 1000, 0);
    assert_int_equal(api_deadline(p.s, 50), 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, ENGRAM_ETIMEDOUT);
    assert_true(p.items >= 1 && p.items < 1000);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.chunks_after_cancel, 0);
  }
  finish_test();
}

static void test_take_demand(void **state) {
  (void)state;
  /* One at a time: the source never sees more than one outstanding. */
  for (int async = 0; async <= 1; async++) {
    probe p;
    probe_init(&p);
    p.request_each = 1;
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 4};
    take_open(&p, &src, &cfg, 20, 0);
    probe_request(&p, 1);
    run_dry();
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 20);
    assert_int_equal(src.produced, 20);
    assert_true(src.max_demand <= 1);
  }
  /* Asked for 3 of 10: the source makes 3 and waits. */
  {
    probe p;
    probe_init(&p);
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 2};
    take_open(&p, &src, &cfg, 10, 0);
    probe_request(&p, 3);
    wait_items(&p, 3);
    tl_run_for(&F->loop, 20);
    assert_int_equal(p.items, 3);
    assert_int_equal(src.produced, 3);
    assert_true(src.max_demand <= 3);
    assert_int_equal(src.busy, 0);
    assert_int_equal(p.done, 0);
    probe_request(&p, 100);
    run_dry();
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 10);
    assert_int_equal(src.produced, 10);
    assert_true(src.max_demand <= 7);
  }
  /* take(4) of take(10): demand flows through both. */
  for (int async = 0; async <= 1; async++) {
    prod_stats src;
    stats_init(&src);
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 3};
    engram_stream *s = produce(NULL, &cfg, &src);
    engram_stream *inner = NULL;
    assert_int_equal(engram_stream_take(s, 10, NULL, &inner), 0);
    probe p;
    probe_init(&p);
    p.src = &src;
    engram_stream_cbs cbs = probe_cbs(&p);
    assert_int_equal(engram_stream_take(inner, 4, &cbs, &p.s), 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 4);
    assert_int_equal(src.produced, 4);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.destroyed, 1);
  }
  finish_test();
}

static void test_take_errors(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    uint64_t before = F->rt.items_failed;
    probe p;
    probe_init(&p);
    prod_stats src;
    /* Items at 0, 1, 3, 4, 6, 7; errors at 2 and 5 come before the 6th. */
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 2, .err_every = 3};
    take_open(&p, &src, &cfg, 6, 0);
    probe_request(&p, SIZE_MAX);
    run_dry();
    assert_int_equal(p.status, 0);
    assert_int_equal(p.items, 6);
    assert_int_equal(p.errors, 2);
    assert_int_equal(p.failed, 2);
    assert_int_equal(src.errors, 2);
    /* Two items failed: the metric says two, however many combinators
     * the errors passed through. */
    assert_int_equal(F->rt.items_failed - before, 2);
  }
  finish_test();
}

/* Consumer callbacks are checked as engram_search checks them: without an
 * item or a done callback the take would call through NULL later. On an
 * error the caller keeps src. */
static void test_take_bad_arguments(void **state) {
  (void)state;
  prod_stats src;
  stats_init(&src);
  prod_cfg cfg = {.async = 0, .total = INF};
  engram_stream *s = produce(NULL, &cfg, &src);
  probe p;
  probe_init(&p);
  engram_stream_cbs cbs = probe_cbs(&p);
  engram_stream *out = NULL;
  assert_int_equal(engram_stream_take(NULL, 3, &cbs, &out), ENGRAM_EINVAL);
  assert_int_equal(engram_stream_take(s, 3, &cbs, NULL), ENGRAM_EINVAL);
  cbs.item = NULL;
  assert_int_equal(engram_stream_take(s, 3, &cbs, &out), ENGRAM_EINVAL);
  cbs = probe_cbs(&p);
  cbs.done = NULL;
  assert_int_equal(engram_stream_take(s, 3, &cbs, &out), ENGRAM_EINVAL);
  assert_null(out);
  assert_int_equal(F->rt.streams_open, 1);
  /* src is still whole: a valid take adopts it. */
  cbs = probe_cbs(&p);
  assert_int_equal(engram_stream_take(s, 3, &cbs, &p.s), 0);
  p.src = &src;
  probe_request(&p, 10);
  run_dry();
  assert_int_equal(p.status, 0);
  assert_int_equal(p.items, 3);
  assert_int_equal(engram_collect_start(NULL, 1, 0, NULL, NULL, NULL),
                   ENGRAM_EINVAL);
  finish_test();
}

/* --------------------------------------------------------------- collect */

typedef struct cprobe {
  int calls;
  int status;
  size_t n;
  uint64_t failed;
  engram_node *copy[128];
  int cancel_inside;
  engram_collect *c;
} cprobe;

static void on_collect(int status, engram_node **nodes, size_t n,
                       uint64_t failed, void *data) {
  cprobe *cp = data;
  CHECK(g_api_depth == 0);
  CHECK(cp->calls == 0);
  cp->calls++;
  cp->status = status;
  cp->n = n;
  cp->failed = failed;
  CHECK(n <= 128);
  for (size_t i = 0; i < n && i < 128; i++)
    cp->copy[i] = engram_node_copy(nodes[i]);
  if (cp->cancel_inside)
    api_collect_cancel(cp->c); /* inside the callback: harmless */
}

static void cprobe_check(cprobe *cp, const prod_cfg *cfg) {
  for (size_t i = 0; i < cp->n; i++)
    assert_int_equal(check_node(cp->copy[i]), nth_item_pos(cfg, i));
  assert_int_equal(g_violations, 0);
}

static void cprobe_release(cprobe *cp) {
  for (size_t i = 0; i < cp->n && i < 128; i++)
    engram_node_free(cp->copy[i]);
}

static engram_collect *collect_open(cprobe *cp, prod_stats *src,
                                    const prod_cfg *cfg, size_t max,
                                    uint64_t timeout_ms) {
  memset(cp, 0, sizeof *cp);
  stats_init(src);
  engram_stream *s = produce(NULL, cfg, src);
  assert_int_equal(
      engram_collect_start(s, max, timeout_ms, on_collect, cp, &cp->c), 0);
  return cp->c;
}

static void test_collect(void **state) {
  (void)state;
  /* max reached: 0 and max nodes, the source cancelled. */
  for (int async = 0; async <= 1; async++) {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 3};
    collect_open(&cp, &src, &cfg, 7, 0);
    run_dry();
    assert_int_equal(cp.calls, 1);
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 7);
    cprobe_check(&cp, &cfg);
    assert_int_equal(src.produced, 7);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.destroyed, 1);
    cprobe_release(&cp);
  }
  /* The source is shorter: 0 with all of it. */
  for (int async = 0; async <= 1; async++) {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = async, .total = 3, .chunk = 2};
    collect_open(&cp, &src, &cfg, 10, 1000);
    run_dry();
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 3);
    cprobe_check(&cp, &cfg);
    assert_int_equal(src.cancels, 0);
    cprobe_release(&cp);
  }
  /* max 0: nothing asked of the source. */
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF};
    collect_open(&cp, &src, &cfg, 0, 100);
    run_dry();
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 0);
    assert_int_equal(src.pulls, 0);
  }
  /* Per-item errors are counted and passed through. */
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = 20, .chunk = 3, .err_every = 4};
    uint64_t before = F->rt.items_failed;
    collect_open(&cp, &src, &cfg, 100, 0);
    run_dry();
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 15);
    assert_int_equal(cp.failed, 5);
    assert_int_equal(F->rt.items_failed - before, 5);
    cprobe_check(&cp, &cfg);
    cprobe_release(&cp);
  }
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 0, .total = INF, .err_every = 4};
    collect_open(&cp, &src, &cfg, 5, 0); /* items 0 1 2 4 5; error at 3 */
    run_dry();
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 5);
    assert_int_equal(cp.failed, 1);
    cprobe_check(&cp, &cfg);
    cprobe_release(&cp);
  }
  /* The source fails: its status, with what came before. */
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 3, .fail_at = 4};
    collect_open(&cp, &src, &cfg, 10, 0);
    run_dry();
    assert_int_equal(cp.status, ENGRAM_EIO);
    assert_int_equal(cp.n, 4);
    cprobe_check(&cp, &cfg);
    cprobe_release(&cp);
  }
  finish_test();
}

static void collect_cancel_cb(void *data) {
  cprobe *cp = data;
  if (cp->calls == 0)
    api_collect_cancel(cp->c);
}

static void test_collect_deadline_and_cancel(void **state) {
  (void)state;
  /* Deadline: ETIMEDOUT with the items that came in time, intact (the
   * producer scribbles on its buffers after each item). */
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 1, .work_us = 3000};
    uint64_t t0 = now_ms();
    collect_open(&cp, &src, &cfg, 100, 50);
    run_dry();
    assert_int_equal(cp.calls, 1);
    assert_int_equal(cp.status, ENGRAM_ETIMEDOUT);
    assert_true(cp.n >= 1 && cp.n < 100);
    assert_true(now_ms() - t0 >= 49);
    cprobe_check(&cp, &cfg);
    assert_int_equal(src.cancels, 1);
    assert_int_equal(src.chunks_after_cancel, 0);
    cprobe_release(&cp);
  }
  /* Cancel after a while: ECANCELED with the items so far; once more from
   * inside the callback. */
  for (int inside = 0; inside <= 1; inside++) {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 1, .work_us = 2000};
    collect_open(&cp, &src, &cfg, 100, 0);
    cp.cancel_inside = inside;
    tl_after(&F->loop, 30, collect_cancel_cb, &cp);
    run_dry();
    assert_int_equal(cp.calls, 1);
    assert_int_equal(cp.status, ENGRAM_ECANCELED);
    assert_true(cp.n >= 1 && cp.n < 100);
    cprobe_check(&cp, &cfg);
    assert_int_equal(src.cancels, 1);
    cprobe_release(&cp);
  }
  /* Cancel at once: nothing yet, twice is harmless. */
  {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1, .total = INF, .chunk = 2, .work_us = 1000};
    collect_open(&cp, &src, &cfg, 10, 50);
    api_collect_cancel(cp.c);
    api_collect_cancel(cp.c);
    assert_int_equal(cp.calls, 0);
    run_dry();
    assert_int_equal(cp.calls, 1);
    assert_int_equal(cp.status, ENGRAM_ECANCELED);
    assert_int_equal(cp.n, 0);
    assert_int_equal(src.cancels, 1);
  }
  /* Deadline racing the end, many times: one callback, 0 or ETIMEDOUT. */
  unsigned ended = 0, timed_out = 0;
  for (unsigned i = 0; i < 120; i++) {
    cprobe cp;
    prod_stats src;
    prod_cfg cfg = {.async = 1,
                    .total = 4,
                    .chunk = 1,
                    .work_us = 200 + (long)((i * 211u) % 900u)};
    collect_open(&cp, &src, &cfg, 10, 1 + i % 5);
    run_dry();
    assert_int_equal(cp.calls, 1);
    if (cp.status == 0) {
      assert_int_equal(cp.n, 4);
      ended++;
    } else {
      assert_int_equal(cp.status, ENGRAM_ETIMEDOUT);
      assert_true(cp.n < 4);
      timed_out++;
    }
    cprobe_check(&cp, &cfg);
    assert_int_equal(src.chunks_after_cancel, 0);
    cprobe_release(&cp);
  }
  print_message("collect race: %u ended, %u timed out\n", ended, timed_out);
  finish_test();
}

/* Combinators compose: collect(take(src)), and closing the handle (rt_drain)
 * with take and collect open ends them all. */
static void test_combinators_compose(void **state) {
  (void)state;
  for (int async = 0; async <= 1; async++) {
    prod_stats src;
    stats_init(&src);
    prod_cfg cfg = {.async = async, .total = INF, .chunk = 3, .err_every = 4};
    engram_stream *s = produce(NULL, &cfg, &src);
    engram_stream *t = NULL;
    assert_int_equal(engram_stream_take(s, 6, NULL, &t), 0);
    cprobe cp;
    memset(&cp, 0, sizeof cp);
    uint64_t before = F->rt.items_failed;
    assert_int_equal(engram_collect_start(t, 50, 0, on_collect, &cp, &cp.c), 0);
    run_dry();
    assert_int_equal(cp.calls, 1);
    assert_int_equal(cp.status, 0);
    assert_int_equal(cp.n, 6); /* items 0 1 2 4 5 6, error at 3 */
    assert_int_equal(cp.failed, 1);
    assert_int_equal(F->rt.items_failed - before, 1);
    assert_true(src.max_demand <= 6);
    assert_int_equal(src.produced, 6);
    assert_int_equal(src.cancels, 1);
    cprobe_check(&cp, &cfg);
    cprobe_release(&cp);
  }
  /* Drain with a take, a collect and a plain stream open. */
  prod_stats s1, s2;
  stats_init(&s1);
  stats_init(&s2);
  prod_cfg slow = {.async = 1, .total = INF, .chunk = 1, .work_us = 2000};
  probe tp;
  probe_init(&tp);
  take_open(&tp, &s1, &slow, 100, 0);
  probe_request(&tp, SIZE_MAX);
  cprobe cp;
  collect_open(&cp, &s2, &slow, 100, 0);
  probe plain;
  probe_init(&plain);
  probe_open(&plain, &slow);
  probe_request(&plain, SIZE_MAX);
  tl_run_for(&F->loop, 10);
  g_drained = 0;
  g_api_depth++;
  rt_drain(&F->rt, on_drained, NULL);
  g_api_depth--;
  run_dry();
  assert_int_equal(g_drained, 1);
  assert_int_equal(tp.status, ENGRAM_ECANCELED);
  assert_int_equal(plain.status, ENGRAM_ECANCELED);
  assert_int_equal(cp.calls, 1);
  assert_int_equal(cp.status, ENGRAM_ECANCELED);
  assert_int_equal(s1.cancels, 1);
  assert_int_equal(s2.cancels, 1);
  cprobe_check(&cp, &slow);
  cprobe_release(&cp);
  finish_test();
}

/* ------------------------------------------------------------------ main */

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  /* Before anything can start libuv's pool: one thread for every test. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      T(test_nothing_before_request),
      T(test_demand_one_at_a_time),
      T(test_demand_budget_endless_source),
      T(test_done_once_at_end),
      T(test_no_callback_after_done),
      T(test_cancel_from_item),
      T(test_cancel_from_error),
      T(test_cancel_from_done),
      T(test_cancel_outside_callbacks),
      T(test_cancel_races_chunk),
      T(test_deadline_keeps_items),
      T(test_deadline_races_end),
      T(test_pause_holds_no_thread),
      T(test_item_errors),
      T(test_many_streams),
      T(test_many_streams_mixed),
      T(test_producer_mistakes_guarded),
      T(test_drain),
      T(test_take_exact),
      T(test_take_cancel),
      T(test_take_demand),
      T(test_take_errors),
      T(test_take_bad_arguments),
      T(test_collect),
      T(test_collect_deadline_and_cancel),
      T(test_combinators_compose),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
