# benches/common.sh: helpers shared by benches/libfcgi.sh and benches/client.sh (sourced, not run).
#
# Loopback only. Every process started here runs in its own process group (setsid) and is
# stopped by PID on exit. Measurements: `fcgi-bench` (the crate's FastCGI load generator,
# target/release/fcgi-bench) directly against a FastCGI app, and `wrk` through an nginx
# with two locations: /close (a FastCGI connection per request, nginx's default) and /ka
# (`upstream { keepalive 8; }` + `fastcgi_keep_conn on`).
#
# Knobs (environment): BENCH_TIMEOUT (seconds before a request counts as failed, default 2),
# BENCH_NGINX_WORKERS (default nproc), BENCH_NGINX_KEEPALIVE (idle connections nginx keeps
# per worker, default 8), KEEP_TMP=1 (keep the temp dir).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMEOUT=${BENCH_TIMEOUT:-2}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-$(nproc)}
NGINX_KEEPALIVE=${BENCH_NGINX_KEEPALIVE:-8}
BENCH=$ROOT/target/release/fcgi-bench

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

TMP=$(mktemp -d /tmp/fcgi-benches.XXXXXX)
chmod 755 "$TMP" # nginx and php-fpm workers may run as nobody/www-data when we are root
PIDS=()

# stop PID: the process group PID, TERM then KILL after 5 s; waits for it.
stop() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop "$pid"
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        say "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port: sets PORT to a TCP port of 127.0.0.1 that nothing accepts on, below the
# ephemeral range (32768+) where outgoing connections could hold it.
NEXT_PORT=$((20000 + RANDOM % 10000))
free_port() {
    while (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; do
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_port PORT PID NAME: until PORT accepts, failing if PID dies or 10 s pass.
wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening; its log: $(cat "$TMP/$3.log" 2>/dev/null)"
        sleep 0.1
    done
    die "$3 does not accept on port $1 after 10 s"
}

# start NAME PORT CMD...: runs CMD in its own session (process group), output in $TMP/NAME.log,
# waits until PORT accepts; sets LAST_PID and adds it to PIDS.
start() {
    local name=$1 port=$2
    shift 2
    setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port" "$LAST_PID" "$name"
}

# forget PID: stops PID and removes it from PIDS.
forget() {
    local pid=$1 p keep=()
    stop "$pid"
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# start_nginx APP_PORT [EXTRA_LOCATION_LINES]: one nginx for the whole run, in front of
# 127.0.0.1:APP_PORT: /close/ without FastCGI keep-alive, /ka/ with it. Every request is
# logged ($status $request_time): a 499 that waited longer than TIMEOUT is a request the app
# never answered (wrk does not count those at all). Sets NGINX_URL.
start_nginx() {
    local app_port=$1 extra=${2:-}
    free_port
    local port=$PORT
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx.conf" <<EOF
daemon off;
worker_processes $NGINX_WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    log_format bench '\$uri \$status \$request_time';
    access_log $TMP/access.log bench buffer=256k flush=100ms;
    client_body_temp_path $TMP/nginx/client_body;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    proxy_temp_path $TMP/nginx/proxy;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    fastcgi_buffer_size 64k;
    fastcgi_buffers 64 64k;
    fastcgi_busy_buffers_size 128k;
    fastcgi_max_temp_file_size 0;
    upstream app_ka { server 127.0.0.1:$app_port; keepalive $NGINX_KEEPALIVE; }
    server {
        listen 127.0.0.1:$port;
        location /close/ {
            include /etc/nginx/fastcgi_params;
            $extra
            fastcgi_pass 127.0.0.1:$app_port;
        }
        location /ka/ {
            include /etc/nginx/fastcgi_params;
            $extra
            fastcgi_keep_conn on;
            fastcgi_pass app_ka;
        }
    }
}
EOF
    : >"$TMP/access.log"
    nginx -t -q -c "$TMP/nginx.conf" -p "$TMP/nginx" 2>"$TMP/nginx-t.log" ||
        die "nginx rejects its config: $(cat "$TMP/nginx-t.log")"
    start nginx "$port" nginx -c "$TMP/nginx.conf" -p "$TMP/nginx"
    NGINX_URL=http://127.0.0.1:$port
}

cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

# wrk_run URL CONNS SECS: wrk (1 thread) through nginx. Sets RPS (responses without an HTTP
# error status per second) and ERR (a short text: "0" when nothing went wrong).
wrk_run() {
    local url=$1 conns=$2 secs=$3 out=$TMP/wrk.out line kv k v logged abandoned
    sleep 0.3 # nginx logs what an earlier run left behind
    logged=$(wc -l <"$TMP/access.log")
    timeout $((secs + 30)) wrk -t 1 -c "$conns" -d "${secs}s" --timeout "${TIMEOUT}s" \
        -s "$TMP/report.lua" "$url" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
    line=$(grep '^BENCH ' "$out") || die "wrk printed no summary: $(cat "$out")"
    for kv in ${line#BENCH }; do
        k=${kv%%=*}
        v=${kv#*=}
        printf -v "W_$k" '%s' "$v"
    done
    sleep 0.5 # nginx logs the requests wrk left unanswered once it sees wrk close
    abandoned=$(tail -n +$((logged + 1)) "$TMP/access.log" |
        awk -v t="$TIMEOUT" '$2 == 499 && $3 + 0 >= t + 0' | wc -l)
    RPS=$(awk -v n=$((W_requests - W_status)) -v d="$W_duration_us" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
    ERR=
    [ "$abandoned" = 0 ] || ERR="$ERR, **$abandoned unanswered after > ${TIMEOUT} s**"
    [ "$W_timeout" = 0 ] || ERR="$ERR, $W_timeout answered after > ${TIMEOUT} s"
    [ "$W_status" = 0 ] || ERR="$ERR, $W_status HTTP errors"
    local sock=$((W_connect + W_read + W_write))
    [ "$sock" = 0 ] || ERR="$ERR, $sock socket errors"
    ERR=${ERR#, }
    [ -n "$ERR" ] || ERR=0
}

# bench_run ADDR CONNS SECS k|K [ARGS...]: fcgi-bench directly (k: keep-alive, K: a new
# connection per request), with a request timeout of TIMEOUT. Sets RPS (completed requests
# per second, over the whole run including the wait for the last ones) and ERR.
bench_run() {
    local addr=$1 conns=$2 secs=$3 ka=$4 out=$TMP/bench.out
    shift 4
    # Exit status 1 means some requests failed: reported, not fatal.
    timeout $((secs + TIMEOUT + 30)) "$BENCH" -d "$secs" -c "$conns" "-$ka" -t "$TIMEOUT" "$@" "$addr" \
        >"$out" 2>"$TMP/bench.err" || [ $? = 1 ] || die "fcgi-bench failed: $(cat "$out" "$TMP/bench.err")"
    field() { sed -n "s/^$1: *//p" "$out"; }
    RPS=$(field 'Requests\/s' | awk '{ printf "%.0f", $1 }')
    local failed non2xx
    failed=$(field Failed)
    non2xx=$(field Non-2xx)
    ERR=
    [ "$failed" = 0 ] || ERR="$ERR, **$failed failed** ($(field 'First error'))"
    [ "$non2xx" = 0 ] || ERR="$ERR, $non2xx non-2xx"
    ERR=${ERR#, }
    [ -n "$ERR" ] || ERR=0
}

# warm ADDR [ARGS...]: 200 requests on new connections (never stalls), not reported: pages in
# the app's code before a measurement.
warm() {
    local addr=$1
    shift
    timeout 30 "$BENCH" -n 200 -c 1 -K -t "$TIMEOUT" "$@" "$addr" >/dev/null 2>&1 || true
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print (a + 0 == 0 ? "n/a" : "∞"); else printf "%.2f", a / b }'
}

machine() {
    echo "- nproc: $(nproc); CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1); kernel: $(uname -r)"
    echo "- load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
    # Time others' tasks waited for a CPU (pressure stall information): a program that uses
    # both cores loses more to other tenants than a single-threaded one.
    [ -r /proc/pressure/cpu ] &&
        echo "- CPU pressure (some, avg60 %) before / after: $PSI_BEFORE / $(cpu_pressure)"
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- src capi examples Cargo.toml 2>/dev/null || commit="$commit (+ uncommitted changes)"
    echo "- fcgi: commit $commit, $(rustc -V)"
    echo "- $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-3)"
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_pressure() { sed -n 's/^some .*avg60=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null; }
PSI_BEFORE=$(cpu_pressure)

# ---- The engine measurements of issue 7 (benches/engine.sh and the engine_*.sh it runs) ----

PEERS=$ROOT/benches/peers.py
VERDICTS=()

# verdict CRITERION TARGET MEASURED PASS|FAIL|INFO COMMAND: one row of the report table;
# also appended to $ENGINE_VERDICTS when set (benches/engine.sh collects them there).
verdict() {
    local row="| $1 | $2 | $3 | **$4** | \`$5\` |"
    [ "$4" = INFO ] && row="| $1 | $2 | $3 | $4 | \`$5\` |"
    VERDICTS+=("$row")
    [ -z "${ENGINE_VERDICTS:-}" ] || printf '%s\n' "$row" >>"$ENGINE_VERDICTS"
    say "$1: $3 ($4)"
}

# print_verdicts: the table of every verdict of this script, in markdown, on stdout.
print_verdicts() {
    echo "| criterion | target | measured | verdict | reproduce |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${VERDICTS[@]}"
}

# pass_if AWK_CONDITION: prints PASS if the (numeric) condition holds, else FAIL. The
# words inf and none (peers.py's "never") stand for an infinitely large number there.
pass_if() {
    if awk -v inf=1e308 -v none=1e308 "BEGIN { exit !($1) }" 2>/dev/null; then
        echo PASS
    else
        echo FAIL
    fi
}

# all_pass VERDICT...: PASS when every argument is PASS.
all_pass() {
    local v
    for v in "$@"; do [ "$v" = PASS ] || {
        echo FAIL
        return
    }; done
    echo PASS
}

# build_engine: the release library, examples and fcgi-bench; our library as
# $TMP/lib/libfcgi.so.0; tests/c/engine_app.c and benches/c/hello.c compiled once against
# our headers as $TMP/engine_app and $TMP/hello (the loader picks the library at run time).
# Sets CLASSIC (Debian's libfcgi.so.0).
build_engine() {
    local tool
    for tool in cargo cc spawn-fcgi python3; do
        command -v "$tool" >/dev/null || die "'$tool' is not installed"
    done
    CLASSIC=$(ldconfig -p | awk '/libfcgi\.so\.0 / { print $NF; exit }')
    [ -n "$CLASSIC" ] || die "Debian's libfcgi.so.0 is not installed (apt-get install libfcgi0ldbl libfcgi-dev)"
    say "building (cargo build --release --lib --examples --bin fcgi-bench)"
    (cd "$ROOT" && cargo build --release --quiet --lib --examples --bin fcgi-bench) || die "cargo build failed"
    mkdir -p "$TMP/lib"
    cp "$ROOT/target/release/libfcgi.so" "$TMP/lib/libfcgi.so.0"
    ln -sf libfcgi.so.0 "$TMP/lib/libfcgi.so"
    cc -O2 -Wall -I"$ROOT/include" -o "$TMP/engine_app" "$ROOT/tests/c/engine_app.c" \
        -L"$TMP/lib" -lfcgi -lpthread || die "cannot compile tests/c/engine_app.c"
    cc -O2 -Wall -I"$ROOT/include" -o "$TMP/hello" "$ROOT/benches/c/hello.c" \
        -L"$TMP/lib" -lfcgi || die "cannot compile benches/c/hello.c"
    EXAMPLES=$ROOT/target/release/examples
}

# lib_env ours|classic|rust: the env(1) arguments that make the loader take that library.
lib_env() {
    case $1 in
    ours) echo "LD_LIBRARY_PATH=$TMP/lib" ;;
    *) echo "-u LD_LIBRARY_PATH" ;;
    esac
}

# check_lib PID ours|classic|rust: dies unless PID mapped that libfcgi.so.0 (rust: none).
check_lib() {
    local pid=$1 lib=$2 want i
    case $lib in
    ours) want=$TMP/lib/libfcgi.so.0 ;;
    classic) want=$(readlink -f "$CLASSIC") ;;
    *) return 0 ;;
    esac
    for i in $(seq 50); do
        grep -q "$want" "/proc/$pid/maps" 2>/dev/null && return 0
        sleep 0.05
    done
    die "process $pid ($lib) did not load $want: $(grep libfcgi "/proc/$pid/maps" 2>/dev/null)"
}

# spawn_app NAME PORT COUNT ours|classic|rust CMD...: COUNT processes of CMD sharing one
# listening socket on 127.0.0.1:PORT as fd 0 (spawn-fcgi -F COUNT; each child leads its own
# session), on the given library. Waits for the port, checks each process's library, adds the
# processes to PIDS (stopped by PID on exit). Sets APP_PIDS. Set environment with env(1) in
# CMD; the children's output goes where spawn-fcgi sends it (nowhere).
spawn_app() {
    local name=$1 port=$2 count=$3 lib=$4 pid prog
    shift 4
    prog=$(command -v "$1") || die "$1: not found"
    shift
    set -- "$prog" "$@" # spawn-fcgi does not search PATH
    # shellcheck disable=SC2046
    env $(lib_env "$lib") spawn-fcgi -a 127.0.0.1 -p "$port" -F "$count" -P "$TMP/$name.pids" \
        -- "$@" >"$TMP/$name.log" 2>&1 </dev/null || die "spawn-fcgi failed: $(cat "$TMP/$name.log")"
    mapfile -t APP_PIDS <"$TMP/$name.pids"
    [ "${#APP_PIDS[@]}" = "$count" ] || die "spawn-fcgi started ${#APP_PIDS[@]} of $count processes"
    PIDS+=("${APP_PIDS[@]}")
    wait_port "$port" "${APP_PIDS[0]}" "$name"
    for pid in "${APP_PIDS[@]}"; do
        check_lib "$pid" "$lib"
    done
}

# start_app NAME PORT ours|classic|rust CMD...: one process of CMD listening on fd 0
# (spawn-fcgi -n, so its stdout and stderr go to $TMP/NAME.log); sets APP_PID.
start_app() {
    local name=$1 port=$2 lib=$3 prog
    shift 3
    prog=$(command -v "$1") || die "$1: not found"
    shift
    set -- "$prog" "$@" # spawn-fcgi does not search PATH
    # shellcheck disable=SC2046
    start "$name" "$port" env $(lib_env "$lib") spawn-fcgi -n -a 127.0.0.1 -p "$port" -- "$@"
    APP_PID=$LAST_PID
    check_lib "$APP_PID" "$lib"
}

# stop_all PID...: stops each (see stop) and removes it from PIDS.
stop_all() {
    local p
    for p in "$@"; do forget "$p"; done
}

# peers_run ARGS...: benches/peers.py ARGS (stderr to $TMP/peers.err); the last RESULT line
# becomes R_key variables.
peers_run() {
    local line kv
    line=$(python3 "$PEERS" "$@" 2>"$TMP/peers.err" | grep '^RESULT ' | tail -1) ||
        die "peers.py $* failed: $(tail -5 "$TMP/peers.err")"
    for kv in ${line#RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
}

# peers_hold NAME ARGS...: benches/peers.py hold ARGS in the background (its own session),
# until it has sent everything (its RESULT line, at most 60 s); the RESULT becomes R_key
# variables. Sets HOLD_PID; stop it with forget.
peers_hold() {
    local name=$1 line kv
    shift
    setsid python3 "$PEERS" hold "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
    HOLD_PID=$!
    PIDS+=("$HOLD_PID")
    for _ in $(seq 600); do
        line=$(grep '^RESULT ' "$TMP/$name.out" 2>/dev/null) && break
        kill -0 "$HOLD_PID" 2>/dev/null || die "peers.py hold exited: $(cat "$TMP/$name.err")"
        sleep 0.1
    done
    [ -n "$line" ] || die "peers.py hold $* not ready after 60 s"
    for kv in ${line#RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() {
    # Fields after the ")" that ends the command name: state is 1, utime 12, stime 13.
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# cpu_percent PID SECS: PID's CPU use over the next SECS seconds, in % of one core.
cpu_percent() {
    local a b hz
    hz=$(getconf CLK_TCK)
    a=$(cpu_ticks "$1")
    sleep "$2"
    b=$(cpu_ticks "$1")
    awk -v d=$((b - a)) -v hz="$hz" -v s="$2" 'BEGIN { printf "%.1f", 100 * d / hz / s }'
}

# status_field PID FIELD: a field of /proc/PID/status (first word: kB for VmRSS).
status_field() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
