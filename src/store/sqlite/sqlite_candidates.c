/*
 * sqlite_candidates.c — hybrid search's candidates on SQLite: the best
 * lexical matches of a query in a namespace, and the memories just before
 * and after each of them, in one thread-pool task.
 *
 * The task holds one reader and, in one read transaction, runs three
 * kinds of statement:
 *   1. the full-text match, restricted to the namespace by its tag,
 *      ranked by engram_rank(k1, b, meta_weight) and cut at `limit` (the
 *      best first), pruned at scale (below); then the matches' rows, in
 *      one statement (the rowids bound as a JSON array), decoded into
 *      owned nodes: reading a row costs about 3 us at 100,000 memories,
 *      so each is read once;
 *   2. the `window` ids before and after each of the best
 *      `window_matches` matches (and of every vector hit) that are
 *      conversation turns (episodic: no other type takes neighbours) in
 *      the namespace, through the (ns, id) index (ids are UUIDv7, so id
 *      order is creation order, which for a conversation is the order of
 *      its turns); matches are visited in id order so that a cluster of
 *      them costs one query per side, not one per match. A neighbour's prior
 *      is a share of its match's score, so those of weak matches seldom
 *      reach the top, and the cap bounds this step;
 *   3. the rows of the neighbours not read yet, the same way.
 * Each match and its neighbours form a run of consecutive memories; the
 * runs are merged by id, and a memory whose predecessor in some run is the
 * memory before it in the merged list is marked adjacent to it (nothing of
 * the namespace lies between them). The work is bounded by
 * limit + window_matches * 2 * window rows, which the API layer caps.
 *
 * Pruning (MaxScore's idea, with FTS5 doing the walking). Ranking every
 * row that has any of the words costs a microsecond or more a row, and a
 * common word is in a large share of a big namespace. So each word's
 * document frequency is looked up first (sqlite_terms.c: the index's
 * vocabulary, cached per connection until the database changes), words in
 * no row are left out, and with B = max_scored the match takes one of
 * three forms (sqlite_match_build_groups):
 *   ALL   the words' counts add up to B or less: `tag AND (all words)`,
 *         every match ranked, exactly the unpruned result;
 *   ESS   the rarest word fits in B: the "essential" words E, the rarest
 *         while their counts add up to B, and a row must have one of
 *         them: `tag AND (E) AND (all words)`;
 *   PAIR  even the rarest word w1 is in more than B rows: a row must have
 *         w1 and another of the words, `tag AND (w1) AND (the others)`
 *         (bench/search: the newest B rows of w1 alone found the planted
 *         memory of 0.59 of the questions at 100,000 memories, this 0.617,
 *         unpruned 0.620), the newest B of them; if fewer than `limit`
 *         rows have that, the newest B rows of w1 (ESS with E = w1) join
 *         them (the best `limit` of all the runs are kept, one heap).
 * FTS5 walks the essential lists and moves the others forward to each
 * candidate by seeking (AND), so a common word costs per candidate, not
 * per row that has it; every word is still a phrase of the query, so FTS5
 * reports its occurrences in each candidate. engram_rank, given the
 * looked-up counts (the same as FTS5's own count) and a sink, records
 * each candidate's term frequencies; rank_rows then reads the length (the
 * costly part: FTS5's docsize table) only of the rows whose score bound
 * can still beat the limit-th best, and gives each kept row its whole
 * score, the number the unpruned query computes. A capped form walks the
 * rows newest first (ORDER BY rowid DESC LIMIT B, FTS5's own backwards
 * walk); the others in FTS5's order, which is cheaper. The namespace's
 * tag is left out when the file holds that namespace alone (two index
 * seeks tell): it would filter nothing and costs a seek in its list,
 * which holds every row, per candidate. Only the words that could be a
 * tag term get the word columns' filter (sqlite_match.c): FTS5 checks a
 * filter by reading where each occurrence is, on every row it visits.
 *   ESS and PAIR leave out the rows that have only commoner words: the
 * best `limit` are still exact when no cap bound and the limit-th best
 * score beats what the left-out words could add (each at most
 * idf * (k1 + 1)); else they are the best of the rows that have a rarer
 * word. bench/search measures what that costs in recall
 * (docs/benchmarks.md, "Search at scale").
 *
 * Vector hits (the ids the vector index found, store_candidates_query.ids)
 * join the matches before step 2, marked vhit and without a score, so that
 * their neighbours come too; with no word to match, only they are read.
 * Matches the caller found (the lexical index's, match_ids with their
 * scores; limit is then 0 and step 1 matches nothing) are read the same
 * way and are matches like step 1's.
 *
 * Cancellation: a task not yet started is dropped by libuv; a running one
 * sees the stop flag between statements and is interrupted inside one
 * (sqlite3_interrupt); a request still waiting for a reader leaves the
 * queue and its callback comes from a task that does nothing. Either way
 * the callback runs once, on the loop, with ENGRAM_ECANCELED.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

typedef struct cand_entry {
  char id[ENGRAM_ID_LEN + 1];
  sqlite3_int64 rowid;
  double score;
  unsigned char hit;
  unsigned char vhit;     /* one of the query's ids (a vector hit) */
  unsigned char has_prev; /* the memory before it in the namespace is in
                             the same run */
  unsigned char episodic; /* a match or vector hit that is a conversation
                             turn: only those take neighbours */
  engram_node *node;      /* its row, once read (owned) */
} cand_entry;

