/*
 * request.c — engram's side of one HTTP request: its lifetime around
 * h2o's, replies and errors in one JSON shape, query and body helpers,
 * streamed responses with backpressure, and the access log.
 *
 * The anchor. h2o frees a request (its memory pool) when the response has
 * been written or the connection died. engram learns of that through a
 * small object allocated in the request's pool with a dispose callback:
 * when it runs, the http_req is marked gone, the route is told (on_gone:
 * cancel what you started), the request stops counting as in flight, and
 * the access log line is written with the final status. The http_req
 * itself is freed when the anchor has run and the route has released it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"

typedef struct anchor {
  http_req *r;
} anchor;

static void req_free(http_req *r) {
  if (r->body)
    json_decref(r->body);
  free(r->stream_pending);
  free(r);
}

static void anchor_dispose(void *p) {
  anchor *a = p;
  http_req *r = a->r;
  if (!r)
    return;
  r->req = NULL;
  r->anchor = NULL;
  if (!r->responded)
    r->status = 499; /* the client closed before a response began */
  http_access_log(r);
  http_metrics_request(r->srv, r->route ? r->route->name : "unknown",
                       r->status, (double)(uv_hrtime() - r->start_ns) / 1e6);
  http_server *srv = r->srv;
  if (r->released)
    req_free(r);
  else if (r->on_gone)
    r->on_gone(r); /* may release r (http_req_done then frees it) */
  http_server_request_ended(srv);
}

http_req *http_req_new(http_server *srv, h2o_req_t *req) {
  http_req *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  anchor *a = h2o_mem_alloc_shared(&req->pool, sizeof *a, anchor_dispose);
  a->r = r;
  r->anchor = a;
  r->req = req;
  r->srv = srv;
  r->eg = srv->eg;
  r->start_ns = uv_hrtime();
  snprintf(r->id, sizeof r->id, "%08x%08llx", srv->id_salt,
           (unsigned long long)++srv->next_id);
  srv->inflight++;
  return r;
}

int http_req_gone(const http_req *r) { return r->req == NULL; }

void http_req_done(http_req *r) {
  if (r->released)
    return;
  r->released = 1;
  if (!r->req)
    req_free(r); /* the anchor already ran */
}

/* ---------------------------------------------------------------- replies */

static void common_headers(http_req *r, const char *content_type) {
  h2o_req_t *req = r->req;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 content_type, strlen(content_type));
  h2o_add_header_by_str(&req->pool, &req->res.headers,
                        H2O_STRLIT("x-request-id"), 0, NULL, r->id,
                        strlen(r->id));
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "OK";
  }
}

static void send_body(http_req *r, int status, const char *type,
                      const char *body, size_t len) {
  if (!r->req || r->responded)
    return;
  r->responded = 1;
  r->status = status;
  r->bytes = len;
  r->req->res.status = status;
  r->req->res.reason = reason(status);
  common_headers(r, type);
  h2o_send_inline(r->req, body, len);
}

/* 1 when every real in v reads back identical from 15 digits. */
static int short_enough(const json_t *v) {
  char buf[32];
  size_t i;
  const char *key;
  json_t *item;
  switch (json_typeof(v)) {
  case JSON_REAL:
    snprintf(buf, sizeof buf, "%.15g", json_real_value(v));
    return strtod(buf, NULL) == json_real_value(v);
  case JSON_OBJECT:
    json_object_foreach((json_t *)v, key, item) {
      if (!short_enough(item))
        return 0;
    }
    return 1;
  case JSON_ARRAY:
    json_array_foreach(v, i, item) {
      if (!short_enough(item))
        return 0;
    }
    return 1;
  default:
    return 1;
  }
}

void http_reply_json(http_req *r, int status, json_t *obj) {
  /* 15 digits print the numbers people typed as they typed them (0.9, not
   * 0.90000000000000002); 17, which always read back exactly, only when a
   * real needs them. */
  size_t prec = obj && !short_enough(obj) ? JSON_REAL_PRECISION(17)
                                          : JSON_REAL_PRECISION(15);
  char *text = obj ? json_dumps(obj, JSON_COMPACT | prec) : NULL;
  if (obj)
    json_decref(obj);
  if (!text) {
    send_body(r, 500, "application/json",
              H2O_STRLIT("{\"error\":{\"code\":\"internal\",\"message\":\"out "
                         "of memory\"}}\n"));
    return;
  }
  size_t len = strlen(text);
  char *with_nl = realloc(text, len + 2);
  if (with_nl) {
    text = with_nl;
    text[len++] = '\n';
    text[len] = '\0';
  }
  send_body(r, status, "application/json", text, len);
  free(text);
}

