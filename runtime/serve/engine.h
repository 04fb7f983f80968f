/* engine.h - vx-serve's engine: requests in, tokens out. Chunked dense prefill, then decode
 * steps in which every active request advances one token, its layers' matrix products batched
 * across requests and its attention going through the attention backend (attn.h: the policy
 * on sparse layers, dense on the others). Continuous batching: requests join when a slot is
 * free and leave when done, their cache rows (pages) returned at once. Sits under
 * runtime/serve/ above forward.c, sample.c and attn.h; never prints, never exits. */
#ifndef SERVE_ENGINE_H
#define SERVE_ENGINE_H

#include "attn.h"
#include "model.h"
#include "sample.h"

/* Attention statistics of one request, per (layer, KV head), filled when measure is set. */
typedef struct engine_acc {
  double err_sum, err_max, mass_sum, mass_min;
  long n;
} engine_acc;

typedef struct engine_request {
  /* in */
  const int *prompt;   /* tokens, BOS first */
  int nprompt;
  int max_new;         /* tokens to generate (clamped to the context) */
  sample_opts sample;
  const int *stop;     /* tokens that end the generation (not included in out) */
  int nstop;
  int sparse;          /* use the policy (1; k: the backend's policy k - 1, attn.h) or dense
                        * attention everywhere (0) */
  int measure;         /* fill acc (sparse requests) */
  struct engine_request *twin; /* same prompt: prefill once, copy the K/V (may be NULL) */
  const int *force;    /* teacher forcing: the first nforce tokens are these, not sampled */
  int nforce;
  engine_acc *acc;     /* [layers][kv_heads] when measure */
  /* when measure: called per decode step and layer with err, mass [kv_heads] (may be NULL) */
  void (*on_measure)(void *user, const struct engine_request *r, int layer, const float *err,
                     const float *mass);
  void *user;
  float *logprob;      /* when not NULL: [max_new] (as given) gets each generated token's log
                        * probability under the model (log-softmax of the logits) */
  /* out */
  int *out;            /* [max_new] generated tokens, malloc'd by the engine */
  int nout;
  int done;            /* 1 when finished (max_new reached or a stop token) */
  int stopped;         /* 1 when a stop token ended it */
  double nll;          /* forced tokens: sum of -log p(token) (natural log) */
  long nnll, agree;    /* forced tokens scored; how many were also the argmax */
  /* engine's */
  int row, pos, last, admitted;
  sampler smp;
  struct engine_request *next;
} engine_request;

typedef struct engine_stats {
  long prefill_tokens, decode_tokens;
  double prefill_s, decode_s;
  double prefill_flops;     /* matrix FLOPs of prefill: projections, MLP, causal attention */
} engine_stats;

typedef struct serve_engine serve_engine;

/* max_batch: requests decoding at once (at most the backend's rows); chunk: prefill tokens
 * per forward pass. */
int engine_create(const model *m, serve_attn *attn, int max_batch, int chunk, serve_engine **out,
                  char *err);
void engine_free(serve_engine *e);
/* Queues a request; fails (message in err) when its prompt is empty or does not fit the
 * context. The request must stay alive until it is done. */
int engine_submit(serve_engine *e, engine_request *r, char *err);
/* Admits queued requests into free slots (prefilling them), then advances every active
 * request one token. Returns the number of requests not yet done, or -1 on error. */
int engine_step(serve_engine *e, char *err);
/* Stops r at once, queued or decoding: it leaves the queue or the batch and its cache row
 * (its pages) returns to the pool. Sets done (not stopped); nothing else of r changes. */
int engine_cancel(serve_engine *e, engine_request *r, char *err);
/* engine_step until every request is done. */
int engine_run(serve_engine *e, char *err);
const engine_stats *engine_get_stats(const serve_engine *e);
/* Frees what the engine allocated in a finished request (out). */
void engine_request_release(engine_request *r);

#endif
