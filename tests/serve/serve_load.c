/* serve_load.c - a load and abuse tool for `vx-serve serve` (tests/serve): N concurrent
 * clients over plain sockets with prompts of mixed lengths, half of them streaming, every
 * answer checked (status, JSON, usage, SSE framing ending in [DONE], and greedy text equal
 * to `vx-serve generate`'s for the same prompt); bad inputs that must each get their 4xx
 * with an error message while the clients run; abandoned streams after which /metrics must
 * show every KV page free; a flood that must get answers or 503 with Retry-After, never a
 * hang. A test program: prints what failed and exits 1, 0 when everything held. Never
 * starts or stops the server (serve_server.sh does). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { NPROMPTS = 8 };

static struct {
  int port, clients, rounds, max_tokens, bad, abandon, flood, timeout_s, duration;
  const char *serve, **gen_args;
  int ngen_args;
} opt = {.port = 8000, .clients = 0, .rounds = 1, .max_tokens = 32, .timeout_s = 120};

static char *prompts[NPROMPTS], *expected[NPROMPTS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int failures, answered, refused, never_fit, dropped;
static double lat_sum, lat_max;
static long tokens_out;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&mu);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  failures++;
  pthread_mutex_unlock(&mu);
  va_end(ap);
}

/* ------------------------------------------------------------------ HTTP over a socket */

typedef struct reply {
  int status;
  char *head, *body; /* body de-chunked */
  size_t nbody;
} reply;

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  struct timeval tv = {.tv_sec = opt.timeout_s};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int send_request(int fd, const char *method, const char *path, const char *body) {
  char head[256];
  size_t n = body ? strlen(body) : 0;
  snprintf(head, sizeof head,
           "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
           "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
           method, path, n);
  return send_all(fd, head, strlen(head)) || (n && send_all(fd, body, n)) ? -1 : 0;
}

/* Everything until the server closes; -1 on a timeout or error. */
static int read_all(int fd, char **out, size_t *len) {
  size_t cap = 8192, n = 0;
  char *b = malloc(cap);
  for (;;) {
    if (n + 4096 > cap)
      b = realloc(b, cap *= 2);
    ssize_t k = read(fd, b + n, cap - n - 1);
    if (k == 0)
      break;
    if (k < 0) {
      free(b);
      return -1;
    }
    n += (size_t)k;
  }
  b[n] = '\0';
  *out = b;
  *len = n;
  return 0;
}

static void dechunk(reply *r) {
  char *src = r->body, *dst = r->body;
  for (;;) {
    char *end;
    unsigned long k = strtoul(src, &end, 16);
    char *line = strstr(end, "\r\n");
    if (!line || k == 0)
      break;
    memmove(dst, line + 2, k);
    dst += k;
    src = line + 2 + k + 2;
  }
  *dst = '\0';
  r->nbody = (size_t)(dst - r->body);
}

static int parse_reply(char *raw, size_t n, reply *r) {
  char *sep = strstr(raw, "\r\n\r\n");
  if (!sep || sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
    return -1;
  *sep = '\0';
  r->head = raw;
  r->body = sep + 4;
  r->nbody = n - (size_t)(r->body - raw);
  if (strcasestr(r->head, "transfer-encoding: chunked"))
    dechunk(r);
  return 0;
}

/* One whole exchange. Returns 0 with *r filled (free r->head), -1 on a connection failure. */
static int exchange(const char *method, const char *path, const char *body, reply *r) {
  int fd = dial();
  char *raw;
  size_t n;
  if (fd < 0)
    return -1;
  int rc = send_request(fd, method, path, body) || read_all(fd, &raw, &n) ? -1 : 0;
  close(fd);
  if (rc == 0 && parse_reply(raw, n, r) != 0) {
    free(raw);
    rc = -1;
  }
  return rc;
}

/* ------------------------------------------------------------------ checks */

static int check_usage(const cJSON *o, int max_tokens, const char *what) {
  const cJSON *u = cJSON_GetObjectItem(o, "usage");
  int p = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "prompt_tokens"));
  int c = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "completion_tokens"));
  int t = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "total_tokens"));
  if (!u || p < 1 || c < 0 || c > max_tokens || t != p + c) {
    fail("%s: bad usage", what);
    return -1;
  }
  pthread_mutex_lock(&mu);
  tokens_out += c;
  pthread_mutex_unlock(&mu);
  return 0;
}

