/*
 * cmd_memory.c — one memory at a time: add, get, update, rm, history.
 *
 * Each command checks its arguments (usage errors before the database is
 * opened), does one engram call through sync.c, and prints the result for
 * a person or, with --json, as one JSON object per line.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Text from an argument, or from standard input for "-". *owned is what
 * the caller frees. */
static const char *text_arg(cli *c, const char *arg, const char *what,
                            size_t *len, char **owned) {
  *owned = NULL;
  if (strcmp(arg, "-") != 0) {
    *len = strlen(arg);
    return arg;
  }
  *owned = cli_read_text(c, stdin, what, len);
  return *owned;
}

static int not_found(cli *c, const char *id) {
  cli_error(c, "no memory %s in namespace %s", id, c->ns);
  return CLI_FAIL;
}

/* ------------------------------------------------------------------- add */

/* --type, --importance and --metadata, shared by add and update: each one
 * given is checked, stored in op and marked in op->set. */
static int parse_fields(cli *c, const cli_opt *opts, engram_op *op) {
  const char *v;
  int rc;
  if ((v = cli_opt_value(opts, "type"))) {
    if ((rc = cli_parse_type(c, "type", v, &op->type)) != CLI_OK)
      return rc;
    op->set |= ENGRAM_SET_TYPE;
  }
  if ((v = cli_opt_value(opts, "importance"))) {
    if ((rc = cli_parse_unit(c, "importance", v, &op->importance)) != CLI_OK)
      return rc;
    op->set |= ENGRAM_SET_IMPORTANCE;
  }
  if ((v = cli_opt_value(opts, "metadata"))) {
    if (cli_check_metadata(c, v) != CLI_OK)
      return CLI_FAIL;
    op->metadata = v;
    op->set |= ENGRAM_SET_METADATA;
  }
  return CLI_OK;
}

int cmd_add(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"type", 1, NULL, 0},
                    {"importance", 1, NULL, 0},
                    {"metadata", 1, NULL, 0},
                    {"dedup", 0, NULL, 0},
                    {NULL, 0, NULL, 0}};
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the memory's text (or - to read it from "
                              "standard input)");
  engram_op op = {.kind = ENGRAM_OP_ADD, .ns = c->ns, .type = ENGRAM_EPISODIC};
  op.set = ENGRAM_SET_CONTENT;
  if ((rc = parse_fields(c, opts, &op)) != CLI_OK)
    return rc;
  op.dedup = cli_opt_seen(opts, "dedup");

  char *owned;
  size_t len;
  op.content =
      text_arg(c, pos[0], "the text from standard input", &len, &owned);
  if (!op.content)
    return CLI_FAIL;
  if (len == 0) {
    free(owned);
    cli_error(c, "the text is empty; give the memory's content");
    return CLI_FAIL;
  }
  op.content_len = len;
  if (cli_open(c, 1) != CLI_OK) {
    free(owned);
    return CLI_FAIL;
  }
  rc = cli_write(c, &op, 1);
  free(owned);
  if (rc != 0) {
    cli_error(c, "%s", cli_op_message(&op, 1, rc));
    return CLI_FAIL;
  }
  if (c->json) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(op.result_id));
    json_object_set_new(o, "ns", json_string(c->ns));
    json_object_set_new(o, "existing", json_boolean(op.deduplicated));
    out_json_line(stdout, o, 0);
  } else {
    printf("%s%s\n", op.result_id, op.deduplicated ? " (existing)" : "");
  }
  return CLI_OK;
}

/* ------------------------------------------------------------------- get */

static void print_rels(const engram_rel *rels, size_t n, void *data) {
  const char *id = data;
  if (n == 0)
    return;
  printf("links:\n");
  for (size_t i = 0; i < n; i++) {
    int out = strcmp(rels[i].source, id) == 0;
    printf("  %s %s  (%s, %.2f)\n", out ? "->" : "<-",
           out ? rels[i].target : rels[i].source, rels[i].kind,
           rels[i].strength);
  }
}

