/*
 * test_embed_http.c — the HTTP embedder (search/embed_http.c) and the
 * curl-on-libuv driver under it (search/curl_uv.c), against a fake
 * OpenAI-compatible embeddings server.
 *
 * The fake server runs on the same loop as the client: a libuv TCP server
 * on 127.0.0.1, port 0, speaking just enough HTTP/1.1 (keep-alive, one
 * request at a time per connection, Content-Length bodies). Each request
 * takes the next mode of the test's script (the last one repeats): answer,
 * 429 with Retry-After, 500, 400, never answer, invalid JSON, a wrong
 * dimension, a wrong count, shuffled indexes, or hang up. It records what
 * it saw: requests, texts, the most requests it held at once, headers.
 *
 * The embedding of a text is a function of the number in it: text "t37"
 * gives [38, 1, 0, ...], so the client's normalized row i must have
 * row[0] / row[1] == i + 1 — which shows the rows came back in input order.
 *
 * Callbacks record, they do not assert (a failed assertion must not longjmp
 * out of uv_run); each check ends with the loop closed and no handle left,
 * and AddressSanitizer checks that nothing leaked. Every callback checks
 * that it is not running inside one of the embedder's own functions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/core.h"
#include "rt/rt.h"
#include "search/curl_uv.h"
#include "search/embed_http.h"
#include "testloop.h"

static unsigned long g_violations;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (g_violations++ < 20)                                                 \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
                #cond);                                                        \
    }                                                                          \
  } while (0)

/* ------------------------------------------------------------ fake server */

enum mode {
  M_OK,
  M_429,         /* 429 with Retry-After: retry_after seconds */
  M_500,         /* 500 with an OpenAI-style error body */
  M_400,         /* 400: a client error, not to be retried */
  M_SLOW,        /* reads the request, never answers */
  M_BAD_JSON,    /* 200 with a body that is not JSON */
  M_WRONG_DIM,   /* 200, each embedding one value too long */
  M_WRONG_COUNT, /* 200, one embedding missing */
  M_SHUFFLED,    /* 200, items in reverse order with their index */
  M_NO_INDEX,    /* 200, items in order without "index" */
  M_CLOSE,       /* hangs up without a response */
  M_502_TEXT,    /* 502 with a text body, not UTF-8, with line breaks */
};

typedef struct conn conn;
typedef struct fake {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int port;
  int script[32];
  size_t script_len;
  size_t dim;
  uint64_t delay_ms;
  unsigned retry_after;
  /* what it saw */
  unsigned requests, active, max_active, conns_open, conns_total;
  size_t texts;
  char auth[256]; /* the last Authorization header ("" when none) */
  char path[256];
  char model[64];
  conn *conns;
} fake;

struct conn {
  fake *f;
  uv_tcp_t tcp;
  uv_timer_t delay;
  char *in;
  size_t in_len, in_cap;
  int busy;    /* a request read and not answered */
  int closing; /* close started */
  int handles; /* open libuv handles; freed at 0 */
  char *reply; /* waiting for the delay */
  size_t reply_len;
  conn *prev, *next;
};

typedef struct write_req {
  uv_write_t req;
  conn *c;
  char data[];
} write_req;

static void conn_handle_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles == 0) {
    free(c->in);
    free(c->reply);
    free(c);
  }
}

static void conn_close(conn *c) {
  if (c->closing)
    return;
  fake *f = c->f;
  c->closing = 1;
  if (c->busy) {
    c->busy = 0;
    f->active--;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    f->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  f->conns_open--;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->delay, conn_handle_closed);
}

static void try_request(conn *c);

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  conn *c = w->c;
  free(w);
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (!c->closing)
    try_request(c);
}

static void send_now(conn *c, const char *data, size_t len) {
  write_req *w = malloc(sizeof *w + len);
  if (!w)
    abort();
  w->c = c;
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  c->busy = 0;
  c->f->active--;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(w);
    conn_close(c);
  }
}

static void on_delay(uv_timer_t *t) {
  conn *c = t->data;
  char *reply = c->reply;
  c->reply = NULL;
  send_now(c, reply, c->reply_len);
  free(reply);
}

static void respond(conn *c, int code, const char *extra_headers,
                    const char *body) {
  const char *reason = code == 200   ? "OK"
                       : code == 429 ? "Too Many Requests"
                       : code == 400 ? "Bad Request"
                       : code == 404 ? "Not Found"
                       : code == 502 ? "Bad Gateway"
                                     : "Internal Server Error";
  size_t body_len = strlen(body);
  size_t cap = body_len + 512;
  char *out = malloc(cap);
  if (!out)
    abort();
  int head = snprintf(out, cap,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s\r\n",
                      code, reason, body_len, extra_headers);
  memcpy(out + head, body, body_len);
  size_t len = (size_t)head + body_len;
  if (c->f->delay_ms > 0) {
    free(c->reply);
    c->reply = out;
    c->reply_len = len;
    uv_timer_start(&c->delay, on_delay, c->f->delay_ms, 0);
  } else {
    send_now(c, out, len);
    free(out);
  }
}

