// layout.cpp: compile-time proof that fcgio.h declares libfcgi++'s class layouts
// (libstdc++, x86_64). tests/abi.rs compiles it against include/ and against the
// classic header.
#include "fcgio.h"

#if defined(__x86_64__) || defined(__aarch64__)
static_assert(sizeof(fcgi_streambuf) == 88, "fcgi_streambuf: streambuf + 3 fields");
static_assert(sizeof(fcgi_istream) == 368, "fcgi_istream");
static_assert(sizeof(fcgi_ostream) == 360, "fcgi_ostream");
#endif
