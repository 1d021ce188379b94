/*
 * nonblock.c: FCGX_Accept_r on a listening socket (fd 0) whose file status flags belong to
 * the program.
 *
 *   nonblock nonblock   sets O_NONBLOCK itself, as event-loop wrappers do; calls
 *                       FCGX_Accept_r once with no connection waiting and reports
 *                       "empty rc=<rc> ms=<elapsed>", then "ready"; then, for each request,
 *                       poll()s the socket until readable and calls FCGX_Accept_r.
 *   nonblock block      leaves the socket blocking and loops on FCGX_Accept_r.
 *
 * After each request (answered "n=<count> pid=<pid>") it reports on its real stderr
 * "served <n> flags=kept" when F_GETFL of fd 0 is what it was before the first call, or
 * "served <n> flags=changed <before> <after>". Ends with "accept returned <rc>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corners.h"
#include "fcgiapp.h"

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int main(int argc, char **argv)
{
    FCGX_Request r;
    int n = 0, rc, before, after, nonblock;

    report_library();
    if (argc != 2 || FCGX_Init() != 0 || FCGX_InitRequest(&r, 0, 0) != 0) {
        return 1;
    }
    nonblock = strcmp(argv[1], "nonblock") == 0;
    if (nonblock) {
        long start;
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        before = fcntl(0, F_GETFL);
        start = now_ms();
        rc = FCGX_Accept_r(&r);
        dprintf(2, "empty rc=%d ms=%ld\n", rc, now_ms() - start);
        dprintf(2, "ready\n");
    } else {
        before = fcntl(0, F_GETFL);
    }
    for (;;) {
        if (nonblock) {
            struct pollfd p = {0, POLLIN, 0};
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                break;
            }
        }
        rc = FCGX_Accept_r(&r);
        if (rc == -EAGAIN && nonblock) {
            dprintf(2, "eagain after poll\n");
            continue;
        }
        if (rc < 0) {
            break;
        }
        FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nn=%d pid=%d\n", ++n, (int)getpid());
        FCGX_Finish_r(&r);
        after = fcntl(0, F_GETFL);
        if (after == before) {
            dprintf(2, "served %d flags=kept\n", n);
        } else {
            dprintf(2, "served %d flags=changed %#x %#x\n", n, before, after);
        }
    }
    dprintf(2, "accept returned %d\n", rc);
    return 0;
}
