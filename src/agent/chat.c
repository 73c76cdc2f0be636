/*
 * chat.c — a chat session: for each user message, inject memories, let the
 * caller's completion step answer, then memorize the turn. Every step is a
 * callback on the loop; the completion step is whatever async work the
 * caller does (an LLM call), ended by engram_chat_reply().
 *
 * Lifetime of a turn: it is freed once both its callback has run and, if the
 * completion step was started, that step has replied — so a completer that
 * answers after a cancellation never touches freed memory. The session is
 * freed once engram_chat_free() was called and its last turn is gone.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "engram_internal.h"

enum { T_INJECTING, T_COMPLETING, T_MEMORIZING, T_DONE };

struct engram_chat {
  engram *eg;
  char *ns;
  engram_context_options opts;
  engram_complete_fn complete;
  void *complete_data;
  engram_chat_turn *turns; /* in flight */
  int freed;
};

struct engram_chat_turn {
  engram_chat *chat;
  engram_chat_turn *prev, *next;
  char *message;
  engram_chat_cb cb;
  void *data;
  int state;
  int cancelled;
  int awaiting_reply; /* complete() was called and has not replied */
  engram_context_req *inject;
  /* A copy of the injection result, for the final callback. */
  engram_context_result ctx;
  char *ctx_text;
  char **ctx_ids;
  char *reply;
  uv_timer_t defer; /* delivers a cancellation's callback from the loop */
  int status;
};

static void chat_maybe_free(engram_chat *c) {
  if (c->freed && !c->turns) {
    free(c->ns);
    free(c);
  }
}

static void turn_free_cb(uv_handle_t *h) {
  engram_chat_turn *t = h->data;
  engram_chat *c = t->chat;
  if (t->ctx_ids)
    for (size_t i = 0; i < t->ctx.count; i++)
      free(t->ctx_ids[i]);
  free(t->ctx_ids);
  free(t->ctx_text);
  free(t->message);
  free(t->reply);
  free(t);
  chat_maybe_free(c);
}

static void turn_maybe_free(engram_chat_turn *t) {
  if (t->state != T_DONE || t->awaiting_reply)
    return;
  engram_chat *c = t->chat;
  if (t->prev)
    t->prev->next = t->next;
  else
    c->turns = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->prev = t->next = NULL;
  uv_close((uv_handle_t *)&t->defer, turn_free_cb);
}

static void turn_finish(engram_chat_turn *t, int status, const char *user_id,
                        const char *assistant_id) {
  if (t->state == T_DONE)
    return;
  t->state = T_DONE;
  uv_timer_stop(&t->defer);
  t->ctx.ids = (const char *const *)t->ctx_ids;
  t->ctx.text = t->ctx_text ? t->ctx_text : "";
  t->cb(t, status, status == 0 ? t->reply : NULL, &t->ctx, user_id,
        assistant_id, t->data);
  turn_maybe_free(t);
}

static void on_memorized(int status, const char *user_id,
                         const char *assistant_id, const char *exchange_id,
                         const char *message, void *data) {
  engram_chat_turn *t = data;
  (void)exchange_id;
  (void)message;
  turn_finish(t, status, user_id, assistant_id);
}

static void keep_context(engram_chat_turn *t, const engram_context_result *r) {
  t->ctx = *r;
  t->ctx_text = strdup(r->text);
  t->ctx_ids = calloc(r->count ? r->count : 1, sizeof *t->ctx_ids);
  if (!t->ctx_text || !t->ctx_ids) {
    t->ctx.count = 0;
    return;
  }
  for (size_t i = 0; i < r->count; i++)
    t->ctx_ids[i] = strdup(r->ids[i]);
}

static void on_context(const engram_context_result *r, void *data) {
  engram_chat_turn *t = data;
  t->inject = NULL;
  keep_context(t, r);
  if (t->cancelled || r->status != 0) {
    turn_finish(t, t->cancelled ? ENGRAM_ECANCELED : r->status, NULL, NULL);
    return;
  }
  t->state = T_COMPLETING;
  t->awaiting_reply = 1;
  t->chat->complete(t, t->ctx_text, t->message, t->chat->complete_data);
}

int engram_chat_reply(engram_chat_turn *t, int status, const char *reply) {
  if (!t || !t->awaiting_reply)
    return ENGRAM_EINVAL;
  t->awaiting_reply = 0;
  /* Cancelled meanwhile — its ECANCELED callback may still be on its way
   * from the loop: the answer is ignored and nothing is memorized. */
  if (t->state != T_COMPLETING || t->cancelled) {
    turn_maybe_free(t);
    return 0;
  }
  if (status == 0 && !reply)
    status = ENGRAM_EINVAL;
  if (status != 0) {
    turn_finish(t, status, NULL, NULL);
    return 0;
  }
  t->reply = strdup(reply);
  if (!t->reply) {
    turn_finish(t, ENGRAM_ENOMEM, NULL, NULL);
    return 0;
  }
  t->state = T_MEMORIZING;
  int rc = engram_memorize_turn(t->chat->eg, t->chat->ns, t->message,
                                t->reply, on_memorized, t);
  if (rc != 0)
    turn_finish(t, rc, NULL, NULL);
  return 0;
}

static void deliver_cancel(uv_timer_t *timer) {
  engram_chat_turn *t = timer->data;
  turn_finish(t, ENGRAM_ECANCELED, NULL, NULL);
}

void engram_chat_cancel(engram_chat_turn *t) {
  if (!t || t->cancelled || t->state == T_DONE)
    return;
  t->cancelled = 1;
  if (t->state == T_INJECTING && t->inject)
    engram_context_cancel(t->inject); /* on_context follows */
  else if (t->state == T_COMPLETING)
    uv_timer_start(&t->defer, deliver_cancel, 0, 0);
  /* T_MEMORIZING: the write is committing; the turn completes as written. */
}

int engram_chat_new(engram *eg, const char *ns,
                    const engram_context_options *opts,
                    engram_complete_fn complete, void *complete_data,
                    engram_chat **out) {
  if (!eg || !complete || !out || !core_ns_valid(ns))
    return ENGRAM_EINVAL;
  engram_chat *c = calloc(1, sizeof *c);
  if (!c || !(c->ns = strdup(ns))) {
    free(c);
    return ENGRAM_ENOMEM;
  }
  c->eg = eg;
  if (opts)
    c->opts = *opts;
  c->complete = complete;
  c->complete_data = complete_data;
  *out = c;
  return 0;
}

void engram_chat_free(engram_chat *c) {
  if (!c)
    return;
  c->freed = 1;
  for (engram_chat_turn *t = c->turns; t; t = t->next)
    engram_chat_cancel(t);
  chat_maybe_free(c);
}

int engram_chat_send(engram_chat *c, const char *message, engram_chat_cb cb,
                     void *data, engram_chat_turn **out) {
  if (!c || c->freed || !message || !cb)
    return ENGRAM_EINVAL;
  engram_chat_turn *t = calloc(1, sizeof *t);
  if (!t || !(t->message = strdup(message))) {
    free(t);
    return ENGRAM_ENOMEM;
  }
  t->chat = c;
  t->cb = cb;
  t->data = data;
  t->state = T_INJECTING;
  int rc = engram_context_inject(c->eg, c->ns, message, &c->opts, on_context,
                                 t, &t->inject);
  if (rc != 0) {
    free(t->message);
    free(t);
    return rc;
  }
  uv_timer_init(engram_loop(c->eg), &t->defer);
  t->defer.data = t;
  t->next = c->turns;
  if (c->turns)
    c->turns->prev = t;
  c->turns = t;
  if (out)
    *out = t;
  return 0;
}
