#!/bin/sh
# Installs the libfcgi drop-in under PREFIX:
#   PREFIX/lib/libfcgi.so.0.0.0    (SONAME libfcgi.so.0) + libfcgi.so.0, libfcgi.so links
#   PREFIX/lib/libfcgi.a
#   PREFIX/lib/libfcgi++.so.0.0.0  (SONAME libfcgi++.so.0) + links, PREFIX/lib/libfcgi++.a
#   PREFIX/include/{fastcgi,fcgiapp,fcgi_stdio,fcgio,fcgios,fcgimisc,fcgi_config}.h
#   PREFIX/lib/pkgconfig/{fcgi,fcgi++}.pc
# so that `cc app.c $(pkg-config --cflags --libs fcgi)` works with
# PKG_CONFIG_PATH=PREFIX/lib/pkgconfig.
#
# Usage: scripts/install.sh PREFIX
# By default it runs `cargo build --release --lib` and installs target/release. With
# FCGI_BUILD_DIR=DIR it installs the libfcgi.so and libfcgi.a already built in DIR instead
# (the tests use this with target/debug/deps). CXX picks the C++ compiler (default c++).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$1
root=$(cd "$(dirname "$0")/.." && pwd)
cxx=${CXX:-c++}

if [ -n "${FCGI_BUILD_DIR:-}" ]; then
    build=$FCGI_BUILD_DIR
else
    (cd "$root" && cargo build --release --lib)
    build=$root/target/release
fi
for f in libfcgi.so libfcgi.a; do
    if [ ! -f "$build/$f" ]; then
        echo "$0: $build/$f not found" >&2
        exit 1
    fi
done

libdir=$prefix/lib
incdir=$prefix/include
pcdir=$libdir/pkgconfig
mkdir -p "$libdir" "$incdir" "$pcdir"

# The C library: real file named by version, SONAME link, development link.
install -m 755 "$build/libfcgi.so" "$libdir/libfcgi.so.0.0.0"
ln -sf libfcgi.so.0.0.0 "$libdir/libfcgi.so.0"
ln -sf libfcgi.so.0 "$libdir/libfcgi.so"
install -m 644 "$build/libfcgi.a" "$libdir/libfcgi.a"

# The C++ library is C++ over the installed C library (it needs libfcgi.so.0 to link).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cxx" -shared -fPIC -O2 -I"$root/include" -o "$libdir/libfcgi++.so.0.0.0" \
    "$root/capi/fcgio.cpp" -Wl,-soname,libfcgi++.so.0 -L"$libdir" -lfcgi
ln -sf libfcgi++.so.0.0.0 "$libdir/libfcgi++.so.0"
ln -sf libfcgi++.so.0 "$libdir/libfcgi++.so"
"$cxx" -c -fPIC -O2 -I"$root/include" -o "$tmp/fcgio.o" "$root/capi/fcgio.cpp"
rm -f "$libdir/libfcgi++.a"
ar rcs "$libdir/libfcgi++.a" "$tmp/fcgio.o"

for h in fastcgi.h fcgiapp.h fcgi_stdio.h fcgio.h fcgios.h fcgimisc.h fcgi_config.h; do
    install -m 644 "$root/include/$h" "$incdir/$h"
done
for pc in fcgi fcgi++; do
    sed "s|@PREFIX@|$prefix|" "$root/include/$pc.pc.in" > "$pcdir/$pc.pc"
done
echo "installed fcgi's libfcgi under $prefix"
