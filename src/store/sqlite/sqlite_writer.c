/*
 * sqlite_writer.c — the single writer: a queue of batches on the loop and
 * group commit on the thread pool.
 *
 * write() only appends to the queue. Whenever the writer is idle and the
 * queue is not empty, whole batches (up to write_batch_max ops, and always
 * at least one batch) leave the queue as a group and run in ONE
 * transaction on the thread pool: BEGIN IMMEDIATE, then each batch inside
 * its own SAVEPOINT, so a batch that fails is rolled back alone while the
 * others go on, then COMMIT. One fsync (durability full) or one WAL append
 * (normal) thus serves many callers. While a group runs, new batches wait
 * in the queue for the next one.
 *
 * A batch's done callback runs on the loop only after COMMIT returned, so
 * an acknowledged write is durable at the configured level; if COMMIT (or
 * the transaction) fails, every batch of the group fails with the storage
 * error. The writer's statements are prepared once and kept on the writer
 * connection, which only the one running group ever touches.
 *
 * Every ADD, UPDATE and DELETE advances its namespace's change sequence
 * and stamps the row with it (or records the removed id), and every vector
 * written is checked against the database's vector space, read again at
 * the start of each batch: see store.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_internal.h"

static const char *const writer_sql[WS_COUNT] = {
    [WS_FIND_DUP] = "SELECT id FROM memories"
                    " WHERE ns = ?1 AND content_hash = ?2 AND content = ?3"
                    " LIMIT 1",
    [WS_INSERT] = "INSERT INTO memories(id, ns, type, content, content_hash,"
                  " created_ms, updated_ms, accessed_ms, importance, metadata,"
                  " embedding, embedding_dim, embedder, vseq)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8, ?9, ?10,"
                  " ?11, (SELECT seq FROM ns_seq WHERE ns = ?2))",
    [WS_FIND_FOR_CHANGE] = "SELECT rowid, content FROM memories"
                           " WHERE id = ?1 AND ns = ?2",
    /* NULL leaves a column as it is; ?7 says whether the embedding is set
     * (to ?8, which may be NULL: removed). */
    [WS_UPDATE] =
        "UPDATE memories SET content = coalesce(?2, content),"
        " content_hash = coalesce(?3, content_hash),"
        " type = coalesce(?4, type),"
        " importance = coalesce(?5, importance),"
        " metadata = coalesce(?6, metadata),"
        " embedding = CASE WHEN ?7 THEN ?8 ELSE embedding END,"
        " embedding_dim = CASE WHEN ?7 THEN ?9 ELSE embedding_dim END,"
        " embedder = CASE WHEN ?7 THEN ?11 ELSE embedder END,"
        " vseq = (SELECT seq FROM ns_seq WHERE ns = ?12),"
        " updated_ms = ?10 WHERE rowid = ?1",
    [WS_DELETE] = "DELETE FROM memories WHERE rowid = ?1",
    [WS_DELETE_RELS_SOURCE] = "DELETE FROM relationships WHERE source = ?1",
    [WS_DELETE_RELS_TARGET] = "DELETE FROM relationships WHERE target = ?1",
    [WS_HISTORY] = "INSERT INTO history(memory_id, ns, event, old_content,"
                   " new_content, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [WS_EXISTS] = "SELECT 1 FROM memories WHERE id = ?1 AND ns = ?2",
    [WS_LINK] =
        "INSERT INTO relationships(ns, source, target, kind, strength,"
        " created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT(source, target, kind) DO UPDATE SET"
        " strength = excluded.strength, created_ms = excluded.created_ms",
    [WS_UNLINK] =
        "DELETE FROM relationships"
        " WHERE source = ?1 AND target = ?2 AND kind = ?3 AND ns = ?4",
    [WS_BUMP_SEQ] = "INSERT INTO ns_seq(ns, seq) VALUES (?1, 1)"
                    " ON CONFLICT(ns) DO UPDATE SET seq = seq + 1",
    [WS_REMOVED] = "INSERT INTO removed(ns, id, seq)"
                   " VALUES (?1, ?2, (SELECT seq FROM ns_seq WHERE ns = ?1))",
    /* ?1 id, ?2 ns, ?3 vector, ?4 dim, ?5 embedder, ?6 content hash */
    [WS_SET_VECTOR] = "UPDATE memories SET embedding = ?3, embedding_dim = ?4,"
                      " embedder = ?5,"
                      " vseq = (SELECT seq FROM ns_seq WHERE ns = ?2)"
                      " WHERE id = ?1 AND ns = ?2 AND content_hash = ?6",
    [WS_GET_SPACE] = "SELECT value FROM engram_meta WHERE key = 'embedder'",
    [WS_SET_SPACE] = "INSERT INTO engram_meta(key, value)"
                     " VALUES ('embedder', ?1)"
                     " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

