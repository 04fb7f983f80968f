/* scheduler.c - the scheduler of `vx-serve serve` (scheduler.h). One mutex guards the queue, the
 * running set, every request's published fields and the metrics; the scheduler thread drops
 * it only around engine_step, the one place the engine runs. A request reserves the pages
 * of its whole length (prompt + max_new - 1 tokens) when it is admitted, so an admitted
 * request never meets a full pool. Sits under runtime/serve/ above engine.h; never exits,
 * prints only when a policy variant fails to load (serve_load_policy's message). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"

enum { SCHED_MAX_VARIANTS = 15, SCHED_MAX_STATUS = 24, SCHED_NBUCKETS = 14 };

static const double step_buckets[SCHED_NBUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                    0.1,    0.2,   0.5,   1,     2,    5,    10};
static const double ttft_buckets[SCHED_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                    1,     2.5,  5,     10,   30,  60,   120};

typedef struct sched_hist {
  long count[SCHED_NBUCKETS + 1]; /* the last one: above every bound */
  double sum;
  long n;
} sched_hist;

typedef struct sched_variant {
  char key[512]; /* the parameter set, canonical: "budget=512, window=64" */
  vxrt_policy *policy;
  int index; /* attn_row.sparse of its rows */
} sched_variant;

struct sched {
  serve_ctx *x;
  sched_opts o;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work, out; /* work: for the scheduler; out: tokens published (broadcast) */
  sched_req *qhead, *qtail, *running;
  int nqueued, nrunning, reserved, pool_total, pages_used, stopping;
  double stop_deadline;
  sched_variant var[SCHED_MAX_VARIANTS];
  int nvar;
  /* metrics */
  int status_code[SCHED_MAX_STATUS];
  long status_count[SCHED_MAX_STATUS];
  long ends[SCHED_END_ERROR + 1];
  long tokens_in, tokens_out;
  sched_hist step_hist, ttft_hist;
};

static void hist_add(sched_hist *h, const double *bounds, double v) {
  int b = 0;
  while (b < SCHED_NBUCKETS && v > bounds[b])
    b++;
  h->count[b]++;
  h->sum += v;
  h->n++;
}

sched_req *sched_req_new(void) { return calloc(1, sizeof(sched_req)); }

static void req_free(sched_req *r) {
  engine_request_release(&r->er);
  free(r->lp);
  free(r->prompt);
  free(r);
}

int sched_pool_pages(const sched *s) { return s->pool_total; }

static int pages_needed(const sched *s, const sched_req *r) {
  int tokens = r->nprompt + r->max_new - 1, P = s->o.page_size;
  return tokens < 1 ? 1 : (tokens + P - 1) / P;
}

/* ------------------------------------------------------------------ policy variants */

static int cmp_ovr(const void *a, const void *b) {
  return strcmp(((const vxrt_param_override *)a)->name, ((const vxrt_param_override *)b)->name);
}

/* The server's --param values with the request's on top, sorted by name, into m; the count. */
static int merge_params(const serve_opts *so, const sched_req *r, vxrt_param_override *m) {
  int n = 0;
  for (int i = 0; i < so->nparams; i++) {
    int over = 0;
    for (int j = 0; j < r->novr; j++)
      over |= !strcmp(so->params[i].name, r->ovr[j].name);
    if (!over)
      m[n++] = so->params[i];
  }
  for (int j = 0; j < r->novr && n < 2 * SERVE_MAX_PARAMS; j++)
    m[n++] = r->ovr[j];
  qsort(m, (size_t)n, sizeof *m, cmp_ovr);
  return n;
}

/* The policy with parameters m[n] (key names them) and its state beside the cache, into v;
 * r->err on failure. */
