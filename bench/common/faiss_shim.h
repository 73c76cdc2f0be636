/*
 * faiss_shim.h — the few FAISS calls bench_vector makes, as C functions.
 *
 * Debian's libfaiss-dev ships FAISS as a static C++ library whose C API
 * headers are installed but whose C API is not compiled in, so
 * faiss_shim.cpp wraps IndexFlatIP (exact inner-product search, the
 * reference for engram's scan) in extern "C" functions. It is built into
 * bench_vector only when CMake finds FAISS (ENGRAM_HAVE_FAISS); nothing
 * else in engram links FAISS.
 */
#ifndef BENCH_FAISS_SHIM_H
#define BENCH_FAISS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct faiss_flat faiss_flat;

/* An empty IndexFlatIP of dim floats; NULL on error. */
faiss_flat *faiss_flat_new(size_t dim);
void faiss_flat_free(faiss_flat *f);
/* Copies n rows of dim floats (contiguous). 0, or -1 (msg in errbuf). */
int faiss_flat_add(faiss_flat *f, size_t n, const float *rows);
/* The best k rows for each of nq queries: scores[nq * k], labels[nq * k]
 * (row numbers in the order added; -1 past the end). 0 or -1. */
int faiss_flat_search(faiss_flat *f, size_t nq, const float *queries, size_t k,
                      float *scores, int64_t *labels);
/* OpenMP threads FAISS may use. */
void faiss_set_threads(int n);
/* The last error's text (empty when none). */
const char *faiss_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
