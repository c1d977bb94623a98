-- torch/util.lua — small helpers shared by ddplab's Lua library.
local M = {}

-- Where this library's files come from: "@lua/" when embedded in the binary, or the
-- DDPLAB_LUA_PATH folder when loaded from a source tree.
local LIB = debug.getinfo(1, "S").source:gsub("torch/util%.lua$", "")

-- Raises msg positioned at the learner's line: the innermost caller that is not part of
-- ddplab's lua/ library (so nn.Linear(2.5, 3) blames the script, not nn.lua).
function M.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return error(msg, 0) end
    if info.what ~= "C" and info.source:sub(1, #LIB) ~= LIB then break end
    level = level + 1
  end
  error(msg, level)
end

-- "a tensor", "a module", "a number", ... : what a value is, for error messages.
function M.describe(v)
  local t, mt = type(v), getmetatable(v)
  if t == "userdata" and type(mt) == "table" and rawget(mt, "__name") == "torch.Tensor" then
    return "a tensor"
  end
  if t == "table" and type(mt) == "table" and rawget(mt, "__ddp_module") then return "a module" end
  if t == "nil" then return "nil" end
  return (t:match("^[aeiou]") and "an " or "a ") .. t
end

-- Raises the error for `obj.method(...)` typed for `obj:method(...)` (Lua then passes
-- no obj as self: self is nil, or the first argument). `var` is how the docs call such
-- an object ("model", "opt"), `noun` what it is ("module", "optimizer"), `args` the
-- arguments to show ("" or "x"); `self` is what came instead.
function M.dot_call_error(method, var, noun, self, args)
  args = args or ""
  local came = ""
  if self ~= nil then came = ": " .. M.describe(self) .. " came in its place" end
  M.raise(string.format("%s: call it as %s:%s(%s), with a colon (in Lua, %s.%s(%s) passes no %s%s)",
                        method, var, method, args, var, method, args, noun, came))
end

-- The entry of the list `known` closest to `name` by edit distance, or nil when none is
-- close enough to suggest (further than half the name away).
function M.closest_name(name, known)
  local function distance(a, b)
    local row = {}
    for j = 0, #b do row[j] = j end
    for i = 1, #a do
      local diag = row[0]
      row[0] = i
      for j = 1, #b do
        local up = row[j]
        local best = diag + (a:byte(i) == b:byte(j) and 0 or 1)
        best = math.min(best, row[j] + 1, row[j - 1] + 1)
        row[j] = best
        diag = up
      end
    end
    return row[#b]
  end
  local best, best_d
  for _, k in ipairs(known) do
    local d = distance(name, k)
    if not best or d < best_d then best, best_d = k, d end
  end
  if best and best_d * 2 <= math.max(#name, 2) then return best end
  return nil
end

-- Raises "fn: unknown option 'lrr' (did you mean 'lr'?)" when the options table `opts`
-- has a key not in the list `known`; nil passes. Every options table of the Lua library
-- goes through here, so that a misspelt option is never silently ignored.
function M.check_options(opts, fn, known)
  if opts == nil then return end
  if type(opts) ~= "table" then
    M.raise(string.format("%s: options must be a table ({name = value}), got %s", fn, M.describe(opts)))
  end
  local set = {}
  for _, k in ipairs(known) do set[k] = true end
  for k in pairs(opts) do
    if type(k) ~= "string" then
      M.raise(string.format("%s: options are given by name ({name = value}); found a %s key", fn, type(k)))
    end
    if not set[k] then
      local near = M.closest_name(k, known)
      if near then
        M.raise(string.format("%s: unknown option '%s' (did you mean '%s'?)", fn, k, near))
      end
      M.raise(string.format("%s: unknown option '%s' (it takes: %s)", fn, k, table.concat(known, ", ")))
    end
  end
end

return M
