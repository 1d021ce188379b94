#!/usr/bin/env bash
# benches/engine_fdlimit.sh: issue 7, "Done when" 4 -- out of file descriptors, the server
# backs off instead of spinning, and serves again once descriptors are free.
#
# The server runs with `prlimit --nofile=64:64` (ulimit -n 64); 200 connections each send a
# kept-alive request (benches/peers.py hold --ka 200: what is answered is read, the rest
# waits in the listen backlog) and stay open. Then the server's CPU use over SECS seconds
# (default 3; utime + stime from /proc/PID/stat) and the lines it logged meanwhile. Then the
# 200 connections close, and requests on new connections are tried until one is answered
# (1 s limit each, 20 s in all). Targets: under 5 % CPU while saturated; answered within 5 s
# after the close. Against the Rust server (examples/hello) and a single-threaded C program
# (tests/c/engine_app.c) on our libfcgi.so.0; the classic libfcgi is the reference.
# About 15 s per case.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECS=${SECS:-3}
build_engine

# fd_case LABEL LIB REF CMD...: CMD listens on fd 0 (spawn-fcgi -n), with 64 descriptors.
fd_case() {
    local label=$1 lib=$2 ref=$3 cpu lines0 lines1 v1 v2 held log
    shift 3
    free_port
    start_app fdlimit "$PORT" "$lib" prlimit --nofile=64:64 "$@"
    log=$TMP/fdlimit.log
    [ "$(awk '$1 == "Max" && $3 == "files" { print $4 }' "/proc/$APP_PID/limits")" = 64 ] ||
        die "the descriptor limit of $label is not 64"
    peers_hold fdhold "127.0.0.1:$PORT" --ka 200 -t 5
    held="$R_ka_answered of 200 answered, $R_ka_open open"
    lines0=$(wc -l <"$log")
    cpu=$(cpu_percent "$APP_PID" "$SECS")
    lines1=$(wc -l <"$log")
    local logged=$(((lines1 - lines0) / SECS))
    forget "$HOLD_PID"
    peers_run until "127.0.0.1:$PORT" -t 1 --budget 20
    v1=$(pass_if "$cpu < 5")
    v2=$(pass_if "$R_first_ok_s <= 5")
    local again="answered $R_first_ok_s s after the close"
    [ "$R_first_ok_s" = none ] && again="nothing answered within 20 s after the close"
    if [ "$ref" = ref ]; then v1=INFO v2=INFO; fi
    verdict "4. $label, ulimit -n 64, 200 connections: CPU while saturated" "< 5 %" \
        "$cpu % over $SECS s ($held; $logged log lines/s)" "$v1" "benches/engine_fdlimit.sh"
    verdict "4. $label, ulimit -n 64: serves again once the 200 close" "within 5 s" \
        "$again" "$v2" "benches/engine_fdlimit.sh"
    forget "$APP_PID"
}

fd_case "Rust server (examples/hello)" rust - "$EXAMPLES/hello"
fd_case "C program on our libfcgi.so.0" ours - "$TMP/engine_app"
fd_case "C program on classic libfcgi" classic ref "$TMP/engine_app"

echo "Engine (issue 7), criterion 4, $(date -u '+%Y-%m-%d %H:%M UTC'). CPU in % of one core."
echo
print_verdicts
echo
machine
