/* tokenizer.c - the byte tokenizer and llama2.c's tokenizer.bin (format: int32
 * max_token_length, then per token a float score, an int32 length and the bytes), and the
 * entry to byte-level BPE (bpe.c, Hugging Face tokenizer.json). Sits under runtime/serve/;
 * reads the file whole and treats it as hostile (lengths checked against the bytes left).
 * Never prints or exits. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "tokenizer.h"
#include "util.h"

struct tokenizer {
  int bytes;      /* 1: the byte tokenizer */
  bpe *bpe;       /* a tokenizer.json */
  int vocab, bos; /* bos -1: none */
  char **piece;   /* llama2c: NUL-terminated pieces */
  int *plen;
  float *score;
  int *sorted;    /* token ids sorted by piece, for lookups */
  unsigned char byte_piece[256][2];
};

static const tokenizer *sort_ctx;
static int cmp_piece(const void *a, const void *b) {
  return strcmp(sort_ctx->piece[*(const int *)a], sort_ctx->piece[*(const int *)b]);
}

static int lookup(const tokenizer *t, const char *s) {
  int lo = 0, hi = t->vocab - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(t->piece[t->sorted[mid]], s);
    if (c == 0)
      return t->sorted[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

int tokenizer_load(const char *path, const model_config *c, tokenizer **out, char *err) {
  *out = NULL;
  tokenizer *t = calloc(1, sizeof *t);
  if (!t)
    return serve_errf(err, "out of memory");
  t->vocab = c->vocab;
  t->bos = c->bos;
  for (int i = 0; i < 256; i++)
    t->byte_piece[i][0] = (unsigned char)i;
  if (!strcmp(c->tokenizer, "bytes")) {
    if (path) {
      free(t);
      return serve_errf(err, "tokenizer '%s' does not match the model: the model (%s) uses the byte "
                  "tokenizer and takes no --tokenizer", path, c->arch);
    }
    t->bytes = 1;
    *out = t;
    return 0;
  }
  if (!strcmp(c->tokenizer, "bpe")) {
    if (bpe_load(path ? path : c->tokenizer_file, c->vocab, &t->bpe, &t->bos, err) != 0) {
      free(t);
      return -1;
    }
    *out = t;
    return 0;
  }
  if (!path) {
    free(t);
    return serve_errf(err, "the model (%s, vocab %d) needs its tokenizer.bin: pass --tokenizer PATH",
                c->arch, c->vocab);
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    free(t);
    return serve_errf(err, "cannot open tokenizer '%s': %s", path, strerror(errno));
  }
  t->piece = calloc((size_t)t->vocab, sizeof *t->piece);
  t->plen = calloc((size_t)t->vocab, sizeof *t->plen);
  t->score = calloc((size_t)t->vocab, sizeof *t->score);
  t->sorted = calloc((size_t)t->vocab, sizeof *t->sorted);
  int32_t maxlen;
  int rc = -1;
  if (!t->piece || !t->plen || !t->score || !t->sorted) {
    serve_errf(err, "out of memory");
    goto out;
  }
  if (fread(&maxlen, 4, 1, f) != 1 || maxlen <= 0 || maxlen > 4096) {
    serve_errf(err, "tokenizer '%s' is truncated or not a llama2.c tokenizer.bin (bad "
         "max_token_length)", path);
    goto out;
  }
  for (int i = 0; i < t->vocab; i++) {
    int32_t len;
    if (fread(&t->score[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1) {
      serve_errf(err, "tokenizer '%s' does not match the model: it ends after %d tokens, the model "
           "has a vocabulary of %d", path, i, t->vocab);
      goto out;
    }
    if (len < 0 || len > maxlen || !(t->piece[i] = malloc((size_t)len + 1)) ||
        fread(t->piece[i], 1, (size_t)len, f) != (size_t)len) {
      serve_errf(err, "tokenizer '%s' is truncated or corrupt at token %d", path, i);
      goto out;
    }
    t->piece[i][len] = '\0';
    t->plen[i] = len;
    t->sorted[i] = i;
  }
  if (fgetc(f) != EOF) {
    serve_errf(err, "tokenizer '%s' does not match the model: it has more than the model's %d tokens",
         path, t->vocab);
    goto out;
  }
  sort_ctx = t;
  qsort(t->sorted, (size_t)t->vocab, sizeof(int), cmp_piece);
  rc = 0;
out:
  fclose(f);
  if (rc) {
    tokenizer_free(t);
    return -1;
  }
  *out = t;
  return 0;
}

void tokenizer_free(tokenizer *t) {
  if (!t)
    return;
  bpe_free(t->bpe);
  if (t->piece)
    for (int i = 0; i < t->vocab; i++)
      free(t->piece[i]);
  free(t->piece);
  free(t->plen);
  free(t->score);
  free(t->sorted);
  free(t);
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int *out, int cap) {
  int n = 0;
#define PUT(x)      \
  do {              \
    if (n < cap)    \
      out[n] = (x); \
    n++;            \
  } while (0)
  if (t->bos >= 0)
    PUT(t->bos);
  if (t->bpe)
    return bpe_encode(t->bpe, text, len, out, n, cap);
  if (t->bytes) {
    for (size_t i = 0; i < len; i++)
      PUT((unsigned char)text[i]);
    return n;
  }
  /* llama2.c: a dummy-prefix space, code points looked up whole (bytes + 3 as fallback), then
   * the best-scored merge of neighbours until none applies */
  int *tok = malloc((len + 2) * sizeof(int));
  char *buf = malloc(2 * 4096 + 8);
  if (!tok || !buf) {
    free(tok);
    free(buf);
    return -1;
  }
  int m = 0;
  if (len > 0) {
    int sp = lookup(t, " ");
    if (sp >= 0)
      tok[m++] = sp;
  }
  for (size_t i = 0; i < len;) {
    size_t k = 1;
    while (i + k < len && k < 4 && ((unsigned char)text[i + k] & 0xC0) == 0x80)
      k++;
    memcpy(buf, text + i, k);
    buf[k] = '\0';
    int id = lookup(t, buf);
    if (id >= 0) {
      tok[m++] = id;
    } else {
      for (size_t j = 0; j < k; j++)
        tok[m++] = (unsigned char)text[i + j] + 3;
    }
    i += k;
  }
  for (;;) {
    float best = -1e10f;
    int bi = -1, bid = -1;
    for (int i = 0; i + 1 < m; i++) {
      int a = tok[i], b = tok[i + 1];
      if (a < 0 || a >= t->vocab || b < 0 || b >= t->vocab || t->plen[a] + t->plen[b] > 8192)
        continue;
      memcpy(buf, t->piece[a], (size_t)t->plen[a]);
      memcpy(buf + t->plen[a], t->piece[b], (size_t)t->plen[b] + 1);
      int id = lookup(t, buf);
      if (id >= 0 && t->score[id] > best) {
        best = t->score[id];
        bi = i;
        bid = id;
      }
    }
    if (bi < 0)
      break;
    tok[bi] = bid;
    memmove(tok + bi + 1, tok + bi + 2, (size_t)(m - bi - 2) * sizeof(int));
    m--;
  }
  for (int i = 0; i < m; i++)
    PUT(tok[i]);
#undef PUT
  free(tok);
  free(buf);
  return n;
}

const char *tokenizer_piece(const tokenizer *t, int prev, int tok, size_t *len) {
  *len = 0;
  if (tok < 0 || tok >= t->vocab)
    return "";
  if (t->bpe)
    return bpe_piece(t->bpe, tok, len);
  if (t->bytes) {
    if (tok > 255)
      return "";
    *len = 1;
    return (const char *)t->byte_piece[tok];
  }
  const char *p = t->piece[tok];
  if (prev == t->bos && p[0] == ' ')
    p++;
  unsigned char b;
  if (sscanf(p, "<0x%02hhX>", &b) == 1) {
    *len = 1;
    return (const char *)t->byte_piece[b];
  }
  *len = strlen(p);
  return p;
}
