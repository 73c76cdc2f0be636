/*
 * test_context.c — context injection, memorizing turns and chat sessions:
 * what the section holds, how it is cut, deadlines that return what
 * arrived, cancellation at every step, and atomic turns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tu.h"

typedef struct ctx_result {
  int calls;
  int status;
  int timed_out;
  size_t count;
  double mean;
  uint64_t failed;
  char text[16384];
  char ids[64][ENGRAM_ID_LEN + 1];
} ctx_result;

static void on_context(const engram_context_result *r, void *data) {
  ctx_result *c = data;
  c->calls++;
  c->status = r->status;
  c->timed_out = r->timed_out;
  c->count = r->count;
  c->mean = r->mean_relevance;
  c->failed = r->failed;
  assert_int_equal(strlen(r->text), r->text_len);
  snprintf(c->text, sizeof c->text, "%s", r->text);
  for (size_t i = 0; i < r->count && i < 64; i++)
    snprintf(c->ids[i], sizeof c->ids[i], "%s", r->ids[i]);
}

static void inject(engram *eg, const char *ns, const char *msg,
                   const engram_context_options *o, ctx_result *out) {
  memset(out, 0, sizeof *out);
  assert_int_equal(engram_context_inject(eg, ns, msg, o, on_context, out, NULL),
                   0);
  tu_run_until(eg, &out->calls);
  assert_int_equal(out->calls, 1);
}

static void assert_idle(engram *eg) {
  engram_stats st;
  engram_get_stats(eg, &st);
  assert_int_equal(st.queries_running, 0);
  assert_int_equal(st.streams_open, 0);
}

static const char *numbered(size_t i, void *arg) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s note number %zu about gardening tomatoes",
           (const char *)arg, i);
  return buf;
}

static void test_inject_formats_section(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("ctx-format"), NULL);
  char lisbon[ENGRAM_ID_LEN + 1], tea[ENGRAM_ID_LEN + 1];
  assert_int_equal(tu_add(eg, "u1", "Alice moved to Lisbon in March",
                          ENGRAM_SEMANTIC, lisbon), 0);
  assert_int_equal(tu_add(eg, "u1", "Alice prefers green tea to coffee",
                          ENGRAM_SEMANTIC, tea), 0);
  assert_int_equal(tu_add(eg, "u2", "Bob moved to Lisbon too", ENGRAM_EPISODIC,
                          NULL), 0);

  ctx_result r;
  assert_int_equal(tu_preload(eg, "u1"), 0); /* see test_inject_stops_at_max */
  inject(eg, "u1", "Where did Alice move to? Lisbon?", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_false(r.timed_out);
  assert_int_equal(r.count, 2); /* both mention Alice; Lisbon ranks first */
  assert_string_equal(r.ids[0], lisbon);
  assert_string_equal(r.ids[1], tea);
  assert_true(r.mean > 0.0 && r.mean <= 1.0);
  assert_non_null(strstr(r.text, "## Relevant memories\n"));
  assert_non_null(strstr(r.text, "- [semantic, "));
  assert_non_null(strstr(r.text, "] Alice moved to Lisbon in March\n"));
  assert_null(strstr(r.text, "Bob")); /* another namespace */

  engram_context_options o = {.no_headers = 1};
  inject(eg, "u1", "alice", &o, &r);
  assert_int_equal(r.count, 2);
  assert_null(strstr(r.text, "## Relevant memories"));
  assert_int_equal(strncmp(r.text, "- [semantic, ", 13), 0);

  /* Nothing relevant, nothing searchable, hostile: empty, not an error. */
  inject(eg, "u1", "submarine", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.count, 0);
  assert_string_equal(r.text, "");
  assert_true(r.mean == 0.0);
  inject(eg, "u1", "", NULL, &r);
  assert_int_equal(r.count, 0);
  inject(eg, "u1", "\"NEAR(alice* ^tea) : - AND OR NOT\"", NULL, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.count, 2);

  /* Invalid input is refused at the start, with no callback. */
  assert_int_equal(engram_context_inject(eg, "u1", "\xff\xfe", NULL, on_context,
                                         &r, NULL),
                   ENGRAM_EUTF8);
  o = (engram_context_options){.max_memories = 100000};
  assert_int_equal(
      engram_context_inject(eg, "u1", "alice", &o, on_context, &r, NULL),
      ENGRAM_EINVAL);
  o = (engram_context_options){.min_relevance = 1.5};
  assert_int_equal(
      engram_context_inject(eg, "u1", "alice", &o, on_context, &r, NULL),
      ENGRAM_EINVAL);
  assert_idle(eg);
  tu_close(eg);
}

