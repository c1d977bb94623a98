#!/usr/bin/env bash
# test_readme.sh — README.md's REPL sessions stay true. Every fenced block of README.md
# whose first line is `$ ddplab -n N` (nothing else on the line) is a session: the lines
# typed after its prompts are typed, one at a time, into that command running in a real
# terminal (tmux, tmux_lib.sh), and the screen must equal the rest of the block exactly,
# trailing spaces aside. Tabs are compared as the terminal shows them (spaces to the next
# multiple of 8), which is how the README writes them.
. "$(dirname "$0")/tmux_lib.sh"
readme="${DDP_SOURCE_DIR:?set DDP_SOURCE_DIR to the source tree}/README.md"

# A prompt at the start of a screen line: "> " and ">> " on one rank, "[all]> ",
# "[0,2]> " and "  ...> " on several; an empty prompt loses its space in tmux's capture.
prompt_re='^(\[[a-z0-9,-]+\]>|>>?| *\.\.\.>)( |$)'

# Writes the sessions of README.md to $WORK/session.1, .2, ...; prints how many.
awk -v dir="$WORK" '
    /^```/ {
        if (inside) { inside = 0; if (out) close(out); out = ""; next }
        inside = 1; first = 1; next
    }
    inside && first {
        first = 0
        if ($0 ~ /^\$ ddplab -n [0-9]+$/) out = dir "/session." (++n)
    }
    inside && out { print > out }
    END { print n + 0 }' "$readme" >"$WORK/count"
sessions=$(cat "$WORK/count")
[ "$sessions" -ge 2 ] || { echo "FAIL: expected the -n 1 and -n 4 sessions in README.md, found $sessions"; exit 1; }

prompts() { screen | sed 's/ *$//' | grep -cE "$prompt_re"; }
# Polls (bounded, about 60 s: a 4-rank init_process_group on a loaded machine) until the
# screen shows at least $1 prompts.
wait_prompts() {
    for _ in $(seq 600); do
        [ "$(prompts)" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "waited for prompt $1"
}

failed=0
for ((i = 1; i <= sessions; i++)); do
    file="$WORK/session.$i"
    command=$(head -n 1 "$file")
    tail -n +2 "$file" | expand | sed 's/ *$//' >"$WORK/expected"
    grep -E "$prompt_re" "$WORK/expected" | sed -E "s/$prompt_re//" >"$WORK/typed"
    n=$(wc -l <"$WORK/typed")
    rm -f "$WORK/status"
    start_ddplab "${command#\$ ddplab }"
    k=0
    while IFS= read -r line; do
        k=$((k + 1))
        wait_prompts "$k"
        send "$line"
    done <"$WORK/typed"
    wait_prompts $((n + 1))
    # the screen up to, not including, the last (empty) prompt
    screen | expand | sed 's/ *$//' | awk -v re="$prompt_re" '
        { line[NR] = $0 } $0 ~ re { last = NR }
        END { for (j = 1; j < last; j++) print line[j] }' >"$WORK/got"
    ctrl_d_and_wait
    if ! diff -u "$WORK/expected" "$WORK/got" >"$WORK/diff"; then
        echo "FAIL: README.md's session '$command' differs from what ddplab shows (- README, + ddplab):"
        cat "$WORK/diff"
        failed=$((failed + 1))
    elif [ "$(cat "$WORK/status" 2>/dev/null)" != 0 ]; then
        echo "FAIL: '$command' did not end with status 0 after Ctrl-D"
        failed=$((failed + 1))
    else
        echo "ok   $command ($n typed lines)"
    fi
    tmux -L "$SOCK" kill-server 2>/dev/null
done
[ "$failed" = 0 ] || exit 1
echo "README sessions: all $sessions match"
