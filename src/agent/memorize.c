/*
 * memorize.c — storing a conversation turn: the user's message and the
 * reply as episodic memories, the exchange as a working memory, and the
 * links between them, as one atomic write (one engram_write batch, so one
 * transaction: a crash leaves all of it or none).
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/core.h"
#include "engram_internal.h"

typedef struct turn_req {
  engram_turn_cb cb;
  void *data;
} turn_req;

static void on_written(int status, engram_op *ops, size_t n, void *data) {
  turn_req *t = data;
  const char *message = status == 0 ? "" : engram_strerror(status);
  for (size_t i = 0; i < n; i++)
    if (ops[i].status != 0 && ops[i].message[0]) {
      message = ops[i].message;
      break;
    }
  if (status == 0)
    t->cb(0, ops[0].result_id, ops[1].result_id, ops[2].result_id, message,
          t->data);
  else
    t->cb(status, NULL, NULL, NULL, message, t->data);
  free(t);
}

int engram_memorize_turn(engram *eg, const char *ns, const char *user_text,
                         const char *assistant_text, engram_turn_cb cb,
                         void *data) {
  if (!eg || !user_text || !assistant_text || !cb)
    return ENGRAM_EINVAL;
  char user_id[ENGRAM_ID_LEN + 1], reply_id[ENGRAM_ID_LEN + 1],
      exchange_id[ENGRAM_ID_LEN + 1];
  engram_id_new(user_id);
  engram_id_new(reply_id);
  engram_id_new(exchange_id);

  /* The exchange holds both sides, cut to the content limit so that two
   * valid sides always make a valid exchange; engram_write still refuses
   * the whole turn if either side itself is invalid. */
  buf exchange;
  buf_init(&exchange);
  buf_adds(&exchange, "user: ");
  buf_adds(&exchange, user_text);
  buf_adds(&exchange, "\nassistant: ");
  buf_adds(&exchange, assistant_text);
  if (exchange.oom) {
    buf_free(&exchange);
    return ENGRAM_ENOMEM;
  }
  size_t limit = engram_opts(eg)->max_content_bytes;
  if (exchange.len > limit && core_utf8_valid(exchange.data, exchange.len))
    exchange.len = core_utf8_cut(exchange.data, exchange.len, limit);

  engram_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0] = (engram_op){.kind = ENGRAM_OP_ADD, .ns = ns, .id = user_id,
                       .type = ENGRAM_EPISODIC, .content = user_text,
                       .metadata = "{\"role\":\"user\"}"};
  ops[1] = (engram_op){.kind = ENGRAM_OP_ADD, .ns = ns, .id = reply_id,
                       .type = ENGRAM_EPISODIC, .content = assistant_text,
                       .metadata = "{\"role\":\"assistant\"}"};
  ops[2] = (engram_op){.kind = ENGRAM_OP_ADD, .ns = ns, .id = exchange_id,
                       .type = ENGRAM_WORKING, .content = exchange.data,
                       .content_len = exchange.len,
                       .metadata = "{\"role\":\"exchange\"}"};
  ops[3] = (engram_op){.kind = ENGRAM_OP_LINK, .ns = ns, .source = reply_id,
                       .target = user_id, .rel_kind = "reply-to",
                       .strength = 1.0};
  ops[4] = (engram_op){.kind = ENGRAM_OP_LINK, .ns = ns, .source = user_id,
                       .target = exchange_id, .rel_kind = "part-of",
                       .strength = 1.0};
  ops[5] = (engram_op){.kind = ENGRAM_OP_LINK, .ns = ns, .source = reply_id,
                       .target = exchange_id, .rel_kind = "part-of",
                       .strength = 1.0};
  turn_req *t = malloc(sizeof *t);
  if (!t) {
    buf_free(&exchange);
    return ENGRAM_ENOMEM;
  }
  t->cb = cb;
  t->data = data;
  int rc = engram_write(eg, ops, 6, on_written, t);
  buf_free(&exchange); /* engram_write copied it */
  if (rc != 0)
    free(t);
  return rc;
}
