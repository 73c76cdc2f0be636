/*
 * engram.c — the public API over the layers: the handle's lifecycle,
 * validation of everything a caller passes, and the copies that let a
 * caller free its input as soon as a start function returns.
 *
 * Validation happens here, once, for every backend: a backend receives
 * only canonical ids, valid UTF-8 within the size limit, JSON-object
 * metadata and numbers in range. Invalid input is refused before anything
 * is queued, with a message naming the field.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "rt/rt.h"
#include "rt/stream.h"
#include "search/embed_http.h"
#include "search/hybrid.h"
#include "search/lexical_index.h"
#include "search/vector_index.h"
#include "store/store.h"
#include "engram_internal.h"

void engram_options_init(engram_options *opts) {
  memset(opts, 0, sizeof *opts);
}

int engram_db_is_postgres(const char *db) { return db && store_db_is_pg(db); }

static void log_stderr(engram_log_level level, const char *message,
                       void *data) {
  static const char *const names[] = {"error", "warning", "info"};
  (void)data;
  fprintf(stderr, "engram: %s: %s\n",
          (unsigned)level < 3 ? names[level] : "log", message);
}

void engram_set_log(engram *eg, engram_log_fn fn, void *data) {
  eg->rt.log = fn;
  eg->rt.log_data = data;
}

/* ------------------------------------------------------------ embedders */

int engram_embedder_parse(const char *spec, engram_embedder_options *out,
                          char *msg, size_t msglen) {
  char scratch[8];
  if (!msg) {
    msg = scratch;
    msglen = sizeof scratch;
  }
  memset(out, 0, sizeof *out);
  if (!spec || !*spec || strcmp(spec, "hashed") == 0) {
    out->kind = ENGRAM_EMBEDDER_HASHED;
    return 0;
  }
  if (strcmp(spec, "none") == 0) {
    out->kind = ENGRAM_EMBEDDER_NONE;
    return 0;
  }
  if (strncmp(spec, "hashed:", 7) == 0) {
    char *end = NULL;
    unsigned long dim = strtoul(spec + 7, &end, 10);
    if (end == spec + 7 || *end || dim < SEARCH_HASHED_MIN_DIM ||
        dim > SEARCH_HASHED_MAX_DIM) {
      snprintf(msg, msglen,
               "embedder '%s': the dimension after hashed: must be a number "
               "from %u to %u",
               spec, SEARCH_HASHED_MIN_DIM, SEARCH_HASHED_MAX_DIM);
      return ENGRAM_EINVAL;
    }
    out->kind = ENGRAM_EMBEDDER_HASHED;
    out->dim = (unsigned)dim;
    return 0;
  }
  if (strncmp(spec, "http:", 5) == 0) {
    /* "http:MODEL@URL": the last '@' before "http", so a model name may
     * hold one. */
    const char *at = strstr(spec + 5, "@http://");
    if (!at)
      at = strstr(spec + 5, "@https://");
    if (!at || at == spec + 5) {
      snprintf(msg, msglen,
               "embedder '%s': expected http:MODEL@URL, e.g. "
               "http:nomic-embed-text@http://127.0.0.1:11434",
               spec);
      return ENGRAM_EINVAL;
    }
    out->kind = ENGRAM_EMBEDDER_HTTP;
    out->model = spec + 5;
    out->model_len = (size_t)(at - out->model);
    out->url = at + 1;
    return 0;
  }
  snprintf(msg, msglen,
           "embedder '%s' is not one of hashed, hashed:DIM, none, "
           "http:MODEL@URL",
           spec);
  return ENGRAM_EINVAL;
}

