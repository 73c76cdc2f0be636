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
  if (!metadata_is_null) {
    metadata = text_col(stmt, col + 9, &md_len);
    if (!metadata) {
      snprintf(msg, msglen, "memory %s has metadata that is not UTF-8", id);
      return ENGRAM_EUTF8;
    }
  }
  const void *blob = sqlite3_column_blob(stmt, col + 10);
  size_t blob_len = blob ? (size_t)sqlite3_column_bytes(stmt, col + 10) : 0;
  int64_t dim = sqlite3_column_int64(stmt, col + 11);
  int rc = core_node_vector_check(id, blob_len, &dim, msg, msglen);
  if (rc != 0)
    return rc;
  engram_node view;
  memset(&view, 0, sizeof view);
  memcpy(view.id, id, ENGRAM_ID_LEN + 1);
  view.ns = ns;
  view.type = (engram_type)type;
  view.content = content;
  view.content_len = content_len;
  view.metadata = metadata;
  view.content_hash = (uint64_t)sqlite3_column_int64(stmt, col + 4);
  view.created_ms = sqlite3_column_int64(stmt, col + 5);
  view.updated_ms = sqlite3_column_int64(stmt, col + 6);
  view.accessed_ms = sqlite3_column_int64(stmt, col + 7);
  view.importance = sqlite3_column_double(stmt, col + 8);
  view.embedding_dim = (uint32_t)dim;
  if (dim > 0) {
    size_t embedder_len = 0;
    view.embedder = text_col(stmt, col + 12, &embedder_len);
    if (!view.embedder || embedder_len == 0)
      view.embedder = "client"; /* a vector stored without a name */
  }
  /* The blob may be unaligned: its bytes are copied, never read as floats. */
  engram_node *n = core_node_pack(&view, blob);
  if (!n) {
    snprintf(msg, msglen, "out of memory reading memory %s", id);
    return ENGRAM_ENOMEM;
  }
  *out = n;
  return 0;
}
