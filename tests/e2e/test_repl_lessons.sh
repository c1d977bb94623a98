#!/usr/bin/env bash
# test_repl_lessons.sh — the REPL side of a lesson through a real terminal (tmux): open a
# lesson, type, :check (per-rank verdicts), :hint (one more each time), :solution after a
# try, :next; progress kept across a restart (plain ddplab offers to continue); and the
# REPL defects of issue 9: :ranks answers while a chunk waits in a barrier (showing the
# collective), "idle (last: barrier #1)" without a stray space, Ctrl-D while a chunk runs
# ends the session once it does, one progress bar for all ranks.
source "$(dirname "$0")/tmux_lib.sh"

start_ddplab -n 2 --lesson 1
wait_for "Step 1 of 4"
wait_for "[all]>"
send ':check'
wait_for "✗ every rank: there is no global \`rank\` yet"
send ':solution'
wait_for "try the step first"
send ':on 1'
send ':check'
wait_for "(:check looked at every rank; :on 1 only chooses where typed lines run)"
send ':on all'
send 'rank = os.getenv("RANK")'
send ':check'
wait_for '✗ rank 1: `rank` is the string "1": wrap it in tonumber(...)'
send ':hint'
wait_for "hint 1 of 2"
send ':hint'
wait_for "hint 2 of 2"
send ':solution'
wait_for "in ddplab (Lua)"
send 'rank = tonumber(os.getenv("RANK"))'
send ':check'
wait_for "✓ step 1 done — :next goes on"
send ':next'
wait_for "Step 2 of 4"
send ':lessons'
wait_for "1   1/4   Ranks and the world"

# :ranks while every rank waits in a barrier that rank 1 enters 3 s late
send 'dist.init_process_group{backend="gloo"}'
wait_count "[all]>" 14
send 'if dist.get_rank() == 1 then os.execute("sleep 3") end; dist.barrier()'
sleep 0.5
send ':ranks'
wait_for "in barrier #1"

wait_count "[all]>" 15
send ':ranks'
wait_count "idle (last: barrier #1)" 2
screen | grep -F "barrier #1 )" >/dev/null && fail "a stray space after barrier #1"

# one bar for every rank, from progress()
send 'for i in progress(20, "steps") do os.execute("sleep 0.1") end'
wait_for "steps ▕"
wait_for " 20/20"
[ "$(count 'steps ▕')" -le 2 ] || fail "more than one progress bar line"

# Ctrl-D while a chunk runs: said, and the session ends when the chunk does
send 'os.execute("sleep 2")'
sleep 0.5
tmux -L "$SOCK" send-keys C-d
wait_for "(Ctrl-D: the session ends when this chunk does"
for _ in $(seq 100); do [ -s "$WORK/status" ] && break; sleep 0.1; done
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D during a chunk did not end the session"

# a new session offers to continue at lesson 1, step 2
rm -f "$WORK/status"
start_ddplab -n 2
wait_for "You were at lesson 1, step 2"
wait_for "Continue there? [Y/n]"
send ''
wait_for "Step 2 of 4"
send 'world_size = tonumber(os.getenv("WORLD_SIZE")); local_rank = tonumber(os.getenv("LOCAL_RANK"))'
send ':check'
wait_for "✓ step 2 done"
ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D did not exit with status 0"
grep -q '\["2"\] = true' "$WORK/state/ddplab/lessons.lua" || fail "step 2 not saved as done"
echo "test_repl_lessons: all checks passed"
