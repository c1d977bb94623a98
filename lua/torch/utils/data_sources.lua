-- torch/utils/data_sources.lua — where a lesson's data comes from: small synthetic
-- datasets made from a seed (data.synthetic.regression, data.synthetic.spiral) and CSV
-- files (data.load_csv). Part of the `data` module (torch/utils/data.lua).
--
-- The synthetic sets draw from their own seeded generator (splitmix64, Box-Muller for
-- normals), not from torch's: making a dataset never moves torch.manual_seed's sequence,
-- and the same seed gives the same data on every rank, every run and every platform, so
-- every rank can build the whole set and let a DistributedSampler pick its share.
local util = require "torch.util"
local raise, describe = util.raise, util.describe

local M = {}

-- ---- a small seeded generator ---------------------------------------------------------

local Stream = {}
Stream.__index = Stream

local function stream(seed)
  return setmetatable({state = seed}, Stream)
end

-- splitmix64: 64-bit integer arithmetic wraps in Lua 5.4, and >> is a logical shift
function Stream:next64()
  local z = self.state + 0x9E3779B97F4A7C15
  self.state = z
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

-- uniform in [0, 1), 53 bits
function Stream:uniform()
  return (self:next64() >> 11) * (1.0 / 9007199254740992.0)
end

-- standard normal (Box-Muller; 1 - u keeps the log finite)
function Stream:normal()
  local u1, u2 = self:uniform(), self:uniform()
  return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
end

-- A rows x cols nested list of standard normals.
function Stream:normals(rows, cols)
  local out = {}
  for i = 1, rows do
    local row = {}
    for j = 1, cols do row[j] = self:normal() end
    out[i] = row
  end
  return out
end

local function check_int(v, fn, name, min)
  if math.type(v) ~= "integer" or v < min then
    raise(string.format("%s: %s must be an integer >= %d, got %s", fn, name, min,
                        math.type(v) == "integer" and tostring(v) or describe(v)))
  end
end

local function check_number(v, fn, name)
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    raise(string.format("%s: %s must be a number >= 0, got %s", fn, name,
                        type(v) == "number" and tostring(v) or describe(v)))
  end
end

-- ---- synthetic datasets -----------------------------------------------------------------

M.synthetic = {}

-- The sets are drawn number by number in Lua: ten million numbers take seconds, and a
-- typo such as n = 1e12 would fill memory for minutes before failing. A bigger set is
-- refused at once.
local MAX_NUMBERS = 10000000

local function check_size(fn, what, ...)
  local total = 1
  for _, v in ipairs({...}) do
    if v > MAX_NUMBERS // total then total = MAX_NUMBERS + 1 break end
    total = total * v
  end
  if total > MAX_NUMBERS then
    raise(string.format("%s: %s is more than %d numbers; a synthetic set is for lessons, "
                        .. "so keep it smaller", fn, what, MAX_NUMBERS))
  end
end

-- data.synthetic.regression{n = 64, in_features = 5, out_features = 5, noise = 0.1,
-- seed = 0} -> TensorDataset(x, y), x, y: x is n x in_features standard normal, and
-- y = x W + b + noise * e with W, b and e standard normal too (float32). The tutorial's
-- model, Linear(5, 10)-ReLU-Linear(10, 5), fits it; with noise = 0 a plain
-- Linear(5, 5) can fit it exactly.
function M.synthetic.regression(opts)
  local fn = "synthetic.regression"
  util.check_options(opts, fn, {"n", "in_features", "out_features", "noise", "seed"})
  opts = opts or {}
  local n, fin, fout = opts.n or 64, opts.in_features or 5, opts.out_features or 5
  local noise, seed = opts.noise or 0.1, opts.seed or 0
  check_int(n, fn, "n", 1)
  check_int(fin, fn, "in_features", 1)
  check_int(fout, fn, "out_features", 1)
  check_number(noise, fn, "noise")
  check_int(seed, fn, "seed", math.mininteger)
  check_size(fn, string.format("n x in_features (%d x %d)", n, fin), n, fin)
  check_size(fn, string.format("n x out_features (%d x %d)", n, fout), n, fout)
  check_size(fn, string.format("in_features x out_features (%d x %d)", fin, fout), fin, fout)
  local g = stream(seed)
  local w = torch.tensor(g:normals(fin, fout))
  local b = torch.tensor(g:normals(1, fout))
  local x = torch.tensor(g:normals(n, fin))
  local y = x:matmul(w) + b + torch.tensor(g:normals(n, fout)) * noise
  local data = require "torch.utils.data"
  return data.TensorDataset(x, y), x, y
end

