-- ranks: 1 2
-- test_rel_options.lua — issue 10, defect 7: a misspelt option, an unknown ReduceOp or a
-- dtype ddplab lacks is an error naming what is meant, never a silent default. Every
-- options table of the bindings and of lua/ is tried with one wrong key.
local T = require "support"

local function opt_error(fn, name, bad, near)
  local want = near and string.format("%s: unknown option '%s' (did you mean '%s'?)", name, bad, near)
                    or string.format("%s: unknown option '%s'", name, bad)
  return T.raises(fn, want)
end

T.test("creation options: dtype, device, requires_grad", function()
  opt_error(function() torch.zeros(2, {dtyp = torch.float64}) end, "zeros", "dtyp", "dtype")
  opt_error(function() torch.ones(2, 3, {requires_grd = true}) end, "ones", "requires_grd", "requires_grad")
  opt_error(function() torch.randn({2}, {devce = "cpu"}) end, "randn", "devce", "device")
  opt_error(function() torch.full({2}, 1, {dtpe = torch.int64}) end, "full", "dtpe", "dtype")
  opt_error(function() torch.arange(3, {dtpe = torch.float64}) end, "arange", "dtpe", "dtype")
  opt_error(function() torch.eye(2, {dtpe = torch.float64}) end, "eye", "dtpe", "dtype")
  opt_error(function() torch.tensor({1, 2}, {dtpe = torch.float64}) end, "tensor", "dtpe", "dtype")
  opt_error(function() torch.zeros_like(torch.ones(2), {dvice = "cpu"}) end, "zeros_like", "dvice", "device")
  opt_error(function() torch.ones(2):to{dtype = torch.float64, copy = true} end, "to", "copy")
  -- the right keys still work, and {} after sizes is an empty options table
  T.eq(torch.zeros(2, {dtype = torch.float64}).dtype, torch.float64)
  T.eq(torch.zeros(2, {}):size(), {2})
  T.eq(torch.zeros(2, 3, {}):size(), {2, 3})
  T.eq(torch.zeros({}):dim(), 0)
end)

T.test("tensor method options", function()
  local x = torch.ones(3)
  opt_error(function() x:sum{dimm = 0} end, "sum", "dimm", "dim")
  opt_error(function() x:max{dim = 0, keepdims = true} end, "max", "keepdims", "keepdim")
  opt_error(function() x:add(x, {alhpa = 2}) end, "add", "alhpa", "alpha")
  opt_error(function() x:clamp{mn = 0} end, "clamp", "mn", "min")
  opt_error(function() x:allclose(x, {rtl = 1}) end, "allclose", "rtl", "rtol")
  local w = torch.ones(2, {requires_grad = true})
  opt_error(function() w:sum():backward{retain = true} end, "backward", "retain")
  opt_error(function() nn.functional.mse_loss(x, x, {reduce = "sum"}) end, "mse_loss", "reduce")
  T.eq(x:add(x, {alpha = 2}):tolist(), {3, 3, 3})
end)

T.test("lua/ library options", function()
  opt_error(function() nn.Linear(2, 2, {bais = false}) end, "Linear", "bais", "bias")
  opt_error(function() nn.MSELoss{reduce = "sum"} end, "MSELoss", "reduce")
  opt_error(function() nn.CrossEntropyLoss{reductoin = "sum"} end, "CrossEntropyLoss", "reductoin", "reduction")
  opt_error(function() optim.SGD({torch.ones(2, {requires_grad = true})}, {lrr = 1}) end, "SGD", "lrr")
  opt_error(function() optim.SGD({{params = {torch.ones(2)}, lrr = 1}}, {lr = 1}) end,
            "SGD parameter group", "lrr", "lr")
  opt_error(function() torch.set_printoptions{precison = 2} end, "set_printoptions", "precison", "precision")
  -- the errors blame the learner's line, not lua/
  local err = T.raises(function() nn.Linear(2, 2, {bais = false}) end, "bais")
  T.has(err, "test_rel_options.lua:")
end)

T.test("unknown dtype names raise, naming the dtypes there are", function()
  for _, name in ipairs({"float16", "half", "bfloat16", "int32", "int", "int8", "uint8", "complex64"}) do
    local err = T.raises(function() return torch[name] end, "torch." .. name .. ": ddplab has no such dtype")
    T.has(err, "torch.float32")
    T.has(err, "torch.int64")
  end
  T.raises(function() torch.zeros(2, {dtype = torch.float16}) end, "torch.float16")
  T.eq(torch.float, torch.float32)
  T.eq(torch.long, torch.int64)
  T.eq(torch.not_a_name, nil) -- other missing names stay nil (feature tests keep working)
end)

T.test("dist options, ReduceOp names and init_process_group's timeout", function()
  T.raises(function() return dist.ReduceOp.MEAN end, "dist.ReduceOp has no MEAN (the mean is AVG)")
  T.raises(function() return dist.ReduceOp.BAND end, "it has SUM, AVG, PRODUCT, MIN or MAX")
  T.eq(dist.ReduceOp.MAX, "MAX")
  for _, t in ipairs({-1, 0, 0 / 0}) do
    T.raises(function() dist.init_process_group{backend = "gloo", timeout = t} end,
             "init_process_group: timeout must be a positive number of seconds")
  end
  opt_error(function() dist.init_process_group{backnd = "gloo"} end, "init_process_group", "backnd", "backend")
  T.is_true(not dist.is_initialized(), "a refused init leaves nothing initialized")
  dist.init_process_group{backend = "gloo"}
  local u = torch.ones(2) * (dist.get_rank() + 1)
  opt_error(function() dist.all_reduce(u, {opp = dist.ReduceOp.MAX}) end, "all_reduce", "opp", "op")
  opt_error(function() dist.reduce(u, {dst = 0, opp = "MAX"}) end, "reduce", "opp", "op")
  opt_error(function() dist.broadcast(u, {src = 0, op = "SUM"}) end, "broadcast", "op")
  opt_error(function() dist.barrier{grop = nil, async = true} end, "barrier", "async")
  opt_error(function() dist.send(u, {dts = 1}) end, "send", "dts")
  opt_error(function() dist.recv(u, {scr = 1}) end, "recv", "scr")
  opt_error(function() dist.new_group{rank = {0}} end, "new_group", "rank", "ranks")
  -- nothing was sent: the next correct collective works everywhere
  dist.all_reduce(u, {op = dist.ReduceOp.MAX})
  T.eq(u:tolist()[1], dist.get_world_size())
  dist.destroy_process_group()
end)

T.done()
