-- test_batchnorm.lua — nn.BatchNorm1d against PyTorch (tests/fixtures/batchnorm.safetensors,
-- written by gen_batchnorm_fixtures.py, which lists the cases): training forward, input
-- and parameter gradients, running statistics over two batches, num_batches_tracked, and
-- evaluation with the running statistics; (N, C) and (N, C, L), float32 and float64,
-- affine / track_running_stats off, other momentum and eps. Also train/eval switching,
-- state_dict names and the errors.
local T = require "support"

local fx = torch.load(os.getenv("DDP_TEST_FIXTURES") .. "/batchnorm.safetensors")
local exact, compared = 0, 0

-- got matches the fixture to the rounding of its dtype; counts the bit-exact ones.
local function match(got, name)
  local want = assert(fx[name], "the fixture has no tensor " .. name)
  compared = compared + 1
  if torch.equal(got, want) then exact = exact + 1 return end
  if os.getenv("BN_DEBUG") then print("inexact", name, (got:double() - want:double()):abs():max():item()) end
  T.close(got, want, want.dtype == torch.float64 and 1e-12 or 4e-6, name)
end

local CASES = {
  {"nc", {}}, {"ncl", {}}, {"plain", {affine = false, track_running_stats = false}},
  {"f64", {dtype = torch.float64}}, {"opts", {momentum = 0.3, eps = 1e-3}},
}

for _, case in ipairs(CASES) do
  local name, opts = case[1], case[2]
  T.test("BatchNorm1d matches PyTorch: " .. name, function()
    local x = fx[name .. ".x"]
    local bn = nn.BatchNorm1d(x.shape[2], opts)
    if bn.affine then
      torch.no_grad(function()
        bn.weight:copy_(fx[name .. ".weight"])
        bn.bias:copy_(fx[name .. ".bias"])
      end)
    end
    local xr = x:clone()
    xr.requires_grad = true
    local y = bn(xr)
    local loss = (y * fx[name .. ".gy"]):sum()
    loss:backward()
    match(y:detach(), name .. ".out")
    match(xr.grad, name .. ".gx")
    if bn.affine then
      match(bn.weight.grad, name .. ".gw")
      match(bn.bias.grad, name .. ".gb")
    end
    if bn.track_running_stats then
      match(bn.running_mean, name .. ".rm1")
      match(bn.running_var, name .. ".rv1")
    end
    torch.no_grad(function() bn(fx[name .. ".x2"]) end)
    if bn.track_running_stats then
      match(bn.running_mean, name .. ".rm2")
      match(bn.running_var, name .. ".rv2")
      T.eq(bn.num_batches_tracked:item(), fx[name .. ".nbt"]:item(), "num_batches_tracked")
    end
    bn:eval()
    if bn.affine then bn.weight.grad, bn.bias.grad = nil, nil end
    local xe = x:clone()
    xe.requires_grad = true
    local ye = bn(xe)
    local loss_e = (ye * fx[name .. ".gy"]):sum()
    loss_e:backward()
    match(ye:detach(), name .. ".eval_out")
    match(xe.grad, name .. ".eval_gx")
    if bn.affine then
      match(bn.weight.grad, name .. ".eval_gw")
      match(bn.bias.grad, name .. ".eval_gb")
    end
  end)
end

T.test("buffers, state_dict names, train and eval", function()
  local model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
  local keys = {}
  for k in pairs(model:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
              "1.num_batches_tracked"})
  T.eq(#model:parameters(), 4)
  T.eq(#model:buffers(), 3)
  T.is_true(model[1].num_batches_tracked.dtype == torch.int64, "num_batches_tracked is int64")
  local x = torch.randn(5, 3)
  model(x)
  model(x)
  T.eq(model[1].num_batches_tracked:item(), 2)
  model:eval()
  local rm = model[1].running_mean:clone()
  local a, b = model(x), model(x)
  T.is_true(torch.equal(a, b), "eval uses the running statistics")
  T.is_true(torch.equal(rm, model[1].running_mean), "eval leaves them alone")
  T.eq(model[1].num_batches_tracked:item(), 2)
  model:train()
  model(x)
  T.eq(model[1].num_batches_tracked:item(), 3)
  T.eq(tostring(nn.BatchNorm1d(10, {momentum = 0.01, affine = false})),
       "BatchNorm1d(10, eps=1e-05, momentum=0.01, affine=False, track_running_stats=True)")
  -- a loaded state_dict brings the statistics along
  local other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
  other:load_state_dict(model:state_dict())
  T.is_true(torch.equal(other[1].running_var, model[1].running_var), "running_var loaded")
end)

T.test("errors", function()
  local bn = nn.BatchNorm1d(4)
  T.raises(function() bn(torch.randn(2, 4, 3, 3)) end, "expected 2D or 3D input (got 4D input)")
  T.raises(function() bn(torch.randn(5, 3)) end, "running_mean should contain 3 elements not 4")
  T.raises(function() bn(torch.randn(1, 4)) end,
           "expected more than 1 value per channel when training, got input size (1x4)")
  bn:eval()
  T.eq(bn(torch.randn(1, 4)).shape, torch.randn(1, 4).shape) -- fine in evaluation
  T.raises(function() nn.BatchNorm1d(0) end, "num_features must be a positive integer")
  T.raises(function() nn.BatchNorm1d(4, {momentun = 0.1}) end, "did you mean 'momentum'")
  T.raises(function() nn.BatchNorm1d(4)(torch.randn(3, 4, {dtype = torch.float64})) end,
           "running_mean is float32 but the input is float64")
end)

print(string.format("batch norm: %d of %d fixture tensors bit-exact, the rest within float rounding",
                    exact, compared))
T.done()
