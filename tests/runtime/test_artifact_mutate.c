/* test_artifact_mutate.c - property test: no input makes the artifact loader crash.
 *
 * Starting from a valid artifact (real host code inside), loads through vxrt_policy_load:
 * every truncation length; single-byte flips with several masks at every header and
 * manifest byte and at sampled section bytes; manifest flips with the header checksum
 * re-sealed (so the JSON reader and validator see them); random splices, insertions and
 * deletions; and random garbage, with and without a valid-looking header. Each load must
 * return (an error, or success with a sane policy). Truncations and unsealed flips must be
 * errors: FNV-1a catches every single-byte change. Meant to run under ASan/UBSan, where an
 * out-of-bounds read is a crash. No libFuzzer needed. Optional argument: the PRNG seed.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "rt_fixture.h"

static vxrt_device *cpu;
static uint64_t rng = 0x2545f4914f6cdd1dull;
static int loaded, refused;
static int by_status[VXRT_ERR_UNSUPPORTED + 1];

static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Loads, checks the outcome is coherent, and returns the status. The buffer is a fresh
 * malloc of exactly n bytes so that ASan sees any read past its end. */
static vxrt_status try_load(const unsigned char *p, size_t n) {
  unsigned char *copy = malloc(n ? n : 1);
  if (n) memcpy(copy, p, n);
  vxrt_policy *pol = NULL;
  vxrt_status st = vxrt_policy_load(cpu, copy, n, NULL, 0, &pol);
  free(copy);
  if (st == VXRT_OK) {
    loaded++;
    vxrt_policy_info info;
    int sane = pol && vxrt_policy_get_info(pol, &info) == VXRT_OK && info.name && info.target;
    for (int i = 0; sane && i < info.nkernels; i++) {
      vxrt_kernel_info k;
      sane = vxrt_policy_get_kernel(pol, i, &k) == VXRT_OK && k.handle;
    }
    if (!sane) RT_CHECK(0, "a policy that loaded is not sane");
    vxrt_policy_free(pol);
  } else {
    refused++;
    if (pol || !vxrt_last_error()[0]) RT_CHECK(0, "failure without a message or with a handle");
  }
  if ((int)st >= 0 && st <= VXRT_ERR_UNSUPPORTED) by_status[st]++;
  return st;
}

