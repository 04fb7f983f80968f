/* http_api.c - the JSON of `vx-serve serve`'s API (http_api.h): /v1/completions bodies in,
 * completions, chunks and error objects out, with cJSON. Validation follows OpenAI's rules
 * where they exist (types, ranges, the context) and names the field; unknown fields are
 * ignored. Sits under runtime/serve/ beside http.c; never prints, never exits, and never
 * trusts a byte of the body. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_api.h"

/* ------------------------------------------------------------------ parsing */

static int bad_at(http_bad *b, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_at(http_bad *b, const char *param, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->msg, sizeof b->msg, fmt, ap);
  va_end(ap);
  b->param = param;
  return -1;
}

/* An integral JSON number in [lo, hi] into *out; absent or null leaves *out. */
static int get_int(const cJSON *o, const char *name, double lo, double hi, long *out, http_bad *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v))
    return 0;
  double d = cJSON_GetNumberValue(v);
  if (!cJSON_IsNumber(v) || d != floor(d))
    return bad_at(b, name, "'%s' must be an integer", name);
  if (d < lo || d > hi)
    return bad_at(b, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, d);
  *out = (long)d;
  return 0;
}

static int get_num(const cJSON *o, const char *name, double *out, http_bad *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsNumber(v))
    return bad_at(b, name, "'%s' must be a number", name);
  *out = cJSON_GetNumberValue(v);
  return 0;
}

static int get_bool(const cJSON *o, const char *name, int *out, http_bad *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsBool(v))
    return bad_at(b, name, "'%s' must be true or false", name);
  *out = cJSON_IsTrue(v);
  return 0;
}

static int encode_text(const serve_ctx *x, const char *s, int keep_text, http_completion *c,
                       http_bad *b) {
  size_t n = strlen(s);
  if (n == 0)
    return bad_at(b, "prompt", "the prompt is empty");
  int ctx = x->m->cfg.ctx, cap = n + 8 < (size_t)ctx + 1 ? (int)n + 8 : ctx + 1;
  if (n > (size_t)HTTP_MAX_BYTES_PER_TOKEN * ctx) /* encoding is quadratic: refuse it unread */
    return bad_at(b, "prompt",
                  "the prompt is %zu bytes: more than the model's context of %d "
                  "tokens can hold (at most %d bytes a token)",
                  n, ctx, HTTP_MAX_BYTES_PER_TOKEN);
  c->prompt = malloc((size_t)cap * sizeof(int));
  if (!c->prompt || (c->nprompt = tokenizer_encode(x->tok, s, n, c->prompt, cap)) < 0)
    return bad_at(b, NULL, "out of memory encoding the prompt");
  if (keep_text && !(c->prompt_text = strdup(s)))
    return bad_at(b, NULL, "out of memory");
  return 0;
}

static int parse_prompt(const cJSON *o, const serve_ctx *x, int keep_text, http_completion *c,
                        http_bad *b) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
  if (!p || cJSON_IsNull(p))
    return bad_at(b, "prompt", "'prompt' is required");
  if (cJSON_IsString(p))
    return encode_text(x, p->valuestring, keep_text, c, b);
  if (!cJSON_IsArray(p))
    return bad_at(b, "prompt", "'prompt' must be a string or an array of token ids");
  int n = cJSON_GetArraySize(p), vocab = x->m->cfg.vocab;
  if (n == 0)
    return bad_at(b, "prompt", "the prompt is empty");
  const cJSON *first = cJSON_GetArrayItem(p, 0);
  if (cJSON_IsString(first)) {
    if (n > 1)
      return bad_at(b, "prompt", "one prompt per request: got %d", n);
    return encode_text(x, first->valuestring, keep_text, c, b);
  }
  if (n > x->m->cfg.ctx)
    return bad_at(b, "prompt", "the prompt is %d tokens; the model's context is %d tokens", n,
                  x->m->cfg.ctx);
  if (!(c->prompt = malloc((size_t)n * sizeof(int))))
    return bad_at(b, NULL, "out of memory");
  const cJSON *t;
  cJSON_ArrayForEach(t, p) {
    double d = cJSON_GetNumberValue(t);
    if (!cJSON_IsNumber(t) || d != floor(d) || d < 0 || d >= vocab)
      return bad_at(b, "prompt", "prompt token %d must be an integer token id in [0, %d)",
                    c->nprompt, vocab);
    c->prompt[c->nprompt++] = (int)d;
  }
  return 0;
}

static int add_stop(http_completion *c, const cJSON *s, http_bad *b) {
  if (!cJSON_IsString(s))
    return bad_at(b, "stop", "'stop' must be a string or an array of strings");
  size_t n = strlen(s->valuestring);
  if (n == 0 || n > HTTP_MAX_STOP_LEN)
    return bad_at(b, "stop", "a stop string must have 1 to %d bytes", HTTP_MAX_STOP_LEN);
  if (c->nstop == HTTP_MAX_STOP)
    return bad_at(b, "stop", "at most %d stop strings", HTTP_MAX_STOP);
  if (!(c->stop[c->nstop] = strdup(s->valuestring)))
    return bad_at(b, NULL, "out of memory");
  c->nstop++;
  return 0;
}

