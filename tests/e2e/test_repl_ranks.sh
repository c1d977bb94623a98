#!/usr/bin/env bash
# test_repl_ranks.sh — what the REPL says about its ranks, through a real terminal (tmux):
# a rank killed inside a chunk is reported with its signal and its last output lines, the
# others with "stopped because rank 1 ..."; a rank that dies while the REPL waits at the
# prompt is reported without a key being pressed, and the half-typed line survives; a
# chunk that goes quiet for 5 s gets one status line (who waits in which collective, who
# runs, init_process_group's rendezvous included) and :ranks shows the last collective; a collective in a chunk sent with :on to
# some ranks fails at once, naming the ranks that do not run it.
. "$(dirname "$0")/tmux_lib.sh"

# A long collective timeout: the quiet report, not the watchdog, is what is checked here.
start_ddplab -n 3 --collective-timeout 120
wait_for "[all]>"

# 1. Killed inside a chunk that printed nothing: the signal and the rank's last output
#    (from the chunk before), and the reason the other ranks stopped.
send 'print("step " .. os.getenv("RANK"))'
wait_for "[2] step 2"
send 'if os.getenv("RANK") == "1" then os.execute("kill -9 $PPID") end; while true do end'
wait_for "[1]   rank 1 died: killed by signal 9 (SIGKILL); its last output:"
wait_for "step 1"
wait_for "[0,2] stopped because rank 1 was killed by signal 9 (SIGKILL)"
[ "$(count "interrupted")" = 0 ] || fail "ranks stopped by a death were shown as interrupted"
send ':restart'
wait_count "restarted: every rank starts fresh" 1

# 2. A rank that dies while the REPL waits at the prompt is reported without Enter; the
#    line being typed is kept.
send 'if os.getenv("RANK") == "2" then os.execute("(sleep 1; kill -9 $PPID) &") end'
keys '=40 + 2'
wait_for "[2] rank 2 died: killed by signal 9 (SIGKILL)"
tmux -L "$SOCK" send-keys Enter
wait_for "[0,1] 42"
wait_for "[2]   rank 2 is not running: killed by signal 9 (SIGKILL) earlier"
send ':ranks'
wait_for "dead (was killed by signal 9 (SIGKILL))"
send ':restart'
wait_count "restarted: every rank starts fresh" 2

# 3. A quiet chunk: rank 0 waits for a file while ranks 1 and 2 wait in all_reduce for it.
send 'dist.init_process_group{backend = "gloo"}'
send ":on 1,2"
send 'x = torch.ones(4); dist.all_reduce(x)'
wait_for "is not running this chunk (it was sent to ranks 1,2 with :on)"
send ":on all"
send "while os.getenv('RANK') == '0' and not io.open('$WORK/go') do end; x = torch.ones(4); dist.all_reduce(x); print(x:sum():item())"
wait_for "no output for 5 s: [0] running · [1,2] waiting in all_reduce #"
wait_for "(Ctrl-C interrupts)"
touch "$WORK/go"
wait_for "[2] 12.0" # a chunk that ran for seconds streams its lines per rank
wait_count "] 12.0" 3
[ "$(count "no output for 5 s")" = 1 ] || fail "the quiet report was shown more than once"
send ":ranks"
wait_for "idle (last: all_reduce #"

# 4. The rendezvous of init_process_group is a wait too (defect 9 of docs/reliability.md:
#    the ranks waiting in it were shown as running).
send "dist.destroy_process_group(); while os.getenv('RANK') == '0' and not io.open('$WORK/go2') do end; dist.init_process_group{backend = 'gloo'}"
wait_for "no output for 5 s: [0] running · [1,2] waiting in init_process_group"
touch "$WORK/go2"
send 'x = torch.ones(4); dist.all_reduce(x); print(x:sum():item())'
wait_for "[0-2] 12.0"

ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D did not exit with status 0"
echo "PASS"
