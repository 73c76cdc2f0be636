/*
 * embed_http.c — the HTTP embedder: search_embedder over an
 * OpenAI-compatible /v1/embeddings server (embed_http.h has the contract).
 *
 * A call (a `job`, one per search_embed_req) is cut into `part`s of at most
 * `batch` texts, each with its JSON body built up front (so that a text
 * that is not UTF-8 fails search_embed() itself, and the caller's texts
 * may go when it returns). A part is in at most one of the embedder's
 * lists, named by its state:
 *
 *   QUEUED   waiting for a slot (FIFO)
 *   RUNNING  its transfer is in curl_uv
 *   WAITING  backing off before a retry, due at `due` (loop time)
 *   IDLE     in no list: answered, or its job is finished
 *
 * RUNNING and WAITING parts hold the slots counted by in_flight (at most
 * `concurrency`): a part backing off keeps its slot, so a server that
 * answered 429 or 5xx does not get more requests meanwhile. One retry
 * timer is armed for the earliest WAITING part. A job finishes
 * once: with 0 when its last part is answered, or with the first error
 * (its other parts are stopped at once: transfers removed from curl,
 * queued and waiting parts dropped), or ECANCELED. Finished jobs go to a
 * ready queue that a zero timer delivers from the loop, so a callback never
 * runs inside search_embed(), search_embed_cancel() or a close, and the
 * vectors passed to it stay valid until it returns.
 *
 * Closing finishes every job with ECANCELED; when the last has been
 * delivered, the curl driver and both timers are closed, and the last of
 * their close callbacks frees the embedder and calls the owner back.
 */
#include "search/embed_http.h"

#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/buf.h"
#include "core/core.h"
#include "search/curl_uv.h"
#include "search/vector.h"

#define MSG_LEN 512
#define SERVER_MSG_MAX 200 /* bytes of a server's error message quoted */

enum { P_IDLE, P_QUEUED, P_RUNNING, P_WAITING };

typedef struct http_embedder http_embedder;
typedef struct job job;
typedef struct part part;

