/*
 * cmd_reembed.c — `engram reembed`: engram_reembed() with a progress line
 * on a terminal and a summary at the end.
 */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

typedef struct reembed_wait {
  cli *c;
  int tty;
  int done;
  int status;
  char message[256];
  uint64_t scanned, reembedded;
} reembed_wait;

static void on_progress(const engram_reembed_progress *p, void *data) {
  reembed_wait *w = data;
  w->scanned = p->scanned;
  w->reembedded = p->reembedded;
  if (!p->done) {
    if (w->tty)
      fprintf(stderr, "\r\033[Kreembed: %llu memories looked at, %llu given "
                      "a vector",
              (unsigned long long)p->scanned,
              (unsigned long long)p->reembedded);
    return;
  }
  if (w->tty)
    fputs("\r\033[K", stderr);
  w->status = p->status;
  snprintf(w->message, sizeof w->message, "%s",
           p->message ? p->message : "");
  w->done = 1;
}

int cmd_reembed(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{NULL, 0, NULL, 0}};
  int npos = 0;
  int rc = cli_parse_args(c, argc, argv, opts, NULL, 0, &npos);
  if (rc != CLI_OK)
    return rc;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  uint32_t dim = 0;
  const char *name = engram_embedder_name(c->eg, &dim);
  if (!name) {
    cli_error(c, "--embedder none computes no vectors: name the embedder to "
                 "switch to (hashed, hashed:DIM, http:MODEL@URL)");
    cli_close(c);
    return CLI_USAGE;
  }
  reembed_wait w = {.c = c, .tty = isatty(STDERR_FILENO)};
  rc = engram_reembed(c->eg, on_progress, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  if (rc == 0)
    rc = w.status;
  name = engram_embedder_name(c->eg, &dim);
  if (rc != 0) {
    cli_error(c, "%s", w.message[0] ? w.message : engram_strerror(rc));
  } else if (c->json) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "embedder", name, "dim",
                          (json_int_t)dim, "scanned", (json_int_t)w.scanned,
                          "reembedded", (json_int_t)w.reembedded);
    out_json_line(stdout, o, 0); /* takes o */
  } else {
    printf("reembedded %llu of %llu memories with %s (dim %u)\n",
           (unsigned long long)w.reembedded, (unsigned long long)w.scanned,
           name, dim);
  }
  cli_close(c);
  return rc == 0 ? CLI_OK : CLI_FAIL;
}
