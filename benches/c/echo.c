/* Benchmark twin of examples/echo.rs, written the classic way: one thread, the libfcgi
 * (fcgiapp) accept loop. Answers text/plain with the same bytes as the Rust example: one
 * NAME=VALUE line per param in the order received, an empty line, then the CONTENT_LENGTH
 * bytes of the request body. The body is read to the end before the response starts.
 *
 *   cc -O2 -o echo echo.c -lfcgi && ./echo 127.0.0.1:9000
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    static const char head[] = "Content-Type: text/plain\r\n\r\n";
    FCGX_Request req;
    char *buf = NULL;
    size_t cap = 0;
    int sock = 0;

    if (FCGX_Init() != 0)
        return 1;
    if (argc > 1) {
        sock = FCGX_OpenSocket(argv[1], 511);
        if (sock < 0) {
            fprintf(stderr, "echo: cannot listen on %s\n", argv[1]);
            return 1;
        }
    }
    if (FCGX_InitRequest(&req, sock, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) >= 0) {
        const char *cl = FCGX_GetParam("CONTENT_LENGTH", req.envp);
        long want = cl ? strtol(cl, NULL, 10) : 0;
        size_t len = 0;
        char **p;

        /* Grow the buffer only as bytes actually arrive. */
        while (want > 0 && len < (size_t)want) {
            size_t chunk = (size_t)want - len;
            int got;
            if (chunk > 65536)
                chunk = 65536;
            if (len + chunk > cap) {
                size_t ncap = cap ? cap * 2 : 65536;
                char *nbuf;
                while (ncap < len + chunk)
                    ncap *= 2;
                nbuf = realloc(buf, ncap);
                if (!nbuf)
                    break;
                buf = nbuf;
                cap = ncap;
            }
            got = FCGX_GetStr(buf + len, (int)chunk, req.in);
            if (got <= 0)
                break;
            len += (size_t)got;
        }

        FCGX_PutStr(head, (int)sizeof head - 1, req.out);
        for (p = req.envp; p && *p; p++) {
            FCGX_PutS(*p, req.out);
            FCGX_PutChar('\n', req.out);
        }
        FCGX_PutChar('\n', req.out);
        if (len)
            FCGX_PutStr(buf, (int)len, req.out);
        FCGX_Finish_r(&req);
    }
    free(buf);
    return 0;
}
