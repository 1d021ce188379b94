/* big.c: the benchmark's 1 MiB response, on the fcgiapp API (single-threaded). */
#include <string.h>

#include "fcgiapp.h"

static char body[1 << 20];

int main(void)
{
    FCGX_Request req;
    memset(body, 'x', sizeof(body));
    FCGX_Init();
    FCGX_InitRequest(&req, 0, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutS("Content-Type: application/octet-stream\r\n\r\n", req.out);
        FCGX_PutStr(body, (int)sizeof(body), req.out);
        FCGX_Finish_r(&req);
    }
    return 0;
}
