#!/usr/bin/env bash
# benches/engine_poll.sh: issue 7, "Done when" 2 -- a program that poll()s the listening
# socket before each FCGX_Accept_r is not stalled.
#
# tests/c/engine_app.c -p (single-threaded; poll(fd 0, POLLIN) before each FCGX_Accept_r, as
# several language bindings do), started by spawn-fcgi; 20 requests at once, each on a new
# connection, each answered after 10 ms (SLEEP_MS=10), with a limit of TIMEOUT seconds per
# request (default 5). Target: 20 of 20 answered, on our libfcgi.so.0; the classic libfcgi
# is the reference. ROUNDS (default 2) rounds, fresh processes each; the verdict needs every
# round. About 1 s per round when all are answered, TIMEOUT otherwise.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-2}
LIMIT=${TIMEOUT_PER_REQUEST:-5}
build_engine

one_case() {
    local label=$1 lib=$2 ref=$3 measured=() verdicts=() v joined
    for _ in $(seq "$ROUNDS"); do
        free_port
        start_app poll "$PORT" "$lib" "$TMP/engine_app" -p
        peers_run burst "127.0.0.1:$PORT" -n 20 -t "$LIMIT" -p SLEEP_MS=10
        measured+=("$R_answered/20")
        verdicts+=("$(pass_if "$R_answered == 20")")
        forget "$APP_PID"
    done
    joined=$(printf '%s, ' "${measured[@]}")
    if [ "$ref" = ref ]; then v=INFO; else v=$(all_pass "${verdicts[@]}"); fi
    verdict "2. poll() before FCGX_Accept_r, $label: 20 concurrent requests, answered within $LIMIT s" \
        "20/20" "${joined%, }" "$v" "benches/engine_poll.sh"
}

one_case "our libfcgi.so.0" ours -
one_case "classic libfcgi" classic ref

echo "Engine (issue 7), criterion 2, $(date -u '+%Y-%m-%d %H:%M UTC'); one figure per round."
echo
print_verdicts
echo
machine
