/*
 * signals.c: the signal handlers FCGX_Init installs (libfcgi reference section 5.2).
 * Prints one line describing the dispositions after FCGX_Init, then shows that a write to
 * a dead pipe fails with EPIPE and that SIGTERM does not kill the process.
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fcgiapp.h"

static void mine(int sig)
{
    (void)sig;
}

static const char *describe(int sig, int *restart)
{
    struct sigaction old;
    sigaction(sig, NULL, &old);
    *restart = (old.sa_flags & SA_RESTART) != 0;
    if (old.sa_handler == SIG_DFL) {
        return "dfl";
    }
    if (old.sa_handler == SIG_IGN) {
        return "ign";
    }
    return old.sa_handler == mine ? "mine" : "lib";
}

int main(void)
{
    struct sigaction sa;
    int restart;
    int p[2];
    ssize_t n;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    signal(SIGPIPE, SIG_IGN); /* an inherited SIG_IGN is replaced too */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mine; /* an existing handler is kept */
    sigaction(SIGUSR1, &sa, NULL);
    if (FCGX_Init() != 0 || FCGX_Init() != 0) {
        return 1;
    }
    printf("pipe=%s", describe(SIGPIPE, &restart));
    printf(" usr1=%s", describe(SIGUSR1, &restart));
    printf(" term=%s", describe(SIGTERM, &restart));
    printf(" restart=%d", restart);
    printf(" int=%s", describe(SIGINT, &restart));
    if (pipe(p) != 0) {
        return 1;
    }
    close(p[0]);
    n = write(p[1], "x", 1);
    printf(" write=%s", n == -1 && errno == EPIPE ? "EPIPE" : "other");
    raise(SIGTERM);
    printf(" alive\n");
    return 0;
}
