/*
 * starvation.c — the headline benchmark: context injection under load, done
 * the way agent frameworks bridge an async memory stream into synchronous
 * code, against engram_context_inject, on the same store, the same libuv
 * thread pool (UV_THREADPOOL_SIZE=4) and the same simulated I/O latency
 * (the delay store: every stream item is held a fixed time on a timer).
 *
 * The blocking path, reproduced here and only here: an injection is a
 * caller task on the pool that submits a drainer task to the pool and
 * waits on a channel (mutex + condvar) with a timeout. The drainer asks the
 * loop thread to start the search (only the loop thread may call engram),
 * then block_on: it parks on its own condvar until the loop-side stream
 * callbacks have pushed max_memories items or the stream ended, and sends
 * what it has to the channel. A caller that times out returns empty and
 * throws away whatever arrives later; its drainer is not cancelled and
 * drains on. The search's SQLite chunks run on the same pool, queued
 * behind the parked callers and drainers. (libuv's uv_queue_work may only
 * be called on the loop thread, so "submit" is a request the loop serves.)
 *
 * The engram path: engram_context_inject for each injection, all started
 * from the loop thread; nothing waits, a deadline returns what arrived.
 *
 * Concurrency N is a closed batch: N injections started at once; the level
 * is over when every one has answered and every task it started (orphaned
 * drainers, their searches) has ended.
 *
 * Parked threads are counted, for both paths alike, by interposing the
 * blocking primitives (pthread_cond_wait/timedwait, sem_wait/timedwait,
 * usleep, nanosleep) and uv_queue_work in this executable: a blocking call
 * made while a uv_queue_work task runs on that thread counts as one parked
 * pool thread until it returns. The benchmark's own waits go through the
 * same wrappers, so engram's figure comes from the same counter.
 *
 * The faithful blocking pattern can deadlock: when every pool thread holds
 * a drainer parked without a timeout, the chunks that would wake them wait
 * in the queue behind them for ever. The benchmark detects that state (all
 * pool threads in an untimed wait, no progress for a second), says so, and
 * releases the drainers to end the level; --drainer-timeout-ms gives the
 * drainers a timeout of their own instead (a store client's request
 * timeout). A level that would run past --cap-s is stopped there, with a
 * note of what had not started.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "benchdb.h"
#include "pgraw.h"
#include "corpus.h"
#include "engram.h"
#include "engram_internal.h"
#include "stats.h"

#define NS "bench"
#define MAX_LEVELS 16

typedef struct options {
  size_t n;
  uint64_t delay_ms;
  uint64_t timeout_ms;
  unsigned max_memories;
  size_t levels[MAX_LEVELS];
  size_t nlevels;
  double cap_s;
  uint64_t drainer_timeout_ms; /* 0: none, as in the pattern */
  unsigned pool;
  unsigned readers;
  const char *db; /* a PostgreSQL conninfo: run on that backend */
  uint64_t seed;
  int only_engram;
  size_t reps;
} options;

static options opt = {
    .n = 20000,
    .delay_ms = 2,
    .timeout_ms = 250,
    .max_memories = 10,
    .levels = {1, 4, 64, 1024, 10000},
    .nlevels = 5,
    .cap_s = 120,
    .drainer_timeout_ms = 0,
    .pool = 4,
    .readers = 0,
    .seed = 42,
    .reps = 1,
};

/* ================================================= interposed primitives */

static int (*real_cond_wait)(pthread_cond_t *, pthread_mutex_t *);
static int (*real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *,
                                  const struct timespec *);
static int (*real_sem_wait)(sem_t *);
static int (*real_sem_timedwait)(sem_t *, const struct timespec *);
static int (*real_usleep)(useconds_t);
static int (*real_nanosleep)(const struct timespec *, struct timespec *);
static int (*real_queue_work)(uv_loop_t *, uv_work_t *, uv_work_cb,
                              uv_after_work_cb);

static void *lookup(const char *name, const char *version) {
  void *p = version ? dlvsym(RTLD_NEXT, name, version) : NULL;
  if (!p)
    p = dlsym(RTLD_NEXT, name);
  if (!p) {
    fprintf(stderr, "starvation: cannot find %s: %s\n", name, dlerror());
    abort();
  }
  return p;
}

/* Function pointers from dlsym, without an object-to-function cast. */
#define RESOLVE(var, name, version)                                            \
  do {                                                                         \
    void *p_ = lookup(name, version);                                          \
    memcpy(&(var), &p_, sizeof p_);                                            \
  } while (0)

static void resolve_all(void) {
  RESOLVE(real_cond_wait, "pthread_cond_wait", "GLIBC_2.3.2");
  RESOLVE(real_cond_timedwait, "pthread_cond_timedwait", "GLIBC_2.3.2");
  RESOLVE(real_sem_wait, "sem_wait", "GLIBC_2.34");
  RESOLVE(real_sem_timedwait, "sem_timedwait", "GLIBC_2.34");
  RESOLVE(real_usleep, "usleep", "GLIBC_2.2.5");
  RESOLVE(real_nanosleep, "nanosleep", "GLIBC_2.2.5");
  RESOLVE(real_queue_work, "uv_queue_work", NULL);
}

/* Depth of uv_queue_work tasks running on this thread (0 or 1). */
static _Thread_local int tl_task;

static atomic_long parked, parked_peak;          /* pool tasks in any wait */
static atomic_long parked_untimed, untimed_peak; /* ... without a timeout */
static atomic_long queued, queued_peak;          /* queued, not started */
static atomic_long running, running_peak;        /* tasks running */
static atomic_ulong tasks_started, tasks_finished;

static void raise_peak(atomic_long *peak, long v) {
  long cur = atomic_load(peak);
  while (v > cur && !atomic_compare_exchange_weak(peak, &cur, v))
    ;
}

static int park_begin(int untimed) {
  if (tl_task == 0)
    return 0;
  raise_peak(&parked_peak, atomic_fetch_add(&parked, 1) + 1);
  if (untimed)
    raise_peak(&untimed_peak, atomic_fetch_add(&parked_untimed, 1) + 1);
  return 1;
}

static void park_end(int counted, int untimed) {
  if (!counted)
    return;
  atomic_fetch_sub(&parked, 1);
  if (untimed)
    atomic_fetch_sub(&parked_untimed, 1);
}

