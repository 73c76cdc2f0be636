/*
 * cmd_query.c — reading many memories: search (ranked by relevance) and
 * list (creation order, paged with a cursor).
 *
 * Search ranks lexically unless --strategy hybrid or vector is given
 * (with --weights to change the hybrid options). Both drain a stream through
 * sync.c, which asks for items a chunk at a
 * time and cancels the stream as soon as the command has what it prints:
 * a search for 10 results never makes the store produce an 11th.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---------------------------------------------------------------- search */

typedef struct search_print {
  cli *c;
  size_t rank;
} search_print;

static int print_hit(const engram_node *n, void *data) {
  search_print *p = data;
  p->rank++;
  if (p->c->json)
    out_json_line(stdout, out_node_json(n, OUT_RELEVANCE), 0);
  else
    out_search_line(p->rank, n);
  return 0;
}

static int stream_failed(cli *c, const char *what, int rc) {
  if (rc == ENGRAM_EUTF8)
    cli_error(c, "the %s text is not valid UTF-8; give text in UTF-8", what);
  else
    cli_error(c, "the %s failed: %s", what, engram_strerror(rc));
  return CLI_FAIL;
}

static int items_failed(cli *c, uint64_t failed) {
  if (failed == 0)
    return CLI_OK;
  cli_error(c, "%llu memories could not be read (reported above)",
            (unsigned long long)failed);
  return CLI_FAIL;
}

int cli_parse_search(cli *c, const char *strategy, const char *weights,
                     cli_search *out) {
  if (strategy && (engram_strategy_parse(strategy, &out->strategy) != 0 ||
                   out->strategy == ENGRAM_STRATEGY_DEFAULT))
    return cli_usage_error(c,
                           "--strategy is lexical, hybrid or vector, not '%s'",
                           strategy);
  char err[512];
  if (weights && engram_search_options_set(&out->opts, weights, err,
                                           sizeof err) != 0)
    return cli_usage_error(c, "--weights: %s", err);
  return CLI_OK;
}

int cli_search_print(cli *c, const char *query, size_t limit, unsigned types,
                     double min_relevance, const cli_search *how,
                     size_t *found) {
  engram_query q = {.ns = c->ns,
                    .text = query,
                    .types = types,
                    .min_relevance = min_relevance,
                    .strategy = how ? how->strategy : ENGRAM_STRATEGY_LEXICAL,
                    .options = how ? &how->opts : NULL};
  search_print p = {.c = c};
  cli_drain d;
  engram_stream_cbs cbs;
  engram_stream *s;
  cli_drain_init(&d, c, limit, print_hit, &p, &cbs);
  int rc = engram_search(c->eg, &q, &cbs, &s);
  if (rc == 0)
    rc = cli_drain_run(&d, s);
  *found = p.rank;
  if (rc != 0)
    return stream_failed(c, "search", rc);
  return items_failed(c, d.failed);
}

int cmd_search(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"limit", 1, NULL, 0},    {"type", 1, NULL, 0},
                    {"min-relevance", 1, NULL, 0},
                    {"strategy", 1, NULL, 0}, {"weights", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give what to search for, as one argument "
                              "(quote it: engram search \"...\")");
  unsigned long limit = 10;
  unsigned types = 0;
  double min_rel = 0;
  const char *v;
  if ((v = cli_opt_value(opts, "limit")) &&
      (rc = cli_parse_count(c, "limit", v, 1, 100000, &limit)) != CLI_OK)
    return rc;
  if ((v = cli_opt_value(opts, "type")) &&
      (rc = cli_parse_types(c, "type", v, &types)) != CLI_OK)
    return rc;
  if ((v = cli_opt_value(opts, "min-relevance")) &&
      (rc = cli_parse_unit(c, "min-relevance", v, &min_rel)) != CLI_OK)
    return rc;
  cli_search how = {.strategy = ENGRAM_STRATEGY_LEXICAL};
  engram_search_options_init(&how.opts);
  if ((rc = cli_parse_search(c, cli_opt_value(opts, "strategy"),
                             cli_opt_value(opts, "weights"), &how)) != CLI_OK)
    return rc;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  size_t found;
  rc = cli_search_print(c, pos[0], limit, types, min_rel, &how, &found);
  if (rc == CLI_OK && found == 0 && !c->json)
    printf("no memory in namespace %s matches that search\n", c->ns);
  return rc;
}

/* ------------------------------------------------------------------ list */

typedef struct list_print {
  cli *c;
  size_t limit;
  size_t printed;
  int more; /* a memory past the page exists */
  char last[ENGRAM_ID_LEN + 1];
} list_print;

static int print_listed(const engram_node *n, void *data) {
  list_print *p = data;
  if (p->printed == p->limit) {
    p->more = 1; /* the one asked for beyond the page: not printed */
    return 1;
  }
  p->printed++;
  memcpy(p->last, n->id, sizeof p->last);
  if (p->c->json)
    out_json_line(stdout, out_node_json(n, 0), 0);
  else
    out_list_line(n);
  return 0;
}

int cmd_list(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"type", 1, NULL, 0},
                    {"after", 1, NULL, 0},
                    {"limit", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, NULL, 0, &npos)) != CLI_OK)
    return rc;
  unsigned long limit = 50;
  unsigned types = 0;
  const char *v;
  if ((v = cli_opt_value(opts, "limit")) &&
      (rc = cli_parse_count(c, "limit", v, 1, 1000000, &limit)) != CLI_OK)
    return rc;
  if ((v = cli_opt_value(opts, "type")) &&
      (rc = cli_parse_types(c, "type", v, &types)) != CLI_OK)
    return rc;
  const char *after = cli_opt_value(opts, "after");
  if (after && cli_check_id(c, "--after", after) != CLI_OK)
    return CLI_FAIL;
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;

  engram_query q = {.ns = c->ns, .types = types, .after = after};
  list_print p = {.c = c, .limit = limit};
  cli_drain d;
  engram_stream_cbs cbs;
  engram_stream *s;
  /* One more than the page: whether it comes tells if a next page exists. */
  cli_drain_init(&d, c, limit + 1, print_listed, &p, &cbs);
  rc = engram_list(c->eg, &q, &cbs, &s);
  if (rc == 0)
    rc = cli_drain_run(&d, s);
  if (rc != 0)
    return stream_failed(c, "listing", rc);
  if (p.more)
    fprintf(c->json ? stderr : stdout, "next: --after %s\n", p.last);
  else if (p.printed == 0 && !c->json)
    printf("no memories in namespace %s%s\n", c->ns,
           after ? " after that id" : "");
  return items_failed(c, d.failed);
}
