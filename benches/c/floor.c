/* floor.c: a reference, not a FastCGI library -- the least a responder can do for a request
 * on a new connection: block in accept(2) on the listening socket on fd 0 (spawn-fcgi), one
 * read(2), one write(2) of a fixed "Hello, World!" answer (STDOUT, its end, END_REQUEST)
 * under the request's id, close(2). No parsing beyond the id, no keep-alive, no error
 * handling: it assumes the whole request arrives in one read, as fcgi-bench sends it.
 *
 * benches/engine_ratios.sh runs it against the classic libfcgi's hello.c to show how much
 * of a new-connection request at concurrency 1 is the kernel's and the client's work, which
 * no library can remove. Built with -DDEFER_ACCEPT it first sets TCP_DEFER_ACCEPT (30 s) on
 * the socket, as our libfcgi.so.0 does, to show what that option costs by itself.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char body[] = "Content-Type: text/plain\r\n\r\nHello, World!";

/* A record header: version 1, type, request id, content length, no padding. */
static unsigned char *header(unsigned char *p, int type, const unsigned char *id, size_t len)
{
    *p++ = 1;
    *p++ = (unsigned char)type;
    *p++ = id[0];
    *p++ = id[1];
    *p++ = (unsigned char)(len >> 8);
    *p++ = (unsigned char)len;
    *p++ = 0;
    *p++ = 0;
    return p;
}

int main(void)
{
    static unsigned char in[65536], out[256];
    const size_t n = sizeof body - 1;
#ifdef DEFER_ACCEPT
    int secs = 30;
    setsockopt(0, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
#endif
    for (;;) {
        int c = accept(0, NULL, NULL);
        if (c < 0)
            continue;
        ssize_t r = read(c, in, sizeof in);
        if (r >= 8) {
            const unsigned char *id = in + 2; /* the first record: BEGIN_REQUEST */
            unsigned char *p = header(out, 6, id, n);
            memcpy(p, body, n);
            p = header(p + n, 6, id, 0);
            p = header(p, 3, id, 8);
            memset(p, 0, 8); /* appStatus 0, FCGI_REQUEST_COMPLETE */
            p += 8;
            (void)!write(c, out, (size_t)(p - out));
        }
        close(c);
    }
}
