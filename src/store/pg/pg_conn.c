/*
 * pg_conn.c — one PostgreSQL connection on the loop: connecting, the
 * exchange (a pipeline of commands ended by a sync), cancel, loss, close.
 *
 * libpq runs in non-blocking mode and its socket is watched by a uv_poll
 * handle, so no thread ever waits for the server. Connecting is
 * PQconnectStartParams then PQconnectPoll each time the socket is ready the
 * way libpq asked, under a PG_CONNECT_TIMEOUT_MS timer; a host name is
 * first resolved by uv_getaddrinfo on the thread pool, because libpq would
 * resolve it with a blocking getaddrinfo on the loop. Once connected the
 * connection stays in pipeline mode: an exchange queues its commands
 * (registered statements are prepared lazily, once per connection, with the
 * prepare pipelined just before the first use), ends with a sync, and the
 * results come back in order, each command's results then a NULL, and the
 * sync's PGRES_PIPELINE_SYNC last.
 *
 * The poll handle is stopped before every libpq call that may read, write
 * or reconnect, and watched again afterwards: libpq closes its socket by
 * itself when the server goes away or when PQconnectPoll moves to another
 * address, and libuv must never hold an active watch on a descriptor that
 * has been closed (its number may be reused at once). When the socket
 * changed, the old handle is closed and a new one made; uv_close always
 * comes before PQfinish. Handles are closed asynchronously, so the struct
 * lives until every handle has called back and any cancel task returned.
 *
 * While idle the socket stays watched for reading, so a server that shuts
 * down is noticed without waiting for the next request. A socket error
 * that libuv reports (as UV_EBADF, whatever the error) is read through
 * until libpq meets it, so that the results that came first are delivered
 * and the reason given is libpq's.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

enum { C_DOWN, C_RESOLVING, C_CONNECTING, C_READY, C_BROKEN, C_CLOSING };
enum { T_NONE, T_CONNECT_TIMEOUT, T_CONNECT_FAILED, T_DONE };
enum { E_COMMAND, E_PREPARE, E_SYNC };

/* What the connection expects next from libpq, in pipeline order. */
typedef struct pipeline_entry {
  int kind;
  const char *name; /* E_PREPARE: the statement being prepared */
} pipeline_entry;

typedef struct conn_watch {
  uv_poll_t poll;
  pg_conn *c;
  int fd;
} conn_watch;

struct pg_conn {
  pg_store *st;
  pg_conn_event_fn event;
  void *data;
  int state;
  PGconn *pg;
  conn_watch *watch; /* on PQsocket(pg); NULL when there is none */
  int want_write;    /* PQflush left output behind */
  uv_timer_t timer;  /* connect timeout, deferred failure or done */
  int timer_due;     /* T_* */
  unsigned handles;  /* the timer and watches not closed yet */
  uv_getaddrinfo_t resolve;
  int resolving;        /* resolve is on the thread pool */
  int resolve_late;     /* the connect timeout passed while it was */
  char *host;           /* the name being resolved */
  char msg[PG_MSG_LEN]; /* the last failure */

  pg_exchange *ex; /* the running exchange */
  int ex_ended;    /* its sync is queued: results may be read */
  int ex_failed;   /* queueing failed: done(EIO) after end */
  pipeline_entry *entries;
  unsigned nentries, head, cap;
  PGresult *prepare_error; /* handed to the command that needed it */
  const char *prepared[PG_MAX_STMTS];
  unsigned nprepared;

  rt_work cancel_work;
  int cancelling;   /* the cancel task has not returned */
  PGcancel *cancel; /* the task's, freed when it returns */
  int cancel_ok;
  char cancel_err[256];
};

/* libpq's multi-line messages as one line: a line that starts a sentence
 * is set off with "; ", one that continues a sentence with a space. */
static void one_line(char *dst, size_t size, const char *src) {
  size_t n = 0;
  if (!src || !*src)
    src = "no reason given";
  for (const char *p = src; *p && n + 3 < size; p++) {
    if (*p == '\n') {
      while (p[1] == '\n' || p[1] == '\t' || p[1] == ' ')
        p++;
      if (p[1] && n > 0) {
        if (p[1] >= 'A' && p[1] <= 'Z')
          dst[n++] = ';';
        dst[n++] = ' ';
      }
    } else {
      dst[n++] = *p == '\t' ? ' ' : *p;
    }
  }
  dst[n] = '\0';
}