static void test_inject_stops_at_max(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("ctx-max"), NULL);
  assert_int_equal(tu_add_many(eg, "g", 500, numbered, "garden"), 0);
  /* Loaded ahead: a first hybrid search would load the namespace into the
   * lexical index in the background, beyond the search (assert_idle). */
  assert_int_equal(tu_preload(eg, "g"), 0);
  ctx_result r;
  engram_context_options o = {.max_memories = 3};
  inject(eg, "g", "gardening tomatoes", &o, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.count, 3);
  inject(eg, "g", "gardening tomatoes", NULL, &r); /* the default max */
  assert_int_equal(r.count, 10);
  /* The search stopped as soon as it had enough. */
  assert_idle(eg);
  tu_close(eg);
}

static void test_inject_cuts_long_memories(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("ctx-cut"), NULL);
  /* 30 characters of 2-byte UTF-8, then a newline and more. */
  char content[256] = "caf\xc3\xa9 ";
  for (int i = 0; i < 25; i++)
    strcat(content, "\xc3\xa9");
  strcat(content, "\nsecond line caf\xc3\xa9");
  assert_int_equal(tu_add(eg, "n", content, ENGRAM_EPISODIC, NULL), 0);
  assert_int_equal(tu_add(eg, "n", "caf\xc3\xa9\nwith two lines",
                          ENGRAM_EPISODIC, NULL), 0);

  ctx_result r;
  engram_context_options o = {.max_memory_chars = 7, .no_headers = 1};
  inject(eg, "n", "caf\xc3\xa9", &o, &r);
  assert_int_equal(r.count, 2);
  /* 7 characters: "café " + two é, then the cut mark. */
  assert_non_null(strstr(r.text, "] caf\xc3\xa9 \xc3\xa9\xc3\xa9 [...cut]\n"));
  /* A kept newline is indented: it cannot start a new list item. */
  o.max_memory_chars = 0;
  o.strategy = ENGRAM_STRATEGY_LEXICAL; /* hybrid adds the other turn */
  inject(eg, "n", "two", &o, &r);
  assert_int_equal(r.count, 1);
  assert_non_null(strstr(r.text, "caf\xc3\xa9\n  with two lines\n"));
  tu_close(eg);
}

static void test_inject_deadline_returns_what_arrived(void **state) {
  (void)state;
  const char *path = tu_db_path("ctx-deadline");
  engram *eg = tu_open(path, NULL);
  assert_int_equal(tu_add_many(eg, "g", 50, numbered, "slow"), 0);
  tu_close(eg);

  /* Each item takes 60 ms to arrive; the deadline is 300 ms, which leaves
   * the query itself time to start (a first search on a PostgreSQL
   * connection prepares and plans it: tens of milliseconds under ASan).
   * Lexical: its items stream in one by one (hybrid ranks once the store
   * answered). */
  eg = tu_open_delayed(path, NULL, 60);
  ctx_result r;
  engram_context_options o = {.timeout_ms = 300,
                              .strategy = ENGRAM_STRATEGY_LEXICAL};
  inject(eg, "g", "gardening", &o, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.timed_out);
  assert_true(r.count >= 1 && r.count <= 5);
  assert_non_null(strstr(r.text, "gardening tomatoes"));
  assert_true(r.mean > 0.0);
  /* The search was cancelled, not left running. */
  assert_idle(eg);

  /* A deadline that is long enough: everything, not timed out. */
  o = (engram_context_options){.timeout_ms = 5000, .max_memories = 4,
                               .strategy = ENGRAM_STRATEGY_LEXICAL};
  inject(eg, "g", "gardening", &o, &r);
  assert_int_equal(r.status, 0);
  assert_false(r.timed_out);
  assert_int_equal(r.count, 4);
  assert_idle(eg);
  tu_close(eg);
}