/* With logprobs: one per completion token, each <= 0, the tokens spelling the text. */
static void check_logprobs(const cJSON *o, const cJSON *ch, const char *text, const char *what) {
  const cJSON *lp = cJSON_GetObjectItem(ch, "logprobs"), *t, *v;
  if (cJSON_IsNull(lp))
    return;
  const cJSON *toks = cJSON_GetObjectItem(lp, "tokens"),
              *vals = cJSON_GetObjectItem(lp, "token_logprobs");
  int n = (int)cJSON_GetNumberValue(
      cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens"));
  size_t at = 0;
  int ok = cJSON_GetArraySize(toks) == n && cJSON_GetArraySize(vals) == n;
  cJSON_ArrayForEach(t, toks) {
    const char *s = cJSON_GetStringValue(t);
    size_t k = s ? strlen(s) : 0;
    ok &= s && !strncmp(text + at, s, k);
    at += ok ? k : 0;
  }
  cJSON_ArrayForEach(v, vals) ok &= cJSON_IsNumber(v) && cJSON_GetNumberValue(v) <= 0;
  if (!ok || at != strlen(text))
    fail("%s: logprobs do not match the text and usage", what);
}

/* The text of a non-streamed completion, checked; NULL when it failed (said why). */
static char *whole_text(const reply *r, const char *what) {
  cJSON *o = cJSON_Parse(r->body);
  const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
  const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(ch, "text"));
  const char *fin = cJSON_GetStringValue(cJSON_GetObjectItem(ch, "finish_reason"));
  char *out = NULL;
  if (!text || !fin)
    fail("%s: no text or finish_reason in %.200s", what, r->body);
  else if (check_usage(o, opt.max_tokens, what) == 0) {
    check_logprobs(o, ch, text, what);
    out = strdup(text);
  }
  cJSON_Delete(o);
  return out;
}

/* The text of a stream: every event parses, the last chunk has finish_reason and usage,
 * then data: [DONE] ends it. */
static char *stream_text(const reply *r, const char *what) {
  size_t cap = r->nbody + 1, n = 0;
  char *text = calloc(1, cap), *p = r->body;
  int done = 0, finished = 0;
  while (p && *p) {
    if (strncmp(p, "data: ", 6) != 0) {
      fail("%s: not an SSE data line: %.80s", what, p);
      break;
    }
    char *end = strstr(p, "\n\n");
    if (!end) {
      fail("%s: an event without its blank line", what);
      break;
    }
    *end = '\0';
    if (!strcmp(p + 6, "[DONE]")) {
      done = 1;
      p = end + 2;
      if (*p)
        fail("%s: bytes after [DONE]", what);
      break;
    }
    cJSON *o = cJSON_Parse(p + 6);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(ch, "text"));
    if (!t) {
      fail("%s: a chunk without text: %.200s", what, p + 6);
    } else {
      size_t k = strlen(t);
      memcpy(text + n, t, k < cap - n - 1 ? k : cap - n - 1);
      n += k < cap - n - 1 ? k : cap - n - 1;
    }
    if (cJSON_GetStringValue(cJSON_GetObjectItem(ch, "finish_reason")))
      finished = check_usage(o, opt.max_tokens, what) == 0;
    cJSON_Delete(o);
    p = end + 2;
  }
  if (!done || !finished) {
    fail("%s: the stream did not end with a finished chunk and [DONE]", what);
    free(text);
    return NULL;
  }
  return text;
}

static void note_latency(double t) {
  pthread_mutex_lock(&mu);
  answered++;
  lat_sum += t;
  lat_max = t > lat_max ? t : lat_max;
  pthread_mutex_unlock(&mu);
}

/* One completion of prompt i, greedy, streamed or not, checked against generate's text. With
 * flood set, a 503 is accepted (it must carry Retry-After), and a 400 saying the request can
 * never fit the KV pool. */