/* The number in a text, or 0. */
static double text_number(const char *s) {
  while (*s && !isdigit((unsigned char)*s))
    s++;
  return *s ? strtod(s, NULL) : 0;
}

static json_t *embedding_of(const char *text, size_t dim) {
  json_t *v = json_array();
  for (size_t k = 0; k < dim; k++)
    json_array_append_new(v, json_real(k == 0   ? text_number(text) + 1
                                       : k == 1 ? 1.0
                                                : 0.0));
  return v;
}

static char *embeddings_body(json_t *input, int mode, size_t dim) {
  size_t n = json_array_size(input);
  json_t *data = json_array();
  size_t count = mode == M_WRONG_COUNT && n > 0 ? n - 1 : n;
  for (size_t j = 0; j < count; j++) {
    size_t i = mode == M_SHUFFLED ? n - 1 - j : j;
    json_t *item = json_object();
    json_object_set_new(item, "object", json_string("embedding"));
    if (mode != M_NO_INDEX)
      json_object_set_new(item, "index", json_integer((json_int_t)i));
    json_object_set_new(
        item, "embedding",
        embedding_of(json_string_value(json_array_get(input, i)),
                     mode == M_WRONG_DIM ? dim + 1 : dim));
    json_array_append_new(data, item);
  }
  json_t *root = json_object();
  json_object_set_new(root, "object", json_string("list"));
  json_object_set_new(root, "data", data);
  json_object_set_new(root, "model", json_string("fake"));
  char *text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return text;
}

static void header_value(const char *head, size_t head_len, const char *name,
                         char *out, size_t out_len) {
  out[0] = '\0';
  size_t nlen = strlen(name);
  const char *p = head, *end = head + head_len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 &&
        p[nlen] == ':') {
      const char *v = p + nlen + 1;
      while (v < eol && *v == ' ')
        v++;
      size_t len = (size_t)(eol - v);
      if (len > 0 && v[len - 1] == '\r')
        len--;
      if (len >= out_len)
        len = out_len - 1;
      memcpy(out, v, len);
      out[len] = '\0';
      return;
    }
    p = eol + 1;
  }
}

static void handle_request(conn *c, const char *head, size_t head_len,
                           const char *body, size_t body_len) {
  fake *f = c->f;
  unsigned k = f->requests++;
  int mode = f->script_len == 0  ? M_OK
             : k < f->script_len ? f->script[k]
                                 : f->script[f->script_len - 1];
  c->busy = 1;
  if (++f->active > f->max_active)
    f->max_active = f->active;
  header_value(head, head_len, "Authorization", f->auth, sizeof f->auth);
  const char *sp = memchr(head, ' ', head_len);
  if (sp) {
    const char *sp2 = memchr(sp + 1, ' ', head_len - (size_t)(sp + 1 - head));
    size_t len = sp2 ? (size_t)(sp2 - sp - 1) : 0;
    if (len >= sizeof f->path)
      len = sizeof f->path - 1;
    memcpy(f->path, sp + 1, len);
    f->path[len] = '\0';
  }
  json_t *req = json_loadb(body, body_len, 0, NULL);
  json_t *input = json_object_get(req, "input");
  const char *model = json_string_value(json_object_get(req, "model"));
  snprintf(f->model, sizeof f->model, "%s", model ? model : "");
  f->texts += json_array_size(input);

  if (strcmp(f->path, "/v1/embeddings") != 0) {
    respond(c, 404, "", "{\"error\":{\"message\":\"no such route\"}}");
  } else if (!json_is_array(input)) {
    respond(c, 400, "", "{\"error\":{\"message\":\"input is missing\"}}");
  } else if (mode == M_SLOW) {
    /* holds the request until the client gives up */
  } else if (mode == M_CLOSE) {
    conn_close(c);
  } else if (mode == M_429) {
    char extra[64];
    snprintf(extra, sizeof extra, "Retry-After: %u\r\n", f->retry_after);
    respond(c, 429, extra,
            "{\"error\":{\"message\":\"rate limit reached\",\"type\":"
            "\"requests\"}}");
  } else if (mode == M_500) {
    respond(c, 500, "", "{\"error\":{\"message\":\"model overloaded\"}}");
  } else if (mode == M_400) {
    respond(c, 400, "", "{\"error\":\"input is too long\"}");
  } else if (mode == M_502_TEXT) {
    respond(c, 502, "", "<html>\r\nproxy \xff\xfe says no\r\n</html>");
  } else if (mode == M_BAD_JSON) {
    respond(c, 200, "", "{\"data\": [oops");
  } else {
    char *text = embeddings_body(input, mode, f->dim);
    respond(c, 200, "", text);
    free(text);
  }
  json_decref(req);
}

