#!/usr/bin/env bash
# test_signals.sh — script mode ended from outside: SIGTERM while a chunk runs, and SIGPIPE
# when the reader of ddplab's output goes away (`ddplab script.lua | head`). Either way
# ddplab exits with 128 + the signal and leaves nothing behind: no rank, no process a rank
# started in the background, no private directory.
source "$(dirname "$0")/check_lib.sh"
mkdir -p "$work/run"
export XDG_RUNTIME_DIR="$work/run" # the private directory of each session goes here

# Whether process $1 is gone (or a zombie waiting for init: it runs no more).
gone() { ! [ -e "/proc/$1/stat" ] || grep -q '^[0-9]* (.*) [ZX] ' "/proc/$1/stat" 2>/dev/null; }
# Waits (bounded: about 30 s) until process $1 is gone; false if it never goes.
wait_gone() {
    for _ in $(seq 300); do gone "$1" && return 0; sleep 0.1; done
    return 1
}
# Checks that no session left its private directory behind.
expect_clean_run_dir() {
    [ -z "$(ls -A "$work/run")" ] || fail "$1: left behind in the runtime dir: $(ls -A "$work/run")"
}

# SIGTERM while both ranks loop, each with a process started in the background.
"$DDPLAB" -n 2 -e "os.execute('sleep 77 > /dev/null 2>&1 & echo \$! > $work/bg' .. os.getenv('RANK')) while true do end" \
    >"$work/term.out" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -s "$work/bg0" ] && [ -s "$work/bg1" ] && break; sleep 0.1; done
[ -s "$work/bg0" ] && [ -s "$work/bg1" ] || fail "the ranks did not start their background jobs"
ranks=$(pgrep -P "$pid" | tr '\n' ' ')
kill -TERM "$pid"
if wait_gone "$pid"; then
    wait "$pid"
    rc=$?
    [ "$rc" -eq 143 ] || fail "SIGTERM: exit status $rc, expected 143; output: $(cat "$work/term.out")"
else
    fail "SIGTERM: ddplab still runs after 30 s"
    kill -KILL "$pid"
fi
for p in $ranks $(cat "$work/bg0" "$work/bg1" 2>/dev/null); do
    wait_gone "$p" || { fail "SIGTERM: process $p ($(cat /proc/"$p"/cmdline | tr '\0' ' ')) outlived the session"; kill -KILL "$p"; }
done
expect_clean_run_dir "SIGTERM"

# SIGPIPE: the reader stops after one line while the ranks print on.
timeout 60 "$DDPLAB" -n 2 -e 'for i = 1, 1e8 do print(i) end' 2>"$work/pipe.err" | head -1 >"$work/pipe.out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 141 ] || fail "SIGPIPE: exit status $rc, expected 141; stderr: $(cat "$work/pipe.err")"
grep -q '^\[[01]\] 1$' "$work/pipe.out" || fail "SIGPIPE: the first line is missing: $(cat "$work/pipe.out")"
expect_clean_run_dir "SIGPIPE"

finish test_signals
