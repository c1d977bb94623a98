-- torch/ordered.lua — an ordered table of name -> value, for state dicts.
--
-- Lua tables forget insertion order; PyTorch's state_dict is an OrderedDict whose order
-- matters (it is the order of model:parameters()). A dict made by ordered.new() is a
-- plain table for reading (sd["fc1.weight"]), and pairs(sd) walks the keys in the order
-- they were first added, because the metatable's __pairs follows a key list kept beside
-- the table. New keys are added through __newindex, so `sd[k] = v` keeps the order too;
-- a key set to nil is skipped by pairs and, when set again, comes back in its old place.
local M = {}

-- dict -> {keys = {...}, pos = {key -> index}}; weak keys, so dicts are collected
local order = setmetatable({}, {__mode = "k"})

local mt = {__name = "state_dict"}

mt.__newindex = function(d, k, v)
  if v == nil then return end
  local o = order[d]
  if not o.pos[k] then
    o.keys[#o.keys + 1] = k
    o.pos[k] = #o.keys
  end
  rawset(d, k, v)
end

mt.__pairs = function(d)
  local keys = order[d].keys
  local i = 0
  return function()
    while true do
      i = i + 1
      local k = keys[i]
      if k == nil then return nil end
      local v = rawget(d, k)
      if v ~= nil then return k, v end
    end
  end, d, nil
end

-- #sd: how many keys have a value
mt.__len = function(d)
  local n = 0
  for _ in mt.__pairs(d) do n = n + 1 end
  return n
end

-- Prints like Python's OrderedDict([('fc1.weight', tensor(...)), ...]).
mt.__tostring = function(d)
  local parts = {}
  for k, v in mt.__pairs(d) do
    parts[#parts + 1] = string.format("('%s', %s)", tostring(k), tostring(v))
  end
  return "OrderedDict([" .. table.concat(parts, ", ") .. "])"
end

-- A new, empty ordered dict.
function M.new()
  local d = setmetatable({}, mt)
  order[d] = {keys = {}, pos = {}}
  return d
end

-- True when d was made by M.new().
function M.is_ordered(d)
  return type(d) == "table" and getmetatable(d) == mt
end

-- The keys that have a value, in order (a new list). For a plain table: its string keys,
-- sorted, so that error messages and files come out the same every time.
function M.keys(d)
  local list = {}
  if M.is_ordered(d) then
    for k in mt.__pairs(d) do list[#list + 1] = k end
  else
    for k in pairs(d) do list[#list + 1] = k end
    table.sort(list, function(a, b) return tostring(a) < tostring(b) end)
  end
  return list
end

return M
