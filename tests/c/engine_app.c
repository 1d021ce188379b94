/*
 * engine_app.c: the C program of the issue-7 engine measurements (benches/engine.sh and the
 * scripts it runs) and tests (tests/engine_*.rs). A classic fcgiapp accept loop, built once
 * against our headers and run on our libfcgi.so.0 or the classic one (LD_LIBRARY_PATH).
 *
 *   engine_app [-t THREADS] [-p] [ADDRESS]
 *
 * Without ADDRESS it serves the listening socket on fd 0 (spawn-fcgi). -t N: N threads, each
 * in its own FCGX_Accept_r loop on the same socket (default 1: single-threaded). -p: poll()
 * the listening socket until it is readable before each FCGX_Accept_r, as several language
 * bindings do.
 *
 * Each request: its stdin is read to the end, then it sleeps SLEEP_MS milliseconds (param,
 * default 0), then answers "pid=<pid>\n" as text/plain, followed by BODY_BYTES (param,
 * default 0) bytes of 'x'. The pid lets a client count requests per process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fcgiapp.h"

static int sock = 0;
static int poll_first = 0;
static char fill[65536];

static long param(FCGX_Request *r, const char *name)
{
    const char *v = FCGX_GetParam(name, r->envp);
    return v ? atol(v) : 0;
}

static void serve(FCGX_Request *r)
{
    char buf[16384];
    long ms, bytes;

    while (FCGX_GetStr(buf, (int)sizeof buf, r->in) > 0) {
    }
    ms = param(r, "SLEEP_MS");
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        }
    }
    FCGX_FPrintF(r->out, "Content-Type: text/plain\r\n\r\npid=%d\n", (int)getpid());
    bytes = param(r, "BODY_BYTES");
    while (bytes > 0) {
        int n = bytes > (long)sizeof fill ? (int)sizeof fill : (int)bytes;
        if (FCGX_PutStr(fill, n, r->out) < 0)
            break;
        bytes -= n;
    }
}

static void *accept_loop(void *unused)
{
    FCGX_Request r;
    (void)unused;
    if (FCGX_InitRequest(&r, sock, 0) != 0)
        return NULL;
    for (;;) {
        if (poll_first) {
            struct pollfd p = {sock, POLLIN, 0};
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                break;
        }
        if (FCGX_Accept_r(&r) < 0)
            break;
        serve(&r);
        FCGX_Finish_r(&r);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 1, opt, i;
    pthread_t tid[64];

    while ((opt = getopt(argc, argv, "t:p")) != -1) {
        switch (opt) {
        case 't':
            threads = atoi(optarg);
            break;
        case 'p':
            poll_first = 1;
            break;
        default:
            fprintf(stderr, "usage: engine_app [-t THREADS] [-p] [ADDRESS]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "engine_app: -t takes 1 to 64\n");
        return 2;
    }
    memset(fill, 'x', sizeof fill);
    if (FCGX_Init() != 0)
        return 1;
    if (optind < argc) {
        sock = FCGX_OpenSocket(argv[optind], 511);
        if (sock < 0) {
            fprintf(stderr, "engine_app: cannot listen on %s\n", argv[optind]);
            return 1;
        }
    }
    for (i = 1; i < threads; i++) {
        if (pthread_create(&tid[i], NULL, accept_loop, NULL) != 0) {
            fprintf(stderr, "engine_app: pthread_create failed\n");
            return 1;
        }
    }
    accept_loop(NULL);
    for (i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
    return 0;
}
