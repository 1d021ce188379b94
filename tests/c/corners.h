/*
 * corners.h: shared by the C programs of tests/capi_corners.rs (issue 10, the drop-in's
 * corner cases). Each program first writes "lib=ours" or "lib=classic" to its real stderr
 * (fd 2, with dprintf: fcgi_stdio.h redefines stderr), so the test knows which
 * libfcgi.so.0 the loader took: only ours defines fcgi_rs_version. The tests run the same
 * programs on the classic library too, as the reference.
 */
#ifndef CORNERS_H
#define CORNERS_H

#include <dlfcn.h>
#include <stdio.h>

static inline void report_library(void)
{
    dprintf(2, "lib=%s\n", dlsym(RTLD_DEFAULT, "fcgi_rs_version") != NULL ? "ours" : "classic");
}

#endif
