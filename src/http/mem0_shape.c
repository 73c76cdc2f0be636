/*
 * mem0_shape.c — memories in mem0's JSON shape, and mem0's ids in engram's
 * metadata.
 *
 * engram keeps a memory's mem0 ids (user_id, agent_id, app_id, run_id) and
 * the message's role in its metadata under the reserved key RESERVED. This
 * file writes that metadata (mem0_stored_metadata), splits it back into
 * the caller's part and the ids (mem0_view), and renders a memory as
 * mem0's client expects it (mem0_memory_json), ISO-8601 times included.
 * The routes in routes_mem0.c use it for every answer that holds a memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/mem0.h"
/* ------------------------------------------------------ memory as JSON */

void mem0_view_free(mem0_view *v) {
  json_decref(v->md);
  json_decref(v->ids);
}

int mem0_view_init(mem0_view *v, const engram_node *n) {
  memset(v, 0, sizeof *v);
  v->md = n->metadata ? json_loads(n->metadata, 0, NULL) : NULL;
  if (!json_is_object(v->md)) {
    json_decref(v->md);
    v->md = json_object();
    if (!v->md)
      return 0;
  }
  json_t *ids = json_object_get(v->md, RESERVED);
  if (json_is_object(ids)) {
    v->ids = json_incref(ids);
    json_object_del(v->md, RESERVED);
    for (int e = 0; e < E_COUNT; e++)
      v->id[e] = json_string_value(json_object_get(ids, mem0_entity_field[e]));
    v->role = json_string_value(json_object_get(ids, "role"));
  }
  /* The namespace names the memory's first entity, whatever the metadata
   * says (a memory added through the native API has no mem0 ids). */
  for (int e = 0; e < E_COUNT && n->ns; e++) {
    size_t kl = strlen(mem0_entity_kind[e]);
    if (strncmp(n->ns, mem0_entity_kind[e], kl) == 0 && n->ns[kl] == ':' &&
        n->ns[kl + 1]) {
      v->id[e] = n->ns + kl + 1;
      break;
    }
  }
  return 1;
}

json_t *mem0_iso_time(int64_t ms) {
  int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  time_t t = (time_t)sec;
  struct tm tm;
  char day[32], out[48];
  if (!gmtime_r(&t, &tm) ||
      strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    return json_null();
  snprintf(out, sizeof out, "%s.%03dZ", day, (int)(ms - sec * 1000));
  return json_string(out);
}

json_t *mem0_str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

/* The entity ids of v as user_id, agent_id, app_id, run_id of o. */
void mem0_set_ids(json_t *o, const mem0_view *v) {
  for (int e = 0; e < E_COUNT; e++)
    json_object_set_new(o, mem0_entity_field[e], mem0_str_or_null(v->id[e]));
}

/* A memory in mem0's shape; with_score: a search result. NULL when out of
 * memory. */
json_t *mem0_memory_json(const engram_node *n, int with_score) {
  mem0_view v;
  if (!mem0_view_init(&v, n))
    return NULL;
  char hash[17];
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)n->content_hash);
  const char *type = engram_type_name(n->type);
  json_t *o =
      json_pack("{s:s, s:s%, s:s, s:O, s:[], s:o, s:o, s:s, s:n}", "id", n->id,
                "memory", n->content, n->content_len, "hash", hash, "metadata",
                v.md, "categories", "created_at", mem0_iso_time(n->created_ms),
                "updated_at", mem0_iso_time(n->updated_ms), "memory_type",
                type ? type : "episodic", "expiration_date");
  if (o) {
    mem0_set_ids(o, &v);
    if (v.role)
      json_object_set_new(o, "role", json_string(v.role));
    if (with_score)
      json_object_set_new(o, "score", json_real(n->relevance));
  }
  mem0_view_free(&v);
  return o;
}

/* The metadata a memory is written with: the caller's object and the
 * reserved mem0 ids. The caller frees the text. */
char *mem0_stored_metadata(json_t *user_md, const char *const ids[E_COUNT],
                           const char *role) {
  json_t *md = user_md ? json_deep_copy(user_md) : json_object();
  json_t *m = json_object();
  char *text = NULL;
  if (md && m) {
    for (int e = 0; e < E_COUNT; e++)
      if (ids[e])
        json_object_set_new(m, mem0_entity_field[e], json_string(ids[e]));
    if (role)
      json_object_set_new(m, "role", json_string(role));
    json_object_set(md, RESERVED, m);
    text = json_dumps(md, JSON_COMPACT);
  }
  json_decref(m);
  json_decref(md);
  return text;
}
