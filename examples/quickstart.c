/* quickstart.c: store three memories in a file, search them, print. */
#include "engram.h"
#include <stdio.h>

static void on_item(engram_stream *s, const engram_node *m, void *data) {
  printf("%.2f  %s\n", m->relevance, m->content);
  (void)s, (void)data;
}
static void on_done(engram_stream *s, int status, void *eg) {
  printf("search ended: %s\n", engram_strerror(status));
  engram_close(eg, NULL, NULL);
  (void)s;
}
static void on_stored(int status, engram_op *ops, size_t n, void *eg) {
  engram_query q = {.ns = "demo", .text = "What drinks does Ada like?"};
  engram_stream_cbs cbs = {.item = on_item, .done = on_done, .data = eg};
  engram_stream *s;
  if (status == 0 && engram_search(eg, &q, &cbs, &s) == 0)
    engram_stream_request(s, 10); /* up to 10 results; on_done closes */
  else
    engram_close(eg, NULL, NULL);
  (void)ops, (void)n;
}
static void on_open(engram *eg, int status, const char *message, void *ns) {
  engram_op ops[3] = {{.ns = ns, .dedup = 1, .content = "Ada drinks green tea"},
                      {.ns = ns, .dedup = 1, .content = "Ada's cat is Turing"},
                      {.ns = ns, .dedup = 1, .content = "Standup is at 9:30"}};
  if (status != 0 || engram_write(eg, ops, 3, on_stored, eg) != 0) {
    fprintf(stderr, "%s\n", status != 0 ? message : ops[0].message);
    engram_close(eg, NULL, NULL);
  }
}
int main(int argc, char **argv) {
  engram_options opts = {.db = argc > 1 ? argv[1] : "quickstart.db"};
  engram *eg = NULL;
  if (!engram_init(&eg, NULL, &opts) && !engram_open(eg, on_open, "demo"))
    engram_run(eg); /* returns once the handle has closed */
  engram_free(eg);
}
