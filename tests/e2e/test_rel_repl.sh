#!/usr/bin/env bash
# test_rel_repl.sh — reliability defects of the REPL (issue 10), through a real terminal:
# nothing a learner types aborts a rank (a _G whose __index raises, print removed, Tab
# on such a _G); a second Ctrl-C ends a loop that catches the first with pcall, keeping
# the state, and a third kills a rank stuck in C (a FIFO that never opens), which is then
# reported, as is a rank killed with kill -9 afterwards; the start of a line typed while
# a chunk runs is kept for the prompt; the checks of each defect are grouped under its
# number.
. "$(dirname "$0")/tmux_lib.sh"

# wait_re (tmux_lib.sh) matches screen lines: tabs reach the screen as spaces.

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
send 'print = function(...) local t = table.pack(...); for i = 1, t.n do t[i] = tostring(t[i]) end; io.write(table.concat(t, "\t"), "\n") end'
sync_ranks
screen | grep -q "SIGABRT\|PANIC\|died" && fail "a rank died"

# 15. the start of a line typed while a chunk runs is kept for the prompt. The terminal
# hands such a part over when its mode changes under it (libedit's raw mode to cooked, as
# a chunk starts) or at Ctrl-D, which is how it is made here, once the chunk is surely
# running (its first line is streamed after 2 s); Enter comes after the chunk.
send 'local function busy(s) local t0 = torch.time(); while torch.time() - t0 < s do end end; busy(2.5); print("slow start"); busy(1); print("slow done")'
wait_for "slow start"
SYNC=$((SYNC + 1))
keys "=\"sy\" .. \"nc$SYNC\""
tmux -L "$SOCK" send-keys C-d
wait_re "^\\[all\\]> =\"sy\" \\.\\. \"nc$SYNC\"\$"
tmux -L "$SOCK" send-keys Enter
wait_for "sync$SYNC"

# 4. a second Ctrl-C escalates: pcall cannot keep it; the state stays
send 'x = 5; while true do pcall(function() while true do end end) end'
sleep 2
tmux -L "$SOCK" send-keys C-c
sleep 1
tmux -L "$SOCK" send-keys C-c
wait_for "[0,1] interrupted"
send '=x + 1'
wait_for "[0,1] 6"
# ... and a rank killed with kill -9 after that is reported
send 'io.open(os.getenv("HOME") .. "/pid" .. os.getenv("RANK"), "w"):write(io.open("/proc/self/stat"):read("n")):close()'
sync_ranks
kill -9 "$(cat "$WORK/pid1")"
wait_for "rank 1 died: killed by signal 9 (SIGKILL)"
send ':restart'
wait_for "restarted"
# a rank stuck in C (open of a FIFO nobody writes) is killed at the third Ctrl-C
mkfifo "$WORK/fifo"
send "f = io.open('$WORK/fifo')"
sleep 2
for _ in 1 2 3; do tmux -L "$SOCK" send-keys C-c; sleep 0.5; done
wait_for "the third Ctrl-C killed it"
send ':restart'
wait_count "restarted: every rank" 2
send '=40 + 2'
wait_for "[0,1] 42"

# 5. Ctrl-C inside a rendezvous that cannot complete (rank 0 alone) is prompt, and the
# next init of every rank works
send ':restart'
wait_count "restarted: every rank" 3
send 'rank = tonumber(os.getenv("RANK"))'
send 'if rank == 0 then dist.init_process_group{backend = "gloo", timeout = 60} end'
sleep 2
t0=$(date +%s%N)
tmux -L "$SOCK" send-keys C-c
wait_for "[0] interrupted"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -lt 5000 ] || fail "Ctrl-C in the rendezvous took $ms ms"
send 'dist.init_process_group{backend = "gloo", timeout = 10}; print("world", dist.get_world_size())'
wait_re '^\[0,1\] world +2$'

# 9. a dead rank, or one that left with destroy_process_group, is not "late": the next
# collective fails at once naming it and the cause
send ':restart'
wait_count "restarted: every rank" 4
send 'dist.init_process_group{backend = "gloo"}; rank = dist.get_rank()'
send 'if rank == 1 then os.exit(3) end'
wait_for "rank 1 died: exited with status 3"
send 't = torch.ones(1); dist.all_reduce(t)'
wait_for "[0] error: stdin:1: all_reduce (collective #1 of this chunk): rank 1 exited with status 3, so this collective can never complete"
send ':restart'
wait_count "restarted: every rank" 5
send 'dist.init_process_group{backend = "gloo"}; rank = dist.get_rank()'
send 'if rank == 0 then dist.destroy_process_group() end'
send 'if rank == 1 then dist.barrier() end'
wait_for "[1] error: stdin:1: barrier (collective #1 of this chunk): rank 0 called dist.destroy_process_group() and left"
screen | grep -q "did not arrive" && fail "a departed or dead rank was reported as late"

ctrl_d_and_wait
[ "$(cat "$WORK/status")" = 0 ] || fail "exit status $(cat "$WORK/status")"

# 8. :restart replay gives every rank the state it had, also after a chunk that failed
# on one rank only (what it did on the others, and before the error, is replayed)
rm -f "$WORK/status"
start_ddplab -n 3
wait_for "[all]>"
send 'r = tonumber(os.getenv("RANK")); v = 1'
send 'if r == 2 then v = 2; error("boom") end; w = 10'
wait_for "[2] error: stdin:1: boom"
send '=w, v'
wait_re '^\[2\] +nil +2$'
send ':restart replay'
wait_for "replay done"
send '=w, v, "after"'
wait_re '^\[0,1\] 10 +1 +after$'
wait_re '^\[2\] +nil +2 +after$'

screen | grep -q "replay stopped" && fail "the replay stopped at the chunk that failed on rank 2"
ctrl_d_and_wait

# 3. the terminal closing (SIGHUP) ends the session even while a rank does not stop at
# the interrupt: after a short grace its ranks are killed, none is left behind
rm -f "$WORK/status" "$WORK"/pid*
start_ddplab -n 2
wait_for "[all]>"
send 'io.open(os.getenv("HOME") .. "/pid" .. os.getenv("RANK"), "w"):write(io.open("/proc/self/stat"):read("n")):close()'
sync_ranks
send 'while true do pcall(function() while true do end end) end'
sleep 1
tmux -L "$SOCK" kill-server
for _ in $(seq 100); do
    alive=0
    for r in 0 1; do kill -0 "$(cat "$WORK/pid$r")" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
[ $alive = 0 ] || { kill -9 "$(cat "$WORK/pid0")" "$(cat "$WORK/pid1")"; fail "a rank outlived the closed terminal by 10 s"; }
echo "test_rel_repl: all checks passed"
