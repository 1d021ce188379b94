/*
 * role_stdio.c: an fcgi_stdio program (environ is the request's params) that answers
 * "FCGI_ROLE=<getenv("FCGI_ROLE")>". Listens on fd 0.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "corners.h"
#include "fcgi_stdio.h"

int main(void)
{
    report_library();
    while (FCGI_Accept() >= 0) {
        const char *role = getenv("FCGI_ROLE");
        printf("Content-type: text/plain\r\n\r\nFCGI_ROLE=%s\n", role ? role : "(unset)");
    }
    return 0;
}
