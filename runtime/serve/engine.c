/* engine.c - vx-serve's engine (engine.h): a queue of requests, up to max_batch decoding at
 * once; each admitted request is prefilled in chunks (dense attention over the K/V it has
 * appended to the cache, read back through the attention backend), then all active requests
 * advance one token per step with their matrix products batched. Sits under runtime/serve/;
 * reaches the KV cache and the policies only through attn.h. Never prints, never exits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

struct serve_engine {
  const model *m;
  serve_attn *attn;
  int max_batch, chunk, width;
  forward_scratch fs;
  float *x, *K, *V, *logits, *err, *mass;
  int *tok, *pos;
  attn_row *rows;
  engine_request *head, *tail;   /* the queue */
  engine_request **active;
  int nactive;
  engine_stats st;
};

int engine_create(const model *m, serve_attn *attn, int max_batch, int chunk, serve_engine **out,
                  char *err) {
  *out = NULL;
  const model_config *c = &m->cfg;
  if (max_batch < 1 || chunk < 1)
    return serve_errf(err, "engine: batch and chunk must be at least 1");
  serve_engine *e = calloc(1, sizeof *e);
  if (!e)
    return serve_errf(err, "out of memory");
  e->m = m;
  e->attn = attn;
  e->max_batch = max_batch;
  e->chunk = chunk;
  e->width = chunk > max_batch ? chunk : max_batch;
  size_t w = (size_t)e->width, kvd = (size_t)c->kv_heads * c->head_dim;
  e->x = malloc(w * c->dim * sizeof(float));
  e->K = malloc((size_t)c->ctx * kvd * sizeof(float));
  e->V = malloc((size_t)c->ctx * kvd * sizeof(float));
  e->logits = malloc((size_t)max_batch * c->vocab * sizeof(float));
  e->err = malloc((size_t)max_batch * c->kv_heads * sizeof(float));
  e->mass = malloc((size_t)max_batch * c->kv_heads * sizeof(float));
  e->tok = malloc(w * sizeof(int));
  e->pos = malloc(w * sizeof(int));
  e->rows = malloc((size_t)max_batch * sizeof(attn_row));
  e->active = calloc((size_t)max_batch, sizeof(engine_request *));
  if (!e->x || !e->K || !e->V || !e->logits || !e->err || !e->mass || !e->tok || !e->pos ||
      !e->rows || !e->active || forward_scratch_init(&e->fs, c, e->width, c->ctx) != 0) {
    engine_free(e);
    return serve_errf(err, "out of memory for the engine (batch %d, chunk %d, context %d)", max_batch,
                chunk, c->ctx);
  }
  *out = e;
  return 0;
}

void engine_free(serve_engine *e) {
  if (!e)
    return;
  forward_scratch_free(&e->fs);
  free(e->x);
  free(e->K);
  free(e->V);
  free(e->logits);
  free(e->err);
  free(e->mass);
  free(e->tok);
  free(e->pos);
  free(e->rows);
  free(e->active);
  free(e);
}

const engine_stats *engine_get_stats(const serve_engine *e) { return &e->st; }

void engine_request_release(engine_request *r) {
  free(r->out);
  r->out = NULL;
  sampler_free(&r->smp);
}

int engine_submit(serve_engine *e, engine_request *r, char *err) {
  const model_config *c = &e->m->cfg;
  if (r->nprompt < 1)
    return serve_errf(err, "empty prompt (a request needs at least the BOS token)");
  if (r->nprompt > c->ctx)
    return serve_errf(err, "prompt of %d tokens is longer than the model's context of %d tokens",
                r->nprompt, c->ctx);
  for (int i = 0; i < r->nprompt; i++)
    if (r->prompt[i] < 0 || r->prompt[i] >= c->vocab)
      return serve_errf(err, "prompt token %d at position %d is outside the vocabulary (%d)",
                  r->prompt[i], i, c->vocab);
  if (r->max_new < 1)
    r->max_new = 1;
  if (r->max_new > c->ctx - r->nprompt + 1)
    r->max_new = c->ctx - r->nprompt + 1;
  r->out = malloc((size_t)r->max_new * sizeof(int));
  if (!r->out || sampler_init(&r->smp, &r->sample, c->vocab) != 0)
    return serve_errf(err, "out of memory");
  r->nout = r->done = r->stopped = r->admitted = 0;
  r->nll = 0;
  r->nnll = r->agree = 0;
  for (int i = 0; i < r->nforce; i++)
    if (r->force[i] < 0 || r->force[i] >= c->vocab)
      return serve_errf(err, "forced token %d at position %d is outside the vocabulary (%d)",
                  r->force[i], i, c->vocab);
  r->row = -1;
  r->next = NULL;
  if (r->measure && r->acc)
    for (int i = 0; i < c->layers * c->kv_heads; i++)
      r->acc[i] = (engine_acc){0, 0, 0, INFINITY, 0};
  if (e->tail)
    e->tail->next = r;
  else
    e->head = r;
  e->tail = r;
  return 0;
}

