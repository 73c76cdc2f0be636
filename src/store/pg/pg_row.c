/*
 * pg_row.c — turning a memory row of a PostgreSQL result into an
 * engram_node, and failed results into engram's error codes.
 *
 * Results come in text format. The node is one allocation laid out like
 * engram_node_copy()'s (struct, aligned floats, strings), so
 * engram_node_free() releases it. A row is checked rather than trusted, as
 * in sqlite_row.c: another program can store a type engram does not know,
 * text that is not UTF-8 (a SQL_ASCII database accepts any bytes), or an
 * embedding whose size disagrees with its dimension. Such a row is refused
 * with a message naming it, and a stream reports it and goes on.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/pg/pg_internal.h"

int pg_result_ok(const PGresult *res) {
  if (!res)
    return 0;
  ExecStatusType rs = PQresultStatus(res);
  return rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK;
}

int pg_result_fail(const PGresult *res, const char *what, char *msg,
                   size_t msglen) {
  if (!res) {
    snprintf(msg, msglen, "%s: no answer from the server", what);
    return ENGRAM_EIO;
  }
  if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
    snprintf(msg, msglen,
             "%s: not run, because an earlier command of the same pipeline "
             "failed",
             what);
    return ENGRAM_EIO;
  }
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  if (!text || !*text)
    text = PQresultErrorMessage(res);
  if (!text || !*text)
    text = PQresStatus(PQresultStatus(res));
  int n = snprintf(msg, msglen, "%s: %s", what, text);
  /* libpq's messages end in a newline and may span lines. */
  for (size_t i = 0; msglen && i < (size_t)n && i < msglen - 1; i++)
    if (msg[i] == '\n' || msg[i] == '\t')
      msg[i] = ' ';
  size_t len = strlen(msg);
  while (len > 0 && msg[len - 1] == ' ')
    msg[--len] = '\0';
  if (!state)
    return ENGRAM_EIO;
  if (strcmp(state, "57014") == 0)
    return ENGRAM_ECANCELED;
  if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
    return ENGRAM_EBUSY;
  return ENGRAM_EIO;
}

/* ---------------------------------------------------------------- rows */

/* The text of a column, NULL when SQL NULL. */
static const char *col_text(const PGresult *res, int row, int col,
                            size_t *len) {
  if (PQgetisnull(res, row, col))
    return NULL;
  *len = (size_t)PQgetlength(res, row, col);
  return PQgetvalue(res, row, col);
}

static int col_int64(const PGresult *res, int row, int col, int64_t *out) {
  size_t len = 0;
  const char *s = col_text(res, row, col, &len);
  if (!s || !*s)
    return 0;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return 0;
  *out = (int64_t)v;
  return 1;
}

