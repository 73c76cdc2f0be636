/*
 * test_http_limits.c — engram serve against bad, slow, numerous and
 * unauthorized clients, over real sockets on loopback.
 *
 * Each test runs the server in this process, on a handle opened with
 * tu_open (or tu_open_delayed when it needs requests that take a while),
 * and plays its clients from the same thread: client sockets are
 * non-blocking, and pump() runs the handle's loop (UV_RUN_NOWAIT) in
 * between polls of the loop's backend descriptor, so the server makes
 * progress whenever a client waits. No test sleeps without running the
 * loop, so a server that blocked its loop would fail them by timing out.
 *
 * What is proven, test by test:
 *  - errors: every bad request (unknown route, wrong method, malformed
 *    JSON, a body that is not an object, a field of the wrong type, invalid
 *    UTF-8, an out-of-range limit, a body over max_body, a body h2o cannot
 *    read) gets its status and the {"error":{"code","message"}} shape with
 *    a message naming the problem, and writes nothing to the store — the
 *    answers h2o gives itself (413, 400) included, with a request id and
 *    an access log line;
 *  - /healthz answers at once whatever its probe namespace holds;
 *  - slowloris: a client trickling its request a byte at a time is cut off
 *    by the io timeout while other clients are served promptly;
 *  - idle connections: thousands of idle connections neither slow a fresh
 *    client down nor grow the server without bound, and are closed after
 *    the io timeout;
 *  - in-flight limit: the request over max_inflight gets 429, the others
 *    complete, and the server admits requests again afterwards;
 *  - graceful stop: a request in flight completes with its whole body, new
 *    connections are refused, idle keep-alive connections are closed, the
 *    stop callback runs, and acknowledged writes survive a reopen;
 *  - keys: 401 without or with a wrong key, both "Bearer" and "Token"
 *    schemes work, a key's namespaces are enforced (403), the non-loopback
 *    and keys-file errors are sentences a person can act on;
 *  - access log: never holds a key, and each response's X-Request-Id is
 *    the id of its log line (text and JSON formats).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/http.h" /* the server's counters: connections, in flight */
#include "tu.h"

#define KEY_A "test-key-for-namespace-a-0123456789"
#define KEY_OTHER "test-key-that-is-not-in-the-file-0000"

/* ----------------------------------------------------------- the loop */

static uv_loop_t *loop; /* the current test's handle's loop */

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000u;
}

/* Runs the loop for about ms milliseconds (at least one iteration),
 * sleeping only in poll() on the loop's own descriptor. */
static void pump(int ms) {
  uint64_t end = now_ms() + (uint64_t)(ms > 0 ? ms : 0);
  do {
    uv_run(loop, UV_RUN_NOWAIT);
    uint64_t n = now_ms();
    int left = n >= end ? 0 : (int)(end - n);
    int t = uv_backend_timeout(loop);
    if (t < 0 || t > left)
      t = left;
    if (t > 2)
      t = 2; /* the clients need the thread back now and then */
    struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN};
    poll(&p, 1, t);
  } while (now_ms() < end);
}

/* Pumps until cond holds or max_ms passed; the caller asserts cond. */
#define WAIT_UNTIL(cond, max_ms)                                               \
  do {                                                                         \
    uint64_t end_ = now_ms() + (uint64_t)(max_ms);                             \
    while (!(cond) && now_ms() < end_)                                         \
      pump(1);                                                                 \
  } while (0)

/* --------------------------------------------------------- the clients */

typedef struct client {
  int fd;
  char *in; /* bytes received and not yet parsed */
  size_t len, cap;
  int eof; /* the server closed (or reset) the connection */
} client;

typedef struct response {
  int status;
  char content_type[128];
  char request_id[64];
  char connection[32];
  char *body;
  size_t body_len;
  json_t *json; /* the body parsed, when it is JSON */
} response;

static client *cl_connect(int port) {
  client *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(c->fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int rc = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  if (rc != 0 && errno != EINPROGRESS)
    fail_msg("connect to port %d: %s", port, strerror(errno));
  return c;
}

static void cl_close(client *c) {
  if (!c)
    return;
  close(c->fd);
  free(c->in);
  free(c);
}

/* Sends all of data, running the loop while the socket is full. 0, or -1
 * when the connection is gone. */
static int cl_send(client *c, const void *data, size_t len) {
  const char *p = data;
  uint64_t end = now_ms() + 10000;
  while (len > 0) {
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                  errno == ENOTCONN || errno == EINTR)) {
      if (now_ms() > end)
        return -1;
      pump(1);
      continue;
    }
    return -1;
  }
  return 0;
}

static void cl_read(client *c) {
  char chunk[16384];
  for (;;) {
    ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      if (c->cap - c->len <= (size_t)n) {
        while (c->cap - c->len <= (size_t)n)
          c->cap = c->cap ? c->cap * 2 : sizeof chunk * 2;
        c->in = realloc(c->in, c->cap);
        assert_non_null(c->in);
      }
      memcpy(c->in + c->len, chunk, (size_t)n);
      c->len += (size_t)n;
      c->in[c->len] = '\0';
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    c->eof = 1; /* 0: end of file; else a reset */
    return;
  }
}

static void response_free(response *r) {
  free(r->body);
  if (r->json)
    json_decref(r->json);
  memset(r, 0, sizeof *r);
}

static void header_value(const char *line, size_t len, const char *name,
                         char *out, size_t cap) {
  size_t nl = strlen(name);
  if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
    return;
  const char *v = line + nl + 1;
  while (v < line + len && *v == ' ')
    v++;
  size_t vl = (size_t)(line + len - v);
  if (vl >= cap)
    vl = cap - 1;
  memcpy(out, v, vl);
  out[vl] = '\0';
}

/* Decodes a chunked body at p[0..n); 1 when complete (out filled, used
 * set to the bytes it spans), 0 when more is needed. */
static int dechunk(const char *p, size_t n, char **out, size_t *out_len,
                   size_t *used) {
  size_t i = 0, olen = 0;
  char *o = malloc(n + 1);
  assert_non_null(o);
  for (;;) {
    const char *eol = memmem(p + i, n - i, "\r\n", 2);
    if (!eol)
      break;
    size_t size = strtoul(p + i, NULL, 16);
    size_t data = (size_t)(eol - p) + 2;
    if (size == 0) {
      if (n - data < 2)
        break;
      assert_memory_equal(p + data, "\r\n", 2); /* no trailers expected */
      *out = o;
      o[olen] = '\0';
      *out_len = olen;
      *used = data + 2;
      return 1;
    }
    if (n - data < size + 2)
      break;
    memcpy(o + olen, p + data, size);
    olen += size;
    i = data + size + 2;
  }
  free(o);
  return 0;
}

