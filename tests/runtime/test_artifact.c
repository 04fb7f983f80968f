/* test_artifact.c - the artifact container: writer round trip and every class of bad file.
 *
 * Each check loads through the public API (vxrt_policy_load on the CPU device) and expects a
 * precise status and message: truncated at each stage (magic, header, manifest, sections),
 * bad magic, wrong format version, corrupted manifest or section (checksums), manifest that
 * is not JSON or has missing / mistyped / invalid fields, sections out of bounds, overlapping
 * or with trailing bytes, no target for this device; then parameter overrides, getters,
 * loading from files, and the writer's own argument checks. VXT_SO_A is the path of a real
 * shared object (kernels_so.c) to embed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "rt_fixture.h"

static vxrt_device *cpu;
static rt_blob good;      /* valid: host-so for this machine + PTX sm_90 */
static const char *host;  /* this machine's target name */

/* Loads bytes on the CPU device; frees the policy if it loaded. */
static vxrt_status load(const void *p, size_t n) {
  vxrt_policy *pol = NULL;
  vxrt_status st = vxrt_policy_load(cpu, p, n, NULL, 0, &pol);
  if ((st == VXRT_OK) != (pol != NULL)) fprintf(stderr, "status and handle disagree\n");
  vxrt_policy_free(pol);
  return st;
}

static void test_round_trip(void) {
  art_manifest *m = NULL;
  art_error err;
  RT_CHECK(art_parse(good.data, good.len, &m, &err) == ART_OK, "parse: %s", err.msg);
  if (!m) return;
  RT_CHECK(m->format == 1 && strcmp(m->vx_version, "0.1.0-test") == 0 &&
               strcmp(m->source_hash, "0123456789abcdef") == 0 && strcmp(m->policy, "quest") == 0,
           "header fields");
  RT_CHECK(m->nparams == 2 && strcmp(m->params[0].name, "budget") == 0 &&
               m->params[0].type == ART_I32 && strcmp(m->params[0].unit, "tokens") == 0 &&
               m->params[0].def == 2048 && m->params[1].type == ART_F32 && m->params[1].def == 0.5,
           "params");
  RT_CHECK(m->nfields == 3 && m->fields[2].stage == ART_CONST && m->fields[2].naxes == 3 &&
               strcmp(m->fields[2].axes[1], "L") == 0 && strcmp(m->fields[1].dtype, "bf16") == 0,
           "fields");
  RT_CHECK(m->nkernels == 3 && m->kernels[0].kind == ART_K_SELECT &&
               strcmp(m->kernels[2].entry, "vxt_count") == 0,
           "kernels");
  RT_CHECK(m->ntargets == 2 && strcmp(m->targets[0].name, host) == 0 &&
               m->targets[0].kind == ART_HOST_SO && m->targets[0].offset == 0 &&
               m->targets[1].kind == ART_PTX && m->targets[1].offset == m->targets[0].size &&
               m->targets[1].data == m->targets[0].data + m->targets[0].size,
           "targets");
  RT_CHECK(m->targets[0].nshapes == 0 && m->targets[0].ngpu_kernels == 0 &&
               m->targets[1].nshapes == 2 && strcmp(m->targets[1].shapes[0], "d128g4p16_bf16") == 0 &&
               strcmp(m->targets[1].shapes[1], "d64g1p16_f32") == 0 &&
               m->targets[1].ngpu_kernels == 2 && strcmp(m->targets[1].gpu_kernels[1], "attend") == 0,
           "PTX shapes and GPU kernels");
  art_manifest_free(m);
  char hex[17];
  art_hex64(art_fnv1a64("", 0), hex);
  RT_CHECK(strcmp(hex, "cbf29ce484222325") == 0, "FNV-1a of nothing: %s", hex);
  art_hex64(art_fnv1a64("a", 1), hex);
  RT_CHECK(strcmp(hex, "af63dc4c8601ec8c") == 0, "FNV-1a of \"a\": %s", hex);
  RT_EXPECT(load(good.data, good.len), VXRT_OK, NULL);
}

