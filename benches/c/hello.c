/* Benchmark twin of examples/hello.rs, written the classic way: one thread, the libfcgi
 * (fcgiapp) accept loop, answering "Hello, World!" as text/plain.
 *
 *   cc -O2 -o hello hello.c -lfcgi && ./hello 127.0.0.1:9000
 *
 * Without an argument it serves the listening socket on fd 0 (spawn-fcgi, benches/libfcgi.sh).
 * Used by benches/server.sh and benches/libfcgi.sh.
 */
#include <fcgiapp.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    static const char reply[] = "Content-Type: text/plain\r\n\r\nHello, World!";
    FCGX_Request req;
    int sock = 0;

    if (FCGX_Init() != 0)
        return 1;
    if (argc > 1) {
        /* Same backlog as the Rust server's DEFAULT_BACKLOG. */
        sock = FCGX_OpenSocket(argv[1], 511);
        if (sock < 0) {
            fprintf(stderr, "hello: cannot listen on %s\n", argv[1]);
            return 1;
        }
    }
    if (FCGX_InitRequest(&req, sock, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutStr(reply, (int)sizeof reply - 1, req.out);
        FCGX_Finish_r(&req);
    }
    return 0;
}