int main(int argc, char **argv) {
  if (argc > 1) rng = strtoull(argv[1], NULL, 0) | 1;
  printf("seed 0x%" PRIx64 "\n", rng);
  if (!RT_EXPECT(vxrt_device_open(VXRT_CPU, 0, &cpu), VXRT_OK, NULL)) return rt_finish();
  vxrt_device_info di;
  vxrt_device_get_info(cpu, &di);
  rt_blob good = rt_build(VXT_SO_A, di.target, "sm_90");
  if (!good.data) {
    RT_CHECK(0, "cannot build the fixture");
    return rt_finish();
  }
  RT_EXPECT(try_load(good.data, good.len), VXRT_OK, NULL);
  uint32_t mlen = rt_rd32(good.data + 12);
  size_t meta = ART_HEADER_LEN + mlen; /* header + manifest */
  printf("artifact: %zu bytes (manifest %u, sections %zu)\n", good.len, mlen, good.len - meta);

  /* 1. Every truncation. */
  int bad = 0;
  for (size_t n = 0; n < good.len; n++) bad += try_load(good.data, n) == VXRT_OK;
  RT_CHECK(bad == 0, "%d truncations loaded", bad);

  /* 2. Single-byte flips: every header/manifest byte, every 7th section byte. */
  static const unsigned char masks[] = {0x01, 0x02, 0x10, 0x80, 0xff};
  unsigned char *buf = malloc(good.len);
  bad = 0;
  int flips = 0;
  for (size_t i = 0; i < good.len; i += i < meta ? 1 : 7)
    for (size_t k = 0; k < sizeof masks; k++) {
      memcpy(buf, good.data, good.len);
      buf[i] ^= masks[k];
      flips++;
      if (try_load(buf, good.len) == VXRT_OK) {
        if (bad++ < 5) fprintf(stderr, "flip of byte %zu by 0x%02x loaded\n", i, masks[k]);
      }
    }
  RT_CHECK(bad == 0, "%d of %d single-byte flips loaded", bad, flips);

  /* 3. Manifest flips re-sealed: the validator sees arbitrary near-valid JSON. */
  char *text = rt_manifest_text(&good);
  int sealed = 0, sealed_ok = 0;
  for (size_t i = 0; i < mlen; i++)
    for (int k = 0; k < 3; k++) {
      char *t = malloc(mlen + 1);
      memcpy(t, text, mlen + 1);
      static const char punct[] = "\"{}[],:0e-";
      unsigned char c = k == 0   ? (unsigned char)(t[i] ^ 0x20)
                        : k == 1 ? (unsigned char)next()
                                 : (unsigned char)punct[next() % 10];
      t[i] = c ? (char)c : ' ';
      rt_blob b = rt_reseal(&good, t);
      sealed_ok += try_load(b.data, b.len) == VXRT_OK;
      sealed++;
      free(b.data);
      free(t);
    }
  printf("re-sealed manifest flips: %d, of which %d still valid\n", sealed, sealed_ok);
  RT_CHECK(sealed_ok < sealed, "the validator rejects something");

  /* 4. Random splices, insertions, deletions (both sealed and not). */
  for (int it = 0; it < 3000; it++) {
    size_t n = good.len + 64;
    unsigned char *m = malloc(n);
    memcpy(m, good.data, good.len);
    size_t len = good.len;
    int edits = 1 + (int)(next() % 4);
    for (int e = 0; e < edits; e++) {
      size_t at = (size_t)(next() % len), span = 1 + (size_t)(next() % 32);
      if (at + span > len) span = len - at;
      switch (next() % 4) {
      case 0: /* overwrite with random bytes */
        for (size_t j = 0; j < span; j++) m[at + j] = (unsigned char)next();
        break;
      case 1: /* delete */
        memmove(m + at, m + at + span, len - at - span);
        len -= span;
        break;
      case 2: /* insert (room was reserved) */
        if (len + span <= n) {
          memmove(m + at + span, m + at, len - at);
          for (size_t j = 0; j < span; j++) m[at + j] = (unsigned char)next();
          len += span;
        }
        break;
      default: { /* copy a chunk from elsewhere */
        size_t from = (size_t)(next() % len);
        if (from + span > len) span = len - from;
        memmove(m + at, m + from, at + span <= len ? span : len - at);
      }
      }
      if (len < 2) break;
    }
    if (len >= ART_HEADER_LEN && (next() & 1)) {
      /* Re-seal whatever manifest length the header now claims, if it fits. */
      uint32_t ml = rt_rd32(m + 12);
      if (ml <= len - ART_HEADER_LEN) rt_wr64(m + 16, art_fnv1a64(m + ART_HEADER_LEN, ml));
    }
    try_load(m, len);
    free(m);
  }

  /* 5. Garbage: raw, and behind a valid magic + version + length. */
  bad = 0;
  for (int it = 0; it < 3000; it++) {
    size_t len = (size_t)(next() % 2048);
    unsigned char *m = malloc(len + ART_HEADER_LEN);
    for (size_t j = 0; j < len + ART_HEADER_LEN; j++) m[j] = (unsigned char)next();
    if (it & 1) {
      memcpy(m, ART_MAGIC, 8);
      rt_wr32(m + 8, 1);
      uint32_t ml = (uint32_t)(next() % (len + 1));
      rt_wr32(m + 12, ml);
      rt_wr64(m + 16, art_fnv1a64(m + ART_HEADER_LEN, ml));
      len += ART_HEADER_LEN;
    }
    bad += try_load(m, len) == VXRT_OK;
    free(m);
  }
  RT_CHECK(bad == 0, "%d garbage inputs loaded", bad);

  printf("loads: %d ok, %d refused;", loaded, refused);
  for (int s = 0; s <= VXRT_ERR_UNSUPPORTED; s++)
    if (by_status[s]) printf(" %s %d", vxrt_status_name((vxrt_status)s), by_status[s]);
  printf("\n");
  free(text);
  free(buf);
  free(good.data);
  RT_EXPECT(vxrt_device_close(cpu), VXRT_OK, NULL);
  return rt_finish();
}
