#!/usr/bin/env bash
# test_scale.sh — many CPU ranks on one machine (issue 10): 16 ranks (DDP_LONG=1: 32 and
# 64) start, all_reduce, create four subgroups, all_reduce in them, drop them and exit
# with status 0; dropped groups give back their descriptors and threads, and no rank
# process outlives ddplab. Prints the start-up time (launch to the first all_reduce done)
# and descriptors and threads per rank (tests/e2e/scale.lua) for docs/reliability.md.
. "$(dirname "$0")/check_lib.sh"
src=${DDP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
sizes=${DDP_SCALE_SIZES:-16}
[ "${DDP_LONG:-0}" = 1 ] && sizes=${DDP_SCALE_SIZES:-32 64}
for n in $sizes; do
    rm -f "$work/marker"
    start=$(date +%s%N)
    NO_COLOR=1 timeout 600 "$DDPLAB" -n "$n" --collective-timeout 120 \
        "$src/tests/e2e/scale.lua" "$work/marker" >"$work/out" 2>&1 &
    pid=$!
    wait $pid
    rc=$?
    end=$(date +%s%N)
    cat "$work/out"
    [ $rc = 0 ] || fail "$n ranks: exit status $rc"
    grep -qE "^\[0\] +scale $n ranks" "$work/out" || fail "$n ranks: no figures from rank 0"
    grep -q "SCALE FAIL" "$work/out" && fail "$n ranks: a rank kept what its groups held"
    if [ -s "$work/marker" ]; then
        echo "scale $n ranks: start-up (launch to the first all_reduce done) $((($(cat "$work/marker") - start) / 1000000)) ms, whole run $(((end - start) / 1000000)) ms"
    fi
    # the scratch folder is in every process's command line: only this run's match
    left=$(pgrep -f -- "$work/marker")
    [ -z "$left" ] || { kill -9 $left; fail "$n ranks: processes $left outlived ddplab"; }
done
finish "scale"
