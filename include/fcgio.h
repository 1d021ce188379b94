/*
 * fcgio.h: C++ iostreams over FastCGI request streams (libfcgi++).
 *
 * Part of fcgi, a Rust implementation of the libfcgi C ABI. Class layouts and virtual
 * function order are those of libfcgi++ 2.4.2 built with libstdc++, so programs compiled
 * against either header run on either library. Typical use:
 *
 *     fcgi_streambuf out(request.out);
 *     std::cout.rdbuf(&out);
 */
#ifndef FCGIO_H
#define FCGIO_H

#include <iostream>

#include "fcgiapp.h"

#ifndef DLLAPI
#if defined(_WIN32) && defined(_MSC_VER)
#define DLLAPI __declspec(dllimport)
#else
#define DLLAPI
#endif
#endif

#if !HAVE_STREAMBUF_CHAR_TYPE
typedef char char_type;
#endif

/*
 * A std::streambuf reading or writing one FCGX_Stream. Unbuffered by default (every
 * operation is an FCGX_* call); with a buffer (the first two constructors, or setbuf) it
 * moves whole buffers with FCGX_GetStr/FCGX_PutStr. sync() also calls FCGX_FFlush.
 */
class DLLAPI fcgi_streambuf : public std::streambuf {
public:
    /* Buffered, over fcgx. */
    fcgi_streambuf(FCGX_Stream *fcgx, char *buf, int len);

    /* Buffered; attach a stream later. */
    fcgi_streambuf(char_type *buf, std::streamsize len);

    /* Unbuffered, over fcgx (which may be attached later). */
    fcgi_streambuf(FCGX_Stream *fcgx = 0);

    /* Writes out the put area (does not call FCGX_FFlush). */
    ~fcgi_streambuf(void);

    /* Switches to another FCGX_Stream. Returns 0. */
    int attach(FCGX_Stream *fcgx);

protected:
    virtual int overflow(int);
    virtual int sync();
    virtual int uflow();
    virtual int underflow();
    virtual std::streambuf *setbuf(char_type *buf, std::streamsize len);
    virtual std::streamsize xsgetn(char_type *s, std::streamsize n);
    virtual std::streamsize xsputn(const char_type *s, std::streamsize n);

private:
    FCGX_Stream *fcgx;

    /* the buffer, which std::streambuf does not keep */
    char_type *buf;
    std::streamsize bufsize;

    void init(FCGX_Stream *fcgx, char_type *buf, std::streamsize bufsize);

    void reset(void);
};

/* A std::istream over an FCGX_Stream (deprecated in libfcgi; kept for compatibility). */
class DLLAPI fcgi_istream : public std::istream {
public:
    fcgi_istream(FCGX_Stream *fcgx = 0);

    ~fcgi_istream(void) {}

    virtual void attach(FCGX_Stream *fcgx);

private:
    fcgi_streambuf fcgi_strmbuf;
};

/* A std::ostream over an FCGX_Stream (deprecated in libfcgi; kept for compatibility). */
class DLLAPI fcgi_ostream : public std::ostream {
public:
    fcgi_ostream(FCGX_Stream *fcgx = 0);

    ~fcgi_ostream(void) {}

    virtual void attach(FCGX_Stream *fcgx);

private:
    fcgi_streambuf fcgi_strmbuf;
};

#endif /* FCGIO_H */
