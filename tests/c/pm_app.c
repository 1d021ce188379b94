/*
 * pm_app.c: the child program of the fcgi-pm tests, a single-threaded FastCGI responder
 * on the reentrant fcgiapp API (FCGX_Accept_r on fd 0). It builds against either
 * libfcgi: Debian's classic one (cc pm_app.c -lfcgi) or this crate's (-I include, linked
 * with our libfcgi.so.0), so the same program shows what the manager knows of each.
 *
 * Answer: headers X-Pid (its pid) and X-Served (requests served by this process, this one
 * included), then the echo example's body: one NAME=VALUE line per param in the order
 * received, an empty line, the request body (read whole before answering).
 *
 * QUERY_STRING controls, for the tests:
 *   sleep=MS   sleep MS milliseconds first, through signals (only SIGKILL cuts it short)
 *   crash=1    die of SIGSEGV
 *   say=WORD   write WORD and a newline to the process's own stderr
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fcgiapp.h"

extern char **environ;

/* The value of KEY in the query string Q (up to '&'), copied into OUT. */
static int query_value(const char *q, const char *key, char *out, size_t out_len)
{
    size_t klen = strlen(key);
    while (q != NULL && *q != '\0') {
        if (strncmp(q, key, klen) == 0 && q[klen] == '=') {
            const char *v = q + klen + 1;
            size_t n = strcspn(v, "&");
            if (n >= out_len) {
                n = out_len - 1;
            }
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
        q = strchr(q, '&');
        if (q != NULL) {
            q++;
        }
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

int main(void)
{
    FCGX_Request req;
    long served = 0;
    char value[256];

    if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, 0) != 0) {
        return 1;
    }
    while (FCGX_Accept_r(&req) >= 0) {
        const char *q = FCGX_GetParam("QUERY_STRING", req.envp);
        const char *len_s = FCGX_GetParam("CONTENT_LENGTH", req.envp);
        long len = len_s != NULL ? strtol(len_s, NULL, 10) : 0;
        char *body = NULL;
        int got = 0;
        char **p;

        served++;
        if (len > 0) {
            body = malloc((size_t)len);
            if (body == NULL) {
                return 1;
            }
            got = FCGX_GetStr(body, (int)len, req.in);
        }
        if (query_value(q, "sleep", value, sizeof(value))) {
            sleep_ms(strtol(value, NULL, 10));
        }
        if (query_value(q, "crash", value, sizeof(value))) {
            raise(SIGSEGV);
        }
        if (query_value(q, "say", value, sizeof(value))) {
            fprintf(stderr, "%s\n", value);
            fflush(stderr);
        }
        FCGX_FPrintF(req.out, "Content-Type: text/plain\r\nX-Pid: %d\r\nX-Served: %ld\r\n\r\n",
                     (int)getpid(), served);
        for (p = req.envp; *p != NULL; p++) {
            if (strncmp(*p, "FCGI_ROLE=", 10) == 0) {
                continue;
            }
            FCGX_PutS(*p, req.out);
            FCGX_PutChar('\n', req.out);
        }
        FCGX_PutChar('\n', req.out);
        if (got > 0) {
            FCGX_PutStr(body, got, req.out);
        }
        free(body);
        FCGX_Finish_r(&req);
    }
    return 0;
}
