/*
 * test_durability.c — an acknowledged write survives the death of the
 * process that made it.
 *
 * The test binary re-executes itself as a child (`--child ...`) that opens
 * the database on its own handle and writes without pause: up to 16
 * batches in flight, each of 1-8 ADD ops. For every batch whose callback
 * reports status 0 it prints one line per op to stdout, a pipe to the
 * parent: "<id> <round> <seq>". Only acknowledged ids reach the pipe, and
 * only after their callback ran. The parent reads the pipe and, once
 * enough ids are acknowledged, SIGKILLs the child mid-stream (writes in
 * flight, a group commit possibly half done), reaps it, reopens the file
 * on a fresh handle and checks:
 *
 *  - every acknowledged id is there, in its namespace, with the content
 *    and type derived from its sequence number (nothing acknowledged is
 *    lost or altered);
 *  - every memory in the file belongs to a batch that is there entirely
 *    (a batch is atomic even when the process dies during its commit),
 *    and none is there twice;
 *  - the reopened file takes new writes.
 *
 * Rounds append to the same file, so recovery of a file that already went
 * through a crash is covered too. Most kills land while the writer is
 * busy; "idle" rounds kill the child once its last write is acknowledged
 * and nothing is queued, where an acknowledgement that ran ahead of its
 * commit would be lost. A last test kills a child that has a
 * paused stream and a busy stream open (reader statements mid-way) while
 * writing, and checks the file reopens and lists to the end.
 *
 * The child never returns into cmocka: it is exec'd, runs its loop until
 * killed, and leaves with _exit on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engram.h"

#define NS "dur"
enum {
  MAX_IN_FLIGHT = 16, /* batches the child keeps outstanding */
  MAX_BATCH = 8,      /* ops per batch */
  ACKS_PER_ROUND = 2000,
  ROUND_SECONDS = 8, /* kill anyway after this long */
  GET_WINDOW = 64,   /* gets in flight while verifying */
};

static char tmp_dir[512];

/* The content of memory seq of a round, and of the batch [base, base+n)
 * it was written in: derivable from the numbers alone, so the parent can
 * check any memory it finds. */
static size_t make_content(char *buf, size_t size, int round, uint64_t seq,
                           uint64_t base, size_t n) {
  static const char *const words[] = {"apple",  "river", "lamp",  "violin",
                                      "harbor", "cedar", "quartz"};
  int len = snprintf(
      buf, size, "round %d seq %" PRIu64 " batch %" PRIu64 " of %zu:", round,
      seq, base, n);
  for (uint64_t k = 0; k <= seq % 9; k++)
    len += snprintf(buf + len, size - (size_t)len, " %s",
                    words[(seq + k * 3) % 7]);
  return (size_t)len;
}

static engram_type type_of(uint64_t seq) {
  return (engram_type)(seq % 4);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ====================================================== the child process */

typedef struct child {
  engram *eg;
  int round;
  uint64_t next_seq;
  unsigned in_flight;
  uint64_t rng;
  int with_streams;
  uint64_t paused_items, busy_items;
  int ready_sent;
  uint64_t acked;
  uint64_t stop_after; /* "idle" mode: acks after which writing stops */
  uv_timer_t keep_alive;
} child;

static child C;

static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "durability child: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  _exit(code);
}

static void out_all(const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, buf, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      _exit(4);
    }
    buf += w;
    n -= (size_t)w;
  }
}

static uint64_t next_rand(void) {
  C.rng ^= C.rng << 13;
  C.rng ^= C.rng >> 7;
  C.rng ^= C.rng << 17;
  return C.rng;
}

static void maybe_ready(void) {
  if (C.with_streams && !C.ready_sent && C.paused_items == 3 &&
      C.busy_items >= 50) {
    C.ready_sent = 1;
    out_all("ready\n", 6);
  }
}

static void start_batch(void);

static void keep_alive_tick(uv_timer_t *t) {
  (void)t;
}