/* ------------------------------------------------------- thread-pool side */

static sqlite3_stmt *wstmt(sqlite_store *st, writer_stmt_kind kind, int *rc) {
  if (!st->wstmt[kind]) {
    *rc = sqlite3_prepare_v3(st->writer, writer_sql[kind], -1,
                             SQLITE_PREPARE_PERSISTENT, &st->wstmt[kind], NULL);
    if (*rc != SQLITE_OK) {
      sqlite3_finalize(st->wstmt[kind]);
      st->wstmt[kind] = NULL;
      return NULL;
    }
  }
  *rc = SQLITE_OK;
  return st->wstmt[kind];
}

void sqlite_writer_finalize(sqlite_store *st) {
  for (int k = 0; k < WS_COUNT; k++) {
    sqlite3_finalize(st->wstmt[k]);
    st->wstmt[k] = NULL;
  }
}

static void bind_str(sqlite3_stmt *stmt, int i, const char *s) {
  if (s)
    sqlite3_bind_text64(stmt, i, s, strlen(s), SQLITE_STATIC, SQLITE_UTF8);
  else
    sqlite3_bind_null(stmt, i);
}

static size_t content_len(const engram_op *op) {
  return op->content_len ? op->content_len : strlen(op->content);
}

static void bind_content(sqlite3_stmt *stmt, int i, const engram_op *op) {
  sqlite3_bind_text64(stmt, i, op->content, content_len(op), SQLITE_STATIC,
                      SQLITE_UTF8);
}

/* The vector, its dimension and its embedder's name, at blob, blob + 1
 * and name. */
static void bind_embedding(sqlite3_stmt *stmt, int blob, int name,
                           const engram_op *op) {
  if (op->embedding && op->embedding_dim > 0) {
    sqlite3_bind_blob64(stmt, blob, op->embedding,
                        (sqlite3_uint64)op->embedding_dim * sizeof(float),
                        SQLITE_STATIC);
    sqlite3_bind_int64(stmt, blob + 1, (sqlite3_int64)op->embedding_dim);
    bind_str(stmt, name, op->embedder ? op->embedder : "client");
  } else {
    sqlite3_bind_null(stmt, blob);
    sqlite3_bind_int64(stmt, blob + 1, 0);
    sqlite3_bind_null(stmt, name);
  }
}

/* Runs a statement that returns no row we need; resets it. */
static int run(sqlite3_stmt *stmt) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* What one op needs to know about the batch it belongs to. */
typedef struct op_ctx {
  sqlite_store *st;
  store_batch *b;
  size_t index;
  engram_op *op;
} op_ctx;

static int storage_error(op_ctx *c, int rc) {
  char what[64];
  snprintf(what, sizeof what, "storage error in op %zu", c->index);
  return sqlite_fail(c->st->writer, rc, what, c->op->message,
                     sizeof c->op->message);
}

/* Advances op's namespace's change sequence: the row the op writes is
 * stamped with the new value (store.h). */
static int bump_seq(op_ctx *c) {
  int rc;
  sqlite3_stmt *q = wstmt(c->st, WS_BUMP_SEQ, &rc);
  if (!q)
    return storage_error(c, rc);
  bind_str(q, 1, c->op->ns);
  rc = run(q);
  return rc == SQLITE_OK ? 0 : storage_error(c, rc);
}

/* The database's vector space into st->wspace (at the start of a batch:
 * a batch rolled back may have set it). */
