/*
 * printf.c: the variadic and va_list functions of the libfcgi ABI.
 *
 * Stable Rust can neither define a `...` function nor take a va_list, so these six live in
 * C. Each is hidden (visibility "hidden"); src/capi/export.rs exports it under its libfcgi
 * name with a naked tail-jump, because a Rust cdylib exports only Rust #[no_mangle] items.
 *
 * Formatting is the C library's own vsnprintf, so every C99 conversion works (%zu, %lf,
 * %hhd, %jd, %a, positional %1$s, ...), NULL %s prints "(null)" (glibc), and %c of 0
 * writes a NUL byte. This fixes the classic libfcgi formatter, which returned -1 at the
 * first conversion it did not know (fcgi2 issue #64) and crashed on a NULL %s.
 * Output up to FCGI_CAPI_STACK_BUF bytes is formatted on the stack, larger output on the
 * heap, and then written with one FCGX_PutStr call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define NO_FCGI_DEFINES 1
#include "fcgi_stdio.h"
#include "fcgiapp.h"

#define FCGI_CAPI_HIDDEN __attribute__((visibility("hidden")))
#define FCGI_CAPI_STACK_BUF 1024

FCGI_CAPI_HIDDEN int fcgi_capi_FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg);
FCGI_CAPI_HIDDEN int fcgi_capi_FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...);
FCGI_CAPI_HIDDEN int fcgi_capi_FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap);
FCGI_CAPI_HIDDEN int fcgi_capi_FCGI_vprintf(const char *format, va_list ap);
FCGI_CAPI_HIDDEN int fcgi_capi_FCGI_fprintf(FCGI_FILE *fp, const char *format, ...);
FCGI_CAPI_HIDDEN int fcgi_capi_FCGI_printf(const char *format, ...);

/* Bytes written, or -1 (NULL argument, formatting error, or a failed write). */
int fcgi_capi_FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg)
{
    char stack_buf[FCGI_CAPI_STACK_BUF];
    char *out = stack_buf;
    va_list again;
    int len;
    int written;

    if (stream == NULL || format == NULL) {
        return -1;
    }
    va_copy(again, arg);
    len = vsnprintf(stack_buf, sizeof(stack_buf), format, arg);
    if (len < 0) {
        va_end(again);
        return -1;
    }
    if ((size_t)len >= sizeof(stack_buf)) {
        /* vsnprintf said how long the output is: format it again, into a big enough buffer. */
        out = malloc((size_t)len + 1);
        if (out == NULL) {
            va_end(again);
            return -1;
        }
        if (vsnprintf(out, (size_t)len + 1, format, again) != len) {
            free(out);
            va_end(again);
            return -1;
        }
    }
    va_end(again);
    written = len == 0 ? 0 : FCGX_PutStr(out, len, stream);
    if (out != stack_buf) {
        free(out);
    }
    return written < 0 ? -1 : len;
}

int fcgi_capi_FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...)
{
    va_list ap;
    int result;

    va_start(ap, format);
    result = fcgi_capi_FCGX_VFPrintF(stream, format, ap);
    va_end(ap);
    return result;
}

/* A real FILE gets the C library's vfprintf, a request stream FCGX_VFPrintF; else EOF. */
int fcgi_capi_FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap)
{
    if (fp == NULL) {
        return EOF;
    }
    if (fp->stdio_stream != NULL) {
        return vfprintf(fp->stdio_stream, format, ap);
    }
    if (fp->fcgx_stream != NULL) {
        return fcgi_capi_FCGX_VFPrintF(fp->fcgx_stream, format, ap);
    }
    return EOF;
}

/* _fcgi_sF is reached through the GOT (default visibility, -fPIC), so a program's copy
 * of it (R_X86_64_COPY) and the library agree on what FCGI_stdout is. */
int fcgi_capi_FCGI_vprintf(const char *format, va_list ap)
{
    return fcgi_capi_FCGI_vfprintf(FCGI_stdout, format, ap);
}

int fcgi_capi_FCGI_fprintf(FCGI_FILE *fp, const char *format, ...)
{
    va_list ap;
    int result;

    va_start(ap, format);
    result = fcgi_capi_FCGI_vfprintf(fp, format, ap);
    va_end(ap);
    return result;
}

int fcgi_capi_FCGI_printf(const char *format, ...)
{
    va_list ap;
    int result;

    va_start(ap, format);
    result = fcgi_capi_FCGI_vfprintf(FCGI_stdout, format, ap);
    va_end(ap);
    return result;
}
