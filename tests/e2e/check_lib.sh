# check_lib.sh — what the e2e tests without a terminal share (sourced, not run): a
# scratch folder $work removed at exit, a count of failed checks, and the helpers below.
# A test sets nothing before sourcing it but DDPLAB, and ends with `finish NAME`.
set -u
: "${DDPLAB:?set DDPLAB to the ddplab binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
# Records a failed check with its explanation; the test goes on to the next check.
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# Checks that file $1 holds the line $2 exactly.
expect_line() {
    grep -qxF -- "$2" "$1" || fail "expected the line '$2' in $(basename "$1"):"$'\n'"$(cat "$1")"
}
# Ends the test: status 1 with the count when a check failed, else "NAME: all checks passed".
finish() {
    if [ "$failures" -gt 0 ]; then
        echo "$failures check(s) failed"
        exit 1
    fi
    echo "$1: all checks passed"
}
