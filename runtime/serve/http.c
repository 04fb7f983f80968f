/* http.c - `vx-serve serve` (http.h): options, setup, the libmicrohttpd daemon (a thread per
 * connection, so a request's thread may block while the scheduler generates), the routes
 * (/v1/completions, /v1/models, /health, /metrics), plain and server-sent-event responses,
 * client-disconnect detection, stop strings, one log line per request, and the graceful stop
 * on SIGINT/SIGTERM. Sits at the top of runtime/serve/ over scheduler.h and http_api.h; prints
 * only its log lines and setup errors on stderr; never logs prompt text unless asked to;
 * exits only through http_serve_main's return. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "http.h"
#include "http_api.h"
#include "scheduler.h"

typedef struct http_opts {
  const char *host, *name;
  long port, kv_pages, queue, max_body, body_timeout, max_conn;
  double request_timeout, shutdown_timeout;
  int log_prompts;
} http_opts;

typedef struct http_server {
  serve_ctx x;
  http_opts o;
  sched *s;
  struct MHD_Daemon *d;
  int stops[2], nstops;
  long next_id;
  volatile int stopping;
} http_server;

/* One HTTP request (MHD's per-request pointer), from its headers to its log line. */
typedef struct http_conn {
  http_server *srv;
  long id;
  double t0;
  char method[8], path[64];
  char *body;
  size_t nbody, cap;
  int status, fd, dropped;
  char note[96]; /* what the log line adds: the end of the generation, an error */
  http_completion c;
  sched_req *r;
  sched_end end;
  /* the completion's text, token by token */
  char *text;
  size_t tlen, tcap, ocap, sent;
  int *off; /* off[i]: where token i's piece starts in text; off[ntext] = tlen */
  int ntext, prev, lp_sent, stop_hit, ntok_final;
  char cid[40];
  /* server-sent events waiting to be copied out: pend[pend_at, npend) */
  char *pend;
  size_t npend, pcap, pend_at;
  int finished;
} http_conn;

enum { HTTP_DRAIN_FACTOR = 16 }; /* bodies up to 16 times the limit are read before the 413 */

static volatile sig_atomic_t http_signalled;
static int http_sig_pipe[2] = {-1, -1};

/* ------------------------------------------------------------------ responses */

static enum MHD_Result respond(http_conn *c, struct MHD_Connection *mc, int status, char *body,
                               const char *type) {
  struct MHD_Response *rs =
      body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE) : NULL;
  if (!rs) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == 503)
    MHD_add_response_header(rs, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  if (status == 405)
    MHD_add_response_header(rs, MHD_HTTP_HEADER_ALLOW,
                            !strcmp(c->path, "/v1/completions") ? "POST" : "GET");
  enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, rs);
  MHD_destroy_response(rs);
  c->status = status;
  return ok;
}

static enum MHD_Result respond_error(http_conn *c, struct MHD_Connection *mc, int status,
                                     const char *msg, const char *param) {
  const char *type = status == 504   ? "timeout"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  if (!c->note[0])
    snprintf(c->note, sizeof c->note, "%.95s", msg);
  return respond(c, mc, status, http_error_json(msg, type, param), "application/json");
}

static char *json_text(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

static enum MHD_Result get_models(http_conn *c, struct MHD_Connection *mc) {
  http_server *v = c->srv;
  cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data"),
        *m = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON_AddStringToObject(m, "id", v->o.name);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", 0);
  cJSON_AddStringToObject(m, "owned_by", "vx");
  cJSON_AddNumberToObject(m, "max_model_len", v->x.m->cfg.ctx);
  cJSON_AddStringToObject(m, "policy", v->x.policy_name);
  cJSON_AddItemToArray(data, m);
  return respond(c, mc, 200, json_text(o), "application/json");
}

static enum MHD_Result get_metrics(http_conn *c, struct MHD_Connection *mc) {
  size_t cap = 16384, n;
  char *buf = malloc(cap);
  while (buf && (n = sched_metrics(c->srv->s, buf, cap)) >= cap) {
    free(buf);
    buf = malloc(cap = n + 1);
  }
  return respond(c, mc, 200, buf, "text/plain; version=0.0.4");
}

static enum MHD_Result get_health(http_conn *c, struct MHD_Connection *mc) {
  if (c->srv->stopping)
    return respond_error(c, mc, 503, "the server is shutting down", NULL);
  char *s = strdup("{\"status\":\"ok\"}");
  return respond(c, mc, 200, s, "application/json");
}

/* ------------------------------------------------------------------ generated text */

/* The client closed its side (or the socket failed): its generation should stop. */
static int client_gone(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need)
    n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q)
    return -1;
  *p = q;
  *cap = n;
  return 0;
}