struct part {
  job *job;
  size_t first, count; /* texts [first, first + count) of the job */
  char *body;          /* the request's JSON */
  size_t body_len;
  CURL *easy; /* made on the first attempt, reused by retries */
  buf resp;
  int resp_too_big;
  unsigned attempts; /* made so far */
  uint64_t due;      /* WAITING: loop time of the retry */
  int state;
  part *prev, *next; /* in the list of its state */
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct part_list {
  part *head, *tail;
} part_list;

struct job {
  http_embedder *e;
  search_embed_req *req;
  size_t n;
  part *parts;
  size_t n_parts, parts_left;
  float *vectors; /* n * dim, allocated with the first answer */
  int finished;
  int status;
  char msg[MSG_LEN];
  job *prev, *next; /* the embedder's undelivered jobs */
  job *ready_next;
};

struct http_embedder {
  search_embedder base;
  rt *rt;
  curl_uv *cu;
  char *url, *model, *name;
  struct curl_slist *headers; /* shared by every transfer */
  search_http_options opt;    /* the numbers; strings are the copies above */
  part_list queue, waiting, running;
  unsigned in_flight; /* slots held: RUNNING and WAITING parts */
  uv_timer_t retry_timer, deliver_timer;
  job *jobs;
  job *ready_head, *ready_tail;
  uint64_t rng;
  int close_begun;
  int handles_open; /* after close_begun: curl driver and timers */
  void (*close_cb)(void *data);
  void *close_data;
};

/* ------------------------------------------------------------ part lists */

static void list_push_back(part_list *l, part *p) {
  p->next = NULL;
  p->prev = l->tail;
  if (l->tail)
    l->tail->next = p;
  else
    l->head = p;
  l->tail = p;
}

static void list_remove(part_list *l, part *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    l->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    l->tail = p->prev;
  p->prev = p->next = NULL;
}

/* ------------------------------------------------------------ finishing */

static void on_deliver(uv_timer_t *t);
static void maybe_close(http_embedder *e);

/* Takes p out of whatever it is in; a running transfer is stopped. */
static void part_detach(part *p) {
  http_embedder *e = p->job->e;
  switch (p->state) {
  case P_QUEUED:
    list_remove(&e->queue, p);
    break;
  case P_WAITING:
    list_remove(&e->waiting, p); /* the retry timer may fire for nothing */
    e->in_flight--;
    break;
  case P_RUNNING:
    curl_uv_remove(e->cu, p->easy);
    list_remove(&e->running, p);
    e->in_flight--;
    break;
  default:
    break;
  }
  p->state = P_IDLE;
}

static void part_release(part *p) {
  free(p->body);
  p->body = NULL;
  buf_free(&p->resp);
  if (p->easy)
    curl_easy_cleanup(p->easy);
  p->easy = NULL;
}

static void job_free(job *j) {
  for (size_t i = 0; i < j->n_parts; i++)
    part_release(&j->parts[i]);
  free(j->parts);
  free(j->vectors);
  free(j);
}

/* Ends j once: the first status wins. Slots freed here are not refilled:
 * the caller pumps the queue afterwards. */
static void job_finish(job *j, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_finish(job *j, int status, const char *fmt, ...) {
  if (j->finished)
    return;
  http_embedder *e = j->e;
  j->finished = 1;
  j->status = status;
  if (fmt) {
    /* The message quotes the server: keep it valid UTF-8 whatever it sent,
     * cut on a character boundary. */
    char full[2 * MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(full, sizeof full, fmt, ap);
    va_end(ap);
    size_t len = strlen(full);
    if (!core_utf8_valid(full, len))
      for (size_t i = 0; i < len; i++)
        if ((unsigned char)full[i] >= 0x80)
          full[i] = '?';
    len = core_utf8_cut(full, len, sizeof j->msg - 1);
    memcpy(j->msg, full, len);
    j->msg[len] = '\0';
  }
  for (size_t i = 0; i < j->n_parts; i++)
    part_detach(&j->parts[i]);
  j->ready_next = NULL;
  if (e->ready_tail)
    e->ready_tail->ready_next = j;
  else
    e->ready_head = j;
  e->ready_tail = j;
  uv_timer_start(&e->deliver_timer, on_deliver, 0, 0);
}

static void on_deliver(uv_timer_t *t) {
  http_embedder *e = t->data;
  /* Only what is ready now: a job that a callback finishes (by cancelling
   * it) is delivered on the next turn of the loop. */
  job *j = e->ready_head;
  e->ready_head = e->ready_tail = NULL;
  while (j) {
    job *next = j->ready_next;
    if (j->prev)
      j->prev->next = j->next;
    else
      e->jobs = j->next;
    if (j->next)
      j->next->prev = j->prev;
    search_embed_finish(j->req, j->status, j->msg, j->vectors);
    job_free(j);
    j = next;
  }
  maybe_close(e);
}

/* ------------------------------------------------------------ responses */

/* The server's own words about an error: "error.message", "error",
 * "message" or "detail" of a JSON body, else the start of the body as
 * text, control characters as spaces (job_finish makes the whole
 * message valid UTF-8). */
static void server_message(const buf *body, char *out, size_t out_len) {
  const char *text = NULL;
  size_t len = 0;
  json_t *root = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
  if (json_is_object(root)) {
    json_t *err = json_object_get(root, "error");
    json_t *m = NULL;
    if (json_is_object(err))
      m = json_object_get(err, "message");
    else if (json_is_string(err))
      m = err;
    if (!json_is_string(m))
      m = json_object_get(root, "message");
    if (!json_is_string(m))
      m = json_object_get(root, "detail");
    if (json_is_string(m)) {
      text = json_string_value(m);
      len = json_string_length(m);
    }
  }
  if (!text) {
    text = body->data ? body->data : "";
    len = body->len;
  }
  if (len == 0) {
    snprintf(out, out_len, "(empty body)");
  } else {
    size_t keep = len > SERVER_MSG_MAX ? SERVER_MSG_MAX : len;
    if (core_utf8_valid(text, len))
      keep = core_utf8_cut(text, len, keep);
    if (keep > out_len - 1)
      keep = out_len - 1;
    for (size_t i = 0; i < keep; i++) {
      unsigned char c = (unsigned char)text[i];
      out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[keep] = '\0';
    if (keep < len && keep + 4 < out_len)
      strcat(out, "...");
  }
  json_decref(root);
}

/* Writes v (count finite doubles) into out as a unit vector; a zero vector
 * stays zero. Scaled by the largest magnitude first, so that no square
 * overflows whatever the server sent. */
static void store_normalized(const json_t *v, size_t count, float *out) {
  double max = 0;
  for (size_t k = 0; k < count; k++) {
    double x = fabs(json_number_value(json_array_get(v, k)));
    if (x > max)
      max = x;
  }
  if (max == 0) {
    memset(out, 0, count * sizeof *out);
    return;
  }
  double sum = 0;
  for (size_t k = 0; k < count; k++) {
    double x = json_number_value(json_array_get(v, k)) / max;
    sum += x * x;
  }
  double norm = sqrt(sum);
  for (size_t k = 0; k < count; k++)
    out[k] = (float)(json_number_value(json_array_get(v, k)) / max / norm);
}

/* Checks the whole answer before taking any of it: 0, or an error with
 * the reason in why. Learns the dimension from the first good answer. */
static int take_embeddings(part *p, char *why, size_t why_len) {
  job *j = p->job;
  http_embedder *e = j->e;
  json_error_t jerr;
  json_t *root =
      json_loadb(p->resp.data ? p->resp.data : "", p->resp.len, 0, &jerr);
  if (!root) {
    snprintf(why, why_len, "the response is not valid JSON (%s, at byte %d)",
             jerr.text, jerr.position);
    return ENGRAM_EIO;
  }
  int rc = ENGRAM_EIO;
  json_t **rows = NULL;
  json_t *data = json_object_get(root, "data");
  if (!json_is_array(data)) {
    snprintf(why, why_len, "the response has no \"data\" array");
    goto out;
  }
  if (json_array_size(data) != p->count) {
    snprintf(why, why_len, "the response has %zu embeddings for %zu texts",
             json_array_size(data), p->count);
    goto out;
  }
  rows = calloc(p->count, sizeof *rows);
  if (!rows) {
    snprintf(why, why_len, "out of memory reading the response");
    rc = ENGRAM_ENOMEM;
    goto out;
  }
  size_t dim = e->base.dim;
  int indexed = -1; /* whether the items carry "index" (all or none) */
  for (size_t i = 0; i < p->count; i++) {
    json_t *item = json_array_get(data, i);
    if (!json_is_object(item)) {
      snprintf(why, why_len, "data[%zu] is not an object", i);
      goto out;
    }
    json_t *index = json_object_get(item, "index");
    if (indexed < 0)
      indexed = index != NULL;
    if (indexed != (index != NULL)) {
      snprintf(why, why_len, "data[%zu] %s an \"index\" and data[0] %s", i,
               index ? "has" : "lacks", indexed ? "has" : "lacks");
      goto out;
    }
    size_t at = i;
    if (index) {
      json_int_t x = json_is_integer(index) ? json_integer_value(index) : -1;
      if (x < 0 || (uint64_t)x >= p->count) {
        snprintf(why, why_len, "data[%zu].index is not an integer in 0..%zu", i,
                 p->count - 1);
        goto out;
      }
      at = (size_t)x;
      if (rows[at]) {
        snprintf(why, why_len, "index %zu appears twice in \"data\"", at);
        goto out;
      }
    }
    json_t *v = json_object_get(item, "embedding");
    if (!json_is_array(v)) {
      snprintf(why, why_len, "data[%zu].embedding is not an array of numbers%s",
               i, json_is_string(v) ? " (base64 is not supported)" : "");
      goto out;
    }
    size_t len = json_array_size(v);
    if (len == 0 || len > VECTOR_MAX_DIM) {
      snprintf(why, why_len, "data[%zu].embedding has %zu values (1..%u)", i,
               len, VECTOR_MAX_DIM);
      goto out;
    }
    if (dim == 0) {
      dim = len;
    } else if (len != dim) {
      snprintf(why, why_len,
               "wrong dimension: data[%zu].embedding has %zu values, "
               "expected %zu",
               i, len, dim);
      goto out;
    }
    for (size_t k = 0; k < len; k++) {
      json_t *x = json_array_get(v, k);
      if (!json_is_number(x) || !isfinite(json_number_value(x))) {
        snprintf(why, why_len, "data[%zu].embedding[%zu] is not a number", i,
                 k);
        goto out;
      }
    }
    rows[at] = v;
  }
  if (!j->vectors) {
    if (j->n > SIZE_MAX / sizeof(float) / dim ||
        !(j->vectors = malloc(j->n * dim * sizeof(float)))) {
      snprintf(why, why_len, "out of memory for %zu vectors of %zu floats",
               j->n, dim);
      rc = ENGRAM_ENOMEM;
      goto out;
    }
  }
  e->base.dim = dim; /* fixed from now on (it was 0 or equal) */
  for (size_t at = 0; at < p->count; at++)
    store_normalized(rows[at], dim, j->vectors + (p->first + at) * dim);
  rc = 0;
out:
  free(rows);
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------ transfers */

static void pump(http_embedder *e);
static int part_start(http_embedder *e, part *p);

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *data) {
  part *p = data;
  size_t n = size * nmemb;
  if (n > SEARCH_HTTP_MAX_RESPONSE_BYTES - p->resp.len) {
    p->resp_too_big = 1;
    return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
  }
  buf_add(&p->resp, ptr, n);
  return p->resp.oom ? 0 : n;
}

static uint64_t next_random(http_embedder *e) {
  /* xorshift64*: jitter only, no need for more. */
  e->rng ^= e->rng >> 12;
  e->rng ^= e->rng << 25;
  e->rng ^= e->rng >> 27;
  return e->rng * 0x2545F4914F6CDD1Dull;
}

static uint64_t backoff_delay(http_embedder *e, unsigned attempts,
                              uint64_t retry_after_ms) {
  uint64_t cap = e->opt.backoff_max_ms;
  if (retry_after_ms > 0)
    return retry_after_ms < cap ? retry_after_ms : cap;
  uint64_t d = e->opt.backoff_ms;
  for (unsigned i = 1; i < attempts && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  return d / 2 + next_random(e) % (d - d / 2 + 1);
}

static void on_retry(uv_timer_t *t);

static void arm_retry_timer(http_embedder *e) {
  if (!e->waiting.head) {
    uv_timer_stop(&e->retry_timer);
    return;
  }
  uint64_t first = UINT64_MAX;
  for (part *p = e->waiting.head; p; p = p->next)
    if (p->due < first)
      first = p->due;
  uint64_t now = uv_now(e->rt->loop);
  uv_timer_start(&e->retry_timer, on_retry, first > now ? first - now : 0, 0);
}

static void on_retry(uv_timer_t *t) {
  http_embedder *e = t->data;
  uint64_t now = uv_now(e->rt->loop);
  /* From the head each time: a failed start finishes its job, which takes
   * that job's other parts out of the list. The list is short (at most
   * `concurrency` parts). */
  for (;;) {
    part *p = e->waiting.head;
    while (p && p->due > now)
      p = p->next;
    if (!p)
      break;
    list_remove(&e->waiting, p);
    p->state = P_IDLE;
    int rc = part_start(e, p); /* in the slot it kept */
    if (rc != 0) {
      e->in_flight--;
      job_finish(p->job, rc, "embedding request to %s could not start: %s",
                 e->url, engram_strerror(rc));
    }
  }
  arm_retry_timer(e);
  pump(e);
}

static int transient(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return 1;
  default:
    return 0;
  }
}

static void on_part_done(CURL *easy, CURLcode result, void *data) {
  part *p = data;
  job *j = p->job;
  http_embedder *e = j->e;
  list_remove(&e->running, p);
  p->state = P_IDLE; /* still holding its slot */
  p->attempts++;

  char why[MSG_LEN] = "";
  int status = 0, retry = 0;
  uint64_t retry_after_ms = 0;
  if (result != CURLE_OK) {
    status = ENGRAM_EIO;
    if (p->resp_too_big) {
      snprintf(why, sizeof why, "the response is larger than %u bytes",
               SEARCH_HTTP_MAX_RESPONSE_BYTES);
    } else if (p->resp.oom) {
      status = ENGRAM_ENOMEM;
      snprintf(why, sizeof why, "out of memory reading the response");
    } else if (result == CURLE_OPERATION_TIMEDOUT) {
      status = ENGRAM_ETIMEDOUT;
      retry = 1;
      snprintf(why, sizeof why, "no response within %llu ms",
               (unsigned long long)e->opt.timeout_ms);
    } else {
      retry = transient(result);
      snprintf(why, sizeof why, "%s",
               p->errbuf[0] ? p->errbuf : curl_easy_strerror(result));
    }
  } else {
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
      status = take_embeddings(p, why, sizeof why);
    } else {
      char said[SERVER_MSG_MAX + 8];
      server_message(&p->resp, said, sizeof said);
      snprintf(why, sizeof why, "HTTP %ld: %s", code, said);
      status = ENGRAM_EIO;
      retry = code == 429 || code >= 500;
      curl_off_t after = 0;
      if (retry &&
          curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK &&
          after > 0)
        retry_after_ms = (uint64_t)after * 1000u;
    }
  }

  if (status == 0) {
    e->in_flight--;
    part_release(p);
    if (--j->parts_left == 0)
      job_finish(j, 0, NULL);
  } else if (retry && p->attempts <= e->opt.retries) {
    uint64_t delay = backoff_delay(e, p->attempts, retry_after_ms);
    rt_log(e->rt, ENGRAM_LOG_WARN,
           "embedding request to %s failed: %s; retry %u of %u in %llu ms",
           e->url, why, p->attempts, e->opt.retries, (unsigned long long)delay);
    buf_free(&p->resp);
    p->due = uv_now(e->rt->loop) + delay;
    p->state = P_WAITING;
    list_push_back(&e->waiting, p);
    arm_retry_timer(e);
  } else if (p->attempts > 1) {
    e->in_flight--;
    job_finish(j, status,
               "embedding request to %s failed: %s (gave up after %u "
               "attempts)",
               e->url, why, p->attempts);
  } else {
    e->in_flight--;
    job_finish(j, status, "embedding request to %s failed: %s", e->url, why);
  }
  pump(e);
}

static int part_setup(http_embedder *e, part *p) {
  p->easy = curl_easy_init();
  if (!p->easy)
    return ENGRAM_ENOMEM;
  CURL *c = p->easy;
  int bad = 0;
  bad |= curl_easy_setopt(c, CURLOPT_URL, e->url) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->body) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t)p->body_len) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, p) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, p->errbuf) != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->opt.timeout_ms) !=
         CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
  bad |= curl_easy_setopt(c, CURLOPT_USERAGENT, "engram/" ENGRAM_VERSION) !=
         CURLE_OK;
  return bad ? ENGRAM_EINVAL : 0;
}

