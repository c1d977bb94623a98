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

T.done()
