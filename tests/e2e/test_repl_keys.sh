#!/usr/bin/env bash
# test_repl_keys.sh — keys in the REPL through a real terminal (tmux): Ctrl-C stops
# `while true do end` on every rank and the next line works; Ctrl-C at the prompt drops
# the half-typed line; Ctrl-C on the continuation prompt drops the unfinished chunk;
# Tab completes torch.ze to torch.zeros and :sh to :show; :restart replay brings back
# what was defined; a long chunk streams its lines; end of input leaves with status 0.
. "$(dirname "$0")/tmux_lib.sh"

start_ddplab -n 4
wait_for "[all]>"

# Ctrl-C while a chunk runs: every rank is interrupted, the REPL and the states survive.
send "kept = 7"
send "while true do end"
# Ctrl-C until it lands: one pressed before the chunk reached the ranks would find
# nothing to stop (a spare one at the prompt only redraws it).
for _ in $(seq 20); do
    tmux -L "$SOCK" send-keys C-c
    for _ in $(seq 10); do
        [ "$(count "[0-3] interrupted")" = 1 ] && break 2
        sleep 0.1
    done
done
wait_for "[0-3] interrupted"
send "=kept + 1"
wait_for "[0-3] 8"

# Ctrl-C at the prompt: the half-typed line is dropped, the next one runs.
keys "this is not lua"
tmux -L "$SOCK" send-keys C-c
send "=40 + 2"
wait_for "[0-3] 42"
[ "$(count "syntax error")" = 0 ] || fail "the dropped line reached the parser"

# Ctrl-C on the continuation prompt drops the whole unfinished chunk.
send "for i = 1, 3 do"
wait_for "...>"
tmux -L "$SOCK" send-keys C-c
send "=kept * 2"
wait_for "[0-3] 14"

# Tab completion from the ranks' globals, and of : commands.
keys "torch.ze"
tmux -L "$SOCK" send-keys Tab
wait_for "torch.zeros"
tmux -L "$SOCK" send-keys C-u
keys ":sh"
tmux -L "$SOCK" send-keys Tab
wait_for ":show"
tmux -L "$SOCK" send-keys C-u
keys ":restart re"
tmux -L "$SOCK" send-keys Tab
wait_for ":restart replay"
tmux -L "$SOCK" send-keys C-u

# :restart replay: the ranks are new (kept is gone) and the replay defines it again.
send "function triple(x) return 3 * x end"
send ":restart replay"
wait_for "replay done"
send "=triple(kept)"
wait_for "[0-3] 21"

# A chunk that runs for seconds shows its lines as they come, each with its rank: the
# third line is printed after at least two seconds (two waits of at least one second).
send 'for i = 1, 3 do print("tick" .. i) local t = os.time() while os.time() - t < 2 do end end'
wait_for "[3] tick3"
[ "$(count "[0-3] tick3")" = 0 ] || fail "a long chunk's output was held back and grouped"
send '="fin" .. "ished"'
wait_for "[0-3] finished"

ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D did not exit with status 0"
echo "PASS"