static void complete(int i, int stream, int flood, const char *who) {
  cJSON *ps = cJSON_CreateString(prompts[i]);
  char *esc = cJSON_PrintUnformatted(ps), body[16384], what[96];
  cJSON_Delete(ps);
  snprintf(body, sizeof body,
           "{\"model\":\"x\",\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0,"
           "\"stream\":%s,\"logprobs\":%s,\"unknown_field\":[1,2]}",
           esc, opt.max_tokens, stream ? "true" : "false", i % 3 == 0 ? "0" : "null");
  free(esc);
  snprintf(what, sizeof what, "%s prompt %d%s", who, i, stream ? " (stream)" : "");
  reply r;
  double t0 = now();
  if (exchange("POST", "/v1/completions", body, &r) != 0) {
    fail("%s: no answer (connection failed or timed out after %d s)", what, opt.timeout_s);
    return;
  }
  if (r.status == 503 && flood) {
    if (!strcasestr(r.head, "retry-after:"))
      fail("%s: 503 without Retry-After", what);
    pthread_mutex_lock(&mu);
    refused++;
    pthread_mutex_unlock(&mu);
  } else if (r.status == 400 && flood && strstr(r.body, "can never fit")) {
    pthread_mutex_lock(&mu);
    never_fit++;
    pthread_mutex_unlock(&mu);
  } else if (r.status != 200) {
    fail("%s: status %d: %.300s", what, r.status, r.body);
  } else {
    char *text = stream ? stream_text(&r, what) : whole_text(&r, what);
    if (text && expected[i] && strcmp(text, expected[i]))
      fail("%s: text differs from generate's:\n  server:   %s\n  generate: %s", what, text,
           expected[i]);
    if (text)
      note_latency(now() - t0);
    free(text);
  }
  free(r.head);
}

/* ------------------------------------------------------------------ the reference */

/* `vx-serve generate ARGS --prompt P -n T`'s completion: its stdout less the prompt and the
 * final newline. */
static char *generate(const char *prompt) {
  char n[16];
  snprintf(n, sizeof n, "%d", opt.max_tokens);
  const char **argv = calloc((size_t)opt.ngen_args + 8, sizeof *argv);
  int k = 0;
  argv[k++] = opt.serve;
  argv[k++] = "generate";
  for (int i = 0; i < opt.ngen_args; i++)
    argv[k++] = opt.gen_args[i];
  argv[k++] = "--prompt";
  argv[k++] = prompt;
  argv[k++] = "-n";
  argv[k++] = n;
  int pfd[2];
  posix_spawn_file_actions_t fa;
  if (pipe(pfd) != 0)
    return NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, opt.serve, &fa, NULL, (char **)argv, environ);
  close(pfd[1]);
  free(argv);
  posix_spawn_file_actions_destroy(&fa);
  char *out = NULL;
  size_t len = 0;
  int st = 0;
  if (rc == 0) {
    read_all(pfd[0], &out, &len);
    waitpid(pid, &st, 0);
  }
  close(pfd[0]);
  size_t pl = strlen(prompt);
  if (!out || !WIFEXITED(st) || WEXITSTATUS(st) || len < pl + 1 || strncmp(out, prompt, pl)) {
    fprintf(stderr, "serve_load: vx-serve generate failed for a prompt\n");
    free(out);
    return NULL;
  }
  memmove(out, out + pl, len - pl - 1);
  out[len - pl - 1] = '\0';
  return out;
}

/* Prompts of mixed lengths: 1 to about 60 sentences. */
static void make_prompts(void) {
  static const char *const s[] = {
      "Once upon a time", "The little dog ran to the park", "Tom and Sue found a big box",
      "The sun was hot and the cat slept", "Lily wanted to fly a red kite"};
  static const int reps[NPROMPTS] = {1, 2, 3, 5, 9, 16, 30, 40};
  for (int i = 0; i < NPROMPTS; i++) {
    size_t cap = 64 * 48, n = 0;
    prompts[i] = malloc(cap);
    prompts[i][0] = '\0';
    for (int r = 0; r < reps[i]; r++)
      n += (size_t)snprintf(prompts[i] + n, cap - n, "%s%s", r ? ". " : "", s[(i + r) % 5]);
  }
}

/* ------------------------------------------------------------------ phases */

