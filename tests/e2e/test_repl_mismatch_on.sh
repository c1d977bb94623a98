#!/usr/bin/env bash
# test_repl_mismatch_on.sh — the mismatch matrix in chunks sent with :on, through a real
# terminal (tmux), on 4 ranks: under `:on 0,1` a collective of the world fails at once,
# naming the ranks that will not arrive (2,3); the six kinds (one rank skips, different
# op, shape, dtype, root, order) in the subgroup {0,1} are each caught, naming the ranks
# and calls, and a correct collective on the subgroup works after each; under `:on 1,2`
# the subgroup {1,2,3} names rank 3, and under `:on 1-3` a skip in it is caught; back on
# all ranks the world's collective works. The collective timeout is 30 s, so a rank that
# waited for the watchdog ("did not arrive") would fail the test.
. "$(dirname "$0")/tmux_lib.sh"

start_ddplab -n 4 --collective-timeout 30
wait_for "[all]>"
send 'dist.init_process_group{backend = "gloo"}; r = dist.get_rank()'
send 'h = dist.new_group({0, 1}); g = dist.new_group({1, 2, 3}); print("groups made")'
wait_for "[0-3] groups made"

# 1. The world's collective on two ranks: ranks 2,3 do not run the chunk.
send ':on 0,1'
send 'dist.all_reduce(torch.ones(3))'
wait_for "[0,1] error: stdin:1: all_reduce: ranks 2,3 are not running this chunk (it was sent to ranks 0,1 with :on); a collective needs every rank of its group: use :on all"

# 2. The six kinds in the subgroup {0,1}, typed under :on 0,1: kind_in_h NAME LINE MESSAGE
#    types LINE, waits for MESSAGE, then checks that a correct all_reduce on h works.
H="collective #1 of this chunk in group (ranks 0,1)"
kind_in_h() {
    send "$2"
    wait_for "$3"
    send "t = torch.ones(1); dist.all_reduce(t, h); print(\"h after $1: \" .. t:item())"
    wait_for "[0,1] h after $1: 2.0"
}
kind_in_h skip 'if r == 0 then dist.all_reduce(torch.ones(3), h) end' \
    "[0] error: stdin:1: $H: rank 0 called all_reduce(float32[3], op=SUM); rank 1 called nothing and finished the chunk"
kind_in_h op 'if r == 0 then dist.all_reduce(torch.ones(3), h) else dist.broadcast(torch.ones(3), 0, h) end' \
    "error: stdin:1: $H: rank 0 called all_reduce(float32[3], op=SUM); rank 1 called broadcast(float32[3], src=0)"
kind_in_h shape 'dist.all_reduce(torch.ones(r == 0 and 3 or 2), h)' \
    "[0,1] error: stdin:1: $H: rank 0 called all_reduce(float32[3], op=SUM); rank 1 called all_reduce(float32[2], op=SUM)"
kind_in_h dtype 'dist.all_reduce(torch.ones(3, {dtype = r == 0 and torch.float32 or torch.float64}), h)' \
    "[0,1] error: stdin:1: $H: rank 0 called all_reduce(float32[3], op=SUM); rank 1 called all_reduce(float64[3], op=SUM)"
kind_in_h root 'dist.broadcast(torch.ones(2), r, h)' \
    "[0,1] error: stdin:1: $H: rank 0 called broadcast(float32[2], src=0); rank 1 called broadcast(float32[2], src=1)"
kind_in_h order 'if r == 0 then dist.all_reduce(torch.ones(2), h); dist.barrier(h) else dist.barrier(h); dist.all_reduce(torch.ones(2), h) end' \
    "error: stdin:1: $H: rank 0 called all_reduce(float32[2], op=SUM); rank 1 called barrier()"

# 3. The subgroup {1,2,3}: under :on 1,2 its member 3 does not run the chunk; under
#    :on 1-3 a skip in it is caught, and it works after.
send ':on 1,2'
send 'dist.all_reduce(torch.ones(3), g)'
wait_for "[1,2] error: stdin:1: all_reduce: rank 3 is not running this chunk (it was sent to ranks 1,2 with :on)"
send ':on 1-3'
send 'if r ~= 2 then dist.all_reduce(torch.ones(3), g) end'
wait_for "[1,3] error: stdin:1: collective #1 of this chunk in group (ranks 1,2,3): ranks 1,3 called all_reduce(float32[3], op=SUM); rank 2 called nothing and finished the chunk"
send 't = torch.ones(1); dist.all_reduce(t, g); print("g after the skip: " .. t:item())'
wait_for "[1-3] g after the skip: 3.0"

# 4. Back on every rank, the world works.
send ':on all'
send 't = torch.ones(1); dist.all_reduce(t); print("the world after :on: " .. t:item())'
wait_for "[0-3] the world after :on: 4.0"
[ "$(count "did not arrive")" = 0 ] || fail "a rank waited for the watchdog"

ctrl_d_and_wait
[ "$(cat "$WORK/status" 2>/dev/null)" = 0 ] || fail "Ctrl-D did not exit with status 0"
echo "PASS"