/* Parses one complete response off the front of c->in; 1 when done. */
static int parse_response(client *c, response *r) {
  if (!c->in)
    return 0;
  char *hend = memmem(c->in, c->len, "\r\n\r\n", 4);
  if (!hend)
    return 0;
  size_t hlen = (size_t)(hend - c->in) + 4;
  memset(r, 0, sizeof *r);
  if (sscanf(c->in, "HTTP/1.%*d %d", &r->status) != 1)
    fail_msg("not an HTTP response: %.80s", c->in);
  char length[32] = "", encoding[32] = "";
  for (char *line = strstr(c->in, "\r\n") + 2; line < hend;) {
    char *eol = strstr(line, "\r\n");
    size_t ll = (size_t)(eol - line);
    header_value(line, ll, "content-type", r->content_type,
                 sizeof r->content_type);
    header_value(line, ll, "x-request-id", r->request_id, sizeof r->request_id);
    header_value(line, ll, "connection", r->connection, sizeof r->connection);
    header_value(line, ll, "content-length", length, sizeof length);
    header_value(line, ll, "transfer-encoding", encoding, sizeof encoding);
    line = eol + 2;
  }
  size_t total;
  if (strcasecmp(encoding, "chunked") == 0) {
    size_t used;
    if (!dechunk(c->in + hlen, c->len - hlen, &r->body, &r->body_len, &used))
      return 0;
    total = hlen + used;
  } else {
    size_t cl = length[0] ? strtoul(length, NULL, 10)
                          : (c->eof ? c->len - hlen : SIZE_MAX);
    if (cl == SIZE_MAX || c->len - hlen < cl)
      return 0;
    r->body = malloc(cl + 1);
    assert_non_null(r->body);
    memcpy(r->body, c->in + hlen, cl);
    r->body[cl] = '\0';
    r->body_len = cl;
    total = hlen + cl;
  }
  memmove(c->in, c->in + total, c->len - total);
  c->len -= total;
  c->in[c->len] = '\0';
  if (strncmp(r->content_type, "application/json", 16) == 0)
    r->json = json_loadb(r->body, r->body_len, 0, NULL);
  return 1;
}

/* Waits for one whole response: 1, or 0 if the connection closed first
 * or max_ms passed. */
static int cl_response(client *c, response *r, int max_ms) {
  uint64_t end = now_ms() + (uint64_t)max_ms;
  for (;;) {
    cl_read(c);
    if (parse_response(c, r))
      return 1;
    if (c->eof || now_ms() > end)
      return 0;
    pump(1);
  }
}

/* Sends one request on c (keep-alive unless the headers say otherwise). */
static void cl_request(client *c, const char *method, const char *path,
                       const char *headers, const char *body, size_t body_len) {
  char head[2048];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: test\r\n%s",
                   method, path, headers ? headers : "");
  if (body)
    n += snprintf(head + n, sizeof head - (size_t)n,
                  "Content-Type: application/json\r\nContent-Length: "
                  "%zu\r\n",
                  body_len);
  n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
  assert_int_equal(cl_send(c, head, (size_t)n), 0);
  if (body && body_len)
    assert_int_equal(cl_send(c, body, body_len), 0);
}

/* One request on a fresh connection; returns the status (0 when no
 * response came). */
static int request(int port, const char *method, const char *path,
                   const char *headers, const char *body, response *r) {
  client *c = cl_connect(port);
  char h[1024];
  snprintf(h, sizeof h, "Connection: close\r\n%s", headers ? headers : "");
  cl_request(c, method, path, h, body, body ? strlen(body) : 0);
  int got = cl_response(c, r, 15000);
  cl_close(c);
  if (!got)
    memset(r, 0, sizeof *r);
  return r->status;
}

/* Asserts the JSON error shape, the status, the code (when given) and
 * that the message holds each of the words given (NULL-ended). */
static void expect_error_(const response *r, int status, const char *code,
                          const char *const *words, const char *what) {
  if (r->status != status)
    fail_msg("%s: status %d, expected %d; body: %.300s", what, r->status,
             status, r->body ? r->body : "(none)");
  if (strncmp(r->content_type, "application/json", 16) != 0)
    fail_msg("%s: content type '%s', expected application/json; body: %.200s",
             what, r->content_type, r->body ? r->body : "");
  if (!r->json)
    fail_msg("%s: the body is not JSON: %.200s", what, r->body);
  json_t *e = json_object_get(r->json, "error");
  const char *got_code = json_string_value(json_object_get(e, "code"));
  const char *msg = json_string_value(json_object_get(e, "message"));
  if (!json_is_object(e) || !got_code || !msg || !*msg)
    fail_msg("%s: not {\"error\":{\"code\",\"message\"}}: %s", what, r->body);
  if (code && strcmp(got_code, code) != 0)
    fail_msg("%s: code '%s', expected '%s'", what, got_code, code);
  for (; words && *words; words++)
    if (!strstr(msg, *words))
      fail_msg("%s: message '%s' does not mention '%s'", what, msg, *words);
  if (!r->request_id[0])
    fail_msg("%s: no X-Request-Id", what);
}
#define expect_error(r, status, code, what, ...)                               \
  expect_error_((r), (status), (code), (const char *const[]){__VA_ARGS__},     \
                (what))

/* 0 when a connection to port is accepted by the kernel, else the errno. */
static int try_connect(int port) {
  client *c = cl_connect(port);
  struct pollfd p = {.fd = c->fd, .events = POLLOUT};
  int err = 0;
  if (poll(&p, 1, 2000) == 1) {
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
  } else {
    err = ETIMEDOUT;
  }
  cl_close(c);
  return err;
}

/* ------------------------------------------------------------ fixtures */

typedef struct fixture {
  engram *eg;
  engram_server *srv;
  int port;
  FILE *log; /* the access log */
  char db[1024];
  int stopped;
} fixture;

static void open_store(fixture *f, const char *name, uint64_t delay_ms) {
  memset(f, 0, sizeof *f);
  snprintf(f->db, sizeof f->db, "%s", tu_db_path(name));
  f->eg =
      delay_ms ? tu_open_delayed(f->db, NULL, delay_ms) : tu_open(f->db, NULL);
  loop = engram_loop(f->eg);
}

static void start_server(fixture *f, engram_server_options *o) {
  engram_server_options def;
  if (!o) {
    engram_server_options_init(&def);
    o = &def;
  }
  if (!o->listen)
    o->listen = "127.0.0.1:0";
  if (!o->access_log) {
    f->log = tmpfile();
    assert_non_null(f->log);
    o->access_log = f->log;
  }
  char err[512] = "";
  int rc = engram_server_start(f->eg, o, &f->srv, err, sizeof err);
  if (rc != 0)
    fail_msg("engram_server_start: %s (%s)", err, engram_strerror(rc));
  f->port = engram_server_port(f->srv);
  assert_true(f->port > 0);
  f->stopped = 0;
}

static void on_stopped(engram_server *srv, void *data) {
  (void)srv;
  *(int *)data = 1;
}

