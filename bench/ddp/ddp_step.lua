-- ddp_step.lua — ddplab's side of bench/ddp/run.sh: times one DDP training step (forward
-- through nn.DistributedDataParallel, MSE loss, backward with the bucket all-reduces,
-- Adam step, zero_grad) on 2 CPU ranks over Gloo, and prints on rank 0 one
-- "RESULT <case> <seconds per step> torch.time" line per case: the median over timed
-- windows after a warm-up (the windows start together: a barrier before each). Cases:
--   a  the tutorial's Linear(5,10)-ReLU-Linear(10,5), local batch 64
--   b  MLP 256-1024-1024-256, local batch 256
--   c  MLP 256-1024x4-256, local batch 128, bucket_cap_mb=4 (several buckets)
-- Run: OPENBLAS_NUM_THREADS=1 build/ddplab -n 2 bench/ddp/ddp_step.lua
-- (DDP_BENCH_QUICK=1 shrinks the windows; the last step's timeline of each case goes to
-- stdout with DDP_BENCH_TIMELINE=1.)

local lib = dofile((arg[0]:match("(.*/)") or "./") .. "../bench_lib.lua")
local quick = os.getenv("DDP_BENCH_QUICK") == "1"
local show = os.getenv("DDP_BENCH_TIMELINE") == "1"
local clock = torch.time

local cases = {
  {name = "a", sizes = {5, 10, 5}, batch = 64, warmup = 200, windows = 9, steps = 300},
  {name = "b", sizes = {256, 1024, 1024, 256}, batch = 256, warmup = 3, windows = 7, steps = 5},
  {name = "c", sizes = {256, 1024, 1024, 1024, 1024, 256}, batch = 128, warmup = 3, windows = 7,
   steps = 4, cap = 4},
}

dist.init_process_group{backend = "gloo"}
local rank = dist.get_rank()

torch.manual_seed(0)
for _, c in ipairs(cases) do
  if quick then c.warmup, c.windows, c.steps = 2, 3, 2 end
  local ddp = nn.DistributedDataParallel(lib.mlp(c.sizes), {bucket_cap_mb = c.cap})
  local x = torch.randn(c.batch, c.sizes[1])
  local y = torch.randn(c.batch, c.sizes[#c.sizes])
  local criterion = nn.MSELoss()
  local opt = optim.Adam(ddp:parameters(), {lr = 1e-3})
  local function step()
    opt:zero_grad()
    criterion(ddp(x), y):backward()
    opt:step()
  end
  for _ = 1, c.warmup do step() end
  local per_step = {}
  for w = 1, c.windows do
    dist.barrier()
    local t0 = clock()
    for _ = 1, c.steps do step() end
    per_step[w] = (clock() - t0) / c.steps
  end
  if show then ddp(x) ddp:summary() end
  if rank == 0 then
    print(string.format("RESULT %s %.9g torch.time %d", c.name, lib.median(per_step), #ddp:buckets()))
  end
end
