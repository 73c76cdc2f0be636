/*
 * http.c — engram serve's throughput and latency over HTTP, beside the same
 * operations called in-process through the C API, in the same run.
 *
 * The store holds N corpus sentences (100,000 by default). Three operations
 * are measured, each with C requests in flight at all times (64 by
 * default) for D seconds:
 *
 *   get      engram_get of a random id         GET /v1/memories/:id?ns=
 *   search   engram_search, first 10 results   POST /v1/search
 *   context  engram_context_inject, 10 max     POST /v1/context
 *
 * In-process, the benchmark's loop starts a new operation from each
 * completion callback; latency is from the start to the callback. Over
 * HTTP, the same binary is started again as the server (--serve: engram
 * serve's library calls on the same database, beside the benchmark's own
 * handle; loopback; access log to a file), and wrk — a second process —
 * keeps C connections busy with the scripts of bench/wrk/, drawing ids and
 * queries from the same lists. The ratio HTTP / in-process throughput is
 * the cost of the service layer: sockets, HTTP parsing, JSON both ways, the
 * access log, and wrk itself, which shares the machine's CPUs with the
 * server.
 *
 * Both sides run in each of --runs runs, alternating which goes first, and
 * the tables show medians, so that other load on the machine weighs on
 * both alike. Beside throughput and latency, the CPU time of the process
 * doing the work (the benchmark itself in-process, the server process over
 * HTTP, wrk excluded) is given per request.
 *
 * wrk comes from the Debian package wrk; without it the HTTP side is
 * skipped with a message (scripts/bench.sh installs it when it can).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "benchdb.h"
#include "corpus.h"
#include "engram.h"
#include "rng.h"
#include "stats.h"

#define NS "bench"
#define SEARCH_LIMIT 10
#define CONTEXT_MAX 10
#define MAX_RUNS 16

enum { OP_GET, OP_SEARCH, OP_CONTEXT, N_OPS };
static const char *const op_name[N_OPS] = {"get", "search", "context"};
static const char *const op_http[N_OPS] = {
    "GET /v1/memories/:id", "POST /v1/search", "POST /v1/context"};

typedef struct options {
  size_t n;
  size_t queries;
  size_t conns;
  size_t runs;
  unsigned duration_s;
  unsigned wrk_threads;
  unsigned pool;
  uint64_t timeout_ms;
  uint64_t seed;
  const char *wrk_dir;
} options;

static options opt = {
    .n = 100000,
    .queries = 2000,
    .conns = 64,
    .runs = 3,
    .duration_s = 5,
    .wrk_threads = 1,
    .pool = 4,
    .timeout_ms = 10000,
    .seed = 42,
    .wrk_dir = NULL,
};

static uv_loop_t loop;
static engram *eg;
static char **ids;
static size_t nids;
static char **queries;

/* ------------------------------------------------------ in-process side */

typedef struct figures {
  double rps, p50_ms, p99_ms;
  double cpu_us; /* CPU time of the serving process per operation */
  size_t done, errors;
} figures;

typedef struct runner {
  int op;
  uint64_t end_ns;
  uint64_t *lat;
  size_t nlat, cap;
  size_t inflight;
  size_t errors;
  size_t results; /* memories returned, over every operation */
  bench_rng rng;
} runner;

typedef struct slot {
  runner *r;
  uint64_t start;
  size_t got;
} slot;

static void start_one(slot *s);

static void finish_one(slot *s, int ok) {
  runner *r = s->r;
  uint64_t now = stats_now_ns();
  r->inflight--;
  if (!ok)
    r->errors++;
  if (r->nlat == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 65536;
    r->lat = realloc(r->lat, r->cap * sizeof *r->lat);
    if (!r->lat)
      abort();
  }
  r->lat[r->nlat++] = now - s->start;
  if (now < r->end_ns)
    start_one(s);
}

static void on_get(int status, const engram_node *node, void *data) {
  slot *s = data;
  if (status == 0 && node)
    s->r->results++;
  finish_one(s, status == 0);
}

