/* bpe.c - byte-level BPE as Hugging Face's tokenizer.json describes it for Llama 3 and
 * Qwen2/3 (model.type "BPE"; pre-tokenizer a Split on their pattern and a ByteLevel without
 * its own regex, or ByteLevel alone). Sits under runtime/serve/ below tokenizer.c; the file is
 * hostile input (every id and string checked). Never prints, never exits.
 *
 * Encoding: added tokens are cut out of the text first (longest match), then the rest is split
 * as the pattern
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 * (K = 3 for Llama 3, 1 for Qwen) splits it, emulated by hand rather than by a regex engine,
 * and each piece's bytes are merged by rank. Limits: \s, \p{N} and the non-letters are
 * tables of the common Unicode ranges (Latin-1, general punctuation, symbols, CJK
 * punctuation, emoji); any other non-ASCII code point counts as a letter, so rare scripts'
 * digits and punctuation may split differently from Hugging Face's. No normalizer runs
 * (Qwen's NFC: give NFC text), and added tokens' lstrip/rstrip/single_word flags are ignored.
 * Whatever the split, decoding gives back the bytes encoded: byte-level BPE covers every byte. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "loader.h"
#include "util.h"

typedef struct bpe_pair {
  uint64_t key; /* (left id << 32 | right id) + 1; 0: empty slot */
  int rank, id;
} bpe_pair;

struct bpe {
  int ntok;             /* ids 0 .. ntok-1 */
  char **raw;           /* [ntok] the bytes a token stands for (NULL: no such id) */
  int *rawlen;
  unsigned char *special;
  int *slot, nslot;     /* raw bytes -> id, open addressing (-1 empty) */
  bpe_pair *pair;
  int npair;
  int *added, nadded;   /* added tokens, longest content first */
  int byte_id[256];
  int digits;           /* K of \p{N}{1,K} */
  int ignore_merges;    /* a piece that is a token is taken whole */
};

/* ------------------------------------------------------------------ byte <-> code point */

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68
 * for code points 256.. in byte order. */
static int printable(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static int cp_to_byte(uint32_t cp) {
  if (cp < 256)
    return printable((int)cp) ? (int)cp : -1;
  int n = 256;
  for (int b = 0; b < 256; b++)
    if (!printable(b) && (uint32_t)n++ == cp)
      return b;
  return -1;
}

/* Decodes one UTF-8 code point of s[0..n); returns its length (1 for a bad byte, cp -1). */
static int utf8_next(const unsigned char *s, size_t n, int32_t *cp) {
  int len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
  if (len == 0 || (size_t)len > n) {
    *cp = -1;
    return 1;
  }
  int32_t v = len == 1 ? s[0] : s[0] & (0x7F >> len);
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      *cp = -1;
      return 1;
    }
    v = v << 6 | (s[i] & 0x3F);
  }
  *cp = v;
  return len;
}

/* A vocabulary string (byte-level code points) to its bytes; -1 when not byte-level. */
static int to_raw(const char *s, char *out) {
  size_t n = strlen(s), k = 0;
  for (size_t i = 0; i < n;) {
    int32_t cp;
    i += (size_t)utf8_next((const unsigned char *)s + i, n - i, &cp);
    int b = cp < 0 ? -1 : cp_to_byte((uint32_t)cp);
    if (b < 0)
      return -1;
    out[k++] = (char)b;
  }
  return (int)k;
}

/* ------------------------------------------------------------------ tables */

static uint32_t hash_bytes(const char *s, int n) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static int lookup(const bpe *b, const char *s, int n) {
  for (uint32_t i = hash_bytes(s, n) & (uint32_t)(b->nslot - 1);; i = (i + 1) & (uint32_t)(b->nslot - 1)) {
    int id = b->slot[i];
    if (id < 0)
      return -1;
    if (b->rawlen[id] == n && !memcmp(b->raw[id], s, (size_t)n))
      return id;
  }
}

static void insert(bpe *b, int id) {
  uint32_t i = hash_bytes(b->raw[id], b->rawlen[id]) & (uint32_t)(b->nslot - 1);
  while (b->slot[i] >= 0)
    i = (i + 1) & (uint32_t)(b->nslot - 1);
  b->slot[i] = id;
}