/* Ends the text at the first stop string, if one appeared in it (from `from` on). */
static void find_stop(http_conn *c, size_t from) {
  size_t best = SIZE_MAX, best_end = 0;
  for (int i = 0; i < c->c.nstop; i++) {
    size_t L = strlen(c->c.stop[i]);
    size_t start = from >= L ? from - L + 1 : 0;
    for (size_t p = start; p + L <= c->tlen && p < best; p++)
      if (!memcmp(c->text + p, c->c.stop[i], L))
        best = p, best_end = p + L;
  }
  if (best == SIZE_MAX)
    return;
  int used = 0, k = 0; /* tokens generated up to the stop string's end; tokens before it */
  while (used < c->ntext && (size_t)c->off[used] < best_end)
    used++;
  while (k < c->ntext && (size_t)c->off[k] < best)
    k++;
  c->ntok_final = used;
  c->ntext = k;
  c->tlen = best;
  for (int i = 0; i <= c->ntext; i++)
    c->off[i] = c->off[i] < (int)best ? c->off[i] : (int)best;
  c->stop_hit = 1;
  sched_cancel(c->srv->s, c->r, SCHED_END_STOP);
}

/* Appends the pieces of tokens [ntext, n) to the text, then looks for stop strings. */
static int add_tokens(http_conn *c, int n) {
  size_t from = c->tlen;
  if (c->stop_hit || n <= c->ntext)
    return 0;
  if (grow((void **)&c->off, &c->ocap, (size_t)n + 1, sizeof(int)))
    return -1;
  for (int i = c->ntext; i < n; i++) {
    size_t len;
    const char *s = tokenizer_piece(c->srv->x.tok, c->prev, c->r->tok[i], &len);
    if (grow((void **)&c->text, &c->tcap, c->tlen + len + 1, 1))
      return -1;
    memcpy(c->text + c->tlen, s, len);
    c->off[i] = (int)c->tlen;
    c->tlen += len;
    c->prev = c->r->tok[i];
  }
  c->ntext = n;
  c->off[n] = (int)c->tlen;
  c->ntok_final = n;
  find_stop(c, from);
  return 0;
}

/* Waits (in slices, watching the client) until the request has more than `have` tokens or
 * ends. Returns 1 when it ended (or hit a stop string), 0 when tokens came, -1 when the
 * client went away (the generation is cancelled). */
static int wait_tokens(http_conn *c, int have) {
  for (;;) {
    int n = sched_wait(c->srv->s, c->r, have, 0.05, &c->end);
    if (add_tokens(c, n) != 0) {
      sched_cancel(c->srv->s, c->r, SCHED_END_ERROR);
      c->end = SCHED_END_ERROR;
      return 1;
    }
    if (c->end != SCHED_END_NONE || c->stop_hit)
      return 1;
    if (n > have)
      return 0;
    if (client_gone(c->fd)) {
      sched_cancel(c->srv->s, c->r, SCHED_END_CANCELLED);
      return -1;
    }
  }
}

static const char *finish_reason(const http_conn *c) {
  return c->stop_hit || c->end == SCHED_END_STOP ? "stop" : "length";
}

