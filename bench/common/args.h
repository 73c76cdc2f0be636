/*
 * args.h — the command line of a benchmark that takes "--name value"
 * options: a table of options, each naming the field it sets.
 */
#ifndef BENCH_ARGS_H
#define BENCH_ARGS_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
  ARG_SIZE,     /* size_t, strtoull */
  ARG_U64,      /* uint64_t, strtoull */
  ARG_UNSIGNED, /* unsigned, strtoul */
  ARG_DOUBLE,   /* double, strtod */
  ARG_STR,      /* const char *, the argument itself */
  ARG_FLAG,     /* int, set to 1; takes no value */
  ARG_LEVELS,   /* size_t[max], positive, comma-separated; count in *n */
} arg_kind;

typedef struct bench_arg {
  const char *name; /* "--n" */
  arg_kind kind;
  void *dst;
  size_t *n;  /* ARG_LEVELS: how many were given */
  size_t max; /* ARG_LEVELS: at most this many (more are ignored) */
} bench_arg;

/* Parses argv[1..] against opts (ended by a NULL name). -h or --help:
 * usage(stdout) and exit(0). A missing value, a bad level list or an
 * unknown option (then usage(stderr)) is printed as "<prog>: ..." and
 * gives -1; else 0. */
int bench_parse_args(int argc, char **argv, const char *prog,
                     const bench_arg *opts, void (*usage)(FILE *));

/* Parses "A,B,..." (positive integers) into levels[0..max), count in *n.
 * 0, or -1 when a level is not a positive integer or none is given. */
int bench_parse_levels(const char *s, size_t *levels, size_t max, size_t *n);

#endif
