/* host_smoke.c - first end-to-end check of compiled host code: quest and dense on random
 * data against the float64 references. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_policy.h"
#include "ref.h"

int main(int argc, char **argv) {
  const char *stdlib_dir = argc > 1 ? argv[1] : "stdlib";
  int G = 4, D = 64, P = 16, T = 300, budget = 128;
  int npages = (T + P - 1) / P;
  ref_rng rng;
  ref_rng_seed(&rng, 7);
  double *q = malloc(sizeof(double) * G * D), *k = malloc(sizeof(double) * T * D), *v = malloc(sizeof(double) * T * D);
  for (int i = 0; i < G * D; i++) q[i] = ref_rng_gauss(&rng);
  for (int i = 0; i < T * D; i++) k[i] = ref_rng_gauss(&rng), v[i] = ref_rng_gauss(&rng);
  ref_row row = {G, D, T, q, k, v};
  /* the cache: pages in reverse physical order to exercise the page table */
  int max_pages = npages + 3;
  float *kp = calloc((size_t)max_pages * P * D, 4), *vp = calloc((size_t)max_pages * P * D, 4);
  int32_t *ids = malloc(sizeof(int32_t) * npages);
  for (int p = 0; p < npages; p++) ids[p] = max_pages - 1 - p;
  for (int i = 0; i < T; i++)
    for (int c = 0; c < D; c++) {
      size_t at = ((size_t)ids[i / P] * P + i % P) * D + c;
      kp[at] = (float)k[i * D + c];
      vp[at] = (float)v[i * D + c];
    }
  float *qf = malloc(4 * G * D), *out = malloc(4 * G * D), *lse = malloc(4 * G);
  for (int i = 0; i < G * D; i++) qf[i] = (float)q[i];
  const char *names[] = {"dense", "quest"};
  int failed = 0;
  for (int n = 0; n < 2; n++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.vx", stdlib_dir, names[n]);
    host_policy hp;
    if (host_policy_compile(path, &hp)) return 1;
    host_policy_set(&hp, "budget", budget);
    exec_shape sh = {1, 1, D, G, P, max_pages, 1, npages};
    char err[256];
    exec_state *st = exec_create(&hp.pol, &sh, err, sizeof err);
    if (!st) { fprintf(stderr, "%s\n", err); return 1; }
    exec_kv kv = {kp, vp, VXK_F32, ids, T, T};
    if (!exec_prefill(st, 0, 0, &kv, err, sizeof err) || !exec_step(st, 0, 0, &kv, qf, out, lse, NULL, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    ref_sel sel = REF_SEL_EMPTY;
    if (n == 0) ref_select_dense(&row, &sel); else ref_select_quest(&row, REF_SHARED, P, budget, &sel);
    double *ro = malloc(sizeof(double) * G * D), *rl = malloc(sizeof(double) * G);
    ref_attend_sel(&row, &sel, NULL, ro, rl);
    double err2 = 0, norm = 0;
    for (int i = 0; i < G * D; i++) { err2 += (out[i] - ro[i]) * (out[i] - ro[i]); norm += ro[i] * ro[i]; }
    double rel = sqrt(err2 / norm);
    printf("%s: rel err %.3g, lse %.6f vs %.6f, selected %d\n", names[n], rel, lse[0], rl[0], ref_sel_count(&sel, 0));
    failed += rel > 1e-5;
    free(ro); free(rl);
    ref_sel_free(&sel);
    exec_destroy(st);
    host_policy_free(&hp);
  }
  free(q); free(k); free(v); free(kp); free(vp); free(ids); free(qf); free(out); free(lse);
  printf("%d passed, %d failed\n", 2 - failed, failed);
  return failed != 0;
}