/* c->msg = "PostgreSQL at HOST:PORT: what: reason" (reason on one line). */
static void say(pg_conn *c, const char *what, const char *reason) {
  char why[PG_MSG_LEN];
  one_line(why, sizeof why, reason);
  int n = snprintf(c->msg, sizeof c->msg, "PostgreSQL at %s: ", c->st->addr);
  if (n < 0 || (size_t)n >= sizeof c->msg)
    return;
  size_t used = (size_t)n;
  n = snprintf(c->msg + used, sizeof c->msg - used, "%s: ", what);
  if (n < 0 || (size_t)n >= sizeof c->msg - used)
    return;
  used += (size_t)n;
  snprintf(c->msg + used, sizeof c->msg - used, "%s", why);
}

static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* ---------------------------------------------------------------- handles */

static void maybe_freed(pg_conn *c) {
  if (c->state != C_CLOSING || c->handles > 0 || c->cancelling || c->resolving)
    return;
  c->event(c, c->data, PG_CONN_CLOSED, NULL);
  free(c->entries);
  free(c->host);
  free(c);
}

static void watch_closed(uv_handle_t *h) {
  conn_watch *w = h->data;
  pg_conn *c = w->c;
  free(w);
  c->handles--;
  maybe_freed(c);
}

/* uv_close first: libuv forgets the descriptor before libpq may close it. */
static void drop_watch(pg_conn *c) {
  if (!c->watch)
    return;
  uv_close((uv_handle_t *)&c->watch->poll, watch_closed);
  c->watch = NULL;
}