/* The slot of pair (l, r): its entry, or the empty slot where it would go. */
static bpe_pair *pair_slot(const bpe *b, int l, int r) {
  uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
  uint64_t h = key * 0x9e3779b97f4a7c15ull;
  for (size_t i = (size_t)(h >> 32) & (size_t)(b->npair - 1);; i = (i + 1) & (size_t)(b->npair - 1))
    if (b->pair[i].key == key || b->pair[i].key == 0)
      return &b->pair[i];
}

/* The merge of pair (l, r): its rank (1 best) and result, or NULL. */
static const bpe_pair *pair_find(const bpe *b, int l, int r) {
  const bpe_pair *p = pair_slot(b, l, r);
  return p->key ? p : NULL;
}

static int pow2_above(long n) {
  int p = 16;
  while (p < 2 * n)
    p *= 2;
  return p;
}

/* ------------------------------------------------------------------ loading */

static int set_token(bpe *b, int id, const char *bytes, int n, const char *path, char *err) {
  if (id < 0 || id >= b->ntok)
    return serve_errf(err, "tokenizer '%s' does not match the model: token id %d, the model's "
                      "vocabulary has %d", path, id, b->ntok);
  if (b->raw[id])
    return 0; /* an added token that is also in the vocabulary */
  if (!(b->raw[id] = malloc((size_t)n + 1)))
    return serve_errf(err, "out of memory");
  memcpy(b->raw[id], bytes, (size_t)n);
  b->raw[id][n] = '\0';
  b->rawlen[id] = n;
  return 0;
}

static int load_vocab(bpe *b, const cJSON *vocab, const char *path, char *err) {
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    char buf[1024];
    int n = strlen(e->string) < sizeof buf ? to_raw(e->string, buf) : -1;
    if (!cJSON_IsNumber(e) || n < 0)
      return serve_errf(err, "tokenizer '%s': vocabulary entry '%.40s' is not a byte-level token "
                        "with an id", path, e->string);
    if (set_token(b, (int)e->valuedouble, buf, n, path, err))
      return -1;
  }
  return 0;
}

static int load_added(bpe *b, const cJSON *added, const char *path, char *err) {
  const cJSON *e;
  b->added = malloc(((size_t)cJSON_GetArraySize(added) + 1) * sizeof(int));
  if (!b->added)
    return serve_errf(err, "out of memory");
  cJSON_ArrayForEach(e, added) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(content) || !*content->valuestring)
      return serve_errf(err, "tokenizer '%s': an added token lacks its id or content", path);
    int k = (int)id->valuedouble, n = (int)strlen(content->valuestring);
    if (set_token(b, k, content->valuestring, n, path, err))
      return -1;
    b->special[k] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
    int i = b->nadded++;
    for (; i > 0 && b->rawlen[b->added[i - 1]] < n; i--) /* longest first */
      b->added[i] = b->added[i - 1];
    b->added[i] = k;
  }
  return 0;
}

static int load_merges(bpe *b, const cJSON *merges, const char *path, char *err) {
  b->npair = pow2_above(cJSON_GetArraySize(merges));
  if (!(b->pair = calloc((size_t)b->npair, sizeof *b->pair)))
    return serve_errf(err, "out of memory");
  int rank = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, merges) {
    char l[512], r[512], both[1024];
    const char *ls = NULL, *rs = NULL;
    char tmp[1024];
    if (cJSON_IsString(e) && strlen(e->valuestring) < sizeof tmp) { /* "a b" */
      snprintf(tmp, sizeof tmp, "%s", e->valuestring);
      char *sp = strchr(tmp, ' ');
      if (sp) {
        *sp = '\0';
        ls = tmp;
        rs = sp + 1;
      }
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) { /* ["a", "b"] */
      ls = cJSON_GetStringValue(cJSON_GetArrayItem(e, 0));
      rs = cJSON_GetStringValue(cJSON_GetArrayItem(e, 1));
    }
    int nl = ls && strlen(ls) < sizeof l ? to_raw(ls, l) : -1;
    int nr = rs && strlen(rs) < sizeof r ? to_raw(rs, r) : -1;
    if (nl <= 0 || nr <= 0)
      return serve_errf(err, "tokenizer '%s': merge %d is not two byte-level tokens", path, rank);
    memcpy(both, l, (size_t)nl);
    memcpy(both + nl, r, (size_t)nr);
    int a = lookup(b, l, nl), c = lookup(b, r, nr), m = lookup(b, both, nl + nr);
    if (a < 0 || c < 0 || m < 0)
      return serve_errf(err, "tokenizer '%s': merge %d ('%s' '%s') names a token not in the "
                        "vocabulary", path, rank, ls, rs);
    bpe_pair *p = pair_slot(b, a, c);
    if (p->key == 0) /* the first (best) rank of a pair wins */
      *p = (bpe_pair){((uint64_t)(uint32_t)a << 32 | (uint32_t)c) + 1, rank + 1, m};
    rank++;
  }
  return 0;
}

