#!/bin/bash
# bench/run.sh [SECONDS]: the libfcgi benchmark of BENCHMARKS.md.
#
# The same two compiled C programs (bench/hello.c: a 14-byte body; bench/big.c: 1 MiB),
# single-threaded FCGX_Accept_r loops, run once on Debian's libfcgi.so.0 and once on ours
# (target/release/libfcgi.so), each measured directly (examples/fcgi_load, a new
# connection per request) and through nginx (wrk, no upstream keep-alive), at
# concurrency 1 and 32. Prints one line per case with requests/s and the ratio ours/classic.
#
# Needs: cc, nginx, wrk, spawn-fcgi, the classic libfcgi (libfcgi0ldbl / libfcgi-dev), and
# loopback ports APP_PORT (default 19400) and NGINX_PORT (default 19401).
set -eu

secs=${1:-5}
app_port=${APP_PORT:-19400}
nginx_port=${NGINX_PORT:-19401}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
app_pid=""
nginx_pid=""
cleanup() {
    [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && cargo build --release --lib --example fcgi_load >/dev/null 2>&1)
load=$root/target/release/examples/fcgi_load
mkdir -p "$work/lib"
cp "$root/target/release/libfcgi.so" "$work/lib/libfcgi.so.0"
ln -s libfcgi.so.0 "$work/lib/libfcgi.so"
for prog in ${PROGRAMS:-hello big}; do
    # Built once, against our headers and library; at run time the loader picks the
    # library: ours with LD_LIBRARY_PATH, else Debian's.
    cc -O2 -I"$root/include" -o "$work/$prog" "$root/bench/$prog.c" -L"$work/lib" -lfcgi
done

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    fastcgi_temp_path $work/nginx/fcgi;
    proxy_temp_path $work/nginx/proxy;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass 127.0.0.1:$app_port;
        }
    }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
nginx_pid=$!

wait_port() {
    i=0
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && { echo "port $1 never opened" >&2; exit 1; }
        sleep 0.05
    done
}

# start_app PROG LIB: LIB is "ours" or "classic".
start_app() {
    if [ "$2" = ours ]; then
        LD_LIBRARY_PATH=$work/lib spawn-fcgi -n -a 127.0.0.1 -p "$app_port" -- "$work/$1" >/dev/null 2>&1 &
    else
        env -u LD_LIBRARY_PATH spawn-fcgi -n -a 127.0.0.1 -p "$app_port" -- "$work/$1" >/dev/null 2>&1 &
    fi
    app_pid=$!
    sleep 0.2
    if [ "$2" = ours ]; then
        grep -q "$work/lib/libfcgi.so.0" "/proc/$app_pid/maps" || { echo "ours not loaded" >&2; exit 1; }
    else
        grep -q "x86_64-linux-gnu/libfcgi.so" "/proc/$app_pid/maps" || { echo "classic not loaded" >&2; exit 1; }
    fi
}

stop_app() {
    kill "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
    app_pid=""
}

# measure PATH CONC: requests per second.
measure() {
    if [ "$1" = direct ]; then
        "$load" "127.0.0.1:$app_port" "$2" "$secs" | awk '{print $1}'
    else
        threads=2
        [ "$2" -lt 2 ] && threads=1
        wrk -t"$threads" -c"$2" -d"${secs}s" "http://127.0.0.1:$nginx_port/" | awk '/Requests\/sec/ {print $2}'
    fi
}

wait_port "$nginx_port"
printf '%-6s %-7s %4s %12s %12s %7s\n' program path conc classic ours ratio
for prog in ${PROGRAMS:-hello big}; do
    for path in direct nginx; do
        for conc in 1 32; do
            start_app "$prog" classic
            classic=$(measure "$path" "$conc")
            stop_app
            start_app "$prog" ours
            ours=$(measure "$path" "$conc")
            stop_app
            ratio=$(awk -v a="$ours" -v b="$classic" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
            printf '%-6s %-7s %4s %12s %12s %7s\n' "$prog" "$path" "$conc" "$classic" "$ours" "$ratio"
        done
    done
done
