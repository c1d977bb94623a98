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

finish test_rel_script
