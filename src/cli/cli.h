/*
 * cli.h — the engram command's internal header (src/cli only).
 *
 * The command is a client of the public API and nothing else: it includes
 * engram.h and this header, never a library layer's internals (the curl
 * model). It owns a `cli` context per run: the global options, the command
 * being run (for messages and its usage line) and the open engram handle.
 *
 * The library is asynchronous; the command is a process that does one
 * operation and exits, so sync.c turns each operation into a call that runs
 * the loop until the operation's callback has run. That helper is for this
 * tool only: a request path (the HTTP service) never waits like this.
 *
 * Exit statuses: CLI_OK, CLI_FAIL (the operation failed: not found, invalid
 * input, I/O) and CLI_USAGE (the command line does not match the usage).
 */
#ifndef ENGRAM_CLI_H
#define ENGRAM_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "engram.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#define CLI_DEFAULT_DB "./data/engram.db"
#define CLI_DEFAULT_NS "default"

typedef struct cli cli;

/* One entry of the dispatch table (commands.c). run gets the command's own
 * arguments with the global options taken out; argv[0] is the command. */
typedef struct cli_command {
  const char *name;
  int (*run)(cli *c, int argc, char **argv);
  const char *usage;   /* after "engram ": "add TEXT [options]" */
  const char *summary; /* one line, for the command list */
  const char *help;    /* options with defaults, notes, an example */
} cli_command;

struct cli {
  const char *db; /* --db, $ENGRAM_DB, or CLI_DEFAULT_DB */
  int db_given;   /* the database came from --db (not the environment) */
  const char *ns; /* --ns, $ENGRAM_NS, or CLI_DEFAULT_NS */
  int ns_given;   /* the namespace came from --ns or $ENGRAM_NS */
  int json;       /* --json: JSON Lines on stdout */
  const char *embedder; /* --embedder, $ENGRAM_EMBEDDER, or NULL (hashed) */
  const cli_command *cmd;
  engram *eg;      /* open handle, or NULL */
  uint64_t logged; /* errors and warnings the library reported */
};

/* ------------------------------------------------------------ commands.c */

const cli_command *cli_find_command(const char *name);
void cli_print_usage(FILE *f);
void cli_print_command_help(FILE *f, const cli_command *cmd);

int cmd_add(cli *c, int argc, char **argv);
int cmd_get(cli *c, int argc, char **argv);
int cmd_update(cli *c, int argc, char **argv);
int cmd_rm(cli *c, int argc, char **argv);
int cmd_history(cli *c, int argc, char **argv);
int cmd_search(cli *c, int argc, char **argv);
int cmd_list(cli *c, int argc, char **argv);
int cmd_link(cli *c, int argc, char **argv);
int cmd_unlink(cli *c, int argc, char **argv);
int cmd_related(cli *c, int argc, char **argv);
int cmd_import(cli *c, int argc, char **argv);
int cmd_export(cli *c, int argc, char **argv);
int cmd_demo(cli *c, int argc, char **argv);
int cmd_context(cli *c, int argc, char **argv);
int cmd_remember(cli *c, int argc, char **argv);
int cmd_serve(cli *c, int argc, char **argv);
int cmd_eval(cli *c, int argc, char **argv);
int cmd_reembed(cli *c, int argc, char **argv);
int cmd_help(cli *c, int argc, char **argv);

/* ---------------------------------------------------------------- args.c */

/* A command's option: "--name VALUE", "--name=VALUE" or the flag "--name". */
typedef struct cli_opt {
  const char *name; /* without the dashes */
  int has_value;
  const char *value; /* filled by cli_parse_args (the last one given) */
  int seen;
} cli_opt;

/* Parses argv[1..argc): options listed in opts (terminated by a NULL name)
 * and positional arguments, in order, into pos (at most max_pos). "--" ends
 * the options. Returns CLI_OK, or CLI_USAGE after printing why. */
int cli_parse_args(cli *c, int argc, char **argv, cli_opt *opts,
                   const char **pos, int max_pos, int *npos);
/* The value of option name (NULL when not given). */
const char *cli_opt_value(const cli_opt *opts, const char *name);
int cli_opt_seen(const cli_opt *opts, const char *name);

/* Option values; each returns CLI_OK or CLI_USAGE after printing why. */
int cli_parse_unit(cli *c, const char *opt, const char *text, double *out);
int cli_parse_count(cli *c, const char *opt, const char *text,
                    unsigned long min, unsigned long max, unsigned long *out);
int cli_parse_type(cli *c, const char *opt, const char *text, engram_type *out);
/* A comma-separated list of types, as the bit mask of engram_query.types. */
int cli_parse_types(cli *c, const char *opt, const char *text, unsigned *out);

/* Checks that text is a memory id; prints why not and returns CLI_FAIL. */
int cli_check_id(cli *c, const char *what, const char *text);
/* Checks metadata text is a JSON object; prints why not, returns CLI_FAIL. */
int cli_check_metadata(cli *c, const char *text);

