-- gpu_bench.lua — ddplab's side of bench/gpu/run.sh, the GPU issue's targets, run on one
-- rank: build/ddplab -n 1 bench/gpu/gpu_bench.lua. Prints one
-- "RESULT <case> <value> <unit>" line per case, each the median over timed windows after
-- a warm-up, with torch.cuda.synchronize() closing every window:
--   tiny        the tutorial's step: Linear(5,10)-ReLU-Linear(10,5), batch 64, MSE, Adam
--   mlp / mlp_tf32  MLP 1024-4096-4096-1024, batch 4096, MSE, Adam (TF32 off / on)
--   adam        the Adam step alone over 256 M parameters in one tensor
--   copy        a device-to-device copy of 256 M floats (the bandwidth reference of adam)
--   nccl_<bytes>  dist.all_reduce of that many bytes, NCCL, one rank (4 B to 1 GiB)
-- Seconds per call for all of them; run.sh turns adam and copy into bandwidth.
-- DDP_BENCH_QUICK=1 shrinks everything to check the script (figures mean nothing);
-- DDP_BENCH_DEVICE=cpu runs the same code on the CPU (for that check where no GPU is).

local lib = dofile((arg[0]:match("(.*/)") or "./") .. "../bench_lib.lua")
local quick = os.getenv("DDP_BENCH_QUICK") == "1"
local device = os.getenv("DDP_BENCH_DEVICE") or "cuda"
local on_gpu = device ~= "cpu"

local function sync()
  if on_gpu then torch.cuda.synchronize() end
end

-- Median seconds per call of fn over `windows` windows of `calls` calls each.
local function time(fn, warmup, windows, calls)
  if quick then warmup, windows, calls = 1, 3, 1 end
  for _ = 1, warmup do fn() end
  sync()
  local per = {}
  for w = 1, windows do
    local t0 = torch.time()
    for _ = 1, calls do fn() end
    sync()
    per[w] = (torch.time() - t0) / calls
  end
  return lib.median(per)
end

local function result(name, seconds)
  print(string.format("RESULT %s %.9g s", name, seconds))
end

local function train_step_case(name, sizes, batch, warmup, windows, calls)
  torch.manual_seed(0)
  local model = lib.mlp(sizes):to(device)
  local opt = optim.Adam(model:parameters(), {lr = 1e-3})
  local x = torch.randn(batch, sizes[1]):to(device)
  local y = torch.randn(batch, sizes[#sizes]):to(device)
  local loss_fn = nn.MSELoss()
  result(name, time(function()
    opt:zero_grad()
    loss_fn(model(x), y):backward()
    opt:step()
  end, warmup, windows, calls))
end

local big = quick and (1 << 16) or (256 << 20)
local mlp_sizes = quick and {64, 256, 256, 64} or {1024, 4096, 4096, 1024}
local mlp_batch = quick and 256 or 4096

train_step_case("tiny", {5, 10, 5}, 64, 200, 9, 200)
train_step_case("mlp", mlp_sizes, mlp_batch, 3, 7, 5)
if on_gpu then
  torch.backends.cuda.matmul.allow_tf32 = true
  train_step_case("mlp_tf32", mlp_sizes, mlp_batch, 3, 7, 5)
  torch.backends.cuda.matmul.allow_tf32 = false
end

do -- the Adam step alone, and the copy it is measured against
  -- made where they live (a GPU draws its own random numbers: no 1 GiB from the host)
  local p = nn.Parameter(torch.randn(big, {device = device}))
  p.grad = torch.randn(big, {device = device})
  local opt = optim.Adam({p}, {lr = 1e-3})
  result("adam", time(function() opt:step() end, 3, 7, 5))
  local src, dst = torch.randn(big, {device = device}), torch.empty(big, {device = device})
  result("copy", time(function() dst:copy_(src) end, 3, 7, 5))
end

if on_gpu then
  dist.init_process_group{backend = "nccl"}
  local bytes = 4
  while bytes <= (quick and (1 << 20) or (1 << 30)) do
    local t = torch.ones(bytes // 4, {device = device})
    local calls = bytes >= (1 << 26) and 5 or 50
    result("nccl_" .. bytes, time(function() dist.all_reduce(t) end, 5, 7, calls))
    bytes = bytes * 16
  end
  dist.destroy_process_group()
end
