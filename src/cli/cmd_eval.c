/*
 * cmd_eval.c — `engram eval locomo FILE...`: retrieval quality on LoCoMo.
 *
 * Each conversation is loaded (locomo.c, the import code path: one
 * episodic memory per turn, metadata dia_id) into a namespace of its own in
 * a fresh temporary database (or --db), then every question of categories
 * 1-4 is searched for in its conversation's namespace, and the dia_ids of
 * the top results are compared with the question's evidence:
 *
 *   Recall@k  share of the evidence turns among the top k, averaged over
 *             questions;
 *   MRR       1 / rank of the first evidence turn within the largest k
 *             (0 when none), averaged over questions;
 *
 * per category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop) and
 * overall, plus the latency of a search (engram_search to its done
 * callback, on the loop). Category 5 (adversarial: no answer in the
 * conversation) is left out; so are questions with no usable evidence,
 * counted. Evidence entries are read leniently ("D1:3", "D:1:3",
 * "D8:6; D9:17", ranges "D1:3-5"); what cannot be read is reported and
 * counted, never fatal.
 *
 * Several searches run at once (--parallel); each question's results are
 * kept in its own slot, so the figures do not depend on the order in which
 * searches finish.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"

#define EVAL_MAX_K 1000
#define EVAL_MAX_KS 16
#define N_CATEGORIES 4
#define MAX_STRATEGIES 3 /* lexical, hybrid, vector */

static const char *const category_names[N_CATEGORIES] = {
    "multi-hop", "temporal", "open-domain", "single-hop"};

/* A dialogue id "D<session>:<turn>" as one number; 0: none. */
typedef uint64_t dia_t;

typedef struct ev_question {
  size_t conv; /* index into ev->convs */
  int category;
  const char *text; /* points into the conversation's document */
  dia_t *evidence;
  size_t n_evidence;
  /* the search */
  struct eval *ev;
  dia_t *found; /* dia ids of the results, in rank order (0: none) */
  size_t n_found;
  int stopped;
  int status;
  uint64_t start_ns;
  double latency_ms;
} ev_question;

typedef struct ev_conv {
  const char *file;
  char *ns;
  json_t *sample; /* borrowed from its document */
  dia_t *turns;   /* sorted, for "evidence not among the turns" */
  size_t n_turns;
} ev_conv;

typedef struct eval {
  cli *c;
  size_t max_k;
  unsigned parallel;
  json_t **docs;
  size_t n_docs;
  ev_conv *convs;
  size_t n_convs, cap_convs;
  ev_question *qs;
  size_t n_qs, cap_qs;
  /* counts */
  size_t skipped_category5, skipped_no_evidence;
  size_t unparseable, unknown_evidence;
  /* the search run */
  const cli_search *how;
  size_t next, inflight, finished;
  size_t failed;
} eval;

/* ------------------------------------------------------ dialogue ids */

static int read_number(const char **p, const char *end, uint64_t *out) {
  const char *s = *p;
  uint64_t v = 0;
  while (s < end && *s >= '0' && *s <= '9') {
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > 0xFFFFFFFFu)
      return -1;
    s++;
  }
  if (s == *p)
    return -1;
  *p = s;
  *out = v;
  return 0;
}

/* "D<session>:<turn>", also "d1:3" and "D:1:3" (a stray ':' after the
 * D). Consumes what it reads from *p. */
static int read_dia(const char **p, const char *end, uint64_t *session,
                    uint64_t *turn) {
  const char *s = *p;
  if (s < end && (*s == 'D' || *s == 'd'))
    s++;
  else
    return -1;
  if (s < end && *s == ':')
    s++;
  if (read_number(&s, end, session) != 0 || s >= end || *s != ':')
    return -1;
  s++;
  if (read_number(&s, end, turn) != 0)
    return -1;
  *p = s;
  return 0;
}

static dia_t make_dia(uint64_t session, uint64_t turn) {
  return (session << 32) | turn;
}

/* One whole dialogue id (a turn's metadata): 0 when it is not one. */
static dia_t parse_dia(const char *text) {
  if (!text)
    return 0;
  const char *p = text, *end = text + strlen(text);
  uint64_t s, t;
  if (read_dia(&p, end, &s, &t) != 0 || p != end)
    return 0;
  return make_dia(s, t);
}

static int add_dia(dia_t **list, size_t *n, size_t *cap, dia_t d) {
  for (size_t i = 0; i < *n; i++)
    if ((*list)[i] == d)
      return 0; /* listed twice: counted once */
  if (*n == *cap) {
    size_t bigger_cap = *cap ? *cap * 2 : 4;
    dia_t *bigger = realloc(*list, bigger_cap * sizeof *bigger);
    if (!bigger)
      return -1;
    *list = bigger;
    *cap = bigger_cap;
  }
  (*list)[(*n)++] = d;
  return 0;
}