/* log p(tok) under the softmax of logits[vocab]. */
static double log_prob(const float *logits, int vocab, int tok) {
  double mx = logits[sample_argmax(logits, vocab)], sum = 0;
  for (int i = 0; i < vocab; i++)
    sum += exp((double)logits[i] - mx);
  return logits[tok] - mx - log(sum);
}

/* The next token of r from its logits: sampled, or the forced one (teacher forcing, whose
 * negative log-likelihood is accumulated for perplexity). */
static void emit(engine_request *r, const float *logits, int vocab) {
  int tok;
  if (r->force && r->nout < r->nforce) {
    tok = r->force[r->nout];
    r->nll -= log_prob(logits, vocab, tok);
    r->nnll++;
    r->agree += sample_argmax(logits, vocab) == tok;
  } else {
    tok = sampler_next(&r->smp, logits);
  }
  if (r->logprob)
    r->logprob[r->nout] = (float)log_prob(logits, vocab, tok);
  for (int i = 0; i < r->nstop; i++)
    if (tok == r->stop[i]) {
      r->done = r->stopped = 1;
      return;
    }
  r->out[r->nout++] = tok;
  r->last = tok;
  if (r->nout >= r->max_new)
    r->done = 1;
}

static void unqueue(serve_engine *e, engine_request *r) {
  engine_request **p = &e->head, *prev = NULL;
  while (*p && *p != r) {
    prev = *p;
    p = &(*p)->next;
  }
  if (!*p)
    return;
  *p = r->next;
  if (e->tail == r)
    e->tail = prev;
  r->next = NULL;
}

#define ATTN(call)                                                   \
  do {                                                               \
    if (e->attn->ops->call != 0)                                     \
      return serve_errf(err, "%s", e->attn->err);                          \
  } while (0)

/* Prefills r (and its twin, when queued: the same K/V appended to both rows). */
static int admit(serve_engine *e, engine_request *r, char *err) {
  const model *m = e->m;
  const model_config *c = &m->cfg;
  engine_request *tw = r->twin && !r->twin->admitted && !r->twin->done ? r->twin : NULL;
  unqueue(e, r);
  if (tw)
    unqueue(e, tw);
  ATTN(row_open(e->attn, &r->row));
  r->admitted = 1;
  e->active[e->nactive++] = r;
  if (tw) {
    ATTN(row_open(e->attn, &tw->row));
    tw->admitted = 1;
    e->active[e->nactive++] = tw;
  }
  double t0 = serve_now();
  int D = c->head_dim;
  for (int s = 0; s < r->nprompt; s += e->chunk) {
    int n = r->nprompt - s < e->chunk ? r->nprompt - s : e->chunk;
    for (int i = 0; i < n; i++)
      e->pos[i] = s + i;
    forward_embed(m, r->prompt + s, n, e->x);
    for (int l = 0; l < c->layers; l++) {
      forward_qkv(m, l, e->x, e->pos, n, &e->fs);
      ATTN(append(e->attn, r->row, l, e->fs.k, e->fs.v, n));
      if (tw)
        ATTN(append(e->attn, tw->row, l, e->fs.k, e->fs.v, n));
      ATTN(read(e->attn, r->row, l, s + n, e->K, e->V));
      forward_prefill_attention(m, e->K, e->V, s, n, &e->fs);
      forward_out_mlp(m, l, e->x, n, &e->fs);
    }
    /* FLOPs: 2 per weight per token; attention 4 D per (query head, visible key), causal */
    e->st.prefill_flops += 2.0 * n * model_matrix_params(c) +
                           4.0 * D * c->heads * c->layers * ((double)n * s + (double)n * (n + 1) / 2);
    if (s + n == r->nprompt)
      forward_logits(m, e->x + (size_t)(n - 1) * c->dim, 1, e->logits, &e->fs);
  }
  ATTN(prefill(e->attn, r->row, r->sparse));
  if (tw)
    ATTN(prefill(e->attn, tw->row, tw->sparse));
  e->st.prefill_tokens += r->nprompt;
  e->st.prefill_s += serve_now() - t0;
  r->pos = r->nprompt;
  emit(r, e->logits, c->vocab); /* sampling reads the logits, never writes them */
  if (tw) {
    tw->pos = tw->nprompt;
    emit(tw, e->logits, c->vocab);
  }
  return 0;
}

