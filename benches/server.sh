#!/usr/bin/env bash
# Benchmark: the Rust `fcgi` server against the classic C libfcgi, both behind the same nginx,
# driven by wrk, in one run. Loopback only; every process it starts is its own process group,
# stopped by PID on exit. With the defaults it takes about 2.5 minutes (6 rows x 2 apps x 2
# rounds x 6 s) plus the build.
#
#   benches/server.sh                      # prints a markdown report on stdout
#   BENCH_DURATION=10 benches/server.sh    # longer measurements
#
# Environment (all optional):
#   BENCH_DURATION       seconds of each measurement (default 4)
#   BENCH_ROUNDS         measurements per app and row, alternating which app goes first;
#                        figures are totals over the rounds (default 2)
#   BENCH_WARMUP         seconds of warm-up before each measurement, not reported (default 1)
#   BENCH_TIMEOUT        wrk --timeout in seconds: a request slower than this counts as a
#                        timeout (default 2)
#   BENCH_WRK_THREADS    wrk threads (default 1: the machine is small, wrk competes for CPU)
#   BENCH_NGINX_WORKERS  nginx worker_processes (default: nproc)
#   BENCH_BODY_BYTES     request body of the echo rows (default 1048576 = 1 MiB)
#   BENCH_OUT            also write the report to this file
#   FCGI_WORKERS         worker threads of the Rust examples (default: the crate's default, 16)
#   BENCH_ONLY           run only the rows whose "title|app|mode|connections" matches this regex
#   KEEP_TMP=1           keep the temporary directory (configs, logs) for inspection
set -euo pipefail

DURATION=${BENCH_DURATION:-4}
ROUNDS=${BENCH_ROUNDS:-2}
WARMUP=${BENCH_WARMUP:-1}
TIMEOUT=${BENCH_TIMEOUT:-2}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-$(nproc)}
BODY_BYTES=${BENCH_BODY_BYTES:-1048576}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# say, die, TMP, PIDS and their cleanup, free_port, wait_port, start: shared with the other
# benchmarks.
. "$ROOT/benches/common.sh"

for tool in nginx wrk cc curl cargo; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed (apt-get install nginx wrk gcc curl libfcgi-dev)"
done
[ -f /usr/include/fcgiapp.h ] || die "libfcgi-dev is not installed (apt-get install libfcgi-dev)"

# --- build ---------------------------------------------------------------------------------
say "building the Rust examples (cargo build --release --examples)"
cargo build --release --examples --quiet
for app in hello echo; do
    [ -x "target/release/examples/$app" ] || die "target/release/examples/$app was not built"
    cc -O2 -Wall -o "$TMP/c-$app" "benches/c/$app.c" -lfcgi || die "cannot compile benches/c/$app.c"
done

# --- apps: one process per (language, app, nginx mode), so a stalled one cannot disturb the rest
declare -A APP_PORT
for lang in rust c; do
    for app in hello echo; do
        for mode in close ka; do
            free_port
            if [ "$lang" = rust ]; then
                bin="$ROOT/target/release/examples/$app"
            else
                bin="$TMP/c-$app"
            fi
            start "$lang-$app-$mode" "$PORT" "$bin" "127.0.0.1:$PORT"
            APP_PORT[$lang-$app-$mode]=$PORT
        done
    done
done