static int col_double(const PGresult *res, int row, int col, double *out) {
  size_t len = 0;
  const char *s = col_text(res, row, col, &len);
  if (!s || !*s)
    return 0;
  char *end = NULL;
  double v = strtod(s, &end);
  if (*end != '\0' || isnan(v))
    return 0;
  *out = v;
  return 1;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int pg_bytea_read(const char *text, size_t len, void *out, size_t bytes) {
  if (len >= 2 && text[0] == '\\' && text[1] == 'x') {
    if (len != 2 + 2 * bytes)
      return 0;
    unsigned char *o = out;
    for (size_t i = 0; i < bytes; i++) {
      int hi = hex_digit(text[2 + 2 * i]), lo = hex_digit(text[3 + 2 * i]);
      if (hi < 0 || lo < 0)
        return 0;
      o[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
  }
  size_t got = 0; /* bytea_output = escape */
  unsigned char *raw = PQunescapeBytea((const unsigned char *)text, &got);
  if (!raw)
    return -1;
  int ok = got == bytes;
  if (ok)
    memcpy(out, raw, bytes);
  PQfreemem(raw);
  return ok;
}

int pg_row_node(const PGresult *res, int row, int col, engram_node **out,
                char *msg, size_t msglen) {
  *out = NULL;
  size_t id_len = 0, ns_len = 0, content_len = 0, md_len = 0, emb_len = 0;
  const char *id = col_text(res, row, col + 0, &id_len);
  if (!id || !engram_id_valid(id)) {
    snprintf(msg, msglen, "a stored memory has a malformed id; skipped");
    return ENGRAM_ECORRUPT;
  }
  const char *ns = col_text(res, row, col + 1, &ns_len);
  if (!ns || !core_utf8_valid(ns, ns_len)) {
    snprintf(msg, msglen, "memory %s has a namespace that is not UTF-8", id);
    return ENGRAM_EUTF8;
  }
  int64_t type = -1;
  if (!col_int64(res, row, col + 2, &type) || type < 0 ||
      type >= ENGRAM_TYPE_COUNT) {
    snprintf(msg, msglen, "memory %s has an unknown type (%lld)", id,
             (long long)type);
    return ENGRAM_ECORRUPT;
  }
  const char *content = col_text(res, row, col + 3, &content_len);
  if (!content || !core_utf8_valid(content, content_len)) {
    snprintf(msg, msglen, "memory %s has content that is not valid UTF-8", id);
    return ENGRAM_EUTF8;
  }
  const char *metadata = col_text(res, row, col + 9, &md_len);
  if (!metadata) {
    metadata = "{}";
  } else if (!core_utf8_valid(metadata, md_len)) {
    snprintf(msg, msglen, "memory %s has metadata that is not UTF-8", id);
    return ENGRAM_EUTF8;
  }
  int64_t hash = 0, created = 0, updated = 0, accessed = 0, dim = 0;
  double importance = 0;
  if (!col_int64(res, row, col + 4, &hash) ||
      !col_int64(res, row, col + 5, &created) ||
      !col_int64(res, row, col + 6, &updated) ||
      !col_int64(res, row, col + 7, &accessed) ||
      !col_double(res, row, col + 8, &importance)) {
    snprintf(msg, msglen, "memory %s has a missing or malformed number", id);
    return ENGRAM_ECORRUPT;
  }
  /* bytea in hex output is decoded in place below; a server set to
   * bytea_output = escape is decoded by libpq. */
  const char *emb_text = col_text(res, row, col + 10, &emb_len);
  unsigned char *escaped = NULL;
  size_t bytes = 0;
  if (emb_text && emb_len > 2 && emb_text[0] == '\\' && emb_text[1] == 'x') {
    bytes = (emb_len - 2) / 2;
  } else if (emb_text && emb_len > 0 && strcmp(emb_text, "\\x") != 0) {
    escaped = PQunescapeBytea((const unsigned char *)emb_text, &bytes);
    if (!escaped) {
      snprintf(msg, msglen, "out of memory reading memory %s", id);
      return ENGRAM_ENOMEM;
    }
  }
  if (!col_int64(res, row, col + 11, &dim))
    dim = 0;
  int rc = core_node_vector_check(id, bytes, &dim, msg, msglen);
  if (rc != 0) {
    PQfreemem(escaped);
    return rc;
  }
  engram_node view;
  memset(&view, 0, sizeof view);
  memcpy(view.id, id, ENGRAM_ID_LEN + 1);
  view.ns = ns;
  view.type = (engram_type)type;
  view.content = content;
  view.content_len = content_len;
  view.metadata = metadata;
  view.content_hash = (uint64_t)hash;
  view.created_ms = created;
  view.updated_ms = updated;
  view.accessed_ms = accessed;
  view.importance = importance;
  view.embedding_dim = (uint32_t)dim;
  if (dim > 0) {
    size_t embedder_len = 0;
    view.embedder = col_text(res, row, col + 12, &embedder_len);
    if (!view.embedder || embedder_len == 0)
      view.embedder = "client"; /* a vector stored without a name */
  }
  /* Little-endian float32s, the bytes SQLite's blob holds: unescaped by
   * libpq, or decoded from hex straight into the node. */
  int hex = dim > 0 && !escaped;
  engram_node *n = core_node_pack(&view, escaped);
  PQfreemem(escaped);
  if (!n) {
    snprintf(msg, msglen, "out of memory reading memory %s", id);
    return ENGRAM_ENOMEM;
  }
  if (hex && pg_bytea_read(emb_text, emb_len, (void *)(uintptr_t)n->embedding,
                           (size_t)dim * sizeof(float)) != 1) {
    engram_node_free(n);
    snprintf(msg, msglen, "memory %s has a malformed embedding", id);
    return ENGRAM_ECORRUPT;
  }
  *out = n;
  return 0;
}
