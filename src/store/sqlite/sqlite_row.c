/*
 * sqlite_row.c — turning a memory row into an engram_node the loop can hand
 * to a consumer, and SQLite result codes into engram's.
 *
 * Decoding runs on the thread that stepped the statement, because column
 * pointers die at the next step. The node is one allocation laid out like
 * engram_node_copy()'s (struct, aligned floats, strings), so
 * engram_node_free() releases it. A row is checked rather than trusted:
 * another program (or a damaged file) can store a type engram does not
 * know, bytes that are not UTF-8, or an embedding whose size disagrees with
 * its dimension. Such a row is refused with a message naming it, and a
 * stream reports it and goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite/sqlite_internal.h"

int sqlite_code(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
    return 0;
  case SQLITE_NOMEM:
    return ENGRAM_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return ENGRAM_EBUSY;
  case SQLITE_INTERRUPT:
    return ENGRAM_ECANCELED;
  case SQLITE_NOTADB:
  case SQLITE_CORRUPT:
    return ENGRAM_ECORRUPT;
  case SQLITE_TOOBIG:
    return ENGRAM_ETOOBIG;
  default:
    return ENGRAM_EIO;
  }
}

int sqlite_fail(sqlite3 *db, int rc, const char *what, char *msg,
                size_t msglen) {
  snprintf(msg, msglen, "%s: %s", what,
           db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  return sqlite_code(rc);
}

/* Text of a column checked as UTF-8; NULL when it is not. */
static const char *text_col(sqlite3_stmt *stmt, int col, size_t *len) {
  const unsigned char *p = sqlite3_column_text(stmt, col);
  int n = sqlite3_column_bytes(stmt, col);
  if (!p || n < 0 || !core_utf8_valid((const char *)p, (size_t)n))
    return NULL;
  *len = (size_t)n;
  return (const char *)p;
}

int sqlite_row_node(sqlite3_stmt *stmt, int col, engram_node **out, char *msg,
                    size_t msglen) {
  *out = NULL;
  size_t id_len = 0, ns_len = 0, content_len = 0, md_len = 0;
  const char *id = text_col(stmt, col + 0, &id_len);
  if (!id || !engram_id_valid(id)) {
    snprintf(msg, msglen, "a stored memory has a malformed id; skipped");
    return ENGRAM_ECORRUPT;
  }
  const char *ns = text_col(stmt, col + 1, &ns_len);
  if (!ns) {
    snprintf(msg, msglen, "memory %s has a namespace that is not UTF-8", id);
    return ENGRAM_EUTF8;
  }
  /* Types before values: a conversion makes sqlite3_column_type moot. */
  int type_is_int = sqlite3_column_type(stmt, col + 2) == SQLITE_INTEGER;
  int content_is_null = sqlite3_column_type(stmt, col + 3) == SQLITE_NULL;
  int metadata_is_null = sqlite3_column_type(stmt, col + 9) == SQLITE_NULL;
  sqlite3_int64 type = sqlite3_column_int64(stmt, col + 2);
  if (!type_is_int || type < 0 || type >= ENGRAM_TYPE_COUNT) {
    snprintf(msg, msglen, "memory %s has an unknown type (%lld)", id,
             (long long)type);
    return ENGRAM_ECORRUPT;
  }
  const char *content = text_col(stmt, col + 3, &content_len);
  if (!content || content_is_null) {
    snprintf(msg, msglen, "memory %s has content that is not valid UTF-8", id);
    return ENGRAM_EUTF8;
  }
  const char *metadata = "{}";
  md_len = 2;
  if (!metadata_is_null) {
    metadata = text_col(stmt, col + 9, &md_len);
    if (!metadata) {
      snprintf(msg, msglen, "memory %s has metadata that is not UTF-8", id);
      return ENGRAM_EUTF8;
    }
  }
  const void *blob = sqlite3_column_blob(stmt, col + 10);
  size_t blob_len = (size_t)sqlite3_column_bytes(stmt, col + 10);
  sqlite3_int64 dim = sqlite3_column_int64(stmt, col + 11);
  if (!blob || blob_len == 0)
    dim = 0;
  else if (dim <= 0 || dim > 65536 || (size_t)dim * sizeof(float) != blob_len) {
    snprintf(msg, msglen,
             "memory %s has an embedding of %zu bytes for dimension %lld", id,
             blob_len, (long long)dim);
    return ENGRAM_ECORRUPT;
  }

  size_t embedder_len = 0;
  const char *embedder = NULL;
  if (dim > 0) {
    embedder = text_col(stmt, col + 12, &embedder_len);
    if (!embedder || embedder_len == 0) {
      embedder = "client"; /* a vector stored without a name */
      embedder_len = 6;
    }
  }

  size_t emb = (size_t)dim * sizeof(float);
  size_t size = sizeof(engram_node) + emb + ns_len + 1 + content_len + 1 +
                md_len + 1 + (embedder ? embedder_len + 1 : 0);
  engram_node *n = malloc(size);
  if (!n) {
    snprintf(msg, msglen, "out of memory reading memory %s", id);
    return ENGRAM_ENOMEM;
  }
  memset(n, 0, sizeof *n);
  memcpy(n->id, id, ENGRAM_ID_LEN + 1);
  n->type = (engram_type)type;
  n->content_hash = (uint64_t)sqlite3_column_int64(stmt, col + 4);
  n->created_ms = sqlite3_column_int64(stmt, col + 5);
  n->updated_ms = sqlite3_column_int64(stmt, col + 6);
  n->accessed_ms = sqlite3_column_int64(stmt, col + 7);
  n->importance = sqlite3_column_double(stmt, col + 8);
  char *p = (char *)(n + 1);
  if (emb) {
    memcpy(p, blob, emb); /* the blob may be unaligned; p is not */
    n->embedding = (const float *)(void *)p;
    n->embedding_dim = (uint32_t)dim;
    p += emb;
  }
  memcpy(p, ns, ns_len);
  p[ns_len] = '\0';
  n->ns = p;
  p += ns_len + 1;
  memcpy(p, content, content_len);
  p[content_len] = '\0';
  n->content = p;
  n->content_len = content_len;
  p += content_len + 1;
  memcpy(p, metadata, md_len);
  p[md_len] = '\0';
  n->metadata = p;
  p += md_len + 1;
  if (embedder) {
    memcpy(p, embedder, embedder_len);
    p[embedder_len] = '\0';
    n->embedder = p;
  }
  *out = n;
  return 0;
}
