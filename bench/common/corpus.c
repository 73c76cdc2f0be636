/*
 * corpus.c — the synthetic text behind the benchmarks (see corpus.h).
 *
 * Word classes each hold a ranked list: the real words below first (most
 * frequent), then generated words made of syllables, unique across the whole
 * vocabulary. A draw from a class picks rank r with probability proportional
 * to 1 / (r + 1)^ZIPF_S through a precomputed cumulative table. Templates
 * are strings of literal words and {slots}; a slot may carry a literal
 * suffix ("{P}'s").
 */
#include "corpus.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define ZIPF_S 1.05

enum { C_NOUN, C_VERB, C_ADJ, C_ADV, C_NAME, C_PLACE, C_COUNT };

/* Share of the vocabulary per class, in per mille. */
static const unsigned class_share[C_COUNT] = {440, 220, 200, 50, 60, 30};

static const char *const real_nouns[] = {
    "time",       "meeting",   "project",    "report",    "team",
    "budget",     "email",     "dinner",     "trip",      "car",
    "house",      "phone",     "doctor",     "book",      "movie",
    "job",        "office",    "coffee",     "weekend",   "family",
    "dog",        "cat",       "garden",     "kitchen",   "flight",
    "hotel",      "ticket",    "birthday",   "party",     "gift",
    "school",     "class",     "exam",       "client",    "contract",
    "invoice",    "plan",      "idea",       "problem",   "question",
    "answer",     "deadline",  "schedule",   "server",    "database",
    "laptop",     "password",  "account",    "bank",      "payment",
    "rent",       "apartment", "neighbor",   "friend",    "sister",
    "brother",    "mother",    "father",     "daughter",  "son",
    "wife",       "husband",   "manager",    "colleague", "recipe",
    "restaurant", "store",     "market",     "city",      "country",
    "beach",      "mountain",  "river",      "lake",      "park",
    "concert",    "song",      "album",      "band",      "game",
    "match",      "season",    "holiday",    "vacation",  "appointment",
    "medicine",   "allergy",   "diet",       "workout",   "gym",
    "run",        "bike",      "train",      "bus",       "road",
    "bridge",     "window",    "door",       "table",     "chair",
    "bed",        "room",      "shirt",      "jacket",    "shoes",
    "bag",        "key",       "wallet",     "letter",    "package",
    "delivery",   "order",     "price",      "discount",  "salary",
    "tax",        "insurance", "policy",     "rule",      "law",
    "story",      "article",   "paper",      "draft",     "review",
    "feedback",   "bug",       "feature",    "release",   "version",
    "update",     "backup",    "file",       "folder",    "photo",
    "camera",     "video",     "language",   "course",    "lesson",
    "teacher",    "student",   "university", "hospital",  "nurse",
    "pharmacy",   "weather",   "rain",       "snow",      "storm",
    "morning",    "evening",   "night",      "week",      "month",
    "year",       "plant",     "flower",     "tree",      "fruit",
    "bread",      "cheese",    "wine",       "tea",       "cake",
};
static const char *const real_verbs[] = {
    "visit",     "call",     "finish",   "start",    "plan",      "book",
    "cancel",    "move",     "fix",      "buy",      "sell",      "cook",
    "clean",     "paint",    "watch",    "play",     "learn",     "teach",
    "help",      "ask",      "answer",   "open",     "close",     "send",
    "check",     "review",   "update",   "change",   "order",     "deliver",
    "return",    "borrow",   "lend",     "share",    "print",     "sign",
    "miss",      "enjoy",    "prefer",   "hate",     "love",      "like",
    "need",      "want",     "remember", "forget",   "discuss",   "mention",
    "recommend", "schedule", "postpone", "organize", "attend",    "join",
    "leave",     "travel",   "walk",     "drive",    "repair",    "install",
    "deploy",    "test",     "measure",  "compare",  "replace",   "water",
    "pack",      "unpack",   "rent",     "hire",     "interview", "invite",
    "celebrate", "train",
};
static const char *const real_adjs[] = {
    "new",       "old",    "big",     "small",     "good",      "bad",
    "important", "urgent", "late",    "early",     "expensive", "cheap",
    "quiet",     "loud",   "happy",   "sad",       "busy",      "free",
    "long",      "short",  "red",     "blue",      "green",     "black",
    "white",     "warm",   "cold",    "hot",       "fresh",     "broken",
    "final",     "weekly", "monthly", "annual",    "local",     "remote",
    "quick",     "slow",   "easy",    "difficult", "strange",   "favorite",
    "healthy",   "tired",  "nervous", "excited",   "careful",   "simple",
    "complex",   "public", "private", "official",  "spare",     "empty",
    "full",      "wooden", "digital", "vegan",
};
static const char *const real_advs[] = {
    "quickly",    "slowly",    "finally",  "again",   "always",
    "never",      "often",     "rarely",   "already", "soon",
    "early",      "carefully", "suddenly", "usually", "probably",
    "definitely", "together",  "alone",    "online",  "abroad",
};
static const char *const real_names[] = {
    "Anna",  "Ben",   "Carla",   "David", "Elena", "Felix",  "Grace",  "Hugo",
    "Iris",  "Jonas", "Kate",    "Liam",  "Maria", "Noah",   "Olivia", "Paul",
    "Quinn", "Rosa",  "Sam",     "Tina",  "Umar",  "Vera",   "Will",   "Xenia",
    "Yusuf", "Zoe",   "Alice",   "Bob",   "Chloe", "Daniel", "Emma",   "Frank",
    "Gina",  "Henry", "Ivan",    "Julia", "Karl",  "Laura",  "Mark",   "Nina",
    "Oscar", "Petra", "Rita",    "Simon", "Tom",   "Ursula", "Victor", "Wendy",
    "Aisha", "Bruno", "Camille", "Diego", "Eva",   "Fatima", "George", "Hana",
    "Igor",  "Jade",  "Kenji",   "Lena",  "Mei",   "Nils",   "Omar",   "Priya",
    "Ravi",  "Sofia", "Theo",    "Ulla",  "Vik",   "Yara",
};
static const char *const real_places[] = {
    "Paris",     "Berlin",   "London", "Tokyo",  "Madrid",  "Rome",
    "Lisbon",    "Vienna",   "Prague", "Oslo",   "Dublin",  "Boston",
    "Chicago",   "Seattle",  "Denver", "Austin", "Toronto", "Sydney",
    "Cairo",     "Nairobi",  "Lima",   "Mumbai", "Seoul",   "Zurich",
    "Amsterdam", "Brussels", "Warsaw", "Athens",
};
static const char *const months[] = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December",
};
static const char *const weekdays[] = {
    "Monday", "Tuesday",  "Wednesday", "Thursday",
    "Friday", "Saturday", "Sunday",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const *const real_lists[C_COUNT] = {
    real_nouns, real_verbs, real_adjs, real_advs, real_names, real_places};
static const size_t real_counts[C_COUNT] = {
    COUNT(real_nouns), COUNT(real_verbs), COUNT(real_adjs),
    COUNT(real_advs),  COUNT(real_names), COUNT(real_places)};

/* Sentences: a main clause, then clauses appended until the target length.
 * Slots: N noun, Ns plural, V verb, Vs verb+s, Ved past, Ving, A adjective,
 * R adverb, P name, L place, D date, M number, T time of day. */
static const char *const main_clauses[] = {
    "{P} {Ved} the {A} {N} at {L} on {D}",
    "I {Ved} {M} {Ns} for the {N} last week",
    "we need to {V} the {N} before {D}",
    "my {N} {Vs} {R} when the {N} is {A}",
    "{P} and {P} {Ved} about the {N} of the {A} {N}",
    "the {N} in {L} costs {M} dollars and {P} {Vs} it",
    "remember that {P} prefers {A} {Ns} over {Ns}",
    "yesterday {P} told me the {N} was {A} and {A}",
    "{P} is {Ving} a {A} {N} with {P} in {L}",
    "please {V} the {N} for {P} by {T} on {D}",
    "the {A} {N} {Ved} the {N} {R}",
    "{P} has {M} {Ns} and a {A} {N}",
    "{P}'s {N} {Vs} the {A} {N} every {D}",
    "I {R} {V} {A} {Ns} at the {N}",
    "our {N} {Ved} {M} {Ns} from {L}",
    "{P} asked me to {V} the {N} and the {N}",
};
static const char *const more_clauses[] = {
    "because the {N} {Ved} {R}",    "and then {P} {Ved} the {N}",
    "but the {A} {N} was {A}",      "so we {Ved} a {N} in {L}",
    "while {P} was {Ving} the {N}", "after the {N} {Vs} at {T}",
    "which {Ved} {M} {Ns}",         "and {P} {Vs} the {A} {N}",
    "with a {A} {N} from {P}",      "since {D}",
    "until the {N} is {A} again",   "even though {P} {Ved} the {N} {R}",
};
/* Questions: 3-8 words, content words biased to the middle ranks. */
static const char *const query_templates[] = {
    "what did {P} say about the {N}",
    "when did {P} {V} the {N}",
    "where is the {A} {N}",
    "{A} {N} {N}",
    "how many {Ns} does {P} have",
    "who {Ved} the {A} {N}",
    "what happened with the {N} and the {N}",
    "why was the {N} {A}",
    "tell me about {P} and the {N}",
    "which {N} {Vs} {R}",
    "{N} in {L}",
    "did we {V} the {A} {N} in {L}",
};

typedef struct word_class {
  size_t n;
  const char **words; /* base form, by rank */
  const char **forms; /* verbs: 3 forms per word (s, ed, ing); nouns: plural */
  double *cdf;        /* cumulative Zipf weights, cdf[n-1] == 1 */
} word_class;

struct corpus {
  uint64_t seed;
  word_class cls[C_COUNT];
  char *arena;
  size_t arena_len, arena_cap;
  /* word set, for uniqueness while building */
  const char **set;
  size_t set_cap;
  bench_rng text_rng;
  bench_rng query_rng;
};

/* ------------------------------------------------------------- building */

static const char *arena_put(corpus *c, const char *s, size_t n) {
  if (c->arena_len + n + 1 > c->arena_cap)
    return NULL;
  char *p = c->arena + c->arena_len;
  memcpy(p, s, n);
  p[n] = '\0';
  c->arena_len += n + 1;
  return p;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

/* Inserts w when absent; 1 when inserted, 0 when already there. The set is
 * sized for the whole vocabulary up front, so it never fills. */
static int set_add(corpus *c, const char *w) {
  size_t mask = c->set_cap - 1;
  for (size_t i = (size_t)fnv1a(w) & mask;; i = (i + 1) & mask) {
    if (!c->set[i]) {
      c->set[i] = w;
      return 1;
    }
    if (strcmp(c->set[i], w) == 0)
      return 0;
  }
}

static int set_has(const corpus *c, const char *w) {
  size_t mask = c->set_cap - 1;
  for (size_t i = (size_t)fnv1a(w) & mask; c->set[i]; i = (i + 1) & mask)
    if (strcmp(c->set[i], w) == 0)
      return 1;
  return 0;
}

static const char *const onsets[] = {
    "b", "br", "c", "ch", "d", "dr", "f",  "fl", "g",  "gr", "h",  "j",
    "k", "l",  "m", "n",  "p", "pl", "pr", "r",  "s",  "sh", "sl", "st",
    "t", "tr", "v", "w",  "z", "bl", "cr", "sp", "th", "qu",
};
static const char *const vowels[] = {"a", "e",  "i",  "o",  "u",  "a",  "e",
                                     "o", "ai", "ea", "ou", "io", "ee", "oa"};
static const char *const codas[] = {"",   "",   "",  "n",  "r",  "l",  "s", "t",
                                    "nd", "st", "m", "ck", "rn", "lt", "x"};
static const char *const noun_suffix[] = {"",     "",    "",    "er",  "tion",
                                          "ment", "ity", "ism", "age", "ery"};
static const char *const adj_suffix[] = {"al",  "ous", "ive", "ic",  "ful",
                                         "ant", "ish", "y",   "ent", "less"};
static const char *const verb_suffix[] = {"", "", "", "ate", "ize", "en"};

#define PICK(r, a) ((a)[bench_rng_below((r), COUNT(a))])

/* A pronounceable made-up word of the class, written into buf. */
static void make_word(bench_rng *r, int cls, char *buf, size_t cap) {
  size_t len = 0;
  int syll = bench_rng_range(r, 1, 3);
  buf[0] = '\0';
#define APPEND(s)                                                              \
  do {                                                                         \
    const char *s_ = (s); /* once: PICK draws a new word each time */          \
    size_t l_ = strlen(s_);                                                    \
    if (len + l_ < cap) {                                                      \
      memcpy(buf + len, s_, l_ + 1);                                           \
      len += l_;                                                               \
    }                                                                          \
  } while (0)
  for (int i = 0; i < syll; i++) {
    APPEND(PICK(r, onsets));
    APPEND(PICK(r, vowels));
    if (i == syll - 1 || bench_rng_below(r, 3) == 0)
      APPEND(PICK(r, codas));
  }
  switch (cls) {
  case C_NOUN:
    APPEND(PICK(r, noun_suffix));
    break;
  case C_VERB:
    APPEND(PICK(r, verb_suffix));
    break;
  case C_ADJ:
    APPEND(PICK(r, adj_suffix));
    break;
  case C_ADV:
    APPEND(PICK(r, adj_suffix));
    APPEND("ly");
    break;
  case C_NAME:
  case C_PLACE:
    if (buf[0] >= 'a' && buf[0] <= 'z')
      buf[0] = (char)(buf[0] - 'a' + 'A');
    if (cls == C_PLACE)
      APPEND(bench_rng_below(r, 2) ? "ton" : "burg");
    break;
  }
#undef APPEND
}

static int is_vowel(char ch) {
  return ch == 'a' || ch == 'e' || ch == 'i' || ch == 'o' || ch == 'u';
}

/* English-ish inflection: kind 's' (plural / third person), 'd' (past),
 * 'g' (-ing). */
static void inflect(const char *w, int kind, char *buf, size_t cap) {
  size_t n = strlen(w);
  const char *suffix;
  size_t keep = n;
  char last = n ? w[n - 1] : '\0';
  char prev = n > 1 ? w[n - 2] : '\0';
  if (kind == 's') {
    if (last == 's' || last == 'x' || last == 'z' ||
        (last == 'h' && (prev == 'c' || prev == 's')))
      suffix = "es";
    else if (last == 'y' && !is_vowel(prev))
      keep--, suffix = "ies";
    else
      suffix = "s";
  } else if (kind == 'd') {
    if (last == 'e')
      suffix = "d";
    else if (last == 'y' && !is_vowel(prev))
      keep--, suffix = "ied";
    else
      suffix = "ed";
  } else {
    if (last == 'e' && prev != 'e' && n > 2)
      keep--;
    suffix = "ing";
  }
  size_t sl = strlen(suffix);
  if (keep + sl + 1 > cap) {
    keep = 0;
    sl = 0;
  }
  memcpy(buf, w, keep);
  memcpy(buf + keep, suffix, sl);
  buf[keep + sl] = '\0';
}

/* Irregular pasts of the real verbs (the rest follow inflect()). */
static const char *irregular_past(const char *v) {
  static const char *const pairs[][2] = {
      {"buy", "bought"},  {"sell", "sold"},     {"teach", "taught"},
      {"send", "sent"},   {"lend", "lent"},     {"leave", "left"},
      {"drive", "drove"}, {"forget", "forgot"}, {"pay", "paid"},
  };
  for (size_t i = 0; i < COUNT(pairs); i++)
    if (strcmp(pairs[i][0], v) == 0)
      return pairs[i][1];
  return NULL;
}

static int build_class(corpus *c, bench_rng *r, int cls, size_t n) {
  word_class *wc = &c->cls[cls];
  wc->n = n;
  wc->words = calloc(n, sizeof *wc->words);
  wc->cdf = calloc(n, sizeof *wc->cdf);
  size_t nforms = cls == C_VERB ? 3 : cls == C_NOUN ? 1 : 0;
  wc->forms = nforms ? calloc(n * nforms, sizeof *wc->forms) : NULL;
  if (!wc->words || !wc->cdf || (nforms && !wc->forms))
    return -1;
  char buf[96];
  size_t i = 0;
  for (size_t k = 0; k < real_counts[cls] && i < n; k++) {
    const char *w =
        arena_put(c, real_lists[cls][k], strlen(real_lists[cls][k]));
    if (!w)
      return -1;
    if (set_add(c, w) || cls == C_VERB || cls == C_ADV)
      wc->words[i++] = w; /* "plan" is a noun and a verb */
  }
  while (i < n) {
    make_word(r, cls, buf, sizeof buf);
    if (strlen(buf) < 4 || set_has(c, buf))
      continue;
    const char *w = arena_put(c, buf, strlen(buf));
    if (!w)
      return -1;
    set_add(c, w);
    wc->words[i++] = w;
  }
  for (i = 0; i < n; i++) {
    const char *w = wc->words[i];
    if (cls == C_NOUN) {
      inflect(w, 's', buf, sizeof buf);
      if (!(wc->forms[i] = arena_put(c, buf, strlen(buf))))
        return -1;
    } else if (cls == C_VERB) {
      static const int kinds[3] = {'s', 'd', 'g'};
      for (size_t k = 0; k < 3; k++) {
        const char *irr = k == 1 ? irregular_past(w) : NULL;
        if (irr)
          snprintf(buf, sizeof buf, "%s", irr);
        else
          inflect(w, kinds[k], buf, sizeof buf);
        if (!(wc->forms[i * 3 + k] = arena_put(c, buf, strlen(buf))))
          return -1;
      }
    }
  }
  double sum = 0;
  for (i = 0; i < n; i++) {
    sum += 1.0 / pow((double)(i + 1), ZIPF_S);
    wc->cdf[i] = sum;
  }
  for (i = 0; i < n; i++)
    wc->cdf[i] /= sum;
  wc->cdf[n - 1] = 1.0;
  return 0;
}

void corpus_rewind(corpus *c) {
  bench_rng_seed(&c->text_rng, c->seed ^ 0x7465787473656564ull);
  bench_rng_seed(&c->query_rng, c->seed ^ 0x7175657279736565ull);
}

corpus *corpus_new(uint64_t seed, size_t vocab_size) {
  if (vocab_size == 0)
    vocab_size = CORPUS_DEFAULT_VOCAB;
  if (vocab_size < 200)
    vocab_size = 200;
  corpus *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->seed = seed;
  /* words (base + up to 3 forms) of at most ~40 bytes each */
  c->arena_cap = vocab_size * 4 * 40 + 16384;
  c->arena = malloc(c->arena_cap);
  c->set_cap = 1;
  while (c->set_cap < vocab_size * 4)
    c->set_cap <<= 1;
  c->set = calloc(c->set_cap, sizeof *c->set);
  if (!c->arena || !c->set) {
    corpus_free(c);
    return NULL;
  }
  bench_rng r;
  bench_rng_seed(&r, seed);
  for (int k = 0; k < C_COUNT; k++) {
    size_t n = vocab_size * class_share[k] / 1000;
    if (n < 10)
      n = 10;
    if (build_class(c, &r, k, n) != 0) {
      corpus_free(c);
      return NULL;
    }
  }
  free(c->set); /* only needed while building */
  c->set = NULL;
  corpus_rewind(c);
  return c;
}

void corpus_free(corpus *c) {
  if (!c)
    return;
  for (int k = 0; k < C_COUNT; k++) {
    free(c->cls[k].words);
    free(c->cls[k].forms);
    free(c->cls[k].cdf);
  }
  free(c->set);
  free(c->arena);
  free(c);
}

/* ------------------------------------------------------------ sampling */

/* A rank in [lo, hi) drawn from the class's Zipf distribution restricted
 * to that range. */
static size_t zipf_rank(const word_class *wc, bench_rng *r, size_t lo,
                        size_t hi) {
  double base = lo ? wc->cdf[lo - 1] : 0.0;
  double u = base + bench_rng_double(r) * (wc->cdf[hi - 1] - base);
  size_t a = lo, b = hi - 1;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (wc->cdf[mid] > u)
      b = mid;
    else
      a = mid + 1;
  }
  return a;
}

/* Query words skip the most frequent ranks of a class (those match a large
 * share of all rows) and the rarest half (those match almost none). */
static size_t draw(const word_class *wc, bench_rng *r, int mid_biased) {
  if (!mid_biased || wc->n < 40)
    return zipf_rank(wc, r, 0, wc->n);
  return zipf_rank(wc, r, wc->n / 100 + 3, wc->n / 2);
}

typedef struct writer {
  char *buf;
  size_t cap, len;
  int words;
  int full;
} writer;

static void put_word(writer *w, const char *s, size_t n) {
  if (w->full)
    return;
  size_t sep = w->len ? 1 : 0;
  if (w->len + sep + n + 1 > w->cap) {
    w->full = 1;
    return;
  }
  /* "a urgent" -> "an urgent" */
  if (sep && n > 0 && is_vowel(s[0]) && w->len >= 1 &&
      w->buf[w->len - 1] == 'a' && (w->len == 1 || w->buf[w->len - 2] == ' ')) {
    if (w->len + 1 + sep + n + 1 > w->cap) {
      w->full = 1;
      return;
    }
    w->buf[w->len++] = 'n';
  }
  if (sep)
    w->buf[w->len++] = ' ';
  memcpy(w->buf + w->len, s, n);
  w->len += n;
  w->buf[w->len] = '\0';
  w->words++;
}

/* Appends the word for one slot, with the literal suffix glued on. */
static void put_slot(corpus *c, writer *w, bench_rng *r, const char *slot,
                     size_t slot_len, const char *suffix, size_t suffix_len,
                     int mid_biased) {
  char buf[128];
  const char *word = NULL;
  const word_class *wc;
  size_t i;
#define IS(s) (slot_len == strlen(s) && memcmp(slot, s, slot_len) == 0)
  if (IS("N") || IS("Ns")) {
    wc = &c->cls[C_NOUN];
    i = draw(wc, r, mid_biased);
    word = IS("Ns") ? wc->forms[i] : wc->words[i];
  } else if (IS("V") || IS("Vs") || IS("Ved") || IS("Ving")) {
    wc = &c->cls[C_VERB];
    i = draw(wc, r, mid_biased);
    word = IS("V")     ? wc->words[i]
           : IS("Vs")  ? wc->forms[i * 3]
           : IS("Ved") ? wc->forms[i * 3 + 1]
                       : wc->forms[i * 3 + 2];
  } else if (IS("A")) {
    wc = &c->cls[C_ADJ];
    word = wc->words[draw(wc, r, mid_biased)];
  } else if (IS("R")) {
    wc = &c->cls[C_ADV];
    word = wc->words[draw(wc, r, mid_biased)];
  } else if (IS("P")) {
    wc = &c->cls[C_NAME];
    word = wc->words[draw(wc, r, 0)];
  } else if (IS("L")) {
    wc = &c->cls[C_PLACE];
    word = wc->words[draw(wc, r, 0)];
  } else if (IS("M")) {
    uint64_t v = bench_rng_below(r, 10) < 8 ? 1 + bench_rng_below(r, 30)
                                            : 100 + bench_rng_below(r, 9900);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    word = buf;
  } else if (IS("T")) {
    int h = bench_rng_range(r, 1, 12);
    if (bench_rng_below(r, 2))
      snprintf(buf, sizeof buf, "%d %s", h,
               bench_rng_below(r, 2) ? "pm" : "am");
    else
      snprintf(buf, sizeof buf, "%d:%02d", h, (int)bench_rng_below(r, 4) * 15);
    word = buf;
  } else if (IS("D")) {
    switch (bench_rng_below(r, 3)) {
    case 0:
      snprintf(buf, sizeof buf, "%s", PICK(r, weekdays));
      break;
    case 1:
      snprintf(buf, sizeof buf, "%s %d", PICK(r, months),
               bench_rng_range(r, 1, 28));
      break;
    default:
      snprintf(buf, sizeof buf, "%d %s %d", bench_rng_range(r, 1, 28),
               PICK(r, months), bench_rng_range(r, 2019, 2025));
      break;
    }
    word = buf;
  } else {
    word = "?";
  }
#undef IS
  /* A slot may expand to several words ("May 14"): each counts. */
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s%.*s", word, (int)suffix_len, suffix);
  for (char *p = tmp; *p;) {
    char *sp = strchr(p, ' ');
    size_t n = sp ? (size_t)(sp - p) : strlen(p);
    put_word(w, p, n);
    p += n;
    while (*p == ' ')
      p++;
  }
}

static void expand(corpus *c, writer *w, bench_rng *r, const char *tpl,
                   int mid_biased) {
  const char *p = tpl;
  while (*p) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    const char *end = strchr(p, ' ');
    if (!end)
      end = p + strlen(p);
    if (*p == '{') {
      const char *close = memchr(p, '}', (size_t)(end - p));
      if (close) {
        put_slot(c, w, r, p + 1, (size_t)(close - p - 1), close + 1,
                 (size_t)(end - close - 1), mid_biased);
        p = end;
        continue;
      }
    }
    put_word(w, p, (size_t)(end - p));
    p = end;
  }
}