static void stop_server(fixture *f) {
  if (!f->srv)
    return;
  engram_server_stop(f->srv, on_stopped, &f->stopped);
  WAIT_UNTIL(f->stopped, 20000);
  assert_true(f->stopped);
  f->srv = NULL;
}

static void finish(fixture *f) {
  stop_server(f);
  tu_close(f->eg);
  if (f->log)
    fclose(f->log);
  f->log = NULL;
}

/* The whole access log so far (caller frees). */
static char *read_log(fixture *f) {
  fflush(f->log);
  long size = ftell(f->log);
  char *text = calloc(1, (size_t)size + 1);
  assert_non_null(text);
  rewind(f->log);
  size_t got = fread(text, 1, (size_t)size, f->log);
  text[got] = '\0';
  fseek(f->log, 0, SEEK_END);
  return text;
}

/* Waits until the server has logged every request it took. */
static void settle(fixture *f) {
  WAIT_UNTIL(f->srv->inflight == 0, 5000);
  assert_int_equal(f->srv->inflight, 0);
}

static const char *filler(size_t i, void *arg) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s note %zu about the lighthouse keeper",
           (const char *)arg, i);
  return buf;
}

/* --------------------------------------------------------------- errors */

static void test_routing_errors(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-routing", 0);
  start_server(&f, NULL);
  response r;

  request(f.port, "GET", "/no/such/route", NULL, NULL, &r);
  expect_error(&r, 404, "unknown_route", "unknown route", "/no/such/route",
               NULL);
  response_free(&r);

  /* The query string is not part of the route and is never echoed. */
  request(f.port, "GET", "/nope?secret=hunter2", NULL, NULL, &r);
  expect_error(&r, 404, "unknown_route", "404 with a query", "/nope", NULL);
  assert_null(strstr(r.body, "hunter2"));
  response_free(&r);

  request(f.port, "POST", "/healthz", NULL, "{}", &r);
  expect_error(&r, 405, "method_not_allowed", "POST /healthz", "POST",
               "/healthz", NULL);
  response_free(&r);

  request(f.port, "DELETE", "/metrics", NULL, NULL, &r);
  expect_error(&r, 405, "method_not_allowed", "DELETE /metrics", NULL);
  response_free(&r);

  /* Routing comes before the body: a bad body on an unknown route is 404. */
  request(f.port, "POST", "/v1/nonsense", NULL, "{not json", &r);
  expect_error(&r, 404, "unknown_route", "bad body, unknown route", NULL);
  response_free(&r);

  /* A body h2o cannot read (broken chunked encoding): h2o answers before
   * any route, in engram's shape all the same. */
  client *c = cl_connect(f.port);
  static const char broken[] =
      "POST /v1/search HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
      "chunked\r\n\r\nZZZ\r\n";
  assert_int_equal(cl_send(c, broken, sizeof broken - 1), 0);
  assert_true(cl_response(c, &r, 5000));
  expect_error(&r, 400, "bad_request", "broken chunked body", "chunked", NULL);
  response_free(&r);
  cl_close(c);

  request(f.port, "GET", "/healthz", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  response_free(&r);
  finish(&f);
}

/* /healthz answers at once whatever its probe namespace holds (it waited
 * for the end of a stream it had asked one item of: 503 after 2 s as soon
 * as namespace "healthz" held a memory). */
static void test_healthz_with_memories(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-healthz", 0);
  assert_int_equal(tu_add_many(f.eg, "healthz", 3, filler, "probe"), 0);
  start_server(&f, NULL);
  response r;
  uint64_t t0 = now_ms();
  request(f.port, "GET", "/healthz", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_true(now_ms() - t0 < 1000);
  response_free(&r);
  finish(&f);
}

/* A body h2o refuses before engram sees it: over max_body. */
static void test_body_too_large(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-413", 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.max_body = 4096;
  start_server(&f, &o);
  size_t before = tu_count(f.eg, "a");

  char *big = malloc(8193);
  assert_non_null(big);
  int n = snprintf(big, 8193, "{\"ns\":\"a\",\"content\":\"");
  memset(big + n, 'x', 8192 - (size_t)n - 2);
  memcpy(big + 8190, "\"}", 3);
  response r;

  request(f.port, "POST", "/v1/memories", NULL, big, &r);
  expect_error(&r, 413, "too_large", "Content-Length over max_body", "4096",
               NULL);
  char id413[64];
  snprintf(id413, sizeof id413, "%s", r.request_id);
  response_free(&r);

  /* The same body sent chunked, where h2o counts as it reads. */
  client *c = cl_connect(f.port);
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "POST /v1/memories HTTP/1.1\r\nHost: t\r\nContent-Type: "
                    "application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  assert_int_equal(cl_send(c, head, (size_t)hn), 0);
  for (size_t off = 0; off < 8192; off += 1024) {
    hn = snprintf(head, sizeof head, "400\r\n");
    if (cl_send(c, head, (size_t)hn) != 0 || cl_send(c, big + off, 1024) != 0 ||
        cl_send(c, "\r\n", 2) != 0)
      break; /* the server may close as soon as it has answered */
  }
  cl_send(c, "0\r\n\r\n", 5);
  assert_true(cl_response(c, &r, 10000));
  expect_error(&r, 413, "too_large", "chunked body over max_body", NULL);
  response_free(&r);
  cl_close(c);

  /* Under the limit, the body reaches the router (405 proves it parsed). */
  big[3000] = '\0';
  request(f.port, "POST", "/healthz", NULL, big, &r);
  assert_int_equal(r.status, 405);
  response_free(&r);

  assert_int_equal(tu_count(f.eg, "a"), before);
  /* h2o's refusal has its access log line, under its request id. */
  settle(&f);
  char *log = read_log(&f);
  const char *line = strstr(log, id413);
  assert_non_null(line);
  assert_non_null(strstr(line, " POST /v1/memories 413 "));
  free(log);
  free(big);
  finish(&f);
}

/* Body problems on a real route: 400, the JSON shape, the problem named,
 * nothing written. */
static void test_bad_bodies(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-400", 0);
  start_server(&f, NULL);
  char id[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(f.eg, "a", "an existing memory", ENGRAM_SEMANTIC, id),
                   0);
  size_t before = tu_count(f.eg, "a");
  response r;

  static const struct {
    const char *method, *path, *body, *code, *word;
  } cases[] = {
      {"POST", "/v1/memories", "{\"ns\":\"a\",", "malformed_json",
       "not valid JSON"},
      {"POST", "/v1/memories", "not json at all", "malformed_json",
       "not valid JSON"},
      {"POST", "/v1/memories", "[{\"ns\":\"a\",\"content\":\"x\"}]",
       "malformed_json", "JSON object"},
      {"POST", "/v1/memories", "\"a string\"", "malformed_json", "JSON object"},
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"ns\":\"b\",\"content\":\"x\"}",
       "malformed_json", "duplicate"},
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"content\":42}", "invalid",
       "content"},
      {"POST", "/v1/memories", "{\"ns\":7,\"content\":\"x\"}", "invalid",
       "'ns'"},
      {"POST", "/v1/memories", "{\"ns\":\"a\"}", "invalid", "content"},
      {"POST", "/v1/memories",
       "{\"ns\":\"a\",\"content\":\"x\",\"importance\":\"high\"}", "invalid",
       "importance"},
      {"POST", "/v1/memories",
       "{\"ns\":\"a\",\"content\":\"x\",\"importance\":7}", "invalid",
       "importance"},
      {"POST", "/v1/memories",
       "{\"ns\":\"a\",\"content\":\"x\",\"type\":\"dream\"}", "invalid",
       "type"},
      {"POST", "/v1/memories",
       "{\"ns\":\"a\",\"content\":\"x\",\"metadata\":[1]}", "invalid",
       "metadata"},
      /* Invalid UTF-8 inside a JSON string: a raw 0xff byte, a truncated
       * sequence, an overlong encoding, a lone surrogate escape. */
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"content\":\"x\xff\"}",
       "malformed_json", "UTF-8"},
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"content\":\"\xe2\x82\"}",
       "malformed_json", "UTF-8"},
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"content\":\"\xc0\xaf\"}",
       "malformed_json", "UTF-8"},
      {"POST", "/v1/memories", "{\"ns\":\"a\",\"content\":\"\\ud800 alone\"}",
       "malformed_json", "not valid JSON"},
      {"POST", "/v1/memories",
       "{\"ns\":\"a\",\"content\":\"nul \\u0000 inside\"}", NULL, NULL},
      {"PATCH", "/v1/memories/:id", "{\"ns\":\"a\",\"content\":[]}", "invalid",
       "content"},
      {"PATCH", "/v1/memories/:id", "[]", "malformed_json", "JSON object"},
      {"POST", "/v1/search", "{\"ns\":\"a\",\"query\":17}", "invalid", "query"},
      {"POST", "/v1/search", "{\"ns\":\"a\",\"query\":\"\xff\"}",
       "malformed_json", "UTF-8"},
      {"POST", "/v1/context", "{\"ns\":\"a\",\"message\":null}", "invalid",
       "message"},
      {"POST", "/v1/turns",
       "{\"ns\":\"a\",\"user\":\"hi\",\"assistant\":false}", "invalid",
       "assistant"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[128];
    const char *colon = strstr(cases[i].path, ":id");
    if (colon)
      snprintf(path, sizeof path, "%.*s%s", (int)(colon - cases[i].path),
               cases[i].path, id);
    else
      snprintf(path, sizeof path, "%s", cases[i].path);
    char what[200];
    snprintf(what, sizeof what, "case %zu: %s %s %.60s", i, cases[i].method,
             path, cases[i].body);
    request(f.port, cases[i].method, path, NULL, cases[i].body, &r);
    if (cases[i].code)
      expect_error(&r, 400, cases[i].code, what, cases[i].word, NULL);
    else if (r.status != 400) /* NUL: refused or stored, never cut */
      assert_int_equal(r.status / 100, 2);
    response_free(&r);
    if (!cases[i].code)
      before = tu_count(f.eg, "a");
    assert_int_equal(tu_count(f.eg, "a"), before);
  }
  finish(&f);
}

