#!/usr/bin/env bash
# test_rel_script.sh — reliability defects of script mode (issue 10), from the shell;
# the checks of each defect are grouped under its number.
. "$(dirname "$0")/check_lib.sh"

# 12. an error raised for a call that ddplab's lua/ library made blames the learner's
# line, and the traceback leaves out the library's frames
cat >"$work/weight.lua" <<'LUA'
local m = nn.Linear(2, 2)
local function forward(x) return nn.functional.linear(x, m.weight, m.bias) end
local y = nn.Sequential(nn.Linear(2, 2))(5)
LUA
timeout 60 "$DDPLAB" -n 1 "$work/weight.lua" >"$work/out" 2>"$work/err"
grep -q "weight.lua:3: bad argument #1 to 'linear' (tensor expected, got number)" "$work/err" ||
    fail "the error does not blame weight.lua:3:"$'\n'"$(cat "$work/err")"
grep -q "lua/nn.lua" "$work/err" && fail "the library's frames are shown:"$'\n'"$(cat "$work/err")"
cat >"$work/step.lua" <<'LUA'
local m = nn.Linear(2, 2)
local opt = optim.SGD(m:parameters(), {lr = 0.1})
opt.step()
print("not reached")
LUA
timeout 60 "$DDPLAB" -n 1 "$work/step.lua" >"$work/out" 2>"$work/err"
grep -q "step.lua:3: step: call it as opt:step(), with a colon" "$work/err" ||
    fail "opt.step() does not blame step.lua:3:"$'\n'"$(cat "$work/err")"
grep -q "lua/optim.lua\|lua/torch/util.lua" "$work/err" &&
    fail "the library's frames are shown:"$'\n'"$(cat "$work/err")"

# 6. a rank that ends with status 0 lets the others finish (torchrun's semantics); the
# exit status is 0 when every rank ends with 0, and a later failure still counts
cat >"$work/exit0.lua" <<'LUA'
local rank = tonumber(os.getenv("RANK"))
if rank == 1 then os.exit(0) end
local t0 = os.clock()
while os.clock() - t0 < 0.5 do end
print("rank " .. rank .. " finished its work")
if rank == 2 and arg[1] == "fail" then error("rank 2 fails late") end
LUA
timeout 60 "$DDPLAB" -n 3 "$work/exit0.lua" >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "exit0.lua exited with $rc, expected 0: $(cat "$work/err")"
expect_line "$work/out" "[0] rank 0 finished its work"
expect_line "$work/out" "[2] rank 2 finished its work"
grep -q "interrupted\|stopped because" "$work/err" && fail "the others were stopped: $(cat "$work/err")"
timeout 60 "$DDPLAB" -n 3 -e 'if os.getenv("RANK") == "1" then os.exit(true) end' \
    -e 'print("second chunk")' >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "os.exit(true) then a chunk: exit status $rc: $(cat "$work/err")"
expect_line "$work/out" "[0] second chunk"
timeout 60 "$DDPLAB" -n 3 "$work/exit0.lua" fail >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] || fail "exit0.lua fail exited with $rc, expected 1: $(cat "$work/err")"
grep -q "rank 2 failed" "$work/err" || fail "'rank 2 failed' is missing: $(cat "$work/err")"

# 3. a driver asked to stop (SIGTERM) stops its ranks, even one stuck in C: here opening
# a FIFO that nobody writes to (torch.load refuses FIFOs; plain io.open blocks)
mkfifo "$work/pipe.npy"
cat >"$work/stuck.lua" <<LUA
io.open("$work/pid" .. os.getenv("RANK"), "w"):write(io.open("/proc/self/stat"):read("n")):close()
print(pcall(torch.load, "$work/pipe.npy"))
io.stdout:flush()
local f = io.open("$work/pipe.npy")
LUA
"$DDPLAB" -n 2 "$work/stuck.lua" >"$work/out" 2>"$work/err" &
driver=$!
for _ in $(seq 100); do grep -q "^\[1\]" "$work/out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
start=$(date +%s%N)
kill -TERM $driver
for _ in $(seq 100); do kill -0 $driver 2>/dev/null || break; sleep 0.1; done
if kill -0 $driver 2>/dev/null; then
    fail "the driver did not stop within 10 s of SIGTERM"
    kill -KILL $driver