static int load_space(sqlite_store *st, char *msg, size_t msglen) {
  int rc;
  st->wspace[0] = '\0';
  sqlite3_stmt *q = wstmt(st, WS_GET_SPACE, &rc);
  if (!q)
    return sqlite_fail(st->writer, rc, "reading the embedder", msg, msglen);
  rc = sqlite3_step(q);
  if (rc == SQLITE_ROW) {
    const char *v = (const char *)sqlite3_column_text(q, 0);
    snprintf(st->wspace, sizeof st->wspace, "%s", v ? v : "");
  }
  sqlite3_reset(q);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return 0;
  return sqlite_fail(st->writer, rc, "reading the embedder", msg, msglen);
}

static int save_space(op_ctx *c, const char *space) {
  int rc;
  sqlite3_stmt *q = wstmt(c->st, WS_SET_SPACE, &rc);
  if (!q)
    return storage_error(c, rc);
  bind_str(q, 1, space);
  rc = run(q);
  if (rc != SQLITE_OK)
    return storage_error(c, rc);
  snprintf(c->st->wspace, sizeof c->st->wspace, "%s", space);
  return 0;
}

/* A vector the op writes must be of the database's space; the first
 * vector of a database sets it. */
static int check_space(op_ctx *c) {
  engram_op *op = c->op;
  if (!store_op_writes_vector(op))
    return 0;
  char space[STORE_SPACE_LEN];
  if (store_space_format(space, op->embedder ? op->embedder : "client",
                         op->embedding_dim) != 0) {
    snprintf(op->message, sizeof op->message, "embedder name is too long");
    return ENGRAM_EINVAL;
  }
  if (c->st->wspace[0] == '\0')
    return save_space(c, space);
  if (strcmp(space, c->st->wspace) == 0)
    return 0;
  return store_space_mismatch(op, c->st->wspace, space);
}

static int add_history(op_ctx *c, const char *id, engram_event event,
                       const char *old_content, size_t old_len,
                       const char *new_content, size_t new_len) {
  int rc;
  sqlite3_stmt *h = wstmt(c->st, WS_HISTORY, &rc);
  if (!h)
    return storage_error(c, rc);
  bind_str(h, 1, id);
  bind_str(h, 2, c->op->ns);
  sqlite3_bind_int(h, 3, (int)event);
  if (old_content)
    sqlite3_bind_text64(h, 4, old_content, old_len, SQLITE_STATIC, SQLITE_UTF8);
  else
    sqlite3_bind_null(h, 4);
  if (new_content)
    sqlite3_bind_text64(h, 5, new_content, new_len, SQLITE_STATIC, SQLITE_UTF8);
  else
    sqlite3_bind_null(h, 5);
  sqlite3_bind_int64(h, 6, c->b->at_ms);
  rc = run(h);
  return rc == SQLITE_OK ? 0 : storage_error(c, rc);
}

static int op_add(op_ctx *c) {
  engram_op *op = c->op;
  int64_t hash = (int64_t)c->b->content_hash[c->index]; /* bit pattern */
  int rc;
  /* The vector's space first, dedup or not (as on PostgreSQL). */
  int code = check_space(c);
  if (code != 0)
    return code;
  if (op->dedup) {
    sqlite3_stmt *q = wstmt(c->st, WS_FIND_DUP, &rc);
    if (!q)
      return storage_error(c, rc);
    bind_str(q, 1, op->ns);
    sqlite3_bind_int64(q, 2, hash);
    bind_content(q, 3, op);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
      const unsigned char *id = sqlite3_column_text(q, 0);
      if (id && strlen((const char *)id) == ENGRAM_ID_LEN) {
        memcpy(op->result_id, id, ENGRAM_ID_LEN + 1);
        op->deduplicated = 1;
        sqlite3_reset(q);
        return 0;
      }
    }
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return storage_error(c, rc);
  }
  code = bump_seq(c);
  if (code != 0)
    return code;
  sqlite3_stmt *ins = wstmt(c->st, WS_INSERT, &rc);
  if (!ins)
    return storage_error(c, rc);
  bind_str(ins, 1, op->result_id);
  bind_str(ins, 2, op->ns);
  sqlite3_bind_int(ins, 3, (int)op->type);
  bind_content(ins, 4, op);
  sqlite3_bind_int64(ins, 5, hash);
  sqlite3_bind_int64(ins, 6, c->b->at_ms);
  sqlite3_bind_double(ins, 7,
                      (op->set & ENGRAM_SET_IMPORTANCE) ? op->importance : 0.5);
  bind_str(ins, 8, op->metadata ? op->metadata : "{}");
  bind_embedding(ins, 9, 11, op);
  rc = run(ins);
  if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
    snprintf(op->message, sizeof op->message,
             "a memory with id %s already exists", op->result_id);
    return ENGRAM_EEXIST;
  }
  if (rc != SQLITE_OK)
    return storage_error(c, rc);
  return add_history(c, op->result_id, ENGRAM_EVENT_ADD, NULL, 0, op->content,
                     content_len(op));
}