/* Limits a client could abuse: each is refused with 400, never clamped
 * into a huge allocation or a query that runs for hours. */
static void test_absurd_parameters(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-absurd", 0);
  start_server(&f, NULL);
  assert_int_equal(tu_add_many(f.eg, "a", 20, filler, "absurd"), 0);
  size_t before = tu_count(f.eg, "a");
  response r;

  static const struct {
    const char *method, *path, *body, *word;
  } cases[] = {
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":1000000000}", "limit"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":-1}", "limit"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":2.5}", "limit"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":"
       "1e300}",
       "limit"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":\"10\"}", "limit"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"timeout_ms\":"
       "99999999999999}",
       "timeout_ms"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"timeout_ms\":-5}",
       "timeout_ms"},
      {"POST", "/v1/search",
       "{\"ns\":\"a\",\"query\":\"lighthouse\",\"min_relevance\":2}",
       "min_relevance"},
      {"POST", "/v1/context",
       "{\"ns\":\"a\",\"message\":\"lighthouse\",\"max_memories\":"
       "100000000}",
       "max_memories"},
      {"POST", "/v1/context",
       "{\"ns\":\"a\",\"message\":\"lighthouse\",\"timeout_ms\":"
       "1e15}",
       "timeout_ms"},
      {"POST", "/v1/context",
       "{\"ns\":\"a\",\"message\":\"lighthouse\",\"timeout_ms\":-1}",
       "timeout_ms"},
      {"GET", "/v1/memories?ns=a&limit=100000000", NULL, "limit"},
      {"GET", "/v1/memories?ns=a&limit=-3", NULL, "limit"},
      {"GET", "/v1/memories?ns=a&limit=ten", NULL, "limit"},
      {"GET", "/v1/memories?ns=a&limit=", NULL, "limit"},
      {"GET", "/v1/memories?ns=a&after=not-an-id", NULL, "after"},
      {"GET", "/v1/memories?ns=a&limit=%zz", NULL, NULL},
      {"GET", "/v1/memories/not-a-uuid?ns=a", NULL, "id"},
      {"GET", "/v1/memories/not-a-uuid/traverse?ns=a", NULL, "id"},
      {"GET",
       "/v1/memories/01900000-0000-7000-8000-000000000001/traverse?ns=a&"
       "depth=1000000",
       NULL, "depth"},
      {"GET",
       "/v1/memories/01900000-0000-7000-8000-000000000001/traverse?ns=a&"
       "limit=99999999999",
       NULL, "limit"},
      {"POST", "/v3/memories/search/",
       "{\"query\":\"lighthouse\",\"user_id\":\"a\",\"top_k\":100000000}",
       "top_k"},
      {"POST", "/v3/memories/search/",
       "{\"query\":\"lighthouse\",\"user_id\":\"a\",\"top_k\":0}", "top_k"},
      {"POST", "/v3/memories/?page_size=100000000",
       "{\"filters\":{\"user_id\":\"a\"}}", "page_size"},
      {"POST", "/v3/memories/?page=-1", "{\"filters\":{\"user_id\":\"a\"}}",
       "page"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char what[200];
    snprintf(what, sizeof what, "case %zu: %s %s %.80s", i, cases[i].method,
             cases[i].path, cases[i].body ? cases[i].body : "");
    request(f.port, cases[i].method, cases[i].path, NULL, cases[i].body, &r);
    expect_error(&r, 400, NULL, what, cases[i].word, NULL);
    response_free(&r);
  }
  /* A sane request on the same routes works: the 400s were about values. */
  request(f.port, "POST", "/v1/search", NULL,
          "{\"ns\":\"a\",\"query\":\"lighthouse\",\"limit\":5}", &r);
  assert_int_equal(r.status, 200);
  response_free(&r);
  assert_int_equal(tu_count(f.eg, "a"), before);
  finish(&f);
}

