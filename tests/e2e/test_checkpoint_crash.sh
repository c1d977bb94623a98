#!/usr/bin/env bash
# test_checkpoint_crash.sh — a checkpoint survives the saving rank's death: a save that
# dies mid-write (the file-size limit kills the rank with SIGXFSZ) and a rank killed with
# SIGKILL while it saves 40 MB over and over both leave the previous checkpoint whole and
# loadable, never half a file; the next save clears the dead rank's lock and temporary.
source "$(dirname "$0")/check_lib.sh"

ck=$work/ck.safetensors
cat >"$work/check.lua" <<'LUA'
-- prints "whole N" when the checkpoint loads and every value is the same number N
local sd = torch.load(arg[1])
local w = sd.w
print(string.format("whole %d %s", w:min():item(), tostring(w:min():item() == w:max():item())))
LUA

"$DDPLAB" -n 1 -e "torch.save({w = torch.full({10}, 7.0)}, '$ck')" >"$work/out1" 2>&1 ||
    fail "the first save failed: $(cat "$work/out1")"

# 1. the write dies part way: 200 KiB allowed, 4 MB written
(ulimit -f 200; "$DDPLAB" -n 1 -e "torch.save({w = torch.zeros(1000000)}, '$ck')") >"$work/out2" 2>&1 &&
    fail "a save past the file-size limit succeeded: $(cat "$work/out2")"
"$DDPLAB" -n 1 "$work/check.lua" "$ck" >"$work/out3" 2>&1
expect_line "$work/out3" "whole 7 true"

# 2. SIGKILL at several moments of a loop of 40 MB saves
cat >"$work/loop.lua" <<'LUA'
local f = assert(io.open(arg[2], "w"))
f:write(io.open("/proc/self/stat"):read("n"), "\n")
f:close()
for i = 1, 1000 do
  torch.save({w = torch.full({10000000}, i)}, arg[1])
  print("saved " .. i)
  io.stdout:flush()
end
LUA
for delay in 0.05 0.3 0.7; do
    rm -f "$work/pid"
    "$DDPLAB" -n 1 "$work/loop.lua" "$ck" "$work/pid" >"$work/loop.out" 2>&1 &
    driver=$!
    for _ in $(seq 100); do [ -s "$work/pid" ] && break; sleep 0.05; done
    sleep "$delay"
    kill -9 "$(cat "$work/pid")" 2>/dev/null
    wait "$driver" 2>/dev/null
    echo "delay $delay: $(tail -1 "$work/loop.out"); left: $(ls "$work" | grep -cE "\.(tmp|lock)$")"
    "$DDPLAB" -n 1 "$work/check.lua" "$ck" >"$work/out4" 2>&1
    grep -qE '^whole [0-9]+ true$' "$work/out4" ||
        fail "after SIGKILL at ${delay}s the checkpoint is not whole: $(cat "$work/out4")"
done

# 3. the next save takes over the dead rank's lock and removes its temporary file
"$DDPLAB" -n 1 -e "torch.save({w = torch.full({10}, 8.0)}, '$ck')" >"$work/out5" 2>&1 ||
    fail "a save after the crash failed: $(cat "$work/out5")"
"$DDPLAB" -n 1 "$work/check.lua" "$ck" >"$work/out6" 2>&1
expect_line "$work/out6" "whole 8 true"
left=$(ls "$work" | grep -E '\.(tmp|lock)$' || true)
[ -z "$left" ] || fail "files left beside the checkpoint: $left"

finish test_checkpoint_crash