static int part_start(http_embedder *e, part *p) {
  if (!p->easy) {
    int rc = part_setup(e, p);
    if (rc != 0)
      return rc;
  }
  buf_free(&p->resp);
  buf_init(&p->resp);
  p->resp_too_big = 0;
  p->errbuf[0] = '\0';
  int rc = curl_uv_add(e->cu, p->easy, on_part_done, p);
  if (rc != 0)
    return rc;
  p->state = P_RUNNING;
  list_push_back(&e->running, p);
  return 0;
}

/* Starts queued parts while a slot is free. */
static void pump(http_embedder *e) {
  while (e->in_flight < e->opt.concurrency && e->queue.head) {
    part *p = e->queue.head;
    list_remove(&e->queue, p);
    p->state = P_IDLE;
    e->in_flight++;
    int rc = part_start(e, p);
    if (rc != 0) {
      e->in_flight--;
      job_finish(p->job, rc, "embedding request to %s could not start: %s",
                 e->url, engram_strerror(rc));
    }
  }
}

/* ------------------------------------------------------------ requests */

static char *build_body(const http_embedder *e, const char *const *texts,
                        const size_t *lens, size_t count, size_t *len) {
  json_t *input = json_array();
  json_t *root = json_object();
  int bad = !input || !root;
  for (size_t i = 0; i < count && !bad; i++)
    bad =
        json_array_append_new(
            input, json_stringn_nocheck(lens[i] ? texts[i] : "", lens[i])) != 0;
  char *text = NULL;
  if (!bad && json_object_set_new(root, "model", json_string(e->model)) == 0 &&
      json_object_set(root, "input", input) == 0)
    text = json_dumps(root, JSON_COMPACT);
  json_decref(input);
  json_decref(root);
  if (text)
    *len = strlen(text);
  return text;
}

