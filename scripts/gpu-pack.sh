#!/bin/sh
# gpu-pack.sh [BUILD] [OUT]: gathers what a GPU machine needs to run scripts/gpu-check.sh
# into OUT (default build-gpu/, ignored by git, carried to the machine with the working
# tree): the ddplab binary built here (BUILD, default build/, a CUDA build) and the
# Debian packages of the shared libraries it needs that the GPU machine lacks (Lua 5.4,
# libedit, Gloo, cJSON, libsodium and their own dependencies; see
# ../shared/gpu/README.md). The GPU machine has no network, so this runs here first.
# About 10 MiB in all; carry limits are 64 MiB.
set -eu
build=${1:-build}
out=${2:-build-gpu}
if ! grep -q '^#define DDP_HAVE_CUDA 1' "$build/generated/build_config.h" 2>/dev/null; then
  echo "gpu-pack: $build is not a CUDA build (configure it where nvcc is found)" >&2
  exit 1
fi
mkdir -p "$out/debs"
cp "$build/ddplab" "$out/ddplab"
# NCCL called from C, the reference of bench/gpu/run.sh
cmake --build "$build" --target bench_nccl_raw >/dev/null
cp "$build/bench_nccl_raw" "$out/bench_nccl_raw"
cd "$out/debs"
# Runtime packages only: the binary is built here, nothing is compiled there.
apt-get download \
  liblua5.4-0 libedit2 libbsd0 libmd0 libtinfo6 \
  libgloo0 libhiredis0.14 libibverbs1 libnl-3-200 libnl-route-3-200 \
  libcjson1 libsodium23 \
  2>&1 | grep -v '^Get:' || true
cd - >/dev/null
du -sh "$out"
ls "$out/debs"