/* A streaming request read up to its first event, then dropped. */
static void *abandon(void *arg) {
  int n = (int)(long)arg;
  for (int k = 0; k < n; k++) {
    int fd = dial();
    char buf[512];
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":400,\"stream\":true}";
    if (fd < 0 || send_request(fd, "POST", "/v1/completions", body) != 0 ||
        recv(fd, buf, sizeof buf, 0) <= 0)
      fail("abandoned stream %d: no first bytes", k);
    if (fd >= 0)
      close(fd);
    pthread_mutex_lock(&mu);
    dropped++;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static void *client(void *arg) {
  int id = (int)(long)arg;
  char who[32];
  snprintf(who, sizeof who, "client %d", id);
  double end = now() + opt.duration;
  for (int k = 0; k < opt.rounds || now() < end; k++) {
    complete((id + k) % NPROMPTS, id % 2, opt.flood > 0, who);
    if (opt.duration && k % 8 == 7) /* now and then one that is dropped mid-stream */
      abandon((void *)1L);
  }
  return NULL;
}

static void run_clients(int n) {
  pthread_t *t = calloc((size_t)n, sizeof *t);
  for (long i = 0; i < n; i++)
    pthread_create(&t[i], NULL, client, (void *)i);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  free(t);
}

typedef struct bad_case {
  const char *name, *method, *path, *body;
  int status;
} bad_case;

static void expect_error(const bad_case *b) {
  reply r;
  if (exchange(b->method, b->path, b->body, &r) != 0) {
    fail("bad input '%s': no answer", b->name);
    return;
  }
  cJSON *o = cJSON_Parse(r.body);
  const char *msg =
      cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "message"));
  if (r.status != b->status || !msg || !*msg)
    fail("bad input '%s': status %d (want %d), body %.200s", b->name, r.status, b->status, r.body);
  else
    printf("ok: %-28s %d %s\n", b->name, r.status, msg);
  cJSON_Delete(o);
  free(r.head);
}

/* A body that never finishes: the server must close the connection (its body timeout)
 * without a 200, and keep serving. */
static void slow_body(void) {
  int fd = dial();
  const char *h = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
  char *raw = NULL;
  size_t n;
  double t0 = now();
  if (fd < 0 || send_all(fd, h, strlen(h)) != 0 || read_all(fd, &raw, &n) != 0)
    fail("slow body: the connection was not closed within %d s", opt.timeout_s);
  else if (strstr(raw, " 200 "))
    fail("slow body: answered 200");
  else
    printf("ok: %-28s closed after %.1f s\n", "slow body", now() - t0);
  free(raw);
  if (fd >= 0)
    close(fd);
}

