/*
 * embed_http.h — the HTTP embedder: any OpenAI-compatible /v1/embeddings
 * server (llama.cpp server, Ollama, vLLM, TEI, hosted APIs) behind the
 * search_embedder interface of embed.h (internal to the library).
 *
 * A search_embed() call is split into requests of at most `batch` texts,
 * each a POST of {"model": M, "input": [texts...]}; at most `concurrency`
 * requests are in flight per embedder (one backing off before a retry
 * counts), the rest wait their turn on the loop. The transfers run through
 * libcurl's multi interface on the rt's loop (curl_uv.h): no thread waits for
 * the server.
 *
 * A request that fails with HTTP 429, HTTP 5xx, a connection failure or a
 * timeout is tried again up to `retries` times, after an exponential
 * backoff (backoff_ms, doubled each time, capped at backoff_max_ms, with
 * jitter: a delay d is drawn from [d/2, d]) or after the server's
 * Retry-After (capped at backoff_max_ms too). Any other failure ends the
 * call at once. On the first request that fails for good, the others of
 * the same call are stopped and the callback gets the error with a message
 * naming the URL and what was wrong: the HTTP status and the server's own
 * error message, invalid JSON, a wrong number of embeddings, a wrong
 * dimension. Embeddings are put in input order by their "index" (when the
 * server gives one; in array order otherwise).
 *
 * Vectors are L2-normalized before they are returned (a zero vector stays
 * zero), as embed.h requires: search scores them by dot product. The
 * dimension is the one configured, or, when dim is 0, the one of the first
 * response; from then on it is fixed (base.dim) and a response of another
 * dimension is an error. The name is "http:MODEL"; the dim is recorded
 * beside it.
 */
#ifndef ENGRAM_SEARCH_EMBED_HTTP_H
#define ENGRAM_SEARCH_EMBED_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "search/embed.h"

#define SEARCH_HTTP_DEFAULT_BATCH 32u
#define SEARCH_HTTP_DEFAULT_CONCURRENCY 4u
#define SEARCH_HTTP_DEFAULT_TIMEOUT_MS 30000u
#define SEARCH_HTTP_DEFAULT_RETRIES 3u
#define SEARCH_HTTP_DEFAULT_BACKOFF_MS 250u
#define SEARCH_HTTP_DEFAULT_BACKOFF_MAX_MS 30000u
/* A response body larger than this is an error (not retried). */
#define SEARCH_HTTP_MAX_RESPONSE_BYTES (64u << 20)

typedef struct search_http_options {
  /* The server's root, "http://host:port" (a path prefix is kept; a final
   * "/v1" is accepted, so OpenAI-style base URLs work as they are).
   * Required. */
  const char *base_url;
  const char *model;       /* the "model" field; required */
  const char *api_key;     /* sent as "Authorization: Bearer KEY"; NULL: none */
  size_t dim;              /* 0: learned from the first response */
  size_t batch;            /* texts per request (1..); 0: default */
  unsigned concurrency;    /* requests in flight (1..); 0: default */
  uint64_t timeout_ms;     /* per attempt, connecting included; 0: default */
  unsigned retries;        /* attempts after the first; 0: none */
  uint64_t backoff_ms;     /* delay before the first retry; 0: default */
  uint64_t backoff_max_ms; /* cap on any delay; 0: default */
} search_http_options;

/* The defaults above; base_url and model NULL, dim 0. */
void search_http_options_default(search_http_options *o);

/* An HTTP embedder on r's loop (the strings are copied). 0, ENGRAM_ENOMEM,
 * or ENGRAM_EINVAL with a message in msg[0..msg_len) saying which option is
 * wrong (msg may be NULL). Nothing is sent until the first search_embed().
 * Errors of search_embed() beyond embed.h's: ENGRAM_EUTF8 when a text is
 * not valid UTF-8. */
int search_http_embedder_new(rt *r, const search_http_options *o,
                             search_embedder **out, char *msg, size_t msg_len);

#endif
