#!/bin/sh
# install-deps.sh — installs the Debian/Ubuntu packages ddplab builds and tests with,
# only those missing, through sudo when not root. Called by `make build/run/test`.
set -eu
packages="build-essential cmake pkg-config liblua5.4-dev libedit-dev libcmocka-dev
libgloo-dev libopenblas-dev libcjson-dev libsodium-dev tmux iproute2 python3-numpy
clang"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ddplab: please install:$missing (this script knows only apt-get)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "ddplab: installing$missing"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
