/* hf_test.c - tests of vx-serve's Hugging Face loaders (runtime/serve/hf.c, bpe.c) on small
 * model folders this program writes itself: the same seeded weights (values exact in f16 and
 * bf16) as a single-file safetensors (vx-tiny names, F32, config in its metadata) and as
 * folders (Llama f32 in one file; Llama bf16 in two shards with an index and an untied
 * lm_head; Qwen3 f16 with q/k norms) must give the same logits; a hand-written tokenizer.json
 * must give hand-derived tokens and round-trip arbitrary bytes; bad folders must fail naming
 * the file and what was expected. Usage: hf_test WORK_DIR (leaves WORK_DIR/llama-f32, used by
 * hf_test.sh). Exits 0 passed, 1 failed; never reads ../shared. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../runtime/serve/model.h"
#include "../../runtime/serve/tokenizer.h"

enum { DIM = 64, HID = 96, LAYERS = 2, HEADS = 4, KVH = 2, HD = 16, VOCAB = 300, CTX = 64 };

static int failures;
#define CHECK(c, ...)                                   \
  do {                                                  \
    if (!(c)) {                                         \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);       \
      printf(__VA_ARGS__);                              \
      putchar('\n');                                    \
      failures++;                                       \
    }                                                   \
  } while (0)

/* ------------------------------------------------------------------ weights */

typedef struct tensor {
  char name[96];      /* the folder's name */
  char tiny[64];      /* the single file's name ("" when it has none) */
  int d0, d1;         /* d1 0: a vector */
  float *v;
} tensor;

static tensor T[64];
static int nt;
static uint64_t rng = 12345;

static int next_int(int lo, int hi) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

/* weights k/256 (|k| <= 64) and norms 1 + k/64 (|k| <= 16): exact in f16 and bf16 */
static void add(const char *name, const char *tiny, int d0, int d1, int norm) {
  tensor *t = &T[nt++];
  snprintf(t->name, sizeof t->name, "%s", name);
  snprintf(t->tiny, sizeof t->tiny, "%s", tiny);
  t->d0 = d0;
  t->d1 = d1;
  size_t n = (size_t)d0 * (d1 ? d1 : 1);
  t->v = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    t->v[i] = norm ? 1.0f + next_int(-16, 16) / 64.0f : next_int(-64, 64) / 256.0f;
}

static void make_weights(void) {
  add("model.embed_tokens.weight", "emb.weight", VOCAB, DIM, 0);
  add("model.norm.weight", "norm.weight", DIM, 0, 1);
  for (int l = 0; l < LAYERS; l++) {
    static const struct {
      const char *hf, *tiny;
      int d0, d1, norm;
    } w[] = {{"input_layernorm", "n1", DIM, 0, 1},        {"self_attn.q_proj", "wq", HEADS * HD, DIM, 0},
             {"self_attn.k_proj", "wk", KVH * HD, DIM, 0}, {"self_attn.v_proj", "wv", KVH * HD, DIM, 0},
             {"self_attn.o_proj", "wo", DIM, HEADS * HD, 0}, {"post_attention_layernorm", "n2", DIM, 0, 1},
             {"mlp.gate_proj", "w1", HID, DIM, 0},        {"mlp.up_proj", "w3", HID, DIM, 0},
             {"mlp.down_proj", "w2", DIM, HID, 0},        {"self_attn.q_norm", "qn", HD, 0, 1},
             {"self_attn.k_norm", "kn", HD, 0, 1}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
      char a[96], b[64];
      snprintf(a, sizeof a, "model.layers.%d.%s.weight", l, w[i].hf);
      snprintf(b, sizeof b, "blocks.%d.%s.weight", l, w[i].tiny);
      add(a, b, w[i].d0, w[i].d1, w[i].norm);
    }
  }
}

static int is_qk_norm(const tensor *t) { return strstr(t->name, "_norm.weight") && strstr(t->name, "self_attn"); }

/* ------------------------------------------------------------------ safetensors writer */