/* Copies the option strings of eg->opts into one allocation. */
static int copy_option_strings(engram *eg) {
  engram_embedder_options *e = &eg->opts.embedder;
  size_t mlen = e->model ? (e->model_len ? e->model_len : strlen(e->model))
                          : 0;
  size_t bytes = (eg->opts.db ? strlen(eg->opts.db) + 1 : 0) +
                 (e->url ? strlen(e->url) + 1 : 0) + (e->model ? mlen + 1 : 0) +
                 (e->api_key ? strlen(e->api_key) + 1 : 0);
  if (bytes == 0)
    return 0;
  char *p = eg->strings = malloc(bytes);
  if (!p)
    return ENGRAM_ENOMEM;
  const char **fields[] = {&eg->opts.db, &e->url, &e->api_key};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (*fields[i]) {
      size_t n = strlen(*fields[i]) + 1;
      memcpy(p, *fields[i], n);
      *fields[i] = p;
      p += n;
    }
  if (e->model) {
    memcpy(p, e->model, mlen);
    p[mlen] = '\0';
    e->model = p;
    e->model_len = mlen;
  }
  return 0;
}

static int embedder_new(engram *eg) {
  const engram_embedder_options *e = &eg->opts.embedder;
  char msg[200];
  switch (e->kind) {
  case ENGRAM_EMBEDDER_NONE:
    return 0;
  case ENGRAM_EMBEDDER_HASHED: {
    search_hashed_options ho;
    search_hashed_options_default(&ho);
    if (e->dim)
      ho.dim = e->dim;
    search_hashed h;
    if (search_hashed_init(&h, &ho) != 0) {
      rt_log(&eg->rt, ENGRAM_LOG_ERROR,
             "embedder: the hashed embedder's dimension must be %u-%u, not "
             "%u",
             SEARCH_HASHED_MIN_DIM, SEARCH_HASHED_MAX_DIM, e->dim);
      return ENGRAM_EINVAL;
    }
    return search_hashed_embedder_new(&eg->rt, &h, &eg->embedder);
  }
  case ENGRAM_EMBEDDER_HTTP: {
    search_http_options o;
    search_http_options_default(&o);
    o.base_url = e->url;
    o.model = e->model;
    o.api_key = e->api_key;
    o.dim = e->dim;
    if (e->batch)
      o.batch = e->batch;
    if (e->concurrency)
      o.concurrency = e->concurrency;
    if (e->timeout_ms)
      o.timeout_ms = e->timeout_ms;
    o.retries = e->retries;
    int rc = search_http_embedder_new(&eg->rt, &o, &eg->embedder, msg,
                                      sizeof msg);
    if (rc != 0)
      rt_log(&eg->rt, ENGRAM_LOG_ERROR, "embedder: %s", msg);
    return rc;
  }
  }
  rt_log(&eg->rt, ENGRAM_LOG_ERROR, "embedder: unknown kind %d",
         (int)e->kind);
  return ENGRAM_EINVAL;
}

search_embedder *engram_embedder(engram *eg) { return eg->embedder; }

const char *engram_embedder_name(engram *eg, uint32_t *dim) {
  if (dim)
    *dim = eg && eg->embedder ? (uint32_t)eg->embedder->dim : 0;
  return eg && eg->embedder ? eg->embedder->name : NULL;
}

int engram_space(engram *eg, char *out) {
  out[0] = '\0';
  if (!eg->embedder || eg->embedder->dim == 0)
    return ENGRAM_EINVAL;
  return store_space_format(out, eg->embedder->name,
                            (uint32_t)eg->embedder->dim);
}

/* ------------------------------------------------------------ lifecycle */

static void handle_free(engram *eg) {
  if (eg->st)
    eg->st->ops->destroy(eg->st);
  free(eg->strings);
  free(eg);
}