static void on_item(engram_stream *st, const engram_node *node, void *data) {
  slot *s = data;
  (void)node;
  s->r->results++;
  if (++s->got == SEARCH_LIMIT)
    engram_stream_cancel(st); /* as the route does at its limit */
}

static void on_done(engram_stream *st, int status, void *data) {
  slot *s = data;
  (void)st;
  finish_one(s, status == 0 ||
                    (status == ENGRAM_ECANCELED && s->got == SEARCH_LIMIT));
}

static void on_context(const engram_context_result *res, void *data) {
  slot *s = data;
  s->r->results += res->count;
  finish_one(s, res->status == 0 && !res->timed_out);
}

static void start_one(slot *s) {
  runner *r = s->r;
  s->start = stats_now_ns();
  s->got = 0;
  r->inflight++;
  int rc;
  if (r->op == OP_GET) {
    rc = engram_get(eg, NS, ids[bench_rng_below(&r->rng, nids)], on_get, s);
  } else if (r->op == OP_SEARCH) {
    engram_query q = {.ns = NS,
                      .text = queries[bench_rng_below(&r->rng, opt.queries)]};
    engram_stream_cbs cbs = {on_item, NULL, on_done, s};
    engram_stream *st;
    rc = engram_search(eg, &q, &cbs, &st);
    if (rc == 0) {
      engram_stream_set_deadline(st, opt.timeout_ms);
      engram_stream_request(st, SEARCH_LIMIT);
    }
  } else {
    engram_context_options o = {.max_memories = CONTEXT_MAX,
                                .timeout_ms = opt.timeout_ms,
                                .strategy = ENGRAM_STRATEGY_LEXICAL};
    rc = engram_context_inject(eg, NS,
                               queries[bench_rng_below(&r->rng, opt.queries)],
                               &o, on_context, s, NULL);
  }
  if (rc != 0) {
    fprintf(stderr, "http: %s: %s\n", op_name[r->op], engram_strerror(rc));
    abort();
  }
}

static void run_inprocess(int op, double seconds, figures *f, double *per_op) {
  runner r;
  memset(&r, 0, sizeof r);
  r.op = op;
  bench_rng_seed(&r.rng, opt.seed + (uint64_t)op);
  slot *slots = calloc(opt.conns, sizeof *slots);
  if (!slots)
    abort();
  uint64_t t0 = stats_now_ns(), cpu0 = stats_cpu_ns();
  r.end_ns = t0 + (uint64_t)(seconds * 1e9);
  for (size_t i = 0; i < opt.conns; i++) {
    slots[i].r = &r;
    start_one(&slots[i]);
  }
  while (r.inflight > 0)
    uv_run(&loop, UV_RUN_ONCE);
  double elapsed = (double)(stats_now_ns() - t0) / 1e9;
  f->cpu_us =
      r.nlat ? (double)(stats_cpu_ns() - cpu0) / 1e3 / (double)r.nlat : 0;
  stats_sort_u64(r.lat, r.nlat);
  f->done = r.nlat;
  f->errors = r.errors;
  f->rps = (double)r.nlat / elapsed;
  f->p50_ms = stats_percentile(r.lat, r.nlat, 50) / 1e6;
  f->p99_ms = stats_percentile(r.lat, r.nlat, 99) / 1e6;
  if (per_op)
    *per_op = r.nlat ? (double)r.results / (double)r.nlat : 0;
  free(r.lat);
  free(slots);
}

/* ------------------------------------------------------- the server side */

static uv_signal_t sigterm;
static engram_server *srv;
static int stopped;

static void on_stopped(engram_server *s, void *data) {
  (void)s;
  (void)data;
  stopped = 1;
}

static void on_sigterm(uv_signal_t *h, int signum) {
  (void)signum;
  uv_close((uv_handle_t *)h, NULL);
  engram_server_stop(srv, on_stopped, NULL);
}

/* --serve DB LOG: engram serve's library calls on DB, port on stdout,
 * until SIGTERM. */