/* One token of an evidence entry: an id, or a range "D1:3-5" /
 * "D1:3-D1:5" (within a session, at most 100 turns). */
static int parse_token(const char *tok, const char *end, dia_t **list,
                       size_t *n, size_t *cap) {
  const char *p = tok;
  uint64_t s, t, s2, t2;
  if (read_dia(&p, end, &s, &t) != 0)
    return -1;
  if (p == end)
    return add_dia(list, n, cap, make_dia(s, t)) == 0 ? 0 : -2;
  if (*p != '-')
    return -1;
  p++;
  const char *q = p;
  if (read_dia(&q, end, &s2, &t2) == 0) {
    p = q;
  } else {
    s2 = s;
    if (read_number(&p, end, &t2) != 0)
      return -1;
  }
  if (p != end || s2 != s || t2 < t || t2 - t > 100)
    return -1;
  for (uint64_t i = t; i <= t2; i++)
    if (add_dia(list, n, cap, make_dia(s, i)) != 0)
      return -2;
  return 0;
}

static int is_separator(char ch) {
  return ch == ';' || ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' ||
         ch == '\r';
}

static int cmp_dia(const void *a, const void *b) {
  dia_t x = *(const dia_t *)a, y = *(const dia_t *)b;
  return (x > y) - (x < y);
}

/* ------------------------------------------------------------ loading */

static int add_question(eval *ev, ev_question *q) {
  if (ev->n_qs == ev->cap_qs) {
    size_t bigger_cap = ev->cap_qs ? ev->cap_qs * 2 : 256;
    ev_question *bigger = realloc(ev->qs, bigger_cap * sizeof *bigger);
    if (!bigger)
      return -1;
    ev->qs = bigger;
    ev->cap_qs = bigger_cap;
  }
  ev->qs[ev->n_qs++] = *q;
  return 0;
}

/* The questions of one conversation. Returns 0 or -1 (out of memory). */
static int read_questions(eval *ev, size_t ci) {
  ev_conv *conv = &ev->convs[ci];
  json_t *qa = json_object_get(conv->sample, "qa");
  if (!json_is_array(qa))
    qa = json_object_get(locomo_conversation(conv->sample), "qa");
  if (!json_is_array(qa)) {
    fprintf(stderr, "engram: eval: %s: warning: no \"qa\" list; no questions\n",
            conv->file);
    return 0;
  }
  size_t i;
  json_t *item;
  json_array_foreach(qa, i, item) {
    json_t *cat = json_object_get(item, "category");
    const char *text = json_string_value(json_object_get(item, "question"));
    if (!json_is_integer(cat) || !text || !*text) {
      fprintf(stderr,
              "engram: eval: %s: qa[%zu]: warning: needs \"question\" and "
              "an integer \"category\"; left out\n",
              conv->file, i);
      continue;
    }
    json_int_t category = json_integer_value(cat);
    if (category == 5) {
      ev->skipped_category5++;
      continue;
    }
    if (category < 1 || category > N_CATEGORIES) {
      fprintf(stderr,
              "engram: eval: %s: qa[%zu]: warning: unknown category %lld; "
              "left out\n",
              conv->file, i, (long long)category);
      continue;
    }
    ev_question q = {.conv = ci, .category = (int)category, .text = text};
    size_t cap = 0;
    json_t *evidence = json_object_get(item, "evidence");
    size_t j;
    json_t *entry;
    json_array_foreach(evidence, j, entry) {
      const char *e = json_string_value(entry);
      if (!e) {
        fprintf(stderr,
                "engram: eval: %s: qa[%zu]: warning: evidence entry %zu is "
                "not a string; ignored\n",
                conv->file, i, j);
        ev->unparseable++;
        continue;
      }
      const char *p = e, *end = e + strlen(e);
      while (p < end) {
        while (p < end && is_separator(*p))
          p++;
        const char *tok = p;
        while (p < end && !is_separator(*p))
          p++;
        if (tok == p)
          break;
        int rc = parse_token(tok, p, &q.evidence, &q.n_evidence, &cap);
        if (rc == -2) {
          free(q.evidence);
          return -1;
        }
        if (rc != 0) {
          fprintf(stderr,
                  "engram: eval: %s: qa[%zu]: warning: evidence \"%.*s\" is "
                  "not a dialogue id (like D1:3); ignored\n",
                  conv->file, i, (int)(p - tok), tok);
          ev->unparseable++;
        }
      }
    }
    if (q.n_evidence == 0) {
      ev->skipped_no_evidence++;
      free(q.evidence);
      continue;
    }
    for (size_t k = 0; k < q.n_evidence; k++)
      if (!bsearch(&q.evidence[k], conv->turns, conv->n_turns,
                   sizeof *conv->turns, cmp_dia))
        ev->unknown_evidence++;
    q.ev = ev;
    if (add_question(ev, &q) != 0) {
      free(q.evidence);
      return -1;
    }
  }
  return 0;
}

