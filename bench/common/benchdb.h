/*
 * benchdb.h — setting up an engram database for a benchmark that owns its
 * loop: a scratch directory, opening, filling with corpus sentences and
 * closing. Each helper runs the loop from the benchmark's main thread until
 * its operation completes (never from a callback), so the loop may hold
 * other handles of the benchmark's own.
 */
#ifndef BENCH_BENCHDB_H
#define BENCH_BENCHDB_H

#include <stddef.h>

#include "corpus.h"
#include "engram.h"

/* Makes a fresh directory <tmp>/engram-<tag>-XXXXXX, where <tmp> is
 * $ENGRAM_BENCH_TMP (scripts/bench.sh sets it), else $TMPDIR, else /tmp,
 * and writes its path in out. 0, or -1 with errno set. */
int benchdb_mkdir(const char *tag, char *out, size_t cap);
/* Removes path/engram.db (and its -wal, -shm) and the directory path. */
void benchdb_rmdir(const char *path);

/* Opens eg (engram_open) and runs its loop until the open completed.
 * 0 or the open's error, printed to stderr. */
int benchdb_open(engram *eg);
/* Adds n corpus sentences to ns as memories of type `type`, batch ops per
 * write and up to 4 writes in flight (so group commit has something to
 * group). 0 or the first error, printed to stderr. */
int benchdb_fill(engram *eg, const char *ns, engram_type type, corpus *c,
                 size_t n, size_t batch);
/* Closes eg and runs its loop until the close completed (eg is not freed). */
void benchdb_close(engram *eg);

#endif