-- data.synthetic.spiral{n = 200, classes = 2, noise = 0.2, seed = 0}
-- -> TensorDataset(x, y), x, y: points on `classes` interleaved spiral arms in the plane
-- (x is n x 2 float32, y the arm of each point, int64 from 0), the classic set a linear
-- model cannot separate and a small MLP with nn.CrossEntropyLoss can. Arm k holds points
-- at radius r from 0 to 1 and angle 4 (k + r) radians, jittered by noise * a normal; the
-- n points are shared out as evenly as the arms allow, in arm order.
function M.synthetic.spiral(opts)
  local fn = "synthetic.spiral"
  util.check_options(opts, fn, {"n", "classes", "noise", "seed"})
  opts = opts or {}
  local n, classes = opts.n or 200, opts.classes or 2
  local noise, seed = opts.noise or 0.2, opts.seed or 0
  check_int(n, fn, "n", 1)
  check_int(classes, fn, "classes", 2)
  check_number(noise, fn, "noise")
  check_int(seed, fn, "seed", math.mininteger)
  check_size(fn, string.format("n x 2 (%d x 2)", n), n, 2)
  if n < classes then
    raise(string.format("%s: n (%d) must be at least classes (%d), one point per arm", fn, n, classes))
  end
  local g = stream(seed)
  local points, labels = {}, {}
  for k = 0, classes - 1 do
    local count = n // classes + (k < n % classes and 1 or 0)
    for i = 0, count - 1 do
      local r = count == 1 and 0.5 or i / (count - 1)
      local angle = 4.0 * (k + r) + noise * g:normal()
      points[#points + 1] = {r * math.sin(angle), r * math.cos(angle)}
      labels[#labels + 1] = k
    end
  end
  local x = torch.tensor(points)
  local y = torch.tensor(labels, {dtype = torch.int64})
  local data = require "torch.utils.data"
  return data.TensorDataset(x, y), x, y
end

-- ---- CSV ------------------------------------------------------------------------------

local SPECIAL = {nan = 0 / 0, ["+nan"] = 0 / 0, ["-nan"] = 0 / 0, inf = math.huge,
                 ["+inf"] = math.huge, ["-inf"] = -math.huge, infinity = math.huge,
                 ["-infinity"] = -math.huge}

-- Splits a line into fields at `sep`, trimming spaces and one pair of surrounding quotes.
local function fields(line, sep)
  local out, start = {}, 1
  while true do
    local stop = line:find(sep, start, true)
    local f = line:sub(start, (stop or #line + 1) - 1):match("^%s*(.-)%s*$")
    f = f:match('^"(.*)"$') or f
    out[#out + 1] = f
    if not stop then return out end
    start = stop + #sep
  end
end

-- data.load_csv(path, {header = true, dtype = torch.float32, delimiter = ","})
-- -> tensor (rows x columns), column names (a list; nil without a header)
function M.load_csv(path, opts)
  local fn = "load_csv"
  util.check_options(opts, fn, {"header", "dtype", "delimiter"})
  opts = opts or {}
  if type(path) ~= "string" then raise(string.format("%s: the path must be a string, got %s", fn, describe(path))) end
  local header = opts.header ~= false
  if opts.header ~= nil and type(opts.header) ~= "boolean" then
    raise(string.format("%s: header must be true or false, got %s", fn, describe(opts.header)))
  end
  local dtype = opts.dtype or torch.float32
  local dname = tostring(dtype)
  if dname ~= "torch.float32" and dname ~= "torch.float64" and dname ~= "torch.int64" then
    raise(string.format("%s: dtype must be torch.float32, torch.float64 or torch.int64, got %s",
                        fn, dname))
  end
  local integer = dname == "torch.int64"
  local sep = opts.delimiter or ","
  if type(sep) ~= "string" or sep == "" then
    raise(string.format("%s: delimiter must be a non-empty string, got %s", fn, describe(sep)))
  end
  -- io.open would block for ever on a FIFO nobody writes to: the C side opens it without
  -- blocking and refuses anything but a regular file, as torch.load does
  local readable, why = require("ddp.io_core").check_readable(path, "CSV")
  if not readable then raise(fn .. ": " .. why) end
  local f
  f, why = io.open(path, "r")
  if not f then raise(string.format("%s: cannot open '%s': %s", fn, path, why)) end
  local rows, names, width, first_line = {}, nil, nil, nil
  local line_no = 0
  for line in f:lines() do
    line_no = line_no + 1
    line = line:gsub("\r$", "")
    if line_no == 1 then line = line:gsub("^\239\187\191", "") end -- a UTF-8 byte-order mark
    if line:match("^%s*$") then goto continue end
    local cols = fields(line, sep)
    if header and names == nil then
      names = cols
      width, first_line = #cols, line_no
      goto continue
    end
    if width == nil then width, first_line = #cols, line_no end
    if #cols ~= width then
      f:close()
      raise(string.format("%s: '%s' line %d has %d columns, but line %d has %d (every row needs "
                          .. "the same number)", fn, path, line_no, #cols, first_line, width))
    end
    for j, s in ipairs(cols) do
      local v = tonumber(s)
      if v == nil then v = SPECIAL[s:lower()] end
      if v == nil or (integer and math.type(v) ~= "integer") then
        f:close()
        if v == nil then
          raise(string.format("%s: '%s' line %d, column %d: %s is not a number", fn, path, line_no,
                              j, s == "" and "an empty field" or string.format("%q", s)))
        end
        raise(string.format("%s: '%s' line %d, column %d: %s is not an integer (dtype int64)", fn,
                            path, line_no, j, s))
      end
      cols[j] = v
    end
    rows[#rows + 1] = cols
    ::continue::
  end
  f:close()
  if #rows == 0 then
    return torch.zeros(0, width or 0, {dtype = dtype}), names
  end
  return torch.tensor(rows, {dtype = dtype}), names
end

return M
