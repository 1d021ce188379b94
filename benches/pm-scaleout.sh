#!/usr/bin/env bash
# benches/pm-scaleout.sh: one FastCGI pool on three "hosts" behind nginx and HAProxy.
#
# Three network namespaces (fcgipm-h1..h3), each joined to the root namespace by a veth
# pair on a private /24 (10.231.N.1 here, 10.231.N.2 there). Each host runs fcgi-pm with a
# static pool of 4 children of the C program tests/c/pm_app.c on this crate's libfcgi
# (LD_LIBRARY_PATH), its pool socket on 10.231.N.2:9000 (listen.allowed_clients: the
# root namespace's address only) and its status/ping socket on :9001.
#
# In front, in the root namespace: nginx (upstream with the three servers, keepalive,
# fastcgi_next_upstream) and HAProxy (fcgi-app, the three servers with health checks on
# fcgi-pm's ping). For each of them, wrk runs 24 s of load (32 connections, requests of
# ~5 ms); at 8 s host 2's manager is stopped (SIGTERM: fast stop, children killed), at 16 s
# host 3's link is taken down. The report: wrk's counts and errors, the status codes the
# proxy logged, and each host's `accepted conn` before and after, from its status page.
#
# Needs root (ip netns), nginx, haproxy, wrk, cc, libfcgi-dev's headers, cgi-fcgi. Builds
# target/release/fcgi-pm and libfcgi.so if missing. Cleans up namespaces and processes on
# exit. Knobs: DURATION (default 24), CONNS (default 32), KEEP_TMP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-24}
CONNS=${CONNS:-32}
NS=fcgipm-h
NET=10.231

say() { printf 'pm-scaleout: %s\n' "$*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
for t in ip nginx haproxy wrk cc cgi-fcgi; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t is not installed"
done
[ -f /usr/include/fcgiapp.h ] || die "libfcgi-dev is not installed"

TMP=$(mktemp -d /tmp/fcgi-pm-scaleout.XXXXXX)
chmod 755 "$TMP"
PIDS=()

cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    for i in 1 2 3; do
        ip netns pids "$NS$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$NS$i" 2>/dev/null || true
        ip link del "fpm-h$i" 2>/dev/null || true
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$ROOT"
if [ ! -x target/release/fcgi-pm ] || [ ! -f target/release/libfcgi.so ]; then
    say "cargo build --release"
    cargo build --release --quiet
fi
PM=$ROOT/target/release/fcgi-pm
mkdir -p "$TMP/lib"
cp target/release/libfcgi.so "$TMP/lib/libfcgi.so.0"
ln -sf libfcgi.so.0 "$TMP/lib/libfcgi.so"
cc -std=gnu11 -O2 -I include -o "$TMP/pm_app" tests/c/pm_app.c -L "$TMP/lib" -lfcgi

# host N: namespace, veth pair, fcgi-pm.
start_host() {
    local i=$1
    cat >"$TMP/h$i.conf" <<EOF
[global]
error_log = $TMP/h$i.log
[app]
listen = $NET.$i.2:9000
listen.allowed_clients = $NET.$i.1
pm = static
pm.max_children = 4
pm.status_path = /status
ping.path = /ping
pm.status_listen = $NET.$i.2:9001
command = $TMP/pm_app
env[LD_LIBRARY_PATH] = $TMP/lib
EOF
    setsid ip netns exec "$NS$i" "$PM" -F -y "$TMP/h$i.conf" &
    PIDS+=($!)
    eval "PM_PID_$i=$!"
}

for i in 1 2 3; do
    ip netns add "$NS$i"
    ip link add "fpm-h$i" type veth peer name eth0 netns "$NS$i"
    ip addr add "$NET.$i.1/24" dev "fpm-h$i"
    ip link set "fpm-h$i" up
    ip netns exec "$NS$i" ip addr add "$NET.$i.2/24" dev eth0
    ip netns exec "$NS$i" ip link set eth0 up
    ip netns exec "$NS$i" ip link set lo up
    start_host "$i"
done

status() { # status N: "accepted conn" of host N, or "down"
    env -i REQUEST_METHOD=GET SCRIPT_NAME=/status SCRIPT_FILENAME=/status QUERY_STRING=json \
        timeout 2 cgi-fcgi -bind -connect "$NET.$1.2:9001" 2>/dev/null |
        sed -n 's/.*"accepted conn":\([0-9]*\).*/\1/p' | grep . || echo down
}

for i in 1 2 3; do
    for _ in $(seq 50); do
        [ "$(status "$i")" != down ] && break
        sleep 0.1
    done
    [ "$(status "$i")" != down ] || die "host $i's fcgi-pm did not start: $(cat "$TMP/h$i.log")"
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(port)
HAPROXY_PORT=$(port)

cat >"$TMP/nginx.conf" <<EOF
user root;
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
    log_format st '\$status \$upstream_addr \$upstream_status';
    access_log $TMP/nginx-access.log st;
    client_body_temp_path $TMP/nb; fastcgi_temp_path $TMP/nf; proxy_temp_path $TMP/np;
    uwsgi_temp_path $TMP/nu; scgi_temp_path $TMP/ns;
    upstream pool {
        server $NET.1.2:9000 max_fails=1 fail_timeout=10s;
        server $NET.2.2:9000 max_fails=1 fail_timeout=10s;
        server $NET.3.2:9000 max_fails=1 fail_timeout=10s;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass pool;
            fastcgi_keep_conn on;
            fastcgi_connect_timeout 1s;
            fastcgi_read_timeout 3s;
            fastcgi_next_upstream error timeout;
            fastcgi_next_upstream_tries 3;
        }
    }
}
EOF

