#!/usr/bin/env bash
# test_script_mode.sh — script mode from the shell: every rank runs the script, each line
# is labelled with its rank, `arg` is set as lua.c sets it, the exit status is the first
# failing rank's with a line saying which rank failed, and a process started by an outside
# launcher (torchrun's RANK/WORLD_SIZE, or SLURM's variables) runs the script unlabelled.
. "$(dirname "$0")/check_lib.sh"

cat >"$work/hello.lua" <<'LUA'
local rank, world = os.getenv("RANK"), os.getenv("WORLD_SIZE")
print("hello from rank " .. rank .. " of " .. world)
print("args", #arg, arg[1], arg[2], select("#", ...))
LUA

# 1. labelled lines from every rank, and the arguments
timeout 60 "$DDPLAB" -n 4 "$work/hello.lua" one two >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "hello.lua on 4 ranks exited with $rc: $(cat "$work/err")"
for r in 0 1 2 3; do
    expect_line "$work/out" "[$r] hello from rank $r of 4"
    expect_line "$work/out" "[$r] args	2	one	two	2"
done
[ "$(wc -l <"$work/out")" -eq 8 ] || fail "expected 8 lines, got:"$'\n'"$(cat "$work/out")"

# 2. -e runs a chunk on every rank
timeout 60 "$DDPLAB" -n 2 -e 'print("rank", os.getenv("RANK"))' >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "-e exited with $rc: $(cat "$work/err")"
expect_line "$work/out" "[0] rank	0"
expect_line "$work/out" "[1] rank	1"

# 3. an error on rank 2: exit status 1, the error shown, "rank 2 failed"
cat >"$work/fail.lua" <<'LUA'
if os.getenv("RANK") == "2" then error("boom on purpose") end
print("ok")
LUA
timeout 60 "$DDPLAB" -n 4 "$work/fail.lua" >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] || fail "fail.lua exited with $rc, expected 1"
grep -q "boom on purpose" "$work/err" || fail "the error message is missing: $(cat "$work/err")"
grep -q "rank 2 failed" "$work/err" || fail "'rank 2 failed' is missing: $(cat "$work/err")"
expect_line "$work/out" "[0] ok"
expect_line "$work/out" "[3] ok"

# 4. os.exit(3) on one rank: that is the exit status
cat >"$work/exit3.lua" <<'LUA'
if os.getenv("RANK") == "1" then os.exit(3) end
LUA
timeout 60 "$DDPLAB" -n 2 "$work/exit3.lua" >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 3 ] || fail "exit3.lua exited with $rc, expected 3: $(cat "$work/err")"
grep -q "rank 1" "$work/err" || fail "rank 1 is not named: $(cat "$work/err")"

# 5. under an outside launcher (torchrun's environment): unlabelled, rank 0 hosts the store
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    timeout 60 "$DDPLAB" "$work/hello.lua" x >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "standalone (torchrun env) exited with $rc: $(cat "$work/err")"
expect_line "$work/out" "hello from rank 0 of 1"
expect_line "$work/out" "args	1	x	nil	1"

# 6. SLURM's variables are enough (RANK/WORLD_SIZE are derived from them)
SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 MASTER_PORT=$port \
    timeout 60 env -u RANK -u WORLD_SIZE "$DDPLAB" "$work/hello.lua" >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] || fail "standalone (SLURM env) exited with $rc: $(cat "$work/err")"
expect_line "$work/out" "hello from rank 0 of 1"

# 7. a failing standalone rank exits non-zero and says why on stderr
RANK=0 WORLD_SIZE=1 MASTER_PORT=$port timeout 60 "$DDPLAB" "$work/fail.lua" >/dev/null 2>&1
RANK=0 WORLD_SIZE=1 MASTER_PORT=$port timeout 60 "$DDPLAB" -e 'error("standalone boom")' \
    >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] || fail "standalone error exited with $rc, expected 1"
grep -q "standalone boom" "$work/err" || fail "standalone error message missing: $(cat "$work/err")"

# 8. two processes started by hand as torchrun would: rank 0 hosts the store, both join
#    the process group and all-reduce
cat >"$work/allreduce.lua" <<'LUA'
dist.init_process_group{backend = "gloo", init_method = "env://"}
local t = torch.ones(3) * (dist.get_rank() + 1)
dist.all_reduce(t)
print("sum", t:sum():item())
dist.destroy_process_group()
LUA
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        timeout 60 "$DDPLAB" "$work/allreduce.lua" >"$work/out.$r" 2>"$work/err.$r" &
done
wait
for r in 0 1; do
    expect_line "$work/out.$r" "sum	9.0"
done

# The failure summary puts the cause first and names it: rank 2 fails, the others fail in
# the barrier it never joined (issue 9).
cat >"$work/cause.lua" <<'LUA'
dist.init_process_group{backend="gloo"}
if dist.get_rank() == 2 then error("bad batch on rank 2") end
dist.barrier()
LUA
NO_COLOR=1 "$DDPLAB" -n 4 "$work/cause.lua" >/dev/null 2>"$work/cause.err"
[ "$(head -1 "$work/cause.err")" = "[2] error: $work/cause.lua:2: bad batch on rank 2" ] ||
    fail "the cause is not shown first: $(cat "$work/cause.err")"
expect_line "$work/cause.err" "ddplab: rank 2 failed first (exit status 1); ranks 0,1,3 failed after it"

finish "script mode"
