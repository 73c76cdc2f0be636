/*
 * pg_writer.c — the PostgreSQL backend's writes: a queue of batches on the
 * loop and group commit on the one writer connection, in pipeline mode.
 *
 * write() appends to the queue. Whenever the writer is idle and the queue
 * is not empty, it acquires the writer connection and whole batches (up to
 * batch_max ops, always at least one batch) leave the queue as a group that
 * goes out as ONE pipeline: BEGIN, every op's statements, COMMIT, sync. So
 * one round trip and one WAL flush serve many callers.
 *
 * Inside a pipeline an error aborts everything up to the sync, and a
 * savepoint cannot be rolled back from inside the same pipeline. So the
 * statements are written to fail loudly: every op is one or a few
 * statements (data-modifying CTEs that also write the history row), and a
 * condition the op needs (the memory to update exists in the namespace, the
 * relationship to remove exists) is checked by pg_temp.engram_require(),
 * a three-line plpgsql function that raises no_data_found (P0002) when its
 * argument is false. It is a temporary function, created once per session
 * in a setup exchange of its own before the session's first group: it
 * changes nothing in the database's schema, cannot race with other
 * processes, and goes away with the session. Which op failed is known from
 * the index of the failing command, so every per-op message is written
 * here, like SQLite's.
 *
 * When op k of batch B fails, the server rolls the whole group back: B
 * completes with that op's error and the group's other batches go back to
 * the head of the queue to run as a new group (nothing of them was
 * committed). A serialization failure or deadlock reruns the whole group a
 * few times. A lock held elsewhere for longer than the session's
 * lock_timeout (5 s, set with the helper; SQLite's busy timeout) fails the
 * group with ENGRAM_EBUSY. Callbacks run only after COMMIT answered.
 *
 * Connection loss: a command's error with severity ERROR means the server
 * rolled the group back. Anything else before COMMIT's answer (the exchange
 * ended with ENGRAM_EIO, a FATAL error, an error libpq made up) leaves the
 * outcome unknown: every batch of the group fails with ENGRAM_EIO and says
 * so, and is never retried behind the caller's back. Queued batches stay
 * queued until the pool has a connection again, or fail at once when the
 * pool reports the server unreachable.
 *
 * De-duplication: an ADD with dedup first takes a transaction-scoped
 * advisory lock on (namespace, content hash) in a statement of its own (so
 * the next statement's snapshot sees whatever the previous holder
 * committed), then inserts only when no memory of that namespace has the
 * same content. Two processes adding the same content at once store it once.
 *
 * The change sequence and the vector space (store.h). Locks are taken in
 * one order by every process, so writers of a shared database cannot
 * deadlock on them: first the space lock (a transaction advisory lock,
 * shared when the group writes vectors, exclusive when it switches the
 * space), then, in one statement, the ns_seq row of every namespace the
 * group changes, in name order (bumped once per group: every row the group
 * stamps gets the namespace's new number), then the rows the ops touch.
 * The ns_seq row locks order the writers of a namespace, so sequence order
 * is commit order. An op that writes a vector is preceded by
 * pg_temp.engram_space(SPACE), the second session helper: it records the
 * space when the database has none and raises EG001 (with the recorded
 * space as its message) when it differs.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_internal.h"

#define PG_WRITE_RETRIES 5  /* reruns of a group after transient failures */
#define PG_CMDS_PER_OP 3    /* at most: LINK checks both ends, then upserts */
#define PG_CMDS_PER_GROUP 5 /* ROLLBACK (when needed), BEGIN, the space
                               lock, the ns_seq bump, COMMIT */

/* What a queued command is for: how its result and its error are read. */
typedef enum cmd_role {
  CR_CONTROL, /* ROLLBACK, BEGIN */
  CR_COMMIT,
  CR_LOCK, /* dedup advisory lock */
  CR_ADD,
  CR_ADD_DEDUP, /* returns the id stored or found */
  CR_UPDATE,
  CR_DELETE,
  CR_CHECK_SOURCE, /* LINK: the source is in the namespace */
  CR_CHECK_TARGET,
  CR_LINK,
  CR_UNLINK,
  CR_SPACE,     /* the op's vector is of the database's space */
  CR_SET_SPACE, /* STORE_OP_SET_SPACE */
  CR_SET_VECTOR, /* STORE_OP_SET_VECTOR */
} cmd_role;

struct pg_write_cmd {
  store_batch *b; /* NULL for group commands */
  size_t op;
  cmd_role role;
  int deduplicated;                 /* CR_ADD_DEDUP: found an existing one */
  char found_id[ENGRAM_ID_LEN + 1]; /* CR_ADD_DEDUP: the id it returned */
};

/* ----------------------------------------------------------- statements */

/* Like SQLite's busy timeout: a write that waits longer than this for a
 * lock another session holds fails with ENGRAM_EBUSY. */
static const char lock_timeout_sql[] = "SET lock_timeout = '5s'";

static const char helper_sql[] =
    "CREATE OR REPLACE FUNCTION pg_temp.engram_require(ok boolean)"
    " RETURNS boolean LANGUAGE plpgsql AS $fn$"
    " BEGIN"
    "   IF ok IS NOT TRUE THEN"
    "     RAISE EXCEPTION 'engram: a row this write needs does not exist'"
    "       USING ERRCODE = 'no_data_found';"
    "   END IF;"
    "   RETURN true;"
    " END $fn$";