typedef struct cand_req {
  sqlite_read_task t; /* the reader, the task, cancellation */
  store_candidates_req *req;
  /* the query, copied */
  char *ns;
  sqlite_words words;
  unsigned types;
  size_t limit, window, window_matches, max_scored;
  double k1, b, meta_weight;
  int vectors; /* the nodes carry their vectors */
  /* the match, planned on the thread pool (plan_match) */
  char *match;    /* NULL: no word is in any row */
  double *dfs;    /* per scored phrase: its rows, or -1 (engram_rank counts) */
  size_t nscored; /* phrases scored */
  size_t skip;    /* phrases before them (filters) */
  int capped;     /* the newest max_scored matches only */
  struct best_hit *heap; /* the best `limit` rows of every match run */
  size_t held;
  char *ids_json; /* the query's ids as a JSON array; NULL: none */
  char *matches_json;           /* the caller's matches, likewise */
  struct given_match *matches;  /* and their scores, by id */
  size_t nmatches;
  /* results, filled on the thread pool */
  int status;
  char msg[SQ_MSG_LEN];
  cand_entry *entries;
  size_t n, cap;
  store_candidates *set;
} cand_req;

static int push_entry(cand_req *r, const char *id, sqlite3_int64 rowid,
                      double score, int hit, int has_prev) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    cand_entry *p = realloc(r->entries, cap * sizeof *p);
    if (!p)
      return ENGRAM_ENOMEM;
    r->entries = p;
    r->cap = cap;
  }
  cand_entry *e = &r->entries[r->n++];
  snprintf(e->id, sizeof e->id, "%s", id);
  e->rowid = rowid;
  e->score = score;
  e->hit = (unsigned char)hit;
  e->vhit = 0;
  e->has_prev = (unsigned char)has_prev;
  e->episodic = 0;
  e->node = NULL;
  return 0;
}

static void drop_entries(cand_req *r) {
  for (size_t i = 0; i < r->n; i++)
    engram_node_free(r->entries[i].node);
  r->n = 0;
}

static int fail(cand_req *r, int rc, const char *what) {
  r->status = sqlite_fail(r->t.rd->db, rc, what, r->msg, sizeof r->msg);
  return r->status;
}

/* An id column, checked: a row whose id is not one is skipped. */
static const char *id_col(sqlite3_stmt *stmt, int col) {
  const char *id = (const char *)sqlite3_column_text(stmt, col);
  return id && strlen(id) == ENGRAM_ID_LEN ? id : NULL;
}

/* rowids as a JSON array (statements take a set of rows as one
 * parameter, through json_each); NULL when out of memory. */
static char *rowids_json(const sqlite3_int64 *rowid, size_t n) {
  char *list = malloc(n * 21 + 3);
  if (!list)
    return NULL;
  size_t len = 0;
  list[len++] = '[';
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(list + len, 22, "%s%lld", i ? "," : "",
                            (long long)rowid[i]);
  list[len++] = ']';
  list[len] = '\0';
  return list;
}

typedef struct word_count {
  size_t word;   /* index in r->words */
  double select; /* rows that may have it: what the choice goes by */
  double exact;  /* rows that have it, or -1 */
} word_count;

static int by_select(const void *a, const void *b) {
  const word_count *x = a, *y = b;
  if (x->select != y->select)
    return x->select < y->select ? -1 : 1;
  return (x->word > y->word) - (x->word < y->word);
}

/* The forms of the match (see the top of the file). */
enum {
  FORM_ALL,  /* every word: `tag AND (all)` */
  FORM_ESS,  /* `tag AND (essential) AND (all)` */
  FORM_PAIR, /* the rarest word and another: `tag AND (w1) AND (others)` */
};

typedef struct match_plan {
  word_count *words;  /* in the query's order, the absent ones left out */
  word_count *sorted; /* the same, the rarest first */
  size_t n;
  size_t *idx; /* scratch: the expression's words, group after group */
  unsigned char *tagged; /* per word of r->words: needs the columns filter */
  int alone;             /* the file holds the namespace alone: no tag */
} match_plan;

static void plan_free(match_plan *p) {
  free(p->words);
  free(p->sorted);
  free(p->idx);
  free(p->tagged);
}

/* The words' counts (absent words dropped), and whether the namespace is
 * the only one of the file. */
