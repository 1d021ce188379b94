/*
 * stdio_files.c: the fcgi_stdio functions on real files (delegated to the C library), on
 * wrappers holding nothing (before the first FCGI_Accept), and on a wrapper holding an
 * FCGX_Stream (a record writer on argv[2]).
 * Usage: stdio_files DIR RECORDS_FILE  (stdin must not be a FastCGI socket)
 * Prints "ok N" after the checks, or "FAIL line L" for each failed check; exit 3 if the
 * classic library was loaded instead of fcgi's.
 */
#include "fcgi_config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fastcgi.h"
#include "fcgi_stdio.h"

static int failed[64];
static int nfailed;
static int nchecks;

#define CHECK(cond)                                   \
    do {                                              \
        nchecks++;                                    \
        if (!(cond) && nfailed < 64) {                \
            failed[nfailed++] = __LINE__;             \
        }                                             \
    } while (0)

static void real_files(const char *dir)
{
    char path[512];
    char buf[64];
    fpos_t pos;
    FILE *f;
    FILE *t;
    FILE *p;
    int fd;

    snprintf(path, sizeof(path), "%s/file.txt", dir);
    f = fopen(path, "w+");
    CHECK(f != NULL && FCGI_ToFILE(f) != NULL && FCGI_ToFcgiStream(f) == NULL);
    CHECK(setvbuf(f, NULL, _IOFBF, 4096) == 0);
    CHECK(fputs("hello\n", f) >= 0);
    CHECK(fprintf(f, "%d-%s\n", 42, "x") == 5);
    CHECK(fputc('Z', f) == 'Z');
    CHECK(fwrite("abc", 1, 3, f) == 3);
    CHECK(ftell(f) == 15);
    rewind(f);
    CHECK(ftell(f) == 0);
    CHECK(fgetc(f) == 'h');
    CHECK(ungetc('H', f) == 'H');
    CHECK(getc(f) == 'H');
    CHECK(fgets(buf, sizeof(buf), f) == buf && strcmp(buf, "ello\n") == 0);
    CHECK(fgetpos(f, &pos) == 0);
    CHECK(fread(buf, 1, 4, f) == 4 && memcmp(buf, "42-x", 4) == 0);
    CHECK(fsetpos(f, &pos) == 0);
    CHECK(fgetc(f) == '4');
    CHECK(fseek(f, 0, SEEK_END) == 0);
    CHECK(fgetc(f) == EOF && feof(f) != 0);
    clearerr(f);
    CHECK(feof(f) == 0 && ferror(f) == 0);
    CHECK(fileno(f) > 2);
    CHECK(fflush(f) == 0);
    CHECK(fclose(f) == 0);

    f = fopen(path, "r");
    setbuf(f, NULL);
    f = freopen(path, "r", f);
    CHECK(f != NULL && fgetc(f) == 'h');
    CHECK(fclose(f) == 0);
    CHECK(fopen("/nonexistent-fcgi-dir/x", "r") == NULL && errno == ENOENT);

    t = tmpfile();
    CHECK(t != NULL && fputs("tmp", t) >= 0);
    rewind(t);
    CHECK(fgets(buf, sizeof(buf), t) == buf && strcmp(buf, "tmp") == 0);
    CHECK(fclose(t) == 0);

    fd = open(path, O_RDONLY);
    f = fdopen(fd, "r");
    CHECK(f != NULL && fileno(f) == fd && fgetc(f) == 'h');
    CHECK(fclose(f) == 0);

    p = popen("echo piped", "r");
    CHECK(p != NULL && fgets(buf, sizeof(buf), p) == buf && strcmp(buf, "piped\n") == 0);
    CHECK(pclose(p) == 0);
}

/* Before the first FCGI_Accept, stdin/stdout/stderr hold neither stream. */
static void empty_wrappers(void)
{
    char buf[16];
    fpos_t pos;

    CHECK(fgetc(stdin) == EOF && getchar() == EOF);
    CHECK(ungetc('x', stdin) == EOF);
    CHECK(fgets(buf, sizeof(buf), stdin) == NULL && gets(buf) == NULL);
    CHECK(fread(buf, 1, 1, stdin) == (size_t)EOF);
    CHECK(fputs("x", stdout) == EOF && puts("x") == EOF && putchar('x') == EOF);
    CHECK(fputc('x', stderr) == EOF && printf("x") == EOF && fprintf(stderr, "x") == EOF);
    CHECK(fwrite("x", 1, 1, stdout) == (size_t)EOF);
    CHECK(feof(stdin) == -1 && ferror(stdout) == -1 && fileno(stdout) == -1);
    CHECK(fflush(stdout) == EOF);
    errno = 0;
    CHECK(fseek(stdout, 0, SEEK_SET) == -1 && errno == ESPIPE);
    errno = 0;
    CHECK(ftell(stdout) == -1 && errno == ESPIPE);
    errno = 0;
    CHECK(fgetpos(stdout, &pos) == -1 && errno == ESPIPE);
    CHECK(setvbuf(stdout, NULL, _IONBF, 0) == -1);
    CHECK(FCGI_StartFilterData() == -1);
    FCGI_SetExitStatus(3);
    FCGI_Finish();
    clearerr(stdout);
}

/* A wrapper holding a request stream: the FCGX_* path of every function. */
static void fcgx_wrapper(const char *records)
{
    int fd = open(records, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *w = malloc(sizeof(FILE));
    fpos_t pos;

    w->stdio_stream = NULL;
    w->fcgx_stream = FCGX_CreateWriter(fd, 1, 8192, FCGI_STDOUT);
    CHECK(fprintf(w, "fprintf %d|", 7) == 10);
    CHECK(fputs("fputs|", w) == 6);
    CHECK(fputc('c', w) == 'c');
    CHECK(fwrite("fwrite|", 1, 7, w) == 7);
    CHECK(fwrite("ab", 2, 1, w) == 1);
    CHECK(fflush(w) == 0 && ferror(w) == 0 && feof(w) == 0);
    CHECK(fgetc(w) == EOF);
    CHECK(fileno(w) == -1);
    errno = 0;
    CHECK(fseek(w, 0, SEEK_SET) == -1 && errno == ESPIPE);
    errno = 0;
    CHECK(ftell(w) == -1 && errno == ESPIPE);
    errno = 0;
    CHECK(fsetpos(w, &pos) == -1 && errno == ESPIPE);
    errno = 0;
    rewind(w);
    CHECK(errno == ESPIPE);
    CHECK(setvbuf(w, NULL, _IONBF, 0) == -1);
    CHECK(pclose(w) == EOF); /* a request stream is not a pipe: left alone */
    {
        FCGX_Stream *s = w->fcgx_stream;
        CHECK(fclose(w) == 0); /* FCGX_FClose: the end-of-stream record; frees w */
        FCGX_FreeStream(&s);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    int i;

    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    if (argc != 3) {
        return 2;
    }
    empty_wrappers();
    real_files(argv[1]);
    fcgx_wrapper(argv[2]);
    if (FCGI_Accept() != 0) {
        return 1;
    }
    CHECK(fileno(stdout) == 1);
    CHECK(FCGI_StartFilterData() == -1);
    for (i = 0; i < nfailed; i++) {
        printf("FAIL line %d\n", failed[i]);
    }
    if (nfailed == 0) {
        printf("ok %d\n", nchecks);
    }
    return nfailed == 0 ? 0 : 1;
}
