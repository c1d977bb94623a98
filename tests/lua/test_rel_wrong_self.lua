-- ranks: 1
-- test_rel_wrong_self.lua — issue 10, found by the Lua API fuzz (test_api_fuzz.lua): a
-- public method given something else for self (a dot typed for a colon, or a method of
-- one class called on another) or a wrong argument used to fail inside lua/ with Lua's
-- own "attempt to index a number value (local 'self')". Each now says what to type.
local T = require "support"

dist.init_process_group{backend = "gloo", init_method = "env://"}

T.test("a class's own methods refuse another class's module as self", function()
  local lin, bn, relu = nn.Linear(3, 2), nn.BatchNorm1d(3), nn.ReLU()
  local x = torch.randn(4, 3)
  T.raises(function() nn.Linear.forward(bn, x) end,
           "forward: this is Linear's forward, and it was given a BatchNorm1d")
  T.raises(function() nn.BatchNorm1d.forward(lin, x) end, "call it on a BatchNorm1d, as bn:forward(x)")
  T.raises(function() nn.SyncBatchNorm.forward(relu, x) end, "this is SyncBatchNorm's forward")
  T.raises(function() nn.BatchNorm1d.extra_repr(lin) end, "this is BatchNorm1d's extra_repr")
  T.raises(function() nn.Flatten.forward(lin, x) end, "this is Flatten's forward")
  -- a subclass is still one of its class's instances
  local Net = nn.Linear:extend("MyLinear")
  local m = Net(3, 2)
  T.eq(nn.Linear.forward(m, x):size(), {4, 2})
  T.has(nn.Linear.extra_repr(m), "in_features=3")
end)

T.test("a dot typed for a colon names the call to type", function()
  local bn = nn.BatchNorm1d(3)
  T.raises(function() bn.forward(torch.randn(2, 3)) end, "forward: call it as bn:forward(x), with a colon")
  T.raises(function() bn.extra_repr() end, "extra_repr: call it as bn:extra_repr(), with a colon")
  local opt = optim.SGD(nn.Linear(2, 2):parameters(), {lr = 0.1})
  T.raises(function() opt.zero_grad() end, "zero_grad: call it as opt:zero_grad(), with a colon")
  T.raises(function() opt.zero_grad(true) end, "boolean came in its place")
end)

T.test("DistributedDataParallel's methods check their self", function()
  local ddp = nn.DistributedDataParallel(nn.Linear(3, 2))
  local other = nn.Linear(3, 2)
  for _, method in ipairs({"summary", "buckets", "timeline", "no_sync", "__repr", "__show"}) do
    T.raises(function() ddp[method]() end, method .. ": call it as ddp:" .. method)
    T.raises(function() nn.DistributedDataParallel[method](other) end,
             "this is DistributedDataParallel's " .. method .. ", and it was given a Linear")
  end
  T.raises(function() ddp.join(function() end) end, "join: call it as ddp:join(fn), with a colon")
  T.raises(function() nn.DistributedDataParallel.register_comm_hook(other, nil, function() end) end,
           "this is DistributedDataParallel's register_comm_hook")
  T.raises(function() nn.DistributedDataParallel.hooks.allreduce_hook(nil, other) end,
           "allreduce_hook: the second argument is the bucket DDP passes to a comm hook, got a module")
  T.raises(function() nn.utils.consume_prefix_in_state_dict_if_present(other, "module.") end,
           "expected a state dict (model:state_dict()), got a module")
  -- and the real calls still work
  T.eq(#ddp:buckets(), 1)
  T.has(tostring(ddp), "DistributedDataParallel(")
end)

T.test("Module methods check what they are given", function()
  local m = nn.Sequential(nn.Linear(2, 2))
  T.raises(function() m:apply(2) end, "apply: expected a function to call on every module")
  T.raises(function() m:apply() end, "got nil")
  T.raises(function() m:add_module(nn.ReLU(), nn.ReLU()) end,
           "add_module: the first argument is the name, a string")
  local seen = 0
  m:apply(function() seen = seen + 1 end)
  T.eq(seen, 2)
  T.raises(function() nn.Flatten()(0.5) end, "Flatten: forward expects a tensor, got a number")
end)

T.test("plot.render checks its series and options", function()
  local plot = require "plot"
  T.raises(function() plot.render({{values = {1, 2}}}, 3) end, "the options are a table")
  T.raises(function() plot.render(torch.zeros(3)) end, "expected a list of series")
  T.raises(function() plot.render({{1, 2}}) end, "series 1 is not {name=, values={...}}")
  T.eq(#plot.render({{values = {1, 2, 3}}}, {width = 10, height = 3}) > 0, true)
end)

dist.destroy_process_group()
T.done()
