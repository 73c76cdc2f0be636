/*
 * test_http_stream.c — backpressure end to end through engram serve: an
 * NDJSON search over 50,000 matching memories, read by a raw TCP client in
 * the same process (the test drives the loop, so the server runs only when
 * the test lets it).
 *
 *  - A client that reads 100 lines and then stops reading stops the query:
 *    for a second the server's memory barely grows, the stream stays open
 *    with its cursor paused and no thread-pool task, and only a few
 *    chunks' worth of lines were produced beyond what the client read.
 *    Closing the socket then cancels the stream and its query.
 *  - A client that reads in bursts, pausing between them, gets the 10,000
 *    memories it asked for, ranked, each once, and a final line that counts
 *    them: the server pauses with the client, resumes when reading does,
 *    and the limit ends the query.
 *  - Against a store slowed to 50 ms per item, a 1 s deadline makes every
 *    route answer 200 with what arrived in time, marked timed out; a client
 *    that leaves before its answer leaves nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tu.h"

#define MEMORIES 50000
#define NS "big"

/* -------------------------------------------------------------- helpers */

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

static void tick(uv_timer_t *t) {
  (void)t;
}

/* Runs the loop until cond(arg) or timeout_ms of wall time; a 2 ms guard
 * timer keeps each UV_RUN_ONCE from blocking for long. */
static int run_until(uv_loop_t *loop, int (*cond)(void *), void *arg,
                     uint64_t timeout_ms) {
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, tick, 2, 2);
  uint64_t end = uv_hrtime() + timeout_ms * 1000000u;
  int ok;
  while (!(ok = cond(arg)) && uv_hrtime() < end)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

static int never(void *arg) {
  (void)arg;
  return 0;
}
static void run_for(uv_loop_t *loop, uint64_t ms) {
  run_until(loop, never, NULL, ms);
}

/* ~400 bytes, every one with the word "common". */
static const char *memory_text(size_t i, void *arg) {
  static char buf[512];
  (void)arg;
  int n = snprintf(buf, sizeof buf, "memory %zu about the common topic:", i);
  static const char *const words[] = {"alpha", "bravo",   "charlie", "delta",
                                      "echo",  "foxtrot", "golf",    "hotel"};
  for (size_t k = 0; n < 400; k++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, " %s%zu", words[(i + k) % 8],
                  (i * 7 + k) % 1000);
  return buf;
}

/* ------------------------------------------------------------ fixture */

typedef struct fixture {
  engram *eg;
  uv_loop_t *loop;
  engram_server *srv;
  FILE *log;
  int stopped;
} fixture;

static int setup(void **state) {
  static fixture f;
  memset(&f, 0, sizeof f);
  f.eg = tu_open(tu_db_path("http_stream"), NULL);
  f.loop = engram_loop(f.eg);
  uint64_t t0 = uv_hrtime();
  assert_int_equal(tu_add_many(f.eg, NS, MEMORIES, memory_text, NULL), 0);
  print_message("stored %d memories in %.1f s\n", MEMORIES,
                (double)(uv_hrtime() - t0) / 1e9);
  f.log = fopen("/dev/null", "w");
  engram_server_options o;
  engram_server_options_init(&o);
  o.listen = "127.0.0.1:0";
  o.access_log = f.log;
  char err[256] = "";
  assert_int_equal(engram_server_start(f.eg, &o, &f.srv, err, sizeof err), 0);
  *state = &f;
  return 0;
}

static void on_stopped(engram_server *srv, void *data) {
  (void)srv;
  ((fixture *)data)->stopped = 1;
}

static int is_stopped(void *arg) {
  return ((fixture *)arg)->stopped;
}

static void on_stopped_flag(engram_server *srv, void *data) {
  (void)srv;
  *(int *)data = 1;
}

static int flag_set(void *arg) {
  return *(int *)arg;
}

/* After a failed test: the client sockets it left open are closed (with
 * their unread bytes, which makes the kernel reset the connection). */
static int stray_fds[8];
static int nstray;

static void close_clients(uv_handle_t *h, void *arg) {
  (void)arg;
  uv_os_fd_t fd;
  if (h->type != UV_POLL || uv_is_closing(h))
    return;
  if (uv_fileno(h, &fd) == 0 && nstray < 8)
    stray_fds[nstray++] = fd;
  uv_close(h, NULL);
}