static void test_header(void) {
  uint32_t mlen = rt_rd32(good.data + 12);
  RT_EXPECT(load(good.data, 0), VXRT_ERR_FORMAT, "truncated artifact: 0 bytes");
  RT_EXPECT(load(good.data, 5), VXRT_ERR_FORMAT, "the magic alone needs 8");
  RT_EXPECT(load(good.data, 10), VXRT_ERR_FORMAT, "format version missing");
  RT_EXPECT(load(good.data, 20), VXRT_ERR_FORMAT, "the header needs 24");
  RT_EXPECT(load(good.data, ART_HEADER_LEN + mlen / 2), VXRT_ERR_FORMAT,
            "truncated artifact: the manifest needs");
  RT_EXPECT(load(good.data, good.len - 1), VXRT_ERR_FORMAT, "truncated artifact?");
  RT_EXPECT(load(good.data, ART_HEADER_LEN + mlen), VXRT_ERR_FORMAT, "lies outside");
  RT_EXPECT(load("VXPOLICZ", 8), VXRT_ERR_FORMAT, "bad magic");
  RT_EXPECT(load("\x7f" "ELF\2\1\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24), VXRT_ERR_FORMAT,
            "not a vx policy artifact");
  RT_EXPECT(vxrt_policy_load(cpu, NULL, 0, NULL, 0, NULL), VXRT_ERR_INVALID_ARG, "NULL");

  rt_blob b = {malloc(good.len), good.len};
  memcpy(b.data, good.data, good.len);
  rt_wr32(b.data + 8, 2);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_VERSION,
            "artifact format version 2; this runtime reads version 1");
  rt_wr32(b.data + 8, 0);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_VERSION, "version 0");
  /* A newer file is told apart by its version even when the rest is cut off. */
  RT_EXPECT(load(b.data, 12), VXRT_ERR_VERSION, "version 0");
  rt_wr32(b.data + 8, 1);
  rt_wr32(b.data + 12, 0xffffffffu);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_FORMAT, "exceeds the limit");
  rt_wr32(b.data + 12, mlen);
  b.data[ART_HEADER_LEN + 3] ^= 0x20;
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_CORRUPT, "manifest is corrupted");
  b.data[ART_HEADER_LEN + 3] ^= 0x20;
  b.data[16] ^= 1;
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_CORRUPT, "checksum mismatch");
  b.data[16] ^= 1;
  b.data[b.len - 10] ^= 0x40; /* inside the PTX section */
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_CORRUPT, "section of target sm_90 is corrupted");
  b.data[b.len - 10] ^= 0x40;
  b.data[ART_HEADER_LEN + mlen + 100] ^= 0x01; /* inside the host-so section */
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_CORRUPT, "is corrupted: checksum");
  b.data[ART_HEADER_LEN + mlen + 100] ^= 0x01;
  RT_EXPECT(load(b.data, b.len), VXRT_OK, NULL);
  free(b.data);
}

/* ---- manifest edits: a path like "params[0].type" into the JSON, and what to do there. */

static cJSON *jpath(cJSON *root, const char *path, cJSON **parent, char *last) {
  cJSON *cur = root;
  *parent = NULL;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) {
    char *br = strchr(tok, '[');
    int idx = -1;
    if (br) {
      idx = atoi(br + 1);
      *br = '\0';
    }
    *parent = cur;
    snprintf(last, 64, "%s", tok);
    cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    if (idx >= 0 && cur) {
      *parent = cur;
      snprintf(last, 64, "#%d", idx);
      cur = cJSON_GetArrayItem(cur, idx);
    }
  }
  return cur;
}

typedef struct edit {
  const char *path;   /* where */
  const char *value;  /* new JSON value, or NULL to delete the key */
  vxrt_status want;
  const char *needle;
} edit;

