-- torch/show.lua — what :show prints on each rank: values by value, so that the driver
-- can put the ranks side by side and compare them. A list of numbers shows as
-- {1, 2, 3}, a list of tensors one per line, a module by its parameters (name: tensor),
-- other tables by their sorted fields; several values (":show a, b") are separated by
-- two spaces on one line (a tab would break the columns), or by lines when one of them
-- spans several.
local M = {}

local MAX_ITEMS = 20

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t, n
end

local function scalar(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function show(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or torch.is_tensor(v) then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring and not nn.is_module(v) then return tostring(v) end
  if nn.is_module(v) and type(v.__show) == "function" then return v:__show() end -- DDP's summary
  if nn.is_module(v) then
    local lines = {}
    for _, np in ipairs(v:named_parameters()) do
      lines[#lines + 1] = np[1] .. ": " .. tostring(np[2])
    end
    if #lines == 0 then return tostring(v) end
    return table.concat(lines, "\n")
  end
  if depth > 2 then return "{...}" end
  local list, n = is_list(v)
  if n == 0 then return "{}" end
  local parts, multiline = {}, false
  if list then
    for i = 1, math.min(#v, MAX_ITEMS) do
      local s = show(v[i], depth + 1)
      if s:find("\n") or torch.is_tensor(v[i]) or nn.is_module(v[i]) then multiline = true end
      parts[#parts + 1] = s
    end
    if #v > MAX_ITEMS then parts[#parts + 1] = "... (" .. #v .. " in all)" end
    if multiline then return table.concat(parts, "\n") end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  for i = 1, math.min(#keys, MAX_ITEMS) do
    local k = keys[i]
    local s = show(v[k], depth + 1)
    local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. scalar(k) .. "]"
    if s:find("\n") or torch.is_tensor(v[k]) then multiline = true end
    parts[#parts + 1] = name .. " = " .. s
  end
  if #keys > MAX_ITEMS then parts[#parts + 1] = "... (" .. #keys .. " fields)" end
  if multiline then return table.concat(parts, "\n") end
  return "{" .. table.concat(parts, ", ") .. "}"
end
M.value = show

-- :show's chunk returns show.values(...): one string for all the values.
function M.values(...)
  local n = select("#", ...)
  local parts, multiline = {}, false
  for i = 1, n do
    parts[i] = show((select(i, ...)))
    if parts[i]:find("\n") then multiline = true end
  end
  return table.concat(parts, multiline and "\n" or "  ")
end

return M