static int plan_counts(cand_req *r, match_plan *p) {
  size_t n = r->words.n;
  p->words = malloc(n * sizeof *p->words);
  p->sorted = malloc(n * sizeof *p->sorted);
  p->idx = malloc(2 * n * sizeof *p->idx);
  p->tagged = calloc(n ? n : 1, 1);
  if (!p->words || !p->sorted || !p->idx || !p->tagged) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  int rc = sqlite_terms_sync(r->t.rd);
  if (rc != SQLITE_OK)
    return fail(r, rc, "reading the database's version");
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_NS_ALONE, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the namespaces query");
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  p->alone = rc == SQLITE_ROW && sqlite3_column_int(stmt, 0) == 1;
  sqlite3_reset(stmt);
  if (rc != SQLITE_ROW)
    return fail(r, rc, "reading the namespaces");
  for (size_t i = 0; i < n; i++) {
    if (atomic_load(&r->t.stop)) {
      r->status = ENGRAM_ECANCELED;
      return r->status;
    }
    word_count c = {.word = i};
    int tagged = 1;
    rc =
        sqlite_terms_df(r->t.rd, r->words.text + r->words.off[i], r->words.len[i],
                        r->words.cut[i], &c.select, &c.exact, &tagged);
    p->tagged[i] = (unsigned char)tagged;
    if (rc != SQLITE_OK)
      return fail(r, rc, "looking up the query's words");
    if (c.select > 0) /* in no row: it can neither match nor score */
      p->words[p->n++] = c;
  }
  memcpy(p->sorted, p->words, p->n * sizeof *p->sorted);
  qsort(p->sorted, p->n, sizeof *p->sorted, by_select);
  return 0;
}

/* Builds the match of one form into r (match, dfs, nscored, skip,
 * capped). */
static int plan_form(cand_req *r, const match_plan *p, int form) {
  double budget = r->max_scored ? (double)r->max_scored : INFINITY;
  size_t ne = 1; /* essential words: the rarest while they fit */
  double rows = p->sorted[0].select;
  while (ne < p->n && rows + p->sorted[ne].select <= budget)
    rows += p->sorted[ne++].select;
  size_t len[2], ngroups = 0, filters = 0, k = 0;
  const word_count *scored = p->words; /* the scored words, in order */
  if (form == FORM_PAIR) {
    /* w1, then the others (the sorted array is in that order) */
    p->idx[k++] = p->sorted[0].word;
    len[ngroups++] = 1;
    for (size_t i = 1; i < p->n; i++)
      p->idx[k++] = p->sorted[i].word;
    len[ngroups++] = p->n - 1;
    scored = p->sorted;
  } else {
    if (form == FORM_ESS) {
      for (size_t i = 0; i < ne; i++)
        p->idx[k++] = p->sorted[i].word;
      len[ngroups++] = filters = ne;
    }
    for (size_t i = 0; i < p->n; i++)
      p->idx[k++] = p->words[i].word;
    len[ngroups++] = p->n;
  }
  free(r->match);
  r->match = NULL;
  if (sqlite_match_build_groups(p->alone ? NULL : r->ns, &r->words, p->tagged,
                                p->idx, len, ngroups, &r->match) != 0) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  for (size_t i = 0; i < p->n; i++)
    r->dfs[i] = scored[i].exact;
  r->nscored = p->n;
  r->skip = (p->alone ? 0 : 1) + filters;
  r->capped = p->sorted[0].select > budget;
  return 0;
}

/* A row's length in words (content and metadata values): FTS5's docsize
 * record, one varint per column. -1 when the row has none. */
static int row_length(cand_req *r, sqlite3_int64 rowid, double *dl) {
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_DOCSIZE, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the lengths query");
  sqlite3_bind_int64(stmt, 1, rowid);
  *dl = -1;
  if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const unsigned char *p = sqlite3_column_blob(stmt, 0);
    int n = sqlite3_column_bytes(stmt, 0), at = 0;
    double words = 0;
    for (int col = 0; col < 2 && at < n; col++) {
      uint64_t v = 0;
      int k = 0;
      while (at < n && k < 9) { /* SQLite's varint */
        unsigned char c = p[at++];
        v = k == 8 ? (v << 8) | c : (v << 7) | (c & 0x7fu);
        k++;
        if (k == 9 || !(c & 0x80u))
          break;
      }
      words += (double)v;
    }
    *dl = words;
    rc = SQLITE_DONE;
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? 0 : fail(r, rc, "reading a row's length");
}

/* A matching row's id, and whether it is of the namespace and of a
 * wanted type (*keep). */
static int find_row(cand_req *r, sqlite3_stmt *row, sqlite3_int64 rowid,
                    char id[ENGRAM_ID_LEN + 1], int *type_out, int *keep) {
  sqlite3_bind_int64(row, 1, rowid);
  sqlite3_bind_text(row, 2, r->ns, -1, SQLITE_STATIC);
  int rc = sqlite3_step(row);
  *keep = 0;
  if (rc == SQLITE_ROW) {
    const char *text = id_col(row, 0);
    sqlite3_int64 type = sqlite3_column_int64(row, 1);
    *keep = text && type >= 0 && type < 32 &&
            (r->types == 0 || (r->types & (1u << type)));
    if (*keep) {
      memcpy(id, text, ENGRAM_ID_LEN + 1);
      *type_out = (int)type;
    }
    rc = SQLITE_DONE;
  }
  sqlite3_reset(row);
  return rc == SQLITE_DONE ? 0 : fail(r, rc, "reading a matching row");
}

typedef struct scored_row {
  size_t row;   /* index in the sink */
  double bound; /* the most its score can be */
  sqlite3_int64 rowid;
} scored_row;

static int by_bound(const void *a, const void *b) {
  const scored_row *x = a, *y = b;
  if (x->bound != y->bound)
    return (x->bound < y->bound) - (x->bound > y->bound);
  return (x->rowid > y->rowid) - (x->rowid < y->rowid);
}

