/*
 * cmd_agent.c — the agent's two steps from the command line: context (the
 * memory section engram would inject before a reply) and remember (store a
 * conversation turn).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* --------------------------------------------------------------- context */

typedef struct context_wait {
  int done;
  cli *c;
  int status;
  int printed;
} context_wait;

static void print_context(const engram_context_result *r, void *data) {
  context_wait *w = data;
  w->done = 1;
  w->status = r->status;
  if (r->status != 0 && r->status != ENGRAM_ECANCELED)
    return;
  w->printed = 1;
  if (w->c->json) {
    json_t *ids = json_array();
    for (size_t i = 0; i < r->count; i++)
      json_array_append_new(ids, json_string(r->ids[i]));
    json_t *o = json_pack("{s:s, s:o, s:I, s:f, s:b, s:I, s:f}", "text",
                          r->text, "ids", ids, "count", (json_int_t)r->count,
                          "mean_relevance", r->mean_relevance, "timed_out",
                          r->timed_out, "failed", (json_int_t)r->failed,
                          "elapsed_ms", r->elapsed_ms);
    out_json_line(stdout, o, 0);
    return;
  }
  fputs(r->text, stdout);
  if (r->timed_out)
    fprintf(stderr,
            "engram: context: the deadline passed; %zu memories arrived in "
            "time\n",
            r->count);
  if (r->count == 0)
    fprintf(stderr, "engram: context: no memory in namespace %s is relevant\n",
            w->c->ns);
}

int cmd_context(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"max", 1, NULL, 0},         {"timeout", 1, NULL, 0},
                    {"max-chars", 1, NULL, 0},   {"min-relevance", 1, NULL, 0},
                    {"type", 1, NULL, 0},        {"no-headers", 0, NULL, 0},
                    {NULL, 0, NULL, 0}};
  const char *pos[1];
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, pos, 1, &npos)) != CLI_OK)
    return rc;
  if (npos != 1)
    return cli_usage_error(c, "give the message, as one argument (quote it)");
  engram_context_options o = {0};
  unsigned long n;
  const char *v;
  if ((v = cli_opt_value(opts, "max"))) {
    if ((rc = cli_parse_count(c, "max", v, 1, 1000, &n)) != CLI_OK)
      return rc;
    o.max_memories = (unsigned)n;
  }
  if ((v = cli_opt_value(opts, "timeout"))) {
    if ((rc = cli_parse_count(c, "timeout", v, 1, 3600000, &n)) != CLI_OK)
      return rc;
    o.timeout_ms = n;
  }
  if ((v = cli_opt_value(opts, "max-chars"))) {
    if ((rc = cli_parse_count(c, "max-chars", v, 1, 1000000, &n)) != CLI_OK)
      return rc;
    o.max_memory_chars = n;
  }
  if ((v = cli_opt_value(opts, "min-relevance")) &&
      (rc = cli_parse_unit(c, "min-relevance", v, &o.min_relevance)) != CLI_OK)
    return rc;
  if ((v = cli_opt_value(opts, "type")) &&
      (rc = cli_parse_types(c, "type", v, &o.types)) != CLI_OK)
    return rc;
  o.no_headers = cli_opt_seen(opts, "no-headers");
  if (cli_open(c, 0) != CLI_OK)
    return CLI_FAIL;
  context_wait w = {.c = c};
  rc = engram_context_inject(c->eg, c->ns, pos[0], &o, print_context, &w,
                             NULL);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  if (rc == 0)
    rc = w.status;
  if (rc == ENGRAM_EUTF8) {
    cli_error(c, "the message is not valid UTF-8; give text in UTF-8");
    return CLI_FAIL;
  }
  if (rc != 0) {
    cli_error(c, "the search failed: %s", engram_strerror(rc));
    return CLI_FAIL;
  }
  return CLI_OK;
}

/* -------------------------------------------------------------- remember */

typedef struct turn_wait {
  int done;
  int status;
  char message[256];
  char ids[3][ENGRAM_ID_LEN + 1];
} turn_wait;

static void on_turn(int status, const char *user_id, const char *assistant_id,
                    const char *exchange_id, const char *message, void *data) {
  turn_wait *w = data;
  w->done = 1;
  w->status = status;
  snprintf(w->message, sizeof w->message, "%s", message);
  if (status == 0) {
    memcpy(w->ids[0], user_id, ENGRAM_ID_LEN + 1);
    memcpy(w->ids[1], assistant_id, ENGRAM_ID_LEN + 1);
    memcpy(w->ids[2], exchange_id, ENGRAM_ID_LEN + 1);
  }
}

int cmd_remember(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"user", 1, NULL, 0},
                    {"assistant", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, NULL, 0, &npos)) != CLI_OK)
    return rc;
  const char *user = cli_opt_value(opts, "user");
  const char *assistant = cli_opt_value(opts, "assistant");
  if (!user || !assistant)
    return cli_usage_error(c, "give both --user TEXT and --assistant TEXT");
  if (cli_open(c, 1) != CLI_OK)
    return CLI_FAIL;
  turn_wait w = {0};
  rc = engram_memorize_turn(c->eg, c->ns, user, assistant, on_turn, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  if (rc == 0)
    rc = w.status;
  if (rc != 0) {
    cli_error(c, "cannot store the turn: %s",
              rc == ENGRAM_EUTF8    ? "the text is not valid UTF-8"
              : rc == ENGRAM_ETOOBIG ? "a side is larger than the content limit"
              : rc == ENGRAM_EINVAL  ? "a side is empty"
                                     : (w.message[0] ? w.message
                                                     : engram_strerror(rc)));
    return CLI_FAIL;
  }
  if (c->json) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ns", c->ns, "user_id",
                          w.ids[0], "assistant_id", w.ids[1], "exchange_id",
                          w.ids[2]);
    out_json_line(stdout, o, 0);
  } else {
    printf("user      %s\nassistant %s\nexchange  %s\n", w.ids[0], w.ids[1],
           w.ids[2]);
  }
  return CLI_OK;
}
