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

return M