static const char space_helper_sql[] =
    "CREATE OR REPLACE FUNCTION pg_temp.engram_space(want text)"
    " RETURNS boolean LANGUAGE plpgsql AS $fn$"
    " DECLARE have text;"
    " BEGIN"
    "   INSERT INTO engram_meta(key, value) VALUES ('embedder', want)"
    "     ON CONFLICT (key) DO NOTHING;"
    "   SELECT value INTO have FROM engram_meta WHERE key = 'embedder';"
    "   IF have IS DISTINCT FROM want THEN"
    "     RAISE EXCEPTION '%', have USING ERRCODE = 'EG001';"
    "   END IF;"
    "   RETURN true;"
    " END $fn$";

/* $1 the space ("NAME/DIM"). */
static const pg_stmt stmt_space = {
    "eg_w_space", "SELECT pg_temp.engram_space($1::text)", 1};
static const pg_stmt stmt_set_space = {
    "eg_w_set_space",
    "INSERT INTO engram_meta(key, value) VALUES ('embedder', $1::text)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    1};

/* "engram02": the space lock (see the top). */
#define SPACE_LOCK_KEY "7308604897068083250"
static const char space_lock_shared_sql[] =
    "SELECT pg_advisory_xact_lock_shared(" SPACE_LOCK_KEY ")";
static const char space_lock_sql[] =
    "SELECT pg_advisory_xact_lock(" SPACE_LOCK_KEY ")";

/* $1 the namespaces the group changes (text[]). */
static const pg_stmt stmt_bump = {
    "eg_w_bump",
    "INSERT INTO ns_seq(ns, seq)"
    " SELECT n, 1 FROM (SELECT DISTINCT n FROM unnest($1::text[]) AS n) d"
    " ORDER BY n"
    " ON CONFLICT (ns) DO UPDATE SET seq = ns_seq.seq + 1",
    1};

/* The namespace's ($2 in every statement using it) sequence number, as
 * the group's bump left it. */
#define SEQ_CTE "seq AS (SELECT seq FROM ns_seq WHERE ns = $2::text)"

/* $1 id, $2 ns, $3 vector, $4 dim, $5 embedder, $6 content hash: see
 * STORE_OP_SET_VECTOR (store.h); no row changed is not an error. */
static const pg_stmt stmt_set_vector = {
    "eg_w_set_vector",
    "WITH " SEQ_CTE
    " UPDATE memories SET embedding = $3::bytea, embedding_dim = $4::integer,"
    " embedder = $5::text, vseq = (SELECT seq FROM seq)"
    " WHERE id = $1::uuid AND ns = $2::text AND content_hash = $6::bigint",
    6};

/* $1 ns, $2 content hash. */
static const pg_stmt stmt_lock = {
    "eg_w_lock",
    "SELECT pg_advisory_xact_lock(hashtextextended($1::text, $2::bigint))", 2};

#define ADD_COLUMNS                                                            \
  "memories(id, ns, type, content, content_hash, created_ms, updated_ms,"      \
  " accessed_ms, importance, metadata, embedding, embedding_dim, embedder,"   \
  " vseq)"
#define ADD_VALUES                                                             \
  "$1::uuid, $2::text, $3::smallint, $4::text, $5::bigint, $6::bigint,"        \
  " $6::bigint, $6::bigint, $7::double precision, $8::text, $9::bytea,"        \
  " $10::integer, $11::text, (SELECT seq FROM seq)"
#define ADD_HISTORY                                                            \
  "INSERT INTO history(memory_id, ns, event, old_content, new_content, at_ms)" \
  " SELECT id, ns, 0, NULL, content, created_ms FROM ins"

/* $1 id, $2 ns, $3 type, $4 content, $5 hash, $6 at, $7 importance,
 * $8 metadata, $9 embedding, $10 its dimension, $11 its embedder. */
#define ADD_SQL                                                                \
  "WITH " SEQ_CTE ","                                                          \
  " ins AS (INSERT INTO " ADD_COLUMNS " VALUES (" ADD_VALUES ")"               \
  " RETURNING id, ns, content, created_ms) " ADD_HISTORY
const char pg_writer_add_sql[] = ADD_SQL;
static const pg_stmt stmt_add = {
    "eg_w_add",
    ADD_SQL,
    11};

/* As stmt_add, but a memory of ns with the same content is returned
 * instead (the caller holds the advisory lock of (ns, hash)). */
static const pg_stmt stmt_add_dedup = {
    "eg_w_add_dedup",
    "WITH " SEQ_CTE ","
    " dup AS (SELECT id FROM memories"
    "  WHERE ns = $2::text AND content_hash = $5::bigint"
    "  AND content = $4::text LIMIT 1),"
    " ins AS (INSERT INTO " ADD_COLUMNS " SELECT " ADD_VALUES
    "  WHERE NOT EXISTS (SELECT 1 FROM dup)"
    "  RETURNING id, ns, content, created_ms),"
    " hist AS (" ADD_HISTORY ")"
    " SELECT id::text, false FROM ins UNION ALL SELECT id::text, true FROM dup",
    11};

/* $1 id, $2 ns, then NULL for what stays: $3 content, $4 hash, $5 type,
 * $6 importance, $7 metadata; $8 whether the embedding is set (to $9, NULL:
 * removed, of dimension $10, made by $12); $11 at. The old content is read
 * under a row lock, so the history row holds what this update replaced. */
static const pg_stmt stmt_update = {
    "eg_w_update",
    "WITH " SEQ_CTE ","
    " old AS (SELECT id, content FROM memories"
    "  WHERE id = $1::uuid AND ns = $2::text FOR UPDATE),"
    " upd AS (UPDATE memories m SET"
    "  content = coalesce($3::text, m.content),"
    "  content_hash = coalesce($4::bigint, m.content_hash),"
    "  type = coalesce($5::smallint, m.type),"
    "  importance = coalesce($6::double precision, m.importance),"
    "  metadata = coalesce($7::text, m.metadata),"
    "  embedding = CASE WHEN $8::boolean THEN $9::bytea ELSE m.embedding END,"
    "  embedding_dim = CASE WHEN $8::boolean THEN $10::integer"
    "   ELSE m.embedding_dim END,"
    "  embedder = CASE WHEN $8::boolean THEN $12::text ELSE m.embedder END,"
    "  vseq = (SELECT seq FROM seq),"
    "  updated_ms = $11::bigint"
    "  FROM old WHERE m.id = old.id"
    "  RETURNING m.id, m.ns, old.content AS old_content,"
    "  m.content AS new_content, m.updated_ms),"
    " hist AS (INSERT INTO history(memory_id, ns, event, old_content,"
    "  new_content, at_ms)"
    "  SELECT id, ns, 1, old_content, new_content, updated_ms FROM upd)"
    " SELECT pg_temp.engram_require(EXISTS (SELECT 1 FROM upd))",
    12};

/* $1 id, $2 ns, $3 at: the memory, its relationships both ways, a
 * history row with its last content, and the removed id. */
static const pg_stmt stmt_delete = {
    "eg_w_delete",
    "WITH " SEQ_CTE ","
    " old AS (SELECT id FROM memories"
    "  WHERE id = $1::uuid AND ns = $2::text FOR UPDATE),"
    " rels AS (DELETE FROM relationships r USING old"
    "  WHERE r.source = old.id OR r.target = old.id),"
    " del AS (DELETE FROM memories m USING old WHERE m.id = old.id"
    "  RETURNING m.id, m.ns, m.content),"
    " hist AS (INSERT INTO history(memory_id, ns, event, old_content,"
    "  new_content, at_ms)"
    "  SELECT id, ns, 2, content, NULL, $3::bigint FROM del),"
    " rem AS (INSERT INTO removed(ns, id, seq)"
    "  SELECT ns, id, (SELECT seq FROM seq) FROM del)"
    " SELECT pg_temp.engram_require(EXISTS (SELECT 1 FROM del))",
    3};

/* $1 id, $2 ns. The key-share lock keeps the memory from being deleted by
 * another process before this transaction links it. */
static const pg_stmt stmt_exists = {
    "eg_w_exists",
    "SELECT pg_temp.engram_require(EXISTS (SELECT 1 FROM memories"
    " WHERE id = $1::uuid AND ns = $2::text FOR KEY SHARE))",
    2};

/* $1 ns, $2 source, $3 target, $4 kind, $5 strength, $6 at. */
static const pg_stmt stmt_link = {
    "eg_w_link",
    "INSERT INTO relationships(ns, source, target, kind, strength, created_ms)"
    " VALUES ($1::text, $2::uuid, $3::uuid, $4::text, $5::double precision,"
    " $6::bigint)"
    " ON CONFLICT (source, target, kind) DO UPDATE SET"
    " strength = excluded.strength, created_ms = excluded.created_ms",
    6};

/* $1 source, $2 target, $3 kind, $4 ns. */
static const pg_stmt stmt_unlink = {
    "eg_w_unlink",
    "WITH del AS (DELETE FROM relationships"
    "  WHERE source = $1::uuid AND target = $2::uuid AND kind = $3::text"
    "  AND ns = $4::text RETURNING 1)"
    " SELECT pg_temp.engram_require(EXISTS (SELECT 1 FROM del))",
    4};

/* A message into a fixed buffer; a long server message is cut short. */
static void say(char *dst, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *dst, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, len, fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------- buffers */

/* Reserves, at write() time, what running b (behind unfinished_ops other
 * ops, queued or in the running group) will need, so that starting a group
 * never fails for memory: command slots for the largest group the queue can
 * make, and the text of b's largest embedding. The buffers grow and are kept
 * until the store closes. */
static int reserve(pg_store *st, const store_batch *b) {
  pg_write_group *g = &st->group;
  size_t ops = g->unfinished_ops + b->n;
  if (ops > st->batch_max)
    ops = b->n > st->batch_max ? b->n : st->batch_max;
  size_t cmds = PG_CMDS_PER_GROUP + PG_CMDS_PER_OP * ops;
  if (cmds > g->cmds_cap) {
    size_t cap = g->cmds_cap ? g->cmds_cap * 2 : 64;
    while (cap < cmds)
      cap *= 2;
    pg_write_cmd *grown = realloc(g->cmds, cap * sizeof *grown);
    if (!grown)
      return ENGRAM_ENOMEM;
    g->cmds = grown;
    g->cmds_cap = cap;
  }
  size_t hex = 0;
  for (size_t i = 0; i < b->n; i++)
    if (b->ops[i].embedding && b->ops[i].embedding_dim > 0) {
      size_t need = 3 + (size_t)b->ops[i].embedding_dim * sizeof(float) * 2;
      if (need > hex)
        hex = need;
    }
  if (hex > g->hex_cap) {
    char *grown = realloc(g->hex, hex);
    if (!grown)
      return ENGRAM_ENOMEM;
    g->hex = grown;
    g->hex_cap = hex;
  }
  return 0;
}

/* The buffers go once the store is closing and the writer is idle. */
static void release_buffers(pg_store *st) {
  pg_write_group *g = &st->group;
  if (st->writing || st->queue_head || st->state == PS_OPEN)
    return;
  free(g->cmds);
  free(g->hex);
  g->cmds = NULL;
  g->hex = NULL;
  g->cmds_cap = g->hex_cap = 0;
}

/* The writer may have become idle (nothing queued, nothing running): then
 * the store may close. */
static void became_idle(pg_store *st) {
  if (st->writing || st->queue_head)
    return;
  release_buffers(st);
  pg_maybe_close(st);
}

/* An embedding as bytea text: "\x" and the float32 values, little-endian. */
static const char *embedding_hex(pg_write_group *g, const engram_op *op) {
  static const char digits[] = "0123456789abcdef";
  char *p = g->hex;
  *p++ = '\\';
  *p++ = 'x';
  for (uint32_t i = 0; i < op->embedding_dim; i++) {
    uint32_t bits;
    memcpy(&bits, &op->embedding[i], sizeof bits);
    for (unsigned byte = 0; byte < 4; byte++) {
      unsigned v = (bits >> (8 * byte)) & 0xffu;
      *p++ = digits[v >> 4];
      *p++ = digits[v & 0xfu];
    }
  }
  *p = '\0';
  return g->hex;
}

/* --------------------------------------------------------- queueing ops */

static void add_cmd(pg_write_group *g, store_batch *b, size_t op,
                    cmd_role role) {
  pg_write_cmd *c = &g->cmds[g->ncmds++];
  c->b = b;
  c->op = op;
  c->role = role;
  c->deduplicated = 0;
  c->found_id[0] = '\0';
}

static void queue_sql(pg_write_group *g, const char *sql, cmd_role role) {
  add_cmd(g, NULL, 0, role);
  pg_exchange_sql(g->conn, sql, 0, NULL, NULL);
}

static void queue_stmt(pg_write_group *g, const pg_stmt *stmt,
                       const char *const *values, store_batch *b, size_t op,
                       cmd_role role) {
  add_cmd(g, b, op, role);
  pg_exchange_stmt(g->conn, stmt, values, NULL);
}

static const char *op_embedder(const engram_op *op) {
  return op->embedder ? op->embedder : "client";
}

/* Whether op stamps its namespace's sequence. */
static int stamps(const engram_op *op) {
  return op->kind == ENGRAM_OP_ADD || op->kind == ENGRAM_OP_UPDATE ||
         op->kind == ENGRAM_OP_DELETE || op->kind == STORE_OP_SET_VECTOR;
}


static void queue_add(pg_write_group *g, store_batch *b, size_t i) {
  const engram_op *op = &b->ops[i];
  char type[16], hash[24], at[24], importance[32], dim[16];
  snprintf(type, sizeof type, "%d", (int)op->type);
  snprintf(hash, sizeof hash, "%" PRId64, (int64_t)b->content_hash[i]);
  snprintf(at, sizeof at, "%" PRId64, b->at_ms);
  snprintf(importance, sizeof importance, "%.17g",
           (op->set & ENGRAM_SET_IMPORTANCE) ? op->importance : 0.5);
  int has_embedding = op->embedding && op->embedding_dim > 0;
  snprintf(dim, sizeof dim, "%u", has_embedding ? op->embedding_dim : 0u);
  if (op->dedup) {
    const char *lock[2] = {op->ns, hash};
    queue_stmt(g, &stmt_lock, lock, b, i, CR_LOCK);
  }
  const char *values[11] = {op->result_id,
                            op->ns,
                            type,
                            op->content,
                            hash,
                            at,
                            importance,
                            op->metadata ? op->metadata : "{}",
                            has_embedding ? embedding_hex(g, op) : NULL,
                            dim,
                            has_embedding ? op_embedder(op) : NULL};
  if (op->dedup)
    queue_stmt(g, &stmt_add_dedup, values, b, i, CR_ADD_DEDUP);
  else
    queue_stmt(g, &stmt_add, values, b, i, CR_ADD);
}

static void queue_update(pg_write_group *g, store_batch *b, size_t i) {
  const engram_op *op = &b->ops[i];
  unsigned set = op->set;
  char hash[24], type[16], importance[32], dim[16], at[24];
  snprintf(hash, sizeof hash, "%" PRId64, (int64_t)b->content_hash[i]);
  snprintf(type, sizeof type, "%d", (int)op->type);
  snprintf(importance, sizeof importance, "%.17g", op->importance);
  int has_embedding = op->embedding && op->embedding_dim > 0;
  snprintf(dim, sizeof dim, "%u", has_embedding ? op->embedding_dim : 0u);
  snprintf(at, sizeof at, "%" PRId64, b->at_ms);
  const char *values[12] = {
      op->id,
      op->ns,
      (set & ENGRAM_SET_CONTENT) ? op->content : NULL,
      (set & ENGRAM_SET_CONTENT) ? hash : NULL,
      (set & ENGRAM_SET_TYPE) ? type : NULL,
      (set & ENGRAM_SET_IMPORTANCE) ? importance : NULL,
      (set & ENGRAM_SET_METADATA) ? (op->metadata ? op->metadata : "{}") : NULL,
      (set & ENGRAM_SET_EMBEDDING) ? "true" : "false",
      (set & ENGRAM_SET_EMBEDDING) && has_embedding ? embedding_hex(g, op)
                                                    : NULL,
      dim,
      at,
      (set & ENGRAM_SET_EMBEDDING) && has_embedding ? op_embedder(op) : NULL};
  queue_stmt(g, &stmt_update, values, b, i, CR_UPDATE);
}

/* An op that writes a vector checks its space first (see the top). */
static void queue_space_check(pg_write_group *g, store_batch *b, size_t i) {
  const engram_op *op = &b->ops[i];
  if (!store_op_writes_vector(op))
    return;
  char space[STORE_SPACE_LEN]; /* sent at once, like every value */
  if (store_space_format(space, op_embedder(op), op->embedding_dim) != 0)
    space[0] = '\0'; /* refused by the server: not a space */
  const char *values[1] = {space};
  queue_stmt(g, &stmt_space, values, b, i, CR_SPACE);
}

static void queue_op(pg_write_group *g, store_batch *b, size_t i) {
  const engram_op *op = &b->ops[i];
  char at[24];
  snprintf(at, sizeof at, "%" PRId64, b->at_ms);
  queue_space_check(g, b, i);
  switch ((int)op->kind) { /* STORE_OP_SET_SPACE is not in the enum */
  case ENGRAM_OP_ADD:
    queue_add(g, b, i);
    break;
  case ENGRAM_OP_UPDATE:
    queue_update(g, b, i);
    break;
  case ENGRAM_OP_DELETE: {
    const char *values[3] = {op->id, op->ns, at};
    queue_stmt(g, &stmt_delete, values, b, i, CR_DELETE);
    break;
  }
  case ENGRAM_OP_LINK: {
    char strength[32];
    snprintf(strength, sizeof strength, "%.17g", op->strength);
    const char *source[2] = {op->source, op->ns};
    const char *target[2] = {op->target, op->ns};
    const char *values[6] = {op->ns,       op->source, op->target,
                             op->rel_kind, strength,   at};
    queue_stmt(g, &stmt_exists, source, b, i, CR_CHECK_SOURCE);
    queue_stmt(g, &stmt_exists, target, b, i, CR_CHECK_TARGET);
    queue_stmt(g, &stmt_link, values, b, i, CR_LINK);
    break;
  }
  case ENGRAM_OP_UNLINK: {
    const char *values[4] = {op->source, op->target, op->rel_kind, op->ns};
    queue_stmt(g, &stmt_unlink, values, b, i, CR_UNLINK);
    break;
  }
  case STORE_OP_SET_VECTOR: {
    char dim[16], hash[24];
    snprintf(dim, sizeof dim, "%u", op->embedding_dim);
    snprintf(hash, sizeof hash, "%" PRId64, (int64_t)b->content_hash[i]);
    const char *values[6] = {op->id, op->ns, embedding_hex(g, op), dim,
                             op_embedder(op), hash};
    queue_stmt(g, &stmt_set_vector, values, b, i, CR_SET_VECTOR);
    break;
  }
  case STORE_OP_SET_SPACE: {
    char space[STORE_SPACE_LEN];
    if (store_space_format(space, op->embedder, op->embedding_dim) != 0)
      space[0] = '\0';
    const char *values[1] = {space};
    queue_stmt(g, &stmt_set_space, values, b, i, CR_SET_SPACE);
    break;
  }
  }
}

/* ------------------------------------------------------------- outcomes */

static void fail_all(store_batch *list, int code, const char *why) {
  for (store_batch *b = list; b; b = b->next) {
    for (size_t i = 0; i < b->n; i++)
      b->ops[i].status = 0;
    store_batch_fail(b, code, why);
  }
}

/* Puts list back at the head of the queue, in its order. */
static void requeue(pg_store *st, store_batch *list) {
  if (!list)
    return;
  store_batch *tail = list;
  while (tail->next)
    tail = tail->next;
  tail->next = st->queue_head;
  st->queue_head = list;
  if (!st->queue_tail)
    st->queue_tail = tail;
}

static void call_back(pg_store *st, store_batch *list) {
  while (list) {
    store_batch *next = list->next;
    list->next = NULL;
    st->group.unfinished_ops -= list->n;
    list->done(list); /* may free list */
    list = next;
  }
}

/* The failed op's code and message, from the failing command's role and
 * SQLSTATE. Returns 0 when the failure is not the op's own (the caller
 * then treats it as the group's). */
static int op_failure(pg_write_group *g, const pg_write_cmd *c) {
  engram_op *op = &c->b->ops[c->op];
  const char *state = g->failed_state;
  size_t n = sizeof op->message;
  if (strcmp(state, "P0002") == 0) {
    switch (c->role) {
    case CR_UPDATE:
    case CR_DELETE:
      snprintf(op->message, n, "no memory %s in namespace \"%s\"", op->id,
               op->ns);
      return ENGRAM_ENOTFOUND;
    case CR_CHECK_SOURCE:
    case CR_CHECK_TARGET:
      snprintf(op->message, n, "the %s memory %s is not in namespace \"%s\"",
               c->role == CR_CHECK_SOURCE ? "source" : "target",
               c->role == CR_CHECK_SOURCE ? op->source : op->target, op->ns);
      return ENGRAM_ENOTFOUND;
    case CR_UNLINK:
      snprintf(op->message, n,
               "no \"%s\" relationship from %s to %s in namespace \"%s\"",
               op->rel_kind, op->source, op->target, op->ns);
      return ENGRAM_ENOTFOUND;
    default:
      return 0;
    }
  }
  if (strcmp(state, "EG001") == 0 && c->role == CR_SPACE) {
    char wanted[STORE_SPACE_LEN];
    if (store_space_format(wanted, op_embedder(op), op->embedding_dim) != 0)
      snprintf(wanted, sizeof wanted, "an unnamed embedder");
    return store_space_mismatch(op, g->failed_msg, wanted);
  }
  if (strcmp(state, "23505") == 0 &&
      (c->role == CR_ADD || c->role == CR_ADD_DEDUP)) {
    snprintf(op->message, n, "a memory with id %s already exists",
             op->result_id);
    return ENGRAM_EEXIST;
  }
  if (strcmp(state, "23503") == 0 && c->role == CR_LINK) {
    snprintf(op->message, n,
             "the source or target memory of op %zu no longer exists", c->op);
    return ENGRAM_ENOTFOUND;
  }
  if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0) {
    say(op->message, n, "op %zu was refused by PostgreSQL: %s", c->op,
        g->failed_msg);
    return ENGRAM_EINVAL;
  }
  if (strncmp(state, "54", 2) == 0) {
    say(op->message, n, "op %zu is too large for PostgreSQL: %s", c->op,
        g->failed_msg);
    return ENGRAM_ETOOBIG;
  }
  return 0;
}

static int transient(const char *state) {
  return strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0;
}

/* The group committed: every batch succeeded. */
static store_batch *group_committed(pg_store *st, store_batch *list) {
  pg_write_group *g = &st->group;
  uint64_t ops = 0;
  for (store_batch *b = list; b; b = b->next) {
    b->status = 0;
    ops += b->n;
  }
  for (size_t k = 0; k < g->ncmds; k++) {
    const pg_write_cmd *c = &g->cmds[k];
    if (c->role != CR_ADD_DEDUP || !c->found_id[0])
      continue;
    engram_op *op = &c->b->ops[c->op];
    memcpy(op->result_id, c->found_id, ENGRAM_ID_LEN + 1);
    op->deduplicated = c->deduplicated;
  }
  /* Every vector committed was of the recorded space, and a switch set
   * it: the last of them is the space now. */
  for (size_t k = 0; k < g->ncmds; k++) {
    const pg_write_cmd *c = &g->cmds[k];
    if (c->role != CR_SPACE && c->role != CR_SET_SPACE)
      continue;
    const engram_op *op = &c->b->ops[c->op];
    store_space_format(st->head.space, op_embedder(op), op->embedding_dim);
  }
  store_count_group(&st->head, ops);
  g->retries = 0;
  return list;
}

/* The server rolled the group back at command g->failed_cmd. Returns the
 * batches that are finished; the others are queued again. */
static store_batch *group_rolled_back(pg_store *st, store_batch *list) {
  pg_write_group *g = &st->group;
  const pg_write_cmd *c =
      g->failed_cmd < g->ncmds ? &g->cmds[g->failed_cmd] : NULL;
  char why[PG_MSG_LEN + 64];
  int missing_helper = strcmp(g->failed_state, "42883") == 0 &&
                       strstr(g->failed_msg, "pg_temp.engram_") != NULL;
  if (transient(g->failed_state) || missing_helper) {
    if (missing_helper)
      g->helper_pg = NULL; /* created again before the rerun */
    if (++g->retries <= PG_WRITE_RETRIES) {
      requeue(st, list);
      return NULL;
    }
    say(why, sizeof why,
        "the write failed %u times in a row against concurrent writers "
        "(%s); try again",
        g->retries, g->failed_msg);
    g->retries = 0;
    fail_all(list, ENGRAM_EBUSY, why);
    return list;
  }
  g->retries = 0;
  int code = c && c->b ? op_failure(g, c) : 0;
  if (code != 0) {
    /* The op's own failure: its batch is done, the others run again. */
    store_batch *failed = c->b, *others = NULL, **tail = &others;
    for (store_batch *b = list, *next; b; b = next) {
      next = b->next;
      b->next = NULL;
      if (b != failed) {
        *tail = b;
        tail = &b->next;
      }
    }
    for (size_t i = 0; i < failed->n; i++)
      failed->ops[i].status = 0;
    failed->ops[c->op].status = code;
    store_batch_fail(failed, code, "");
    requeue(st, others);
    return failed;
  }
  /* The group's failure (a full disk, a bug, a schema that is not ours):
   * no batch of it is written. */
  code = ENGRAM_EIO;
  if (strcmp(g->failed_state, "57014") == 0)
    code = ENGRAM_ECANCELED;
  if (strcmp(g->failed_state, "55P03") == 0) {
    say(why, sizeof why,
        "PostgreSQL at %s: the write waited more than 5 s for a lock that "
        "another session holds (%s); try again when it is done",
        st->server, g->failed_msg);
    fail_all(list, ENGRAM_EBUSY, why);
    return list;
  }
  say(why, sizeof why, "PostgreSQL at %s refused the write: %s", st->server,
      g->failed_msg);
  fail_all(list, code, why);
  return list;
}

/* ------------------------------------------------------------ the group */

static void group_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  pg_store *st = ex->data;
  pg_write_group *g = &st->group;
  if (cmd >= g->ncmds || !res)
    return;
  pg_write_cmd *c = &g->cmds[cmd];
  ExecStatusType status = PQresultStatus(res);
  if (status == PGRES_PIPELINE_ABORTED || status == PGRES_PIPELINE_SYNC)
    return;
  if (pg_result_ok(res)) {
    if (c->role == CR_COMMIT && strcmp(PQcmdStatus(res), "COMMIT") == 0)
      g->committed = 1;
    if (c->role == CR_ADD_DEDUP && PQntuples(res) == 1 &&
        (size_t)PQgetlength(res, 0, 0) == ENGRAM_ID_LEN) {
      memcpy(c->found_id, PQgetvalue(res, 0, 0), ENGRAM_ID_LEN + 1);
      c->deduplicated = PQgetvalue(res, 0, 1)[0] == 't';
    }
    return;
  }
  if (g->failed)
    return; /* the first failure is the one that counts */
  g->failed = 1;
  g->failed_cmd = cmd;
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  snprintf(g->failed_state, sizeof g->failed_state, "%s", state ? state : "");
  /* Only an ERROR is the server's word that it rolled back. FATAL ends the
   * session (maybe after the commit was done); an error without severity
   * is libpq's own report of a broken connection. */
  g->failed_by_server = severity && strcmp(severity, "ERROR") == 0;
  if (!primary)
    primary = PQresultErrorMessage(res);
  snprintf(g->failed_msg, sizeof g->failed_msg, "%s",
           primary && *primary ? primary : "no message");
  size_t len = strlen(g->failed_msg);
  while (len > 0 && g->failed_msg[len - 1] == '\n')
    g->failed_msg[--len] = '\0';
}

