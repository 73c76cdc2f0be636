/*
 * cmd_serve.c — engram serve: the HTTP service on the embedded store (or,
 * later, PostgreSQL), until SIGTERM or SIGINT asks it to stop gracefully:
 * no new connections, in-flight requests finish and their responses are
 * written, queued writes commit, the store closes cleanly.
 *
 * Every option can also come from an ENGRAM_* environment variable; the
 * command line wins.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct serve_state {
  cli *c;
  engram_server *srv;
  uv_signal_t sigterm, sigint;
  int stopping;
  int stopped;
} serve_state;

static void on_server_stopped(engram_server *srv, void *data) {
  serve_state *s = data;
  (void)srv;
  s->stopped = 1;
  fprintf(stderr, "engram: serve: stopped; closing the store\n");
}

static void on_signal(uv_signal_t *h, int signum) {
  serve_state *s = h->data;
  if (s->stopping) {
    fprintf(stderr, "engram: serve: still finishing requests in flight\n");
    return;
  }
  s->stopping = 1;
  fprintf(stderr, "engram: serve: %s: finishing requests in flight\n",
          signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  engram_server_stop(s->srv, on_server_stopped, s);
}

static const char *opt_or_env(const cli_opt *opts, const char *name,
                              const char *env) {
  const char *v = cli_opt_value(opts, name);
  return v ? v : getenv(env);
}

int cmd_serve(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"listen", 1, NULL, 0},     {"keys", 1, NULL, 0},
                    {"max-body", 1, NULL, 0},   {"log-format", 1, NULL, 0},
                    {"max-inflight", 1, NULL, 0}, {"io-timeout", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, opts, NULL, 0, &npos)) != CLI_OK)
    return rc;
  engram_server_options o;
  engram_server_options_init(&o);
  o.listen = opt_or_env(opts, "listen", "ENGRAM_LISTEN");
  o.keys_file = opt_or_env(opts, "keys", "ENGRAM_KEYS");
  const char *v;
  unsigned long n;
  if ((v = opt_or_env(opts, "max-body", "ENGRAM_MAX_BODY"))) {
    if ((rc = cli_parse_count(c, "max-body", v, 1024, 1ul << 30, &n)) != CLI_OK)
      return rc;
    o.max_body = n;
  }
  if ((v = opt_or_env(opts, "max-inflight", "ENGRAM_MAX_INFLIGHT"))) {
    if ((rc = cli_parse_count(c, "max-inflight", v, 1, 1000000, &n)) != CLI_OK)
      return rc;
    o.max_inflight = (unsigned)n;
  }
  if ((v = opt_or_env(opts, "io-timeout", "ENGRAM_IO_TIMEOUT"))) {
    if ((rc = cli_parse_count(c, "io-timeout", v, 100, 3600000, &n)) != CLI_OK)
      return rc;
    o.io_timeout_ms = n;
  }
  if ((v = opt_or_env(opts, "log-format", "ENGRAM_LOG_FORMAT"))) {
    if (strcmp(v, "text") == 0)
      o.log_format = ENGRAM_LOG_TEXT;
    else if (strcmp(v, "json") == 0)
      o.log_format = ENGRAM_LOG_JSON;
    else
      return cli_usage_error(c, "--log-format must be text or json, not '%s'",
                             v);
  }
  if (cli_open(c, 1) != CLI_OK)
    return CLI_FAIL;

  serve_state s = {.c = c};
  char err[512] = "";
  rc = engram_server_start(c->eg, &o, &s.srv, err, sizeof err);
  if (rc != 0) {
    cli_error(c, "%s", err[0] ? err : engram_strerror(rc));
    cli_close(c);
    return CLI_FAIL;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = engram_loop(c->eg);
  uv_signal_init(loop, &s.sigterm);
  uv_signal_init(loop, &s.sigint);
  s.sigterm.data = s.sigint.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  fprintf(stderr,
          "engram: serving %s on http://%s%s (port %d); stop with Ctrl-C\n",
          c->db, o.listen ? o.listen : "127.0.0.1:8420",
          o.keys_file ? "" : " without API keys: loopback only",
          engram_server_port(s.srv));
  cli_wait(c, &s.stopped);
  cli_close(c);
  return CLI_OK;
}