static int load_variant(serve_ctx *x, sched_variant *v, const vxrt_param_override *m, int n,
                        const char *key, sched_req *r) {
  if (serve_load_policy(x, x->o.policy, m, n, &v->policy) != 0)
    return serve_errf(r->err, "vx parameters (%s): %s", key, vxrt_last_error());
  if (x->attn->ops->add_policy(x->attn, v->policy, &v->index) != 0) {
    vxrt_policy_free(v->policy);
    return serve_errf(r->err, "vx parameters (%s): %s", key, x->attn->err);
  }
  return 0;
}

/* The attn_row.sparse of r's policy: the server's own without overrides, else a variant
 * loaded (once per parameter set) beside the cache. -1 with r->err set on failure. */
static int variant_index(sched *s, sched_req *r) {
  serve_ctx *x = s->x;
  if (!x->policy)
    return 0;
  if (r->novr == 0)
    return 1;
  vxrt_param_override m[2 * SERVE_MAX_PARAMS];
  int n = merge_params(&x->o, r, m);
  char key[sizeof s->var[0].key];
  size_t k = 0;
  for (int i = 0; i < n && k < sizeof key; i++)
    k += (size_t)snprintf(key + k, sizeof key - k, "%s%s=%.17g", i ? ", " : "", m[i].name,
                          m[i].value);
  for (int i = 0; i < s->nvar; i++)
    if (!strcmp(s->var[i].key, key))
      return s->var[i].index;
  if (s->nvar == SCHED_MAX_VARIANTS) {
    serve_errf(r->err,
               "at most %d distinct vx parameter sets per server run; this would be one "
               "more",
               SCHED_MAX_VARIANTS);
    return -1;
  }
  /* Loading (compiling a .vx first) takes a while: the lock is dropped meanwhile. Only this
   * thread touches the variants and the backend, and r is in no list (a release meanwhile
   * only marks it, and the next sweep ends it). */
  sched_variant *v = &s->var[s->nvar];
  pthread_mutex_unlock(&s->mu);
  int rc = load_variant(x, v, m, n, key, r);
  pthread_mutex_lock(&s->mu);
  if (rc != 0)
    return -1;
  snprintf(v->key, sizeof v->key, "%s", key);
  return s->var[s->nvar++].index;
}

/* ------------------------------------------------------------------ the thread's work */

static void finish(sched *s, sched_req *r, sched_end why) {
  r->end = why;
  s->ends[why]++;
}

/* Drops r from the running list and its reservation (it has left the engine). */
static void unrun(sched *s, sched_req *r) {
  for (sched_req **p = &s->running; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      break;
    }
  r->next = NULL;
  s->nrunning--;
  s->reserved -= r->pages;
}

/* Ends a running request early: out of the engine (pages back), finished with `why`. */
static void cut(sched *s, sched_req *r, sched_end why) {
  char err[SERVE_ERR_LEN];
  if (engine_cancel(s->x->eng, &r->er, err) != 0) {
    snprintf(r->err, sizeof r->err, "%s", err);
    r->err_status = 500;
    why = SCHED_END_ERROR;
  }
  unrun(s, r);
  finish(s, r, why);
  if (r->released)
    req_free(r);
}

/* Cancels, deadlines and the stop's deadline, for running and queued requests. */
static void sweep(sched *s, double now) {
  int cut_all = s->stopping && now >= s->stop_deadline;
  for (sched_req *r = s->running, *nx; r; r = nx) {
    nx = r->next;
    if (r->cancel)
      cut(s, r, r->cancel_why);
    else if (now >= r->deadline)
      cut(s, r, SCHED_END_TIMEOUT);
    else if (cut_all)
      cut(s, r, SCHED_END_SHUTDOWN);
  }
  for (sched_req **p = &s->qhead; *p;) {
    sched_req *r = *p;
    sched_end why = r->cancel            ? r->cancel_why
                    : now >= r->deadline ? SCHED_END_TIMEOUT
                    : s->stopping        ? SCHED_END_SHUTDOWN
                                         : SCHED_END_NONE;
    if (why == SCHED_END_NONE) {
      p = &r->next;
      continue;
    }
    *p = r->next;
    s->nqueued--;
    finish(s, r, why);
    if (r->released)
      req_free(r);
  }
  s->qtail = NULL;
  for (sched_req *r = s->qhead; r; r = r->next)
    s->qtail = r;
}