static void unwatch(pg_conn *c) {
  if (c->watch)
    uv_poll_stop(&c->watch->poll);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches PQsocket for events, on a new handle when the socket changed.
 * 0, or a libuv error. */
static int watch(pg_conn *c, int events) {
  int fd = c->pg ? PQsocket(c->pg) : -1;
  if (fd < 0)
    return UV_EBADF;
  /* A new descriptor (PQconnectPoll moved to another address): the old
   * one left epoll when the handle was stopped, before libpq closed it, so
   * closing its handle now touches no other watch. uv_poll_init refuses
   * (UV_EEXIST) a number still watched in the loop: ours never are once
   * libpq may have closed them. */
  if (c->watch && c->watch->fd != fd)
    drop_watch(c);
  if (!c->watch) {
    conn_watch *w = calloc(1, sizeof *w);
    if (!w)
      return UV_ENOMEM;
    int rc = uv_poll_init(c->st->head.rt->loop, &w->poll, fd);
    if (rc != 0) {
      free(w);
      return rc;
    }
    w->poll.data = w;
    w->c = c;
    w->fd = fd;
    c->watch = w;
    c->handles++;
  }
  int rc = uv_poll_start(&c->watch->poll, events, on_poll);
  /* An idle connection watches for the server going away, but does not
   * keep the loop alive: like an idle SQLite store, it has nothing to do. */
  if (c->state == C_READY && !c->ex)
    uv_unref((uv_handle_t *)&c->watch->poll);
  else
    uv_ref((uv_handle_t *)&c->watch->poll);
  return rc;
}

static void on_timer(uv_timer_t *t);

static void timer_start(pg_conn *c, int due, uint64_t ms) {
  c->timer_due = due;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void timer_stop(pg_conn *c) {
  c->timer_due = T_NONE;
  uv_timer_stop(&c->timer);
}

/* ------------------------------------------------------------ breaking */

static void forget_connection(pg_conn *c) {
  drop_watch(c);
  if (c->pg) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  c->want_write = 0;
  c->nprepared = 0; /* the server forgot them with its session */
}

/* Marks c broken ("PostgreSQL at ...: what: reason") and tells the owner;
 * a running exchange is not finished here. */
static void break_conn(pg_conn *c, const char *what, const char *reason) {
  if (c->state != C_READY)
    return;
  say(c, what, reason);
  c->state = C_BROKEN;
  forget_connection(c);
  c->event(c, c->data, PG_CONN_LOST, c->msg);
}

static void finish(pg_conn *c, int status, const char *msg) {
  pg_exchange *ex = c->ex;
  char copy[PG_MSG_LEN];
  snprintf(copy, sizeof copy, "%s", msg ? msg : "");
  c->ex = NULL;
  c->ex_ended = 0;
  c->ex_failed = 0;
  c->nentries = c->head = 0;
  if (c->prepare_error) {
    PQclear(c->prepare_error);
    c->prepare_error = NULL;
  }
  if (ex)
    ex->done(ex, status, msg ? copy : NULL);
}

/* The connection broke under the loop: the running exchange fails. */
static void lose(pg_conn *c, const char *reason) {
  break_conn(c, "connection lost", reason);
  if (c->ex)
    finish(c, ENGRAM_EIO, c->msg);
}

/* ----------------------------------------------------------- connecting */

static void connect_failed(pg_conn *c, const char *reason) {
  if (reason)
    one_line(c->msg, sizeof c->msg, reason);
  timer_stop(c);
  forget_connection(c);
  c->state = C_DOWN;
  c->event(c, c->data, PG_CONN_FAILED, c->msg);
}

/* A failure found while starting: reported from the loop, never inside
 * pg_conn_connect. */
static void fail_later(pg_conn *c, const char *reason) {
  one_line(c->msg, sizeof c->msg, reason);
  c->state = C_CONNECTING;
  timer_start(c, T_CONNECT_FAILED, 0);
}

static void connected(pg_conn *c) {
  timer_stop(c);
  if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
    connect_failed(c, PQerrorMessage(c->pg));
    return;
  }
  c->state = C_READY;
  c->nprepared = 0;
  int rc = watch(c, UV_READABLE);
  if (rc != 0) {
    connect_failed(c, uv_strerror(rc));
    return;
  }
  c->event(c, c->data, PG_CONN_UP, NULL);
}

static void connect_step(pg_conn *c) {
  PostgresPollingStatusType r = PQconnectPoll(c->pg);
  int rc = 0;
  switch (r) {
  case PGRES_POLLING_OK:
    connected(c);
    return;
  case PGRES_POLLING_FAILED:
    connect_failed(c, PQerrorMessage(c->pg));
    return;
  case PGRES_POLLING_READING:
    rc = watch(c, UV_READABLE);
    break;
  default:
    rc = watch(c, UV_WRITABLE);
    break;
  }
  if (rc != 0)
    connect_failed(c, uv_strerror(rc));
}

/* Starts libpq with the options of the connection string; host and
 * hostaddr replace the string's own when given (a resolved name). */
static void start_libpq(pg_conn *c, const char *host, const char *hostaddr) {
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(c->st->conninfo, &err);
  if (!opts) {
    fail_later(c, err ? err : "out of memory");
    PQfreemem(err);
    return;
  }
  size_t n = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    n++;
  const char **keys = calloc(n + 4, sizeof *keys);
  const char **values = calloc(n + 4, sizeof *values);
  if (!keys || !values) {
    free(keys);
    free(values);
    PQconninfoFree(opts);
    fail_later(c, "out of memory");
    return;
  }
  size_t k = 0;
  int encoding = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val)
      continue;
    if (strcmp(o->keyword, "client_encoding") == 0)
      encoding = 1;
    if (hostaddr && (strcmp(o->keyword, "host") == 0 ||
                     strcmp(o->keyword, "hostaddr") == 0))
      continue;
    keys[k] = o->keyword;
    values[k++] = o->val;
  }
  if (!encoding) { /* rows are checked as UTF-8 */
    keys[k] = "client_encoding";
    values[k++] = "UTF8";
  }
  if (hostaddr) {
    keys[k] = "host";
    values[k++] = host;
    keys[k] = "hostaddr";
    values[k++] = hostaddr;
  }
  c->pg = PQconnectStartParams(keys, values, 0);
  free(keys);
  free(values);
  PQconninfoFree(opts);
  if (!c->pg) {
    fail_later(c, "out of memory");
    return;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    fail_later(c, PQerrorMessage(c->pg));
    return;
  }
  PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
  c->state = C_CONNECTING;
  /* libpq's rule: before the first PQconnectPoll, wait for writable. */
  int rc = watch(c, UV_WRITABLE);
  if (rc != 0) {
    fail_later(c, uv_strerror(rc));
    return;
  }
  timer_start(c, T_CONNECT_TIMEOUT, PG_CONNECT_TIMEOUT_MS);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  pg_conn *c = PG_CONTAINER(req, pg_conn, resolve);
  c->resolving = 0;
  if (c->state == C_CLOSING) {
    uv_freeaddrinfo(res);
    maybe_freed(c);
    return;
  }
  if (c->resolve_late) {
    uv_freeaddrinfo(res);
    connect_failed(c, NULL); /* c->msg says it timed out */
    return;
  }
  if (status != 0) {
    snprintf(c->msg, sizeof c->msg,
             "could not translate host name \"%s\" to an address: %s", c->host,
             uv_strerror(status));
    uv_freeaddrinfo(res);
    connect_failed(c, NULL);
    return;
  }
  /* libpq tries hosts in order: one "host" per address, so that the
   * name still serves for TLS verification and messages. */
  char addrs[8 * (INET6_ADDRSTRLEN + 1)] = "";
  char hosts[8 * 256] = "";
  size_t used = 0, hused = 0;
  int count = 0;
  for (struct addrinfo *ai = res; ai && count < 8; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void *a = NULL;
    if (ai->ai_family == AF_INET)
      a = &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
    else if (ai->ai_family == AF_INET6)
      a = &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
    if (!a || !inet_ntop(ai->ai_family, a, text, sizeof text))
      continue;
    if (strlen(c->host) + hused + 2 > sizeof hosts)
      break;
    used += (size_t)snprintf(addrs + used, sizeof addrs - used, "%s%s",
                             count ? "," : "", text);
    hused += (size_t)snprintf(hosts + hused, sizeof hosts - hused, "%s%s",
                              count ? "," : "", c->host);
    count++;
  }
  uv_freeaddrinfo(res);
  if (count == 0) {
    snprintf(c->msg, sizeof c->msg, "host name \"%s\" has no address", c->host);
    connect_failed(c, NULL);
    return;
  }
  start_libpq(c, hosts, addrs);
}