static void cancel_now(uv_timer_t *t) { engram_context_cancel(t->data); }

static void test_inject_cancel(void **state) {
  (void)state;
  const char *path = tu_db_path("ctx-cancel");
  engram *eg = tu_open(path, NULL);
  assert_int_equal(tu_add_many(eg, "g", 20, numbered, "cancel"), 0);
  tu_close(eg);
  eg = tu_open_delayed(path, NULL, 30);
  /* Loaded into the lexical index first: the first hybrid search of a
   * namespace would load it in the background, work of the handle's that
   * outlives the search (assert_idle would see it). */
  assert_int_equal(tu_preload(eg, "g"), 0);

  /* Cancelled at once: one callback, ECANCELED, nothing delivered. */
  ctx_result r = {0};
  engram_context_req *req;
  assert_int_equal(engram_context_inject(eg, "g", "gardening", NULL,
                                         on_context, &r, &req), 0);
  engram_context_cancel(req);
  assert_int_equal(r.calls, 0); /* never inside the cancel call */
  tu_run_until(eg, &r.calls);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ENGRAM_ECANCELED);
  assert_int_equal(r.count, 0);
  assert_idle(eg);

  /* Cancelled mid-way: the memories so far are still reported (lexical:
   * they stream in one by one). */
  memset(&r, 0, sizeof r);
  engram_context_options o = {.timeout_ms = 10000,
                              .strategy = ENGRAM_STRATEGY_LEXICAL};
  assert_int_equal(engram_context_inject(eg, "g", "gardening", &o, on_context,
                                         &r, &req), 0);
  uv_timer_t t;
  uv_timer_init(engram_loop(eg), &t);
  t.data = req;
  uv_timer_start(&t, cancel_now, 200, 0); /* 30 ms an item: fewer than 10 */
  tu_run_until(eg, &r.calls);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, ENGRAM_ECANCELED);
  assert_true(r.count >= 1 && r.count < 10);
  uv_close((uv_handle_t *)&t, NULL);
  assert_idle(eg);
  tu_close(eg);
}

/* ------------------------------------------------------------ memorize */

typedef struct turn_result {
  int calls;
  int status;
  char user[ENGRAM_ID_LEN + 1], reply[ENGRAM_ID_LEN + 1],
      exchange[ENGRAM_ID_LEN + 1];
} turn_result;

static void on_turn(int status, const char *u, const char *a, const char *x,
                    const char *message, void *data) {
  turn_result *t = data;
  assert_non_null(message);
  t->calls++;
  t->status = status;
  if (status == 0) {
    snprintf(t->user, sizeof t->user, "%s", u);
    snprintf(t->reply, sizeof t->reply, "%s", a);
    snprintf(t->exchange, sizeof t->exchange, "%s", x);
  }
}

typedef struct got {
  int done;
  int status;
  engram_type type;
  char content[512];
  size_t rels;
  char kinds[8][32];
} got;

static void on_get(int status, const engram_node *n, void *data) {
  got *g = data;
  g->done = 1;
  g->status = status;
  if (status == 0) {
    g->type = n->type;
    snprintf(g->content, sizeof g->content, "%s", n->content);
  }
}

static void on_rels(int status, const engram_rel *rels, size_t n, void *data) {
  got *g = data;
  g->done = 1;
  g->status = status;
  g->rels = n;
  for (size_t i = 0; i < n && i < 8; i++)
    snprintf(g->kinds[i], sizeof g->kinds[i], "%s", rels[i].kind);
}

static got get_node(engram *eg, const char *ns, const char *id) {
  got g = {0};
  assert_int_equal(engram_get(eg, ns, id, on_get, &g), 0);
  tu_run_until(eg, &g.done);
  return g;
}