static void group_done(pg_exchange *ex, int status, const char *msg) {
  pg_store *st = ex->data;
  pg_write_group *g = &st->group;
  store_batch *list = g->batches, *finished;
  g->batches = NULL;
  pg_conn *c = g->conn;
  g->conn = NULL;
  pg_pool_release(&st->writer, c);
  st->writing = 0;

  if (g->committed) {
    finished = group_committed(st, list);
  } else if (g->failed && g->failed_by_server) {
    finished = group_rolled_back(st, list);
  } else {
    char why[PG_MSG_LEN * 2 + 160];
    const char *reason = g->failed            ? g->failed_msg
                         : status != 0 && msg ? msg
                                              : "the commit was not confirmed";
    /* pg_conn's message names the server again: keep its reason only. */
    const char *named = strstr(reason, st->addr);
    if (strncmp(reason, "PostgreSQL at ", 14) == 0 && named &&
        strncmp(named + strlen(st->addr), ": ", 2) == 0)
      reason = named + strlen(st->addr) + 2;
    say(why, sizeof why,
        "lost the connection to PostgreSQL at %s during the commit: the "
        "batch may or may not have been applied (%s)",
        st->server, reason);
    g->retries = 0;
    fail_all(list, ENGRAM_EIO, why);
    finished = list;
  }
  /* The next group starts before these callbacks run: they may be slow,
   * and the writer need not wait for them. */
  pg_writer_kick(st);
  call_back(st, finished);
  became_idle(st);
}