/* Finds op->id in op->ns: its rowid and a copy of its content. */
static int find_for_change(op_ctx *c, sqlite3_int64 *rowid, char **content,
                           size_t *len) {
  engram_op *op = c->op;
  int rc;
  sqlite3_stmt *q = wstmt(c->st, WS_FIND_FOR_CHANGE, &rc);
  if (!q)
    return storage_error(c, rc);
  bind_str(q, 1, op->id);
  bind_str(q, 2, op->ns);
  rc = sqlite3_step(q);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(q);
    snprintf(op->message, sizeof op->message,
             "no memory %s in namespace \"%s\"", op->id, op->ns);
    return ENGRAM_ENOTFOUND;
  }
  if (rc != SQLITE_ROW) {
    sqlite3_reset(q);
    return storage_error(c, rc);
  }
  *rowid = sqlite3_column_int64(q, 0);
  const unsigned char *text = sqlite3_column_text(q, 1);
  *len = (size_t)sqlite3_column_bytes(q, 1);
  *content = malloc(*len + 1);
  if (*content) {
    if (*len)
      memcpy(*content, text, *len);
    (*content)[*len] = '\0';
  }
  sqlite3_reset(q);
  if (!*content) {
    snprintf(op->message, sizeof op->message, "out of memory in op %zu",
             c->index);
    return ENGRAM_ENOMEM;
  }
  return 0;
}

static int op_update(op_ctx *c) {
  engram_op *op = c->op;
  sqlite3_int64 rowid;
  char *old = NULL;
  size_t old_len = 0;
  int code = find_for_change(c, &rowid, &old, &old_len);
  if (code == 0)
    code = check_space(c);
  if (code == 0)
    code = bump_seq(c);
  if (code != 0) {
    free(old);
    return code;
  }
  int rc;
  sqlite3_stmt *u = wstmt(c->st, WS_UPDATE, &rc);
  if (!u) {
    free(old);
    return storage_error(c, rc);
  }
  unsigned set = op->set;
  sqlite3_bind_int64(u, 1, rowid);
  if (set & ENGRAM_SET_CONTENT) {
    bind_content(u, 2, op);
    sqlite3_bind_int64(u, 3, (int64_t)c->b->content_hash[c->index]);
  } else {
    sqlite3_bind_null(u, 2);
    sqlite3_bind_null(u, 3);
  }
  if (set & ENGRAM_SET_TYPE)
    sqlite3_bind_int(u, 4, (int)op->type);
  else
    sqlite3_bind_null(u, 4);
  if (set & ENGRAM_SET_IMPORTANCE)
    sqlite3_bind_double(u, 5, op->importance);
  else
    sqlite3_bind_null(u, 5);
  if (set & ENGRAM_SET_METADATA)
    bind_str(u, 6, op->metadata ? op->metadata : "{}");
  else
    sqlite3_bind_null(u, 6);
  sqlite3_bind_int(u, 7, (set & ENGRAM_SET_EMBEDDING) ? 1 : 0);
  bind_embedding(u, 8, 11, op);
  sqlite3_bind_int64(u, 10, c->b->at_ms);
  bind_str(u, 12, op->ns);
  rc = run(u);
  if (rc != SQLITE_OK) {
    free(old);
    return storage_error(c, rc);
  }
  /* Always recorded, so the history shows every change; the content is
   * the same on both sides when the update left it alone. */
  if (set & ENGRAM_SET_CONTENT)
    code = add_history(c, op->id, ENGRAM_EVENT_UPDATE, old, old_len,
                       op->content, content_len(op));
  else
    code =
        add_history(c, op->id, ENGRAM_EVENT_UPDATE, old, old_len, old, old_len);
  free(old);
  return code;
}

