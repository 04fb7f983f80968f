/* serve.h - what vx-serve's commands share (main.c, eval.c): the options common to every
 * command, and the setup they all need (model, tokenizer, policies compiled or loaded,
 * attention backend, engine). Sits at the top of runtime/serve/; only the commands print. */
#ifndef SERVE_SERVE_H
#define SERVE_SERVE_H

#include <stdint.h>

#include "attn.h"
#include "engine.h"
#include "model.h"
#include "tokenizer.h"
#include "vxrt.h"

enum { SERVE_MAX_PARAMS = 32 };

/* --attn: batched calls (attn_batch.c), or per-row calls (attn_cpu.c); absent, batched where
 * the backend can be made, else per row. */
typedef enum serve_attn_kind { SERVE_ATTN_AUTO = 0, SERVE_ATTN_BATCH, SERVE_ATTN_ROWS } serve_attn_kind;

typedef struct serve_opts {
  const char *model, *tokenizer, *policy, *dense_policy, *vxc, *dense_layers;
  vxrt_param_override params[SERVE_MAX_PARAMS];
  int nparams;
  int page_size, kv_dtype, batch, chunk;
  int device;                   /* VXRT_CPU (the default) or VXRT_CUDA: where attention runs */
  int kv_pages;                 /* pages in the KV pool; 0: enough for `batch` full rows */
  int attn;                     /* serve_attn_kind: the attention backend (--attn) */
  uint64_t seed;
} serve_opts;

typedef struct serve_ctx {
  serve_opts o;
  model *m;
  tokenizer *tok;
  vxrt_device *dev;
  vxrt_policy *policy, *dense;  /* policy is NULL when --policy is absent (dense only) */
  uint8_t *dense_layer;         /* [layers] */
  serve_attn *attn;
  serve_engine *eng;
  char policy_name[64];
} serve_ctx;

/* Parses one common option at argv[*i] (advancing *i past its value). Returns 1 when it was
 * one, 0 when not, -1 on a bad value (message printed). */
int serve_common_option(serve_opts *o, int argc, char **argv, int *i);
void serve_opts_defaults(serve_opts *o);
/* Loads everything; prints the error and returns -1 on failure. */
int serve_setup(serve_ctx *x, const char *cmd);
/* --dense-layers into x->dense_layer[layers] (x->m loaded); prints the error, -1 when bad. */
int serve_parse_dense_layers(serve_ctx *x);
/* Loads a policy (a .vxp, a .vx compiled by vxc, or a stdlib name) with overrides. */
int serve_load_policy(serve_ctx *x, const char *spec, const vxrt_param_override *ovr, int novr,
                      vxrt_policy **out);
/* Re-creates the attention backend and engine for another policy (eval --sweep). */
int serve_rebuild(serve_ctx *x, vxrt_policy *policy);
void serve_teardown(serve_ctx *x);

int serve_eval(int argc, char **argv);
int serve_bench(int argc, char **argv);

#endif
