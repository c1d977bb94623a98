#!/usr/bin/env bash
# test_multinode.sh — a session over two nodes: node 0 runs the driver and its two ranks,
# node 1 runs the agent (ddplab --node-rank 1) whose ranks dial the driver with the
# session secret. Each rank sees torchrun's environment (RANK, GROUP_RANK, LOCAL_RANK)
# and its lines come back labelled; a peer without the secret is turned away and logged;
# what a remote rank started in the background is gone when the session ends; a remote
# rank lost with its agent is reported as lost, and the session fails. Then a REPL
# session over the two nodes: a remote rank is killed, `:restart replay` brings every rank
# back (new pids, same RANK and GROUP_RANK) and re-runs the earlier input, `:restart` ends
# what the old remote ranks left behind, and with node 1's agent gone `:restart` fails with
# a clear message and the driver still quits. Last, node 1's agent killed with SIGKILL:
# its ranks are reported as lost, node 0's go on, and nothing is left behind.
. "$(dirname "$0")/check_lib.sh"

# Kills what a failed check may have left running (the sessions, background sleeps).
cleanup() {
    for f in "$work"/bg.* "$work"/*.pid; do
        [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
# Whether process $1 still runs a few seconds on (a zombie waiting for its reaper does
# not): a SIGKILL just sent takes effect when the process is next scheduled.
alive() {
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null && ! grep -q zombie "/proc/$1/status" 2>/dev/null || return 1
        sleep 0.1
    done
}
export DDPLAB_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Two nodes: network namespaces joined by a veth pair (two loopback addresses where
#    namespaces are not permitted). Node 1's agent starts ranks 2 and 3, which dial the
#    driver on node 0 with the shared secret; a peer without it is turned away.
ns0=() ns1=() addr0=127.0.0.1
nsA=ddpA$$ nsB=ddpB$$
if ip netns add "$nsA" 2>/dev/null && ip netns add "$nsB" 2>/dev/null &&
    ip link add "va$$" type veth peer name "vb$$" 2>/dev/null; then
    trap 'cleanup; ip netns del "$nsA" 2>/dev/null; ip netns del "$nsB" 2>/dev/null' EXIT
    ip link set "va$$" netns "$nsA" && ip link set "vb$$" netns "$nsB"
    ip -n "$nsA" addr add 10.231.7.1/24 dev "va$$" && ip -n "$nsA" link set "va$$" up
    ip -n "$nsB" addr add 10.231.7.2/24 dev "vb$$" && ip -n "$nsB" link set "vb$$" up
    ip -n "$nsA" link set lo up && ip -n "$nsB" link set lo up
    ns0=(ip netns exec "$nsA") ns1=(ip netns exec "$nsB") addr0=10.231.7.1
else
    ip netns del "$nsA" 2>/dev/null
    ip netns del "$nsB" 2>/dev/null
    echo "note: no network namespaces here; two nodes share the loopback device"
fi
cat >"$work/nodes.lua" <<'LUA'
print("rank", os.getenv("RANK"), "node", os.getenv("GROUP_RANK"), "local", os.getenv("LOCAL_RANK"))
if os.getenv("GROUP_RANK") == "1" then -- node 1's ranks leave a process behind
    os.execute("sleep 300 >/dev/null 2>&1 & echo $! > WORK/bg.script" .. os.getenv("RANK"))
end
LUA
sed -i "s|WORK|$work|" "$work/nodes.lua"
cat >"$work/stranger.py" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except OSError:
        if time.time() > deadline: sys.exit(3)
        time.sleep(0.05)
got = s.recv(4096)                  # the driver's challenge (magic + nonce)
s.sendall(b"\0\0\0\x20\x08\0\0\0" + b"os.exit(42)".ljust(56, b" "))  # a RUN frame, no proof
s.settimeout(5)
rest = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk: break
        rest += chunk
except OSError:
    pass
print("challenge", len(got), "then", len(rest))
PY
# a free port for the store whose next port (the control port) is free too
mport=$(python3 "$(dirname "$0")/free_port_pair.py")
common=(--nnodes 2 --master-addr "$addr0" --master-port "$mport" -n 2)
# node 0 first; the stranger knocks while it waits for node 1; then node 1's agent starts
"${ns0[@]}" timeout 90 "$DDPLAB" "${common[@]}" --node-rank 0 "$work/nodes.lua" >"$work/out" \
    2>"$work/err" &
driver=$!
"${ns1[@]}" timeout 60 python3 "$work/stranger.py" "$addr0" $((mport + 1)) >"$work/stranger" 2>&1
"${ns1[@]}" timeout 90 "$DDPLAB" "${common[@]}" --node-rank 1 >"$work/agent.out" 2>"$work/agent.err"
arc=$?
wait $driver
rc=$?
[ $rc -eq 0 ] || fail "two nodes: node 0 exited with $rc: $(cat "$work/err")"
[ $arc -eq 0 ] || fail "two nodes: the agent exited with $arc: $(cat "$work/agent.err")"
for r in 0 1 2 3; do
    expect_line "$work/out" "[$r] rank	$r	node	$((r / 2))	local	$((r % 2))"
done
expect_line "$work/stranger" "challenge 40 then 0"
grep -q "dropped a control connection" "$work/err" ||
    fail "two nodes: the refused peer was not logged: $(cat "$work/err")"
for r in 2 3; do
    [ -s "$work/bg.script$r" ] || { fail "two nodes: rank $r did not start its sleep"; continue; }
    alive "$(cat "$work/bg.script$r")" &&
        fail "two nodes: the sleep rank $r started outlived the session"
done

# A remote rank lost together with its agent (both killed at once, so nobody reports how
# it ended): the driver says so and fails; it used to count the rank as a clean exit.
cat >"$work/lost.lua" <<'LUA'
if os.getenv("RANK") == "3" then -- the agent is this rank's parent: kill both
    os.execute("kill -9 $(cut -d' ' -f4 /proc/$PPID/stat) $PPID")
end
print("done", os.getenv("RANK"))
LUA
"${ns0[@]}" timeout 90 "$DDPLAB" "${common[@]}" --node-rank 0 "$work/lost.lua" >"$work/lost.out" \
    2>"$work/lost.err" &
driver=$!
"${ns1[@]}" timeout 90 "$DDPLAB" "${common[@]}" --node-rank 1 >/dev/null 2>&1
wait $driver
rc=$?
[ $rc -eq 1 ] || fail "lost rank: node 0 exited with $rc: $(cat "$work/lost.err")"
# Rank 2 shares the killed agent's node and may be lost in the same moment (then the two
# are reported together, "ranks 2,3 died"); rank 3 must be named either way, with its
# agent when the driver saw the agent go first.
grep -qE "(rank 3|ranks 2,3) died: lost (its connection|with node 1's agent \(ddplab --node-rank 1\), which has gone away) \(exit status unknown\)" "$work/lost.err" ||
    fail "lost rank: not reported: $(cat "$work/lost.err")"

# ---- :restart over two nodes, driven through the REPL on a pipe -------------------------
# Lines go in through a FIFO held open on fd 3; each step waits for its output (bounded).
out="$work/repl"
# Polls $out (about 30 s at most) until it holds the fixed string $1 at least $2 (1) times.
wait_for() {
    for _ in $(seq 300); do
        [ "$(grep -cF -- "$1" "$out")" -ge "${2:-1}" ] && return 0
        sleep 0.1
    done
    fail "REPL over two nodes: waited for '$1'; the session so far:"$'\n'"$(cat "$out")"
    return 1
}
say() { printf '%s\n' "$1" >&3; }
# The pid that rank $1 printed on its line starting with word $2.
pid_of() { awk -v r="[$1]" -v w="$2" '$1 == r && $2 == w { p = $5 } END { print p }' "$out"; }

mkfifo "$work/in"
"${ns0[@]}" timeout 120 "$DDPLAB" -i "${common[@]}" --node-rank 0 <"$work/in" >"$out" 2>&1 &
echo $! >"$work/driver.pid"
exec 3>"$work/in"
"${ns1[@]}" timeout 60 "$DDPLAB" "${common[@]}" --node-rank 1 >"$work/agent2.out" 2>&1 &
agent=$!
echo $agent >"$work/agent.pid"
repl_steps() {
    say 'x = 41'
    say 'pid = io.open("/proc/self/stat"):read("n")'
    say 'print("who", os.getenv("RANK"), os.getenv("GROUP_RANK"), pid, x)'
    wait_for "[3] who" || return
    # a remote rank leaves a sleep behind (this chunk is replayed too: one sleep per world)
    say "if os.getenv('RANK') == '2' then os.execute('sleep 300 >/dev/null 2>&1 & echo \$! > $work/bg.' .. pid) end"
    say 'if os.getenv("RANK") == "3" then os.execute("kill -9 " .. pid) end'
    wait_for "rank 3 died" || return
    local old2 old3
    old2=$(pid_of 2 who) old3=$(pid_of 3 who)
    say ':restart replay'
    wait_for "replay done" || return
    wait_for "[3] who" 2 || return
    say 'print("after", os.getenv("RANK"), os.getenv("GROUP_RANK"), pid, x)'
    wait_for "[3] after" || return
    for r in 0 1 2 3; do # every rank is back, where it was, with the replayed state
        grep -qE "^(\[all\]> )*\[$r\] after	$r	$((r / 2))	[0-9]+	41$" "$out" ||
            fail "REPL over two nodes: rank $r after :restart replay:"$'\n'"$(cat "$out")"
    done
    [ "$(pid_of 2 after)" != "$old2" ] && [ "$(pid_of 3 after)" != "$old3" ] ||
        fail "REPL over two nodes: ranks 2 and 3 kept their pids ($old2 $old3) over :restart"
    [ -s "$work/bg.$old2" ] || fail "REPL over two nodes: rank 2 did not start its sleep"
    alive "$(cat "$work/bg.$old2")" &&
        fail "REPL over two nodes: the sleep of the old rank 2 outlived :restart replay"
    say ':restart'
    wait_for "restarted: every rank starts fresh" || return
    say 'print("fresh", os.getenv("RANK"), x)'
    wait_for "[3] fresh" || return
    expect_line "$out" "[2] fresh	2	nil"
    for f in "$work"/bg.[0-9]*; do
        alive "$(cat "$f")" && fail "REPL over two nodes: $(basename "$f") outlived :restart"
    done
    # node 1's agent goes away: :restart says so and waits for it; started again, it
    # brings node 1's ranks back
    kill -TERM "$agent"
    wait "$agent"
    local arc=$?
    [ $arc -eq 143 ] || fail "REPL over two nodes: the agent ended with $arc on SIGTERM"
    say ':restart'
    wait_for "node 1's agent (ddplab --node-rank 1) has gone away: start it again" || return
    "${ns1[@]}" timeout 60 "$DDPLAB" "${common[@]}" --node-rank 1 >"$work/agent2b.out" 2>&1 &
    agent=$!
    echo $agent >"$work/agent.pid"
    wait_for "restarted: every rank starts fresh" 2 || return
    say 'dist.init_process_group(); x = torch.ones(1); dist.all_reduce(x); print("again", os.getenv("RANK"), x:item())'
    wait_for "again	3	4.0" || return
    # gone again, and nobody starts it: Ctrl-C stops the wait, and the driver still quits
    kill -TERM "$agent"
    wait "$agent"
    say ':restart'
    wait_for "has gone away: start it again" 2 || return
    pkill -INT -P "$(cat "$work/driver.pid")" # the driver, under timeout
    wait_for "restart failed: interrupted while the ranks were starting" || return
    say ':quit'
}
repl_steps
exec 3>&-
wait "$(cat "$work/driver.pid")"
rc=$?
[ $rc -eq 0 ] || fail "REPL over two nodes: the driver exited with $rc:"$'\n'"$(cat "$out")"
kill -9 "$agent" 2>/dev/null

# ---- node 1's agent killed with SIGKILL (it cannot end its ranks or say goodbye) ---------
# Its ranks go with it and are reported as lost, node 0's ranks go on working, :restart
# says that node 1 cannot start again, :quit ends the session, and no rank is left.
out="$work/repl_kill"
mkfifo "$work/in2"
"${ns0[@]}" timeout 60 "$DDPLAB" -i "${common[@]}" --node-rank 0 <"$work/in2" >"$out" 2>&1 &
echo $! >"$work/driver.pid"
exec 3>"$work/in2"
"${ns1[@]}" timeout 60 "$DDPLAB" "${common[@]}" --node-rank 1 >"$work/agent3.out" 2>&1 &
echo $! >"$work/timeout.pid"
agent_kill_steps() {
    say 'print("pid", io.open("/proc/self/stat"):read("n"))'
    wait_for "[3] pid" || return
    local a r2 r3
    r2=$(awk '$1 == "[2]" && $2 == "pid" { print $3 }' "$out")
    r3=$(awk '$1 == "[3]" && $2 == "pid" { print $3 }' "$out")
    a=$(cut -d' ' -f4 "/proc/$r2/stat") # the ranks' parent: the agent
    grep -q "node-rank" "/proc/$a/cmdline" || fail "agent kill: $a is not the agent"
    kill -9 "$a"
    for _ in $(seq 100); do # the ranks end with their parent (PR_SET_PDEATHSIG)
        kill -0 "$r2" 2>/dev/null || kill -0 "$r3" 2>/dev/null || break
        sleep 0.1
    done
    say 'print("still", os.getenv("RANK"))'
    wait_for "(exit status unknown)" || return
    grep -qE "(ranks 2,3|rank [23]) died: lost (its connection|with node 1's agent)" "$out" ||
        fail "agent kill: ranks 2,3 not reported as lost:"$'\n'"$(cat "$out")"
    wait_for "still	1" || return # "[1]   still" when aligned with the report of the deaths
    for p in "$r2" "$r3"; do
        kill -0 "$p" 2>/dev/null && fail "agent kill: rank $p outlived its agent"
    done
    # the agent started again: :restart gives a working world over both nodes
    "${ns1[@]}" timeout 60 "$DDPLAB" "${common[@]}" --node-rank 1 >"$work/agent3b.out" 2>&1 &
    echo $! >"$work/agent3b.pid"
    say ':restart'
    wait_for "restarted: every rank starts fresh" || return
    say 'dist.init_process_group(); x = torch.ones(1); dist.all_reduce(x); print("back", os.getenv("RANK"), x:item())'
    wait_for "back	3	4.0" || return
    say ':quit'
}
agent_kill_steps
exec 3>&-
wait "$(cat "$work/driver.pid")"
rc=$?
[ $rc -eq 0 ] || fail "agent kill: the driver exited with $rc:"$'\n'"$(cat "$out")"
unset DDPLAB_SECRET

finish "multinode"
