/*
 * steal_accept.c: an LD_PRELOAD library for tests/capi_corners.rs that plays "another
 * process on the same listening socket" at the worst moment. The first time the program
 * looks at a listening socket with poll() (one descriptor, no wait) and finds a connection
 * waiting, this library accepts that connection itself and closes it before poll()
 * returns: the program was told a connection waits, and its accept(2) finds the queue
 * empty, as when a sibling process took the connection between its look and its accept.
 * Built with: cc -shared -fPIC -o steal_accept.so steal_accept.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    static int (*real_poll)(struct pollfd *, nfds_t, int);
    static int stolen;
    int n, listening = 0;
    socklen_t len = sizeof listening;

    if (real_poll == NULL) {
        real_poll = (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");
    }
    n = real_poll(fds, nfds, timeout);
    if (!stolen && n == 1 && nfds == 1 && timeout == 0 && (fds[0].revents & POLLIN) &&
        getsockopt(fds[0].fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) {
        int c = accept(fds[0].fd, NULL, NULL);
        if (c >= 0) {
            close(c);
            stolen = 1;
            dprintf(2, "stole a connection\n");
        }
    }
    return n;
}
