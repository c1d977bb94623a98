#!/usr/bin/env bash
# run.sh — the DDP training-step benchmark: ddplab's nn.DistributedDataParallel against
# PyTorch's DistributedDataParallel on Gloo, 2 ranks on the CPU, one thread each, in the
# same run, printing both times per step and the ratio against issue 8's targets:
#   (a) the tutorial's model at local batch 64: at least 3x faster than PyTorch
#   (b) MLP 256-1024-1024-256 at local batch 256: no slower (within 10%)
#   (c) a deeper MLP in several buckets: no slower (within 10%)
# It builds nothing: it uses build/ddplab (`make build`).
#
#   bench/ddp/run.sh [--rounds N] [--quick] [--no-collective-check] [path/to/ddplab]
#
# Each round runs ddplab then PyTorch; the best (lowest) median of the rounds is kept for
# each. ddplab runs with its collective check on (what a learner gets) unless
# --no-collective-check. Exit status: 0 when every target is met, 1 when one is missed,
# 2 on a setup problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=2
quick=""
check=""
ddplab="${DDPLAB:-$root/build/ddplab}"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --quick) quick=quick; shift ;;
    --no-collective-check) check=--no-collective-check; shift ;;
    -h | --help) sed -n "2,16p" "$0"; exit 0 ;;
    *) ddplab=$1; shift ;;
    esac
done
python=${DDP_TORCH_PYTHON:-/usr/bin/python3}

. "$root/bench/lib.sh"
bench_need_ddplab "$ddplab"
bench_need_torch "$python" torch.distributed

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -n "$quick" ] && export DDP_BENCH_QUICK=1

results() { grep -o 'RESULT [a-z]* [0-9.eE+-]*' | awk '{print $2, $3}'; }
keep_best() {
    local -n best=$1
    if [ -z "${best[$2]:-}" ] || awk -v a="$3" -v b="${best[$2]}" 'BEGIN{exit !(a<b)}'; then
        best[$2]=$3
    fi
}

# PyTorch's two processes, torchrun's environment by hand.
torch_run() {
    local port
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local out=$(mktemp)
    for r in 0 1; do
        RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
            "$python" "$root/bench/ddp/ddp_step_torch.py" >>"$out" 2>&1 &
    done
    wait
    cat "$out"
    rm -f "$out"
}

declare -A ours theirs
for ((r = 1; r <= rounds; r++)); do
    out=$("$ddplab" -n 2 $check "$root/bench/ddp/ddp_step.lua")
    while read -r name secs; do keep_best ours "$name" "$secs"; done < <(results <<<"$out")
    while read -r name secs; do keep_best theirs "$name" "$secs"; done < <(torch_run | results)
done

for name in a b c; do
    if [ -z "${ours[$name]:-}" ] || [ -z "${theirs[$name]:-}" ]; then
        echo "bench: case $name produced no result (ddplab: '${ours[$name]:-}', PyTorch: '${theirs[$name]:-}')" >&2
        exit 2
    fi
done

model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "DDP step (forward, MSE, backward with all-reduce, Adam, zero_grad), 2 ranks, Gloo, CPU, 1 thread each, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: ${model:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1-3 /proc/loadavg);" \
    "best of $rounds rounds, median of windows, rank 0's clock; ddplab ${check:-with its collective check}"
awk -v a_o="${ours[a]}" -v a_t="${theirs[a]}" -v b_o="${ours[b]}" -v b_t="${theirs[b]}" \
    -v c_o="${ours[c]}" -v c_t="${theirs[c]}" '
function fmt(s) { return s < 1e-3 ? sprintf("%8.1f us", s * 1e6) : sprintf("%8.2f ms", s * 1e3) }
function rel(o, t) { return o <= t ? sprintf("%.2fx faster", t / o) : sprintf("%.2fx slower", o / t) }
BEGIN {
    printf "%-52s %11s %11s  %-14s %s\n", "case", "ddplab", "PyTorch", "ratio", "target"
    oka = a_t / a_o >= 3
    printf "%-52s %11s %11s  %-14s %s\n", "(a) Linear(5,10)-ReLU-Linear(10,5), local batch 64",
        fmt(a_o), fmt(a_t), rel(a_o, a_t), ">= 3x faster: " (oka ? "met" : "MISSED")
    okb = b_o / b_t <= 1.1
    printf "%-52s %11s %11s  %-14s %s\n", "(b) MLP 256-1024-1024-256, local batch 256",
        fmt(b_o), fmt(b_t), rel(b_o, b_t), "no slower: " (okb ? "met" : "MISSED")
    okc = c_o / c_t <= 1.1
    printf "%-52s %11s %11s  %-14s %s\n", "(c) MLP 256-1024x4-256, batch 128, 4 MiB buckets",
        fmt(c_o), fmt(c_t), rel(c_o, c_t), "no slower: " (okc ? "met" : "MISSED")
    exit !(oka && okb && okc)
}'
