#!/usr/bin/env bash
# benches/client.sh [SECONDS]: the client benchmark of BENCHMARKS.md (section 3).
#
# Client requests/s of the crate's fcgi-bench (built on fcgi::client) against two backends,
# (a) examples/hello (release build) and (b) a real php-fpm8.2 (own config in the temp dir,
# `pm = static`, `pm.max_children = 5` as Debian's default, a hello.php), at concurrency 1
# and 32, keep-alive off
# (-K, a new connection per request) and on (-k). Beside each, in the same run, nginx in front
# of the same backend driven by wrk at the same concurrency, with nginx's keep-alive to the
# backend off (/close) or on (/ka: `upstream { keepalive 8; }` + `fastcgi_keep_conn on`) to
# match. Prints both figures and the ratio fcgi-bench / (nginx+wrk).
#
# The two do not measure the same thing: nginx+wrk is HTTP + nginx + FastCGI, fcgi-bench is
# FastCGI only, so the ratio is expected to be >= 1; it says how much of nginx+wrk's figure is
# the HTTP side, not that the client is faster than nginx.
#
# fcgi-bench runs with its defaults (no -m): against php-fpm with keep-alive its pool must
# learn that the 5 children accept 5 kept connections. A last run measures exactly that
# (issue 9): 32 callers, keep-alive, defaults, against pm.max_children = 5: completed,
# failed, latency percentiles and the learned limit.
#
# Needs: cargo, nginx, wrk, php-fpm8.2. Knobs: see benches/common.sh; ONLY (regex on
# "backend|conc|ka", run only the matching rows). About 1.5 minutes with the default 4 s.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECS=${1:-4}
PHP_FPM=${PHP_FPM:-php-fpm8.2}
cd "$ROOT"
for tool in cargo nginx wrk curl "$PHP_FPM"; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done

say "building (cargo build --release --bin fcgi-bench --example hello)"
cargo build --release --quiet --bin fcgi-bench --example hello

# start_backend hello|php: sets APP_PORT, APP_PID, EXTRA (nginx lines) and ARGS (fcgi-bench).
start_backend() {
    free_port
    APP_PORT=$PORT
    case $1 in
    hello)
        start hello "$APP_PORT" target/release/examples/hello "127.0.0.1:$APP_PORT"
        EXTRA=
        ARGS=()
        ;;
    php)
        local d=$TMP/php
        mkdir -p "$d"
        printf '<?php echo "Hello, World!";\n' >"$d/hello.php"
        cat >"$d/fpm.conf" <<EOF
[global]
pid = $d/fpm.pid
error_log = $d/fpm.log
daemonize = no
[bench]
user = $(id -un)
listen = 127.0.0.1:$APP_PORT
pm = static
pm.max_children = 5
EOF
        start php-fpm "$APP_PORT" "$PHP_FPM" -F -R -y "$d/fpm.conf"
        EXTRA="fastcgi_param SCRIPT_FILENAME $d/hello.php;"
        ARGS=(-s "$d/hello.php")
        ;;
    esac
    APP_PID=$LAST_PID
}

ROWS=()
for backend in hello php; do
    start_backend "$backend"
    start_nginx "$APP_PORT" "$EXTRA"
    NGINX_PID=$LAST_PID
    for mode in close ka; do
        got=$(curl -sS --max-time 10 "$NGINX_URL/$mode/hello.php") || die "$backend ($mode): curl failed"
        [ "$got" = "Hello, World!" ] || die "$backend ($mode) answered '$got'"
    done
    warm "127.0.0.1:$APP_PORT" "${ARGS[@]}"
    for conc in 1 32; do
        for ka in off on; do
            [[ "$backend|$conc|$ka" =~ ${ONLY:-.} ]] || continue
            if [ "$ka" = on ]; then flag=k mode=ka; else flag=K mode=close; fi
            say "$backend c=$conc keep-alive $ka: fcgi-bench ${SECS}s"
            # Defaults: no -m, also against php-fpm with keep-alive (the pool learns).
            bench_run "127.0.0.1:$APP_PORT" "$conc" "$SECS" "$flag" "${ARGS[@]}"
            b_rps=$RPS b_err=$ERR
            say "$backend c=$conc keep-alive $ka: nginx+wrk ${SECS}s"
            wrk_run "$NGINX_URL/$mode/hello.php" "$conc" "$SECS"
            w_rps=$RPS w_err=$ERR
            ROWS+=("| $backend | $conc | $ka | $b_rps | $b_err | $w_rps | $w_err | $(ratio "$b_rps" "$w_rps") |")
        done
    done
    forget "$NGINX_PID"
    if [ "$backend" = php ]; then
        say "php-fpm pm.max_children=5, c=32, keep-alive, fcgi-bench defaults: ${SECS}s"
        timeout $((SECS + TIMEOUT + 30)) "$BENCH" -d "$SECS" -c 32 -k -t "$TIMEOUT" "${ARGS[@]}" \
            "127.0.0.1:$APP_PORT" >"$TMP/defaults.out" 2>"$TMP/defaults.err" || [ $? = 1 ] ||
            die "fcgi-bench failed: $(cat "$TMP/defaults.out" "$TMP/defaults.err")"
        DEFAULTS=$(grep -E '^(Completed|Failed|Non-2xx|Connections|Backend limit|Requests/s|Latency|First error)' "$TMP/defaults.out")
        LEARNED=$(grep -m1 'fcgi client pool' "$TMP/defaults.err" || true)
    fi
    forget "$APP_PID"
done

echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'): \`benches/client.sh $SECS\` ($SECS s per measurement, one"
echo "each, fcgi-bench then nginx+wrk). requests/s; errors: requests that failed or stayed"
echo "unanswered longer than ${TIMEOUT} s. nginx: $NGINX_WORKERS worker(s), keep-alive with"
echo "\`keepalive $NGINX_KEEPALIVE\` per worker; wrk: 1 thread, --timeout ${TIMEOUT}s."
echo
echo "| backend | conc | keep-alive | fcgi-bench | fcgi-bench errors | nginx+wrk | nginx+wrk errors | fcgi-bench / nginx+wrk |"
echo "|---|---:|---|---:|---|---:|---|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "php-fpm (pm.max_children = 5), 32 callers, keep-alive, fcgi-bench defaults (no -m),"
echo "\`fcgi-bench -d $SECS -c 32 -k -t $TIMEOUT -s hello.php\`:"
echo
echo '```text'
echo "$DEFAULTS"
echo "$LEARNED"
echo '```'
echo
machine
echo "- $($PHP_FPM -v | head -1)"
