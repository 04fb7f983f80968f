/* http_api.h - the JSON of `vx-serve serve`'s OpenAI-style API: a /v1/completions body
 * parsed and validated into a request (every bad input named, as OpenAI-compatible servers
 * name it), and the completion, chunk and error objects written back. Sits under
 * runtime/serve/ beside http.c, over cJSON and the tokenizer; no HTTP, no threads, never
 * prints, never exits. */
#ifndef SERVE_HTTP_API_H
#define SERVE_HTTP_API_H

#include <stddef.h>

#include "serve.h"
#include "util.h"

/* HTTP_MAX_BYTES_PER_TOKEN: a text prompt longer than this many bytes per context token is
 * refused before it is encoded (no tokenizer's pieces are that long on average). */
enum { HTTP_MAX_STOP = 4, HTTP_MAX_STOP_LEN = 256, HTTP_MAX_BYTES_PER_TOKEN = 32 };

typedef struct http_completion {
  int *prompt; /* malloc'd token ids, BOS first for text prompts */
  int nprompt;
  char *prompt_text; /* malloc'd, only when asked (for the log); else NULL */
  int max_tokens, stream;
  int logprobs; /* -1: none; else the chosen tokens' log probabilities */
  sample_opts sample;
  int has_seed;
  char *stop[HTTP_MAX_STOP]; /* malloc'd stop strings */
  int nstop;
  vxrt_param_override ovr[SERVE_MAX_PARAMS]; /* names point into the server's policy */
  int novr;
} http_completion;

/* A parse failure: the message and the offending field (NULL when none). */
typedef struct http_bad {
  char msg[SERVE_ERR_LEN];
  const char *param;
} http_bad;

/* Parses body[len] for the server x. keep_text: keep the prompt text for the log. Returns 0,
 * or -1 with bad filled (the request is then freed). */
int http_parse_completion(const char *body, size_t len, const serve_ctx *x, int keep_text,
                          http_completion *c, http_bad *bad);
void http_completion_free(http_completion *c);

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string (NULL: out of memory). */
char *http_error_json(const char *msg, const char *type, const char *param);

/* The logprobs of ntok tokens: their pieces (text[off[i], off[i + 1]), off has ntok + 1
 * entries), log probabilities and offsets (off[i]: from the completion's start). */
typedef struct http_logprobs {
  const char *text;
  const int *off;
  const float *lp;
  int ntok;
} http_logprobs;

/* A completion (or a streamed chunk: the same object with a text delta) as a malloc'd
 * string: id, created, model, text[len] (made valid UTF-8), finish_reason (NULL: null),
 * logprobs (NULL: null), usage (prompt < 0: none). */
typedef struct http_choice {
  const char *id, *model, *text, *finish;
  size_t len;
  long created;
  const http_logprobs *lp;
  int prompt_tokens, completion_tokens;
} http_choice;
char *http_completion_json(const http_choice *ch);

/* The length of s[n] without a UTF-8 sequence cut at its end (streaming holds it back). */
size_t http_utf8_complete(const char *s, size_t n);

#endif
