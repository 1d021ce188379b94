/*
 * fork.c: fork after FCGX_Accept_r. The child reads the request's stdin, answers
 * "child <pid> of <ppid>: <stdin>" and calls FCGX_Finish_r, then _exit(0)s; the parent
 * calls FCGX_Detach and FCGX_Free(&r, 1) (the Perl FCGI module's Detach-then-Finish), as
 * programs that hand a request to a child do, and accepts the next one.
 *
 *   fork child-first    the parent waits for the child to exit before it lets go
 *   fork parent-first   the child waits (on a pipe) until the parent has let go
 *
 * Listens on fd 0. Writes "forked <pid>" and "released <pid> detach=<rc>" to its real
 * stderr for each request, and "accept returned <rc>" at the end.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "corners.h"
#include "fcgiapp.h"

int main(int argc, char **argv)
{
    FCGX_Request r;
    int rc, parent_first;

    report_library();
    if (argc != 2 || FCGX_Init() != 0 || FCGX_InitRequest(&r, 0, 0) != 0) {
        return 1;
    }
    parent_first = strcmp(argv[1], "parent-first") == 0;
    while ((rc = FCGX_Accept_r(&r)) >= 0) {
        int gate[2], status, detach;
        pid_t pid;

        if (pipe(gate) != 0) {
            return 1;
        }
        pid = fork();
        if (pid < 0) {
            return 1;
        }
        if (pid == 0) {
            char body[4096], c;
            int got, len = 0;

            close(gate[1]);
            if (parent_first && read(gate[0], &c, 1) != 1) {
                _exit(1);
            }
            while (len < (int)sizeof body - 1 &&
                   (got = FCGX_GetStr(body + len, (int)sizeof body - 1 - len, r.in)) > 0) {
                len += got;
            }
            body[len] = 0;
            FCGX_FPrintF(r.out, "Content-type: text/plain\r\n\r\nchild %d of %d: %s\n", (int)getpid(),
                         (int)getppid(), body);
            FCGX_SetExitStatus(7, r.out);
            FCGX_Finish_r(&r);
            _exit(0);
        }
        close(gate[0]);
        dprintf(2, "forked %d\n", (int)pid);
        if (!parent_first) {
            waitpid(pid, &status, 0);
        }
        detach = FCGX_Detach(&r);
        FCGX_Free(&r, 1);
        dprintf(2, "released %d detach=%d\n", (int)pid, detach);
        if (parent_first) {
            if (write(gate[1], "x", 1) != 1) {
                return 1;
            }
            waitpid(pid, &status, 0);
        }
        close(gate[1]);
    }
    dprintf(2, "accept returned %d\n", rc);
    return 0;
}
