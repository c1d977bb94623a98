-- torch/distributed_objects.lua — the object collectives of torch.distributed for plain
-- Lua values: dist.broadcast_object_list(list, src) and dist.all_gather_object(out, obj),
-- added to the `dist` table.
--
-- As PyTorch pickles an object into a byte tensor, a value is packed here into bytes
-- (string.pack: a tag per value; integers and floats kept apart, strings with any bytes,
-- booleans, tables with their keys, holes included, tensors with dtype, shape and
-- values), the bytes carried in an int64 tensor, 8 to an element. broadcast_object_list
-- broadcasts the length first and then the bytes; all_gather_object all-gathers the
-- lengths and then the bytes padded to the longest. Both go through dist.broadcast and
-- dist.all_gather, so the cross-rank check of every collective applies (a rank that
-- skips the call is named). Functions, userdata other than tensors, threads and cycles
-- cannot be sent; the error names the place in the value, before anything is sent.
local util = require "torch.util"
local dist = require "torch.distributed"

local M = {}

-- ---- packing ------------------------------------------------------------------------

local DTYPES = {
  {name = "float32", fmt = "<f", size = 4}, {name = "float64", fmt = "<d", size = 8},
  {name = "int64", fmt = "<i8", size = 8}, {name = "bool", fmt = "B", size = 1},
}
local DTYPE_BY_NAME = {}
for i, d in ipairs(DTYPES) do
  d.code = i
  DTYPE_BY_NAME[d.name] = d
end

local function where_of(parent, key)
  if type(key) == "number" or type(key) == "boolean" then return parent .. "[" .. tostring(key) .. "]" end
  return parent .. "." .. tostring(key)
end

local pack

