#!/usr/bin/env bash
# test_rel_repl.sh — reliability defects of the REPL (issue 10), through a real terminal:
# nothing a learner types aborts a rank (a _G whose __index raises, print removed, Tab
# on such a _G); the checks of each defect are grouped under its number.
. "$(dirname "$0")/tmux_lib.sh"

SYNC=0
sync_ranks() {
    SYNC=$((SYNC + 1))
    send "=\"sy\" .. \"nc$SYNC\""
    wait_for "sync$SYNC"
}

start_ddplab -n 2
wait_for "[all]>"

# 1. a global lookup the rank makes to show a value runs protected
send 'setmetatable(_G, {__index = function(_, k) error("no global " .. k) end}); print = nil'
send '=1'
wait_for "error calling 'print'"
wait_for "no global print"
keys 'tor'
tmux -L "$SOCK" send-keys Tab
sleep 0.5
tmux -L "$SOCK" send-keys C-u
send 'setmetatable(_G, nil); print = function() error("print broke") end'
send '=2'
wait_for "print broke"
send 'print = nil'
send '=3'
wait_for "error calling 'print'"
send 'print = rawget(_G, "tostring") and function(...) io.write(table.concat({...}, " "), "\n") end'
sync_ranks
screen | grep -q "SIGABRT\|PANIC\|died" && fail "a rank died"

ctrl_d_and_wait
[ "$(cat "$WORK/status")" = 0 ] || fail "exit status $(cat "$WORK/status")"
echo "test_rel_repl: all checks passed"
