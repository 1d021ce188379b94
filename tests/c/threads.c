/*
 * threads.c: four threads calling FCGX_Accept_r on the same listening socket (fd 0), each
 * with its own FCGX_Request and no lock around accept. Each request is held for 150 ms,
 * then answered with the number of the thread that served it.
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "fcgiapp.h"

static void *serve(void *arg)
{
    int index = (int)(intptr_t)arg;
    FCGX_Request req;
    struct timespec hold = {0, 150 * 1000 * 1000};

    FCGX_InitRequest(&req, 0, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        nanosleep(&hold, NULL);
        FCGX_FPrintF(req.out, "Content-type: text/plain\r\n\r\nthread %d\n", index);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[4];
    int i;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (FCGX_Init() != 0) {
        return 1;
    }
    for (i = 0; i < 4; i++) {
        pthread_create(&threads[i], NULL, serve, (void *)(intptr_t)i);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
    }
    return 0;
}