/* K of \p{N}{1,K} from the pre-tokenizer (Split's pattern); -1 for a pre-tokenizer we do not
 * emulate. */
static int pretok_digits(const cJSON *pt) {
  const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pt, "type"));
  if (!ty)
    return -1;
  if (!strcmp(ty, "Sequence")) {
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers")) {
      int d = pretok_digits(e);
      if (d < 0)
        return -1;
      k = d > k ? d : k;
    }
    return k ? k : -1;
  }
  if (!strcmp(ty, "ByteLevel"))
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pt, "use_regex")) ? -1 : 0;
  if (strcmp(ty, "Split"))
    return -1;
  const char *re = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pt, "pattern"), "Regex"));
  static const char *const head = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|";
  static const char *const tail = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  size_t hl = strlen(head), tl = strlen(tail);
  if (!re || strncmp(re, head, hl) || strlen(re) < hl + tl || strcmp(re + strlen(re) - tl, tail))
    return -1;
  const char *mid = re + hl;
  size_t ml = strlen(re) - hl - tl;
  if (ml == 6 && !strncmp(mid, "\\p{N}", 5))
    return -1; /* \p{N}+ and the like */
  if (ml == 5 && !strncmp(mid, "\\p{N}", 5))
    return 1;
  if (ml == 10 && !strncmp(mid, "\\p{N}{1,", 8) && mid[8] >= '1' && mid[8] <= '9' && mid[9] == '}')
    return mid[8] - '0';
  return -1;
}

/* The id of the token the post-processor puts before the text (TemplateProcessing's first
 * SpecialToken), -1 if none. */
static int post_bos(const cJSON *pp) {
  const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pp, "type"));
  if (ty && !strcmp(ty, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
      int id = post_bos(e);
      if (id >= 0)
        return id;
    }
    return -1;
  }
  if (!ty || strcmp(ty, "TemplateProcessing"))
    return -1;
  const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
  const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(first, "SpecialToken"), "id"));
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(pp, "special_tokens"), name ? name : "");
  const cJSON *id = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "ids"), 0);
  return cJSON_IsNumber(id) ? (int)id->valuedouble : -1;
}

