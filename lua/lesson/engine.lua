-- lesson/engine.lua — the driver's side of the lesson engine, in a trusted Lua state of
-- its own (src/runtime/lesson.c; docs/architecture.md says why): it loads lesson files
-- (data and check functions; the checks themselves run in the ranks, lesson/check.lua),
-- keeps the learner's place and progress, renders the text (lesson/text.lua) and builds
-- the chunks that the driver sends to the ranks (a step's setup, its check). It never
-- sees the learner's Lua state.
--
-- Progress lives in one file under the XDG state directory, written to a temporary file
-- and renamed, so that a crash never leaves half of it.
local text = require "lesson.text"

local M = {}

local S = {
  lang = "en", color = false, width = 80, world = 1, state_path = nil,
  lesson = nil, source = nil, id = nil, step = 1, hints = 0, tried = false,
  ran = {}, errors = {}, progress = {done = {}, current = nil, lang = nil},
}

local MAX_RAN = 200

-- ---- strings --------------------------------------------------------------------------

local UI = {
  en = {
    step = "Step %d of %d", lesson = "Lesson %s", none = "no lesson is open: :lessons lists them, :lesson 1 opens the first",
    no_more_hints = "no more hints for this step (:solution shows the answer)",
    hint = "hint %d of %d", solution_first = "try the step first (type your attempt; :hint helps): :solution! shows it anyway",
    solution = "a solution", pytorch = "in PyTorch", lua = "in ddplab (Lua)",
    done_step = "✓ step %d done", next = ":next goes on", lesson_done = "✓ lesson %s done: %s",
    course_done = "that was the last lesson: well done", first = "this is the first step",
    last = "this is the last step: :check it, then :next opens the next lesson",
    index = "Lessons (✓ done, ▸ where you are; steps done of steps):", ranks_min = "needs %d ranks",
    continue = "You were at lesson %s, step %d (%s). :next-step shows it again; type :lesson %s to go on, or :lessons for the list.",
    offer = "Welcome back. You were at lesson %d, step %d: %s",
    offer_q = "Continue there? [Y/n] ",
    welcome = "New here? :lesson 1 starts the course (:lessons lists every lesson).",
    no_lesson = "there is no lesson %s: :lessons lists them",
    lang = "language: %s", bad_lang = "the languages are en and zh",
    ranks_needed = "lesson %s needs at least %d ranks and this session has %d: start it with ddplab --lesson %s (or ddplab -n %d)",
    setup = "(setting up the step on every rank)",
    check_pass = "every rank passes", check_fail = "not yet",
    defect = "a defect in the lesson (tell its author):",
    rank = "rank %d",
    reset = "fresh ranks for step %d",
  },
  zh = {
    step = "第 %d 步，共 %d 步", lesson = "第 %s 课", none = "还没有打开课程：:lessons 列出所有课程，:lesson 1 打开第一课",
    no_more_hints = "这一步没有更多提示了（:solution 显示答案）",
    hint = "提示 %d / %d", solution_first = "先自己试一试（输入你的代码；:hint 可以帮忙）；一定要看的话用 :solution!",
    solution = "参考答案", pytorch = "PyTorch 写法", lua = "ddplab 写法（Lua）",
    done_step = "✓ 第 %d 步完成", next = ":next 继续", lesson_done = "✓ 第 %s 课完成：%s",
    course_done = "这是最后一课：恭喜完成全部课程", first = "这已经是第一步",
    last = "这是最后一步：先 :check，然后 :next 打开下一课",
    index = "课程列表（✓ 已完成，▸ 当前位置；已完成步数/总步数）：", ranks_min = "需要 %d 个 rank",
    offer = "欢迎回来。你上次在第 %d 课第 %d 步：%s",
    offer_q = "从那里继续吗？[Y/n] ",
    welcome = "第一次来？:lesson 1 开始课程（:lessons 列出所有课程）。",
    no_lesson = "没有第 %s 课：:lessons 列出所有课程",
    lang = "语言：%s", bad_lang = "可选语言为 en 和 zh",
    ranks_needed = "第 %s 课至少需要 %d 个 rank，而本会话只有 %d 个：请用 ddplab --lesson %s（或 ddplab -n %d）启动",
    setup = "（正在每个 rank 上准备这一步）",
    check_pass = "所有 rank 都通过", check_fail = "还没有完成",
    defect = "课程本身有缺陷（请告诉作者）：",
    rank = "rank %d",
    reset = "第 %d 步：全新的 rank",
  },
}

local function ui(key, ...)
  local s = (UI[S.lang] or UI.en)[key] or UI.en[key]
  if select("#", ...) > 0 then return string.format(s, ...) end
  return s
end

local function tr(v)
  if type(v) == "table" then return v[S.lang] or v.en or "" end
  return v or ""
end
M.tr = tr

local function style() return {color = S.color} end

-- ---- the built-in lessons and loading ----------------------------------------------

-- Built-in lessons in order: {module = "lessons.01-ranks", number = 1, id = "01-ranks"}.
function M.builtin()
  local list = {}
  for _, name in ipairs(package.embedded or {}) do
    local id = name:match("^lessons%.(.+)$")
    local n = id and tonumber(id:match("^(%d+)"))
    if n then list[#list + 1] = {module = name, number = n, id = id} end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- Checks that a lesson table has what the engine needs; returns it or raises in words.
local function validate(l, where)
  if type(l) ~= "table" then error(where .. " does not return a table", 0) end
  if type(l.title) ~= "table" and type(l.title) ~= "string" then
    error(where .. ": the lesson has no title", 0)
  end
  if type(l.steps) ~= "table" or #l.steps == 0 then error(where .. ": the lesson has no steps", 0) end
  for i, s in ipairs(l.steps) do
    if type(s.check) ~= "function" then error(where .. ": step " .. i .. " has no check function", 0) end
    if s.text == nil then error(where .. ": step " .. i .. " has no text", 0) end
  end
  l.min_ranks = l.min_ranks or 1
  return l
end

-- Finds a lesson by number ("3"), id ("03-broadcast") or path; returns
-- {lesson =, source =, id =, number =} or nil and a message.
function M.find(spec)
  spec = tostring(spec)
  local n = tonumber(spec)
  for _, b in ipairs(M.builtin()) do
    if (n and b.number == n) or b.id == spec or b.module == spec then
      package.loaded[b.module] = nil
      local ok, l = pcall(require, b.module)
      if not ok then return nil, tostring(l) end
      local okv, err = pcall(validate, l, b.module)
      if not okv then return nil, err end
      return {lesson = l, source = b.module, id = b.id, number = b.number}
    end
  end
  if not n and (spec:find("/") or spec:match("%.lua$")) then
    local f, err = loadfile(spec, "t")
    if not f then return nil, err end
    local ok, l = pcall(f)
    if not ok then return nil, tostring(l) end
    local okv, verr = pcall(validate, l, spec)
    if not okv then return nil, verr end
    return {lesson = l, source = spec, id = spec, number = nil}
  end
  return nil, ui("no_lesson", spec)
end

-- ---- progress --------------------------------------------------------------------------

local function serialise(v, indent)
  indent = indent or ""
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = indent .. "  [" .. string.format("%q", k) .. "] = " ..
                          serialise(v[k], indent .. "  ") .. ","
    end
    return "{\n" .. table.concat(parts, "\n") .. "\n" .. indent .. "}"
  end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function load_progress()
  if not S.state_path then return end
  local f = io.open(S.state_path, "r")
  if not f then return end
  local src = f:read("a")
  f:close()
  local chunk = load(src, "=progress", "t", {})
  local ok, p = pcall(chunk or error)
  if ok and type(p) == "table" then
    S.progress = {done = type(p.done) == "table" and p.done or {}, current = p.current,
                  lang = p.lang}
  end
end

-- Writes the progress file: to a temporary file first, then renamed over the old one.
local function save_progress()
  if not S.state_path then return end
  local tmp = S.state_path .. ".tmp"
  local f = io.open(tmp, "w")
  if not f then return end
  f:write("-- ddplab: lessons done and where the learner is (written by ddplab)\nreturn ",
          serialise(S.progress), "\n")
  f:close()
  os.rename(tmp, S.state_path)
end

local function steps_done(id)
  local d = S.progress.done[id]
  local n = 0
  if type(d) == "table" then for _ in pairs(d) do n = n + 1 end end
  return n
end

-- ---- the session ----------------------------------------------------------------------

-- opts: {state_path=, color=, width=, world=, lang=}; lang from the environment, unless a
-- :lang choice was saved.
function M.init(opts)
  S.state_path, S.color, S.world = opts.state_path, opts.color, opts.world
  S.world = (S.world and S.world > 0) and S.world or math.huge
  S.width = math.min(opts.width or 80, 80)
  load_progress()
  S.lang = S.progress.lang or opts.lang or "en"
  return true
end

function M.set_width(w) S.width = math.min(tonumber(w) or 80, 80) end
function M.set_color(c) S.color = c end
function M.is_open() return S.lesson ~= nil end
function M.lang() return ui("lang", S.lang) end

function M.set_lang(l)
  if l ~= "en" and l ~= "zh" then return false, ui("bad_lang") end
  S.lang = l
  S.progress.lang = l
  save_progress()
  return true, ui("lang", l)
end

local function title_line()
  local t = tr(S.lesson.title)
  local label = S.number and ui("lesson", S.number) or S.id
  return text.paint(style(), "heading", label .. " · " .. t)
end

-- The text of the current step: heading, text, the PyTorch equivalent.
function M.step_text()
  if not S.lesson then return ui("none") .. "\n" end
  local s = S.lesson.steps[S.step]
  local out = {title_line() .. "  " .. text.paint(style(), "dim",
               "(" .. ui("step", S.step, #S.lesson.steps) .. ")"), ""}
  out[#out + 1] = text.render(style(), tr(s.text), S.width)
  if s.pytorch then
    out[#out + 1] = text.paint(style(), "bold", "  " .. ui("pytorch") .. ":")
    for _, l in ipairs(text.code_lines(style(), s.pytorch, "    ")) do out[#out + 1] = l end
    out[#out + 1] = ""
  end
  out[#out + 1] = text.paint(style(), "dim", ":check  :hint  :solution  :reset  :next  :prev  :lessons  :help")
  return table.concat(out, "\n") .. "\n"
end

local function enter_step(n)
  S.step, S.hints, S.tried, S.ran, S.errors = n, 0, false, {}, {}
  S.progress.current = {id = S.id, step = n}
  save_progress()
end

-- Opens a lesson; returns true and its text, or false and why.
function M.open(spec, step)
  local found, err = M.find(spec)
  if not found then return false, err end
  if found.lesson.min_ranks > S.world then
    local label = found.number or found.id
    return false, ui("ranks_needed", label, found.lesson.min_ranks, S.world, label,
                     found.lesson.min_ranks)
  end
  S.lesson, S.source, S.id, S.number = found.lesson, found.source, found.id, found.number
  enter_step(math.max(1, math.min(tonumber(step) or 1, #S.lesson.steps)))
  local intro = ""
  if S.step == 1 and S.lesson.intro then
    intro = title_line() .. "\n\n" .. text.render(style(), tr(S.lesson.intro), S.width) .. "\n"
  end
  return true, intro .. M.step_text()
end

-- The minimum number of ranks of a lesson (1 when unknown).
function M.min_ranks(spec)
  local found = M.find(spec)
  return found and found.lesson.min_ranks or 1
end

-- :next / :prev: true and the text of the step (or of the next lesson) moved to, or
-- false with a line to show.
function M.move(delta)
  if not S.lesson then return false, ui("none") end
  local n = S.step + delta
  if n < 1 then return false, ui("first") end
  if n > #S.lesson.steps then
    if not S.number then return false, ui("last") end
    local nextl
    for _, b in ipairs(M.builtin()) do
      if b.number > S.number then nextl = b; break end
    end
    if not nextl then return false, ui("course_done") end
    local ok, t = M.open(nextl.number)
    if not ok then return false, t end
    return true, t
  end
  enter_step(n)
  return true, M.step_text()
end

function M.hint()
  if not S.lesson then return ui("none") .. "\n" end
  local hints = S.lesson.steps[S.step].hints or {}
  if S.hints >= #hints then return ui("no_more_hints") .. "\n" end
  S.hints = S.hints + 1
  return text.paint(style(), "bold", ui("hint", S.hints, #hints) .. ": ") ..
         text.render(style(), tr(hints[S.hints]), S.width)
end

-- :solution (force: :solution!): the reference solution beside the PyTorch code, once the
-- learner has tried (typed a chunk in this step); or why not.
function M.solution(force)
  if not S.lesson then return ui("none") .. "\n" end
  if not S.tried and not force then return ui("solution_first") .. "\n" end
  local s = S.lesson.steps[S.step]
  if not s.solution then return "(no solution)\n" end
  if s.pytorch then
    return text.side_by_side(style(), ui("lua"), s.solution, ui("pytorch"), s.pytorch, S.width)
  end
  return table.concat(text.code_lines(style(), s.solution), "\n") .. "\n"
end

-- The current step's setup chunk, or nil.
function M.setup_chunk()
  if not S.lesson then return nil end
  return S.lesson.steps[S.step].setup
end

-- Notes a chunk the learner typed in this step and the errors it raised per rank
-- (errors: {[rank] = message}).
function M.record(chunk, errors)
  if not S.lesson then return end
  S.tried = true
  S.ran[#S.ran + 1] = chunk
  if #S.ran > MAX_RAN then table.remove(S.ran, 1) end
  for r, e in pairs(errors or {}) do S.errors[r] = e end
end

local function literal(v) return serialise(v) end

-- The chunk that runs the current step's check on the ranks (lesson/check.lua).
function M.check_chunk(info)
  if not S.lesson then return nil end
  info = info or {ran = S.ran, errors = S.errors}
  return string.format("require('lesson.check').run(%q, %d, %q, %s)", S.source, S.step, S.lang,
                       literal(info))
end

-- The outcome of :check: verdicts = {[rank] = {kind = "pass"|"fail"|"defect", message}}
-- for the ranks that answered. Returns the lines to show; marks the step done when every
-- rank passed.
function M.checked(verdicts, world)
  local st = style()
  local out = {}
  local all_pass, groups, order = true, {}, {}
  for r = 0, world - 1 do
    local v = verdicts[r] or {kind = "fail", message = ""}
    if v.kind ~= "pass" then all_pass = false end
    local key = v.kind .. "\0" .. (v.message or "")
    if not groups[key] then groups[key] = {}; order[#order + 1] = key end
    table.insert(groups[key], r)
  end
  local function ranks_label(list)
    if #list == world and world > 1 then return "every rank" end
    local parts = {}
    for _, r in ipairs(list) do parts[#parts + 1] = tostring(r) end
    return (#list == 1 and "rank " or "ranks ") .. table.concat(parts, ",")
  end
  if all_pass then
    local done = S.progress.done[S.id] or {}
    done[tostring(S.step)] = true
    S.progress.done[S.id] = done
    save_progress()
    out[#out + 1] = text.paint(st, "pass", ui("done_step", S.step)) .. " — " ..
                    (S.step < #S.lesson.steps and ui("next") or
                     ui("lesson_done", S.number or S.id, tr(S.lesson.title)) .. " — " .. ui("next"))
    return table.concat(out, "\n") .. "\n", true
  end
  for _, key in ipairs(order) do
    local kind, msg = key:match("^(%a+)%z(.*)$")
    local who = ranks_label(groups[key])
    local mark = kind == "pass" and text.paint(st, "pass", "✓") or text.paint(st, "fail", "✗")
    if kind == "defect" then msg = ui("defect") .. " " .. msg end
    if msg == "" then msg = kind == "pass" and "ok" or ui("check_fail") end
    out[#out + 1] = mark .. " " .. who .. ": " .. msg
  end
  return table.concat(out, "\n") .. "\n", false
end

-- The index: every built-in lesson with a mark (✓ done, ▸ current) and steps done.
function M.index()
  local st = style()
  local out = {ui("index")}
  local cur = S.progress.current and S.progress.current.id
  local rows = {}
  for _, b in ipairs(M.builtin()) do
    package.loaded[b.module] = nil
    local ok, l = pcall(require, b.module)
    local good = ok and type(l) == "table"
    local title = good and tr(l.title) or "(cannot be loaded)"
    local nsteps = good and type(l.steps) == "table" and #l.steps or 0
    rows[#rows + 1] = {b = b, title = title, nsteps = nsteps,
                       min = good and l.min_ranks or 1}
  end
  for _, row in ipairs(rows) do
    local b, done = row.b, steps_done(row.b.id)
    local mark = (row.nsteps > 0 and done >= row.nsteps) and text.paint(st, "pass", "✓")
                 or (b.id == cur and "▸" or " ")
    local ranks = row.min > S.world and "  " .. text.paint(st, "dim", "(" .. ui("ranks_min", row.min) .. ")") or ""
    out[#out + 1] = string.format(" %s %2d  %s  %s%s", mark, b.number,
                                  text.paint(st, "dim", string.format("%2d/%-2d", done, row.nsteps)),
                                  row.title, ranks)
  end
  return table.concat(out, "\n") .. "\n"
end

-- Where the learner left off: lesson number and step, or nil (nothing saved, or done).
function M.resume_point()
  local c = S.progress.current
  if type(c) ~= "table" or not c.id then return nil end
  local found = M.find(c.id)
  if not found then return nil end
  return found.number or found.id, tonumber(c.step) or 1, tr(found.lesson.title)
end

function M.offer_text()
  local n, step, title = M.resume_point()
  if not n then return nil end
  return ui("offer", n, step, title) .. "\n"
end
function M.offer_question() return ui("offer_q") end

-- Opens the lesson and step the learner left off at.
function M.resume()
  local n, step = M.resume_point()
  if not n then return false, ui("none") end
  return M.open(n, step)
end

-- The built-in lesson numbers, for completion ("1 2 3").
function M.numbers()
  local t = {}
  for _, b in ipairs(M.builtin()) do t[#t + 1] = tostring(b.number) end
  return table.concat(t, " ")
end

-- What --verify-lessons runs: one line per lesson, "spec\tsteps\tmin_ranks\tlabel";
-- which: nil for every built-in lesson, else a number, id or path.
function M.plan(which)
  local out = {}
  local specs = {}
  if which then
    specs[1] = which
  else
    for _, b in ipairs(M.builtin()) do specs[#specs + 1] = b.id end
  end
  for _, spec in ipairs(specs) do
    local found, err = M.find(spec)
    if not found then return false, err end
    out[#out + 1] = string.format("%s\t%d\t%d\t%s", spec, #found.lesson.steps,
                                  found.lesson.min_ranks,
                                  found.number and string.format("lesson %02d", found.number)
                                  or found.id)
  end
  return true, table.concat(out, "\n")
end

-- The current step's solution (for --verify-lessons), or nil.
function M.solution_chunk()
  return S.lesson and S.lesson.steps[S.step].solution
end

function M.welcome() return ui("welcome") .. "\n" end
function M.source() return S.source end
function M.position() return S.id, S.step, S.lesson and #S.lesson.steps or 0 end
function M.reset_line() return ui("reset", S.step) .. "\n" end
function M.setup_line() return ui("setup") end

return M
