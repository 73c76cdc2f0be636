/*
 * store_walk.c — see store_walk.h.
 */
#include "store/store_walk.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static size_t slot_of(const store_walk *w, const char *id) {
  return (size_t)core_hash(id, ENGRAM_ID_LEN) & (w->nslots - 1);
}

int store_walk_seen(const store_walk *w, const char *id) {
  if (!w->nslots)
    return 0;
  for (size_t i = slot_of(w, id);; i = (i + 1) & (w->nslots - 1)) {
    size_t v = w->slots[i];
    if (v == 0)
      return 0;
    if (memcmp(w->ids[v - 1], id, ENGRAM_ID_LEN) == 0)
      return 1;
  }
}

static void slot_put(store_walk *w, size_t index) {
  size_t i = slot_of(w, w->ids[index]);
  while (w->slots[i])
    i = (i + 1) & (w->nslots - 1);
  w->slots[i] = index + 1;
}

int store_walk_add(store_walk *w, const char *id, uint32_t depth) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    void *ids = realloc(w->ids, cap * sizeof *w->ids);
    if (!ids)
      return ENGRAM_ENOMEM;
    w->ids = ids;
    uint32_t *d = realloc(w->depth, cap * sizeof *d);
    if (!d)
      return ENGRAM_ENOMEM;
    w->depth = d;
    w->cap = cap;
  }
  /* The set stays at most half full, so probes stay short. */
  if ((w->n + 1) * 2 > w->nslots) {
    size_t nslots = w->nslots ? w->nslots * 2 : 128;
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
      return ENGRAM_ENOMEM;
    free(w->slots);
    w->slots = slots;
    w->nslots = nslots;
    for (size_t i = 0; i < w->n; i++)
      slot_put(w, i);
  }
  memcpy(w->ids[w->n], id, ENGRAM_ID_LEN);
  w->ids[w->n][ENGRAM_ID_LEN] = '\0';
  w->depth[w->n] = depth;
  slot_put(w, w->n);
  w->n++;
  return 0;
}

void store_walk_free(store_walk *w) {
  free(w->ids);
  free(w->depth);
  free(w->slots);
  memset(w, 0, sizeof *w);
}