# --- nginx: /close/LANG/APP opens one connection per request, /ka/LANG/APP keeps them -------
free_port
NGINX_PORT=$PORT
mkdir -p "$TMP/nginx"
{
    cat <<EOF
daemon off;
worker_processes $NGINX_WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    # Every request is logged (buffered): response times come from here, because wrk's own
    # latency figures are not trustworthy on this machine (see BENCHMARKS.md). A 499 is a
    # request still in flight when wrk stopped; with a long \$request_time, one the app never
    # answered (wrk does not count those at all).
    log_format bench '\$uri \$status \$request_time';
    access_log $TMP/access.log bench buffer=256k flush=100ms;
    client_body_temp_path $TMP/nginx/client_body;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    proxy_temp_path $TMP/nginx/proxy;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    # Request and response bodies stay in memory: no temp-file I/O in the measurement.
    client_max_body_size $((BODY_BYTES + 1048576));
    client_body_buffer_size $((BODY_BYTES + 65536));
    fastcgi_buffer_size 64k;
    fastcgi_buffers 64 64k;
    fastcgi_busy_buffers_size 128k;
    fastcgi_max_temp_file_size 0;
EOF
    for key in "${!APP_PORT[@]}"; do
        case $key in *-ka)
            printf '    upstream %s { server 127.0.0.1:%s; keepalive 8; }\n' "${key//-/_}" "${APP_PORT[$key]}"
            ;;
        esac
    done
    printf '    server {\n        listen 127.0.0.1:%s;\n' "$NGINX_PORT"
    for key in "${!APP_PORT[@]}"; do
        IFS=- read -r lang app mode <<<"$key"
        printf '        location = /%s/%s/%s {\n            include /etc/nginx/fastcgi_params;\n' "$mode" "$lang" "$app"
        if [ "$mode" = ka ]; then
            printf '            fastcgi_keep_conn on;\n            fastcgi_pass %s;\n' "${key//-/_}"
        else
            printf '            fastcgi_pass 127.0.0.1:%s;\n' "${APP_PORT[$key]}"
        fi
        printf '        }\n'
    done
    printf '    }\n}\n'
} >"$TMP/nginx.conf"
nginx -t -q -c "$TMP/nginx.conf" -p "$TMP/nginx" 2>"$TMP/nginx-t.log" || die "nginx rejects its config: $(cat "$TMP/nginx-t.log")"
start nginx "$NGINX_PORT" nginx -c "$TMP/nginx.conf" -p "$TMP/nginx"
URL="http://127.0.0.1:$NGINX_PORT"

# --- correctness, once per app and mode, before any timing --------------------------------
say "checking responses through nginx"
head -c "$BODY_BYTES" /dev/urandom >"$TMP/body.bin"
for lang in rust c; do
    for mode in close ka; do
        got=$(curl -sS --max-time 10 -D "$TMP/h.txt" "$URL/$mode/$lang/hello") || die "$lang hello ($mode): curl failed"
        [ "$got" = "Hello, World!" ] || die "$lang hello ($mode) answered '$got'"
        grep -qi '^content-type: text/plain' "$TMP/h.txt" || die "$lang hello ($mode): not text/plain: $(cat "$TMP/h.txt")"
        curl -sS --max-time 10 -o "$TMP/echo.out" --data-binary "@$TMP/body.bin" \
            -H 'Content-Type: application/octet-stream' "$URL/$mode/$lang/echo?x=1" ||
            die "$lang echo ($mode): curl failed"
        tail -c "$BODY_BYTES" "$TMP/echo.out" | cmp -s - "$TMP/body.bin" ||
            die "$lang echo ($mode): the body did not come back intact"
        grep -aq '^QUERY_STRING=x=1$' "$TMP/echo.out" || die "$lang echo ($mode): params missing"
        grep -aq "^CONTENT_LENGTH=$BODY_BYTES\$" "$TMP/echo.out" || die "$lang echo ($mode): CONTENT_LENGTH missing"
    done
done
say "responses are correct"

# --- wrk ------------------------------------------------------------------------------------
cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
        e.status, e.timeout))
end
EOF
{
    printf 'wrk.method = "POST"\nwrk.body = string.rep("x", %d)\n' "$BODY_BYTES"
    printf 'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    cat "$TMP/report.lua"
} >"$TMP/post.lua"

