/*
 * stop_in_accept.c [N]: a shutdown signal that goes to a thread other than the ones
 * waiting for a request. The main thread starts N workers (default 1), which serve
 * requests on fd 0 ("served") until FCGX_Accept_r fails, and waits for them in
 * pthread_join; a SIGTERM sent to the process reaches the main thread. Once every worker
 * has returned, main writes "stopped" to stderr and exits 0.
 */
#include <stdlib.h>
#include <pthread.h>

#include "corners.h"
#include "fcgiapp.h"

static void *worker(void *arg)
{
    FCGX_Request r;

    (void)arg;
    if (FCGX_InitRequest(&r, 0, 0) != 0) {
        return NULL;
    }
    while (FCGX_Accept_r(&r) >= 0) {
        FCGX_PutS("Content-Type: text/plain\r\n\r\nserved\n", r.out);
        FCGX_Finish_r(&r);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[16];
    int n = argc > 1 ? atoi(argv[1]) : 1;
    int i;

    if (n < 1 || n > 16) {
        return 2;
    }
    report_library();
    if (FCGX_Init() != 0) {
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
            return 1;
        }
    }
    for (i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    dprintf(2, "stopped\n");
    return 0;
}
