#!/usr/bin/env bash
# collectives.sh — the collectives benchmark of the many-ranks issue: all_reduce,
# broadcast and all_gather through ddplab's Lua API (bench/collectives.lua) against raw
# Gloo called from C++ (bench/gloo_raw.cc, built here as the `gloo_raw` target), in the
# same run, float32, 4 B to 64 MiB, on 2 and 4 ranks. ddplab runs twice per rank count:
# with --no-collective-check and with the check on (its default).
#
#   bench/collectives.sh [--rounds N] [--ranks "2 4"] [--min-bytes B] [--max-bytes B] [--windows W]
#                        [--quick] [path/to/ddplab]
#
# It uses build/ddplab (or the path given) and builds gloo_raw in the same build folder.
# Each round runs, per rank count, raw Gloo, then ddplab without and with the check; the
# lowest time of the rounds is kept for each, so a burst of load from elsewhere hurts no
# side unfairly. Figures follow nccl-tests: algbw = bytes / time; busbw = algbw x 2(n-1)/n
# for all_reduce, algbw for broadcast, algbw x (n-1)/n for all_gather, whose bytes are
# the whole gathered output. overhead = ddplab's time / Gloo's time - 1.
# --quick runs small sizes only to check the scripts (figures then mean nothing).
# This gives the throughput tables (algbw, busbw) and a first look at the overhead; two
# separate programs differ by 20 to 40% from run to run on a shared machine, so the
# verdict on the 5% target comes from bench/overhead.sh, which times both sides in the
# same processes. Exit status: 0, or 2 on a setup problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3
ranks="2 4"
min_bytes=4
max_bytes=$((64 * 1024 * 1024))
windows=5
ddplab="${DDPLAB:-$root/build/ddplab}"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --min-bytes) min_bytes=$2; shift 2 ;;
    --max-bytes) max_bytes=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --quick) max_bytes=4096; windows=2; shift ;;
    -h | --help) sed -n "2,21p" "$0"; exit 0 ;;
    *) ddplab=$1; shift ;;
    esac
done

. "$root/bench/lib.sh"
bench_need_ddplab "$ddplab"
build=$(cd "$(dirname "$ddplab")" && pwd)
bench_need_target "$build" gloo_raw
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

data=$(mktemp /tmp/collectives.XXXXXX)
trap 'rm -f "$data"' EXIT
# Appends "<variant> <op> <ranks> <bytes> <seconds>" from a program's RESULT lines.
collect() { grep -o 'RESULT .*' | awk -v v="$1" '{print v, $2, $3, $4, $5}' >>"$data"; }

start=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
    for n in $ranks; do
        echo "round $r/$rounds, $n ranks: raw Gloo, ddplab without and with the check" >&2
        "$build/gloo_raw" -n "$n" --min-bytes "$min_bytes" --max-bytes "$max_bytes" --windows "$windows" | collect raw
        args=(--min-bytes "$min_bytes" --max-bytes "$max_bytes" --windows "$windows")
        "$ddplab" -n "$n" --no-collective-check "$root/bench/collectives.lua" "${args[@]}" |
            collect off
        "$ddplab" -n "$n" "$root/bench/collectives.lua" "${args[@]}" | collect on
    done
done

model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "collectives, float32, Gloo TCP on 127.0.0.1, $(date -u +%Y-%m-%dT%H:%MZ)," \
    "$(($(date +%s) - start)) s"
echo "machine: ${model:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores; best of $rounds" \
    "round(s), fastest of $windows windows; ranks: $ranks"
echo "time per call; GB/s = 1e9 B/s; ovh = ddplab / Gloo - 1; check = ddplab with its" \
    "collective check (default), no check = --no-collective-check"
awk '
function size(b) {
    if (b >= 1048576) return sprintf("%d MiB", b / 1048576)
    if (b >= 1024) return sprintf("%d KiB", b / 1024)
    return sprintf("%d B", b)
}
function t(s) { return s < 1e-3 ? sprintf("%7.1f us", s * 1e6) : sprintf("%7.2f ms", s * 1e3) }
function factor(op, n) {
    if (op == "all_reduce") return 2 * (n - 1) / n
    if (op == "broadcast") return 1
    return (n - 1) / n
}
{
    key = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4
    if (!(key in best) || $5 < best[key]) best[key] = $5
    if ($1 != "raw") { ops[$2] = 1; nranks[$3] = 1; sizes[$4] = 1 }
}
END {
    nops = split("all_reduce broadcast all_gather all_gather_into_tensor", order, " ")
    nsz = 0
    for (b in sizes) sz[++nsz] = b + 0
    for (i = 2; i <= nsz; i++) for (j = i; j > 1 && sz[j - 1] > sz[j]; j--) {
        x = sz[j]; sz[j] = sz[j - 1]; sz[j - 1] = x
    }
    summary = ""
    for (n = 1; n <= 1024; n++) {
        if (!(n in nranks)) continue
        for (o = 1; o <= nops; o++) {
            op = order[o]
            if (!(op in ops)) continue
            ref = op == "all_gather_into_tensor" ? "all_gather" : op
            f = factor(ref, n)
            printf "\n%s on %d ranks (busbw = algbw x %.2f)\n", op, n, f
            printf "%8s | %10s %7s %7s | %10s %7s %7s | %10s %7s %7s\n", "size",
                "Gloo", "algbw", "busbw", "no check", "busbw", "ovh", "check", "busbw", "ovh"
            max_off = -1e9; max_on = -1e9
            for (i = 1; i <= nsz; i++) {
                b = sz[i]
                kr = "raw" SUBSEP ref SUBSEP n SUBSEP b
                ko = "off" SUBSEP op SUBSEP n SUBSEP b
                kc = "on" SUBSEP op SUBSEP n SUBSEP b
                if (!(kr in best) || !(ko in best) || !(kc in best)) continue
                g = best[kr]; d = best[ko]; c = best[kc]
                printf "%8s | %10s %7.3f %7.3f | %10s %7.3f %6.1f%% | %10s %7.3f %6.1f%%\n",
                    size(b), t(g), b / g / 1e9, b / g / 1e9 * f, t(d), b / d / 1e9 * f,
                    (d / g - 1) * 100, t(c), b / c / 1e9 * f, (c / g - 1) * 100
                if (b >= 1048576) {
                    if (d / g - 1 > max_off) max_off = d / g - 1
                    if (c / g - 1 > max_on) max_on = c / g - 1
                }
            }
            if (max_off > -1e9) {
                summary = summary sprintf("%-24s %d ranks: worst overhead at >= 1 MiB: " \
                    "%6.1f%%; with the check %6.1f%%\n", op, n, max_off * 100, max_on * 100)
                seen = 1
            }
        }
    }
    if (seen) printf "\nseparate programs (for the verdict on the 5%% target: " \
        "bench/overhead.sh)\n%s", summary
}' "$data"
