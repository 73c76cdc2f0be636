/*
 * faiss_shim.cpp — see faiss_shim.h: IndexFlatIP behind extern "C"
 * functions, exceptions turned into -1 and a message.
 */
#include "faiss_shim.h"

#include <faiss/IndexFlat.h>
#include <omp.h>

#include <exception>
#include <new>
#include <string>

/* faiss::idx_t in newer FAISS, faiss::Index::idx_t in 1.7: the type of
 * ntotal in both. */
using idx_t = decltype(faiss::Index::ntotal);

struct faiss_flat {
  faiss::IndexFlatIP index;
  explicit faiss_flat(size_t dim) : index(static_cast<idx_t>(dim)) {}
};

static std::string last_error;

extern "C" faiss_flat *faiss_flat_new(size_t dim) {
  try {
    return new faiss_flat(dim);
  } catch (const std::exception &e) {
    last_error = e.what();
    return nullptr;
  }
}

extern "C" void faiss_flat_free(faiss_flat *f) {
  delete f;
}

extern "C" int faiss_flat_add(faiss_flat *f, size_t n, const float *rows) {
  try {
    f->index.add(static_cast<idx_t>(n), rows);
    return 0;
  } catch (const std::exception &e) {
    last_error = e.what();
    return -1;
  }
}

extern "C" int faiss_flat_search(faiss_flat *f, size_t nq, const float *queries,
                                 size_t k, float *scores, int64_t *labels) {
  try {
    f->index.search(static_cast<idx_t>(nq), queries, static_cast<idx_t>(k),
                    scores, reinterpret_cast<idx_t *>(labels));
    return 0;
  } catch (const std::exception &e) {
    last_error = e.what();
    return -1;
  }
}

extern "C" void faiss_set_threads(int n) {
  omp_set_num_threads(n);
}

extern "C" const char *faiss_last_error(void) {
  return last_error.c_str();
}
