/*
 * vector_index_ns.c — one namespace's vectors in the vector index: the
 * entries, the id map, a vector_set per memory type, and applying a
 * catch-up page to them (vector_index_ns.h).
 *
 * The id map is open addressing with linear probing over entry indexes
 * (plus one; 0 is an empty slot), kept at most half full; a removal shifts
 * the following run back instead of leaving a tombstone, so lookups never
 * slow down with churn. A removed row of a set is replaced by the set's
 * last row (vector_set_remove_at): the moved row's entry learns its new
 * row through the row id, which is its entry index.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search/vector_index_ns.h"

void vi_data_init(vi_data *d, uint32_t dim) {
  memset(d, 0, sizeof *d);
  d->dim = dim;
}

void vi_data_free(vi_data *d) {
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    vector_set_free(&d->sets[t]);
  free(d->entries);
  free(d->free_entries);
  free(d->map);
  memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------ id map */

static size_t home(const vi_data *d, const char *id) {
  return (size_t)core_hash(id, ENGRAM_ID_LEN) & (d->map_cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t map_slot(const vi_data *d, const char *id) {
  size_t mask = d->map_cap - 1;
  size_t i = home(d, id);
  while (d->map[i] &&
         memcmp(d->entries[d->map[i] - 1].id, id, ENGRAM_ID_LEN) != 0)
    i = (i + 1) & mask;
  return i;
}

static int map_grow(vi_data *d) {
  size_t cap = d->map_cap ? d->map_cap * 2 : 64;
  uint32_t *old = d->map;
  size_t old_cap = d->map_cap;
  uint32_t *map = calloc(cap, sizeof *map);
  if (!map)
    return ENGRAM_ENOMEM;
  d->map = map;
  d->map_cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i])
      d->map[map_slot(d, d->entries[old[i] - 1].id)] = old[i];
  free(old);
  return 0;
}

/* The entry of id, or NULL. */
static vi_entry *find(const vi_data *d, const char *id) {
  if (!d->map_cap)
    return NULL;
  uint32_t e = d->map[map_slot(d, id)];
  return e ? &d->entries[e - 1] : NULL;
}

/* Takes slot i out, shifting back the entries of its run that would no
 * longer be found from their home slot. */
static void map_delete(vi_data *d, size_t i) {
  size_t mask = d->map_cap - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!d->map[j])
      break;
    size_t k = home(d, d->entries[d->map[j] - 1].id);
    /* The entry at j may move to i when its home is not in (i, j]. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      d->map[i] = d->map[j];
      i = j;
    }
  }
  d->map[i] = 0;
  d->map_used--;
}

/* ------------------------------------------------------------ entries */

static vi_entry *entry_new(vi_data *d, const char *id, size_t *index) {
  if ((d->map_used + 1) * 2 > d->map_cap && map_grow(d) != 0)
    return NULL;
  if (!d->nfree && d->nentries == d->entries_cap) {
    size_t cap = d->entries_cap ? d->entries_cap * 2 : 64;
    if (cap > UINT32_MAX - 1)
      return NULL;
    vi_entry *p = realloc(d->entries, cap * sizeof *p);
    if (!p)
      return NULL;
    d->entries = p;
    d->entries_cap = cap;
  }
  /* The free list can take every entry back without allocating. */
  if (d->free_cap < d->entries_cap) {
    uint32_t *f = realloc(d->free_entries, d->entries_cap * sizeof *f);
    if (!f)
      return NULL;
    d->free_entries = f;
    d->free_cap = d->entries_cap;
  }
  uint32_t e = d->nfree ? d->free_entries[--d->nfree] : (uint32_t)d->nentries++;
  vi_entry *en = &d->entries[e];
  memcpy(en->id, id, ENGRAM_ID_LEN + 1);
  en->used = 1;
  d->map[map_slot(d, id)] = e + 1;
  d->map_used++;
  *index = e;
  return en;
}

/* Takes the entry's row out of its set, fixing the moved row's entry. */
static void row_remove(vi_data *d, vi_entry *en) {
  vector_set *s = &d->sets[en->type];
  vector_set_remove_at(s, en->row);
  if (en->row < s->n)
    d->entries[s->ids[en->row]].row = en->row;
}