static void on_batch(int status, engram_op *ops, size_t n, void *data) {
  uint64_t base = (uint64_t)(uintptr_t)data;
  C.in_flight--;
  if (status != 0)
    die(3, "batch at seq %" PRIu64 " failed: %s (%s)", base,
        engram_errname(status), ops[0].message);
  char buf[MAX_BATCH * 80];
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %d %" PRIu64 "\n",
                            ops[i].result_id, C.round, base + i);
  out_all(buf, len); /* acknowledged: only now does the parent learn it */
  C.acked += n;
  maybe_ready();
  if (C.stop_after && C.acked >= C.stop_after) {
    if (C.in_flight == 0) {
      /* Every write is acknowledged and none is queued: the writer is idle.
       * The timer only keeps this process alive until the kill. */
      uv_timer_init(engram_loop(C.eg), &C.keep_alive);
      uv_timer_start(&C.keep_alive, keep_alive_tick, 1000, 1000);
      engram_stats st;
      engram_get_stats(C.eg, &st);
      char line[96];
      int ln = snprintf(line, sizeof line, "idle %" PRIu64 " %" PRIu64 "\n",
                        st.writes_committed, st.write_batches);
      out_all(line, (size_t)ln);
    }
    return;
  }
  while (C.in_flight < MAX_IN_FLIGHT)
    start_batch();
}

static void start_batch(void) {
  engram_op ops[MAX_BATCH];
  char content[MAX_BATCH][160];
  size_t n = 1 + (size_t)(next_rand() % MAX_BATCH);
  uint64_t base = C.next_seq;
  memset(ops, 0, sizeof ops);
  for (size_t i = 0; i < n; i++) {
    make_content(content[i], sizeof content[i], C.round, base + i, base, n);
    ops[i].kind = ENGRAM_OP_ADD;
    ops[i].ns = NS;
    ops[i].type = type_of(base + i);
    ops[i].content = content[i];
  }
  int rc = engram_write(C.eg, ops, n, on_batch, (void *)(uintptr_t)base);
  if (rc != 0)
    die(3, "engram_write: %s", engram_errname(rc));
  C.next_seq += n;
  C.in_flight++;
}

/* The paused stream takes 3 items and then holds its reader; the busy one
 * asks for one item at a time and starts over at the end. */
static void paused_item(engram_stream *s, const engram_node *node, void *d) {
  (void)s;
  (void)node;
  (void)d;
  C.paused_items++;
  maybe_ready();
}

static void paused_done(engram_stream *s, int status, void *d) {
  (void)s;
  (void)d;
  die(5, "the paused stream ended: %s", engram_errname(status));
}

static void start_busy(void);

static void busy_item(engram_stream *s, const engram_node *node, void *d) {
  (void)node;
  (void)d;
  C.busy_items++;
  maybe_ready();
  if (engram_stream_request(s, 1) != 0)
    die(5, "engram_stream_request failed");
}

static void busy_done(engram_stream *s, int status, void *d) {
  (void)s;
  (void)d;
  if (status != 0)
    die(5, "the busy stream ended: %s", engram_errname(status));
  start_busy();
}

static void start_busy(void) {
  engram_query q = {.ns = NS};
  engram_stream_cbs cbs = {.item = busy_item, .done = busy_done};
  engram_stream *s;
  if (engram_list(C.eg, &q, &cbs, &s) != 0 || engram_stream_request(s, 1) != 0)
    die(5, "cannot start the busy stream");
}

static void child_opened(engram *eg, int status, const char *message,
                         void *data) {
  (void)eg;
  (void)data;
  if (status != 0)
    die(2, "open: %s", message);
  if (C.with_streams) {
    engram_query q = {.ns = NS};
    engram_stream_cbs cbs = {.item = paused_item, .done = paused_done};
    engram_stream *s;
    if (engram_list(C.eg, &q, &cbs, &s) != 0 ||
        engram_stream_request(s, 3) != 0)
      die(5, "cannot start the paused stream");
    start_busy();
  }
  while (C.in_flight < MAX_IN_FLIGHT)
    start_batch();
}

