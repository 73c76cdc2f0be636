/*
 * server.c — engram serve's listener and lifecycle: h2o on the handle's
 * loop, accepting connections, and the graceful stop.
 *
 * A stop closes the listener first (no new connections), tells h2o to wind
 * down (HTTP/2 GOAWAY, no keep-alive), and waits — by callbacks — until
 * every request in flight has had its response written. Connections left
 * idle then have their sockets shut down, h2o sees end of file and closes
 * them, and when the last one is gone the context is disposed and the
 * caller's callback runs. Nothing acknowledged is lost: responses are only
 * written after the store acknowledged the write they report.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "http/http.h"

#define DEFAULT_LISTEN "127.0.0.1:8420"

typedef struct http_conn {
  uv_tcp_t tcp; /* first: h2o's close callback gets this pointer */
  http_server *srv;
  struct http_conn *prev, *next;
} http_conn;

void engram_server_options_init(engram_server_options *opts) {
  memset(opts, 0, sizeof *opts);
}

int engram_server_port(const engram_server *srv) { return srv->port; }

/* --------------------------------------------------------------- routing */

int http_dispatch(h2o_handler_t *self, h2o_req_t *req); /* router.c */

/* ------------------------------------------------------------ connections */

static void maybe_finish_stop(http_server *srv);
static void finish_stop(uv_timer_t *t);
static void shut_idle_connections(http_server *srv);

static void on_conn_closed(uv_handle_t *h) {
  http_conn *c = (http_conn *)h;
  http_server *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->connections--;
  free(c);
  maybe_finish_stop(srv);
}

static void on_accept(uv_stream_t *listener, int status) {
  http_server *srv = listener->data;
  if (status != 0 || srv->stopping)
    return;
  http_conn *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->srv = srv;
  uv_tcp_init(srv->loop, &c->tcp);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->connections++;
  h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp,
                                            on_conn_closed);
  h2o_accept(&srv->accept_ctx, sock);
}

/* ------------------------------------------------------ h2o's own errors */

/* h2o answers a few requests itself, before any handler runs: a body over
 * max_body gets "413 request entity is too large" in text/plain. A filter
 * on the host's fallback path, where h2o binds those requests, rewrites
 * such answers into engram's shape — the JSON error, an X-Request-Id, an
 * access log line, a metrics count — so that clients parse every error one
 * way. Responses of engram's routes carry X-Request-Id and pass untouched. */
typedef struct error_filter {
  h2o_filter_t super;
  http_server *srv;
} error_filter;

typedef struct error_ostream {
  h2o_ostream_t super;
  h2o_iovec_t body;
  int sent;
} error_ostream;

/* Sends engram's body in place of h2o's. */
static void error_do_send(h2o_ostream_t *self, h2o_req_t *req,
                          h2o_iovec_t *bufs, size_t n, h2o_send_state_t state) {
  error_ostream *o = (error_ostream *)self;
  (void)bufs;
  (void)n;
  h2o_iovec_t *out = o->sent ? NULL : &o->body;
  o->sent = 1;
  h2o_ostream_send_next(self, req, out, out ? 1 : 0, state);
}

static void error_setup_ostream(h2o_filter_t *self, h2o_req_t *req,
                                h2o_ostream_t **slot) {
  http_server *srv = ((error_filter *)self)->srv;
  http_req *r = NULL;
  if (req->res.status >= 400 &&
      h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"),
                             -1) < 0)
    r = http_req_new(srv, req);
  if (r) {
    size_t ml = req->method.len < sizeof r->method - 1 ? req->method.len
                                                       : sizeof r->method - 1;
    memcpy(r->method, req->method.base, ml);
    const char *q = memchr(req->path.base, '?', req->path.len);
    size_t pl = q ? (size_t)(q - req->path.base) : req->path.len;
    memcpy(r->path, req->path.base,
           pl < sizeof r->path ? pl : sizeof r->path - 1);
    char msg[256];
    const char *code = "bad_request";
    if (req->res.status == 413) {
      code = "too_large";
      snprintf(msg, sizeof msg,
               "the request body is over this server's limit of %zu bytes "
               "(--max-body)",
               srv->opts.max_body);
    } else if (req->res.status == 400) {
      snprintf(msg, sizeof msg,
               "the request could not be read (%s): check its Content-Length "
               "or chunked encoding",
               req->res.reason ? req->res.reason : "invalid");
    } else {
      snprintf(msg, sizeof msg, "%s", req->res.reason ? req->res.reason : "");
    }
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message",
                          msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text) {
      size_t len = strlen(text);
      char *body = h2o_mem_alloc_pool(&req->pool, len + 1);
      memcpy(body, text, len);
      body[len++] = '\n';
      free(text);
      h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                     H2O_STRLIT("application/json"), 1);
      h2o_add_header_by_str(&req->pool, &req->res.headers,
                            H2O_STRLIT("x-request-id"), 0, NULL, r->id,
                            strlen(r->id));
      req->res.content_length = len;
      error_ostream *os =
          (error_ostream *)h2o_add_ostream(req, sizeof *os, slot);
      os->super.do_send = error_do_send;
      os->body = h2o_iovec_init(body, len);
      os->sent = 0; /* h2o's pool memory is not zeroed */
      slot = &os->super.next;
      r->bytes = len;
    }
    r->responded = 1;
    r->status = req->res.status;
    http_req_done(r); /* the anchor logs it when h2o is done */
  }
  h2o_setup_next_ostream(req, slot);
}

