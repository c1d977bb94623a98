-- test_gpu_train.lua — the tutorial's model, Linear(5,10)-ReLU-Linear(10,5) with MSE and
-- Adam (and SGD with momentum), trained 25 steps on the GPU and on the CPU from the same
-- start: the losses and the final parameters agree (float32 relative error under 1e-5;
-- the optimizer's element formula is one definition for both devices, the GEMMs differ
-- in summation order only). Also: model:to("cuda") moves the parameters, an optimizer
-- built afterwards keeps its state on the GPU, and gradients land on the GPU;
-- cross_entropy (class indices and probabilities, every reduction) and its backward;
-- BatchNorm1d (forward, backward, running statistics, eval).
-- Skips (exit 77) where no GPU is visible.
local T = require "support"

require("gpu_support").skip_without_gpu()

local function rel_err(a, b)
  local x, y = a:cpu():double(), b:cpu():double()
  return (x - y):abs():max():item() / math.max(y:abs():max():item(), 1e-30)
end

local function model_from(seed)
  torch.manual_seed(seed)
  return nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
end

-- Trains `steps` steps on `device` and returns the losses and the model.
local function train(device, make_opt, steps)
  local model = model_from(0)
  model:to(device)
  local opt = make_opt(model:parameters())
  torch.manual_seed(1)
  local x, y = torch.randn(64, 5), torch.randn(64, 5)
  x, y = x:to(device), y:to(device)
  local loss_fn = nn.MSELoss()
  local losses = {}
  for i = 1, steps do
    opt:zero_grad()
    local loss = loss_fn(model(x), y)
    loss:backward()
    opt:step()
    losses[i] = loss:item()
  end
  return losses, model
end

local optimizers = {
  Adam = function(ps) return optim.Adam(ps, {lr = 1e-2}) end,
  SGD = function(ps) return optim.SGD(ps, {lr = 0.05, momentum = 0.9}) end,
}

for name, make in pairs(optimizers) do
  T.test("25 steps with " .. name .. " on the GPU equal the CPU run", function()
    local cpu_losses, cpu_model = train("cpu", make, 25)
    local gpu_losses, gpu_model = train("cuda", make, 25)
    for i = 1, 25 do
      local err = math.abs(gpu_losses[i] - cpu_losses[i]) / math.abs(cpu_losses[i])
      T.is_true(err < 1e-5, string.format("step %d: loss %.9g on the GPU, %.9g on the CPU", i,
                                          gpu_losses[i], cpu_losses[i]))
    end
    T.is_true(cpu_losses[25] < cpu_losses[1], "the loss went down")
    local gp, cp = gpu_model:parameters(), cpu_model:parameters()
    for i = 1, #cp do
      T.eq(gp[i].is_cuda, true, "parameter " .. i .. " stays on the GPU")
      T.eq(gp[i].grad.is_cuda, true, "its gradient is on the GPU")
      local err = rel_err(gp[i], cp[i])
      T.is_true(err < 1e-5, string.format("parameter %d: relative error %.3g", i, err))
    end
  end)
end

T.test("cross_entropy and its backward on the GPU equal the CPU's", function()
  torch.manual_seed(4)
  for _, reduction in ipairs{"mean", "sum", "none"} do
    local logits = torch.randn(16, 7)
    local classes = torch.randint(0, 7, {16})
    local probs = torch.randn(16, 7):softmax(1)
    for _, target in ipairs{classes, probs} do
      local x = logits:clone():requires_grad_()
      local gx = logits:cuda():requires_grad_()
      local loss = nn.functional.cross_entropy(x, target, {reduction = reduction})
      local gloss = nn.functional.cross_entropy(gx, target:cuda(), {reduction = reduction})
      T.eq(gloss.is_cuda, true)
      T.is_true(rel_err(gloss, loss) < 1e-5, "loss, reduction " .. reduction)
      local seed = torch.ones_like(loss)
      loss:backward(seed)
      gloss:backward(seed:cuda())
      T.eq(gx.grad.is_cuda, true, "the gradient lands on the GPU")
      T.is_true(rel_err(gx.grad, x.grad) < 1e-5, "gradient, reduction " .. reduction)
    end
  end
  T.raises(function() nn.functional.cross_entropy(torch.randn(2, 3):cuda(), torch.tensor({0, 1})) end,
           "the input is on cuda:")
end)

T.test("BatchNorm1d on the GPU equals the CPU's, running statistics included", function()
  torch.manual_seed(9)
  local cpu_bn, gpu_bn = nn.BatchNorm1d(4), nn.BatchNorm1d(4)
  gpu_bn:to("cuda")
  local x = torch.randn(8, 4) * 3 + 1
  local xc, xg = x:clone():requires_grad_(), x:cuda():requires_grad_()
  local yc, yg = cpu_bn(xc), gpu_bn(xg)
  T.eq(yg.is_cuda, true)
  T.is_true(rel_err(yg, yc) < 1e-5, "output")
  yc:pow(2):sum():backward()
  yg:pow(2):sum():backward()
  T.is_true(rel_err(xg.grad, xc.grad) < 1e-5, "input gradient")
  T.eq(gpu_bn.weight.grad.is_cuda, true)
  T.is_true(rel_err(gpu_bn.weight.grad, cpu_bn.weight.grad) < 1e-5, "weight gradient")
  T.is_true(rel_err(gpu_bn.running_mean, cpu_bn.running_mean) < 1e-6, "running mean")
  T.is_true(rel_err(gpu_bn.running_var, cpu_bn.running_var) < 1e-6, "running var")
  T.eq(gpu_bn.running_mean.is_cuda, true, "the buffers stay on the GPU")
  gpu_bn:eval()
  cpu_bn:eval()
  T.is_true(rel_err(gpu_bn(x:cuda()), cpu_bn(x)) < 1e-5, "eval mode")
end)

T.test("the optimizer's state lives with the parameters", function()
  local model = model_from(0)
  model:to("cuda")
  local opt = optim.Adam(model:parameters(), {lr = 1e-3})
  local loss = model(torch.randn(8, 5):cuda()):pow(2):mean()
  loss:backward()
  opt:step()
  for _, p in ipairs(model:parameters()) do T.eq(p.is_cuda, true) end
  local state = opt:state_dict().state
  local n = 0
  for _, s in pairs(state) do
    n = n + 1
    T.eq(s.exp_avg.is_cuda, true, "exp_avg on the GPU")
    T.eq(s.exp_avg_sq.is_cuda, true, "exp_avg_sq on the GPU")
  end
  T.eq(n, #model:parameters(), "one state per parameter")
end)

T.done()