/* ------------------------------------------------------------ slowloris */

static void test_slowloris(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-slowloris", 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.io_timeout_ms = 1000;
  start_server(&f, &o);

  static const char partial[] =
      "GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaa";
  client *slow = cl_connect(f.port);
  /* A second slow client that completes its request line and then dribbles
   * headers, and a third that sends a body slower than the timeout. */
  client *slow_body = cl_connect(f.port);
  static const char body_head[] =
      "POST /v1/search HTTP/1.1\r\nHost: slow\r\nContent-Type: "
      "application/json\r\nContent-Length: 200\r\n\r\n{";
  assert_int_equal(cl_send(slow_body, body_head, sizeof body_head - 1), 0);

  uint64_t start = now_ms(), next_byte = start, next_probe = start;
  size_t sent = 0;
  int probes = 0;
  double worst_ms = 0;
  int slow_cut = 0, body_cut = 0;
  uint64_t slow_cut_at = 0, body_cut_at = 0;
  /* Until both are cut and at least 1.5 s have passed: probes run before,
   * during and after the cut. */
  while (now_ms() - start < 5000 &&
         !(slow_cut && body_cut && now_ms() - start >= 1500)) {
    uint64_t t = now_ms();
    if (!slow_cut && t >= next_byte && sent < sizeof partial - 1) {
      if (cl_send(slow, partial + sent, 1) == 0)
        sent++;
      if (!slow_body->eof)
        cl_send(slow_body, " ", 1);
      next_byte = t + 500;
    }
    if (t >= next_probe) {
      /* Other clients are served, promptly, all along. */
      uint64_t t0 = now_ms();
      response r;
      assert_int_equal(request(f.port, "GET", "/healthz", NULL, NULL, &r), 200);
      response_free(&r);
      double ms = (double)(now_ms() - t0);
      if (ms > worst_ms)
        worst_ms = ms;
      probes++;
      next_probe = now_ms() + 100;
    }
    cl_read(slow);
    cl_read(slow_body);
    if (slow->eof && !slow_cut) {
      slow_cut = 1;
      slow_cut_at = now_ms() - start;
    }
    if (slow_body->eof && !body_cut) {
      body_cut = 1;
      body_cut_at = now_ms() - start;
    }
    pump(5);
  }
  print_message("slowloris: header trickler cut after %llu ms (%zu bytes "
                "sent), body trickler after %llu ms; %d probes, slowest "
                "%.0f ms\n",
                (unsigned long long)slow_cut_at, sent,
                (unsigned long long)body_cut_at, probes, worst_ms);
  assert_true(slow_cut);
  assert_true(body_cut);
  /* Cut by the timeout (1 s), not by anything else: not before it, and
   * well before the 30-odd seconds the trickle would take. */
  assert_true(slow_cut_at >= 900 && slow_cut_at < 3500);
  assert_true(body_cut_at >= 900 && body_cut_at < 3500);
  assert_true(sent < sizeof partial - 1);
  /* The trickler never got a response: whatever it received is at most a
   * timeout reply, never the health answer. */
  assert_true(slow->len == 0 || strstr(slow->in, "\"ok\"") == NULL);
  assert_true(probes >= 8);
  assert_true(worst_ms < 1000);
  cl_close(slow);
  cl_close(slow_body);
  WAIT_UNTIL(f.srv->connections == 0, 3000);
  assert_int_equal(f.srv->connections, 0);
  finish(&f);
}

/* ---------------------------------------------------- idle connections */

static long rss_kb(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  if (!fp)
    return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, fp))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(fp);
  return kb;
}

#define IDLE_WANTED 2000

static void test_idle_connections(void **state) {
  (void)state;
  /* Each connection costs this process two descriptors (both ends). */
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t want = 2 * IDLE_WANTED + 256;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  size_t n = IDLE_WANTED;
  if (rl.rlim_cur < want) {
    n = (size_t)(rl.rlim_cur - 256) / 2;
    print_message("idle: descriptor limit %llu allows %zu connections, not "
                  "%d\n",
                  (unsigned long long)rl.rlim_cur, n, IDLE_WANTED);
  }

  fixture f;
  open_store(&f, "http-idle", 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.io_timeout_ms = 3000;
  start_server(&f, &o);
  response r;
  assert_int_equal(request(f.port, "GET", "/healthz", NULL, NULL, &r), 200);
  response_free(&r);
  pump(50);
  long rss_before = rss_kb();

  client **idle = calloc(n, sizeof *idle);
  assert_non_null(idle);
  uint64_t t0 = now_ms();
  for (size_t i = 0; i < n; i++) {
    idle[i] = cl_connect(f.port);
    if (i % 64 == 63)
      pump(0); /* let the server accept: the backlog is 1024 */
  }
  WAIT_UNTIL(f.srv->connections >= n, 10000);
  uint64_t connect_ms = now_ms() - t0;
  assert_int_equal(f.srv->connections, n);
  long rss_idle = rss_kb();

  /* A fresh client is answered promptly with all of them open. */
  double worst = 0;
  for (int i = 0; i < 10; i++) {
    uint64_t s = uv_hrtime();
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, NULL, &r), 200);
    response_free(&r);
    double ms = (double)(uv_hrtime() - s) / 1e6;
    if (ms > worst)
      worst = ms;
  }
  assert_int_equal(request(f.port, "GET", "/metrics", NULL, NULL, &r), 200);
  char expect[64];
  snprintf(expect, sizeof expect, "engram_http_connections %zu", n + 1);
  assert_non_null(strstr(r.body, expect));
  response_free(&r);

  /* After the io timeout every idle connection is closed by the server. */
  size_t closed = 0;
  uint64_t t1 = now_ms();
  while (closed < n && now_ms() - t1 < 15000) {
    closed = 0;
    for (size_t i = 0; i < n; i++) {
      if (!idle[i]->eof)
        cl_read(idle[i]);
      closed += (size_t)idle[i]->eof;
    }
    pump(20);
  }
  uint64_t close_ms = now_ms() - t0;
  WAIT_UNTIL(f.srv->connections == 0, 3000);
  long rss_after = rss_kb();
  print_message("idle: %zu connections accepted in %llu ms; RSS %ld KiB "
                "before, %ld KiB with them (+%ld KiB, %.1f KiB each, this "
                "build), %ld KiB after they closed; fresh /healthz at most "
                "%.1f ms; all closed %llu ms after the first connect "
                "(io timeout 3000 ms)\n",
                n, (unsigned long long)connect_ms, rss_before, rss_idle,
                rss_idle - rss_before,
                (double)(rss_idle - rss_before) / (double)n, rss_after, worst,
                (unsigned long long)close_ms);
  assert_int_equal(closed, n);
  assert_int_equal(f.srv->connections, 0);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(idle[i]->len, 0); /* closed without a word */
    cl_close(idle[i]);
  }
  free(idle);
  assert_true(worst < 1000);
  /* Bounded: well under 64 KiB of server memory per idle connection even
   * with the sanitizers' overhead (the figure printed is the real one). */
  assert_true(rss_idle - rss_before < (long)n * 64);
  assert_true(close_ms < 3000 + 10000);
  finish(&f);
}