/* The status and message of a generation that ended without a result (0: it has one). */
static int failure(const http_conn *c, char *msg, size_t cap) {
  const sched_req *r = c->r;
  switch (c->stop_hit ? SCHED_END_STOP : c->end) {
  case SCHED_END_TIMEOUT:
    snprintf(msg, cap, "the request timed out after %g s (%s)", c->srv->o.request_timeout,
             c->ntext ? "while generating" : "queued: no free row or KV pages");
    return c->ntext ? 504 : 503;
  case SCHED_END_SHUTDOWN:
    snprintf(msg, cap, "the server stopped before the request finished");
    return 503;
  case SCHED_END_ERROR:
    snprintf(msg, cap, "%s", r->err[0] ? r->err : "generation failed");
    return r->err_status ? r->err_status : 500;
  default:
    return 0;
  }
}

static http_logprobs logprobs_of(const http_conn *c, int from, int to) {
  return (http_logprobs){
      .text = c->text, .off = c->off + from, .lp = c->r->logprob + from, .ntok = to - from};
}

static enum MHD_Result answer_whole(http_conn *c, struct MHD_Connection *mc) {
  char msg[SERVE_ERR_LEN];
  int w;
  while ((w = wait_tokens(c, c->ntext)) == 0) {
  }
  if (w < 0) {
    c->status = 499;
    return MHD_NO;
  }
  int st = failure(c, msg, sizeof msg);
  if (st)
    return respond_error(c, mc, st, msg, NULL);
  http_logprobs lp = logprobs_of(c, 0, c->ntok_final);
  http_choice ch = {.id = c->cid,
                    .model = c->srv->o.name,
                    .text = c->text,
                    .len = c->tlen,
                    .finish = finish_reason(c),
                    .created = (long)time(NULL),
                    .lp = c->c.logprobs >= 0 ? &lp : NULL,
                    .prompt_tokens = c->c.nprompt,
                    .completion_tokens = c->ntok_final};
  snprintf(c->note, sizeof c->note, "%s", ch.finish);
  return respond(c, mc, 200, http_completion_json(&ch), "application/json");
}

/* ------------------------------------------------------------------ streaming */

/* Appends "data: JSON\n\n" (JSON malloc'd, freed here; "[DONE]" at the end) to the pending
 * bytes. */
static int add_event(http_conn *c, char *json) {
  if (!json)
    return -1;
  size_t n = strlen(json);
  if (grow((void **)&c->pend, &c->pcap, c->npend + n + 9, 1)) {
    free(json);
    return -1;
  }
  c->npend += (size_t)sprintf(c->pend + c->npend, "data: %s\n\n", json);
  free(json);
  return 0;
}

/* The next events: text safe to send (no stop string could still start in it, no UTF-8
 * sequence cut), and when the generation ended the last chunk (finish reason, usage) or an
 * error, then [DONE]. Returns 0, or -1 on failure. */