typedef struct best_hit {
  double score;
  sqlite3_int64 rowid;
  char id[ENGRAM_ID_LEN + 1];
  int type; /* read with the id (a type filter), else -1 */
} best_hit;

/* a ranks before b: the higher score, and between equal scores the older
 * row, as the unpruned query's sort kept them (FTS5 hands rows over
 * oldest first). */
static int better(const best_hit *a, const best_hit *b) {
  return a->score > b->score || (a->score == b->score && a->rowid < b->rowid);
}

/* Sifts heap[i] down (heap[0] the worst of n). */
static void sift_down(best_hit *heap, size_t n, size_t i) {
  best_hit x = heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && better(&heap[c], &heap[c + 1]))
      c++;
    if (!better(&x, &heap[c]))
      break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = x;
}

static int read_nodes(cand_req *r);

/* The best rows become the matches. With a type filter rank_rows has read
 * their ids already; without, their rows are read here, whole and in one
 * statement (the nodes the set needs anyway: reading a row costs about 3
 * us at 100,000 memories, so each is read once). A row not of the
 * namespace (the match has no tag when the namespace was alone, and
 * another may have come since) or that does not decode is left out. */
static int keep_hits(cand_req *r, const best_hit *heap, size_t held) {
  size_t first = r->n;
  for (size_t i = 0; i < held; i++) {
    if (push_entry(r, r->types ? heap[i].id : "", heap[i].rowid, heap[i].score,
                   1, 0) != 0)
      return r->status = ENGRAM_ENOMEM;
    r->entries[r->n - 1].episodic = heap[i].type == ENGRAM_EPISODIC;
  }
  if (r->types != 0 || read_nodes(r) != 0)
    return r->status;
  size_t out = first;
  for (size_t i = first; i < r->n; i++) {
    cand_entry *e = &r->entries[i];
    if (!e->node || strcmp(e->node->ns, r->ns) != 0) {
      engram_node_free(e->node);
      continue;
    }
    snprintf(e->id, sizeof e->id, "%s", e->node->id);
    e->episodic = e->node->type == ENGRAM_EPISODIC;
    r->entries[out++] = *e;
  }
  r->n = out;
  return 0;
}

/* Whether the heap holds the row already (a row two runs both match). */
static int held_already(const best_hit *heap, size_t held,
                        sqlite3_int64 rowid) {
  for (size_t i = 0; i < held; i++)
    if (heap[i].rowid == rowid)
      return 1;
  return 0;
}

/* The sink's rows into the heap of the best `limit` rows of the namespace
 * and the wanted types (r->heap, kept across the match runs of a search).
 * Rows are taken by their bound (the score with the length 0, which no
 * row beats: each phrase's part only falls as the length grows), most
 * promising first; the exact score needs the row's length, read only
 * until the next bound is below the limit-th best score. So the heap holds
 * the best `limit` of all the collected rows, exactly, with the lengths of
 * a few of them read. */
static int rank_rows(cand_req *r, const sqlite_rank_sink *sk) {
  size_t m = sk->nscored;
  double k1 = r->k1, b = r->b, least = k1 * (1.0 - b);
  scored_row *order = malloc((sk->n ? sk->n : 1) * sizeof *order);
  best_hit *heap = r->heap;
  size_t held = r->held;
  if (!order) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  for (size_t i = 0; i < sk->n; i++) {
    const double *tf = sk->tf + i * m;
    double bound = 0;
    for (size_t p = 0; p < m; p++)
      if (tf[p] > 0)
        bound += sk->idf[p] * tf[p] * (k1 + 1.0) / (tf[p] + least);
    order[i] = (scored_row){i, bound, sk->rowid[i]};
  }
  qsort(order, sk->n, sizeof *order, by_bound);
  int rc = SQLITE_DONE;
  sqlite3_stmt *row = sqlite_reader_stmt(r->t.rd, RS_CAND_ROW, &rc);
  if (!row)
    fail(r, rc, "preparing the rows query");
  for (size_t i = 0; i < sk->n && r->status == 0; i++) {
    if (held == r->limit && order[i].bound < heap[0].score)
      break; /* no row left can enter */
    if ((i & 63) == 63 && atomic_load(&r->t.stop)) {
      r->status = ENGRAM_ECANCELED;
      break;
    }
    const double *tf = sk->tf + order[i].row * m;
    sqlite3_int64 rowid = sk->rowid[order[i].row];
    double dl = -1;
    if (row_length(r, rowid, &dl) != 0)
      break;
    if (dl < 0)
      continue;
    /* engram_rank's sum, term for term and in the same order */
    double score = 0;
    double norm = k1 * (1.0 - b + b * dl / sk->avgdl);
    for (size_t p = 0; p < m; p++)
      if (tf[p] > 0)
        score += sk->idf[p] * tf[p] * (k1 + 1.0) / (tf[p] + norm);
    best_hit h = {score, rowid, {0}, -1};
    if ((held == r->limit && !better(&h, &heap[0])) ||
        held_already(heap, held, rowid))
      continue;
    /* With a type filter, a row of another type must not take a place:
     * its type is read now. Without, the ids are read at the end, for
     * the rows kept only. */
    if (r->types != 0) {
      int keep = 0;
      if (find_row(r, row, rowid, h.id, &h.type, &keep) != 0)
        break;
      if (!keep)
        continue;
    }
    if (held < r->limit) { /* sift up */
      size_t at = held++;
      while (at > 0 && better(&heap[(at - 1) / 2], &h)) {
        heap[at] = heap[(at - 1) / 2];
        at = (at - 1) / 2;
      }
      heap[at] = h;
    } else {
      heap[0] = h;
      sift_down(heap, held, 0);
    }
  }
  r->held = held;
  free(order);
  return r->status;
}

