/*
 * mem0_filters.c — a mem0 filter brought to the alternatives engram reads.
 *
 * mem0's search, getAll and deleteAll name memories by a filter on
 * user_id, agent_id, app_id and run_id: a string, "*", {"in": [...]} or
 * {"eq": ...} per id, combined with AND and OR to any depth. This file
 * parses such a filter (replying 400 naming the part that is wrong) into a
 * disjunction of conjunctions of id constraints (mem0_dnf), at most
 * MAX_ALTS alternatives, and plans it: each alternative reads the
 * namespace of its first id with a value ("user:alice"), the alternatives
 * are sorted so that those of one namespace are adjacent, and the caller's
 * key must be allowed every namespace. routes_mem0.c runs the plan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/mem0.h"

#define MAX_ALTS 32 /* alternatives a filter may expand to */
#define MAX_DEPTH 8 /* nesting of AND / OR in a filter */

/* ------------------------------------------------------------- entities */

const char *const mem0_entity_field[E_COUNT] = {"user_id", "agent_id", "app_id",
                                                "run_id"};
const char *const mem0_entity_kind[E_COUNT] = {"user", "agent", "app", "run"};
static const char *const ent_camel[E_COUNT] = {"userId", "agentId", "appId",
                                               "runId"};

static int entity_index(const char *key) {
  for (int e = 0; e < E_COUNT; e++)
    if (strcmp(key, mem0_entity_field[e]) == 0 ||
        strcmp(key, ent_camel[e]) == 0)
      return e;
  return -1;
}

/* 1 when v (len bytes) can name an entity: 1..ENTITY_MAX bytes of UTF-8
 * (a query parameter need not be), no NUL, no control characters. */
int mem0_entity_ok(const char *v, size_t len) {
  if (len == 0 || len > ENTITY_MAX || strlen(v) != len)
    return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
      return 0;
  json_t *utf8 = json_stringn(v, len); /* NULL unless valid UTF-8 */
  json_decref(utf8);
  return utf8 != NULL;
}

void mem0_bad_entity(http_req *r, const char *where) {
  http_error(r, 400, "invalid",
             "'%s' must be a non-empty string of at most %d bytes without "
             "control characters",
             where, ENTITY_MAX);
}

/* -------------------------------------------------------------- filters */

void mem0_dnf_free(mem0_dnf *d) {
  free(d->a);
  d->a = NULL;
  d->n = 0;
}

/* The filter that matches everything: one alternative without constraints. */
int mem0_dnf_true(mem0_dnf *d) {
  d->a = calloc(1, sizeof *d->a);
  d->n = d->a ? 1 : 0;
  return d->a != NULL;
}

/* a AND b for one pair; 0 when no memory can match both. */
static int alt_merge(const mem0_alt *a, const mem0_alt *b, mem0_alt *out) {
  *out = *a;
  for (int e = 0; e < E_COUNT; e++) {
    if (b->how[e] == C_NONE)
      continue;
    if (out->how[e] == C_NONE || out->how[e] == C_ANY) {
      if (b->how[e] == C_EQ || out->how[e] == C_NONE) {
        out->how[e] = b->how[e];
        memcpy(out->val[e], b->val[e], sizeof out->val[e]);
      }
    } else if (b->how[e] == C_EQ && strcmp(out->val[e], b->val[e]) != 0) {
      return 0;
    }
  }
  return 1;
}

/* a = a AND b; b is freed. 1, 0 out of memory, -1 too many alternatives. */
static int dnf_and(mem0_dnf *a, mem0_dnf *b) {
  mem0_alt *out = calloc(MAX_ALTS, sizeof *out);
  size_t n = 0;
  int rc = out ? 1 : 0;
  for (size_t i = 0; rc == 1 && i < a->n; i++)
    for (size_t j = 0; rc == 1 && j < b->n; j++) {
      mem0_alt m;
      if (!alt_merge(&a->a[i], &b->a[j], &m))
        continue;
      if (n == MAX_ALTS)
        rc = -1;
      else
        out[n++] = m;
    }
  mem0_dnf_free(b);
  mem0_dnf_free(a);
  if (rc != 1) {
    free(out);
    return rc;
  }
  a->a = out;
  a->n = n;
  return 1;
}