static const edit edits[] = {
    {"policy", NULL, VXRT_ERR_FORMAT, "missing key 'policy'"},
    {"policy", "\"has space\"", VXRT_ERR_FORMAT, "not an identifier"},
    {"format", "\"1\"", VXRT_ERR_FORMAT, "'format' must be a finite number"},
    {"format", "2", VXRT_ERR_FORMAT, "manifest says format 2 but the header says 1"},
    {"kernel_abi", NULL, VXRT_ERR_FORMAT, "missing key 'kernel_abi'"},
    {"kernel_abi", "2", VXRT_ERR_VERSION, "host kernels (runtime/vxk.h) use ABI version 2; this runtime calls version 1"},
    {"gpu_abi", "0", VXRT_ERR_VERSION, "GPU kernels (runtime/vxk_gpu.h) use ABI version 0; this runtime calls version 1"},
    {"vx_version", "7", VXRT_ERR_FORMAT, "'vx_version' must be a string"},
    {"vx_version", "\"\"", VXRT_ERR_FORMAT, "'vx_version' is empty"},
    {"source_hash", "\"0123\"", VXRT_ERR_FORMAT, "'source_hash' must be 16 lowercase hex"},
    {"source_hash", "\"0123456789ABCDEF\"", VXRT_ERR_FORMAT, "16 lowercase hex"},
    {"params", NULL, VXRT_ERR_FORMAT, "missing key 'params'"},
    {"params", "{}", VXRT_ERR_FORMAT, "'params' must be an array"},
    {"params[0]", "3", VXRT_ERR_FORMAT, "params[0] must be an object"},
    {"params[0].name", NULL, VXRT_ERR_FORMAT, "params[0]: missing key 'name'"},
    {"params[1].name", "\"budget\"", VXRT_ERR_FORMAT, "both named \"budget\""},
    {"params[0].type", "\"i64\"", VXRT_ERR_FORMAT, "'type' is \"i64\"; expected one of \"i32\", \"f32\""},
    {"params[0].unit", "\"bytes\"", VXRT_ERR_FORMAT, "'unit' is \"bytes\""},
    {"params[0].default", "1.5", VXRT_ERR_FORMAT, "default 1.5 is not an i32"},
    {"params[0].default", "3e9", VXRT_ERR_FORMAT, "is not an i32"},
    {"params[1].default", "1e300", VXRT_ERR_FORMAT, "overflows f32"},
    {"params[1].default", "null", VXRT_ERR_FORMAT, "'default' must be a finite number"},
    {"fields[0].stage", "\"layer\"", VXRT_ERR_FORMAT, "fields[0]: 'stage' is \"layer\""},
    {"fields[1].dtype", "\"f64\"", VXRT_ERR_FORMAT, "'dtype' is \"f64\""},
    {"fields[0].axes", "\"D\"", VXRT_ERR_FORMAT, "fields[0]: 'axes' must be an array"},
    {"fields[0].axes", "[\"D\", 3]", VXRT_ERR_FORMAT, "axes[1] must be a non-empty printable string"},
    {"fields[0].axes", "[\"\"]", VXRT_ERR_FORMAT, "axes[0] must be a non-empty"},
    {"fields[0].axes", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]", VXRT_ERR_FORMAT, "has 9 axes; the limit is 8"},
    {"fields[2].name", "\"kmin\"", VXRT_ERR_FORMAT, "both named \"kmin\""},
    {"kernels[0].kind", "\"launch\"", VXRT_ERR_FORMAT, "'kind' is \"launch\""},
    {"kernels[0].entry", "\"vxt add\"", VXRT_ERR_FORMAT, "not an identifier"},
    {"kernels[1].entry", "\"vxt_add\"", VXRT_ERR_FORMAT, "kernels' entries"},
    {"kernels", NULL, VXRT_ERR_FORMAT, "missing key 'kernels'"},
    {"targets[0].name", "\"x86 linux\"", VXRT_ERR_FORMAT, "not a target name"},
    {"targets[0].kind", "\"elf\"", VXRT_ERR_FORMAT, "'kind' is \"elf\""},
    {"targets[0].offset", "-1", VXRT_ERR_FORMAT, "'offset' must be a non-negative integer"},
    {"targets[0].offset", "0.5", VXRT_ERR_FORMAT, "'offset' must be a non-negative integer"},
    {"targets[0].size", "1e15", VXRT_ERR_FORMAT, "lies outside"},
    {"targets[1].offset", "1000000000", VXRT_ERR_FORMAT, "lies outside"},
    {"targets[1].offset", "0", VXRT_ERR_FORMAT, "overlap"},
    {"targets[0].size", "0", VXRT_ERR_FORMAT, "is empty"},
    {"targets[0].checksum", "\"xyz\"", VXRT_ERR_FORMAT, "'checksum' must be 16 lowercase hex"},
    {"targets[0].checksum", "\"0000000000000000\"", VXRT_ERR_CORRUPT, "is corrupted: checksum"},
    {"targets[1].name", "\"sm_90\\u0001\"", VXRT_ERR_FORMAT, "non-printable"},
    {"targets", "[]", VXRT_ERR_FORMAT, "trailing bytes after the last section"},
    {"targets[0].name", "\"sm_90\"", VXRT_ERR_FORMAT, "both named \"sm_90\""},
    {"targets[1].shapes", "\"d128g4p16_bf16\"", VXRT_ERR_FORMAT, "targets[1]: 'shapes' must be an array"},
    {"targets[1].shapes", "[\"d128g4p16\"]", VXRT_ERR_FORMAT, "shapes[0] must be a shape name"},
    {"targets[1].shapes", "[\"d128g4p16_fp8\"]", VXRT_ERR_FORMAT, "shapes[0] must be a shape name"},
    {"targets[1].shapes", "[\"d0128g4p16_bf16\"]", VXRT_ERR_FORMAT, "shapes[0] must be a shape name"},
    {"targets[1].shapes", "[\"d999999g4p16_bf16\"]", VXRT_ERR_FORMAT, "shapes[0] must be a shape name"},
    {"targets[1].shapes", "[\"d64g1p16_f32\", 7]", VXRT_ERR_FORMAT, "shapes[1] must be a shape name"},
    {"targets[1].shapes", "[\"d64g1p16_f32\", \"d64g1p16_f32\"]", VXRT_ERR_FORMAT, "shapes[0] and shapes[1] are both"},
    {"targets[1].gpu_kernels", "[\"launch\"]", VXRT_ERR_FORMAT, "gpu_kernels[0] must be a GPU kernel kind"},
    {"targets[1].gpu_kernels", "{}", VXRT_ERR_FORMAT, "'gpu_kernels' must be an array"},
    {"targets[0].shapes", "[\"d64g1p16_f32\"]", VXRT_ERR_FORMAT, "only a ptx target may list"},
    {"targets[1].shapes", NULL, VXRT_OK, NULL},
    {"targets[1].gpu_kernels", NULL, VXRT_OK, NULL},
    {"targets[1].shapes", "[]", VXRT_OK, NULL},
    {"targets[1].gpu_kernels", "[\"append\", \"summarise\", \"select\", \"attend\"]", VXRT_OK, NULL},
    {"extra_key_from_a_newer_vxc", "{\"x\": 1}", VXRT_OK, NULL},
    {"fields[0].stage", "\"step\"", VXRT_OK, NULL},
    {"fields[1].dtype", "\"fp8\"", VXRT_OK, NULL},
    {"fields[1].dtype", "\"int8\"", VXRT_OK, NULL},
    {"fields[1].dtype", "\"fp8e4m3\"", VXRT_ERR_FORMAT, "expected one of \"f32\", \"f16\", \"bf16\", \"fp8\", \"int8\", \"u32\""},
    {"kernels[0].kind", "\"require\"", VXRT_OK, NULL},
    {"kernels[1].kind", "\"scalars\"", VXRT_OK, NULL},
    {"kernels[2].kind", "\"const\"", VXRT_OK, NULL},
};

