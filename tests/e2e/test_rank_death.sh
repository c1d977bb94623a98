#!/usr/bin/env bash
# test_rank_death.sh — a rank that calls os.exit, is killed or crashes is reported with
# its rank and exit status or signal; the other ranks, busy in endless loops, are stopped
# rather than left hanging; ddplab exits with the dead rank's status; no rank process
# outlives ddplab.
. "$(dirname "$0")/check_lib.sh"

# Every rank records its pid (read from /proc/self/stat by the rank process itself).
cat >"$work/prelude.lua" <<LUA
local pid = io.open("/proc/self/stat"):read("n")
local f = io.open("$work/pid." .. os.getenv("RANK"), "w")
f:write(pid, "\n")
f:close()
LUA

# run NAME EXPECTED_STATUS PATTERN: the victim is rank 1; the others spin forever
run_case() {
    local name=$1 expected=$2 pattern=$3 body=$4
    rm -f "$work"/pid.*
    {
        cat "$work/prelude.lua"
        echo 'print("started")'
        echo "if os.getenv('RANK') == '1' then $body end"
        echo 'while true do end'
    } >"$work/$name.lua"
    timeout 60 "$DDPLAB" -n 3 "$work/$name.lua" >"$work/out" 2>"$work/err"
    local rc=$?
    [ $rc -ne 124 ] || { fail "$name: ddplab hung (the other ranks were left waiting)"; return; }
    grep -q "rank 1" "$work/err" || fail "$name: rank 1 is not named: $(cat "$work/err")"
    if grep -q "Sanitizer:DEADLYSIGNAL" "$work/out" "$work/err"; then
        : # a sanitizer build turns the crash into its report and exit status 1
    else
        [ $rc -eq "$expected" ] || fail "$name: exit status $rc, expected $expected: $(cat "$work/err")"
        grep -q -- "$pattern" "$work/err" || fail "$name: '$pattern' missing from: $(cat "$work/err")"
    fi
    grep -qxF "[1] started" "$work/out" || fail "$name: rank 1's output is missing"
    for f in "$work"/pid.*; do
        [ -e "$f" ] || { fail "$name: no pid files"; break; }
        local pid
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null && ! grep -q zombie "/proc/$pid/status" 2>/dev/null &&
            grep -q "ddplab" "/proc/$pid/cmdline" 2>/dev/null; then
            fail "$name: rank process $pid ($(basename "$f")) outlived ddplab"
            kill -9 "$pid" 2>/dev/null
        fi
    done
}

run_case exit3 3 "status 3" 'io.stdout:flush() os.exit(3)'
run_case kill9 137 "SIGKILL" 'os.execute("kill -9 $PPID")'
run_case segv 139 "SIGSEGV" 'os.execute("kill -SEGV $PPID")'

finish "rank death"
