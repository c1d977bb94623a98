#!/usr/bin/env bash
# test_repl_bytes.sh — what reaches the ranks and the screen, through a real terminal:
# Chinese input and bytes that are not UTF-8 reach the chunk unchanged (as in script
# mode); a rank's control characters cannot clear the screen (shown as ^[), colour and
# the label survive a \r progress line; :show shows tables by value (lists, a module's
# parameters) and compares them by value; :show 1, 2 keeps its columns.
source "$(dirname "$0")/tmux_lib.sh"

start_ddplab -n 2
wait_for "[all]>"
send 'print(#"中文")'
wait_for "[0,1] 6"
keys 'print(#"'
tmux -L "$SOCK" send-keys -H ff 80
keys '")'
tmux -L "$SOCK" send-keys Enter
wait_for "[0,1] 2"
send 'print("before\27[2Jafter")'
wait_for "[0,1] before^[[2Jafter"
send 'local _ = io.write("10%\r50%\r100%\n")'
wait_for "[0,1] 100%"
send ':show {1, 2, 3}'
wait_for "{1, 2, 3}   {1, 2, 3}"
wait_count "✓ all equal" 1
send 'torch.manual_seed(1); m = nn.Linear(2, 1)'
send ':show m'
wait_for "weight: tensor("
wait_count "✓ all equal" 2
send ':show m:parameters()'
wait_count "✓ all equal" 3
send ':show 1, 2'
wait_for "1  2   1  2"
ctrl_d_and_wait
echo "test_repl_bytes: all checks passed"