static int next_events(http_conn *c) {
  int ended = c->end != SCHED_END_NONE || c->stop_hit;
  size_t safe = c->tlen;
  if (!ended) {
    for (int i = 0; i < c->c.nstop; i++)
      for (size_t k = strlen(c->c.stop[i]) - 1; k > 0; k--)
        if (k <= c->tlen && !memcmp(c->text + c->tlen - k, c->c.stop[i], k) && c->tlen - k < safe) {
          safe = c->tlen - k;
          break;
        }
    safe = http_utf8_complete(c->text, safe);
  }
  int k = c->lp_sent;
  while (k < c->ntext && (size_t)c->off[k + 1] <= safe)
    k++;
  char msg[SERVE_ERR_LEN];
  int st = ended ? failure(c, msg, sizeof msg) : 0;
  if (safe > c->sent || (ended && !st)) {
    http_logprobs lp = logprobs_of(c, c->lp_sent, k);
    http_choice ch = {.id = c->cid,
                      .model = c->srv->o.name,
                      .text = c->text + c->sent,
                      .len = safe - c->sent,
                      .finish = ended ? finish_reason(c) : NULL,
                      .created = (long)time(NULL),
                      .lp = c->c.logprobs >= 0 ? &lp : NULL,
                      .prompt_tokens = ended ? c->c.nprompt : -1,
                      .completion_tokens = c->ntok_final};
    if (add_event(c, http_completion_json(&ch)) != 0)
      return -1;
    c->sent = safe;
    c->lp_sent = k;
  }
  if (ended) {
    if (st &&
        add_event(c, http_error_json(msg, st >= 500 ? "server_error" : "invalid_request_error",
                                     NULL)) != 0)
      return -1;
    if (add_event(c, strdup("[DONE]")) != 0)
      return -1;
    snprintf(c->note, sizeof c->note, "%.95s", st ? msg : finish_reason(c));
    c->finished = 1;
  }
  return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  http_conn *c = cls;
  for (;;) {
    size_t avail = c->npend - c->pend_at;
    if (avail) {
      size_t n = avail < max ? avail : max;
      memcpy(buf, c->pend + c->pend_at, n);
      c->pend_at += n;
      return (ssize_t)n;
    }
    if (c->finished)
      return MHD_CONTENT_READER_END_OF_STREAM;
    c->pend_at = c->npend = 0;
    if (!c->stop_hit && c->end == SCHED_END_NONE && wait_tokens(c, c->ntext) < 0) {
      c->status = 499;
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (next_events(c) < 0)
      return MHD_CONTENT_READER_END_WITH_ERROR;
  }
}

static enum MHD_Result answer_stream(http_conn *c, struct MHD_Connection *mc) {
  char msg[SERVE_ERR_LEN];
  int w = wait_tokens(c, 0); /* the first token, or the end: errors still get their status */
  if (w < 0) {
    c->status = 499;
    return MHD_NO;
  }
  int st = w > 0 && c->ntext == 0 ? failure(c, msg, sizeof msg) : 0;
  if (st)
    return respond_error(c, mc, st, msg, NULL);
  struct MHD_Response *rs =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, c, NULL);
  if (!rs)
    return MHD_NO;
  MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(rs, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  enum MHD_Result ok = MHD_queue_response(mc, 200, rs);
  MHD_destroy_response(rs);
  c->status = 200;
  return ok;
}

/* ------------------------------------------------------------------ completions */

static enum MHD_Result post_completions(http_conn *c, struct MHD_Connection *mc) {
  http_server *v = c->srv;
  http_bad bad;
  if (http_parse_completion(c->body ? c->body : "", c->nbody, &v->x, v->o.log_prompts, &c->c,
                            &bad) != 0)
    return respond_error(c, mc, 400, bad.msg, bad.param);
  sched_req *r = c->r = sched_req_new();
  if (!r)
    return respond_error(c, mc, 503, "out of memory", NULL);
  r->prompt = c->c.prompt;
  c->c.prompt = NULL;
  r->nprompt = c->c.nprompt;
  r->max_new = c->c.max_tokens;
  r->want_logprobs = c->c.logprobs >= 0;
  r->sample = c->c.sample;
  if (!c->c.has_seed)
    r->sample.seed = (uint64_t)c->id;
  r->stop = v->stops;
  r->nstop = v->nstops;
  memcpy(r->ovr, c->c.ovr, sizeof r->ovr);
  r->novr = c->c.novr;
  r->deadline = serve_now() + v->o.request_timeout;
  c->prev = r->prompt[r->nprompt - 1];
  snprintf(c->cid, sizeof c->cid, "cmpl-%lx%06lx", (long)time(NULL), c->id);
  int st = sched_submit(v->s, r);
  if (st)
    return respond_error(c, mc, st, r->err, NULL);
  /* the body is in: the response phase has no idle limit (the request's deadline rules) */
  MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
  return c->c.stream ? answer_stream(c, mc) : answer_whole(c, mc);
}

/* ------------------------------------------------------------------ the daemon */

static http_conn *conn_new(http_server *v, struct MHD_Connection *mc, const char *url,
                           const char *method) {
  http_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->srv = v;
  c->id = __atomic_add_fetch(&v->next_id, 1, __ATOMIC_RELAXED);
  c->t0 = serve_now();
  snprintf(c->method, sizeof c->method, "%s", method);
  snprintf(c->path, sizeof c->path, "%s", url);
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
  c->fd = ci ? ci->connect_fd : -1;
  return c;
}

static enum MHD_Result too_large(http_conn *c, struct MHD_Connection *mc) {
  char msg[128];
  snprintf(msg, sizeof msg, "the body is larger than the server's limit of %ld bytes",
           c->srv->o.max_body);
  return respond_error(c, mc, 413, msg, NULL);
}

/* First call of a request: route it; GET routes and refusals are answered at once. */
static enum MHD_Result route(http_conn *c, struct MHD_Connection *mc) {
  static const struct {
    const char *path, *method;
    enum MHD_Result (*get)(http_conn *, struct MHD_Connection *);
  } routes[] = {{"/v1/completions", "POST", NULL},
                {"/v1/models", "GET", get_models},
                {"/health", "GET", get_health},
                {"/metrics", "GET", get_metrics}};
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (strcmp(c->path, routes[i].path))
      continue;
    if (strcmp(c->method, routes[i].method)) {
      char msg[128];
      snprintf(msg, sizeof msg, "%s does not take %s (it takes %s)", c->path, c->method,
               routes[i].method);
      return respond_error(c, mc, 405, msg, NULL);
    }
    if (routes[i].get)
      return routes[i].get(c, mc);
    const char *cl =
        MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0,
                       max = (unsigned long long)c->srv->o.max_body;
    if (n > HTTP_DRAIN_FACTOR * max)
      return too_large(c, mc); /* answered unread; the connection closes after it */
    c->dropped = n > max;      /* read and dropped, then answered (a clean close) */
    return MHD_YES;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "no route %s %.60s", c->method, c->path);
  return respond_error(c, mc, 404, msg, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req) {
  (void)version;
  http_conn *c = *req;
  if (!c) {
    if (!(c = *req = conn_new(cls, mc, url, method)))
      return MHD_NO;
    return route(c, mc);
  }
  if (c->status)
    return (*upload_size = 0, MHD_YES);
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (c->dropped || c->nbody + n > (size_t)c->srv->o.max_body) {
      /* a body past the limit is read and dropped (libmicrohttpd cannot answer in the middle
       * of an upload, and closing on unread data resets the connection, losing the answer),
       * then answered 413; past HTTP_DRAIN_FACTOR times the limit its connection is closed */
      c->nbody += n;
      c->dropped = 1;
      if (c->nbody <= HTTP_DRAIN_FACTOR * (size_t)c->srv->o.max_body)
        return MHD_YES;
      c->status = 413;
      snprintf(c->note, sizeof c->note, "body past 16 times the limit: connection closed");
      return MHD_NO;
    }
    if (grow((void **)&c->body, &c->cap, c->nbody + n + 1, 1))
      return MHD_NO;
    memcpy(c->body + c->nbody, upload, n);
    c->nbody += n;
    return MHD_YES;
  }
  return c->dropped ? too_large(c, mc) : post_completions(c, mc);
}

