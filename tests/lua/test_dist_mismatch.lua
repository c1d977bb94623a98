-- ranks: 2 4
-- test_dist_mismatch.lua — collectives that do not match across ranks are caught before
-- they hang, and every rank raises the same story: different op, reduce op, shape, dtype,
-- root, order; after each the group still works. A recv whose peer waits in a collective
-- fails at once. Last, the odd ranks finish the script without calling, and the even
-- ranks are told so.
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, n = dist.get_rank(), dist.get_world_size()
local even = rank % 2 == 0
local evens = n == 2 and "rank 0" or "ranks 0,2"
local odds = n == 2 and "rank 1" or "ranks 1,3"

-- Runs fn, which must raise on every rank; the message must name what both halves called.
local function both_raise(fn, even_call, odd_call)
  local err = T.raises(fn, "called")
  T.is_true(err:find(evens .. " called " .. even_call, 1, true), err)
  T.is_true(err:find(odds .. " called " .. odd_call, 1, true), err)
  -- the group still works afterwards
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end

T.test("different collectives", function()
  local t = torch.ones(3)
  both_raise(function() if even then dist.all_reduce(t) else dist.broadcast(t, 0) end end,
             "all_reduce(float32[3], op=SUM)", "broadcast(float32[3], src=0)")
end)

T.test("different reduce ops", function()
  local t = torch.ones(3)
  both_raise(function() dist.all_reduce(t, even and dist.ReduceOp.SUM or dist.ReduceOp.MAX) end,
             "all_reduce(float32[3], op=SUM)", "all_reduce(float32[3], op=MAX)")
end)

T.test("different shapes", function()
  local t = even and torch.ones(3) or torch.ones(2, 3)
  both_raise(function() dist.all_reduce(t) end,
             "all_reduce(float32[3], op=SUM)", "all_reduce(float32[2,3], op=SUM)")
end)

T.test("different dtypes", function()
  local t = even and torch.ones(3) or torch.ones(3, {dtype = torch.float64})
  both_raise(function() dist.all_reduce(t) end,
             "all_reduce(float32[3], op=SUM)", "all_reduce(float64[3], op=SUM)")
end)

T.test("different roots", function()
  local t = torch.ones(2)
  both_raise(function() dist.broadcast(t, even and 0 or 1) end,
             "broadcast(float32[2], src=0)", "broadcast(float32[2], src=1)")
end)

T.test("different order", function()
  local t = torch.ones(2)
  local first = T.raises(function()
    if even then dist.all_reduce(t) else dist.barrier() end
  end, "called")
  T.is_true(first:find(odds .. " called barrier()", 1, true), first)
  local second = T.raises(function()
    if even then dist.barrier() else dist.all_reduce(t) end
  end, "called")
  T.is_true(second:find(evens .. " called barrier()", 1, true), second)
end)

-- A number that differs when the text differs, for comparing messages across ranks.
local function checksum(text)
  local h = 0
  for i = 1, #text do h = (h * 31 + text:byte(i)) % 2147483647 end
  return h
end

T.test("every rank gets the same message, numbered within the chunk", function()
  -- (a script is one chunk; tests/unit/test_dist_collectives.c has ranks that called
  -- different numbers of collectives in earlier chunks)
  local t = even and torch.ones(3) or torch.ones(4)
  local err = T.raises(function() dist.all_reduce(t) end, "called")
  local text = err:match("collective #%d+ of this chunk: .*") or err
  local sum = torch.tensor({checksum(text)}, {dtype = torch.float64})
  local lo, hi = sum:clone(), sum:clone()
  dist.all_reduce(lo, dist.ReduceOp.MIN)
  dist.all_reduce(hi, dist.ReduceOp.MAX)
  T.eq(lo:item(), hi:item(), "the message differs between ranks: " .. text)
end)

T.test("send and recv of different sizes", function()
  local peer = even and rank + 1 or rank - 1
  local err = T.raises(function()
    if even then dist.send(torch.ones(3), peer) else dist.recv(torch.zeros(4), peer) end
  end, "must match")
  T.is_true(err:find("float32[3]", 1, true) and err:find("float32[4]", 1, true), err)
end)

T.test("a recv whose peer waits in a collective instead of sending", function()
  if even then
    local err = T.raises(function() dist.recv(torch.zeros(2), rank + 1) end,
                         "instead of a matching send; the two ranks would wait for each other")
    T.is_true(err:find("rank " .. rank + 1 .. " called barrier() (collective #", 1, true), err)
  end
  dist.barrier() -- the even ranks join the odd ones' barrier: everyone goes on
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end)

T.test("the odd ranks finish without calling", function()
  if even then
    local err = T.raises(function() dist.all_reduce(torch.ones(5)) end,
                         odds .. " called nothing and finished the chunk")
    T.is_true(err:find(evens .. " called all_reduce(float32[5], op=SUM)", 1, true), err)
  end
end)

T.done()
