/*
 * vector_simd.c — the AVX2 kernels of vector search.
 *
 * Compiled for the baseline target like everything else: only these
 * functions carry target("avx2,fma"), and vector.c calls them only after
 * __builtin_cpu_supports() said yes, so one binary runs on every x86-64
 * and uses AVX2 where it exists. Elsewhere they fall back to the scalar
 * kernels (and are never chosen).
 *
 * A scan reads each row once and does one multiply-add per 4 bytes read, so
 * it is bound by memory bandwidth, not arithmetic: the kernels aim to keep
 * the loads streaming (several independent accumulators, no branch inside
 * a row) rather than to shave instructions.
 */
#include "search/vector_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

TARGET static inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TARGET static inline int32_t hsum_epi32(__m256i v) {
  __m128i s =
      _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

TARGET void vk_f32_avx2(const float *q, const float *rows, size_t stride,
                        size_t n, float *out) {
  for (size_t r = 0; r < n; r++) {
    const float *x = rows + r * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= stride; j += 32) {
      a0 = _mm256_fmadd_ps(_mm256_load_ps(x + j), _mm256_load_ps(q + j), a0);
      a1 = _mm256_fmadd_ps(_mm256_load_ps(x + j + 8), _mm256_load_ps(q + j + 8),
                           a1);
      a2 = _mm256_fmadd_ps(_mm256_load_ps(x + j + 16),
                           _mm256_load_ps(q + j + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_load_ps(x + j + 24),
                           _mm256_load_ps(q + j + 24), a3);
    }
    for (; j < stride; j += 8)
      a0 = _mm256_fmadd_ps(_mm256_load_ps(x + j), _mm256_load_ps(q + j), a0);
    out[r] =
        hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
}

/* q * x over int8 with no widening of x: maddubs multiplies unsigned by
 * signed bytes, so it gets |q| and x carrying q's sign; a pair of products
 * is at most 2 * 127 * 127 = 32258, which fits int16 because neither side
 * is ever -128 (vector_quantize). madd with ones then widens to int32. */
TARGET void vk_i8_avx2(const int8_t *q, const int8_t *rows, size_t stride,
                       size_t n, int32_t *out) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t r = 0; r < n; r++) {
    const int8_t *x = rows + r * stride;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    size_t j = 0;
    for (; j + 64 <= stride; j += 64) {
      __m256i q0 = _mm256_load_si256((const __m256i *)(q + j));
      __m256i q1 = _mm256_load_si256((const __m256i *)(q + j + 32));
      __m256i x0 = _mm256_load_si256((const __m256i *)(x + j));
      __m256i x1 = _mm256_load_si256((const __m256i *)(x + j + 32));
      __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(q0, q0),
                                        _mm256_sign_epi8(x0, q0));
      __m256i p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(q1, q1),
                                        _mm256_sign_epi8(x1, q1));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, ones));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, ones));
    }
    for (; j < stride; j += 32) {
      __m256i q0 = _mm256_load_si256((const __m256i *)(q + j));
      __m256i x0 = _mm256_load_si256((const __m256i *)(x + j));
      __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(q0, q0),
                                        _mm256_sign_epi8(x0, q0));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, ones));
    }
    out[r] = hsum_epi32(_mm256_add_epi32(a0, a1));
  }
}

#else

void vk_f32_avx2(const float *q, const float *rows, size_t stride, size_t n,
                 float *out) {
  vk_f32_scalar(q, rows, stride, n, out);
}

void vk_i8_avx2(const int8_t *q, const int8_t *rows, size_t stride, size_t n,
                int32_t *out) {
  vk_i8_scalar(q, rows, stride, n, out);
}

#endif
