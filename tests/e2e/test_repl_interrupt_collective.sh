#!/usr/bin/env bash
# test_repl_interrupt_collective.sh — Ctrl-C while ranks wait inside a collective: with
# rank 0 busy in a loop and ranks 1-3 waiting for it in all_reduce, Ctrl-C interrupts every
# rank at once (well before the collective timeout), each rank's state survives, and the
# process group works again on the next line, with the right sum. The same for a blocking
# recv inside Gloo whose sender posted an isend but never waits on it.
. "$(dirname "$0")/tmux_lib.sh"

# A long watchdog: only Ctrl-C can end the wait within this test's deadlines.
start_ddplab -n 4 --collective-timeout 120
wait_for "[all]>"
send 'dist.init_process_group{backend="gloo"}; kept = 41'
send 'rank = dist.get_rank(); t = torch.ones(2)'
send 'if rank == 0 then while true do end end; dist.all_reduce(t)'
# Presses Ctrl-C (again, while the keypress may land before the chunk runs) until the
# screen says $1.
interrupt_until() {
    sleep 1 # the chunk is running; nothing to poll for but silence
    for _ in $(seq 20); do
        tmux -L "$SOCK" send-keys C-c
        for _ in $(seq 10); do
            [ "$(count "$1")" -ge 1 ] && return 0
            sleep 0.1
        done
    done
    wait_for "$1"
}
interrupt_until "[0-3] interrupted"
send '=kept + 1'
wait_for "[0-3] 42"
send 't = torch.full({2}, rank + 1.0); dist.all_reduce(t)'
send '=t'
wait_for "[0-3] tensor([10., 10.])"
# rank 1 waits inside Gloo for a message rank 0 queued (isend) but never sends
send 'if rank == 0 then w = dist.isend(t, 1); while true do end elseif rank == 1 then dist.recv(t, 0) end'
interrupt_until "[0,1] interrupted"
send 't = torch.full({2}, rank + 1.0); dist.all_reduce(t)'
send '=t'
wait_count "[0-3] tensor([10., 10.])" 2
send 'dist.destroy_process_group(); dist.init_process_group{backend="gloo"}'
send '=tostring(dist.is_initialized()) .. "/" .. dist.get_world_size()'
wait_for "[0-3] true/4"
ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "ddplab did not exit with status 0"
echo "test_repl_interrupt_collective: passed"