static int teardown(void **state) {
  fixture *f = *state;
  uv_walk(f->loop, close_clients, NULL);
  uv_run(f->loop, UV_RUN_NOWAIT);
  while (nstray > 0)
    close(stray_fds[--nstray]);
  engram_server_stop(f->srv, on_stopped, f);
  assert_true(run_until(f->loop, is_stopped, f, 10000));
  tu_close(f->eg);
  fclose(f->log);
  return 0;
}

/* ------------------------------------------------------------- client */

typedef struct client {
  int fd;
  uv_poll_t poll;
  int polling;
  char *data; /* everything received (headers, chunk framing, lines);
               * NUL-terminated once anything arrived */
  size_t len, cap;
  size_t lines;   /* memory lines seen so far */
  size_t stop_at; /* stop reading once this many lines arrived */
  int done;       /* the final line arrived */
  int eof;
} client;

static size_t count(const char *p, size_t n, const char *needle) {
  size_t k = 0, nl = strlen(needle);
  for (size_t i = 0; i + nl <= n; i++)
    if (memcmp(p + i, needle, nl) == 0)
      k++;
  return k;
}

/* Reads what the socket has, without running the loop; returns the bytes. */
static size_t client_drain(client *c) {
  size_t got = 0;
  for (;;) {
    if (c->cap - c->len < 65536) {
      c->cap = c->cap * 2 + 65536;
      c->data = realloc(c->data, c->cap);
      assert_non_null(c->data);
    }
    ssize_t n = recv(c->fd, c->data + c->len, c->cap - c->len - 1, 0);
    if (n > 0) {
      /* Count in the new bytes plus a margin for a needle split in two. */
      size_t from = c->len >= 16 ? c->len - 16 : 0;
      size_t before = count(c->data + from, c->len - from, "\"relevance\"");
      c->len += (size_t)n;
      c->data[c->len] = '\0'; /* data is always a string */
      c->lines +=
          count(c->data + from, c->len - from, "\"relevance\"") - before;
      c->done = c->done || count(c->data + from, c->len - from, "{\"done\":");
      got += (size_t)n;
      continue;
    }
    if (n == 0)
      c->eof = 1;
    else
      assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return got;
  }
}

static void on_readable(uv_poll_t *p, int status, int events) {
  client *c = p->data;
  (void)events;
  assert_int_equal(status, 0);
  client_drain(c);
  if (c->lines >= c->stop_at || c->done || c->eof) {
    uv_poll_stop(&c->poll);
    c->polling = 0;
  }
}

static void client_read(client *c, size_t stop_at) {
  c->stop_at = stop_at;
  if (!c->polling) {
    uv_poll_start(&c->poll, UV_READABLE, on_readable);
    c->polling = 1;
  }
}

/* Connects with a small receive buffer (so the kernel holds little on the
 * client's side) and sends a request: "POST /v1/search", say; accept and
 * body may be NULL; close: ask the server to close after the response. */
static void client_send(client *c, uv_loop_t *loop, int port,
                        const char *request_line, const char *accept,
                        const char *body, int close) {
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(c->fd >= 0);
  int rcvbuf = 32 * 1024;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* The kernel completes the handshake before the server accepts. */
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
  char req[1024];
  int n = snprintf(req, sizeof req,
                   "%s HTTP/1.1\r\nHost: test\r\n%s%s%s%s"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   request_line, accept ? "Accept: " : "", accept ? accept : "",
                   accept ? "\r\n" : "", close ? "Connection: close\r\n" : "",
                   body ? strlen(body) : 0, body ? body : "");
  assert_true(n > 0 && (size_t)n < sizeof req);
  assert_int_equal(send(c->fd, req, (size_t)n, 0), n);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  uv_poll_init(loop, &c->poll, c->fd);
  c->poll.data = c;
}

static void client_open(client *c, uv_loop_t *loop, int port,
                        const char *body) {
  client_send(c, loop, port, "POST /v1/search", "application/x-ndjson", body,
              0);
}

static void client_close(client *c, uv_loop_t *loop) {
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* the poll handle is closed before the fd */
  close(c->fd);
  free(c->data);
}

/* The server's end of c's connection, found among the process's fds (the
 * server runs in this process). Its send buffer is pinned small so that
 * what a paused client leaves unread is a few lines in the kernel, not the
 * megabytes Linux's autotuning would allow: the test then sees the
 * server's own buffering alone. */