int cmd_get(cli *c, int argc, char **argv) {
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, NULL, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the id of the memory to show");
  if (cli_check_id(c, "ID", pos[0]) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  engram_node *n;
  rc = cli_get(c, c->ns, pos[0], &n);
  if (rc == ENGRAM_ENOTFOUND)
    return not_found(c, pos[0]);
  if (rc != 0) {
    cli_error(c, "cannot read memory %s: %s", pos[0], engram_strerror(rc));
    return CLI_FAIL;
  }
  if (c->json) {
    out_json_line(stdout, out_node_json(n, 0), 0);
  } else {
    out_node_block(n);
    rc = cli_relationships(c, c->ns, n->id, print_rels, n->id);
    if (rc != 0)
      cli_error(c, "cannot read the relationships of %s: %s", n->id,
                engram_strerror(rc));
  }
  engram_node_free(n);
  return rc == 0 ? CLI_OK : CLI_FAIL;
}

/* ---------------------------------------------------------------- update */

int cmd_update(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"text", 1, NULL, 0},
                    {"type", 1, NULL, 0},
                    {"importance", 1, NULL, 0},
                    {"metadata", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the id of the memory to change");
  engram_op op = {.kind = ENGRAM_OP_UPDATE, .ns = c->ns, .id = pos[0]};
  if ((rc = parse_fields(c, opts, &op)) != CLI_OK)
    return rc;
  const char *text = cli_opt_value(opts, "text");
  if (!text && op.set == 0)
    return cli_usage_error(c, "nothing to change: give --text, --type, "
                              "--importance or --metadata");
  if (cli_check_id(c, "ID", pos[0]) != CLI_OK)
    return CLI_FAIL;
  char *owned = NULL;
  if (text) {
    size_t len;
    op.content =
        text_arg(c, text, "the text from standard input", &len, &owned);
    if (!op.content)
      return CLI_FAIL;
    if (len == 0) {
      free(owned);
      cli_error(c, "--text is empty; give the memory's new content");
      return CLI_FAIL;
    }
    op.content_len = len;
    op.set |= ENGRAM_SET_CONTENT;
  }
  if (cli_open(c, 0) != CLI_OK) {
    free(owned);
    return CLI_FAIL;
  }
  rc = cli_write(c, &op, 1);
  free(owned);
  if (rc == ENGRAM_ENOTFOUND)
    return not_found(c, pos[0]);
  if (rc != 0) {
    cli_error(c, "%s", cli_op_message(&op, 1, rc));
    return CLI_FAIL;
  }
  if (c->json) {
    engram_node *n;
    if ((rc = cli_get(c, c->ns, pos[0], &n)) != 0) {
      cli_error(c, "updated %s, but cannot read it back: %s", pos[0],
                engram_strerror(rc));
      return CLI_FAIL;
    }
    out_json_line(stdout, out_node_json(n, 0), 0);
    engram_node_free(n);
  } else {
    printf("updated %s\n", pos[0]);
  }
  return CLI_OK;
}

/* -------------------------------------------------------------------- rm */

int cmd_rm(cli *c, int argc, char **argv) {
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, NULL, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the id of the memory to delete");
  if (cli_check_id(c, "ID", pos[0]) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  engram_op op = {.kind = ENGRAM_OP_DELETE, .ns = c->ns, .id = pos[0]};
  rc = cli_write(c, &op, 1);
  if (rc == ENGRAM_ENOTFOUND)
    return not_found(c, pos[0]);
  if (rc != 0) {
    cli_error(c, "%s", cli_op_message(&op, 1, rc));
    return CLI_FAIL;
  }
  if (c->json) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(pos[0]));
    json_object_set_new(o, "ns", json_string(c->ns));
    json_object_set_new(o, "deleted", json_true());
    out_json_line(stdout, o, 0);
  } else {
    printf("deleted %s\n", pos[0]);
  }
  return CLI_OK;
}

/* --------------------------------------------------------------- history */

/* Characters of old and new text on a history line. */
#define HISTORY_CHARS 60

static void quoted(char *buf, size_t size, const char *text) {
  if (!text) {
    snprintf(buf, size, "(none)");
    return;
  }
  char snip[4 * HISTORY_CHARS + 4];
  out_snippet(snip, sizeof snip, text, strlen(text), HISTORY_CHARS);
  snprintf(buf, size, "\"%s\"", snip);
}

static void print_history(const engram_history_entry *e, size_t n, void *data) {
  cli *c = data;
  for (size_t i = 0; i < n; i++) {
    char at[32];
    out_time(at, e[i].at_ms);
    if (c->json) {
      json_t *o = json_object();
      json_object_set_new(o, "event",
                          json_string(engram_event_name(e[i].event)));
      json_object_set_new(o, "at_ms", json_integer(e[i].at_ms));
      json_object_set_new(o, "at", json_string(at));
      json_object_set_new(o, "old",
                          e[i].old_content ? json_string(e[i].old_content)
                                           : json_null());
      json_object_set_new(o, "new",
                          e[i].new_content ? json_string(e[i].new_content)
                                           : json_null());
      out_json_line(stdout, o, 0);
    } else {
      char old[4 * HISTORY_CHARS + 8], new_text[4 * HISTORY_CHARS + 8];
      quoted(old, sizeof old, e[i].old_content);
      quoted(new_text, sizeof new_text, e[i].new_content);
      printf("%-7s %s  %s -> %s\n", engram_event_name(e[i].event), at, old,
             new_text);
    }
  }
}

int cmd_history(cli *c, int argc, char **argv) {
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, NULL, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the id of the memory");
  if (cli_check_id(c, "ID", pos[0]) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  rc = cli_history(c, c->ns, pos[0], print_history, c);
  if (rc == ENGRAM_ENOTFOUND)
    return not_found(c, pos[0]);
  if (rc != 0) {
    cli_error(c, "cannot read the history of %s: %s", pos[0],
              engram_strerror(rc));
    return CLI_FAIL;
  }
  return CLI_OK;
}
