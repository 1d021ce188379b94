/*
 * opensock.c: FCGX_OpenSocket(argv[1]) then FCGX_Accept_r on that socket (not fd 0).
 * Prints "listening" on stdout once the socket exists; answers each request with the
 * socket spec and parameter X. Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#include "fcgiapp.h"

int main(int argc, char **argv)
{
    FCGX_Request req;
    const char *x;
    int sock;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (argc != 2 || FCGX_Init() != 0) {
        return 2;
    }
    sock = FCGX_OpenSocket(argv[1], 16);
    if (sock < 0) {
        fprintf(stderr, "FCGX_OpenSocket failed: errno %d", errno);
        return 1;
    }
    FCGX_InitRequest(&req, sock, 0);
    printf("listening\n");
    fflush(stdout);
    while (FCGX_Accept_r(&req) >= 0) {
        x = FCGX_GetParam("X", req.envp);
        FCGX_FPrintF(req.out, "Content-type: text/plain\r\n\r\nvia %s X=%s\n", argv[1], x ? x : "-");
        FCGX_Finish_r(&req);
    }
    return 0;
}