/* An element of a text[] literal: quoted, '"' and '\' escaped. */
static char *put_array_elem(char *p, const char *s) {
  *p++ = '"';
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      *p++ = '\\';
    *p++ = *s;
  }
  *p++ = '"';
  return p;
}

/* The group's locks, in the order of the top comment. The namespaces'
 * literal is sent at once (libpq copies it), so it lives on the heap only
 * for this call; without memory for it, a statement that raises fails the
 * group instead (a group must never stamp rows without its bump). */
static void queue_locks(pg_write_group *g) {
  int switches = 0, vectors = 0;
  size_t bytes = 3, n = 0;
  for (store_batch *b = g->batches; b; b = b->next)
    for (size_t i = 0; i < b->n; i++) {
      const engram_op *op = &b->ops[i];
      switches |= op->kind == STORE_OP_SET_SPACE;
      vectors |= store_op_writes_vector(op);
      if (stamps(op)) {
        bytes += 2 * strlen(op->ns) + 3;
        n++;
      }
    }
  if (switches)
    queue_sql(g, space_lock_sql, CR_CONTROL);
  else if (vectors)
    queue_sql(g, space_lock_shared_sql, CR_CONTROL);
  if (n == 0)
    return;
  char *list = malloc(bytes);
  if (!list) {
    queue_sql(g,
              "DO $$BEGIN RAISE EXCEPTION 'engram: out of memory building "
              "the write'; END$$",
              CR_CONTROL);
    return;
  }
  char *p = list;
  *p++ = '{';
  for (store_batch *b = g->batches; b; b = b->next)
    for (size_t i = 0; i < b->n; i++)
      if (stamps(&b->ops[i])) {
        if (p > list + 1)
          *p++ = ',';
        p = put_array_elem(p, b->ops[i].ns);
      }
  *p++ = '}';
  *p = '\0';
  const char *values[1] = {list};
  add_cmd(g, NULL, 0, CR_CONTROL);
  pg_exchange_stmt(g->conn, &stmt_bump, values, NULL);
  free(list);
}

