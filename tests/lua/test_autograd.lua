-- ranks: 1 2
-- test_autograd.lua — autograd through the Lua API: requires_grad, backward, grads that
-- accumulate with +=, grad_fn names, retain_graph, detach, no_grad in its three forms,
-- and the in-place checks that protect a graph.
local T = require "support"

T.test("backward fills .grad of leaves", function()
  local x = torch.tensor({1.0, 2.0, 3.0}, {requires_grad = true})
  local y = (x * x):sum() -- dy/dx = 2x
  y:backward()
  T.eq(x.grad:tolist(), {2, 4, 6})
  T.is_true(x.is_leaf and not y.is_leaf)
  T.eq(y.grad_fn:name(), "SumBackward0")
end)

T.test("grads accumulate until set to nil", function()
  local x = torch.tensor({1.0, -1.0}, {requires_grad = true})
  for _ = 1, 3 do (x * 2):sum():backward() end
  T.eq(x.grad:tolist(), {6, 6})
  x.grad = nil
  T.eq(x.grad, nil)
  local y = (x * 3):sum()
  y:backward()
  T.eq(x.grad:tolist(), {3, 3})
end)

T.test("grad of a broadcast op sums back to the input's shape", function()
  local w = torch.ones(3, {requires_grad = true})
  local x = torch.arange(6.0):view(2, 3)
  local y = (x * w):sum()
  y:backward()
  T.eq(w.grad:tolist(), {3, 5, 7})
end)

T.test("matmul, relu, mean, mse through a small network", function()
  local w = torch.tensor({{1.0, -1.0}, {0.5, 2.0}}, {requires_grad = true})
  local x = torch.tensor({{1.0, 2.0}})
  local h = torch.relu(x:mm(w:t())) -- (1x2): [1-2, 0.5+4] -> relu [0, 4.5]
  T.eq(h:tolist(), {{0, 4.5}})
  local loss = h:mean()
  loss:backward()
  -- d loss / d w[i,j] = 0.5 * [h_i > 0] * x_j
  T.eq(w.grad:tolist(), {{0, 0}, {0.5, 1.0}})
end)

T.test("backward with an explicit grad, and retain_graph", function()
  local x = torch.tensor({1.0, 2.0}, {requires_grad = true})
  local y = x * 3
  y:backward(torch.tensor({1.0, 0.5}), {retain_graph = true})
  T.eq(x.grad:tolist(), {3, 1.5})
  y:backward(torch.tensor({1.0, 1.0}))
  T.eq(x.grad:tolist(), {6, 4.5})
end)

T.test("backward of a non-scalar without a grad is an error", function()
  local x = torch.ones(2, {requires_grad = true})
  T.raises(function() (x * 2):backward() end, "scalar")
end)

T.test("detach cuts the graph and shares storage", function()
  local x = torch.ones(2, {requires_grad = true})
  local d = (x * 2):detach()
  T.is_true(not d.requires_grad and d.grad_fn == nil)
  T.eq(d:tolist(), {2, 2})
end)

T.test("no_grad: with a function, as a <close> value, and set_grad_enabled", function()
  local x = torch.ones(2, {requires_grad = true})
  local y = torch.no_grad(function() return x * 2 end)
  T.is_true(not y.requires_grad)
  T.is_true(torch.is_grad_enabled())
  do
    local _ <close> = torch.no_grad()
    T.is_true(not torch.is_grad_enabled())
    T.is_true(not (x * 2).requires_grad)
  end
  T.is_true(torch.is_grad_enabled())
  -- the mode comes back even when the function raises
  T.raises(function() torch.no_grad(function() error("boom") end) end, "boom")
  T.is_true(torch.is_grad_enabled())
  do
    local _ <close> = torch.set_grad_enabled(false)
    T.is_true(not torch.is_grad_enabled())
    T.is_true(torch.enable_grad(function() return torch.is_grad_enabled() end))
  end
  T.is_true(torch.is_grad_enabled())
end)

T.test("requires_grad is settable on leaves, only for floats", function()
  local x = torch.zeros(2)
  x.requires_grad = true
  T.is_true(x.requires_grad)
  x:requires_grad_(false)
  T.is_true(not x.requires_grad)
  T.raises(function() torch.zeros(2, {dtype = torch.int64}).requires_grad = true end, "floating point")
end)

T.test("in-place ops on a leaf that requires grad are refused, allowed under no_grad", function()
  local x = torch.ones(2, {requires_grad = true})
  T.raises(function() x:add_(1) end, "add_")
  torch.no_grad(function() x:add_(1) end)
  T.eq(x:tolist(), {2, 2})
end)

T.test("grad_fn names like PyTorch", function()
  local x = torch.ones(2, 2, {requires_grad = true})
  T.eq(tostring((x + x).grad_fn), "<AddBackward0>")
  T.eq(tostring((x * 2).grad_fn), "<MulBackward0>")
  T.eq(tostring(x:mm(x).grad_fn), "<MmBackward0>")
  T.eq(tostring(x:sum().grad_fn), "<SumBackward0>")
end)

T.test("data and T of a tensor that requires grad", function()
  local x = torch.ones(2, 3, {requires_grad = true})
  T.is_true(not x.data.requires_grad)
  T.eq(x.T.shape[1], 3)
  x.T:sum():backward()
  T.eq(x.grad:sum():item(), 6.0)
end)