static int parse_stop(const cJSON *o, http_completion *c, http_bad *b) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "stop"), *e;
  if (!s || cJSON_IsNull(s))
    return 0;
  if (!cJSON_IsArray(s))
    return add_stop(c, s, b);
  cJSON_ArrayForEach(e, s) {
    if (add_stop(c, e, b) != 0)
      return -1;
  }
  return 0;
}

/* The "vx" object: policy parameter overrides, checked against the server's policy as the
 * command line's --param is (the name exists, i32 values integral and in range, f32 finite);
 * what only the policy can judge is checked when its variant loads. */
static int parse_vx(const cJSON *o, const serve_ctx *x, http_completion *c, http_bad *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "vx"), *e;
  if (!v || cJSON_IsNull(v))
    return 0;
  if (!cJSON_IsObject(v))
    return bad_at(b, "vx", "'vx' must be an object of policy parameters, like {\"budget\": 512}");
  cJSON_ArrayForEach(e, v) {
    int idx;
    vxrt_param_info pi;
    if (!x->policy)
      return bad_at(b, "vx", "the server runs dense attention: it has no policy parameters");
    if (vxrt_policy_find_param(x->policy, e->string, &idx) != VXRT_OK ||
        vxrt_policy_get_param(x->policy, idx, &pi) != VXRT_OK)
      return bad_at(b, "vx", "policy %s has no parameter '%s'", x->policy_name, e->string);
    double d = cJSON_GetNumberValue(e);
    if (!cJSON_IsNumber(e) || !isfinite(d))
      return bad_at(b, "vx", "vx.%s must be a number", e->string);
    if (pi.type == VXRT_PARAM_I32 && (d != floor(d) || d < -2147483648.0 || d > 2147483647.0))
      return bad_at(b, "vx", "vx.%s must be a 32-bit integer, got %g", e->string, d);
    for (int i = 0; i < c->novr; i++)
      if (!strcmp(c->ovr[i].name, pi.name))
        return bad_at(b, "vx", "vx.%s is given twice", e->string);
    if (c->novr == SERVE_MAX_PARAMS)
      return bad_at(b, "vx", "at most %d parameters", SERVE_MAX_PARAMS);
    c->ovr[c->novr++] = (vxrt_param_override){pi.name, d};
  }
  return 0;
}

static int parse_sampling(const cJSON *o, http_completion *c, http_bad *b) {
  double temp = 1, top_p = 1;
  long top_k = 0, seed = -1, n = 1, lp = -1;
  if (get_num(o, "temperature", &temp, b) || get_num(o, "top_p", &top_p, b) ||
      get_int(o, "top_k", -1, 1 << 30, &top_k, b) ||
      get_int(o, "seed", 0, 9007199254740991.0, &seed, b) || get_int(o, "n", 1, 1, &n, b) ||
      get_int(o, "logprobs", 0, 5, &lp, b))
    return -1;
  if (!(temp >= 0 && temp <= 2))
    return bad_at(b, "temperature", "'temperature' must be in [0, 2], got %g", temp);
  if (!(top_p > 0 && top_p <= 1))
    return bad_at(b, "top_p", "'top_p' must be in (0, 1], got %g", top_p);
  c->sample = (sample_opts){.temperature = (float)temp,
                            .top_k = top_k < 0 ? 0 : (int)top_k,
                            .top_p = (float)top_p,
                            .seed = seed < 0 ? 0 : (uint64_t)seed};
  c->has_seed = seed >= 0;
  c->logprobs = (int)lp;
  return 0;
}

static int parse_fields(const cJSON *o, const serve_ctx *x, int keep_text, http_completion *c,
                        http_bad *b) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
  if (model && !cJSON_IsString(model) && !cJSON_IsNull(model))
    return bad_at(b, "model", "'model' must be a string");
  if (parse_prompt(o, x, keep_text, c, b) || parse_sampling(o, c, b) || parse_stop(o, c, b) ||
      parse_vx(o, x, c, b) || get_bool(o, "stream", &c->stream, b))
    return -1;
  int ctx = x->m->cfg.ctx;
  if (c->nprompt > ctx)
    return bad_at(b, "prompt", "the prompt is %d tokens; the model's context is %d tokens",
                  c->nprompt, ctx);
  long mt = ctx - c->nprompt < 16 ? ctx - c->nprompt : 16;
  if (get_int(o, "max_tokens", 1, 1e9, &mt, b))
    return -1;
  if (mt < 1 || c->nprompt + mt > ctx)
    return bad_at(b, "max_tokens",
                  "this model's context is %d tokens; the request asks %ld (%d in "
                  "the prompt, %ld for the completion)",
                  ctx, c->nprompt + mt, c->nprompt, mt);
  c->max_tokens = (int)mt;
  return 0;
}

