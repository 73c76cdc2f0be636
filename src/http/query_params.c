/*
 * query_params.c — the path and query-string parameters of the native
 * routes, checked: a memory id in the path, and ?name= as text, a
 * namespace, a bounded integer, a number from 0 to 1, or a set of memory
 * types. Each replies 400 naming the parameter when it is wrong.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"

/* The path capture params[i] as a memory id; replies 400 when it is not. */
int http_path_id(http_req *r, int i) {
  if (engram_id_valid(r->params[i]))
    return 1;
  http_error(r, 400, "invalid",
             "'%s' in the path is not a memory id (expected a lower-case "
             "UUID like 0190a5e2-7b3c-7def-8123-456789abcdef)",
             r->params[i]);
  return 0;
}

/* A query parameter as text: 1 present, 0 absent (or replied when
 * required), -1 replied 400. */
int http_query_text(http_req *r, const char *name, int required, char *out,
                    size_t cap) {
  int rc = http_query(r, name, out, cap);
  if (rc < 0) {
    http_error(r, 400, "invalid",
               "query parameter '%s' is malformed (bad percent-encoding, a "
               "NUL byte, or longer than %zu bytes)",
               name, cap - 1);
    return -1;
  }
  if (rc == 0 && required) {
    http_error(r, 400, "invalid", "query parameter '%s' is required", name);
    return -1;
  }
  if (rc == 1 && !core_utf8_valid(out, strlen(out))) {
    http_error(r, 400, "invalid", "query parameter '%s' is not valid UTF-8",
               name);
    return -1;
  }
  return rc;
}

/* ?ns=, required, and allowed for the caller's key. */
int http_query_ns(http_req *r, char *ns, size_t cap) {
  if (http_query_text(r, "ns", 1, ns, cap) < 0)
    return 0;
  return http_allow_ns(r, ns);
}

/* ?name=N with N a decimal integer in [min, max]; def when absent. */
int http_query_int(http_req *r, const char *name, long long min, long long max,
                   long long def, long long *out) {
  char v[32];
  int rc = http_query_text(r, name, 0, v, sizeof v);
  if (rc < 0)
    return 0;
  if (rc == 0) {
    *out = def;
    return 1;
  }
  size_t n = strlen(v);
  int ok = n > 0 && n <= 18;
  for (size_t i = 0; ok && i < n; i++)
    ok = isdigit((unsigned char)v[i]);
  long long x = ok ? strtoll(v, NULL, 10) : 0;
  if (!ok || x < min || x > max) {
    http_error(r, 400, "invalid",
               "query parameter '%s' must be an integer from %lld to %lld",
               name, min, max);
    return 0;
  }
  *out = x;
  return 1;
}

/* ?name=X with X a number in [0, 1]; def when absent. */
int http_query_unit(http_req *r, const char *name, double def, double *out) {
  char v[64];
  int rc = http_query_text(r, name, 0, v, sizeof v);
  if (rc < 0)
    return 0;
  if (rc == 0) {
    *out = def;
    return 1;
  }
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!v[0] || *end || errno || !isfinite(x) || x < 0 || x > 1) {
    http_error(r, 400, "invalid",
               "query parameter '%s' must be a number from 0 to 1", name);
    return 0;
  }
  *out = x;
  return 1;
}

/* ?type=T[,T...] as a bit set of types; 0 (all) when absent. */
int http_query_types(http_req *r, unsigned *types) {
  char v[128];
  *types = 0;
  int rc = http_query_text(r, "type", 0, v, sizeof v);
  if (rc <= 0)
    return rc == 0;
  char *save = NULL;
  for (char *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    engram_type ty;
    if (engram_type_parse(t, &ty) != 0) {
      http_error(r, 400, "invalid",
                 "query parameter 'type' must be episodic, semantic, "
                 "procedural or working (or several, comma-separated)");
      return 0;
    }
    *types |= 1u << ty;
  }
  if (*types == 0) {
    http_error(r, 400, "invalid", "query parameter 'type' is empty");
    return 0;
  }
  return 1;
}
