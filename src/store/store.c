/*
 * store.c — what every backend shares: the statistics of group commits,
 * marking a failed batch, telling which backend a --db value names, the
 * rows a stream holds for its consumer, and freeing what reads return.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

void store_count_group(store *st, uint64_t ops) {
  unsigned i = 0;
  for (uint64_t limit = 1; i + 1 < ENGRAM_BATCH_BUCKETS && ops > limit;
       limit *= 4)
    i++;
  st->write_batches++;
  st->writes_committed += ops;
  st->write_batch_sizes[i]++;
}

int store_db_is_pg(const char *db) {
  if (!db)
    return 0;
  if (strncmp(db, "postgres://", 11) == 0 ||
      strncmp(db, "postgresql://", 13) == 0)
    return 1;
  /* libpq's key=value form: a keyword, optional blanks, '='. A file name
   * rarely starts that way; one that does can be given as ./name. */
  const char *p = db;
  while (*p == ' ' || *p == '\t')
    p++;
  if (!isalpha((unsigned char)*p) && *p != '_')
    return 0;
  while (isalnum((unsigned char)*p) || *p == '_')
    p++;
  while (*p == ' ' || *p == '\t')
    p++;
  return *p == '=';
}

store_candidates *store_candidates_new(size_t n) {
  store_candidates *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  size_t m = n ? n : 1;
  c->nodes = calloc(m, sizeof *c->nodes);
  c->score = calloc(m, sizeof *c->score);
  c->hit = calloc(m, 1);
  c->adjacent = calloc(m, 1);
  c->vhit = calloc(m, 1);
  if (!c->nodes || !c->score || !c->hit || !c->adjacent || !c->vhit) {
    store_candidates_free(c);
    return NULL;
  }
  return c;
}

void store_candidates_free(store_candidates *c) {
  if (!c)
    return;
  for (size_t i = 0; c->nodes && i < c->n; i++)
    engram_node_free(c->nodes[i]);
  free(c->nodes);
  free(c->score);
  free(c->hit);
  free(c->adjacent);
  free(c->vhit);
  free(c);
}

void store_batch_fail(store_batch *b, int code, const char *why) {
  size_t first = b->n;
  for (size_t i = 0; i < b->n; i++)
    if (b->ops[i].status != 0) {
      first = i;
      break;
    }
  b->status = first < b->n ? b->ops[first].status : code;
  for (size_t i = 0; i < b->n; i++) {
    engram_op *op = &b->ops[i];
    if (i == first)
      continue;
    op->deduplicated = 0;
    if (first < b->n) {
      op->status = ENGRAM_ECANCELED;
      snprintf(op->message, sizeof op->message,
               "not written: op %zu of the same batch failed", first);
    } else {
      op->status = code;
      snprintf(op->message, sizeof op->message, "%s", why);
    }
  }
}

void store_history_free(engram_history_entry *entries, size_t n) {
  for (size_t i = 0; entries && i < n; i++) {
    free((char *)entries[i].old_content);
    free((char *)entries[i].new_content);
  }
  free(entries);
}

void store_rels_free(engram_rel *rels, size_t n) {
  for (size_t i = 0; rels && i < n; i++) {
    free((char *)rels[i].source);
    free((char *)rels[i].target);
    free((char *)rels[i].kind);
  }
  free(rels);
}

int store_space_format(char *out, const char *name, uint32_t dim) {
  if (!name || !*name || dim == 0)
    return ENGRAM_EINVAL;
  int n = snprintf(out, STORE_SPACE_LEN, "%s/%u", name, (unsigned)dim);
  return n > 0 && n < STORE_SPACE_LEN ? 0 : ENGRAM_EINVAL;
}

int store_space_mismatch(engram_op *op, const char *have, const char *wanted) {
  snprintf(op->message, sizeof op->message,
           "the database's vectors come from %s, this one from %s: vectors "
           "of different embedders are never mixed (run `engram reembed` "
           "to switch)",
           have, wanted);
  return ENGRAM_EEMBEDDER;
}

void store_vectors_free(store_vectors *v) {
  if (!v)
    return;
  free(v->ids);
  free(v->seq);
  free(v->type);
  free(v->has_vector);
  free(v->vectors);
  free(v->removed);
  free(v->term_start);
  free(v->terms);
  free(v->doc_len);
  free(v->term_text);
  free(v->qterm_start);
  free(v->qterms);
  free(v);
}

int store_op_writes_vector(const engram_op *op) {
  return op->embedding && op->embedding_dim > 0 &&
         (op->kind == ENGRAM_OP_ADD || op->kind == STORE_OP_SET_VECTOR ||
          (op->kind == ENGRAM_OP_UPDATE && (op->set & ENGRAM_SET_EMBEDDING)));
}

int store_items_push(store_items *b, engram_node *node, int code,
                     const char *msg) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    store_item *p = realloc(b->v, cap * sizeof *p);
    if (!p) {
      engram_node_free(node);
      return ENGRAM_ENOMEM;
    }
    b->v = p;
    b->cap = cap;
  }
  store_item *it = &b->v[b->n++];
  it->node = node;
  it->code = code;
  it->msg = (!node && msg) ? strdup(msg) : NULL;
  return 0;
}

void store_items_drop(store_items *b, size_t from) {
  for (size_t i = from; i < b->n; i++) {
    engram_node_free(b->v[i].node);
    free(b->v[i].msg);
  }
  b->n = 0;
}

void store_items_free(store_items *b) {
  store_items_drop(b, 0);
  free(b->v);
  b->v = NULL;
  b->cap = 0;
}