/* a = a OR b; b is freed. Same results as dnf_and. */
static int dnf_or(mem0_dnf *a, mem0_dnf *b) {
  if (a->n + b->n > MAX_ALTS) {
    mem0_dnf_free(b);
    return -1;
  }
  mem0_alt *grown = realloc(a->a, (a->n + b->n + 1) * sizeof *grown);
  if (!grown) {
    mem0_dnf_free(b);
    return 0;
  }
  a->a = grown;
  memcpy(a->a + a->n, b->a, b->n * sizeof *b->a);
  a->n += b->n;
  mem0_dnf_free(b);
  return 1;
}

/* Replies for a failed dnf_and / dnf_or. */
static int combine_failed(http_req *r, int rc) {
  if (rc == 0)
    http_error(r, 503, "unavailable", "out of memory");
  else
    http_error(r, 400, "invalid",
               "'filters' expands to more than %d alternatives; split the "
               "request",
               MAX_ALTS);
  return 0;
}

/* d = d AND (entity e with constraint how, value v). */
int mem0_and_entity(http_req *r, mem0_dnf *d, int e, int how, const char *v) {
  mem0_dnf one;
  if (!mem0_dnf_true(&one)) {
    http_error(r, 503, "unavailable", "out of memory");
    return 0;
  }
  one.a[0].how[e] = (unsigned char)how;
  if (how == C_EQ)
    snprintf(one.a[0].val[e], sizeof one.a[0].val[e], "%s", v);
  int rc = dnf_and(d, &one);
  return rc == 1 ? 1 : combine_failed(r, rc);
}

/* One string of a filter: "*" matches any value, else the value itself. */
static int filter_string(http_req *r, json_t *v, const char *where, int e,
                         mem0_dnf *out) {
  if (!json_is_string(v) ||
      !mem0_entity_ok(json_string_value(v), json_string_length(v))) {
    mem0_bad_entity(r, where);
    return 0;
  }
  const char *s = json_string_value(v);
  int how = strcmp(s, "*") == 0 ? C_ANY : C_EQ;
  return mem0_and_entity(r, out, e, how, s);
}

/* An entity's condition: "x", "*", {"in": [...]} or {"eq": "x"}. out is a
 * fresh true mem0_dnf on entry. */
static int filter_entity(http_req *r, json_t *v, const char *where, int e,
                         mem0_dnf *out) {
  if (!json_is_object(v))
    return filter_string(r, v, where, e, out);
  json_t *in = json_object_get(v, "in"), *eq = json_object_get(v, "eq");
  char at[160];
  if (json_object_size(v) == 1 && eq) {
    snprintf(at, sizeof at, "%.120s.eq", where);
    return filter_string(r, eq, at, e, out);
  }
  if (json_object_size(v) != 1 || !json_is_array(in) ||
      json_array_size(in) == 0) {
    http_error(r, 400, "invalid",
               "'%s' must be a string, \"*\", {\"in\": [strings]} or "
               "{\"eq\": string}; engram supports no other operator on ids",
               where);
    return 0;
  }
  mem0_dnf any = {NULL, 0};
  size_t i;
  json_t *item;
  json_array_foreach(in, i, item) {
    mem0_dnf one;
    snprintf(at, sizeof at, "%.120s.in[%zu]", where, i);
    if (!mem0_dnf_true(&one)) {
      mem0_dnf_free(&any);
      http_error(r, 503, "unavailable", "out of memory");
      return 0;
    }
    if (!filter_string(r, item, at, e, &one)) {
      mem0_dnf_free(&one);
      mem0_dnf_free(&any);
      return 0;
    }
    int rc = dnf_or(&any, &one);
    if (rc != 1) {
      mem0_dnf_free(&any);
      return combine_failed(r, rc);
    }
  }
  int rc = dnf_and(out, &any);
  return rc == 1 ? 1 : combine_failed(r, rc);
}

