-- ranks: 4
-- test_gpu_gloo.lua — Gloo with CUDA tensors, on 4 ranks that may share one GPU (NCCL
-- refuses that): every collective on CUDA tensors gives the CPU's answer and leaves the
-- result on the GPU (comm_staged.c moves them through host memory), point to point in a
-- ring, an async all_reduce, a DDP step whose averaged gradients equal one process's on
-- the whole batch, and backend="nccl" with more ranks than GPUs runs Gloo instead and
-- says so. Run on 4 ranks (the "ranks:" line above; tests/tests.cmake and
-- scripts/gpu-check.sh read it). Skips (exit 77) where no GPU is visible.
local T = require "support"

require("gpu_support").skip_without_gpu()

dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()
T.eq(world, 4, "run on 4 ranks")

local function on_gpu_equal(t, want, what)
  T.eq(t.is_cuda, true, what .. ": stays on the GPU")
  T.is_true(torch.equal(t:cpu(), want), what .. ": values")
end

T.test("collectives on CUDA tensors over Gloo", function()
  local mine = torch.arange(0, 6):float() + rank * 10 -- rank r: r*10 + {0..5}
  local sum = torch.arange(0, 6):float() * world + 10 * (0 + 1 + 2 + 3)
  local t = mine:cuda()
  dist.all_reduce(t)
  on_gpu_equal(t, sum, "all_reduce SUM")
  t = mine:cuda()
  dist.all_reduce(t, dist.ReduceOp.MAX)
  on_gpu_equal(t, torch.arange(0, 6):float() + 30, "all_reduce MAX")
  t = mine:cuda()
  dist.broadcast(t, 2)
  on_gpu_equal(t, torch.arange(0, 6):float() + 20, "broadcast from rank 2")
  local list = {}
  for i = 1, world do list[i] = torch.zeros(6):cuda() end
  dist.all_gather(list, mine:cuda())
  for i = 1, world do on_gpu_equal(list[i], torch.arange(0, 6):float() + (i - 1) * 10, "all_gather " .. i) end
  local into = torch.zeros(world * 6):cuda()
  dist.all_gather_into_tensor(into, mine:cuda())
  on_gpu_equal(into, torch.cat({list[1]:cpu(), list[2]:cpu(), list[3]:cpu(), list[4]:cpu()}),
               "all_gather_into_tensor")
  local parts = {}
  for i = 1, world do parts[i] = (torch.ones(3) * (i + rank)):cuda() end
  local rs = torch.zeros(3):cuda()
  dist.reduce_scatter(rs, parts)
  on_gpu_equal(rs, torch.ones(3) * ((rank + 1) * world + 6), "reduce_scatter")
  local w = dist.all_reduce(mine:cuda(), dist.ReduceOp.SUM, {async_op = true})
  w:wait()
  T.eq(w:is_completed(), true)
  local big = torch.ones(1 << 20):cuda()
  dist.all_reduce(big)
  T.eq(big:sum():item(), world * (1 << 20), "all_reduce of 4 MB")
end)

T.test("send and recv in a ring", function()
  local out, got = (torch.ones(5) * rank):cuda(), torch.zeros(5):cuda()
  local right, left = (rank + 1) % world, (rank + world - 1) % world
  local s = dist.isend(out, right)
  dist.recv(got, left)
  s:wait()
  on_gpu_equal(got, torch.ones(5) * left, "recv from the left neighbour")
end)

T.test("a DDP step over Gloo with CUDA tensors averages the gradients", function()
  torch.manual_seed(0)
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5)):to("cuda")
  local ddp = nn.DistributedDataParallel(model)
  torch.manual_seed(1)
  local x, y = torch.randn(64, 5), torch.randn(64, 5) -- the whole batch, the same everywhere
  local lo = rank * 16
  nn.MSELoss()(ddp(x:narrow(0, lo, 16):cuda()), y:narrow(0, lo, 16):cuda()):backward()
  torch.manual_seed(0)
  local whole = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  nn.MSELoss()(whole(x), y):backward()
  local a, b = model:parameters(), whole:parameters()
  for i = 1, #a do
    T.eq(a[i].grad.is_cuda, true)
    T.is_true(torch.allclose(a[i].grad:cpu(), b[i].grad, 1e-5, 1e-6), "gradient " .. i)
  end
end)

T.test("backend nccl with more ranks than GPUs runs Gloo and says so", function()
  dist.destroy_process_group()
  dist.init_process_group{backend = "nccl"}
  local expect = world > torch.cuda.device_count() and "gloo" or "nccl"
  T.eq(dist.get_backend(), expect)
  local t = torch.ones(3):cuda()
  dist.all_reduce(t)
  on_gpu_equal(t, torch.ones(3) * world, "all_reduce after the fallback")
end)

T.done()