static int serve(const char *db, const char *log_path) {
  uv_loop_init(&loop);
  engram_options eo;
  engram_options_init(&eo);
  eo.db = db;
  if (engram_init(&eg, &loop, &eo) != 0 || benchdb_open(eg) != 0)
    return 1;
  FILE *log = fopen(log_path, "w");
  if (!log) {
    perror(log_path);
    return 1;
  }
  engram_server_options so;
  engram_server_options_init(&so);
  so.listen = "127.0.0.1:0";
  so.access_log = log;
  char err[512] = "";
  if (engram_server_start(eg, &so, &srv, err, sizeof err) != 0) {
    fprintf(stderr, "http: serve: %s\n", err);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigterm, on_sigterm, SIGTERM);
  printf("%d\n", engram_server_port(srv));
  fflush(stdout);
  while (!stopped)
    uv_run(&loop, UV_RUN_ONCE);
  benchdb_close(eg);
  engram_free(eg);
  fclose(log);
  return 0;
}

static pid_t server_pid = -1;

static int start_server(const char *self, const char *db, const char *log) {
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  server_pid = fork();
  if (server_pid < 0)
    return -1;
  if (server_pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(self, self, "--serve", db, log, (char *)NULL);
    perror("http: exec");
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  int port = -1;
  if (!f || fscanf(f, "%d", &port) != 1)
    port = -1;
  if (f)
    fclose(f);
  return port;
}

static int stop_server(void) {
  if (server_pid <= 0)
    return -1;
  kill(server_pid, SIGTERM);
  int st;
  if (waitpid(server_pid, &st, 0) != server_pid)
    return -1;
  server_pid = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* VmHWM and VmRSS of pid, in KiB. */
static void proc_rss(pid_t pid, long *hwm, long *rss) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  *hwm = *rss = -1;
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "VmHWM: %ld kB", hwm);
    sscanf(line, "VmRSS: %ld kB", rss);
  }
  fclose(f);
}

/* CPU time (user + system) of pid so far, in microseconds. */
static double proc_cpu_us(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* after the command name */
  unsigned long long ut = 0, st = 0;
  if (!p ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &ut, &st) != 2)
    return 0;
  return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* One request on a fresh connection; the status, and the body in out. */
static int http_once(int port, const char *method, const char *path,
                     const char *body, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    return -1;
  char req[4096];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                   "\r\n%s",
                   method, path, body ? strlen(body) : 0, body ? body : "");
  if (send(fd, req, (size_t)n, 0) != n) {
    close(fd);
    return -1;
  }
  size_t len = 0;
  ssize_t got;
  while (len + 1 < cap && (got = recv(fd, out + len, cap - len - 1, 0)) > 0)
    len += (size_t)got;
  out[len] = '\0';
  close(fd);
  int status = -1;
  sscanf(out, "HTTP/1.%*d %d", &status);
  return status;
}

/* A latency of wrk's ("1.23ms", "850.00us", "1.02s") in milliseconds. */
static double wrk_ms(const char *v) {
  char *end;
  double x = strtod(v, &end);
  if (!strncmp(end, "us", 2))
    return x / 1000;
  if (!strncmp(end, "ms", 2))
    return x;
  if (!strncmp(end, "s", 1))
    return x * 1000;
  if (!strncmp(end, "m", 1))
    return x * 60000;
  return x;
}