static void pin_server_sndbuf(client *c, int port) {
  struct sockaddr_in me;
  socklen_t len = sizeof me;
  assert_int_equal(getsockname(c->fd, (struct sockaddr *)&me, &len), 0);
  for (int fd = 3; fd < 4096; fd++) {
    struct sockaddr_in local, peer;
    socklen_t l1 = sizeof local, l2 = sizeof peer;
    if (fd == c->fd || getsockname(fd, (struct sockaddr *)&local, &l1) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &l2) != 0 ||
        local.sin_family != AF_INET)
      continue;
    if (ntohs(local.sin_port) == port && peer.sin_port == me.sin_port) {
      int sndbuf = 32 * 1024;
      assert_int_equal(
          setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
      return;
    }
  }
  fail_msg("the server's socket of the connection was not found");
}

static int reached(void *arg) {
  client *c = arg;
  return c->lines >= c->stop_at || c->done || c->eof;
}

/* Waits for the first line, then pins the server's send buffer. */
static void client_first_line(client *c, fixture *f) {
  client_read(c, 1);
  assert_true(run_until(f->loop, reached, c, 30000));
  pin_server_sndbuf(c, engram_server_port(f->srv));
}

typedef struct quiet_state {
  engram *eg;
} quiet_state;

static int stream_gone(void *arg) {
  engram_stats st;
  engram_get_stats(((quiet_state *)arg)->eg, &st);
  return st.streams_open == 0 && st.queries_running == 0 && st.pool_tasks == 0;
}

typedef struct settle_state {
  engram *eg;
  uint64_t quiet_ns; /* how long no pool task must have existed */
  uint64_t busy_at;  /* the last time one did */
} settle_state;

static int settled(void *arg) {
  settle_state *st = arg;
  engram_stats s;
  engram_get_stats(st->eg, &s);
  uint64_t now = uv_hrtime();
  if (s.pool_tasks > 0)
    st->busy_at = now;
  return now - st->busy_at >= st->quiet_ns;
}

/* Runs the loop until no thread-pool task has existed for quiet_ms: the
 * server has done what it could and waits (for the client, here). Returns
 * 0 when that did not happen within timeout_ms. */
static int settle(uv_loop_t *loop, engram *eg, uint64_t quiet_ms,
                  uint64_t timeout_ms) {
  settle_state st = {eg, quiet_ms * 1000000u, uv_hrtime()};
  return run_until(loop, settled, &st, timeout_ms);
}

/* ---------------------------------------------------------------- tests */

static const char *const bursty_search =
    "{\"ns\":\"" NS "\",\"query\":\"common\",\"limit\":10000,"
    "\"timeout_ms\":60000}";

static const char *const big_search =
    "{\"ns\":\"" NS "\",\"query\":\"common\",\"limit\":1000000,"
    "\"timeout_ms\":60000}";

static void test_paused_client_pauses_the_query(void **state) {
  fixture *f = *state;
  long rss_before = rss_kb();
  static client c; /* static: a failed test leaves no dangling handle */
  client_open(&c, f->loop, engram_server_port(f->srv), big_search);
  client_first_line(&c, f);
  client_read(&c, 100);
  assert_true(run_until(f->loop, reached, &c, 30000));
  assert_false(c.eof);
  assert_non_null(strstr(c.data, "HTTP/1.1 200"));
  assert_non_null(strstr(c.data, "application/x-ndjson"));
  size_t read_lines = c.lines;

  /* The client stops reading. The server writes what the socket buffers
   * take, then has nothing to do: it settles (a server that did not wait
   * for its client would read every row meanwhile, and end the query). */
  long rss_paused = rss_kb();
  assert_true(settle(f->loop, f->eg, 200, 10000));
  engram_stats mid;
  engram_get_stats(f->eg, &mid);
  long rss_mid = rss_kb();
  /* A second more of the server's time: nothing is produced. */
  run_for(f->loop, 1000);
  engram_stats st;
  engram_get_stats(f->eg, &st);
  long rss_after = rss_kb();

  /* What the server produced beyond what the client read sits in the
   * socket buffers; read it without letting the server run. */
  client_drain(&c);
  size_t produced = c.lines;
  print_message("read %zu lines, then stopped reading: %zu lines produced in "
                "all (of %d); RSS %ld kB before the request, %ld kB when the "
                "client stopped, %ld kB when the server settled, %ld kB 1 s "
                "later\n",
                read_lines, produced, MEMORIES, rss_before, rss_paused, rss_mid,
                rss_after);
  /* Paused: the stream is open, its cursor too (the statement waits for
   * demand), and no thread works for it. */
  assert_int_equal(mid.streams_open, 1);
  assert_int_equal(mid.queries_running, 1);
  assert_int_equal(st.streams_open, 1);
  assert_int_equal(st.queries_running, 1);
  assert_int_equal(st.pool_tasks, 0);
  /* Unread: what the kernel buffers hold plus a chunk or two. */
  assert_true(produced < read_lines + 500);
  assert_true(rss_after - rss_paused < 20 * 1024);
  assert_true(rss_after - rss_mid < 1024); /* nothing more is produced */

  /* The client goes away: the stream is cancelled, its query stopped. */
  client_close(&c, f->loop);
  quiet_state q = {f->eg};
  assert_true(run_until(f->loop, stream_gone, &q, 5000));
}

