/*
 * authz.c: a FastCGI Authorizer on FCGX_Accept_r. Denies (403) when the query string
 * contains "deny", allows (200, with a Variable- header) otherwise; answers 500 to any
 * other role. Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "fcgiapp.h"

int main(void)
{
    FCGX_Request req;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    FCGX_Init();
    FCGX_InitRequest(&req, 0, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        const char *role = FCGX_GetParam("FCGI_ROLE", req.envp);
        const char *query = FCGX_GetParam("QUERY_STRING", req.envp);
        if (role == NULL || strcmp(role, "AUTHORIZER") != 0) {
            FCGX_PutS("Status: 500\r\nContent-type: text/plain\r\n\r\nnot an authorizer\n", req.out);
        } else if (query != NULL && strstr(query, "deny") != NULL) {
            FCGX_PutS("Status: 403\r\nContent-type: text/plain\r\n\r\ndenied by authz.c\n", req.out);
        } else {
            FCGX_PutS("Status: 200\r\nVariable-AUTHZ_USER: bob\r\n\r\n", req.out);
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
