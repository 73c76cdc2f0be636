/*
 * mem0.h — the mem0-compatible API's internal header (routes_mem0.c,
 * mem0_filters.c, mem0_shape.c only).
 *
 * routes_mem0.c holds the routes and their async state; mem0_filters.c
 * turns a mem0 filter into the alternatives (mem0_dnf) a route reads, one
 * namespace at a time; mem0_shape.c keeps a memory's mem0 ids in its
 * metadata and renders memories as mem0 answers them. Every function that
 * takes an http_req and returns 0 has replied by then; the route still
 * releases the request.
 */
#ifndef ENGRAM_HTTP_MEM0_H
#define ENGRAM_HTTP_MEM0_H

#include "http/http.h"

#define ENTITY_MAX 200  /* bytes of a mem0 id */
#define NS_CAP 256      /* "agent:" and an id fit, with the NUL */
#define RESERVED "mem0" /* the metadata key that holds a memory's mem0 ids */

/* ------------------------------------------------------------- entities */

enum { E_USER, E_AGENT, E_APP, E_RUN, E_COUNT };
/* "user_id", ...: the body and query field of each entity. */
extern const char *const mem0_entity_field[E_COUNT];
/* "user", ...: the entity type in paths and namespace names. */
extern const char *const mem0_entity_kind[E_COUNT];

/* 1 when v (len bytes) can name an entity: 1..ENTITY_MAX bytes of UTF-8
 * (a query parameter need not be), no NUL, no control characters. */
int mem0_entity_ok(const char *v, size_t len);
/* Replies 400: where is not a valid entity id. */
void mem0_bad_entity(http_req *r, const char *where);

/* -------------------------------------------------------------- filters */

enum { C_NONE, C_EQ, C_ANY };

/* One alternative: a constraint per entity, and the namespace it reads. */
typedef struct mem0_alt {
  unsigned char how[E_COUNT];
  char val[E_COUNT][ENTITY_MAX + 1];
  int primary; /* the entity whose namespace is read */
  char ns[NS_CAP];
} mem0_alt;

/* A disjunction of alternatives; a owned (mem0_dnf_free). */
typedef struct mem0_dnf {
  mem0_alt *a;
  size_t n;
} mem0_dnf;

void mem0_dnf_free(mem0_dnf *d);
/* The filter that matches everything: one alternative without
 * constraints. 0 out of memory. */
int mem0_dnf_true(mem0_dnf *d);
/* d = d AND (entity e with constraint how, value v); 0 after a reply. */
int mem0_and_entity(http_req *r, mem0_dnf *d, int e, int how, const char *v);
/* Parses a filter object into *d (which it allocates); 1, or 0 after a
 * reply (d is then empty). depth: 0 for the top level. */
int mem0_parse_filters(http_req *r, json_t *obj, const char *where, mem0_dnf *d,
                       int depth);
/* Gives each alternative its namespace (its first id with a value), sorts
 * them by namespace, and checks that the key may use every one: 1, or 0
 * after a 400 or 403 reply. */
int mem0_plan_build(http_req *r, mem0_dnf *d, const char *where);

/* ------------------------------------------------------ memory as JSON */

/* A memory's metadata split into the caller's part and engram's mem0 ids. */
typedef struct mem0_view {
  json_t *md;              /* the metadata without the reserved key (owned) */
  json_t *ids;             /* the reserved object (owned), or NULL */
  const char *id[E_COUNT]; /* valid while the view and the node are */
  const char *role;
} mem0_view;

/* 0 out of memory; the view is to be freed either way. */
int mem0_view_init(mem0_view *v, const engram_node *n);
void mem0_view_free(mem0_view *v);
/* ms since the epoch as "2024-05-01T12:00:00.000Z" (a new reference). */
json_t *mem0_iso_time(int64_t ms);
json_t *mem0_str_or_null(const char *s);
/* The entity ids of v as user_id, agent_id, app_id, run_id of o. */
void mem0_set_ids(json_t *o, const mem0_view *v);
/* A memory in mem0's shape; with_score: a search result. NULL when out of
 * memory. */
json_t *mem0_memory_json(const engram_node *n, int with_score);
/* The metadata a memory is written with: the caller's object and the
 * reserved mem0 ids. The caller frees the text; NULL out of memory. */
char *mem0_stored_metadata(json_t *user_md, const char *const ids[E_COUNT],
                           const char *role);

#endif