/* ------------------------------------------------------ in-flight limit */

/* With the delay store, /healthz (a list of one item of namespace
 * "healthz") takes the delay: requests stay in flight that long. */
static void test_inflight_limit(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-inflight", 600);
  char id[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(f.eg, "healthz", "probe", ENGRAM_WORKING, id), 0);
  assert_int_equal(
      tu_add(f.eg, "a", "the lighthouse keeper", ENGRAM_EPISODIC, id), 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.max_inflight = 4;
  start_server(&f, &o);

  /* Four slow requests: two health checks, two context injections (the
   * one matching memory takes the delay to arrive). */
  static const char ctx[] = "{\"ns\":\"a\",\"message\":\"lighthouse\","
                            "\"timeout_ms\":5000,\"max_memories\":1}";
  client *c[4];
  for (int i = 0; i < 4; i++) {
    c[i] = cl_connect(f.port);
    if (i < 2)
      cl_request(c[i], "GET", "/healthz", NULL, NULL, 0);
    else
      cl_request(c[i], "POST", "/v1/context", NULL, ctx, sizeof ctx - 1);
  }
  WAIT_UNTIL(f.srv->inflight == 4, 2000);
  assert_int_equal(f.srv->inflight, 4);

  /* The fifth, while four are in flight: 429 at once. */
  uint64_t t0 = now_ms();
  response r;
  request(f.port, "GET", "/healthz", NULL, NULL, &r);
  expect_error(&r, 429, "too_many_requests", "fifth request", "4", NULL);
  assert_true(now_ms() - t0 < 500);
  response_free(&r);
  /* Also on an unknown route and on a route with a body: admission is
   * first. */
  request(f.port, "POST", "/v1/search", NULL, "{bad", &r);
  expect_error(&r, 429, "too_many_requests", "sixth request", NULL);
  response_free(&r);

  /* The four complete normally, with their answers. */
  for (int i = 0; i < 4; i++) {
    assert_true(cl_response(c[i], &r, 5000));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, i < 2 ? "\"ok\"" : "lighthouse keeper"));
    response_free(&r);
    cl_close(c[i]);
  }
  settle(&f);
  /* And the server admits again. */
  assert_int_equal(request(f.port, "GET", "/healthz", NULL, NULL, &r), 200);
  response_free(&r);
  assert_int_equal(request(f.port, "GET", "/metrics", NULL, NULL, &r), 200);
  assert_non_null(strstr(r.body, "status=\"429\"} 2"));
  response_free(&r);
  finish(&f);
}

/* -------------------------------------------------------- graceful stop */

static void on_get(int status, const engram_node *node, void *data) {
  int *out = data;
  *out = status == 0 && node ? 1 : -1;
  if (status == ENGRAM_ENOTFOUND)
    *out = -2;
}

static void test_graceful_stop(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-stop", 300);
  char id[ENGRAM_ID_LEN + 1];
  for (int i = 0; i < 3; i++)
    assert_int_equal(tu_add(f.eg, "slow",
                            i == 0   ? "the keeper lit the lamp"
                            : i == 1 ? "the keeper saw a ship"
                                     : "the keeper slept",
                            ENGRAM_EPISODIC, id),
                     0);
  start_server(&f, NULL);
  response r;

  /* An acknowledged write, through HTTP. */
  request(f.port, "POST", "/v1/memories", NULL,
          "{\"ns\":\"a\",\"content\":\"written before the stop\"}", &r);
  assert_int_equal(r.status, 201);
  const char *written = json_string_value(json_object_get(r.json, "id"));
  assert_non_null(written);
  char written_id[ENGRAM_ID_LEN + 1];
  snprintf(written_id, sizeof written_id, "%s", written);
  response_free(&r);

  /* An idle keep-alive connection that has been used once. */
  client *idle = cl_connect(f.port);
  cl_request(idle, "GET", "/metrics", NULL, NULL, 0);
  assert_true(cl_response(idle, &r, 5000));
  assert_int_equal(r.status, 200);
  response_free(&r);

  /* A slow request in flight: a context injection whose three memories
   * the delay store holds 300 ms each (lexical: its items stream through
   * the delay store; hybrid's candidates do not). */
  static const char ctx[] = "{\"ns\":\"slow\",\"message\":\"keeper\","
                            "\"timeout_ms\":10000,\"max_memories\":3,"
                            "\"strategy\":\"lexical\"}";
  client *slow = cl_connect(f.port);
  cl_request(slow, "POST", "/v1/context", NULL, ctx, sizeof ctx - 1);
  WAIT_UNTIL(f.srv->inflight == 1, 2000);
  assert_int_equal(f.srv->inflight, 1);

  uint64_t t0 = now_ms();
  engram_server_stop(f.srv, on_stopped, &f.stopped);
  assert_false(f.stopped);
  /* No new connection from now on. */
  assert_int_equal(try_connect(f.port), ECONNREFUSED);

  /* The slow request completes, with its whole body. */
  assert_true(cl_response(slow, &r, 5000));
  uint64_t slow_ms = now_ms() - t0;
  assert_int_equal(r.status, 200);
  assert_non_null(r.json); /* the whole body: it parses */
  assert_int_equal(json_integer_value(json_object_get(r.json, "count")), 3);
  assert_false(json_is_true(json_object_get(r.json, "timed_out")));
  const char *text = json_string_value(json_object_get(r.json, "text"));
  assert_non_null(text);
  assert_non_null(strstr(text, "lit the lamp"));
  assert_non_null(strstr(text, "saw a ship"));
  assert_non_null(strstr(text, "slept"));
  response_free(&r);
  /* Then the connections are closed and the callback runs. */
  WAIT_UNTIL(f.stopped, 5000);
  assert_true(f.stopped);
  uint64_t stop_ms = now_ms() - t0;
  f.srv = NULL;
  WAIT_UNTIL((cl_read(idle), idle->eof), 2000);
  assert_true(idle->eof);
  assert_int_equal(idle->len, 0);
  WAIT_UNTIL((cl_read(slow), slow->eof), 2000);
  assert_true(slow->eof);
  print_message("stop: the request in flight finished %llu ms after the "
                "stop, the stop callback ran after %llu ms\n",
                (unsigned long long)slow_ms, (unsigned long long)stop_ms);
  assert_true(slow_ms >= 500); /* it really was in flight */
  cl_close(idle);
  cl_close(slow);

  /* The handle stays open after a stop; the write survives close+reopen. */
  assert_int_equal(tu_count(f.eg, "a"), 1);
  tu_close(f.eg);
  fclose(f.log);
  f.eg = tu_open(f.db, NULL);
  loop = engram_loop(f.eg);
  int got = 0;
  assert_int_equal(engram_get(f.eg, "a", written_id, on_get, &got), 0);
  tu_run_until(f.eg, &got);
  assert_int_equal(got, 1);
  tu_close(f.eg);
}