int pthread_cond_wait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m) {
  if (!real_cond_wait)
    resolve_all();
  int k = park_begin(1);
  int rc = real_cond_wait(c, m);
  park_end(k, 1);
  return rc;
}

int pthread_cond_timedwait(pthread_cond_t *restrict c,
                           pthread_mutex_t *restrict m,
                           const struct timespec *restrict t) {
  if (!real_cond_timedwait)
    resolve_all();
  int k = park_begin(0);
  int rc = real_cond_timedwait(c, m, t);
  park_end(k, 0);
  return rc;
}

int sem_wait(sem_t *s) {
  if (!real_sem_wait)
    resolve_all();
  int k = park_begin(1);
  int rc = real_sem_wait(s);
  park_end(k, 1);
  return rc;
}

int sem_timedwait(sem_t *restrict s, const struct timespec *restrict t) {
  if (!real_sem_timedwait)
    resolve_all();
  int k = park_begin(0);
  int rc = real_sem_timedwait(s, t);
  park_end(k, 0);
  return rc;
}

int usleep(useconds_t us) {
  if (!real_usleep)
    resolve_all();
  int k = park_begin(0);
  int rc = real_usleep(us);
  park_end(k, 0);
  return rc;
}

int nanosleep(const struct timespec *req, struct timespec *rem) {
  if (!real_nanosleep)
    resolve_all();
  int k = park_begin(0);
  int rc = real_nanosleep(req, rem);
  park_end(k, 0);
  return rc;
}

/* uv_queue_work, engram's included (it links statically against this
 * definition): each task's callbacks are wrapped to mark the thread as
 * running a pool task and to count queued and running tasks. The original
 * callbacks are kept in a table keyed by the request. */
typedef struct work_rec {
  uv_work_t *req;
  uv_work_cb work;
  uv_after_work_cb after;
  struct work_rec *next;
} work_rec;

#define WT_BUCKETS 65536u
static pthread_mutex_t wt_mu = PTHREAD_MUTEX_INITIALIZER;
static work_rec *wt[WT_BUCKETS];

static size_t wt_slot(const uv_work_t *req) {
  uint64_t x = (uint64_t)(uintptr_t)req;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)(x & (WT_BUCKETS - 1));
}

static work_rec *wt_find(const uv_work_t *req, int remove) {
  pthread_mutex_lock(&wt_mu);
  work_rec **pp = &wt[wt_slot(req)];
  while (*pp && (*pp)->req != req)
    pp = &(*pp)->next;
  work_rec *r = *pp;
  if (r && remove)
    *pp = r->next;
  pthread_mutex_unlock(&wt_mu);
  return r;
}

static void task_run(uv_work_t *req) {
  work_rec *r = wt_find(req, 0);
  atomic_fetch_sub(&queued, 1);
  raise_peak(&running_peak, atomic_fetch_add(&running, 1) + 1);
  atomic_fetch_add(&tasks_started, 1);
  tl_task++;
  r->work(req);
  tl_task--;
  atomic_fetch_sub(&running, 1);
  atomic_fetch_add(&tasks_finished, 1);
}

static void task_after(uv_work_t *req, int status) {
  work_rec *r = wt_find(req, 1);
  uv_after_work_cb after = r->after;
  free(r);
  if (status == UV_ECANCELED)
    atomic_fetch_sub(&queued, 1); /* it never ran */
  if (after)
    after(req, status);
}

int uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work_cb,
                  uv_after_work_cb after_work_cb) {
  if (!real_queue_work)
    resolve_all();
  if (!work_cb)
    return UV_EINVAL;
  work_rec *r = malloc(sizeof *r);
  if (!r)
    return UV_ENOMEM;
  r->req = req;
  r->work = work_cb;
  r->after = after_work_cb;
  pthread_mutex_lock(&wt_mu);
  size_t slot = wt_slot(req);
  r->next = wt[slot];
  wt[slot] = r;
  pthread_mutex_unlock(&wt_mu);
  raise_peak(&queued_peak, atomic_fetch_add(&queued, 1) + 1);
  int rc = real_queue_work(loop, req, task_run, task_after);
  if (rc != 0) {
    free(wt_find(req, 1));
    atomic_fetch_sub(&queued, 1);
  }
  return rc;
}

/* ============================================================ RSS sampler */

/* A plain thread (not a pool thread) sampling VmRSS every millisecond. */
static atomic_int rss_stop;
static atomic_long rss_peak_kb;

static long rss_now_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return -1;
  long size = 0, resident = 0;
  int ok = fscanf(f, "%ld %ld", &size, &resident) == 2;
  fclose(f);
  return ok ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static void *rss_sampler(void *arg) {
  (void)arg;
  struct timespec ms = {0, 1000000};
  while (!atomic_load(&rss_stop)) {
    raise_peak(&rss_peak_kb, rss_now_kb());
    nanosleep(&ms, NULL);
  }
  return NULL;
}

/* ================================================================ phases */

static uv_loop_t loop;
static engram *eg;
static char **queries;
static atomic_int g_abort; /* drainers: stop waiting, the level is over */

enum { T_NONE, T_QUEUED, T_DONE };
enum { D_NONE, D_COMPLETE, D_FULL, D_GAVE_UP, D_ABORTED };

typedef struct phase phase;

typedef struct inj {
  phase *ph;
  const char *query;
  uint64_t start_ns; /* engram path: when this injection was started */
  uint64_t answered_ns;
  size_t count;
  int timed_out;
  int status;
  int answered;

  /* blocking path: the caller's channel */
  pthread_mutex_t cmu;
  pthread_cond_t ccv;
  int ready, abandoned;
  engram_node **got;
  size_t ngot;
  /* the drainer's block_on state, fed by the loop-side stream callbacks */
  pthread_mutex_t dmu;
  pthread_cond_t dcv;
  engram_node **items;
  size_t nitems;
  int stream_done;
  int outcome;   /* D_* */
  size_t thrown; /* memories the drainer found for a caller that had gone */
  /* loop side */
  uv_work_t caller, drainer;
  int caller_state, drainer_state;
} inj;