static int compare_ids(const void *a, const void *b) {
  return memcmp(*(const char *const *)a, *(const char *const *)b,
                ENGRAM_ID_LEN);
}

/* The first occurrence of needle in p[0..n), or NULL (not strstr: under
 * ASan, strstr measures the whole rest of the haystack at every call). */
static const char *find(const char *p, size_t n, const char *needle) {
  size_t nl = strlen(needle);
  for (size_t i = 0; i + nl <= n; i++)
    if (p[i] == needle[0] && memcmp(p + i, needle, nl) == 0)
      return p + i;
  return NULL;
}

/* Every memory line of data once, ranked: relevance never increases from
 * one line to the next (across chunks and pauses), and no id repeats. */
static void check_lines(const char *data, size_t len, size_t expected) {
  const char **ids = calloc(expected + 1, sizeof *ids);
  assert_non_null(ids);
  size_t n = 0;
  double prev = 2;
  const char *end = data + len;
  for (const char *line = data; line < end;) {
    const char *nl = find(line, (size_t)(end - line), "\n");
    size_t ll = nl ? (size_t)(nl - line) : (size_t)(end - line);
    if (ll > 7 && memcmp(line, "{\"id\":\"", 7) == 0) {
      assert_true(n < expected);
      ids[n++] = line + 7;
      const char *rel = find(line, ll, "\"relevance\":");
      assert_non_null(rel);
      double r = strtod(rel + 12, NULL);
      assert_true(r <= prev);
      prev = r;
    }
    line += ll + 1;
  }
  assert_int_equal(n, expected);
  qsort(ids, n, sizeof *ids, compare_ids);
  for (size_t i = 1; i < n; i++)
    assert_int_not_equal(compare_ids(&ids[i - 1], &ids[i]), 0);
  free(ids);
}

static void test_bursty_client_gets_everything(void **state) {
  fixture *f = *state;
  enum { WANTED = 10000, BURST = 1000 };
  static client c; /* static: a failed test leaves no dangling handle */
  client_open(&c, f->loop, engram_server_port(f->srv), bursty_search);
  uint64_t t0 = uv_hrtime();
  client_first_line(&c, f);
  /* Read in bursts with a pause after each: while the client pauses, the
   * server does too. */
  for (size_t next = BURST; !c.done; next += BURST) {
    client_read(&c, next);
    assert_true(run_until(f->loop, reached, &c, 60000));
    assert_false(c.eof);
    if (c.done)
      break;
    /* The server stops with the client, short of the limit. */
    assert_true(settle(f->loop, f->eg, 50, 10000));
    engram_stats st;
    engram_get_stats(f->eg, &st);
    assert_int_equal(st.streams_open, 1);
    assert_int_equal(st.queries_running, 1);
  }
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  /* The limit ends the stream: its cursor is cancelled, the status is ok. */
  char final[128];
  snprintf(final, sizeof final,
           "{\"done\":true,\"status\":\"ok\",\"count\":%d,\"failed\":0}\n",
           WANTED);
  assert_non_null(strstr(c.data, final));
  check_lines(c.data, c.len, WANTED);
  print_message("streamed %d of %d memories in bursts of %d in %.1f s\n",
                WANTED, MEMORIES, BURST, secs);
  quiet_state q = {f->eg};
  assert_true(run_until(f->loop, stream_gone, &q, 5000));
  client_close(&c, f->loop);
}

