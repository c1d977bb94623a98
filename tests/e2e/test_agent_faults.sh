#!/usr/bin/env bash
# test_agent_faults.sh — a node's agent dies at random moments (issue 10): a REPL session
# over two nodes (2 ranks each, on the loopback; tests/e2e/test_multinode.sh runs the
# same in network namespaces), driven through a real terminal. Each round kills node 1's
# agent (SIGKILL, SIGSEGV, or SIGTERM, after which it ends its ranks itself) while the
# session is idle at the prompt, in the middle of a chunk, while node 0's ranks wait inside
# all_reduce or init_process_group for node 1's, or during DDP training steps. Every time:
# the driver reports node 1's ranks within 2 s, they are gone (they end with their agent),
# node 0's ranks are stopped and the prompt comes back; an agent started again lets
# :restart give a world whose init_process_group and all_reduce over both nodes work, and
# no rank process of the old world is left. At the end the terminal is not raw and no
# process survives.
#
# DDP_AGENT_KILLS rounds (default 5, one per moment, the cause cycling; DDP_LONG=1: 30,
# drawn at random from DDP_FAULT_SEED, printed so that a run can be replayed). Each
# round's figure is printed and, with DDP_FAULT_LOG=path, appended there.
. "$(dirname "$0")/tmux_lib.sh"

KILLS=${DDP_AGENT_KILLS:-5}
[ "${DDP_LONG:-0}" = 1 ] && KILLS=${DDP_AGENT_KILLS:-30}
SEED=${DDP_FAULT_SEED:-$(date +%s)}
REPORT_LIMIT_MS=${DDP_FAULT_REPORT_MS:-2000}
RANDOM=$SEED
echo "test_agent_faults: $KILLS agent kills, seed $SEED"

# a free port for the store whose next port (the control port) is free too
PORT=$(python3 "$(dirname "$0")/free_port_pair.py")
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
NODES="--nnodes 2 --master-addr 127.0.0.1 --master-port $PORT -n 2"
AGENT=
start_agent() {
    DDPLAB_SECRET=$SECRET "$DDPLAB" $NODES --node-rank 1 >>"$WORK/agent.out" 2>&1 &
    AGENT=$!
    disown "$AGENT" # no "Killed" notice from bash when a round kills it
}
stop_agents() { pkill -9 -f -- "--master-port $PORT .*--node-rank 1" 2>/dev/null; }
trap 'stop_agents; cleanup' EXIT

# The session runs under a shell, so that the terminal's modes can be read after ddplab
# ended (stty in the same pane).
tmux -L "$SOCK" new-session -d -x 220 -y 50 "bash --norc --noprofile"
tmux -L "$SOCK" set-option -g history-limit 100000 >/dev/null
send "env HOME='$WORK' XDG_STATE_HOME='$WORK/state' NO_COLOR=1 DDPLAB_SECRET=$SECRET '$DDPLAB' $NODES --node-rank 0; echo \"ddplab-ended \$?\"; stty -a > '$WORK/stty'"
start_agent
wait_for "[all]>"

# Every rank writes its pid to $WORK/pid.<rank>; rank is a global on every rank.
SYNC=0
record_pids() {
    rm -f "$WORK"/pid.*
    SYNC=$((SYNC + 1))
    send "rank = tonumber(os.getenv('RANK')); io.open('$WORK/pid.' .. rank, 'w'):write(io.open('/proc/self/stat'):read('n')):close(); print('pids$SYNC')"
    wait_re "pids$SYNC"
    for _ in $(seq 100); do [ -s "$WORK/pid.3" ] && break; sleep 0.05; done
    PIDS=()
    for i in 0 1 2 3; do PIDS[i]=$(cat "$WORK/pid.$i" 2>/dev/null); done
}
GOOD=0
check_world_works() {
    GOOD=$((GOOD + 1))
    send "dist.init_process_group{backend = 'gloo'}; t = torch.ones(1); dist.all_reduce(t); print('sum$GOOD', t:item()); dist.destroy_process_group()"
    wait_re "sum$GOOD[[:space:]]+4\\.0"
}
record_pids

causes=(KILL SEGV TERM)
moments=(idle chunk collective init backward)
worst_ms=0
SLOW=()
for ((k = 1; k <= KILLS; k++)); do
    if [ "${DDP_LONG:-0}" = 1 ]; then
        cause=${causes[$((RANDOM % 3))]}
        moment=${moments[$((RANDOM % 5))]}
    else
        cause=${causes[$(((k - 1) % 3))]}
        moment=${moments[$(((k - 1) % 5))]}
    fi
    delay=0.$((RANDOM % 9 + 1))
    reset_screen
    # node 1 holds ranks 2 and 3: they spin where node 0's ranks wait for them
    case $moment in
        idle) chunk="" ;;
        chunk) chunk="while true do end" ;;
        collective)
            send "dist.init_process_group{backend = 'gloo'}"
            record_pids # also waits until the set-up is over
            chunk="t = torch.ones(4); if rank >= 2 then while true do end end; dist.all_reduce(t); while true do end" ;;
        init) chunk="if rank >= 2 then while true do end end; dist.init_process_group{backend = 'gloo'}; while true do end" ;;
        backward)
            send "dist.init_process_group{backend = 'gloo'}; torch.manual_seed(0); m = nn.DistributedDataParallel(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))); x = torch.randn(32, 16)"
            record_pids # also waits until the set-up is over
            chunk="for i = 1, 1e9 do m(x):sum():backward() end" ;;
    esac
    [ -n "$chunk" ] && send "$chunk"
    sleep "$delay"
    [ "$moment" = collective ] || [ "$moment" = init ] && sleep 0.5
    screen | grep -qE '(^|\] )error' && fail "$moment: the chunk failed before the kill"
    t0=$(now_ms)
    kill -"$cause" "$AGENT"
    wait_re "(rank [23]|ranks 2,3) died"
    took=$(($(now_ms) - t0))
    [ $took -gt $worst_ms ] && worst_ms=$took
    line="agent kill $k: SIG$cause at $moment: reported in ${took} ms"
    echo "$line"
    [ -n "${DDP_FAULT_LOG:-}" ] && echo "$line" >>"$DDP_FAULT_LOG"
    if [ $took -gt "$REPORT_LIMIT_MS" ]; then
        [ "${DDP_LONG:-0}" = 1 ] || fail "$line (more than $REPORT_LIMIT_MS ms)"
        SLOW+=("$line")
    fi
    for pid in "${PIDS[2]}" "${PIDS[3]}"; do # they end with their agent
        for _ in $(seq 40); do alive "$pid" || break; sleep 0.05; done
        alive "$pid" && fail "$line: rank process $pid outlived its agent by 2 s"
    done
    wait_prompt
    # the agent started again: :restart brings node 1 back
    start_agent
    send ':restart'
    wait_for "restarted: every rank"
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && fail "$line: rank process $pid of the old world outlived :restart by 5 s"
    done
    record_pids
    check_world_works
done

end_session_sane
for _ in $(seq 50); do alive "$AGENT" || break; sleep 0.1; done
alive "$AGENT" && fail "the agent outlived the session by 5 s"
for pid in "${PIDS[@]}"; do alive "$pid" && fail "rank process $pid outlived ddplab"; done
[ ${#SLOW[@]} = 0 ] || fail "${#SLOW[@]} reports took more than $REPORT_LIMIT_MS ms: $(printf '\n  %s' "${SLOW[@]}")"
echo "test_agent_faults: $KILLS agent kills reported, the slowest in $worst_ms ms"
echo "test_agent_faults: all checks passed"