struct phase {
  int blocking;
  size_t n;
  inj *inj;
  uint64_t t0;
  /* loop-side counts */
  size_t answered, callers_cancelled;
  size_t drainers_queued, drainers_after, drainers_cancelled;
  size_t drainers_not_submitted;
  size_t searches_started, searches_done, search_errors;
  int aborted;
  char note[512];
  uint64_t t_abort;
  uint64_t t_started; /* the last injection of the batch was started */
  int ended;
  uint64_t t_ended;
  /* watchdog */
  uint64_t last_progress, last_progress_ns;
  /* results */
  long rss_base_kb, rss_peak_kb;
  long parked_peak, untimed_peak, queued_peak, running_peak;
};

/* -------------------------------------------- loop-side request queue */

enum { RQ_QUEUE_DRAINER, RQ_START_SEARCH };
typedef struct rq {
  int kind;
  inj *in;
} rq;

static pthread_mutex_t rq_mu = PTHREAD_MUTEX_INITIALIZER;
static rq *rq_buf; /* filled by pool threads, under rq_mu */
static size_t rq_len, rq_cap;
static rq *rq_work; /* the loop's buffer, swapped with rq_buf */
static size_t rq_work_cap;
static atomic_long rq_pending; /* posted, not yet served */
static uv_async_t rq_async;

static void rq_post(int kind, inj *in) {
  atomic_fetch_add(&rq_pending, 1);
  pthread_mutex_lock(&rq_mu);
  if (rq_len == rq_cap) {
    size_t cap = rq_cap ? rq_cap * 2 : 1024;
    rq *p = realloc(rq_buf, cap * sizeof *p);
    if (!p)
      abort();
    rq_buf = p;
    rq_cap = cap;
  }
  rq_buf[rq_len++] = (rq){kind, in};
  pthread_mutex_unlock(&rq_mu);
  uv_async_send(&rq_async);
}

/* ------------------------------------------------------ blocking path */

static void check_ended(phase *ph);

static void abs_deadline(struct timespec *ts, uint64_t ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static void free_nodes(engram_node **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    engram_node_free(v[i]);
}

/* Pool thread: the caller. Submits the drainer, waits on the channel with
 * a timeout; on timeout returns empty and leaves the drainer running. */
static void caller_run(uv_work_t *req) {
  inj *in = req->data;
  struct timespec dl;
  abs_deadline(&dl, opt.timeout_ms);
  rq_post(RQ_QUEUE_DRAINER, in);
  pthread_mutex_lock(&in->cmu);
  int rc = 0;
  while (!in->ready && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&in->ccv, &in->cmu, &dl);
  if (in->ready) {
    in->count = in->ngot;
    free_nodes(in->got, in->ngot); /* "used" */
    in->ngot = 0;
  } else {
    in->abandoned = 1;
    in->timed_out = 1;
    in->count = 0;
  }
  pthread_mutex_unlock(&in->cmu);
  in->answered_ns = stats_now_ns();
}

static void caller_after(uv_work_t *req, int status) {
  inj *in = req->data;
  phase *ph = in->ph;
  in->caller_state = T_DONE;
  if (status == UV_ECANCELED) {
    ph->callers_cancelled++;
  } else {
    in->answered = 1;
    ph->answered++;
  }
  check_ended(ph);
}

/* Pool thread: the drainer. block_on(take(max).collect()). */
static void drainer_run(uv_work_t *req) {
  inj *in = req->data;
  rq_post(RQ_START_SEARCH, in);
  struct timespec dl;
  if (opt.drainer_timeout_ms)
    abs_deadline(&dl, opt.drainer_timeout_ms);
  pthread_mutex_lock(&in->dmu);
  int outcome = D_NONE;
  while (outcome == D_NONE) {
    if (in->stream_done)
      outcome = D_COMPLETE;
    else if (in->nitems >= opt.max_memories)
      outcome = D_FULL;
    else if (atomic_load(&g_abort))
      outcome = D_ABORTED;
    else if (!opt.drainer_timeout_ms)
      pthread_cond_wait(&in->dcv, &in->dmu);
    else if (pthread_cond_timedwait(&in->dcv, &in->dmu, &dl) == ETIMEDOUT &&
             !in->stream_done && in->nitems < opt.max_memories)
      outcome = D_GAVE_UP;
  }
  size_t n = in->nitems;
  engram_node **got = malloc((n ? n : 1) * sizeof *got);
  if (!got)
    abort();
  memcpy(got, in->items, n * sizeof *got);
  in->nitems = 0;
  in->outcome = outcome;
  pthread_mutex_unlock(&in->dmu);

  pthread_mutex_lock(&in->cmu);
  if (!in->abandoned) {
    memcpy(in->got, got, n * sizeof *got);
    in->ngot = n;
    in->ready = 1;
    pthread_cond_signal(&in->ccv);
  } else {
    free_nodes(got, n); /* the caller has gone: thrown away */
    in->thrown = n;
  }
  pthread_mutex_unlock(&in->cmu);
  free(got);
}

static void drainer_after(uv_work_t *req, int status) {
  inj *in = req->data;
  phase *ph = in->ph;
  in->drainer_state = T_DONE;
  if (status == UV_ECANCELED)
    ph->drainers_cancelled++;
  else
    ph->drainers_after++;
  check_ended(ph);
}

/* Loop side: the search the drainer asked for. */
static void take_item(engram_stream *s, const engram_node *node, void *data) {
  inj *in = data;
  (void)s;
  engram_node *copy = engram_node_copy(node);
  pthread_mutex_lock(&in->dmu);
  if (copy && in->nitems < opt.max_memories)
    in->items[in->nitems++] = copy;
  else
    engram_node_free(copy);
  pthread_cond_signal(&in->dcv);
  pthread_mutex_unlock(&in->dmu);
}

static void take_error(engram_stream *s, int code, const char *msg,
                       void *data) {
  (void)s, (void)code, (void)msg;
  ((inj *)data)->ph->search_errors++; /* the pattern drops these */
}

static void take_done(engram_stream *s, int status, void *data) {
  inj *in = data;
  (void)s;
  pthread_mutex_lock(&in->dmu);
  in->stream_done = 1;
  in->status = status;
  pthread_cond_signal(&in->dcv);
  pthread_mutex_unlock(&in->dmu);
  in->ph->searches_done++;
  check_ended(in->ph);
}

static void start_search(inj *in) {
  phase *ph = in->ph;
  engram_query q = {.ns = NS, .text = in->query};
  engram_stream *s, *t;
  engram_stream_cbs cbs = {take_item, take_error, take_done, in};
  int rc = engram_search(eg, &q, NULL, &s);
  if (rc == 0) {
    rc = engram_stream_take(s, opt.max_memories, &cbs, &t);
    if (rc != 0)
      engram_stream_cancel(s);
  }
  if (rc != 0) {
    ph->search_errors++;
    pthread_mutex_lock(&in->dmu);
    in->stream_done = 1;
    in->status = rc;
    pthread_cond_signal(&in->dcv);
    pthread_mutex_unlock(&in->dmu);
    return;
  }
  ph->searches_started++;
  engram_stream_request(t, opt.max_memories);
}

static void on_rq(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&rq_mu);
  rq *v = rq_buf;
  size_t n = rq_len, cap = rq_cap;
  rq_buf = rq_work;
  rq_cap = rq_work_cap;
  rq_len = 0;
  pthread_mutex_unlock(&rq_mu);
  for (size_t i = 0; i < n; i++) {
    inj *in = v[i].in;
    phase *ph = in->ph;
    if (v[i].kind == RQ_QUEUE_DRAINER) {
      if (ph->aborted) {
        ph->drainers_not_submitted++;
      } else {
        in->drainer.data = in;
        if (uv_queue_work(&loop, &in->drainer, drainer_run, drainer_after) != 0)
          abort();
        in->drainer_state = T_QUEUED;
        ph->drainers_queued++;
      }
    } else {
      start_search(in);
    }
    atomic_fetch_sub(&rq_pending, 1);
  }
  rq_work = v;
  rq_work_cap = cap;
}

