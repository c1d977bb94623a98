-- course_check.lua: runs the lessons' steps by hand, before (and beside) the lesson engine.
--
-- ddplab -n N scripts/course_check.lua lessons/04-forward-backward.lua [step]
--
-- For every step of the lesson, on every rank: run the setup, run the check (it must
-- fail), run the reference solution, run the check again (it must pass). It implements
-- the check toolkit `c` of LESSON_FORMAT.md with a file exchange between the ranks (so
-- c.gather is not one of the learner's collectives, as in the engine). The engine's
-- `ddplab --verify-lessons` is the real test; this script is how the course branch
-- checked its lessons while the engine was being written. It also checks that every
-- title, text and hint has English and Chinese. It prints a failed check's step and
-- message (every check with COURSE_CHECK_VERBOSE=1) and a summary per rank, and exits
-- non-zero on a failure. Loaded with dofile it returns run(path, steps) instead, for
-- tests/lua/test_course_lessons.lua. The whole lesson runs as one chunk, so a step whose
-- failure is a rank ending its REPL chunk early cannot be run here.

local rank = tonumber(os.getenv("RANK"))
local world = tonumber(os.getenv("WORLD_SIZE"))
local runs = 0
local dir

-- Serialise plain values and tensors as Lua source.
local function ser(v)
  local tv = type(v)
  if v == nil then return "nil" end
  if tv == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v then return "(0/0)" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    return string.format("%.17g", v)
  end
  if tv == "boolean" then return tostring(v) end
  if tv == "string" then return string.format("%q", v) end
  if torch.is_tensor(v) then
    local t = v:detach():contiguous()
    local flat = t:reshape(-1):tolist()
    local parts = {}
    for i, x in ipairs(flat) do parts[i] = ser(x) end
    local shape = {}
    for i = 0, t:dim() - 1 do shape[#shape + 1] = t:size(i) end
    return string.format("T(%q,{%s},{%s})", t.dtype.name, table.concat(shape, ","),
      table.concat(parts, ","))
  end
  if tv == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. ser(k) .. "]=" .. ser(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("course_check: cannot gather a " .. tv)
end

local function T(dtype, shape, data)
  local t = torch.tensor(#data > 0 and data or {0}, {dtype = torch[dtype]})
  if #data == 0 then t = t:narrow(0, 0, 0) end
  return t:reshape(shape)
end

local function sleep() os.execute("sleep 0.01") end

local ngather = 0
local function gather(value)
  ngather = ngather + 1
  local base = string.format("%s/g%d_", dir, ngather)
  local f = assert(io.open(base .. rank .. ".tmp", "w"))
  f:write("return " .. ser(value))
  f:close()
  os.rename(base .. rank .. ".tmp", base .. rank .. ".lua")
  local out = {}
  for r = 0, world - 1 do
    local name = base .. r .. ".lua"
    local t0 = os.time()
    while true do
      local g = io.open(name)
      if g then
        local src = g:read("a")
        g:close()
        out[r + 1] = assert(load(src, "=gather", "t", setmetatable({T = T}, {__index = _G})))()
        break
      end
      if os.time() - t0 > 60 then error("course_check: rank " .. r .. " never gathered") end
      sleep()
    end
  end
  return out
end

local function equal(a, b)
  if torch.is_tensor(a) and torch.is_tensor(b) then
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
  end
  if type(a) == "table" and type(b) == "table" then
    for k, x in pairs(a) do if not equal(x, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  return a == b
end

local function close(a, b, tol)
  tol = tol or 1e-5
  if torch.is_tensor(a) and torch.is_tensor(b) then
    return a.shape == b.shape and a:double():allclose(b:double(), tol, tol)
  end
  if type(a) == "number" and type(b) == "number" then
    return math.abs(a - b) <= tol * math.max(1, math.abs(a), math.abs(b))
  end
  return false
end

local typed, last_err
local c = {
  rank = rank, world_size = world,
  global = function(name) return rawget(_G, name) end,
  gather = gather, equal = equal, close = close,
  is_tensor = torch.is_tensor,
  initialized = function() return dist.is_available() and dist.is_initialized() end,
  ran = function(pattern)
    for _, chunk in ipairs(typed) do if chunk:find(pattern) then return true end end
    return false
  end,
  last_error = function() return last_err end,
}

local function text(msg)
  if type(msg) == "table" then return (msg.en or "?") .. " | " .. (msg.zh or "?") end
  return tostring(msg)
end

local function run_chunk(src, name)
  local fn, err = load(src, "=" .. name)
  if not fn then return false, err end
  return pcall(fn)
end

local failed, passed
local verbose = os.getenv("COURSE_CHECK_VERBOSE")
local function report(i, what, ok, msg)
  if verbose or not ok then
    print(string.format("step %d %s: %s%s", i, what, ok and "ok" or "FAIL",
      msg and ("  (" .. text(msg) .. ")") or ""))
  end
  if ok then passed = passed + 1 else failed = failed + 1 end
end

-- Every text has both languages.
local function both(t, where)
  if type(t) ~= "table" or type(t.en) ~= "string" or type(t.zh) ~= "string" then
    report(0, where, false, "missing en or zh text")
  end
end
-- run(path, steps): checks the lesson at `path`, only the steps listed in `steps` (a
-- set of step numbers) when given; returns the number of failed checks.
local function run(path, steps)
  runs = runs + 1
  dir = string.format("/tmp/course_check_%s_%d", os.getenv("MASTER_PORT"), runs)
  ngather = 0
  failed, passed = 0, 0
  os.execute("mkdir -p " .. dir)
  local lesson = assert(loadfile(path))()
  both(lesson.title, "title")
  if lesson.intro then both(lesson.intro, "intro") end

  for i, step in ipairs(lesson.steps) do
    if not steps or steps[i] then
      both(step.text, "text")
      for h, hint in ipairs(step.hints or {}) do both(hint, "hint " .. h) end
      typed, last_err = {}, nil
      if step.setup then
        local ok, err = run_chunk(step.setup, "setup")
        if not ok then report(i, "setup", false, err) end
      end
      local ok, verdict, msg = pcall(step.check, c)
      if not ok then
        report(i, "check raised before the solution", false, verdict)
      else
        report(i, "fails before the solution", not verdict, verdict and "it passed" or msg)
      end
      typed[#typed + 1] = step.solution
      local sok, serr = run_chunk(step.solution, "stdin")
      if not sok then last_err = tostring(serr) end
      ok, verdict, msg = pcall(step.check, c)
      if not ok then
        report(i, "check raised after the solution", false, verdict)
      else
        report(i, "passes after the solution", verdict == true, msg or (not sok and serr) or nil)
      end
    end
  end

  gather(true) -- everyone has read every gather; then rank 0 cleans up
  io.open(dir .. "/done_" .. rank, "w"):close()
  if rank == 0 then
    for r = 0, world - 1 do
      while not io.open(dir .. "/done_" .. r) do sleep() end
    end
    os.execute("rm -rf " .. dir)
  end
  print(string.format("%s: %d checks ok, %d failed", path, passed, failed))
  return failed
end

if arg and arg[0] and arg[0]:find("course_check%.lua$") then
  assert(arg[1], "usage: ddplab -n N scripts/course_check.lua LESSON.lua [step]")
  local only = tonumber(arg[2])
  local failed = run(arg[1], only and {[only] = true} or nil)
  if failed > 0 then error(failed .. " failure(s) in " .. arg[1]) end
end
return run