static int op_delete(op_ctx *c) {
  engram_op *op = c->op;
  sqlite3_int64 rowid;
  char *old = NULL;
  size_t old_len = 0;
  int code = find_for_change(c, &rowid, &old, &old_len);
  if (code == 0)
    code = bump_seq(c);
  if (code != 0) {
    free(old);
    return code;
  }
  static const writer_stmt_kind steps[] = {
      WS_DELETE_RELS_SOURCE, WS_DELETE_RELS_TARGET, WS_DELETE, WS_REMOVED};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    int rc;
    sqlite3_stmt *d = wstmt(c->st, steps[i], &rc);
    if (!d) {
      free(old);
      return storage_error(c, rc);
    }
    if (steps[i] == WS_DELETE) {
      sqlite3_bind_int64(d, 1, rowid);
    } else if (steps[i] == WS_REMOVED) {
      bind_str(d, 1, op->ns);
      bind_str(d, 2, op->id);
    } else {
      bind_str(d, 1, op->id);
    }
    rc = run(d);
    if (rc != SQLITE_OK) {
      free(old);
      return storage_error(c, rc);
    }
  }
  code = add_history(c, op->id, ENGRAM_EVENT_DELETE, old, old_len, NULL, 0);
  free(old);
  return code;
}

/* STORE_OP_SET_VECTOR (store.h): no row changed is not an error. */
static int op_set_vector(op_ctx *c) {
  engram_op *op = c->op;
  int code = check_space(c);
  if (code == 0)
    code = bump_seq(c);
  if (code != 0)
    return code;
  int rc;
  sqlite3_stmt *u = wstmt(c->st, WS_SET_VECTOR, &rc);
  if (!u)
    return storage_error(c, rc);
  bind_str(u, 1, op->id);
  bind_str(u, 2, op->ns);
  bind_embedding(u, 3, 5, op);
  sqlite3_bind_int64(u, 6, (int64_t)c->b->content_hash[c->index]);
  rc = run(u);
  return rc == SQLITE_OK ? 0 : storage_error(c, rc);
}

static int exists(op_ctx *c, const char *id, const char *role) {
  int rc;
  sqlite3_stmt *q = wstmt(c->st, WS_EXISTS, &rc);
  if (!q)
    return storage_error(c, rc);
  bind_str(q, 1, id);
  bind_str(q, 2, c->op->ns);
  rc = sqlite3_step(q);
  sqlite3_reset(q);
  if (rc == SQLITE_ROW)
    return 0;
  if (rc != SQLITE_DONE)
    return storage_error(c, rc);
  snprintf(c->op->message, sizeof c->op->message,
           "the %s memory %s is not in namespace \"%s\"", role, id, c->op->ns);
  return ENGRAM_ENOTFOUND;
}

static int op_link(op_ctx *c) {
  engram_op *op = c->op;
  int code = exists(c, op->source, "source");
  if (code == 0)
    code = exists(c, op->target, "target");
  if (code != 0)
    return code;
  int rc;
  sqlite3_stmt *l = wstmt(c->st, WS_LINK, &rc);
  if (!l)
    return storage_error(c, rc);
  bind_str(l, 1, op->ns);
  bind_str(l, 2, op->source);
  bind_str(l, 3, op->target);
  bind_str(l, 4, op->rel_kind);
  sqlite3_bind_double(l, 5, op->strength);
  sqlite3_bind_int64(l, 6, c->b->at_ms);
  rc = run(l);
  return rc == SQLITE_OK ? 0 : storage_error(c, rc);
}