static void log_request(const http_conn *c) {
  const http_server *v = c->srv;
  char times[160] = "";
  const sched_req *r = c->r;
  if (r && c->end != SCHED_END_NONE && r->t_submit)
    snprintf(times, sizeof times, " prompt_tokens=%d completion_tokens=%d ttft_ms=%.1f", r->nprompt,
             c->ntok_final, r->t_first ? 1e3 * (r->t_first - r->t_submit) : -1.0);
  fprintf(stderr, "vx-serve: request %ld %s %s %d%s total_ms=%.1f%s%s%s", c->id, c->method, c->path,
          c->status, times, 1e3 * (serve_now() - c->t0), c->note[0] ? " (" : "", c->note,
          c->note[0] ? ")" : "");
  if (v->o.log_prompts && c->c.prompt_text) {
    cJSON *s = cJSON_CreateString(c->c.prompt_text);
    char *t = json_text(s);
    fprintf(stderr, " prompt=%s", t ? t : "?");
    free(t);
  }
  fputc('\n', stderr);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **req,
                         enum MHD_RequestTerminationCode toe) {
  http_server *v = cls;
  http_conn *c = *req;
  if (!c)
    return;
  if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && (!c->status || c->status == 200))
    c->status = 408, snprintf(c->note, sizeof c->note, "timed out reading the body: closed");
  else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && (!c->status || !c->finished))
    c->status = c->status && c->status != 200 ? c->status : 499,
    snprintf(c->note + strlen(c->note), sizeof c->note - strlen(c->note), "%sclient went away",
             c->note[0] ? "; " : "");
  log_request(c);
  sched_note_status(v->s, c->status);
  if (c->r)
    sched_release(v->s, c->r);
  http_completion_free(&c->c);
  free(c->body);
  free(c->text);
  free(c->off);
  free(c->pend);
  free(c);
  *req = NULL;
  MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)v->o.body_timeout);
}

