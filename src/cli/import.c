/*
 * import.c — `engram import FILE...`: JSON Lines of memories, or LoCoMo
 * conversations (locomo.c), written in pipelined batches (writer.c).
 *
 * What a file holds is decided by its content: if its first non-blank line
 * is a JSON object on its own, the file is JSON Lines (unless that object
 * is a whole LoCoMo conversation); if the first line starts a JSON value
 * that spans lines, the whole file is parsed as one document, which must
 * be a LoCoMo conversation or an array of them — and if it does not parse
 * at all, it is read as JSON Lines so each bad line is reported.
 *
 * JSON Lines are read a line at a time: memory use is one batch per slot
 * in flight, whatever the file's size. A bad line is reported as
 * "FILE:LINE: reason", skipped and counted, and the exit status is 1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import.h"

#define BATCH_OPS 256 /* ops per engram_write: one transaction */
#define BATCHES_IN_FLIGHT 8

void import_bad(import_ctx *im, const char *file, const char *where,
                const char *fmt, ...) {
  va_list ap;
  if (im->tty)
    fputs("\r\033[K", stderr); /* clear the progress line first */
  fprintf(stderr, "%s:%s: ", file, where);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  im->skipped++;
}

const char *import_keep_name(import_ctx *im, char *name) {
  if (!name)
    return NULL;
  char **bigger = realloc(im->names, (im->n_names + 1) * sizeof *bigger);
  if (!bigger) {
    free(name);
    return NULL;
  }
  im->names = bigger;
  im->names[im->n_names++] = name;
  return name;
}

/* ------------------------------------------------------------- progress */

static double seconds_between(const struct timespec *a,
                              const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) +
         (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void import_progress(import_ctx *im) {
  if (!im->tty)
    return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (seconds_between(&im->last_shown, &now) < 0.1)
    return;
  im->last_shown = now;
  uint64_t records = im->records - im->file_records;
  double elapsed = seconds_between(&im->file_start, &now);
  double rate = elapsed > 0 ? (double)records / elapsed : 0;
  fprintf(stderr, "\r\033[K%s: %llu %s", im->file, (unsigned long long)records,
          im->unit);
  if (im->total)
    fprintf(stderr, ", %.0f%%", 100.0 * (double)im->done / (double)im->total);
  fprintf(stderr, ", %.0f %s/s", rate, im->unit);
}

/* ----------------------------------------------------------- JSON Lines */

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return 0;
  return 1;
}

static const char *first_char(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return s + i;
  return NULL;
}

/* Fills op from one memory object; on a problem writes the reason in err
 * and returns -1. *metadata and *embedding are allocated for the caller. */
static int op_from_json(import_ctx *im, json_t *o, engram_op *op,
                        char **metadata, float **embedding, char *err,
                        size_t errlen) {
  *metadata = NULL;
  *embedding = NULL;
  memset(op, 0, sizeof *op);
  op->kind = ENGRAM_OP_ADD;
  op->ns = im->c->ns;
  op->type = ENGRAM_EPISODIC;
  op->set = ENGRAM_SET_CONTENT;
  op->dedup = im->dedup;

  json_t *v = json_object_get(o, "content");
  if (!v) {
    snprintf(err, errlen,
             "\"content\" is missing; each line needs "
             "{\"content\": \"...\"}");
    return -1;
  }
  if (!json_is_string(v) || json_string_length(v) == 0) {
    snprintf(err, errlen, "\"content\" must be a non-empty string");
    return -1;
  }
  op->content = json_string_value(v);
  op->content_len = json_string_length(v);

  if ((v = json_object_get(o, "type")) && !json_is_null(v)) {
    if (!json_is_string(v) ||
        engram_type_parse(json_string_value(v), &op->type) != 0) {
      snprintf(err, errlen,
               "\"type\" must be \"episodic\", \"semantic\", "
               "\"procedural\" or \"working\"");
      return -1;
    }
    op->set |= ENGRAM_SET_TYPE;
  }
  if ((v = json_object_get(o, "importance")) && !json_is_null(v)) {
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= 0.0 && x <= 1.0)) {
      snprintf(err, errlen, "\"importance\" must be a number from 0 to 1");
      return -1;
    }
    op->importance = x;
    op->set |= ENGRAM_SET_IMPORTANCE;
  }
  if ((v = json_object_get(o, "ns")) && !json_is_null(v)) {
    if (!json_is_string(v) || json_string_length(v) == 0) {
      snprintf(err, errlen, "\"ns\" must be a non-empty string");
      return -1;
    }
    op->ns = json_string_value(v);
  }
  if ((v = json_object_get(o, "id")) && !json_is_null(v)) {
    if (!json_is_string(v) || !engram_id_valid(json_string_value(v))) {
      snprintf(err, errlen,
               "\"id\" must be a memory id such as "
               "\"0190a5e2-7b3c-7def-8123-456789abcdef\" (or be left out)");
      return -1;
    }
    op->id = json_string_value(v);
  }
  if ((v = json_object_get(o, "metadata")) && !json_is_null(v)) {
    if (!json_is_object(v)) {
      snprintf(err, errlen, "\"metadata\" must be a JSON object");
      return -1;
    }
    *metadata = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!*metadata) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    op->metadata = *metadata;
    op->set |= ENGRAM_SET_METADATA;
  }
  if ((v = json_object_get(o, "embedding")) && !json_is_null(v)) {
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > 65536) {
      snprintf(err, errlen,
               "\"embedding\" must be an array of 1 to 65536 numbers");
      return -1;
    }
    *embedding = malloc(n * sizeof **embedding);
    if (!*embedding) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    for (size_t i = 0; i < n; i++) {
      json_t *x = json_array_get(v, i);
      if (!json_is_number(x)) {
        snprintf(err, errlen, "\"embedding\"[%zu] is not a number", i);
        return -1;
      }
      (*embedding)[i] = (float)json_number_value(x);
    }
    op->embedding = *embedding;
    op->embedding_dim = (uint32_t)n;
    op->set |= ENGRAM_SET_EMBEDDING;
    json_t *by = json_object_get(o, "embedder");
    if (by && !json_is_null(by) && !json_is_string(by)) {
      snprintf(err, errlen, "\"embedder\" must be a string");
      return -1;
    }
    op->embedder = by ? json_string_value(by) : NULL;
    /* With an embedder, a vector of another (or of no name) is left out:
     * engram computes the memory's own; `engram reembed` is not needed. */
    uint32_t dim = 0;
    const char *mine = engram_embedder_name(im->c->eg, &dim);
    if (mine && (!op->embedder || strcmp(op->embedder, mine) != 0 ||
                 (dim && dim != op->embedding_dim))) {
      op->embedding = NULL;
      op->embedding_dim = 0;
      op->embedder = NULL;
      op->set &= ~ENGRAM_SET_EMBEDDING;
    }
  }
  return 0;
}