/* Sends the group: BEGIN, the locks, every op of every batch, COMMIT,
 * sync. */
static void send_group(pg_store *st) {
  pg_write_group *g = &st->group;
  g->ncmds = 0;
  g->committed = 0;
  g->failed = 0;
  g->failed_by_server = 0;
  g->failed_state[0] = '\0';
  g->failed_msg[0] = '\0';
  g->ex.result = group_result;
  g->ex.done = group_done;
  g->ex.data = st;
  pg_exchange_begin(g->conn, &g->ex);
  if (PQtransactionStatus(pg_conn_pg(g->conn)) != PQTRANS_IDLE)
    queue_sql(g, "ROLLBACK", CR_CONTROL);
  queue_sql(g, "BEGIN", CR_CONTROL);
  queue_locks(g);
  for (store_batch *b = g->batches; b; b = b->next)
    for (size_t i = 0; i < b->n; i++)
      queue_op(g, b, i);
  queue_sql(g, "COMMIT", CR_COMMIT);
  pg_exchange_end(g->conn);
}

/* Takes the next group from the queue. */
static void take_group(pg_store *st) {
  pg_write_group *g = &st->group;
  store_batch *last = st->queue_head;
  size_t ops = last->n;
  while (last->next && ops + last->next->n <= st->batch_max) {
    last = last->next;
    ops += last->n;
  }
  g->batches = st->queue_head;
  st->queue_head = last->next;
  if (!st->queue_head)
    st->queue_tail = NULL;
  last->next = NULL;
  for (store_batch *b = g->batches; b; b = b->next) {
    b->status = 0;
    for (size_t i = 0; i < b->n; i++) {
      b->ops[i].status = 0;
      b->ops[i].deduplicated = 0;
      b->ops[i].message[0] = '\0';
    }
  }
}

