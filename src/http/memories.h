/*
 * memories.h — what the native memory routes share (routes_memories.c,
 * routes_relationships.c, mem_req.c only).
 *
 * A route that starts store work allocates one mem_req, hands it to the
 * store as callback data, and returns; the callback replies (unless the
 * client is gone) and ends the mem_req, which releases the http_req exactly
 * once. Paged streams (list, traverse) ask for one item more than the page
 * holds, so they know whether a next page exists, then cancel.
 */
#ifndef ENGRAM_HTTP_MEMORIES_H
#define ENGRAM_HTTP_MEMORIES_H

#include "http/http.h"

#define NS_CAP 1024 /* larger than any valid namespace: too long is 400 */

/* One route's async state. Owned by the route until mem_req_end, which
 * also releases the http_req. */
typedef struct mem_req {
  http_req *r;
  char *ns; /* a copy, for the callbacks' messages and follow-up calls */
  char id[ENGRAM_ID_LEN + 1];
  int is_batch;
  /* streams */
  int with_depth;        /* traverse: items carry their depth */
  engram_stream *stream; /* until its done callback */
  json_t *items;         /* the memories of the page so far */
  size_t limit;          /* the page size; the stream is asked for one more */
  size_t got;
  int more;         /* an item past the limit arrived */
  int we_cancelled; /* we stopped the stream: it has what we need */
  uint64_t failed;  /* per-item errors the stream reported */
  char last[ENGRAM_ID_LEN + 1];
} mem_req;

/* A mem_req for r (ns and id copied when not NULL); NULL out of memory. */
mem_req *mem_req_new(http_req *r, const char *ns, const char *id);
/* The memory of a by-id route: the id from the path (":id"), the
 * namespace from ?ns=. On a bad id or namespace, or out of memory, it has
 * replied and released r, and returns NULL. */
mem_req *mem_req_for_id(http_req *r);
/* Releases the http_req (exactly once) and frees m. */
void mem_req_end(mem_req *m);
/* A start function refused (it will not call back): reply and end. */
void mem_req_failed(http_req *r, mem_req *m, int rc);
/* Replies 503 and releases r (no mem_req was made). */
void mem_out_of_memory(http_req *r);

/* "ns" from the body, required, and allowed for the caller's key. */
int mem_body_ns(http_req *r, const char **ns);
/* Replies 400 for the first key of obj not in allowed (NULL-ended). */
int mem_only_fields(http_req *r, json_t *obj, const char *where,
                    const char *const *allowed);

/* Replies for a write that failed, naming the op of a batch. */
void mem_write_error(http_req *r, int status, const engram_op *ops, size_t n,
                     int is_batch);
/* Starts a write of ops for m; on a refusal replies and ends m. */
void mem_start_write(mem_req *m, engram_op *ops, size_t n, engram_write_cb cb);
/* engram_get's callback: replies the memory, 404 or the error; ends m. */
void mem_got_memory(int status, const engram_node *node, void *data);

/* Paged streams. mem_page_new makes the state (on failure replies and
 * releases r); mem_page_item and mem_page_error are the stream's item and
 * error callbacks; mem_page_start asks for limit + 1 items under the
 * request deadline (on a refusal, rc != 0, replies and ends m). */
mem_req *mem_page_new(http_req *r, const char *ns, const char *id,
                      size_t limit);
void mem_page_item(engram_stream *s, const engram_node *node, void *data);
void mem_page_error(engram_stream *s, int code, const char *message,
                    void *data);
void mem_page_start(mem_req *m, int rc, engram_stream *s);
/* How a stream ended, for the reply: 0 a complete answer, 1 cut short by
 * the deadline with something to show, or else an error already replied. */
int mem_page_status(mem_req *m, int status);

#endif