/* One line of JSON Lines (not blank). */
static void import_line(import_ctx *im, const char *file, uint64_t lineno,
                        const char *line, size_t len) {
  char where[24], err[200];
  snprintf(where, sizeof where, "%llu", (unsigned long long)lineno);
  im->records++;
  json_error_t jerr;
  json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!o) {
    import_bad(im, file, where, "not valid JSON: %s (column %d)", jerr.text,
               jerr.column);
    return;
  }
  if (!json_is_object(o)) {
    import_bad(im, file, where,
               "not a JSON object; each line needs {\"content\": \"...\"}");
    json_decref(o);
    return;
  }
  engram_op op;
  char *metadata;
  float *embedding;
  if (op_from_json(im, o, &op, &metadata, &embedding, err, sizeof err) != 0) {
    import_bad(im, file, where, "%s", err);
    free(metadata);
    free(embedding);
    json_decref(o);
    return;
  }
  /* The writer releases o, metadata and embedding once submitted. */
  writer_add(im->w, &op, file, where, o, metadata, embedding);
}

static void import_lines(import_ctx *im, FILE *f, const char *file,
                         uint64_t lineno) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    im->done += (uint64_t)len;
    if (!is_blank(line, (size_t)len))
      import_line(im, file, lineno, line, (size_t)len);
    import_progress(im);
  }
  free(line);
}

/* --------------------------------------------------------------- a file */

/* Appends the rest of f to *buf (which holds *len bytes). */
static int slurp(FILE *f, char **buf, size_t *len, size_t *cap) {
  for (;;) {
    if (*cap - *len < 65536) {
      size_t bigger_cap = *cap * 2 + 65536;
      char *bigger = realloc(*buf, bigger_cap);
      if (!bigger)
        return -1;
      *buf = bigger;
      *cap = bigger_cap;
    }
    size_t got = fread(*buf + *len, 1, *cap - *len, f);
    *len += got;
    if (got == 0)
      return ferror(f) ? -1 : 0;
  }
}

static void import_document(import_ctx *im, const char *file, const char *path,
                            char *buf, size_t len, uint64_t first_line) {
  json_error_t jerr;
  json_t *doc = json_loadb(buf, len, 0, &jerr);
  if (doc && locomo_detect(doc)) {
    locomo_import(im, doc, file, path);
  } else if (doc) {
    im->records++;
    import_bad(im, file, "1",
               "one JSON value over several lines, and not a LoCoMo "
               "conversation; import reads JSON Lines (one memory object per "
               "line) or LoCoMo conversations (speaker_a, session_1, ...)");
  } else {
    /* Neither one document nor JSON Lines so far: read it as JSON Lines so
     * every bad line is named. */
    FILE *m = fmemopen(buf, len, "r");
    if (m) {
      im->done = 0;
      import_lines(im, m, file, first_line - 1);
      fclose(m);
    } else {
      im->records++;
      import_bad(im, file, "1", "not valid JSON: %s (line %d)", jerr.text,
                 jerr.line);
    }
  }
  json_decref(doc);
}