/* -------------------------------------------------------- engram path */

static void on_context(const engram_context_result *r, void *data) {
  inj *in = data;
  in->answered_ns = stats_now_ns();
  in->answered = 1;
  in->count = r->count;
  in->timed_out = r->timed_out;
  in->status = r->status;
  in->ph->answered++;
  check_ended(in->ph);
}

/* ------------------------------------------------------------- phases */

static int engram_idle(void) {
  engram_stats st;
  engram_get_stats(eg, &st);
  return st.streams_open == 0 && st.queries_running == 0 &&
         engram_rt(eg)->work_inflight == 0;
}

static void check_ended(phase *ph) {
  if (ph->ended)
    return;
  if (ph->blocking) {
    if (ph->answered + ph->callers_cancelled < ph->n)
      return;
    if (ph->drainers_after + ph->drainers_cancelled < ph->drainers_queued)
      return;
    if (atomic_load(&rq_pending) != 0)
      return;
    if (ph->searches_done < ph->searches_started)
      return;
  } else if (ph->answered < ph->n) {
    return;
  }
  if (!engram_idle())
    return;
  ph->ended = 1;
  ph->t_ended = stats_now_ns();
}

static void release_all(phase *ph, const char *why) {
  if (ph->aborted)
    return;
  ph->aborted = 1;
  ph->t_abort = stats_now_ns();
  /* Cancel what has not started first: a released drainer returns its
   * thread at once, and the pool would start the queued ones. */
  for (size_t i = 0; i < ph->n; i++) {
    inj *in = &ph->inj[i];
    if (in->caller_state == T_QUEUED)
      uv_cancel((uv_req_t *)&in->caller);
    if (in->drainer_state == T_QUEUED)
      uv_cancel((uv_req_t *)&in->drainer);
  }
  atomic_store(&g_abort, 1);
  for (size_t i = 0; i < ph->n; i++) {
    inj *in = &ph->inj[i];
    pthread_mutex_lock(&in->dmu);
    pthread_cond_broadcast(&in->dcv);
    pthread_mutex_unlock(&in->dmu);
  }
  snprintf(ph->note, sizeof ph->note, "%s at %.1f s", why,
           (double)(ph->t_abort - ph->t0) / 1e9);
}

/* Every 50 ms while a blocking level runs: deadlock and time cap. */
static void on_watch(uv_timer_t *t) {
  phase *ph = t->data;
  if (!ph->blocking || ph->aborted || ph->ended)
    return;
  uint64_t now = stats_now_ns();
  uint64_t progress = atomic_load(&tasks_started) +
                      atomic_load(&tasks_finished) + ph->searches_done +
                      ph->answered;
  if (progress != ph->last_progress) {
    ph->last_progress = progress;
    ph->last_progress_ns = now;
  }
  if (atomic_load(&parked_untimed) >= (long)opt.pool &&
      now - ph->last_progress_ns > 1000000000ull) {
    release_all(ph, "DEADLOCK: every pool thread held a drainer parked "
                    "without timeout on items whose chunks were queued "
                    "behind it; the benchmark released the drainers");
    return;
  }
  if ((double)(now - ph->t0) / 1e9 > opt.cap_s)
    release_all(ph, "CAPPED: stopped at --cap-s; tasks not started were "
                    "cancelled and parked drainers released");
}

static void on_tick(uv_timer_t *t) {
  check_ended(t->data);
}

static void reset_counters(void) {
  atomic_store(&parked_peak, atomic_load(&parked));
  atomic_store(&untimed_peak, atomic_load(&parked_untimed));
  atomic_store(&queued_peak, atomic_load(&queued));
  atomic_store(&running_peak, atomic_load(&running));
  atomic_store(&rss_peak_kb, 0);
}

