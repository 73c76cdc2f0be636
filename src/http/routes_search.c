/*
 * routes_search.c — what an agent asks of its memory: ranked search (a JSON
 * answer, or NDJSON streamed as the memories are found), context injection
 * for a prompt, and memorizing a conversation turn.
 *
 *   POST /v1/search   {"ns","query",...}   -> {"results": [...], ...}
 *                     Accept: application/x-ndjson -> one line per memory,
 *                     then {"done": true, "status": ...}
 *   POST /v1/context  {"ns","message",...} -> {"text","ids",...}
 *   POST /v1/turns    {"ns","user","assistant"} -> 201 {"user_id",...}
 *
 * Search and context take "strategy" ("lexical", "hybrid" or "vector"; the
 * defaults are the library's: lexical for search, hybrid for context).
 *
 * Every route checks its whole body before it starts anything, so a
 * rejected request has no effect, and names the field that was wrong.
 *
 * The streamed search is where backpressure runs end to end (design.md,
 * rule 2): the engram stream is asked for STREAM_CHUNK memories at a time,
 * and for the next chunk only when h2o has taken the previous lines
 * (on_writable: h2o's proceed, which waits for the socket to accept the
 * bytes). A client that stops reading thus stops the query: its SQLite
 * cursor stays paused, holding a reader but no thread, and the server holds
 * at most two chunks of lines. A client that disconnects cancels the
 * stream (rule 3); the deadline ends it with what was sent (rule 4); the
 * final line tells how it ended and how many items failed (rule 5).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "http/http.h"

#define SEARCH_DEFAULT_LIMIT 10
#define SEARCH_MAX_LIMIT 1000
#define STREAM_MAX_LIMIT 1000000
#define STREAM_CHUNK 16
#define MAX_TIMEOUT_MS 60000
#define MAX_CONTEXT_MEMORIES 1000
#define MAX_MEMORY_CHARS 100000

/* ------------------------------------------------------------ the body */

/* Replies 400 and returns 0 when the body has a field not in known: a
 * misspelt option ("limt") must not be silently ignored. */
static int known_fields(http_req *r, const char *const *known) {
  if (!r->body)
    return 1;
  const char *name;
  json_t *v;
  json_object_foreach(r->body, name, v) {
    size_t i = 0;
    while (known[i] && strcmp(known[i], name) != 0)
      i++;
    if (known[i])
      continue;
    char list[256] = "";
    for (i = 0; known[i]; i++) {
      strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
      strncat(list, known[i], sizeof list - strlen(list) - 1);
    }
    http_error(r, 400, "invalid", "unknown field '%.64s' (expected: %s)", name,
               list);
    return 0;
  }
  return 1;
}

/* "ns": required, and the caller's key must allow it. First in every
 * route, before any other field is looked at. */
static int body_ns(http_req *r, const char **ns) {
  return http_body_string(r, "ns", 1, ns) && http_allow_ns(r, *ns);
}

/* A required string that must not be empty. */
static int body_text(http_req *r, const char *field, const char **out) {
  if (!http_body_string(r, field, 1, out))
    return 0;
  if (**out == '\0') {
    http_error(r, 400, "invalid", "field '%s' must not be empty", field);
    return 0;
  }
  return 1;
}

/* "types": absent (all types), or a non-empty array of type names. */
static int body_types(http_req *r, unsigned *out) {
  json_t *v = r->body ? json_object_get(r->body, "types") : NULL;
  *out = 0;
  if (!v || json_is_null(v))
    return 1;
  size_t i;
  json_t *t;
  if (!json_is_array(v) || json_array_size(v) == 0)
    goto bad;
  json_array_foreach(v, i, t) {
    engram_type type;
    if (!json_is_string(t) || engram_type_parse(json_string_value(t), &type))
      goto bad;
    *out |= 1u << type;
  }
  return 1;
bad:
  http_error(r, 400, "invalid",
             "field 'types' must be a non-empty array of type names: "
             "episodic, semantic, procedural, working");
  return 0;
}

/* "strategy": "lexical", "hybrid" or (a search: vector) "vector"; absent
 * or null: the operation's default (lexical for a search, hybrid for
 * context injection). "vector" needs the server's embedder. */
