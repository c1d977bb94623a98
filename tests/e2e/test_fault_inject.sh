#!/usr/bin/env bash
# test_fault_inject.sh — fault injection through a real terminal (issue 10): a random rank
# of a REPL session on 2, 4 or 8 ranks dies in a random way (SIGKILL, SIGSEGV, SIGABRT as
# an abort inside a C call, os.exit(3)) at a random moment (idle at the prompt, in the
# middle of a chunk, blocked inside a collective, inside init_process_group, during DDP
# training steps). Every time: the driver names the rank and the cause within 2 s, no
# rank process of the old world is left once :restart ran, :restart gives a world whose
# init_process_group and all_reduce work; at the end the terminal is not left raw and no
# process survives. Then the driver itself is killed with SIGKILL in the middle of a
# chunk: its ranks notice the lost control channel and exit.
#
# DDP_FAULT_KILLS rounds (default 15: a third on each world size, cause and moment cycling
# so that the 20 pairs are all met in 20 kills; DDP_LONG=1: 120 kills, everything drawn at
# random). The victim, and the moment within a chunk, are drawn from DDP_FAULT_SEED
# (printed, so a failure can be replayed). Each round's figure (rank, cause, moment, seconds until
# the report) is printed and, with DDP_FAULT_LOG=path, appended there.
. "$(dirname "$0")/tmux_lib.sh"

KILLS=${DDP_FAULT_KILLS:-15}
[ "${DDP_LONG:-0}" = 1 ] && KILLS=${DDP_FAULT_KILLS:-120}
SEED=${DDP_FAULT_SEED:-$(date +%s)}
REPORT_LIMIT_MS=${DDP_FAULT_REPORT_MS:-2000}
RANDOM=$SEED
echo "test_fault_inject: $KILLS kills, seed $SEED"

# Every rank answers (bounded: 60 s; the line is typed again once after 30 s, in case the
# terminal lost it on a loaded machine).
SYNC=0
sync_ranks() {
    SYNC=$((SYNC + 1))
    for try in 1 2; do
        send "=\"sy\" .. \"nc$SYNC\""
        for _ in $(seq 300); do
            screen | grep -qF "sync$SYNC" && return 0
            sleep 0.1
        done
    done
    fail "waited 60 s for every rank to answer sync$SYNC"
}

# The session runs under a shell, so that the terminal's modes can be read after ddplab
# ended (stty in the same pane).
tmux -L "$SOCK" new-session -d -x 220 -y 50 "bash --norc --noprofile"
tmux -L "$SOCK" set-option -g history-limit 100000 >/dev/null
WORLD=0
start_world() {
    WORLD=$1
    send "env HOME='$WORK' XDG_STATE_HOME='$WORK/state' NO_COLOR=1 '$DDPLAB' -n $WORLD; echo \"ddplab-ended \$?\"; stty -a > '$WORK/stty'"
    wait_for "[all]>"
}
# Every rank writes its pid to $WORK/pid.<rank>; rank is a global on every rank.
record_pids() {
    rm -f "$WORK"/pid.*
    send 'rank = tonumber(os.getenv("RANK")); io.open(os.getenv("HOME") .. "/pid." .. rank, "w"):write(io.open("/proc/self/stat"):read("n")):close()'
    sync_ranks
    PIDS=()
    for ((i = 0; i < WORLD; i++)); do PIDS[i]=$(cat "$WORK/pid.$i"); done
}
GOOD=0
check_world_works() {
    GOOD=$((GOOD + 1))
    reset_screen
    send "dist.init_process_group{backend = 'gloo'}; t = torch.ones(1); dist.all_reduce(t); ok$GOOD = t:item()"
    send "=ok$GOOD + 0.5"
    wait_re "^\\[[^]]*\\] $WORLD\\.5\$" 1
    send 'dist.destroy_process_group()'
}