static void test_memorize_turn(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("ctx-turn"), NULL);
  turn_result t = {0};
  assert_int_equal(engram_memorize_turn(eg, "chat", "I prefer tea",
                                        "Noted: tea, not coffee.", on_turn, &t),
                   0);
  tu_run_until(eg, &t.calls);
  assert_int_equal(t.status, 0);
  got g = get_node(eg, "chat", t.user);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.type, ENGRAM_EPISODIC);
  assert_string_equal(g.content, "I prefer tea");
  g = get_node(eg, "chat", t.reply);
  assert_string_equal(g.content, "Noted: tea, not coffee.");
  g = get_node(eg, "chat", t.exchange);
  assert_int_equal(g.type, ENGRAM_WORKING);
  assert_string_equal(g.content,
                      "user: I prefer tea\nassistant: Noted: tea, not coffee.");
  /* reply-to (reply -> user) and part-of (reply -> exchange). */
  g = (got){0};
  assert_int_equal(engram_relationships(eg, "chat", t.reply, on_rels, &g), 0);
  tu_run_until(eg, &g.done);
  assert_int_equal(g.rels, 2);
  int reply_to = 0, part_of = 0;
  for (size_t i = 0; i < g.rels; i++) {
    reply_to += strcmp(g.kinds[i], "reply-to") == 0;
    part_of += strcmp(g.kinds[i], "part-of") == 0;
  }
  assert_int_equal(reply_to, 1);
  assert_int_equal(part_of, 1);
  assert_int_equal(tu_count(eg, "chat"), 3);

  /* One invalid side: refused at once, nothing of the turn is written. */
  t = (turn_result){0};
  assert_int_equal(engram_memorize_turn(eg, "chat", "fine", "bad \xc0\xaf utf8",
                                        on_turn, &t),
                   ENGRAM_EUTF8);
  assert_int_equal(engram_memorize_turn(eg, "chat", "", "empty user", on_turn,
                                        &t),
                   ENGRAM_EINVAL);
  assert_int_equal(t.calls, 0);
  assert_int_equal(tu_count(eg, "chat"), 3);

  /* Two sides each within the limit make an exchange over it: it is cut,
   * and the turn is stored. */
  engram_options o;
  engram_options_init(&o);
  o.max_content_bytes = 64;
  engram *small = tu_open(tu_db_path("ctx-turn-small"), &o);
  char side[61];
  memset(side, 'x', 60);
  side[60] = '\0';
  t = (turn_result){0};
  assert_int_equal(engram_memorize_turn(small, "c", side, side, on_turn, &t),
                   0);
  tu_run_until(small, &t.calls);
  assert_int_equal(t.status, 0);
  g = get_node(small, "c", t.exchange);
  assert_int_equal(strlen(g.content), 64);
  tu_close(small);
  tu_close(eg);
}

/* ---------------------------------------------------------------- chat */

typedef struct chat_state {
  engram *eg;
  int completions;
  char seen_context[4096];
  char seen_message[256];
  engram_chat_turn *pending; /* awaiting our reply */
  uv_timer_t timer;
  int reply_status;
  const char *reply;
  /* final callback */
  int done;
  int status;
  char reply_seen[256];
  size_t ctx_count;
  char user_id[ENGRAM_ID_LEN + 1];
} chat_state;

static void reply_later(uv_timer_t *t) {
  chat_state *c = t->data;
  engram_chat_turn *turn = c->pending;
  c->pending = NULL;
  assert_int_equal(engram_chat_reply(turn, c->reply_status, c->reply), 0);
}

static void complete(engram_chat_turn *turn, const char *context,
                     const char *message, void *data) {
  chat_state *c = data;
  c->completions++;
  snprintf(c->seen_context, sizeof c->seen_context, "%s", context);
  snprintf(c->seen_message, sizeof c->seen_message, "%s", message);
  c->pending = turn;
  uv_timer_start(&c->timer, reply_later, 20, 0); /* an "LLM" that takes 20ms */
}

static void on_chat(engram_chat_turn *turn, int status, const char *reply,
                    const engram_context_result *ctx, const char *user_id,
                    const char *assistant_id, void *data) {
  chat_state *c = data;
  (void)turn;
  (void)assistant_id;
  c->done++;
  c->status = status;
  c->ctx_count = ctx->count;
  snprintf(c->reply_seen, sizeof c->reply_seen, "%s", reply ? reply : "");
  snprintf(c->user_id, sizeof c->user_id, "%s", user_id ? user_id : "");
}

