-- torch/json.lua — JSON text for the non-tensor part of a checkpoint (an optimizer's
-- param_groups and state), kept in a safetensors header's "__metadata__" so that the file
-- stays readable by Python's safetensors and `json.loads` there gives the same values.
--
-- Lua values do not map onto JSON one to one, so a few rules keep a round trip exact:
--   * integers are written without a decimal point and floats always with one (1 and
--     1.0, as Python's json writes int and float); reading gives back the same subtype.
--     NaN and infinities are written as Python's json writes them (NaN, Infinity).
--   * a table whose keys are exactly 1..n (n >= 1) is a JSON array; any other table an
--     object. Integer keys are written as decimal strings and read back as integers;
--     string keys that happen to spell integers go into an object of their own under
--     "__string_keys__", so they stay strings.
--   * a string that is not valid UTF-8 (JSON text must be) is written as
--     {"__bytes__": "<hex>"}; a tensor is handed to the caller's `on_tensor`, which
--     returns the JSON to write for it (a {"__tensor__": name} reference), and read back
--     through `get_tensor`.
-- Functions, userdata other than tensors, threads, cycles and non-integer number keys
-- cannot be written; the error names the place in the value ("param_groups[1].fn").
local util = require "torch.util"

local M = {}

local function is_tensor(v)
  return torch.is_tensor(v)
end

-- ---- writing ------------------------------------------------------------------------

local ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- The shortest decimal text that reads back as exactly x, always with a '.' or an
-- exponent so that it reads back as a float.
local function float_text(x)
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

-- "param_groups[1].lr": how messages name the place of a value.
local function place(parent, key)
  if type(key) == "number" then return parent .. "[" .. tostring(key) .. "]" end
  if parent == "" then return tostring(key) end
  return parent .. "." .. tostring(key)
end

local CANONICAL_INT = "^%-?%d+$"

-- Whether string s spells an integer the way integer keys are written ("12", "-3").
local function spells_integer(s)
  if not s:find(CANONICAL_INT) then return false end
  local n = math.tointeger(tonumber(s))
  return n ~= nil and tostring(n) == s
end

local encode

local function encode_table(t, where, out, seen, on_tensor)
  if seen[t] then util.raise(string.format("save: '%s' contains itself (a cycle); a checkpoint holds trees of values", where)) end
  seen[t] = true
  local n, count = #t, 0
  for _ in pairs(t) do count = count + 1 end
  if n > 0 and count == n then -- exactly 1..n
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode(t[i], place(where, i), out, seen, on_tensor)
    end
    out[#out + 1] = "]"
  else
    local keys, string_ints = {}, {}
    for k in pairs(t) do
      local tk = type(k)
      if tk == "string" then
        if spells_integer(k) then string_ints[#string_ints + 1] = k end
      elseif math.type(k) ~= "integer" then
        util.raise(string.format("save: '%s' has a %s key (%s); keys must be strings or integers",
                                 where == "" and "the table" or where,
                                 math.type(k) == "float" and "float" or tk, tostring(k)))
      end
      keys[#keys + 1] = k
    end
    -- a fixed order, so the same table always gives the same text
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) == "number" end
      return a < b
    end)
    out[#out + 1] = "{"
    local first = true
    local kept_apart = {}
    if #string_ints > 0 then
      -- string keys that spell integers go in an object of their own, so that they can
      -- neither turn into integers nor collide with the integer key of the same spelling
      table.sort(string_ints)
      out[#out + 1] = '"__string_keys__":{'
      for i, k in ipairs(string_ints) do
        kept_apart[k] = true
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(k) .. ":"
        encode(t[k], place(where, k), out, seen, on_tensor)
      end
      out[#out + 1] = "}"
      first = false
    end
    for _, k in ipairs(keys) do
      if kept_apart[k] then goto continue end
      if not first then out[#out + 1] = "," end
      first = false
      out[#out + 1] = quote(tostring(k)) .. ":"
      encode(t[k], place(where, k), out, seen, on_tensor)
      ::continue::
    end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

encode = function(v, where, out, seen, on_tensor)
  local tv = type(v)
  if tv == "nil" then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    out[#out + 1] = math.type(v) == "integer" and string.format("%d", v) or float_text(v)
  elseif tv == "string" then
    if utf8.len(v) then
      out[#out + 1] = quote(v)
    else
      out[#out + 1] = '{"__bytes__":"' .. v:gsub(".", function(c) return string.format("%02x", c:byte()) end) .. '"}'
    end
  elseif is_tensor(v) then
    if not on_tensor then
      util.raise(string.format("save: '%s' is a tensor, which cannot go into JSON here", where))
    end
    out[#out + 1] = on_tensor(v, where)
  elseif tv == "table" then
    encode_table(v, where, out, seen, on_tensor)
  else
    util.raise(string.format("save: '%s' is %s; a checkpoint holds tensors, numbers, strings, "
                             .. "booleans and tables of them", where, util.describe(v)))
  end
end

-- JSON text for value v. `where` names v in messages; on_tensor(t, where) returns the
-- JSON text to write for a tensor (nil: tensors are an error).
function M.encode(v, where, on_tensor)
  local out = {}
  encode(v, where or "", out, {}, on_tensor)
  return table.concat(out)
end

-- ---- reading ------------------------------------------------------------------------

local Parser = {}
Parser.__index = Parser

function Parser:fail(what)
  error(string.format("%s near byte %d of the JSON text", what, self.pos), 0)
end

function Parser:skip()
  self.pos = self.text:find("[^ \t\r\n]", self.pos) or #self.text + 1
end

function Parser:peek()
  self:skip()
  return self.text:sub(self.pos, self.pos)
end

function Parser:expect(c)
  if self:peek() ~= c then self:fail("expected '" .. c .. "'") end
  self.pos = self.pos + 1
end

local SIMPLE = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                r = '\r', t = '\t'}

function Parser:string()
  self:expect('"')
  local parts, text = {}, self.text
  while true do
    local stop = text:find('["\\]', self.pos)
    if not stop then self:fail("unterminated string") end
    parts[#parts + 1] = text:sub(self.pos, stop - 1)
    self.pos = stop + 1
    if text:sub(stop, stop) == '"' then break end
    local e = text:sub(self.pos, self.pos)
    if SIMPLE[e] then
      parts[#parts + 1] = SIMPLE[e]
      self.pos = self.pos + 1
    elseif e == "u" then
      local code = tonumber(text:sub(self.pos + 1, self.pos + 4), 16)
      if not code then self:fail("bad \\u escape") end
      self.pos = self.pos + 5
      if code >= 0xD800 and code < 0xDC00 and text:sub(self.pos, self.pos + 1) == "\\u" then
        local low = tonumber(text:sub(self.pos + 2, self.pos + 5), 16)
        if low and low >= 0xDC00 and low < 0xE000 then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          self.pos = self.pos + 6
        end
      end
      parts[#parts + 1] = utf8.char(code)
    else
      self:fail("bad escape")
    end
  end
  return table.concat(parts)
end

function Parser:number()
  local s = self.text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", self.pos)
  if not s or s == "" or s == "-" then self:fail("bad value") end
  self.pos = self.pos + #s
  if s:find("[%.eE]") then return tonumber(s) + 0.0 end
  return math.tointeger(tonumber(s)) or tonumber(s) + 0.0 -- past 64 bits: a float, as C reads it
end

local WORDS = {["true"] = true, ["false"] = false, NaN = 0 / 0, Infinity = math.huge,
               ["-Infinity"] = -math.huge}

function Parser:value()
  local c = self:peek()
  if c == "{" then return self:object() end
  if c == "[" then return self:array() end
  if c == '"' then return self:string() end
  for word, v in pairs(WORDS) do
    if self.text:sub(self.pos, self.pos + #word - 1) == word then
      self.pos = self.pos + #word
      return v
    end
  end
  if self.text:sub(self.pos, self.pos + 3) == "null" then
    self.pos = self.pos + 4
    return nil
  end
  return self:number()
end

function Parser:array()
  self:expect("[")
  local t, n = {}, 0
  if self:peek() == "]" then
    self.pos = self.pos + 1
    return t
  end
  repeat
    n = n + 1
    t[n] = self:value()
    local c = self:peek()
    self.pos = self.pos + 1
  until c ~= ","
  if self.text:sub(self.pos - 1, self.pos - 1) ~= "]" then self:fail("expected ']'") end
  return t
end

function Parser:object()
  self:expect("{")
  local raw, keys = {}, {}
  if self:peek() == "}" then
    self.pos = self.pos + 1
    return {}
  end
  repeat
    local k = self:string()
    self:expect(":")
    keys[#keys + 1] = k
    raw[k] = self:value()
    local c = self:peek()
    self.pos = self.pos + 1
  until c ~= ","
  if self.text:sub(self.pos - 1, self.pos - 1) ~= "}" then self:fail("expected '}'") end
  -- the markers the writer uses
  if #keys == 1 and keys[1] == "__tensor__" and type(raw.__tensor__) == "string" then
    local t = self.get_tensor and self.get_tensor(raw.__tensor__)
    if t == nil then error(string.format("the tensor '%s' it refers to is missing", raw.__tensor__), 0) end
    return t
  end
  if #keys == 1 and keys[1] == "__bytes__" and type(raw.__bytes__) == "string" then
    return (raw.__bytes__:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
  end
  local apart = raw.__string_keys__
  raw.__string_keys__ = nil
  local t = {}
  for k, v in pairs(raw) do
    if spells_integer(k) then k = math.tointeger(tonumber(k)) end
    t[k] = v
  end
  if type(apart) == "table" then
    -- decoded as an object, so its keys came back as integers: they were strings
    for k, v in pairs(apart) do t[tostring(k)] = v end
  end
  return t
end

-- The value of JSON `text`; get_tensor(name) resolves {"__tensor__": name}. Raises a
-- plain message (no position) on malformed text, for the caller to wrap.
function M.decode(text, get_tensor)
  local p = setmetatable({text = text, pos = 1, get_tensor = get_tensor}, Parser)
  local v = p:value()
  p:skip()
  if p.pos <= #text then p:fail("unexpected text after the value") end
  return v
end

return M
