/*
 * json_memory.c — a memory as the native API shows it: the one JSON shape
 * of a memory that the memory, relationship and search routes answer with
 * (the search routes add its relevance).
 */
#include <stdio.h>

#include "http/http.h"

json_t *http_memory_json(const engram_node *n, int with_depth) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)n->content_hash);
  json_t *md = n->metadata ? json_loads(n->metadata, 0, NULL) : NULL;
  if (!md)
    md = json_object(); /* stored metadata is checked to be an object */
  const char *type = engram_type_name(n->type);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s%, s:f, s:o, s:I, s:I, s:I, s:s}",
                        "id", n->id, "ns", n->ns ? n->ns : "", "type",
                        type ? type : "episodic", "content", n->content,
                        n->content_len, "importance", n->importance, "metadata",
                        md, "created_ms", (json_int_t)n->created_ms,
                        "updated_ms", (json_int_t)n->updated_ms, "accessed_ms",
                        (json_int_t)n->accessed_ms, "content_hash", hex);
  if (o && with_depth)
    json_object_set_new(o, "depth", json_integer(n->depth));
  return o;
}