static int http_embed(search_embedder *base, search_embed_req *req,
                      const char *const *texts, const size_t *lens) {
  http_embedder *e = (http_embedder *)base;
  size_t n = req->n;
  for (size_t i = 0; i < n; i++) {
    if (!texts[i] && lens[i] > 0)
      return ENGRAM_EINVAL;
    if (lens[i] > 0 && !core_utf8_valid(texts[i], lens[i]))
      return ENGRAM_EUTF8;
  }
  size_t batch = e->opt.batch;
  job *j = calloc(1, sizeof *j);
  size_t n_parts = n / batch + (n % batch != 0);
  part *parts = j ? calloc(n_parts, sizeof *parts) : NULL;
  if (!parts) {
    free(j);
    return ENGRAM_ENOMEM;
  }
  j->e = e;
  j->req = req;
  j->n = n;
  j->parts = parts;
  j->n_parts = j->parts_left = n_parts;
  for (size_t k = 0; k < n_parts; k++) {
    part *p = &parts[k];
    p->job = j;
    p->first = k * batch;
    p->count = n - p->first < batch ? n - p->first : batch;
    buf_init(&p->resp);
    p->body = build_body(e, texts + p->first, lens + p->first, p->count,
                         &p->body_len);
    if (!p->body) {
      job_free(j);
      return ENGRAM_ENOMEM;
    }
  }
  for (size_t k = 0; k < n_parts; k++) {
    parts[k].state = P_QUEUED;
    list_push_back(&e->queue, &parts[k]);
  }
  j->next = e->jobs;
  if (e->jobs)
    e->jobs->prev = j;
  e->jobs = j;
  req->impl = j;
  pump(e);
  return 0;
}