static int is_eof(void *arg) {
  return ((client *)arg)->eof;
}

/* One request on its own connection, read to the end; the caller frees
 * the response (status line, headers, body). */
static char *call(uv_loop_t *loop, int port, const char *request_line,
                  const char *accept, const char *body) {
  static client c; /* static: a failed test leaves no dangling handle */
  client_send(&c, loop, port, request_line, accept, body, 1);
  c.stop_at = (size_t)-1;
  uv_poll_start(&c.poll, UV_READABLE, on_readable);
  assert_true(run_until(loop, is_eof, &c, 10000));
  char *res = c.data;
  c.data = NULL;
  client_close(&c, loop);
  return res;
}

static const char *apple_text(size_t i, void *arg) {
  static char buf[64];
  (void)arg;
  snprintf(buf, sizeof buf, "apple note %zu", i);
  return buf;
}

/* Against a store that takes 50 ms per item, a 1 s deadline cuts every
 * route short: each answers 200 with the memories that arrived in time,
 * marked timed out (the stream in its final line), and the timed-out
 * injection is counted in /metrics. */
static void test_deadline_returns_what_arrived(void **state) {
  (void)state;
  engram *eg = tu_open_delayed(tu_db_path("http_deadline"), NULL, 50);
  uv_loop_t *loop = engram_loop(eg);
  assert_int_equal(tu_add_many(eg, "d", 30, apple_text, NULL), 0);
  FILE *log = fopen("/dev/null", "w");
  engram_server_options o;
  engram_server_options_init(&o);
  o.listen = "127.0.0.1:0";
  o.access_log = log;
  engram_server *srv;
  char err[256] = "";
  assert_int_equal(engram_server_start(eg, &o, &srv, err, sizeof err), 0);
  int port = engram_server_port(srv);
  const char *body =
      "{\"ns\":\"d\",\"query\":\"apple\",\"limit\":30,\"timeout_ms\":1000}";

  char *res = call(loop, port, "POST /v1/search", NULL, body);
  assert_non_null(strstr(res, "HTTP/1.1 200"));
  assert_non_null(strstr(res, "\"timed_out\":true"));
  size_t n = count(res, strlen(res), "\"relevance\"");
  assert_true(n >= 1 && n < 30);
  free(res);

  res = call(loop, port, "POST /v1/search", "application/x-ndjson", body);
  assert_non_null(strstr(res, "HTTP/1.1 200"));
  n = count(res, strlen(res), "\"relevance\"");
  assert_true(n >= 1 && n < 30);
  char final[96];
  snprintf(final, sizeof final,
           "{\"done\":true,\"status\":\"timed_out\",\"count\":%zu,"
           "\"failed\":0}",
           n);
  assert_non_null(strstr(res, final));
  free(res);

  res = call(loop, port, "POST /v1/context", NULL,
             "{\"ns\":\"d\",\"message\":\"apple\",\"max_memories\":30,"
             "\"timeout_ms\":1000,\"strategy\":\"lexical\"}");
  assert_non_null(strstr(res, "HTTP/1.1 200"));
  assert_non_null(strstr(res, "\"timed_out\":true"));
  assert_non_null(strstr(res, "] apple note "));
  assert_null(strstr(res, "\"count\":0,"));
  free(res);

  res = call(loop, port, "GET /metrics", NULL, NULL);
  assert_non_null(strstr(res, "engram_context_timed_out_total 1\n"));
  free(res);

  /* A client that leaves before its answer: the route ends when h2o finds
   * the connection gone (HTTP/1.1: on writing), and nothing is left. */
  static client c; /* static: a failed test leaves no dangling handle */
  client_send(&c, loop, port, "POST /v1/search", NULL, body, 0);
  run_for(loop, 50);
  client_close(&c, loop);
  quiet_state q = {eg};
  assert_true(run_until(loop, stream_gone, &q, 5000));

  int stopped = 0;
  engram_server_stop(srv, on_stopped_flag, &stopped);
  assert_true(run_until(loop, flag_set, &stopped, 10000));
  tu_close(eg);
  fclose(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paused_client_pauses_the_query),
      cmocka_unit_test(test_bursty_client_gets_everything),
      cmocka_unit_test(test_deadline_returns_what_arrived),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