static void put_elem(FILE *f, float x, const char *dtype) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if (!strcmp(dtype, "F32")) {
    fwrite(&u, 4, 1, f);
  } else if (!strcmp(dtype, "BF16")) { /* exact: the low 16 bits are zero */
    uint16_t h = (uint16_t)(u >> 16);
    fwrite(&h, 2, 1, f);
  } else { /* F16 of a normal value in range, exact by construction */
    uint32_t s = u >> 31, e = (u >> 23) & 255, m = u & 0x7fffff;
    uint16_t h = x == 0 ? (uint16_t)(s << 15) : (uint16_t)(s << 15 | (e - 112) << 10 | m >> 13);
    fwrite(&h, 2, 1, f);
  }
}

/* Writes the tensors sel[i] (names from the folder or the single file) to path. */
static void write_st(const char *path, const int *sel, int n, const char *dtype, int tiny,
                     const char *meta_config) {
  cJSON *h = cJSON_CreateObject();
  size_t es = strcmp(dtype, "F32") ? 2 : 4, off = 0;
  if (meta_config)
    cJSON_AddStringToObject(cJSON_AddObjectToObject(h, "__metadata__"), "config", meta_config);
  for (int i = 0; i < n; i++) {
    const tensor *t = &T[sel[i]];
    cJSON *o = cJSON_AddObjectToObject(h, tiny ? t->tiny : t->name);
    cJSON_AddStringToObject(o, "dtype", dtype);
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(t->d0));
    if (t->d1)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber(t->d1));
    size_t len = (size_t)t->d0 * (t->d1 ? t->d1 : 1) * es;
    cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + len)));
    off += len;
  }
  char *js = cJSON_PrintUnformatted(h);
  size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
  uint64_t total = hl + pad;
  FILE *f = fopen(path, "wb");
  fwrite(&total, 8, 1, f);
  fwrite(js, 1, hl, f);
  for (size_t i = 0; i < pad; i++)
    fputc(' ', f);
  for (int i = 0; i < n; i++) {
    const tensor *t = &T[sel[i]];
    for (size_t k = 0; k < (size_t)t->d0 * (t->d1 ? t->d1 : 1); k++)
      put_elem(f, t->v[k], dtype);
  }
  fclose(f);
  free(js);
  cJSON_Delete(h);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static void write_config(const char *dir, const char *arch, int tied) {
  char path[512], buf[1024];
  snprintf(path, sizeof path, "%s/config.json", dir);
  snprintf(buf, sizeof buf,
           "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d,\n"
           " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,\n"
           " \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d,\n"
           " \"rope_theta\": 10000.0, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": %s,\n"
           " \"hidden_act\": \"silu\", \"eos_token_id\": [281, 282], \"rope_scaling\": null}\n",
           arch, DIM, HID, LAYERS, HEADS, KVH, HD, VOCAB, CTX, tied ? "true" : "false");
  write_text(path, buf);
}

/* ------------------------------------------------------------------ tokenizer.json */

/* GPT-2's byte-level character of byte b, as UTF-8 into out. */
static void byte_char(int b, char *out) {
  int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b, n = 256;
  if (!printable)
    for (int k = 0; k < 256; k++)
      if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF))) {
        if (k == b)
          cp = n;
        n++;
      }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 63));
    out[2] = 0;
  }
}

/* merges (ids 256..): pieces as bytes, each the join of two existing tokens */
static const char *const merges[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"},
                                        {" ", "w"}, {"o", "r"}, {" w", "or"}, {"1", "2"},
                                        {" ", " "}, {"\n", "\n"}};

static void bytes_to_chars(const char *s, char *out) {
  out[0] = 0;
  for (; *s; s++)
    byte_char((unsigned char)*s, out + strlen(out));
}