static int op_unlink(op_ctx *c) {
  engram_op *op = c->op;
  int rc;
  sqlite3_stmt *u = wstmt(c->st, WS_UNLINK, &rc);
  if (!u)
    return storage_error(c, rc);
  bind_str(u, 1, op->source);
  bind_str(u, 2, op->target);
  bind_str(u, 3, op->rel_kind);
  bind_str(u, 4, op->ns);
  rc = run(u);
  if (rc != SQLITE_OK)
    return storage_error(c, rc);
  if (sqlite3_changes(c->st->writer) == 0) {
    snprintf(op->message, sizeof op->message,
             "no \"%s\" relationship from %s to %s in namespace \"%s\"",
             op->rel_kind, op->source, op->target, op->ns);
    return ENGRAM_ENOTFOUND;
  }
  return 0;
}

/* Applies every op of b; stops at the first failure and returns its code
 * (the caller rolls the batch back). */
static int apply_batch(sqlite_store *st, store_batch *b) {
  if (b->n > 0) {
    int code = load_space(st, b->ops[0].message, sizeof b->ops[0].message);
    if (code != 0) {
      b->ops[0].status = code;
      return code;
    }
  }
  for (size_t i = 0; i < b->n; i++) {
    op_ctx c = {st, b, i, &b->ops[i]};
    engram_op *op = c.op;
    op->status = 0;
    op->deduplicated = 0;
    op->message[0] = '\0';
    int code;
    switch ((int)op->kind) { /* STORE_OP_SET_SPACE is not in the enum */
    case ENGRAM_OP_ADD:
      code = op_add(&c);
      break;
    case ENGRAM_OP_UPDATE:
      code = op_update(&c);
      break;
    case ENGRAM_OP_DELETE:
      code = op_delete(&c);
      break;
    case ENGRAM_OP_LINK:
      code = op_link(&c);
      break;
    case ENGRAM_OP_UNLINK:
      code = op_unlink(&c);
      break;
    case STORE_OP_SET_VECTOR:
      code = op_set_vector(&c);
      break;
    case STORE_OP_SET_SPACE: {
      char space[STORE_SPACE_LEN];
      code = store_space_format(space, op->embedder, op->embedding_dim);
      if (code == 0)
        code = save_space(&c, space);
      else
        snprintf(op->message, sizeof op->message, "embedder name is empty "
                                                  "or too long");
      break;
    }
    default:
      snprintf(op->message, sizeof op->message, "unknown operation kind %d",
               (int)op->kind);
      code = ENGRAM_EINVAL;
      break;
    }
    if (code != 0) {
      op->status = code;
      return code;
    }
  }
  return 0;
}

