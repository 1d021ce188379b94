#!/usr/bin/env bash
# benches/engine_balance.sh: issue 7, "Done when" 1 -- processes that share one listening
# socket share the load.
#
# 4 single-threaded processes on one socket (spawn-fcgi -F 4: the socket on fd 0 of each),
# then 16 requests of 1 s each (SLEEP_MS=1000), each on a new connection, all connected first
# and sent together (benches/peers.py burst). The program answers its pid, so the answers
# count the requests each process served. Targets: all 16 answered within 4.6 s (4 rounds of
# 1 s), each process serving 3 to 5.
#   - tests/c/engine_app.c on our libfcgi.so.0;
#   - the same compiled program on the classic libfcgi (reference, no verdict);
#   - examples/sleep (the Rust server) started 4 times with FCGI_WORKERS=1.
# Each case runs ROUNDS times (default 2) with fresh processes; the verdict needs every round.
# About 10 s per round and case when the target is met (a 30 s limit per request otherwise).
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-2}
build_engine

# per_process: sets COUNTS ("n/n/n/n", requests each of APP_PIDS served, from R_pids), MIN, MAX.
per_process() {
    local pid n out=()
    MIN=999999 MAX=0
    for pid in "${APP_PIDS[@]}"; do
        n=$(tr ',' '\n' <<<"$R_pids" | awk -F: -v p="$pid" '$1 == p { print $2 }')
        n=${n:-0}
        out+=("$n")
        [ "$n" -ge "$MIN" ] || MIN=$n
        [ "$n" -le "$MAX" ] || MAX=$n
    done
    COUNTS=$(
        IFS=/
        echo "${out[*]}"
    )
}

# one_case LABEL LIB REFERENCE CMD...: ROUNDS rounds of the burst against 4 processes of CMD.
one_case() {
    local label=$1 lib=$2 ref=$3 round measured=() verdicts=() v
    shift 3
    for round in $(seq "$ROUNDS"); do
        free_port
        spawn_app balance "$PORT" 4 "$lib" "$@"
        peers_run burst "127.0.0.1:$PORT" -n 16 -t 30 -p SLEEP_MS=1000
        per_process
        measured+=("$R_wall_s s, $R_answered/16 answered, per process $COUNTS")
        v=$(all_pass "$(pass_if "$R_answered == 16 && $R_wall_s <= 4.6")" \
            "$(pass_if "$MIN >= 3 && $MAX <= 5")")
        verdicts+=("$v")
        say "$label round $round: wall $R_wall_s s, pids $R_pids"
        stop_all "${APP_PIDS[@]}"
    done
    local joined
    joined=$(printf '%s; ' "${measured[@]}")
    if [ "$ref" = ref ]; then v=INFO; else v=$(all_pass "${verdicts[@]}"); fi
    verdict "1. $label: 4 processes, 16 × 1 s requests" "≤ 4.6 s, 3 to 5 each" "${joined%; }" \
        "$v" "ROUNDS=$ROUNDS benches/engine_balance.sh"
}

one_case "C program on our libfcgi.so.0" ours - "$TMP/engine_app"
one_case "C program on classic libfcgi" classic ref "$TMP/engine_app"
one_case "Rust server, FCGI_WORKERS=1" rust - env FCGI_WORKERS=1 "$EXAMPLES/sleep"

echo "Engine (issue 7), criterion 1, $(date -u '+%Y-%m-%d %H:%M UTC'); per process: requests"
echo "each process served (in pid order)."
echo
print_verdicts
echo
machine
