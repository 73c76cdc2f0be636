/*
 * args.c — the table-driven command line of the benchmarks.
 */
#include "args.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int bench_parse_levels(const char *s, size_t *levels, size_t max, size_t *n) {
  *n = 0;
  while (*s && *n < max) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || v == 0)
      return -1;
    levels[(*n)++] = (size_t)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return *n ? 0 : -1;
}

static const bench_arg *find(const bench_arg *opts, const char *name) {
  for (; opts->name; opts++)
    if (!strcmp(opts->name, name))
      return opts;
  return NULL;
}

int bench_parse_args(int argc, char **argv, const char *prog,
                     const bench_arg *opts, void (*usage)(FILE *)) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    }
    const bench_arg *o = find(opts, a);
    if (o && o->kind == ARG_FLAG) {
      *(int *)o->dst = 1;
      continue;
    }
    const char *v = i + 1 < argc ? argv[++i] : NULL;
    if (!v) {
      fprintf(stderr, "%s: %s needs a value\n", prog, a);
      return -1;
    }
    if (!o) {
      fprintf(stderr, "%s: unknown option %s\n", prog, a);
      usage(stderr);
      return -1;
    }
    switch (o->kind) {
    case ARG_SIZE:
      *(size_t *)o->dst = strtoull(v, NULL, 10);
      break;
    case ARG_U64:
      *(uint64_t *)o->dst = strtoull(v, NULL, 10);
      break;
    case ARG_UNSIGNED:
      *(unsigned *)o->dst = (unsigned)strtoul(v, NULL, 10);
      break;
    case ARG_DOUBLE:
      *(double *)o->dst = strtod(v, NULL);
      break;
    case ARG_STR:
      *(const char **)o->dst = v;
      break;
    case ARG_LEVELS:
      if (bench_parse_levels(v, o->dst, o->max, o->n) != 0) {
        fprintf(stderr, "%s: bad %s %s\n", prog, a, v);
        return -1;
      }
      break;
    case ARG_FLAG:
      break;
    }
  }
  return 0;
}
