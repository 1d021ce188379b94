/*
 * free_kept.c: FCGX_Free(&r, 1) right after FCGX_Finish_r, a call order found in public
 * code: it closes the request's connection even when the web server asked to keep it.
 * The program does it for requests whose QUERY_STRING is "free", and keeps the connection
 * of the others. Each request's stdin is read to the end, then answered with
 * "n=<count> q=<query> in=<stdin bytes>". With QUERY_STRING "abandon" the answer is
 * flushed, then the request is given up with FCGX_Free(&r, 1) and no FCGX_Finish_r.
 * Listens on fd 0; writes "served <n>" to its real stderr after each request and
 * "accept returned <rc>" at the end. With OWN_SIGPIPE=1 in the environment it installs a
 * SIGPIPE handler of its own after FCGX_Init, which writes "program's SIGPIPE handler"
 * each time it runs.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corners.h"
#include "fcgiapp.h"

static void own_sigpipe(int sig)
{
    static const char msg[] = "program's SIGPIPE handler\n";
    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
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
    if (getenv("OWN_SIGPIPE") != NULL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = own_sigpipe;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
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
