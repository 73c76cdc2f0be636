/*
 * node.c — memory nodes outside the store: names of types and events, and
 * the single-allocation layout of a node (a consumer's copy, and the
 * backends' decoded rows).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const char *const type_names[ENGRAM_TYPE_COUNT] = {
    "episodic", "semantic", "procedural", "working"};

const char *engram_type_name(engram_type type) {
  if ((unsigned)type >= ENGRAM_TYPE_COUNT)
    return NULL;
  return type_names[type];
}

int engram_type_parse(const char *name, engram_type *out) {
  if (!name)
    return ENGRAM_EINVAL;
  for (unsigned i = 0; i < ENGRAM_TYPE_COUNT; i++)
    if (strcmp(name, type_names[i]) == 0) {
      *out = (engram_type)i;
      return 0;
    }
  return ENGRAM_EINVAL;
}

const char *engram_event_name(engram_event event) {
  switch (event) {
  case ENGRAM_EVENT_ADD:
    return "add";
  case ENGRAM_EVENT_UPDATE:
    return "update";
  case ENGRAM_EVENT_DELETE:
    return "delete";
  }
  return "unknown";
}

/* Layout: the struct, the float embedding (aligned), then the strings
 * ns, content, metadata and the embedder's name, each NUL-terminated. */
engram_node *core_node_pack(const engram_node *view, const void *vector) {
  size_t ns_len = view->ns ? strlen(view->ns) : 0;
  size_t md_len = view->metadata ? strlen(view->metadata) : 2;
  size_t emb = (size_t)view->embedding_dim * sizeof(float);
  size_t er_len = emb && view->embedder ? strlen(view->embedder) + 1 : 0;
  size_t size = sizeof *view + emb + ns_len + 1 + view->content_len + 1 +
                md_len + 1 + er_len;
  engram_node *c = malloc(size);
  if (!c)
    return NULL;
  *c = *view;
  char *p = (char *)(c + 1);
  c->embedding = NULL;
  if (emb) {
    if (vector)
      memcpy(p, vector, emb);
    c->embedding = (const float *)(void *)p;
    p += emb;
  }
  memcpy(p, view->ns ? view->ns : "", ns_len + 1);
  c->ns = p;
  p += ns_len + 1;
  if (view->content_len)
    memcpy(p, view->content, view->content_len);
  p[view->content_len] = '\0';
  c->content = p;
  p += view->content_len + 1;
  memcpy(p, view->metadata ? view->metadata : "{}", md_len + 1);
  c->metadata = p;
  p += md_len + 1;
  c->embedder = NULL;
  if (er_len) {
    memcpy(p, view->embedder, er_len);
    c->embedder = p;
  }
  return c;
}

engram_node *engram_node_copy(const engram_node *n) {
  if (!n)
    return NULL;
  engram_node view = *n;
  if (!n->embedding)
    view.embedding_dim = 0;
  return core_node_pack(&view, n->embedding);
}

int core_node_vector_check(const char *id, size_t bytes, int64_t *dim,
                           char *msg, size_t msglen) {
  if (bytes == 0) {
    *dim = 0;
    return 0;
  }
  if (*dim <= 0 || *dim > 65536 || (size_t)*dim * sizeof(float) != bytes) {
    snprintf(msg, msglen,
             "memory %s has an embedding of %zu bytes for dimension %lld", id,
             bytes, (long long)*dim);
    return ENGRAM_ECORRUPT;
  }
  return 0;
}

void engram_node_free(engram_node *n) { free(n); }