/* Handles the buffered request if it is complete. */
static void try_request(conn *c) {
  if (c->busy || c->closing || c->in_len == 0)
    return;
  char *end = NULL;
  for (size_t i = 0; i + 4 <= c->in_len; i++)
    if (memcmp(c->in + i, "\r\n\r\n", 4) == 0) {
      end = c->in + i;
      break;
    }
  if (!end)
    return;
  size_t head_len = (size_t)(end - c->in);
  char cl[32];
  header_value(c->in, head_len, "Content-Length", cl, sizeof cl);
  size_t body_len = (size_t)strtoul(cl, NULL, 10);
  size_t total = head_len + 4 + body_len;
  if (c->in_len < total)
    return;
  handle_request(c, c->in, head_len, c->in + head_len + 4, body_len);
  if (c->closing)
    return;
  memmove(c->in, c->in + total, c->in_len - total);
  c->in_len -= total;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn *c = h->data;
  if (c->in_cap - c->in_len < suggested) {
    c->in_cap = c->in_len + suggested;
    c->in = realloc(c->in, c->in_cap);
    if (!c->in)
      abort();
  }
  *b = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  conn *c = s->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  c->in_len += (size_t)nread;
  try_request(c);
}

static void on_connection(uv_stream_t *server, int status) {
  fake *f = server->data;
  if (status < 0)
    return;
  conn *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  c->f = f;
  uv_tcp_init(f->loop, &c->tcp);
  uv_timer_init(f->loop, &c->delay);
  c->tcp.data = c->delay.data = c;
  c->handles = 2;
  c->next = f->conns;
  if (f->conns)
    f->conns->prev = c;
  f->conns = c;
  f->conns_open++;
  f->conns_total++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

static void fake_start(fake *f, uv_loop_t *loop, size_t dim) {
  memset(f, 0, sizeof *f);
  f->loop = loop;
  f->dim = dim;
  uv_tcp_init(loop, &f->listener);
  f->listener.data = f;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&f->listener, (const struct sockaddr *)&addr, 0),
                   0);
  assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 64, on_connection),
                   0);
  struct sockaddr_storage name;
  int len = sizeof name;
  uv_tcp_getsockname(&f->listener, (struct sockaddr *)&name, &len);
  f->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void fake_script(fake *f, size_t n, ...) {
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++)
    f->script[i] = va_arg(ap, int);
  va_end(ap);
  f->script_len = n;
}

static void fake_stop(fake *f) {
  while (f->conns)
    conn_close(f->conns);
  uv_close((uv_handle_t *)&f->listener, NULL);
}

/* ------------------------------------------------------------ client side */

/* Depth of calls into the embedder's API: a callback must see 0. */
static int g_api_depth;

typedef struct outcome {
  int calls;
  int status;
  char msg[600];
  float *vectors; /* copy */
  size_t n, dim;
  /* optional: what to do inside the callback */
  search_embedder *embed_again; /* start `again` on this embedder */
  search_embed_req *again;
  struct outcome *again_out;
  search_embed_req *cancel_other; /* cancel this request */
  search_embedder *close_it;      /* close this embedder */
  void *close_data;               /* the harness, for on_closed */
} outcome;

static void on_closed(void *data);

static void on_embedded(search_embed_req *req, int status, const char *msg,
                        float *vectors, void *data);

static int start_embed(search_embedder *e, search_embed_req *req, size_t n,
                       const char *prefix, outcome *out) {
  const char **texts = calloc(n, sizeof *texts);
  size_t *lens = calloc(n, sizeof *lens);
  char(*bufs)[32] = calloc(n, sizeof *bufs);
  if (!texts || !lens || !bufs)
    abort();
  for (size_t i = 0; i < n; i++) {
    snprintf(bufs[i], sizeof bufs[i], "%s%zu", prefix, i);
    texts[i] = bufs[i];
    lens[i] = strlen(bufs[i]);
  }
  memset(out, 0, sizeof *out);
  out->n = n;
  g_api_depth++;
  int rc = search_embed(e, req, texts, lens, n, on_embedded, out);
  g_api_depth--;
  /* The embedder copied what it needed: poison the texts. */
  for (size_t i = 0; i < n; i++)
    memset(bufs[i], 'X', sizeof bufs[i]);
  free(texts);
  free(lens);
  free(bufs);
  return rc;
}

