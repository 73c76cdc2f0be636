/*
 * export.c — `engram export`: every memory of a namespace (or of all, with
 * --all) as JSON Lines, in creation order, in the format import reads.
 *
 * The list stream is drained with backpressure: sync.c asks for a chunk,
 * each item is written to standard output as it arrives (a blocking write
 * on a slow pipe simply delays the next request), then the next chunk is
 * asked for. Memory use is one chunk, whatever the database's size.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"

typedef struct export_state {
  int write_failed;
  int write_errno;
} export_state;

static int write_memory(const engram_node *n, void *data) {
  export_state *e = data;
  if (out_json_line(stdout, out_node_json(n, OUT_EXPORT), 1) != 0) {
    e->write_failed = 1;
    e->write_errno = errno;
    return 1; /* stop: the output is gone */
  }
  return 0;
}

int cmd_export(cli *c, int argc, char **argv) {
  cli_opt opts[] = {
      {"type", 1, NULL, 0}, {"all", 0, NULL, 0}, {NULL, 0, NULL, 0}};
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, NULL, 0, &npos)) != CLI_OK)
    return rc;
  unsigned types = 0;
  const char *v = cli_opt_value(opts, "type");
  if (v && (rc = cli_parse_types(c, "type", v, &types)) != CLI_OK)
    return rc;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;

  engram_query q = {.ns = cli_opt_seen(opts, "all") ? NULL : c->ns,
                    .types = types};
  export_state e = {0};
  cli_drain d;
  engram_stream_cbs cbs;
  engram_stream *s;
  cli_drain_init(&d, c, 0, write_memory, &e, &cbs);
  rc = engram_list(c->eg, &q, &cbs, &s);
  if (rc == 0)
    rc = cli_drain_run(&d, s);
  if (!e.write_failed && fflush(stdout) != 0) {
    e.write_failed = 1;
    e.write_errno = errno;
  }
  if (e.write_failed) {
    cli_error(c, "cannot write to standard output: %s",
              strerror(e.write_errno));
    return CLI_FAIL;
  }
  if (rc != 0) {
    cli_error(c, "listing the memories failed: %s", engram_strerror(rc));
    return CLI_FAIL;
  }
  if (d.failed) {
    cli_error(c,
              "%llu memories could not be read and are not in the export "
              "(reported above)",
              (unsigned long long)d.failed);
    return CLI_FAIL;
  }
  return CLI_OK;
}
