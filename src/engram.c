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
#include "search/hybrid.h"
#include "store/store.h"
#include "engram_internal.h"

enum { H_NEW, H_OPENING, H_OPEN, H_CLOSING, H_CLOSED };

struct engram {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  int state;
  engram_options opts;
  char *db;
  rt rt;
  store *st;   /* the top of the store stack: what operations go to */
  store *base; /* the real backend: where statistics come from */
  engram_open_cb open_cb;
  void *open_data;
  engram_close_cb close_cb;
  void *close_data;
};

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

int engram_init(engram **out, uv_loop_t *loop, const engram_options *opts) {
  if (!out)
    return ENGRAM_EINVAL;
  engram *eg = calloc(1, sizeof *eg);
  if (!eg)
    return ENGRAM_ENOMEM;
  if (opts)
    eg->opts = *opts;
  if (eg->opts.db) {
    eg->db = strdup(eg->opts.db);
    if (!eg->db) {
      free(eg);
      return ENGRAM_ENOMEM;
    }
    eg->opts.db = eg->db;
  }
  if (eg->opts.max_content_bytes == 0)
    eg->opts.max_content_bytes = CORE_DEFAULT_MAX_CONTENT;
  if (loop) {
    eg->loop = loop;
  } else {
    if (uv_loop_init(&eg->own_loop) != 0) {
      free(eg->db);
      free(eg);
      return ENGRAM_ENOMEM;
    }
    eg->loop = &eg->own_loop;
    eg->owns_loop = 1;
  }
  rt_init(&eg->rt, eg->loop);
  engram_set_log(eg, log_stderr, NULL);
  eg->st = eg->base = store_db_is_pg(eg->opts.db)
                           ? store_pg_new(&eg->rt, &eg->opts)
                           : store_sqlite_new(&eg->rt, &eg->opts);
  if (!eg->st) {
    if (eg->owns_loop)
      uv_loop_close(&eg->own_loop);
    free(eg->db);
    free(eg);
    return ENGRAM_ENOMEM;
  }
  eg->state = H_NEW;
  *out = eg;
  return 0;
}

uv_loop_t *engram_loop(engram *eg) { return eg->loop; }

/* The one place a loop is run: by the program that owns it, never from a
 * callback (documented in engram.h), so it nests no loop. */
int engram_run(engram *eg) { return uv_run(eg->loop, UV_RUN_DEFAULT); }

static void on_store_open(store *st, int status, const char *message,
                          void *data) {
  engram *eg = data;
  (void)st;
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

static void on_store_closed(store *st, void *data) {
  engram *eg = data;
  (void)st;
  eg->state = H_CLOSED;
  if (eg->close_cb)
    eg->close_cb(eg, eg->close_data);
}

/* Streams end through their own done callbacks (deferred to the loop);
 * the store closes once the last one has. */
static void on_streams_drained(rt *r, void *data) {
  engram *eg = data;
  (void)r;
  eg->st->ops->close(eg->st, on_store_closed, eg);
}

void engram_close(engram *eg, engram_close_cb cb, void *data) {
  if (!eg || eg->state == H_CLOSING || eg->state == H_CLOSED)
    return;
  eg->close_cb = cb;
  eg->close_data = data;
  if (eg->state == H_NEW) {
    /* Never opened (or open failed): nothing to drain. */
    eg->state = H_CLOSING;
    eg->st->ops->close(eg->st, on_store_closed, eg);
    return;
  }
  eg->state = H_CLOSING;
  rt_drain(&eg->rt, on_streams_drained, eg);
}

void engram_free(engram *eg) {
  if (!eg)
    return;
  if (eg->st)
    eg->st->ops->destroy(eg->st);
  if (eg->owns_loop) {
    /* Not a request path: the owner frees the handle after its loop ran
     * dry; this only lets handles that are closing call back. */
    uv_run(&eg->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&eg->own_loop);
  }
  free(eg->db);
  free(eg);
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
  }
  return 0;
}

/* ---------------------------------------------------------------- writes */