/* Moves queued requests into the engine while a row and their pages are free (in order: the
 * head waits for room rather than being overtaken). */
static void admit(sched *s) {
  char err[SERVE_ERR_LEN];
  while (s->qhead && s->nrunning < s->x->o.batch &&
         s->reserved + pages_needed(s, s->qhead) <= s->pool_total) {
    sched_req *r = s->qhead;
    s->qhead = r->next;
    if (!s->qhead)
      s->qtail = NULL;
    s->nqueued--;
    r->next = NULL;
    int sparse = variant_index(s, r);
    r->er = (engine_request){.prompt = r->prompt,
                             .nprompt = r->nprompt,
                             .max_new = r->max_new,
                             .sample = r->sample,
                             .stop = r->stop,
                             .nstop = r->nstop,
                             .sparse = sparse,
                             .logprob = r->lp};
    if (sparse < 0 || engine_submit(s->x->eng, &r->er, err) != 0) {
      if (sparse >= 0)
        snprintf(r->err, sizeof r->err, "%s", err);
      r->err_status = sparse < 0 ? 400 : 500;
      finish(s, r, SCHED_END_ERROR);
      if (r->released)
        req_free(r);
      continue;
    }
    r->tok = r->er.out;
    r->logprob = r->lp;
    r->pages = pages_needed(s, r);
    s->reserved += r->pages;
    r->next = s->running;
    s->running = r;
    s->nrunning++;
    s->tokens_in += r->nprompt;
  }
}

/* After a step: new tokens and finished requests become visible to their HTTP threads. */
static void publish(sched *s, int failed, const char *err) {
  double now = serve_now();
  for (sched_req *r = s->running, *nx; r; r = nx) {
    nx = r->next;
    if (r->er.nout > r->ntok) {
      s->tokens_out += r->er.nout - r->ntok;
      if (!r->t_first) {
        r->t_first = now;
        hist_add(&s->ttft_hist, ttft_buckets, now - r->t_submit);
      }
      r->ntok = r->er.nout;
    }
    if (failed) {
      snprintf(r->err, sizeof r->err, "%s", err);
      r->err_status = 500;
      cut(s, r, SCHED_END_ERROR);
    } else if (r->er.done) {
      unrun(s, r);
      finish(s, r, r->er.stopped ? SCHED_END_STOP : SCHED_END_LENGTH);
      if (r->released)
        req_free(r);
    }
  }
  int used, total;
  serve_attn *a = s->x->attn;
  if (a->ops->pages && a->ops->pages(a, &used, &total) == 0)
    s->pages_used = used;
}

static void *sched_main(void *arg) {
  sched *s = arg;
  char err[SERVE_ERR_LEN];
  pthread_mutex_lock(&s->mu);
  for (;;) {
    sweep(s, serve_now());
    if (!s->stopping)
      admit(s);
    publish(s, 0, ""); /* requests that admit or sweep finished, the pool after cuts */
    pthread_cond_broadcast(&s->out);
    if (s->nrunning == 0) {
      if (s->stopping && !s->qhead)
        break;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 50 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->work, &s->mu, &ts);
      continue;
    }
    const engine_stats *st = engine_get_stats(s->x->eng);
    double d0 = st->decode_s;
    long n0 = st->decode_tokens;
    pthread_mutex_unlock(&s->mu);
    int left = engine_step(s->x->eng, err);
    pthread_mutex_lock(&s->mu);
    if (st->decode_tokens > n0)
      hist_add(&s->step_hist, step_buckets, st->decode_s - d0);
    publish(s, left < 0, err);
  }
  pthread_cond_broadcast(&s->out);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ------------------------------------------------------------------ the HTTP side */