causes=(KILL SEGV ABRT exit3)
moments=(idle chunk collective init backward)
worlds=(2 4 8)
worst_ms=0
SLOW=()
for ((k = 1; k <= KILLS; k++)); do
    if [ "${DDP_LONG:-0}" = 1 ]; then # all drawn at random
        w=${worlds[$((RANDOM % 3))]}
        cause=${causes[$((RANDOM % 4))]}
        moment=${moments[$((RANDOM % 5))]}
    else # a third of the kills on each world size; every cause meets every moment
        w=${worlds[$(((k - 1) * 3 / KILLS))]}
        cause=${causes[$(((k - 1) % 4))]}
        moment=${moments[$(((k - 1) % 5))]}
    fi
    if [ "$w" != "$WORLD" ]; then
        [ "$WORLD" = 0 ] || { tmux -L "$SOCK" send-keys C-d; wait_for "ddplab-ended"; }
        reset_screen
        start_world "$w"
        record_pids
    fi
    reset_screen
    victim=$((RANDOM % WORLD))
    other=$(((victim + 1) % WORLD))
    delay=0.$((RANDOM % 9 + 1))
    case $cause in
        KILL) sig=9 want='killed by signal 9 \(SIGKILL\)' ;;
        SEGV) sig=11 want='killed by signal 11 \(SIGSEGV\)' ;;
        ABRT) sig=6 want='killed by signal 6 \(SIGABRT\)' ;;
        exit3) sig=0 want='exited with status 3' ;;
    esac
    # the chunk of each moment; an os.exit(3) is placed where the moment says
    die=""
    [ "$cause" = exit3 ] && die="if rank == $victim then os.exit(3) end;"
    case $moment in
        idle) chunk="$die" ;;
        chunk) chunk="$die local t0 = os.clock(); while os.clock() - t0 < $delay do end; while true do end" ;;
        collective)
            # every rank but `other` waits inside all_reduce; `other` never comes
            send "dist.init_process_group{backend = 'gloo'}"
            sync_ranks # the set-up is over before the moment starts
            chunk="t = torch.ones(4); if rank == $other and rank ~= $victim then while true do end end; $die dist.all_reduce(t); while true do end" ;;
        init) chunk="if rank == $other and rank ~= $victim then while true do end end; $die dist.init_process_group{backend = 'gloo'}; while true do end" ;;
        backward)
            send "dist.init_process_group{backend = 'gloo'}; torch.manual_seed(0); m = nn.DistributedDataParallel(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))); x = torch.randn(32, 16)"
            sync_ranks
            chunk="for i = 1, 1e9 do local l = m(x):sum(); if i == 3 then $die end; l:backward() end" ;;
    esac
    if [ "$cause" = exit3 ] || [ "$moment" = idle ]; then
        [ -n "$chunk" ] && [ "$cause" != exit3 ] && send "$chunk"
        t0=$(now_ms)
        if [ "$cause" = exit3 ]; then send "$chunk"; else kill -$sig "${PIDS[$victim]}"; fi
    else
        send "$chunk"
        sleep "$delay"
        [ "$moment" = collective ] || [ "$moment" = init ] && sleep 0.5
        # the chunk must still be running as set up (not ended by an error of its own)
        screen | grep -qE '(^|\] )error' && fail "world $WORLD, $moment: the chunk failed before the kill"
        t0=$(now_ms)
        kill -$sig "${PIDS[$victim]}"
    fi
    wait_re "rank $victim( died:)? $want" 1
    took=$(($(now_ms) - t0))
    [ $took -gt $worst_ms ] && worst_ms=$took
    line="kill $k: world $WORLD rank $victim $cause at $moment: reported in ${took} ms"
    echo "$line"
    [ -n "${DDP_FAULT_LOG:-}" ] && echo "$line" >>"$DDP_FAULT_LOG"
    if [ $took -gt "$REPORT_LIMIT_MS" ]; then
        # the long form goes on, so that its figures cover every kill; it fails at the end
        [ "${DDP_LONG:-0}" = 1 ] || fail "$line (more than $REPORT_LIMIT_MS ms)"
        SLOW+=("$line")
    fi
    # the others were stopped (or sat at the prompt): the prompt comes back by itself
    wait_prompt
    old=("${PIDS[@]}")
    send ':restart'
    wait_for "restarted: every rank"
    for pid in "${old[@]}"; do
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && fail "$line: rank process $pid of the old world outlived :restart by 5 s"
    done
    record_pids
    check_world_works
done

end_session_sane
for pid in "${PIDS[@]}"; do alive "$pid" && fail "rank process $pid outlived ddplab"; done
# the sessions' history and transcripts: kept, and no one else may read them
[ -n "$(find "$WORK/state" -type f 2>/dev/null)" ] || fail "no history or transcript under $WORK/state"
loose=$(find "$WORK/state" \( -type d ! -perm 700 \) -o \( -type f -perm /077 \))
[ -z "$loose" ] || fail "state files readable by others: $loose"
echo "test_fault_inject: $KILLS kills reported, the slowest in $worst_ms ms"

# The driver killed with SIGKILL in the middle of a chunk: every rank notices that the
# control channel is gone and exits (no orphans).
reset_screen
start_world 4
record_pids
send 'while true do end'
sleep 0.5
driver=$(pgrep -P "$(tmux -L "$SOCK" display -p '#{pane_pid}')" -x ddplab | head -1)
[ -n "$driver" ] || fail "cannot find the driver's pid"
t0=$(now_ms)
kill -9 "$driver"
for _ in $(seq 100); do
    left=0
    for pid in "${PIDS[@]}"; do alive "$pid" && left=$((left + 1)); done
    [ $left = 0 ] && break
    sleep 0.05
done
[ $left = 0 ] || { kill -9 "${PIDS[@]}" 2>/dev/null; fail "$left ranks outlived their driver (SIGKILL) by 5 s"; }
echo "test_fault_inject: driver killed with SIGKILL, its 4 ranks gone in $(($(now_ms) - t0)) ms"
[ ${#SLOW[@]} = 0 ] || fail "${#SLOW[@]} reports took more than $REPORT_LIMIT_MS ms: $(printf '\n  %s' "${SLOW[@]}")"
echo "test_fault_inject: all checks passed"
