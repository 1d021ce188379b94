/*
 * echo.c: a FastCGI responder on the reentrant fcgiapp API (FCGX_Accept_r), listening on
 * fd 0. Answers each request with its number, role, method and keep-conn flag, then the
 * request body; writes one line to FCGI_STDERR; request 1 ends with exit status 5, later
 * ones keep the default (0: reset per request). Ends when FCGX_Accept_r fails (SIGTERM)
 * and then prints "accept returned N" to its real stderr.
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#include "fcgiapp.h"

int main(void)
{
    FCGX_Request req;
    int n = 0;
    int rc;
    char buf[4096];

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, 0) != 0) {
        return 1;
    }
    while ((rc = FCGX_Accept_r(&req)) >= 0) {
        const char *method = FCGX_GetParam("REQUEST_METHOD", req.envp);
        int got;
        n++;
        FCGX_FPrintF(req.out, "Content-type: text/plain\r\n\r\nrequest %d role=%s method=%s keep=%d id=%d fd=%s\n",
                     n, FCGX_GetParam("FCGI_ROLE", req.envp), method ? method : "-",
                     req.keepConnection, req.requestId, req.ipcFd > 0 ? "yes" : "no");
        while ((got = FCGX_GetStr(buf, sizeof(buf), req.in)) > 0) {
            FCGX_PutStr(buf, got, req.out);
        }
        FCGX_FPrintF(req.err, "to stderr %d", n);
        if (n == 1) {
            FCGX_SetExitStatus(5, req.out);
        }
        FCGX_Finish_r(&req);
    }
    fprintf(stderr, "accept returned %d", rc);
    return 0;
}
