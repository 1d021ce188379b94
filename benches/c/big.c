/* big.c: the 1 MiB response of benches/libfcgi.sh, on the fcgiapp API (single-threaded),
 * serving the listening socket on fd 0 (started by spawn-fcgi). */
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