int engram_init(engram **out, uv_loop_t *loop, const engram_options *opts) {
  if (!out)
    return ENGRAM_EINVAL;
  engram *eg = calloc(1, sizeof *eg);
  if (!eg)
    return ENGRAM_ENOMEM;
  if (opts)
    eg->opts = *opts;
  if (copy_option_strings(eg) != 0) {
    free(eg);
    return ENGRAM_ENOMEM;
  }
  if (eg->opts.max_content_bytes == 0)
    eg->opts.max_content_bytes = CORE_DEFAULT_MAX_CONTENT;
  if (loop) {
    eg->loop = loop;
  } else {
    if (uv_loop_init(&eg->own_loop) != 0) {
      handle_free(eg);
      return ENGRAM_ENOMEM;
    }
    eg->loop = &eg->own_loop;
    eg->owns_loop = 1;
  }
  rt_init(&eg->rt, eg->loop);
  engram_set_log(eg, log_stderr, NULL);
  /* The store first: making it allocates only. The embedder last: a
   * constructor that fails leaves no libuv handle behind, so a failure
   * here needs no loop iteration to undo. */
  int rc = 0;
  eg->st = eg->base = store_db_is_pg(eg->opts.db)
                           ? store_pg_new(&eg->rt, &eg->opts)
                           : store_sqlite_new(&eg->rt, &eg->opts);
  if (!eg->st)
    rc = ENGRAM_ENOMEM;
  if (rc == 0)
    rc = embedder_new(eg);
  if (rc != 0) {
    if (eg->owns_loop)
      uv_loop_close(&eg->own_loop); /* nothing was ever started on it */
    handle_free(eg);
    return rc;
  }
  eg->state = H_NEW;
  *out = eg;
  return 0;
}

uv_loop_t *engram_loop(engram *eg) { return eg->loop; }

/* Runs the loop for the program that owns it (engram.h: "never call from a
 * callback"), so it nests no loop and no request path reaches it: it is
 * the program's main loop, not a wait inside one. */
int engram_run(engram *eg) { return uv_run(eg->loop, UV_RUN_DEFAULT); }

static void on_store_open(store *st, int status, const char *message,
                          void *data) {
  engram *eg = data;
  char mine[STORE_SPACE_LEN];
  if (status == 0 && st->space[0] && engram_space(eg, mine) == 0 &&
      strcmp(mine, st->space) != 0)
    rt_log(&eg->rt, ENGRAM_LOG_WARN,
           "the database's vectors come from %s, this engram embeds with %s: "
           "writes and vector search fail (ENGRAM_EEMBEDDER) until `engram "
           "reembed` switches the database",
           st->space, mine);
  /* A close requested while opening stands: the handle stays CLOSING. */
  if (eg->state == H_OPENING)
    eg->state = status == 0 ? H_OPEN : H_NEW;
  eg->open_cb(eg, status, message ? message : engram_strerror(status),
              eg->open_data);
}

int engram_open(engram *eg, engram_open_cb cb, void *data) {
  if (!eg || !cb)
    return ENGRAM_EINVAL;
  if (eg->state != H_NEW)
    return ENGRAM_ECLOSED;
  eg->state = H_OPENING;
  eg->open_cb = cb;
  eg->open_data = data;
  eg->st->ops->open(eg->st, on_store_open, eg);
  return 0;
}

/* Closing, in order: streams end (their done callbacks are deferred to
 * the loop), writes waiting for their vectors reach the store, the store
 * commits what it has and closes, and the embedder closes last. */
static void on_embedder_closed(void *data) {
  engram *eg = data;
  eg->embedder = NULL;
  eg->state = H_CLOSED;
  if (eg->close_cb)
    eg->close_cb(eg, eg->close_data);
}

static void on_store_closed(store *st, void *data) {
  engram *eg = data;
  (void)st;
  if (eg->embedder) {
    search_embedder_close(eg->embedder, on_embedder_closed, eg);
    return;
  }
  on_embedder_closed(eg);
}

/* The indexes close before the store, whose reads they may still have
 * out: the vector index, then the lexical index, then the store. */
