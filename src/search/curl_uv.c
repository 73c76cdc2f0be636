/*
 * curl_uv.c — the libcurl multi-socket interface on a libuv loop.
 *
 * libcurl announces each socket it wants watched through the socket
 * callback; each gets a `watch` (a uv_poll_t) stored with the socket by
 * curl_multi_assign(). On CURL_POLL_REMOVE the watch is stopped at once —
 * curl is about to close the descriptor and may hand the same number to a
 * new socket before the loop runs again — and its poll handle is closed;
 * the memory goes when libuv's close callback runs. libcurl's timer
 * callback only (re)arms the one uv_timer_t; curl is always called back
 * from the loop, never from inside one of its own callbacks.
 *
 * After every curl_multi_socket_action() the finished transfers are taken
 * off curl_multi_info_read(), removed from the multi handle and reported.
 * A done callback may add, remove or close freely: nothing here touches a
 * transfer after reporting it, and the driver itself is freed only at the
 * end of the close sequence, which runs from the timer.
 *
 * Close: transfers still running are removed and parked; from the timer,
 * their done callbacks run with CURLE_ABORTED_BY_CALLBACK, the multi handle
 * is cleaned up, every remaining poll handle and the timer are closed, and
 * when the last libuv close callback has run the owner's callback follows
 * and the driver is freed.
 */
#include "search/curl_uv.h"

#include <stdlib.h>

#include "engram.h"

typedef struct transfer transfer;
struct transfer {
  curl_uv *cu;
  CURL *easy;
  curl_uv_done_fn done;
  void *data;
  transfer *prev, *next; /* running, or parked by close */
};

typedef struct watch watch;
struct watch {
  uv_poll_t poll;
  curl_socket_t fd;
  curl_uv *cu;
  watch *prev, *next; /* the driver's open watches (not those closing) */
};

struct curl_uv {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  transfer *running;
  unsigned n_running;
  transfer *parked; /* removed by close, done not yet reported */
  watch *watches;
  /* libuv handles not yet through their close callback: the timer and
   * every watch. The driver is freed when closing and this reaches 0. */
  unsigned handles_alive;
  int closing;
  int close_started; /* the timer began the close sequence */
  void (*close_cb)(void *data);
  void *close_data;
};

static uv_once_t global_once = UV_ONCE_INIT;
static CURLcode global_status;

