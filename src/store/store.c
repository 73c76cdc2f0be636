/*
 * store.c — what every backend shares: the statistics of group commits.
 */
#include "store/store.h"

void store_count_group(store *st, uint64_t ops) {
  unsigned i = 0;
  for (uint64_t limit = 1; i + 1 < ENGRAM_BATCH_BUCKETS && ops > limit;
       limit *= 4)
    i++;
  st->write_batches++;
  st->writes_committed += ops;
  st->write_batch_sizes[i]++;
}
