#!/usr/bin/env bash
# benches/engine_cost.sh: issue 7, "Done when" 7 -- what one request costs, beside the
# throughput ratios of benches/engine_ratios.sh: CPU time, system calls and context switches
# of the server process per request, and the CPU time of the load generator (fcgi-bench),
# for our library, the classic libfcgi and benches/c/floor.c (no library at all), in one run.
#
# Four groups, each led by the same program on the classic libfcgi:
#   new connection per request, c=1: benches/c/hello.c on ours; floor.c; floor.c with
#     TCP_DEFER_ACCEPT (which our library sets)
#   kept alive, c=1: hello.c on ours; floor.c; floor.c waiting in epoll_wait (-DWATCH) for
#     the kept connection and the listening socket, as our engine does
#   4 threads in FCGX_Accept_r (tests/c/engine_app.c -t 4), new connection, c=1: on ours
#   new connection per request, c=32: the Rust examples/hello against the classic hello.c
# Each case: a fresh process started by spawn-fcgi, 500 requests of warm-up, then N (default
# 20000) requests counted by `perf stat -p` on the server (task-clock, context-switches,
# raw_syscalls:sys_enter) and `perf stat` around fcgi-bench. ROUNDS (default 2) rounds, the
# order of the cases reversed every other round; the table shows the means over the rounds.
# Requests/s is what fcgi-bench measured while counted (perf's own cost included, the same for
# every case). Needs perf; without access to the raw_syscalls tracepoint (root, or
# kernel.perf_event_paranoid <= -1) the system call column is left out. About 2 minutes.
# ONLY (a regex on the group name: "new connection, c=1", "kept alive", "4 threads", "c=32")
# runs some.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=${N:-20000}
ROUNDS=${ROUNDS:-2}
command -v perf >/dev/null || die "'perf' is not installed (apt-get install linux-perf)"
perf stat -e task-clock -o /dev/null true 2>/dev/null ||
    die "perf cannot count here (kernel.perf_event_paranoid is $(cat /proc/sys/kernel/perf_event_paranoid))"
EVENTS=task-clock,context-switches
SYSCALLS=0
if perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null; then
    EVENTS=$EVENTS,raw_syscalls:sys_enter
    SYSCALLS=1