/* Gives the connection back with the group unsent: it goes back to the
 * head of the queue, which then waits for a connection or fails. */
static void give_back(pg_store *st, int fail, int status, const char *why) {
  pg_write_group *g = &st->group;
  pg_conn *c = g->conn;
  g->conn = NULL;
  requeue(st, g->batches);
  g->batches = NULL;
  pg_pool_release(&st->writer, c);
  st->writing = 0;
  if (fail)
    pg_writer_fail_queued(st, status, why);
  else
    pg_writer_kick(st);
  became_idle(st);
}

static void helper_result(pg_exchange *ex, unsigned cmd, PGresult *res) {
  pg_store *st = ex->data;
  pg_write_group *g = &st->group;
  (void)cmd;
  if (!res || pg_result_ok(res) || g->failed)
    return;
  g->failed = 1;
  const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  g->failed_by_server = severity && strcmp(severity, "ERROR") == 0;
  pg_result_fail(res, "cannot create the writer's helper function",
                 g->failed_msg, sizeof g->failed_msg);
}

static void helper_done(pg_exchange *ex, int status, const char *msg) {
  pg_store *st = ex->data;
  pg_write_group *g = &st->group;
  if (status == 0 && !g->failed) {
    PGconn *pg = pg_conn_pg(g->conn);
    g->helper_pg = pg;
    g->helper_pid = PQbackendPID(pg);
    send_group(st);
    return;
  }
  if (g->failed && g->failed_by_server) {
    /* The server refuses (no TEMP privilege...): no write can work. */
    char why[PG_MSG_LEN + 64];
    say(why, sizeof why, "PostgreSQL at %s: %s", st->server, g->failed_msg);
    give_back(st, 1, ENGRAM_EIO, why);
    return;
  }
  (void)msg; /* the connection broke: nothing was sent, the queue waits */
  give_back(st, 0, 0, NULL);
}

