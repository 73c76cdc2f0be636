/*
 * testloop.h — running a libuv loop from a test: for a while, until a
 * condition holds, or dry and closed. Test-only; nothing here may appear on
 * a request path of the library (tests may wait, the library never does).
 */
#ifndef ENGRAM_TESTLOOP_H
#define ENGRAM_TESTLOOP_H

#include <stdint.h>
#include <uv.h>

/* Runs loop for ms milliseconds of loop time; whatever is due runs meanwhile.
 */
void tl_run_for(uv_loop_t *loop, uint64_t ms);

/* Runs loop until cond(arg) holds or timeout_ms of wall time passed; returns
 * cond(arg). A 1 ms guard timer keeps each step from blocking for ever. */
int tl_run_until(uv_loop_t *loop, int (*cond)(void *arg), void *arg,
                 uint64_t timeout_ms);

/* Calls cb(data) once, ms from now, from a timer that then frees itself. */
void tl_after(uv_loop_t *loop, uint64_t ms, void (*cb)(void *data), void *data);

/* Runs loop dry, closes any handle still open (*leftover: how many; a clean
 * test leaves none), runs it dry again and returns uv_loop_close()'s result. */
int tl_loop_finish(uv_loop_t *loop, int *leftover);

#endif
