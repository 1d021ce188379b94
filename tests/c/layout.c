/*
 * layout.c: compile-time proof that a set of libfcgi headers has the classic ABI.
 *
 * tests/abi.rs compiles this file twice: against fcgi's include/ and against the classic
 * headers of libfcgi-dev (/usr/include). Both must compile, so both declare the same
 * structure sizes, field offsets and constants (x86_64 / LP64 numbers; the Rust side
 * asserts the same ones in src/capi/types.rs).
 */
#include <stddef.h>

#include "fcgi_config.h"
#include "fastcgi.h"
#include "fcgiapp.h"
#include "fcgi_stdio.h"
#include "fcgimisc.h"
#include "fcgios.h"

#define SIZE(type, n) _Static_assert(sizeof(type) == (n), "sizeof " #type)
#define OFF(type, field, n) _Static_assert(offsetof(type, field) == (n), #type "." #field)
#define VAL(macro, n) _Static_assert((macro) == (n), #macro)

#if defined(__x86_64__) || defined(__aarch64__)
SIZE(FCGX_Stream, 72);
OFF(FCGX_Stream, rdNext, 0);
OFF(FCGX_Stream, wrNext, 8);
OFF(FCGX_Stream, stop, 16);
OFF(FCGX_Stream, stopUnget, 24);
OFF(FCGX_Stream, isReader, 32);
OFF(FCGX_Stream, isClosed, 36);
OFF(FCGX_Stream, wasFCloseCalled, 40);
OFF(FCGX_Stream, FCGI_errno, 44);
OFF(FCGX_Stream, fillBuffProc, 48);
OFF(FCGX_Stream, emptyBuffProc, 56);
OFF(FCGX_Stream, data, 64);

SIZE(FCGX_Request, 80);
OFF(FCGX_Request, requestId, 0);
OFF(FCGX_Request, role, 4);
OFF(FCGX_Request, in, 8);
OFF(FCGX_Request, out, 16);
OFF(FCGX_Request, err, 24);
OFF(FCGX_Request, envp, 32);
OFF(FCGX_Request, paramsPtr, 40);
OFF(FCGX_Request, ipcFd, 48);
OFF(FCGX_Request, isBeginProcessed, 52);
OFF(FCGX_Request, keepConnection, 56);
OFF(FCGX_Request, appStatus, 60);
OFF(FCGX_Request, nWriters, 64);
OFF(FCGX_Request, flags, 68);
OFF(FCGX_Request, listen_sock, 72);
OFF(FCGX_Request, detached, 76);

SIZE(FCGI_FILE, 16);
OFF(FCGI_FILE, stdio_stream, 0);
OFF(FCGI_FILE, fcgx_stream, 8);
SIZE(FCGX_ParamArray, 8);
#endif

/* Wire structures: bytes only, so the same on every target. */
SIZE(FCGI_Header, 8);
OFF(FCGI_Header, version, 0);
OFF(FCGI_Header, type, 1);
OFF(FCGI_Header, requestIdB1, 2);
OFF(FCGI_Header, requestIdB0, 3);
OFF(FCGI_Header, contentLengthB1, 4);
OFF(FCGI_Header, contentLengthB0, 5);
OFF(FCGI_Header, paddingLength, 6);
OFF(FCGI_Header, reserved, 7);
SIZE(FCGI_BeginRequestBody, 8);
OFF(FCGI_BeginRequestBody, roleB1, 0);
OFF(FCGI_BeginRequestBody, roleB0, 1);
OFF(FCGI_BeginRequestBody, flags, 2);
SIZE(FCGI_BeginRequestRecord, 16);
SIZE(FCGI_EndRequestBody, 8);
OFF(FCGI_EndRequestBody, appStatusB3, 0);
OFF(FCGI_EndRequestBody, appStatusB0, 3);
OFF(FCGI_EndRequestBody, protocolStatus, 4);
SIZE(FCGI_EndRequestRecord, 16);
SIZE(FCGI_UnknownTypeBody, 8);
SIZE(FCGI_UnknownTypeRecord, 16);
_Static_assert(_Alignof(FCGI_EndRequestRecord) == 1, "records are byte-aligned");

/* fastcgi.h constants */
VAL(FCGI_LISTENSOCK_FILENO, 0);
VAL(FCGI_MAX_LENGTH, 0xffff);
VAL(FCGI_HEADER_LEN, 8);
VAL(FCGI_VERSION_1, 1);
VAL(FCGI_BEGIN_REQUEST, 1);
VAL(FCGI_ABORT_REQUEST, 2);
VAL(FCGI_END_REQUEST, 3);
VAL(FCGI_PARAMS, 4);
VAL(FCGI_STDIN, 5);
VAL(FCGI_STDOUT, 6);
VAL(FCGI_STDERR, 7);
VAL(FCGI_DATA, 8);
VAL(FCGI_GET_VALUES, 9);
VAL(FCGI_GET_VALUES_RESULT, 10);
VAL(FCGI_UNKNOWN_TYPE, 11);
VAL(FCGI_MAXTYPE, 11);
VAL(FCGI_NULL_REQUEST_ID, 0);
VAL(FCGI_KEEP_CONN, 1);
VAL(FCGI_RESPONDER, 1);
VAL(FCGI_AUTHORIZER, 2);
VAL(FCGI_FILTER, 3);
VAL(FCGI_REQUEST_COMPLETE, 0);
VAL(FCGI_CANT_MPX_CONN, 1);
VAL(FCGI_OVERLOADED, 2);
VAL(FCGI_UNKNOWN_ROLE, 3);
VAL(sizeof(FCGI_MAX_CONNS), sizeof("FCGI_MAX_CONNS"));
VAL(sizeof(FCGI_MAX_REQS), sizeof("FCGI_MAX_REQS"));
VAL(sizeof(FCGI_MPXS_CONNS), sizeof("FCGI_MPXS_CONNS"));

