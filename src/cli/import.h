/*
 * import.h — what import.c (files, JSON Lines, progress) and locomo.c
 * (LoCoMo conversations) share: the state of one `engram import` run.
 */
#ifndef ENGRAM_CLI_IMPORT_H
#define ENGRAM_CLI_IMPORT_H

#include <time.h>

#include "cli.h"
#include "writer.h"

typedef struct import_ctx {
  cli *c;
  cli_writer *w;
  int dedup;
  uint64_t records; /* lines or turns read (good and bad) */
  uint64_t skipped; /* refused before writing (bad JSON, bad fields) */
  int file_errors;  /* files that could not be read */
  /* progress on a terminal */
  int tty;
  struct timespec start, last_shown;
  struct timespec file_start; /* progress is per file */
  uint64_t file_records;      /* records before this file */
  const char *file;
  const char *unit;     /* "lines" or "turns" */
  uint64_t done, total; /* bytes (JSON Lines) or turns (LoCoMo) */
  /* namespaces made from file names, alive until the writer finished */
  char **names;
  size_t n_names;
} import_ctx;

/* "FILE:WHERE: reason" on stderr; counts a skipped record. */
void import_bad(import_ctx *im, const char *file, const char *where,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Redraws the progress line (at most ten times a second). */
void import_progress(import_ctx *im);
/* Keeps name alive until the end of the run; returns it, or NULL. */
const char *import_keep_name(import_ctx *im, char *name);

/* 1 when doc is a LoCoMo conversation, or an array of them. */
int locomo_detect(const json_t *doc);
/* Queues one episodic memory per turn of every conversation in doc. path:
 * the file ("-" for standard input); file: its name in messages. */
void locomo_import(import_ctx *im, json_t *doc, const char *file,
                   const char *path);
/* One conversation (a bare one or a sample holding it under
 * "conversation") into ns; ns NULL: --ns, else sample_id, else the file
 * name (as locomo_import does). ns must stay alive until the writer is
 * finished. Does not touch im->total (progress). */
void locomo_import_conversation(import_ctx *im, json_t *sample, const char *ns,
                                const char *file, const char *path);
/* The conversation object of a sample: its "conversation", or itself. */
json_t *locomo_conversation(json_t *sample);
/* The number of turns of one conversation. */
size_t locomo_count_turns(json_t *sample);
/* The file name without folders and ".json" ("conv-26"); NULL when empty.
 * The caller frees. */
char *locomo_file_stem(const char *path);

#endif
