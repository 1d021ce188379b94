/*
 * roles.c: a single-threaded FCGX_Accept_r program that reports what it sees, for all
 * three roles: role, id, keep-conn, parameter X, the stdin stream, and FCGX_StartFilterData
 * followed by the FCGI_DATA stream. Ends each request with appStatus = request id + 100.
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#include "fcgiapp.h"

static void copy(FCGX_Stream *from, FCGX_Stream *to)
{
    char buf[1000];
    int got;
    while ((got = FCGX_GetStr(buf, sizeof(buf), from)) > 0) {
        FCGX_PutStr(buf, got, to);
    }
}

int main(void)
{
    FCGX_Request req;
    const char *x;
    int rc;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    FCGX_Init();
    FCGX_InitRequest(&req, 0, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        x = FCGX_GetParam("X", req.envp);
        FCGX_FPrintF(req.out, "role=%s id=%d keep=%d X=%s stdin=", FCGX_GetParam("FCGI_ROLE", req.envp),
                     req.requestId, req.keepConnection, x ? x : "-");
        copy(req.in, req.out);
        FCGX_FPrintF(req.out, " eof=%d err=%d", FCGX_HasSeenEOF(req.in), FCGX_GetError(req.in));
        rc = FCGX_StartFilterData(req.in);
        FCGX_FPrintF(req.out, " filter=%d", rc);
        if (rc == 0) {
            FCGX_PutS(" data=", req.out);
            copy(req.in, req.out);
        } else {
            FCGX_FPrintF(req.out, " err=%d", FCGX_GetError(req.in));
        }
        FCGX_SetExitStatus(req.requestId + 100, req.err);
        FCGX_Finish_r(&req);
    }
    return 0;
}
