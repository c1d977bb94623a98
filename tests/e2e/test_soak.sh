#!/usr/bin/env bash
# test_soak.sh — a soak test (issue 10): 4 ranks run DDP training steps (1,000; DDP_LONG=1:
# 10,000) in script mode, and tests/e2e/soak.lua checks that after the warm-up the resident
# memory of every rank and of the driver stays within 5%, no descriptor is gained and the
# steps do not slow down. Each rank's figures are printed (docs/reliability.md).
. "$(dirname "$0")/check_lib.sh"
src=${DDP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
steps=1000
[ "${DDP_LONG:-0}" = 1 ] && steps=10000
NO_COLOR=1 timeout 3000 "$DDPLAB" -n 4 "$src/tests/e2e/soak.lua" "$steps" >"$work/out" 2>&1
rc=$?
cat "$work/out"
[ $rc = 0 ] || fail "exit status $rc"
[ "$(grep -c "soak rank [0-3]: $steps steps" "$work/out")" = 4 ] || fail "not every rank reported its figures"
grep -q "SOAK FAIL" "$work/out" && fail "a figure was not flat"
finish "soak"
