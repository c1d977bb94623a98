#!/usr/bin/env bash
# test_lessons_verify.sh — --verify-lessons and --lesson without a terminal: a lesson
# with a defect per step (tests/fixtures/lessons/broken.lua) fails, naming lesson, step
# and rank for each; --lesson raises the rank count to the lesson's minimum; the check's
# verdicts come back per rank in plain words; progress is written to the XDG state
# directory (atomically: no temporary file left) and read back by the next session.
DDPLAB=${DDPLAB:?}
SRC=${DDP_SOURCE_DIR:?}
source "$(dirname "$0")/check_lib.sh"
export NO_COLOR=1 XDG_STATE_HOME="$work/state" LANG=C.UTF-8 LC_ALL=
BROKEN="$SRC/tests/fixtures/lessons/broken.lua"

out=$("$DDPLAB" -n 2 --verify-lessons "$BROKEN" 2>&1)
status=$?
[ "$status" = 1 ] || fail "a broken lesson verified with status $status: $out"
grep -qx "broken.lua step 1: ok" <<<"${out//$SRC\/tests\/fixtures\/lessons\//}" ||
    fail "step 1 (sound) is not ok: $out"
grep -q "step 2: FAIL: the check passes before the solution was typed" <<<"$out" ||
    fail "a check that cannot fail was not caught: $out"
grep -q "step 3: FAIL: the check does not pass after the solution" <<<"$out" ||
    fail "a solution that does not pass was not caught: $out"
grep -q "✗ rank 1: z is not 0 here" <<<"$out" || fail "step 3 does not name rank 1: $out"
grep -q "step 4: FAIL:.*broken" <<<"$out" || fail "a check that raises was not called broken: $out"
grep -q "defect in the lesson" <<<"$out" || fail "a raising check is not called a defect: $out"
grep -q "step 5: FAIL: the setup raised an error on rank 0: .*setup broke" <<<"$out" ||
    fail "a failing setup does not name rank 0: $out"
grep -q "5 steps verified on 2 ranks: 4 failed" <<<"$out" || fail "no summary: $out"

out=$("$DDPLAB" -n 1 --verify-lessons "$BROKEN" 2>&1)
grep -q "skipped (it needs 2 ranks, this run has 1)" <<<"$out" || fail "no skip on 1 rank: $out"

out=$("$DDPLAB" --verify-lessons 99 2>&1)
[ $? = 1 ] || fail "--verify-lessons 99 did not fail"
grep -q "there is no lesson 99" <<<"$out" || fail "lesson 99 not named: $out"

# --lesson on 1 rank: lesson 1 needs 2, so 2 start; the REPL reads its input from a pipe.
out=$(printf ':check\nrank = os.getenv("RANK")\n:check\nrank = tonumber(os.getenv("RANK"))\n:check\n:next\n' |
    "$DDPLAB" -n 1 --lesson 1 2>&1)
grep -q "lesson 1 needs 2 ranks: starting 2 instead of 1" <<<"$out" || fail "no rank bump: $out"
grep -q "Step 1 of 4" <<<"$out" || fail "step 1 not shown: $out"
grep -q "✗ every rank: there is no global \`rank\` yet" <<<"$out" || fail "no verdict for all: $out"
grep -q "✗ rank 1: \`rank\` is the string \"1\": wrap it in tonumber" <<<"$out" ||
    fail "rank 1's verdict not in plain words: $out"
grep -q "✓ step 1 done" <<<"$out" || fail "step 1 not done: $out"
grep -q "Step 2 of 4" <<<"$out" || fail ":next did not show step 2: $out"
P="$XDG_STATE_HOME/ddplab/lessons.lua"
[ -f "$P" ] || fail "no progress file at $P"
grep -q '\["step"\] = 2' "$P" || fail "progress does not say step 2: $(cat "$P")"
[ -e "$P.tmp" ] && fail "the temporary progress file was left behind"

# The next session: :lessons marks lesson 1 as where the learner is, with 1 of 4 done.
out=$(printf ':lessons\n:lesson\n' | "$DDPLAB" -n 2 -i 2>&1)
grep -qE "▸ +1 +1/4 +Ranks and the world" <<<"$out" || fail ":lessons lacks the progress mark: $out"
grep -q "Step 2 of 4" <<<"$out" || fail ":lesson alone does not show the current step: $out"

# Chinese from LANG; an error in the learner's chunk reaches them unchanged.
out=$(printf ':lesson 1\nrank = nosuch.field\n:check\n' | LANG=zh_CN.UTF-8 "$DDPLAB" -n 2 -i 2>&1)
grep -q "第 1 课" <<<"$out" || fail "LANG=zh did not pick Chinese: $out"
grep -q "attempt to index a nil value (global 'nosuch')" <<<"$out" ||
    fail "the learner's error was hidden: $out"
grep -q "还没有全局变量 \`rank\`" <<<"$out" || fail "no Chinese verdict: $out"
# :reset gives fresh ranks and runs the step's setup again (lesson 3 step 1: w differs per
# rank); :lang zh switches and shows the step in Chinese; :solution! needs no try.
out=$(printf ':lesson 3\ndist.broadcast(w, 0)\n:check\n:reset\n:check\n:lang zh\n:solution!\n:lang en\n' |
    "$DDPLAB" -n 2 -i 2>&1)
grep -q "✓ step 1 done" <<<"$out" || fail "lesson 3 step 1 did not pass: $out"
grep -q "fresh ranks for step 1" <<<"$out" || fail ":reset said nothing: $out"
grep -q "✗ every rank: w on rank 1 differs from rank 0's: did every rank call broadcast?" <<<"$out" ||
    fail "after :reset the setup did not run again: $out"
grep -q "语言：zh" <<<"$out" || fail ":lang zh not taken: $out"
grep -q "广播：让每个 rank 拥有同一个模型" <<<"$out" || fail ":lang zh did not redraw in Chinese: $out"
grep -q "ddplab 写法（Lua）" <<<"$out" || fail ":solution! did not show the solution: $out"
# DDPLAB_LUA_PATH=<tree>/lua also loads the built-in lessons from <tree>/lessons (a teacher
# edits without rebuilding).
mkdir -p "$work/tree/lua" "$work/tree/lessons"
sed 's/en = "Ranks and the world"/en = "Ranks, edited"/' "$SRC/lessons/01-ranks.lua" >"$work/tree/lessons/01-ranks.lua"
out=$(printf ':lessons\n' | DDPLAB_LUA_PATH="$work/tree/lua" "$DDPLAB" -n 2 -i 2>&1)
grep -q "Ranks, edited" <<<"$out" || fail "the lesson was not read from the source tree: $out"
finish test_lessons_verify
