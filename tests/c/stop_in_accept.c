/*
 * stop_in_accept.c: a shutdown signal that goes to a thread other than the one waiting in
 * accept(2). The main thread starts one worker, which serves requests on fd 0 ("served")
 * until FCGX_Accept_r fails, and waits for it in pthread_join; a SIGTERM sent to the
 * process reaches the main thread. Once the worker has returned, main writes "stopped" to
 * stderr and exits 0.
 */
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

int main(void)
{
    pthread_t t;

    report_library();
    if (FCGX_Init() != 0 || pthread_create(&t, NULL, worker, NULL) != 0) {
        return 1;
    }
    pthread_join(t, NULL);
    dprintf(2, "stopped\n");
    return 0;
}