/* Runs the match planned in r: FTS5 hands every match's term frequencies
 * to engram_rank's sink, then rank_rows keeps the best. */
static int run_match(cand_req *r) {
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(
      r->t.rd, r->capped ? RS_CAND_HITS : RS_CAND_HITS_ALL, &rc);
  if (!stmt)
    return fail(r, rc, "preparing the candidates query");
  sqlite_rank_sink sink;
  memset(&sink, 0, sizeof sink);
  sqlite3_bind_text(stmt, 1, r->match, -1, SQLITE_STATIC);
  sqlite3_bind_double(stmt, 2, r->k1);
  sqlite3_bind_double(stmt, 3, r->b);
  sqlite3_bind_double(stmt, 4, r->meta_weight);
  sqlite3_bind_int64(stmt, 5, (sqlite3_int64)r->skip);
  sqlite3_bind_blob64(stmt, 6, r->dfs, r->nscored * sizeof *r->dfs,
                      SQLITE_STATIC);
  sqlite3_bind_pointer(stmt, 7, &sink, SQ_RANK_SINK, NULL);
  sqlite3_bind_int64(stmt, 8, r->capped ? (sqlite3_int64)r->max_scored : -1);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
    ;
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt); /* the sink lives on this stack */
  if (rc != SQLITE_DONE)
    fail(r, rc, "matching the query");
  else if (sink.n > 0)
    rank_rows(r, &sink);
  sqlite_rank_sink_free(&sink);
  return r->status;
}

/* Step 1: the matches, best first. */
static int find_hits(cand_req *r) {
  match_plan p = {0};
  if (!(r->dfs = malloc((r->words.n ? r->words.n : 1) * sizeof *r->dfs))) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  if (plan_counts(r, &p) != 0 || p.n == 0) { /* no word in any row */
    plan_free(&p);
    return r->status;
  }
  double budget = r->max_scored ? (double)r->max_scored : INFINITY;
  double rows = 0;
  for (size_t i = 0; i < p.n; i++)
    rows += p.sorted[i].select;
  int form = p.n == 1 || rows <= budget     ? FORM_ALL
             : p.sorted[0].select <= budget ? FORM_ESS
                                            : FORM_PAIR;
  if (!(r->heap = malloc(r->limit * sizeof *r->heap))) {
    plan_free(&p);
    return r->status = ENGRAM_ENOMEM;
  }
  if (plan_form(r, &p, form) == 0 && run_match(r) == 0 && form == FORM_PAIR &&
      r->held < r->limit && plan_form(r, &p, FORM_ESS) == 0)
    /* Too few rows have the rarest word and another: the newest rows
     * with the rarest word, whatever else they have, join them. */
    run_match(r);
  if (r->status == 0 && r->held > 0)
    keep_hits(r, r->heap, r->held);
  plan_free(&p);
  return r->status;
}

static int by_id(const void *a, const void *b) {
  return strcmp(((const cand_entry *)a)->id, ((const cand_entry *)b)->id);
}

/* Up to `max` ids on one side of `from` (after: ascending; before: nearest
 * first), pushed as neighbours. The first one pushed after `from` follows
 * it; before, each one pushed precedes the one pushed previously (or the
 * entry at index first_prev for the first). Returns how many, or -1. */
static long fetch_side(cand_req *r, int after, const char *from, size_t max,
                       size_t first_prev) {
  int rc;
  sqlite3_stmt *stmt =
      sqlite_reader_stmt(r->t.rd, after ? RS_CAND_AFTER : RS_CAND_BEFORE, &rc);
  if (!stmt) {
    fail(r, rc, "preparing the neighbours query");
    return -1;
  }
  char key[ENGRAM_ID_LEN + 1];
  memcpy(key, from, sizeof key);
  sqlite3_bind_text(stmt, 1, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, key, ENGRAM_ID_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, (sqlite3_int64)r->types);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)max);
  long got = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = id_col(stmt, 1);
    if (!id)
      break; /* the run would have a hole: stop it here */
    if (push_entry(r, id, sqlite3_column_int64(stmt, 0), 0, 0, after) != 0) {
      sqlite3_reset(stmt);
      r->status = ENGRAM_ENOMEM;
      return -1;
    }
    if (!after)
      r->entries[got == 0 ? first_prev : r->n - 2].has_prev = 1;
    got++;
  }
  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fail(r, rc, "reading neighbours");
    return -1;
  }
  return got;
}

/* Conversation turns first (nothing else takes neighbours), vector hits
 * before matches, matches best first, ties older first (as PostgreSQL's
 * read_sql: which of tied matches take neighbours must not depend on the
 * order they came in). */