/* The dia ids of a conversation's turns, sorted. */
static int read_turn_ids(ev_conv *conv) {
  json_t *c = locomo_conversation(conv->sample);
  size_t cap = locomo_count_turns(conv->sample);
  conv->turns = malloc((cap ? cap : 1) * sizeof *conv->turns);
  if (!conv->turns)
    return -1;
  const char *key;
  json_t *value;
  json_object_foreach(c, key, value) {
    if (strncmp(key, "session_", 8) != 0 || !json_is_array(value))
      continue;
    size_t i;
    json_t *turn;
    json_array_foreach(value, i, turn) {
      dia_t d = parse_dia(json_string_value(json_object_get(turn, "dia_id")));
      if (d && conv->n_turns < cap)
        conv->turns[conv->n_turns++] = d;
    }
  }
  qsort(conv->turns, conv->n_turns, sizeof *conv->turns, cmp_dia);
  return 0;
}

static int add_conv(eval *ev, const char *file, json_t *sample,
                    const char *label) {
  if (ev->n_convs == ev->cap_convs) {
    size_t bigger_cap = ev->cap_convs ? ev->cap_convs * 2 : 8;
    ev_conv *bigger = realloc(ev->convs, bigger_cap * sizeof *bigger);
    if (!bigger)
      return -1;
    ev->convs = bigger;
    ev->cap_convs = bigger_cap;
  }
  ev_conv *conv = &ev->convs[ev->n_convs];
  memset(conv, 0, sizeof *conv);
  conv->file = file;
  conv->sample = sample;
  if (asprintf(&conv->ns, "eval-%zu-%s", ev->n_convs + 1,
               label && *label ? label : "conversation") < 0) {
    conv->ns = NULL;
    return -1;
  }
  ev->n_convs++;
  if (read_turn_ids(conv) != 0)
    return -1;
  return read_questions(ev, ev->n_convs - 1);
}

/* Reads a file: one conversation, or an array of them. CLI_OK or
 * CLI_FAIL (printed). */