static void http_cancel(search_embedder *base, search_embed_req *req) {
  http_embedder *e = (http_embedder *)base;
  job *j = req->impl;
  if (!j || j->finished)
    return;
  job_finish(j, ENGRAM_ECANCELED, "the embedding was cancelled");
  pump(e);
}

/* ------------------------------------------------------------ lifetime */

static void embedder_free(http_embedder *e) {
  curl_slist_free_all(e->headers);
  free(e->url);
  free(e->model);
  free(e->name);
  free(e);
}

static void handle_gone(http_embedder *e) {
  if (--e->handles_open > 0)
    return;
  void (*cb)(void *) = e->close_cb;
  void *data = e->close_data;
  embedder_free(e);
  if (cb)
    cb(data);
}

static void timer_closed(uv_handle_t *h) {
  handle_gone(h->data);
}
static void driver_closed(void *data) {
  handle_gone(data);
}

static void maybe_close(http_embedder *e) {
  if (!e->base.closing || e->close_begun || e->jobs)
    return;
  e->close_begun = 1;
  e->handles_open = 3;
  curl_uv_close(e->cu, driver_closed, e);
  uv_close((uv_handle_t *)&e->retry_timer, timer_closed);
  uv_close((uv_handle_t *)&e->deliver_timer, timer_closed);
}

