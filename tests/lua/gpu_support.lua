-- gpu_support.lua — what the GPU tests (tests/gpu/test_*.lua) share: skipping where no GPU
-- is visible, holding a GPU result to the CPU path's, and fresh random data.
local T = require "support"
local G = {}

-- Exits 77 (ctest's and gpu-check's "skipped") where torch.cuda.is_available() is false.
function G.skip_without_gpu()
  if not torch.cuda.is_available() then
    print("SKIP: no GPU is visible (torch.cuda.is_available() is false)")
    os.exit(77)
  end
end

-- The relative error allowed a float result: float32 1e-5 (TF32 1e-3), float64 1e-12;
-- nil for integers and bools, which must be equal.
local function tolerance(dtype, tf32)
  if dtype == torch.float32 then return tf32 and 1e-3 or 1e-5 end
  if dtype == torch.float64 then return 1e-12 end
end

-- gpu (a CUDA tensor) must equal cpu (the CPU path's result) in shape and dtype, have
-- NaN in the same places, and differ elsewhere by at most the tolerance relative to
-- max|cpu|.
function G.matches(gpu, cpu, what, tf32)
  T.eq(gpu.is_cuda, true, what .. ": result on the GPU")
  local g = gpu:cpu()
  T.eq(tostring(g.shape), tostring(cpu.shape), what .. ": shape")
  T.eq(g.dtype, cpu.dtype, what .. ": dtype")
  if cpu:numel() == 0 then return end
  local tol = tolerance(cpu.dtype, tf32)
  if not tol then
    T.is_true(torch.equal(g, cpu), what .. ": values differ")
    return
  end
  local gd, cd = g:double(), cpu:double()
  T.is_true(torch.equal(gd:ne(gd), cd:ne(cd)), what .. ": NaN in different places")
  local finite = cd:eq(cd)
  local err = torch.where(finite, gd - cd, torch.zeros_like(cd)):abs():max():item()
  local scale = math.max(torch.where(finite, cd, torch.zeros_like(cd)):abs():max():item(), 1e-30)
  if err / scale > tol then
    error(string.format("%s: relative error %.3g > %.0e", what, err / scale, tol), 2)
  end
end

-- Fresh random data, never zeros: floats away from zero with both signs, integers in
-- +-[1, int_max) (default 50), bools mixed.
function G.random(dtype, shape, int_max)
  if dtype == torch.float32 or dtype == torch.float64 then
    local x = torch.randn(shape, {dtype = dtype})
    return x + x:sign() * 0.25
  elseif dtype == torch.int64 then
    local x = torch.randint(1, int_max or 50, shape)
    return x * (torch.randint(0, 2, shape) * 2 - 1)
  end
  return torch.randint(0, 2, shape):to(torch.bool)
end

return G