static void on_embedded(search_embed_req *req, int status, const char *msg,
                        float *vectors, void *data) {
  outcome *out = data;
  CHECK(g_api_depth == 0);
  CHECK(!req->active);
  out->calls++;
  out->status = status;
  snprintf(out->msg, sizeof out->msg, "%s", msg ? msg : "");
  CHECK((status == 0) == (vectors != NULL));
  CHECK((status == 0) == (msg == NULL));
  if (vectors) {
    out->dim = req->embedder->dim;
    out->vectors = malloc(out->n * out->dim * sizeof(float));
    if (!out->vectors)
      abort();
    memcpy(out->vectors, vectors, out->n * out->dim * sizeof(float));
  }
  if (out->embed_again) {
    search_embedder *e = out->embed_again;
    out->embed_again = NULL;
    CHECK(start_embed(e, out->again, 3, "again ", out->again_out) == 0);
  }
  if (out->cancel_other) {
    search_embed_cancel(out->cancel_other);
    out->cancel_other = NULL;
  }
  search_embed_cancel(req); /* its own, finished: nothing happens */
  if (out->close_it) {
    search_embedder_close(out->close_it, on_closed, out->close_data);
    out->close_it = NULL;
  }
}

static int outcome_called(void *arg) {
  return ((outcome *)arg)->calls > 0;
}

/* Rows in input order, unit length, row i == [i + 1, 1, 0...] normalized. */
static void check_rows(const outcome *o, size_t first_number) {
  assert_non_null(o->vectors);
  for (size_t i = 0; i < o->n; i++) {
    const float *row = o->vectors + i * o->dim;
    double sum = 0;
    for (size_t k = 0; k < o->dim; k++)
      sum += (double)row[k] * row[k];
    assert_true(fabs(sum - 1.0) < 1e-5);
    assert_true(row[1] > 0);
    double ratio = (double)row[0] / row[1];
    assert_true(fabs(ratio - (double)(first_number + i + 1)) <
                1e-3 * (double)(first_number + i + 1));
  }
}

typedef struct harness {
  uv_loop_t loop;
  rt rt;
  fake server;
  search_embedder *e;
  int closed;
} harness;

static void h_start(harness *h, size_t server_dim) {
  g_violations = 0;
  g_api_depth = 0;
  memset(h, 0, sizeof *h);
  assert_int_equal(uv_loop_init(&h->loop), 0);
  rt_init(&h->rt, &h->loop);
  fake_start(&h->server, &h->loop, server_dim);
}

static void h_options(harness *h, search_http_options *o) {
  static char url[64];
  search_http_options_default(o);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", h->server.port);
  o->base_url = url;
  o->model = "test-model";
  o->backoff_ms = 5;
}

static void h_embedder(harness *h, const search_http_options *o) {
  char msg[256] = "";
  int rc = search_http_embedder_new(&h->rt, o, &h->e, msg, sizeof msg);
  if (rc != 0)
    fprintf(stderr, "embedder: %s\n", msg);
  assert_int_equal(rc, 0);
}

static void on_closed(void *data) {
  CHECK(g_api_depth == 0);
  ((harness *)data)->closed++;
}

static int harness_closed(void *arg) {
  return ((harness *)arg)->closed > 0;
}

static void h_finish(harness *h) {
  if (h->e) {
    g_api_depth++;
    search_embedder_close(h->e, on_closed, h);
    g_api_depth--;
    assert_true(tl_run_until(&h->loop, harness_closed, h, 5000));
    assert_int_equal(h->closed, 1);
  }
  fake_stop(&h->server);
  int leftover = -1;
  assert_int_equal(tl_loop_finish(&h->loop, &leftover), 0);
  assert_int_equal(leftover, 0);
  assert_int_equal(g_violations, 0);
}

static void run_until_called(harness *h, outcome *o, uint64_t ms) {
  assert_true(tl_run_until(&h->loop, outcome_called, o, ms));
  /* a second callback would come on a later turn: look for it */
  tl_run_for(&h->loop, 20);
  assert_int_equal(o->calls, 1);
}

/* ------------------------------------------------------------ tests */

static void test_batches_in_order(void **state) {
  (void)state;
  harness h;
  h_start(&h, 8);
  h.server.delay_ms = 10;
  search_http_options o;
  h_options(&h, &o);
  o.batch = 16;
  o.concurrency = 4;
  h_embedder(&h, &o);
  assert_string_equal(h.e->name, "http:test-model");
  assert_int_equal(h.e->dim, 0); /* learned from the first answer */

  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 100, "t", &out), 0);
  assert_true(req.active);
  assert_int_equal(out.calls, 0); /* never inside search_embed() */
  run_until_called(&h, &out, 10000);
  assert_int_equal(out.status, 0);
  assert_int_equal(out.dim, 8);
  assert_int_equal(h.e->dim, 8);
  check_rows(&out, 0);
  assert_int_equal(h.server.requests, 7); /* 6 x 16 + 4 */
  assert_int_equal(h.server.texts, 100);
  assert_true(h.server.max_active <= 4);
  assert_string_equal(h.server.path, "/v1/embeddings");
  assert_string_equal(h.server.model, "test-model");
  assert_string_equal(h.server.auth, "");
  free(out.vectors);
  h_finish(&h);
}