cat >"$TMP/haproxy.cfg" <<EOF
global
    log stderr format raw local0 info
    maxconn 1024
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 10s
    timeout server 3s
    retries 3
    option redispatch 1
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend pool
backend pool
    use-fcgi-app app
    balance roundrobin
    retry-on all-retryable-errors
    option httpchk GET /ping
    http-check expect string pong
    default-server proto fcgi check port 9001 inter 500ms fall 2 rise 2
    server h1 $NET.1.2:9000
    server h2 $NET.2.2:9000
    server h3 $NET.3.2:9000
fcgi-app app
    docroot /srv
    option keep-conn
EOF

setsid nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" &
PIDS+=($!)
setsid haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
sleep 1.5

# run NAME PORT: load through one proxy with the two failures on the way.
run() {
    local name=$1 port=$2 i
    say "=== $name (127.0.0.1:$port), ${DURATION}s, $CONNS connections"
    local before=() after=()
    for i in 1 2 3; do before[$i]=$(status "$i"); done
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s "http://127.0.0.1:$port/app?sleep=5" >"$TMP/wrk-$name.txt" 2>&1 &
    local wrk=$!
    sleep $((DURATION / 3))
    local at1=() at2=()
    for i in 1 2 3; do at1[$i]=$(status "$i"); done
    say "$name: t=$((DURATION / 3))s: stopping host 2's fcgi-pm (SIGTERM, fast stop)"
    eval "kill -TERM \$PM_PID_2"
    sleep $((DURATION / 3))
    for i in 1 2 3; do at2[$i]=$(status "$i"); done
    say "$name: t=$((2 * DURATION / 3))s: taking host 3's link down"
    ip link set fpm-h3 down
    wait "$wrk" || true
    for i in 1 2 3; do after[$i]=$(status "$i"); done
    cat "$TMP/wrk-$name.txt"
    echo "accepted conn per host: start / host 2 stopped / host 3 link down / end"
    for i in 1 2 3; do
        printf 'host %d: %s / %s / %s / %s\n' "$i" "${before[$i]}" "${at1[$i]}" "${at2[$i]}" "${after[$i]}"
    done
    # Back to three hosts for the next run.
    ip link set fpm-h3 up
    sleep 0.5
    printf 'host 3 after its link is back: accepted conn %s\n' "$(status 3)"
    start_host 2
    for _ in $(seq 50); do
        [ "$(status 2)" != down ] && break
        sleep 0.1
    done
    sleep 2
}

run nginx "$NGINX_PORT"
echo "nginx status codes (access log):"
awk '{print $1}' "$TMP/nginx-access.log" | sort | uniq -c
echo "nginx upstream errors logged: $(grep -c 'upstream' "$TMP/nginx-error.log" || true)"
run haproxy "$HAPROXY_PORT"
echo "HAProxy status codes (log):"
awk '$3 == "fe" {print $6}' "$TMP/haproxy.log" | sort | uniq -c || true
grep -Eo 'Server pool/h[0-9] is (DOWN|UP)[^,]*' "$TMP/haproxy.log" || true
