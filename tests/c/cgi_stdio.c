/*
 * cgi_stdio.c: an fcgi_stdio program run as a CGI program (stdin a pipe).
 *
 * The FCGI_Accept loop must run its body exactly once on the real stdio; then the second
 * FCGI_Accept returns -1. printf (the library's FCGI_stdout) and fprintf(stdout, ...) (the
 * program's copy of _fcgi_sF) must write to the same stream. Exit 3: the classic library
 * was loaded instead of fcgi's.
 */
#include "fcgi_config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi_stdio.h"

int main(void)
{
    int count = 0;
    int rc;
    char line[100];
    char buf[16];

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    /* Before the first accept the wrappers hold nothing: output goes nowhere. */
    if (printf("invisible\n") != EOF || FCGI_fileno(stdout) != -1) {
        return 4;
    }
    while ((rc = FCGI_Accept()) >= 0) {
        count++;
        printf("Content-type: text/plain\r\n\r\n");
        printf("run %d is_cgi=%d\n", count, FCGX_IsCGI());
        if (fgets(line, sizeof(line), stdin) != NULL) {
            printf("line=%s", line);
        }
        if (fread(buf, 1, 4, stdin) == 4) {
            printf("fread=%.4s\n", buf);
        }
        fprintf(stdout, "fprintf %s\n", "to stdout");
        printf("puts_ret=%d\n", puts("puts"));
        fwrite("fwrite\n", 1, 7, stdout);
        putchar('c');
        putc('\n', stdout);
        printf("getenv=%s\n", getenv("FCGI_TEST_VAR"));
        printf("fileno=%d\n", FCGI_fileno(stdout));
        errno = ENOENT;
        perror("perr");
        fflush(stdout);
    }
    printf("loop ended count=%d rc=%d\n", count, rc);
    return 0;
}
