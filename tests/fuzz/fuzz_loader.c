/* fuzz_loader.c - libFuzzer target over libvxrt's artifact loader with parameter overrides:
 * art_parse (container, JSON manifest, bounds, checksums), then vxrt_policy_load on the CPU
 * with an override list taken from the input, the parameter checks of runtime/params.c, and
 * the getters. Nothing may crash, leak or trip AddressSanitizer/UBSan, whatever the bytes.
 *
 * Input: byte 0 gives the number of overrides (0-7), then 9 bytes each (a name selector:
 * one of the manifest's params, an unknown name or none; an f64 value), then the artifact.
 * Loading dlopens the host code section, so it is loaded only when that section is byte for
 * byte one of the artifacts in $VX_FUZZ_TRUSTED (a directory of .vxp compiled by vxc, the
 * seeds): the manifest and the overrides are fuzzed, the machine code never is. Other
 * inputs stop after art_parse and the parameter checks. docs/fuzzing.md says how to run it. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact.h"
#include "params.h"
#include "vxrt.h"

enum { MAX_TRUSTED = 64, MAX_OVERRIDES = 7 };

static vxrt_device *cpu;
static struct { unsigned char *bytes; size_t len; } trusted[MAX_TRUSTED];
static int ntrusted;

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  unsigned char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      unsigned char *grown = realloc(buf, cap = cap ? 2 * cap : 65536);
      if (!grown)
        break;
      buf = grown;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (!got)
      break;
  }
  fclose(f);
  *len = n;
  return buf;
}

/* The host sections of the trusted artifacts, whole (the rest of each file is dropped). */
static void add_trusted(const char *path) {
  size_t len;
  unsigned char *buf = read_file(path, &len);
  art_manifest *m = NULL;
  art_error err;
  if (buf && art_parse(buf, len, &m, &err) == ART_OK)
    for (int i = 0; i < m->ntargets && ntrusted < MAX_TRUSTED; i++)
      if (m->targets[i].kind == ART_HOST_SO) {
        unsigned char *copy = malloc(m->targets[i].size);
        if (copy) {
          memcpy(copy, m->targets[i].data, m->targets[i].size);
          trusted[ntrusted].bytes = copy;
          trusted[ntrusted++].len = m->targets[i].size;
        }
      }
  art_manifest_free(m);
  free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (vxrt_device_open(VXRT_CPU, 0, &cpu) != VXRT_OK) {
    fprintf(stderr, "fuzz_loader: no CPU device: %s\n", vxrt_last_error());
    abort();
  }
  const char *dir = getenv("VX_FUZZ_TRUSTED");
  DIR *d = dir ? opendir(dir) : NULL;
  for (struct dirent *e; d && (e = readdir(d));) {
    size_t n = strlen(e->d_name);
    if (n > 4 && !strcmp(e->d_name + n - 4, ".vxp")) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      add_trusted(path);
    }
  }
  if (d)
    closedir(d);
  fprintf(stderr, "fuzz_loader: %d trusted host sections%s\n", ntrusted,
          dir ? "" : " (set VX_FUZZ_TRUSTED to a directory of .vxp to load policies)");
  return 0;
}

static int is_trusted(const art_manifest *m) {
  for (int i = 0; i < m->ntargets; i++)
    if (m->targets[i].kind == ART_HOST_SO) {
      for (int t = 0; t < ntrusted; t++)
        if (trusted[t].len == m->targets[i].size &&
            !memcmp(trusted[t].bytes, m->targets[i].data, trusted[t].len))
          return 1;
      return 0;
    }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int novr = data[0] % (MAX_OVERRIDES + 1);
  size_t head = 1 + (size_t)novr * 9;
  if (size < head)
    return 0;
  const uint8_t *art = data + head;
  size_t len = size - head;
  art_manifest *m = NULL;
  art_error err;
  if (art_parse(art, len, &m, &err) != ART_OK)
    return 0;
  /* the overrides, by name from the manifest (or unknown, or missing) */
  vxrt_param_override ovr[MAX_OVERRIDES];
  double *values = calloc((size_t)m->nparams + 1, sizeof(double));
  for (int i = 0; i < m->nparams && values; i++)
    values[i] = m->params[i].def;
  for (int i = 0; i < novr; i++) {
    const uint8_t *o = data + 1 + (size_t)i * 9;
    int sel = o[0] % (m->nparams + 2);
    ovr[i].name = sel < m->nparams ? m->params[sel].name : sel == m->nparams ? "nosuch" : NULL;
    memcpy(&ovr[i].value, o + 1, sizeof(double));
    if (values && sel < m->nparams)
      values[sel] = ovr[i].value;
  }
  if (values)
    vxrt_params_check(m, values); /* the rules on their own, whatever the types say */
  free(values);
  if (is_trusted(m)) {
    vxrt_policy *pol = NULL;
    if (vxrt_policy_load(cpu, art, len, ovr, novr, &pol) == VXRT_OK) {
      vxrt_policy_info info;
      if (vxrt_policy_get_info(pol, &info) != VXRT_OK)
        abort();
      for (int i = 0; i < info.nparams; i++) {
        vxrt_param_info pi;
        if (vxrt_policy_get_param(pol, i, &pi) != VXRT_OK)
          abort();
      }
      vxrt_policy_free(pol);
    } else if (pol || !vxrt_last_error()[0]) {
      abort(); /* a failure leaves no policy and says why */
    }
  }
  art_manifest_free(m);
  return 0;
}