static void http_close(search_embedder *base, void (*cb)(void *data),
                       void *data) {
  http_embedder *e = (http_embedder *)base;
  e->close_cb = cb;
  e->close_data = data;
  for (job *j = e->jobs; j; j = j->next)
    job_finish(j, ENGRAM_ECANCELED, "the embedder was closed");
  maybe_close(e);
}

static const search_embedder_vtable http_vtable = {
    .embed = http_embed,
    .cancel = http_cancel,
    .close = http_close,
};

void search_http_options_default(search_http_options *o) {
  memset(o, 0, sizeof *o);
  o->batch = SEARCH_HTTP_DEFAULT_BATCH;
  o->concurrency = SEARCH_HTTP_DEFAULT_CONCURRENCY;
  o->timeout_ms = SEARCH_HTTP_DEFAULT_TIMEOUT_MS;
  o->retries = SEARCH_HTTP_DEFAULT_RETRIES;
  o->backoff_ms = SEARCH_HTTP_DEFAULT_BACKOFF_MS;
  o->backoff_max_ms = SEARCH_HTTP_DEFAULT_BACKOFF_MAX_MS;
}

static int has_control(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 1;
  return 0;
}

/* base_url + "/v1/embeddings", or + "/embeddings" when it ends in "/v1". */
static char *embeddings_url(const char *base) {
  size_t len = strlen(base);
  while (len > 0 && base[len - 1] == '/')
    len--;
  const char *tail = "/v1/embeddings";
  if (len >= 3 && strncasecmp(base + len - 3, "/v1", 3) == 0)
    tail = "/embeddings";
  size_t size = len + strlen(tail) + 1;
  char *url = malloc(size);
  if (url)
    snprintf(url, size, "%.*s%s", (int)len, base, tail);
  return url;
}

