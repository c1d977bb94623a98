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

finish test_rel_script