void http_reply_text(http_req *r, int status, const char *type,
                     const char *body, size_t len) {
  send_body(r, status, type, body, len);
}

void http_error(http_req *r, int status, const char *code, const char *fmt,
                ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *err = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message",
                          msg);
  http_reply_json(r, status, err);
}

void http_error_engram(http_req *r, int status, const char *message) {
  const char *m = message && *message ? message : engram_strerror(status);
  switch (status) {
  case ENGRAM_ENOTFOUND:
    http_error(r, 404, "not_found", "%s", m);
    break;
  case ENGRAM_EEXIST:
    http_error(r, 409, "conflict", "%s", m);
    break;
  case ENGRAM_EEMBEDDER:
    http_error(r, 409, "embedder", "%s", m);
    break;
  case ENGRAM_EINVAL:
  case ENGRAM_EUTF8:
  case ENGRAM_EJSON:
    http_error(r, 400, "invalid", "%s", m);
    break;
  case ENGRAM_ETOOBIG:
    http_error(r, 413, "too_large", "%s", m);
    break;
  case ENGRAM_ETIMEDOUT:
    http_error(r, 504, "deadline", "%s", m);
    break;
  case ENGRAM_ECORRUPT:
    http_error(r, 500, "corrupt", "%s", m);
    break;
  default: /* EIO, EBUSY, ECLOSED, ENOMEM, ECANCELED */
    http_error(r, 503, "unavailable", "the store is unavailable: %s", m);
    break;
  }
}

/* --------------------------------------------------------- query, header */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes %XX (and '+' as space when form) into out; 0 on bad input or
 * overflow, or a decoded NUL. */
int http_decode(const char *p, size_t n, int form, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '%') {
      if (i + 2 >= n)
        return 0;
      int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
      if (hi < 0 || lo < 0)
        return 0;
      c = (char)(hi * 16 + lo);
      if (c == '\0')
        return 0;
      i += 2;
    } else if (c == '+' && form) {
      c = ' ';
    }
    if (o + 1 >= cap)
      return 0;
    out[o++] = c;
  }
  out[o] = '\0';
  return 1;
}

int http_query(const http_req *r, const char *name, char *out, size_t cap) {
  if (!r->req || r->req->query_at == SIZE_MAX)
    return 0;
  const char *q = r->req->path.base + r->req->query_at + 1;
  const char *end = r->req->path.base + r->req->path.len;
  size_t nl = strlen(name);
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    if (!amp)
      amp = end;
    const char *eq = memchr(q, '=', (size_t)(amp - q));
    const char *kend = eq ? eq : amp;
    if ((size_t)(kend - q) == nl && memcmp(q, name, nl) == 0) {
      if (!eq) {
        if (cap)
          out[0] = '\0';
        return 1;
      }
      return http_decode(eq + 1, (size_t)(amp - eq - 1), 1, out, cap) ? 1 : -1;
    }
    q = amp + 1;
  }
  return 0;
}

const char *http_header(const http_req *r, const char *name, size_t *len) {
  if (!r->req)
    return NULL;
  ssize_t i = h2o_find_header_by_str(&r->req->headers, name, strlen(name), -1);
  if (i < 0)
    return NULL;
  h2o_header_t *h = r->req->headers.entries + i;
  *len = h->value.len;
  return h->value.base;
}

/* ------------------------------------------------------------ namespaces */

static int ns_ok(const char *ns) {
  size_t n = strlen(ns);
  if (n == 0 || n > 256)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)ns[i] < 0x20 || ns[i] == 0x7f)
      return 0;
  return 1;
}

