/* http.h - `vx-serve serve`: the OpenAI-compatible HTTP server (libmicrohttpd, a thread per
 * connection) in front of the scheduler (scheduler.h). Sits at the top of runtime/serve/ beside
 * main.c, which only dispatches to it. */
#ifndef SERVE_HTTP_H
#define SERVE_HTTP_H

/* The `serve` command: argv[1] is "serve". Returns the exit status: 0 after a clean stop
 * (SIGINT or SIGTERM), 1 when the setup fails, 2 on bad usage. */
int http_serve_main(int argc, char **argv);

#endif
