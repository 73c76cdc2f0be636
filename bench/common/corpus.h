/*
 * corpus.h — a seeded generator of sentence-like text for benchmarks.
 *
 * The vocabulary (a few thousand nouns, verbs, adjectives, adverbs, names
 * and places: real English words first, then pronounceable generated ones)
 * is drawn with a Zipf distribution per word class, exponent 1.05, so a few
 * words are everywhere and most are rare, as in real text. Sentences fill
 * subject/verb/object templates with those words, names, numbers, dates and
 * times, extended by subordinate clauses to 8-30 words. Queries are 3-8 word
 * questions whose content words favour the middle of the frequency range,
 * so that each matches a realistic number of rows (neither every row nor
 * none).
 *
 * Everything is a function of the seed: the same seed and vocabulary size
 * give the same words, the same sentence sequence and the same query
 * sequence. Sentences and queries draw from separate generators, so asking
 * for more queries does not change the sentences.
 */
#ifndef BENCH_CORPUS_H
#define BENCH_CORPUS_H

#include <stddef.h>
#include <stdint.h>

typedef struct corpus corpus;

#define CORPUS_DEFAULT_VOCAB 4000u
#define CORPUS_MAX_SENTENCE 512 /* bytes a sentence never reaches */

/* Builds the vocabulary. vocab_size: content words in all classes (0:
 * CORPUS_DEFAULT_VOCAB; at least 200). NULL when out of memory. */
corpus *corpus_new(uint64_t seed, size_t vocab_size);
void corpus_free(corpus *c);

/* Writes the next sentence (8-30 words, NUL-terminated, at most cap-1
 * bytes, cut at a word boundary when cap is small). Returns its length. */
size_t corpus_sentence(corpus *c, char *buf, size_t cap);

/* Writes the next query: a 3-8 word question. Returns its length. */
size_t corpus_query(corpus *c, char *buf, size_t cap);

/* Restarts the sentence and query sequences from the seed. */
void corpus_rewind(corpus *c);

#endif