static void group_run(rt_work *w) {
  write_group *g = SQ_CONTAINER(w, write_group, work);
  sqlite_store *st = g->st;
  sqlite3 *db = st->writer;
  char why[SQ_MSG_LEN];
  g->committed = 0;
  for (store_batch *b = g->batches; b; b = b->next) {
    b->status = 0;
    for (size_t i = 0; i < b->n; i++)
      b->ops[i].status = 0;
  }

  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    int code = sqlite_fail(db, rc, "cannot start a write transaction", why,
                           sizeof why);
    for (store_batch *b = g->batches; b; b = b->next)
      store_batch_fail(b, code, why);
    return;
  }
  int lost = 0; /* SQLite rolled the whole transaction back */
  int lost_code = 0;
  for (store_batch *b = g->batches; b && !lost; b = b->next) {
    rc = sqlite3_exec(db, "SAVEPOINT batch", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
      lost_code = sqlite_fail(db, rc, "cannot start a batch", why, sizeof why);
      lost = 1;
      break;
    }
    int code = apply_batch(st, b);
    if (code == 0) {
      rc = sqlite3_exec(db, "RELEASE batch", NULL, NULL, NULL);
    } else if (sqlite3_get_autocommit(db)) {
      /* An I/O error, a full disk or an interrupt ends the transaction:
       * no batch of the group survives. */
      lost_code = code;
      snprintf(why, sizeof why, "%s", b->ops[0].message);
      for (size_t i = 0; i < b->n; i++)
        if (b->ops[i].status)
          snprintf(why, sizeof why, "%s", b->ops[i].message);
      lost = 1;
      break;
    } else {
      store_batch_fail(b, code, "");
      rc = sqlite3_exec(db, "ROLLBACK TO batch", NULL, NULL, NULL);
      if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "RELEASE batch", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK && !lost) {
      lost_code = sqlite_fail(db, rc, "cannot finish a batch", why, sizeof why);
      lost = 1;
    }
  }
  if (!lost) {
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
      g->committed = 1;
      /* What was committed (a batch rolled back may have set it). */
      if (load_space(st, why, sizeof why) != 0)
        st->wspace[0] = '\0';
    } else {
      sqlite_fail(db, rc, "the commit failed", why, sizeof why);
      lost_code = ENGRAM_EIO; /* whatever the cause, nothing was stored */
      lost = 1;
    }
  }
  if (lost) {
    if (!sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (lost_code == 0 || lost_code == ENGRAM_ECANCELED)
      lost_code = ENGRAM_EIO;
    for (store_batch *b = g->batches; b; b = b->next) {
      for (size_t i = 0; i < b->n; i++)
        b->ops[i].status = 0; /* the batch's own failure no longer matters */
      store_batch_fail(b, lost_code, why);
    }
  }
  for (int k = 0; k < WS_COUNT; k++)
    if (st->wstmt[k])
      sqlite3_clear_bindings(st->wstmt[k]);
}

/* -------------------------------------------------------------- loop side */

static void group_after(rt_work *w, int status) {
  write_group *g = SQ_CONTAINER(w, write_group, work);
  sqlite_store *st = g->st;
  sqlite_task_returned(st);
  store_batch *done = g->batches;
  g->batches = NULL;
  st->writing = 0;
  if (status != 0) {
    for (store_batch *b = done; b; b = b->next)
      store_batch_fail(b, ENGRAM_ECANCELED, "the write was cancelled");
  } else if (g->committed) {
    memcpy(st->head.space, st->wspace, sizeof st->head.space);
    uint64_t ops = 0;
    for (store_batch *b = done; b; b = b->next)
      if (b->status == 0)
        ops += b->n;
    store_count_group(&st->head, ops);
  }
  /* The next group starts before these callbacks run: they may be slow,
   * and the writer need not wait for them. */
  sqlite_writer_kick(st);
  while (done) {
    store_batch *next = done->next;
    done->next = NULL;
    done->done(done); /* may free done */
    done = next;
  }
  sqlite_maybe_close(st);
}

void sqlite_writer_kick(sqlite_store *st) {
  if (st->writing || !st->queue_head || st->state != SS_OPEN)
    return;
  write_group *g = &st->group;
  store_batch *last = st->queue_head;
  size_t ops = last->n;
  while (last->next && ops + last->next->n <= st->batch_max) {
    last = last->next;
    ops += last->n;
  }
  g->st = st;
  g->batches = st->queue_head;
  st->queue_head = last->next;
  if (!st->queue_head)
    st->queue_tail = NULL;
  last->next = NULL;
  st->writing = 1;
  if (sqlite_offload(st, &g->work, group_run, group_after) != 0) {
    /* uv_queue_work refuses only a malformed request; put the batches
     * back (never call back from inside write) for the next kick. */
    st->writing = 0;
    last->next = st->queue_head;
    st->queue_head = g->batches;
    if (!st->queue_tail)
      st->queue_tail = last;
    g->batches = NULL;
  }
}

int sqlite_writer_write(store *base, store_batch *b) {
  sqlite_store *st = (sqlite_store *)base;
  if (st->state != SS_OPEN || st->close_requested)
    return ENGRAM_ECLOSED;
  if (!b || b->n == 0 || !b->ops || !b->done)
    return ENGRAM_EINVAL;
  b->status = 0;
  b->next = NULL;
  if (st->queue_tail)
    st->queue_tail->next = b;
  else
    st->queue_head = b;
  st->queue_tail = b;
  sqlite_writer_kick(st);
  return 0;
}