static void *bad_inputs(void *arg) {
  (void)arg;
  static char big[2 << 20], long_prompt[64 * 1024];
  memset(big, 'a', sizeof big - 1);
  strcpy(long_prompt, "{\"prompt\":\"");
  for (size_t i = strlen(long_prompt); i < sizeof long_prompt - 8; i += 6)
    memcpy(long_prompt + i, "a cat ", 6);
  strcpy(long_prompt + sizeof long_prompt - 8, "\"}");
  const bad_case cases[] = {
      {"malformed JSON", "POST", "/v1/completions", "{\"prompt\": \"x\",", 400},
      {"not an object", "POST", "/v1/completions", "[1,2]", 400},
      {"no prompt", "POST", "/v1/completions", "{}", 400},
      {"prompt of wrong type", "POST", "/v1/completions", "{\"prompt\": 5}", 400},
      {"empty prompt", "POST", "/v1/completions", "{\"prompt\": \"\"}", 400},
      {"empty token list", "POST", "/v1/completions", "{\"prompt\": []}", 400},
      {"token out of vocabulary", "POST", "/v1/completions", "{\"prompt\": [1, 1000000]}", 400},
      {"max_tokens 0", "POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", 400},
      {"max_tokens a string", "POST", "/v1/completions",
       "{\"prompt\": \"x\", \"max_tokens\": \"5\"}", 400},
      {"max_tokens past context", "POST", "/v1/completions",
       "{\"prompt\": \"x\", \"max_tokens\": 100000}", 400},
      {"temperature < 0", "POST", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": -0.5}",
       400},
      {"top_p 0", "POST", "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", 400},
      {"top_p > 1", "POST", "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 1.5}", 400},
      {"stream not a bool", "POST", "/v1/completions", "{\"prompt\": \"x\", \"stream\": 1}", 400},
      {"n = 2", "POST", "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", 400},
      {"vx not an object", "POST", "/v1/completions", "{\"prompt\": \"x\", \"vx\": 3}", 400},
      {"vx unknown parameter", "POST", "/v1/completions",
       "{\"prompt\": \"x\", \"vx\": {\"nope\": 1}}", 400},
      {"vx value the policy refuses", "POST", "/v1/completions",
       "{\"prompt\": \"x\", \"vx\": {\"budget\": -5}}", 400},
      {"prompt past context", "POST", "/v1/completions", long_prompt, 400},
      {"body over the limit", "POST", "/v1/completions", big, 413},
      {"unknown path", "GET", "/v2/nothing", NULL, 404},
      {"wrong method", "GET", "/v1/completions", NULL, 405},
      {"wrong method (models)", "POST", "/v1/models", "{}", 405},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_error(&cases[i]);
  slow_body();
  return NULL;
}

static long metric(const char *body, const char *name) {
  const char *p = body;
  size_t L = strlen(name);
  while ((p = strstr(p, name))) {
    if ((p == body || p[-1] == '\n') && p[L] == ' ')
      return strtol(p + L + 1, NULL, 10);
    p += L;
  }
  return -1;
}

/* /metrics until nothing runs and every page is free (or 10 s). */
static void check_pages_free(void) {
  double t0 = now();
  long used = -1, running = -1, queued = -1;
  while (now() - t0 < 10) {
    reply r;
    if (exchange("GET", "/metrics", NULL, &r) == 0) {
      used = metric(r.body, "vx_kv_pages_used");
      running = metric(r.body, "vx_running_requests");
      queued = metric(r.body, "vx_queue_depth");
      free(r.head);
      if (used == 0 && running == 0 && queued == 0) {
        printf("ok: every KV page free (%.2f s after the last client)\n", now() - t0);
        return;
      }
    }
    usleep(100 * 1000);
  }
  fail("after the clients: %ld KV pages used, %ld running, %ld queued", used, running, queued);
}

static void usage(void) {
  fprintf(stderr, "usage: serve_load --port P [--clients N] [--rounds R] [--max-tokens T] [--bad]\n"
                  "                  [--abandon N] [--flood N] [--timeout S] [--duration S]\n"
                  "                  [--reference VX_SERVE GENERATE_ARGS... --]\n");
}

static int parse(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--bad"))
      opt.bad = 1;
    else if (!strcmp(a, "--reference") && more) {
      opt.serve = argv[++i];
      opt.gen_args = (const char **)argv + i + 1;
      while (i + 1 < argc && strcmp(argv[i + 1], "--"))
        i++, opt.ngen_args++;
      i++;
    } else if (more &&
               (!strcmp(a, "--port") || !strcmp(a, "--clients") || !strcmp(a, "--rounds") ||
                !strcmp(a, "--max-tokens") || !strcmp(a, "--abandon") || !strcmp(a, "--flood") ||
                !strcmp(a, "--timeout") || !strcmp(a, "--duration"))) {
      int v = atoi(argv[++i]);
      *(!strcmp(a, "--port")         ? &opt.port
        : !strcmp(a, "--clients")    ? &opt.clients
        : !strcmp(a, "--rounds")     ? &opt.rounds
        : !strcmp(a, "--max-tokens") ? &opt.max_tokens
        : !strcmp(a, "--abandon")    ? &opt.abandon
        : !strcmp(a, "--flood")      ? &opt.flood
        : !strcmp(a, "--duration")   ? &opt.duration
                                     : &opt.timeout_s) = v;
    } else {
      usage();
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (parse(argc, argv) != 0)
    return 2;
  make_prompts();
  for (int i = 0; opt.serve && i < NPROMPTS; i++)
    if (!(expected[i] = generate(prompts[i])))
      return 1;
  double t0 = now();
  pthread_t bad;
  if (opt.bad)
    pthread_create(&bad, NULL, bad_inputs, NULL);
  if (opt.clients)
    run_clients(opt.clients);
  if (opt.bad)
    pthread_join(bad, NULL);
  if (opt.flood)
    run_clients(opt.flood);
  if (opt.abandon) {
    pthread_t t[16];
    int nt = opt.abandon < 16 ? opt.abandon : 16;
    for (int i = 0; i < nt; i++)
      pthread_create(&t[i], NULL, abandon,
                     (void *)(long)(opt.abandon / nt + (i < opt.abandon % nt)));
    for (int i = 0; i < nt; i++)
      pthread_join(t[i], NULL);
  }
  double wall = now() - t0;
  if (opt.clients || opt.abandon || opt.flood)
    check_pages_free();
  printf("serve_load: %d answers checked%s in %.2f s (%.1f requests/s, %.1f tokens/s out; latency "
         "mean %.3f s, max %.3f s), %d refused with 503, %d as never fitting, %d abandoned, %d "
         "failures\n",
         answered, opt.serve ? " against generate" : "", wall, answered / wall, tokens_out / wall,
         answered ? lat_sum / answered : 0.0, lat_max, refused, never_fit, dropped, failures);
  return failures ? 1 : 0;
}
