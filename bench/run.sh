#!/usr/bin/env bash
# run.sh — the training-step benchmark: ddplab against PyTorch eager on the CPU, one
# thread each, in the same run, printing both times per step and the ratio against the
# foundation issue's targets. It builds nothing: it uses build/ddplab (`make build`).
#
#   bench/run.sh [--rounds N] [--quick] [path/to/ddplab]
#
# Each round runs ddplab then PyTorch; the best (lowest) median of the rounds is kept for
# each, so a burst of load from elsewhere on the machine hurts neither side unfairly.
# --quick shrinks the windows to check the script itself (figures then mean nothing).
# Both sides time wall time on a monotonic clock (torch.time / time.perf_counter).
# Exit status: 0 when both targets are met, 1 when one is missed, 2 on a setup problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=2
quick=""
ddplab="${DDPLAB:-$root/build/ddplab}"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --quick) quick=quick; shift ;;
    -h | --help) sed -n "2,14p" "$0"; exit 0 ;;
    *) ddplab=$1; shift ;;
    esac
done
python=${DDP_TORCH_PYTHON:-/usr/bin/python3}

. "$root/bench/lib.sh"
bench_need_ddplab "$ddplab"
bench_need_torch "$python" torch

# one thread each: BLAS, OpenMP and PyTorch's intra-op pool
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# Prints "<case> <seconds>" lines from a program's RESULT lines (rank labels stripped).
results() { grep -o 'RESULT [a-z]* [0-9.eE+-]*' | awk '{print $2, $3}'; }
# Keeps the lower of the value in array $1 at key $2 and $3.
keep_best() {
    local -n best=$1
    if [ -z "${best[$2]:-}" ] || awk -v a="$3" -v b="${best[$2]}" 'BEGIN{exit !(a<b)}'; then
        best[$2]=$3
    fi
}

[ -n "$quick" ] && export DDP_BENCH_QUICK=1
declare -A ours theirs
clock=""
for ((r = 1; r <= rounds; r++)); do
    out=$("$ddplab" -n 1 "$root/bench/train_step.lua")
    clock=$(grep -o 'RESULT [a-z]* [0-9.eE+-]* [a-z._]*' <<<"$out" | awk '{print $4; exit}')
    while read -r name secs; do keep_best ours "$name" "$secs"; done < <(results <<<"$out")
    while read -r name secs; do keep_best theirs "$name" "$secs"; done \
        < <("$python" "$root/bench/train_step_torch.py" | results)
done

for name in a b; do
    if [ -z "${ours[$name]:-}" ] || [ -z "${theirs[$name]:-}" ]; then
        echo "bench: case $name produced no result (ddplab: '${ours[$name]:-}', PyTorch: '${theirs[$name]:-}')" >&2
        exit 2
    fi
done

model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "train step (forward, MSE, backward, Adam, zero_grad), CPU, 1 thread each, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: ${model:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores; best of $rounds rounds, median of windows;" \
    "clock: ${clock:-?} in ddplab, the same kind in PyTorch"
awk -v a_ours="${ours[a]}" -v a_torch="${theirs[a]}" -v b_ours="${ours[b]}" -v b_torch="${theirs[b]}" '
function fmt(s) { return s < 1e-3 ? sprintf("%8.1f us", s * 1e6) : sprintf("%8.2f ms", s * 1e3) }
BEGIN {
    printf "%-44s %11s %11s  %-22s %s\n", "case", "ddplab", "PyTorch", "ratio", "target"
    sa = a_torch / a_ours
    oka = sa >= 5
    printf "%-44s %11s %11s  %-22s %s\n", "(a) Linear(5,10)-ReLU-Linear(10,5), batch 64",
        fmt(a_ours), fmt(a_torch), sprintf("%.2fx faster", sa), ">= 5x faster: " (oka ? "met" : "MISSED")
    rb = b_ours / b_torch
    okb = rb <= 1.1
    printf "%-44s %11s %11s  %-22s %s\n", "(b) MLP 256-1024-1024-256, batch 256",
        fmt(b_ours), fmt(b_torch), (rb >= 1 ? sprintf("%.2fx slower", rb) : sprintf("%.2fx faster", 1 / rb)),
        "<= 1.1x slower: " (okb ? "met" : "MISSED")
    exit !(oka && okb)
}'
