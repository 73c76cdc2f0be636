/*
 * pgraw.c — see pgraw.h.
 */
#include "pgraw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engram.h"
#include "stats.h"
#include "store/pg/pg_internal.h"

static void fail(PGconn *c, const char *what) {
  fprintf(stderr, "bench (raw libpq): %s: %s\n", what,
          c ? PQerrorMessage(c) : "out of memory");
  exit(1);
}

/* Notices ("schema ... does not exist, skipping") are not results. */
static void quiet(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

PGconn *pgraw_connect(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  if (!c || PQstatus(c) != CONNECTION_OK)
    fail(c, "connecting");
  PQsetNoticeProcessor(c, quiet, NULL);
  /* As engram's own search sessions: compiling the search with JIT costs
   * more than running it. */
  pgraw_exec(c, "SET jit = off");
  return c;
}

void pgraw_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail(c, sql);
  PQclear(r);
}

void pgraw_schema(PGconn *admin, const char *conninfo, const char *schema,
                  char *out, size_t outlen) {
  char sql[256];
  pgraw_drop_schema(admin, schema);
  snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
  pgraw_exec(admin, sql);
  snprintf(out, outlen, "%s options='-csearch_path=%s'", conninfo, schema);
}

void pgraw_drop_schema(PGconn *admin, const char *schema) {
  char sql[256];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
  pgraw_exec(admin, sql);
}

/* Reads every result of the pipeline up to and including its sync. */
static void drain_sync(PGconn *c) {
  for (;;) {
    PGresult *r = PQgetResult(c);
    if (!r)
      continue; /* end of one command's results */
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      return;
    }
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      fail(c, "a pipelined command");
    PQclear(r);
  }
}

double pgraw_ingest(PGconn *c, const char *ns, const char *const *texts,
                    const size_t *lens, size_t n, size_t group) {
  PGresult *r = PQprepare(c, "raw_add", pg_writer_add_sql, 11, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail(c, "preparing the ADD statement");
  PQclear(r);
  if (!PQenterPipelineMode(c))
    fail(c, "entering pipeline mode");
  uint64_t t0 = stats_now_ns();
  for (size_t i = 0; i < n;) {
    if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
      fail(c, "BEGIN");
    size_t end = i + group < n ? i + group : n;
    for (; i < end; i++) {
      char id[ENGRAM_ID_LEN + 1], hash[24], at[24];
      engram_id_new(id);
      snprintf(hash, sizeof hash, "%lld",
               (long long)(int64_t)XXH3_64bits(texts[i], lens[i]));
      snprintf(at, sizeof at, "%lld", (long long)(stats_now_ns() / 1000000));
      const char *values[11] = {id, ns,   "0", texts[i], hash, at,
                                "0.5", "{}", NULL, "0", NULL};
      if (!PQsendQueryPrepared(c, "raw_add", 11, values, NULL, NULL, 0))
        fail(c, "sending an ADD");
    }
    if (!PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(c))
      fail(c, "COMMIT");
    drain_sync(c);
  }
  double s = (double)(stats_now_ns() - t0) / 1e9;
  if (!PQexitPipelineMode(c))
    fail(c, "leaving pipeline mode");
  return (double)n / s;
}

size_t pgraw_search(PGconn *c, const char *ns, const char *text, size_t limit,
                    char (*ids)[37]) {
  char *words = NULL;
  size_t nwords = 0;
  if (pg_search_words(text, strlen(text), &words, &nwords) != 0)
    fail(NULL, "building the search words");
  if (nwords == 0) {
    free(words);
    return 0; /* no word: engram answers nothing without asking */
  }
  static char *sql;
  static size_t sql_limit;
  if (!sql || sql_limit != limit) {
    free(sql);
    size_t len = strlen(pg_search_sql) + 32;
    sql = malloc(len);
    if (!sql)
      fail(NULL, "the search SQL");
    snprintf(sql, len, "%s LIMIT %zu", pg_search_sql, limit);
    sql_limit = limit;
  }
  const char *values[4] = {ns, words, "0", "0"};
  PGresult *r = PQexecParams(c, sql, 4, NULL, values, NULL, NULL, 0);
  free(words);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    fail(c, "the search");
  size_t got = (size_t)PQntuples(r);
  if (got > limit)
    got = limit;
  for (size_t i = 0; i < got; i++)
    snprintf(ids[i], 37, "%s", PQgetvalue(r, (int)i, 0));
  PQclear(r);
  return got;
}