static void run_phase(phase *ph, int blocking, size_t n, size_t query_off) {
  memset(ph, 0, sizeof *ph);
  ph->blocking = blocking;
  ph->n = n;
  ph->inj = calloc(n, sizeof *ph->inj);
  if (!ph->inj)
    abort();
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  for (size_t i = 0; i < n; i++) {
    inj *in = &ph->inj[i];
    in->ph = ph;
    in->query = queries[query_off + i];
    if (blocking) {
      pthread_mutex_init(&in->cmu, NULL);
      pthread_cond_init(&in->ccv, &ca);
      pthread_mutex_init(&in->dmu, NULL);
      pthread_cond_init(&in->dcv, &ca);
      in->got = calloc(opt.max_memories, sizeof *in->got);
      in->items = calloc(opt.max_memories, sizeof *in->items);
      if (!in->got || !in->items)
        abort();
    }
  }
  pthread_condattr_destroy(&ca);
  atomic_store(&g_abort, 0);
  ph->rss_base_kb = rss_now_kb();
  reset_counters();

  uv_timer_t watch, tick;
  uv_timer_init(&loop, &watch);
  uv_timer_init(&loop, &tick);
  watch.data = tick.data = ph;

  /* Lexical: its items stream one by one through the delay store, which
   * is the per-item I/O cost this benchmark models (hybrid ranks once its
   * candidates are all in, so it has no per-item cost to delay). */
  engram_context_options co = {.max_memories = opt.max_memories,
                               .timeout_ms = opt.timeout_ms,
                               .strategy = ENGRAM_STRATEGY_LEXICAL};
  ph->t0 = stats_now_ns();
  ph->last_progress_ns = ph->t0;
  for (size_t i = 0; i < n; i++) {
    inj *in = &ph->inj[i];
    if (blocking) {
      in->caller.data = in;
      if (uv_queue_work(&loop, &in->caller, caller_run, caller_after) != 0)
        abort();
      in->caller_state = T_QUEUED;
    } else {
      in->start_ns = stats_now_ns();
      int rc =
          engram_context_inject(eg, NS, in->query, &co, on_context, in, NULL);
      if (rc != 0) {
        fprintf(stderr, "inject: %s\n", engram_strerror(rc));
        abort();
      }
    }
  }
  ph->t_started = stats_now_ns();
  uv_timer_start(&watch, on_watch, 50, 50);
  uv_timer_start(&tick, on_tick, 1, 1);
  while (!ph->ended)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&watch);
  uv_timer_stop(&tick);
  uv_close((uv_handle_t *)&watch, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);

  ph->parked_peak = atomic_load(&parked_peak);
  ph->untimed_peak = atomic_load(&untimed_peak);
  ph->queued_peak = atomic_load(&queued_peak);
  ph->running_peak = atomic_load(&running_peak);
  ph->rss_peak_kb = atomic_load(&rss_peak_kb);
}

static void free_phase(phase *ph) {
  for (size_t i = 0; i < ph->n; i++) {
    inj *in = &ph->inj[i];
    if (!ph->blocking)
      continue;
    free_nodes(in->items, in->nitems);
    free_nodes(in->got, in->ngot);
    free(in->items);
    free(in->got);
    pthread_mutex_destroy(&in->cmu);
    pthread_cond_destroy(&in->ccv);
    pthread_mutex_destroy(&in->dmu);
    pthread_cond_destroy(&in->dcv);
  }
  free(ph->inj);
  ph->inj = NULL;
}

/* ------------------------------------------------------------ results */

typedef struct result {
  size_t n, answered, empty, timeouts, partial, not_started, errors;
  size_t memories;
  double started_s;  /* batch start to the last injection started */
  double answered_s; /* batch start to the last answer */
  double ended_s;    /* ... to the last task's end; <0: deadlock */
  double inj_per_s, useful_per_s;
  double p50_ms, p99_ms;
  /* engram: how late answers cut by the deadline came, after it passed */
  double over_p50_ms, over_p99_ms, over_max_ms;
  long parked, untimed, queued, running;
  long rss_base_kb, rss_peak_kb;
  size_t drainers_complete, drainers_gave_up, drainers_aborted;
  size_t drainers_cancelled, drainers_not_submitted, results_thrown_away;
  size_t memories_thrown;
  size_t search_errors; /* blocking: stream errors the pattern drops */
  int deadlock, capped;
  char note[512];
} result;

static void summarize(const phase *ph, result *r) {
  memset(r, 0, sizeof *r);
  r->n = ph->n;
  uint64_t *lat = malloc((ph->n ? ph->n : 1) * sizeof *lat);
  if (!lat)
    abort();
  size_t nl = 0;
  uint64_t last = ph->t0;
  for (size_t i = 0; i < ph->n; i++) {
    const inj *in = &ph->inj[i];
    if (!in->answered) {
      r->not_started++;
      continue;
    }
    r->answered++;
    lat[nl++] = in->answered_ns - ph->t0;
    if (in->answered_ns > last)
      last = in->answered_ns;
    if (!ph->blocking && in->status != 0)
      r->errors++;
    if (in->count == 0)
      r->empty++;
    if (in->timed_out) {
      r->timeouts++;
      if (in->count > 0)
        r->partial++;
    }
    r->memories += in->count;
    if (ph->blocking) {
      switch (in->outcome) {
      case D_COMPLETE:
      case D_FULL:
        r->drainers_complete++;
        break;
      case D_GAVE_UP:
        r->drainers_gave_up++;
        break;
      case D_ABORTED:
        r->drainers_aborted++;
        break;
      default:
        break;
      }
    }
  }
  for (size_t i = 0; ph->blocking && i < ph->n; i++) {
    /* Found by drainers after their caller had gone, or delivered by a
     * search after its drainer had left: nobody reads them. */
    const inj *in = &ph->inj[i];
    if (in->thrown + in->nitems > 0) {
      r->results_thrown_away++;
      r->memories_thrown += in->thrown + in->nitems;
    }
  }
  stats_sort_u64(lat, nl);
  r->p50_ms = stats_percentile(lat, nl, 50) / 1e6;
  r->p99_ms = stats_percentile(lat, nl, 99) / 1e6;
  size_t no = 0;
  for (size_t i = 0; !ph->blocking && i < ph->n; i++) {
    const inj *in = &ph->inj[i];
    if (in->answered && in->timed_out) {
      uint64_t due = in->start_ns + opt.timeout_ms * 1000000ull;
      lat[no++] = in->answered_ns > due ? in->answered_ns - due : 0;
    }
  }
  stats_sort_u64(lat, no);
  r->over_p50_ms = stats_percentile(lat, no, 50) / 1e6;
  r->over_p99_ms = stats_percentile(lat, no, 99) / 1e6;
  r->over_max_ms = stats_percentile(lat, no, 100) / 1e6;
  free(lat);
  r->answered_s = (double)(last - ph->t0) / 1e9;
  r->started_s = (double)(ph->t_started - ph->t0) / 1e9;
  r->deadlock = ph->aborted && strncmp(ph->note, "DEADLOCK", 8) == 0;
  r->capped = ph->aborted && !r->deadlock;
  r->ended_s = ph->aborted ? -1 : (double)(ph->t_ended - ph->t0) / 1e9;
  r->inj_per_s = r->answered_s > 0 ? (double)r->answered / r->answered_s : 0;
  r->useful_per_s =
      r->answered_s > 0 ? (double)(r->answered - r->empty) / r->answered_s : 0;
  r->parked = ph->parked_peak;
  r->untimed = ph->untimed_peak;
  r->queued = ph->queued_peak;
  r->running = ph->running_peak;
  r->rss_base_kb = ph->rss_base_kb;
  r->rss_peak_kb = ph->rss_peak_kb;
  r->drainers_cancelled = ph->drainers_cancelled;
  r->drainers_not_submitted = ph->drainers_not_submitted;
  r->search_errors = ph->search_errors;
  snprintf(r->note, sizeof r->note, "%s", ph->note);
}

