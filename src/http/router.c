/*
 * router.c — from an h2o request to a route: admission (the in-flight
 * limit), matching method and path, authentication, the JSON body, then the
 * route's handler. Everything a route can rely on is checked here once.
 */
#include <string.h>

#include "http/http.h"

static const http_route *const tables[] = {
    http_routes_system, http_routes_memories, http_routes_relationships,
    http_routes_search, http_routes_mem0};
#define N_TABLES (sizeof tables / sizeof tables[0])

/* Matches path (no query) against pattern; fills r->params. 1 on match.
 * forgive: a trailing slash the pattern lacks is accepted too. */
static int match(const char *pattern, const char *path, size_t len,
                 http_req *r, int capture, int forgive) {
  const char *p = pattern;
  size_t i = 0;
  int np = 0;
  while (*p && i <= len) {
    if (*p == ':') {
      while (*p && *p != '/')
        p++;
      size_t start = i;
      while (i < len && path[i] != '/')
        i++;
      if (i == start || np >= HTTP_MAX_PARAMS)
        return 0;
      if (capture && !http_decode(path + start, i - start, 0, r->params[np],
                                  HTTP_PARAM_MAX))
        return 0;
      np++;
      continue;
    }
    if (i >= len || *p != path[i])
      return 0;
    p++;
    i++;
  }
  /* A trailing slash is forgiven (mem0's client adds them). */
  if (forgive && *p == '\0' && i == len - 1 && path[i] == '/')
    return 1;
  return *p == '\0' && i == len;
}

/* Exact matches first, then with a forgiven trailing slash: a route whose
 * pattern ends in '/' (mem0's "/v1/memories/:id/") wins over one that
 * only forgives the slash (the native "/v1/memories/:id"). */
static const http_route *find_route(http_req *r, const char *path,
                                    size_t len, int *path_known) {
  *path_known = 0;
  for (int forgive = 0; forgive <= 1; forgive++)
    for (size_t t = 0; t < N_TABLES; t++)
      for (const http_route *rt = tables[t]; rt->method; rt++) {
        if (!match(rt->pattern, path, len, r, 0, forgive))
          continue;
        *path_known = 1;
        if (strcmp(rt->method, r->method) == 0) {
          match(rt->pattern, path, len, r, 1, forgive);
          return rt;
        }
      }
  return NULL;
}

static int authenticate(http_req *r) {
  http_server *srv = r->srv;
  if (!srv->keys)
    return 1;
  size_t len;
  const char *h = http_header(r, "authorization", &len);
  const char *token = NULL;
  size_t tlen = 0;
  if (h) {
    if (len > 7 && strncasecmp(h, "Bearer ", 7) == 0)
      token = h + 7, tlen = len - 7;
    else if (len > 6 && strncasecmp(h, "Token ", 6) == 0)
      token = h + 6, tlen = len - 6;
  }
  if (!token) {
    http_error(r, 401, "unauthorized",
               "give an API key: Authorization: Bearer KEY (or Token KEY)");
    return 0;
  }
  r->key = http_keys_find(srv->keys, token, tlen);
  if (!r->key) {
    http_error(r, 401, "unauthorized", "the API key is not valid");
    return 0;
  }
  return 1;
}

static int parse_body(http_req *r) {
  h2o_iovec_t e = r->req->entity;
  if (!e.base || e.len == 0)
    return 1;
  json_error_t err;
  /* DECODE_ANY: a body that is valid JSON but not an object is told so
   * below, rather than as a syntax error. */
  json_t *v = json_loadb(e.base, e.len,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!v) {
    if (json_error_code(&err) == json_error_invalid_utf8)
      http_error(r, 400, "malformed_json",
                 "the body is not valid UTF-8 (line %d, column %d: %s)",
                 err.line, err.column, err.text);
    else
      http_error(r, 400, "malformed_json",
                 "the body is not valid JSON (line %d, column %d: %s)",
                 err.line, err.column, err.text);
    return 0;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    http_error(r, 400, "malformed_json", "the body must be a JSON object");
    return 0;
  }
  r->body = v;
  return 1;
}

int http_dispatch(h2o_handler_t *self, h2o_req_t *req) {
  http_server *srv;
  memcpy(&srv, self + 1, sizeof srv);
  http_req *r = http_req_new(srv, req);
  if (!r)
    return -1; /* h2o answers 404; nothing else can be done without memory */
  size_t ml = req->method.len < sizeof r->method - 1 ? req->method.len
                                                     : sizeof r->method - 1;
  memcpy(r->method, req->method.base, ml);
  size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
  size_t pl = plen < sizeof r->path - 1 ? plen : sizeof r->path - 1;
  memcpy(r->path, req->path.base, pl);

  if (srv->stopping) {
    http_error(r, 503, "unavailable", "the server is shutting down");
  } else if (srv->inflight > srv->opts.max_inflight) {
    http_error(r, 429, "too_many_requests",
               "%u requests are in flight; retry shortly",
               srv->opts.max_inflight);
  } else {
    int known;
    r->route = find_route(r, req->path.base, plen, &known);
    if (!r->route) {
      if (known)
        http_error(r, 405, "method_not_allowed",
                   "%s is not allowed on %s", r->method, r->path);
      else
        http_error(r, 404, "unknown_route", "no route %s %s", r->method,
                   r->path);
    } else if (authenticate(r) && parse_body(r)) {
      r->route->handle(r);
      return 0; /* the route releases r */
    }
  }
  http_req_done(r);
  return 0;
}
