/*
 * tu.h — test utilities shared by the test programs: scratch paths, and
 * synchronous wrappers that run the loop until one operation completes
 * (tests only: the library itself never waits).
 */
#ifndef ENGRAM_TU_H
#define ENGRAM_TU_H

#include <stddef.h>

#include "engram.h"

/* A fresh path for a database: $ENGRAM_TEST_TMP/<name>-<pid>-<n>.db (old
 * files removed). Returns a static buffer. */
const char *tu_db_path(const char *name);

/* Opens a handle on its own loop; fails the test on error. wrap, when not
 * NULL, is applied to the store stack before opening (engram_wrap_store). */
engram *tu_open(const char *path, const engram_options *opts);
/* Same, with every stream item delayed by delay_ms (the delay store). */
engram *tu_open_delayed(const char *path, const engram_options *opts,
                        uint64_t delay_ms);
/* Closes and frees; fails the test if the close callback never ran. */
void tu_close(engram *eg);

/* Runs the loop until *flag != 0 (or the loop has nothing left to do). */
void tu_run_until(engram *eg, const int *flag);

/* Adds one memory and returns its id in out; returns the write status. */
int tu_add(engram *eg, const char *ns, const char *content, engram_type type,
           char out[ENGRAM_ID_LEN + 1]);
/* Adds n memories with content make(i) in batches; returns 0 or an error. */
int tu_add_many(engram *eg, const char *ns, size_t n,
                const char *(*make)(size_t i, void *arg), void *arg);

/* Number of memories in ns (by listing). */
size_t tu_count(engram *eg, const char *ns);

#endif