static int is_address(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 ||
         inet_pton(AF_INET6, host, buf) == 1;
}

/* The one host name to resolve before libpq sees it, or NULL: socket
 * directories, addresses, hostaddr given, or a list of hosts (left to
 * libpq) need none. */
static char *host_to_resolve(const char *conninfo) {
  PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
  if (!opts)
    return NULL; /* start_libpq reports the error */
  const char *host = NULL, *hostaddr = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "host") == 0 && o->val && *o->val)
      host = o->val;
    else if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val)
      hostaddr = o->val;
  }
  if (!host)
    host = getenv("PGHOST");
  if (!hostaddr)
    hostaddr = getenv("PGHOSTADDR");
  char *out = NULL;
  if (host && *host && !(hostaddr && *hostaddr) && host[0] != '/' &&
      host[0] != '@' && !strchr(host, ',') && !is_address(host) &&
      strlen(host) < 256)
    out = strdup(host);
  PQconninfoFree(opts);
  return out;
}

void pg_conn_connect(pg_conn *c) {
  if (c->state != C_DOWN && c->state != C_BROKEN)
    return;
  forget_connection(c);
  c->state = C_CONNECTING;
  free(c->host);
  c->host = host_to_resolve(c->st->conninfo);
  if (!c->host) {
    start_libpq(c, NULL, NULL);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(c->st->head.rt->loop, &c->resolve, on_resolved,
                          c->host, NULL, &hints);
  if (rc != 0) {
    fail_later(c, uv_strerror(rc));
    return;
  }
  c->resolving = 1;
  c->resolve_late = 0;
  c->state = C_RESOLVING;
  timer_start(c, T_CONNECT_TIMEOUT, PG_CONNECT_TIMEOUT_MS);
}

/* ------------------------------------------------------------- exchange */

static int reserve(pg_conn *c, unsigned more) {
  if (c->nentries + more <= c->cap)
    return 1;
  unsigned cap = c->cap ? c->cap * 2 : 16;
  while (cap < c->nentries + more)
    cap *= 2;
  pipeline_entry *e = realloc(c->entries, cap * sizeof *e);
  if (!e)
    return 0;
  c->entries = e;
  c->cap = cap;
  return 1;
}

static void push(pg_conn *c, int kind, const char *name) {
  c->entries[c->nentries].kind = kind;
  c->entries[c->nentries].name = name;
  c->nentries++;
}

/* Queueing failed: the pipeline is in an unknown state, so the connection
 * is given up (the pool reconnects it); done(EIO) follows pg_exchange_end. */
static void queue_failed(pg_conn *c, const char *reason) {
  if (c->ex_failed)
    return;
  c->ex_failed = 1;
  if (c->state != C_READY)
    return; /* c->msg already says why */
  break_conn(c, "cannot send a command",
             reason ? reason : PQerrorMessage(c->pg));
}

void pg_exchange_begin(pg_conn *c, pg_exchange *ex) {
  c->ex = ex;
  c->ex_ended = 0;
  c->ex_failed = 0;
  c->nentries = c->head = 0;
  ex->ncmds = 0;
  ex->next = 0;
  if (c->state != C_READY) {
    c->ex_failed = 1;
    if (c->state != C_BROKEN)
      snprintf(c->msg, sizeof c->msg, "PostgreSQL at %s: not connected",
               c->st->addr);
    return;
  }
  unwatch(c); /* the sends below may read, and libpq may drop the socket */
}

static int is_prepared(const pg_conn *c, const char *name) {
  for (unsigned i = 0; i < c->nprepared; i++)
    if (c->prepared[i] == name || strcmp(c->prepared[i], name) == 0)
      return 1;
  return 0;
}

static void forget_prepared(pg_conn *c, const char *name) {
  for (unsigned i = 0; i < c->nprepared; i++)
    if (strcmp(c->prepared[i], name) == 0) {
      c->prepared[i] = c->prepared[--c->nprepared];
      return;
    }
}

void pg_exchange_stmt(pg_conn *c, const pg_stmt *stmt,
                      const char *const *values, const int *lengths) {
  if (c->ex_failed)
    return;
  if (!reserve(c, 2)) {
    queue_failed(c, "out of memory");
    return;
  }
  int prepared = is_prepared(c, stmt->name);
  if (!prepared && c->nprepared < PG_MAX_STMTS) {
    if (!PQsendPrepare(c->pg, stmt->name, stmt->sql, stmt->nparams, NULL)) {
      queue_failed(c, NULL);
      return;
    }
    c->prepared[c->nprepared++] = stmt->name;
    push(c, E_PREPARE, stmt->name);
    prepared = 1;
  }
  /* Past PG_MAX_STMTS names a statement runs unprepared. */
  int ok = prepared ? PQsendQueryPrepared(c->pg, stmt->name, stmt->nparams,
                                          values, lengths, NULL, 0)
                    : PQsendQueryParams(c->pg, stmt->sql, stmt->nparams, NULL,
                                        values, lengths, NULL, 0);
  if (!ok) {
    queue_failed(c, NULL);
    return;
  }
  push(c, E_COMMAND, NULL);
  c->ex->ncmds++;
}

void pg_exchange_sql(pg_conn *c, const char *sql, int nparams,
                     const char *const *values, const int *lengths) {
  if (c->ex_failed)
    return;
  if (!reserve(c, 1)) {
    queue_failed(c, "out of memory");
    return;
  }
  if (!PQsendQueryParams(c->pg, sql, nparams, NULL, values, lengths, NULL, 0)) {
    queue_failed(c, NULL);
    return;
  }
  push(c, E_COMMAND, NULL);
  c->ex->ncmds++;
}

/* PQflush; -1 when the connection broke (c is then broken). */
static int flush(pg_conn *c) {
  int r = PQflush(c->pg);
  c->want_write = r == 1;
  return r < 0 ? -1 : 0;
}

static int rewatch(pg_conn *c) {
  return watch(c, UV_READABLE | (c->want_write ? UV_WRITABLE : 0));
}

void pg_exchange_end(pg_conn *c) {
  if (!c->ex_failed) {
    if (!reserve(c, 1))
      queue_failed(c, "out of memory");
    else if (!PQpipelineSync(c->pg))
      queue_failed(c, NULL);
    else
      push(c, E_SYNC, NULL);
  }
  if (!c->ex_failed && flush(c) < 0)
    queue_failed(c, NULL);
  if (!c->ex_failed) {
    int rc = rewatch(c);
    if (rc != 0)
      queue_failed(c, uv_strerror(rc));
  }
  if (c->ex_failed) {
    /* done must not run inside pg_exchange_end: the timer calls it. */
    timer_start(c, T_DONE, 0);
    return;
  }
  c->ex_ended = 1;
}

/* Takes every result libpq has parsed, in pipeline order. */
static void drain(pg_conn *c) {
  while (c->state == C_READY && c->ex && c->ex_ended && c->head < c->nentries &&
         !PQisBusy(c->pg)) {
    PGresult *res = PQgetResult(c->pg);
    pipeline_entry *e = &c->entries[c->head];
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_COMMAND_OK;
    if (e->kind == E_SYNC || (res && rs == PGRES_PIPELINE_SYNC)) {
      PQclear(res);
      if (e->kind != E_SYNC || !res || rs != PGRES_PIPELINE_SYNC) {
        lose(c, "results out of step with the pipeline");
        return;
      }
      c->head++;
      finish(c, 0, NULL);
      continue;
    }
    if (!res) { /* the end of this command's results */
      c->head++;
      if (e->kind == E_COMMAND)
        c->ex->next++;
      continue;
    }
    if (e->kind == E_PREPARE) {
      if (rs != PGRES_COMMAND_OK) {
        forget_prepared(c, e->name);
        if (rs == PGRES_FATAL_ERROR && !c->prepare_error) {
          c->prepare_error = res; /* the reason its command did not run */
          continue;
        }
      }
      PQclear(res);
      continue;
    }
    if (rs == PGRES_PIPELINE_ABORTED && c->prepare_error) {
      PQclear(res);
      res = c->prepare_error;
      c->prepare_error = NULL;
    }
    pg_exchange *ex = c->ex;
    ex->result(ex, ex->next, res);
    PQclear(res);
  }
}

/* Why a socket that libuv reported in error has failed, when libpq could
 * not tell: its pending error (SO_ERROR), never libuv's status, which is
 * UV_EBADF for any error and would blame a descriptor that is fine. */
static const char *socket_error(const pg_conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  int fd = PQsocket(c->pg);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
      err == 0)
    return "the socket reported an error";
  return strerror(err);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  conn_watch *w = h->data;
  pg_conn *c = w->c;
  if (c->watch != w)
    return;
  unwatch(c);
  if (c->state == C_CONNECTING) {
    connect_step(c); /* PQconnectPoll asks the socket for its error itself */
    return;
  }
  if (c->state != C_READY)
    return;
  /* libuv reports POLLERR as status UV_EBADF without reading, though the
   * descriptor is fine: the connection failed (a reset, a timeout). What
   * the server sent before is still queued ahead of the error, often more
   * than one read takes; libpq reads it, and when the queue is empty meets
   * the error and says what it was. So an error is handled as readable and
   * the watch goes on: each round reads queued data (progress) or fails in
   * libpq. A round with nothing queued that leaves libpq content would
   * repeat for ever, so then the socket's own error ends the connection. */
  int queued = 1;
  if (status < 0) {
    events = UV_READABLE;
    if (ioctl(PQsocket(c->pg), FIONREAD, &queued) != 0)
      queued = 0;
  }
  if (c->want_write && flush(c) < 0) {
    lose(c, PQerrorMessage(c->pg));
    return;
  }
  if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
    lose(c, PQerrorMessage(c->pg));
    return;
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    lose(c, PQerrorMessage(c->pg));
    return;
  }
  PGnotify *note;
  while ((note = PQnotifies(c->pg)) != NULL)
    PQfreemem(note); /* engram listens to nothing */
  drain(c);
  /* A callback may have started another exchange, released c, or lost
   * it; whatever state c is in now decides the watch. */
  if (c->state != C_READY)
    return;
  if (queued == 0) {
    lose(c, socket_error(c));
    return;
  }
  int rc = rewatch(c);
  if (rc != 0)
    lose(c, uv_strerror(rc));
}

