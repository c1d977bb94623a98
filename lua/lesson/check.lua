-- lesson/check.lua — the rank side of the lesson engine: loads a lesson (built in, or a
-- teacher's file), builds the check toolkit `c` (LESSON_FORMAT.md, docs/lessons.md) and
-- runs one step's check in the learner's own Lua state, then sends the verdict to the
-- driver as a typed event (ddplab.rank.verdict), which renders it. Nothing is printed
-- here: the learner's output stays theirs.
--
-- c.gather goes through the driver (ddplab.rank.gather), never through the learner's
-- process group, so it works before init_process_group and is not one of their
-- collectives. A check that raises is reported as a defect of the lesson.
local R = require "ddplab.rank"

local M = {}

-- ---- serialising values for gather (numbers keep every bit: %a) ---------------------

local function ser(v, depth)
  depth = depth or 0
  if depth > 20 then error("gather: the value nests too deeply", 0) end
  local t = type(v)
  if v == nil then return "nil" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v then return "(0/0)" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    return string.format("%a", v)
  end
  if t == "string" then return string.format("%q", v) end
  if torch.is_tensor(v) then
    local flat = v:detach():cpu():contiguous():reshape(-1)
    local vals = {}
    for i, x in ipairs(flat:tolist()) do vals[i] = ser(x, depth + 1) end
    local shape = {}
    for i = 1, #v.shape do shape[i] = v.shape[i] end
    return string.format("T(%q,{%s},{%s})", v.dtype.name, table.concat(shape, ","),
                         table.concat(vals, ","))
  end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      if type(k) ~= "number" and type(k) ~= "string" then
        error("gather: a table key of type " .. type(k) .. " cannot be gathered", 0)
      end
      parts[#parts + 1] = "[" .. ser(k, depth + 1) .. "]=" .. ser(x, depth + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("gather: a " .. t .. " cannot be gathered (numbers, strings, booleans, nil, " ..
        "tensors and plain tables of those can)", 0)
end

local function make_tensor(dtype, shape, vals)
  local numel = 1
  for _, s in ipairs(shape) do numel = numel * s end
  if numel == 0 then return torch.zeros(shape, {dtype = dtype}) end
  if dtype == "bool" then
    for i, x in ipairs(vals) do vals[i] = x ~= 0 and x ~= false end
  end
  local t = torch.tensor(vals, {dtype = dtype})
  if #shape == 0 then return t:reshape({}) end
  return t:reshape(shape)
end

local function deser(s)
  local f = assert(load("return " .. s, "=gather", "t", {T = make_tensor, math = math}))
  return f()
end

-- ---- the toolkit -----------------------------------------------------------------------

local function equal(a, b)
  if torch.is_tensor(a) or torch.is_tensor(b) then
    if not (torch.is_tensor(a) and torch.is_tensor(b)) then return false end
    if a.dtype ~= b.dtype or a.shape ~= b.shape then return false end
    return a:equal(b)
  end
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function close(a, b, tol)
  tol = tol or 1e-5
  if torch.is_tensor(a) and torch.is_tensor(b) then
    if a.shape ~= b.shape then return false end
    return a:double():allclose(b:double(), tol, tol * 1e-3)
  end
  if type(a) == "number" and type(b) == "number" then
    return math.abs(a - b) <= tol * math.max(1, math.abs(a), math.abs(b))
  end
  if type(a) == "table" and type(b) == "table" then
    for k, v in pairs(a) do if not close(v, b[k], tol) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  return equal(a, b)
end

-- The toolkit for this rank. info: {ran = {chunks typed in this step},
-- errors = {[rank] = last error message}}.
local function toolkit(info)
  local rank = tonumber(os.getenv("RANK")) or 0
  local c = {
    rank = rank,
    world_size = tonumber(os.getenv("WORLD_SIZE")) or 1,
    equal = equal,
    close = close,
    is_tensor = torch.is_tensor,
  }
  function c.global(name) return rawget(_G, name) end
  function c.initialized()
    local ok, v = pcall(dist.is_initialized)
    return ok and v
  end
  function c.gather(value)
    local got = R.gather(ser(value))
    local out = {}
    for i = 1, c.world_size do
      if got[i] then out[i] = deser(got[i]) end
    end
    return out
  end
  function c.ran(pattern)
    for _, chunk in ipairs(info.ran or {}) do
      if chunk:find(pattern) then return true end
    end
    return false
  end
  function c.last_error()
    return (info.errors or {})[rank]
  end
  return c
end

-- Loads the lesson from `source`: "lessons.NN-slug" (built in) or a file path.
local function load_lesson(source)
  if source:match("^lessons%.") then
    package.loaded[source] = nil -- a fresh copy: the table may have been changed
    return require(source)
  end
  return dofile(source)
end

local function text_of(msg, lang)
  if type(msg) == "table" then return msg[lang] or msg.en or "" end
  return msg ~= nil and tostring(msg) or ""
end

-- Runs step `step` of the lesson at `source` and sends the verdict to the driver.
function M.run(source, step, lang, info)
  local ok, lesson = pcall(load_lesson, source)
  if not ok then
    R.verdict("defect", "the lesson cannot be loaded: " .. tostring(lesson))
    return
  end
  local s = lesson.steps and lesson.steps[step]
  if not s or type(s.check) ~= "function" then
    R.verdict("defect", "step " .. step .. " of the lesson has no check")
    return
  end
  local c = toolkit(info or {})
  local okc, pass, msg = xpcall(s.check, debug.traceback, c)
  if not okc then
    R.verdict("defect", "the check of step " .. step .. " raised an error (a defect in the " ..
              "lesson, not your mistake): " .. tostring(pass))
  elseif pass then
    R.verdict("pass", text_of(msg, lang))
  else
    R.verdict("fail", text_of(msg, lang))
  end
end

M.serialise, M.deserialise, M.equal, M.close = ser, deser, equal, close
return M
