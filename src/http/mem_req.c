/*
 * mem_req.c — the async state of the native memory routes (memories.h):
 * the mem_req that carries a route from its start to its callback and
 * releases the http_req exactly once, the helpers that check a body's
 * namespace and fields, start a write and word its failure, and the paged
 * streams that list and traverse use. A client that disconnects cancels a
 * running stream through on_gone; the stream's done callback still runs
 * and does the release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/memories.h"

mem_req *mem_req_new(http_req *r, const char *ns, const char *id) {
  mem_req *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->r = r;
  if (ns && !(m->ns = strdup(ns))) {
    free(m);
    return NULL;
  }
  if (id)
    snprintf(m->id, sizeof m->id, "%s", id);
  r->op = m;
  return m;
}

/* Releases the http_req (exactly once) and frees m. */
void mem_req_end(mem_req *m) {
  http_req *r = m->r;
  r->on_gone = NULL;
  r->op = NULL;
  http_req_done(r);
  if (m->items)
    json_decref(m->items);
  free(m->ns);
  free(m);
}

/* A start function refused (it will not call back): reply and end. */
void mem_req_failed(http_req *r, mem_req *m, int rc) {
  http_error_engram(r, rc, NULL);
  mem_req_end(m);
}

void mem_out_of_memory(http_req *r) {
  http_error(r, 503, "unavailable", "out of memory");
  http_req_done(r);
}

mem_req *mem_req_for_id(http_req *r) {
  char ns[NS_CAP];
  if (!http_path_id(r, 0) || !http_query_ns(r, ns, sizeof ns)) {
    http_req_done(r);
    return NULL;
  }
  mem_req *m = mem_req_new(r, ns, r->params[0]);
  if (!m)
    mem_out_of_memory(r);
  return m;
}

/* ----------------------------------------------------------- JSON bodies */

/* "ns" from the body, required, and allowed for the caller's key. */
int mem_body_ns(http_req *r, const char **ns) {
  return http_body_string(r, "ns", 1, ns) && http_allow_ns(r, *ns);
}

/* Replies 400 for the first key of obj not in allowed (NULL-ended). */
int mem_only_fields(http_req *r, json_t *obj, const char *where,
                    const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int known = 0;
    for (const char *const *a = allowed; *a && !known; a++)
      known = strcmp(key, *a) == 0;
    if (!known) {
      char list[160] = "";
      for (const char *const *a = allowed; *a; a++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                 a == allowed ? "" : ", ", *a);
      http_error(r, 400, "invalid", "unknown field '%s%s' (expected: %s)",
                 where, key, list);
      return 0;
    }
  }
  return 1;
}

/* Replies for a write that failed, naming the op of a batch. */
void mem_write_error(http_req *r, int status, const engram_op *ops, size_t n,
                     int is_batch) {
  size_t at = n;
  for (size_t i = 0; i < n; i++)
    if (ops[i].status != 0 && ops[i].status != ENGRAM_ECANCELED) {
      at = i;
      break;
    }
  const char *msg = at < n && ops[at].message[0] ? ops[at].message : NULL;
  if (is_batch && at < n) {
    char buf[256];
    snprintf(buf, sizeof buf, "memories[%zu]: %s", at,
             msg ? msg : engram_strerror(status));
    http_error_engram(r, status, buf);
  } else {
    http_error_engram(r, status, msg);
  }
}

/* Starts a write of ops for m; on a refusal replies and ends m. */
void mem_start_write(mem_req *m, engram_op *ops, size_t n, engram_write_cb cb) {
  int rc = engram_write(m->r->eg, ops, n, cb, m);
  if (rc != 0) {
    mem_write_error(m->r, rc, ops, n, m->is_batch);
    mem_req_end(m);
  }
}

/* ---------------------------------------------------- one memory, read */

void mem_got_memory(int status, const engram_node *node, void *data) {
  mem_req *m = data;
  http_req *r = m->r;
  if (http_req_gone(r)) {
    /* the client left: nothing to tell */
  } else if (status != 0) {
    if (status == ENGRAM_ENOTFOUND)
      http_error(r, 404, "not_found", "no memory %s in namespace \"%s\"", m->id,
                 m->ns);
    else
      http_error_engram(r, status, NULL);
  } else {
    http_reply_json(r, 200, http_memory_json(node, 0));
  }
  mem_req_end(m);
}

/* ------------------------------------------------------------ streams */

/* The client went away: stop the producer. The done callback follows and
 * ends the mem_req (which owns the release). */
static void stream_gone(http_req *r) {
  mem_req *m = r->op;
  if (m && m->stream)
    engram_stream_cancel(m->stream);
}

/* Collects up to m->limit items; the one after tells that more exist. */
void mem_page_item(engram_stream *s, const engram_node *node, void *data) {
  mem_req *m = data;
  if (m->got == m->limit) {
    m->more = 1;
    m->we_cancelled = 1;
    engram_stream_cancel(s);
    return;
  }
  json_t *o = http_memory_json(node, m->with_depth);
  if (!o || json_array_append_new(m->items, o) != 0) {
    m->failed++; /* out of memory: told like any failed item */
    return;
  }
  m->got++;
  memcpy(m->last, node->id, sizeof m->last);
}

void mem_page_error(engram_stream *s, int code, const char *message,
                    void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged once by the stream */
  ((mem_req *)data)->failed++;
}

/* How a stream ended, for the reply: 0 a complete answer, 1 cut short by
 * the deadline with something to show, or else an error already replied. */
int mem_page_status(mem_req *m, int status) {
  http_req *r = m->r;
  if (status == 0 || (status == ENGRAM_ECANCELED && m->we_cancelled))
    return 0;
  if (status == ENGRAM_ETIMEDOUT && m->got == m->limit) {
    m->more = 1; /* only the look-ahead item was late: a full page */
    return 0;
  }
  if (status == ENGRAM_ETIMEDOUT && m->got > 0)
    return 1;
  if (status == ENGRAM_ETIMEDOUT)
    http_error(r, 504, "deadline",
               "nothing was found within the request deadline (%llu ms)",
               (unsigned long long)r->srv->opts.request_timeout_ms);
  else if (status == ENGRAM_ENOTFOUND)
    http_error(r, 404, "not_found", "no memory %s in namespace \"%s\"", m->id,
               m->ns);
  else
    http_error_engram(r, status, NULL);
  return -1;
}

/* The state of a paged stream; on failure replies and releases r. */
mem_req *mem_page_new(http_req *r, const char *ns, const char *id,
                      size_t limit) {
  mem_req *m = mem_req_new(r, ns, id);
  if (!m) {
    mem_out_of_memory(r);
    return NULL;
  }
  if (!(m->items = json_array())) {
    http_error(r, 503, "unavailable", "out of memory");
    mem_req_end(m);
    return NULL;
  }
  m->limit = limit;
  return m;
}

/* Asks for limit + 1 items under the request deadline; on a refusal
 * replies and ends m. */
void mem_page_start(mem_req *m, int rc, engram_stream *s) {
  if (rc != 0) {
    mem_req_failed(m->r, m, rc);
    return;
  }
  m->stream = s;
  m->r->on_gone = stream_gone;
  engram_stream_set_deadline(s, m->r->srv->opts.request_timeout_ms);
  engram_stream_request(s, m->limit + 1);
}
