/*
 * commands.c — the dispatch table: every command, its entry point and the
 * help that documents it. `engram --help` and `engram COMMAND --help` print
 * from here, so a command's options are documented next to its name; keep
 * both true when a command changes (docs/cli.md says the same at length).
 *
 * A new command is one row here plus a cmd_*.c file with its run function.
 */
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"add", cmd_add,
     "add TEXT [--type T] [--importance X] [--metadata JSON] [--dedup]",
     "store a memory; prints its id",
     "  TEXT               the memory's content; - reads it from standard "
     "input\n"
     "                     (trailing newlines dropped)\n"
     "  --type T           episodic, semantic, procedural or working\n"
     "                     (default: episodic)\n"
     "  --importance X     a number in [0, 1] (default: 0.5)\n"
     "  --metadata JSON    a JSON object stored with the memory (default: {})\n"
     "  --dedup            when the namespace already holds the same text,\n"
     "                     print that memory's id and \"(existing)\" instead\n"
     "                     of storing a copy\n"
     "\n"
     "example:\n"
     "  engram add --type semantic --importance 0.9 \"Ada is allergic to "
     "peanuts\"\n"},
    {"get", cmd_get, "get ID", "show one memory",
     "  ID                 the memory's id (as printed by add, search, list)\n"
     "\n"
     "Prints the memory's fields, content and relationships.\n"
     "\n"
     "example:\n"
     "  engram get 0190a5e2-7b3c-7def-8123-456789abcdef\n"},
    {"update", cmd_update,
     "update ID [--text T] [--type T] [--importance X] [--metadata JSON]",
     "change a memory's text, type, importance or metadata",
     "  ID                 the memory to change\n"
     "  --text T           new content (- reads standard input)\n"
     "  --type T           episodic, semantic, procedural or working\n"
     "  --importance X     a number in [0, 1]\n"
     "  --metadata JSON    a JSON object that replaces the metadata\n"
     "\n"
     "Give at least one option; fields not given stay as they are. The change\n"
     "is recorded in the memory's history.\n"
     "\n"
     "example:\n"
     "  engram update 0190a5e2-7b3c-7def-8123-456789abcdef --importance 0.2\n"},
    {"rm", cmd_rm, "rm ID", "delete a memory",
     "  ID                 the memory to delete (its history is kept)\n"
     "\n"
     "example:\n"
     "  engram rm 0190a5e2-7b3c-7def-8123-456789abcdef\n"},
    {"history", cmd_history, "history ID",
     "show the changes made to a memory, oldest first",
     "  ID                 the memory (deleted memories have a history too)\n"
     "\n"
     "Prints one line per change: event, time (ISO-8601, UTC), old -> new.\n"
     "\n"
     "example:\n"
     "  engram history 0190a5e2-7b3c-7def-8123-456789abcdef\n"},
    {"search", cmd_search,
     "search QUERY [--limit N] [--type T] [--min-relevance X] "
     "[--strategy S] [--weights W]",
     "rank memories by relevance to QUERY",
     "  QUERY              plain words; punctuation is never query syntax\n"
     "  --limit N          at most N results (default: 10)\n"
     "  --type T           only these types (comma-separated list)\n"
     "  --min-relevance X  drop results with relevance below X, in [0, 1]\n"
     "                     (default: 0)\n"
     "  --strategy S       lexical (default: BM25, each memory alone),\n"
     "                     hybrid (matches and the conversation around them)\n"
     "                     or vector (cosine of the embedder's vectors)\n"
     "  --weights W        hybrid options, NAME=VALUE,... (docs/api-search.md)\n"
     "\n"
     "Prints rank, relevance, type, id and the start of the content.\n"
     "\n"
     "example:\n"
     "  engram search --limit 5 \"what does Ada eat\"\n"},
    {"list", cmd_list, "list [--type T] [--after ID] [--limit N]",
     "list memories in creation order, a page at a time",
     "  --type T           only these types (comma-separated list)\n"
     "  --after ID         start after this memory (the cursor printed at the\n"
     "                     end of the previous page)\n"
     "  --limit N          at most N memories (default: 50)\n"
     "\n"
     "When more memories may follow, a last line says \"next: --after ID\"\n"
     "(with --json that line goes to standard error).\n"
     "\n"
     "example:\n"
     "  engram list --limit 20\n"},
    {"link", cmd_link, "link SOURCE TARGET [--kind K] [--strength X]",
     "relate two memories (replaces a link of the same kind)",
     "  SOURCE, TARGET     memory ids\n"
     "  --kind K           the relationship's kind, 1-64 bytes (default: "
     "related)\n"
     "  --strength X       a number in [0, 1] (default: 1.0)\n"
     "\n"
     "example:\n"
     "  engram link ID1 ID2 --kind reply-to --strength 0.8\n"},
    {"unlink", cmd_unlink, "unlink SOURCE TARGET [--kind K]",
     "remove a relationship",
     "  SOURCE, TARGET     memory ids\n"
     "  --kind K           the relationship's kind (default: related)\n"
     "\n"
     "example:\n"
     "  engram unlink ID1 ID2 --kind reply-to\n"},
    {"related", cmd_related, "related ID [--depth N] [--min-strength X]",
     "memories reachable from ID over relationships",
     "  ID                 where to start (printed first, at depth 0)\n"
     "  --depth N          follow at most N hops, 0-100 (default: 1)\n"
     "  --min-strength X   follow only relationships at least this strong,\n"
     "                     in [0, 1] (default: 0)\n"
     "\n"
     "Relationships are followed in both directions; each memory is printed\n"
     "once, with its depth.\n"
     "\n"
     "example:\n"
     "  engram related 0190a5e2-7b3c-7def-8123-456789abcdef --depth 2\n"},
    {"import", cmd_import, "import FILE... [--dedup]",
     "load memories from JSON Lines or LoCoMo conversation files",
     "  FILE...            files to read; - reads standard input\n"
     "  --dedup            skip memories whose text the namespace already "
     "holds\n"
     "\n"
     "JSON Lines: one memory per line, {\"content\": \"...\"} plus optionally\n"
     "\"type\", \"importance\", \"metadata\" (an object), \"ns\" (overrides "
     "--ns),\n"
     "\"id\" and \"embedding\" (an array of numbers). Other fields (such as "
     "the\n"
     "times that export writes) are ignored. A bad line is reported as\n"
     "FILE:LINE: reason, skipped and counted; the exit status is then 1.\n"
     "\n"
     "LoCoMo: a JSON conversation (speaker_a, speaker_b, session_N turns,\n"
     "optionally under \"conversation\"), or an array of them. Each turn "
     "becomes\n"
     "an episodic memory \"SPEAKER: text\" with metadata speaker, dia_id,\n"
     "session and session_time. Namespace: --ns (or $ENGRAM_NS) when given,\n"
     "else the conversation's sample_id, else the file name without .json.\n"
     "\n"
     "examples:\n"
     "  engram import memories.jsonl\n"
     "  engram import ../shared/data/locomo/conv-26.json\n"},
    {"export", cmd_export, "export [--type T] [--all]",
     "write memories as JSON Lines that import reads back",
     "  --type T           only these types (comma-separated list)\n"
     "  --all              every namespace, not only --ns\n"
     "\n"
     "One JSON object per line: id, ns, type, content, importance, metadata,\n"
     "created_ms, updated_ms, accessed_ms, content_hash (hex) and embedding\n"
     "(when there is one). Relationships and history are not exported.\n"
     "\n"
     "example:\n"
     "  engram export --all > backup.jsonl\n"
     "  engram --db copy.db import backup.jsonl\n"},
    {"context", cmd_context, "context MESSAGE [options]",
     "print the memory section engram injects before a reply to MESSAGE",
     "Searches the namespace for MESSAGE, collects the most relevant\n"
     "memories that arrive before the deadline and prints them formatted\n"
     "for a prompt (type, time, content cut at --max-chars). With --json:\n"
     "one object with text, ids, count, mean_relevance, timed_out, failed\n"
     "and elapsed_ms.\n"
     "\n"
     "options:\n"
     "  --max N              memories at most (1-1000; default 10)\n"
     "  --timeout MS         deadline in milliseconds (default 250); what\n"
     "                       arrived by then is used, marked timed out\n"
     "  --max-chars N        characters of one memory (default 2000)\n"
     "  --min-relevance X    leave out memories below X in [0,1] (default 0)\n"
     "  --type T[,T...]      only these types (default: all)\n"
     "  --no-headers         no section header line\n"
     "\n"
     "example:\n"
     "  engram context \"Where should I send Alice's birthday card?\"\n"},
    {"remember", cmd_remember, "remember --user TEXT --assistant TEXT",
     "store a conversation turn: both messages and the exchange, linked",
     "Stores the user's message and the reply as episodic memories and the\n"
     "exchange as a working memory, linked by reply-to and part-of, in one\n"
     "transaction. Prints the three ids.\n"
     "\n"
     "example:\n"
     "  engram remember --user \"I prefer tea\" --assistant \"Noted.\"\n"},
    {"serve", cmd_serve, "serve [options]",
     "run the HTTP service (JSON API, streaming search, mem0-compatible API)",
     "Serves --db over HTTP on the same event loop as the store, until\n"
     "SIGTERM or SIGINT: then it stops accepting, finishes the requests in\n"
     "flight and closes the store. Each option can also be set by the\n"
     "environment variable in brackets. See docs/api.md for the routes.\n"
     "\n"
     "options:\n"
     "  --listen HOST:PORT    where to listen (default 127.0.0.1:8420)\n"
     "                        [ENGRAM_LISTEN]\n"
     "  --keys FILE           API keys: one per line, then the namespaces it\n"
     "                        may use (* for all). Without keys, only a\n"
     "                        loopback address is accepted [ENGRAM_KEYS]\n"
     "  --max-body BYTES      largest request body (default 1048576)\n"
     "                        [ENGRAM_MAX_BODY]\n"
     "  --max-inflight N      requests at once before 429 (default 4096)\n"
     "                        [ENGRAM_MAX_INFLIGHT]\n"
     "  --io-timeout MS       idle or slow connections are closed after this\n"
     "                        (default 10000) [ENGRAM_IO_TIMEOUT]\n"
     "  --log-format F        access log on stderr: text or json (default\n"
     "                        text) [ENGRAM_LOG_FORMAT]\n"
     "  (--db also reads ENGRAM_DB)\n"
     "\n"
     "example:\n"
     "  engram serve --listen 127.0.0.1:8420\n"
     "  curl -s localhost:8420/healthz\n"},
    {"demo", cmd_demo, "demo",
     "store a few example memories, link and search them",
     "Stores six memories in namespace demo (or --ns) of --db, linking two,\n"
     "runs three searches and prints what it does. Running it again stores\n"
     "nothing new: it finds the memories already there.\n"
     "\n"
     "example:\n"
     "  engram demo --db /tmp/demo.db\n"},
    {"eval", cmd_eval,
     "eval locomo FILE... [--k LIST] [--parallel N] [--strategy S] "
     "[--weights W]",
     "measure retrieval: evidence recall on LoCoMo conversations",
     "  locomo             the benchmark (the only one for now)\n"
     "  FILE...            LoCoMo conversation files (conv-26.json, or the\n"
     "                     benchmark's locomo10.json array)\n"
     "  --k LIST           the cut-offs of Recall@k, comma-separated\n"
     "                     (default: 5,10,20); the largest is what each\n"
     "                     search asks for, and the MRR cut-off\n"
     "  --parallel N       searches in flight at once, 1-1024 (default: 16);\n"
     "                     the figures do not depend on it, latency does\n"
     "  --strategy S       lexical, hybrid, vector, or a comma-separated list\n"
     "                     of them (default: lexical,hybrid): the figures of\n"
     "                     each, in turn\n"
     "  --weights W        hybrid options, NAME=VALUE,... (docs/api-search.md)\n"
     "\n"
     "Stores each conversation's turns (as import does) in a namespace of\n"
     "its own, then searches for every question of categories 1-4 in its\n"
     "conversation and compares the results' dia_id with the question's\n"
     "evidence. Prints, per category (multi-hop, temporal, open-domain,\n"
     "single-hop) and overall: questions, Recall@k (the share of the\n"
     "evidence turns in the top k, averaged over questions) and MRR (1 /\n"
     "rank of the first evidence turn), then search latency p50/p95. With\n"
     "--json: one object. Category 5 and questions without evidence are\n"
     "left out, counted; evidence entries that are not dialogue ids are\n"
     "reported and ignored.\n"
     "\n"
     "Without --db the memories go to a temporary database, removed\n"
     "afterwards ($ENGRAM_DB is not used); with --db PATH they are kept\n"
     "there, and its eval-* namespaces must be empty.\n"
     "\n"
     "example:\n"
     "  engram eval locomo ../shared/data/locomo/conv-*.json\n"},
    {"reembed", cmd_reembed, "reembed",
     "give every memory a vector from the embedder (--embedder)",
     "Switches the database to the embedder of --embedder (hashed unless\n"
     "said otherwise) and gives every memory of every namespace a vector\n"
     "from it, in batches of 256, each committed before the next. Needed\n"
     "after changing embedder: until then writes with vectors and vector\n"
     "search fail, since vectors of different embedders are never mixed.\n"
     "Memories that already have a vector from this embedder are skipped,\n"
     "so an interrupted run continues where it stopped; the memories are\n"
     "not otherwise changed (no history entry, updated_ms kept). Prints\n"
     "progress on a terminal and a summary (--json: one object).\n"
     "\n"
     "example:\n"
     "  engram --embedder http:nomic-embed-text@http://127.0.0.1:11434 "
     "reembed\n"},
    {"help", cmd_help, "help [COMMAND]", "show this help, or a command's",
     "example:\n"
     "  engram help search\n"},
    /* Extension point: later commands are rows here and cmd_*.c files. */
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