fi
build_engine
for variant in floor:'' floor_defer:-DDEFER_ACCEPT floor_watch:-DWATCH; do
    # shellcheck disable=SC2086 # the flag is one word or none
    cc -O2 -Wall ${variant#*:} -o "$TMP/${variant%%:*}" "$ROOT/benches/c/floor.c" ||
        die "cannot compile benches/c/floor.c"
done

# perf_value FILE EVENT: the count of EVENT in a `perf stat -x,` output file.
perf_value() {
    awk -F, -v e="$2" '$3 == e { print $1 }' "$1"
}

# cost MODE CONC LIB CMD...: one measurement; sets C_RPS, C_SRV (server CPU, ms), C_CS,
# C_SYS (counts over N requests) and C_CLI (fcgi-bench CPU, ms).
cost() {
    local mode=$1 conc=$2 lib=$3 addr spid
    shift 3
    free_port
    start_app cost "$PORT" "$lib" "$@"
    addr=127.0.0.1:$PORT
    "$BENCH" -n 500 -c "$conc" "-$mode" -t 5 "$addr" >/dev/null 2>&1 || die "warm-up failed: $*"
    perf stat -x, -e "$EVENTS" -p "$APP_PID" -o "$TMP/server.perf" &
    spid=$!
    sleep 0.5 # perf attaches to every thread before it counts
    perf stat -x, -e task-clock -o "$TMP/client.perf" -- \
        "$BENCH" -n "$N" -c "$conc" "-$mode" -t 5 "$addr" >"$TMP/bench.out" 2>&1 ||
        die "fcgi-bench failed against $*: $(cat "$TMP/bench.out")"
    kill -INT "$spid"
    wait "$spid" || true
    grep -q '^Failed: *0$' "$TMP/bench.out" || die "requests failed against $*: $(cat "$TMP/bench.out")"
    forget "$APP_PID"
    C_RPS=$(sed -n 's/^Requests\/s: *//p' "$TMP/bench.out" | awk '{ printf "%.0f", $1 }')
    C_SRV=$(perf_value "$TMP/server.perf" task-clock)
    C_CS=$(perf_value "$TMP/server.perf" context-switches)
    C_SYS=$([ "$SYSCALLS" = 0 ] || perf_value "$TMP/server.perf" raw_syscalls:sys_enter)
    C_CLI=$(perf_value "$TMP/client.perf" task-clock)
}

ROWS=()
# group NAME MODE CONC -- LABEL LIB CMD... -- LABEL LIB CMD...: the cases of one group, the
# first being the reference (requests/s of the others are also shown as a ratio to it).
group() {
    local name=$1 mode=$2 conc=$3 round i
    shift 3
    [[ $name =~ ${ONLY:-.} ]] || return 0
    local labels=() libs=() cmds=()
    while [ $# -gt 0 ]; do
        shift # --
        labels+=("$1")
        libs+=("$2")
        shift 2
        local cmd=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do
            cmd+=("$1")
            shift
        done
        cmds+=("${cmd[*]}")
    done
    local n=${#labels[@]} rps=() srv=() cs=() sys=() cli=() order
    for i in $(seq 0 $((n - 1))); do rps[i]=0 srv[i]=0 cs[i]=0 sys[i]=0 cli[i]=0; done
    for round in $(seq "$ROUNDS"); do
        order=$(seq 0 $((n - 1)))
        [ $((round % 2)) = 1 ] || order=$(seq $((n - 1)) -1 0)
        for i in $order; do
            # shellcheck disable=SC2086 # a command line of words without spaces
            cost "$mode" "$conc" "${libs[i]}" ${cmds[i]}
            say "$name, ${labels[i]}, round $round: $C_RPS requests/s, server $C_SRV ms, client $C_CLI ms"
            rps[i]=$((rps[i] + C_RPS))
            srv[i]=$(awk -v a="${srv[i]}" -v b="$C_SRV" 'BEGIN { print a + b }')
            cli[i]=$(awk -v a="${cli[i]}" -v b="$C_CLI" 'BEGIN { print a + b }')
            cs[i]=$((cs[i] + C_CS))
            [ "$SYSCALLS" = 0 ] || sys[i]=$((sys[i] + C_SYS))
        done
    done
    local per=$((N * ROUNDS)) syscol
    for i in $(seq 0 $((n - 1))); do
        syscol=
        [ "$SYSCALLS" = 0 ] || syscol=" $(awk -v s="${sys[i]}" -v p="$per" 'BEGIN { printf "%.2f", s / p }') |"
        ROWS+=("| $name | ${labels[i]} | $((rps[i] / ROUNDS)) ($(ratio "${rps[i]}" "${rps[0]}")) | $(
            awk -v t="${srv[i]}" -v c="${cli[i]}" -v x="${cs[i]}" -v p="$per" \
                'BEGIN { printf "%.1f | %.2f | %.1f", 1000 * t / p, x / p, 1000 * c / p }'
        ) |$syscol")
    done
}

H=$TMP/hello
group "new connection, c=1" K 1 -- "hello.c on classic" classic "$H" -- "hello.c on ours" ours "$H" \
    -- "floor.c" none "$TMP/floor" -- "floor.c, TCP_DEFER_ACCEPT" none "$TMP/floor_defer"
group "kept alive, c=1" k 1 -- "hello.c on classic" classic "$H" -- "hello.c on ours" ours "$H" \
    -- "floor.c" none "$TMP/floor" -- "floor.c, epoll_wait first" none "$TMP/floor_watch"
group "4 threads, new connection, c=1" K 1 -- "engine_app -t 4 on classic" classic "$TMP/engine_app" -t 4 \
    -- "engine_app -t 4 on ours" ours "$TMP/engine_app" -t 4
group "new connection, c=32" K 32 -- "hello.c on classic" classic "$H" \
    -- "Rust examples/hello" rust "$EXAMPLES/hello"

echo "Engine (issue 7), what a request costs, $(date -u '+%Y-%m-%d %H:%M UTC'): $ROUNDS round(s) of"
echo "$N requests per case (fcgi-bench directly), means per request over the rounds; server"
echo "figures from perf stat -p on the server process, client CPU from perf stat around fcgi-bench."
echo "Requests/s in brackets: the ratio to the first case of the group."
echo
if [ "$SYSCALLS" = 1 ]; then
    echo "| group | case | requests/s | server CPU µs | context switches | fcgi-bench CPU µs | system calls |"
    echo "|---|---|---:|---:|---:|---:|---:|"
else
    echo "| group | case | requests/s | server CPU µs | context switches | fcgi-bench CPU µs |"
    echo "|---|---|---:|---:|---:|---:|"
fi
printf '%s\n' "${ROWS[@]}"
echo
machine
echo "- classic: $(readlink -f "$CLASSIC"), $(perf version)"