/* argv: --child <db> <durability> <round> <write|streams|idle>
 *   write: write until killed
 *   streams: the same, with a paused and a busy stream open; says "ready"
 *     once both have delivered
 *   idle: stop writing after 500 acknowledged ids; say "idle <writes>
 *     <group commits>" when the last one is acknowledged */
static int child_main(int argc, char **argv) {
  if (argc != 6)
    die(1, "usage: --child db durability round write|streams|idle");
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if the parent dies */
  engram_options opts;
  engram_options_init(&opts);
  opts.db = argv[2];
  opts.durability = (engram_durability)atoi(argv[3]);
  C.round = atoi(argv[4]);
  C.with_streams = strcmp(argv[5], "streams") == 0;
  C.stop_after = strcmp(argv[5], "idle") == 0 ? 500 : 0;
  C.rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15u | 1u;
  if (engram_init(&C.eg, NULL, &opts) != 0)
    die(2, "engram_init failed");
  if (engram_open(C.eg, child_opened, NULL) != 0)
    die(2, "engram_open failed");
  engram_run(C.eg);
  die(6, "the loop ran dry: the writer stopped");
  return 0;
}

/* ===================================================== the parent's side */

typedef struct ack {
  char id[ENGRAM_ID_LEN + 1];
  int round;
  uint64_t seq;
} ack;

static ack *acks;
static size_t n_acks, cap_acks;

static void add_ack(const char *line) {
  ack a;
  char id[64];
  if (sscanf(line, "%63s %d %" SCNu64, id, &a.round, &a.seq) != 3 ||
      !engram_id_valid(id))
    fail_msg("child printed a malformed line: \"%s\"", line);
  memcpy(a.id, id, sizeof a.id);
  if (n_acks == cap_acks) {
    cap_acks = cap_acks ? cap_acks * 2 : 4096;
    acks = realloc(acks, cap_acks * sizeof *acks);
    assert_non_null(acks);
  }
  acks[n_acks++] = a;
}

static void make_dirs(const char *path) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0755);
      *p = '/';
    }
  }
  mkdir(buf, 0755);
}

static void remove_db(const char *db) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char path[700];
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, suffix[i]);
    unlink(path);
  }
}

static pid_t spawn_child(const char *db, engram_durability durability,
                         int round, const char *mode, int *read_fd) {
  int fds[2];
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
  char dur[16], rnd[16];
  snprintf(dur, sizeof dur, "%d", (int)durability);
  snprintf(rnd, sizeof rnd, "%d", round);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (dup2(fds[1], STDOUT_FILENO) < 0)
      _exit(127);
    char *args[] = {"test_durability", "--child", (char *)db, dur, rnd,
                    (char *)mode,      NULL};
    execv("/proc/self/exe", args);
    _exit(127);
  }
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

/* Reads the child's lines until it is killed and the pipe is drained.
 * The child is killed a random 0-20 ms after it has acknowledged
 * kill_after ids (and, in "streams" and "idle" modes, said its line), so
 * the kill lands at a different point of a commit each time. */