static int body_strategy(http_req *r, int vector, engram_strategy *out) {
  const char *name = NULL;
  *out = ENGRAM_STRATEGY_DEFAULT;
  if (!http_body_string(r, "strategy", 0, &name))
    return 0;
  if (!name)
    return 1;
  if (engram_strategy_parse(name, out) != 0 ||
      *out == ENGRAM_STRATEGY_DEFAULT ||
      (!vector && *out == ENGRAM_STRATEGY_VECTOR)) {
    if (vector)
      http_error(r, 400, "invalid",
                 "field 'strategy' must be \"lexical\", \"hybrid\" or "
                 "\"vector\"");
    else
      http_error(r, 400, "invalid",
                 "field 'strategy' must be \"lexical\" or \"hybrid\"");
    return 0;
  }
  if (*out == ENGRAM_STRATEGY_VECTOR && !engram_embedder_name(r->eg, NULL)) {
    http_error(r, 400, "invalid",
               "strategy \"vector\" needs an embedder, and this server runs "
               "with none (engram serve --embedder none); use \"lexical\" or "
               "\"hybrid\"");
    return 0;
  }
  return 1;
}

static int body_bool(http_req *r, const char *field, int *out) {
  json_t *v = r->body ? json_object_get(r->body, field) : NULL;
  if (!v || json_is_null(v))
    return 1;
  if (!json_is_boolean(v)) {
    http_error(r, 400, "invalid", "field '%s' must be true or false", field);
    return 0;
  }
  *out = json_is_true(v);
  return 1;
}

/* A score needs no more than 15 significant digits; rounded to them, it
 * prints short (0.5, not 0.50000000000000011) in http_reply_json. */
static double round15(double x) {
  char text[32];
  snprintf(text, sizeof text, "%.15g", x);
  return strtod(text, NULL);
}

/* 1 when x reads back identical from 15 significant digits. */
static int short_real(double x) {
  return round15(x) == x;
}

/* One memory as the API shows it: the shape of the memory routes
 * (http_memory_json), plus its relevance. */
