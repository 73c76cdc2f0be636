/*
 * rng.h — the benchmarks' own seeded PRNG: splitmix64 to expand a seed,
 * xoshiro256** to draw. Deterministic on every platform (rand() is not),
 * so a seed names a corpus and a query set exactly.
 */
#ifndef BENCH_RNG_H
#define BENCH_RNG_H

#include <stdint.h>

typedef struct bench_rng {
  uint64_t s[4];
} bench_rng;

static inline uint64_t bench_splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline void bench_rng_seed(bench_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = bench_splitmix64(&seed);
}

static inline uint64_t bench_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t bench_rng_next(bench_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = bench_rotl(s[3], 45);
  return result;
}

/* Uniform in [0, 1). */
static inline double bench_rng_double(bench_rng *r) {
  return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n); n > 0. The modulo bias is below 2^-40 for the n the
 * benchmarks use, which no measurement here can see. */
static inline uint64_t bench_rng_below(bench_rng *r, uint64_t n) {
  return bench_rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static inline int bench_rng_range(bench_rng *r, int lo, int hi) {
  return lo + (int)bench_rng_below(r, (uint64_t)(hi - lo + 1));
}

#endif
