/*
 * locomo.c — LoCoMo conversations as memories.
 *
 * A LoCoMo conversation (the benchmark of Maharana et al., ACL 2024) is a
 * JSON object with speaker_a, speaker_b, and per session K a list of turns
 * "session_K" ({speaker, dia_id, text, blip_caption?}) and a time
 * "session_K_date_time". The benchmark's own file (locomo10.json) is an
 * array of samples that hold it under "conversation" next to "sample_id";
 * the per-conversation files in ../shared/data/locomo are the bare object.
 * Both shapes are read.
 *
 * Each turn becomes an episodic memory "SPEAKER: text" (plus " [shares an
 * image: CAPTION]" when the turn shared an image, so its words are
 * searchable) with metadata {speaker, dia_id, session, session_time}: the
 * dia_id is what the benchmark's evidence lists refer to.
 */
#include <stdlib.h>
#include <string.h>

#include "import.h"

static int is_conversation(const json_t *o) {
  if (!json_is_object(o))
    return 0;
  return json_is_object(json_object_get(o, "conversation")) ||
         json_is_array(json_object_get(o, "session_1"));
}

int locomo_detect(const json_t *doc) {
  if (is_conversation(doc))
    return 1;
  if (!json_is_array(doc) || json_array_size(doc) == 0)
    return 0;
  size_t i;
  const json_t *v;
  json_array_foreach(doc, i, v) {
    if (!is_conversation(v))
      return 0;
  }
  return 1;
}

/* "session_K" exactly (K >= 1), else 0. */
static unsigned session_number(const char *key) {
  if (strncmp(key, "session_", 8) != 0)
    return 0;
  const char *p = key + 8;
  if (*p < '1' || *p > '9')
    return 0;
  unsigned n = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || n > 100000)
      return 0;
    n = n * 10 + (unsigned)(*p - '0');
  }
  return n;
}

typedef struct session {
  unsigned n;
  json_t *turns;
} session;

static int by_number(const void *a, const void *b) {
  unsigned x = ((const session *)a)->n, y = ((const session *)b)->n;
  return (x > y) - (x < y);
}

char *locomo_file_stem(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t len = strlen(base);
  if (len > 5 && strcmp(base + len - 5, ".json") == 0)
    len -= 5;
  return len ? strndup(base, len) : NULL;
}

static const char *conversation_ns(import_ctx *im, const json_t *sample,
                                   const json_t *conv, const char *path) {
  if (im->c->ns_given)
    return im->c->ns;
  const char *id = json_string_value(json_object_get(sample, "sample_id"));
  if (!id)
    id = json_string_value(json_object_get(conv, "sample_id"));
  if (id && *id)
    return id;
  if (strcmp(path, "-") != 0) {
    const char *stem = import_keep_name(im, locomo_file_stem(path));
    if (stem)
      return stem;
  }
  return im->c->ns;
}

static void import_turn(import_ctx *im, json_t *sample, const char *ns,
                        unsigned n, const char *time, json_t *turn,
                        size_t index, const char *file) {
  char where[64];
  const char *dia = json_string_value(json_object_get(turn, "dia_id"));
  if (dia)
    snprintf(where, sizeof where, "session_%u:%s", n, dia);
  else
    snprintf(where, sizeof where, "session_%u:turn %zu", n, index + 1);
  im->records++;
  const char *speaker = json_string_value(json_object_get(turn, "speaker"));
  const char *text = json_string_value(json_object_get(turn, "text"));
  if (!json_is_object(turn) || !speaker || !text) {
    import_bad(im, file, where,
               "a turn needs \"speaker\" and \"text\" strings; skipped");
    return;
  }
  const char *caption =
      json_string_value(json_object_get(turn, "blip_caption"));
  char *content;
  int len = caption && *caption
                ? asprintf(&content, "%s: %s [shares an image: %s]", speaker,
                           text, caption)
                : asprintf(&content, "%s: %s", speaker, text);
  if (len < 0) {
    import_bad(im, file, where, "out of memory");
    return;
  }
  json_t *md = json_object();
  json_object_set_new(md, "speaker", json_string(speaker));
  if (dia)
    json_object_set_new(md, "dia_id", json_string(dia));
  json_object_set_new(md, "session", json_integer(n));
  if (time)
    json_object_set_new(md, "session_time", json_string(time));
  char *metadata = json_dumps(md, JSON_COMPACT);
  json_decref(md);
  if (!metadata) {
    free(content);
    import_bad(im, file, where, "out of memory");
    return;
  }
  engram_op op = {.kind = ENGRAM_OP_ADD,
                  .ns = ns,
                  .type = ENGRAM_EPISODIC,
                  .content = content,
                  .content_len = (size_t)len,
                  .metadata = metadata,
                  .set = ENGRAM_SET_CONTENT | ENGRAM_SET_TYPE |
                         ENGRAM_SET_METADATA,
                  .dedup = im->dedup};
  /* ns may point into sample: keep the document alive until submitted. */
  writer_add(im->w, &op, file, where, json_incref(sample), content, metadata);
  im->done++;
  import_progress(im);
}

json_t *locomo_conversation(json_t *sample) {
  json_t *conv = json_object_get(sample, "conversation");
  return json_is_object(conv) ? conv : sample;
}

void locomo_import_conversation(import_ctx *im, json_t *sample, const char *ns,
                                const char *file, const char *path) {
  json_t *conv = locomo_conversation(sample);
  if (!ns)
    ns = conversation_ns(im, sample, conv, path);

  size_t count = 0, cap = 16;
  session *sessions = malloc(cap * sizeof *sessions);
  const char *key;
  json_t *value;
  json_object_foreach(conv, key, value) {
    unsigned n = session_number(key);
    if (!n || !json_is_array(value) || !sessions)
      continue;
    if (count == cap) {
      session *bigger = realloc(sessions, 2 * cap * sizeof *sessions);
      if (!bigger)
        break;
      sessions = bigger;
      cap *= 2;
    }
    sessions[count++] = (session){n, value};
  }
  if (!sessions) {
    import_bad(im, file, "", "out of memory");
    return;
  }
  qsort(sessions, count, sizeof *sessions, by_number);
  for (size_t s = 0; s < count; s++) {
    char time_key[48];
    snprintf(time_key, sizeof time_key, "session_%u_date_time", sessions[s].n);
    const char *time = json_string_value(json_object_get(conv, time_key));
    size_t i;
    json_t *turn;
    json_array_foreach(sessions[s].turns, i, turn) {
      import_turn(im, sample, ns, sessions[s].n, time, turn, i, file);
    }
  }
  free(sessions);
}

size_t locomo_count_turns(json_t *sample) {
  const json_t *conv = locomo_conversation(sample);
  size_t total = 0;
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)conv, key, value) {
    if (session_number(key) && json_is_array(value))
      total += json_array_size(value);
  }
  return total;
}

void locomo_import(import_ctx *im, json_t *doc, const char *file,
                   const char *path) {
  im->done = 0;
  im->unit = "turns";
  if (json_is_array(doc)) {
    size_t i;
    json_t *sample;
    im->total = 0;
    json_array_foreach(doc, i, sample) {
      im->total += locomo_count_turns(sample);
    }
    json_array_foreach(doc, i, sample) {
      locomo_import_conversation(im, sample, NULL, file, path);
    }
  } else {
    im->total = locomo_count_turns(doc);
    locomo_import_conversation(im, doc, NULL, file, path);
  }
}