static json_t *node_json(const engram_node *n) {
  json_t *o = http_memory_json(n, 0);
  if (o && json_object_set_new(o, "relevance",
                               json_real(round15(n->relevance))) != 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* ------------------------------------------------------------- /search */

typedef struct search_params {
  const char *ns;
  const char *query;
  long long limit;
  unsigned types;
  double min_relevance;
  long long timeout_ms;
  engram_strategy strategy;
} search_params;

static int parse_search(http_req *r, search_params *p, long long max_limit) {
  static const char *const known[] = {
      "ns",         "query",      "limit",    "types",
      "min_relevance", "timeout_ms", "strategy", NULL};
  p->limit = SEARCH_DEFAULT_LIMIT;
  p->min_relevance = 0;
  p->timeout_ms = (long long)r->srv->opts.request_timeout_ms;
  return body_ns(r, &p->ns) && known_fields(r, known) &&
         http_body_string(r, "query", 1, &p->query) &&
         http_body_int(r, "limit", 1, max_limit, 0, &p->limit) &&
         body_types(r, &p->types) &&
         http_body_number(r, "min_relevance", 0, 1, 0, &p->min_relevance) &&
         http_body_int(r, "timeout_ms", 1, MAX_TIMEOUT_MS, 0, &p->timeout_ms) &&
         body_strategy(r, 1, &p->strategy);
}

/* Starts the search for p with cbs; replies with the error and returns 0
 * when it cannot start. */
static int start_search(http_req *r, const search_params *p,
                        const engram_stream_cbs *cbs, engram_stream **s) {
  engram_query q = {.ns = p->ns,
                    .text = p->query,
                    .types = p->types,
                    .min_relevance = p->min_relevance,
                    .strategy = p->strategy};
  int rc = engram_search(r->eg, &q, cbs, s);
  if (rc != 0) {
    http_error_engram(r, rc, NULL);
    return 0;
  }
  engram_stream_set_deadline(*s, (uint64_t)p->timeout_ms);
  return 1;
}

/* -------------------------------------------------- /search, as JSON */

typedef struct search_op {
  http_req *r;
  engram_stream *s;
  json_t *results;
  size_t limit;
  uint64_t failed;
  int full; /* limit reached: the stream was cancelled for that */
  int oom;
} search_op;

static void search_item(engram_stream *s, const engram_node *n, void *data) {
  search_op *op = data;
  json_t *o = node_json(n);
  if (!o || json_array_append_new(op->results, o) != 0) {
    op->oom = 1;
    engram_stream_cancel(s);
    return;
  }
  if (json_array_size(op->results) >= op->limit) {
    op->full = 1;
    engram_stream_cancel(s); /* enough: the cursor stops (rule 3) */
  }
}

static void search_error(engram_stream *s, int code, const char *message,
                         void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged by engram where it happened */
  ((search_op *)data)->failed++;
}

static void search_done(engram_stream *s, int status, void *data) {
  search_op *op = data;
  http_req *r = op->r;
  (void)s;
  if (op->full && status == ENGRAM_ECANCELED)
    status = 0;
  if (!http_req_gone(r)) {
    if (op->oom)
      http_error(r, 503, "unavailable", "out of memory");
    else if (status == 0 || status == ENGRAM_ETIMEDOUT)
      http_reply_json(r, 200,
                      json_pack("{s:O, s:b, s:I}", "results", op->results,
                                "timed_out", status == ENGRAM_ETIMEDOUT,
                                "failed", (json_int_t)op->failed));
    else
      http_error_engram(r, status, NULL);
  }
  json_decref(op->results);
  free(op);
  http_req_done(r);
}

static void search_gone(http_req *r) {
  engram_stream_cancel(((search_op *)r->op)->s); /* done follows */
}

static void search_json(http_req *r, const search_params *p) {
  search_op *op = calloc(1, sizeof *op);
  if (!op || !(op->results = json_array())) {
    free(op);
    http_error(r, 503, "unavailable", "out of memory");
    http_req_done(r);
    return;
  }
  op->r = r;
  op->limit = (size_t)p->limit;
  engram_stream_cbs cbs = {search_item, search_error, search_done, op};
  if (!start_search(r, p, &cbs, &op->s)) {
    json_decref(op->results);
    free(op);
    http_req_done(r);
    return;
  }
  r->op = op;
  r->on_gone = search_gone;
  engram_stream_request(op->s, op->limit);
}

/* ------------------------------------------------- /search, as NDJSON */

/* The route is finished when the engram stream has ended (ended) and the
 * response has too: its final line handed to h2o, an error reply sent
 * before the response started, or the client gone. */
typedef struct ndjson_op {
  http_req *r;
  engram_stream *s; /* NULL once its done callback ran */
  http_stream_out out;
  buf lines; /* lines not yet handed to h2o */
  size_t limit;
  size_t requested; /* items asked of the stream so far */
  size_t received;
  uint64_t failed;
  int status; /* the stream's status, once ended */
  int ended;
  int started; /* the 200 response began */
  int replied; /* an error reply was sent instead */
  int full, oom;
  int pumping, repump;
} ndjson_op;

static void ndjson_pump(ndjson_op *op);

static void ndjson_writable(http_req *r) {
  ndjson_pump(r->op);
}

static void ndjson_final_line(ndjson_op *op) {
  const char *status = op->status == 0                  ? "ok"
                       : op->status == ENGRAM_ETIMEDOUT ? "timed_out"
                                                        : "error";
  buf_printf(&op->lines,
             "{\"done\":true,\"status\":\"%s\",\"count\":%zu,"
             "\"failed\":%llu",
             status, op->received, (unsigned long long)op->failed);
  if (strcmp(status, "error") == 0) {
    json_t *msg = json_string(engram_strerror(op->status));
    char *text = msg ? json_dumps(msg, JSON_ENCODE_ANY) : NULL;
    buf_printf(&op->lines, ",\"error\":%s", text ? text : "\"error\"");
    free(text);
    json_decref(msg);
  }
  buf_adds(&op->lines, "}\n");
}

/* One step: start the response when there is something to say, hand the
 * buffered lines to h2o when it can take them, and ask the stream for the
 * next chunk only when everything asked for was received and written. */
static void ndjson_step(ndjson_op *op) {
  http_req *r = op->r;
  if (http_req_gone(r) || op->replied)
    return;
  if (!op->started) {
    if (op->lines.len == 0 && !op->ended)
      goto request; /* nothing to say yet */
    if (op->ended && op->received == 0 && op->status != 0 &&
        op->status != ENGRAM_ETIMEDOUT) {
      /* Failed before a byte was sent: a real HTTP error still can be. */
      if (op->oom)
        http_error(r, 503, "unavailable", "out of memory");
      else
        http_error_engram(r, op->status, NULL);
      op->replied = 1;
      return;
    }
    http_stream_start(r, &op->out, 200, "application/x-ndjson",
                      ndjson_writable);
    op->started = 1;
  }
  if (op->out.finished) {
    engram_stream_cancel(op->s); /* the response is over: stop the query */
    return;
  }
  if (!op->out.writable)
    return; /* h2o is writing: ndjson_writable comes when it is done */
  if (op->lines.len > 0 || op->ended) {
    if (op->ended)
      ndjson_final_line(op);
    if (op->lines.oom) {
      op->lines.len = 0; /* http_stream_write ends the response */
      op->lines.oom = 0;
    }
    http_stream_write(&op->out, op->lines.data ? op->lines.data : "",
                      op->lines.len, op->ended);
    op->lines.len = 0;
    return;
  }
request:
  if (op->s && op->received == op->requested && op->requested < op->limit) {
    size_t n = op->limit - op->requested;
    if (n > STREAM_CHUNK)
      n = STREAM_CHUNK;
    op->requested += n;
    engram_stream_request(op->s, n);
  }
}

static void ndjson_maybe_finish(ndjson_op *op) {
  http_req *r = op->r;
  if (!op->ended || op->pumping)
    return;
  if (!http_req_gone(r) && !op->replied && !op->out.finished)
    return;
  buf_free(&op->lines);
  free(op);
  http_req_done(r);
}

/* Steps until nothing changes. Item callbacks and h2o's proceed can come
 * back into the pump while it runs (a producer may deliver inside
 * request); they only mark it to run again. */
static void ndjson_pump(ndjson_op *op) {
  if (op->pumping) {
    op->repump = 1;
    return;
  }
  op->pumping = 1;
  do {
    op->repump = 0;
    ndjson_step(op);
  } while (op->repump);
  op->pumping = 0;
  ndjson_maybe_finish(op);
}

static void ndjson_item(engram_stream *s, const engram_node *n, void *data) {
  ndjson_op *op = data;
  json_t *o = node_json(n);
  /* As http_reply_json prints reals: 15 digits unless one needs 17. */
  size_t prec = short_real(n->importance) ? JSON_REAL_PRECISION(15)
                                          : JSON_REAL_PRECISION(17);
  char *line = o ? json_dumps(o, JSON_COMPACT | prec) : NULL;
  json_decref(o);
  if (line) {
    buf_adds(&op->lines, line);
    buf_add(&op->lines, "\n", 1);
    free(line);
  }
  if (!line || op->lines.oom) {
    op->oom = 1;
    engram_stream_cancel(s);
    return;
  }
  op->received++;
  if (op->received >= op->limit) {
    op->full = 1;
    engram_stream_cancel(s); /* enough: the cursor stops (rule 3) */
  }
  ndjson_pump(op);
}

static void ndjson_error(engram_stream *s, int code, const char *message,
                         void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged by engram where it happened */
  ((ndjson_op *)data)->failed++;
}

static void ndjson_done(engram_stream *s, int status, void *data) {
  ndjson_op *op = data;
  (void)s;
  op->s = NULL;
  op->ended = 1;
  if (op->full && status == ENGRAM_ECANCELED)
    status = 0;
  if (op->oom)
    status = ENGRAM_ENOMEM;
  op->status = status;
  ndjson_pump(op);
}

static void ndjson_gone(http_req *r) {
  ndjson_op *op = r->op;
  if (op->s)
    engram_stream_cancel(op->s); /* its done callback finishes the route */
  else
    ndjson_maybe_finish(op);
}

static void search_ndjson(http_req *r, const search_params *p) {
  ndjson_op *op = calloc(1, sizeof *op);
  if (!op) {
    http_error(r, 503, "unavailable", "out of memory");
    http_req_done(r);
    return;
  }
  op->r = r;
  op->limit = (size_t)p->limit;
  buf_init(&op->lines);
  engram_stream_cbs cbs = {ndjson_item, ndjson_error, ndjson_done, op};
  if (!start_search(r, p, &cbs, &op->s)) {
    free(op);
    http_req_done(r);
    return;
  }
  r->op = op;
  r->on_gone = ndjson_gone;
  ndjson_pump(op);
}

/* ------------------------------------------------------------ dispatch */

static int wants_ndjson(const http_req *r) {
  size_t len;
  const char *h = http_header(r, "accept", &len);
  static const char type[] = "application/x-ndjson";
  const size_t tl = sizeof type - 1;
  for (size_t i = 0; h && i + tl <= len; i++)
    if (strncasecmp(h + i, type, tl) == 0)
      return 1;
  return 0;
}

static void search(http_req *r) {
  search_params p;
  int stream = wants_ndjson(r);
  if (!parse_search(r, &p, stream ? STREAM_MAX_LIMIT : SEARCH_MAX_LIMIT)) {
    http_req_done(r);
    return;
  }
  if (stream)
    search_ndjson(r, &p);
  else
    search_json(r, &p);
}

/* ------------------------------------------------------------ /context */

typedef struct context_op {
  http_req *r;
  engram_context_req *req;
} context_op;

static void context_done(const engram_context_result *res, void *data) {
  context_op *op = data;
  http_req *r = op->r;
  if (!http_req_gone(r)) {
    if (res->status != 0) {
      http_error_engram(r, res->status, NULL);
    } else {
      if (res->timed_out)
        http_metrics_add(r->srv, "context_timed_out", 1);
      json_t *ids = json_array();
      for (size_t i = 0; ids && i < res->count; i++)
        json_array_append_new(ids, json_string(res->ids[i]));
      http_reply_json(
          r, 200,
          json_pack("{s:s%, s:f, s:I, s:o, s:b, s:I, s:f}", "text", res->text,
                    res->text_len, "relevance", round15(res->mean_relevance),
                    "count", (json_int_t)res->count, "ids", ids, "timed_out",
                    res->timed_out, "failed", (json_int_t)res->failed,
                    "elapsed_ms", round15(round(res->elapsed_ms * 1e3) / 1e3)));
    }
  }
  free(op);
  http_req_done(r);
}

static void context_gone(http_req *r) {
  engram_context_cancel(((context_op *)r->op)->req); /* its callback follows */
}

static void context(http_req *r) {
  static const char *const known[] = {"ns",
                                      "message",
                                      "max_memories",
                                      "timeout_ms",
                                      "max_memory_chars",
                                      "headers",
                                      "min_relevance",
                                      "types",
                                      "strategy",
                                      NULL};
  const char *ns, *message;
  long long max_memories = 0, timeout_ms = 0, max_chars = 0;
  double min_relevance = 0;
  int headers = 1;
  unsigned types;
  engram_strategy strategy;
  if (!body_ns(r, &ns) || !known_fields(r, known) ||
      !http_body_string(r, "message", 1, &message) ||
      !http_body_int(r, "max_memories", 1, MAX_CONTEXT_MEMORIES, 0,
                     &max_memories) ||
      !http_body_int(r, "timeout_ms", 1, MAX_TIMEOUT_MS, 0, &timeout_ms) ||
      !http_body_int(r, "max_memory_chars", 1, MAX_MEMORY_CHARS, 0,
                     &max_chars) ||
      !body_bool(r, "headers", &headers) ||
      !http_body_number(r, "min_relevance", 0, 1, 0, &min_relevance) ||
      !body_types(r, &types) || !body_strategy(r, 0, &strategy)) {
    http_req_done(r);
    return;
  }
  /* 0 leaves engram's defaults: 10 memories, 250 ms, 2000 characters. */
  engram_context_options o = {.max_memories = (unsigned)max_memories,
                              .timeout_ms = (uint64_t)timeout_ms,
                              .max_memory_chars = (size_t)max_chars,
                              .no_headers = !headers,
                              .min_relevance = min_relevance,
                              .types = types,
                              .strategy = strategy};
  context_op *op = calloc(1, sizeof *op);
  int rc = op ? engram_context_inject(r->eg, ns, message, &o, context_done, op,
                                      &op->req)
              : ENGRAM_ENOMEM;
  if (rc != 0) {
    free(op);
    http_error_engram(r, rc, NULL);
    http_req_done(r);
    return;
  }
  op->r = r;
  r->op = op;
  r->on_gone = context_gone;
}

/* -------------------------------------------------------------- /turns */

/* The write is not cancelled when the client goes: it may already be
 * committed, and a turn is stored whole or not at all either way. */
static void turn_done(int status, const char *user_id, const char *assistant_id,
                      const char *exchange_id, const char *message,
                      void *data) {
  http_req *r = data;
  if (!http_req_gone(r)) {
    if (status == 0)
      http_reply_json(r, 201,
                      json_pack("{s:s, s:s, s:s}", "user_id", user_id,
                                "assistant_id", assistant_id, "exchange_id",
                                exchange_id));
    else
      http_error_engram(r, status, message);
  }
  http_req_done(r);
}

static void turns(http_req *r) {
  static const char *const known[] = {"ns", "user", "assistant", NULL};
  const char *ns, *user, *assistant;
  if (!body_ns(r, &ns) || !known_fields(r, known) ||
      !body_text(r, "user", &user) || !body_text(r, "assistant", &assistant)) {
    http_req_done(r);
    return;
  }
  int rc = engram_memorize_turn(r->eg, ns, user, assistant, turn_done, r);
  if (rc != 0) {
    if (rc == ENGRAM_ETOOBIG)
      http_error(r, 413, "too_large",
                 "'user' (%zu bytes) or 'assistant' (%zu bytes) is over the "
                 "server's content size limit; shorten it",
                 strlen(user), strlen(assistant));
    else
      http_error_engram(r, rc, NULL);
    http_req_done(r);
  }
}

const http_route http_routes_search[] = {
    {"POST", "/v1/search", search, "search"},
    {"POST", "/v1/context", context, "context"},
    {"POST", "/v1/turns", turns, "turns"},
    {NULL, NULL, NULL, NULL},
};