static void write_tokenizer(const char *path, int extra_id) {
  cJSON *j = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(j, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON *vocab = cJSON_AddObjectToObject(model, "vocab"), *mg = cJSON_AddArrayToObject(model, "merges");
  char a[64], b[64], ab[128];
  for (int c = 0; c < 256; c++) {
    byte_char(c, a);
    cJSON_AddNumberToObject(vocab, a, c);
  }
  for (size_t i = 0; i < sizeof merges / sizeof merges[0]; i++) {
    bytes_to_chars(merges[i][0], a);
    bytes_to_chars(merges[i][1], b);
    snprintf(ab, sizeof ab, "%s%s", a, b);
    cJSON_AddNumberToObject(vocab, ab, 256 + (double)i);
    snprintf(ab, sizeof ab, "%s %s", a, b);
    cJSON_AddItemToArray(mg, cJSON_CreateString(ab));
  }
  cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
  const char *names[] = {"<|begin_of_text|>", "<|end|>", "<|eot|>"};
  for (int i = 0; i < 3; i++) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", i == 2 && extra_id ? extra_id : 280 + i);
    cJSON_AddStringToObject(t, "content", names[i]);
    cJSON_AddBoolToObject(t, "special", 1);
    cJSON_AddItemToArray(added, t);
  }
  cJSON *pre = cJSON_Parse(
      "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
      "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
      "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
      "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
      "false,\"trim_offsets\":true,\"use_regex\":false}]}");
  cJSON_AddItemToObject(j, "pre_tokenizer", pre);
  cJSON_AddItemToObject(j, "post_processor", cJSON_Parse(
      "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"
      "\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
      "\"special_tokens\":{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[280],"
      "\"tokens\":[\"<|begin_of_text|>\"]}}}"));
  char *s = cJSON_Print(j);
  write_text(path, s);
  free(s);
  cJSON_Delete(j);
}

/* ------------------------------------------------------------------ folders */

static void folder(const char *dir, const char *arch, const char *dtype, int shards, int tied) {
  char path[512];
  mkdir(dir, 0755);
  write_config(dir, arch, tied);
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  write_tokenizer(path, 0);
  int sel[64] = {0}, n = 0, qwen = !strcmp(arch, "Qwen3ForCausalLM");
  for (int i = 0; i < nt; i++)
    if (qwen || !is_qk_norm(&T[i]))
      sel[n++] = i;
  if (!tied) { /* lm_head: the embedding's values again */
    T[nt] = T[0];
    snprintf(T[nt].name, sizeof T[nt].name, "lm_head.weight");
    sel[n++] = nt;
  }
  if (shards == 1) {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, sel, n, dtype, 0, NULL);
    return;
  }
  int h = n / 2; /* two shards and their index */
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
  write_st(path, sel, h, dtype, 0, NULL);
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
  write_st(path, sel + h, n - h, dtype, 0, NULL);
  cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
  for (int i = 0; i < n; i++)
    cJSON_AddStringToObject(wm, T[sel[i]].name,
                            i < h ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
  char *s = cJSON_Print(idx);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  write_text(path, s);
  free(s);
  cJSON_Delete(idx);
}

static void single_file(const char *path, int qk_norm) {
  int sel[64], n = 0;
  for (int i = 0; i < nt; i++)
    if (qk_norm || !is_qk_norm(&T[i]))
      sel[n++] = i;
  char cfg[256];
  snprintf(cfg, sizeof cfg,
           "{\"d_model\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv\": %d, \"head_dim\": %d, "
           "\"ffn\": %d, \"vocab\": %d, \"rope_theta\": 10000, \"context\": %d, \"qk_norm\": %d}",
           DIM, LAYERS, HEADS, KVH, HD, HID, VOCAB, CTX, qk_norm);
  write_st(path, sel, n, "F32", 1, cfg);
}

/* ------------------------------------------------------------------ checks */

/* logits[n][VOCAB] of tokens through every layer (dense causal attention from position 0). */
static float *logits_of(const model *m, const int *tok, int n) {
  forward_scratch s;
  float *x = malloc((size_t)n * DIM * sizeof(float)), *lg = malloc((size_t)n * VOCAB * sizeof(float));
  int pos[CTX];
  for (int i = 0; i < n; i++)
    pos[i] = i;
  forward_scratch_init(&s, &m->cfg, n, n);
  forward_embed(m, tok, n, x);
  for (int l = 0; l < m->cfg.layers; l++) {
    forward_qkv(m, l, x, pos, n, &s);
    forward_prefill_attention(m, s.k, s.v, 0, n, &s);
    forward_out_mlp(m, l, x, n, &s);
  }
  forward_logits(m, x, n, lg, &s);
  forward_scratch_free(&s);
  free(x);
  return lg;
}

