-- test_gpu_random.lua — random numbers on CUDA tensors come from the device generator
-- (counter-based Philox, base/philox.h), computed on the GPU: rand, randn, randint and
-- the in-place fills give exactly the values the CPU reference gives for the same seed
-- and position (torch._device_generator_preview; normal values within a float's last
-- bits, as the GPU's log, cos and sin may round differently), for float32 and float64,
-- odd sizes, non-contiguous targets; a second fill continues the stream; manual_seed
-- repeats it; a CPU generator is refused for a CUDA tensor. Skips (exit 77) without a GPU.
local T = require "support"

require("gpu_support").skip_without_gpu()

local function close(got, want, rel, what)
  local g, w = got:cpu():double(), want:double()
  T.eq(tostring(got.shape), tostring(want.shape), what .. ": shape")
  local err = (g - w):abs():max():item() / math.max(w:abs():max():item(), 1e-30)
  T.is_true(err <= rel, string.format("%s: relative error %.3g", what, err))
end

T.test("each fill equals the CPU reference of the device stream", function()
  for _, n in ipairs{1, 3, 4, 1001, 65537} do
    torch.manual_seed(100 + n)
    local want = torch._device_generator_preview("rand", n)
    local got = torch.rand(n, {device = "cuda"})
    T.eq(got.is_cuda, true)
    T.is_true(torch.equal(got:cpu(), want), "rand of " .. n .. " is exact")
    want = torch._device_generator_preview("randn", n)
    close(torch.randn(n, {device = "cuda"}), want, 1e-6, "randn of " .. n)
    want = torch._device_generator_preview("rand64", n, -2, 5)
    T.is_true(torch.equal(torch.empty(n, {device = "cuda", dtype = torch.float64}):uniform_(-2, 5):cpu(),
                          want), "uniform_ float64")
    want = torch._device_generator_preview("randn64", n, 1, 3)
    close(torch.empty(n, {device = "cuda", dtype = torch.float64}):normal_(1, 3), want, 1e-14,
          "normal_ float64")
    want = torch._device_generator_preview("randint", n, -4, 9)
    T.is_true(torch.equal(torch.randint(-4, 9, {n}, {device = "cuda"}):cpu(), want), "randint")
  end
end)

T.test("the stream continues, repeats after manual_seed, fills views in order", function()
  torch.manual_seed(5)
  local a = torch.rand(100, {device = "cuda"}):cpu()
  local b = torch.rand(100, {device = "cuda"}):cpu()
  T.is_true(not torch.equal(a, b), "a second fill continues the stream")
  torch.manual_seed(5)
  T.is_true(torch.equal(torch.rand(100, {device = "cuda"}):cpu(), a), "manual_seed repeats it")
  torch.manual_seed(6)
  local want = torch._device_generator_preview("rand", 12):view(4, 3)
  local t = torch.zeros(3, 4, {device = "cuda"}):t() -- a transposed (4x3) view
  t:uniform_()
  T.is_true(torch.equal(t:cpu(), want), "a view is filled in its logical order")
  T.eq(t._version, 1, "one write counted")
  T.raises(function() torch.randn(3, {device = "cuda", generator = torch.Generator()}) end,
           "a CPU generator cannot fill a CUDA tensor")
end)

T.done()
