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
# Polls (bounded: about 60 s, the machine may be loaded) until at least $2 (default 1)
# screen lines match the extended regex $1.
wait_re() {
    for _ in $(seq 1200); do
        [ "$(screen | grep -cE -- "$1")" -ge "${2:-1}" ] && return 0
        sleep 0.05
    done
    fail "waited for ${2:-1} x a line matching: $1"
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
# Milliseconds since the epoch.
now_ms() { date +%s%3N; }
# Whether process $1 runs (a zombie waiting for its reaper does not).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }
# Forgets what the screen showed (counts of lines start from 0 again).
reset_screen() { tmux -L "$SOCK" send-keys -R \; clear-history; }
# Polls (bounded, about 60 s) until the last line on the screen is an empty prompt.
wait_prompt() {
    for _ in $(seq 1200); do
        [ "$(screen | sed -e 's/ *$//' | grep -v '^$' | tail -1)" = "[all]>" ] && return 0
        sleep 0.05
    done
    fail "waited for the prompt"
}
# For a session started under a shell that ran `stty -a > $WORK/stty` after ddplab:
# presses Ctrl-D, waits for "ddplab-ended 0" and checks that the terminal is not raw.
end_session_sane() {
    tmux -L "$SOCK" send-keys C-d
    wait_for "ddplab-ended 0"
    for _ in $(seq 50); do [ -s "$WORK/stty" ] && break; sleep 0.1; done
    grep -qE '(^| )icanon( |$)' "$WORK/stty" && grep -qE '(^| )echo( |$)' "$WORK/stty" ||
        fail "the terminal was left raw after ddplab ended: $(cat "$WORK/stty")"
}
