/* sample.h - vx-serve's sampler: greedy, temperature, top-k, top-p, seeded per request.
 * Sits under runtime/serve/ beside the engine; pure computation, never prints. */
#ifndef SERVE_SAMPLE_H
#define SERVE_SAMPLE_H

#include <stdint.h>

typedef struct sample_opts {
  float temperature; /* 0: greedy (argmax, ties to the lower id) */
  int top_k;         /* 0: off */
  float top_p;       /* 1: off */
  uint64_t seed;
} sample_opts;

typedef struct sampler {
  sample_opts o;
  uint64_t state;
  int vocab;
  int *idx;          /* scratch for top-k / top-p */
  float *prob;
} sampler;

int sampler_init(sampler *s, const sample_opts *o, int vocab);
void sampler_free(sampler *s);
/* Picks the next token from logits[vocab] (only read). */
int sampler_next(sampler *s, const float *logits);
int sample_argmax(const float *x, int n);

#endif