# measure LANG APP MODE CONNS: one wrk run (after a warm-up run), added to the totals of LANG.
measure() {
    local lang=$1 app=$2 mode=$3 conns=$4 script=$TMP/report.lua line
    [ "$app" = echo ] && script=$TMP/post.lua
    local args=(-t "$WRK_THREADS" -c "$conns" --timeout "${TIMEOUT}s" -s "$script" "$URL/$mode/$lang/$app")
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) wrk -d "${WARMUP}s" "${args[@]}" >/dev/null 2>&1 || true
    fi
    sleep 0.5 # let nginx log what the warm-up left behind
    local logged
    logged=$(wc -l <"$TMP/access.log")
    say "wrk $lang $app $mode c=$conns ${DURATION}s"
    local out=$TMP/wrk-$lang-$app-$mode-$conns-$round.out
    timeout $((DURATION + 30)) wrk -d "${DURATION}s" "${args[@]}" >"$out" 2>&1 ||
        die "wrk failed: $(cat "$out")"
    line=$(grep '^BENCH ' "$out") || die "wrk printed no summary: $(cat "$out")"
    sleep 0.5 # nginx logs the requests wrk left unanswered once it sees wrk close
    tail -n +$((logged + 1)) "$TMP/access.log" | awk -v u="/$mode/$lang/$app" '$1 == u' >>"$TMP/rows-$lang.log"
    local k v kv
    for kv in ${line#BENCH }; do
        k=${kv%%=*}
        v=${kv#*=}
        printf -v "R_$k" '%s' "$v"
    done
    local ok=$((R_requests - R_status))
    T_ok[$lang]=$((T_ok[$lang] + ok))
    T_bytes[$lang]=$((T_bytes[$lang] + R_bytes))
    T_us[$lang]=$((T_us[$lang] + R_duration_us))
    T_timeout[$lang]=$((T_timeout[$lang] + R_timeout))
    T_status[$lang]=$((T_status[$lang] + R_status))
    T_sock[$lang]=$((T_sock[$lang] + R_connect + R_read + R_write))
    ROUND_RPS[$lang]+=" $(awk -v n="$ok" -v d="$R_duration_us" 'BEGIN { printf "%.3f", n / (d / 1e6) }')"
    ROUND_MBS[$lang]+=" $(awk -v n="$R_bytes" -v d="$R_duration_us" 'BEGIN { printf "%.3f", n / 1e6 / (d / 1e6) }')"
}

# derive LANG: figures from the totals of LANG; sets RPS (responses without an HTTP error
# per second), MBS, ERR, LAT.
derive() {
    local lang=$1
    RPS=$(awk -v n="${T_ok[$lang]}" -v d="${T_us[$lang]}" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
    MBS=$(awk -v n="${T_bytes[$lang]}" -v d="${T_us[$lang]}" 'BEGIN { printf "%.1f", n / 1e6 / (d / 1e6) }')
    # Every connection has a request in flight when wrk stops; those that had been waiting
    # longer than the timeout are the stalled ones.
    local abandoned
    abandoned=$(awk -v t="$TIMEOUT" '$2 == 499 && $3 + 0 >= t + 0' "$TMP/rows-$lang.log" | wc -l)
    ERR=
    [ "$abandoned" = 0 ] || ERR="$ERR, **$abandoned unanswered after > ${TIMEOUT} s when wrk stopped**"
    [ "${T_timeout[$lang]}" = 0 ] || ERR="$ERR, ${T_timeout[$lang]} answered after > ${TIMEOUT} s"
    [ "${T_status[$lang]}" = 0 ] || ERR="$ERR, ${T_status[$lang]} HTTP errors"
    [ "${T_sock[$lang]}" = 0 ] || ERR="$ERR, ${T_sock[$lang]} socket errors"
    ERR=${ERR#, }
    [ -n "$ERR" ] || ERR=0
    # p50 / p99 / max of nginx's $request_time over the answered requests, in ms.
    LAT=$(awk '$2 ~ /^2/ { print $3 }' "$TMP/rows-$lang.log" | sort -n | awk '
        { a[NR] = $1 }
        END {
            if (NR == 0) { print "none answered"; exit }
            p50 = a[int((NR - 1) * 0.50) + 1]; p99 = a[int((NR - 1) * 0.99) + 1]
            printf "%.0f / %.0f / %.0f", p50 * 1000, p99 * 1000, a[NR] * 1000
        }')
}

ratio() {
    awk -v r="$1" -v c="$2" 'BEGIN { if (c + 0 == 0) print (r + 0 == 0 ? "n/a" : "∞ (C: 0)"); else printf "%.2f", r / c }'
}

# spread "R1 R2 ..." "C1 C2 ...": the per-round ratios, lowest to highest.
spread() {
    awk -v r="$1" -v c="$2" 'BEGIN {
        n = split(r, a, " "); split(c, b, " "); lo = ""; hi = ""; inf = 0
        for (i = 1; i <= n; i++) {
            if (b[i] + 0 == 0) { inf = 1; continue }
            x = a[i] / b[i]
            if (lo == "" || x < lo) lo = x
            if (hi == "" || x > hi) hi = x
        }
        s = (lo == "" ? "" : (n == 1 || lo == hi ? sprintf("%.2f", lo) : sprintf("%.2f–%.2f", lo, hi)))
        if (inf) s = s (s == "" ? "" : ", ") "∞"
        print s
    }'
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=()
LATROWS=()
declare -A T_ok T_bytes T_us T_timeout T_status T_sock ROUND_RPS ROUND_MBS
# title|app|mode|connections|metrics
for spec in \
    "hello|hello|close|1|rps" \
    "hello|hello|close|32|rps" \
    "echo 1 MiB POST|echo|close|1|mbs rps" \
    "echo 1 MiB POST|echo|close|32|mbs rps" \
    "hello, nginx keep-alive|hello|ka|32|rps" \
    "echo 1 MiB POST, nginx keep-alive|echo|ka|32|mbs rps"; do
    IFS='|' read -r title app mode conns metrics <<<"$spec"
    [[ $spec =~ ${BENCH_ONLY:-.} ]] || continue
    for lang in rust c; do
        T_ok[$lang]=0 T_bytes[$lang]=0 T_us[$lang]=0 T_timeout[$lang]=0 T_status[$lang]=0 T_sock[$lang]=0
        ROUND_RPS[$lang]= ROUND_MBS[$lang]=
        : >"$TMP/rows-$lang.log"
    done
    for round in $(seq "$ROUNDS"); do
        # Alternate who goes first, so a slow drift of the machine's load favours neither.
        if [ $((round % 2)) = 1 ]; then order="rust c"; else order="c rust"; fi
        for lang in $order; do
            measure "$lang" "$app" "$mode" "$conns"
        done
    done
    derive rust
    r_rps=$RPS r_mbs=$MBS r_err=$ERR r_lat=$LAT
    derive c
    c_rps=$RPS c_mbs=$MBS c_err=$ERR c_lat=$LAT
    for m in $metrics; do
        if [ "$m" = rps ]; then
            ROWS+=("| $title | $conns | requests/s | $r_rps | $c_rps | $(ratio "$r_rps" "$c_rps") | $(spread "${ROUND_RPS[rust]}" "${ROUND_RPS[c]}") | $r_err | $c_err |")
        else
            ROWS+=("| $title | $conns | MB/s (response bytes) | $r_mbs | $c_mbs | $(ratio "$r_mbs" "$c_mbs") | $(spread "${ROUND_MBS[rust]}" "${ROUND_MBS[c]}") | $r_err | $c_err |")
        fi
    done
    LATROWS+=("| $title | $conns | $r_lat | $c_lat |")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src examples Cargo.toml 2>/dev/null || commit="$commit (+ uncommitted changes)"
report() {
    echo "## Run of $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo
    echo "Each figure: ${ROUNDS} wrk run(s) of ${DURATION} s (each after a ${WARMUP} s warm-up), totalled; the"
    echo "apps take turns going first. ${WRK_THREADS} wrk thread(s),"
    echo "wrk --timeout ${TIMEOUT}s, nginx with ${NGINX_WORKERS} worker process(es), Rust pool FCGI_WORKERS=${FCGI_WORKERS:-default (16)}."
    echo "requests/s counts responses without an HTTP error status; MB/s is response bytes"
    echo "received by wrk per second (10^6 bytes; the request bodies travel the same amount the other way)."
    echo "Errors: \"unanswered\" are requests still waiting for the app, for longer than the timeout, when"
    echo "wrk stopped (nginx logs them as 499; wrk does not count them at all); \"answered after > ${TIMEOUT} s\""
    echo "is wrk's timeout count: responses that did arrive, but late (they count in requests/s)."
    echo
    echo "| Test | Connections | Metric | Rust fcgi | C libfcgi | Rust/C | Rust/C per round | Rust errors | C errors |"
    echo "|---|---:|---|---:|---:|---:|---:|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Response time as nginx measured it (\$request_time, answered requests), p50 / p99 / max in ms"
    echo "(nginx logs with millisecond resolution: 0 means under 1 ms):"
    echo
    echo "| Test | Connections | Rust fcgi | C libfcgi |"
    echo "|---|---:|---:|---:|"
    printf '%s\n' "${LATROWS[@]}"
    echo
    echo "Machine and versions:"
    echo
    echo "- nproc: $(nproc); CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1); kernel: $(uname -r)"
    echo "- load average before / after: $LOAD_BEFORE / $LOAD_AFTER"
    echo "- fcgi: commit $commit, $(rustc -V), $(cargo -V)"
    echo "- C: $(cc --version | head -1), libfcgi-dev $(dpkg-query -W -f='${Version}' libfcgi-dev 2>/dev/null || echo '?')"
    echo "- $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-3)"
}
if [ -n "${BENCH_OUT:-}" ]; then
    report | tee "$BENCH_OUT"
else
    report
fi
errs=$(grep -c . "$TMP/nginx-error.log" 2>/dev/null || true)
[ "${errs:-0}" = 0 ] || say "nginx logged $errs warning/error lines (KEEP_TMP=1 to inspect $TMP/nginx-error.log)"
