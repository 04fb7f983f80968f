/* bpe.h - byte-level BPE from a Hugging Face tokenizer.json (Llama 3, Qwen2/3): vocabulary,
 * ranked merges, added and special tokens, the pre-tokenizer's split pattern (emulated, see
 * bpe.c for its limits) and the BOS its post-processor adds. Sits under runtime/serve/ below
 * tokenizer.c, which dispatches to it; never prints, never exits. */
#ifndef SERVE_BPE_H
#define SERVE_BPE_H

#include <stddef.h>

typedef struct bpe bpe;

/* Loads path; every token id must be below model_vocab. *bos gets the token the
 * post-processor puts first (-1: none). Returns 0, or -1 with a message naming the file. */
int bpe_load(const char *path, int model_vocab, bpe **out, int *bos, char *err);
void bpe_free(bpe *b);
/* Appends the tokens of len bytes of text to out[n..] (at most cap in all); returns the new
 * count (may exceed cap: then only cap were written), or -1 when out of memory. */
int bpe_encode(const bpe *b, const char *text, size_t len, int *out, int n, int cap);
/* The bytes token tok stands for ("" for special tokens and unknown ids). */
const char *bpe_piece(const bpe *b, int tok, size_t *len);

#endif