static void print_header(void) {
  printf("| N | path | answered | empty | timed out | partial | memories | "
         "answered in (s) | all ended (s) | inj/s | non-empty/s | p50 ms | "
         "p99 ms | peak parked | peak queued | RSS +MiB |\n");
  printf("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
}

static void print_row(const char *path, const result *r) {
  char ended[64];
  if (r->deadlock)
    snprintf(ended, sizeof ended, "never (deadlock)");
  else if (r->capped)
    snprintf(ended, sizeof ended, "> %.0f (capped)", opt.cap_s);
  else
    snprintf(ended, sizeof ended, "%.3f", r->ended_s);
  char answered[48];
  if (r->not_started)
    snprintf(answered, sizeof answered, "%zu (%zu not started)", r->answered,
             r->not_started);
  else
    snprintf(answered, sizeof answered, "%zu", r->answered);
  printf("| %zu | %s | %s | %zu | %zu | %zu | %zu | %.3f | %s | %.0f | %.0f | "
         "%.1f | %.1f | %ld | %ld | %.1f |\n",
         r->n, path, answered, r->empty, r->timeouts, r->partial, r->memories,
         r->answered_s, ended, r->inj_per_s, r->useful_per_s, r->p50_ms,
         r->p99_ms, r->parked, r->queued,
         (double)(r->rss_peak_kb - r->rss_base_kb) / 1024.0);
}

/* The median over n results of one field (a double, or a size_t). */
static double median_of(const result *rs, size_t n, double *scratch,
                        size_t offset, int is_double) {
  for (size_t i = 0; i < n; i++) {
    const char *p = (const char *)&rs[i] + offset;
    if (is_double) {
      double d;
      memcpy(&d, p, sizeof d);
      scratch[i] = d;
    } else {
      size_t z;
      memcpy(&z, p, sizeof z);
      scratch[i] = (double)z;
    }
  }
  return stats_median(scratch, n);
}

static void ratio(char *out, size_t cap, double a, double b) {
  if (b > 0)
    snprintf(out, cap, "%.1fx", a / b);
  else if (a > 0)
    snprintf(out, cap, "inf (blocking: 0)");
  else
    snprintf(out, cap, "n/a (both 0)");
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_starvation [options]\n"
          "  --n N                  memories in the store (20000)\n"
          "  --delay-ms MS          delay store: per-item latency (2)\n"
          "  --timeout-ms MS        injection deadline / caller timeout (250)\n"
          "  --max N                max_memories per injection (10)\n"
          "  --levels A,B,...       concurrency levels (1,4,64,1024,10000)\n"
          "  --cap-s S              stop a blocking level after S seconds "
          "(120)\n"
          "  --drainer-timeout-ms MS  give drainers a timeout of their own "
          "(0: none, as in the pattern)\n"
          "  --pool N               UV_THREADPOOL_SIZE (4)\n"
          "  --readers N            engram reader connections (0: default "
          "4; 8 on PostgreSQL)\n"
          "  --db CONNINFO          run on PostgreSQL (postgres://... or "
          "key=value), in a fresh\n"
          "                         schema dropped at the end (default: an "
          "SQLite file)\n"
          "  --seed N               corpus seed (42)\n"
          "  --reps N               runs of each level; the summary shows "
          "medians (1)\n"
          "  --engram-only          skip the blocking path\n");
}

static int parse_args(int argc, char **argv) {
  const bench_arg opts[] = {
      {"--engram-only", ARG_FLAG, &opt.only_engram, NULL, 0},
      {"--n", ARG_SIZE, &opt.n, NULL, 0},
      {"--delay-ms", ARG_U64, &opt.delay_ms, NULL, 0},
      {"--timeout-ms", ARG_U64, &opt.timeout_ms, NULL, 0},
      {"--max", ARG_UNSIGNED, &opt.max_memories, NULL, 0},
      {"--levels", ARG_LEVELS, opt.levels, &opt.nlevels, MAX_LEVELS},
      {"--cap-s", ARG_DOUBLE, &opt.cap_s, NULL, 0},
      {"--drainer-timeout-ms", ARG_U64, &opt.drainer_timeout_ms, NULL, 0},
      {"--pool", ARG_UNSIGNED, &opt.pool, NULL, 0},
      {"--readers", ARG_UNSIGNED, &opt.readers, NULL, 0},
      {"--db", ARG_STR, &opt.db, NULL, 0},
      {"--reps", ARG_SIZE, &opt.reps, NULL, 0},
      {"--seed", ARG_U64, &opt.seed, NULL, 0},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "starvation", opts, usage) != 0)
    return -1;
  if (opt.n == 0 || opt.timeout_ms == 0 || opt.max_memories == 0 ||
      opt.pool == 0 || opt.pool > 1024 || opt.cap_s <= 0 || opt.reps == 0) {
    fprintf(stderr, "starvation: --n, --timeout-ms, --max, --pool, "
                    "--cap-s and --reps must be positive\n");
    return -1;
  }
  return 0;
}

