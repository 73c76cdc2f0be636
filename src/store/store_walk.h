/*
 * store_walk.h — what a breadth-first walk over relationships remembers,
 * shared by every backend's traverse stream: the FIFO of discovered ids
 * (each with its depth, in discovery order, which is breadth-first order)
 * and the visited set over it (open addressing; slot = FIFO index + 1,
 * 0 = empty). It grows with the memories reached, never with the edges.
 * Plain data, no I/O; owned by its traverse cursor.
 */
#ifndef ENGRAM_STORE_WALK_H
#define ENGRAM_STORE_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "engram.h"

typedef struct store_walk {
  char (*ids)[ENGRAM_ID_LEN + 1]; /* the FIFO, NUL-terminated ids */
  uint32_t *depth;                /* depth[i]: hops from the start to ids[i] */
  size_t n, cap;
  size_t *slots;
  size_t nslots;
} store_walk;

/* 1 when id (ENGRAM_ID_LEN bytes) was discovered already. */
int store_walk_seen(const store_walk *w, const char *id);
/* Appends id, not yet seen, at depth. 0 or ENGRAM_ENOMEM (nothing added). */
int store_walk_add(store_walk *w, const char *id, uint32_t depth);
/* Frees the arrays; w is empty again. */
void store_walk_free(store_walk *w);

#endif