/* ------------------------------------------------------------- listening */

static int parse_listen(const char *listen, char *host, size_t hostcap,
                        int *port) {
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen)
    return -1;
  size_t hl = (size_t)(colon - listen);
  if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
    listen++;
    hl -= 2;
  }
  if (hl >= hostcap)
    return -1;
  memcpy(host, listen, hl);
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || end == colon + 1)
    return -1;
  *port = (int)p;
  return 0;
}

static int is_loopback(const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return 0;
}

static void server_free(http_server *srv) {
  http_keys_free(srv->keys);
  http_metrics_free(srv->metrics);
  free(srv->listen_copy);
  free(srv);
}

static void free_after_close(uv_handle_t *h) { server_free(h->data); }

int engram_server_start(engram *eg, const engram_server_options *opts,
                        engram_server **out, char *err, size_t errlen) {
  if (!eg || !out)
    return ENGRAM_EINVAL;
  http_server *srv = calloc(1, sizeof *srv);
  if (!srv)
    return ENGRAM_ENOMEM;
  srv->eg = eg;
  srv->loop = engram_loop(eg);
  if (opts)
    srv->opts = *opts;
  engram_server_options *o = &srv->opts;
  if (!o->listen)
    o->listen = DEFAULT_LISTEN;
  if (!o->max_body)
    o->max_body = 1u << 20;
  if (!o->max_inflight)
    o->max_inflight = 4096;
  if (!o->io_timeout_ms)
    o->io_timeout_ms = 10000;
  if (!o->request_timeout_ms)
    o->request_timeout_ms = 10000;
  if (!o->access_log)
    o->access_log = stderr;
  srv->listen_copy = strdup(o->listen);
  srv->metrics = http_metrics_new();
  if (!srv->listen_copy || !srv->metrics) {
    server_free(srv);
    return ENGRAM_ENOMEM;
  }
  o->listen = srv->listen_copy;
  o->keys_file = NULL; /* not kept: loaded now */

  char host[256];
  int port;
  struct sockaddr_storage addr;
  if (parse_listen(srv->listen_copy, host, sizeof host, &port) != 0) {
    snprintf(err, errlen,
             "cannot parse listen address '%s': expected HOST:PORT, like "
             "127.0.0.1:8420 or [::1]:8420",
             srv->listen_copy);
    server_free(srv);
    return ENGRAM_EINVAL;
  }
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof host, "127.0.0.1");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
    snprintf(err, errlen,
             "listen address '%s' is not a numeric IPv4 or IPv6 address (or "
             "localhost)",
             host);
    server_free(srv);
    return ENGRAM_EINVAL;
  }
  if (opts && opts->keys_file) {
    srv->keys = http_keys_load(opts->keys_file, err, errlen);
    if (!srv->keys) {
      server_free(srv);
      return ENGRAM_EINVAL;
    }
  } else if (!is_loopback(&addr)) {
    snprintf(err, errlen,
             "refusing to listen on %s without API keys: anyone who can reach "
             "it could read and change every memory. Give --keys FILE, or "
             "listen on 127.0.0.1",
             srv->listen_copy);
    server_free(srv);
    return ENGRAM_EINVAL;
  }

  h2o_config_init(&srv->config);
  srv->config.max_request_entity_size = o->max_body;
  srv->config.http1.req_timeout = o->io_timeout_ms;
  srv->config.http2.idle_timeout = o->io_timeout_ms;
  h2o_hostconf_t *hostconf = h2o_config_register_host(
      &srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
  h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler) +
                                                            sizeof(srv));
  handler->on_req = http_dispatch;
  memcpy(handler + 1, &srv, sizeof srv); /* the router finds srv here */
  error_filter *ef = (error_filter *)h2o_create_filter(&hostconf->fallback_path,
                                                       sizeof *ef);
  ef->super.on_setup_ostream = error_setup_ostream;
  ef->srv = srv;

  h2o_context_init(&srv->ctx, srv->loop, &srv->config);
  srv->accept_ctx.ctx = &srv->ctx;
  srv->accept_ctx.hosts = srv->config.hosts;

  uv_tcp_init(srv->loop, &srv->listener);
  srv->listener.data = srv;
  int rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_accept);
  if (rc != 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", srv->listen_copy,
             uv_strerror(rc));
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    /* The listener lives in srv: free srv once its close completed. */
    uv_close((uv_handle_t *)&srv->listener, free_after_close);
    return rc == UV_EADDRINUSE ? ENGRAM_EBUSY : ENGRAM_EIO;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
  srv->port = ntohs(bound.ss_family == AF_INET
                        ? ((struct sockaddr_in *)&bound)->sin_port
                        : ((struct sockaddr_in6 *)&bound)->sin6_port);
  getrandom(&srv->id_salt, sizeof srv->id_salt, 0);
  *out = srv;
  return 0;
}