int sched_create(serve_ctx *x, const sched_opts *o, sched **out, char *err) {
  *out = NULL;
  sched *s = calloc(1, sizeof *s);
  if (!s)
    return serve_errf(err, "out of memory");
  s->x = x;
  s->o = *o;
  int used;
  if (!x->attn->ops->pages || x->attn->ops->pages(x->attn, &used, &s->pool_total) != 0) {
    free(s);
    return serve_errf(err, "the attention backend does not report its KV pages");
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work, NULL);
  pthread_cond_init(&s->out, NULL);
  if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
    free(s);
    return serve_errf(err, "cannot start the scheduler thread");
  }
  *out = s;
  return 0;
}

void sched_stop(sched *s, double grace_s) {
  pthread_mutex_lock(&s->mu);
  int joined = s->stopping;
  s->stopping = 1;
  s->stop_deadline = serve_now() + grace_s;
  pthread_cond_signal(&s->work);
  pthread_mutex_unlock(&s->mu);
  if (!joined)
    pthread_join(s->thread, NULL);
}

void sched_free(sched *s) {
  if (!s)
    return;
  sched_stop(s, 0);
  for (int i = 0; i < s->nvar; i++)
    vxrt_policy_free(s->var[i].policy); /* their states go with the backend (later) */
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work);
  pthread_cond_destroy(&s->out);
  free(s);
}

int sched_submit(sched *s, sched_req *r) {
  int need = pages_needed(s, r);
  if (need > s->pool_total) {
    serve_errf(r->err,
               "the request needs %d KV pages (%d tokens of prompt and completion, %d per "
               "page) and the pool has %d: it can never fit; ask for fewer tokens",
               need, r->nprompt + r->max_new - 1, s->o.page_size, s->pool_total);
    return 400;
  }
  if (r->want_logprobs && r->max_new > 0 && !(r->lp = malloc((size_t)r->max_new * sizeof(float)))) {
    serve_errf(r->err, "out of memory");
    return 503;
  }
  pthread_mutex_lock(&s->mu);
  int status = 0;
  if (s->stopping)
    status = 503, serve_errf(r->err, "the server is shutting down");
  else if (s->nqueued >= s->o.queue_max)
    status = 503, serve_errf(r->err,
                             "the server is busy: %d requests already wait for KV pages; "
                             "retry later",
                             s->nqueued);
  if (!status) {
    r->t_submit = serve_now();
    if (s->qtail)
      s->qtail->next = r;
    else
      s->qhead = r;
    s->qtail = r;
    s->nqueued++;
    pthread_cond_signal(&s->work);
  }
  pthread_mutex_unlock(&s->mu);
  return status;
}

int sched_wait(sched *s, sched_req *r, int have, double max_s, sched_end *end) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long ns = ts.tv_nsec + (long)(max_s * 1e9);
  ts.tv_sec += ns / 1000000000L;
  ts.tv_nsec = ns % 1000000000L;
  pthread_mutex_lock(&s->mu);
  while (r->ntok <= have && r->end == SCHED_END_NONE)
    if (pthread_cond_timedwait(&s->out, &s->mu, &ts) != 0)
      break;
  int n = r->ntok;
  *end = r->end;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void sched_cancel(sched *s, sched_req *r, sched_end why) {
  pthread_mutex_lock(&s->mu);
  if (r->end == SCHED_END_NONE && !r->cancel) {
    r->cancel = 1;
    r->cancel_why = why;
    pthread_cond_signal(&s->work);
  }
  pthread_mutex_unlock(&s->mu);
}

void sched_release(sched *s, sched_req *r) {
  pthread_mutex_lock(&s->mu);
  int queued_or_running = r->t_submit && r->end == SCHED_END_NONE;
  if (queued_or_running) {
    r->released = 1;
    if (!r->cancel) {
      r->cancel = 1;
      r->cancel_why = SCHED_END_CANCELLED;
    }
    pthread_cond_signal(&s->work);
  }
  pthread_mutex_unlock(&s->mu);
  if (!queued_or_running)
    req_free(r);
}

