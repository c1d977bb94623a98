-- ranks: 1 2
-- test_nn.lua — nn.Module as users write it (the seed tutorial's LinearModel), Linear's
-- initialisation, Sequential, registration order, state_dict / load_state_dict with
-- PyTorch's keys and errors, zero_grad, train/eval, printing, and the functional losses.
local T = require "support"
local F = torch.nn.functional

-- The tutorial's model, written exactly as the lesson shows it.
local LinearModel = nn.Module:extend("LinearModel")
function LinearModel:__init()
  self.fc1 = nn.Linear(5, 10)
  self.fc2 = nn.Linear(10, 5)
end
function LinearModel:forward(x)
  x = torch.relu(self.fc1(x))
  return self.fc2(x)
end

T.test("the globals and their torch.* names are the same tables", function()
  T.eq(torch.nn, nn)
  T.eq(torch.optim, optim)
  T.eq(torch.distributed, dist)
  T.eq(torch.nn.functional, nn.functional)
  T.eq(require("torch.nn"), nn)
end)

T.test("the tutorial model: forward, parameters in PyTorch's order", function()
  torch.manual_seed(0)
  local model = LinearModel()
  local out = model(torch.randn(64, 5))
  T.eq(out.shape, torch.zeros(64, 5).shape)
  local ps = model:parameters()
  T.eq(#ps, 4)
  T.eq(ps[1], model.fc1.weight)
  T.eq(ps[2], model.fc1.bias)
  T.eq(ps[4], model.fc2.bias)
  local names = {}
  for name, p in model:named_parameters() do
    names[#names + 1] = name
    T.is_true(p.requires_grad)
  end
  T.eq(names, {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})
  T.eq(model:named_parameters()[3][1], "fc2.weight")
end)

T.test("Linear is initialised from the seed, uniform in +-1/sqrt(in)", function()
  torch.manual_seed(0)
  local a = nn.Linear(5, 10)
  torch.manual_seed(0)
  local b = nn.Linear(5, 10)
  T.is_true(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias))
  local bound = 1 / math.sqrt(5)
  T.is_true(a.weight:abs():max():item() <= bound)
  T.is_true(a.bias:abs():max():item() <= bound)
  -- weight is drawn first, then bias, from one stream
  torch.manual_seed(0)
  local w = torch.empty(10, 5):uniform_(-bound, bound)
  T.is_true(torch.equal(w, a.weight))
  local nb = nn.Linear(3, 2, {bias = false})
  T.eq(nb.bias, nil)
  T.eq(#nb:parameters(), 1)
  T.eq(tostring(nb), "Linear(in_features=3, out_features=2, bias=False)")
  local x = torch.randn(4, 3)
  T.close(nb(x), x:mm(nb.weight:t()))
end)

T.test("printing a module like PyTorch", function()
  T.eq(tostring(LinearModel()),
       "LinearModel(\n  (fc1): Linear(in_features=5, out_features=10, bias=True)\n" ..
       "  (fc2): Linear(in_features=10, out_features=5, bias=True)\n)")
  local seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Identity()))
  T.eq(tostring(seq),
       "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n" ..
       "  (2): Sequential(\n    (0): Identity()\n  )\n)")
  T.eq(tostring(nn.MSELoss()), "MSELoss()")
end)

T.test("Sequential: children 0, 1, ..., seq[0], state_dict keys", function()
  local seq = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  T.eq(#seq, 3)
  T.eq(seq[0].out_features, 10)
  T.eq(seq[-1].in_features, 10)
  local keys = {}
  for k in pairs(seq:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"0.weight", "0.bias", "2.weight", "2.bias"})
  T.eq(seq(torch.randn(3, 5)).shape, torch.zeros(3, 5).shape)
  T.eq(#seq:children(), 3)
  T.eq(#seq:modules(), 4)
  T.eq(#nn.Sequential({nn.ReLU(), nn.ReLU()}), 2)
  local box = nn.Module()
  box.layer = nn.Linear(2, 2)
  T.eq(#box:parameters(), 2)
  T.eq(tostring(box), "Module(\n  (layer): Linear(in_features=2, out_features=2, bias=True)\n)")
end)

T.test("the lua/ library is embedded in the binary", function()
  local loader, where = package.searchers[2]("torch.ordered")
  T.eq(type(loader), "function")
  if os.getenv("DDPLAB_LUA_PATH") == nil then T.eq(where, "lua/torch/ordered.lua") end
  T.eq(require("torch.ordered").is_ordered(nn.Linear(1, 1):state_dict()), true)
end)

T.test("state_dict keeps order, shares storage, and round-trips", function()
  local m = LinearModel()
  local sd = m:state_dict()
  local keys = {}
  for k in pairs(sd) do keys[#keys + 1] = k end
  T.eq(keys, {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})
  T.eq(#sd, 4)
  T.is_true(not sd["fc1.weight"].requires_grad)
  local m2 = LinearModel()
  T.is_true(not torch.equal(m2.fc1.weight, m.fc1.weight))
  m2:load_state_dict(sd)
  T.is_true(torch.equal(m2.fc1.weight, m.fc1.weight) and torch.equal(m2.fc2.bias, m.fc2.bias))
  T.is_true(m2.fc1.weight.requires_grad)
  -- a plain table works too
  m2:load_state_dict({["fc1.weight"] = torch.zeros(10, 5), ["fc1.bias"] = torch.zeros(10),
                      ["fc2.weight"] = torch.zeros(5, 10), ["fc2.bias"] = torch.ones(5)})
  T.eq(m2.fc2.bias:tolist(), {1, 1, 1, 1, 1})
end)

T.test("load_state_dict names every missing, unexpected and mismatched key at once", function()
  local m = LinearModel()
  local sd = m:state_dict()
  sd["fc1.bias"] = nil
  sd["extra"] = torch.zeros(1)
  sd["fc2.weight"] = torch.zeros(5, 11)
  local before = m.fc2.bias:clone()
  sd["fc2.bias"] = torch.zeros(5)
  local err = T.raises(function() m:load_state_dict(sd) end, "Error(s) in loading state_dict for LinearModel")
  T.is_true(err:find('Missing key(s) in state_dict: "fc1.bias"', 1, true), err)
  T.is_true(err:find('Unexpected key(s) in state_dict: "extra"', 1, true), err)
  T.is_true(err:find("size mismatch for fc2.weight: copying a param with shape torch.Size([5, 11]) " ..
                     "from checkpoint, the shape in current model is torch.Size([5, 10]).", 1, true), err)
  T.is_true(torch.equal(m.fc2.bias, before), "nothing copied on error")
  -- strict=false reports instead
  local m2 = LinearModel()
  local r = m2:load_state_dict({["fc1.weight"] = torch.zeros(10, 5), extra = torch.zeros(1)}, false)
  T.eq(r.unexpected_keys, {"extra"})
  T.eq(#r.missing_keys, 3)
  T.eq(m2.fc1.weight:abs():sum():item(), 0.0)
end)

T.test("zero_grad sets grads to nil; train and eval", function()
  local m = LinearModel()
  local loss = m(torch.randn(2, 5)):sum()
  loss:backward()
  T.is_true(m.fc1.weight.grad ~= nil)
  m:zero_grad()
  T.eq(m.fc1.weight.grad, nil)
  T.is_true(m.training and m.fc1.training)
  T.eq(m:eval(), m)
  T.is_true(not m.training and not m.fc2.training)
  m:train()
  T.is_true(m.fc2.training)
end)

T.test("registration: parameters, buffers, reassignment, plain fields", function()
  local Net = nn.Module:extend("Net")
  function Net:__init()
    nn.Module.__init(self) -- PyTorch's super().__init__() is allowed
    self.scale = nn.Parameter(torch.ones(1))
    self.name = "net"
    self:register_buffer("running", torch.zeros(2))
    self.body = nn.Linear(2, 2)
  end
  function Net:forward(x) return self.body(x) * self.scale end
  local n = Net()
  T.eq(#n:parameters(), 3)
  T.eq(n:named_parameters()[1][1], "scale")
  T.eq(n.name, "net")
  local keys = {}
  for k in pairs(n:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"scale", "running", "body.weight", "body.bias"})
  n.body = nn.Linear(2, 2, {bias = false})
  T.eq(#n:parameters(), 2)
  T.raises(function() n.scale = torch.ones(1) end, "nn.Parameter")
  T.raises(function() nn.Module:extend("Empty")()(torch.ones(1)) end, "forward")
  T.eq(n(torch.ones(1, 2)).shape, torch.zeros(1, 2).shape)
end)

T.test("to(float64) converts parameters", function()
  local m = LinearModel():to(torch.float64)
  T.eq(m.fc1.weight.dtype, torch.float64)
  T.is_true(m.fc1.weight.requires_grad)
  T.eq(m(torch.randn(2, 5, {dtype = torch.float64})).dtype, torch.float64)
end)

T.test("losses: MSELoss and CrossEntropyLoss with reductions", function()
  local a, b = torch.tensor({1.0, 2.0, 3.0}), torch.tensor({1.0, 0.0, 0.0})
  T.close(nn.MSELoss()(a, b):item(), 13 / 3)
  T.close(nn.MSELoss({reduction = "sum"})(a, b):item(), 13)
  T.eq(F.mse_loss(a, b, {reduction = "none"}):tolist(), {0, 4, 9})
  local logits = torch.tensor({{0.0, 0.0}, {0.0, 0.0}})
  local target = torch.tensor({0, 1})
  T.close(nn.CrossEntropyLoss()(logits, target):item(), math.log(2))
  T.close(F.cross_entropy(logits, target, {reduction = "sum"}):item(), 2 * math.log(2))
  T.raises(function() F.mse_loss(a, b, {reduction = "avg"}) end, "reduction")
end)

T.test("functional: relu, linear, softmax", function()
  T.eq(F.relu(torch.tensor({-1.0, 1.0})):tolist(), {0, 1})
  local w, bias = torch.ones(2, 3), torch.tensor({1.0, 2.0})
  T.eq(F.linear(torch.ones(1, 3), w, bias):tolist(), {{4, 5}})
  T.eq(F.linear(torch.ones(1, 3), w):tolist(), {{3, 3}})
  T.close(F.softmax(torch.zeros(1, 4), 1), torch.full({1, 4}, 0.25))
end)

T.test("Linear's third argument is bias, as in PyTorch", function()
  local l = nn.Linear(3, 1, false)
  T.eq(l.bias, nil)
  T.eq(#l:parameters(), 1)
  local keys = {}
  for k in pairs(l:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"weight"})
  T.eq(tostring(l), "Linear(in_features=3, out_features=1, bias=False)")
  T.eq(l(torch.ones(2, 3)).shape, torch.zeros(2, 1).shape)
  T.is_true(nn.Linear(3, 1, true).bias ~= nil)
  T.eq(nn.Linear(3, 1, {bias = false}).bias, nil)
  T.raises(function() nn.Linear(3, 1, "no") end, "the third argument is bias")
  T.raises(function() nn.Linear(-1, 2) end, "Linear: sizes must be non-negative, got nn.Linear(-1, 2)")
end)

T.test("nn.ModuleList of a module list takes every child, and of itself ends (API fuzz defect 6)", function()
  local a = nn.ModuleList({nn.ReLU(), nn.Tanh()})
  local b = nn.ModuleList(a) -- ipairs counted a's children from 1 and lost child 0
  T.eq(#b, 2)
  T.is_true(rawequal(b[0], a[0]) and rawequal(b[1], a[1]), "the same children, in order")
  a:__init(a) -- appended to the list it walked, for ever
  T.eq(#a, 4)
end)

T.test("model:to moves parameters in place, as PyTorch: an optimizer built before keeps them", function()
  torch.manual_seed(0)
  local model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
  local w = model[0].weight -- nn.Sequential indexes from 0, as PyTorch
  local opt = optim.SGD(model:parameters(), {lr = 0.1})
  model(torch.randn(4, 3)):sum():backward()
  model:double()
  T.is_true(rawequal(model[0].weight, w), "the same Parameter object")
  T.eq(w.dtype, torch.float64)
  T.eq(w.grad.dtype, torch.float64, "its gradient moved with it")
  T.eq(w.requires_grad, true)
  local before = w:clone()
  opt:step() -- the optimizer built before the move updates the moved parameter
  T.is_true(not torch.equal(w, before), "the step reached the parameter")
  -- t.data = src, as PyTorch
  local t = torch.zeros(2, {requires_grad = true})
  t.data = torch.ones(3, {dtype = torch.float64})
  T.eq(tostring(t.shape), "torch.Size([3])")
  T.eq(t.requires_grad, true, "autograd fields stay")
  T.raises(function() t.data = torch.ones(2, {dtype = torch.int64}) end, "needs float data")
  local y = t * 2
  T.raises(function() y.data = torch.ones(3) end, "only a leaf tensor's data")
  T.raises(function() t.data = 3 end, "tensor")
end)

T.done()