/* A request arriving on a kept-alive connection during the stop gets 503,
 * and the server still finishes. */
static void test_request_during_stop(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-stop2", 500);
  char id[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(f.eg, "healthz", "probe", ENGRAM_WORKING, id), 0);
  start_server(&f, NULL);
  response r;
  client *keep = cl_connect(f.port);
  cl_request(keep, "GET", "/metrics", NULL, NULL, 0);
  assert_true(cl_response(keep, &r, 5000));
  response_free(&r);
  client *slow = cl_connect(f.port);
  cl_request(slow, "GET", "/healthz", NULL, NULL, 0);
  WAIT_UNTIL(f.srv->inflight == 1, 2000);
  engram_server_stop(f.srv, on_stopped, &f.stopped);
  cl_request(keep, "GET", "/metrics", NULL, NULL, 0);
  if (cl_response(keep, &r, 5000)) {
    expect_error(&r, 503, "unavailable", "request during stop", "shutting down",
                 NULL);
    response_free(&r);
  } /* else h2o closed it first: also a refusal */
  assert_true(cl_response(slow, &r, 5000));
  assert_int_equal(r.status, 200);
  response_free(&r);
  WAIT_UNTIL(f.stopped, 5000);
  assert_true(f.stopped);
  f.srv = NULL;
  cl_close(keep);
  cl_close(slow);
  finish(&f);
}

/* ----------------------------------------------------------------- keys */

/* Files written by write_file, removed when the program ends. */
static char written[32][1100];
static size_t nwritten;

static void remove_written(void) {
  for (size_t i = 0; i < nwritten; i++)
    unlink(written[i]);
}

static const char *write_file(const char *name, const char *text) {
  assert_true(nwritten < sizeof written / sizeof written[0]);
  char *path = written[nwritten++];
  snprintf(path, sizeof written[0], "%s.%s", tu_db_path("keys"), name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
  return path;
}

static void test_keys(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-keys", 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.keys_file =
      write_file("good", "# the test's keys\n" KEY_A " a  # A only\n");
  start_server(&f, &o);
  response r;

  request(f.port, "GET", "/metrics", NULL, NULL, &r);
  expect_error(&r, 401, "unauthorized", "no key", "Bearer", NULL);
  response_free(&r);
  request(f.port, "GET", "/metrics", "Authorization: Bearer " KEY_OTHER "\r\n",
          NULL, &r);
  expect_error(&r, 401, "unauthorized", "wrong key", "not valid", NULL);
  response_free(&r);
  static const char *const refused[] = {
      "Authorization: Basic " KEY_A "\r\n",
      "Authorization: " KEY_A "\r\n",
      "Authorization: Bearer " KEY_A "x\r\n",
      "Authorization: Bearer test-key-for-namespace-a\r\n", /* a prefix */
      "Authorization: Bearer \r\n",
      "X-Api-Key: " KEY_A "\r\n",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    request(f.port, "GET", "/metrics", refused[i], NULL, &r);
    expect_error(&r, 401, "unauthorized", refused[i], NULL);
    response_free(&r);
  }
  static const char *const accepted[] = {
      "Authorization: Bearer " KEY_A "\r\n",
      "Authorization: Token " KEY_A "\r\n",
      "Authorization: bearer " KEY_A "\r\n",
      "Authorization: token " KEY_A "\r\n",
  };
  for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
    request(f.port, "GET", "/metrics", accepted[i], NULL, &r);
    if (r.status != 200)
      fail_msg("%s: %d %s", accepted[i], r.status, r.body);
    response_free(&r);
  }
  /* Routing errors come before authentication: they say nothing about
   * memories. */
  request(f.port, "GET", "/nope", NULL, NULL, &r);
  assert_int_equal(r.status, 404);
  response_free(&r);

  /* The key's namespaces. */
  request(f.port, "POST", "/v1/search", "Authorization: Bearer " KEY_A "\r\n",
          "{\"ns\":\"a\",\"query\":\"anything\"}", &r);
  assert_int_equal(r.status, 200);
  response_free(&r);
  request(f.port, "POST", "/v1/search", "Authorization: Bearer " KEY_A "\r\n",
          "{\"ns\":\"b\",\"query\":\"anything\"}", &r);
  expect_error(&r, 403, "forbidden", "namespace b", "'b'", NULL);
  response_free(&r);
  request(f.port, "POST", "/v1/search", NULL,
          "{\"ns\":\"a\",\"query\":\"anything\"}", &r);
  assert_int_equal(r.status, 401);
  response_free(&r);
  finish(&f);
}

/* Keys on a non-loopback address: refused without them, allowed with. */
static void test_listen_policy(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-listen", 0);
  engram_server_options o;
  engram_server *srv = NULL;
  char err[512];
  static const char *const open_addrs[] = {"0.0.0.0:0", "[::]:0"};
  for (size_t i = 0; i < 2; i++) {
    engram_server_options_init(&o);
    o.listen = open_addrs[i];
    err[0] = '\0';
    assert_int_equal(engram_server_start(f.eg, &o, &srv, err, sizeof err),
                     ENGRAM_EINVAL);
    assert_non_null(strstr(err, "refusing to listen"));
    assert_non_null(strstr(err, open_addrs[i]));
    assert_non_null(strstr(err, "--keys"));
  }
  engram_server_options_init(&o);
  o.listen = "example.com:80";
  err[0] = '\0';
  assert_int_equal(engram_server_start(f.eg, &o, &srv, err, sizeof err),
                   ENGRAM_EINVAL);
  assert_non_null(strstr(err, "not a numeric"));
  o.listen = "127.0.0.1";
  assert_int_equal(engram_server_start(f.eg, &o, &srv, err, sizeof err),
                   ENGRAM_EINVAL);
  assert_non_null(strstr(err, "HOST:PORT"));

  /* 0.0.0.0 with keys starts, and wants the key. */
  engram_server_options_init(&o);
  o.listen = "0.0.0.0:0";
  o.keys_file = write_file("any", KEY_A " a\n");
  start_server(&f, &o);
  response r;
  request(f.port, "GET", "/metrics", NULL, NULL, &r);
  assert_int_equal(r.status, 401);
  response_free(&r);
  request(f.port, "GET", "/metrics", "Authorization: Bearer " KEY_A "\r\n",
          NULL, &r);
  assert_int_equal(r.status, 200);
  response_free(&r);

  /* The same port twice: EBUSY, with the address in the message. */
  engram_server_options o2;
  engram_server_options_init(&o2);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
  o2.listen = addr;
  o2.access_log = f.log;
  err[0] = '\0';
  assert_int_equal(engram_server_start(f.eg, &o2, &srv, err, sizeof err),
                   ENGRAM_EBUSY);
  assert_non_null(strstr(err, addr));
  pump(10); /* the refused listener's close completes */
  finish(&f);
}

