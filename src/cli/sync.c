/*
 * sync.c — one operation at a time, for the command-line tool only.
 *
 * The library calls back on its loop; the command is a short-lived process
 * that owns that loop (engram_init with a NULL loop), so after starting an
 * operation it runs the loop until the operation's callback has run. This
 * is the program's top level, never a callback, so no loop is nested, and
 * it is not a request path: the HTTP service does no such thing.
 *
 * The loop is run one turn at a time (UV_RUN_ONCE) rather than until idle,
 * so an operation completes promptly even while the storage keeps handles
 * of its own open; if the loop runs out of work before the callback came,
 * that is reported instead of waiting forever.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_wait_for(cli *c, int (*pred)(void *arg), void *arg) {
  uv_loop_t *loop = engram_loop(c->eg);
  while (!pred(arg)) {
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !pred(arg)) {
      cli_error(c, "internal error: the library finished without calling "
                   "back (please report this)");
      return ENGRAM_EIO;
    }
  }
  return 0;
}

static int flag_set(void *arg) {
  return *(const int *)arg;
}

int cli_wait(cli *c, const int *done) {
  return cli_wait_for(c, flag_set, (void *)(uintptr_t)done);
}

/* --------------------------------------------------------------- logging */

static void on_log(engram_log_level level, const char *message, void *data) {
  cli *c = data;
  if (level == ENGRAM_LOG_INFO)
    return;
  c->logged++;
  cli_error(c, "%s%s", level == ENGRAM_LOG_WARN ? "warning: " : "", message);
}

/* ---------------------------------------------------------- open, close */

/* mkdir -p of the folder that holds path. */
static int make_parent(cli *c, const char *path) {
  char dir[4096];
  size_t len = strlen(path);
  if (len >= sizeof dir) {
    cli_error(c, "--db path is too long");
    return CLI_FAIL;
  }
  memcpy(dir, path, len + 1);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir)
    return CLI_OK;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char saved = *p;
    *p = '\0';
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
      cli_error(c, "cannot create the folder %s for the database: %s", dir,
                strerror(errno));
      return CLI_FAIL;
    }
    *p = saved;
    if (saved == '\0')
      break;
  }
  return CLI_OK;
}

typedef struct open_wait {
  int done;
  int status;
  char message[256];
} open_wait;

static void on_open(engram *eg, int status, const char *message, void *data) {
  open_wait *w = data;
  (void)eg;
  w->status = status;
  snprintf(w->message, sizeof w->message, "%s",
           message ? message : engram_strerror(status));
  w->done = 1;
}

