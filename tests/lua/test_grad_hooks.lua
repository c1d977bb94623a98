-- ranks: 1
-- test_grad_hooks.lua — p:register_post_accumulate_grad_hook(fn), as PyTorch's: fn(p)
-- runs once per backward pass, after the last use of p added its share (so p.grad is
-- final), the last layer's parameters first; handles remove hooks; a hook's error stops
-- backward and is raised unchanged.
local T = require "support"

T.test("a hook sees the final gradient, once per backward", function()
  local lin = nn.Linear(3, 4)
  local x = torch.randn(5, 3)
  local seen = {}
  lin.weight:register_post_accumulate_grad_hook(function(p)
    seen[#seen + 1] = p.grad:clone()
  end)
  -- the weight is used twice: through linear and through a plain mm
  local loss = (lin(x) + x:mm(lin.weight:t())):sum()
  loss:backward()
  T.eq(#seen, 1)
  T.close(seen[1], lin.weight.grad, 0)
  T.close(seen[1], torch.ones(5, 4):t():mm(x) * 2, 1e-5)
end)

T.test("hooks run in the order backward finishes leaves: last layer first", function()
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  local order = {}
  for i, p in ipairs(model:parameters()) do
    p:register_post_accumulate_grad_hook(function() order[#order + 1] = i end)
  end
  model(torch.randn(8, 5)):sum():backward()
  T.eq(#order, 4)
  T.is_true(order[1] >= 3 and order[2] >= 3, "layer 2 first: " .. table.concat(order, ","))
end)

T.test("a removed hook does not run; remove twice is fine", function()
  local w = torch.ones(3, {requires_grad = true})
  local n = 0
  local h = w:register_post_accumulate_grad_hook(function() n = n + 1 end)
  T.is_true(tostring(h):find("RemovableHandle", 1, true))
  ;(w * 2):sum():backward()
  h:remove()
  h:remove()
  ;(w * 2):sum():backward()
  T.eq(n, 1)
  T.eq(w.grad:tolist(), {4, 4, 4})
end)

T.test("a hook's error stops backward and keeps its message", function()
  local w = torch.ones(2, {requires_grad = true})
  w:register_post_accumulate_grad_hook(function() error("no gradients today") end)
  local ok, err = pcall(function() (w * 3):sum():backward() end)
  T.is_true(not ok)
  T.is_true(tostring(err):find("no gradients today", 1, true), tostring(err))
end)

T.test("only leaves that require grad take hooks", function()
  local ok, err = pcall(function()
    torch.ones(2):register_post_accumulate_grad_hook(function() end)
  end)
  T.is_true(not ok and err:find("doesn't require gradient", 1, true), tostring(err))
  local w = torch.ones(2, {requires_grad = true})
  ok, err = pcall(function() (w * 2):register_post_accumulate_grad_hook(function() end) end)
  T.is_true(not ok and err:find("non-leaf", 1, true), tostring(err))
end)

T.done()
