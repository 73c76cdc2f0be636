/*
 * engram_internal.h — what the layers below the public API may ask of a
 * handle (internal): its runtime, its options, and the store stack, which
 * tests can wrap in a decorator (e.g. the delay store) before opening.
 */
#ifndef ENGRAM_INTERNAL_H
#define ENGRAM_INTERNAL_H

#include "engram.h"
#include "rt/rt.h"
#include "store/store.h"

rt *engram_rt(engram *eg);
const engram_options *engram_opts(engram *eg);
/* Replaces the handle's store with wrap(current store); only before
 * engram_open. The wrapper owns the store it wraps. Statistics keep coming
 * from the innermost (real) store. */
int engram_wrap_store(engram *eg, store *(*wrap)(store *inner, void *arg),
                      void *arg);

/* 1 when the store stack can run hybrid searches (SQLite today). */
int engram_search_has_hybrid(engram *eg);

#endif
