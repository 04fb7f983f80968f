/* host_api.c - the public path end to end: `vxc` writes artifacts of stdlib policies, and
 * only vxrt.h calls run them (device, policy load with a parameter override, cache, append,
 * prefill, decode steps), compared with the float64 references. Also the errors a user
 * meets on that path. Usage: host_api VXC STDLIB_DIR TMP_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "ref.h"
#include "vxrt.h"

static int passed, failed;

static void check(int ok, const char *what, const char *detail) {
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
  ok ? passed++ : failed++;
}

/* vxc STDLIB/NAME.vx -o TMP/NAME.vxp; returns the artifact path or NULL. */
static const char *compile(const char *vxc, const char *stdlib, const char *tmp, const char *name) {
  static char out[1024];
  char cmd[3072];
  snprintf(out, sizeof out, "%s/%s.vxp", tmp, name);
  snprintf(cmd, sizeof cmd, "'%s' '%s/%s.vx' -o '%s'", vxc, stdlib, name, out);
  int rc = system(cmd);
  check(rc == 0, "vxc compiles", name);
  return rc == 0 ? out : NULL;
}

typedef struct Data {
  int G, D, T;
  double *q, *k, *v;    /* ref layout: q [G][D], k/v [T][D] (one KV head) */
  float *qf, *kf, *vf;  /* vxrt layout: q [1][G][D], k/v [T][1][D] */
} Data;

static void make_data(Data *d, int G, int D, int T, uint64_t seed) {
  ref_rng g;
  ref_rng_seed(&g, seed);
  d->G = G, d->D = D, d->T = T;
  d->q = malloc(sizeof(double) * (size_t)(G * D));
  d->k = malloc(sizeof(double) * (size_t)(T * D));
  d->v = malloc(sizeof(double) * (size_t)(T * D));
  d->qf = malloc(sizeof(float) * (size_t)(G * D));
  d->kf = malloc(sizeof(float) * (size_t)(T * D));
  d->vf = malloc(sizeof(float) * (size_t)(T * D));
  for (int i = 0; i < G * D; i++)
    d->qf[i] = (float)(d->q[i] = (float)ref_rng_gauss(&g));
  for (int i = 0; i < T * D; i++) {
    /* values representable in bf16, so the cache holds exactly what the reference sees */
    float x = (float)ref_rng_gauss(&g), y = (float)ref_rng_gauss(&g);
    uint16_t hx, hy;
    vxrt_convert_from_f32(VXRT_BF16, &x, &hx, 1);
    vxrt_convert_from_f32(VXRT_BF16, &y, &hy, 1);
    vxrt_convert_to_f32(VXRT_BF16, &hx, &d->kf[i], 1);
    vxrt_convert_to_f32(VXRT_BF16, &hy, &d->vf[i], 1);
    d->k[i] = d->kf[i];
    d->v[i] = d->vf[i];
  }
}

static void free_data(Data *d) {
  free(d->q), free(d->k), free(d->v), free(d->qf), free(d->kf), free(d->vf);
}

static double rel_err(const float *a, const double *b, int n) {
  double e = 0, s = 0;
  for (int i = 0; i < n; i++) {
    e += (a[i] - b[i]) * (a[i] - b[i]);
    s += b[i] * b[i];
  }
  return sqrt(e / (s > 0 ? s : 1));
}

/* quest loaded with budget overridden to 64 (the artifact says 2048), bf16 cache, prompt of
 * 200 tokens then 5 decode tokens: every step's selection and output against the reference. */
