/* scheduler.h - the scheduler of `vx-serve serve`: one thread owns the engine and runs its decode
 * steps; HTTP threads hand it requests and wait for their tokens. Continuous batching
 * (requests join between steps), admission by KV pages reserved for a request's whole length,
 * a bounded queue, cancellation that returns a request's pages at once, deadlines, a graceful
 * stop, per-request policy parameters (a policy per parameter set beside the one cache), and
 * the metrics. Sits under runtime/serve/ between http.c and engine.h; knows nothing of HTTP
 * or JSON; never prints except one line when a policy variant fails to load, never exits. */
#ifndef SERVE_SCHEDULER_H
#define SERVE_SCHEDULER_H

#include <stddef.h>

#include "engine.h"
#include "serve.h"
#include "util.h"

typedef enum sched_end {
  SCHED_END_NONE = 0,  /* not finished */
  SCHED_END_LENGTH,    /* max_new tokens generated */
  SCHED_END_STOP,      /* a stop token, or the caller's stop (sched_cancel with this reason) */
  SCHED_END_CANCELLED, /* the client went away */
  SCHED_END_TIMEOUT,   /* past its deadline, queued or running */
  SCHED_END_SHUTDOWN,  /* the server stopped before it could finish */
  SCHED_END_ERROR      /* the engine failed, or the request's policy parameters did (err) */
} sched_end;

typedef struct sched_req {
  /* in: set before sched_submit, not changed after */
  int *prompt; /* malloc'd; freed with the request */
  int nprompt, max_new, want_logprobs;
  sample_opts sample;
  const int *stop; /* stop tokens (not part of the output); must outlive r */
  int nstop;
  vxrt_param_override ovr[SERVE_MAX_PARAMS]; /* names must live as long as the policy */
  int novr;
  double deadline; /* serve_now() time past which it ends with SCHED_END_TIMEOUT */
  /* out: valid after sched_wait returns (ntok tokens of tok and logprob) */
  const int *tok;
  const float *logprob;
  int ntok;
  sched_end end;
  int err_status; /* with SCHED_END_ERROR: 400 (the parameters) or 500 */
  char err[SERVE_ERR_LEN];
  double t_submit, t_first; /* serve_now() times of arrival, first token; 0 when not yet */
  /* the scheduler's */
  engine_request er;
  float *lp;
  int pages, cancel, released;
  sched_end cancel_why;
  struct sched_req *next;
} sched_req;

typedef struct sched_opts {
  int queue_max; /* requests waiting for pages or a row; more are refused (503) */
  int page_size; /* P of the cache */
} sched_opts;

typedef struct sched sched;

/* x: the loaded setup (its engine and attention backend are the scheduler's from now on;
 * x must outlive the scheduler). Starts the thread. */
int sched_create(serve_ctx *x, const sched_opts *o, sched **out, char *err);
/* Stops admitting (queued requests end with SCHED_END_SHUTDOWN), lets running requests
 * finish until grace_s seconds from now, cuts the rest, and joins the thread. Afterwards
 * every call still works (submits are refused); free with sched_free when no HTTP thread
 * can reach the scheduler any more. */
void sched_stop(sched *s, double grace_s);
void sched_free(sched *s);
/* A new request (zeroed), or NULL when out of memory. */
sched_req *sched_req_new(void);
/* Queues r. Returns 0, or the HTTP status of the refusal with the reason in r->err: 400 for a
 * request that can never fit the KV pool, 503 when the queue is full or the server stops.
 * After a refusal the caller still owns r (sched_release frees it). */
int sched_submit(sched *s, sched_req *r);
/* Waits until r has more than `have` tokens, is finished, or max_s seconds passed. Returns
 * the tokens published (r->tok[0, n) and r->logprob[0, n) may be read) and *end; once *end is
 * not SCHED_END_NONE, r's err, err_status and times may be read too. */
int sched_wait(sched *s, sched_req *r, int have, double max_s, sched_end *end);
/* Ends r as soon as the scheduler sees it (before its next step), its pages returned. */
void sched_cancel(sched *s, sched_req *r, sched_end why);
/* The caller is done with r: cancelled if still running, freed once the scheduler is done. */
void sched_release(sched *s, sched_req *r);
/* Counts an answered HTTP request by status (for the metrics). */
void sched_note_status(sched *s, int status);
/* Pages of the KV pool: the total, for the never-fits check. */
int sched_pool_pages(const sched *s);
/* The metrics in Prometheus' text format into buf (cap bytes); returns the length, or a
 * number >= cap when it did not fit. */
size_t sched_metrics(sched *s, char *buf, size_t cap);

#endif
