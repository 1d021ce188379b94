/*
 * every.c: calls the exported functions the other programs do not reach, through the
 * shared library, with results checked: the FCGX_* request and stream functions outside
 * a web server, and the OS_* layer. Usage: every PORT (a free loopback port), with stdin a
 * pipe holding "stdin-bytes". Prints "ok N" or "FAIL line L" lines.
 * Exit 3: the classic library was loaded instead of fcgi's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fastcgi.h"
#define NO_FCGI_DEFINES 1
#include "fcgi_stdio.h"
#include "fcgiapp.h"
#include "fcgios.h"

static int nchecks;
static int nfailed;

#define CHECK(cond)                                                   \
    do {                                                              \
        nchecks++;                                                    \
        if (!(cond)) {                                                \
            nfailed++;                                                \
            record_failure(__LINE__);                                 \
        }                                                             \
    } while (0)

static int failed_lines[64];
static void record_failure(int line);

static void record_failure(int line)
{
    if (nfailed <= 64) {
        failed_lines[nfailed - 1] = line;
    }
}

static int vf(FCGI_FILE *fp, const char *format, ...)
{
    va_list ap;
    int n;
    va_start(ap, format);
    n = FCGI_vfprintf(fp, format, ap);
    va_end(ap);
    return n;
}

static int vp(const char *format, ...)
{
    va_list ap;
    int n;
    va_start(ap, format);
    n = FCGI_vprintf(format, ap);
    va_end(ap);
    return n;
}

static void no_fill(FCGX_Stream *s)
{
    s->isClosed = 1;
}

static int async_result[4];

static void done(ClientData cd, int len)
{
    *(int *)cd = len;
}

static void requests_and_streams(void)
{
    FCGX_Request r;
    FCGX_Stream *in, *out, *err, *w;
    FCGX_ParamArray envp;
    char *vec[] = {"A=1", "B=two", NULL};
    int p[2];
    unsigned char text[] = "ab\ncd";
    FCGX_Stream s;
    char line[16];
    char wire[512];
    ssize_t got;

    CHECK(FCGX_IsCGI() == 1);
    CHECK(FCGX_Init() == 0);
    errno = 0;
    CHECK(FCGX_OpenSocket("/nonexistent-fcgi-dir/s", 5) == -1 && errno == ENOENT);
    CHECK(FCGX_InitRequest(&r, 0, 0) == 0 && r.ipcFd == -1);
    CHECK(FCGX_Detach(&r) == -1);
    r.ipcFd = 7;
    CHECK(FCGX_Detach(&r) == 0 && r.detached == 1);
    CHECK(FCGX_Attach(&r) == 0 && r.detached == 0);
    r.ipcFd = -1;
    CHECK(FCGX_Accept_r(&r) == -ENOTSOCK); /* fd 0 is a pipe */
    FCGX_Finish_r(&r);
    FCGX_Free(&r, 1);
    CHECK(FCGX_Accept(&in, &out, &err, &envp) == -ENOTSOCK);
    FCGX_Finish();
    CHECK(strcmp(FCGX_GetParam("B", vec), "two") == 0 && FCGX_GetParam("C", vec) == NULL);

    /* A record writer on a pipe. */
    CHECK(pipe(p) == 0);
    w = FCGX_CreateWriter(p[1], 1, 64, FCGI_STDOUT);
    CHECK(FCGX_PutChar('<', w) == '<');
    CHECK(FCGX_PutStr("ab", 2, w) == 2);
    CHECK(FCGX_PutS("cd", w) == 2);
    CHECK(FCGX_FPrintF(w, "%d", 42) == 2);
    CHECK(FCGX_FFlush(w) == 0);
    FCGX_SetExitStatus(3, w);
    CHECK(FCGX_GetError(w) == 0 && FCGX_HasSeenEOF(w) == 0);
    CHECK(FCGX_GetChar(w) == EOF && FCGX_GetStr(line, 4, w) == 0);
    CHECK(FCGX_GetLine(line, 4, w) == NULL && FCGX_UnGetChar('x', w) == EOF);
    CHECK(FCGX_StartFilterData(w) == -1 && FCGX_GetError(w) == FCGX_CALL_SEQ_ERROR);
    FCGX_ClearError(w);
    CHECK(FCGX_GetError(w) == 0);
    CHECK(FCGX_FClose(w) == 0);
    FCGX_FreeStream(&w);
    CHECK(w == NULL);
    close(p[1]);
    got = read(p[0], wire, sizeof(wire));
    /* one record "<abcd42" padded to 8, then the empty end record */
    CHECK(got == 8 + 8 + 8 && wire[1] == FCGI_STDOUT && wire[5] == 7 && wire[6] == 1 &&
          memcmp(wire + 8, "<abcd42", 7) == 0 && wire[16 + 5] == 0);
    close(p[0]);

    /* A reader built by hand, as some programs' tests do. */
    memset(&s, 0, sizeof(s));
    s.rdNext = s.stopUnget = text;
    s.stop = s.wrNext = text + 5;
    s.isReader = 1;
    s.fillBuffProc = no_fill;
    CHECK(FCGX_GetChar(&s) == 'a' && FCGX_UnGetChar('A', &s) == 'A' && FCGX_GetChar(&s) == 'A');
    CHECK(FCGX_GetLine(line, sizeof(line), &s) == line && strcmp(line, "b\n") == 0);
    CHECK(FCGX_GetStr(line, sizeof(line), &s) == 2 && memcmp(line, "cd", 2) == 0);
    CHECK(FCGX_HasSeenEOF(&s) == EOF);
}

