/*
 * iscgi.c: prints what the library decides about fd 0, and exercises FCGX_OpenSocket.
 * Usage: iscgi            prints "is_cgi=N"
 *        iscgi SPEC       FCGX_OpenSocket(SPEC, 5) first, then prints "fd=N errno=E is_cgi=N"
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#include "fcgiapp.h"

int main(int argc, char **argv)
{
    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (argc > 1) {
        int fd;
        errno = 0;
        fd = FCGX_OpenSocket(argv[1], 5);
        printf("fd=%s errno=%d ", fd >= 0 ? "ok" : "-1", fd >= 0 ? 0 : errno);
    }
    printf("is_cgi=%d\n", FCGX_IsCGI());
    return 0;
}