static void test_manifest_edits(void) {
  char *text = rt_manifest_text(&good);
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    const edit *e = &edits[i];
    cJSON *root = cJSON_Parse(text), *parent;
    char last[64];
    cJSON *at = jpath(root, e->path, &parent, last);
    cJSON *val = e->value ? cJSON_Parse(e->value) : NULL;
    if (e->value && !val) {
      RT_CHECK(0, "edit %zu: bad test JSON %s", i, e->value);
      cJSON_Delete(root);
      continue;
    }
    if (last[0] == '#') {
      cJSON_ReplaceItemInArray(parent, atoi(last + 1), val);
    } else if (!at && val) {
      cJSON_AddItemToObject(parent, last, val);
    } else if (val) {
      cJSON_ReplaceItemInObjectCaseSensitive(parent, last, val);
    } else {
      cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
    }
    char *t2 = cJSON_Print(root);
    rt_blob b = rt_reseal(&good, t2);
    vxrt_status st = load(b.data, b.len);
    if (!rt_expect_at(__FILE__, __LINE__, e->path, st, e->want, e->needle))
      fprintf(stderr, "  (edit %zu: %s = %s)\n", i, e->path, e->value ? e->value : "deleted");
    free(b.data);
    free(t2);
    cJSON_Delete(root);
  }
  /* Texts that are not a manifest at all. */
  static const struct { const char *text; const char *needle; } texts[] = {
      {"", "not valid JSON"},
      {"{\"format\": 1,", "not valid JSON"},
      {"not json", "not valid JSON"},
      {"[1, 2]", "top level must be a JSON object"},
      {"{} {}", "text after the JSON value"},
      {"\"VXPOLICY\"", "top level must be a JSON object"},
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    rt_blob b = rt_reseal(&good, texts[i].text);
    RT_EXPECT(load(b.data, b.len), VXRT_ERR_FORMAT, texts[i].needle);
    free(b.data);
  }
  /* Trailing whitespace after the JSON is fine; a byte after the last section is not. */
  size_t n = strlen(text);
  char *ws = malloc(n + 3);
  memcpy(ws, text, n);
  memcpy(ws + n, " \n", 3);
  rt_blob b = rt_reseal(&good, ws);
  RT_EXPECT(load(b.data, b.len), VXRT_OK, NULL);
  unsigned char *longer = malloc(b.len + 1);
  memcpy(longer, b.data, b.len);
  longer[b.len] = 0;
  RT_EXPECT(load(longer, b.len + 1), VXRT_ERR_FORMAT, "1 trailing bytes after the last section");
  free(longer);
  free(b.data);
  free(ws);
  free(text);
}