static void quest_steps(vxrt_device *dev, const char *artifact) {
  int G = 4, D = 64, P = 16, prompt = 200, steps = 5, budget = 64;
  vxrt_param_override ovr = {"budget", budget};
  vxrt_policy *pol;
  vxrt_status s = vxrt_policy_load_file(dev, artifact, &ovr, 1, &pol);
  check(s == VXRT_OK, "quest loads with budget=64", s ? vxrt_last_error() : NULL);
  if (s)
    return;
  vxrt_cache_desc cd = {1, 1, D, P, VXRT_BF16, 64, 2, 32};
  vxrt_cache *cache;
  vxrt_state *st;
  int row;
  Data d;
  make_data(&d, G, D, prompt + steps, 11);
  s = vxrt_cache_create(dev, &cd, &cache);
  if (!s) s = vxrt_state_create(pol, cache, G, &st);
  if (!s) s = vxrt_row_open(cache, &row);
  if (!s) s = vxrt_append(cache, row, 0, d.kf, d.vf, prompt);
  if (!s) s = vxrt_prefill(st, row, 0);
  check(s == VXRT_OK, "quest: cache, state, prefill", s ? vxrt_last_error() : NULL);
  uint8_t *sel = calloc((size_t)G * 32 * P, 1);
  float out[4 * 64], lse[4];
  for (int step = 0; step < steps && !s; step++) {
    int T = prompt + step + 1;
    s = vxrt_append(cache, row, 0, d.kf + (size_t)(T - 1) * D, d.vf + (size_t)(T - 1) * D, 1);
    if (!s) s = vxrt_summarise(st, row, 0, T - 1);
    if (!s) s = vxrt_select(st, row, 0, d.qf, sel);
    if (!s) s = vxrt_attend(st, row, 0, d.qf, out, lse);
    char msg[200];
    snprintf(msg, sizeof msg, "step %d%s%s", step, s ? ": " : "", s ? vxrt_last_error() : "");
    check(s == VXRT_OK, "quest decode step runs", msg);
    if (s)
      break;
    ref_row r = {G, D, T, d.q, d.k, d.v};
    ref_sel rs = REF_SEL_EMPTY;
    ref_select_quest(&r, REF_SHARED, P, budget, &rs);
    int mism = 0, count = 0;
    for (int t = 0; t < T; t++) {
      mism += sel[t] != rs.mask[t];
      count += sel[t];
    }
    double ro[4 * 64], rl[4];
    ref_attend_sel(&r, &rs, NULL, ro, rl);
    double err = rel_err(out, ro, G * D);
    snprintf(msg, sizeof msg, "step %d: %d tokens, %d mismatches, output rel err %.2g", step, count, mism, err);
    check(mism == 0 && count <= budget && err < 1e-5, "quest selection and output equal the reference", msg);
    ref_sel_free(&rs);
  }
  free(sel);
  free_data(&d);
  vxrt_state_free(st);
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
}

/* The errors of the run path. */
static void errors(vxrt_device *dev, const char *quest, const char *lserve) {
  vxrt_policy *pol;
  vxrt_param_override bad = {"budgte", 64};
  vxrt_status s = vxrt_policy_load_file(dev, quest, &bad, 1, &pol);
  check(s == VXRT_ERR_PARAM && strstr(vxrt_last_error(), "budgte"), "an unknown override is refused",
        vxrt_last_error());
  if (vxrt_policy_load_file(dev, lserve, NULL, 0, &pol)) {
    check(0, "lserve loads", vxrt_last_error());
    return;
  }
  vxrt_cache_desc cd = {1, 1, 16, 8, VXRT_F32, 8, 1, 8};
  vxrt_cache *cache;
  vxrt_state *st = NULL;
  vxrt_cache_create(dev, &cd, &cache);
  s = vxrt_state_create(pol, cache, 2, &st);
  check(s == VXRT_ERR_PARAM && strstr(vxrt_last_error(), "require"), "lserve refuses P=8 (its require)",
        vxrt_last_error());
  vxrt_cache_free(cache);
  cd.page_size = 16;
  vxrt_cache_create(dev, &cd, &cache);
  s = vxrt_state_create(pol, cache, 2, &st);
  check(s == VXRT_OK, "lserve accepts P=16", s ? vxrt_last_error() : NULL);
  int row;
  float kv[16] = {0}, q[32] = {0}, out[32], lse[2];
  vxrt_row_open(cache, &row);
  vxrt_append(cache, row, 0, kv, kv, 1);
  s = vxrt_attend(st, row, 0, q, out, lse);
  check(s == VXRT_ERR_STATE, "attend before prefill is refused", vxrt_last_error());
  s = vxrt_prefill(st, row, 0);
  if (!s) s = vxrt_select(st, row, 0, q, NULL);
  if (!s) s = vxrt_attend(st, row, 0, q, out, lse);
  check(s == VXRT_OK, "a one-token row runs", s ? vxrt_last_error() : NULL);
  vxrt_append(cache, row, 0, kv, kv, 1);
  s = vxrt_attend(st, row, 0, q, out, lse);
  check(s == VXRT_ERR_STATE && strstr(vxrt_last_error(), "vxrt_select"),
        "attend after an append without a new select is refused", vxrt_last_error());
  s = vxrt_select(st, row + 1 < cd.max_rows ? row + 1 : 99, 0, q, NULL);
  check(s != VXRT_OK, "a row that is not open is refused", vxrt_last_error());
  vxrt_state_free(st);
  vxrt_cache_free(cache);
  vxrt_policy_free(pol);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: host_api VXC STDLIB_DIR TMP_DIR\n");
    return 2;
  }
  vxrt_device *dev;
  if (vxrt_device_open(VXRT_CPU, 0, &dev)) {
    fprintf(stderr, "%s\n", vxrt_last_error());
    return 1;
  }
  const char *quest = compile(argv[1], argv[2], argv[3], "quest");
  char quest_path[1024];
  snprintf(quest_path, sizeof quest_path, "%s", quest ? quest : "");
  const char *lserve = compile(argv[1], argv[2], argv[3], "lserve");
  if (quest && lserve) {
    quest_steps(dev, quest_path);
    errors(dev, quest_path, lserve);
  }
  vxrt_device_close(dev);
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
