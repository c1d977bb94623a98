-- ranks: 1 2
-- test_optim.lua — SGD, Adam and AdamW from Lua against updates worked out by hand
-- (loss = sum(p^2), so grad = 2p), param groups, zero_grad, skipped params, and
-- state_dict / load_state_dict shaped like PyTorch's.
local T = require "support"

-- One step: grads of sum(p^2) for every param, then opt:step().
local function step(opt, params)
  opt:zero_grad()
  local loss = 0
  for _, p in ipairs(params) do loss = loss + (p * p):sum() end
  loss:backward()
  opt:step()
end

T.test("SGD: plain, momentum and weight decay", function()
  local p = torch.tensor({1.0, -2.0}, {requires_grad = true})
  local opt = optim.SGD({p}, {lr = 0.1})
  step(opt, {p})
  T.close(p, torch.tensor({0.8, -1.6})) -- p - 0.1 * 2p
  local q = torch.tensor({1.0}, {requires_grad = true})
  local mom = optim.SGD({q}, {lr = 0.1, momentum = 0.9})
  step(mom, {q}) -- buf = 2, q = 0.8
  step(mom, {q}) -- g = 1.6, buf = 0.9*2 + 1.6 = 3.4, q = 0.8 - 0.34
  T.close(q:item(), 0.46)
  local r = torch.tensor({1.0}, {requires_grad = true})
  step(optim.SGD({r}, {lr = 0.1, weight_decay = 0.5}), {r}) -- g = 2 + 0.5
  T.close(r:item(), 0.75)
  local s = torch.tensor({1.0}, {requires_grad = true})
  local nes = optim.SGD({s}, {lr = 0.1, momentum = 0.9, nesterov = true})
  step(nes, {s}) -- buf = 2, g = 2 + 0.9 * 2 = 3.8
  T.close(s:item(), 0.62)
end)

T.test("Adam: first step moves each element by lr against its grad's sign", function()
  local p = torch.tensor({1.0, -3.0}, {requires_grad = true})
  local opt = optim.Adam({p}, {lr = 0.01})
  step(opt, {p})
  T.close(p, torch.tensor({0.99, -2.99}), 1e-6)
  -- second step by the formula: m, v with bias correction
  local g = {2 * 0.99, 2 * -2.99}
  local m1, v1 = {0.1 * 2, 0.1 * -6}, {0.001 * 4, 0.001 * 36}
  local expect = {}
  for i = 1, 2 do
    local m = 0.9 * m1[i] + 0.1 * g[i]
    local v = 0.999 * v1[i] + 0.001 * g[i] ^ 2
    local mhat, vhat = m / (1 - 0.9 ^ 2), v / (1 - 0.999 ^ 2)
    expect[i] = ({0.99, -2.99})[i] - 0.01 * mhat / (math.sqrt(vhat) + 1e-8)
  end
  step(opt, {p})
  T.close(p, torch.tensor(expect), 1e-6)
end)

T.test("AdamW decays the weights first; Adam's weight decay is L2", function()
  local p = torch.tensor({1.0}, {requires_grad = true})
  step(optim.AdamW({p}, {lr = 0.1, weight_decay = 0.5}), {p})
  T.close(p:item(), 1.0 * (1 - 0.1 * 0.5) - 0.1, 1e-6)
  local q = torch.tensor({1.0}, {requires_grad = true})
  step(optim.AdamW({q}, {lr = 0.1}), {q}) -- default weight_decay 1e-2
  T.close(q:item(), 1.0 * (1 - 0.1 * 0.01) - 0.1, 1e-6)
  local r = torch.tensor({1.0}, {requires_grad = true})
  step(optim.Adam({r}, {lr = 0.1, weight_decay = 0.5}), {r})
  T.close(r:item(), 0.9, 1e-6) -- L2 only changes the grad, whose sign stays
end)