-- ---- the version counter: a backward pass over a tensor changed in place is refused ----

T.test("a tensor changed in place after the forward pass fails backward, in PyTorch's words", function()
  local w = torch.randn(10, 5, {requires_grad = true})
  local x = torch.randn(10, 5)
  local y = (w * x):sum()
  T.eq(x._version, 0)
  torch.no_grad(function() x:mul_(2) end)
  T.eq(x._version, 1)
  local err = T.raises(function() y:backward() end,
    "one of the variables needed for gradient computation has been modified by an inplace " ..
    "operation: [torch.FloatTensor [10, 5]] is at version 1; expected version 0 instead. Hint:")
  T.is_true(err:find("test_autograd.lua:%d+:") ~= nil, "points at the learner's line: " .. err)
  T.is_true(w.grad == nil, "nothing accumulated")
  -- a fresh forward pass sees the new values and runs
  local y2 = (w * x):sum()
  y2:backward()
  T.close(w.grad, x)
end)

T.test("_version counts in-place writes, shared by views", function()
  local t = torch.zeros(2, 3)
  T.eq(t._version, 0)
  t:add_(1)
  t:fill_(2)
  t:zero_()
  T.eq(t._version, 3)
  local row = t[1]
  row:copy_(torch.ones(3))
  T.eq(t._version, 4)
  t[0] = 5 -- index assignment writes in place too
  T.eq(row._version, 5)
  local c = t:clone()
  T.eq(c._version, 0)
  T.eq(t._version, 5, "reading it counted nothing")
end)

T.test("opt:step() between the forward pass and backward is refused", function()
  torch.manual_seed(0)
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  local opt = optim.SGD(model:parameters(), {lr = 0.1})
  local criterion = nn.MSELoss()
  local x, y = torch.randn(4, 5), torch.randn(4, 5)
  criterion(model(x), y):backward() -- grads exist, so the step below changes the weights
  local loss = criterion(model(x), y)
  opt:step()
  local err = T.raises(function() loss:backward() end, "modified by an inplace operation")
  -- the weight is at version 1 after its initialisation (uniform_), as in PyTorch
  T.is_true(err:find("[torch.FloatTensor [5, 10]] is at version 2; expected version 1", 1, true) ~= nil, err)
  T.is_true(err:find("Did opt:step() run between the forward pass and loss:backward()?", 1, true) ~= nil, err)
end)

T.test("a normal training loop never trips the version check", function()
  torch.manual_seed(0)
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  local criterion = nn.MSELoss()
  local x, y = torch.randn(16, 5), torch.randn(16, 5)
  for _, opt in ipairs({optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9}),
                        optim.Adam(model:parameters(), {lr = 1e-2})}) do
    local first
    for step = 1, 20 do
      opt:zero_grad()
      local loss = criterion(model(x), y)
      loss:backward()
      opt:step()
      first = first or loss:item()
      if step == 20 then T.is_true(loss:item() < first, "the loss went down") end
    end
  end
  T.eq(model[0].weight._version, 41) -- 1 after initialisation (as PyTorch), + 40 steps
end)

T.test("changing what no gradient reads is no error (as PyTorch)", function()
  -- one Linear over an input without grad: its backward reads the input only
  local lin = nn.Linear(5, 3)
  local opt = optim.SGD(lin:parameters(), {lr = 0.1})
  local x = torch.randn(4, 5)
  lin(x):sum():backward()
  local loss = lin(x):sum()
  opt:step()
  loss:backward()
  T.close(lin.weight.grad, x:sum(0):unsqueeze(0):expand(3, 5) * 2)
  -- a + b reads neither operand
  local a = torch.ones(3, {requires_grad = true})
  local b = torch.ones(3)
  local s = (a + b):sum()
  b:add_(1)
  s:backward()
  T.eq(a.grad:tolist(), {1, 1, 1})
end)

-- ---- torch.no_grad() called alone ------------------------------------------------------
-- It turns gradients off until they are turned on again (the <close> form relies on that,
-- and a call cannot tell whether its result goes into a <close> variable); when a
-- backward pass then finds nothing to differentiate, the error says why and what to type.
T.test("a bare torch.no_grad() turns gradients off, and backward says so", function()
  local x = torch.ones(2, {requires_grad = true})
  torch.no_grad()
  T.is_true(not torch.is_grad_enabled())
  local y = (x * 2):sum()
  T.is_true(not y.requires_grad)
  local err = T.raises(function() y:backward() end, "Gradients are off right now")
  T.is_true(err:find("torch.no_grad(function() ... end)", 1, true) ~= nil, err)
  T.is_true(err:find("torch.set_grad_enabled(true)", 1, true) ~= nil, err)
  torch.set_grad_enabled(true)
  T.is_true(torch.is_grad_enabled())
  y = (x * 2):sum()
  y:backward()
  T.eq(x.grad:tolist(), {2, 2})
  -- with gradients on, the same error does not blame grad mode
  err = T.raises(function() torch.ones(1):sum():backward() end, "does not require grad")
  T.is_true(err:find("Gradients are off", 1, true) == nil, err)
end)

T.done()