static void close_indexes(void *data) {
  engram *eg = data;
  if (eg->index) {
    vector_index *x = eg->index;
    eg->index = NULL;
    vector_index_close(x, close_indexes, eg);
  } else if (eg->lexical) {
    lexical_index *x = eg->lexical;
    eg->lexical = NULL;
    lexical_index_close(x, close_indexes, eg);
  } else {
    eg->st->ops->close(eg->st, on_store_closed, eg);
  }
}

static void on_writes_handed(engram *eg) {
  eg->on_writes_handed = NULL;
  close_indexes(eg);
}

static void on_streams_drained(rt *r, void *data) {
  engram *eg = data;
  (void)r;
  engram_reembed_stop(eg);
  if (!engram_writes_handed(eg)) {
    eg->on_writes_handed = on_writes_handed;
    return;
  }
  on_writes_handed(eg);
}

void engram_close(engram *eg, engram_close_cb cb, void *data) {
  if (!eg || eg->state == H_CLOSING || eg->state == H_CLOSED)
    return;
  eg->close_cb = cb;
  eg->close_data = data;
  if (eg->state == H_NEW) {
    /* Never opened (or open failed): nothing to drain. */
    eg->state = H_CLOSING;
    on_writes_handed(eg);
    return;
  }
  eg->state = H_CLOSING;
  rt_drain(&eg->rt, on_streams_drained, eg);
}

void engram_free(engram *eg) {
  if (!eg)
    return;
  if (eg->embedder) /* never closed: it frees itself on the loop */
    search_embedder_close(eg->embedder, NULL, NULL);
  if (eg->st)
    eg->st->ops->destroy(eg->st);
  eg->st = NULL;
  if (eg->owns_loop) {
    /* Not a request path: the owner frees the handle after engram_close
     * and after its loop ran dry (engram.h); this only lets the close
     * callbacks of handles still closing run before the loop is closed.
     * No thread waits for another task here. */
    uv_run(&eg->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&eg->own_loop);
  }
  handle_free(eg);
}

void engram_get_stats(engram *eg, engram_stats *out) {
  memset(out, 0, sizeof *out);
  out->streams_open = eg->rt.streams_open;
  out->items_failed = eg->rt.items_failed;
  out->pool_tasks = eg->rt.work_inflight;
  out->queries_running = eg->base->queries_running;
  out->writes_committed = eg->base->writes_committed;
  out->write_batches = eg->base->write_batches;
  memcpy(out->write_batch_sizes, eg->base->write_batch_sizes,
         sizeof out->write_batch_sizes);
}

rt *engram_rt(engram *eg) { return &eg->rt; }
const engram_options *engram_opts(engram *eg) { return &eg->opts; }

int engram_wrap_store(engram *eg, store *(*wrap)(store *inner, void *arg),
                      void *arg) {
  if (!eg || eg->state != H_NEW)
    return ENGRAM_EINVAL;
  store *top = wrap(eg->st, arg);
  if (!top)
    return ENGRAM_ENOMEM;
  eg->st = top;
  return 0;
}

/* ------------------------------------------------------------ validation */

static int op_fail(engram_op *op, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(op->message, sizeof op->message, fmt, ap);
  va_end(ap);
  op->status = code;
  return code;
}

static int check_unit(double v) { return !isnan(v) && v >= 0.0 && v <= 1.0; }

static int check_content(const engram *eg, engram_op *op, size_t *len) {
  if (!op->content)
    return op_fail(op, ENGRAM_EINVAL, "content is missing");
  *len = op->content_len ? op->content_len : strlen(op->content);
  if (*len == 0)
    return op_fail(op, ENGRAM_EINVAL, "content is empty");
  if (*len > eg->opts.max_content_bytes)
    return op_fail(op, ENGRAM_ETOOBIG,
                   "content is %zu bytes; the limit is %zu bytes", *len,
                   eg->opts.max_content_bytes);
  if (!core_utf8_valid(op->content, *len))
    return op_fail(op, ENGRAM_EUTF8,
                   "content is not valid UTF-8 (or contains a NUL byte)");
  return 0;
}