static void os_layer(int port)
{
    char spec[64];
    char buf[32];
    int lfd, c, a, status;
    struct timeval tv = {5, 0};
    int i;

    CHECK(OS_LibInit(NULL) == 0);
    CHECK(OS_IsFcgi(0) == 0);
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
    lfd = OS_CreateLocalIpcFd(spec, 5);
    CHECK(lfd > 2 && OS_IsFcgi(lfd) == 1);
    OS_SetFlags(lfd, O_NONBLOCK);
    errno = 0;
    CHECK(OS_Accept(lfd, 0, NULL) == -1 && errno == EAGAIN);
    c = OS_FcgiConnect(spec);
    CHECK(c > 2);
    usleep(50 * 1000);
    a = OS_Accept(lfd, 0, "10.0.0.9,127.0.0.1");
    CHECK(a > 2);
    CHECK(OS_Write(c, "hi", 2) == 2 && OS_Read(a, buf, 2) == 2 && memcmp(buf, "hi", 2) == 0);
    async_result[0] = async_result[1] = async_result[2] = -100;
    CHECK(OS_AsyncWrite(c, 0, "ping", 4, done, &async_result[0]) == 0);
    CHECK(OS_AsyncRead(a, 0, buf, sizeof(buf), done, &async_result[1]) == 0);
    CHECK(OS_AsyncReadStdin(buf + 16, 11, done, &async_result[2]) == 0);
    for (i = 0; i < 10 && (async_result[0] < 0 || async_result[1] < 0 || async_result[2] < 0); i++) {
        CHECK(OS_DoIo(&tv) == 0);
    }
    CHECK(async_result[0] == 4 && async_result[1] == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(async_result[2] == 11 && memcmp(buf + 16, "stdin-bytes", 11) == 0);
    CHECK(OS_CloseRead(a) == 0);
    CHECK(OS_IpcClose(c, 0) == 0);
    CHECK(OS_Close(a, 1) == 0 && OS_Close(-1, 0) == 0);
    CHECK(OS_SpawnChild("/bin/true", lfd) == 0);
    CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    OS_ShutdownPending();
    FCGX_ShutdownPending();
    CHECK(OS_Accept(lfd, 0, NULL) == -1); /* shutdown pending: no accept at all */
    OS_LibShutdown();
    close(lfd);
}

int main(int argc, char **argv)
{
    FCGI_FILE *f;
    int i;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (argc != 2) {
        return 2;
    }
    requests_and_streams();
    os_layer(atoi(argv[1]));
    f = FCGI_tmpfile();
    CHECK(vf(f, "%s-%d", "v", 1) == 3);
    FCGI_fclose(f);
    CHECK(FCGI_Accept() == 0); /* CGI mode */
    CHECK(vp("%s\n", "vprintf") == 8);
    for (i = 0; i < nfailed && i < 64; i++) {
        FCGI_printf("FAIL line %d\n", failed_lines[i]);
    }
    if (nfailed == 0) {
        FCGI_printf("ok %d\n", nchecks);
    }
    return nfailed == 0 ? 0 : 1;
}