static size_t run_child(const char *db, engram_durability durability, int round,
                        const char *mode, size_t kill_after) {
  int fd;
  /* The line the child says when it is where the kill should land. */
  const char *want_line = strcmp(mode, "streams") == 0 ? "ready"
                          : strcmp(mode, "idle") == 0  ? "idle"
                                                       : NULL;
  pid_t pid = spawn_child(db, durability, round, mode, &fd);
  char buf[65536];
  size_t have = 0, round_acks = 0;
  int ready = 0, killed = 0;
  double start = now_s(), kill_at = 0;
  srand((unsigned)getpid() ^ (unsigned)round);
  for (;;) {
    double now = now_s();
    int trigger = (ready || !want_line) && round_acks >= kill_after;
    if (!killed && kill_at == 0 && (trigger || now - start > ROUND_SECONDS))
      kill_at = now + (double)(rand() % 21) / 1000.0;
    if (!killed && kill_at != 0 && now >= kill_at) {
      assert_int_equal(kill(pid, SIGKILL), 0);
      killed = 1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, killed ? 1000 : 2);
    if (pr < 0 && errno == EINTR)
      continue;
    assert_true(pr >= 0);
    if (pr == 0)
      continue;
    ssize_t r = read(fd, buf + have, sizeof buf - have - 1);
    if (r < 0 && errno == EINTR)
      continue;
    assert_true(r >= 0);
    if (r == 0)
      break; /* the child is gone and its lines are all read */
    have += (size_t)r;
    buf[have] = '\0';
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      if (want_line && strncmp(line, want_line, strlen(want_line)) == 0) {
        ready = 1;
        if (line[strlen(want_line)] == ' ')
          print_message("  child: %s (writes, group commits)\n", line);
      } else {
        add_ack(line);
        round_acks++;
      }
      line = nl + 1;
    }
    /* A line cut by the kill stays incomplete and is never counted. */
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
  }
  close(fd);
  int wstatus;
  assert_int_equal(waitpid(pid, &wstatus, 0), pid);
  if (!killed || !WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGKILL)
    fail_msg("the child ended by itself (status 0x%x) before the kill; see "
             "its message above",
             (unsigned)wstatus);
  if (want_line && !ready)
    fail_msg("the child never said \"%s\"", want_line);
  print_message("  round %d (%s): %zu acknowledged in %.2f s, killed\n", round,
                mode, round_acks, now_s() - start);
  assert_true(round_acks >= 100);
  return round_acks;
}

/* ------------------------------------------------------------ verifying */

typedef struct seen {
  int round;
  uint64_t seq, base;
  size_t n;
} seen;

typedef struct verify verify;
typedef struct get_ctx {
  verify *v;
  size_t index; /* into acks */
} get_ctx;

struct verify {
  engram *eg;
  get_ctx *gets; /* one per ack */
  int opened, open_status;
  char open_message[512];
  size_t next, in_flight, checked, failures;
  int gets_done;
  seen *found;
  size_t n_found, cap_found;
  int list_done, list_status;
  int written, write_status;
  int closed;
};

static void v_failure(verify *v, const char *fmt, ...) {
  if (v->failures++ < 10) {
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("  %s\n", msg);
  }
}

static void v_opened(engram *eg, int status, const char *message, void *d) {
  verify *v = d;
  (void)eg;
  v->opened = 1;
  v->open_status = status;
  snprintf(v->open_message, sizeof v->open_message, "%s", message);
}

static void v_next_gets(verify *v);

static void v_got(int status, const engram_node *node, void *d) {
  get_ctx *g = d;
  verify *v = g->v;
  const ack *a = &acks[g->index];
  v->in_flight--;
  v->checked++;
  if (status != 0) {
    v_failure(
        v, "acknowledged memory %s (round %d seq %" PRIu64 ") is missing: %s",
        a->id, a->round, a->seq, engram_errname(status));
  } else {
    /* The ack line does not name the batch; the content does, and must be
     * exactly what that batch wrote for this sequence number. */
    char want[160];
    int round;
    uint64_t seq, base;
    size_t n;
    if (sscanf(node->content,
               "round %d seq %" SCNu64 " batch %" SCNu64 " of %zu:", &round,
               &seq, &base, &n) != 4 ||
        round != a->round || seq != a->seq) {
      v_failure(v, "%s has the wrong content: \"%s\"", a->id, node->content);
    } else {
      size_t len = make_content(want, sizeof want, a->round, a->seq, base, n);
      if (node->content_len != len || strcmp(node->content, want) != 0)
        v_failure(v, "%s: content \"%s\", expected \"%s\"", a->id,
                  node->content, want);
    }
    if (strcmp(node->id, a->id) != 0)
      v_failure(v, "get %s returned %s", a->id, node->id);
    if (node->type != type_of(a->seq))
      v_failure(v, "%s: type %d, expected %d", a->id, (int)node->type,
                (int)type_of(a->seq));
    if (strcmp(node->ns, NS) != 0)
      v_failure(v, "%s: namespace \"%s\"", a->id, node->ns);
  }
  v_next_gets(v);
}

