-- test_gpu_memory.lua — the caching allocator on a real GPU: memory_allocated counts live
-- tensors exactly (requests rounded to 512 bytes, as PyTorch counts them), the peak,
-- freed blocks reused (reserved memory does not grow over 10,000 steps of a training-
-- like loop), memory returns to its start after release, empty_cache returns the cache.
-- Skips (exit 77) where no GPU is visible.
local T = require "support"

require("gpu_support").skip_without_gpu()

local cuda = torch.cuda

local function settle()
  collectgarbage()
  collectgarbage()
end

T.test("memory_allocated counts live tensors and returns to its start", function()
  settle()
  local start = cuda.memory_allocated()
  local a = torch.empty(1000, {device = "cuda"})          -- 4000 B -> 4096
  local b = torch.empty(1025, {device = "cuda"})          -- 4100 B -> 4608
  local c = torch.empty(3, {device = "cuda", dtype = torch.float64}) -- 24 B -> 512
  T.eq(cuda.memory_allocated() - start, 4096 + 4608 + 512)
  T.is_true(cuda.max_memory_allocated() >= cuda.memory_allocated())
  T.is_true(cuda.memory_reserved() >= cuda.memory_allocated())
  a:free()
  T.eq(cuda.memory_allocated() - start, 4608 + 512)
  b, c = nil, nil
  settle()
  T.eq(cuda.memory_allocated(), start)
end)

T.test("peak statistics and reset", function()
  settle()
  cuda.reset_peak_memory_stats()
  local start = cuda.memory_allocated()
  T.eq(cuda.max_memory_allocated(), start)
  local big = torch.empty(1 << 20, {device = "cuda"}) -- 4 MiB
  big:free()
  T.eq(cuda.max_memory_allocated() - start, 4 << 20)
  T.eq(cuda.memory_allocated(), start)
  T.is_true(cuda.max_memory_reserved() >= cuda.memory_reserved())
end)

T.test("freed blocks are reused: 10,000 steps do not grow reserved memory", function()
  settle()
  local x = torch.randn(64, 256):cuda()
  local function step()
    local y = torch.empty(64, 256, {device = "cuda"})
    y:copy_(x)
    local z = y:clone()
    z:fill_(1)
    y:free()
    z:free()
  end
  step()
  local reserved, allocated = cuda.memory_reserved(), cuda.memory_allocated()
  for _ = 1, 10000 do step() end
  T.eq(cuda.memory_reserved(), reserved)
  T.eq(cuda.memory_allocated(), allocated)
  x:free()
end)

T.test("empty_cache returns the cached blocks; live tensors keep theirs", function()
  settle()
  local keep = torch.ones(1 << 18, {device = "cuda"}) -- 1 MiB live
  local gone = torch.ones(1 << 20, {device = "cuda"}) -- 4 MiB, freed into the cache
  gone:free()
  T.is_true(cuda.memory_reserved() >= cuda.memory_allocated() + (4 << 20))
  cuda.empty_cache()
  T.eq(cuda.memory_reserved(), cuda.memory_allocated())
  T.is_true(torch.equal(keep:cpu(), torch.ones(1 << 18)))
  cuda.synchronize()
end)

T.test("set_device and bad devices", function()
  local n = cuda.device_count()
  cuda.set_device(n - 1)
  T.eq(cuda.current_device(), n - 1)
  T.eq(torch.zeros(1, {device = "cuda"}).device, torch.device("cuda:" .. (n - 1)))
  cuda.set_device(0)
  T.raises(function() cuda.set_device(n) end, "there is no device cuda:" .. n)
  T.raises(function() return torch.zeros(1, {device = "cuda:" .. n}) end,
           "there is no device cuda:" .. n)
end)

T.done()