static void on_timer(uv_timer_t *t) {
  pg_conn *c = PG_CONTAINER(t, pg_conn, timer);
  int due = c->timer_due;
  c->timer_due = T_NONE;
  switch (due) {
  case T_CONNECT_TIMEOUT:
    if (c->state == C_RESOLVING) {
      /* The failure is told when the lookup returns: until then the
       * request is in use and no new attempt may start. */
      snprintf(c->msg, sizeof c->msg,
               "could not resolve \"%s\" within %d ms (timed out)", c->host,
               PG_CONNECT_TIMEOUT_MS);
      c->resolve_late = 1;
      uv_cancel((uv_req_t *)&c->resolve);
    } else if (c->state == C_CONNECTING) {
      char why[64];
      snprintf(why, sizeof why, "no connection within %d ms (timed out)",
               PG_CONNECT_TIMEOUT_MS);
      connect_failed(c, why);
    }
    break;
  case T_CONNECT_FAILED:
    connect_failed(c, NULL);
    break;
  case T_DONE:
    if (c->ex)
      finish(c, ENGRAM_EIO, c->msg);
    break;
  default:
    break;
  }
}

/* --------------------------------------------------------------- cancel */

/* PQcancel is blocking in libpq 15: it opens its own connection to the
 * server, sends the cancel key and waits for the server to close it. It
 * runs here, as one bounded task on the thread pool, never on the loop. */
