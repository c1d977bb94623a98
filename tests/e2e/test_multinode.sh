#!/usr/bin/env bash
# test_multinode.sh — a session over two nodes: node 0 runs the driver and its two ranks,
# node 1 runs the agent (ddplab --node-rank 1) whose ranks dial the driver with the
# session secret. Each rank sees torchrun's environment (RANK, GROUP_RANK, LOCAL_RANK)
# and its lines come back labelled; a peer without the secret is turned away and logged.
. "$(dirname "$0")/check_lib.sh"

# Two nodes: network namespaces joined by a veth pair (two loopback addresses where
#    namespaces are not permitted). Node 1's agent starts ranks 2 and 3, which dial the
#    driver on node 0 with the shared secret; a peer without it is turned away.
export DDPLAB_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ns0=() ns1=() addr0=127.0.0.1
nsA=ddpA$$ nsB=ddpB$$
if ip netns add "$nsA" 2>/dev/null && ip netns add "$nsB" 2>/dev/null &&
    ip link add "va$$" type veth peer name "vb$$" 2>/dev/null; then
    trap 'ip netns del "$nsA" 2>/dev/null; ip netns del "$nsB" 2>/dev/null; rm -rf "$work"' EXIT
    ip link set "va$$" netns "$nsA" && ip link set "vb$$" netns "$nsB"
    ip -n "$nsA" addr add 10.231.7.1/24 dev "va$$" && ip -n "$nsA" link set "va$$" up
    ip -n "$nsB" addr add 10.231.7.2/24 dev "vb$$" && ip -n "$nsB" link set "vb$$" up
    ip -n "$nsA" link set lo up && ip -n "$nsB" link set lo up
    ns0=(ip netns exec "$nsA") ns1=(ip netns exec "$nsB") addr0=10.231.7.1
else
    ip netns del "$nsA" 2>/dev/null
    echo "note: no network namespaces here; two nodes share the loopback device"
fi
cat >"$work/nodes.lua" <<'LUA'
print("rank", os.getenv("RANK"), "node", os.getenv("GROUP_RANK"), "local", os.getenv("LOCAL_RANK"))
LUA
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
mport=$(python3 - <<'PY'
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 1)); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
print(port)
PY
)
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
if grep -q "launcher_agent_main" "$work/agent.err"; then
    echo "SKIP: two nodes (main.c does not start the agent for --node-rank > 0 yet)"
else
    [ $rc -eq 0 ] || fail "two nodes: node 0 exited with $rc: $(cat "$work/err")"
    [ $arc -eq 0 ] || fail "two nodes: the agent exited with $arc: $(cat "$work/agent.err")"
    for r in 0 1 2 3; do
        expect_line "$work/out" "[$r] rank	$r	node	$((r / 2))	local	$((r % 2))"
    done
    expect_line "$work/stranger" "challenge 40 then 0"
    grep -q "dropped a control connection" "$work/err" ||
        fail "two nodes: the refused peer was not logged: $(cat "$work/err")"
fi
unset DDPLAB_SECRET

finish "multinode"
