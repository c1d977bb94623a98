#!/usr/bin/env bash
# interaction.sh — the interaction benchmark of the many-ranks issue: the median round
# trip of an empty chunk through the real driver on 1, 2, 4, 8, 16 and 32 ranks (target:
# under 2 ms at 8), against the least any driver could do, measured in the same run (one
# byte to N forked children over Unix sockets and one byte back from each).
#
#   bench/interaction.sh [--calls N] [--ranks 1,2,4,8,16,32] [--no-collective-check]
#                        [--quick] [path/to/ddplab]
#
# It builds and runs bench_roundtrip (bench/roundtrip.c, linked against ddp_runtime and
# calling driver_start / driver_run / driver_stop from src/runtime/driver.h) in the build
# folder of the ddplab given (default build/). The empty chunk is timed twice per rank
# count: in a fresh world, and after dist.init_process_group{backend="gloo"}, when every
# chunk's end also tells the store that the rank finished it (the collective check's
# bookkeeping; --no-collective-check turns that off). The REPL adds only its own
# parsing and rendering to this round trip.
# Exit status: 0 when the target is met, 1 when missed, 2 on a setup problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
calls=300
ranks=1,2,4,8,16,32
check=()
ddplab="${DDPLAB:-$root/build/ddplab}"
while [ $# -gt 0 ]; do
    case "$1" in
    --calls) calls=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --no-collective-check) check=(--no-collective-check); shift ;;
    --quick) calls=20; ranks=1,8; shift ;;
    -h | --help) sed -n "2,17p" "$0"; exit 0 ;;
    *) ddplab=$1; shift ;;
    esac
done

. "$root/bench/lib.sh"
bench_need_ddplab "$ddplab"
build=$(cd "$(dirname "$ddplab")" && pwd)
bench_need_target "$build" bench_roundtrip
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

out=$("$build/bench_roundtrip" --ranks "$ranks" --calls "$calls" "${check[@]}")
model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "empty chunk round trip through the driver, $(date -u +%Y-%m-%dT%H:%MZ)${check[*]:+ (${check[*]})}"
echo "machine: ${model:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores; $calls calls per" \
    "rank count after 20 warm-up calls; median and 90th percentile"
grep '^RESULT' <<<"$out" | awk '
function t(s) { return s < 1e-3 ? sprintf("%6.0f us", s * 1e6) : sprintf("%6.2f ms", s * 1e3) }
BEGIN {
    printf "%5s | %9s %9s | %9s %9s | %9s %9s %6s | %9s\n", "ranks", "fresh", "p90",
        "init'"'"'ed", "p90", "floor", "p90", "ratio", "start"
    verdict = ""
}
{
    printf "%5d | %9s %9s | %9s %9s | %9s %9s %5.1fx | %9s\n", $2, t($3), t($4), t($8),
        t($9), t($5), t($6), $8 / $5, t($7)
    if ($2 == 8) {
        met = $3 < 2e-3 && $8 < 2e-3
        verdict = sprintf("target: median at 8 ranks under 2 ms: %s (fresh %s, after init %s)",
            met ? "met" : "MISSED", t($3), t($8))
    }
}
END {
    print "fresh: no process group; init'"'"'ed: after dist.init_process_group; floor: the"
    print "echo reference; ratio: init'"'"'ed / floor; start: driver_start (launch, connect, load Lua)"
    if (verdict == "") { print "(8 ranks not measured: no verdict)"; exit 0 }
    print verdict
    exit !met
}'