static int run_wrk(int op, int port, const char *dir, unsigned seconds,
                   figures *f, int show) {
  static const char *const script[N_OPS] = {"get.lua", "search.lua",
                                            "context.lua"};
  char cmd[8192], args[1024];
  if (op == OP_GET)
    snprintf(args, sizeof args, "%s/ids.txt %s", dir, NS);
  else if (op == OP_SEARCH)
    snprintf(args, sizeof args, "%s/queries.txt %s %d", dir, NS, SEARCH_LIMIT);
  else
    snprintf(args, sizeof args, "%s/queries.txt %s %d %llu", dir, NS,
             CONTEXT_MAX, (unsigned long long)opt.timeout_ms);
  snprintf(cmd, sizeof cmd,
           "wrk -t%u -c%zu -d%us --timeout 30s --latency -s %s/%s "
           "http://127.0.0.1:%d -- %s 2>&1",
           opt.wrk_threads, opt.conns, seconds, opt.wrk_dir, script[op], port,
           args);
  if (show)
    printf("$ %s\n", cmd);
  double cpu0 = proc_cpu_us(server_pid);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  memset(f, 0, sizeof *f);
  char line[512];
  int got_rps = 0;
  size_t non2xx = 0, sock_err = 0;
  while (fgets(line, sizeof line, p)) {
    char v[64];
    unsigned long long a, b, c, d;
    if (sscanf(line, " 50%% %63s", v) == 1)
      f->p50_ms = wrk_ms(v);
    else if (sscanf(line, " 99%% %63s", v) == 1)
      f->p99_ms = wrk_ms(v);
    else if (sscanf(line, "Requests/sec: %lf", &f->rps) == 1)
      got_rps = 1;
    else if (sscanf(line, " %llu requests in", &a) == 1)
      f->done = (size_t)a;
    else if (sscanf(line, " Non-2xx or 3xx responses: %llu", &a) == 1)
      non2xx = (size_t)a;
    else if (sscanf(line,
                    " Socket errors: connect %llu, read %llu, write %llu, "
                    "timeout %llu",
                    &a, &b, &c, &d) == 4)
      sock_err = (size_t)(a + b + c + d);
    else if (strstr(line, "rror") || strstr(line, "PANIC"))
      fputs(line, stdout);
  }
  int rc = pclose(p);
  f->errors = non2xx + sock_err;
  f->cpu_us = f->done ? (proc_cpu_us(server_pid) - cpu0) / (double)f->done : 0;
  if (rc != 0 || !got_rps) {
    fprintf(stderr, "http: wrk failed (status %d)\n", rc);
    return -1;
  }
  return 0;
}

/* ----------------------------------------------------------------- setup */

static void on_list_item(engram_stream *s, const engram_node *n, void *data) {
  (void)s;
  (void)data;
  ids[nids] = strdup(n->id);
  if (!ids[nids])
    abort();
  nids++;
}

static void on_list_done(engram_stream *s, int status, void *data) {
  (void)s;
  *(int *)data = status == 0 ? 1 : -1;
}

/* Every id of the namespace, in pages of 1024 items. */
static int load_ids(void) {
  ids = calloc(opt.n, sizeof *ids);
  if (!ids)
    return -1;
  engram_query q = {.ns = NS};
  engram_stream_cbs cbs = {on_list_item, NULL, on_list_done, NULL};
  int done = 0;
  cbs.data = &done;
  engram_stream *s;
  if (engram_list(eg, &q, &cbs, &s) != 0)
    return -1;
  engram_stream_request(s, opt.n + 1); /* +1: the end is seen */
  while (!done)
    uv_run(&loop, UV_RUN_ONCE);
  return done == 1 && nids == opt.n ? 0 : -1;
}

static int write_lines(const char *path, char **v, size_t n) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s\n", v[i]);
  return fclose(f);
}

static int have_wrk(void) {
  return system("command -v wrk >/dev/null 2>&1") == 0;
}

static void print_figures(const char *side, int op, const figures *f,
                          double per_op) {
  printf("  %-10s %-7s %8.0f/s  p50 %8.3f ms  p99 %8.3f ms  CPU %7.1f "
         "us/op  (%zu done, %zu errors",
         side, op_name[op], f->rps, f->p50_ms, f->p99_ms, f->cpu_us, f->done,
         f->errors);
  if (per_op >= 0)
    printf(", %.1f memories each)\n", per_op);
  else
    printf("; CPU of the server process)\n");
}

static void median_figures(const figures *runs, size_t n, figures *out) {
  double v[MAX_RUNS];
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < n; i++)
    v[i] = runs[i].rps;
  out->rps = stats_median(v, n);
  for (size_t i = 0; i < n; i++)
    v[i] = runs[i].p50_ms;
  out->p50_ms = stats_median(v, n);
  for (size_t i = 0; i < n; i++)
    v[i] = runs[i].p99_ms;
  out->p99_ms = stats_median(v, n);
  for (size_t i = 0; i < n; i++)
    v[i] = runs[i].cpu_us;
  out->cpu_us = stats_median(v, n);
}