static void global_init(void) {
  global_status = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ------------------------------------------------------------ lists */

static void transfer_link(transfer **head, transfer *t) {
  t->prev = NULL;
  t->next = *head;
  if (*head)
    (*head)->prev = t;
  *head = t;
}

static void transfer_unlink(transfer **head, transfer *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    *head = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static transfer *transfer_of(CURL *easy) {
  char *p = NULL;
  if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK)
    return NULL;
  return (transfer *)(void *)p;
}

/* ------------------------------------------------------------ lifetime */

static void maybe_free(curl_uv *cu) {
  if (!cu->close_started || cu->handles_alive > 0)
    return;
  void (*cb)(void *) = cu->close_cb;
  void *data = cu->close_data;
  free(cu);
  if (cb)
    cb(data);
}

static void watch_closed(uv_handle_t *h) {
  watch *w = h->data;
  curl_uv *cu = w->cu;
  free(w);
  cu->handles_alive--;
  maybe_free(cu);
}

static void watch_close(watch *w) {
  curl_uv *cu = w->cu;
  if (w->prev)
    w->prev->next = w->next;
  else
    cu->watches = w->next;
  if (w->next)
    w->next->prev = w->prev;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void timer_closed(uv_handle_t *h) {
  curl_uv *cu = h->data;
  cu->handles_alive--;
  maybe_free(cu);
}

/* ------------------------------------------------------------ completions */

static void report(transfer *t, CURLcode result) {
  CURL *easy = t->easy;
  curl_uv_done_fn done = t->done;
  void *data = t->data;
  /* The easy handle outlives the record: forget it, so that a later
   * curl_uv_remove() on the same handle finds nothing. */
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  free(t);
  done(easy, result, data);
}

static void deliver_finished(curl_uv *cu) {
  CURLMsg *msg;
  int left;
  while (cu->multi && (msg = curl_multi_info_read(cu->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL *easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    transfer *t = transfer_of(easy);
    curl_multi_remove_handle(cu->multi, easy);
    if (!t)
      continue;
    transfer_unlink(&cu->running, t);
    cu->n_running--;
    report(t, result);
  }
}

/* ------------------------------------------------------------ events */

static void on_poll(uv_poll_t *p, int status, int events) {
  watch *w = p->data;
  curl_uv *cu = w->cu;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & (UV_READABLE | UV_DISCONNECT))
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int still_running;
  /* May close w (CURL_POLL_REMOVE); w is not touched after this. */
  curl_multi_socket_action(cu->multi, w->fd, flags, &still_running);
  deliver_finished(cu);
}

static void finish_close(curl_uv *cu);

static void on_timer(uv_timer_t *t) {
  curl_uv *cu = t->data;
  if (cu->closing) {
    finish_close(cu);
    return;
  }
  int still_running;
  curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &still_running);
  deliver_finished(cu);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  curl_uv *cu = userp;
  if (cu->closing)
    return 0; /* the timer is reserved for the close sequence now */
  if (timeout_ms < 0)
    uv_timer_stop(&cu->timer);
  else
    uv_timer_start(&cu->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static watch *watch_open(curl_uv *cu, curl_socket_t fd) {
  watch *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  int rc = uv_poll_init_socket(cu->loop, &w->poll, fd);
  if (rc == UV_EEXIST) {
    /* A watch of ours still holds this descriptor number: curl closed a
     * socket without announcing it and reused the number. The old watch
     * is stale; drop it and take the descriptor. */
    for (watch *old = cu->watches; old; old = old->next)
      if (old->fd == fd) {
        watch_close(old);
        break;
      }
    rc = uv_poll_init_socket(cu->loop, &w->poll, fd);
  }
  if (rc != 0) {
    free(w);
    return NULL;
  }
  w->poll.data = w;
  w->fd = fd;
  w->cu = cu;
  w->next = cu->watches;
  if (cu->watches)
    cu->watches->prev = w;
  cu->watches = w;
  cu->handles_alive++;
  return w;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  (void)easy;
  curl_uv *cu = userp;
  watch *w = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (w)
      watch_close(w);
    return 0;
  }
  if (!w) {
    w = watch_open(cu, fd);
    if (!w)
      return -1;
    curl_multi_assign(cu->multi, fd, w);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  return uv_poll_start(&w->poll, events, on_poll) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ API */

curl_uv *curl_uv_new(uv_loop_t *loop) {
  uv_once(&global_once, global_init);
  if (global_status != CURLE_OK)
    return NULL;
  curl_uv *cu = calloc(1, sizeof *cu);
  if (!cu)
    return NULL;
  cu->loop = loop;
  cu->multi = curl_multi_init();
  if (!cu->multi) {
    free(cu);
    return NULL;
  }
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
  uv_timer_init(loop, &cu->timer);
  cu->timer.data = cu;
  cu->handles_alive = 1;
  return cu;
}

int curl_uv_add(curl_uv *cu, CURL *easy, curl_uv_done_fn done, void *data) {
  if (!cu || !easy || !done)
    return ENGRAM_EINVAL;
  if (cu->closing)
    return ENGRAM_ECLOSED;
  transfer *t = calloc(1, sizeof *t);
  if (!t)
    return ENGRAM_ENOMEM;
  t->cu = cu;
  t->easy = easy;
  t->done = done;
  t->data = data;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)t);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  if (curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(t);
    return ENGRAM_EINVAL;
  }
  transfer_link(&cu->running, t);
  cu->n_running++;
  return 0;
}

int curl_uv_remove(curl_uv *cu, CURL *easy) {
  if (!cu || !easy)
    return 0;
  transfer *t = transfer_of(easy);
  if (!t || t->cu != cu)
    return 0;
  if (cu->closing) {
    transfer_unlink(&cu->parked, t); /* close already took it off curl */
  } else {
    curl_multi_remove_handle(cu->multi, easy);
    transfer_unlink(&cu->running, t);
    cu->n_running--;
  }
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  free(t);
  return 1;
}

unsigned curl_uv_running(const curl_uv *cu) {
  return cu->n_running;
}

void curl_uv_close(curl_uv *cu, void (*cb)(void *data), void *data) {
  if (!cu || cu->closing)
    return;
  cu->closing = 1;
  cu->close_cb = cb;
  cu->close_data = data;
  while (cu->running) {
    transfer *t = cu->running;
    transfer_unlink(&cu->running, t);
    curl_multi_remove_handle(cu->multi, t->easy);
    transfer_link(&cu->parked, t);
  }
  cu->n_running = 0;
  uv_timer_stop(&cu->timer);
  uv_timer_start(&cu->timer, on_timer, 0, 0);
}

static void finish_close(curl_uv *cu) {
  if (cu->close_started)
    return;
  /* Report the parked transfers first: their callbacks may still call
   * curl_uv_remove() on one another, which needs the records. */
  while (cu->parked) {
    transfer *t = cu->parked;
    transfer_unlink(&cu->parked, t);
    report(t, CURLE_ABORTED_BY_CALLBACK);
  }
  cu->close_started = 1;
  /* curl may announce CURL_POLL_REMOVE for its cached connections here. */
  curl_multi_cleanup(cu->multi);
  cu->multi = NULL;
  while (cu->watches)
    watch_close(cu->watches);
  uv_close((uv_handle_t *)&cu->timer, timer_closed);
}
