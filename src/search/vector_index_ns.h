/*
 * vector_index_ns.h — what the vector index holds for one namespace: the
 * vectors of each memory type in a vector_set of its own, and a map from a
 * memory's id to its row (internal to src/search/vector_index*.c).
 *
 * A memory is an entry (its id, its type, its row in the set of its type);
 * the set's 64-bit row id is the entry's index, so a scan's hit leads back
 * to the memory's id, and a row moved by a removal to its entry. One set
 * per type makes a type filter exact: a search scans only the sets of the
 * wanted types. Nothing here is asynchronous; the caller guarantees that
 * no scan of a set runs while it is changed (vector.h's rule).
 */
#ifndef ENGRAM_SEARCH_VECTOR_INDEX_NS_H
#define ENGRAM_SEARCH_VECTOR_INDEX_NS_H

#include <stddef.h>
#include <stdint.h>

#include "search/vector.h"
#include "store/store.h"

typedef struct vi_entry {
  char id[ENGRAM_ID_LEN + 1];
  unsigned char type;
  unsigned char used;
  uint32_t row; /* in sets[type] */
} vi_entry;

typedef struct vi_data {
  uint32_t dim;
  vector_set sets[ENGRAM_TYPE_COUNT];
  vi_entry *entries;
  size_t nentries, entries_cap; /* entries ever handed out, room */
  uint32_t *free_entries;       /* indexes of unused entries */
  size_t nfree, free_cap;
  uint32_t *map; /* open addressing: entry index + 1, 0 empty */
  size_t map_cap, map_used;
} vi_data;

/* An empty namespace of dim-float vectors (no allocation). */
void vi_data_init(vi_data *d, uint32_t dim);
void vi_data_free(vi_data *d);

/* Applies one catch-up page: the removed ids, then each row (a row with a
 * vector of the space is added or replaced, a row without one dropped).
 * 0 or ENGRAM_ENOMEM (the page is then partly applied: the caller reads it
 * again). */
int vi_data_apply(vi_data *d, const store_vectors *page);

/* Keeps an int8 copy of a set's rows from quantize_rows rows on, and drops
 * it below half that. 0 or ENGRAM_ENOMEM (the set is then unchanged). */
int vi_data_tune(vi_data *d, size_t quantize_rows);

/* The id of the memory of a set's row id (a scan's hit). */
static inline const char *vi_data_id(const vi_data *d, int64_t row_id) {
  return d->entries[row_id].id;
}

size_t vi_data_rows(const vi_data *d);
/* Memory held, approximately (rows allocated, entries, map). */
size_t vi_data_bytes(const vi_data *d);

#endif