static void test_concurrency_cap(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  h.server.delay_ms = 30;
  search_http_options o;
  h_options(&h, &o);
  o.batch = 1;
  o.concurrency = 3;
  h_embedder(&h, &o);
  search_embed_req a, b;
  outcome oa, ob;
  /* Two calls share the embedder's slots. */
  assert_int_equal(start_embed(h.e, &a, 12, "t", &oa), 0);
  assert_int_equal(start_embed(h.e, &b, 9, "t", &ob), 0);
  run_until_called(&h, &oa, 10000);
  run_until_called(&h, &ob, 10000);
  assert_int_equal(oa.status, 0);
  assert_int_equal(ob.status, 0);
  check_rows(&oa, 0);
  check_rows(&ob, 0);
  assert_int_equal(h.server.requests, 21);
  assert_int_equal(h.server.max_active, 3);
  free(oa.vectors);
  free(ob.vectors);
  h_finish(&h);
}

static void test_api_key_and_v1_base(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  search_http_options o;
  h_options(&h, &o);
  char url[80];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/", h.server.port);
  o.base_url = url;
  o.api_key = "sk-test-123";
  o.dim = 4;
  h_embedder(&h, &o);
  assert_int_equal(h.e->dim, 4);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 3, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, 0);
  assert_string_equal(h.server.path, "/v1/embeddings");
  assert_string_equal(h.server.auth, "Bearer sk-test-123");
  check_rows(&out, 0);
  free(out.vectors);
  h_finish(&h);
}

static void test_retry_after_429(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 2, M_429, M_OK);
  h.server.retry_after = 1;
  search_http_options o;
  h_options(&h, &o);
  o.retries = 2;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  uint64_t start = uv_hrtime();
  assert_int_equal(start_embed(h.e, &req, 5, "t", &out), 0);
  run_until_called(&h, &out, 10000);
  uint64_t elapsed_ms = (uv_hrtime() - start) / 1000000u;
  assert_int_equal(out.status, 0);
  check_rows(&out, 0);
  assert_int_equal(h.server.requests, 2);
  /* Retry-After: 1 outweighs the 5 ms backoff. */
  assert_true(elapsed_ms >= 950);
  assert_true(elapsed_ms < 5000);
  free(out.vectors);
  h_finish(&h);
}

static void test_retry_500_then_ok(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  /* (A hang-up comes first: on a kept-alive connection curl would retry
   * it by itself, and the server would count one request more.) */
  fake_script(&h.server, 3, M_CLOSE, M_500, M_OK);
  search_http_options o;
  h_options(&h, &o);
  o.retries = 3;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 5, "t", &out), 0);
  run_until_called(&h, &out, 10000);
  assert_int_equal(out.status, 0);
  check_rows(&out, 0);
  assert_int_equal(h.server.requests, 3);
  free(out.vectors);
  h_finish(&h);
}

static void test_gives_up_after_retries(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_500);
  search_http_options o;
  h_options(&h, &o);
  o.retries = 2;
  o.batch = 2;
  o.concurrency = 1;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 6, "t", &out), 0);
  run_until_called(&h, &out, 10000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_null(out.vectors);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/embeddings", h.server.port);
  assert_non_null(strstr(out.msg, url));
  assert_non_null(strstr(out.msg, "HTTP 500"));
  assert_non_null(strstr(out.msg, "model overloaded"));
  assert_non_null(strstr(out.msg, "gave up after 3 attempts"));
  /* The first part failed for good; the others were never sent. */
  assert_int_equal(h.server.requests, 3);
  h_finish(&h);
}

static void test_client_error_not_retried(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_400);
  search_http_options o;
  h_options(&h, &o);
  o.retries = 3;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_non_null(strstr(out.msg, "HTTP 400: input is too long"));
  assert_null(strstr(out.msg, "gave up"));
  assert_int_equal(h.server.requests, 1);
  h_finish(&h);
}

static int no_active(void *arg) {
  return ((fake *)arg)->active == 0;
}

/* A proxy's error page: quoted as text, made printable and valid UTF-8. */
static void test_text_error_body(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_502_TEXT);
  search_http_options o;
  h_options(&h, &o);
  o.retries = 0;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 1, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_non_null(strstr(out.msg, "HTTP 502: <html>  proxy ?? says no"));
  assert_true(core_utf8_valid(out.msg, strlen(out.msg)));
  assert_null(strchr(out.msg, '\n'));
  assert_int_equal(h.server.requests, 1);
  h_finish(&h);
}