static int load_file(eval *ev, const char *path) {
  json_error_t jerr;
  FILE *f = fopen(path, "rb");
  if (!f) {
    cli_error(ev->c, "cannot open %s: %s", path, strerror(errno));
    return CLI_FAIL;
  }
  json_t *doc = json_loadf(f, 0, &jerr);
  fclose(f);
  if (!doc) {
    cli_error(ev->c, "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
    return CLI_FAIL;
  }
  if (!locomo_detect(doc)) {
    json_decref(doc);
    cli_error(ev->c,
              "%s is not a LoCoMo conversation (speaker_a, session_1, ..., "
              "qa) nor an array of them",
              path);
    return CLI_FAIL;
  }
  json_t **bigger = realloc(ev->docs, (ev->n_docs + 1) * sizeof *bigger);
  if (!bigger) {
    json_decref(doc);
    cli_error(ev->c, "out of memory");
    return CLI_FAIL;
  }
  ev->docs = bigger;
  ev->docs[ev->n_docs++] = doc;
  char *stem = locomo_file_stem(path);
  int rc = 0;
  if (json_is_array(doc)) {
    size_t i;
    json_t *sample;
    json_array_foreach(doc, i, sample) {
      const char *id = json_string_value(json_object_get(sample, "sample_id"));
      if (rc == 0)
        rc = add_conv(ev, path, sample, id ? id : stem);
    }
  } else {
    const char *id = json_string_value(json_object_get(doc, "sample_id"));
    rc = add_conv(ev, path, doc, id ? id : stem);
  }
  free(stem);
  if (rc != 0) {
    cli_error(ev->c, "out of memory");
    return CLI_FAIL;
  }
  return CLI_OK;
}

/* ------------------------------------------------------------ storing */

typedef struct ns_check {
  size_t seen;
} ns_check;

static int count_item(const engram_node *n, void *data) {
  (void)n;
  ((ns_check *)data)->seen++;
  return 1;
}

/* With a database of the user's: its namespaces must be empty, or the
 * figures would count turns stored by an earlier run. */
static int check_empty(eval *ev) {
  for (size_t i = 0; i < ev->n_convs; i++) {
    engram_query q = {.ns = ev->convs[i].ns};
    ns_check chk = {0};
    cli_drain d;
    engram_stream_cbs cbs;
    engram_stream *s;
    cli_drain_init(&d, ev->c, 1, count_item, &chk, &cbs);
    int rc = engram_list(ev->c->eg, &q, &cbs, &s);
    if (rc == 0)
      rc = cli_drain_run(&d, s);
    if (rc != 0) {
      cli_error(ev->c, "cannot read namespace %s: %s", ev->convs[i].ns,
                engram_strerror(rc));
      return CLI_FAIL;
    }
    if (chk.seen) {
      cli_error(ev->c,
                "namespace %s of %s already holds memories (an earlier "
                "eval?); give a fresh --db, or leave --db out for a "
                "temporary database",
                ev->convs[i].ns, ev->c->db);
      return CLI_FAIL;
    }
  }
  return CLI_OK;
}

/* Stores every turn; returns the number stored, or -1 (printed). */
static long long store_turns(eval *ev, uint64_t *skipped) {
  import_ctx im = {.c = ev->c};
  im.w = writer_new(ev->c, 256, 8);
  if (!im.w) {
    cli_error(ev->c, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < ev->n_convs; i++) {
    im.file = ev->convs[i].file;
    im.unit = "turns";
    locomo_import_conversation(&im, ev->convs[i].sample, ev->convs[i].ns,
                               ev->convs[i].file, ev->convs[i].file);
  }
  int broken = writer_finish(im.w) != 0;
  long long added = (long long)writer_added(im.w);
  *skipped = im.skipped + writer_failed(im.w);
  writer_free(im.w);
  for (size_t i = 0; i < im.n_names; i++)
    free(im.names[i]);
  free(im.names);
  if (broken) {
    cli_error(ev->c, "storing the turns failed (reported above)");
    return -1;
  }
  return added;
}

/* ---------------------------------------------------------- searching */

static void start_next(eval *ev);

static void on_item(engram_stream *s, const engram_node *node, void *data) {
  ev_question *q = data;
  if (q->stopped || q->n_found >= q->ev->max_k)
    return;
  dia_t d = 0;
  json_t *md = json_loads(node->metadata, 0, NULL);
  if (md) {
    d = parse_dia(json_string_value(json_object_get(md, "dia_id")));
    json_decref(md);
  }
  q->found[q->n_found++] = d;
  if (q->n_found == q->ev->max_k) {
    q->stopped = 1;
    engram_stream_cancel(s);
  }
}

static void on_error(engram_stream *s, int code, const char *message,
                     void *data) {
  (void)s;
  (void)code;
  (void)message; /* logged by the library */
  ((ev_question *)data)->ev->failed++;
}

static void on_done(engram_stream *s, int status, void *data) {
  ev_question *q = data;
  eval *ev = q->ev;
  (void)s;
  q->latency_ms = (double)(uv_hrtime() - q->start_ns) / 1e6;
  q->status = status == ENGRAM_ECANCELED && q->stopped ? 0 : status;
  ev->inflight--;
  ev->finished++;
  start_next(ev);
}

static void start_next(eval *ev) {
  while (ev->inflight < ev->parallel && ev->next < ev->n_qs) {
    ev_question *q = &ev->qs[ev->next++];
    engram_query query = {.ns = ev->convs[q->conv].ns,
                          .text = q->text,
                          .strategy = ev->how->strategy,
                          .options = &ev->how->opts};
    engram_stream_cbs cbs = {on_item, on_error, on_done, q};
    engram_stream *s;
    q->start_ns = uv_hrtime();
    int rc = engram_search(ev->c->eg, &query, &cbs, &s);
    if (rc != 0) {
      q->status = rc;
      ev->finished++;
      continue;
    }
    ev->inflight++;
    engram_stream_request(s, ev->max_k);
  }
}

static int all_finished(void *arg) {
  eval *ev = arg;
  return ev->finished == ev->n_qs;
}

/* ------------------------------------------------------------ figures */

typedef struct figures {
  size_t questions;
  double recall[EVAL_MAX_KS]; /* sums, then means */
  double mrr;
} figures;

static int has_dia(const dia_t *list, size_t n, dia_t d) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == d)
      return 1;
  return 0;
}