local function pack_tensor(t, out)
  local d = DTYPE_BY_NAME[tostring(t.dtype):gsub("^torch%.", "")]
  local sizes = {}
  for i = 0, t:dim() - 1 do sizes[#sizes + 1] = t:size(i) end
  out[#out + 1] = string.pack("<c1BB", "X", d.code, #sizes)
  for _, s in ipairs(sizes) do out[#out + 1] = string.pack("<i8", s) end
  local values = t:detach():reshape(-1):tolist()
  if d.name == "bool" then
    for i, v in ipairs(values) do values[i] = v and 1 or 0 end
  end
  -- string.pack in slices: one call per element would be slow, one for all too wide
  local fmt = "<" .. string.rep(d.fmt:gsub("<", ""), 256)
  local n = #values
  local i = 1
  while i + 255 <= n do
    out[#out + 1] = string.pack(fmt, table.unpack(values, i, i + 255))
    i = i + 256
  end
  if i <= n then
    out[#out + 1] = string.pack("<" .. string.rep(d.fmt:gsub("<", ""), n - i + 1), table.unpack(values, i, n))
  end
end

-- A table without a metatable, or an ordered state dict (torch/ordered.lua): what is sent
-- as a table. Anything else with a metatable is an object whose behaviour would be lost.
local function plain_table(t)
  local mt = getmetatable(t)
  return mt == nil or (type(mt) == "table" and rawget(mt, "__name") == "state_dict")
end

pack = function(v, where, out, seen)
  local tv = type(v)
  if tv == "nil" then
    out[#out + 1] = "N"
  elseif tv == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif math.type(v) == "integer" then
    out[#out + 1] = string.pack("<c1i8", "I", v)
  elseif tv == "number" then
    out[#out + 1] = string.pack("<c1d", "D", v)
  elseif tv == "string" then
    out[#out + 1] = string.pack("<c1s8", "S", v)
  elseif torch.is_tensor(v) then
    pack_tensor(v, out)
  elseif tv == "table" and plain_table(v) then
    if seen[v] then
      util.raise(string.format("%s contains itself (a cycle); only trees of values can be sent", where))
    end
    seen[v] = true
    local count = 0
    for _ in pairs(v) do count = count + 1 end
    out[#out + 1] = string.pack("<c1i8", "{", count)
    for k, x in pairs(v) do
      if type(k) == "table" or type(k) == "userdata" or type(k) == "function" or type(k) == "thread" then
        util.raise(string.format("%s has a %s as a key; keys must be numbers, strings or booleans",
                                 where, type(k)))
      end
      pack(k, where, out, seen)
      pack(x, where_of(where, k), out, seen)
    end
    seen[v] = nil
  else
    local what = tv == "table" and "a table with a metatable (an object such as a module)"
        or (tv == "userdata" or tv == "thread") and "a " .. tv or util.describe(v)
    util.raise(string.format("%s is %s; objects sent between ranks hold numbers, strings, "
                             .. "booleans, tensors and plain tables of them", where, what))
  end
end

-- The bytes for value v; `where` names it in messages.
function M.pack(v, where)
  local out = {}
  pack(v, where, out, {})
  return table.concat(out)
end

local function unpack_value(s, pos)
  local tag = s:sub(pos, pos)
  if tag == "N" then return nil, pos + 1 end
  if tag == "T" then return true, pos + 1 end
  if tag == "F" then return false, pos + 1 end
  if tag == "I" then return string.unpack("<i8", s, pos + 1) end
  if tag == "D" then return string.unpack("<d", s, pos + 1) end
  if tag == "S" then return string.unpack("<s8", s, pos + 1) end
  if tag == "{" then
    local count
    count, pos = string.unpack("<i8", s, pos + 1)
    local t = {}
    for _ = 1, count do
      local k, x
      k, pos = unpack_value(s, pos)
      x, pos = unpack_value(s, pos)
      t[k] = x
    end
    return t, pos
  end
  if tag == "X" then
    local code, ndim
    code, ndim, pos = string.unpack("<BB", s, pos + 1)
    local d = DTYPES[code]
    local sizes, numel = {}, 1
    for i = 1, ndim do
      sizes[i], pos = string.unpack("<i8", s, pos)
      numel = numel * sizes[i]
    end
    local values = {}
    local code = d.fmt:gsub("<", "")
    local slice = "<" .. string.rep(code, 256)
    local i = 1
    while i <= numel do -- in slices of 256, as packed
      local fmt = i + 255 <= numel and slice or "<" .. string.rep(code, numel - i + 1)
      local got = table.pack(string.unpack(fmt, s, pos))
      pos = got[got.n]
      table.move(got, 1, got.n - 1, i, values)
      i = i + got.n - 1
    end
    if d.name == "bool" then
      for k = 1, numel do values[k] = values[k] ~= 0 end
    end
    local dt = torch[d.name]
    if ndim == 0 then return torch.tensor(values[1], {dtype = dt}), pos end
    if numel == 0 then return torch.zeros(table.unpack(sizes)):to(dt), pos end
    return torch.tensor(values, {dtype = dt}):reshape(table.unpack(sizes)), pos
  end
  error("corrupt object bytes (tag " .. string.format("%q", tag) .. ")", 0)
end

function M.unpack(s)
  local v = unpack_value(s, 1)
  return v
end

-- ---- bytes in an int64 tensor --------------------------------------------------------

local WORDS = "<" .. string.rep("i8", 256)

local function to_tensor(bytes, words)
  if words == 0 then return torch.zeros(0, {dtype = torch.int64}) end
  local padded = bytes .. string.rep("\0", words * 8 - #bytes)
  local ints, i, pos = {}, 1, 1
  while i <= words do -- 256 words a call
    local fmt = i + 255 <= words and WORDS or "<" .. string.rep("i8", words - i + 1)
    local got = table.pack(string.unpack(fmt, padded, pos))
    pos = got[got.n]
    table.move(got, 1, got.n - 1, i, ints)
    i = i + got.n - 1
  end
  return torch.tensor(ints, {dtype = torch.int64})
end

local function from_tensor(t, nbytes)
  local ints, parts = t:tolist(), {}
  for i = 1, #ints, 256 do
    local last = math.min(i + 255, #ints)
    local fmt = last - i == 255 and WORDS or "<" .. string.rep("i8", last - i + 1)
    parts[#parts + 1] = string.pack(fmt, table.unpack(ints, i, last))
  end
  return table.concat(parts):sub(1, nbytes)
end

local function words_for(nbytes)
  return (nbytes + 7) // 8
end

-- ---- the collectives ------------------------------------------------------------------

-- The group and the other trailing arguments: (src[, group]) or {src=, group=}.
local function need_init(fn)
  if not dist.is_initialized() then
    util.raise(fn .. ": the default process group is not initialised; call "
               .. "dist.init_process_group() first")
  end
end

-- dist.broadcast_object_list(list, src[, group]) or (list, {src =, group =}): afterwards
-- `list` on every rank holds src's entries (src's list is sent whole, holes included).
function M.broadcast_object_list(list, src, group)
  local fn = "broadcast_object_list"
  if type(src) == "table" and group == nil and getmetatable(src) == nil then
    util.check_options(src, fn, {"src", "group"})
    src, group = src.src, src.group
  end
  if src == nil then src = 0 end
  if type(list) ~= "table" or getmetatable(list) ~= nil then
    util.raise(string.format("%s: the first argument must be a list (a plain table), got %s",
                             fn, util.describe(list)))
  end
  if math.type(src) ~= "integer" then
    util.raise(string.format("%s: src must be a rank (an integer), got %s", fn, util.describe(src)))
  end
  need_init(fn)
  local me = dist.get_rank()
  -- a list src cannot pack still takes part in the length broadcast (as -1), so that
  -- every rank fails at the same call instead of the others waiting for bytes
  local ok, bytes = true, ""
  if me == src then ok, bytes = pcall(M.pack, list, "list") end
  local len = torch.tensor({ok and #bytes or -1}, {dtype = torch.int64})
  dist.broadcast(len, src, group)
  if not ok then error(bytes, 0) end
  local nbytes = len:item()
  if nbytes < 0 then
    util.raise(string.format("%s: rank %d could not send its list (its error says why)", fn, src))
  end
  local payload = me == src and to_tensor(bytes, words_for(nbytes))
      or torch.zeros(words_for(nbytes), {dtype = torch.int64})
  if nbytes > 0 then dist.broadcast(payload, src, group) end
  if me ~= src then
    local got = M.unpack(from_tensor(payload, nbytes))
    for k in pairs(list) do list[k] = nil end
    for k, v in pairs(got) do list[k] = v end
  end
end

-- dist.all_gather_object(out, obj[, group]): out[r + 1] = obj of the group's rank r.
function M.all_gather_object(out, obj, group)
  local fn = "all_gather_object"
  if type(out) ~= "table" or getmetatable(out) ~= nil then
    util.raise(string.format("%s: the first argument must be a list (a plain table) to fill, got %s",
                             fn, util.describe(out)))
  end
  need_init(fn)
  local ok, bytes = pcall(M.pack, obj, "obj")
  local size = dist.get_world_size(group)
  local lens = {}
  for i = 1, size do lens[i] = torch.zeros(1, {dtype = torch.int64}) end
  -- a rank that cannot pack its object sends -1 as its length, so every rank fails here
  dist.all_gather(lens, torch.tensor({ok and #bytes or -1}, {dtype = torch.int64}), group)
  if not ok then error(bytes, 0) end
  local most = 0
  for i = 1, size do
    local n = lens[i]:item()
    if n < 0 then
      util.raise(string.format("%s: the group's rank %d could not send its object (its error says why)",
                               fn, i - 1))
    end
    most = math.max(most, n)
  end
  local words = math.max(words_for(most), 1)
  local parts = {}
  for i = 1, size do parts[i] = torch.zeros(words, {dtype = torch.int64}) end
  dist.all_gather(parts, to_tensor(bytes, words), group)
  for k in pairs(out) do out[k] = nil end
  for i = 1, size do out[i] = M.unpack(from_tensor(parts[i], lens[i]:item())) end
end

dist.broadcast_object_list = M.broadcast_object_list
dist.all_gather_object = M.all_gather_object

return M