static void test_targets(void) {
  /* Only PTX: the CPU has nothing to run. */
  rt_blob b = rt_build(VXT_SO_A, NULL, "sm_90");
  char want[128];
  snprintf(want, sizeof want, "artifact has targets [sm_90]; this device needs %s", host);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_TARGET, want);
  free(b.data);
  /* Host code for another machine. */
  b = rt_build(VXT_SO_A, "riscv64-linux", "sm_80");
  snprintf(want, sizeof want, "artifact has targets [riscv64-linux, sm_80]; this device needs %s",
           host);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_TARGET, want);
  free(b.data);
  /* No targets at all. */
  art_manifest m = rt_manifest(NULL, 0);
  b = rt_write(&m);
  RT_EXPECT(load(b.data, b.len), VXRT_ERR_TARGET, "artifact has targets []");
  free(b.data);
}

static void test_params(void) {
  vxrt_policy *pol = NULL;
  vxrt_param_override o[3] = {{"budget", 4096}, {"scale", 0.25}, {"budget", 1}};
  if (!RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, o, 2, &pol), VXRT_OK, NULL)) return;
  vxrt_policy_info info;
  RT_EXPECT(vxrt_policy_get_info(pol, &info), VXRT_OK, NULL);
  RT_CHECK(strcmp(info.name, "quest") == 0 && strcmp(info.target, host) == 0 &&
               strcmp(info.vx_version, "0.1.0-test") == 0 &&
               strcmp(info.source_hash, "0123456789abcdef") == 0 && info.format == 1 &&
               info.nparams == 2 && info.nfields == 3 && info.nkernels == 3,
           "policy info");
  vxrt_param_info p;
  RT_EXPECT(vxrt_policy_get_param(pol, 0, &p), VXRT_OK, NULL);
  RT_CHECK(strcmp(p.name, "budget") == 0 && p.type == VXRT_PARAM_I32 &&
               strcmp(p.unit, "tokens") == 0 && p.default_value == 2048 && p.value == 4096,
           "budget: default %g value %g", p.default_value, p.value);
  RT_EXPECT(vxrt_policy_get_param(pol, 1, &p), VXRT_OK, NULL);
  RT_CHECK(p.type == VXRT_PARAM_F32 && p.default_value == 0.5 && p.value == 0.25, "scale");
  RT_EXPECT(vxrt_policy_get_param(pol, 2, &p), VXRT_ERR_INVALID_ARG, "out of range");
  int idx = -1;
  RT_EXPECT(vxrt_policy_find_param(pol, "scale", &idx), VXRT_OK, NULL);
  RT_CHECK(idx == 1, "find_param");
  RT_EXPECT(vxrt_policy_find_param(pol, "nope", &idx), VXRT_ERR_INVALID_ARG, "no parameter 'nope'");
  vxrt_field_info f;
  RT_EXPECT(vxrt_policy_get_field(pol, 2, &f), VXRT_OK, NULL);
  RT_CHECK(strcmp(f.name, "W") == 0 && f.stage == VXRT_STAGE_CONST && strcmp(f.dtype, "f32") == 0 &&
               f.naxes == 3 && strcmp(f.axes[2], "K") == 0,
           "field W");
  RT_EXPECT(vxrt_policy_get_field(pol, -1, &f), VXRT_ERR_INVALID_ARG, "out of range");
  vxrt_kernel_info k;
  RT_EXPECT(vxrt_policy_get_kernel(pol, 1, &k), VXRT_OK, NULL);
  RT_CHECK(strcmp(k.name, "name") == 0 && k.kind == VXRT_KERNEL_ROW &&
               strcmp(k.entry, "vxt_name") == 0 && k.handle != NULL,
           "kernel name");
  vxrt_policy_free(pol);

  /* Defaults when nothing is overridden. */
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, NULL, 0, &pol), VXRT_OK, NULL);
  RT_EXPECT(vxrt_policy_get_param(pol, 0, &p), VXRT_OK, NULL);
  RT_CHECK(p.value == 2048, "default budget");
  vxrt_policy_free(pol);

  /* Bad overrides. */
  vxrt_param_override bad1[] = {{"budgt", 1}};
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, bad1, 1, &pol), VXRT_ERR_PARAM,
            "policy quest has no parameter 'budgt' (it has: budget, scale)");
  RT_CHECK(pol == NULL, "no policy on failure");
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, o, 3, &pol), VXRT_ERR_PARAM,
            "'budget' is overridden twice");
  vxrt_param_override bad2[] = {{"budget", 10.5}};
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, bad2, 1, &pol), VXRT_ERR_PARAM,
            "'budget' is an i32; 10.5 is not");
  vxrt_param_override bad3[] = {{"budget", 3e9}};
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, bad3, 1, &pol), VXRT_ERR_PARAM, "i32");
  vxrt_param_override bad4[] = {{"scale", NAN}};
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, bad4, 1, &pol), VXRT_ERR_PARAM,
            "not a finite f32");
  vxrt_param_override bad5[] = {{NULL, 1}};
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, bad5, 1, &pol), VXRT_ERR_INVALID_ARG,
            "has no name");
  RT_EXPECT(vxrt_policy_load(cpu, good.data, good.len, NULL, 1, &pol), VXRT_ERR_INVALID_ARG, NULL);
}