static void score(const ev_question *q, const size_t *ks, size_t n_ks,
                  figures *f) {
  f->questions++;
  for (size_t k = 0; k < n_ks; k++) {
    size_t top = q->n_found < ks[k] ? q->n_found : ks[k];
    size_t hits = 0;
    for (size_t e = 0; e < q->n_evidence; e++)
      if (q->evidence[e] && has_dia(q->found, top, q->evidence[e]))
        hits++;
    f->recall[k] += (double)hits / (double)q->n_evidence;
  }
  for (size_t r = 0; r < q->n_found; r++)
    if (q->found[r] && has_dia(q->evidence, q->n_evidence, q->found[r])) {
      f->mrr += 1.0 / (double)(r + 1);
      break;
    }
}

static void mean(figures *f, size_t n_ks) {
  if (!f->questions)
    return;
  for (size_t k = 0; k < n_ks; k++)
    f->recall[k] /= (double)f->questions;
  f->mrr /= (double)f->questions;
}

static double round_to(double x, double unit) {
  return round(x / unit) * unit;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest rank. */
static double percentile(const double *sorted, size_t n, double p) {
  if (!n)
    return 0;
  size_t rank = (size_t)ceil(p * (double)n);
  if (rank < 1)
    rank = 1;
  return sorted[rank - 1];
}

static json_t *figures_json(const figures *f, const size_t *ks, size_t n_ks) {
  json_t *o = json_object();
  json_object_set_new(o, "questions", json_integer((json_int_t)f->questions));
  json_t *r = json_object();
  for (size_t k = 0; k < n_ks; k++) {
    char key[24];
    snprintf(key, sizeof key, "%zu", ks[k]);
    json_object_set_new(r, key, json_real(round_to(f->recall[k], 1e-4)));
  }
  json_object_set_new(o, "recall", r);
  json_object_set_new(o, "mrr", json_real(round_to(f->mrr, 1e-4)));
  return o;
}

static void figures_line(const char *name, const figures *f, size_t n_ks) {
  printf("%-12s %9zu", name, f->questions);
  for (size_t k = 0; k < n_ks; k++)
    printf("  %6.3f", f->recall[k]);
  printf("  %6.3f\n", f->mrr);
}

/* ------------------------------------------------------------ command */

static int parse_ks(cli *c, const char *text, size_t *ks, size_t *n_ks) {
  size_t n = 0;
  const char *p = text;
  for (;;) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || errno || *p == '-' || *p == '+' || v < 1 ||
        v > EVAL_MAX_K || (*end != ',' && *end != '\0'))
      return cli_usage_error(c,
                             "--k wants a comma-separated list of whole "
                             "numbers from 1 to %d (such as 5,10,20), not "
                             "'%s'",
                             EVAL_MAX_K, text);
    int dup = 0;
    for (size_t i = 0; i < n; i++)
      dup |= ks[i] == v;
    if (!dup) {
      if (n == EVAL_MAX_KS)
        return cli_usage_error(c, "--k takes at most %d values", EVAL_MAX_KS);
      ks[n++] = v;
    }
    if (*end == '\0')
      break;
    p = end + 1;
  }
  /* ascending */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && ks[j - 1] > ks[j]; j--) {
      size_t t = ks[j];
      ks[j] = ks[j - 1];
      ks[j - 1] = t;
    }
  *n_ks = n;
  return CLI_OK;
}

/* Removes the temporary folder and what SQLite left in it. */
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(dir);
}

static void eval_free(eval *ev) {
  for (size_t i = 0; i < ev->n_qs; i++) {
    free(ev->qs[i].evidence);
    free(ev->qs[i].found);
  }
  free(ev->qs);
  for (size_t i = 0; i < ev->n_convs; i++) {
    free(ev->convs[i].ns);
    free(ev->convs[i].turns);
  }
  free(ev->convs);
  for (size_t i = 0; i < ev->n_docs; i++)
    json_decref(ev->docs[i]);
  free(ev->docs);
}

/* The figures of one strategy's run. */
typedef struct strategy_run {
  const char *name;
  figures cat[N_CATEGORIES], all;
  double p50, p95, pmax, wall_s;
  size_t n_lat, errors;
  int first_error;
} strategy_run;

