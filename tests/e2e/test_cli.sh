#!/usr/bin/env bash
# test_cli.sh — ddplab's command line without a terminal: --version and --help, a bad
# option (one line, a hint, status 2), -e on every rank with "[rank] " labels (none for a
# world of 1), a script with its arguments in `arg`, a script from stdin, the exit status
# and the message of a failing rank, a syntax error, a missing script or a directory
# caught before any rank runs, -i after -e (the REPL reading plain lines from a pipe).
set -u
: "${DDPLAB:?set DDPLAB to the ddplab binary}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Every run is bounded (a generous minute each, for a loaded machine): a hang fails the
# check that waited instead of stalling the whole suite.
REAL_DDPLAB=$DDPLAB
DDPLAB="$WORK/ddplab"
printf '#!/bin/sh\nexec timeout 60 "%s" "$@"\n' "$REAL_DDPLAB" >"$DDPLAB"
chmod +x "$DDPLAB"
export HOME="$WORK" XDG_STATE_HOME="$WORK/state" NO_COLOR=1
FAILS=0
check() { # check NAME CONDITION... : runs the condition, reports
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; FAILS=$((FAILS + 1)); fi
}
has() { grep -qF -- "$2" <<<"$1"; }

out=$("$DDPLAB" --version)
check "--version is one line" test "$(wc -l <<<"$out")" = 1
check "--version names the build" bash -c "grep -qE '^ddplab [0-9]+\.[0-9]+\.[0-9]+ \(Lua 5\.4.*BLAS OpenBLAS.*CUDA (yes|no), NCCL (yes|no), Gloo yes\)$' <<<'$out'"

out=$("$DDPLAB" --help)
check "--help shows usage" has "$out" "usage: ddplab"
check "--help gives examples" has "$out" "ddplab -n 2"
# Every example in --help works as written: run each "  ddplab ..." line through the
# shell (the REPL one reads its input from /dev/null and ends at once).
nexamples=0
while IFS= read -r line; do
    cmd=${line#"  ddplab"}
    cmd=${cmd%%"   "*} # the description column, if it is on the same line
    nexamples=$((nexamples + 1))
    ex_out=$(eval "\"\$DDPLAB\" $cmd" </dev/null 2>&1)
    ex_status=$?
    check "--help example 'ddplab$cmd' exits 0" test "$ex_status" = 0
    check "--help example 'ddplab$cmd' raises no error" bash -c '! grep -qiE "error|not been initialized" <<<"$1"' _ "$ex_out"
    case $cmd in
    *get_rank*) check "--help example 'ddplab$cmd' prints every rank" test \
        "$(sort <<<"$ex_out")" = "$(printf '[0] 0\n[1] 1\n[2] 2\n[3] 3')" ;;
    esac
done < <(grep -E '^  ddplab ' <<<"$out")
check "--help has examples to run" test "$nexamples" -ge 2

err=$("$DDPLAB" --frobnicate 2>&1 >/dev/null)
status=$?
check "bad option exits 2" test "$status" = 2
check "bad option names it" has "$err" "unknown option '--frobnicate'"
check "bad option hints at --help" has "$err" "try 'ddplab --help'"
"$DDPLAB" -n zero -e 'print(1)' >/dev/null 2>&1
check "bad -n exits 2" test $? = 2

out=$("$DDPLAB" -n 2 -e 'print("hello from " .. os.getenv("RANK"))')
check "-e runs on every rank, labelled" test "$(sort <<<"$out")" = "$(printf '[0] hello from 0\n[1] hello from 1')"
out=$("$DDPLAB" -n 1 -e 'print(6 * 7)')
check "a world of 1 has no labels" test "$out" = 42
out=$("$DDPLAB" -n 1 -e 'io.write("x\n")' -e 'print(6 * 7)')
check "-e runs statements as lua -e does (io.write's value is not printed)" test "$out" = "x
42"

printf 'print(select("#", ...), arg[0] == "%s", arg[1], arg[2])\n' "$WORK/args.lua" >"$WORK/args.lua"
out=$("$DDPLAB" -n 2 "$WORK/args.lua" -n two)
check "script arguments reach arg and ..." test "$(sort <<<"$out")" = "$(printf '[0] 2\ttrue\t-n\ttwo\n[1] 2\ttrue\t-n\ttwo')"

out=$(echo 'print(arg[0], arg[1])' | "$DDPLAB" -n 2 - x)
check "script from stdin" has "$out" "[1] -	x"

cat >"$WORK/fail.lua" <<'LUA'
print("before")
if os.getenv("RANK") == "1" then error("rank one gives up") end
print("after")
LUA
out=$("$DDPLAB" -n 3 "$WORK/fail.lua" 2>"$WORK/err")
status=$?
err=$(cat "$WORK/err")
check "a failing rank's status is ddplab's" test "$status" = 1
check "other ranks finish" has "$out" "[2] after"
check "the error names the failing rank" has "$err" "[1] error: $WORK/fail.lua:2: rank one gives up"
check "ddplab says which rank failed" has "$err" "rank 1 failed"

"$DDPLAB" -n 2 -e 'if os.getenv("RANK") == "1" then os.exit(3) end' >/dev/null 2>"$WORK/err"
status=$?
check "os.exit(3) on rank 1 gives status 3" test "$status" = 3
check "the exit is explained" has "$(cat "$WORK/err")" "rank 1 died: exited with status 3"

err=$("$DDPLAB" -n 2 -e 'x = = 1' 2>&1)
status=$?
check "syntax error in -e exits 1" test "$status" = 1
check "syntax error is shown" has "$err" "unexpected symbol near '='"
err=$("$DDPLAB" -n 2 "$WORK/missing.lua" 2>&1)
check "a missing script is named" has "$err" "cannot open $WORK/missing.lua"
err=$("$DDPLAB" -n 2 "$WORK" 2>&1)
status=$?
check "a directory as the script exits 1" test "$status" = 1
check "a directory as the script is refused once, before any rank runs" \
    test "$err" = "ddplab: $WORK is a directory, not a Lua script"

err=$("$DDPLAB" -n 1 -e 'error("alone")' 2>&1)
status=$?
check "a world of 1 fails like lua" test "$status" = 1
check "a world of 1 shows the error like lua" has "$err" "ddplab: (command line):1: alone"

out=$(echo '=x * 2' | "$DDPLAB" -n 2 -e 'x = 21' -i)
check "-i enters the REPL after -e" has "$out" "[0,1] 42"

[ "$FAILS" = 0 ] || { echo "$FAILS checks failed"; exit 1; }
echo PASS
