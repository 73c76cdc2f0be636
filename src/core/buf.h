/*
 * buf.h — a growable byte buffer, always NUL-terminated (internal).
 * On allocation failure the buffer keeps what it had and sets oom; callers
 * check oom once at the end instead of after every append.
 */
#ifndef ENGRAM_BUF_H
#define ENGRAM_BUF_H

#include <stddef.h>

typedef struct buf {
  char *data;
  size_t len;
  size_t cap;
  int oom;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_add(buf *b, const char *p, size_t n);
void buf_adds(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
