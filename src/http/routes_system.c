/*
 * routes_system.c — /healthz (the store answers) and /metrics.
 */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

/* Health: a real round trip to the store (a list of at most one item), so
 * a server whose store is gone says so. One item answers the question: the
 * stream is cancelled when it arrives, so the reply never waits for the end
 * of a namespace "healthz" that holds memories. */
typedef struct health {
  http_req *r;
  int delivered;
} health;

static void health_item(engram_stream *s, const engram_node *n, void *data) {
  (void)n;
  ((health *)data)->delivered = 1;
  engram_stream_cancel(s); /* done follows with ENGRAM_ECANCELED */
}

static void health_done(engram_stream *s, int status, void *data) {
  health *h = data;
  (void)s;
  if (!http_req_gone(h->r)) {
    if (status == 0 || (status == ENGRAM_ECANCELED && h->delivered))
      http_reply_json(h->r, 200, json_pack("{s:s}", "status", "ok"));
    else
      http_error(h->r, 503, "unavailable", "the store does not answer: %s",
                 engram_strerror(status));
  }
  http_req_done(h->r);
  free(h);
}

static void healthz(http_req *r) {
  health *h = calloc(1, sizeof *h);
  engram_stream *s;
  engram_query q = {.ns = "healthz"};
  engram_stream_cbs cbs = {health_item, NULL, health_done, h};
  int rc = h ? engram_list(r->eg, &q, &cbs, &s) : ENGRAM_ENOMEM;
  if (rc != 0) {
    free(h);
    http_error(r, 503, "unavailable", "the store does not answer: %s",
               engram_strerror(rc));
    http_req_done(r);
    return;
  }
  h->r = r;
  engram_stream_set_deadline(s, 2000);
  engram_stream_request(s, 1);
}

static void metrics(http_req *r) {
  size_t len;
  char *text = http_metrics_text(r->srv, &len);
  if (!text)
    http_error(r, 503, "unavailable", "out of memory");
  else
    http_reply_text(r, 200, "text/plain; version=0.0.4", text, len);
  free(text);
  http_req_done(r);
}

const http_route http_routes_system[] = {
    {"GET", "/healthz", healthz, "healthz"},
    {"GET", "/metrics", metrics, "metrics"},
    {NULL, NULL, NULL, NULL},
};
