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

return M
