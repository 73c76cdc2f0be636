/*
 * cmd_demo.c — `engram demo`, a first look without a server: store a handful of
 * varied memories (with de-duplication, so a second run stores nothing
 * new), relate two of them, search, and say in plain words what happened
 * at each step, ending with commands to try next.
 */
#include <string.h>

#include "cli.h"

#define DEMO_NS "demo"

static const struct {
  engram_type type;
  double importance;
  const char *content;
  const char *metadata;
} memories[] = {
    {ENGRAM_SEMANTIC, 0.9, "Ada is a marine biologist who lives in Lisbon.",
     "{\"source\":\"profile\"}"},
    {ENGRAM_SEMANTIC, 0.8, "Ada is vegetarian and allergic to peanuts.",
     "{\"source\":\"profile\"}"},
    {ENGRAM_EPISODIC, 0.6,
     "Ada said she is preparing a talk on octopus intelligence for the "
     "conference in March.",
     "{\"speaker\":\"Ada\"}"},
    {ENGRAM_EPISODIC, 0.5,
     "Ada went diving near Sesimbra last weekend and watched an octopus hide "
     "inside a shell.",
     "{\"speaker\":\"Ada\"}"},
    {ENGRAM_PROCEDURAL, 0.7,
     "To book the lab's boat, email the harbour office before noon on the day "
     "before.",
     "{\"source\":\"handbook\"}"},
    {ENGRAM_WORKING, 0.3,
     "Current task: help Ada draft the outline of her octopus talk.", "{}"},
};
#define N_MEMORIES (sizeof memories / sizeof memories[0])

static const char *const searches[] = {
    "octopus talk",
    "is Ada allergic to anything",
    "how do I book the boat",
};
#define N_SEARCHES (sizeof searches / sizeof searches[0])

/* The path as a shell word, for the hints. */
static void shell_word(char *buf, size_t size, const char *s) {
  int plain = *s != '\0';
  for (const char *p = s; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789-_./:=+,@%",
                *p))
      plain = 0;
  if (plain) {
    snprintf(buf, size, "%s", s);
    return;
  }
  size_t o = 0;
  buf[o++] = '\'';
  for (const char *p = s; *p && o + 6 < size; p++) {
    if (*p == '\'') {
      memcpy(buf + o, "'\\''", 4);
      o += 4;
    } else {
      buf[o++] = *p;
    }
  }
  buf[o++] = '\'';
  buf[o] = '\0';
}

int cmd_demo(cli *c, int argc, char **argv) {
  int npos, rc;
  if ((rc = cli_parse_args(c, argc, argv, NULL, NULL, 0, &npos)) != CLI_OK)
    return rc;
  if (!c->ns_given)
    c->ns = DEMO_NS;
  int json = c->json;
  c->json = 0; /* the demo talks to a person */
  if (json)
    fprintf(stderr, "engram: demo: --json is ignored; the demo prints "
                    "text\n");
  if (cli_open(c, 1) != CLI_OK)
    return CLI_FAIL;

  /* 1. Store, de-duplicated: a second run finds the same memories. */
  engram_op ops[N_MEMORIES];
  memset(ops, 0, sizeof ops);
  for (size_t i = 0; i < N_MEMORIES; i++) {
    ops[i].kind = ENGRAM_OP_ADD;
    ops[i].ns = c->ns;
    ops[i].type = memories[i].type;
    ops[i].content = memories[i].content;
    ops[i].importance = memories[i].importance;
    ops[i].metadata = memories[i].metadata;
    ops[i].set = ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE | ENGRAM_SET_IMPORTANCE |
                 ENGRAM_SET_METADATA;
    ops[i].dedup = 1;
  }
  rc = cli_write(c, ops, N_MEMORIES);
  if (rc != 0) {
    cli_error(c, "storing the example memories failed: %s",
              cli_op_message(ops, N_MEMORIES, rc));
    return CLI_FAIL;
  }
  size_t existing = 0;
  for (size_t i = 0; i < N_MEMORIES; i++)
    existing += ops[i].deduplicated ? 1u : 0u;
  if (existing == N_MEMORIES)
    printf("found the %zu example memories already in %s (namespace %s): "
           "nothing new stored\n",
           N_MEMORIES, c->db, c->ns);
  else
    printf("stored %zu memories in %s (namespace %s)%s\n",
           N_MEMORIES - existing, c->db, c->ns,
           existing ? ", the others were already there" : "");
  for (size_t i = 0; i < N_MEMORIES; i++)
    printf("  %s  %-10s  %s\n", ops[i].result_id, out_type(memories[i].type),
           memories[i].content);

  /* 2. Relate the talk to the dive that inspired it. */
  const char *talk = ops[2].result_id, *dive = ops[3].result_id;
  engram_op link = {.kind = ENGRAM_OP_LINK,
                    .ns = c->ns,
                    .source = talk,
                    .target = dive,
                    .rel_kind = "related",
                    .strength = 0.8};
  rc = cli_write(c, &link, 1);
  if (rc != 0) {
    cli_error(c, "linking two memories failed: %s",
              cli_op_message(&link, 1, rc));
    return CLI_FAIL;
  }
  printf("\nlinked the talk (%s) to the dive (%s): kind related, strength "
         "0.80\n",
         talk, dive);

  /* 3. Search. */
  for (size_t i = 0; i < N_SEARCHES; i++) {
    size_t found;
    printf("\nsearch \"%s\" (best 3):\n", searches[i]);
    if (cli_search_print(c, searches[i], 3, 0, 0, NULL, &found) != CLI_OK)
      return CLI_FAIL;
    if (found == 0)
      printf("  (no match)\n");
  }

  char db[1024], ns[1024];
  shell_word(db, sizeof db, c->db);
  shell_word(ns, sizeof ns, c->ns);
  printf("\nnext, try:\n"
         "  engram --db %s --ns %s search \"octopus talk\"\n"
         "  engram --db %s --ns %s list\n"
         "  engram --db %s --ns %s related %s\n"
         "  engram --db %s --ns %s add \"Ada's talk is on 12 March\"\n"
         "  engram help\n",
         db, ns, db, ns, db, ns, talk, db, ns);
  return CLI_OK;
}
