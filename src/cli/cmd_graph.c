/*
 * cmd_graph.c — relationships between memories: link, unlink, and related
 * (a breadth-first walk from one memory, engram_traverse).
 */
#include <string.h>

#include "cli.h"

#define DEFAULT_KIND "related"

/* SOURCE TARGET [--kind K] [--strength X], shared by link and unlink. */
static int link_op(cli *c, int argc, char **argv, engram_op_kind kind) {
  cli_opt opts[] = {
      {"kind", 1, NULL, 0}, {"strength", 1, NULL, 0}, {NULL, 0, NULL, 0}};
  if (kind == ENGRAM_OP_UNLINK)
    opts[1].name = NULL; /* unlink takes no strength */
  const char *pos[2];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 2, &npos)) != CLI_OK)
    return rc;
  if (npos != 2)
    return cli_usage_error(c, "give two memory ids: SOURCE and TARGET");
  engram_op op = {.kind = kind,
                  .ns = c->ns,
                  .source = pos[0],
                  .target = pos[1],
                  .rel_kind = DEFAULT_KIND,
                  .strength = 1.0};
  const char *v;
  if ((v = cli_opt_value(opts, "kind"))) {
    if (*v == '\0' || strlen(v) > 64)
      return cli_usage_error(c, "--kind must be 1 to 64 bytes, such as "
                                "related or reply-to");
    op.rel_kind = v;
  }
  if (kind == ENGRAM_OP_LINK && (v = cli_opt_value(opts, "strength")) &&
      (rc = cli_parse_unit(c, "strength", v, &op.strength)) != CLI_OK)
    return rc;
  if (cli_check_id(c, "SOURCE", pos[0]) != CLI_OK ||
      cli_check_id(c, "TARGET", pos[1]) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  rc = cli_write(c, &op, 1);
  if (rc == ENGRAM_ENOTFOUND) {
    if (kind == ENGRAM_OP_LINK)
      cli_error(c, "cannot link: %s",
                op.message[0] ? op.message
                              : "both memories must be in the namespace");
    else
      cli_error(c, "no %s relationship from %s to %s in namespace %s",
                op.rel_kind, pos[0], pos[1], c->ns);
    return CLI_FAIL;
  }
  if (rc != 0) {
    cli_error(c, "%s", cli_op_message(&op, 1, rc));
    return CLI_FAIL;
  }
  if (c->json) {
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(pos[0]));
    json_object_set_new(o, "target", json_string(pos[1]));
    json_object_set_new(o, "kind", json_string(op.rel_kind));
    if (kind == ENGRAM_OP_LINK)
      json_object_set_new(o, "strength", json_real(op.strength));
    else
      json_object_set_new(o, "deleted", json_true());
    out_json_line(stdout, o, 0);
  } else if (kind == ENGRAM_OP_LINK) {
    printf("linked %s -> %s (%s, %.2f)\n", pos[0], pos[1], op.rel_kind,
           op.strength);
  } else {
    printf("unlinked %s -> %s (%s)\n", pos[0], pos[1], op.rel_kind);
  }
  return CLI_OK;
}

int cmd_link(cli *c, int argc, char **argv) {
  return link_op(c, argc, argv, ENGRAM_OP_LINK);
}

int cmd_unlink(cli *c, int argc, char **argv) {
  return link_op(c, argc, argv, ENGRAM_OP_UNLINK);
}

/* --------------------------------------------------------------- related */

static int print_related(const engram_node *n, void *data) {
  cli *c = data;
  if (c->json)
    out_json_line(stdout, out_node_json(n, OUT_DEPTH), 0);
  else
    out_related_line(n);
  return 0;
}

int cmd_related(cli *c, int argc, char **argv) {
  cli_opt opts[] = {
      {"depth", 1, NULL, 0}, {"min-strength", 1, NULL, 0}, {NULL, 0, NULL, 0}};
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the id of the memory to start from");
  unsigned long depth = 1;
  double min_strength = 0;
  const char *v;
  if ((v = cli_opt_value(opts, "depth")) &&
      (rc = cli_parse_count(c, "depth", v, 0, 100, &depth)) != CLI_OK)
    return rc;
  if ((v = cli_opt_value(opts, "min-strength")) &&
      (rc = cli_parse_unit(c, "min-strength", v, &min_strength)) != CLI_OK)
    return rc;
  if (cli_check_id(c, "ID", pos[0]) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;

  cli_drain d;
  engram_stream_cbs cbs;
  engram_stream *s;
  cli_drain_init(&d, c, 0, print_related, c, &cbs);
  rc = engram_traverse(c->eg, c->ns, pos[0], (uint32_t)depth, min_strength,
                       &cbs, &s);
  if (rc == 0)
    rc = cli_drain_run(&d, s);
  if (rc == 0 && d.got == 0)
    rc = ENGRAM_ENOTFOUND; /* not even the start memory */
  if (rc == ENGRAM_ENOTFOUND) {
    cli_error(c, "no memory %s in namespace %s", pos[0], c->ns);
    return CLI_FAIL;
  }
  if (rc != 0) {
    cli_error(c, "walking the relationships failed: %s", engram_strerror(rc));
    return CLI_FAIL;
  }
  if (d.failed) {
    cli_error(c, "%llu memories could not be read (reported above)",
              (unsigned long long)d.failed);
    return CLI_FAIL;
  }
  return CLI_OK;
}
