#!/usr/bin/env bash
# benches/engine_idle.sh: issue 7, "Done when" 5 -- an idle kept connection costs no read
# buffer and no thread.
#
# (a) N (default 10000) connections each send one request with FCGI_KEEP_CONN, read the
#     answer and stay open, idle (benches/peers.py idle: from 8 loopback source addresses,
#     256 connecting at a time). VmRSS and Threads of the server process
#     (/proc/PID/status) before (after a warm-up that starts every worker), after the first
#     fill, and after CYCLES (default 20) more close/fill cycles; RSS per connection is the
#     growth divided by the connections the server holds (its new descriptors). A fill gives
#     up after 5 s without progress (connections the server does not take). Targets: all
#     answered, at most 16 KiB of RSS per connection and no thread per connection (at most 2 more threads than before),
#     after the first fill and after the cycles. Against the Rust server (examples/hello)
#     with FCGI_MAX_CONNS=20000; and against the single-threaded C program
#     (tests/c/engine_app.c) on our libfcgi.so.0 (its FCGI_MAX_CONNS is 1024 today), with
#     C_CYCLES (default 2) cycles.
# (b) 500 idle connections, the same way, to the Rust server with FCGI_MPXS_CONNS=1 (each
#     connection may multiplex). Target: at most 2 more threads than before.
# The descriptor limit is raised to its hard limit (root may raise that: see NOFILE). About
# 1 minute.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=${N:-10000}
CYCLES=${CYCLES:-20}
C_CYCLES=${C_CYCLES:-2}
NOFILE=${NOFILE:-$(( N * 2 + 1000 ))}
[ "$(ulimit -Hn)" -ge "$NOFILE" ] || ulimit -Hn "$NOFILE" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $(( N + 100 )) ] || die "ulimit -n is $(ulimit -n): too low for $N connections"
build_engine

# warm_all ADDR: a request through every worker (32 at once, then one after the other).
warm_all() {
    "$BENCH" -n 640 -c 32 -K -t 5 "$1" >/dev/null 2>&1 || true
    warm "$1"
}

# idle_case LABEL LIB N CYCLES MAX_THREADS CMD...: CMD listens on fd 0 (spawn-fcgi -n).
idle_case() {
    local label=$1 lib=$2 n=$3 cycles=$4 ref=$5 v1 v2 first last
    shift 5
    free_port
    start_app idle "$PORT" "$lib" "$@"
    warm_all "127.0.0.1:$PORT"
    peers_run idle "127.0.0.1:$PORT" -n "$n" --cycles "$cycles" --pid "$APP_PID" -t 60
    # Per connection the server holds (its descriptors), which is n when all are answered.
    first=$(awk -v a="$R_rss_first_kb" -v b="$R_rss_before_kb" -v n=$((R_fds_first - R_fds_before)) \
        'BEGIN { printf "%.1f", (n > 0 ? (a - b) / n : 0) }')
    last=$(awk -v a="$R_rss_last_kb" -v b="$R_rss_before_kb" -v n=$((R_fds_last - R_fds_before)) \
        'BEGIN { printf "%.1f", (n > 0 ? (a - b) / n : 0) }')
    v1=$(pass_if "$R_answered_min == $n && $first <= 16 && $last <= 16")
    v2=$(pass_if "$R_answered_min == $n && $R_threads_first <= $R_threads_before + 2 && $R_threads_last <= $R_threads_before + 2")
    if [ "$ref" = ref ]; then v1=INFO v2=INFO; fi
    verdict "5a. $label: $n idle kept-alive connections, RSS each" "≤ 16 KiB, also after $cycles fill/close cycles" \
        "$first KiB after the first fill, $last KiB after $cycles cycles ($R_answered_min/$n answered; RSS $R_rss_before_kb → $R_rss_first_kb → $R_rss_last_kb kB)" \
        "$v1" "N=$N CYCLES=$CYCLES C_CYCLES=$C_CYCLES benches/engine_idle.sh"
    verdict "5a. $label: $n idle kept-alive connections, threads" "no thread each (≤ +2)" \
        "$R_threads_before → $R_threads_first → $R_threads_last ($R_answered_min/$n answered)" \
        "$v2" "N=$N CYCLES=$CYCLES C_CYCLES=$C_CYCLES benches/engine_idle.sh"
    forget "$APP_PID"
}

mpx_case() {
    local v
    free_port
    start_app mpx "$PORT" rust env FCGI_MPXS_CONNS=1 "$EXAMPLES/hello"
    warm_all "127.0.0.1:$PORT"
    peers_run idle "127.0.0.1:$PORT" -n 500 --pid "$APP_PID" -t 30
    v=$(pass_if "$R_answered_min == 500 && $R_threads_first <= $R_threads_before + 2")
    verdict "5b. Rust server (examples/hello), FCGI_MPXS_CONNS=1: 500 idle connections, threads" \
        "no thread added (≤ +2)" "$R_threads_before → $R_threads_first ($R_answered_min/500 answered)" \
        "$v" "benches/engine_idle.sh"
    forget "$APP_PID"
}

idle_case "Rust server (examples/hello)" rust "$N" "$CYCLES" - env FCGI_MAX_CONNS=$((N * 2)) "$EXAMPLES/hello"
idle_case "C program on our libfcgi.so.0" ours "$N" "$C_CYCLES" - env FCGI_MAX_CONNS=$((N * 2)) "$TMP/engine_app"
mpx_case

echo "Engine (issue 7), criterion 5, $(date -u '+%Y-%m-%d %H:%M UTC'). RSS each: (VmRSS after"
echo "the fill - VmRSS before) / connections; threads: before → after the first fill → after the cycles."
echo
print_verdicts
echo
machine