void sched_note_status(sched *s, int status) {
  pthread_mutex_lock(&s->mu);
  int i = 0;
  while (i < SCHED_MAX_STATUS && s->status_code[i] && s->status_code[i] != status)
    i++;
  if (i < SCHED_MAX_STATUS) {
    s->status_code[i] = status;
    s->status_count[i]++;
  }
  pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ metrics */

typedef struct sched_buf {
  char *p;
  size_t cap, n;
} sched_buf;

__attribute__((format(printf, 2, 3))) static void put(sched_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(b->n < b->cap ? b->p + b->n : NULL, b->n < b->cap ? b->cap - b->n : 0, fmt, ap);
  va_end(ap);
  if (k > 0)
    b->n += (size_t)k;
}

static void put_metric(sched_buf *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_hist(sched_buf *b, const char *name, const char *help, const sched_hist *h,
                     const double *bounds) {
  put_metric(b, name, "histogram", help);
  long cum = 0;
  for (int i = 0; i < SCHED_NBUCKETS; i++) {
    cum += h->count[i];
    put(b, "%s_bucket{le=\"%g\"} %ld\n", name, bounds[i], cum);
  }
  put(b, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->n, name, h->sum, name,
      h->n);
}

size_t sched_metrics(sched *s, char *buf, size_t cap) {
  static const char *const end_names[] = {"none",    "length",   "stop", "cancelled",
                                          "timeout", "shutdown", "error"};
  sched_buf b = {buf, cap, 0};
  pthread_mutex_lock(&s->mu);
  put_metric(&b, "vx_requests_total", "counter", "HTTP requests answered, by status code.");
  for (int i = 0; i < SCHED_MAX_STATUS && s->status_code[i]; i++)
    put(&b, "vx_requests_total{status=\"%d\"} %ld\n", s->status_code[i], s->status_count[i]);
  put_metric(
      &b, "vx_generations_total", "counter",
      "Generations that ended, by reason (length, stop, cancelled, timeout, shutdown, error).");
  for (int i = SCHED_END_LENGTH; i <= SCHED_END_ERROR; i++)
    put(&b, "vx_generations_total{reason=\"%s\"} %ld\n", end_names[i], s->ends[i]);
  put_metric(&b, "vx_prompt_tokens_total", "counter", "Prompt tokens admitted (prefilled).");
  put(&b, "vx_prompt_tokens_total %ld\n", s->tokens_in);
  put_metric(&b, "vx_generation_tokens_total", "counter", "Tokens generated.");
  put(&b, "vx_generation_tokens_total %ld\n", s->tokens_out);
  put_metric(&b, "vx_queue_depth", "gauge", "Requests waiting for a row and KV pages.");
  put(&b, "vx_queue_depth %d\n", s->nqueued);
  put_metric(&b, "vx_running_requests", "gauge", "Requests in the running batch.");
  put(&b, "vx_running_requests %d\n", s->nrunning);
  put_metric(&b, "vx_kv_pages_used", "gauge", "KV cache pages owned by rows.");
  put(&b, "vx_kv_pages_used %d\n", s->pages_used);
  put_metric(&b, "vx_kv_pages_free", "gauge", "KV cache pages in the free pool.");
  put(&b, "vx_kv_pages_free %d\n", s->pool_total - s->pages_used);
  put_metric(&b, "vx_kv_pages_reserved", "gauge",
             "KV cache pages reserved by running requests for their whole length.");
  put(&b, "vx_kv_pages_reserved %d\n", s->reserved);
  put_hist(&b, "vx_decode_step_seconds", "Time of one decode step of the running batch.",
           &s->step_hist, step_buckets);
  put_hist(&b, "vx_time_to_first_token_seconds", "From arrival to the first token.", &s->ttft_hist,
           ttft_buckets);
  pthread_mutex_unlock(&s->mu);
  return b.n;
}
