/*
 * free_kept.c: FCGX_Free(&r, 1) right after FCGX_Finish_r, a call order found in public
 * code: it closes the request's connection even when the web server asked to keep it.
 * The program does it for requests whose QUERY_STRING is "free", and keeps the connection
 * of the others. Each request's stdin is read to the end, then answered with
 * "n=<count> q=<query> in=<stdin bytes>". With QUERY_STRING "abandon" the answer is
 * flushed, then the request is given up with FCGX_Free(&r, 1) and no FCGX_Finish_r.
 * Listens on fd 0; writes "served <n>" to its real stderr after each request and
 * "accept returned <rc>" at the end. After FCGX_Init, as the environment says:
 * OWN_SIGPIPE=handler installs a SIGPIPE handler of its own, which writes "program's
 * handler for signal <n>" each time it runs, OWN_SIGPIPE=ignore ignores SIGPIPE, and
 * OWN_SIGURG=handler installs the same handler for SIGURG.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corners.h"
#include "fcgiapp.h"

static void own_handler(int sig)
{
    char msg[] = "program's handler for signal 00\n";
    msg[sizeof msg - 4] = (char)('0' + sig / 10 % 10);
    msg[sizeof msg - 3] = (char)('0' + sig % 10);
    (void)!write(2, msg, sizeof msg - 1);
}

/* Sets SIGNO's disposition as VALUE ("handler" or "ignore") says; NULL leaves it. */
static void own_disposition(int signo, const char *value)
{
    struct sigaction sa;
    if (value == NULL) {
        return;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = strcmp(value, "ignore") == 0 ? SIG_IGN : own_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(signo, &sa, NULL);
}

int main(void)
{
    FCGX_Request r;
    int n = 0, rc;
    char buf[4096];

    report_library();
    if (FCGX_Init() != 0 || FCGX_InitRequest(&r, 0, 0) != 0) {
        return 1;
    }
    own_disposition(SIGPIPE, getenv("OWN_SIGPIPE"));
    own_disposition(SIGURG, getenv("OWN_SIGURG"));
    while ((rc = FCGX_Accept_r(&r)) >= 0) {
        const char *q = FCGX_GetParam("QUERY_STRING", r.envp);
        int do_free = q != NULL && strcmp(q, "free") == 0;
        long in = 0;
        int got;

        while ((got = FCGX_GetStr(buf, sizeof buf, r.in)) > 0) {
            in += got;
        }
        n++;
        FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nn=%d q=%s in=%ld\n", n, q ? q : "", in);
        if (q != NULL && strcmp(q, "abandon") == 0) {
            FCGX_FFlush(r.out);
            FCGX_Free(&r, 1);
            dprintf(2, "abandoned %d\n", n);
            continue;
        }
        FCGX_Finish_r(&r);
        if (do_free) {
            FCGX_Free(&r, 1);
        }
        dprintf(2, "served %d\n", n);
    }
    dprintf(2, "accept returned %d\n", rc);
    return 0;
}