/* Each route answers correctly before it is measured: 0, or -1. */
static int check_routes(int port) {
  char body[65536], req[1024], path[256];
  snprintf(path, sizeof path, "/v1/memories/%s?ns=%s", ids[0], NS);
  int s1 = http_once(port, "GET", path, NULL, body, sizeof body);
  int ok = s1 == 200 && strstr(body, ids[0]);
  snprintf(req, sizeof req, "{\"ns\":\"%s\",\"query\":\"%s\",\"limit\":%d}", NS,
           queries[0], SEARCH_LIMIT);
  int s2 = http_once(port, "POST", "/v1/search", req, body, sizeof body);
  ok = ok && s2 == 200 && strstr(body, "\"results\"");
  snprintf(req, sizeof req,
           "{\"ns\":\"%s\",\"message\":\"%s\",\"max_memories\":%d}", NS,
           queries[0], CONTEXT_MAX);
  int s3 = http_once(port, "POST", "/v1/context", req, body, sizeof body);
  ok = ok && s3 == 200 && strstr(body, "\"text\"");
  if (!ok)
    fprintf(stderr, "http: a route answered wrongly (%d %d %d): %.300s\n", s1,
            s2, s3, body);
  return ok ? 0 : -1;
}

static void cleanup(const char *dir, const char *log, corpus *cp) {
  char path[4200];
  for (size_t i = 0; i < nids; i++)
    free(ids[i]);
  free(ids);
  for (size_t i = 0; i < opt.queries; i++)
    free(queries[i]);
  free(queries);
  corpus_free(cp);
  uv_loop_close(&loop);
  unlink(log);
  snprintf(path, sizeof path, "%s/ids.txt", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/queries.txt", dir);
  unlink(path);
  benchdb_rmdir(dir);
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_http [options]\n"
          "  --n N             memories in the store (100000)\n"
          "  --queries N       distinct queries (2000)\n"
          "  --connections N   requests in flight / wrk connections (64)\n"
          "  --duration S      seconds per measurement (5)\n"
          "  --runs N          runs, both sides each; medians shown (3)\n"
          "  --wrk-threads N   wrk threads (1: the machine's other CPUs are "
          "the server's)\n"
          "  --pool N          UV_THREADPOOL_SIZE, both sides (4)\n"
          "  --timeout-ms MS   search and context deadline (10000)\n"
          "  --seed N          corpus seed (42)\n"
          "  --wrk-dir DIR     the wrk scripts (bench/wrk beside this file)\n");
}