static void test_files(void) {
  char dir[] = "/tmp/vxrt-test-XXXXXX";
  if (!mkdtemp(dir)) {
    RT_CHECK(0, "mkdtemp: %s", strerror(errno));
    return;
  }
  char path[256];
  snprintf(path, sizeof path, "%s/quest.vxp", dir);
  art_target t[1] = {{.name = host, .kind = ART_HOST_SO}};
  rt_blob so = rt_read_file(VXT_SO_A);
  t[0].data = so.data;
  t[0].size = so.len;
  art_manifest m = rt_manifest(t, 1);
  art_error err;
  RT_CHECK(art_write_file(&m, path, &err) == ART_OK, "art_write_file: %s", err.msg);
  vxrt_policy *pol = NULL;
  RT_EXPECT(vxrt_policy_load_file(cpu, path, NULL, 0, &pol), VXRT_OK, NULL);
  vxrt_policy_free(pol);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/nope.vxp", dir);
  RT_EXPECT(vxrt_policy_load_file(cpu, missing, NULL, 0, &pol), VXRT_ERR_IO, "cannot open");
  RT_EXPECT(vxrt_policy_load_file(cpu, dir, NULL, 0, &pol), VXRT_ERR_IO, "cannot read");
  RT_EXPECT(vxrt_policy_load_file(cpu, NULL, NULL, 0, &pol), VXRT_ERR_INVALID_ARG, NULL);
  /* A truncated file on disk. */
  FILE *f = fopen(path, "r+b");
  if (f) {
    RT_CHECK(ftruncate(fileno(f), 100) == 0, "ftruncate");
    fclose(f);
  }
  RT_EXPECT(vxrt_policy_load_file(cpu, path, NULL, 0, &pol), VXRT_ERR_FORMAT, "truncated");
  snprintf(missing, sizeof missing, "%s/no/such/dir/x.vxp", dir);
  RT_CHECK(art_write_file(&m, missing, &err) == ART_EIO && strstr(err.msg, "cannot write"),
           "art_write_file to a missing directory: %s", err.msg);
  unlink(path);
  rmdir(dir);
  free(so.data);
}