static void cancel_run(rt_work *w) {
  pg_conn *c = PG_CONTAINER(w, pg_conn, cancel_work);
  c->cancel_ok = PQcancel(c->cancel, c->cancel_err, sizeof c->cancel_err);
}

static void cancel_after(rt_work *w, int status) {
  pg_conn *c = PG_CONTAINER(w, pg_conn, cancel_work);
  pg_store *st = c->st;
  st->tasks--;
  PQfreeCancel(c->cancel);
  c->cancel = NULL;
  c->cancelling = 0;
  if (status == 0 && !c->cancel_ok) {
    char why[PG_MSG_LEN];
    one_line(why, sizeof why, c->cancel_err);
    rt_log(st->head.rt, ENGRAM_LOG_WARN,
           "PostgreSQL at %s: the cancel request failed: %s", st->addr, why);
  }
  if (c->state == C_CLOSING)
    maybe_freed(c);
  else
    c->event(c, c->data, PG_CONN_CANCEL_RETURNED, NULL);
  pg_maybe_close(st);
}

void pg_conn_cancel(pg_conn *c) {
  if (c->state != C_READY || !c->ex || c->cancelling)
    return;
  /* The task owns its own copy of the cancel key: the connection may be
   * lost or reconnected while the task runs. */
  c->cancel = PQgetCancel(c->pg);
  if (!c->cancel)
    return;
  if (rt_offload(c->st->head.rt, &c->cancel_work, cancel_run, cancel_after) !=
      0) {
    PQfreeCancel(c->cancel);
    c->cancel = NULL;
    return;
  }
  c->cancelling = 1;
  c->st->tasks++;
}