static int by_expansion(const void *a, const void *b) {
  const cand_entry *x = a, *y = b;
  if (x->episodic != y->episodic)
    return x->episodic ? -1 : 1;
  if (x->vhit != y->vhit)
    return x->vhit ? -1 : 1;
  if (x->score != y->score)
    return x->score < y->score ? 1 : -1;
  return strcmp(x->id, y->id);
}

/* The matches whose neighbours are taken, moved to the front: every
 * vector hit and the best window_matches lexical matches that are
 * conversation turns (episodic). Returns how many. hybrid_rank.c gives a
 * memory of another type no neighbour score and takes none from it (a
 * fact written a minute after another is not its context), so their
 * neighbours would be read for nothing: at 100,000 facts that was a fifth
 * of a search. A neighbour's prior is a share of its match's score, so
 * those of the weaker matches seldom reach the top; the cap bounds the
 * step's work. */
static size_t to_expand(cand_req *r) {
  if (r->n == 0)
    return 0;
  qsort(r->entries, r->n, sizeof *r->entries, by_expansion);
  size_t vhits = 0, lexical = 0;
  while (vhits < r->n && r->entries[vhits].episodic && r->entries[vhits].vhit)
    vhits++;
  while (vhits + lexical < r->n && r->entries[vhits + lexical].episodic)
    lexical++;
  return vhits + (lexical < r->window_matches ? lexical : r->window_matches);
}

/* Step 2: the neighbours of the `hits` first entries (the matches). They
 * are taken in id order; a match that falls among the memories just
 * fetched after the previous one needs no query for what precedes it (the
 * previous match and its predecessors are known), and only the missing
 * part of what follows. A conversation's matches cluster, so this saves
 * most of the queries. */
static int find_neighbours(cand_req *r, size_t hits) {
  if (hits == 0)
    return 0;
  qsort(r->entries, hits, sizeof *r->entries, by_id);
  size_t w = r->window;
  char(*tail)[ENGRAM_ID_LEN + 1] = malloc(w * sizeof *tail);
  if (!tail) {
    r->status = ENGRAM_ENOMEM;
    return r->status;
  }
  size_t tail_n = 0;  /* ids known right after the previous match, in order */
  int tail_ended = 0; /* the namespace ends after them */
  for (size_t h = 0; h < hits && r->status == 0; h++) {
    if (atomic_load(&r->t.stop)) {
      r->status = ENGRAM_ECANCELED;
      break;
    }
    char id[ENGRAM_ID_LEN + 1];
    memcpy(id, r->entries[h].id, sizeof id);
    size_t at = tail_n;
    for (size_t i = 0; i < tail_n; i++)
      if (strcmp(tail[i], id) == 0) {
        at = i;
        break;
      }
    size_t known = 0;
    if (at < tail_n) {
      known = tail_n - at - 1;
      memmove(tail, tail + at + 1, known * sizeof *tail);
    } else {
      if (fetch_side(r, 0, id, w, h) < 0)
        break;
      tail_ended = 0;
    }
    tail_n = known;
    if (known == w || tail_ended)
      continue;
    long got = fetch_side(r, 1, known ? tail[known - 1] : id, w - known, 0);
    if (got < 0)
      break;
    for (long i = 0; i < got; i++)
      memcpy(tail[tail_n++], r->entries[r->n - (size_t)got + (size_t)i].id,
             sizeof *tail);
    tail_ended = (size_t)got < w - known;
  }
  free(tail);
  return r->status;
}

/* Merges the runs: one entry per id, a hit if any copy is, adjacent if any
 * copy had its predecessor in its run. */
static void merge_entries(cand_req *r) {
  if (r->n == 0)
    return;
  qsort(r->entries, r->n, sizeof *r->entries, by_id);
  size_t out = 0;
  for (size_t i = 1; i < r->n; i++) {
    cand_entry *e = &r->entries[i], *last = &r->entries[out];
    if (strcmp(e->id, last->id) == 0) {
      last->hit |= e->hit;
      last->vhit |= e->vhit;
      last->episodic |= e->episodic;
      last->has_prev |= e->has_prev;
      if (e->score > last->score)
        last->score = e->score;
      if (!last->node) /* one read row is enough */
        last->node = e->node;
      else
        engram_node_free(e->node);
    } else {
      r->entries[++out] = *e;
    }
  }
  r->n = out + 1;
}

typedef struct by_rowid_item {
  sqlite3_int64 rowid;
  size_t entry;
} by_rowid_item;

static int by_rowid(const void *a, const void *b) {
  sqlite3_int64 x = ((const by_rowid_item *)a)->rowid;
  sqlite3_int64 y = ((const by_rowid_item *)b)->rowid;
  return (x > y) - (x < y);
}

/* The rows of the entries that have none yet, in one statement (the
 * rowids go in as a JSON array: one statement instead of one per memory),
 * each decoded into its entry. A row that does not decode stays without;
 * so does an entry whose row is gone. */