static void v_next_gets(verify *v) {
  while (v->in_flight < GET_WINDOW && v->next < n_acks) {
    get_ctx *g = &v->gets[v->next];
    g->v = v;
    g->index = v->next;
    int rc = engram_get(v->eg, NS, acks[v->next].id, v_got, g);
    if (rc != 0)
      fail_msg("engram_get: %s", engram_errname(rc));
    v->next++;
    v->in_flight++;
  }
  if (v->in_flight == 0 && v->next == n_acks)
    v->gets_done = 1;
}

static void v_item(engram_stream *s, const engram_node *node, void *d) {
  verify *v = d;
  (void)s;
  seen x;
  if (sscanf(node->content,
             "round %d seq %" SCNu64 " batch %" SCNu64 " of %zu:", &x.round,
             &x.seq, &x.base, &x.n) != 4) {
    v_failure(v, "a memory not written by this test: \"%s\"", node->content);
    return;
  }
  char want[160];
  make_content(want, sizeof want, x.round, x.seq, x.base, x.n);
  if (strcmp(node->content, want) != 0)
    v_failure(v, "torn memory %s: \"%s\"", node->id, node->content);
  if (v->n_found == v->cap_found) {
    v->cap_found = v->cap_found ? v->cap_found * 2 : 4096;
    v->found = realloc(v->found, v->cap_found * sizeof *v->found);
    assert_non_null(v->found);
  }
  v->found[v->n_found++] = x;
}

static void v_list_done(engram_stream *s, int status, void *d) {
  verify *v = d;
  (void)s;
  v->list_done = 1;
  v->list_status = status;
}

static void v_written(int status, engram_op *ops, size_t n, void *d) {
  verify *v = d;
  (void)ops;
  (void)n;
  v->written = 1;
  v->write_status = status;
}

static void v_closed(engram *eg, void *d) {
  (void)eg;
  ((verify *)d)->closed = 1;
}

static void run_until(verify *v, const int *flag) {
  while (!*flag) {
    if (uv_run(engram_loop(v->eg), UV_RUN_ONCE) == 0 && !*flag)
      fail_msg("the loop ran dry before the awaited callback");
  }
}

static int cmp_seen(const void *pa, const void *pb) {
  const seen *a = pa, *b = pb;
  if (a->round != b->round)
    return a->round < b->round ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Every memory belongs to a batch that is there whole, and none twice. */
static void check_batches(verify *v) {
  qsort(v->found, v->n_found, sizeof *v->found, cmp_seen);
  for (size_t i = 0; i < v->n_found;) {
    const seen *g = &v->found[i];
    if (g->seq != g->base) {
      v_failure(v,
                "round %d seq %" PRIu64 ": its batch at %" PRIu64
                " is not all there (or a memory is there twice)",
                g->round, g->seq, g->base);
      i++;
      continue;
    }
    size_t k = 0;
    while (
        k < g->n && i + k < v->n_found && v->found[i + k].round == g->round &&
        v->found[i + k].seq == g->base + k && v->found[i + k].base == g->base)
      k++;
    if (k != g->n)
      v_failure(v,
                "round %d batch at seq %" PRIu64 ": %zu of its %zu "
                "memories are in the file; a batch is all or nothing",
                g->round, g->base, k, g->n);
    i += k ? k : 1;
  }
}

/* Reopens db on a fresh handle and checks every acknowledgement so far.
 * exact: every child was killed idle, so the file must hold exactly the
 * acknowledged memories (nothing unacknowledged was in flight). */
static void verify_db(const char *db, int exact) {
  verify v;
  memset(&v, 0, sizeof v);
  engram_options opts;
  engram_options_init(&opts);
  opts.db = db;
  assert_int_equal(engram_init(&v.eg, NULL, &opts), 0);
  assert_int_equal(engram_open(v.eg, v_opened, &v), 0);
  run_until(&v, &v.opened);
  if (v.open_status != 0)
    fail_msg("reopening after the kill: %s (%s)", engram_errname(v.open_status),
             v.open_message);

  double start = now_s();
  v.gets = calloc(n_acks ? n_acks : 1, sizeof *v.gets);
  assert_non_null(v.gets);
  v_next_gets(&v);
  run_until(&v, &v.gets_done);
  assert_int_equal(v.checked, n_acks);

  engram_query q = {.ns = NS};
  engram_stream_cbs cbs = {.item = v_item, .done = v_list_done, .data = &v};
  engram_stream *s;
  assert_int_equal(engram_list(v.eg, &q, &cbs, &s), 0);
  assert_int_equal(engram_stream_request(s, SIZE_MAX), 0);
  run_until(&v, &v.list_done);
  assert_int_equal(v.list_status, 0);
  check_batches(&v);
  print_message("  reopened: %zu acknowledged found by get, %zu memories "
                "listed (%.2f s)\n",
                n_acks, v.n_found, now_s() - start);
  if (v.n_found < n_acks || (exact && v.n_found != n_acks))
    v_failure(&v, "the list has %zu memories, and %zu were acknowledged",
              v.n_found, n_acks);

  /* The recovered file takes new writes. */
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = "after-crash",
                  .content = "written after recovery"};
  assert_int_equal(engram_write(v.eg, &op, 1, v_written, &v), 0);
  run_until(&v, &v.written);
  assert_int_equal(v.write_status, 0);

  engram_close(v.eg, v_closed, &v);
  run_until(&v, &v.closed);
  engram_free(v.eg);
  free(v.found);
  free(v.gets);
  if (v.failures)
    fail_msg("%zu durability failures (the first are above)", v.failures);
}

