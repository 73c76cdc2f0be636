/*
 * pgraw.h — the raw libpq reference for the benchmarks on PostgreSQL: what
 * a careful programmer using libpq directly would write for the same work
 * as engram, on the same server, schema and data.
 *
 * It is blocking code (PQexec, PQgetResult waiting on the socket), which is
 * fine for a reference measured alone on the benchmark's main thread, and
 * it runs the SQL engram itself runs (pg_writer_add_sql, pg_search_sql),
 * so that the two sides cannot drift apart.
 */
#ifndef ENGRAM_BENCH_PGRAW_H
#define ENGRAM_BENCH_PGRAW_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Connects (blocking); exits the program with libpq's message on failure. */
PGconn *pgraw_connect(const char *conninfo);
/* Runs SQL without parameters; exits on failure. */
void pgraw_exec(PGconn *c, const char *sql);

/* "<conninfo> options='-csearch_path=<schema>'" in out (a fresh schema of
 * that name is created first, an old one dropped). */
void pgraw_schema(PGconn *admin, const char *conninfo, const char *schema,
                  char *out, size_t outlen);
void pgraw_drop_schema(PGconn *admin, const char *schema);

/* Inserts n memories of ns (content texts[i] of lens[i] bytes) with the
 * statement engram's writer runs for an ADD (memory + history row), in
 * pipeline mode, a transaction per `group` rows; returns memories/s. */
double pgraw_ingest(PGconn *c, const char *ns, const char *const *texts,
                    const size_t *lens, size_t n, size_t group);

/* The top `limit` ids for text in ns, by engram's own search SQL run as a
 * plain query (no cursor) with LIMIT; ids into ids[i] (37 bytes each).
 * Returns how many. */
size_t pgraw_search(PGconn *c, const char *ns, const char *text, size_t limit,
                    char (*ids)[37]);

#endif
