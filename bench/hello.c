/* hello.c: the benchmark's small response, on the fcgiapp API (single-threaded). */
#include "fcgiapp.h"

int main(void)
{
    FCGX_Request req;
    FCGX_Init();
    FCGX_InitRequest(&req, 0, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutS("Content-Type: text/plain\r\n\r\nHello, World!\n", req.out);
        FCGX_Finish_r(&req);
    }
    return 0;
}