/* ------------------------------------------------------------------ the command */

static void usage(FILE *f) {
  fprintf(f, "usage: vx-serve serve --model PATH [--tokenizer PATH] [--policy P] [options]\n"
             "  --host ADDR (127.0.0.1)  --port N (8000; 0: any free port, printed)\n"
             "  --served-model-name NAME  the model's id in the API (default: the file's name)\n"
             "  --kv-pages N          pages in the KV pool (default: --batch rows of the full\n"
             "                        context); requests are admitted by the pages they need\n"
             "  --queue N (64)        requests waiting for pages; more get 503 + Retry-After\n"
             "  --request-timeout S (300)  queued + generating; then 503 (queued) or 504\n"
             "  --body-timeout S (10) idle limit while reading a request (then closed)\n"
             "  --max-body BYTES (1048576)  larger bodies get 413\n"
             "  --max-connections N (512)   --shutdown-timeout S (10)\n"
             "  --log-prompts         put prompt text in the request log lines\n"
             "  and generate's model, policy and cache options (--batch: rows decoding at once)\n");
}

/* One option of serve's own at argv[*i]: 1 taken, 0 not ours, -1 bad value. */
static int serve_option(http_opts *o, int argc, char **argv, int *i) {
  static const struct {
    const char *name;
    double lo, hi;
  } nums[] = {{"--port", 0, 65535},
              {"--kv-pages", 1, 1 << 30},
              {"--queue", 1, 1 << 20},
              {"--max-body", 64, 1 << 30},
              {"--body-timeout", 1, 3600},
              {"--max-connections", 4, 65536},
              {"--request-timeout", 0.01, 1e6},
              {"--shutdown-timeout", 0, 3600}};
  /* the first six are integers, in this order; the last two seconds */
  long *ls[] = {&o->port, &o->kv_pages, &o->queue, &o->max_body, &o->body_timeout, &o->max_conn};
  double *ds[] = {&o->request_timeout, &o->shutdown_timeout};
  const char *a = argv[*i];
  if (!strcmp(a, "--log-prompts"))
    return (o->log_prompts = 1);
  int str = !strcmp(a, "--host") || !strcmp(a, "--served-model-name");
  size_t k = 0, nn = sizeof nums / sizeof nums[0];
  while (k < nn && strcmp(a, nums[k].name))
    k++;
  if (!str && k == nn)
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "vx-serve serve: %s needs a value\n", a);
    return -1;
  }
  const char *v = argv[++*i];
  if (str) {
    *(!strcmp(a, "--host") ? &o->host : &o->name) = v;
    return 1;
  }
  char *end;
  double d = strtod(v, &end);
  int integral = k < sizeof ls / sizeof ls[0];
  if (!*v || *end || !(d >= nums[k].lo && d <= nums[k].hi) || (integral && d != (long)d)) {
    fprintf(stderr, "vx-serve serve: %s expects %s in [%g, %g], got '%s'\n", a,
            integral ? "an integer" : "a number", nums[k].lo, nums[k].hi, v);
    return -1;
  }
  if (integral)
    *ls[k] = (long)d;
  else
    *ds[k - sizeof ls / sizeof ls[0]] = d;
  return 1;
}

static int parse_args(http_server *v, int argc, char **argv) {
  v->o = (http_opts){.host = "127.0.0.1",
                     .port = 8000,
                     .queue = 64,
                     .max_body = 1 << 20,
                     .body_timeout = 10,
                     .max_conn = 512,
                     .request_timeout = 300,
                     .shutdown_timeout = 10};
  serve_opts_defaults(&v->x.o);
  for (int i = 2; i < argc; i++) {
    int r = serve_common_option(&v->x.o, argc, argv, &i);
    if (r == 0)
      r = serve_option(&v->o, argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return -1;
    }
    fprintf(stderr, "vx-serve serve: unknown option or missing value: '%s'\n", argv[i]);
    usage(stderr);
    return 2;
  }
  return 0;
}