static void entry_remove(vi_data *d, vi_entry *en) {
  row_remove(d, en);
  map_delete(d, map_slot(d, en->id));
  en->used = 0;
  d->free_entries[d->nfree++] = (uint32_t)(en - d->entries);
}

static int all_zero(const float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++)
    if (v[i] != 0)
      return 0;
  return 1;
}

static vector_set *set_of(vi_data *d, unsigned type) {
  vector_set *s = &d->sets[type];
  if (s->dim == 0)
    vector_set_init(s, d->dim, 0); /* dim was checked: cannot fail */
  return s;
}

/* A row of a page: added, replaced, or (v NULL, a zero or unusable
 * vector) dropped. */
static int upsert(vi_data *d, const char *id, unsigned type, const float *v) {
  vi_entry *en = find(d, id);
  if (v && all_zero(v, d->dim))
    v = NULL; /* scores 0 against anything: not worth a row */
  if (!v) {
    if (en)
      entry_remove(d, en);
    return 0;
  }
  size_t index;
  if (en) {
    row_remove(d, en);
    index = (size_t)(en - d->entries);
  } else if (!(en = entry_new(d, id, &index))) {
    return ENGRAM_ENOMEM;
  }
  vector_set *s = set_of(d, type);
  int rc = vector_set_add(s, (int64_t)index, v);
  if (rc != 0) {
    /* Out of memory, or a value that is not finite: no row for it. */
    en->type = (unsigned char)type;
    en->row = 0;
    map_delete(d, map_slot(d, en->id));
    en->used = 0;
    d->free_entries[d->nfree++] = (uint32_t)index;
    return rc == ENGRAM_ENOMEM ? rc : 0;
  }
  en->type = (unsigned char)type;
  en->row = (uint32_t)(s->n - 1);
  return 0;
}

int vi_data_apply(vi_data *d, const store_vectors *page) {
  for (size_t i = 0; i < page->nremoved; i++) {
    vi_entry *en = find(d, page->removed[i]);
    if (en)
      entry_remove(d, en);
  }
  for (size_t i = 0; i < page->n; i++) {
    const float *v =
        page->has_vector[i] ? page->vectors + i * (size_t)d->dim : NULL;
    int rc = upsert(d, page->ids[i], page->type[i], v);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ------------------------------------------------------- quantization */

static int rebuild(vector_set *s, int quantized) {
  vector_set next;
  vector_set_init(&next, s->dim, quantized);
  if (vector_set_reserve(&next, s->n ? s->n : 1) != 0) {
    vector_set_free(&next);
    return ENGRAM_ENOMEM;
  }
  /* Same order, same row ids: the entries' rows stay right. */
  for (size_t i = 0; i < s->n; i++)
    vector_set_add(&next, s->ids[i], vector_set_row(s, i));
  vector_set_free(s);
  *s = next;
  return 0;
}

int vi_data_tune(vi_data *d, size_t quantize_rows) {
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++) {
    vector_set *s = &d->sets[t];
    if (s->dim == 0)
      continue;
    int want = s->quantized ? s->n >= quantize_rows / 2 : s->n >= quantize_rows;
    if (want != s->quantized && rebuild(s, want) != 0)
      return ENGRAM_ENOMEM;
  }
  return 0;
}

size_t vi_data_rows(const vi_data *d) {
  size_t n = 0;
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++)
    n += d->sets[t].n;
  return n;
}

size_t vi_data_bytes(const vi_data *d) {
  size_t bytes = d->entries_cap * sizeof(vi_entry) +
                 d->free_cap * sizeof(uint32_t) + d->map_cap * sizeof(uint32_t);
  for (int t = 0; t < ENGRAM_TYPE_COUNT; t++) {
    const vector_set *s = &d->sets[t];
    bytes += s->cap * (s->stride * sizeof(float) + sizeof(int64_t));
    if (s->quantized)
      bytes += s->cap * (s->qstride + sizeof(float));
  }
  return bytes;
}