static void import_file(import_ctx *im, const char *path) {
  int is_stdin = strcmp(path, "-") == 0;
  const char *file = is_stdin ? "<stdin>" : path;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  if (!f) {
    cli_error(im->c, "cannot open %s: %s", path, strerror(errno));
    im->file_errors++;
    return;
  }
  struct stat st;
  im->file = file;
  im->unit = "lines";
  im->file_records = im->records;
  clock_gettime(CLOCK_MONOTONIC, &im->file_start);
  im->done = 0;
  im->total = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)
                  ? (uint64_t)st.st_size
                  : 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  uint64_t lineno = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    im->done += (uint64_t)len;
    if (!is_blank(line, (size_t)len))
      break;
  }
  if (len >= 0) {
    const char *start = first_char(line, (size_t)len);
    json_t *first = json_loadb(line, (size_t)len, 0, NULL);
    if (first && locomo_detect(first)) {
      /* A whole conversation on one line. */
      locomo_import(im, first, file, path);
      json_decref(first);
    } else if (first || (*start != '{' && *start != '[')) {
      json_decref(first);
      import_line(im, file, lineno, line, (size_t)len);
      import_lines(im, f, file, lineno);
    } else {
      /* A JSON value spread over lines: the whole file is one document. */
      size_t n = (size_t)len;
      if (slurp(f, &line, &n, &cap) != 0) {
        cli_error(im->c, "cannot read %s: %s", file,
                  ferror(f) ? strerror(errno) : "out of memory");
        im->file_errors++;
        clearerr(f); /* reported */
      } else {
        import_document(im, file, path, line, n, lineno);
      }
    }
  }
  if (ferror(f)) {
    cli_error(im->c, "cannot read %s: %s", file, strerror(errno));
    im->file_errors++;
  }
  free(line);
  if (!is_stdin)
    fclose(f);
}

/* --------------------------------------------------------------- command */

int cmd_import(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"dedup", 0, NULL, 0}, {NULL, 0, NULL, 0}};
  const char **files = calloc((size_t)argc, sizeof *files);
  int nfiles, rc;
  if (!files) {
    cli_error(c, "out of memory");
    return CLI_FAIL;
  }
  rc = cli_parse_args(c, argc, argv, opts, files, argc, &nfiles);
  if (rc == CLI_OK && nfiles == 0)
    rc = cli_usage_error(c, "give the files to import (- reads standard "
                            "input)");
  if (rc != CLI_OK || cli_open(c, 1) != CLI_OK) {
    free(files);
    return rc != CLI_OK ? rc : CLI_FAIL;
  }
  import_ctx im = {.c = c, .dedup = cli_opt_seen(opts, "dedup")};
  im.tty = isatty(STDERR_FILENO);
  clock_gettime(CLOCK_MONOTONIC, &im.start);
  im.w = writer_new(c, BATCH_OPS, BATCHES_IN_FLIGHT);
  if (!im.w) {
    free(files);
    cli_error(c, "out of memory");
    return CLI_FAIL;
  }
  for (int i = 0; i < nfiles; i++)
    import_file(&im, files[i]);
  int broken = writer_finish(im.w) != 0;
  if (im.tty)
    fputs("\r\033[K", stderr);

  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  double secs = seconds_between(&im.start, &end);
  uint64_t added = writer_added(im.w), existing = writer_existing(im.w);
  uint64_t skipped = im.skipped + writer_failed(im.w);
  if (c->json) {
    json_t *o = json_object();
    json_object_set_new(o, "imported", json_integer((json_int_t)added));
    json_object_set_new(o, "existing", json_integer((json_int_t)existing));
    json_object_set_new(o, "skipped", json_integer((json_int_t)skipped));
    json_object_set_new(o, "seconds", json_real(secs));
    out_json_line(stdout, o, 0);
  } else if (im.dedup) {
    printf("imported %llu %s (%llu skipped, %llu already present) in "
           "%.2f s\n",
           (unsigned long long)added, added == 1 ? "memory" : "memories",
           (unsigned long long)skipped, (unsigned long long)existing, secs);
  } else {
    printf("imported %llu %s (%llu skipped) in %.2f s\n",
           (unsigned long long)added, added == 1 ? "memory" : "memories",
           (unsigned long long)skipped, secs);
  }
  writer_free(im.w);
  for (size_t i = 0; i < im.n_names; i++)
    free(im.names[i]);
  free(im.names);
  free(files);
  return skipped || im.file_errors || broken ? CLI_FAIL : CLI_OK;
}