/* ---------------------------------------------------------------- life */

pg_conn *pg_conn_new(pg_store *st, pg_conn_event_fn event, void *data) {
  pg_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->st = st;
  c->event = event;
  c->data = data;
  c->state = C_DOWN;
  uv_timer_init(st->head.rt->loop, &c->timer);
  c->handles = 1;
  return c;
}

static void timer_closed(uv_handle_t *h) {
  pg_conn *c = PG_CONTAINER(h, pg_conn, timer);
  c->handles--;
  maybe_freed(c);
}

void pg_conn_close(pg_conn *c) {
  if (c->state == C_CLOSING)
    return;
  c->state = C_CLOSING;
  c->ex = NULL;
  forget_connection(c);
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->resolve);
  if (c->prepare_error) {
    PQclear(c->prepare_error);
    c->prepare_error = NULL;
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, timer_closed);
}

int pg_conn_state(const pg_conn *c) {
  switch (c->state) {
  case C_RESOLVING:
  case C_CONNECTING:
    return PG_CONN_IS_CONNECTING;
  case C_READY:
    return PG_CONN_IS_READY;
  case C_CLOSING:
    return PG_CONN_IS_CLOSING;
  default:
    return PG_CONN_IS_DOWN;
  }
}

int pg_conn_cancelling(const pg_conn *c) {
  return c->cancelling;
}

PGconn *pg_conn_pg(pg_conn *c) {
  return c->pg;
}

int pg_conn_ok(const pg_conn *c) {
  return c->state == C_READY;
}
