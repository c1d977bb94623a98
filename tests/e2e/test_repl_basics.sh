#!/usr/bin/env bash
# test_repl_basics.sh — the REPL through a real terminal (tmux): values of =expr and bare
# expressions, a function typed over several lines on the "...>" prompt, a syntax error
# and a runtime error each printed once with the REPL going on, identical output grouped
# as [0-3] and differing output per rank, :on changing the prompt and the targets,
# :ranks, :show, an unknown command, Ctrl-D leaving with status 0 and no rank left
# running, the history file and the transcript.
. "$(dirname "$0")/tmux_lib.sh"

# Waits until every earlier line has been answered: the ranks echo a fresh token.
SYNC=0
sync_ranks() {
    SYNC=$((SYNC + 1))
    send "=\"sy\" .. \"nc$SYNC\""
    wait_for "sync$SYNC"
}

start_ddplab -n 4
wait_for "[all]>"

send "=1+1"
wait_for "[0-3] 2"
send "10 * 3"
wait_for "[0-3] 30"

send "function double(x)"
wait_for "  ...>"
send "  return 2 * x"
send "end"
send "=double(21)"
wait_for "[0-3] 42"

send "x = = 1"
sync_ranks
[ "$(count "unexpected symbol near '='")" = 1 ] || fail "syntax error not shown exactly once"

send 'error("broken on purpose")'
wait_for "[0-3] error: stdin:1: broken on purpose"
sync_ranks
[ "$(count "broken on purpose")" = 2 ] || fail "runtime error not shown once (plus the typed line)"
send "=double(5)"
wait_for "[0-3] 10"

send 'print("same everywhere")'
wait_for "[0-3] same everywhere"
send '=os.getenv("RANK") .. "!"'
for r in 0 1 2 3; do wait_for "[$r] $r!"; done

send ":on 1-2"
wait_for "[1,2]>"
send '=os.getenv("RANK") .. "?"'
wait_for "[2] 2?"
sync_ranks
[ "$(count "[0] 0?")" = 0 ] || fail ":on 1-2 still ran on rank 0"
[ "$(count "[3] 3?")" = 0 ] || fail ":on 1-2 still ran on rank 3"
send ":on 9"
wait_for "there is no rank 9"
send ":on all"
sync_ranks
wait_for "[0-3] sync$SYNC"

send ":ranks"
wait_for "rank  host"
screen | grep -E '^3 +[^ ]+ +[0-9]+ +cpu +idle' >/dev/null || fail ":ranks has no idle row for rank 3"
PIDS=$(screen | awk '/^rank  host/ {t=1; next} t && /^[0-9]+ / {print $3} /^\[all\]>/ {t=0}' | sort -u)
[ "$(echo "$PIDS" | wc -w)" = 4 ] || fail ":ranks did not list 4 pids: $PIDS"

send ":show 6 * 7"
wait_for "✓ all equal"
send ':show os.getenv("RANK") == "0"'
wait_for "≠ 2 different values; equal within [0] [1-3]"

send ":frobnicate"
wait_for "unknown command ':frobnicate'"
send ":help"
wait_for "This session is saved in"

ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D did not exit with status 0"
# A rank counts as gone once it has exited (a zombie waiting for its new parent is gone).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }
for pid in $PIDS; do
    for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && fail "rank process $pid still runs after Ctrl-D"
done

HIST="$WORK/state/ddplab/history"
[ -f "$HIST" ] || fail "no history file at $HIST"
grep -qF "=1+1" "$HIST" || fail "history lacks =1+1"
[ "$(stat -c %a "$WORK/state/ddplab")" = 700 ] || fail "state directory is not 0700"
TRANSCRIPT=$(ls "$WORK"/state/ddplab/transcripts/*.lua 2>/dev/null | head -1)
[ -n "$TRANSCRIPT" ] || fail "no transcript written"
grep -qF "return 2 * x" "$TRANSCRIPT" || fail "transcript lacks the function body"
grep -qF -- "-- [1,2]" "$TRANSCRIPT" || fail "transcript does not name the targets"
grep -qF "x = = 1" "$TRANSCRIPT" && fail "a syntax error reached the transcript"
echo "PASS"
