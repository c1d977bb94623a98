#!/usr/bin/env bash
# startup.sh — the start-up benchmark of the many-ranks issue: from launch to exit of
#   ddplab -n N -e 'dist.init_process_group{backend="gloo"}; <all_reduce one tensor>'
# against the same in PyTorch (bench/startup_torch.py on /usr/bin/python3, Debian's
# python3-torch): N Python processes started the way torchrun starts them, with RANK,
# LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, env://
# rendezvous. Also `python3 -m torch.distributed.run` itself when it works here (it is
# tried once; Debian's torch 1.13 launcher fails on Python 3.12, and is then left out).
#
#   bench/startup.sh [--reps R] [-n N] [--quick] [path/to/ddplab]
#
# The sides alternate, R repetitions each (default 7); the median of each is reported
# with the ratio against the target (ddplab at least 20x faster). Wall time from the
# shell's $EPOCHREALTIME before the launch to after the last process exited; choosing a
# free port for PyTorch is done before the clock starts. hyperfine is not needed.
# Exit status: 0 when the target is met, 1 when missed, 2 on a setup problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
reps=7
n=4
ddplab="${DDPLAB:-$root/build/ddplab}"
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) reps=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    --quick) reps=1; shift ;;
    -h | --help) sed -n "2,16p" "$0"; exit 0 ;;
    *) ddplab=$1; shift ;;
    esac
done
python=${DDP_TORCH_PYTHON:-/usr/bin/python3}

. "$root/bench/lib.sh"
bench_need_ddplab "$ddplab"
bench_need_torch "$python" torch.distributed
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

chunk='dist.init_process_group{backend="gloo"}
local t = torch.ones(4) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(t)'
torch_script="$root/bench/startup_torch.py"
log=$(mktemp /tmp/startup.XXXXXX)
trap 'rm -f "$log"' EXIT

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Prints the seconds "$@" took, from launch to exit; fails (with its output) if it failed.
timed() {
    local t0=$EPOCHREALTIME
    if ! "$@" >"$log" 2>&1; then
        echo "bench: failed: $*" >&2
        cat "$log" >&2
        return 1
    fi
    local t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}
run_ddplab() { "$ddplab" -n "$n" -e "$chunk"; }
# N ranks with torchrun's environment, started and waited for as torchrun does.
run_torch_env() {
    local port=$1 pids=() r status=0
    for ((r = 0; r < n; r++)); do
        RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n GROUP_RANK=0 \
            MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$python" "$torch_script" &
        pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r" || status=1; done
    return $status
}
run_torchrun() {
    "$python" -m torch.distributed.run --nproc_per_node "$n" --master_addr 127.0.0.1 \
        --master_port "$1" "$torch_script"
}

use_torchrun=""
if timed run_torchrun "$(free_port)" >/dev/null 2>&1; then use_torchrun=1; fi

median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ours=() env_times=() run_times=()
for ((i = 1; i <= reps; i++)); do
    ours+=("$(timed run_ddplab)")
    port=$(free_port)
    env_times+=("$(timed run_torch_env "$port")")
    if [ -n "$use_torchrun" ]; then
        port=$(free_port)
        run_times+=("$(timed run_torchrun "$port")")
    fi
done

m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_env=$(printf '%s\n' "${env_times[@]}" | median)
m_run=""
[ -n "$use_torchrun" ] && m_run=$(printf '%s\n' "${run_times[@]}" | median)

model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "start-up to exit, $n ranks: init gloo + all_reduce of one tensor, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: ${model:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores; median of $reps runs each"
echo "ddplab runs:  ${ours[*]}"
echo "PyTorch runs: ${env_times[*]}"
awk -v ours="$m_ours" -v env="$m_env" -v run="$m_run" -v n="$n" '
BEGIN {
    printf "%-52s %9s  %s\n", "launch", "median", "ratio"
    printf "%-52s %7.3f s\n", "ddplab -n " n " -e ...", ours
    r = env / ours
    printf "%-52s %7.3f s  ddplab %.1fx faster (target >= 20x: %s)\n",
        "python3 startup_torch.py x " n " (torchrun env, env://)", env, r, (r >= 20 ? "met" : "MISSED")
    if (run != "")
        printf "%-52s %7.3f s  ddplab %.1fx faster\n", "python3 -m torch.distributed.run", run, run / ours
    else
        printf "%-52s %9s  (fails on this machine, left out)\n", "python3 -m torch.distributed.run", "-"
    exit !(r >= 20)
}'
