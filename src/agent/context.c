/*
 * context.c — context injection: the step an agent runs before every reply.
 *
 * A search stream of the namespace (hybrid by default where the store has
 * it: the turns around a match often hold the answer; note that hybrid
 * ranks only once the store has answered, so a deadline that passes
 * before then returns nothing, where lexical returns the best memories
 * that streamed in) feeds a collect-with-deadline of max_memories items:
 * demand is exactly what the prompt can use, the search
 * is cancelled the moment enough memories arrived, and when the deadline
 * passes first the search is cancelled too (its statement interrupted) and
 * the memories that arrived in time are formatted all the same. Nothing here
 * waits: every step is a callback on the loop.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/core.h"
#include "engram_internal.h"

#define DEFAULT_MAX_MEMORIES 10u
#define DEFAULT_TIMEOUT_MS 250u
#define DEFAULT_MAX_CHARS 2000u
#define MAX_MAX_MEMORIES 1000u

struct engram_context_req {
  engram_collect *collect;
  engram_context_options opts;
  engram_context_cb cb;
  void *data;
  uint64_t started_ns;
};

/* Byte length of the first max_chars characters of p[0..n). */
static size_t prefix_chars(const char *p, size_t n, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < n; i++) {
    if (((unsigned char)p[i] & 0xc0u) != 0x80u) {
      if (chars == max_chars)
        return i;
      chars++;
    }
  }
  return n;
}

static void format_time(int64_t ms, char out[32]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%d %H:%M UTC", &tm);
}

/* One memory: "- [type, time] content", continuation lines indented so a
 * memory can never pass for a new list item or header. */
static void format_memory(buf *b, const engram_node *n, size_t max_chars) {
  char when[32];
  format_time(n->created_ms, when);
  const char *type = engram_type_name(n->type);
  buf_printf(b, "- [%s, %s] ", type ? type : "memory", when);
  size_t keep = prefix_chars(n->content, n->content_len, max_chars);
  const char *p = n->content;
  for (size_t i = 0; i < keep; i++) {
    if (p[i] == '\n')
      buf_adds(b, "\n  ");
    else if (p[i] != '\r')
      buf_add(b, p + i, 1);
  }
  if (keep < n->content_len)
    buf_adds(b, " [...cut]");
  buf_adds(b, "\n");
}

static void on_collected(int status, engram_node **nodes, size_t n,
                         uint64_t failed, void *data) {
  engram_context_req *req = data;
  engram_context_result r;
  memset(&r, 0, sizeof r);
  r.status = status;
  if (status == ENGRAM_ETIMEDOUT) {
    r.status = 0;
    r.timed_out = 1;
  }
  r.failed = failed;

  buf text;
  buf_init(&text);
  const char **ids = calloc(n ? n : 1, sizeof *ids);
  double sum = 0;
  if (n > 0 && !req->opts.no_headers)
    buf_adds(&text, "## Relevant memories\n");
  for (size_t i = 0; i < n; i++) {
    format_memory(&text, nodes[i], req->opts.max_memory_chars);
    sum += nodes[i]->relevance;
    if (ids)
      ids[i] = nodes[i]->id;
  }
  if (text.oom || !ids) {
    r.status = ENGRAM_ENOMEM;
    n = 0;
  }
  r.text = text.data && !text.oom ? text.data : "";
  r.text_len = text.oom ? 0 : text.len;
  r.count = n;
  r.ids = ids;
  r.mean_relevance = n ? sum / (double)n : 0.0;
  r.elapsed_ms = (double)(uv_hrtime() - req->started_ns) / 1e6;
  req->cb(&r, req->data);
  buf_free(&text);
  free(ids);
  free(req);
}

static int fill_options(engram *eg, engram_context_options *o,
                        const engram_context_options *in) {
  if (in)
    *o = *in;
  else
    memset(o, 0, sizeof *o);
  if (o->max_memories == 0)
    o->max_memories = DEFAULT_MAX_MEMORIES;
  if (o->timeout_ms == 0)
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
  if (o->max_memory_chars == 0)
    o->max_memory_chars = DEFAULT_MAX_CHARS;
  if (o->max_memories > MAX_MAX_MEMORIES)
    return ENGRAM_EINVAL;
  if (o->timeout_ms > 3600u * 1000u)
    return ENGRAM_EINVAL;
  if (o->strategy == ENGRAM_STRATEGY_DEFAULT)
    o->strategy = engram_search_has_hybrid(eg) ? ENGRAM_STRATEGY_HYBRID
                                               : ENGRAM_STRATEGY_LEXICAL;
  if (o->strategy != ENGRAM_STRATEGY_LEXICAL &&
      o->strategy != ENGRAM_STRATEGY_HYBRID)
    return ENGRAM_EINVAL;
  if (!(o->min_relevance >= 0.0 && o->min_relevance <= 1.0))
    return ENGRAM_EINVAL;
  return 0;
}

int engram_context_inject(engram *eg, const char *ns, const char *message,
                          const engram_context_options *opts,
                          engram_context_cb cb, void *data,
                          engram_context_req **out) {
  if (!eg || !message || !cb)
    return ENGRAM_EINVAL;
  engram_context_req *req = calloc(1, sizeof *req);
  if (!req)
    return ENGRAM_ENOMEM;
  int rc = fill_options(eg, &req->opts, opts);
  if (rc != 0) {
    free(req);
    return rc;
  }
  req->cb = cb;
  req->data = data;
  req->started_ns = uv_hrtime();

  engram_query q = {.ns = ns,
                    .text = message,
                    .types = req->opts.types,
                    .min_relevance = req->opts.min_relevance,
                    .strategy = req->opts.strategy,
                    .options = req->opts.search};
  engram_stream *s;
  rc = engram_search(eg, &q, NULL, &s);
  if (rc != 0) {
    free(req);
    return rc;
  }
  rc = engram_collect_start(s, req->opts.max_memories, req->opts.timeout_ms,
                            on_collected, req, &req->collect);
  if (rc != 0) {
    engram_stream_cancel(s); /* no consumer: its done goes nowhere */
    free(req);
    return rc;
  }
  if (out)
    *out = req;
  return 0;
}

void engram_context_cancel(engram_context_req *req) {
  if (req)
    engram_collect_cancel(req->collect);
}