static void same_logits(const char *ref_path, const char *dir, const char *what) {
  char err[MODEL_ERR_LEN];
  model *a = NULL, *b = NULL;
  int rc = model_load(ref_path, 1, &a, err);
  CHECK(rc == 0, "%s: %s", ref_path, err);
  rc |= model_load(dir, 1, &b, err);
  CHECK(b != NULL, "%s: %s", dir, err);
  if (rc)
    return;
  int tok[12] = {280, 104, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100};
  float *la = logits_of(a, tok, 12), *lb = logits_of(b, tok, 12);
  double worst = 0, scale = 0;
  for (int i = 0; i < 12 * VOCAB; i++) {
    worst = fmax(worst, fabs((double)la[i] - lb[i]));
    scale = fmax(scale, fabs((double)la[i]));
  }
  CHECK(worst <= 1e-5 * scale && scale > 0, "%s: logits differ by %g (scale %g)", what, worst, scale);
  printf("ok: %s: logits equal the single file's (max diff %g, scale %g)\n", what, worst, scale);
  free(la);
  free(lb);
  model_free(a);
  model_free(b);
}

static void expect_tokens(const tokenizer *t, const char *text, const int *want, int nwant) {
  int got[64];
  int n = tokenizer_encode(t, text, strlen(text), got, 64);
  int same = n == nwant;
  for (int i = 0; same && i < n; i++)
    same = got[i] == want[i];
  CHECK(same, "encoding '%s': got %d tokens, expected %d", text, n, nwant);
  printf("ok: '%s' -> %d tokens\n", text, n);
}

static void tokenizer_checks(const char *dir) {
  char err[MODEL_ERR_LEN], path[1024];
  model *m = NULL;
  tokenizer *t = NULL;
  if (model_load(dir, 1, &m, err) || tokenizer_load(NULL, &m->cfg, &t, err)) {
    CHECK(0, "%s: %s", dir, err);
    model_free(m);
    return;
  }
  /* hello: h e (1) l l (2) he ll (3) hell o (4); " world": " w" (5), "or" (6), " wor" (7) */
  expect_tokens(t, "hello world", (int[]){280, 259, 262, 108, 100}, 5);
  /* \p{N}{1,3}: "123" "45"; "12" merges (8) inside the first only */
  expect_tokens(t, "12345", (int[]){280, 263, 51, 52, 53}, 5);
  /* added tokens cut first */
  expect_tokens(t, "a<|end|>b", (int[]){280, 97, 281, 98}, 4);
  /* "I" "'m" " " " ok" "\n\n" " x": the two spaces are in different pieces (no "  " merge),
   * the newlines one piece ("\n\n" merged) */
  expect_tokens(t, "I'm  ok\n\n x", (int[]){280, 73, 39, 109, 32, 32, 111, 107, 265, 32, 120}, 11);
  /* round trip: arbitrary bytes, invalid UTF-8 included */
  char text[600], back[2400];
  int tok[700];
  for (int r = 0; r < 50; r++) {
    size_t len = (size_t)next_int(0, 599), k = 0;
    for (size_t i = 0; i < len; i++)
      text[i] = (char)(r % 2 ? next_int(0, 255) : " he\nllo 123'sw\xc3\xa9\xe2\x80\x94"[next_int(0, 18)]);
    int n = tokenizer_encode(t, text, len, tok, 700);
    for (int i = 1; i < n; i++) {
      size_t pl;
      const char *p = tokenizer_piece(t, tok[i - 1], tok[i], &pl);
      memcpy(back + k, p, pl);
      k += pl;
    }
    CHECK(n <= 700 && tok[0] == 280 && k == len && !memcmp(text, back, len),
          "round trip %d (%zu bytes) failed", r, len);
  }
  printf("ok: 50 round trips\n");
  tokenizer_free(t);
  /* a tokenizer with an id beyond the model's vocabulary */
  snprintf(path, sizeof path, "%s/big-tokenizer.json", dir);
  write_tokenizer(path, 400);
  CHECK(tokenizer_load(path, &m->cfg, &t, err) != 0 && strstr(err, "does not match the model") &&
            strstr(err, "big-tokenizer.json"), "mismatching tokenizer: '%s'", err);
  printf("ok: %s\n", err);
  model_free(m);
}