static void test_timeout(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_SLOW);
  search_http_options o;
  h_options(&h, &o);
  o.timeout_ms = 200;
  o.retries = 1;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  uint64_t start = uv_hrtime();
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 10000);
  uint64_t elapsed_ms = (uv_hrtime() - start) / 1000000u;
  assert_int_equal(out.status, ENGRAM_ETIMEDOUT);
  assert_non_null(strstr(out.msg, "no response within 200 ms"));
  assert_non_null(strstr(out.msg, "gave up after 2 attempts"));
  assert_int_equal(h.server.requests, 2);
  assert_true(elapsed_ms >= 400);
  assert_true(elapsed_ms < 5000);
  /* The client hung up both held requests. */
  assert_true(tl_run_until(&h.loop, no_active, &h.server, 5000));
  h_finish(&h);
}

static void expect_bad_answer(int mode, size_t dim, const char *needle) {
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, mode);
  search_http_options o;
  h_options(&h, &o);
  o.dim = dim;
  o.retries = 2;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 3, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  if (!strstr(out.msg, needle))
    fprintf(stderr, "message: %s\n", out.msg);
  assert_non_null(strstr(out.msg, needle));
  assert_non_null(strstr(out.msg, "/v1/embeddings"));
  assert_int_equal(h.server.requests, 1); /* a bad answer is not retried */
  h_finish(&h);
}

static void test_bad_answers(void **state) {
  (void)state;
  expect_bad_answer(M_BAD_JSON, 0, "not valid JSON");
  expect_bad_answer(M_WRONG_DIM, 4, "wrong dimension");
  expect_bad_answer(M_WRONG_COUNT, 0, "2 embeddings for 3 texts");
}

static void test_learned_dim_is_fixed(void **state) {
  (void)state;
  harness h;
  h_start(&h, 6);
  search_http_options o;
  h_options(&h, &o);
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, 0);
  assert_int_equal(h.e->dim, 6);
  free(out.vectors);
  h.server.dim = 7; /* the server changed model under us */
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_non_null(strstr(out.msg, "has 7 values, expected 6"));
  assert_int_equal(h.e->dim, 6);
  h_finish(&h);
}

static void test_order_by_index(void **state) {
  (void)state;
  harness h;
  h_start(&h, 5);
  fake_script(&h.server, 2, M_SHUFFLED, M_NO_INDEX);
  search_http_options o;
  h_options(&h, &o);
  o.batch = 10;
  o.concurrency = 1;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 20, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, 0);
  check_rows(&out, 0);
  assert_int_equal(h.server.requests, 2);
  free(out.vectors);
  h_finish(&h);
}

static void test_connection_failures(void **state) {
  (void)state;
  /* The server hangs up every time. */
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_CLOSE);
  search_http_options o;
  h_options(&h, &o);
  o.retries = 1;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_non_null(strstr(out.msg, "gave up after 2 attempts"));
  assert_int_equal(h.server.requests, 2);
  h_finish(&h);

  /* Nobody listens: the port of a server that was closed. */
  h_start(&h, 4);
  h_options(&h, &o);
  o.retries = 2;
  char url[64];
  snprintf(url, sizeof url, "%s", o.base_url);
  o.base_url = url;
  fake_stop(&h.server);
  tl_run_for(&h.loop, 5);
  h_embedder(&h, &o);
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_EIO);
  assert_non_null(strstr(out.msg, url));
  assert_non_null(strstr(out.msg, "gave up after 3 attempts"));
  g_api_depth++;
  search_embedder_close(h.e, on_closed, &h);
  g_api_depth--;
  assert_true(tl_run_until(&h.loop, harness_closed, &h, 5000));
  int leftover = -1;
  assert_int_equal(tl_loop_finish(&h.loop, &leftover), 0);
  assert_int_equal(leftover, 0);
  assert_int_equal(g_violations, 0);
}

static int two_active(void *arg) {
  return ((fake *)arg)->active >= 2;
}

static void test_cancel_mid_flight(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_SLOW);
  search_http_options o;
  h_options(&h, &o);
  o.batch = 5;
  o.concurrency = 2;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 50, "t", &out), 0);
  assert_true(tl_run_until(&h.loop, two_active, &h.server, 5000));
  g_api_depth++;
  search_embed_cancel(&req);
  search_embed_cancel(&req); /* idempotent */
  g_api_depth--;
  assert_int_equal(out.calls, 0); /* never inside cancel */
  run_until_called(&h, &out, 5000);
  assert_int_equal(out.status, ENGRAM_ECANCELED);
  assert_null(out.vectors);
  /* The running requests were dropped, the queued ones never sent. */
  assert_true(tl_run_until(&h.loop, no_active, &h.server, 5000));
  assert_int_equal(h.server.requests, 2);
  search_embed_cancel(&req); /* after the callback: nothing */
  tl_run_for(&h.loop, 20);
  assert_int_equal(out.calls, 1);
  h_finish(&h);
}