int http_allow_ns(http_req *r, const char *ns) {
  if (!ns || !ns_ok(ns)) {
    http_error(r, 400, "invalid",
               "namespace must be 1-256 bytes without control characters");
    return 0;
  }
  if (r->key && !http_key_allows(r->key, ns)) {
    http_error(r, 403, "forbidden",
               "this API key may not use namespace '%s'", ns);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------ JSON body */

static json_t *field(http_req *r, const char *name) {
  return r->body ? json_object_get(r->body, name) : NULL;
}

int http_body_string(http_req *r, const char *name, int required,
                     const char **out) {
  json_t *v = field(r, name);
  if (!v || json_is_null(v)) {
    if (required) {
      http_error(r, 400, "invalid", "field '%s' is required (a string)", name);
      return 0;
    }
    *out = NULL;
    return 1;
  }
  if (!json_is_string(v)) {
    http_error(r, 400, "invalid", "field '%s' must be a string", name);
    return 0;
  }
  *out = json_string_value(v);
  return 1;
}

int http_body_number(http_req *r, const char *name, double min, double max,
                     int required, double *out) {
  json_t *v = field(r, name);
  if (!v || json_is_null(v)) {
    if (required) {
      http_error(r, 400, "invalid", "field '%s' is required (a number)", name);
      return 0;
    }
    return 1; /* *out keeps its default */
  }
  if (!json_is_number(v) || json_number_value(v) < min ||
      json_number_value(v) > max) {
    http_error(r, 400, "invalid", "field '%s' must be a number in [%g, %g]",
               name, min, max);
    return 0;
  }
  *out = json_number_value(v);
  return 1;
}

int http_body_int(http_req *r, const char *name, long long min, long long max,
                  int required, long long *out) {
  json_t *v = field(r, name);
  if (!v || json_is_null(v)) {
    if (required) {
      http_error(r, 400, "invalid", "field '%s' is required (an integer)",
                 name);
      return 0;
    }
    return 1;
  }
  if (!json_is_integer(v) || json_integer_value(v) < min ||
      json_integer_value(v) > max) {
    http_error(r, 400, "invalid",
               "field '%s' must be an integer from %lld to %lld", name, min,
               max);
    return 0;
  }
  *out = json_integer_value(v);
  return 1;
}

/* ------------------------------------------------------------- streaming */

static void stream_proceed(h2o_generator_t *gen, h2o_req_t *req) {
  http_stream_out *out = (http_stream_out *)gen;
  (void)req;
  free(out->r->stream_pending); /* h2o is done with it */
  out->r->stream_pending = NULL;
  out->writable = 1;
  if (!out->finished && out->on_writable)
    out->on_writable(out->r);
}

static void stream_stop(h2o_generator_t *gen, h2o_req_t *req) {
  http_stream_out *out = (http_stream_out *)gen;
  (void)req;
  out->finished = 1; /* the anchor's dispose follows: on_gone cancels */
  out->writable = 0;
}

void http_stream_start(http_req *r, http_stream_out *out, int status,
                       const char *content_type,
                       void (*on_writable)(http_req *r)) {
  memset(out, 0, sizeof *out);
  out->gen.proceed = stream_proceed;
  out->gen.stop = stream_stop;
  out->r = r;
  out->on_writable = on_writable;
  if (!r->req || r->responded) {
    out->finished = 1;
    return;
  }
  r->responded = 1;
  r->status = status;
  r->req->res.status = status;
  r->req->res.reason = reason(status);
  common_headers(r, content_type);
  h2o_start_response(r->req, &out->gen);
  out->writable = 1;
}

void http_stream_write(http_stream_out *out, const char *data, size_t len,
                       int final) {
  http_req *r = out->r;
  if (out->finished || !out->writable || !r->req)
    return;
  char *copy = malloc(len ? len : 1);
  if (!copy) {
    len = 0;
    final = 1;
  } else if (len) {
    memcpy(copy, data, len);
  }
  free(r->stream_pending);
  r->stream_pending = copy;
  out->writable = 0;
  if (final)
    out->finished = 1;
  r->bytes += len;
  h2o_iovec_t buf = h2o_iovec_init(copy, len);
  h2o_send(r->req, &buf, 1,
           final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* ------------------------------------------------------------ access log */

void http_access_log(http_req *r) {
  FILE *f = r->srv->opts.access_log;
  char when[32];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  double ms = (double)(uv_hrtime() - r->start_ns) / 1e6;
  const char *key = r->key ? http_key_label(r->key) : "-";
  const char *route = r->route ? r->route->name : "-";
  if (r->srv->opts.log_format == ENGRAM_LOG_JSON) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:f, s:s, s:s}",
                          "time", when, "request_id", r->id, "method",
                          r->method, "path", r->path, "status", r->status,
                          "bytes", (json_int_t)r->bytes, "ms", ms, "route",
                          route, "key", key);
    if (o) {
      json_dumpf(o, f, JSON_COMPACT);
      fputc('\n', f);
      json_decref(o);
    }
  } else {
    fprintf(f, "%s.%03ldZ %s %s %s %d %zuB %.2fms route=%s key=%s\n", when,
            ts.tv_nsec / 1000000, r->id, r->method, r->path, r->status,
            r->bytes, ms, route, key);
  }
  fflush(f);
}