static store *wrap_delay(store *inner, void *arg) {
  return store_delay_new(inner, *(uint64_t *)arg);
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) != 0)
    return 2;
  /* Before any use of libuv: the pool is sized once, at its first task. */
  char pool[16];
  snprintf(pool, sizeof pool, "%u", opt.pool);
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  resolve_all();
  setvbuf(stdout, NULL, _IOLBF, 0);

  pthread_t sampler;
  if (pthread_create(&sampler, NULL, rss_sampler, NULL) != 0)
    return 1;

  char dir[4096], db[4200];
  if (benchdb_mkdir("starvation", dir, sizeof dir) != 0) {
    perror("starvation: mkdtemp");
    return 1;
  }
  snprintf(db, sizeof db, "%s/engram.db", dir);
  char schema[64] = "";
  PGconn *admin = NULL;
  if (opt.db) {
    snprintf(schema, sizeof schema, "starvation_%d", (int)getpid());
    admin = pgraw_connect(opt.db);
    pgraw_schema(admin, opt.db, schema, db, sizeof db);
  }

  uv_loop_init(&loop);
  engram_options eo;
  engram_options_init(&eo);
  eo.db = db;
  eo.readers = opt.readers;
  if (engram_init(&eg, &loop, &eo) != 0 ||
      engram_wrap_store(eg, wrap_delay, &opt.delay_ms) != 0 ||
      benchdb_open(eg) != 0)
    return 1;

  corpus *c = corpus_new(opt.seed, 0);
  if (!c)
    return 1;
  uint64_t t = stats_now_ns();
  if (benchdb_fill(eg, NS, ENGRAM_EPISODIC, c, opt.n, 1000) != 0)
    return 1;
  double fill_s = (double)(stats_now_ns() - t) / 1e9;

  size_t maxn = 64; /* warm-up */
  for (size_t i = 0; i < opt.nlevels; i++)
    if (opt.levels[i] > maxn)
      maxn = opt.levels[i];
  queries = calloc(maxn + 64, sizeof *queries);
  if (!queries)
    return 1;
  for (size_t i = 0; i < maxn + 64; i++) {
    char buf[CORPUS_MAX_SENTENCE];
    corpus_query(c, buf, sizeof buf);
    queries[i] = strdup(buf);
    if (!queries[i])
      return 1;
  }

  uv_async_init(&loop, &rq_async, on_rq);
  uv_unref((uv_handle_t *)&rq_async);

  printf("# bench_starvation\n\n");
  printf("store: %zu memories (corpus seed %llu) in %s, filled in %.1f s; "
         "delay store %llu ms per item; libuv pool %u threads; engram "
         "readers %u\n",
         opt.n, (unsigned long long)opt.seed, db, fill_s,
         (unsigned long long)opt.delay_ms, opt.pool,
         opt.readers ? opt.readers : opt.db ? 8 : 4);
  printf("injection: max_memories %u, deadline / caller timeout %llu ms; "
         "drainer timeout %s; cap per blocking level %.0f s\n",
         opt.max_memories, (unsigned long long)opt.timeout_ms,
         opt.drainer_timeout_ms ? "set" : "none (as in the pattern)",
         opt.cap_s);
  if (opt.drainer_timeout_ms)
    printf("drainer timeout: %llu ms\n",
           (unsigned long long)opt.drainer_timeout_ms);
  printf("concurrency N: a closed batch of N injections started at once "
         "(distinct queries, the same for both paths)\n");
  printf("peak parked: most pool tasks inside a blocking wait at once "
         "(interposed pthread_cond_*wait, sem_*wait, usleep, nanosleep); "
         "peak queued: most pool tasks waiting for a thread\n\n");

  phase ph;
  result warm;
  run_phase(&ph, 0, 64, maxn); /* warm-up: page cache, prepared statements */
  summarize(&ph, &warm);
  free_phase(&ph);
  printf("warm-up: 64 engram injections, %zu non-empty, p50 %.1f ms\n\n",
         warm.answered - warm.empty, warm.p50_ms);

  size_t reps = opt.reps;
  result *er = calloc(opt.nlevels * reps, sizeof *er);
  result *br = calloc(opt.nlevels * reps, sizeof *br);
  if (!er || !br)
    return 1;
  for (size_t l = 0; l < opt.nlevels; l++) {
    size_t n = opt.levels[l];
    printf("## concurrency %zu\n\n", n);
    double lower = n > 1 ? (double)((n + opt.pool - 1) / opt.pool) *
                               (double)opt.timeout_ms / 1e3
                         : 0;
    if (!opt.only_engram && lower > opt.cap_s)
      printf("note: the blocking path needs at least %.0f s here (%zu "
             "callers, %u at a time, each parked until its %llu ms "
             "timeout); it is capped at %.0f s\n\n",
             lower, n, opt.pool, (unsigned long long)opt.timeout_ms, opt.cap_s);
    for (size_t r = 0; r < reps; r++) {
      result *e = &er[l * reps + r], *b = &br[l * reps + r];
      run_phase(&ph, 0, n, 0);
      summarize(&ph, e);
      free_phase(&ph);
      if (!opt.only_engram) {
        run_phase(&ph, 1, n, 0);
        summarize(&ph, b);
        free_phase(&ph);
      }
    }
    print_header();
    for (size_t r = 0; r < reps; r++) {
      print_row("engram", &er[l * reps + r]);
      if (!opt.only_engram)
        print_row("blocking", &br[l * reps + r]);
    }
    printf("\n");
    for (size_t r = 0; r < reps; r++) {
      const result *e = &er[l * reps + r], *b = &br[l * reps + r];
      if (reps > 1)
        printf("run %zu: ", r + 1);
      if (!opt.only_engram) {
        char r1[48], r2[48];
        ratio(r1, sizeof r1, e->inj_per_s, b->inj_per_s);
        ratio(r2, sizeof r2, e->useful_per_s, b->useful_per_s);
        printf("engram / blocking: answered/s %s, non-empty answers/s %s; "
               "empty answers %zu vs %zu\n",
               r1, r2, e->empty, b->empty + b->not_started);
        printf("  blocking: drainers finished %zu, gave up %zu, released %zu, "
               "never ran %zu, never submitted %zu; searches that found "
               "memories nobody read: %zu (%zu memories); stream errors "
               "(the pattern drops them) %zu; peak parked without timeout "
               "%ld; peak tasks running %ld\n",
               b->drainers_complete, b->drainers_gave_up, b->drainers_aborted,
               b->drainers_cancelled, b->drainers_not_submitted,
               b->results_thrown_away, b->memories_thrown, b->search_errors,
               b->untimed, b->running);
        if (b->note[0])
          printf("  blocking: %s\n", b->note);
      }
      printf("  engram: starting the %zu injections took %.1f ms; answers "
             "cut by the deadline came after it by p50 %.1f, p99 %.1f, max "
             "%.1f ms; errors %zu; peak parked %ld; peak tasks running %ld; "
             "RSS %.1f MiB before, peak %.1f MiB (+%.1f MiB)\n",
             e->n, e->started_s * 1e3, e->over_p50_ms, e->over_p99_ms,
             e->over_max_ms, e->errors, e->parked, e->running,
             (double)e->rss_base_kb / 1024.0, (double)e->rss_peak_kb / 1024.0,
             (double)(e->rss_peak_kb - e->rss_base_kb) / 1024.0);
    }
    printf("\n");
  }

  printf("## summary%s\n\n", reps > 1 ? " (medians of the runs)" : "");
  double *v = calloc(reps, sizeof *v);
  if (!v)
    return 1;