static void test_cancel_while_backing_off(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_429);
  h.server.retry_after = 30;
  search_http_options o;
  h_options(&h, &o);
  o.retries = 5;
  h_embedder(&h, &o);
  search_embed_req req;
  outcome out;
  assert_int_equal(start_embed(h.e, &req, 2, "t", &out), 0);
  tl_run_for(&h.loop, 100);
  assert_int_equal(h.server.requests, 1);
  assert_int_equal(out.calls, 0);
  g_api_depth++;
  search_embed_cancel(&req);
  g_api_depth--;
  run_until_called(&h, &out, 1000);
  assert_int_equal(out.status, ENGRAM_ECANCELED);
  h_finish(&h);
}

static void test_close_with_requests(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_SLOW);
  search_http_options o;
  h_options(&h, &o);
  h_embedder(&h, &o);
  search_embed_req a, b;
  outcome oa, ob;
  assert_int_equal(start_embed(h.e, &a, 3, "t", &oa), 0);
  assert_int_equal(start_embed(h.e, &b, 3, "t", &ob), 0);
  assert_true(tl_run_until(&h.loop, two_active, &h.server, 5000));
  g_api_depth++;
  search_embedder_close(h.e, on_closed, &h);
  g_api_depth--;
  h.e = NULL;
  assert_int_equal(oa.calls + ob.calls + h.closed, 0);
  assert_true(tl_run_until(&h.loop, harness_closed, &h, 5000));
  assert_int_equal(oa.calls, 1);
  assert_int_equal(ob.calls, 1);
  assert_int_equal(oa.status, ENGRAM_ECANCELED);
  assert_int_equal(ob.status, ENGRAM_ECANCELED);
  assert_non_null(strstr(oa.msg, "closed"));
  h_finish(&h);
}

static void test_embed_from_callback(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  search_http_options o;
  h_options(&h, &o);
  h_embedder(&h, &o);
  search_embed_req a, b;
  outcome oa, ob;
  assert_int_equal(start_embed(h.e, &a, 2, "t", &oa), 0);
  oa.embed_again = h.e;
  oa.again = &b;
  oa.again_out = &ob;
  run_until_called(&h, &oa, 5000);
  assert_int_equal(oa.status, 0);
  run_until_called(&h, &ob, 5000);
  assert_int_equal(ob.status, 0);
  check_rows(&ob, 0);
  free(oa.vectors);
  free(ob.vectors);
  h_finish(&h);
}

/* A's callback cancels B (still running) and closes the embedder: B's
 * callback and the close callback come later, each once. */
static void test_cancel_and_close_from_callback(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 2, M_OK, M_SLOW);
  search_http_options o;
  h_options(&h, &o);
  o.concurrency = 1; /* A is answered before B is sent */
  h_embedder(&h, &o);
  search_embed_req a, b, c;
  outcome oa, ob, oc;
  assert_int_equal(start_embed(h.e, &a, 2, "t", &oa), 0);
  assert_int_equal(start_embed(h.e, &b, 2, "t", &ob), 0);
  assert_int_equal(start_embed(h.e, &c, 2, "t", &oc), 0);
  oa.cancel_other = &b;
  oa.close_it = h.e;
  oa.close_data = &h;
  run_until_called(&h, &oa, 5000);
  assert_int_equal(oa.status, 0);
  h.e = NULL;
  assert_true(tl_run_until(&h.loop, harness_closed, &h, 5000));
  assert_int_equal(ob.calls, 1);
  assert_int_equal(ob.status, ENGRAM_ECANCELED);
  assert_non_null(strstr(ob.msg, "cancelled"));
  assert_int_equal(oc.calls, 1);
  assert_int_equal(oc.status, ENGRAM_ECANCELED);
  assert_non_null(strstr(oc.msg, "closed"));
  tl_run_for(&h.loop, 20);
  assert_int_equal(h.closed, 1);
  free(oa.vectors);
  h_finish(&h);
}

static void test_bad_arguments(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  search_http_options o;
  h_options(&h, &o);
  search_embedder *e = NULL;
  char msg[256] = "";
  o.base_url = "ftp://example.com";
  assert_int_equal(search_http_embedder_new(&h.rt, &o, &e, msg, sizeof msg),
                   ENGRAM_EINVAL);
  assert_non_null(strstr(msg, "http://"));
  h_options(&h, &o);
  o.model = "";
  assert_int_equal(search_http_embedder_new(&h.rt, &o, &e, msg, sizeof msg),
                   ENGRAM_EINVAL);
  assert_non_null(strstr(msg, "model"));
  h_options(&h, &o);
  o.api_key = "key\r\nX-Evil: 1";
  assert_int_equal(search_http_embedder_new(&h.rt, &o, &e, msg, sizeof msg),
                   ENGRAM_EINVAL);
  assert_null(e);

  h_options(&h, &o);
  h_embedder(&h, &o);
  search_embed_req req;
  const char *texts[] = {"fine", "bad \xff byte"};
  size_t lens[] = {4, 10};
  assert_int_equal(search_embed(h.e, &req, texts, lens, 2, on_embedded, NULL),
                   ENGRAM_EUTF8);
  assert_int_equal(search_embed(h.e, &req, texts, lens, 0, on_embedded, NULL),
                   ENGRAM_EINVAL);
  assert_false(req.active);
  tl_run_for(&h.loop, 20);
  assert_int_equal(h.server.requests, 0);
  h_finish(&h);
}