static int invalid(char *msg, size_t msg_len, const char *why) {
  if (msg && msg_len)
    snprintf(msg, msg_len, "%s", why);
  return ENGRAM_EINVAL;
}

int search_http_embedder_new(rt *r, const search_http_options *o,
                             search_embedder **out, char *msg, size_t msg_len) {
  if (!r || !o || !out)
    return invalid(msg, msg_len, "no options given");
  const char *url = o->base_url;
  if (!url || (strncasecmp(url, "http://", 7) != 0 &&
               strncasecmp(url, "https://", 8) != 0))
    return invalid(msg, msg_len,
                   "the embedding server's URL must start with http:// or "
                   "https://");
  if (has_control(url))
    return invalid(msg, msg_len,
                   "the embedding server's URL has a control character");
  if (!o->model || !*o->model || has_control(o->model))
    return invalid(msg, msg_len,
                   "an embedding model name is required (no control "
                   "characters)");
  if (o->api_key && has_control(o->api_key))
    return invalid(msg, msg_len, "the API key has a control character");
  if (o->dim > VECTOR_MAX_DIM)
    return invalid(msg, msg_len, "the embedding dimension is over 65536");

  http_embedder *e = calloc(1, sizeof *e);
  if (!e)
    return ENGRAM_ENOMEM;
  e->rt = r;
  e->opt = *o;
  e->opt.base_url = e->opt.model = e->opt.api_key = NULL;
  if (!e->opt.batch)
    e->opt.batch = SEARCH_HTTP_DEFAULT_BATCH;
  if (!e->opt.concurrency)
    e->opt.concurrency = SEARCH_HTTP_DEFAULT_CONCURRENCY;
  if (!e->opt.timeout_ms)
    e->opt.timeout_ms = SEARCH_HTTP_DEFAULT_TIMEOUT_MS;
  if (e->opt.timeout_ms > LONG_MAX)
    e->opt.timeout_ms = LONG_MAX;
  if (!e->opt.backoff_ms)
    e->opt.backoff_ms = SEARCH_HTTP_DEFAULT_BACKOFF_MS;
  if (!e->opt.backoff_max_ms)
    e->opt.backoff_max_ms = SEARCH_HTTP_DEFAULT_BACKOFF_MAX_MS;
  e->url = embeddings_url(url);
  e->model = strdup(o->model);
  size_t name_len = strlen(o->model) + 6;
  e->name = malloc(name_len);
  if (e->name)
    snprintf(e->name, name_len, "http:%s", o->model);
  struct curl_slist *h = NULL, *next;
  int oom = !e->url || !e->model || !e->name;
  const char *fixed[] = {"Content-Type: application/json",
                         "Accept: application/json", "Expect:"};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed && !oom; i++) {
    next = curl_slist_append(h, fixed[i]);
    oom = !next;
    h = next ? next : h;
  }
  if (!oom && o->api_key && *o->api_key) {
    size_t len = strlen(o->api_key) + 32;
    char *line = malloc(len);
    next = NULL;
    if (line) {
      snprintf(line, len, "Authorization: Bearer %s", o->api_key);
      next = curl_slist_append(h, line);
      free(line);
    }
    oom = !next;
    h = next ? next : h;
  }
  e->headers = h;
  if (!oom)
    e->cu = curl_uv_new(r->loop);
  if (oom || !e->cu) {
    embedder_free(e);
    return ENGRAM_ENOMEM;
  }
  uv_timer_init(r->loop, &e->retry_timer);
  uv_timer_init(r->loop, &e->deliver_timer);
  e->retry_timer.data = e->deliver_timer.data = e;
  e->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)e;
  if (!e->rng)
    e->rng = 0x9e3779b97f4a7c15ull;
  e->base.vt = &http_vtable;
  e->base.name = e->name;
  e->base.dim = o->dim;
  *out = &e->base;
  return 0;
}
