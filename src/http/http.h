/*
 * http.h — the HTTP service's internal header (src/http only).
 *
 * engram serve is h2o on the engram handle's own libuv loop: h2o parses
 * and writes, engram's callbacks produce, and no thread ever waits for a
 * client or for the store. This header is the contract between the server
 * core (server.c, request.c, router.c, auth.c, metrics.c) and the route
 * files (routes_*.c), which only see http_req and the helpers below.
 *
 * Request lifetime. h2o owns the h2o_req_t; engram keeps an http_req of its
 * own that outlives it when needed: a route starts async work with the
 * http_req as its data, and when the work calls back the client may be gone
 * (http_req_gone()). The http_req is freed when both the response is done
 * (or the client vanished) and the route released it (http_req_done()), so
 * a late callback never touches freed memory. A request counts as in flight
 * until h2o has finished with it — that is, until its response was written
 * — which is what a graceful stop waits for.
 */
#ifndef ENGRAM_HTTP_H
#define ENGRAM_HTTP_H

#include <h2o.h>
#include <jansson.h>

#include "engram.h"

typedef struct engram_server http_server;
typedef struct http_req http_req;
typedef struct http_metrics http_metrics;

/* ------------------------------------------------------------------ routes */

typedef void (*http_handler)(http_req *r);

typedef struct http_route {
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* "/v1/memories/:id": ":x" matches one segment */
  http_handler handle;
  const char *name;    /* metrics label: "memories.get" */
} http_route;

#define HTTP_MAX_PARAMS 3
#define HTTP_PARAM_MAX 256

/* The route tables, each ended by a {NULL} row (routes_*.c). */
extern const http_route http_routes_system[];
extern const http_route http_routes_memories[];
extern const http_route http_routes_relationships[];
extern const http_route http_routes_search[];
extern const http_route http_routes_mem0[];

/* --------------------------------------------------------------- requests */

struct http_req {
  h2o_req_t *req;   /* NULL once h2o finished with the request */
  http_server *srv;
  engram *eg;
  const http_route *route;
  char id[20];      /* request id, also sent as X-Request-Id */
  char method[16];
  char path[256];   /* without the query string (it may hold user text) */
  char *stream_pending; /* bytes h2o is writing (streamed responses) */
  uint64_t start_ns;
  json_t *body;     /* the parsed JSON body (object), or NULL */
  char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX]; /* path captures, decoded */
  int status;       /* the response status (for the log and metrics) */
  size_t bytes;     /* response body bytes sent */
  const struct http_key *key; /* the caller's key; NULL when keys are off */
  int responded;    /* a response was started */
  int released;     /* the route called http_req_done() */
  void *anchor;     /* the dispose hook in h2o's pool (see request.c) */
  /* Called once when the client goes away while the route still holds the
   * request (a cancellation point); may be NULL. It may release r
   * (http_req_done) when nothing of the route is left running. */
  void (*on_gone)(http_req *r);
  void *op;         /* the route's own state */
};

http_req *http_req_new(http_server *srv, h2o_req_t *req); /* router.c */
/* 1 when h2o has finished with the request (client gone or reply done). */
int http_req_gone(const http_req *r);
/* The route is finished with r (after replying, or when gone). */
void http_req_done(http_req *r);

/* Replies (each ends the response; the route then calls http_req_done). */
void http_reply_json(http_req *r, int status, json_t *obj); /* steals obj */
void http_reply_text(http_req *r, int status, const char *content_type,
                     const char *body, size_t len);
