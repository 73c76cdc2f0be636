/*
 * errors.c — names and explanations of engram's error codes.
 */
#include "engram.h"

static const struct {
  int code;
  const char *name;
  const char *text;
} errors[] = {
    {ENGRAM_OK, "ENGRAM_OK", "success"},
    {ENGRAM_EINVAL, "ENGRAM_EINVAL", "invalid argument"},
    {ENGRAM_ENOMEM, "ENGRAM_ENOMEM", "out of memory"},
    {ENGRAM_ENOTFOUND, "ENGRAM_ENOTFOUND", "no such memory"},
    {ENGRAM_EEXIST, "ENGRAM_EEXIST", "a memory with that id already exists"},
    {ENGRAM_ECANCELED, "ENGRAM_ECANCELED", "operation cancelled"},
    {ENGRAM_ETIMEDOUT, "ENGRAM_ETIMEDOUT", "deadline passed"},
    {ENGRAM_EIO, "ENGRAM_EIO", "storage I/O error"},
    {ENGRAM_ETOOBIG, "ENGRAM_ETOOBIG", "content is larger than the limit"},
    {ENGRAM_EUTF8, "ENGRAM_EUTF8", "text is not valid UTF-8"},
    {ENGRAM_EVERSION, "ENGRAM_EVERSION",
     "the database was written by a newer engram; upgrade engram"},
    {ENGRAM_ECLOSED, "ENGRAM_ECLOSED", "the engram handle is not open"},
    {ENGRAM_EJSON, "ENGRAM_EJSON", "metadata is not a JSON object"},
    {ENGRAM_ECORRUPT, "ENGRAM_ECORRUPT",
     "the file is not an engram database, or it is damaged"},
    {ENGRAM_EBUSY, "ENGRAM_EBUSY", "the database is locked by another process"},
    {ENGRAM_EEMBEDDER, "ENGRAM_EEMBEDDER",
     "the database's vectors come from another embedder; run engram "
     "reembed"},
};

#define N_ERRORS (sizeof errors / sizeof errors[0])

const char *engram_strerror(int code) {
  for (size_t i = 0; i < N_ERRORS; i++)
    if (errors[i].code == code)
      return errors[i].text;
  return "unknown error";
}

const char *engram_errname(int code) {
  for (size_t i = 0; i < N_ERRORS; i++)
    if (errors[i].code == code)
      return errors[i].name;
  return "ENGRAM_EUNKNOWN";
}