static int check_id(engram_op *op, const char *id, const char *field) {
  if (!id)
    return op_fail(op, ENGRAM_EINVAL, "%s is missing", field);
  if (!engram_id_valid(id))
    return op_fail(op, ENGRAM_EINVAL,
                   "%s is not a memory id (expected a lower-case UUID like "
                   "0190a5e2-7b3c-7def-8123-456789abcdef)",
                   field);
  return 0;
}

static int validate_op(const engram *eg, engram_op *op) {
  size_t len;
  int rc;
  op->status = 0;
  op->message[0] = '\0';
  if (!core_ns_valid(op->ns))
    return op_fail(op, ENGRAM_EINVAL,
                   "namespace must be 1-%u bytes of UTF-8 without control "
                   "characters",
                   CORE_MAX_NS);
  switch (op->kind) {
  case ENGRAM_OP_ADD:
    if ((rc = check_content(eg, op, &len)) != 0)
      return rc;
    if (op->id && (rc = check_id(op, op->id, "id")) != 0)
      return rc;
    break;
  case ENGRAM_OP_UPDATE:
    if ((rc = check_id(op, op->id, "id")) != 0)
      return rc;
    if ((op->set & (ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE |
                    ENGRAM_SET_IMPORTANCE | ENGRAM_SET_METADATA |
                    ENGRAM_SET_EMBEDDING)) == 0)
      return op_fail(op, ENGRAM_EINVAL, "update changes nothing: set no field");
    if ((op->set & ENGRAM_SET_CONTENT) &&
        (rc = check_content(eg, op, &len)) != 0)
      return rc;
    break;
  case ENGRAM_OP_DELETE:
    return check_id(op, op->id, "id");
  case ENGRAM_OP_LINK:
  case ENGRAM_OP_UNLINK:
    if ((rc = check_id(op, op->source, "source")) != 0 ||
        (rc = check_id(op, op->target, "target")) != 0)
      return rc;
    if (!op->rel_kind || !*op->rel_kind ||
        strlen(op->rel_kind) > CORE_MAX_REL_KIND ||
        !core_utf8_valid(op->rel_kind, strlen(op->rel_kind)))
      return op_fail(op, ENGRAM_EINVAL,
                     "relationship kind must be 1-%u bytes of UTF-8",
                     CORE_MAX_REL_KIND);
    if (op->kind == ENGRAM_OP_LINK && !check_unit(op->strength))
      return op_fail(op, ENGRAM_EINVAL,
                     "strength must be a number in [0, 1]");
    return 0;
  default:
    return op_fail(op, ENGRAM_EINVAL, "unknown operation kind %d",
                   (int)op->kind);
  }
  /* ADD and UPDATE fields */
  int is_add = op->kind == ENGRAM_OP_ADD;
  if ((is_add || (op->set & ENGRAM_SET_TYPE)) &&
      (unsigned)op->type >= ENGRAM_TYPE_COUNT)
    return op_fail(op, ENGRAM_EINVAL,
                   "type must be episodic, semantic, procedural or working");
  if ((op->set & ENGRAM_SET_IMPORTANCE) && !check_unit(op->importance))
    return op_fail(op, ENGRAM_EINVAL,
                   "importance must be a number in [0, 1]");
  if ((is_add || (op->set & ENGRAM_SET_METADATA)) && op->metadata) {
    if (strlen(op->metadata) > eg->opts.max_content_bytes)
      return op_fail(op, ENGRAM_ETOOBIG, "metadata is larger than %zu bytes",
                     eg->opts.max_content_bytes);
    if (!core_json_is_object(op->metadata, op->message, sizeof op->message))
      return op->status = ENGRAM_EJSON;
  }
  if ((is_add || (op->set & ENGRAM_SET_EMBEDDING)) && op->embedding) {
    if (op->embedding_dim == 0 || op->embedding_dim > 65536)
      return op_fail(op, ENGRAM_EINVAL,
                     "embedding dimension must be 1-65536");
    for (uint32_t i = 0; i < op->embedding_dim; i++)
      if (!isfinite(op->embedding[i]))
        return op_fail(op, ENGRAM_EINVAL,
                       "embedding value %u is not a finite number", i);
    if (op->embedder &&
        (!*op->embedder || strlen(op->embedder) > CORE_MAX_EMBEDDER_NAME ||
         !core_utf8_valid(op->embedder, strlen(op->embedder))))
      return op_fail(op, ENGRAM_EINVAL,
                     "embedder name must be 1-%u bytes of UTF-8",
                     CORE_MAX_EMBEDDER_NAME);
    /* With an embedder, engram makes every vector: one of yours is kept
     * only when it is that embedder's (a backup restored). */
    const search_embedder *e = eg->embedder;
    if (e && (!op->embedder || strcmp(op->embedder, e->name) != 0 ||
              (e->dim && op->embedding_dim != e->dim)))
      return op_fail(op, ENGRAM_EEMBEDDER,
                     "this engram computes vectors with %s (dim %zu); a "
                     "vector from %s (dim %u) is not accepted (open with "
                     "embedder none to store your own)",
                     e->name, e->dim, op->embedder ? op->embedder : "you",
                     op->embedding_dim);
  }
  return 0;
}

