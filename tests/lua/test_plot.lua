-- ranks: 1 2
-- test_plot.lua — plot's chart (markers per series, a legend so that no colour is needed,
-- axis labels at the extremes, '=' where series overlap), its errors in the learner's
-- words, and progress(n)'s loop values (0 .. n-1, as Python's range).
local T = require "support"
local P = require "plot"

T.test("one series: a falling line from the top left to the bottom right", function()
  local lines = P.render({{values = {4, 3, 2, 1}}}, {width = 10, height = 4})
  T.eq(lines[1], "        4 │**")
  T.eq(lines[2], "        3 │  ***")
  T.eq(lines[3], "          │     ***")
  T.eq(lines[4], "        1 │        **")
  T.eq(lines[5], "          └" .. string.rep("─", 10))
  T.eq(#lines, 6) -- no legend for one unnamed series
end)

T.test("two series are told apart by marker and legend, overlap shows '='", function()
  local lines = P.render({{name = "rank 0", values = {1, 2, 3}}, {name = "rank 1", values = {3, 2, 1}}},
                         {width = 11, height = 3})
  T.eq(lines[1], "        3 │ooo     ***")
  T.eq(lines[2], "        2 │   =====")
  T.eq(lines[3], "        1 │***     ooo")
  T.eq(lines[#lines], "           * rank 0   o rank 1   (= where they overlap)")
end)

T.test("errors name the bad value", function()
  local ok, e = pcall(plot, {1, "x"})
  T.eq(ok, false)
  T.eq(e:match("the data%[2%] is a string, not a number") ~= nil, true, e)
  ok, e = pcall(plot, {1, 2}, {heigth = 3})
  T.eq(ok, false)
  T.eq(e:match("heigth") ~= nil, true, e)
  ok, e = pcall(plot, torch.zeros(2, 2))
  T.eq(e:match("2%-D tensor") ~= nil, true, e)
  -- found by the API fuzz: each failed inside lua/plot.lua or filled memory
  T.raises(function() plot({1, 2}, {title = torch.zeros(1)}) end, "title should be a string")
  T.raises(function() plot({1, 2}, {width = 1 << 40}) end, "width should be a whole number from 10 to 200, got 1099511627776")
  T.raises(function() plot({a = {1, nil, 3}}) end, "a has a gap at [2]")
  T.raises(function() P.render({{values = {1, "2"}}}) end, "series 1 value 2 is")
  local data = {1, torch.tensor(2.0)}
  plot(data, {width = 10, height = 3}) -- the caller's table is not changed
  T.is_true(torch.is_tensor(data[2]), "plot replaced an element of the caller's table")
  -- values floats cannot tell apart, or whose spread overflows, still draw
  T.eq(#P.render({{values = {1 << 62, 1 << 62}}}, {width = 10, height = 3}), 5)
  T.eq(#P.render({{values = {-1e308, 1e308}}}, {width = 10, height = 3}), 5)
  T.eq(#P.render({{name = "a", values = {}}, {name = "b", values = {1, 2}}}, {width = 10, height = 3}), 6)
  ok, e = pcall(progress, 2.5)
  T.eq(e:match("whole number of steps, got 2.5") ~= nil, true, e)
end)

T.test("progress counts like range(n)", function()
  local seen = {}
  for i in progress(4) do seen[#seen + 1] = i end
  T.eq(seen, {0, 1, 2, 3})
  for _ in progress(0) do error("progress(0) ran its body") end
end)

T.test("per_rank: rank 0 draws every rank's series", function()
  local rank = tonumber(os.getenv("RANK"))
  local out = {}
  local real_print = print
  print = function(s) out[#out + 1] = s end
  plot({rank, rank + 1}, {per_rank = true, width = 10, height = 3})
  print = real_print
  if rank == 0 then
    T.eq(#out, 1)
    T.eq(out[1]:find("* rank 0", 1, true) ~= nil, true, out[1])
    if tonumber(os.getenv("WORLD_SIZE")) > 1 then T.eq(out[1]:find("o rank 1", 1, true) ~= nil, true) end
  else
    T.eq(#out, 0)
  end
end)

T.done()