/* AND or OR: an array of filter objects combined into d. */
static int filter_list(http_req *r, json_t *list, const char *where, int is_or,
                       mem0_dnf *d, int depth) {
  if (!json_is_array(list) || json_array_size(list) == 0) {
    http_error(r, 400, "invalid",
               "'%s' must be a non-empty array of filter "
               "objects",
               where);
    return 0;
  }
  mem0_dnf acc = {NULL, 0};
  if (!is_or && !mem0_dnf_true(&acc)) {
    http_error(r, 503, "unavailable", "out of memory");
    return 0;
  }
  size_t i;
  json_t *item;
  json_array_foreach(list, i, item) {
    char at[160];
    snprintf(at, sizeof at, "%.120s[%zu]", where, i);
    mem0_dnf sub;
    if (!mem0_parse_filters(r, item, at, &sub, depth + 1)) {
      mem0_dnf_free(&acc);
      return 0;
    }
    int rc = is_or ? dnf_or(&acc, &sub) : dnf_and(&acc, &sub);
    if (rc != 1) {
      mem0_dnf_free(&acc);
      return combine_failed(r, rc);
    }
  }
  int rc = dnf_and(d, &acc);
  return rc == 1 ? 1 : combine_failed(r, rc);
}

/* Parses a filter object into *d (which it allocates); 1, or 0 after a
 * reply (d is then empty). */
int mem0_parse_filters(http_req *r, json_t *obj, const char *where, mem0_dnf *d,
                       int depth) {
  d->a = NULL;
  d->n = 0;
  if (!json_is_object(obj)) {
    http_error(r, 400, "invalid", "'%s' must be an object", where);
    return 0;
  }
  if (depth > MAX_DEPTH) {
    http_error(r, 400, "invalid", "'%s' nests AND and OR deeper than %d", where,
               MAX_DEPTH);
    return 0;
  }
  if (!mem0_dnf_true(d)) {
    http_error(r, 503, "unavailable", "out of memory");
    return 0;
  }
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    char at[160];
    snprintf(at, sizeof at, "%s.%s", where, key);
    int e = entity_index(key), ok;
    if (strcmp(key, "AND") == 0 || strcmp(key, "OR") == 0) {
      ok = filter_list(r, v, at, key[0] == 'O', d, depth);
    } else if (e >= 0) {
      mem0_dnf one;
      ok = mem0_dnf_true(&one);
      if (!ok)
        http_error(r, 503, "unavailable", "out of memory");
      else if ((ok = filter_entity(r, v, at, e, &one)) != 0) {
        int rc = dnf_and(d, &one);
        ok = rc == 1 ? 1 : combine_failed(r, rc);
      } else {
        mem0_dnf_free(&one);
      }
    } else {
      http_error(r, 400, "invalid",
                 "'%s' is not supported: engram filters on user_id, "
                 "agent_id, app_id and run_id, combined with AND, OR and "
                 "\"in\"",
                 at);
      ok = 0;
    }
    if (!ok) {
      mem0_dnf_free(d);
      return 0;
    }
  }
  return 1;
}

static int alt_cmp(const void *a, const void *b) {
  return strcmp(((const mem0_alt *)a)->ns, ((const mem0_alt *)b)->ns);
}

/* Gives each alternative its namespace (its first id with a value), sorts
 * them by namespace, and checks that the key may use every one: 1, or 0
 * after a 400 or 403 reply. */
int mem0_plan_build(http_req *r, mem0_dnf *d, const char *where) {
  for (size_t i = 0; i < d->n; i++) {
    mem0_alt *a = &d->a[i];
    a->primary = -1;
    for (int e = 0; e < E_COUNT && a->primary < 0; e++)
      if (a->how[e] == C_EQ)
        a->primary = e;
    if (a->primary < 0) {
      http_error(r, 400, "invalid",
                 "'%s' must give user_id, agent_id, app_id or run_id a value "
                 "in every alternative: engram keeps each entity in its own "
                 "namespace, and \"*\" alone cannot choose one",
                 where);
      return 0;
    }
    snprintf(a->ns, sizeof a->ns, "%s:%s", mem0_entity_kind[a->primary],
             a->val[a->primary]);
  }
  qsort(d->a, d->n, sizeof *d->a, alt_cmp);
  for (size_t i = 0; i < d->n; i++)
    if ((i == 0 || strcmp(d->a[i].ns, d->a[i - 1].ns) != 0) &&
        !http_allow_ns(r, d->a[i].ns))
      return 0;
  return 1;
}