fi
wait $driver
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ $rc -eq 143 ] || fail "SIGTERM: exit status $rc, expected 143: $(cat "$work/err")"
[ $elapsed_ms -lt 6000 ] || fail "SIGTERM took $elapsed_ms ms"
for r in 0 1; do
    kill -0 "$(cat "$work/pid$r")" 2>/dev/null && fail "rank $r outlived the session"
done
grep -q "cannot read '$work/pipe.npy' as .npy: it is not a regular file (a FIFO)" "$work/out" ||
    fail "torch.load of a FIFO was not refused:"$'\n'"$(cat "$work/out")"

# 2. ranks that disagree in dtype with the collective check off: on 2 ranks the all_reduce
# is ddplab's own exchange, which names both calls in a Lua error on each rank...
timeout 60 "$DDPLAB" -n 2 --no-collective-check -e 'dist.init_process_group{backend="gloo"}
local t = dist.get_rank() == 0 and torch.ones(4, {dtype = torch.float64}) or torch.ones(4)
dist.all_reduce(t)' >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] || fail "a dtype mismatch without the check on 2 ranks exited with $rc"
cat "$work/out" "$work/err" >"$work/all"
grep -q "\[0\] error: (command line):3: all_reduce: the two ranks called it differently: this rank with float64\[4\], op=SUM; rank 1 with float32\[4\], op=SUM (the collective check is off" "$work/all" ||
    fail "the 2-rank mismatch is not named:"$'\n'"$(cat "$work/all")"
grep -q "Gloo failed inside its network thread" "$work/all" && fail "a 2-rank rank died in Gloo"
# ... on 4, Gloo's ring runs, whose network thread fails where nothing can catch it; the
# rank ends saying what happened, not with a bare "terminate called after throwing an
# instance of 'gloo::EnforceNotMet'"
timeout 60 "$DDPLAB" -n 4 --no-collective-check -e 'dist.init_process_group{backend="gloo"}
local t = dist.get_rank() == 0 and torch.ones(4, {dtype = torch.float64}) or torch.ones(4)
dist.all_reduce(t)' >"$work/out" 2>"$work/err"
rc=$?
[ $rc -ne 0 ] || fail "a dtype mismatch without the check exited with 0"
cat "$work/out" "$work/err" >"$work/all"
grep -q "Gloo failed inside its network thread, and this rank has to end" "$work/all" ||
    fail "no death message:"$'\n'"$(cat "$work/all")"
grep -q "the collective check is off (--no-collective-check)" "$work/all" ||
    fail "the message does not say the check was off:"$'\n'"$(cat "$work/all")"
grep -q "terminate called after" "$work/all" && fail "the bare C++ message is shown"
# ... and with the check on, the same call is a mismatch error, no death
timeout 60 "$DDPLAB" -n 2 -e 'dist.init_process_group{backend="gloo"}
local t = dist.get_rank() == 0 and torch.ones(4, {dtype = torch.float64}) or torch.ones(4)
dist.all_reduce(t)' >"$work/out" 2>"$work/err"
grep -q "float64\[4\]" "$work/err" || fail "the checked mismatch is not named: $(cat "$work/err")"
grep -q "died" "$work/err" && fail "a rank died with the check on: $(cat "$work/err")"

# 9. a collective that waits for a dead rank fails at once, naming it and how it ended
# (here one that ended with status 0 while the others go on, torchrun-style)
cat >"$work/dead.lua" <<'LUA'
dist.init_process_group{backend = "gloo"}
if dist.get_rank() == 1 then os.exit(0) end
local t0 = os.time()
local ok, err = pcall(dist.all_reduce, torch.ones(1))
print(ok, os.time() - t0 <= 2, err)
LUA
timeout 60 "$DDPLAB" -n 3 "$work/dead.lua" >"$work/out" 2>"$work/err"
for r in 0 2; do
    grep -q "^\[$r\] false	true	.*all_reduce (collective #1 of this chunk): rank 1 exited with status 0, so this collective can never complete" "$work/out" ||
        fail "rank $r was not told at once that rank 1 is gone:"$'\n'"$(cat "$work/out" "$work/err")"
done

finish test_rel_script