int http_parse_completion(const char *body, size_t len, const serve_ctx *x, int keep_text,
                          http_completion *c, http_bad *bad) {
  memset(c, 0, sizeof *c);
  bad->param = NULL;
  cJSON *o = cJSON_ParseWithLength(body, len);
  int rc;
  if (!o)
    rc = bad_at(bad, NULL, "the body is not valid JSON");
  else if (!cJSON_IsObject(o))
    rc = bad_at(bad, NULL, "the body must be a JSON object");
  else
    rc = parse_fields(o, x, keep_text, c, bad);
  cJSON_Delete(o);
  if (rc != 0)
    http_completion_free(c);
  return rc;
}

void http_completion_free(http_completion *c) {
  free(c->prompt);
  free(c->prompt_text);
  for (int i = 0; i < c->nstop; i++)
    free(c->stop[i]);
  memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ writing */

char *http_error_json(const char *msg, const char *type, const char *param) {
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  if (e) {
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param)
      cJSON_AddStringToObject(e, "param", param);
    else
      cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
  }
  char *s = e ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

/* Bytes of the UTF-8 sequence starting at s[0..n) when it is complete and valid, else 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  size_t k = s[0] < 0x80         ? 1
             : (s[0] >> 5) == 6  ? 2
             : (s[0] >> 4) == 14 ? 3
             : (s[0] >> 3) == 30 ? 4
                                 : 0;
  if (k == 0 || k > n || (k == 2 && s[0] < 0xc2))
    return 0;
  for (size_t i = 1; i < k; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  return k;
}

size_t http_utf8_complete(const char *s, size_t n) {
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = (unsigned char)s[n - back];
    if ((c & 0xc0) == 0x80)
      continue; /* a continuation byte: look further back for the lead */
    size_t want = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return want > back ? n - back : n;
  }
  return n;
}

/* s[n] as valid UTF-8 (a malloc'd string; invalid bytes become U+FFFD). */
static char *utf8_clean(const char *s, size_t n) {
  char *o = malloc(3 * n + 1), *p = o;
  if (!o)
    return NULL;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq((const unsigned char *)s + i, n - i);
    if (k == 0) {
      memcpy(p, "\xef\xbf\xbd", 3);
      p += 3;
      i++;
    } else {
      memcpy(p, s + i, k);
      p += k;
      i += k;
    }
  }
  *p = '\0';
  return o;
}

static int add_clean_string(cJSON *to, const char *name, const char *s, size_t n) {
  char *t = utf8_clean(s, n);
  cJSON *item = t ? cJSON_CreateString(t) : NULL;
  free(t);
  if (!item)
    return -1;
  if (cJSON_IsArray(to))
    cJSON_AddItemToArray(to, item);
  else
    cJSON_AddItemToObject(to, name, item);
  return 0;
}

static int add_logprobs(cJSON *choice, const http_logprobs *l) {
  cJSON *o = cJSON_AddObjectToObject(choice, "logprobs");
  cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
  cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
  cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
  if (!toks || !lps || !offs || !cJSON_AddNullToObject(o, "top_logprobs"))
    return -1;
  for (int i = 0; i < l->ntok; i++) {
    if (add_clean_string(toks, NULL, l->text + l->off[i], (size_t)(l->off[i + 1] - l->off[i])))
      return -1;
    cJSON_AddItemToArray(lps, cJSON_CreateNumber(l->lp[i]));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber(l->off[i]));
  }
  return 0;
}

char *http_completion_json(const http_choice *ch) {
  cJSON *o = cJSON_CreateObject(), *choices, *c;
  cJSON_AddStringToObject(o, "id", ch->id);
  cJSON_AddStringToObject(o, "object", "text_completion");
  cJSON_AddNumberToObject(o, "created", (double)ch->created);
  cJSON_AddStringToObject(o, "model", ch->model);
  int ok = (choices = cJSON_AddArrayToObject(o, "choices")) &&
           cJSON_AddItemToArray(choices, c = cJSON_CreateObject()) &&
           add_clean_string(c, "text", ch->text, ch->len) == 0 &&
           cJSON_AddNumberToObject(c, "index", 0) &&
           (ch->lp ? add_logprobs(c, ch->lp) == 0 : cJSON_AddNullToObject(c, "logprobs") != NULL) &&
           (ch->finish ? cJSON_AddStringToObject(c, "finish_reason", ch->finish)
                       : cJSON_AddNullToObject(c, "finish_reason")) != NULL;
  if (ok && ch->prompt_tokens >= 0) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    ok = u && cJSON_AddNumberToObject(u, "prompt_tokens", ch->prompt_tokens) &&
         cJSON_AddNumberToObject(u, "completion_tokens", ch->completion_tokens) &&
         cJSON_AddNumberToObject(u, "total_tokens", ch->prompt_tokens + ch->completion_tokens);
  }
  char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}