/* ---------------------------------------------------------------- writes */

int engram_write(engram *eg, engram_op *ops, size_t n, engram_write_cb cb,
                 void *data) {
  if (!eg || !ops || n == 0)
    return ENGRAM_EINVAL;
  if (eg->state != H_OPEN)
    return ENGRAM_ECLOSED;
  for (size_t i = 0; i < n; i++) {
    int rc = validate_op(eg, &ops[i]);
    if (rc != 0)
      return rc;
  }
  return engram_write_submit(eg, ops, n, cb, data);
}

/* ----------------------------------------------------------------- reads */

static int check_read(const engram *eg, const char *ns, int ns_required,
                      const char *id) {
  if (!eg)
    return ENGRAM_EINVAL;
  if (eg->state != H_OPEN)
    return ENGRAM_ECLOSED;
  if ((ns || ns_required) && !core_ns_valid(ns))
    return ENGRAM_EINVAL;
  if (id && !engram_id_valid(id))
    return ENGRAM_EINVAL;
  return 0;
}

int engram_get(engram *eg, const char *ns, const char *id, engram_get_cb cb,
               void *data) {
  int rc = check_read(eg, ns, 0, id);
  if (rc != 0 || !id || !cb)
    return rc ? rc : ENGRAM_EINVAL;
  return eg->st->ops->get(eg->st, ns, id, cb, data);
}

int engram_history(engram *eg, const char *ns, const char *id,
                   engram_history_cb cb, void *data) {
  int rc = check_read(eg, ns, 1, id);
  if (rc != 0 || !id || !cb)
    return rc ? rc : ENGRAM_EINVAL;
  return eg->st->ops->history(eg->st, ns, id, cb, data);
}

int engram_relationships(engram *eg, const char *ns, const char *id,
                         engram_rels_cb cb, void *data) {
  int rc = check_read(eg, ns, 1, id);
  if (rc != 0 || !id || !cb)
    return rc ? rc : ENGRAM_EINVAL;
  return eg->st->ops->relationships(eg->st, ns, id, cb, data);
}

/* --------------------------------------------------------------- streams */

typedef int (*stream_start_fn)(store *st, const store_query *q,
                               engram_stream *s);

static int start_stream(engram *eg, stream_start_fn start,
                        const store_query *q, const engram_stream_cbs *cbs,
                        engram_stream **out) {
  if (!out)
    return ENGRAM_EINVAL;
  if (cbs && (!cbs->item || !cbs->done))
    return ENGRAM_EINVAL;
  engram_stream *s = stream_new(&eg->rt, cbs);
  if (!s)
    return ENGRAM_ENOMEM;
  int rc = start(eg->st, q, s);
  if (rc != 0) {
    stream_discard(s);
    return rc;
  }
  *out = s;
  return 0;
}

