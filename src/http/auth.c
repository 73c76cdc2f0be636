/*
 * auth.c — API keys: the keys file, constant-time lookup, and which
 * namespaces a key may use.
 *
 * Keys file: one key per line, then the namespaces it may use, separated
 * by commas or spaces ("*" for all); '#' starts a comment. Keys are never
 * logged: a key is named in logs by its line ("key#3").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

struct http_key {
  char *token;
  size_t len;
  int all;          /* "*" */
  char **ns;
  size_t nns;
  char label[24];
};

struct http_keys {
  http_key *keys;
  size_t n;
};

void http_keys_free(http_keys *k) {
  if (!k)
    return;
  for (size_t i = 0; i < k->n; i++) {
    free(k->keys[i].token);
    for (size_t j = 0; j < k->keys[i].nns; j++)
      free(k->keys[i].ns[j]);
    free(k->keys[i].ns);
  }
  free(k->keys);
  free(k);
}

static int add_ns(http_key *key, const char *ns, size_t len) {
  if (len == 1 && ns[0] == '*') {
    key->all = 1;
    return 1;
  }
  char **grown = realloc(key->ns, (key->nns + 1) * sizeof *grown);
  if (!grown)
    return 0;
  key->ns = grown;
  key->ns[key->nns] = strndup(ns, len);
  return key->ns[key->nns++] != NULL;
}

http_keys *http_keys_load(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read the keys file %s: %s", path,
             strerror(errno));
    return NULL;
  }
  http_keys *k = calloc(1, sizeof *k);
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  unsigned lineno = 0;
  int ok = k != NULL;
  while (ok && (got = getline(&line, &cap, f)) >= 0) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    const char *sep = " \t\r\n,";
    char *save;
    char *tok = strtok_r(line, sep, &save);
    if (!tok)
      continue;
    if (strlen(tok) < 16) {
      snprintf(err, errlen,
               "%s:%u: the key is shorter than 16 characters; use a long "
               "random key (e.g. openssl rand -hex 24)",
               path, lineno);
      ok = 0;
      break;
    }
    http_key *grown = realloc(k->keys, (k->n + 1) * sizeof *grown);
    if (!grown) {
      ok = 0;
      break;
    }
    k->keys = grown;
    http_key *key = &k->keys[k->n++];
    memset(key, 0, sizeof *key);
    key->token = strdup(tok);
    key->len = strlen(tok);
    snprintf(key->label, sizeof key->label, "key#%u", lineno);
    size_t nns = 0;
    while ((tok = strtok_r(NULL, sep, &save)) != NULL) {
      if (!add_ns(key, tok, strlen(tok))) {
        ok = 0;
        break;
      }
      nns++;
    }
    if (ok && nns == 0) {
      snprintf(err, errlen,
               "%s:%u: the key names no namespace; list the namespaces it may "
               "use, or * for all",
               path, lineno);
      ok = 0;
    }
    if (!key->token)
      ok = 0;
  }
  if (ok && ferror(f)) { /* a directory opens, then fails to read */
    snprintf(err, errlen, "cannot read the keys file %s: %s", path,
             strerror(errno));
    ok = 0;
  }
  free(line);
  fclose(f);
  if (ok && k->n == 0) {
    snprintf(err, errlen, "the keys file %s holds no key", path);
    ok = 0;
  }
  if (!ok) {
    if (err[0] == '\0')
      snprintf(err, errlen, "out of memory reading %s", path);
    http_keys_free(k);
    return NULL;
  }
  return k;
}

/* Compares every byte of every key, whatever matches, so the time taken
 * says nothing about how close a guess was. */
const http_key *http_keys_find(const http_keys *keys, const char *token,
                               size_t len) {
  const http_key *found = NULL;
  for (size_t i = 0; i < keys->n; i++) {
    const http_key *k = &keys->keys[i];
    unsigned char diff = (unsigned char)(k->len != len);
    for (size_t j = 0; j < k->len; j++)
      diff |= (unsigned char)(k->token[j] ^ (j < len ? token[j] : 0));
    if (diff == 0 && !found)
      found = k;
  }
  return found;
}

int http_key_allows(const http_key *key, const char *ns) {
  if (key->all)
    return 1;
  for (size_t i = 0; i < key->nns; i++)
    if (strcmp(key->ns[i], ns) == 0)
      return 1;
  return 0;
}

const char *http_key_label(const http_key *key) { return key->label; }