static int load_all(bpe *b, const cJSON *j, const char *path, int *bos, char *err) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(model, "type"));
  if (!ty || strcmp(ty, "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
    return serve_errf(err, "tokenizer '%s' is not a BPE tokenizer.json (model.type \"BPE\" with "
                      "vocab and merges expected)", path);
  if ((b->digits = pretok_digits(cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"))) < 0)
    return serve_errf(err, "tokenizer '%s': its pre_tokenizer is not the byte-level split of "
                      "Llama 3 or Qwen that vx-serve emulates", path);
  b->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
  b->raw = calloc((size_t)b->ntok, sizeof *b->raw);
  b->rawlen = calloc((size_t)b->ntok, sizeof *b->rawlen);
  b->special = calloc((size_t)b->ntok, 1);
  b->nslot = pow2_above(b->ntok);
  b->slot = malloc((size_t)b->nslot * sizeof *b->slot);
  if (!b->raw || !b->rawlen || !b->special || !b->slot)
    return serve_errf(err, "out of memory");
  memset(b->slot, 0xff, (size_t)b->nslot * sizeof *b->slot);
  if (load_vocab(b, vocab, path, err) || (cJSON_IsArray(added) && load_added(b, added, path, err)))
    return -1;
  for (int id = 0; id < b->ntok; id++)
    if (b->raw[id] && !b->special[id])
      insert(b, id);
  for (int c = 0; c < 256; c++) {
    char ch = (char)c;
    if ((b->byte_id[c] = lookup(b, &ch, 1)) < 0)
      return serve_errf(err, "tokenizer '%s' is not byte-level: byte 0x%02x has no token", path, c);
  }
  if (load_merges(b, merges, path, err))
    return -1;
  *bos = post_bos(cJSON_GetObjectItemCaseSensitive(j, "post_processor"));
  if (*bos >= b->ntok || (*bos >= 0 && !b->raw[*bos]))
    return serve_errf(err, "tokenizer '%s': its BOS id %d is not a token", path, *bos);
  return 0;
}

int bpe_load(const char *path, int model_vocab, bpe **out, int *bos, char *err) {
  *out = NULL;
  int missing;
  cJSON *j = loader_read_json(path, &missing, err);
  if (!j)
    return -1;
  bpe *b = calloc(1, sizeof *b);
  if (!b) {
    cJSON_Delete(j);
    return serve_errf(err, "out of memory");
  }
  b->ntok = model_vocab;
  int rc = load_all(b, j, path, bos, err);
  cJSON_Delete(j);
  if (rc) {
    bpe_free(b);
    return -1;
  }
  *out = b;
  return 0;
}

void bpe_free(bpe *b) {
  if (!b)
    return;
  for (int i = 0; b->raw && i < b->ntok; i++)
    free(b->raw[i]);
  free(b->raw);
  free(b->rawlen);
  free(b->special);
  free(b->slot);
  free(b->pair);
  free(b->added);
  free(b);
}

/* ------------------------------------------------------------------ pre-tokenizer */

static int is_space(int32_t c) {
  return c == ' ' || (c >= 9 && c <= 13) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

static int is_num(int32_t c) {
  return (c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 ||
         (c >= 0xBC && c <= 0xBE) || (c >= 0x660 && c <= 0x669) || (c >= 0x6F0 && c <= 0x6F9) ||
         (c >= 0x966 && c <= 0x96F) || (c >= 0x2070 && c <= 0x2089) ||
         (c >= 0x2150 && c <= 0x2189) || (c >= 0x2460 && c <= 0x249B) ||
         (c >= 0xFF10 && c <= 0xFF19);
}

static int is_letter(int32_t c) {
  if (c < 0x80)
    return (c | 32) >= 'a' && (c | 32) <= 'z';
  if (is_space(c) || is_num(c))
    return 0;
  static const int32_t other[][2] = { /* controls, punctuation, symbols, marks, emoji */
      {0x80, 0xA9}, {0xAB, 0xB4}, {0xB6, 0xB9}, {0xBB, 0xBF}, {0xD7, 0xD7}, {0xF7, 0xF7},
      {0x2C2, 0x2C5}, {0x2D2, 0x2DF}, {0x300, 0x36F}, {0x2000, 0x206F}, {0x20A0, 0x20FF},
      {0x2190, 0x2BFF}, {0x3000, 0x3004}, {0x3008, 0x3020}, {0xD800, 0xF8FF}, {0xFE00, 0xFE0F},
      {0xFE30, 0xFE4F}, {0xFF00, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65},
      {0x1F000, 0x1FAFF}};
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
    if (c >= other[i][0] && c <= other[i][1])
      return 0;
  return 1;
}

/* Code point at s[i] (of n bytes) and its length in *len; -1 past the end. */
static int32_t cp_at(const unsigned char *s, size_t n, size_t i, int *len) {
  int32_t c = -1;
  *len = 0;
  if (i < n)
    *len = utf8_next(s + i, n - i, &c);
  return c;
}

/* The length of the piece the pattern matches at s[i] (of n bytes). */
static size_t split_one(const unsigned char *s, size_t n, size_t i, int digits) {
  int l0, l1;
  int32_t c = cp_at(s, n, i, &l0), d = cp_at(s, n, i + (size_t)l0, &l1);
  if (c == '\'' && d >= 0 && d < 128) { /* 's 't 're 've 'm 'll 'd, any case */
    int e = cp_at(s, n, i + 2, &l1) | 32, lc = d | 32;
    if (lc == 's' || lc == 't' || lc == 'm' || lc == 'd')
      return 2;
    if ((lc == 'r' && e == 'e') || (lc == 'v' && e == 'e') || (lc == 'l' && e == 'l'))
      return 3;
  }
  size_t j = i;
  int len;
  if (is_letter(c) || (c != '\r' && c != '\n' && !is_num(c) && is_letter(d))) {
    j += (size_t)l0;
    while (is_letter(cp_at(s, n, j, &len)))
      j += (size_t)len;
    return j - i;
  }
  if (is_num(c)) {
    for (int k = 0; k < digits && is_num(cp_at(s, n, j, &len)); k++)
      j += (size_t)len;
    return j - i;
  }
  int32_t e = c == ' ' && l1 > 0 ? d : c; /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
  if (!is_space(e) && !is_letter(e) && !is_num(e)) {
    if (c == ' ')
      j++;
    int32_t x;
    while (j < n && (x = cp_at(s, n, j, &len), !is_space(x) && !is_letter(x) && !is_num(x)))
      j += (size_t)len;
    while (j < n && (s[j] == '\r' || s[j] == '\n'))
      j++;
    return j - i;
  }
  size_t end = i, last_nl = 0; /* a run of white space */
  int lastlen = 0;
  while (is_space(cp_at(s, n, end, &len))) {
    if (s[end] == '\r' || s[end] == '\n')
      last_nl = end + 1;
    lastlen = len;
    end += (size_t)len;
  }
  if (end == i)
    return (size_t)l0; /* not reached: every code point is a letter, number, space or other */
  if (last_nl)
    return last_nl - i;                       /* \s*[\r\n]+ */
  if (end == n || end - i == (size_t)lastlen) /* \s+(?!\S) to the end, or one \s */
    return end - i;
  return end - i - (size_t)lastlen;           /* \s+(?!\S): leave one before the \S */
}

/* ------------------------------------------------------------------ encoding */

#define PUT(x)        \
  do {                \
    if (n < cap)      \
      out[n] = (x);   \
    n++;              \
  } while (0)

/* One piece's tokens, merged by rank (the lowest rank, leftmost first). */
static int encode_piece(const bpe *b, const unsigned char *p, size_t len, int *out, int n, int cap,
                        int *sym) {
  int whole = b->ignore_merges ? lookup(b, (const char *)p, (int)len) : -1;
  if (whole >= 0) {
    PUT(whole);
    return n;
  }
  int m = (int)len;
  for (int i = 0; i < m; i++)
    sym[i] = b->byte_id[p[i]];
  for (;;) {
    int best = 0, at = -1, id = -1;
    for (int i = 0; i + 1 < m; i++) {
      const bpe_pair *q = pair_find(b, sym[i], sym[i + 1]);
      if (q && (at < 0 || q->rank < best)) {
        best = q->rank;
        at = i;
        id = q->id;
      }
    }
    if (at < 0)
      break;
    sym[at] = id;
    memmove(sym + at + 1, sym + at + 2, (size_t)(m - at - 2) * sizeof(int));
    m--;
  }
  for (int i = 0; i < m; i++)
    PUT(sym[i]);
  return n;
}

/* The added token starting at s (longest first), -1 if none. */
static int added_at(const bpe *b, const char *s, size_t left) {
  for (int k = 0; k < b->nadded; k++) {
    int id = b->added[k];
    if ((size_t)b->rawlen[id] <= left && !memcmp(s, b->raw[id], (size_t)b->rawlen[id]))
      return id;
  }
  return -1;
}

int bpe_encode(const bpe *b, const char *text, size_t len, int *out, int n, int cap) {
  int *sym = malloc((len + 1) * sizeof(int));
  if (!sym)
    return -1;
  const unsigned char *s = (const unsigned char *)text;
  size_t start = 0; /* the text since the last added token */
  for (size_t i = 0; i <= len;) {
    int id = i < len ? added_at(b, text + i, len - i) : -1;
    if (i < len && id < 0) {
      i++;
      continue;
    }
    for (size_t j = start; j < i;) {
      size_t k = split_one(s, i, j, b->digits);
      n = encode_piece(b, s + j, k, out, n, cap, sym);
      j += k;
    }
    if (id < 0)
      break;
    PUT(id);
    i += (size_t)b->rawlen[id];
    start = i;
  }
  free(sym);
  return n;
}

#undef PUT

const char *bpe_piece(const bpe *b, int tok, size_t *len) {
  *len = 0;
  if (tok < 0 || tok >= b->ntok || !b->raw[tok] || b->special[tok])
    return "";
  *len = (size_t)b->rawlen[tok];
  return b->raw[tok];
}
