# lib.sh — what the bench scripts share (sourced, not run): the checks every one of them
# makes before it measures anything. Each exits 2, with the reason, when the machine is
# not ready, which is the scripts' "setup problem" status.

# The ddplab binary at $1 exists.
bench_need_ddplab() {
    if [ ! -x "$1" ]; then
        echo "bench: no ddplab binary at $1; build it first (make build)" >&2
        exit 2
    fi
}

# Python $1 can import module $2 (torch or torch.distributed).
bench_need_torch() {
    if ! "$1" -c "import $2" 2>/dev/null; then
        echo "bench: $1 cannot import $2 (Debian: python3-torch)" >&2
        exit 2
    fi
}

# The helper program $2 (a CMake target of bench/bench.cmake) next to ddplab in folder $1:
# built there when $1 is a CMake build folder; a folder of copied binaries must hold it.
bench_need_target() {
    local build=$1 target=$2
    if [ -n "$build" ] && [ -f "$build/CMakeCache.txt" ] && command -v cmake >/dev/null; then
        if ! cmake --build "$build" --target "$target" -j2 >/dev/null; then
            echo "bench: building $target failed (cmake --build $build --target $target)" >&2
            exit 2
        fi
    elif [ -z "$build" ] || [ ! -x "$build/$target" ]; then
        echo "bench: no $target in ${build:-the ddplab folder} and no CMake build folder to" \
            "build it in; build first (make build)" >&2
        exit 2
    fi
}
