-- test_lesson_text.lua — the lesson engine's rendering (lua/lesson/text.lua): widths count
-- a CJK character as two columns, paragraphs wrap within the width (English at spaces,
-- Chinese between any two characters, never before closing punctuation, and no space
-- where a line break fell between Chinese characters), `code` keeps its backticks without
-- colour, fenced code is indented, and code goes side by side only when it fits.
local T = require "support"
local text = require "lesson.text"
local plain = {color = false}

T.test("widths", function()
  T.eq(text.width("abc"), 3)
  T.eq(text.width("中文"), 4)
  T.eq(text.width("a中b"), 4)
  T.eq(text.width("\27[31mred\27[0m"), 3)
  T.eq(text.width("\255\128"), 2) -- not UTF-8: a column a byte
end)

T.test("English wraps at spaces within the width", function()
  local lines = text.wrap(plain, "one two three four five six seven", 14)
  T.eq(lines, {"one two three", "four five six", "seven"})
  for _, l in ipairs(text.wrap(plain, string.rep("word ", 40), 30)) do
    T.eq(text.width(l) <= 30, true, l)
  end
end)

T.test("Chinese wraps between characters, two columns each", function()
  local lines = text.wrap(plain, "这是一个用来测试换行的句子", 10)
  T.eq(lines, {"这是一个用", "来测试换行", "的句子"})
  for _, l in ipairs(lines) do T.eq(text.width(l) <= 10, true, l) end
end)

T.test("closing punctuation never starts a line", function()
  local lines = text.wrap(plain, "一二三四，五六", 8)
  T.eq(lines, {"一二三", "四，五六"})
end)

T.test("a line break between Chinese characters adds no space", function()
  local out = text.render(plain, "第一行的文字\n接着写", 80)
  T.eq(out, "第一行的文字接着写\n")
  T.eq(text.render(plain, "an English\nline", 80), "an English line\n")
end)

T.test("code spans, headings, fences", function()
  T.eq(text.render(plain, "call `dist.broadcast(w, 0)` now", 80), "call `dist.broadcast(w, 0)` now\n")
  T.eq(text.render({color = true}, "a `b` c", 80), "a \27[36mb\27[0m c\n")
  T.eq(text.render(plain, "# Title\n\ntext\n\n```lua\nx = 1\n```", 80), "Title\n\ntext\n\n    x = 1\n")
end)

T.test("side by side when it fits, else one above the other", function()
  local wide = text.side_by_side(plain, "Lua", "f(w, 0)", "PyTorch", "f(w, src=0)", 80)
  T.eq(wide, "  Lua     │ PyTorch\n  f(w, 0) │ f(w, src=0)\n")
  local narrow = text.side_by_side(plain, "Lua", "f(w, 0)", "PyTorch", "f(w, src=0)", 20)
  T.eq(narrow, "  Lua\n    f(w, 0)\n  PyTorch\n    f(w, src=0)\n")
end)

T.done()
