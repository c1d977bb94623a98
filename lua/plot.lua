-- plot.lua — pictures in the terminal for the lessons: `plot(...)`, line plots drawn
-- with characters (several series on one chart, told apart by their marker and a legend,
-- so no colour is needed), and `progress(n)`, a loop counter whose ticks go to the
-- driver as typed events, where one bar stands for every rank.
--
--   plot({0.9, 0.5, 0.3, 0.2})                     one series
--   plot({train = a, test = b}, {title = "loss"})  named series
--   plot(losses, {per_rank = true})                every rank calls it; rank 0 draws all
--                                                  ranks' series on one chart
--   for step in progress(100) do ... end           step = 0 .. 99, as range(100)
local util = require "torch.util"

local M = {}

local MARKERS = {"*", "o", "+", "x", "#", "@", "%", "&"}

-- Turns a list, a 1-D tensor or a table of them into {{name =, values =}, ...}.
local function to_series(data)
  local function values_of(v, what)
    if torch.is_tensor(v) then
      if v:dim() > 1 then error("plot: " .. what .. " is a " .. v:dim() .. "-D tensor; give a 1-D one", 3) end
      return v:detach():double():reshape(-1):tolist()
    end
    if type(v) ~= "table" then
      error("plot: " .. what .. " should be a list of numbers or a 1-D tensor, got " .. type(v), 3)
    end
    local out = {} -- a copy: the caller's table is left as it was
    for i, x in ipairs(v) do
      if type(x) == "number" then
        out[i] = x
      elseif torch.is_tensor(x) and x:numel() == 1 then
        out[i] = x:item()
      else
        error("plot: " .. what .. "[" .. i .. "] is a " .. type(x) .. ", not a number", 3)
      end
    end
    if #v > #out then
      error("plot: " .. what .. " has a gap at [" .. #out + 1 .. "]: give a list without holes", 3)
    end
    return out
  end
  if torch.is_tensor(data) or (type(data) == "table" and type(data[1]) == "number") then
    return {{name = nil, values = values_of(data, "the data")}}
  end
  if type(data) ~= "table" then
    error("plot: expected a list of numbers, a 1-D tensor or a table of series, got " .. type(data), 3)
  end
  local out = {}
  if #data > 0 then
    for i, v in ipairs(data) do out[#out + 1] = {name = "series " .. i, values = values_of(v, "series " .. i)} end
  else
    local names = {}
    for k in pairs(data) do names[#names + 1] = tostring(k) end
    table.sort(names)
    for _, k in ipairs(names) do out[#out + 1] = {name = k, values = values_of(data[k], k)} end
  end
  if #out == 0 then error("plot: nothing to plot (the table is empty)", 3) end
  return out
end

-- Raises, at `level`, for a width, height or title a chart cannot have.
local function check_chart_options(opts, level)
  local function check_size(name, min, max)
    local v = opts[name]
    if v ~= nil and (math.type(v) ~= "integer" or v < min or v > max) then
      error(string.format("plot: %s should be a whole number from %d to %d, got %s", name, min,
                          max, type(v) == "number" and tostring(v) or util.describe(v)), level + 1)
    end
  end
  check_size("width", 10, 200)
  check_size("height", 3, 60)
  local title = opts.title
  if title ~= nil and type(title) ~= "string" and type(title) ~= "number" then
    error("plot: title should be a string, got " .. util.describe(title), level)
  end
end

-- The chart's lines for `series` (opts: width, height, title).
function M.render(series, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("plot.render: the options are a table {width=, height=, title=}, got " .. util.describe(opts), 2)
  end
  if type(series) ~= "table" then
    error("plot.render: expected a list of series {name=, values={...}}, got " .. util.describe(series), 2)
  end
  for i, s in ipairs(series) do
    if type(s) ~= "table" or type(s.values) ~= "table" then
      error("plot.render: series " .. i .. " is not {name=, values={...}} (plot(data) makes " ..
            "them from a list, a tensor or a table of them)", 2)
    end
    for j = 1, #s.values do
      if type(s.values[j]) ~= "number" then
        error("plot.render: series " .. i .. " value " .. j .. " is " .. util.describe(s.values[j]) ..
              ", not a number", 2)
      end
    end
  end
  opts = opts or {}
  check_chart_options(opts, 3)
  local W, H = opts.width or 60, opts.height or 12
  local lo, hi, n = math.huge, -math.huge, 0
  for _, s in ipairs(series) do
    n = math.max(n, #s.values)
    for _, v in ipairs(s.values) do
      if v == v and v ~= math.huge and v ~= -math.huge then lo, hi = math.min(lo, v), math.max(hi, v) end
    end
  end
  if n == 0 or lo == math.huge then return {"(plot: no finite values)"} end
  -- one value, or values too close for floats to tell apart: a band around them
  local pad = math.max(0.5, math.abs(hi) * 1e-6, math.abs(lo) * 1e-6)
  if not (hi - lo > math.abs(hi) * 1e-12) then hi, lo = hi + pad, lo - pad end
  local grid = {}
  for r = 1, H do grid[r] = {} for c = 1, W do grid[r][c] = " " end end
  for si, s in ipairs(series) do
    local mark, vals = MARKERS[(si - 1) % #MARKERS + 1], s.values
    local cols = #vals <= 1 and #vals or math.min(W, math.max(#vals, W)) -- an empty series draws nothing
    for c = 1, cols do
      local x = #vals == 1 and 1 or 1 + (c - 1) * (#vals - 1) / (cols - 1) -- interpolated
      local i = math.floor(x)
      local f = x - i
      local v = vals[i]
      if f > 0 and vals[i + 1] then v = v * (1 - f) + vals[i + 1] * f end
      local y = (v - lo) / (hi - lo) -- NaN or out of [0, 1] only when hi - lo overflows
      if y == y and y >= 0 and y <= 1 then
        local row = H - math.floor(y * (H - 1) + 0.5)
        local col = #vals == 1 and 1 or math.floor((c - 1) * (W - 1) / (cols - 1) + 0.5) + 1
        local cell = grid[row][col]
        grid[row][col] = (cell ~= " " and cell ~= mark) and "=" or mark
      end
    end
  end
  local function label(v) return string.format("%9.4g", v) end
  local out = {}
  if opts.title then out[#out + 1] = string.rep(" ", 11) .. tostring(opts.title) end
  for r = 1, H do
    local v = hi - (r - 1) * (hi - lo) / (H - 1)
    local lab = (r == 1 or r == H or r == math.floor((H + 1) / 2)) and label(v) or string.rep(" ", 9)
    out[#out + 1] = lab .. " │" .. table.concat(grid[r]):gsub("%s+$", "")
  end
  out[#out + 1] = string.rep(" ", 10) .. "└" .. string.rep("─", W)
  out[#out + 1] = string.format("%s1%s%d", string.rep(" ", 11), string.rep(" ", math.max(1, W - 1 - #tostring(n))), n)
  if #series > 1 or series[1].name then
    local legend = {}
    for si, s in ipairs(series) do
      legend[#legend + 1] = MARKERS[(si - 1) % #MARKERS + 1] .. " " .. (s.name or "series " .. si)
    end
    out[#out + 1] = string.rep(" ", 11) .. table.concat(legend, "   ") ..
                    (#series > 1 and "   (= where they overlap)" or "")
  end
  return out
end

-- plot(data, opts): prints the chart (with per_rank, only rank 0 prints, all ranks' data).
function M.plot(data, opts)
  opts = opts or {}
  util.check_options(opts, "plot", {"title", "width", "height", "per_rank"})
  check_chart_options(opts, 3)
  local series
  if opts.per_rank then
    local R = require "ddplab.rank"
    if not R.connected then error("plot: per_rank needs the ddplab driver", 2) end
    local check = require "lesson.check"
    local mine = to_series(data)[1].values
    local all = R.gather(check.serialise(mine))
    local rank = tonumber(os.getenv("RANK")) or 0
    if rank ~= 0 then return end
    series = {}
    for r, bytes in ipairs(all) do
      if bytes then series[#series + 1] = {name = "rank " .. (r - 1), values = check.deserialise(bytes)} end
    end
  else
    series = to_series(data)
  end
  print(table.concat(M.render(series, opts), "\n"))
end

-- for step in progress(n[, label]) do ... end: step = 0 .. n-1; the driver draws one bar
-- for every rank (the slowest rank's count). Without a driver it is a plain counter.
function M.progress(n, label)
  if math.type(n) ~= "integer" or n < 0 then
    error("progress: expected a whole number of steps, got " .. tostring(n), 2)
  end
  if label ~= nil and type(label) ~= "string" then
    error("progress: the label should be a string, got " .. type(label), 2)
  end
  local ok, R = pcall(require, "ddplab.rank")
  local tick = (ok and R.connected) and R.progress or function() end
  local i = -1
  tick(0, n, label or "")
  return function()
    i = i + 1
    if i > 0 then tick(i, n, label or "") end
    if i < n then return i end
    return nil
  end
end

return M
