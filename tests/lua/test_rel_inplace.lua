-- test_rel_inplace.lua — issue 10, defect 11: in-place ops on tensors with autograd
-- history are recorded as PyTorch records them (h:relu_() after a layer, y:add_(1) while
-- y:exp() is pending, y[0] = 5), with the gradients PyTorch gives; what a saved tensor's
-- version counter says is checked at backward, naming the op and the versions.
local T = require "support"

local function leaf(values) return torch.tensor(values, {requires_grad = true}) end

T.test("relu_ on a layer's output (the issue's example)", function()
  torch.manual_seed(0)
  local lin = nn.Linear(2, 2)
  local x = torch.tensor({{1.0, -2.0}, {0.5, 3.0}})
  local h = lin(x)
  h:relu_()
  T.eq(h.grad_fn and tostring(h.grad_fn), "<ReluBackward0>")
  h:sum():backward()
  local g_inplace = lin.weight.grad:clone()
  lin:zero_grad()
  lin(x):relu():sum():backward()
  T.close(g_inplace, lin.weight.grad, 0)
end)

T.test("the gradient of each in-place op is PyTorch's", function()
  local x = leaf({1.0, -2.0, 3.0})
  local h = x * 2
  h:relu_()
  h:sum():backward()
  T.eq(x.grad:tolist(), {2.0, 0.0, 2.0})
  x = leaf({1.0, 2.0})
  local y = x * 1
  y:mul_(3)
  y:add_(torch.ones(2), {alpha = 2})
  y:pow_(2) -- (3x + 2)^2: d/dx = 6 (3x + 2)
  y:sum():backward()
  T.eq(x.grad:tolist(), {30.0, 48.0})
  x = leaf({0.5, 4.0})
  y = x + 0
  y:clamp_(0, 1)
  y:sum():backward()
  T.eq(x.grad:tolist(), {1.0, 0.0})
end)

T.test("y:add_(1) while y:exp() is pending: exp saved its output, not y", function()
  local x = leaf({0.0, 1.0})
  local y = x * 1
  local z = y:exp()
  y:add_(1)
  T.eq(y._version, 1)
  z:sum():backward()
  T.close(x.grad, torch.tensor({1.0, math.exp(1)}), 1e-6)
  x.grad = nil
  y:sum():backward()
  T.eq(x.grad:tolist(), {1.0, 1.0})
end)

T.test("y[0] = 5 on a tensor with history", function()
  local x = leaf({{1.0, 2.0}, {3.0, 4.0}})
  local y = x * 2
  y[0] = 5
  T.eq(y:tolist(), {{5.0, 5.0}, {6.0, 8.0}})
  y:sum():backward()
  T.eq(x.grad:tolist(), {{0.0, 0.0}, {2.0, 2.0}})
end)

T.test("fill_, zero_ and copy_ on a tensor with history", function()
  local x, w = leaf({1.0, 2.0}), leaf({3.0, 4.0})
  local y = x * 2
  y:zero_()
  ;(y + x):sum():backward()
  T.eq(x.grad:tolist(), {1.0, 1.0})
  x.grad = nil
  y = x * 2
  y:copy_(w)
  T.eq(y:tolist(), {3.0, 4.0})
  y:sum():backward()
  T.eq(w.grad:tolist(), {1.0, 1.0})
  T.eq(x.grad:tolist(), {0.0, 0.0})
  x.grad = nil
  y = x * 2
  y:fill_(7)
  ;(y * x):sum():backward()
  T.eq(x.grad:tolist(), {7.0, 7.0})
end)

T.test("a plain tensor changed in place by one that requires grad gets history", function()
  local w = leaf({1.0, 2.0})
  local t = torch.zeros(2)
  t:add_(w)
  T.is_true(t.requires_grad and t.grad_fn ~= nil, "t has history")
  ;(t * 3):sum():backward()
  T.eq(w.grad:tolist(), {3.0, 3.0})
end)

T.test("a saved tensor overwritten in place fails at backward, naming op and versions", function()
  local x = leaf({1.0, 2.0})
  local y = x * 1
  local z = y * y -- MulBackward0 saves y
  y:add_(1)
  local err = T.raises(function() z:sum():backward() end,
                       "one of the variables needed for gradient computation has been modified by an inplace operation")
  T.has(err, "[torch.FloatTensor [2]], which is output 0 of AddBackward0,")
  T.has(err, "is at version 1; expected version 0 instead")
end)

T.test("still refused: a leaf that requires grad, and a view of a tracked tensor", function()
  local x = leaf({1.0, 2.0})
  T.raises(function() x:add_(1) end, "a leaf tensor that requires grad is being used in an in-place operation")
  local y = x * 2
  T.raises(function() y[0]:add_(1) end, "in-place operation on a view (made by SelectBackward0)")
  T.raises(function() y:view(2, 1):mul_(2) end, "ViewBackward0")
  -- under no_grad an in-place write records nothing
  torch.no_grad(function() y:add_(1) end)
  T.eq(y:tolist(), {3.0, 5.0})
  y:sum():backward()
  T.eq(x.grad:tolist(), {2.0, 2.0})
end)

T.done()
