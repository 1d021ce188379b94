/* floor.c: a reference, not a FastCGI library -- the least a responder can do for a request:
 * block in accept(2) on the listening socket on fd 0 (spawn-fcgi), one read(2), one write(2)
 * of a fixed "Hello, World!" answer (STDOUT, its end, END_REQUEST) under the request's id;
 * then close(2), or, when the request asked to keep the connection (FCGI_KEEP_CONN), the
 * next read on it. No parsing beyond the id and that flag, no error handling: it assumes
 * each request arrives in one read, as fcgi-bench sends it.
 *
 * benches/engine_ratios.sh runs it against the classic libfcgi's hello.c to show how much
 * of a request at concurrency 1 is the kernel's and the client's work, which no library can
 * remove. Built with -DDEFER_ACCEPT it first sets TCP_DEFER_ACCEPT (30 s) on the socket, as
 * our libfcgi.so.0 does, to show what that option costs by itself. Built with -DWATCH it
 * waits in epoll_wait(2) for the kept connection and the listening socket together before
 * each read (as our engine does, so that a new connection is not left waiting behind a kept
 * one; it only notices, it does not serve both), to show what that wait costs by itself.
 */
#include <netinet/in.h>
#ifdef WATCH
#include <sys/epoll.h>
#endif
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
#ifdef WATCH
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
#endif
    for (;;) {
        int c = accept(0, NULL, NULL);
        if (c < 0)
            continue;
#ifdef WATCH
        ev.data.fd = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
#endif
        for (;;) {
            ssize_t r = read(c, in, sizeof in);
            if (r < 16)
                break;
            const unsigned char *id = in + 2; /* the first record: BEGIN_REQUEST */
            int keep = in[8 + 2] & 1;         /* its body's flags: FCGI_KEEP_CONN */
            unsigned char *p = header(out, 6, id, n);
            memcpy(p, body, n);
            p = header(p + n, 6, id, 0);
            p = header(p, 3, id, 8);
            memset(p, 0, 8); /* appStatus 0, FCGI_REQUEST_COMPLETE */
            p += 8;
            (void)!write(c, out, (size_t)(p - out));
            if (!keep)
                break;
#ifdef WATCH
            struct epoll_event got;
            epoll_wait(ep, &got, 1, -1);
#endif
        }
        close(c);
    }
}
