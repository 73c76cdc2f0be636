/*
 * main.c — the engram command's entry: global options, then dispatch.
 *
 * Global options (--db, --ns, --json) may come before or after the
 * command, so they are taken out of argv first (up to a "--", after which
 * every argument belongs to the command); what is left is the command and
 * its own arguments. Each command parses those itself (args.c), checks
 * them before opening the database, and returns the exit status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Matches "--name" (value in the next argument) or "--name=value". */
static int take_global(int argc, char **argv, int *i, const char *name,
                       const char **value, int *bad) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0)
    return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0')
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "engram: %s needs a value; run 'engram --help'\n", name);
    *bad = 1;
    return 1;
  }
  *value = argv[++*i];
  return 1;
}

/* The library checks namespaces fully (UTF-8 too) but a read reports only
 * EINVAL; this catches the usual mistakes with a message. */
static int ns_plausible(const char *ns) {
  size_t len = strlen(ns);
  if (len == 0 || len > 256)
    return 0;
  for (const unsigned char *p = (const unsigned char *)ns; *p; p++)
    if (*p < 0x20 || *p == 0x7F)
      return 0;
  return 1;
}

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

int main(int argc, char **argv) {
  cli c = {0};
  c.db = env_or("ENGRAM_DB", CLI_DEFAULT_DB);
  c.embedder = env_or("ENGRAM_EMBEDDER", NULL);
  c.ns = env_or("ENGRAM_NS", NULL);
  c.ns_given = c.ns != NULL;
  if (!c.ns)
    c.ns = CLI_DEFAULT_NS;

  /* rest: the command and its arguments, in order, globals removed. */
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  if (!rest) {
    fprintf(stderr, "engram: out of memory\n");
    return CLI_FAIL;
  }
  int nrest = 0, bad = 0, ended = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (ended) {
      rest[nrest++] = argv[i];
    } else if (strcmp(argv[i], "--") == 0) {
      ended = 1;
      rest[nrest++] = argv[i];
    } else if (take_global(argc, argv, &i, "--db", &v, &bad)) {
      if (v) {
        c.db = v;
        c.db_given = 1;
      }
    } else if (take_global(argc, argv, &i, "--embedder", &v, &bad)) {
      if (v)
        c.embedder = v;
    } else if (take_global(argc, argv, &i, "--ns", &v, &bad)) {
      if (v) {
        c.ns = v;
        c.ns_given = 1;
      }
    } else if (strcmp(argv[i], "--json") == 0) {
      c.json = 1;
    } else {
      rest[nrest++] = argv[i];
    }
  }
  int rc = CLI_USAGE;
  if (bad)
    goto out;
  if (*c.db == '\0') {
    fprintf(stderr, "engram: --db is empty; give a database file path or a PostgreSQL connection string\n");
    goto out;
  }
  char why[256];
  engram_embedder_options eo;
  if (engram_embedder_parse(c.embedder, &eo, why, sizeof why) != 0) {
    fprintf(stderr, "engram: --embedder: %s\n", why);
    goto out;
  }
  if (!ns_plausible(c.ns)) {
    fprintf(stderr, "engram: --ns must be 1-256 bytes of text without "
                    "control characters\n");
    goto out;
  }

  if (nrest == 0) {
    cli_print_usage(stderr);
    goto out;
  }
  const char *name = rest[0];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
    cli_print_usage(stdout);
    rc = CLI_OK;
    goto out;
  }
  if (strcmp(name, "--version") == 0) {
    printf("engram %s\n", ENGRAM_VERSION);
    rc = CLI_OK;
    goto out;
  }
  const cli_command *cmd = cli_find_command(name);
  if (!cmd) {
    if (name[0] == '-')
      fprintf(stderr,
              "engram: unknown option '%s' before the command; run "
              "'engram --help' for the options and commands\n",
              name);
    else
      fprintf(stderr,
              "engram: unknown command '%s'; run 'engram help' for the list "
              "of commands\n",
              name);
    goto out;
  }
  c.cmd = cmd;
  for (int i = 1; i < nrest; i++) {
    if (strcmp(rest[i], "--") == 0)
      break;
    if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
      cli_print_command_help(stdout, cmd);
      rc = CLI_OK;
      goto out;
    }
  }
  rc = cmd->run(&c, nrest, rest);
  if (c.eg)
    cli_close(&c);
  if (fflush(stdout) != 0 && rc == CLI_OK) {
    fprintf(stderr, "engram: %s: cannot write the output\n", cmd->name);
    rc = CLI_FAIL;
  }
out:
  free(rest);
  return rc;
}