/* The writer connection is ours: the group is what is queued now; the
 * session is set up first if it is new. */
static void start(pg_store *st, pg_conn *c) {
  pg_write_group *g = &st->group;
  g->conn = c;
  if (!st->queue_head) {
    give_back(st, 0, 0, NULL);
    return;
  }
  take_group(st);
  PGconn *pg = pg_conn_pg(c);
  if (g->helper_pg == pg && g->helper_pid == PQbackendPID(pg)) {
    send_group(st);
    return;
  }
  g->ncmds = 0;
  g->failed = 0;
  g->failed_by_server = 0;
  g->ex.result = helper_result;
  g->ex.done = helper_done;
  g->ex.data = st;
  pg_exchange_begin(c, &g->ex);
  pg_exchange_sql(c, helper_sql, 0, NULL, NULL);
  pg_exchange_sql(c, space_helper_sql, 0, NULL, NULL);
  pg_exchange_sql(c, lock_timeout_sql, 0, NULL, NULL);
  pg_exchange_end(c);
}

static void granted(pg_wait *w, pg_conn *c, int status, const char *msg) {
  pg_store *st = PG_CONTAINER(w, pg_store, group.wait);
  if (status != 0) {
    st->writing = 0;
    pg_writer_fail_queued(st, status, msg ? msg : pg_pool_error(&st->writer));
    became_idle(st);
    return;
  }
  start(st, c);
}

