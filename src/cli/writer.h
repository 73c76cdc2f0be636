/*
 * writer.h — batched, pipelined writes for bulk loading (import).
 *
 * Ops are gathered into batches (one engram_write each, one transaction)
 * and up to `inflight` batches are committing at once; adding an op when
 * every slot is busy runs the loop until one frees, which bounds memory
 * and keeps the storage busy while the next batch is read and parsed.
 *
 * Every op carries where it came from ("FILE:LINE"), so a failure is
 * reported as "FILE:LINE: reason" on stderr, counted, and the rest goes
 * on: an op the library refuses is taken out of its batch and the batch
 * resubmitted; a batch that fails at commit (all or nothing) is retried op
 * by op so that only the bad ones are lost.
 */
#ifndef ENGRAM_CLI_WRITER_H
#define ENGRAM_CLI_WRITER_H

#include "cli.h"

typedef struct cli_writer cli_writer;

cli_writer *writer_new(cli *c, size_t batch, unsigned inflight);

/* Queues a copy of op (an ADD, NUL-terminated strings). file (must outlive
 * the writer) and where (copied) locate it for messages. keep is released
 * (json_decref) and own_a, own_b freed once the op's batch is submitted:
 * they hold what op's strings point into. Returns 0, or -1 when the loop
 * broke down (printed). */
int writer_add(cli_writer *w, const engram_op *op, const char *file,
               const char *where, json_t *keep, void *own_a, void *own_b);

/* Submits what is queued and waits for every batch to finish. */
int writer_finish(cli_writer *w);

/* Counters: memories stored, found already present (dedup), failed. */
uint64_t writer_added(const cli_writer *w);
uint64_t writer_existing(const cli_writer *w);
uint64_t writer_failed(const cli_writer *w);

void writer_free(cli_writer *w);

#endif
