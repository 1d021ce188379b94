// echo_cpp.cpp: the classic echo-cpp pattern: FCGX_Accept_r, then std::cin, std::cout and
// std::cerr redirected to fcgi_streambufs over the request's streams.
// Exit 3: the classic library was loaded instead of fcgi's.
#include <dlfcn.h>

#include <iostream>
#include <string>

#include "fcgio.h"

int main()
{
    if (dlsym(RTLD_DEFAULT, "fcgi_rs_version") == NULL) {
        return 3;
    }
    std::streambuf *cin_old = std::cin.rdbuf();
    std::streambuf *cout_old = std::cout.rdbuf();
    std::streambuf *cerr_old = std::cerr.rdbuf();
    FCGX_Request req;
    FCGX_Init();
    FCGX_InitRequest(&req, 0, 0);
    int n = 0;
    while (FCGX_Accept_r(&req) == 0) {
        {
            fcgi_streambuf in(req.in);
            fcgi_streambuf out(req.out);
            fcgi_streambuf err(req.err);
            std::cin.rdbuf(&in);
            std::cout.rdbuf(&out);
            std::cerr.rdbuf(&err);
            std::string line;
            std::getline(std::cin, line);
            std::cout << "Content-type: text/plain\r\n\r\ncpp " << ++n << " got " << line << std::endl;
            std::cerr << "cerr " << n << std::flush;
            std::cin.rdbuf(cin_old);
            std::cout.rdbuf(cout_old);
            std::cerr.rdbuf(cerr_old);
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
