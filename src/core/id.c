/*
 * id.c — UUIDv7 ids (RFC 9562): 48 bits of Unix milliseconds, then 74 bits
 * that are random except that, within one millisecond, the 12-bit rand_a
 * field counts up (method 1 of the RFC). Ids made by one process are thus
 * strictly increasing as text, which is what makes list pagination by id
 * stable under concurrent inserts. A clock that steps back reuses the last
 * timestamp so the order still holds.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/core.h"

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms;
static uint16_t seq; /* 12 bits */

static void random_bytes(unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got <= 0)
      continue; /* EINTR; getrandom never blocks once the pool is seeded */
    p += got;
    n -= (size_t)got;
  }
}

void engram_id_new(char out[ENGRAM_ID_LEN + 1]) {
  unsigned char b[16];
  random_bytes(b, sizeof b);
  uint64_t now = (uint64_t)core_now_ms();

  pthread_mutex_lock(&id_lock);
  if (now > last_ms) {
    last_ms = now;
    seq = (uint16_t)(((b[6] & 0x07u) << 8) | b[7]); /* start low: room to count */
  } else if (seq < 0x0fff) {
    seq++;
  } else {
    last_ms++; /* 4096 ids in one ms: borrow the next millisecond */
    seq = 0;
  }
  uint64_t ms = last_ms;
  uint16_t s = seq;
  pthread_mutex_unlock(&id_lock);

  for (int i = 0; i < 6; i++)
    b[i] = (unsigned char)(ms >> (40 - 8 * i));
  b[6] = (unsigned char)(0x70u | ((s >> 8) & 0x0fu));
  b[7] = (unsigned char)(s & 0xffu);
  b[8] = (unsigned char)(0x80u | (b[8] & 0x3fu));
  snprintf(out, ENGRAM_ID_LEN + 1,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
           b[11], b[12], b[13], b[14], b[15]);
}

int engram_id_valid(const char *text) {
  if (!text || strlen(text) != ENGRAM_ID_LEN)
    return 0;
  for (int i = 0; i < ENGRAM_ID_LEN; i++) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-')
        return 0;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return 0;
    }
  }
  return 1;
}