/* Asks every question with ev->how and scores the answers. */
static int run_strategy(eval *ev, const size_t *ks, size_t n_ks,
                        strategy_run *out) {
  cli *c = ev->c;
  for (size_t i = 0; i < ev->n_qs; i++) {
    ev_question *q = &ev->qs[i];
    q->n_found = 0;
    q->stopped = 0;
    q->status = 0;
  }
  ev->next = ev->inflight = ev->finished = 0;
  uint64_t t0 = uv_hrtime();
  start_next(ev);
  if (cli_wait_for(c, all_finished, ev) != 0)
    return CLI_FAIL;
  out->wall_s = (double)(uv_hrtime() - t0) / 1e9;

  double *lat = malloc((ev->n_qs ? ev->n_qs : 1) * sizeof *lat);
  if (!lat) {
    cli_error(c, "out of memory");
    return CLI_FAIL;
  }
  for (size_t i = 0; i < ev->n_qs; i++) {
    const ev_question *q = &ev->qs[i];
    if (q->status != 0) {
      if (!out->errors++)
        out->first_error = q->status;
      continue;
    }
    lat[out->n_lat++] = q->latency_ms;
    score(q, ks, n_ks, &out->cat[q->category - 1]);
    score(q, ks, n_ks, &out->all);
  }
  for (int i = 0; i < N_CATEGORIES; i++)
    mean(&out->cat[i], n_ks);
  mean(&out->all, n_ks);
  qsort(lat, out->n_lat, sizeof *lat, cmp_double);
  out->p50 = percentile(lat, out->n_lat, 0.50);
  out->p95 = percentile(lat, out->n_lat, 0.95);
  out->pmax = out->n_lat ? lat[out->n_lat - 1] : 0;
  free(lat);
  return CLI_OK;
}

static json_t *strategy_json(const eval *ev, const strategy_run *r,
                             const size_t *ks, size_t n_ks) {
  json_t *st = json_object();
  json_object_set_new(st, "strategy", json_string(r->name));
  json_t *cats = json_object();
  for (int i = 0; i < N_CATEGORIES; i++) {
    json_t *fj = figures_json(&r->cat[i], ks, n_ks);
    json_object_set_new(fj, "category", json_integer(i + 1));
    json_object_set_new(cats, category_names[i], fj);
  }
  json_object_set_new(st, "categories", cats);
  json_object_set_new(st, "overall", figures_json(&r->all, ks, n_ks));
  json_t *lj = json_object();
  json_object_set_new(lj, "p50", json_real(round_to(r->p50, 1e-3)));
  json_object_set_new(lj, "p95", json_real(round_to(r->p95, 1e-3)));
  json_object_set_new(lj, "max", json_real(round_to(r->pmax, 1e-3)));
  json_object_set_new(lj, "searches", json_integer((json_int_t)r->n_lat));
  json_object_set_new(lj, "in_flight", json_integer(ev->parallel));
  json_object_set_new(st, "latency_ms", lj);
  json_object_set_new(st, "seconds", json_real(round_to(r->wall_s, 1e-3)));
  json_object_set_new(st, "search_errors",
                      json_integer((json_int_t)r->errors));
  return st;
}

static void strategy_print(const eval *ev, const strategy_run *r,
                           const size_t *ks, size_t n_ks) {
  printf("\nstrategy %s\n%-12s %9s", r->name, "category", "questions");
  for (size_t k = 0; k < n_ks; k++) {
    char head[16];
    snprintf(head, sizeof head, "R@%zu", ks[k]);
    printf("  %6s", head);
  }
  printf("  %6s\n", "MRR");
  for (int i = 0; i < N_CATEGORIES; i++)
    figures_line(category_names[i], &r->cat[i], n_ks);
  figures_line("overall", &r->all, n_ks);
  printf("latency: p50 %.3f ms, p95 %.3f ms, max %.3f ms (%zu searches, "
         "%u in flight, %.2f s)\n",
         r->p50, r->p95, r->pmax, r->n_lat, ev->parallel, r->wall_s);
}

typedef struct preloading {
  size_t pending;
  int status;
  const char *ns;
  char message[256];
} preloading;

static void on_preloaded(int status, const char *message, void *data) {
  preloading *p = data;
  p->pending--;
  if (status != 0 && !p->status) {
    p->status = status;
    snprintf(p->message, sizeof p->message, "%s", message ? message : "");
  }
}

static int preloaded(void *arg) { return ((preloading *)arg)->pending == 0; }

/* Every conversation's namespace into the lexical index first, so that
 * every hybrid search is the exact one (a namespace not loaded yet would
 * be searched with the store's match while it loads). */