static void test_writer_errors(void) {
  art_target t[1] = {{.name = "sm_90", .kind = ART_PTX, .data = (const unsigned char *)"x", .size = 1}};
  art_manifest m = rt_manifest(t, 1);
  unsigned char *out;
  size_t len;
  art_error err;
  m.policy = NULL;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "policy"), "%s", err.msg);
  m.policy = "not valid";
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "not an identifier"),
           "%s", err.msg);
  m.policy = "quest";
  m.source_hash = "xyz";
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "source_hash"), "%s",
           err.msg);
  m.source_hash = "0123456789abcdef";
  art_kernel ks[1] = {{"k", ART_K_ATTEND, NULL}};
  m.kernels = ks;
  m.nkernels = 1;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "kernels"), "%s", err.msg);
  m.nkernels = -1;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG, "%s", err.msg);
  m.nkernels = 0;
  t[0].size = 0;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "is empty"), "%s", err.msg);
  t[0].size = 1;
  static const char *const bad_shapes[] = {"d128g4p16_bf16", "d128g4p16_int8"};
  t[0].shapes = bad_shapes;
  t[0].nshapes = 2;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "shapes[1] must be"),
           "%s", err.msg);
  t[0].nshapes = -1;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_EARG && strstr(err.msg, "targets"), "%s", err.msg);
  t[0].nshapes = 1;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_OK, "%s", err.msg);
  if (err.code == ART_OK) free(out);
  t[0].nshapes = 0;
  RT_CHECK(art_write(&m, &out, &len, &err) == ART_OK, "%s", err.msg);
  if (err.code == ART_OK) free(out);
  RT_CHECK(art_parse(NULL, 5, NULL, &err) == ART_EARG, "art_parse NULL");
}

int main(void) {
  vxrt_device_info di;
  if (!RT_EXPECT(vxrt_device_open(VXRT_CPU, 0, &cpu), VXRT_OK, NULL)) return rt_finish();
  vxrt_device_get_info(cpu, &di);
  static char target[32];
  snprintf(target, sizeof target, "%s", di.target);
  host = target;
  good = rt_build(VXT_SO_A, host, "sm_90");
  if (!good.data) {
    RT_CHECK(0, "cannot build the fixture artifact from %s", VXT_SO_A);
    return rt_finish();
  }
  test_round_trip();
  test_header();
  test_manifest_edits();
  test_targets();
  test_params();
  test_files();
  test_writer_errors();
  free(good.data);
  RT_EXPECT(vxrt_device_close(cpu), VXRT_OK, NULL);
  return rt_finish();
}