static int read_nodes(cand_req *r) {
  size_t want = 0;
  for (size_t i = 0; i < r->n; i++)
    want += !r->entries[i].node;
  if (want == 0)
    return 0;
  by_rowid_item *index = malloc(want * sizeof *index);
  sqlite3_int64 *rowids = malloc(want * sizeof *rowids);
  char *list = NULL;
  if (index && rowids) {
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
      if (!r->entries[i].node) {
        index[k] = (by_rowid_item){r->entries[i].rowid, i};
        rowids[k++] = r->entries[i].rowid;
      }
    list = rowids_json(rowids, want);
  }
  free(rowids);
  if (!index || !list) {
    free(index);
    free(list);
    return r->status = ENGRAM_ENOMEM;
  }
  qsort(index, want, sizeof *index, by_rowid);
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_CAND_NODES, &rc);
  if (!stmt) {
    fail(r, rc, "preparing the candidates rows");
  } else {
    sqlite3_bind_text(stmt, 1, list, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, r->vectors);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      by_rowid_item key = {sqlite3_column_int64(stmt, 0), 0};
      by_rowid_item *at = bsearch(&key, index, want, sizeof *index, by_rowid);
      if (!at || r->entries[at->entry].node)
        continue;
      char msg[SQ_MSG_LEN];
      int code = sqlite_row_node(stmt, 1, &r->entries[at->entry].node, msg,
                                 sizeof msg);
      if (code == ENGRAM_ENOMEM) {
        r->status = code;
        break;
      }
    }
    if (r->status == 0 && rc != SQLITE_DONE)
      fail(r, rc, "reading the candidates");
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
  free(index);
  free(list);
  return r->status;
}

/* Step 3: the rows not read yet, then the set. A row that does not decode
 * is left out, and the memory after it loses its adjacency. */
static int load_nodes(cand_req *r) {
  store_candidates *c = store_candidates_new(r->n);
  if (!c)
    return r->status = ENGRAM_ENOMEM;
  r->set = c;
  if (read_nodes(r) != 0)
    return r->status;
  int lost_prev = 0;
  for (size_t i = 0; i < r->n; i++) {
    cand_entry *e = &r->entries[i];
    if (!e->node) {
      lost_prev = 1;
      continue;
    }
    c->nodes[c->n] = e->node;
    e->node = NULL; /* the set's now */
    c->score[c->n] = e->score;
    c->hit[c->n] = e->hit;
    c->vhit[c->n] = e->vhit;
    c->adjacent[c->n] = (unsigned char)(c->n > 0 && !lost_prev && e->has_prev);
    lost_prev = 0;
    c->n++;
  }
  return 0;
}

typedef struct given_match {
  char id[ENGRAM_ID_LEN + 1];
  double score;
} given_match;

static int by_given_id(const void *a, const void *b) {
  return strcmp(((const given_match *)a)->id, ((const given_match *)b)->id);
}

/* Step 1b, memories by id in the namespace (of the wanted types): the
 * caller's matches (json r->matches_json; each with its score, pushed as
 * a match) or the query's vector hits (pushed like matches, so that step
 * 2 takes their neighbours, but marked vhit, with no score). */
static int add_ids(cand_req *r, const char *json, int vhit) {
  if (!json)
    return 0;
  int rc;
  sqlite3_stmt *stmt = sqlite_reader_stmt(r->t.rd, RS_CAND_IDS, &rc);
  if (!stmt)
    return fail(r, rc, "preparing a read of memories by id");
  sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->ns, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, (sqlite3_int64)r->types);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *id = id_col(stmt, 1);
    if (!id)
      continue;
    double score = 0;
    if (!vhit) {
      given_match key;
      memcpy(key.id, id, sizeof key.id);
      const given_match *m = bsearch(&key, r->matches, r->nmatches,
                                     sizeof *r->matches, by_given_id);
      if (!m)
        continue;
      score = m->score;
    }
    if (push_entry(r, id, sqlite3_column_int64(stmt, 0), score, !vhit, 0) !=
        0) {
      sqlite3_reset(stmt);
      r->status = ENGRAM_ENOMEM;
      return r->status;
    }
    r->entries[r->n - 1].vhit = (unsigned char)vhit;
    r->entries[r->n - 1].episodic =
        sqlite3_column_int64(stmt, 2) == ENGRAM_EPISODIC;
  }
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE
             ? 0
             : fail(r, rc, vhit ? "reading the vector hits"
                                : "reading the lexical index's matches");
}

/* The ids as a JSON array (ids that are not canonical are left out:
 * nothing of them could be a memory). NULL when out of memory. */
static char *ids_to_json(const char *const *ids, size_t n) {
  char *json = malloc(n * (ENGRAM_ID_LEN + 3) + 3);
  if (!json)
    return NULL;
  size_t len = 0, kept = 0;
  json[len++] = '[';
  for (size_t i = 0; i < n; i++) {
    if (!ids[i] || !engram_id_valid(ids[i]))
      continue;
    len += (size_t)sprintf(json + len, "%s\"%s\"", kept++ ? "," : "", ids[i]);
  }
  json[len++] = ']';
  json[len] = '\0';
  return json;
}