static void db_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/durability-%s.db", tmp_dir, name);
  remove_db(out);
}

static void reset_acks(void) {
  free(acks);
  acks = NULL;
  n_acks = cap_acks = 0;
}

/* ---------------------------------------------------------------- tests */

static void test_kill_normal_three_rounds(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "normal");
  reset_acks();
  for (int round = 1; round <= 3; round++) {
    run_child(db, ENGRAM_DURABILITY_NORMAL, round, "write", ACKS_PER_ROUND);
    verify_db(db, 0);
  }
  reset_acks();
  remove_db(db);
}

static void test_kill_full(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "full");
  reset_acks();
  run_child(db, ENGRAM_DURABILITY_FULL, 1, "write", ACKS_PER_ROUND);
  verify_db(db, 0);
  run_child(db, ENGRAM_DURABILITY_FULL, 2, "idle", 0);
  verify_db(db, 0);
  reset_acks();
  remove_db(db);
}

/* Killed when every write is acknowledged and the writer has nothing to
 * do: the last acknowledgements must be durable too (a writer that
 * acknowledged a group before committing it, counting on the next group
 * to commit, passes the busy rounds above and fails here), and nothing
 * else is in the file. */
static void test_kill_when_idle(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "idle");
  reset_acks();
  for (int round = 1; round <= 2; round++) {
    run_child(db, ENGRAM_DURABILITY_NORMAL, round, "idle", 0);
    verify_db(db, 1);
  }
  reset_acks();
  remove_db(db);
}

static void test_kill_with_streams_open(void **state) {
  (void)state;
  char db[600];
  db_path(db, sizeof db, "streams");
  reset_acks();
  /* Enough memories for the streams to have several chunks to read. */
  run_child(db, ENGRAM_DURABILITY_NORMAL, 1, "write", 500);
  verify_db(db, 0);
  run_child(db, ENGRAM_DURABILITY_NORMAL, 2, "streams", 300);
  verify_db(db, 0);
  reset_acks();
  remove_db(db);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--child") == 0)
    return child_main(argc, argv);

  const char *base = getenv("ENGRAM_TEST_TMP");
  snprintf(tmp_dir, sizeof tmp_dir, "%s",
           base && *base ? base : "/tmp/engram-test");
  make_dirs(tmp_dir);
  alarm(120); /* a lost callback hangs no CI job */

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill_normal_three_rounds),
      cmocka_unit_test(test_kill_full),
      cmocka_unit_test(test_kill_when_idle),
      cmocka_unit_test(test_kill_with_streams_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