/* ------------------------------------------------------------------ stop */

static void on_listener_closed(uv_handle_t *h) {
  http_server *srv = h->data;
  srv->listener.data = NULL; /* marks the listener gone */
  maybe_finish_stop(srv);
}

/* Shuts every connection down (idle ones, after the in-flight requests are
 * done; all of them when the grace period ran out). */
static void shut_idle_connections(http_server *srv) {
  for (http_conn *c = srv->conns; c; c = c->next) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
      shutdown(fd, SHUT_RDWR); /* h2o reads EOF and closes the socket */
  }
}

static void maybe_finish_stop(http_server *srv) {
  if (!srv->stopping)
    return;
  if (srv->inflight > 0)
    return;
  if (srv->connections > 0) {
    shut_idle_connections(srv);
    return;
  }
  if (srv->listener.data) /* still closing */
    return;
  /* h2o may still hold deferred callbacks of the last connection: dispose
   * of the context from a later loop iteration, once they have run. */
  if (!uv_is_active((uv_handle_t *)&srv->finish_timer))
    uv_timer_start(&srv->finish_timer, finish_stop, 0, 0);
}

static int timeouts_idle(h2o_context_t *ctx) {
  h2o_timeout_t *const all[] = {&ctx->zero_timeout, &ctx->one_sec_timeout,
                                &ctx->hundred_ms_timeout,
                                &ctx->handshake_timeout, &ctx->http1.req_timeout,
                                &ctx->http2.idle_timeout,
                                &ctx->http2.graceful_shutdown_timeout};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (!h2o_linklist_is_empty(&all[i]->_entries))
      return 0;
  return 1;
}

static void free_after_timer_closed(uv_handle_t *h) {
  http_server *srv = h->data;
  if (++srv->timers_closed < 2)
    return;
  if (srv->stop_cb)
    srv->stop_cb(srv, srv->stop_data);
  server_free(srv);
}

/* A client that stops reading keeps its response — and so its request —
 * in flight for as long as it likes (h2o has no write timeout for
 * HTTP/1.1). Past the grace period, every connection is shut down: the
 * pending writes fail, h2o closes the connections, and the stop goes on. */
static void grace_expired(uv_timer_t *t) {
  http_server *srv = t->data;
  shut_idle_connections(srv);
}

static void finish_stop(uv_timer_t *t) {
  http_server *srv = t->data;
  /* The HTTP/2 graceful-shutdown timer has nothing left to close. */
  if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
    h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
  if (!timeouts_idle(&srv->ctx)) {
    uv_timer_start(&srv->finish_timer, finish_stop, 10, 0);
    return;
  }
  h2o_context_dispose(&srv->ctx);
  h2o_config_dispose(&srv->config);
  uv_close((uv_handle_t *)&srv->grace_timer, free_after_timer_closed);
  uv_close((uv_handle_t *)&srv->finish_timer, free_after_timer_closed);
}

void http_server_request_ended(http_server *srv) {
  srv->inflight--;
  maybe_finish_stop(srv);
}

void engram_server_stop(engram_server *srv, engram_server_stop_cb cb,
                        void *data) {
  if (!srv || srv->stopping)
    return;
  srv->stopping = 1;
  srv->stop_cb = cb;
  srv->stop_data = data;
  uv_timer_init(srv->loop, &srv->finish_timer);
  srv->finish_timer.data = srv;
  uv_timer_init(srv->loop, &srv->grace_timer);
  srv->grace_timer.data = srv;
  uv_timer_start(&srv->grace_timer, grace_expired, srv->opts.io_timeout_ms, 0);
  h2o_context_request_shutdown(&srv->ctx);
  uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}
