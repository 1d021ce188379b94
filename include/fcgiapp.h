/*
 * fcgiapp.h: the FCGX_* API of libfcgi: accepting FastCGI requests and reading and writing
 * their streams.
 *
 * Part of fcgi, a Rust implementation of the libfcgi C ABI (libfcgi.so.0). Declarations,
 * constants and structure layouts are those of libfcgi 2.4.2, so programs built against
 * either header run on either library. Documented differences from the classic library:
 * FCGX_OpenSocket returns -1 with errno set instead of exiting, and also accepts
 * "[::1]:port"; FCGX_FPrintF/FCGX_VFPrintF implement full C99 printf; the exit status is
 * reset to 0 for every request.
 */
#ifndef _FCGIAPP_H
#define _FCGIAPP_H

#ifndef TCL_LIBRARY
#include <stdarg.h>
#else
#include <varargs.h>
#endif

#ifndef DLLAPI
#if defined(_WIN32) && defined(_MSC_VER)
#define DLLAPI __declspec(dllimport)
#else
#define DLLAPI
#endif
#endif

#if defined(c_plusplus) || defined(__cplusplus)
extern "C" {
#endif

/* Stream error codes (FCGX_GetError); positive values are errno values. */
#define FCGX_UNSUPPORTED_VERSION -2
#define FCGX_PROTOCOL_ERROR -3
#define FCGX_PARAMS_ERROR -4
#define FCGX_CALL_SEQ_ERROR -5

/*
 * A byte stream of one request: its input (FCGI_STDIN, later FCGI_DATA) or one of its
 * outputs (FCGI_STDOUT, FCGI_STDERR). The fields are public because programs use them:
 * [rdNext, stop) are the bytes readable now, [wrNext, stop) the free output space.
 * A reader has emptyBuffProc == NULL, a writer fillBuffProc == NULL; data is private.
 */
typedef struct FCGX_Stream {
    unsigned char *rdNext;
    unsigned char *wrNext;
    unsigned char *stop;
    unsigned char *stopUnget;
    int isReader;
    int isClosed;
    int wasFCloseCalled;
    int FCGI_errno;
    void (*fillBuffProc)(struct FCGX_Stream *stream);
    void (*emptyBuffProc)(struct FCGX_Stream *stream, int doClose);
    void *data;
} FCGX_Stream;

/* A request's parameters: a NULL-terminated vector of "name=value" strings. */
typedef char **FCGX_ParamArray;

/* FCGX_InitRequest flags: FCGX_Accept_r returns -EINTR when accept() is interrupted. */
#define FCGI_FAIL_ACCEPT_ON_INTR 1

/*
 * One request. Allocated by the program (80 bytes on LP64), initialised with
 * FCGX_InitRequest, and kept at the same address from FCGX_Accept_r to FCGX_Finish_r.
 * Fields after envp are private to the library.
 */
typedef struct FCGX_Request {
    int requestId;
    int role;
    FCGX_Stream *in;
    FCGX_Stream *out;
    FCGX_Stream *err;
    char **envp;

    struct Params *paramsPtr;
    int ipcFd;
    int isBeginProcessed;
    int keepConnection;
    int appStatus;
    int nWriters;
    int flags;
    int listen_sock;
    int detached;
} FCGX_Request;

/* 1 when the process runs as a CGI program (fd 0 is not a FastCGI listening socket). */
DLLAPI int FCGX_IsCGI(void);

/* Initialises the library: 0, or an error code. Idempotent; call before starting threads. */
DLLAPI int FCGX_Init(void);

/*
 * Creates a listening socket: "path" (Unix socket), ":port", "*:port", "host:port" or
 * "[v6addr]:port". Returns the fd, or -1 with errno set.
 */
DLLAPI int FCGX_OpenSocket(const char *path, int backlog);

/* Zeroes a request and sets its listening socket and flags. Returns 0. */
DLLAPI int FCGX_InitRequest(FCGX_Request *request, int sock, int flags);

/* Finishes the previous request and waits for the next one: 0, or a negative error. */
DLLAPI int FCGX_Accept_r(FCGX_Request *request);

/* Flushes and closes the request's streams and ends the request. */
DLLAPI void FCGX_Finish_r(FCGX_Request *request);

/* Frees the request's streams and parameters; closes the connection when close != 0. */
DLLAPI void FCGX_Free(FCGX_Request *request, int close);

/* FCGX_Accept_r on the library's own request, listening on fd 0. */
DLLAPI int FCGX_Accept(FCGX_Stream **in, FCGX_Stream **out, FCGX_Stream **err,
                       FCGX_ParamArray *envp);

/* FCGX_Finish_r on the library's own request. */
DLLAPI void FCGX_Finish(void);

/* Filter role: after FCGI_STDIN is read to its end, switches the input to FCGI_DATA. */
DLLAPI int FCGX_StartFilterData(FCGX_Stream *stream);

/* Sets the exit status sent in FCGI_END_REQUEST for the request owning the stream. */
DLLAPI void FCGX_SetExitStatus(int status, FCGX_Stream *stream);

/* The value of parameter name, or NULL. */
DLLAPI char *FCGX_GetParam(const char *name, FCGX_ParamArray envp);

/* Input: one byte (0..255) or EOF. */
DLLAPI int FCGX_GetChar(FCGX_Stream *stream);

/* Pushes back one byte just read: c, or EOF. */
DLLAPI int FCGX_UnGetChar(int c, FCGX_Stream *stream);

/* Reads up to n bytes; fewer only at end of stream or on error. */
DLLAPI int FCGX_GetStr(char *str, int n, FCGX_Stream *stream);

/* Reads a line of at most n-1 bytes, keeping the newline; NULL at end of stream. */
DLLAPI char *FCGX_GetLine(char *str, int n, FCGX_Stream *stream);

/* EOF once the input stream has ended (or failed), else 0. */
DLLAPI int FCGX_HasSeenEOF(FCGX_Stream *stream);

/* Output: writes one byte; returns it as unsigned char, or EOF. */
DLLAPI int FCGX_PutChar(int c, FCGX_Stream *stream);

/* Writes n bytes: n, or -1. */
DLLAPI int FCGX_PutStr(const char *str, int n, FCGX_Stream *stream);

/* Writes a NUL-terminated string: its length, or -1. */
DLLAPI int FCGX_PutS(const char *str, FCGX_Stream *stream);

/* Formatted output (C99 printf): bytes written, or -1. */
DLLAPI int FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...);

