#!/usr/bin/env bash
# benches/engine.sh [CRITERION...]: every "Done when" measurement of issue 7 (the connection
# engine), one table. CRITERION is any of balance poll slow fdlimit idle syscalls ratios
# (default: all, in that order); each runs benches/engine_CRITERION.sh, whose own report
# (and knobs) see there. Prints the rows of all of them (criterion, target, measured,
# PASS/FAIL, the command that reproduces the row) as markdown; exits 1 if a row failed or a
# script could not run. About 7 minutes today on 2 shared cores (the failing cases wait
# for their time limits), less once they pass.
# shellcheck disable=SC2154 # R_* variables: set by peers_run and peers_hold (common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ALL="balance poll slow fdlimit idle syscalls ratios"
if [ $# = 0 ]; then
    read -ra args <<<"$ALL"
    set -- "${args[@]}"
fi
export ENGINE_VERDICTS=$TMP/verdicts.md
: >"$ENGINE_VERDICTS"
broken=()
for c in "$@"; do
    [ -x "$ROOT/benches/engine_$c.sh" ] || die "no benches/engine_$c.sh (criteria: $ALL)"
    say "== $c"
    rc=0
    "$ROOT/benches/engine_$c.sh" >"$TMP/$c.md" 2>"$TMP/$c.err" </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        broken+=("$c")
        # A script that dies by a signal says nothing itself: its status says which.
        [ "$rc" -gt 128 ] && echo "killed by signal $((rc - 128))" >>"$TMP/$c.err"
        say "benches/engine_$c.sh failed (exit status $rc): $(tail -3 "$TMP/$c.err")"
    fi
done

echo "Engine (issue 7), $(date -u '+%Y-%m-%d %H:%M UTC'): \`benches/engine.sh $*\`"
echo
echo "| criterion | target | measured | verdict | reproduce |"
echo "|---|---|---|---|---|"
cat "$ENGINE_VERDICTS"
for c in "${broken[@]}"; do
    echo "| $c | - | benches/engine_$c.sh did not finish: $(tail -1 "$TMP/$c.err") | **FAIL** | \`benches/engine_$c.sh\` |"
done
echo
machine
! grep -q '\*\*FAIL\*\*' "$ENGINE_VERDICTS" && [ ${#broken[@]} = 0 ]