const cli_command *cli_find_command(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

void cli_print_usage(FILE *f) {
  fprintf(f,
          "usage: engram [--db DB] [--ns NAME] [--json] COMMAND [ARGS]\n"
          "\n"
          "Long-term memory for LLM agents: store, search and relate "
          "memories.\n"
          "\n"
          "global options (before or after the command):\n"
          "  --db DB      the database: an SQLite file path, or a PostgreSQL\n"
          "               connection string (postgres://... or key=value)\n"
          "               (default: $ENGRAM_DB, else %s)\n"
          "  --ns NAME    the namespace to work in (default: $ENGRAM_NS, else "
          "\"%s\")\n"
          "  --embedder E what computes the vectors stored with memories and\n"
          "               searched by the vector strategy: hashed (built in,\n"
          "               no model; the default), hashed:DIM, none, or\n"
          "               http:MODEL@URL for an OpenAI-compatible server\n"
          "               (key from $ENGRAM_EMBEDDER_API_KEY); default:\n"
          "               $ENGRAM_EMBEDDER, else hashed\n"
          "  --json       print JSON Lines: one object per line\n"
          "  -h, --help   this help; engram COMMAND --help: that command's\n"
          "  --version    print the version\n"
          "\n"
          "commands:\n",
          CLI_DEFAULT_DB, CLI_DEFAULT_NS);
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\n"
          "Put -- before an argument that begins with '-'.\n"
          "Exit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

void cli_print_command_help(FILE *f, const cli_command *cmd) {
  fprintf(f, "usage: engram [global options] %s\n\n%s.\n\n%s", cmd->usage,
          cmd->summary, cmd->help);
  fprintf(f,
          "\nglobal options: --db PATH|CONNINFO (default: $ENGRAM_DB, else %s), "
          "--ns NAME\n(default: $ENGRAM_NS, else \"%s\"), --embedder E "
          "(default: $ENGRAM_EMBEDDER, else\nhashed), --json (JSON Lines "
          "output)\n",
          CLI_DEFAULT_DB, CLI_DEFAULT_NS);
}

int cmd_help(cli *c, int argc, char **argv) {
  (void)c;
  if (argc < 2) {
    cli_print_usage(stdout);
    return CLI_OK;
  }
  const cli_command *cmd = cli_find_command(argv[1]);
  if (!cmd) {
    fprintf(stderr,
            "engram: help: unknown command '%s'; run 'engram help' for the "
            "list of commands\n",
            argv[1]);
    return CLI_USAGE;
  }
  cli_print_command_help(stdout, cmd);
  return CLI_OK;
}