T.test("defaults and validation follow PyTorch", function()
  local p = torch.zeros(1, {requires_grad = true})
  local adam = optim.Adam({p})
  T.eq(adam.param_groups[1].lr, 1e-3)
  T.eq(adam.param_groups[1].betas, {0.9, 0.999})
  T.eq(adam.param_groups[1].eps, 1e-8)
  T.eq(adam.param_groups[1].weight_decay, 0)
  T.eq(optim.AdamW({p}).param_groups[1].weight_decay, 1e-2)
  T.raises(function() optim.SGD({p}) end, "lr is required")
  T.raises(function() optim.SGD({p}, {lr = -1}) end, "invalid learning rate")
  T.raises(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end, "Nesterov")
  T.raises(function() optim.Adam({p}, {lr = 0.1, betas = {1.5, 0.9}}) end, "beta")
  T.raises(function() optim.Adam({p}, {lrate = 0.1}) end, "unknown option 'lrate'")
  T.raises(function() optim.SGD({}, {lr = 0.1}) end, "empty parameter list")
  T.raises(function() optim.SGD({1, 2}, {lr = 0.1}) end, "params must be")
end)

T.test("params without a grad are skipped; zero_grad sets grads to nil", function()
  local a = torch.tensor({1.0}, {requires_grad = true})
  local b = torch.tensor({1.0}, {requires_grad = true})
  local opt = optim.Adam({a, b}, {lr = 0.1})
  step(opt, {a})
  T.close(a:item(), 0.9, 1e-6)
  T.eq(b:item(), 1.0)
  T.is_true(a.grad ~= nil)
  opt:zero_grad()
  T.eq(a.grad, nil)
  local sd = opt:state_dict()
  T.eq(sd.state[0].step, 1)
  T.eq(sd.state[1], nil)
end)

T.test("param groups with their own lr; lr can be changed between steps", function()
  local a = torch.tensor({1.0}, {requires_grad = true})
  local b = torch.tensor({1.0}, {requires_grad = true})
  local opt = optim.SGD({{params = {a}}, {params = {b}, lr = 0.25}}, {lr = 0.1})
  step(opt, {a, b})
  T.close(a:item(), 0.8)
  T.close(b:item(), 0.5)
  opt.param_groups[1].lr = 0.5
  step(opt, {a, b})
  T.close(a:item(), 0.0)
end)

T.test("state_dict and load_state_dict continue training exactly", function()
  torch.manual_seed(1)
  local function make()
    local m = nn.Linear(3, 2)
    return m, optim.Adam(m:parameters(), {lr = 0.05})
  end
  local x, y = torch.randn(8, 3), torch.randn(8, 2)
  local function train(m, opt, n)
    for _ = 1, n do
      opt:zero_grad()
      local loss = nn.MSELoss()(m(x), y)
      loss:backward()
      opt:step()
    end
  end
  local m1, o1 = make()
  local m2, o2 = make()
  m2:load_state_dict(m1:state_dict())
  train(m1, o1, 3)
  local sd = o1:state_dict()
  T.eq(sd.param_groups[1].params, {0, 1})
  T.eq(sd.param_groups[1].lr, 0.05)
  T.eq(sd.state[0].step, 3)
  T.eq(sd.state[0].exp_avg.shape, m1.weight.shape)
  m2:load_state_dict(m1:state_dict())
  o2:load_state_dict(sd)
  train(m1, o1, 2)
  train(m2, o2, 2)
  T.is_true(torch.equal(m1.weight, m2.weight) and torch.equal(m1.bias, m2.bias))
  local s = optim.SGD(m1:parameters(), {lr = 0.1, momentum = 0.9})
  train(m1, s, 1)
  T.eq(s:state_dict().state[1].momentum_buffer.shape, m1.bias.shape)
  T.raises(function() s:load_state_dict({state = {}, param_groups = {}}) end, "parameter groups")
end)

T.test("the tutorial loop trains: loss goes down", function()
  torch.manual_seed(0)
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  local opt = optim.Adam(model:parameters(), {lr = 1e-2})
  local x, y = torch.randn(64, 5), torch.randn(64, 5)
  local first, last
  for i = 1, 50 do
    opt:zero_grad()
    local loss = nn.MSELoss()(model(x), y)
    loss:backward()
    opt:step()
    if i == 1 then first = loss:item() end
    last = loss:item()
  end
  T.is_true(last < first, string.format("loss %g -> %g", first, last))
end)

T.done()