/* {"error": {"code": code, "message": ...}} with the status. */
void http_error(http_req *r, int status, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
/* Maps an engram status to its HTTP error (404, 409, 400, 413, 503, 504). */
void http_error_engram(http_req *r, int status, const char *message);

/* Percent-decodes p[0..n) into out ('+' is a space when form); 0 when it
 * is malformed, too long for cap, or decodes to a NUL byte. */
int http_decode(const char *p, size_t n, int form, char *out, size_t cap);
/* The query-string parameter name, decoded into out: 1 if present, 0 if
 * absent, -1 if malformed. */
int http_query(const http_req *r, const char *name, char *out, size_t cap);
/* A request header's value (not NUL-terminated); NULL when absent. */
const char *http_header(const http_req *r, const char *name, size_t *len);

/* Checks that the caller's key may use ns; replies 403 (or 400 for an
 * invalid namespace) and returns 0 when it may not. */
int http_allow_ns(http_req *r, const char *ns);

/* JSON body helpers: each replies 400 naming the field and returns 0 when
 * the field has the wrong type (or is missing and required). */
int http_body_string(http_req *r, const char *field, int required,
                     const char **out);
int http_body_number(http_req *r, const char *field, double min, double max,
                     int required, double *out);
int http_body_int(http_req *r, const char *field, long long min,
                  long long max, int required, long long *out);

/* Path and query parameters (query_params.c): each replies 400 naming the
 * parameter and returns 0 when it is wrong. */
/* The path capture params[i] as a memory id. */
int http_path_id(http_req *r, int i);
/* ?name= as text (checked UTF-8): 1 present, 0 absent (or replied when
 * required), -1 replied 400. */
int http_query_text(http_req *r, const char *name, int required, char *out,
                    size_t cap);
/* ?ns=, required, and allowed for the caller's key (else 400 or 403). */
int http_query_ns(http_req *r, char *ns, size_t cap);
/* ?name=N with N a decimal integer in [min, max]; def when absent. */
int http_query_int(http_req *r, const char *name, long long min,
                   long long max, long long def, long long *out);
/* ?name=X with X a number in [0, 1]; def when absent. */
int http_query_unit(http_req *r, const char *name, double def, double *out);
/* ?type=T[,T...] as a bit set of types; 0 (all) when absent. */
int http_query_types(http_req *r, unsigned *types);

/* A memory as the native API shows it (json_memory.c); with_depth: a
 * traversal's item. A new reference, or NULL out of memory. */
json_t *http_memory_json(const engram_node *n, int with_depth);

/* Streaming responses (NDJSON). Start once; write lines while
 * http_stream_writable(); when a write is accepted the route waits for
 * on_writable before writing more (backpressure from the socket). */
typedef struct http_stream_out {
  h2o_generator_t gen; /* first: h2o calls back with a pointer to it */
  http_req *r;
  int writable;        /* h2o is ready for the next http_stream_write */
  int finished;
  void (*on_writable)(http_req *r);
  char *pending;       /* bytes handed to h2o, freed when it proceeds */
} http_stream_out;

void http_stream_start(http_req *r, http_stream_out *out, int status,
                       const char *content_type,
                       void (*on_writable)(http_req *r));
/* Hands data to h2o (copied); final: the response ends with it. */
void http_stream_write(http_stream_out *out, const char *data, size_t len,
                       int final);

/* ---------------------------------------------------------------- metrics */

http_metrics *http_metrics_new(void);
void http_metrics_free(http_metrics *m);
void http_metrics_request(http_server *srv, const char *route, int status,
                          double ms);
void http_metrics_add(http_server *srv, const char *name, uint64_t n);
/* The Prometheus text exposition; the caller frees it. */
char *http_metrics_text(http_server *srv, size_t *len);

/* ------------------------------------------------------------------- keys */

typedef struct http_key http_key;
typedef struct http_keys http_keys;
/* Parses a keys file; on error returns NULL with a sentence in err. */
http_keys *http_keys_load(const char *path, char *err, size_t errlen);
void http_keys_free(http_keys *keys);
/* The key matching token (constant time in the token), or NULL. */
const http_key *http_keys_find(const http_keys *keys, const char *token,
                               size_t len);
int http_key_allows(const http_key *key, const char *ns);
/* A label for logs: "key#3" — never the key itself. */
const char *http_key_label(const http_key *key);

/* -------------------------------------------------------------- the server */

/* The server's state (server.c); routes use it only through the helpers
 * above, the core files directly. */
struct engram_server {
  engram *eg;
  uv_loop_t *loop;
  engram_server_options opts;
  char *listen_copy;
  http_keys *keys;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  uv_tcp_t listener;
  int port;
  uint64_t inflight;     /* requests h2o has not finished with */
  uint64_t connections;  /* open client connections */
  struct http_conn *conns;
  uint64_t next_id;
  uint32_t id_salt;
  int stopping;
  uv_timer_t finish_timer; /* disposes of h2o's context after a stop */
  uv_timer_t grace_timer;  /* ends a stop that slow clients hold up */
  int timers_closed;
  engram_server_stop_cb stop_cb;
  void *stop_data;
  http_metrics *metrics;
};

/* Called by request.c when a request is finished with (server.c). */
void http_server_request_ended(http_server *srv);
/* Writes the access log line for r (request.c). */
void http_access_log(http_req *r);

#endif