/* ------------------------------------------------------------ curl_uv */

typedef struct raw_done {
  int calls;
  CURLcode result;
} raw_done;

static void on_raw_done(CURL *easy, CURLcode result, void *data) {
  raw_done *d = data;
  CHECK(g_api_depth == 0);
  d->calls++;
  d->result = result;
  curl_easy_cleanup(easy);
}

static void on_driver_closed(void *data) {
  CHECK(g_api_depth == 0);
  (*(int *)data)++;
}

static int int_set(void *arg) {
  return *(int *)arg != 0;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *data) {
  (void)ptr;
  (void)data;
  return size * nmemb;
}

static CURL *raw_easy(int port, char *body) {
  CURL *c = curl_easy_init();
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/embeddings", port);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  return c;
}

/* Closing the driver ends its running transfers with
 * CURLE_ABORTED_BY_CALLBACK, from the loop; a removed one never calls. */
static void test_driver_close_aborts(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_SLOW);
  curl_uv *cu = curl_uv_new(&h.loop);
  assert_non_null(cu);
  char body[] = "{\"model\":\"m\",\"input\":[\"x\"]}";
  raw_done d1 = {0}, d2 = {0};
  CURL *e1 = raw_easy(h.server.port, body);
  CURL *e2 = raw_easy(h.server.port, body);
  assert_int_equal(curl_uv_add(cu, e1, on_raw_done, &d1), 0);
  assert_int_equal(curl_uv_add(cu, e2, on_raw_done, &d2), 0);
  assert_int_equal(curl_uv_running(cu), 2);
  assert_true(tl_run_until(&h.loop, two_active, &h.server, 5000));
  assert_int_equal(curl_uv_remove(cu, e2), 1);
  assert_int_equal(curl_uv_remove(cu, e2), 0);
  curl_easy_cleanup(e2);
  int closed = 0;
  g_api_depth++;
  curl_uv_close(cu, on_driver_closed, &closed);
  g_api_depth--;
  assert_int_equal(d1.calls, 0);
  assert_true(tl_run_until(&h.loop, int_set, &closed, 5000));
  assert_int_equal(d1.calls, 1);
  assert_int_equal(d1.result, CURLE_ABORTED_BY_CALLBACK);
  assert_int_equal(d2.calls, 0);
  assert_int_equal(closed, 1);
  h_finish(&h);
}

/* Many short transfers, each on a new connection (the client closes it
 * after the answer): sockets come and go, descriptor numbers are reused. */
static void test_driver_many_connections(void **state) {
  (void)state;
  harness h;
  h_start(&h, 4);
  fake_script(&h.server, 1, M_400);
  curl_uv *cu = curl_uv_new(&h.loop);
  assert_non_null(cu);
  char body[] = "{\"model\":\"m\",\"input\":[\"x\"]}";
  enum { N = 60 };
  raw_done d[N];
  memset(d, 0, sizeof d);
  for (int i = 0; i < N; i++) {
    CURL *c = raw_easy(h.server.port, body);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    assert_int_equal(curl_uv_add(cu, c, on_raw_done, &d[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    assert_true(tl_run_until(&h.loop, int_set, &d[i].calls, 5000));
    assert_int_equal(d[i].result, CURLE_OK);
  }
  assert_int_equal(curl_uv_running(cu), 0);
  assert_int_equal(h.server.requests, N);
  int closed = 0;
  curl_uv_close(cu, on_driver_closed, &closed);
  assert_true(tl_run_until(&h.loop, int_set, &closed, 5000));
  h_finish(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batches_in_order),
      cmocka_unit_test(test_concurrency_cap),
      cmocka_unit_test(test_api_key_and_v1_base),
      cmocka_unit_test(test_retry_after_429),
      cmocka_unit_test(test_retry_500_then_ok),
      cmocka_unit_test(test_gives_up_after_retries),
      cmocka_unit_test(test_client_error_not_retried),
      cmocka_unit_test(test_text_error_body),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_bad_answers),
      cmocka_unit_test(test_learned_dim_is_fixed),
      cmocka_unit_test(test_order_by_index),
      cmocka_unit_test(test_connection_failures),
      cmocka_unit_test(test_cancel_mid_flight),
      cmocka_unit_test(test_cancel_while_backing_off),
      cmocka_unit_test(test_close_with_requests),
      cmocka_unit_test(test_embed_from_callback),
      cmocka_unit_test(test_cancel_and_close_from_callback),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_driver_close_aborts),
      cmocka_unit_test(test_driver_many_connections),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
