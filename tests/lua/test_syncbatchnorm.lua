-- ranks: 1 2 4
-- test_syncbatchnorm.lua — nn.SyncBatchNorm over the ranks: N ranks with local batch b
-- give the statistics, outputs and input gradients of one process with the batch of
-- N * b (nn.BatchNorm1d on the whole batch, computed on every rank), and their weight and
-- bias gradients add up to its; (N, C) and (N, C, L); convert_sync_batchnorm; evaluation
-- uses the running statistics without talking to the other ranks.
local T = require "support"

dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, world = dist.get_rank(), dist.get_world_size()

-- The whole batch (the same on every rank: same seed) and this rank's rows of it.
local function batch(shape, seed)
  torch.manual_seed(seed)
  local x = torch.randn(table.unpack(shape)) * 1.5 + 0.3
  local gy = torch.randn(table.unpack(shape))
  return x, gy
end

local function rows(t, b) return t:narrow(0, rank * b, b):contiguous() end

local function set_affine(bn, c)
  torch.manual_seed(77)
  torch.no_grad(function()
    bn.weight:copy_(torch.randn(c) * 0.5 + 1)
    bn.bias:copy_(torch.randn(c) * 0.5)
  end)
end

local function check_shape(shape)
  local b, c = shape[1] // world, shape[2]
  local x, gy = batch(shape, 5)
  -- one process, the whole batch
  local ref = nn.BatchNorm1d(c)
  set_affine(ref, c)
  local xr = x:clone()
  xr.requires_grad = true
  local yr = ref(xr)
  local lr = (yr * gy):sum()
  lr:backward()
  -- this rank's share
  local sbn = nn.SyncBatchNorm(c)
  set_affine(sbn, c)
  local xl = rows(x, b)
  xl.requires_grad = true
  local yl = sbn(xl)
  local ll = (yl * rows(gy, b)):sum()
  ll:backward()
  local tol = 2e-6
  T.close(yl:detach(), rows(yr:detach(), b), tol, "output rows")
  T.close(xl.grad, rows(xr.grad, b), tol, "input gradient rows")
  T.close(sbn.running_mean, ref.running_mean, tol, "running_mean")
  T.close(sbn.running_var, ref.running_var, tol, "running_var")
  local gw, gb = sbn.weight.grad:clone(), sbn.bias.grad:clone()
  dist.all_reduce(gw)
  dist.all_reduce(gb)
  T.close(gw, ref.weight.grad, 1e-5, "weight gradient summed over ranks")
  T.close(gb, ref.bias.grad, 1e-5, "bias gradient summed over ranks")
  -- evaluation: running statistics, no collective (ranks may then differ in batch size)
  sbn:eval()
  ref:eval()
  local n_eval = rank + 1
  local xe = x:narrow(0, 0, n_eval)
  T.close(sbn(xe), ref(xe):detach(), tol, "evaluation output")
end

T.test("SyncBatchNorm on (N, C) equals one process on the whole batch", function()
  check_shape({8 * world, 6})
end)

T.test("SyncBatchNorm on (N, C, L) equals one process on the whole batch", function()
  check_shape({4 * world, 3, 5})
end)

T.test("convert_sync_batchnorm replaces BatchNorm1d, sharing parameters and buffers", function()
  torch.manual_seed(1)
  local model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
  local bn = model[1]
  bn:eval()
  local converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
  T.is_true(converted == model, "the container itself is kept")
  local sbn = model[1]
  T.eq(sbn.__name, "SyncBatchNorm")
  T.is_true(sbn.weight == bn.weight and sbn.running_var == bn.running_var, "shared tensors")
  T.eq(sbn.training, false)
  T.eq(tostring(sbn), "SyncBatchNorm(6, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)")
  local keys = {}
  for k in pairs(model:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
              "1.num_batches_tracked", "3.weight", "3.bias"})
  local lone = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3, {affine = false}))
  T.eq(lone.__name, "SyncBatchNorm")
  T.is_true(lone.weight == nil, "affine=false carried over")
  -- training through the converted model matches the whole batch on one process
  model:train()
  local x = torch.randn(4 * world, 4)
  local ref = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
  ref:load_state_dict(model:state_dict())
  local y = model(rows(x, 4))
  T.close(y:detach(), rows(ref(x):detach(), 4), 2e-6, "converted model's output")
  T.raises(function() nn.SyncBatchNorm.convert_sync_batchnorm(5) end, "expected a module")
end)

T.test("SyncBatchNorm errors", function()
  T.raises(function() nn.SyncBatchNorm(4)(torch.randn(4)) end, "expected at least 2D input (got 1D input)")
  T.raises(function() nn.SyncBatchNorm(4, {process_grou = 1}) end, "did you mean 'process_group'")
end)

T.done()
