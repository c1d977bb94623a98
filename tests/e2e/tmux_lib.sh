# tmux_lib.sh — what the REPL tests share (sourced, not run): a private tmux server with
# its own socket (never the default one: other tmux users on the machine stay untouched),
# a scratch HOME, and bounded polling of the screen. Defines WORK, SOCK and the helpers
# below; a test sets nothing before sourcing it but DDPLAB.
set -u
: "${DDPLAB:?set DDPLAB to the ddplab binary}"
command -v tmux >/dev/null || { echo "FAIL: tmux is needed (scripts/install-deps.sh)"; exit 1; }

WORK=$(mktemp -d)
SOCK="ddplab-e2e-$(basename "$0" .sh)-$$"
cleanup() { tmux -L "$SOCK" kill-server 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The whole screen and its scrollback, wrapped lines joined.
screen() { tmux -L "$SOCK" capture-pane -p -J -S -; }
fail() {
    echo "FAIL: $*"
    echo "---- screen ----"
    screen 2>/dev/null
    exit 1
}
# Polls the screen (bounded: about 30 s, generous for a loaded machine) until it holds
# the fixed string $1.
wait_for() {
    for _ in $(seq 300); do
        screen | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    fail "waited for: $1"
}
# How many screen lines hold the fixed string $1.
count() { screen | grep -cF -- "$1"; }
# Polls (bounded, as wait_for) until the screen holds the fixed string $1 at least $2 times.
wait_count() {
    for _ in $(seq 300); do
        [ "$(count "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "waited for $2 x: $1"
}
# Types $1 literally (no Enter); send also presses Enter.
keys() { tmux -L "$SOCK" send-keys -l -- "$1"; }
send() { keys "$1"; tmux -L "$SOCK" send-keys Enter; }
# Starts ddplab with the given arguments in the private terminal, in the scratch HOME,
# without colors; its exit status lands in $WORK/status.
start_ddplab() {
    tmux -L "$SOCK" new-session -d -x 220 -y 60 \
        "env HOME='$WORK' XDG_STATE_HOME='$WORK/state' NO_COLOR=1 '$DDPLAB' $*; echo \$? > '$WORK/status'"
}
# Presses Ctrl-D and waits (bounded, as wait_for) until ddplab's exit status is in
# $WORK/status.
ctrl_d_and_wait() {
    tmux -L "$SOCK" send-keys C-d
    for _ in $(seq 300); do [ -s "$WORK/status" ] && break; sleep 0.1; done
}