/* serve_setup's backend and engine again, with the KV pool --kv-pages asks for. */
static void on_signal(int sig) {
  (void)sig;
  http_signalled = 1;
  ssize_t k = write(http_sig_pipe[1], "s", 1);
  (void)k;
}

/* SIGINT and SIGTERM wake the main thread through a pipe (whatever thread they land on);
 * SIGPIPE is ignored (a client that went away is seen by its request's thread). */
static int catch_signals(void) {
  if (pipe(http_sig_pipe) != 0)
    return -1;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int start_daemon(http_server *v) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)v->o.port)};
  if (inet_pton(AF_INET, v->o.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "vx-serve serve: --host expects an IPv4 address, got '%s'\n", v->o.host);
    return -1;
  }
  v->d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL,
      0, NULL, NULL, on_request, v, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)v->o.max_conn, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)v->o.body_timeout,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, v, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
      MHD_OPTION_END);
  if (!v->d) {
    fprintf(stderr, "vx-serve serve: cannot listen on %s:%ld: %s\n", v->o.host, v->o.port,
            strerror(errno));
    return -1;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(v->d, MHD_DAEMON_INFO_BIND_PORT);
  fprintf(stderr,
          "vx-serve serve: listening on http://%s:%u (model %s, policy %s, batch %d, "
          "%d KV pages of %d tokens)\n",
          v->o.host, di ? di->port : 0, v->o.name, v->x.policy_name, v->x.o.batch,
          sched_pool_pages(v->s), v->x.o.page_size);
  return 0;
}

/* Stops: no new connections, running requests finish or are cut at the deadline, then the
 * connections' threads end. */
static void stop(http_server *v) {
  double t0 = serve_now();
  fprintf(stderr, "vx-serve serve: stopping (running requests get %g s)\n", v->o.shutdown_timeout);
  v->stopping = 1;
  MHD_socket ls = MHD_quiesce_daemon(v->d);
  if (ls != MHD_INVALID_SOCKET)
    close(ls);
  sched_stop(v->s, v->o.shutdown_timeout);
  MHD_stop_daemon(v->d);
  fprintf(stderr, "vx-serve serve: stopped in %.2f s\n", serve_now() - t0);
}

int http_serve_main(int argc, char **argv) {
  static http_server v; /* the signal pipe and the server live as long as the command */
  memset(&v, 0, sizeof v);
  int rc = parse_args(&v, argc, argv);
  if (rc)
    return rc < 0 ? 0 : rc;
  char err[SERVE_ERR_LEN];
  const char *base = v.x.o.model ? strrchr(v.x.o.model, '/') : NULL;
  if (!v.o.name)
    v.o.name = base ? base + 1 : v.x.o.model ? v.x.o.model : "";
  rc = 1;
  v.x.o.kv_pages = (int)v.o.kv_pages; /* the pool serve_setup's backend gets */
  if (catch_signals() != 0 || serve_setup(&v.x, "serve") != 0)
    goto out;
  const model_config *mc = &v.x.m->cfg;
  if (mc->eos >= 0)
    v.stops[v.nstops++] = mc->eos;
  if (!strcmp(mc->tokenizer, "llama2c"))
    v.stops[v.nstops++] = mc->bos; /* as generate: BOS delimits llama2.c stories */
  sched_opts so = {.queue_max = (int)v.o.queue, .page_size = v.x.o.page_size};
  if (sched_create(&v.x, &so, &v.s, err) != 0) {
    fprintf(stderr, "vx-serve serve: %s\n", err);
    goto out;
  }
  if (start_daemon(&v) != 0)
    goto out;
  char ch;
  while (!http_signalled && (read(http_sig_pipe[0], &ch, 1) >= 0 || errno == EINTR)) {
  }
  stop(&v);
  rc = 0;
out:
  sched_free(v.s);
  serve_teardown(&v.x);
  return rc;
}
