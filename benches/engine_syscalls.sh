#!/usr/bin/env bash
# benches/engine_syscalls.sh: issue 7, "Done when" 6 -- system calls per request.
#
# `strace -f -c -p PID` (every thread of the server) while the crate's fcgi-bench sends N
# requests (default 2000) at concurrency 1, after a warm-up of 500 in the same mode: -k
# (one kept-alive connection) and -K (a new connection per request). Every system call the
# server process makes meanwhile counts, divided by N. Targets: kept-alive at most 3, new
# connection at most 5, for the Rust server (examples/hello) and a C program
# (benches/c/hello.c) on our libfcgi.so.0; the same C program on the classic libfcgi is the
# reference. Also prints each case's calls per request by name. About 30 s.
#
# strace stops every thread at each system call, which slows the server's threads by tens
# of microseconds a call. Where threads race (a thread coming back to wait while another
# was just woken for the next connection), that widens the race and adds calls the server
# does not make when it is not traced. So, when `perf` can read the kernel's
# raw_syscalls:sys_enter tracepoint (root, or kernel.perf_event_paranoid <= -1), a second
# run of N requests counts the same calls without stopping anything; the verdict then
# uses that count, and the table shows both.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=${N:-2000}
command -v strace >/dev/null || die "'strace' is not installed (apt-get install strace)"
build_engine

# warm_up ADDR MODE: 500 requests in MODE (k or K), not counted.
warm_up() {
    "$BENCH" -n 500 -c 1 "-$2" -t 5 "$1" >/dev/null 2>&1 || die "warm-up failed"
}

# counted_run ADDR MODE COUNTER_PID NAME: N requests in MODE while the counter (strace or
# perf, NAME) runs, then stops the counter; every request must have been answered.
counted_run() {
    local addr=$1 mode=$2 spid=$3 name=$4
    "$BENCH" -n "$N" -c 1 "-$mode" -t 5 "$addr" >"$TMP/bench.out" 2>&1 || die "fcgi-bench failed: $(cat "$TMP/bench.out")"
    kill -INT "$spid"
    wait "$spid" || true
    grep -q '^Failed: *0$' "$TMP/bench.out" || die "requests failed under $name: $(cat "$TMP/bench.out")"
}

# count_calls PID MODE: strace -c over N requests in MODE (k or K); sets PER (calls per
# request) and BY_NAME ("name per-request, ...", the calls of at least 0.05 per request).
count_calls() {
    local pid=$1 mode=$2 addr=127.0.0.1:$PORT out=$TMP/strace.out
    warm_up "$addr" "$mode"
    setsid strace -f -c -p "$pid" -o "$out" 2>"$TMP/strace.err" &
    local spid=$!
    for _ in $(seq 100); do
        grep -q attached "$TMP/strace.err" && break
        sleep 0.05
    done
    sleep 0.2 # strace attaches the threads one by one after its first message
    counted_run "$addr" "$mode" "$spid" strace
    PER=$(awk -v n="$N" '$NF == "total" { printf "%.2f", $4 / n }' "$out")
    BY_NAME=$(awk -v n="$N" '/^-/ { s++; next } s == 1 && $4 / n >= 0.05 { printf "%s%s %.2f", sep, $NF, $4 / n; sep = ", " }' "$out")
    PERF_PER=
    [ -n "$PERF" ] || return 0
    # A warm-up first, as above: strace's stops leave the threads' waits in other states
    # (threads that lost races, sets with stale readiness) for the first requests after.
    warm_up "$addr" "$mode"
    perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$TMP/perf.out" &
    spid=$!
    sleep 0.5 # perf attaches to every thread before it counts
    counted_run "$addr" "$mode" "$spid" perf
    PERF_PER=$(awk -F, -v n="$N" '/raw_syscalls:sys_enter/ { printf "%.2f", $1 / n }' "$TMP/perf.out")
}

# Whether perf can count system calls here (see the top).
PERF=
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null; then
    PERF=perf
fi

# sys_case LABEL LIB REF CMD...: CMD listens on fd 0 (spawn-fcgi -n).
sys_case() {
    local label=$1 lib=$2 ref=$3 v mode how target
    shift 3
    for mode in k K; do
        free_port
        start_app sys "$PORT" "$lib" "$@"
        count_calls "$APP_PID" "$mode"
        if [ "$mode" = k ]; then how="kept-alive request" target=3; else how="new connection per request" target=5; fi
        if [ -n "$PERF_PER" ]; then
            v=$(pass_if "$PERF_PER <= $target")
            got="perf: $PERF_PER; strace: $PER ($BY_NAME)"
        else
            v=$(pass_if "$PER <= $target")
            got="strace: $PER ($BY_NAME)"
        fi
        [ "$ref" = ref ] && v=INFO
        verdict "6. $label: system calls per $how (c=1)" "≤ $target" "$got" "$v" \
            "N=$N benches/engine_syscalls.sh"
        forget "$APP_PID"
    done
}

sys_case "Rust server (examples/hello)" rust - "$EXAMPLES/hello"
sys_case "C program (hello.c) on our libfcgi.so.0" ours - "$TMP/hello"
sys_case "C program (hello.c) on classic libfcgi" classic ref "$TMP/hello"

echo "Engine (issue 7), criterion 6, $(date -u '+%Y-%m-%d %H:%M UTC'): strace -f -c of the server"
echo "process over $N requests at concurrency 1, divided by $N${PERF:+; then perf stat of raw_syscalls:sys_enter over another $N (the verdict)}."
echo
print_verdicts
echo
machine
echo "- $(strace -V | head -1)${PERF:+; $(perf version)}"
