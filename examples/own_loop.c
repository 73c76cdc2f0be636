/*
 * own_loop.c — engram on a libuv loop that the program owns.
 *
 * The program makes the loop and runs it; engram is one more user of it,
 * next to a uv_timer of the program's own. Nothing blocks: the timer keeps
 * ticking while engram opens the file, commits a batch and reads a list.
 *
 * The list is read with demand: the consumer asks for 2 memories, and asks
 * for the next 2 only on a later tick of its own timer, as a program that
 * paces itself (a UI, a rate-limited sender) would. Between requests the
 * stream is paused: engram reads nothing ahead and holds no thread.
 *
 * Usage: example_own_loop [db-path]     (default: own_loop.db)
 */
#include <stdio.h>
#include <string.h>

#include "engram.h"

typedef struct app {
  uv_loop_t loop;
  uv_timer_t timer; /* the program's own: ticks every 10 ms */
  engram *eg;
  engram_stream *list; /* NULL when no list is running */
  unsigned ticks;
  unsigned in_page;  /* items received since the last request */
  int page_finished; /* the consumer is ready for 2 more */
  int failed;
} app;

static const char *const notes[] = {
    "The user's name is Ada",
    "Ada works on the payments team",
    "Ada prefers short answers",
    "Deploys happen on Thursdays",
    "To deploy: run make release, then tag the commit",
    "Ada is on call this week",
    "The staging database is called pg-stage-2",
};
#define NOTE_COUNT (sizeof notes / sizeof notes[0])

static void on_tick(uv_timer_t *timer) {
  app *a = timer->data;
  a->ticks++;
  if (a->list && a->page_finished) {
    a->page_finished = 0;
    a->in_page = 0;
    printf("[tick %u] asking for 2 more\n", a->ticks);
    engram_stream_request(a->list, 2);
  }
}

static void on_item(engram_stream *s, const engram_node *m, void *data) {
  app *a = data;
  (void)s;
  printf("[tick %u]   %-10s %s\n", a->ticks, engram_type_name(m->type),
         m->content);
  if (++a->in_page == 2)
    a->page_finished = 1; /* the next request waits for a tick */
}

static void on_closed(engram *eg, void *data) {
  app *a = data;
  (void)eg;
  printf("[tick %u] engram closed; stopping the timer\n", a->ticks);
  uv_timer_stop(&a->timer);
  uv_close((uv_handle_t *)&a->timer, NULL);
}

static void on_list_done(engram_stream *s, int status, void *data) {
  app *a = data;
  printf("[tick %u] list ended: %s (%llu memories)\n", a->ticks,
         engram_strerror(status),
         (unsigned long long)engram_stream_delivered(s));
  if (status != 0)
    a->failed = 1;
  a->list = NULL; /* the stream is freed after this callback */
  engram_close(a->eg, on_closed, a);
}

static void on_stored(int status, engram_op *ops, size_t n, void *data) {
  app *a = data;
  if (status != 0) {
    fprintf(stderr, "store failed: %s\n", ops[0].message);
    a->failed = 1;
    engram_close(a->eg, on_closed, a);
    return;
  }
  printf("[tick %u] stored %zu memories in one transaction\n", a->ticks, n);
  engram_query q = {.ns = "own-loop"};
  engram_stream_cbs cbs = {.item = on_item, .done = on_list_done, .data = a};
  if (engram_list(a->eg, &q, &cbs, &a->list) != 0) {
    a->failed = 1;
    engram_close(a->eg, on_closed, a);
    return;
  }
  engram_stream_request(a->list, 2); /* the first page */
}

static void on_open(engram *eg, int status, const char *message, void *data) {
  app *a = data;
  if (status != 0) {
    fprintf(stderr, "cannot open: %s\n", message);
    a->failed = 1;
    engram_close(eg, on_closed, a);
    return;
  }
  printf("[tick %u] opened\n", a->ticks);
  engram_op ops[NOTE_COUNT];
  memset(ops, 0, sizeof ops);
  for (size_t i = 0; i < NOTE_COUNT; i++) {
    ops[i].kind = ENGRAM_OP_ADD;
    ops[i].ns = "own-loop";
    ops[i].type = i == 4 ? ENGRAM_PROCEDURAL : ENGRAM_SEMANTIC;
    ops[i].content = notes[i];
    ops[i].dedup = 1; /* running the example twice stores nothing new */
  }
  int rc = engram_write(eg, ops, NOTE_COUNT, on_stored, a);
  if (rc != 0) {
    fprintf(stderr, "cannot store: %s\n", engram_strerror(rc));
    a->failed = 1;
    engram_close(eg, on_closed, a);
  }
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof a);
  if (uv_loop_init(&a.loop) != 0)
    return 1;
  uv_timer_init(&a.loop, &a.timer);
  a.timer.data = &a;
  uv_timer_start(&a.timer, on_tick, 10, 10);

  engram_options opts;
  engram_options_init(&opts);
  opts.db = argc > 1 ? argv[1] : "own_loop.db";
  int rc = engram_init(&a.eg, &a.loop, &opts);
  if (rc == 0)
    rc = engram_open(a.eg, on_open, &a);
  if (rc != 0) {
    fprintf(stderr, "engram: %s\n", engram_strerror(rc));
    a.failed = 1;
    uv_close((uv_handle_t *)&a.timer, NULL); /* lets uv_run return */
  }

  /* The program's loop, run by the program: it returns when engram has
   * closed and the timer is closed too. */
  uv_run(&a.loop, UV_RUN_DEFAULT);
  engram_free(a.eg);
  rc = uv_loop_close(&a.loop); /* 0: engram left nothing on our loop */
  printf("loop closed: %s\n", rc == 0 ? "ok" : uv_strerror(rc));
  return rc == 0 && !a.failed ? 0 : 1;
}