static void expect_load_error(const char *dir, const char *want, const char *want2) {
  char err[MODEL_ERR_LEN] = "";
  model *m = NULL;
  int rc = model_load(dir, 1, &m, err);
  CHECK(rc != 0 && strstr(err, want) && strstr(err, want2), "%s: expected an error naming '%s' "
        "and '%s', got rc %d '%s'", dir, want, want2, rc, err);
  printf("ok: %s\n", err);
  model_free(m);
}

static void bad_folders(const char *work) {
  char dir[512], path[600], cmd[1300];
  snprintf(dir, sizeof dir, "%s/bad-arch", work);
  folder(dir, "MistralForCausalLM", "F32", 1, 1);
  expect_load_error(dir, "MistralForCausalLM", "config.json");
  snprintf(dir, sizeof dir, "%s/no-config", work);
  mkdir(dir, 0755);
  expect_load_error(dir, "no config.json", "no-config");
  snprintf(dir, sizeof dir, "%s/missing-shard", work);
  folder(dir, "LlamaForCausalLM", "BF16", 2, 0);
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
  remove(path);
  expect_load_error(dir, "model-00002-of-00002.safetensors", "No such file");
  snprintf(dir, sizeof dir, "%s/truncated", work);
  folder(dir, "LlamaForCausalLM", "F32", 1, 1);
  snprintf(cmd, sizeof cmd, "truncate -s 20000 %s/model.safetensors", dir);
  CHECK(system(cmd) == 0, "truncate");
  expect_load_error(dir, "truncated", "model.safetensors");
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unsigned char bad[40] = {32}; /* header length 32, then 32 bytes that are not JSON */
  memset(bad + 8, ' ', 32);
  memcpy(bad + 8, "{\"a\": not json", 14);
  FILE *f = fopen(path, "wb");
  fwrite(bad, 1, sizeof bad, f);
  fclose(f);
  expect_load_error(dir, "is corrupt", "model.safetensors");
  snprintf(path, sizeof path, "%s/config.json", dir);
  write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64");
  expect_load_error(dir, "config.json", "not a JSON object");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: hf_test WORK_DIR\n");
    return 2;
  }
  const char *w = argv[1];
  char ref[512], ref_qk[512], d1[512], d2[512], d3[512];
  mkdir(w, 0755);
  make_weights();
  snprintf(ref, sizeof ref, "%s/tiny.safetensors", w);
  snprintf(ref_qk, sizeof ref_qk, "%s/tiny-qk.safetensors", w);
  single_file(ref, 0);
  single_file(ref_qk, 1);
  snprintf(d1, sizeof d1, "%s/llama-f32", w);
  snprintf(d2, sizeof d2, "%s/llama-bf16-sharded", w);
  snprintf(d3, sizeof d3, "%s/qwen3-f16", w);
  folder(d1, "LlamaForCausalLM", "F32", 1, 1);
  folder(d2, "LlamaForCausalLM", "BF16", 2, 0);
  folder(d3, "Qwen3ForCausalLM", "F16", 1, 1);
  same_logits(ref, d1, "llama, f32, one file, tied");
  same_logits(ref, d2, "llama, bf16, two shards, untied lm_head");
  same_logits(ref_qk, d3, "qwen3 (q/k norm), f16, one file");
  tokenizer_checks(d1);
  bad_folders(w);
  for (int i = 0; i < nt; i++)
    free(T[i].v);
  printf(failures ? "FAILED: %d checks\n" : "PASS\n", failures);
  return failures ? 1 : 0;
}