int cli_open(cli *c, int create) {
  if (!engram_db_is_postgres(c->db)) {
    struct stat st;
    if (!create && stat(c->db, &st) != 0) {
      if (errno == ENOENT)
        cli_error(c,
                  "no database at %s (nothing is stored there yet: add "
                  "memories with 'engram add' or 'engram import', or pass "
                  "--db PATH)",
                  c->db);
      else
        cli_error(c, "cannot use the database %s: %s", c->db, strerror(errno));
      return CLI_FAIL;
    }
    if (create && make_parent(c, c->db) != CLI_OK)
      return CLI_FAIL;
  }
  engram_options opts;
  engram_options_init(&opts);
  opts.db = c->db;
  /* Checked by main already. The HTTP embedder's key comes from the
   * environment only, never from a command line others can read. */
  engram_embedder_parse(c->embedder, &opts.embedder, NULL, 0);
  opts.embedder.api_key = getenv("ENGRAM_EMBEDDER_API_KEY");
  int rc = engram_init(&c->eg, NULL, &opts);
  if (rc != 0) {
    c->eg = NULL;
    cli_error(c, "cannot start engram: %s", engram_strerror(rc));
    return CLI_FAIL;
  }
  engram_set_log(c->eg, on_log, c);
  open_wait w = {0};
  rc = engram_open(c->eg, on_open, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  if (rc == 0)
    rc = w.status;
  if (rc != 0) {
    cli_error(c, "cannot open the database %s: %s", c->db,
              w.done ? w.message : engram_strerror(rc));
    cli_close(c);
    return CLI_FAIL;
  }
  return CLI_OK;
}

static void on_closed(engram *eg, void *data) {
  (void)eg;
  *(int *)data = 1;
}

void cli_close(cli *c) {
  if (!c->eg)
    return;
  int done = 0;
  engram_close(c->eg, on_closed, &done);
  cli_wait(c, &done);
  engram_free(c->eg);
  c->eg = NULL;
}

/* ---------------------------------------------------------------- writes */

typedef struct write_wait {
  int done;
  int status;
  engram_op *ops; /* the caller's, to copy results into */
} write_wait;

static void on_write(int status, engram_op *ops, size_t n, void *data) {
  write_wait *w = data;
  for (size_t i = 0; i < n; i++) {
    w->ops[i].status = ops[i].status;
    w->ops[i].deduplicated = ops[i].deduplicated;
    memcpy(w->ops[i].result_id, ops[i].result_id, sizeof ops[i].result_id);
    memcpy(w->ops[i].message, ops[i].message, sizeof ops[i].message);
  }
  w->status = status;
  w->done = 1;
}

int cli_write(cli *c, engram_op *ops, size_t n) {
  write_wait w = {.ops = ops};
  int rc = engram_write(c->eg, ops, n, on_write, &w);
  if (rc != 0)
    return rc;
  rc = cli_wait(c, &w.done);
  return rc != 0 ? rc : w.status;
}

const char *cli_op_message(const engram_op *ops, size_t n, int status) {
  for (size_t i = 0; i < n; i++)
    if (ops[i].status != 0 && ops[i].message[0])
      return ops[i].message;
  return engram_strerror(status);
}

/* ----------------------------------------------------------------- reads */

typedef struct get_wait {
  int done;
  int status;
  engram_node *node;
} get_wait;

static void on_get(int status, const engram_node *node, void *data) {
  get_wait *w = data;
  w->status = status;
  if (status == 0 && node) {
    w->node = engram_node_copy(node);
    if (!w->node)
      w->status = ENGRAM_ENOMEM;
  }
  w->done = 1;
}

int cli_get(cli *c, const char *ns, const char *id, engram_node **out) {
  get_wait w = {0};
  int rc = engram_get(c->eg, ns, id, on_get, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  if (rc == 0)
    rc = w.status;
  if (rc == 0 && !w.node)
    rc = ENGRAM_ENOTFOUND;
  if (rc != 0) {
    engram_node_free(w.node);
    return rc;
  }
  *out = w.node;
  return 0;
}

typedef struct list_wait {
  int done;
  int status;
  cli_history_fn history;
  cli_rels_fn rels;
  void *data;
} list_wait;

static void on_history(int status, const engram_history_entry *entries,
                       size_t n, void *data) {
  list_wait *w = data;
  w->status = status;
  if (status == 0)
    w->history(entries, n, w->data);
  w->done = 1;
}

int cli_history(cli *c, const char *ns, const char *id, cli_history_fn fn,
                void *data) {
  list_wait w = {.history = fn, .data = data};
  int rc = engram_history(c->eg, ns, id, on_history, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  return rc != 0 ? rc : w.status;
}

static void on_rels(int status, const engram_rel *rels, size_t n, void *data) {
  list_wait *w = data;
  w->status = status;
  if (status == 0)
    w->rels(rels, n, w->data);
  w->done = 1;
}

int cli_relationships(cli *c, const char *ns, const char *id, cli_rels_fn fn,
                      void *data) {
  list_wait w = {.rels = fn, .data = data};
  int rc = engram_relationships(c->eg, ns, id, on_rels, &w);
  if (rc == 0)
    rc = cli_wait(c, &w.done);
  return rc != 0 ? rc : w.status;
}

/* --------------------------------------------------------------- streams */

/* Items a drain asks for at a time: what it holds in memory at most. */
#define DRAIN_CHUNK 256

static void request_more(cli_drain *d) {
  size_t n = DRAIN_CHUNK;
  if (d->limit && d->limit - d->asked < n)
    n = d->limit - d->asked;
  if (n == 0)
    return;
  d->asked += n;
  engram_stream_request(d->stream, n);
}

static void drain_item(engram_stream *s, const engram_node *node, void *data) {
  cli_drain *d = data;
  d->got++;
  if (d->stopped)
    return;
  if (d->item(node, d->data) != 0 || (d->limit && d->got >= d->limit)) {
    d->stopped = 1;
    engram_stream_cancel(s);
    return;
  }
  if (d->got == d->asked)
    request_more(d);
}

static void drain_error(engram_stream *s, int code, const char *message,
                        void *data) {
  cli_drain *d = data;
  (void)s;
  (void)code;
  (void)message; /* the library logs it (on_log) */
  d->failed++;
}

static void drain_done(engram_stream *s, int status, void *data) {
  cli_drain *d = data;
  (void)s;
  d->status = (status == ENGRAM_ECANCELED && d->stopped) ? 0 : status;
  d->done = 1;
}

void cli_drain_init(cli_drain *d, cli *c, size_t limit, cli_item_fn item,
                    void *data, engram_stream_cbs *cbs) {
  memset(d, 0, sizeof *d);
  d->c = c;
  d->limit = limit;
  d->item = item;
  d->data = data;
  cbs->item = drain_item;
  cbs->error = drain_error;
  cbs->done = drain_done;
  cbs->data = d;
}

int cli_drain_run(cli_drain *d, engram_stream *s) {
  d->stream = s;
  request_more(d);
  int rc = cli_wait(d->c, &d->done);
  return rc != 0 ? rc : d->status;
}