/* Formatted output from a va_list (C99 printf): bytes written, or -1. */
DLLAPI int FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg);

/* Sends buffered output now: 0, or -1. */
DLLAPI int FCGX_FFlush(FCGX_Stream *stream);

/* Flushes and ends the stream: 0, or EOF if the stream has an error. */
DLLAPI int FCGX_FClose(FCGX_Stream *stream);

/* The stream's first error: 0, an errno value (> 0) or an FCGX_* code (< 0). */
DLLAPI int FCGX_GetError(FCGX_Stream *stream);

/* Forgets the stream's error (the stream stays closed). */
DLLAPI void FCGX_ClearError(FCGX_Stream *stream);

/* A record writer of type streamType for request requestId on socket (used by cgi-fcgi). */
DLLAPI FCGX_Stream *FCGX_CreateWriter(int socket, int requestId, int bufflen, int streamType);

/* Frees a stream made by FCGX_CreateWriter and sets *stream to NULL. */
DLLAPI void FCGX_FreeStream(FCGX_Stream **stream);

/* Asks the accept loop to end (async-signal-safe). */
DLLAPI void FCGX_ShutdownPending(void);

/* Undo FCGX_Detach: closing the request's connection shuts it down gracefully again. */
DLLAPI int FCGX_Attach(FCGX_Request *r);

/* Closing the request's connection becomes a plain close(). -1 if there is no connection. */
DLLAPI int FCGX_Detach(FCGX_Request *r);

#if defined(c_plusplus) || defined(__cplusplus)
} /* extern "C" */
#endif

#endif /* _FCGIAPP_H */