static int preload_all(eval *ev) {
  preloading p = {0};
  int rc = 0;
  for (size_t i = 0; i < ev->n_convs && rc == 0; i++)
    if ((rc = engram_preload(ev->c->eg, ev->convs[i].ns, on_preloaded, &p)) ==
        0)
      p.pending++;
  /* Those started call back into p: wait for them, whatever happened. */
  if (cli_wait_for(ev->c, preloaded, &p) != 0)
    return CLI_FAIL;
  if (rc == ENGRAM_EINVAL && p.status == 0)
    return CLI_OK; /* a store without a lexical index */
  if (rc != 0) {
    cli_error(ev->c, "eval: loading the lexical index: %s",
              engram_strerror(rc));
    return CLI_FAIL;
  }
  if (p.status != 0) {
    cli_error(ev->c, "eval: loading the lexical index: %s", p.message);
    return CLI_FAIL;
  }
  return CLI_OK;
}

static int run_eval(eval *ev, const size_t *ks, size_t n_ks, const char **files,
                    int nfiles, const cli_search *hows, size_t n_hows) {
  cli *c = ev->c;
  uint64_t skipped_turns = 0;
  long long stored = store_turns(ev, &skipped_turns);
  if (stored < 0)
    return CLI_FAIL;

  for (size_t i = 0; i < ev->n_qs; i++) {
    ev->qs[i].found = malloc(ev->max_k * sizeof *ev->qs[i].found);
    if (!ev->qs[i].found) {
      cli_error(c, "out of memory");
      return CLI_FAIL;
    }
  }
  if (preload_all(ev) != CLI_OK)
    return CLI_FAIL;
  strategy_run runs[MAX_STRATEGIES];
  memset(runs, 0, sizeof runs);
  for (size_t h = 0; h < n_hows; h++) {
    ev->how = &hows[h];
    runs[h].name = engram_strategy_name(hows[h].strategy);
    if (run_strategy(ev, ks, n_ks, &runs[h]) != CLI_OK)
      return CLI_FAIL;
  }

  size_t questions = runs[0].all.questions;
  if (c->json) {
    json_t *o = json_object();
    json_t *fa = json_array();
    for (int i = 0; i < nfiles; i++)
      json_array_append_new(fa, json_string(files[i]));
    json_object_set_new(o, "benchmark", json_string("locomo"));
    json_object_set_new(o, "files", fa);
    json_object_set_new(o, "conversations",
                        json_integer((json_int_t)ev->n_convs));
    json_object_set_new(o, "turns", json_integer((json_int_t)stored));
    json_object_set_new(o, "turns_skipped",
                        json_integer((json_int_t)skipped_turns));
    json_object_set_new(o, "questions", json_integer((json_int_t)questions));
    json_object_set_new(o, "skipped_category_5",
                        json_integer((json_int_t)ev->skipped_category5));
    json_object_set_new(o, "skipped_no_evidence",
                        json_integer((json_int_t)ev->skipped_no_evidence));
    json_object_set_new(o, "unparseable_evidence",
                        json_integer((json_int_t)ev->unparseable));
    json_object_set_new(o, "evidence_not_in_turns",
                        json_integer((json_int_t)ev->unknown_evidence));
    size_t errors = 0;
    for (size_t h = 0; h < n_hows; h++)
      errors += runs[h].errors;
    json_object_set_new(o, "search_errors", json_integer((json_int_t)errors));
    json_t *ka = json_array();
    for (size_t k = 0; k < n_ks; k++)
      json_array_append_new(ka, json_integer((json_int_t)ks[k]));
    json_object_set_new(o, "k", ka);
    json_t *sa = json_array();
    for (size_t h = 0; h < n_hows; h++)
      json_array_append_new(sa, strategy_json(ev, &runs[h], ks, n_ks));
    json_object_set_new(o, "strategies", sa);
    out_json_line(stdout, o, 0);
  } else {
    printf("LoCoMo retrieval: %zu conversation%s, %lld turns stored",
           ev->n_convs, ev->n_convs == 1 ? "" : "s", stored);
    if (skipped_turns)
      printf(" (%llu skipped)", (unsigned long long)skipped_turns);
    printf(", %zu questions\n", questions);
    printf("left out: %zu of category 5 (adversarial), %zu with no "
           "evidence",
           ev->skipped_category5, ev->skipped_no_evidence);
    if (ev->unparseable)
      printf("; %zu unreadable evidence entr%s ignored", ev->unparseable,
             ev->unparseable == 1 ? "y" : "ies");
    if (ev->unknown_evidence)
      printf("; %zu evidence id%s not among the turns", ev->unknown_evidence,
             ev->unknown_evidence == 1 ? "" : "s");
    printf("\n");
    for (size_t h = 0; h < n_hows; h++)
      strategy_print(ev, &runs[h], ks, n_ks);
  }
  for (size_t h = 0; h < n_hows; h++)
    if (runs[h].errors) {
      cli_error(c, "%zu %s search%s failed (first: %s); they are not counted",
                runs[h].errors, runs[h].name, runs[h].errors == 1 ? "" : "es",
                engram_strerror(runs[h].first_error));
      return CLI_FAIL;
    }
  if (ev->failed) {
    cli_error(c, "%zu results could not be read (reported above)", ev->failed);
    return CLI_FAIL;
  }
  return CLI_OK;
}

