/* sample.c - next-token choice from logits: greedy, or temperature softmax restricted by
 * top-k and top-p (nucleus), drawn from a per-request splitmix64 stream so a seed reproduces
 * a generation. Sits under runtime/serve/; no I/O. */
#include <math.h>
#include <stdlib.h>

#include "sample.h"
#include "util.h"

int sampler_init(sampler *s, const sample_opts *o, int vocab) {
  s->o = *o;
  s->state = o->seed;
  s->vocab = vocab;
  s->idx = malloc((size_t)vocab * sizeof(int));
  s->prob = malloc((size_t)vocab * sizeof(float));
  if (!s->idx || !s->prob) {
    sampler_free(s);
    return -1;
  }
  return 0;
}

void sampler_free(sampler *s) {
  free(s->idx);
  free(s->prob);
  s->idx = NULL;
  s->prob = NULL;
}

int sample_argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b])
      b = i;
  return b;
}

static const float *cmp_prob;
static int by_prob(const void *a, const void *b) {
  float x = cmp_prob[*(const int *)a], y = cmp_prob[*(const int *)b];
  return x < y ? 1 : x > y ? -1 : (*(const int *)a - *(const int *)b);
}

int sampler_next(sampler *s, const float *logits) {
  int V = s->vocab;
  if (s->o.temperature <= 0)
    return sample_argmax(logits, V);
  float mx = logits[sample_argmax(logits, V)];
  double sum = 0;
  for (int i = 0; i < V; i++) {
    s->prob[i] = expf((logits[i] - mx) / s->o.temperature);
    sum += s->prob[i];
    s->idx[i] = i;
  }
  for (int i = 0; i < V; i++)
    s->prob[i] = (float)(s->prob[i] / sum);
  int n = V;
  if ((s->o.top_k > 0 && s->o.top_k < V) || s->o.top_p < 1.0f) {
    cmp_prob = s->prob;
    qsort(s->idx, (size_t)V, sizeof(int), by_prob);
    if (s->o.top_k > 0 && s->o.top_k < n)
      n = s->o.top_k;
    if (s->o.top_p < 1.0f) {
      double c = 0;
      for (int i = 0; i < n; i++) {
        c += s->prob[s->idx[i]];
        if (c >= s->o.top_p) {
          n = i + 1;
          break;
        }
      }
    }
  }
  double kept = 0;
  for (int i = 0; i < n; i++)
    kept += s->prob[s->idx[i]];
  double r = serve_rand_unit(&s->state) * kept, c = 0;
  for (int i = 0; i < n; i++) {
    c += s->prob[s->idx[i]];
    if (r < c)
      return s->idx[i];
  }
  return s->idx[n - 1];
}