/* fcgiapp.h constants */
VAL(FCGX_UNSUPPORTED_VERSION, -2);
VAL(FCGX_PROTOCOL_ERROR, -3);
VAL(FCGX_PARAMS_ERROR, -4);
VAL(FCGX_CALL_SEQ_ERROR, -5);
VAL(FCGI_FAIL_ACCEPT_ON_INTR, 1);

/* fcgimisc.h, fcgios.h, fcgi_config.h */
VAL(TRUE, 1);
VAL(FALSE, 0);
VAL(min(3, 4), 3);
VAL(max(3, 4), 4);
VAL(MAXPATHLEN >= 1024, 1);
VAL(STDIN_FILENO, 0);
VAL(HAVE_FPOS, 1);
VAL(HAVE_UNISTD_H, 1);
VAL(HAVE_STREAMBUF_CHAR_TYPE, 1);
VAL(sizeof(PACKAGE_VERSION), sizeof("2.4.2"));
#ifdef HAVE_PTHREAD
#error "HAVE_PTHREAD must stay undefined"
#endif
#ifdef USE_LOCKING
#error "USE_LOCKING must stay undefined"
#endif
#ifdef HAVE_IOSTREAM_WITHASSIGN_STREAMBUF
#error "HAVE_IOSTREAM_WITHASSIGN_STREAMBUF must stay undefined"
#endif

/* fcgi_stdio.h: the standard streams are the three elements of _fcgi_sF. */
#if !defined(_FCGI_STDIO) || !defined(FCGI_stdin) || !defined(FCGI_ToFILE)
#error "fcgi_stdio.h macros missing"
#endif
_Static_assert(sizeof(*FCGI_stdout) == sizeof(FCGI_FILE), "FCGI_stdout");

/*
 * Each function assigned to a pointer of its classic prototype: a mismatch is an
 * incompatible-pointer-types error under -Werror (an explicit cast would hide it).
 */
#define PROTO(name, type) \
    do { \
        type = name; \
        (void)p; \
    } while (0)