/* Acquires the writer connection (st->writing from now on). */
static int acquire(pg_store *st) {
  pg_conn *now = NULL;
  st->writing = 1;
  int rc = pg_pool_acquire(&st->writer, &st->group.wait, granted, &now);
  if (rc != 0) {
    st->writing = 0;
    return rc;
  }
  if (now)
    start(st, now);
  return 0;
}

/* ----------------------------------------------------------------- API */

void pg_writer_kick(pg_store *st) {
  if (st->writing || !st->queue_head) {
    release_buffers(st); /* the store's close kicks an idle writer */
    return;
  }
  if (st->state != PS_OPEN && st->state != PS_CLOSING)
    return;
  int rc = acquire(st);
  if (rc != 0) {
    const char *why = rc == ENGRAM_ECLOSED ? "the store is closing"
                                           : pg_pool_error(&st->writer);
    pg_writer_fail_queued(st, rc, why);
  }
}

void pg_writer_fail_queued(pg_store *st, int status, const char *msg) {
  store_batch *list = st->queue_head;
  if (!list)
    return;
  st->queue_head = st->queue_tail = NULL;
  fail_all(list, status, msg ? msg : "");
  call_back(st, list);
  became_idle(st);
}

int pg_writer_write(store *base, store_batch *b) {
  pg_store *st = (pg_store *)base;
  if (st->state != PS_OPEN)
    return ENGRAM_ECLOSED;
  if (!b || b->n == 0 || !b->ops || !b->done)
    return ENGRAM_EINVAL;
  for (size_t i = 0; i < b->n; i++)
    if ((unsigned)b->ops[i].kind > ENGRAM_OP_UNLINK &&
        b->ops[i].kind != STORE_OP_SET_SPACE &&
        b->ops[i].kind != STORE_OP_SET_VECTOR) {
      snprintf(b->ops[i].message, sizeof b->ops[i].message,
               "unknown operation kind %d", (int)b->ops[i].kind);
      return b->ops[i].status = ENGRAM_EINVAL;
    }
  int rc = reserve(st, b);
  if (rc != 0)
    return rc;
  b->status = 0;
  b->next = NULL;
  store_batch *prev_tail = st->queue_tail;
  if (prev_tail)
    prev_tail->next = b;
  else
    st->queue_head = b;
  st->queue_tail = b;
  st->group.unfinished_ops += b->n;
  if (st->writing)
    return 0;
  rc = acquire(st);
  if (rc != 0) {
    /* The server is unreachable: say so now rather than call back from
     * inside write(). */
    st->queue_tail = prev_tail;
    if (prev_tail)
      prev_tail->next = NULL;
    else
      st->queue_head = NULL;
    st->group.unfinished_ops -= b->n;
    became_idle(st);
    /* For a caller that reports the ops' messages. */
    store_batch_fail(b, rc, pg_pool_error(&st->writer));
  }
  return rc;
}
