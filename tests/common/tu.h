/*
 * tu.h — test utilities shared by the test programs: scratch paths, and
 * synchronous wrappers that run the loop until one operation completes
 * (tests only: the library itself never waits).
 */
#ifndef ENGRAM_TU_H
#define ENGRAM_TU_H

#include <stddef.h>

#include "engram.h"

/*
 * The backend under test. The storage tests run unchanged on both:
 *  - SQLite (default): files under $ENGRAM_TEST_TMP;
 *  - PostgreSQL when ENGRAM_TEST_BACKEND=pg (ctest's <name>_pg tests): the
 *    server named by ENGRAM_TEST_PG, a libpq conninfo or the path of a file
 *    holding one (ctest's fixture writes <build>/pg/conninfo). Each
 *    tu_db_path() is a schema of its own there, so each is an isolated
 *    engram database as a fresh file is on SQLite.
 * "off" in ENGRAM_TEST_PG (ENGRAM_TEST_PG=off, set by a person) skips the
 * PostgreSQL tests, saying so; nothing else does.
 */
#define TU_SKIP 77 /* a program's exit code for "skipped" (ctest's) */

/* 1 when the tests run on PostgreSQL. */
int tu_backend_is_pg(void);

/* For main(), first thing: 0 when the backend under test can be used;
 * otherwise prints why not and returns the program's exit code: TU_SKIP on
 * PostgreSQL when ENGRAM_TEST_PG is off or unset, 1 when it names a file
 * that is not there (the server was not started). Also applies the case
 * filters a person may set when chasing one failure: ENGRAM_TEST_ONLY and
 * ENGRAM_TEST_SKIP, cmocka patterns of case names (`*` and `?`). */
int tu_backend_check(void);

/* The PostgreSQL server's conninfo as given (ENGRAM_TEST_PG, read from its
 * file), or NULL when it is off or unset. */
const char *tu_pg_base(void);

/* A fresh database named after name (a static buffer, valid until the next
 * call). SQLite: $ENGRAM_TEST_TMP/<name>-<pid>-<n>.db, old files removed.
 * PostgreSQL: a new empty schema <name>_<pid>_<n> (made with blocking
 * libpq: tests may block, the library never), returned as the base
 * conninfo plus options='-csearch_path=<schema>'. */
const char *tu_db_path(const char *name);

/* Inside a test case that checks SQLite file semantics (paths, file
 * contents, PRAGMA user_version, WAL, file locks): on PostgreSQL prints
 * "skipped on PostgreSQL: <reason>" and skips the case (cmocka's skip()). */
void tu_skip_unless_sqlite(const char *reason);

/* Runs sql (one or more statements) on the PostgreSQL database db (a
 * tu_db_path() result: in its schema), blocking; fails the test on error. */
void tu_pg_exec(const char *db, const char *sql);

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

/* engram_preload(ns) run to its callback (exactly one, never inside the
 * call); returns its status. */
int tu_preload(engram *eg, const char *ns);

/* Adds one memory and returns its id in out; returns the write status. */
int tu_add(engram *eg, const char *ns, const char *content, engram_type type,
           char out[ENGRAM_ID_LEN + 1]);
/* Adds n memories with content make(i) in batches; returns 0 or an error. */
int tu_add_many(engram *eg, const char *ns, size_t n,
                const char *(*make)(size_t i, void *arg), void *arg);

/* Number of memories in ns (by listing). */
size_t tu_count(engram *eg, const char *ns);

#endif