#define MEDIAN(arr, field)                                                     \
  median_of(&(arr)[l * reps], reps, v, offsetof(result, field),                \
            _Generic((arr)[0].field, double : 1, default : 0))
  if (opt.only_engram) {
    printf("| N | engram answered/s | non-empty/s | empty | p50 ms | p99 ms "
           "| peak parked |\n");
    printf("|--:|--:|--:|--:|--:|--:|--:|\n");
  }
  for (size_t l = 0; opt.only_engram && l < opt.nlevels; l++) {
    long ep = 0;
    for (size_t r = 0; r < reps; r++)
      if (er[l * reps + r].parked > ep)
        ep = er[l * reps + r].parked;
    printf("| %zu | %.0f | %.0f | %.0f/%zu | %.1f | %.1f | %ld |\n",
           opt.levels[l], MEDIAN(er, inj_per_s), MEDIAN(er, useful_per_s),
           MEDIAN(er, empty), opt.levels[l], MEDIAN(er, p50_ms),
           MEDIAN(er, p99_ms), ep);
  }
  if (!opt.only_engram) {
    printf("| N | engram answered/s | blocking answered/s | ratio | engram "
           "non-empty/s | blocking non-empty/s | ratio | empty engram | empty "
           "blocking | peak parked engram | peak parked blocking | blocking "
           "ended |\n");
    printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  }
  for (size_t l = 0; !opt.only_engram && l < opt.nlevels; l++) {
    double ea = MEDIAN(er, inj_per_s), ba = MEDIAN(br, inj_per_s);
    double eu = MEDIAN(er, useful_per_s), bu = MEDIAN(br, useful_per_s);
    double ee = MEDIAN(er, empty);
    double be = MEDIAN(br, empty) + MEDIAN(br, not_started);
    long ep = 0, bp = 0;
    int deadlock = 0, capped = 0;
    for (size_t r = 0; r < reps; r++) {
      if (er[l * reps + r].parked > ep)
        ep = er[l * reps + r].parked;
      if (br[l * reps + r].parked > bp)
        bp = br[l * reps + r].parked;
      deadlock |= br[l * reps + r].deadlock;
      capped |= br[l * reps + r].capped;
    }
    char r1[48], r2[48], ended[48];
    ratio(r1, sizeof r1, ea, ba);
    ratio(r2, sizeof r2, eu, bu);
    if (capped)
      snprintf(ended, sizeof ended, "capped at %.0f s", opt.cap_s);
    else if (deadlock)
      snprintf(ended, sizeof ended, "deadlock");
    else
      snprintf(ended, sizeof ended, "%.2f s", MEDIAN(br, ended_s));
    printf("| %zu | %.0f | %.0f | %s | %.0f | %.0f | %s | %.0f/%zu | %.0f/%zu "
           "| %ld | %ld | %s |\n",
           opt.levels[l], ea, ba, r1, eu, bu, r2, ee, opt.levels[l], be,
           opt.levels[l], ep, bp, ended);
  }
  printf("\nRATIOS (engram / blocking pattern, same run%s)\n",
         reps > 1 ? "; medians over runs" : "");
  size_t failures = 0;
  for (size_t l = 0; l < opt.nlevels; l++) {
    size_t n = opt.levels[l];
    long ep = 0;
    size_t errors = 0;
    for (size_t r = 0; r < reps; r++) {
      if (er[l * reps + r].parked > ep)
        ep = er[l * reps + r].parked;
      errors += er[l * reps + r].errors;
    }
    failures += errors + (ep != 0);
    if (!opt.only_engram) {
      char r1[48], r2[48];
      ratio(r1, sizeof r1, MEDIAN(er, inj_per_s), MEDIAN(br, inj_per_s));
      ratio(r2, sizeof r2, MEDIAN(er, useful_per_s), MEDIAN(br, useful_per_s));
      printf("  N=%-6zu answered/s %s, non-empty answers/s %s  (no target)\n",
             n, r1, r2);
      printf("  N=%-6zu empty answers: engram %.0f, blocking %.0f of %zu  "
             "(no target)\n",
             n, MEDIAN(er, empty), MEDIAN(br, empty) + MEDIAN(br, not_started),
             n);
    }
    printf("  N=%-6zu engram pool threads parked (peak) %ld  (target 0)  %s\n",
           n, ep, ep == 0 ? "PASS" : "FAIL");
    printf("  N=%-6zu engram injections failed %zu  (target 0)  %s\n", n,
           errors, errors == 0 ? "PASS" : "FAIL");
  }
#undef MEDIAN
  free(v);
  printf("\npeak RSS of the process (getrusage): %.1f MiB\n",
         (double)stats_peak_rss_kb() / 1024.0);

  benchdb_close(eg);
  uv_close((uv_handle_t *)&rq_async, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  engram_free(eg);
  uv_loop_close(&loop);
  atomic_store(&rss_stop, 1);
  pthread_join(sampler, NULL);
  for (size_t i = 0; i < maxn + 64; i++)
    free(queries[i]);
  free(queries);
  free(er);
  free(br);
  free(rq_buf);
  free(rq_work);
  corpus_free(c);
  benchdb_rmdir(dir);
  if (admin) {
    pgraw_drop_schema(admin, schema);
    PQfinish(admin);
  }
  /* A parked thread or a failed injection on engram's side contradicts the
   * design: a failure. Slow figures are results. */
  return failures ? 1 : 0;
}