/* Closes the rows of finished requests and drops them from the active set. */
static int retire(serve_engine *e, char *err) {
  int k = 0;
  for (int i = 0; i < e->nactive; i++) {
    engine_request *r = e->active[i];
    if (r->done) {
      ATTN(row_close(e->attn, r->row));
      r->row = -1;
    } else {
      e->active[k++] = r;
    }
  }
  e->nactive = k;
  return 0;
}

static int decode_step(serve_engine *e, char *err) {
  const model *m = e->m;
  const model_config *c = &m->cfg;
  int B = e->nactive, kvh = c->kv_heads;
  double t0 = serve_now();
  for (int i = 0; i < B; i++) {
    engine_request *r = e->active[i];
    e->tok[i] = r->last;
    e->pos[i] = r->pos;
    e->rows[i] = (attn_row){r->row, r->sparse, r->measure && r->acc};
  }
  forward_embed(m, e->tok, B, e->x);
  if (e->attn->ops->step_begin)
    ATTN(step_begin(e->attn, B, e->rows));
  for (int l = 0; l < c->layers; l++) {
    forward_qkv(m, l, e->x, e->pos, B, &e->fs);
    ATTN(decode(e->attn, l, B, e->rows, e->fs.k, e->fs.v, e->fs.q, e->fs.att, e->err, e->mass));
    for (int i = 0; i < B; i++) {
      engine_request *r = e->active[i];
      if (!e->rows[i].measure)
        continue;
      if (r->on_measure)
        r->on_measure(r->user, r, l, e->err + i * kvh, e->mass + i * kvh);
      for (int h = 0; h < kvh; h++) {
        engine_acc *a = &r->acc[l * kvh + h];
        double er = e->err[i * kvh + h], ms = e->mass[i * kvh + h];
        if (isnan(er))
          continue;
        a->err_sum += er;
        a->mass_sum += ms;
        a->err_max = er > a->err_max ? er : a->err_max;
        a->mass_min = ms < a->mass_min ? ms : a->mass_min;
        a->n++;
      }
    }
    forward_out_mlp(m, l, e->x, B, &e->fs);
  }
  if (e->attn->ops->step_end)
    ATTN(step_end(e->attn));
  forward_logits(m, e->x, B, e->logits, &e->fs);
  for (int i = 0; i < B; i++) {
    engine_request *r = e->active[i];
    r->pos++;
    emit(r, e->logits + (size_t)i * c->vocab, c->vocab);
  }
  e->st.decode_tokens += B;
  e->st.decode_s += serve_now() - t0;
  return 0;
}

int engine_step(serve_engine *e, char *err) {
  while (e->head) {
    engine_request *r = e->head;
    int need = 1 + (r->twin && !r->twin->admitted && !r->twin->done);
    if (need > e->max_batch) { /* no room for the pair: prefill each alone */
      r->twin = NULL;
      need = 1;
    }
    if (e->nactive + need > e->max_batch)
      break;
    if (admit(e, r, err) != 0)
      return -1;
  }
  if (retire(e, err) != 0)
    return -1;
  if (e->nactive > 0) {
    if (decode_step(e, err) != 0 || retire(e, err) != 0)
      return -1;
  }
  int left = e->nactive;
  for (engine_request *r = e->head; r; r = r->next)
    left++;
  return left;
}

int engine_cancel(serve_engine *e, engine_request *r, char *err) {
  unqueue(e, r);
  for (int i = 0; i < e->nactive; i++)
    if (e->active[i] == r) {
      ATTN(row_close(e->attn, r->row));
      r->row = -1;
      memmove(e->active + i, e->active + i + 1, (size_t)(--e->nactive - i) * sizeof *e->active);
      break;
    }
  r->done = 1;
  return 0;
}

int engine_run(serve_engine *e, char *err) {
  int left;
  while ((left = engine_step(e, err)) > 0) {
  }
  return left < 0 ? -1 : 0;
}