/* --strategy: lexical, hybrid, vector, or a comma-separated list of them
 * (the default: lexical,hybrid). */
static int parse_strategies(cli *c, const char *text, const char *weights,
                            cli_search *hows, size_t *n) {
  *n = 0;
  const char *list = text ? text : "lexical,hybrid";
  for (const char *p = list; *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char name[16];
    if (len == 0 || len >= sizeof name || *n == MAX_STRATEGIES)
      return cli_usage_error(c, "--strategy wants lexical, hybrid, vector "
                                "or a list of them such as lexical,hybrid, "
                                "not '%s'",
                             list);
    memcpy(name, p, len);
    name[len] = '\0';
    cli_search *how = &hows[(*n)++];
    how->strategy = ENGRAM_STRATEGY_LEXICAL;
    engram_search_options_init(&how->opts);
    if (cli_parse_search(c, name, weights, how) != CLI_OK)
      return CLI_USAGE;
    p = comma ? comma + 1 : p + len;
  }
  return CLI_OK;
}

int cmd_eval(cli *c, int argc, char **argv) {
  cli_opt opts[] = {{"k", 1, NULL, 0},
                    {"parallel", 1, NULL, 0},
                    {"strategy", 1, NULL, 0},
                    {"weights", 1, NULL, 0},
                    {NULL, 0, NULL, 0}};
  const char **pos = calloc((size_t)argc, sizeof *pos);
  int npos, rc;
  if (!pos) {
    cli_error(c, "out of memory");
    return CLI_FAIL;
  }
  rc = cli_parse_args(c, argc, argv, opts, pos, argc, &npos);
  if (rc == CLI_OK && npos == 0)
    rc = cli_usage_error(c, "give the benchmark (locomo) and its files");
  if (rc == CLI_OK && strcmp(pos[0], "locomo") != 0)
    rc = cli_usage_error(c, "unknown benchmark '%s'; the one there is: locomo",
                         pos[0]);
  if (rc == CLI_OK && npos < 2)
    rc = cli_usage_error(c, "give the LoCoMo conversation files to evaluate "
                            "(such as conv-26.json)");
  size_t ks[EVAL_MAX_KS] = {5, 10, 20};
  size_t n_ks = 3;
  unsigned long parallel = 16;
  const char *v;
  if (rc == CLI_OK && (v = cli_opt_value(opts, "k")))
    rc = parse_ks(c, v, ks, &n_ks);
  if (rc == CLI_OK && (v = cli_opt_value(opts, "parallel")))
    rc = cli_parse_count(c, "parallel", v, 1, 1024, &parallel);
  cli_search hows[MAX_STRATEGIES];
  size_t n_hows = 0;
  if (rc == CLI_OK)
    rc = parse_strategies(c, cli_opt_value(opts, "strategy"),
                          cli_opt_value(opts, "weights"), hows, &n_hows);
  if (rc != CLI_OK) {
    free(pos);
    return rc;
  }

  eval ev = {.c = c, .max_k = ks[n_ks - 1], .parallel = (unsigned)parallel};
  for (int i = 1; i < npos && rc == CLI_OK; i++)
    rc = load_file(&ev, pos[i]);

  char tmpdir[4096] = "";
  char tmpdb[4096 + 16];
  if (rc == CLI_OK && !c->db_given) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/engram-eval-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
      cli_error(c, "cannot make a temporary folder in %s: %s",
                base && *base ? base : "/tmp", strerror(errno));
      tmpdir[0] = '\0';
      rc = CLI_FAIL;
    } else {
      snprintf(tmpdb, sizeof tmpdb, "%s/eval.db", tmpdir);
      c->db = tmpdb;
    }
  }
  if (rc == CLI_OK && cli_open(c, 1) != CLI_OK)
    rc = CLI_FAIL;
  if (rc == CLI_OK && c->db_given)
    rc = check_empty(&ev);
  if (rc == CLI_OK)
    rc = run_eval(&ev, ks, n_ks, pos + 1, npos - 1, hows, n_hows);
  cli_close(c);
  if (tmpdir[0])
    remove_dir(tmpdir);
  eval_free(&ev);
  free(pos);
  return rc;
}
