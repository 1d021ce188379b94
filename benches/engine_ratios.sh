#!/usr/bin/env bash
# benches/engine_ratios.sh: issue 7, "Done when" 7 -- throughput, ours against the classic
# libfcgi, in one run.
#
# Each row runs the same compiled C program on our libfcgi.so.0 and on the classic one (or
# the Rust server against the classic C program), a fresh process per measurement, started
# by spawn-fcgi, ROUNDS times (default 2) with the order alternating, SECS seconds each
# (default 3) after a warm-up. Requests/s from the crate's fcgi-bench (directly; -K a new
# connection per request, -k kept alive), or from wrk through nginx (a FastCGI connection per
# request, nginx's default). The ratio is ours/classic over the rounds' totals; the
# per-round ratios are shown beside it. Rows and targets:
#   hello.c, new connection, c=1: >= 1.2      hello.c, kept alive, c=1: >= 1.0
#   engine_app -t 4 (4 threads in FCGX_Accept_r), new connection, c=1 and c=32: >= 1.0
#   examples/hello (Rust) against classic hello.c, new connection, c=32: >= 2.0 (and kept
#     alive, where the classic program stalls: shown, no verdict)
#   big.c (1 MiB answers), new connection and kept alive c=1, and through nginx c=1: >= 0.95
# Reference rows (no verdict) show what a request at c=1 costs outside any library:
# benches/c/floor.c (accept, one read, one write, close or the next read; no libfcgi) against
# the classic hello.c: on new connections without and with TCP_DEFER_ACCEPT (which our
# library sets), kept alive without and with an epoll_wait on the kept connection and the
# listening socket before each read (what our engine waits in).
# Requests that failed are shown (errors). About 2 minutes with the defaults. ONLY (a regex on
# the row label) runs some rows; NGINX=0 leaves out the nginx row.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-2}
SECS=${SECS:-3}
build_engine
cc -O2 -Wall -I"$ROOT/include" -o "$TMP/big" "$ROOT/benches/c/big.c" -L"$TMP/lib" -lfcgi ||
    die "cannot compile benches/c/big.c"
cc -O2 -Wall -o "$TMP/floor" "$ROOT/benches/c/floor.c" || die "cannot compile benches/c/floor.c"
cc -O2 -Wall -DDEFER_ACCEPT -o "$TMP/floor_defer" "$ROOT/benches/c/floor.c" ||
    die "cannot compile benches/c/floor.c"
cc -O2 -Wall -DWATCH -o "$TMP/floor_watch" "$ROOT/benches/c/floor.c" ||
    die "cannot compile benches/c/floor.c"
free_port
APP_PORT=$PORT
if [ "${NGINX:-1}" = 1 ]; then
    for tool in nginx wrk; do command -v "$tool" >/dev/null || die "'$tool' is not installed"; done
    start_nginx "$APP_PORT"
fi

# measure LIB MODE CONC CMD...: requests/s of CMD on LIB; MODE K, k (fcgi-bench) or nginx.
measure() {
    local lib=$1 mode=$2 conc=$3
    shift 3
    start_app ratio "$APP_PORT" "$lib" "$@"
    warm "127.0.0.1:$APP_PORT"
    if [ "$mode" = nginx ]; then
        wrk_run "$NGINX_URL/close/x" "$conc" "$SECS"
    else
        bench_run "127.0.0.1:$APP_PORT" "$conc" "$SECS" "$mode"
    fi
    forget "$APP_PID"
}