static void cand_run(sqlite_read_task *t) {
  cand_req *r = SQ_CONTAINER(t, cand_req, t);
  if (atomic_load(&r->t.stop)) {
    r->status = ENGRAM_ECANCELED;
    return;
  }
  if (r->limit == 0 && !r->ids_json &&
      !r->matches_json) { /* nothing to look for */
    if (!(r->set = store_candidates_new(0)))
      r->status = ENGRAM_ENOMEM;
    return;
  }
  /* The vocabulary table, made once per connection, outside the read
   * transaction. */
  int rc = r->limit > 0 ? sqlite_terms_open(r->t.rd) : SQLITE_OK;
  if (rc != SQLITE_OK) {
    fail(r, rc, "preparing the vocabulary");
    return;
  }
  /* One read transaction for the whole task: one snapshot (the words'
   * counts and the match see the same rows), and one set of WAL locks
   * instead of one per statement (hundreds of fcntl calls). */
  rc = sqlite3_exec(r->t.rd->db, "BEGIN", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    fail(r, rc, "starting a read");
    return;
  }
  if ((r->limit == 0 || find_hits(r) == 0) &&
      add_ids(r, r->matches_json, 0) == 0 && add_ids(r, r->ids_json, 1) == 0) {
    if (r->window > 0)
      find_neighbours(r, to_expand(r));
    if (r->status == 0) {
      merge_entries(r);
      load_nodes(r);
    }
  }
  /* The reader must leave its transaction, or it would keep an old
   * snapshot: an interrupt that lands on the COMMIT is cleared once that
   * statement is finalized, so the ROLLBACK runs. */
  if (sqlite3_exec(r->t.rd->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    sqlite3_exec(r->t.rd->db, "ROLLBACK", NULL, NULL, NULL);
}

static void cand_free(cand_req *r) {
  store_candidates_free(r->set);
  free(r->heap);
  drop_entries(r);
  free(r->entries);
  free(r->ns);
  sqlite_words_free(&r->words);
  free(r->match);
  free(r->dfs);
  free(r->ids_json);
  free(r->matches_json);
  free(r->matches);
  free(r);
}

static void cand_done(sqlite_read_task *t, int status) {
  cand_req *r = SQ_CONTAINER(t, cand_req, t);
  if (status != 0)
    r->status = status;
  store_candidates_req *req = r->req;
  req->impl = NULL;
  store_candidates *set = NULL;
  if (r->status == 0) {
    set = r->set;
    r->set = NULL;
  } else if (r->status == ENGRAM_ECANCELED) {
    snprintf(r->msg, sizeof r->msg, "the search was cancelled");
  } else if (r->status == ENGRAM_ENOMEM && !r->msg[0]) {
    snprintf(r->msg, sizeof r->msg, "out of memory gathering candidates");
  }
  const char *msg = r->status ? r->msg : NULL;
  req->cb(req, r->status, msg, set);
  cand_free(r);
}

int sqlite_candidates(store *base, const store_candidates_query *q,
                      store_candidates_req *req) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!q->ns || !q->text || !req || !req->cb)
    return ENGRAM_EINVAL;
  size_t len = q->text_len ? q->text_len : strlen(q->text);
  cand_req *r = calloc(1, sizeof *r);
  if (!r || !(r->ns = strdup(q->ns)) ||
      sqlite_words_collect(q->text, len, &r->words) != 0) {
    if (r)
      free(r->ns);
    free(r);
    return ENGRAM_ENOMEM;
  }
  r->t.st = st;
  r->t.run = cand_run;
  r->t.done = cand_done;
  r->t.what = "search";
  r->req = req;
  r->types = q->types;
  r->limit = r->words.n == 0 ? 0 : q->limit; /* no word: nothing matches */
  r->window = q->window;
  r->window_matches = q->window_matches;
  r->max_scored = q->max_scored;
  r->k1 = q->k1;
  r->b = q->b;
  r->meta_weight = q->meta_weight;
  r->vectors = q->vectors;
  if (q->nids && !(r->ids_json = ids_to_json(q->ids, q->nids))) {
    cand_free(r);
    return ENGRAM_ENOMEM;
  }
  if (q->nmatch_ids && (!q->match_ids || !q->match_scores || q->limit)) {
    cand_free(r);
    return ENGRAM_EINVAL;
  }
  if (q->nmatch_ids) {
    if (!(r->matches_json = ids_to_json(q->match_ids, q->nmatch_ids)) ||
        !(r->matches = malloc(q->nmatch_ids * sizeof *r->matches))) {
      cand_free(r);
      return ENGRAM_ENOMEM;
    }
    for (size_t i = 0; i < q->nmatch_ids; i++) {
      if (!q->match_ids[i] || !engram_id_valid(q->match_ids[i]))
        continue; /* as ids_to_json: nothing of it could be a memory */
      memcpy(r->matches[r->nmatches].id, q->match_ids[i],
             sizeof r->matches->id);
      r->matches[r->nmatches++].score = q->match_scores[i];
    }
    qsort(r->matches, r->nmatches, sizeof *r->matches, by_given_id);
  }
  req->impl = r;
  /* Nothing to look for: an empty set, still from the loop, later. */
  int nothing = r->limit == 0 && !r->ids_json && !r->matches_json;
  if (sqlite_read_task_start(&r->t, !nothing) != 0) {
    req->impl = NULL;
    cand_free(r);
    return ENGRAM_ENOMEM;
  }
  return 0;
}

void sqlite_candidates_cancel(store *base, store_candidates_req *req) {
  (void)base;
  cand_req *r = req ? req->impl : NULL;
  if (r)
    sqlite_read_task_cancel(&r->t);
}
