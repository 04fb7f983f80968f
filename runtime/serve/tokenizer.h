/* tokenizer.h - vx-serve's tokenizers: bytes (ids 0-255 are the bytes, BOS above them; the
 * vx-tiny models), llama2.c's tokenizer.bin (scored pieces, BPE merges by score, byte
 * fallback <0xXX>) and Hugging Face's byte-level BPE tokenizer.json (bpe.h). Sits under runtime/serve/ beside model.h; never prints or exits. */
#ifndef SERVE_TOKENIZER_H
#define SERVE_TOKENIZER_H

#include <stddef.h>

#include "model.h"

typedef struct tokenizer tokenizer;

/* Loads the tokenizer the model's config names. path is the tokenizer.bin for "llama2c"
 * tokenizers (must have exactly the model's vocab), must be NULL for "bytes", and for "bpe"
 * replaces the model folder's tokenizer.json (its ids must fit the model's vocab). Returns 0,
 * or -1 with a message naming the file. */
int tokenizer_load(const char *path, const model_config *c, tokenizer **out, char *err);
void tokenizer_free(tokenizer *t);
/* Encodes len bytes of text, BOS first (where the tokenizer has one); returns the number of tokens (may exceed cap: then
 * only cap were written), or -1 when out of memory. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int *out, int cap);
/* The bytes token `tok` stands for after token `prev` (llama2.c drops the leading space
 * after BOS); *len gets their count. Unknown ids give "". */
const char *tokenizer_piece(const tokenizer *t, int prev, int tok, size_t *len);

#endif