# row LABEL TARGET MODE CONC OURS_LIB CMD_OURS -- CMD_CLASSIC: one criterion row.
row() {
    local label=$1 target=$2 mode=$3 conc=$4 lib=$5 round ours=0 classic=0 rounds=()
    local o_bad=0 c_bad=0 o_err='' c_err=''
    shift 5
    [[ $label =~ ${ONLY:-.} ]] || return 0
    local cmd_ours=() cmd_classic=()
    while [ "$1" != -- ]; do
        cmd_ours+=("$1")
        shift
    done
    shift
    cmd_classic=("$@")
    for round in $(seq "$ROUNDS"); do
        local o c oe ce
        if [ $((round % 2)) = 1 ]; then
            measure classic "$mode" "$conc" "${cmd_classic[@]}"
            c=$RPS ce=$ERR
            measure "$lib" "$mode" "$conc" "${cmd_ours[@]}"
            o=$RPS oe=$ERR
        else
            measure "$lib" "$mode" "$conc" "${cmd_ours[@]}"
            o=$RPS oe=$ERR
            measure classic "$mode" "$conc" "${cmd_classic[@]}"
            c=$RPS ce=$ERR
        fi
        say "$label round $round: ours $o, classic $c"
        ours=$((ours + o)) classic=$((classic + c))
        rounds+=("$(ratio "$o" "$c")")
        [ "$oe" = 0 ] || o_bad=$((o_bad + 1)) o_err=$oe
        [ "$ce" = 0 ] || c_bad=$((c_bad + 1)) c_err=$ce
    done
    local r measured
    r=$(ratio "$ours" "$classic")
    measured="$r (rounds $(
        IFS=/
        echo "${rounds[*]}"
    ); $((ours / ROUNDS)) vs $((classic / ROUNDS)) req/s)"
    [ "$o_bad" = 0 ] || measured="$measured; ours: errors in $o_bad of $ROUNDS rounds, the last: $o_err"
    [ "$c_bad" = 0 ] || measured="$measured; classic: errors in $c_bad of $ROUNDS rounds, the last: $c_err"
    local v
    v=$(pass_if "$r >= $target")
    [ "${ROW_INFO:-0}" = 0 ] || v=INFO
    verdict "7. $label" "≥ $target" "$measured" "$v" \
        "ROUNDS=$ROUNDS SECS=$SECS ONLY='$label' benches/engine_ratios.sh"
}

row "hello.c, new connection, c=1" 1.2 K 1 ours "$TMP/hello" -- "$TMP/hello"
ROW_INFO=1 row "reference: floor.c (no library) vs classic hello.c, new connection, c=1" 1.2 K 1 rust "$TMP/floor" -- "$TMP/hello"
ROW_INFO=1 row "reference: floor.c with TCP_DEFER_ACCEPT vs classic hello.c, new connection, c=1" 1.2 K 1 rust "$TMP/floor_defer" -- "$TMP/hello"
row "hello.c, kept alive, c=1" 1.0 k 1 ours "$TMP/hello" -- "$TMP/hello"
ROW_INFO=1 row "reference: floor.c (no library) vs classic hello.c, kept alive, c=1" 1.0 k 1 rust "$TMP/floor" -- "$TMP/hello"
ROW_INFO=1 row "reference: floor.c waiting in epoll_wait vs classic hello.c, kept alive, c=1" 1.0 k 1 rust "$TMP/floor_watch" -- "$TMP/hello"
row "4 threads in FCGX_Accept_r, new connection, c=1" 1.0 K 1 ours "$TMP/engine_app" -t 4 -- "$TMP/engine_app" -t 4
row "4 threads in FCGX_Accept_r, new connection, c=32" 1.0 K 32 ours "$TMP/engine_app" -t 4 -- "$TMP/engine_app" -t 4
row "Rust examples/hello vs classic hello.c, new connection, c=32" 2.0 K 32 rust "$EXAMPLES/hello" -- "$TMP/hello"
# Kept alive, the single-threaded classic program stalls (it waits on one kept connection
# while the others wait in its backlog): a reference, not a verdict.
ROW_INFO=1 row "Rust examples/hello vs classic hello.c, kept alive, c=32" 2.0 k 32 rust "$EXAMPLES/hello" -- "$TMP/hello"
row "big.c (1 MiB), new connection, c=1" 0.95 K 1 ours "$TMP/big" -- "$TMP/big"
row "big.c (1 MiB), kept alive, c=1" 0.95 k 1 ours "$TMP/big" -- "$TMP/big"
[ "${NGINX:-1}" != 1 ] ||
    row "big.c (1 MiB) through nginx, new connection, c=1" 0.95 nginx 1 ours "$TMP/big" -- "$TMP/big"

echo "Engine (issue 7), criterion 7, $(date -u '+%Y-%m-%d %H:%M UTC'): ours/classic requests/s,"
echo "$ROUNDS round(s) of $SECS s per program and row, order alternating; fcgi-bench -t $TIMEOUT directly,"
echo "wrk through nginx ($NGINX_WORKERS workers) for the nginx row."
echo
print_verdicts
echo
machine
echo "- classic: $(readlink -f "$CLASSIC") ($(dpkg-query -W -f='${Version}' libfcgi0ldbl 2>/dev/null || echo '?')), $(cc --version | head -1)"
