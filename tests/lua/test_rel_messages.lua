-- ranks: 1 2
-- test_rel_messages.lua — issue 10, defect 12: messages that used to mislead now say
-- what happened: a PyTorch-style x[0, 1] (x[{0, 1}] in Lua), a rank given as a string or
-- as a huge integer, an empty options table after the sizes, a nil weight in a Linear.
local T = require "support"

T.test("x[{i, j}] names the indexing ddplab has", function()
  local x = torch.arange(6):view(2, 3)
  T.raises(function() return x[{0, 1}] end, "write x[0][1] (PyTorch's x[0, 1])")
  T.raises(function() x[{1, 2}] = 5 end, "write x[1][2] (PyTorch's x[1, 2])")
  T.raises(function() return x[{0, "a"}] end, "index with integers one dimension at a time")
  T.raises(function() return x[torch.tensor({true, false})] end, "indexing with a tensor")
  T.raises(function() return x[true] end, "indexed by an integer from 0 or a field name, got boolean")
  T.eq(x[0][1]:item(), 1)
  T.eq(x.no_such_field, nil) -- names still read as fields
end)

T.test("a rank is named as it was given", function()
  local t = torch.ones(2)
  T.raises(function() dist.broadcast(t, "0") end, "broadcast: a rank must be an integer, got the string \"0\"")
  T.raises(function() dist.broadcast(t, math.maxinteger) end, "rank 9223372036854775807 is out of range")
  T.raises(function() dist.send(t, -1) end, "rank -1 is out of range")
  T.raises(function() dist.recv(t, 1.5) end, "a rank must be an integer, got 1.5")
  -- a string where a reduce op goes is still a reduce op
  T.raises(function() dist.all_reduce(t, "MEAN") end, "unknown reduce op 'MEAN'")
end)

T.test("torch.zeros(2, {}) takes {} as the options", function()
  T.eq(torch.zeros(2, {}):size(), {2})
  T.eq(torch.ones(2, 3, {}):size(), {2, 3})
  T.eq(torch.zeros({}):dim(), 0)
end)

T.test("a Linear whose weight was set to nil says so", function()
  local m = nn.Linear(2, 3)
  m.weight = nil
  local err = T.raises(function() m(torch.ones(1, 2)) end, "Linear: weight is nil")
  T.has(err, "nn.Parameter(torch.randn(3, 2))")
  T.has(err, "test_rel_messages.lua:")
end)

T.done()