/* The lexical index, made at the first search that can use it (or
 * preload); ENGRAM_EINVAL when the store cannot feed one. */
static int lexical_index_of(engram *eg, lexical_index **out) {
  if (!eg->st->ops->vectors)
    return ENGRAM_EINVAL;
  if (!eg->lexical &&
      lexical_index_new(&eg->rt, eg->st, NULL, &eg->lexical) != 0)
    return ENGRAM_ENOMEM;
  *out = eg->lexical;
  return 0;
}

/* Hybrid search (src/search/hybrid.c): options checked here, the rest
 * there. text is NUL-terminated. */
static int start_hybrid(engram *eg, const engram_query *q, const char *text,
                        size_t len, const engram_stream_cbs *cbs,
                        engram_stream **out) {
  engram_search_options defaults;
  const engram_search_options *opt = q->options;
  if (!opt) {
    engram_search_options_init(&defaults);
    opt = &defaults;
  }
  char msg[160];
  int rc = search_options_check(opt, msg, sizeof msg);
  if (rc == 0 && (!q->meta_key) != (!q->meta_value)) {
    snprintf(msg, sizeof msg, "a metadata filter needs both a key and a "
                              "value");
    rc = ENGRAM_EINVAL;
  }
  if (rc == 0 && q->created_before_ms && q->created_after_ms &&
      q->created_before_ms <= q->created_after_ms) {
    snprintf(msg, sizeof msg, "created_before_ms must be after "
                              "created_after_ms");
    rc = ENGRAM_EINVAL;
  }
  if (rc != 0) {
    rt_log(&eg->rt, ENGRAM_LOG_ERROR, "%s", msg);
    return rc;
  }
  if (!out || (cbs && (!cbs->item || !cbs->done)))
    return ENGRAM_EINVAL;
  search_hybrid_query hq = {.ns = q->ns,
                            .text = text,
                            .text_len = len,
                            .types = q->types,
                            .min_relevance = q->min_relevance,
                            .opt = opt,
                            .meta_key = q->meta_key,
                            .meta_value = q->meta_value,
                            .created_after_ms = q->created_after_ms,
                            .created_before_ms = q->created_before_ms,
                            .now_ms = core_now_ms()};
  engram_stream *s = stream_new(&eg->rt, cbs);
  if (!s)
    return ENGRAM_ENOMEM;
  /* Vectors: the index is made at the first search that can use it. */
  if (eg->embedder && !eg->index &&
      vector_index_new(&eg->rt, eg->st, NULL, &eg->index) != 0) {
    stream_discard(s);
    return ENGRAM_ENOMEM;
  }
  /* The lexical index likewise, where the store can feed it. */
  lexical_index *lexical = NULL;
  if (opt->lexical_index && lexical_index_of(eg, &lexical) == ENGRAM_ENOMEM) {
    stream_discard(s);
    return ENGRAM_ENOMEM;
  }
  hq.lexical = lexical;
  hq.embedder = eg->embedder;
  hq.index = eg->index;
  hq.space_name = eg->embedder ? eg->embedder->name : NULL;
  hq.space_dim = eg->embedder ? (uint32_t)eg->embedder->dim : 0;
  hq.db_space = eg->base->space;
  hq.vector_only = q->strategy == ENGRAM_STRATEGY_VECTOR;
  rc = search_hybrid_start(eg->st, &hq, s);
  if (rc != 0) {
    stream_discard(s);
    return rc;
  }
  *out = s;
  return 0;
}

typedef struct preload {
  engram_preload_cb cb;
  void *data;
} preload;