static void test_chat_session(void **state) {
  (void)state;
  engram *eg = tu_open(tu_db_path("ctx-chat"), NULL);
  assert_int_equal(tu_add(eg, "s", "The user's dog is called Biscuit",
                          ENGRAM_SEMANTIC, NULL), 0);
  assert_int_equal(tu_preload(eg, "s"), 0); /* as in test_inject_stops_at_max */
  chat_state c = {.eg = eg, .reply = "Biscuit, of course."};
  uv_timer_init(engram_loop(eg), &c.timer);
  c.timer.data = &c;
  engram_chat *chat;
  assert_int_equal(engram_chat_new(eg, "s", NULL, complete, &c, &chat), 0);

  assert_int_equal(engram_chat_send(chat, "What is my dog called?", on_chat, &c,
                                    NULL), 0);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.completions, 1);
  assert_non_null(strstr(c.seen_context, "Biscuit"));
  assert_string_equal(c.seen_message, "What is my dog called?");
  assert_string_equal(c.reply_seen, "Biscuit, of course.");
  assert_int_equal(c.ctx_count, 1);
  got g = get_node(eg, "s", c.user_id);
  assert_string_equal(g.content, "What is my dog called?");
  assert_int_equal(tu_count(eg, "s"), 4); /* the fact + a turn of three */

  /* The second turn finds the first. */
  c.done = 0;
  c.reply = "Still Biscuit.";
  assert_int_equal(engram_chat_send(chat, "dog called", on_chat, &c, NULL), 0);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, 0);
  assert_true(c.ctx_count >= 3);

  /* The completion step fails: the turn fails with its status, nothing is
   * memorized. */
  c.done = 0;
  c.reply_status = ENGRAM_EIO;
  assert_int_equal(engram_chat_send(chat, "dog", on_chat, &c, NULL), 0);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_EIO);
  assert_int_equal(tu_count(eg, "s"), 7);

  /* Cancelled while the completion runs: ECANCELED at once (from the loop),
   * the late reply is ignored and frees the turn. */
  c.done = 0;
  c.reply_status = 0;
  engram_chat_turn *turn;
  assert_int_equal(engram_chat_send(chat, "dog", on_chat, &c, &turn), 0);
  while (c.completions < 4)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  engram_chat_cancel(turn);
  assert_int_equal(c.done, 0);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  while (c.pending)
    uv_run(engram_loop(eg), UV_RUN_ONCE); /* the late reply arrives */
  assert_int_equal(c.done, 1);
  assert_int_equal(tu_count(eg, "s"), 7);

  /* Cancelled, and the completion replies at once, before the cancellation
   * is delivered: one callback, ECANCELED, nothing memorized. */
  c.done = 0;
  assert_int_equal(engram_chat_send(chat, "dog", on_chat, &c, &turn), 0);
  while (c.completions < 5)
    uv_run(engram_loop(eg), UV_RUN_ONCE);
  uv_timer_stop(&c.timer);
  engram_chat_cancel(turn);
  engram_chat_turn *late = c.pending;
  c.pending = NULL;
  assert_int_equal(engram_chat_reply(late, 0, "too late"), 0);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  for (int i = 0; i < 20; i++)
    uv_run(engram_loop(eg), UV_RUN_NOWAIT); /* nothing more may arrive */
  assert_int_equal(c.done, 1);
  assert_int_equal(tu_count(eg, "s"), 7);

  /* Freed with a turn in flight: it is cancelled, its callback runs. */
  c.done = 0;
  assert_int_equal(engram_chat_send(chat, "dog", on_chat, &c, NULL), 0);
  engram_chat_free(chat);
  tu_run_until(eg, &c.done);
  assert_int_equal(c.status, ENGRAM_ECANCELED);
  uv_close((uv_handle_t *)&c.timer, NULL);
  assert_idle(eg);
  tu_close(eg);
}

int main(void) {
  int skip = tu_backend_check();
  if (skip)
    return skip;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inject_formats_section),
      cmocka_unit_test(test_inject_stops_at_max),
      cmocka_unit_test(test_inject_cuts_long_memories),
      cmocka_unit_test(test_inject_deadline_returns_what_arrived),
      cmocka_unit_test(test_inject_cancel),
      cmocka_unit_test(test_memorize_turn),
      cmocka_unit_test(test_chat_session),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