typedef struct write_req {
  store_batch batch;
  engram *eg;
  engram_write_cb cb;
  void *data;
  char *strings; /* every copied string, one allocation */
} write_req;

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static const char *put_str(char **p, const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  memcpy(*p, s, n);
  const char *out = *p;
  *p += n;
  return out;
}

static const char *put_bytes(char **p, const char *s, size_t n) {
  memcpy(*p, s, n);
  (*p)[n] = '\0';
  const char *out = *p;
  *p += n + 1;
  return out;
}

static void write_done(store_batch *b) {
  write_req *w = b->data;
  if (w->cb)
    w->cb(b->status, b->ops, b->n, w->data);
  free(w->strings);
  free(b->ops);
  free(b->content_hash);
  free(w);
}

int engram_write(engram *eg, engram_op *ops, size_t n, engram_write_cb cb,
                 void *data) {
  if (!eg || !ops || n == 0)
    return ENGRAM_EINVAL;
  if (eg->state != H_OPEN)
    return ENGRAM_ECLOSED;
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = validate_op(eg, &ops[i]);
    if (rc != 0)
      return rc;
    engram_op *op = &ops[i];
    size_t clen = op->content ? (op->content_len ? op->content_len
                                                 : strlen(op->content))
                              : 0;
    bytes += str_size(op->ns) + str_size(op->id) + (op->content ? clen + 1 : 0) +
             str_size(op->metadata) + str_size(op->source) +
             str_size(op->target) + str_size(op->rel_kind);
    if (op->embedding)
      bytes += (size_t)op->embedding_dim * sizeof(float) + sizeof(float);
  }
  write_req *w = calloc(1, sizeof *w);
  engram_op *copy = calloc(n, sizeof *copy);
  uint64_t *hashes = calloc(n, sizeof *hashes);
  char *strings = malloc(bytes ? bytes : 1);
  if (!w || !copy || !hashes || !strings) {
    free(w);
    free(copy);
    free(hashes);
    free(strings);
    return ENGRAM_ENOMEM;
  }
  /* Embeddings first, so the floats stay aligned. */
  char *p = strings;
  for (size_t i = 0; i < n; i++) {
    copy[i] = ops[i];
    if (ops[i].embedding) {
      size_t eb = (size_t)ops[i].embedding_dim * sizeof(float);
      memcpy(p, ops[i].embedding, eb);
      copy[i].embedding = (const float *)(void *)p;
      p += eb + sizeof(float);
    }
  }
  for (size_t i = 0; i < n; i++) {
    engram_op *op = &copy[i];
    op->ns = put_str(&p, ops[i].ns);
    op->id = put_str(&p, ops[i].id);
    if (ops[i].content) {
      size_t clen = ops[i].content_len ? ops[i].content_len
                                       : strlen(ops[i].content);
      op->content = put_bytes(&p, ops[i].content, clen);
      op->content_len = clen;
      hashes[i] = core_hash(op->content, clen);
    }
    op->metadata = put_str(&p, ops[i].metadata);
    op->source = put_str(&p, ops[i].source);
    op->target = put_str(&p, ops[i].target);
    op->rel_kind = put_str(&p, ops[i].rel_kind);
    if (op->kind == ENGRAM_OP_ADD) {
      if (op->id)
        memcpy(op->result_id, op->id, ENGRAM_ID_LEN + 1);
      else
        engram_id_new(op->result_id);
    }
  }
  w->eg = eg;
  w->cb = cb;
  w->data = data;
  w->strings = strings;
  w->batch.ops = copy;
  w->batch.n = n;
  w->batch.content_hash = hashes;
  w->batch.at_ms = core_now_ms();
  w->batch.done = write_done;
  w->batch.data = w;
  int rc = eg->st->ops->write(eg->st, &w->batch);
  if (rc != 0) {
    free(strings);
    free(copy);
    free(hashes);
    free(w);
  }
  return rc;
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
  rc = search_hybrid_start(eg->st, &hq, s);
  if (rc != 0) {
    stream_discard(s);
    return rc;
  }
  *out = s;
  return 0;
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
  if (q->strategy == ENGRAM_STRATEGY_HYBRID) {
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
