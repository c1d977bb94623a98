-- torch/format.lua — prints tensors exactly as PyTorch does for the common cases:
-- `tensor([1., 2., 3.])`, `tensor([0.1235, -1.0000])`, `tensor([1, 2, 3])`,
-- scientific notation when PyTorch would use it, `...` summaries beyond 1000 elements,
-- nested rows indented like PyTorch, and the suffixes `, dtype=torch.float64`,
-- `, requires_grad=True`, `, grad_fn=<AddBackward0>`.
--
-- It follows torch/_tensor_str.py: a formatter chosen from the (summarised) values fixes
-- one width and mode for every element, then rows are laid out recursively. Elements are
-- read one at a time through t:_item_at(flat) (row-major position), so only the printed
-- elements are ever touched.
local torch = require "torch"
local raise = require("torch.util").raise

local M = {}

M.options = {precision = 4, threshold = 1000, edgeitems = 3, linewidth = 80}

local floor, huge, rep, fmt = math.floor, math.huge, string.rep, string.format

local function is_finite(v) return v == v and v ~= huge and v ~= -huge end

local function special(v)
  if v ~= v then return "nan" end
  if v == huge then return "inf" end
  if v == -huge then return "-inf" end
end

-- A formatter from the values that will be printed (a flat list).
local function new_formatter(values, is_float)
  -- spec and point: every finite element prints as fmt(spec, v) .. point ("." after
  -- integral values, as in `tensor([1., 2.])`)
  local f = {is_float = is_float, int_mode = true, sci_mode = false, width = 1, spec = "%.0f",
             point = "."}
  local p = M.options.precision
  if not is_float then
    for _, v in ipairs(values) do
      local s = type(v) == "boolean" and (v and "True" or "False") or tostring(v)
      if #s > f.width then f.width = #s end
    end
    return f
  end
  local nz = {}
  for _, v in ipairs(values) do
    if is_finite(v) and v ~= 0 then nz[#nz + 1] = v end
  end
  if #nz == 0 then return f end
  local lo, hi = huge, 0
  for _, v in ipairs(nz) do
    local a = math.abs(v)
    if a < lo then lo = a end
    if a > hi then hi = a end
    if f.int_mode and v ~= math.ceil(v) then f.int_mode = false end
  end
  if f.int_mode then
    if hi / lo > 1000 or hi > 1e8 then f.sci_mode, f.spec = true, "%." .. p .. "e" end
  elseif hi / lo > 1000 or hi > 1e8 or lo < 1e-4 then
    f.sci_mode, f.spec = true, "%." .. p .. "e"
  else
    f.spec = "%." .. p .. "f"
  end
  f.point = (f.int_mode and not f.sci_mode) and "." or ""
  for _, v in ipairs(nz) do
    local n = #fmt(f.spec, v) + #f.point
    if n > f.width then f.width = n end
  end
  return f
end

-- One element, right-aligned to the formatter's width.
local function format_value(f, v)
  local s
  if not f.is_float then
    s = type(v) == "boolean" and (v and "True" or "False") or tostring(v)
  else
    s = special(v) or (fmt(f.spec, v) .. f.point)
  end
  if #s < f.width then s = rep(" ", f.width - #s) .. s end
  return s
end

-- The row-major position strides of a tensor of `sizes` (a Lua list).
local function row_strides(sizes)
  local st, acc = {}, 1
  for d = #sizes, 1, -1 do
    st[d] = acc
    acc = acc * sizes[d]
  end
  return st
end

-- Indices (from 0) of dimension d that are printed: all, or the edge items.
local function shown(n, summarize)
  local e = M.options.edgeitems
  local list = {}
  if summarize and n > 2 * e then
    for i = 0, e - 1 do list[#list + 1] = i end
    list[#list + 1] = false -- the "..." marker
    for i = n - e, n - 1 do list[#list + 1] = i end
  else
    for i = 0, n - 1 do list[#list + 1] = i end
  end
  return list
end

-- Collects the values that will be printed, for the formatter.
local function collect(t, sizes, st, d, base, summarize, out)
  if d > #sizes then
    out[#out + 1] = t:_item_at(base)
    return
  end
  for _, i in ipairs(shown(sizes[d], summarize)) do
    if i then collect(t, sizes, st, d + 1, base + i * st[d], summarize, out) end
  end
end

local function tensor_body(t, f, sizes, st, d, base, indent, summarize)
  local ndim = #sizes - d + 1
  if ndim == 0 then return format_value(f, t:_item_at(base)) end
  if ndim == 1 then
    local per_line = math.max(1, floor((M.options.linewidth - indent) / (f.width + 2)))
    local data = {}
    for _, i in ipairs(shown(sizes[d], summarize)) do
      data[#data + 1] = i and format_value(f, t:_item_at(base + i * st[d])) or " ..."
    end
    local lines = {}
    for i = 1, #data, per_line do
      lines[#lines + 1] = table.concat(data, ", ", i, math.min(i + per_line - 1, #data))
    end
    return "[" .. table.concat(lines, ",\n" .. rep(" ", indent + 1)) .. "]"
  end
  local slices = {}
  for _, i in ipairs(shown(sizes[d], summarize)) do
    slices[#slices + 1] = i and tensor_body(t, f, sizes, st, d + 1, base + i * st[d],
                                            indent + 1, summarize) or "..."
  end
  return "[" .. table.concat(slices, "," .. rep("\n", ndim - 1) .. rep(" ", indent + 1)) .. "]"
end

-- The text inside tensor(...) for the values of t, indented by `indent`.
function M.tensor_str(t, indent)
  local sizes = t:size()
  local numel = t:numel()
  if numel == 0 then return "[]" end
  local summarize = numel > M.options.threshold
  local st = row_strides(sizes)
  local values = {}
  collect(t, sizes, st, 1, 0, summarize, values)
  local f = new_formatter(values, t.dtype.is_floating_point)
  return tensor_body(t, f, sizes, st, 1, 0, indent, summarize)
end

local function add_suffixes(s, suffixes, indent)
  local parts = {s}
  local last_nl = s:match(".*()\n")
  local last_line_len = last_nl and (#s - last_nl + 2) or (#s + 2) -- as _tensor_str.py
  for _, suffix in ipairs(suffixes) do
    if last_line_len + #suffix + 2 > M.options.linewidth then
      parts[#parts + 1] = ",\n" .. rep(" ", indent) .. suffix
      last_line_len = indent + #suffix
    else
      parts[#parts + 1] = ", " .. suffix
      last_line_len = last_line_len + #suffix + 2
    end
  end
  parts[#parts + 1] = ")"
  return table.concat(parts)
end

-- tostring(t): "tensor([1., 2.], requires_grad=True)"
function M.tensor_repr(t)
  local prefix, indent = "tensor(", 7
  local suffixes = {}
  local dev = tostring(t.device)
  if dev ~= "cpu" then suffixes[#suffixes + 1] = "device='" .. dev .. "'" end
  local dt = t.dtype
  local body
  if t:numel() == 0 then
    if t:dim() ~= 1 then
      local sizes = t:size()
      local parts = {}
      for i = 1, #sizes do parts[i] = tostring(sizes[i]) end
      suffixes[#suffixes + 1] = "size=(" .. table.concat(parts, ", ") .. (#sizes == 1 and ",)" or ")")
    end
    if dt ~= torch.float32 then suffixes[#suffixes + 1] = "dtype=" .. tostring(dt) end
    body = "[]"
  else
    if dt == torch.float64 then suffixes[#suffixes + 1] = "dtype=" .. tostring(dt) end
    -- a GPU tensor's values come across once; the host never reads device memory
    body = M.tensor_str(dev ~= "cpu" and t:cpu() or t, indent)
  end
  local grad_fn = t.grad_fn
  if grad_fn then
    suffixes[#suffixes + 1] = "grad_fn=" .. tostring(grad_fn)
  elseif t.requires_grad then
    suffixes[#suffixes + 1] = "requires_grad=True"
  end
  return add_suffixes(prefix .. body, suffixes, indent)
end

-- torch.set_printoptions{precision=, threshold=, edgeitems=, linewidth=}
-- Every value is checked before any is set: a bad one (precision = -1) used to be stored
-- and then made every later print of a tensor fail.
local option_checks = {
  -- string.format takes at most two digits of precision
  precision = function(v) return math.type(v) == "integer" and v >= 0 and v <= 99 end,
  -- math.huge prints everything, as threshold=float('inf') does in PyTorch
  threshold = function(v) return math.type(v) == "integer" and v >= 0 or v == huge end,
  edgeitems = function(v) return math.type(v) == "integer" and v >= 0 end,
  linewidth = function(v) return math.type(v) == "integer" and v >= 1 end,
}

function M.set_printoptions(opts)
  require("torch.util").check_options(opts, "set_printoptions",
                                      {"precision", "threshold", "edgeitems", "linewidth"})
  for k, v in pairs(opts or {}) do
    if not option_checks[k](v) then
      raise(string.format("set_printoptions: %s must be a %s, got %s", k,
                          k == "precision" and "whole number from 0 to 99"
                            or k == "linewidth" and "positive whole number"
                            or k == "threshold" and "whole number >= 0 (or math.huge)"
                            or "whole number >= 0", tostring(v)))
    end
  end
  for k, v in pairs(opts or {}) do M.options[k] = v end
end

return M