/* Reads all of f; trailing newlines are dropped. NULL on error (printed).
 * The caller frees. */
char *cli_read_text(cli *c, FILE *f, const char *what, size_t *len);

/* "engram: CMD: message" on stderr. */
void cli_error(cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, then the command's usage line; returns CLI_USAGE. */
int cli_usage_error(cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- sync.c */

/* Opens c->db. create 0: a missing database file is an error (reading
 * commands do not create empty databases); 1: creates it and its folder.
 * Returns CLI_OK or CLI_FAIL (printed). */
int cli_open(cli *c, int create);
/* Closes and frees the handle (waits for queued writes to commit). */
void cli_close(cli *c);

/* Runs the loop until pred(arg) is true. Returns 0, or ENGRAM_EIO when the
 * loop ran out of work first (an operation that never called back). */
int cli_wait_for(cli *c, int (*pred)(void *arg), void *arg);
int cli_wait(cli *c, const int *done);

/* engram_write, waited for. Results (status, message, result_id,
 * deduplicated) are copied back into ops. Returns the batch status. */
int cli_write(cli *c, engram_op *ops, size_t n);
/* The message of the op that failed (or engram_strerror(status)). */
const char *cli_op_message(const engram_op *ops, size_t n, int status);

/* engram_get, waited for; *out is a copy to engram_node_free(). */
int cli_get(cli *c, const char *ns, const char *id, engram_node **out);

typedef void (*cli_history_fn)(const engram_history_entry *e, size_t n,
                               void *data);
int cli_history(cli *c, const char *ns, const char *id, cli_history_fn fn,
                void *data);
typedef void (*cli_rels_fn)(const engram_rel *rels, size_t n, void *data);
int cli_relationships(cli *c, const char *ns, const char *id, cli_rels_fn fn,
                      void *data);

/* Draining a stream with backpressure: items are requested a chunk at a
 * time; item returns nonzero to stop early (the stream is cancelled).
 * limit 0: everything. */
typedef int (*cli_item_fn)(const engram_node *node, void *data);
typedef struct cli_drain {
  cli *c;
  size_t limit;
  cli_item_fn item;
  void *data;
  engram_stream *stream;
  size_t asked;    /* requested so far */
  size_t got;      /* delivered so far */
  uint64_t failed; /* per-item errors (the library logs each) */
  int stopped;     /* we cancelled: ECANCELED is then success */
  int done;
  int status;
} cli_drain;
/* Fills cbs for the engram_search/list/traverse call that follows. */
void cli_drain_init(cli_drain *d, cli *c, size_t limit, cli_item_fn item,
                    void *data, engram_stream_cbs *cbs);
/* Requests, waits for the done callback; returns its status (0 when we
 * stopped the stream ourselves). */
int cli_drain_run(cli_drain *d, engram_stream *s);

/* -------------------------------------------------------------- output.c */

enum {
  OUT_RELEVANCE = 0x1, /* search */
  OUT_DEPTH = 0x2,     /* related */
  OUT_EXPORT = 0x4,    /* export: content_hash, accessed_ms, embedding */
};
json_t *out_node_json(const engram_node *n, unsigned fields);
/* Prints obj as one compact line on f and releases it. exact: reals with
 * 17 digits (they read back identical). Returns 0 or -1. */
int out_json_line(FILE *f, json_t *obj, int exact);
/* The content on one line (control characters as spaces), at most
 * max_chars characters, "…" marking a cut. buf needs 4 * max_chars + 4. */
void out_snippet(char *buf, size_t size, const char *text, size_t len,
                 size_t max_chars);
/* ISO-8601 UTC with milliseconds: 2024-06-01T12:00:00.123Z. */
void out_time(char buf[32], int64_t ms);
const char *out_type(engram_type t);
/* Human lines for the memory lists. */
void out_search_line(size_t rank, const engram_node *n);
void out_list_line(const engram_node *n);
void out_related_line(const engram_node *n);
/* The full memory, for get. */
void out_node_block(const engram_node *n);

/* ---------------------------------------------------------------- shared */

/* How a command's search ranks: the strategy and, for hybrid, its
 * options. */
typedef struct cli_search {
  engram_strategy strategy;
  engram_search_options opts;
} cli_search;
/* Reads --strategy (lexical|hybrid) and --weights NAME=VALUE,... (the
 * fields of engram_search_options) into out, which holds the defaults
 * beforehand. CLI_OK or CLI_USAGE (printed). */
int cli_parse_search(cli *c, const char *strategy, const char *weights,
                     cli_search *out);
/* Prints the ranked results of a search in c->ns (human or JSON). Returns
 * CLI_OK or CLI_FAIL (printed). *found: the number printed. how NULL:
 * lexical. */
int cli_search_print(cli *c, const char *query, size_t limit, unsigned types,
                     double min_relevance, const cli_search *how,
                     size_t *found);

#endif
