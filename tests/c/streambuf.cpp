// streambuf.cpp: libfcgi++ (fcgi_streambuf, fcgi_istream, fcgi_ostream), buffered and
// unbuffered, over FCGX streams: a record writer on fd 1 (FCGI_STDOUT, request 1) and
// input streams built by hand, as some programs' tests do. Everything read is written
// back to the output, which tests/install.rs decodes and compares.
// Exit 3: the classic library was loaded instead of fcgi's.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "fastcgi.h"
#include "fcgio.h"

static void fill_at_eof(FCGX_Stream *s)
{
    s->isClosed = 1;
}

// An input stream over fixed bytes: everything readable at once, then end of stream.
static FCGX_Stream reader_over(unsigned char *data, size_t n)
{
    FCGX_Stream s;
    std::memset(&s, 0, sizeof(s));
    s.rdNext = data;
    s.stopUnget = data;
    s.stop = data + n;
    s.wrNext = s.stop;
    s.isReader = 1;
    s.fillBuffProc = fill_at_eof;
    return s;
}

int main()
{
    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    FCGX_Stream *out = FCGX_CreateWriter(1, 1, 8192, FCGI_STDOUT);
    {
        fcgi_streambuf sb(out);
        std::ostream os(&sb);
        os << "unbuffered " << 42 << '\n';
        std::streambuf *old = std::cout.rdbuf(&sb);
        std::cout << "via cout" << std::endl;
        std::cout.rdbuf(old);
    }
    {
        char buf[16];
        fcgi_streambuf sb(out, buf, sizeof(buf));
        std::ostream os(&sb);
        os << "buffered output longer than sixteen bytes|";
        os.flush();
    }
    {
        fcgi_ostream fos(out);
        fos << "fcgi_ostream|";
        fos.flush();
    }
    fcgi_ostream result(out);
    {
        unsigned char text[] = "word 123\nline two\n";
        FCGX_Stream in = reader_over(text, sizeof(text) - 1);
        fcgi_istream is(&in);
        std::string word, line, rest;
        int n = 0;
        is >> word >> n;
        std::getline(is, rest);
        std::getline(is, line);
        int after = is.peek();
        result << "in=" << word << ',' << n << ',' << line << ',' << (after == EOF ? "eof" : "more")
               << '|';
    }
    {
        unsigned char text[] = "abcdefghij\nz";
        FCGX_Stream in = reader_over(text, sizeof(text) - 1);
        char buf[4];
        fcgi_streambuf sb(&in, buf, sizeof(buf));
        std::istream is(&sb);
        std::string line;
        std::getline(is, line);
        char z = 0;
        is.get(z);
        result << "buffered-in=" << line << ',' << z << '|';
    }
    result.flush();
    FCGX_FClose(out);
    FCGX_FreeStream(&out);
    return 0;
}
