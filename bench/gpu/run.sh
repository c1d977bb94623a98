#!/usr/bin/env bash
# run.sh — the GPU issue's benchmark: ddplab against PyTorch on the same GPU in the same
# run, and ddplab's all_reduce against NCCL called from C, with the ratios next to the
# targets (docs/performance.md records the figures).
#
#   bench/gpu/run.sh [--quick] [DDPLAB [NCCL_RAW]]
#
# DDPLAB defaults to build/ddplab, NCCL_RAW to build/bench_nccl_raw (cmake --build build
# --target bench_nccl_raw; scripts/gpu-pack.sh carries both). DDP_RUN_LIBS, when set, is
# put before LD_LIBRARY_PATH for those two programs only (scripts/gpu-check.sh sets it to
# the libraries it unpacked); PyTorch runs with the machine's own. DDP_TORCH_PYTHON picks
# the Python with torch (default python3). Exit status: 0 when every target is met, 1
# when one is missed, 2 on a setup problem.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
quick=""
[ "${1:-}" = --quick ] && { quick=1; shift; }
ddplab=${1:-$root/build/ddplab}
raw=${2:-$root/build/bench_nccl_raw}
python=${DDP_TORCH_PYTHON:-python3}
[ -x "$ddplab" ] || { echo "gpu bench: $ddplab is missing" >&2; exit 2; }
[ -x "$raw" ] || { echo "gpu bench: $raw is missing (cmake --build build --target bench_nccl_raw)" >&2; exit 2; }
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  { echo "gpu bench: $python has no torch with CUDA" >&2; exit 2; }
export DDP_BENCH_QUICK=${quick:-0}
ours() { LD_LIBRARY_PATH=${DDP_RUN_LIBS:+$DDP_RUN_LIBS:}${LD_LIBRARY_PATH:-} "$@"; }
results() { grep -o 'RESULT [a-z_0-9]* [0-9.eE+-]*' | awk '{print $2, $3}'; }

declare -A d t r
while read -r k v; do d[$k]=$v; done < <(NO_COLOR=1 ours "$ddplab" -n 1 "$root/bench/gpu/gpu_bench.lua" 2>&1 | tee /dev/stderr | results)
while read -r k v; do t[$k]=$v; done < <("$python" "$root/bench/gpu/gpu_bench_torch.py" 2>&1 | tee /dev/stderr | results)
while read -r k v; do r[$k]=$v; done < <(ours "$raw" 2>&1 | tee /dev/stderr | results)
[ -n "${d[tiny]:-}" ] && [ -n "${t[tiny]:-}" ] || { echo "gpu bench: a side printed no results" >&2; exit 2; }

missed=0
# Sets v to the verdict of the awk condition $1 (and missed when it fails).
check() { if awk "BEGIN{exit !($1)}"; then v=met; else v=MISSED; missed=1; fi; }
row() { printf '%-18s %14s %14s %10s  %-28s %s\n' "$@"; }
echo
echo "== GPU benchmark ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(date -u +%Y-%m-%dT%H:%MZ))"
row case ddplab reference ratio target verdict
ms() { awk "BEGIN{printf \"%.4f ms\", $1 * 1000}"; }
x=$(awk "BEGIN{print ${t[tiny]} / ${d[tiny]}}")
check "$x >= 10"
row tiny "$(ms "${d[tiny]}")" "$(ms "${t[tiny]}")" "${x}x" ">= 10x faster (fused Adam)" "$v"
x=$(awk "BEGIN{print ${t[tiny_graph]} / ${d[tiny]}}")
row tiny_vs_graph "$(ms "${d[tiny]}")" "$(ms "${t[tiny_graph]}")" "${x}x" "aim: >= 1x (CUDA graph)" "$(awk "BEGIN{print ($x >= 1) ? \"met\" : \"not yet\"}")"
for c in mlp mlp_tf32; do
  x=$(awk "BEGIN{print ${d[$c]} / ${t[$c]}}")
  check "$x <= 1.05"
  row "$c" "$(ms "${d[$c]}")" "$(ms "${t[$c]}")" "${x}" "<= 1.05 x PyTorch" "$v"
done
n=$((DDP_BENCH_QUICK == 1 ? 1 << 16 : 256 << 20))
# Adam counts 28 bytes a parameter; a copy moves 8 bytes a float (read + write)
adam_bw=$(awk "BEGIN{print 28 * $n / ${d[adam]} / 1e12}")
copy_bw=$(awk "BEGIN{a = 8 * $n / ${d[copy]}; b = 8 * $n / ${t[copy]}; print (a > b ? a : b) / 1e12}")
x=$(awk "BEGIN{print $adam_bw / $copy_bw}")
check "$x >= 0.9"
row adam "${adam_bw} TB/s" "${copy_bw} TB/s" "$x" ">= 0.9 x copy bandwidth" "$v"
row adam_torch "$(ms "${d[adam]}")" "$(ms "${t[adam]}")" "$(awk "BEGIN{print ${d[adam]} / ${t[adam]}}")" "(PyTorch fused, for reference)" ""
for k in $(printf '%s\n' "${!r[@]}" | sort -t_ -k2 -n); do
  [ -n "${d[$k]:-}" ] || continue
  x=$(awk "BEGIN{print ${d[$k]} / ${r[$k]}}")
  check "$x <= 1.05"
  row "$k" "$(ms "${d[$k]}")" "$(ms "${r[$k]}")" "$x" "<= 1.05 x NCCL from C" "$v"
done
exit $missed
