// fcgio.cpp: libfcgi++ (fcgi_streambuf, fcgi_istream, fcgi_ostream) over the FCGX_* API.
//
// Part of fcgi, a Rust implementation of the libfcgi C ABI. This file calls only the
// public FCGX_* functions of libfcgi.so.0, so it is built after the Rust library, into
// libfcgi++.so.0 (SONAME libfcgi++.so.0) and libfcgi++.a, by scripts/install.sh.
// The classes keep libfcgi++ 2.4.2's layout and virtual functions (see include/fcgio.h),
// so programs built against the classic header run on this library.
//
// Unbuffered (the default), every operation is one FCGX_* call. With a buffer, the same
// buffer serves as get area (input streams) or put area (output streams), and whole
// buffers move with FCGX_GetStr / FCGX_PutStr.

#include <climits>
#include <cstdio>

#include "fcgio.h"

// FCGX_GetStr / FCGX_PutStr take an int count: larger requests go in int-sized pieces.
static const std::streamsize max_piece = INT_MAX;

fcgi_streambuf::fcgi_streambuf(FCGX_Stream *fs, char *b, int bs)
{
    init(fs, b, bs);
}

fcgi_streambuf::fcgi_streambuf(char_type *b, std::streamsize bs)
{
    init(0, b, bs);
}

fcgi_streambuf::fcgi_streambuf(FCGX_Stream *fs)
{
    init(fs, 0, 0);
}

fcgi_streambuf::~fcgi_streambuf(void)
{
    // Writes out what the put area holds; flushing the FCGX_Stream is its owner's job.
    overflow(EOF);
}

void fcgi_streambuf::init(FCGX_Stream *fs, char_type *b, std::streamsize bs)
{
    this->fcgx = fs;
    this->buf = 0;
    this->bufsize = 0;
    setbuf(b, bs);
}

int fcgi_streambuf::overflow(int c)
{
    if (this->bufsize) {
        std::streamsize plen = pptr() - pbase();
        if (plen > 0) {
            if (FCGX_PutStr(pbase(), (int)plen, this->fcgx) != plen) {
                return EOF;
            }
            pbump((int)-plen);
        }
    }
    if (c != EOF) {
        if (FCGX_PutChar(c, this->fcgx) != c) {
            return EOF;
        }
    }
    return 0;
}

int fcgi_streambuf::sync()
{
    if (overflow(EOF) != 0) {
        return EOF;
    }
    if (FCGX_FFlush(this->fcgx) != 0) {
        return EOF;
    }
    return 0;
}

int fcgi_streambuf::uflow()
{
    if (this->bufsize) {
        int c = underflow();
        if (c != EOF) {
            gbump(1);
        }
        return c;
    }
    return FCGX_GetChar(this->fcgx);
}

int fcgi_streambuf::underflow()
{
    if (this->bufsize) {
        if (gptr() == egptr()) {
            std::streamsize want = this->bufsize < max_piece ? this->bufsize : max_piece;
            int glen = FCGX_GetStr(eback(), (int)want, this->fcgx);
            if (glen <= 0) {
                return EOF;
            }
            setg(eback(), eback(), eback() + glen);
        }
        return (unsigned char)*gptr();
    }
    // A peek: read one byte and push it back.
    return FCGX_UnGetChar(FCGX_GetChar(this->fcgx), this->fcgx);
}

void fcgi_streambuf::reset(void)
{
    // The one buffer is the get area of an input stream or the put area of an output one.
    setg(this->buf, this->buf, this->buf);
    setp(this->buf, this->buf + this->bufsize);
}

std::streambuf *fcgi_streambuf::setbuf(char_type *b, std::streamsize bs)
{
    // Once buffered, the buffer cannot be replaced.
    if (this->bufsize) {
        return 0;
    }
    if (b == 0 || bs <= 0) {
        b = 0;
        bs = 0;
    }
    this->buf = b;
    this->bufsize = bs;
    std::streambuf::setbuf(b, bs);
    reset();
    return this;
}

int fcgi_streambuf::attach(FCGX_Stream *fs)
{
    this->fcgx = fs;
    if (this->bufsize) {
        reset();
    }
    return 0;
}

std::streamsize fcgi_streambuf::xsgetn(char_type *s, std::streamsize n)
{
    if (this->bufsize) {
        return std::streambuf::xsgetn(s, n);
    }
    std::streamsize done = 0;
    while (done < n) {
        std::streamsize piece = n - done < max_piece ? n - done : max_piece;
        int got = FCGX_GetStr(s + done, (int)piece, this->fcgx);
        if (got <= 0) {
            break;
        }
        done += got;
        if (got < piece) {
            break;
        }
    }
    return done;
}

std::streamsize fcgi_streambuf::xsputn(const char_type *s, std::streamsize n)
{
    if (this->bufsize) {
        return std::streambuf::xsputn(s, n);
    }
    std::streamsize done = 0;
    while (done < n) {
        std::streamsize piece = n - done < max_piece ? n - done : max_piece;
        int put = FCGX_PutStr(s + done, (int)piece, this->fcgx);
        if (put != piece) {
            break;
        }
        done += put;
    }
    return done;
}

fcgi_istream::fcgi_istream(FCGX_Stream *fs) : std::istream(&fcgi_strmbuf)
{
    fcgi_strmbuf.attach(fs);
}

void fcgi_istream::attach(FCGX_Stream *fs)
{
    fcgi_strmbuf.attach(fs);
}

fcgi_ostream::fcgi_ostream(FCGX_Stream *fs) : std::ostream(&fcgi_strmbuf)
{
    fcgi_strmbuf.attach(fs);
}

void fcgi_ostream::attach(FCGX_Stream *fs)
{
    fcgi_strmbuf.attach(fs);
}
