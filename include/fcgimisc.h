/*
 * fcgimisc.h: small helper macros used by libfcgi programs.
 * Part of fcgi (a Rust implementation of the libfcgi C ABI). Each macro is defined only
 * if the program has not defined it already.
 */
#ifndef _FCGIMISC_H
#define _FCGIMISC_H

#ifndef FALSE
#define FALSE (0)
#endif

#ifndef TRUE
#define TRUE (1)
#endif

#ifndef min
#define min(a, b) ((a) < (b) ? (a) : (b))
#endif

#ifndef max
#define max(a, b) ((a) > (b) ? (a) : (b))
#endif

#ifndef ASSERT
#define ASSERT(assertion) assert(assertion)
#endif

#endif /* _FCGIMISC_H */
