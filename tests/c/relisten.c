/*
 * relisten.c: serves one request on the listening socket on fd 0, closes that socket,
 * opens a new one with FCGX_OpenSocket(argv[1]) (which gets fd 0 again: the lowest free
 * number) and serves on it. Answers "first" then "second <n>". Writes "listening fd=<fd>"
 * to its real stderr once the new socket is open, and "accept returned <rc>" at the end.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>

#include "corners.h"
#include "fcgiapp.h"

int main(int argc, char **argv)
{
    FCGX_Request r;
    int n = 0, rc, fd;

    report_library();
    if (argc != 2 || FCGX_Init() != 0 || FCGX_InitRequest(&r, 0, 0) != 0) {
        return 1;
    }
    rc = FCGX_Accept_r(&r);
    if (rc < 0) {
        dprintf(2, "accept returned %d\n", rc);
        return 1;
    }
    FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nfirst\n");
    FCGX_Finish_r(&r);
    close(0);
    fd = FCGX_OpenSocket(argv[1], 5);
    dprintf(2, "listening fd=%d\n", fd);
    FCGX_InitRequest(&r, fd, 0);
    while ((rc = FCGX_Accept_r(&r)) >= 0) {
        FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nsecond %d\n", ++n);
        FCGX_Finish_r(&r);
    }
    dprintf(2, "accept returned %d\n", rc);
    return 0;
}
