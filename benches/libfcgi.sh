#!/usr/bin/env bash
# benches/libfcgi.sh [SECONDS]: the libfcgi drop-in benchmark of BENCHMARKS.md (section 2).
#
# The same two compiled C programs (benches/c/hello.c: "Hello, World!"; benches/c/big.c: a
# 1 MiB body), single-threaded FCGX_Accept_r loops started by spawn-fcgi, run on Debian's
# libfcgi.so.0 and on ours (target/release/libfcgi.so, chosen with LD_LIBRARY_PATH; which one
# was loaded is checked in /proc/PID/maps), in one run, case by case with a fresh process
# each time. Each case is measured
#   - directly with the crate's fcgi-bench: a new connection per request (-K) and keep-alive
#     (-k), at concurrency 1 and 32;
#   - through nginx with wrk: a connection per request (nginx's default) at 1 and 32, and
#     nginx's keep-alive pool (`upstream { keepalive 8; }` + `fastcgi_keep_conn on`) at 32.
# Requests that fail or stay unanswered longer than BENCH_TIMEOUT (default 2 s) are reported
# in the errors columns (fcgi-bench's failures; nginx's 499s for wrk). Prints a markdown
# report on stdout. About 3 minutes with the default 4 s per case.
#
# Needs: cargo, cc, nginx, wrk, spawn-fcgi, the classic libfcgi (libfcgi0ldbl / libfcgi-dev).
# Knobs: see benches/common.sh; PROGRAMS (default "hello big"), ONLY (regex on
# "program|path|mode|conc", run only the matching cases).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECS=${1:-4}
cd "$ROOT"
for tool in cargo cc nginx wrk spawn-fcgi; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
CLASSIC=$(ldconfig -p | awk '/libfcgi\.so\.0 / { print $NF; exit }')
[ -n "$CLASSIC" ] || die "Debian's libfcgi.so.0 is not installed (apt-get install libfcgi0ldbl)"

say "building (cargo build --release --lib --bin fcgi-bench)"
cargo build --release --quiet --lib --bin fcgi-bench
mkdir -p "$TMP/lib"
cp target/release/libfcgi.so "$TMP/lib/libfcgi.so.0"
ln -s libfcgi.so.0 "$TMP/lib/libfcgi.so"
PROGRAMS=${PROGRAMS:-hello big}
for prog in $PROGRAMS; do
    # Built once, against our headers; at run time the loader picks the library: ours with
    # LD_LIBRARY_PATH, else Debian's.
    cc -O2 -Wall -I"$ROOT/include" -o "$TMP/$prog" "benches/c/$prog.c" -L"$TMP/lib" -lfcgi ||
        die "cannot compile benches/c/$prog.c"
done

free_port
APP_PORT=$PORT
start_nginx "$APP_PORT"

# start_app PROG ours|classic: spawn-fcgi hands the program its listening socket on fd 0.
start_app() {
    local prog=$1 lib=$2 want i
    if [ "$lib" = ours ]; then
        start "$prog-$lib" "$APP_PORT" env LD_LIBRARY_PATH="$TMP/lib" \
            spawn-fcgi -n -a 127.0.0.1 -p "$APP_PORT" -- "$TMP/$prog"
        want=$TMP/lib/libfcgi.so.0
    else
        start "$prog-$lib" "$APP_PORT" env -u LD_LIBRARY_PATH \
            spawn-fcgi -n -a 127.0.0.1 -p "$APP_PORT" -- "$TMP/$prog"
        want=$(readlink -f "$CLASSIC")
    fi
    APP_PID=$LAST_PID
    for i in $(seq 50); do
        grep -q "$want" "/proc/$APP_PID/maps" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$prog ($lib) did not load $want: $(grep libfcgi "/proc/$APP_PID/maps" 2>/dev/null)"
}

# check PROG: the answer through nginx, once per library, before any timing.
check() {
    local prog=$1 lib got
    for lib in classic ours; do
        start_app "$prog" "$lib"
        if [ "$prog" = hello ]; then
            got=$(curl -sS --max-time 10 "$NGINX_URL/close/x") || die "$prog ($lib): curl failed"
            [ "${got%$'\n'}" = "Hello, World!" ] || die "$prog ($lib) answered '$got'"
        else
            got=$(curl -sS --max-time 10 "$NGINX_URL/close/x" | wc -c) || die "$prog ($lib): curl failed"
            [ "$got" = 1048576 ] || die "$prog ($lib) answered $got bytes"
        fi
        forget "$APP_PID"
    done
}

# measure PROG LIB PATH MODE CONC: sets RPS and ERR.
measure() {
    local prog=$1 lib=$2 path=$3 mode=$4 conc=$5
    start_app "$prog" "$lib"
    warm "127.0.0.1:$APP_PORT"
    say "$prog $lib $path $mode c=$conc ${SECS}s"
    if [ "$path" = direct ]; then
        if [ "$mode" = ka ]; then
            bench_run "127.0.0.1:$APP_PORT" "$conc" "$SECS" k
        else
            bench_run "127.0.0.1:$APP_PORT" "$conc" "$SECS" K
        fi
    else
        wrk_run "$NGINX_URL/$mode/x" "$conc" "$SECS"
    fi
    forget "$APP_PID"
}

ROWS=()
for prog in $PROGRAMS; do
    check "$prog"
    for spec in direct\|close\|1 direct\|close\|32 direct\|ka\|1 direct\|ka\|32 \
        nginx\|close\|1 nginx\|close\|32 nginx\|ka\|32; do
        IFS='|' read -r path mode conc <<<"$spec"
        [[ "$prog|$spec" =~ ${ONLY:-.} ]] || continue
        measure "$prog" classic "$path" "$mode" "$conc"
        c_rps=$RPS c_err=$ERR
        measure "$prog" ours "$path" "$mode" "$conc"
        o_rps=$RPS o_err=$ERR
        if [ "$mode" = ka ]; then how=keep-alive; else how="new conn."; fi
        ROWS+=("| $prog | $path | $how | $conc | $c_rps | $o_rps | $(ratio "$o_rps" "$c_rps") | $c_err | $o_err |")
    done
done

echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'): \`benches/libfcgi.sh $SECS\` ($SECS s per case, one"
echo "measurement each, a fresh app process per case). requests/s; errors: requests that failed or"
echo "stayed unanswered longer than ${TIMEOUT} s. nginx: $NGINX_WORKERS worker(s), keep-alive rows with"
echo "\`keepalive $NGINX_KEEPALIVE\` per worker; wrk: 1 thread, --timeout ${TIMEOUT}s."
echo
echo "| program | path | FastCGI conn. | conc | classic | ours | ours/classic | classic errors | ours errors |"
echo "|---|---|---|---:|---:|---:|---:|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
machine
echo "- classic: $(readlink -f "$CLASSIC") ($(dpkg-query -W -f='${Version}' libfcgi0ldbl 2>/dev/null || echo '?')), $(cc --version | head -1)"