void fcgi_layout_prototypes(void);
void fcgi_layout_prototypes(void)
{
    PROTO(FCGX_IsCGI, int (*p)(void));
    PROTO(FCGX_Init, int (*p)(void));
    PROTO(FCGX_OpenSocket, int (*p)(const char *, int));
    PROTO(FCGX_InitRequest, int (*p)(FCGX_Request *, int, int));
    PROTO(FCGX_Accept_r, int (*p)(FCGX_Request *));
    PROTO(FCGX_Finish_r, void (*p)(FCGX_Request *));
    PROTO(FCGX_Free, void (*p)(FCGX_Request *, int));
    PROTO(FCGX_Accept, int (*p)(FCGX_Stream **, FCGX_Stream **, FCGX_Stream **, FCGX_ParamArray *));
    PROTO(FCGX_Finish, void (*p)(void));
    PROTO(FCGX_StartFilterData, int (*p)(FCGX_Stream *));
    PROTO(FCGX_SetExitStatus, void (*p)(int, FCGX_Stream *));
    PROTO(FCGX_GetParam, char *(*p)(const char *, FCGX_ParamArray));
    PROTO(FCGX_GetChar, int (*p)(FCGX_Stream *));
    PROTO(FCGX_UnGetChar, int (*p)(int, FCGX_Stream *));
    PROTO(FCGX_GetStr, int (*p)(char *, int, FCGX_Stream *));
    PROTO(FCGX_GetLine, char *(*p)(char *, int, FCGX_Stream *));
    PROTO(FCGX_HasSeenEOF, int (*p)(FCGX_Stream *));
    PROTO(FCGX_PutChar, int (*p)(int, FCGX_Stream *));
    PROTO(FCGX_PutStr, int (*p)(const char *, int, FCGX_Stream *));
    PROTO(FCGX_PutS, int (*p)(const char *, FCGX_Stream *));
    PROTO(FCGX_FPrintF, int (*p)(FCGX_Stream *, const char *, ...));
    PROTO(FCGX_VFPrintF, int (*p)(FCGX_Stream *, const char *, va_list));
    PROTO(FCGX_FFlush, int (*p)(FCGX_Stream *));
    PROTO(FCGX_FClose, int (*p)(FCGX_Stream *));
    PROTO(FCGX_GetError, int (*p)(FCGX_Stream *));
    PROTO(FCGX_ClearError, void (*p)(FCGX_Stream *));
    PROTO(FCGX_CreateWriter, FCGX_Stream * (*p)(int, int, int, int));
    PROTO(FCGX_FreeStream, void (*p)(FCGX_Stream **));
    PROTO(FCGX_ShutdownPending, void (*p)(void));
    PROTO(FCGX_Attach, int (*p)(FCGX_Request *));
    PROTO(FCGX_Detach, int (*p)(FCGX_Request *));
    PROTO(FCGI_Accept, int (*p)(void));
    PROTO(FCGI_Finish, void (*p)(void));
    PROTO(FCGI_StartFilterData, int (*p)(void));
    PROTO(FCGI_SetExitStatus, void (*p)(int));
    PROTO(FCGI_perror, void (*p)(const char *));
    PROTO(FCGI_fopen, FCGI_FILE * (*p)(const char *, const char *));
    PROTO(FCGI_fclose, int (*p)(FCGI_FILE *));
    PROTO(FCGI_fflush, int (*p)(FCGI_FILE *));
    PROTO(FCGI_freopen, FCGI_FILE * (*p)(const char *, const char *, FCGI_FILE *));
    PROTO(FCGI_setvbuf, int (*p)(FCGI_FILE *, char *, int, size_t));
    PROTO(FCGI_setbuf, void (*p)(FCGI_FILE *, char *));
    PROTO(FCGI_fseek, int (*p)(FCGI_FILE *, long, int));
    PROTO(FCGI_ftell, int (*p)(FCGI_FILE *));
    PROTO(FCGI_rewind, void (*p)(FCGI_FILE *));
    PROTO(FCGI_fgetpos, int (*p)(FCGI_FILE *, fpos_t *));
    PROTO(FCGI_fsetpos, int (*p)(FCGI_FILE *, const fpos_t *));
    PROTO(FCGI_fgetc, int (*p)(FCGI_FILE *));
    PROTO(FCGI_getchar, int (*p)(void));
    PROTO(FCGI_ungetc, int (*p)(int, FCGI_FILE *));
    PROTO(FCGI_fgets, char *(*p)(char *, int, FCGI_FILE *));
    PROTO(FCGI_gets, char *(*p)(char *));
    PROTO(FCGI_fputc, int (*p)(int, FCGI_FILE *));
    PROTO(FCGI_putchar, int (*p)(int));
    PROTO(FCGI_fputs, int (*p)(const char *, FCGI_FILE *));
    PROTO(FCGI_puts, int (*p)(const char *));
    PROTO(FCGI_fprintf, int (*p)(FCGI_FILE *, const char *, ...));
    PROTO(FCGI_printf, int (*p)(const char *, ...));
    PROTO(FCGI_vfprintf, int (*p)(FCGI_FILE *, const char *, va_list));
    PROTO(FCGI_vprintf, int (*p)(const char *, va_list));
    PROTO(FCGI_fread, size_t(*p)(void *, size_t, size_t, FCGI_FILE *));
    PROTO(FCGI_fwrite, size_t(*p)(void *, size_t, size_t, FCGI_FILE *));
    PROTO(FCGI_feof, int (*p)(FCGI_FILE *));
    PROTO(FCGI_ferror, int (*p)(FCGI_FILE *));
    PROTO(FCGI_clearerr, void (*p)(FCGI_FILE *));
    PROTO(FCGI_tmpfile, FCGI_FILE * (*p)(void));
    PROTO(FCGI_fileno, int (*p)(FCGI_FILE *));
    PROTO(FCGI_fdopen, FCGI_FILE * (*p)(int, const char *));
    PROTO(FCGI_popen, FCGI_FILE * (*p)(const char *, const char *));
    PROTO(FCGI_pclose, int (*p)(FCGI_FILE *));
    PROTO(OS_LibInit, int (*p)(int *));
    PROTO(OS_LibShutdown, void (*p)(void));
    PROTO(OS_CreateLocalIpcFd, int (*p)(const char *, int));
    PROTO(OS_FcgiConnect, int (*p)(char *));
    PROTO(OS_Read, int (*p)(int, char *, size_t));
    PROTO(OS_Write, int (*p)(int, char *, size_t));
    PROTO(OS_SpawnChild, int (*p)(char *, int));
    PROTO(OS_AsyncReadStdin, int (*p)(void *, int, OS_AsyncProc, ClientData));
    PROTO(OS_AsyncRead, int (*p)(int, int, void *, int, OS_AsyncProc, ClientData));
    PROTO(OS_AsyncWrite, int (*p)(int, int, void *, int, OS_AsyncProc, ClientData));
    PROTO(OS_Close, int (*p)(int, int));
    PROTO(OS_CloseRead, int (*p)(int));
    PROTO(OS_DoIo, int (*p)(struct timeval *));
    PROTO(OS_Accept, int (*p)(int, int, const char *));
    PROTO(OS_IpcClose, int (*p)(int, int));
    PROTO(OS_IsFcgi, int (*p)(int));
    PROTO(OS_SetFlags, void (*p)(int, int));
    PROTO(OS_ShutdownPending, void (*p)(void));
}
