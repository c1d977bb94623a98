#!/usr/bin/env bash
# test_repl_signals.sh — the REPL ended from outside, through a real terminal (tmux):
# SIGTERM at the prompt (with a half-typed line) ends the session as Ctrl-D would, with
# status 143, the terminal's settings restored (not left raw), no rank or process a rank
# started in the background left running, and no private directory left behind; closing
# the terminal (SIGHUP) while a chunk runs leaves nothing behind either.
. "$(dirname "$0")/tmux_lib.sh"
mkdir -p "$WORK/run"
export XDG_RUNTIME_DIR="$WORK/run" # the tmux server started below passes it on

# Whether process $1 is gone (or a zombie waiting for init: it runs no more).
gone() { ! [ -e "/proc/$1/stat" ] || grep -q '^[0-9]* (.*) [ZX] ' "/proc/$1/stat" 2>/dev/null; }
# Fails unless every process in $* is gone within about 30 s (killing what is left).
expect_gone() {
    for p in "$@"; do
        for _ in $(seq 300); do gone "$p" && break; sleep 0.1; done
        gone "$p" || { kill -KILL "$p"; fail "process $p outlived the session"; }
    done
}
expect_clean_run_dir() {
    [ -z "$(ls -A "$WORK/run")" ] || fail "$1: left behind in the runtime dir: $(ls -A "$WORK/run")"
}
# The pid of the driver: the pane's process, or its child when the pane runs a shell.
driver_pid() {
    local pane
    pane=$(tmux -L "$SOCK" display -p '#{pane_pid}')
    if [ "$(ps -o comm= -p "$pane")" = ddplab ]; then echo "$pane"; else pgrep -P "$pane" -x ddplab; fi
}

# The pane's shell records the exit status and the terminal settings after ddplab.
tmux -L "$SOCK" new-session -d -x 200 -y 50 \
    "env HOME='$WORK' XDG_STATE_HOME='$WORK/state' NO_COLOR=1 '$DDPLAB' -n 2; echo \$? > '$WORK/status'; stty -a > '$WORK/stty'; sleep 60"
wait_for "[all]>"
send "os.execute('sleep 77 > /dev/null 2>&1 & echo \$! > $WORK/bg' .. os.getenv('RANK'))"
wait_for "[0,1] true"
keys "print('half"
driver=$(driver_pid)
[ -n "$driver" ] || fail "no driver process found"
ranks=$(pgrep -P "$driver" | tr '\n' ' ')
kill -TERM "$driver"
for _ in $(seq 300); do [ -s "$WORK/stty" ] && break; sleep 0.1; done
[ -s "$WORK/stty" ] || fail "ddplab did not end after SIGTERM"
[ "$(cat "$WORK/status")" = 143 ] || fail "SIGTERM: exit status $(cat "$WORK/status"), expected 143"
grep -qw -- '-icanon' "$WORK/stty" && fail "the terminal was left without line editing (-icanon)"
grep -qw -- '-echo' "$WORK/stty" && fail "the terminal was left without echo (-echo)"
# shellcheck disable=SC2086
expect_gone $ranks $(cat "$WORK/bg0" "$WORK/bg1")
expect_clean_run_dir "SIGTERM"
tmux -L "$SOCK" kill-server 2>/dev/null

# SIGHUP: the terminal goes away while both ranks loop. A server of its own: the first one
# may still be going away, and a client that reaches it fails.
SOCK="$SOCK-hup"
tmux -L "$SOCK" new-session -d -x 200 -y 50 \
    "env HOME='$WORK' XDG_STATE_HOME='$WORK/state' NO_COLOR=1 '$DDPLAB' -n 2"
wait_for "[all]>"
send "while true do end"
sleep 0.5
driver=$(driver_pid)
[ -n "$driver" ] || fail "no driver process found"
ranks=$(pgrep -P "$driver" | tr '\n' ' ')
tmux -L "$SOCK" kill-server
# shellcheck disable=SC2086
expect_gone "$driver" $ranks
expect_clean_run_dir "SIGHUP"
echo "test_repl_signals: all checks passed"
