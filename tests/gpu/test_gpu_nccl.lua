-- test_gpu_nccl.lua — the NCCL backend on one rank and one GPU (NCCL refuses two ranks on
-- one GPU, so a one-GPU machine tests it alone): every collective on CUDA tensors gives
-- what one rank must (all_reduce's SUM/AVG/MAX of one contribution is that
-- contribution, broadcast and barrier return, all_gather and reduce_scatter copy),
-- async work handles complete, CPU tensors are refused by name, a training step under
-- DistributedDataParallel matches the plain step, and the group can be destroyed and
-- created again. Skips (exit 77) where no GPU is visible.
local T = require "support"

require("gpu_support").skip_without_gpu()

T.eq(dist.is_nccl_available(), true, "this CUDA build has NCCL")
dist.init_process_group{backend = "nccl"}
T.eq(dist.get_backend(), "nccl")
T.eq(dist.get_world_size(), 1)

local function same(a, b, what)
  T.eq(a.is_cuda, true, what .. ": stays on the GPU")
  T.is_true(torch.equal(a:cpu(), b:cpu()), what .. ": values")
end

T.test("collectives of one rank on CUDA tensors", function()
  torch.manual_seed(3)
  local x = torch.randn(1000):cuda()
  for _, op in ipairs{dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX, dist.ReduceOp.MIN} do
    local t = x:clone()
    dist.all_reduce(t, op)
    same(t, x, "all_reduce " .. tostring(op))
  end
  local d = torch.randn(7, {dtype = torch.float64}):cuda()
  local dc = d:clone()
  dist.all_reduce(dc)
  same(dc, d, "all_reduce float64")
  local i = torch.arange(0, 10):cuda()
  local ic = i:clone()
  dist.all_reduce(ic)
  same(ic, i, "all_reduce int64")
  local b = x:clone()
  dist.broadcast(b, 0)
  same(b, x, "broadcast")
  local out = {torch.zeros(1000):cuda()}
  dist.all_gather(out, x)
  same(out[1], x, "all_gather")
  local into = torch.zeros(1000):cuda()
  dist.all_gather_into_tensor(into, x)
  same(into, x, "all_gather_into_tensor")
  local rs = torch.zeros(1000):cuda()
  dist.reduce_scatter(rs, {x})
  same(rs, x, "reduce_scatter")
  dist.barrier()
  local w = dist.all_reduce(x:clone(), dist.ReduceOp.SUM, {async_op = true})
  w:wait()
  T.eq(w:is_completed(), true, "an async all_reduce completes")
  for _, size in ipairs{1, 1024, 1 << 20} do
    local big = torch.ones(size):cuda()
    dist.all_reduce(big)
    T.eq(big:sum():item(), size, "all_reduce of " .. size .. " floats")
  end
end)

T.test("CPU tensors are refused by name", function()
  T.raises(function() dist.all_reduce(torch.ones(3)) end,
           "the NCCL backend takes CUDA tensors")
  T.raises(function() dist.broadcast(torch.ones(3), 0) end, "move it with :to(\"cuda\")")
end)

T.test("a DDP training step over NCCL equals the plain step", function()
  torch.manual_seed(0)
  local plain = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5)):to("cuda")
  torch.manual_seed(0)
  local inner = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5)):to("cuda")
  local here = torch.cuda.current_device()
  local ddp = nn.DistributedDataParallel(inner, {device_ids = {here}, output_device = here})
  T.raises(function() nn.DistributedDataParallel(inner, {device_ids = {here + 1}}) end,
           "do not name the module's GPU")
  local x, y = torch.randn(64, 5):cuda(), torch.randn(64, 5):cuda()
  local loss_fn = nn.MSELoss()
  loss_fn(plain(x), y):backward()
  loss_fn(ddp(x), y):backward()
  local pp, dp = plain:parameters(), inner:parameters()
  for k = 1, #pp do
    T.is_true(torch.allclose(pp[k].grad:cpu(), dp[k].grad:cpu(), 1e-6, 1e-7),
              "gradient " .. k .. " (averaged over one rank)")
  end
end)

T.test("the group can be destroyed and created again", function()
  dist.destroy_process_group()
  T.eq(dist.is_initialized(), false)
  dist.init_process_group{backend = "nccl"}
  local t = torch.ones(4):cuda()
  dist.all_reduce(t)
  T.eq(t:sum():item(), 4)
end)

T.done()
