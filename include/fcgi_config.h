/*
 * fcgi_config.h: build configuration macros of libfcgi 2.4.2 on a Linux/glibc system.
 *
 * Part of fcgi (a Rust implementation of the libfcgi C ABI). Programs include this file and
 * test HAVE_UNISTD_H, HAVE_FPOS or HAVE_IOSTREAM_WITHASSIGN_STREAMBUF, so the set of macros
 * and their values are those of the classic library's build. Left undefined on purpose, as
 * there: HAVE_PTHREAD, USE_LOCKING, HAVE_SOCKLEN, HAVE_IOSTREAM_WITHASSIGN_STREAMBUF.
 */

/* System headers present. */
#define HAVE_ARPA_INET_H 1
#define HAVE_DLFCN_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_LIMITS_H 1
#define HAVE_NETDB_H 1
#define HAVE_NETINET_IN_H 1
#define HAVE_STDINT_H 1
#define HAVE_STDIO_H 1
#define HAVE_STDLIB_H 1
#define HAVE_STRINGS_H 1
#define HAVE_STRING_H 1
#define HAVE_SYS_PARAM_H 1
#define HAVE_SYS_SOCKET_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TIME_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_UNISTD_H 1

/* Library features and prototypes present. */
#define HAVE_FILENO_PROTO 1
#define HAVE_FPOS 1
#define HAVE_LIBNSL 1
#define HAVE_STREAMBUF_CHAR_TYPE 1
#define HAVE_STRERROR 1
#define STDC_HEADERS 1

/* Package identity, as the classic build reports it. */
#define LT_OBJDIR ".libs/"
#define PACKAGE "fcgi"
#define PACKAGE_BUGREPORT ""
#define PACKAGE_NAME "fcgi"
#define PACKAGE_STRING "fcgi 2.4.2"
#define PACKAGE_TARNAME "fcgi"
#define PACKAGE_URL ""
#define PACKAGE_VERSION "2.4.2"
#define VERSION "2.4.2"
