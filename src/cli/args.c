/*
 * args.c — a command's own arguments: options, positionals, option values
 * and the checks that turn a mistyped command line into a message saying
 * what was wrong and what to write instead.
 *
 * Values outside what the usage documents (a limit that is not a whole
 * number, an importance above 1, an unknown type) are usage errors: the
 * command stops before it opens the database.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_error(cli *c, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "engram: %s: ", c->cmd ? c->cmd->name : "engram");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int cli_usage_error(cli *c, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "engram: %s: ", c->cmd ? c->cmd->name : "engram");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (c->cmd)
    fprintf(stderr,
            "usage: engram %s\n(run 'engram %s --help' for the details)\n",
            c->cmd->usage, c->cmd->name);
  return CLI_USAGE;
}

static cli_opt *find_opt(cli_opt *opts, const char *name, size_t len) {
  for (cli_opt *o = opts; o && o->name; o++)
    if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
      return o;
  return NULL;
}

int cli_parse_args(cli *c, int argc, char **argv, cli_opt *opts,
                   const char **pos, int max_pos, int *npos) {
  int n = 0, only_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_pos && strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (!only_pos && a[0] == '-' && a[1] != '\0') {
      if (a[1] != '-')
        return cli_usage_error(c,
                               "unknown option '%s' (put -- before an "
                               "argument that begins with '-')",
                               a);
      const char *name = a + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      cli_opt *o = find_opt(opts, name, len);
      if (!o)
        return cli_usage_error(c,
                               "unknown option '--%.*s' (put -- before an "
                               "argument that begins with '-')",
                               (int)len, name);
      if (o->has_value) {
        if (eq)
          o->value = eq + 1;
        else if (i + 1 < argc)
          o->value = argv[++i];
        else
          return cli_usage_error(c, "option --%s needs a value", o->name);
      } else if (eq) {
        return cli_usage_error(c, "option --%s takes no value", o->name);
      }
      o->seen = 1;
      continue;
    }
    if (n >= max_pos)
      return cli_usage_error(c, "unexpected argument '%s'", a);
    pos[n++] = a;
  }
  *npos = n;
  return CLI_OK;
}

const char *cli_opt_value(const cli_opt *opts, const char *name) {
  for (const cli_opt *o = opts; o && o->name; o++)
    if (strcmp(o->name, name) == 0)
      return o->value;
  return NULL;
}

int cli_opt_seen(const cli_opt *opts, const char *name) {
  for (const cli_opt *o = opts; o && o->name; o++)
    if (strcmp(o->name, name) == 0)
      return o->seen;
  return 0;
}

int cli_parse_unit(cli *c, const char *opt, const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || isnan(v) || v < 0.0 ||
      v > 1.0)
    return cli_usage_error(c, "--%s wants a number from 0 to 1, not '%s'", opt,
                           text);
  *out = v;
  return CLI_OK;
}

int cli_parse_count(cli *c, const char *opt, const char *text,
                    unsigned long min, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || text[0] == '-' ||
      text[0] == '+' || v < min || v > max)
    return cli_usage_error(c,
                           "--%s wants a whole number from %lu to %lu, "
                           "not '%s'",
                           opt, min, max, text);
  *out = v;
  return CLI_OK;
}

int cli_parse_type(cli *c, const char *opt, const char *text,
                   engram_type *out) {
  if (engram_type_parse(text, out) != 0)
    return cli_usage_error(c,
                           "--%s '%s' is not a memory type; use episodic, "
                           "semantic, procedural or working",
                           opt, text);
  return CLI_OK;
}

int cli_parse_types(cli *c, const char *opt, const char *text, unsigned *out) {
  unsigned mask = 0;
  const char *p = text;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char name[32];
    engram_type t;
    if (len == 0 || len >= sizeof name)
      return cli_usage_error(c,
                             "--%s '%s' is not a list of memory types; use "
                             "episodic, semantic, procedural or working "
                             "(comma-separated)",
                             opt, text);
    memcpy(name, p, len);
    name[len] = '\0';
    if (engram_type_parse(name, &t) != 0)
      return cli_usage_error(c,
                             "--%s: '%s' is not a memory type; use episodic, "
                             "semantic, procedural or working",
                             opt, name);
    mask |= 1u << (unsigned)t;
    if (!comma)
      break;
    p = comma + 1;
  }
  *out = mask;
  return CLI_OK;
}

int cli_check_id(cli *c, const char *what, const char *text) {
  if (engram_id_valid(text))
    return CLI_OK;
  cli_error(c,
            "%s '%s' is not a memory id; ids look like "
            "0190a5e2-7b3c-7def-8123-456789abcdef (see 'engram list')",
            what, text);
  return CLI_FAIL;
}

int cli_check_metadata(cli *c, const char *text) {
  json_error_t err;
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &err);
  if (!j) {
    cli_error(c,
              "--metadata is not valid JSON (%s, at character %d); give "
              "an object such as '{\"source\": \"chat\"}'",
              err.text, err.position);
    return CLI_FAIL;
  }
  int ok = json_is_object(j);
  json_decref(j);
  if (!ok) {
    cli_error(c, "--metadata must be a JSON object such as "
                 "'{\"source\": \"chat\"}', not another kind of JSON value");
    return CLI_FAIL;
  }
  return CLI_OK;
}

char *cli_read_text(cli *c, FILE *f, const char *what, size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    cli_error(c, "out of memory reading %s", what);
    return NULL;
  }
  for (;;) {
    if (cap - n < 2) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        cli_error(c, "out of memory reading %s", what);
        return NULL;
      }
      buf = bigger;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    cli_error(c, "cannot read %s: %s", what, strerror(errno));
    free(buf);
    return NULL;
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  buf[n] = '\0';
  *len = n;
  return buf;
}