static int parse_args(int argc, char **argv) {
  const bench_arg opts[] = {
      {"--n", ARG_SIZE, &opt.n, NULL, 0},
      {"--queries", ARG_SIZE, &opt.queries, NULL, 0},
      {"--connections", ARG_SIZE, &opt.conns, NULL, 0},
      {"--runs", ARG_SIZE, &opt.runs, NULL, 0},
      {"--duration", ARG_UNSIGNED, &opt.duration_s, NULL, 0},
      {"--wrk-threads", ARG_UNSIGNED, &opt.wrk_threads, NULL, 0},
      {"--pool", ARG_UNSIGNED, &opt.pool, NULL, 0},
      {"--timeout-ms", ARG_U64, &opt.timeout_ms, NULL, 0},
      {"--seed", ARG_U64, &opt.seed, NULL, 0},
      {"--wrk-dir", ARG_STR, &opt.wrk_dir, NULL, 0},
      {NULL, 0, NULL, NULL, 0},
  };
  if (bench_parse_args(argc, argv, "http", opts, usage) != 0)
    return -1;
  if (!opt.n || !opt.queries || !opt.conns || !opt.duration_s ||
      !opt.wrk_threads || !opt.pool || !opt.timeout_ms || !opt.runs ||
      opt.runs > MAX_RUNS) {
    fprintf(stderr, "http: every count must be positive (--runs <= %d)\n",
            MAX_RUNS);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--serve"))
    return serve(argv[2], argv[3]);
  if (parse_args(argc, argv) != 0)
    return 2;
  char pool[16];
  snprintf(pool, sizeof pool, "%u", opt.pool);
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  setvbuf(stdout, NULL, _IOLBF, 0);
  static char wrk_dir[4096];
  if (!opt.wrk_dir) {
    /* bench/wrk beside this source file (CMake compiles it by its full
     * path), else relative to the repository root. */
    const char *slash = strrchr(__FILE__, '/');
    if (slash)
      snprintf(wrk_dir, sizeof wrk_dir, "%.*s/wrk", (int)(slash - __FILE__),
               __FILE__);
    else
      snprintf(wrk_dir, sizeof wrk_dir, "bench/wrk");
    if (access(wrk_dir, R_OK) != 0)
      snprintf(wrk_dir, sizeof wrk_dir, "bench/wrk");
    opt.wrk_dir = wrk_dir;
  }

  char dir[4096], db[4200], log[4200], path[4200];
  if (benchdb_mkdir("http", dir, sizeof dir) != 0) {
    perror("http: mkdtemp");
    return 1;
  }
  snprintf(db, sizeof db, "%s/engram.db", dir);
  snprintf(log, sizeof log, "%s/access.log", dir);
  uv_loop_init(&loop);
  engram_options eo;
  engram_options_init(&eo);
  eo.db = db;
  if (engram_init(&eg, &loop, &eo) != 0 || benchdb_open(eg) != 0)
    return 1;
  corpus *cp = corpus_new(opt.seed, 0);
  if (!cp)
    return 1;
  uint64_t t = stats_now_ns();
  if (benchdb_fill(eg, NS, ENGRAM_EPISODIC, cp, opt.n, 1000) != 0 || load_ids() != 0) {
    fprintf(stderr, "http: filling the store failed\n");
    return 1;
  }
  double fill_s = (double)(stats_now_ns() - t) / 1e9;
  queries = calloc(opt.queries, sizeof *queries);
  if (!queries)
    return 1;
  for (size_t i = 0; i < opt.queries; i++) {
    char buf[CORPUS_MAX_SENTENCE];
    corpus_query(cp, buf, sizeof buf);
    if (!(queries[i] = strdup(buf)))
      return 1;
  }
  snprintf(path, sizeof path, "%s/ids.txt", dir);
  if (write_lines(path, ids, nids) != 0)
    return 1;
  snprintf(path, sizeof path, "%s/queries.txt", dir);
  if (write_lines(path, queries, opt.queries) != 0)
    return 1;

  printf("# bench_http\n\n");
  printf("store: %zu memories (corpus seed %llu), filled in %.1f s; %zu "
         "queries; libuv pool %u threads on both sides; %zu requests in "
         "flight (= wrk connections, %u wrk thread%s); %u s per "
         "measurement; search limit %d, context max_memories %d, deadline "
         "%llu ms; %ld CPUs\n",
         opt.n, (unsigned long long)opt.seed, fill_s, opt.queries, opt.pool,
         opt.conns, opt.wrk_threads, opt.wrk_threads == 1 ? "" : "s",
         opt.duration_s, SEARCH_LIMIT, CONTEXT_MAX,
         (unsigned long long)opt.timeout_ms, sysconf(_SC_NPROCESSORS_ONLN));
  char load[64] = "?";
  FILE *lf = fopen("/proc/loadavg", "r");
  if (lf) {
    if (!fgets(load, sizeof load, lf))
      snprintf(load, sizeof load, "?");
    load[strcspn(load, "\n")] = '\0';
    fclose(lf);
  }
  printf("load average before the runs: %s (other work on the machine "
         "shares its CPUs with both sides)\n",
         load);
  printf("e.g. query: \"%s\"\n\n", queries[0]);

  int failed = 0;
  if (!have_wrk()) {
    /* The in-process side alone still says something; the HTTP side needs
     * wrk. */
    printf("wrk is not installed (Debian: apt-get install wrk): the HTTP "
           "side is skipped, in-process figures only\n\n");
    for (int op = 0; op < N_OPS; op++) {
      figures w, f;
      double per;
      run_inprocess(op, 1.0, &w, NULL);
      run_inprocess(op, opt.duration_s, &f, &per);
      print_figures("in-process", op, &f, per);
      failed |= f.errors != 0;
    }
    benchdb_close(eg);
    engram_free(eg);
    cleanup(dir, log, cp);
    return failed;
  }

  /* The server runs beside the benchmark's own handle on the same file
   * (SQLite in WAL mode: readers in both processes). */
  char self[4096];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0)
    return 1;
  self[sl] = '\0';
  int port = start_server(self, db, log);
  if (port <= 0 || check_routes(port) != 0) {
    fprintf(stderr, "http: the server did not start or answered wrongly\n");
    stop_server();
    return 1;
  }
  long rss0, hwm0;
  proc_rss(server_pid, &hwm0, &rss0);

  /* Each run measures every operation on both sides, alternating which
   * side goes first, so that a change of load on the machine during the
   * run weighs on both; the tables show medians over the runs. */
  figures in[N_OPS][MAX_RUNS], web[N_OPS][MAX_RUNS];
  double per_op[N_OPS] = {0};
  for (size_t run = 0; run < opt.runs; run++) {
    printf("run %zu\n", run + 1);
    for (int op = 0; op < N_OPS; op++) {
      for (int k = 0; k < 2; k++) {
        int http_side = (int)((run + (size_t)k) % 2);
        figures w;
        if (http_side) {
          if (run_wrk(op, port, dir, 1, &w, 0) != 0 ||
              run_wrk(op, port, dir, opt.duration_s, &web[op][run], run == 0) !=
                  0) {
            stop_server();
            return 1;
          }
          print_figures("HTTP", op, &web[op][run], -1);
          failed |= web[op][run].errors != 0;
        } else {
          run_inprocess(op, 1.0, &w, NULL);
          run_inprocess(op, opt.duration_s, &in[op][run], &per_op[op]);
          print_figures("in-process", op, &in[op][run], per_op[op]);
          failed |= in[op][run].errors != 0;
        }
      }
    }
  }
  long rss1, hwm1;
  proc_rss(server_pid, &hwm1, &rss1);
  int rc = stop_server();
  printf("\nserver RSS: %ld KiB after start, %ld KiB after the runs (peak "
         "%ld KiB); it exited with status %d after SIGTERM\n",
         rss0, rss1, hwm1, rc);
  failed |= rc != 0;

  figures mi[N_OPS], mw[N_OPS];
  for (int op = 0; op < N_OPS; op++) {
    median_figures(in[op], opt.runs, &mi[op]);
    median_figures(web[op], opt.runs, &mw[op]);
  }
  printf("\n## medians of %zu runs\n\n", opt.runs);
  printf("| operation | in-process /s | p50 ms | p99 ms | CPU us/op | "
         "HTTP route | HTTP /s | p50 ms | p99 ms | server CPU us/req | "
         "HTTP / in-process |\n");
  printf("|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|\n");
  for (int op = 0; op < N_OPS; op++)
    printf("| %s | %.0f | %.3f | %.3f | %.1f | `%s` | %.0f | %.3f | %.3f | "
           "%.1f | %.2f |\n",
           op_name[op], mi[op].rps, mi[op].p50_ms, mi[op].p99_ms, mi[op].cpu_us,
           op_http[op], mw[op].rps, mw[op].p50_ms, mw[op].p99_ms, mw[op].cpu_us,
           mw[op].rps / mi[op].rps);
  printf("\nRATIOS (same run, %zu in flight; medians over %zu runs)\n",
         opt.conns, opt.runs);
  for (int op = 0; op < N_OPS; op++)
    printf("  %-8s throughput HTTP / in-process %5.2f   CPU per request "
           "server / in-process %5.2f  (no target: the cost of the service "
           "layer)\n",
           op_name[op], mw[op].rps / mi[op].rps,
           mi[op].cpu_us > 0 ? mw[op].cpu_us / mi[op].cpu_us : 0);

  benchdb_close(eg);
  engram_free(eg);
  cleanup(dir, log, cp);
  if (failed)
    fprintf(stderr, "http: some requests failed (see the errors above)\n");
  return failed ? 1 : 0;
}