size_t corpus_sentence(corpus *c, char *buf, size_t cap) {
  if (cap == 0)
    return 0;
  buf[0] = '\0';
  writer w = {buf, cap, 0, 0, 0};
  bench_rng *r = &c->text_rng;
  /* Lengths: mostly 10-20 words, a tail up to 30. */
  int target = bench_rng_range(r, 8, 16) + bench_rng_range(r, 0, 14);
  expand(c, &w, r, PICK(r, main_clauses), 0);
  /* Whole clauses only: one that would pass 30 words is taken back and
   * another tried; after a few misses the sentence ends where it is. */
  for (int misses = 0; w.words < target && misses < 4;) {
    size_t len = w.len;
    int words = w.words;
    expand(c, &w, r, PICK(r, more_clauses), 0);
    if (w.words > 30 || w.full) {
      w.len = len;
      w.words = words;
      w.full = 0;
      buf[len] = '\0';
      misses++;
    }
  }
  if (w.len > 0) {
    if (buf[0] >= 'a' && buf[0] <= 'z')
      buf[0] = (char)(buf[0] - 'a' + 'A');
    if (w.len + 2 <= cap) {
      uint64_t p = bench_rng_below(r, 20);
      buf[w.len++] = p == 0 ? '!' : p == 1 ? '?' : '.';
      buf[w.len] = '\0';
    }
  }
  return w.len;
}

size_t corpus_query(corpus *c, char *buf, size_t cap) {
  if (cap == 0)
    return 0;
  buf[0] = '\0';
  writer w = {buf, cap, 0, 0, 0};
  expand(c, &w, &c->query_rng, PICK(&c->query_rng, query_templates), 1);
  if (w.len > 0 && w.len + 2 <= cap && bench_rng_below(&c->query_rng, 2)) {
    buf[w.len++] = '?';
    buf[w.len] = '\0';
  }
  return w.len;
}
