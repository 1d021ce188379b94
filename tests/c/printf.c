/*
 * printf.c: FCGX_FPrintF / FCGX_VFPrintF conversions through a real FCGX_Stream.
 *
 * Writes FCGI_STDOUT records (request id 1) to fd 1 with FCGX_CreateWriter; tests/abi.rs
 * decodes them and compares the content with the expected text. Return values are checked
 * here; any mismatch prints a message on stderr and exits 1. Exits 3 if the library that
 * was loaded is not fcgi's (no fcgi_rs_version symbol).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fcgiapp.h"
#include "fastcgi.h"

static int failures;

#define EXPECT(call, want)                                                          \
    do {                                                                            \
        int got_ = (call);                                                          \
        if (got_ != (want)) {                                                       \
            fprintf(stderr, "%s:%d: %s returned %d, want %d\n", __FILE__, __LINE__, \
                    #call, got_, (int)(want));                                      \
            failures++;                                                             \
        }                                                                           \
    } while (0)

static int via_va_list(FCGX_Stream *s, const char *format, ...)
{
    va_list ap;
    int n;
    va_start(ap, format);
    n = FCGX_VFPrintF(s, format, ap);
    va_end(ap);
    return n;
}

int main(void)
{
    const char *null_str = NULL;
    char big[3000];
    FCGX_Stream *out;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        fprintf(stderr, "fcgi_rs_version not found: the classic libfcgi was loaded\n");
        return 3;
    }
    out = FCGX_CreateWriter(1, 1, 8192, FCGI_STDOUT);
    if (out == NULL) {
        fprintf(stderr, "FCGX_CreateWriter failed\n");
        return 1;
    }
    EXPECT(FCGX_FPrintF(out, "zu=%zu|", (size_t)18446744073709551615ULL), 24);
    EXPECT(FCGX_FPrintF(out, "lf=%lf|", 2.5), 12);
    EXPECT(FCGX_FPrintF(out, "hhd=%hhd|", 300), 7);
    EXPECT(FCGX_FPrintF(out, "jd=%jd|", (intmax_t)-42), 7);
    EXPECT(FCGX_FPrintF(out, "pos=%2$s-%1$s|", "a", "b"), 8);
    EXPECT(FCGX_FPrintF(out, "null=%s|", null_str), 12);
    EXPECT(FCGX_FPrintF(out, "nul=%c|", 0), 6);
    EXPECT(FCGX_FPrintF(out, "F=%F|a=%a|", 1.5, 1.0), 20);
    EXPECT(FCGX_FPrintF(out, "w=%-4d|%04x|%+.2e|", 7, 255, 12345.678), 22);
    EXPECT(FCGX_FPrintF(out, "%%|%Lg|", (long double)0.25), 7);
    EXPECT(via_va_list(out, "va=%d,%s|", 12, "x"), 8);
    EXPECT(FCGX_FPrintF(out, "%s", ""), 0);
    EXPECT(FCGX_FPrintF(out, NULL), -1);
    EXPECT(FCGX_FPrintF(NULL, "x"), -1);
    /* Longer than the 1024-byte stack buffer: formatted on the heap. */
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    EXPECT(FCGX_FPrintF(out, "|%s|%5000d\n", big, 1), 1 + 2999 + 1 + 5000 + 1);
    EXPECT(FCGX_FClose(out), 0);
    FCGX_FreeStream(&out);
    return failures == 0 ? 0 : 1;
}