static void on_preloaded(lexical_index_req *req, int status, const char *msg,
                         const lexical_index_hit *hits, size_t n, void *data) {
  (void)req;
  (void)hits;
  (void)n;
  preload p = *(preload *)data;
  free(data);
  p.cb(status, status ? msg : NULL, p.data);
}

int engram_preload(engram *eg, const char *ns, engram_preload_cb cb,
                   void *data) {
  if (!ns || !cb)
    return ENGRAM_EINVAL;
  int rc = check_read(eg, ns, 1, NULL);
  lexical_index *x = NULL;
  if (rc == 0)
    rc = lexical_index_of(eg, &x);
  if (rc != 0)
    return rc;
  preload *p = malloc(sizeof *p);
  if (!p)
    return ENGRAM_ENOMEM;
  *p = (preload){cb, data};
  rc = lexical_index_load(x, ns, on_preloaded, p);
  if (rc != 0)
    free(p);
  return rc;
}

int engram_search_has_hybrid(engram *eg) {
  return eg && eg->st && eg->st->ops->candidates != NULL;
}

int engram_search(engram *eg, const engram_query *q,
                  const engram_stream_cbs *cbs, engram_stream **out) {
  if (!q || !q->text)
    return ENGRAM_EINVAL;
  int rc = check_read(eg, q->ns, 1, NULL);
  if (rc != 0)
    return rc;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  if (!core_utf8_valid(q->text, len))
    return ENGRAM_EUTF8;
  if (isnan(q->min_relevance) || q->min_relevance < 0 || q->min_relevance > 1)
    return ENGRAM_EINVAL;
  /* The backend wants a NUL-terminated text: copy when the caller's
   * slice is not. */
  char *text = malloc(len + 1);
  if (!text)
    return ENGRAM_ENOMEM;
  memcpy(text, q->text, len);
  text[len] = '\0';
  if (q->strategy == ENGRAM_STRATEGY_HYBRID ||
      q->strategy == ENGRAM_STRATEGY_VECTOR) {
    rc = start_hybrid(eg, q, text, len, cbs, out);
    free(text);
    return rc;
  }
  if (q->strategy != ENGRAM_STRATEGY_DEFAULT &&
      q->strategy != ENGRAM_STRATEGY_LEXICAL) {
    free(text);
    return ENGRAM_EINVAL;
  }
  if (q->meta_key || q->meta_value || q->created_after_ms ||
      q->created_before_ms) {
    rt_log(&eg->rt, ENGRAM_LOG_ERROR,
           "metadata and time filters need the hybrid strategy");
    free(text);
    return ENGRAM_EINVAL;
  }
  store_query sq = {.ns = q->ns,
                    .text = text,
                    .text_len = len,
                    .types = q->types,
                    .min_relevance = q->min_relevance};
  rc = start_stream(eg, eg->st->ops->search, &sq, cbs, out);
  free(text);
  return rc;
}

int engram_list(engram *eg, const engram_query *q,
                const engram_stream_cbs *cbs, engram_stream **out) {
  if (!q)
    return ENGRAM_EINVAL;
  int rc = check_read(eg, q->ns, 0, q->after);
  if (rc != 0)
    return rc;
  store_query sq = {.ns = q->ns, .types = q->types, .after = q->after};
  return start_stream(eg, eg->st->ops->list, &sq, cbs, out);
}

int engram_traverse(engram *eg, const char *ns, const char *start_id,
                    uint32_t max_depth, double min_strength,
                    const engram_stream_cbs *cbs, engram_stream **out) {
  int rc = check_read(eg, ns, 1, start_id);
  if (rc != 0)
    return rc;
  if (!start_id || !check_unit(min_strength))
    return ENGRAM_EINVAL;
  store_query sq = {.ns = ns,
                    .start_id = start_id,
                    .max_depth = max_depth,
                    .min_strength = min_strength};
  return start_stream(eg, eg->st->ops->traverse, &sq, cbs, out);
}
