/*
 * params.c: reports the environment of each request as fcgiapp gives it: the number of
 * envp entries, the first one, FCGX_GetParam("FCGI_ROLE"), and the number of entries whose
 * name starts with "P_". Listens on fd 0.
 *
 *   params [THREADS]   THREADS accept loops on the socket (default 1: single-threaded)
 *
 * Writes "served <n>" to its real stderr after each request (n counts over all threads)
 * and "accept returned <rc>" when a loop ends.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corners.h"
#include "fcgiapp.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int served = 0;

static void *loop(void *unused)
{
    FCGX_Request r;
    int rc, n;

    (void)unused;
    if (FCGX_InitRequest(&r, 0, 0) != 0) {
        return NULL;
    }
    while ((rc = FCGX_Accept_r(&r)) >= 0) {
        char **e;
        long entries = 0, prefixed = 0;
        const char *role = FCGX_GetParam("FCGI_ROLE", r.envp);

        for (e = r.envp; *e != NULL; e++) {
            entries++;
            if (strncmp(*e, "P_", 2) == 0) {
                prefixed++;
            }
        }
        FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nentries=%ld first=%s role=%s p=%ld\n", entries,
                     r.envp[0] ? r.envp[0] : "-", role ? role : "-", prefixed);
        FCGX_Finish_r(&r);
        pthread_mutex_lock(&lock);
        n = ++served;
        pthread_mutex_unlock(&lock);
        dprintf(2, "served %d\n", n);
    }
    dprintf(2, "accept returned %d\n", rc);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t tid[16];
    int threads = argc > 1 ? atoi(argv[1]) : 1, i;

    report_library();
    if (threads < 1 || threads > 16 || FCGX_Init() != 0) {
        return 1;
    }
    for (i = 1; i < threads; i++) {
        pthread_create(&tid[i], NULL, loop, NULL);
    }
    loop(NULL);
    for (i = 1; i < threads; i++) {
        pthread_join(tid[i], NULL);
    }
    return 0;
}
