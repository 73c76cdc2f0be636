/*
 * node.c — memory nodes outside the store: names of types and events, and
 * the single-allocation copy a consumer makes to keep a node.
 */
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

/* Layout of a copy: the struct, the float embedding (aligned), then the
 * strings ns, content, metadata, each NUL-terminated. */
engram_node *engram_node_copy(const engram_node *n) {
  if (!n)
    return NULL;
  size_t ns_len = n->ns ? strlen(n->ns) : 0;
  size_t md_len = n->metadata ? strlen(n->metadata) : 2;
  size_t emb = n->embedding ? (size_t)n->embedding_dim * sizeof(float) : 0;
  size_t er_len = emb && n->embedder ? strlen(n->embedder) + 1 : 0;
  size_t size = sizeof *n + emb + ns_len + 1 + n->content_len + 1 + md_len +
                1 + er_len;
  engram_node *c = malloc(size);
  if (!c)
    return NULL;
  *c = *n;
  char *p = (char *)(c + 1);
  if (emb) {
    memcpy(p, n->embedding, emb);
    c->embedding = (const float *)(void *)p;
    p += emb;
  } else {
    c->embedding = NULL;
    c->embedding_dim = 0;
  }
  memcpy(p, n->ns ? n->ns : "", ns_len + 1);
  c->ns = p;
  p += ns_len + 1;
  if (n->content_len)
    memcpy(p, n->content, n->content_len);
  p[n->content_len] = '\0';
  c->content = p;
  p += n->content_len + 1;
  memcpy(p, n->metadata ? n->metadata : "{}", md_len + 1);
  c->metadata = p;
  p += md_len + 1;
  c->embedder = NULL;
  if (er_len) {
    memcpy(p, n->embedder, er_len);
    c->embedder = p;
  }
  return c;
}

void engram_node_free(engram_node *n) { free(n); }