static void expect_keys_error(engram *eg, const char *path, const char *w1,
                              const char *w2) {
  engram_server_options o;
  engram_server_options_init(&o);
  o.listen = "127.0.0.1:0";
  o.keys_file = path;
  engram_server *srv = NULL;
  char err[512] = "";
  assert_int_equal(engram_server_start(eg, &o, &srv, err, sizeof err),
                   ENGRAM_EINVAL);
  if (!strstr(err, w1) || (w2 && !strstr(err, w2)))
    fail_msg("keys file %s: message '%s' lacks '%s' / '%s'", path, err, w1,
             w2 ? w2 : "");
  assert_null(srv);
}

static void test_keys_file_errors(void **state) {
  (void)state;
  fixture f;
  open_store(&f, "http-keyfile", 0);
  char missing[1100];
  snprintf(missing, sizeof missing, "%s.nope", tu_db_path("keys"));
  expect_keys_error(f.eg, missing, "cannot read the keys file", missing);
  /* A directory opens but does not read. */
  char dir[1100];
  snprintf(dir, sizeof dir, "%s.dir", tu_db_path("keys"));
  mkdir(dir, 0700);
  expect_keys_error(f.eg, dir, "cannot read the keys file", dir);
  rmdir(dir);
  expect_keys_error(f.eg, write_file("short", "shortkey a\n"),
                    "shorter than 16", ":1:");
  expect_keys_error(f.eg, write_file("nons", "# comment\n\n" KEY_A "\n"),
                    "names no namespace", ":3:");
  expect_keys_error(f.eg,
                    write_file("nons2", KEY_A " a\n" KEY_OTHER " # none\n"),
                    "names no namespace", ":2:");
  expect_keys_error(f.eg, write_file("empty", "# only a comment\n\n"),
                    "holds no key", NULL);
  /* The message names the line, never the key. */
  engram_server_options o;
  engram_server_options_init(&o);
  o.listen = "127.0.0.1:0";
  o.keys_file = write_file("nons3", KEY_OTHER "\n");
  engram_server *srv = NULL;
  char err[512] = "";
  assert_int_equal(engram_server_start(f.eg, &o, &srv, err, sizeof err),
                   ENGRAM_EINVAL);
  assert_null(strstr(err, KEY_OTHER));
  finish(&f);
}

/* ----------------------------------------------------------- access log */

static void check_log(fixture *f, response *rs, size_t n, int json) {
  settle(f);
  char *log = read_log(f);
  assert_null(strstr(log, KEY_A));
  assert_null(strstr(log, KEY_OTHER));
  assert_null(strstr(log, "hunter2")); /* a query string value */
  for (size_t i = 0; i < n; i++) {
    assert_true(rs[i].request_id[0]);
    const char *hit = strstr(log, rs[i].request_id);
    if (!hit)
      fail_msg("request id %s is not in the log:\n%s", rs[i].request_id, log);
    /* Exactly one line has it. */
    assert_null(strstr(hit + 1, rs[i].request_id));
    const char *bol = hit;
    while (bol > log && bol[-1] != '\n')
      bol--;
    const char *eol = strchr(hit, '\n');
    assert_non_null(eol);
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)(eol - bol), bol);
    if (json) {
      json_t *o = json_loads(line, 0, NULL);
      if (!o)
        fail_msg("log line is not JSON: %s", line);
      assert_string_equal(json_string_value(json_object_get(o, "request_id")),
                          rs[i].request_id);
      assert_int_equal(json_integer_value(json_object_get(o, "status")),
                       rs[i].status);
      json_decref(o);
    } else {
      char status[16];
      snprintf(status, sizeof status, " %d ", rs[i].status);
      if (!strstr(line, status))
        fail_msg("log line lacks status %d: %s", rs[i].status, line);
      assert_non_null(strstr(line, " key="));
    }
  }
  free(log);
}

static void access_log_run(int json) {
  fixture f;
  open_store(&f, json ? "http-log-json" : "http-log-text", 0);
  engram_server_options o;
  engram_server_options_init(&o);
  o.keys_file = write_file("log", KEY_A " a\n");
  o.log_format = json ? ENGRAM_LOG_JSON : ENGRAM_LOG_TEXT;
  start_server(&f, &o);
  response rs[7];
  request(f.port, "GET", "/metrics", "Authorization: Bearer " KEY_A "\r\n",
          NULL, &rs[0]);
  request(f.port, "GET", "/metrics", "Authorization: Token " KEY_OTHER "\r\n",
          NULL, &rs[1]);
  request(f.port, "GET", "/metrics", NULL, NULL, &rs[2]);
  request(f.port, "GET", "/nope?key=hunter2",
          "Authorization: Bearer " KEY_A "\r\n", NULL, &rs[3]);
  request(f.port, "GET", "/healthz?token=hunter2",
          "Authorization: Bearer " KEY_A "\r\n", NULL, &rs[4]);
  request(f.port, "POST", "/v1/search", "Authorization: Bearer " KEY_A "\r\n",
          "{\"ns\":\"b\",\"query\":\"x\"}", &rs[5]);
  request(f.port, "POST", "/v1/search", "Authorization: Bearer " KEY_A "\r\n",
          "{\"ns\":\"a\",\"query\":\"" KEY_A "\"}", &rs[6]);
  assert_int_equal(rs[0].status, 200);
  assert_int_equal(rs[1].status, 401);
  assert_int_equal(rs[2].status, 401);
  assert_int_equal(rs[3].status, 404);
  assert_int_equal(rs[4].status, 200);
  assert_int_equal(rs[5].status, 403);
  assert_int_equal(rs[6].status, 200);
  /* Ids differ between requests. */
  for (size_t i = 1; i < 7; i++)
    assert_string_not_equal(rs[i].request_id, rs[0].request_id);
  check_log(&f, rs, 7, json);
  for (size_t i = 0; i < 7; i++)
    response_free(&rs[i]);
  finish(&f);
}

static void test_access_log_text(void **state) {
  (void)state;
  access_log_run(0);
}

static void test_access_log_json(void **state) {
  (void)state;
  access_log_run(1);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  atexit(remove_written);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routing_errors),
      cmocka_unit_test(test_healthz_with_memories),
      cmocka_unit_test(test_body_too_large),
      cmocka_unit_test(test_bad_bodies),
      cmocka_unit_test(test_absurd_parameters),
      cmocka_unit_test(test_slowloris),
      cmocka_unit_test(test_idle_connections),
      cmocka_unit_test(test_inflight_limit),
      cmocka_unit_test(test_graceful_stop),
      cmocka_unit_test(test_request_during_stop),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_listen_policy),
      cmocka_unit_test(test_keys_file_errors),
      cmocka_unit_test(test_access_log_text),
      cmocka_unit_test(test_access_log_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
