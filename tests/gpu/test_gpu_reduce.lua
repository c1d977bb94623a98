-- test_gpu_reduce.lua — the CUDA kernels that combine elements, against the CPU path on
-- fresh random data (never zeros): sum, mean, prod, norm, max, min, argmax, argmin over
-- all elements and along each dim (keepdim too, strided inputs), max/min with indices,
-- softmax and log_softmax (NaN and -inf rows as on the CPU), and the matrix products
-- through cuBLAS (mm, matmul with batches and 1-D operands, linear, transposed and
-- sliced operands; TF32 only when torch.backends.cuda.matmul.allow_tf32 says so).
-- Relative error max|gpu - cpu| / max|cpu|: float32 under 1e-5 (TF32 under 1e-3),
-- float64 under 1e-12, integers and indices equal. Skips (exit 77) without a GPU.
local T = require "support"

local G = require "gpu_support"
G.skip_without_gpu()
local matches, random = G.matches, G.random

torch.manual_seed(12)

T.test("reductions over everything and along each dim", function()
  local ops = {"sum", "mean", "prod", "norm", "max", "min", "argmax", "argmin"}
  for _, dt in ipairs{torch.float32, torch.float64, torch.int64} do
    local a = random(dt, {6, 7, 5}, 5)
    if dt ~= torch.int64 then a = a * 0.5 + a:sign() * 0.6 end -- prod stays in range
    local ga = a:cuda()
    for _, op in ipairs(ops) do
      local float_only = op == "mean" or op == "norm"
      if not (float_only and dt == torch.int64) then
        matches(ga[op](ga), a[op](a), op .. " " .. tostring(dt))
        for d = 0, 2 do
          if op == "max" or op == "min" then
            local gv, gi = ga[op](ga, d)
            local cv, ci = a[op](a, d)
            matches(gv, cv, op .. " values along " .. d)
            matches(gi, ci, op .. " indices along " .. d)
          elseif op == "norm" then -- norm(p, dim, keepdim)
            matches(ga:norm(2, d), a:norm(2, d), "norm along " .. d)
            matches(ga:norm(2, d, true), a:norm(2, d, true), "norm keepdim along " .. d)
          else
            matches(ga[op](ga, d), a[op](a, d), op .. " along " .. d)
            matches(ga[op](ga, d, true), a[op](a, d, true), op .. " keepdim along " .. d)
          end
        end
        local gt, ct = ga:transpose(0, 2), a:transpose(0, 2)
        if op ~= "norm" then
          matches(gt[op](gt, 1), ct[op](ct, 1), op .. " of a transposed view")
        end
      end
    end
  end
  local big = torch.randn(1000, 300)
  matches(big:cuda():sum(), big:sum(), "sum of 300,000 elements")
  matches(big:cuda():sum(0), big:sum(0), "sum down the long dim")
  local empty = torch.zeros(0, 4)
  matches(empty:cuda():sum(0), empty:sum(0), "sum over an empty dim")
  local nan = torch.tensor({1, 0 / 0, 3})
  matches(nan:cuda():max(), nan:max(), "max with a NaN is NaN")
  T.eq(nan:cuda():argmax():item(), nan:argmax():item(), "argmax finds the NaN")
end)

T.test("softmax and log_softmax along each dim", function()
  for _, dt in ipairs{torch.float32, torch.float64} do
    local a = random(dt, {8, 9, 10}) * 4
    local ga = a:cuda()
    for d = 0, 2 do
      matches(ga:softmax(d), a:softmax(d), "softmax " .. tostring(dt) .. " along " .. d)
      matches(ga:log_softmax(d), a:log_softmax(d), "log_softmax along " .. d)
      matches(ga:transpose(0, 2):softmax(d), a:transpose(0, 2):softmax(d), "softmax strided")
    end
  end
  local odd = torch.tensor({{1, 0 / 0, 2}, {-1 / 0, -1 / 0, -1 / 0}, {1e4, -1e4, 0}})
  matches(odd:cuda():softmax(1), odd:softmax(1), "softmax with NaN, all -inf, huge values")
  matches(odd:cuda():log_softmax(1), odd:log_softmax(1), "log_softmax of the same")
end)

T.test("matrix products through cuBLAS", function()
  for _, dt in ipairs{torch.float32, torch.float64} do
    local a, b = random(dt, {33, 17}), random(dt, {17, 29})
    local ga, gb = a:cuda(), b:cuda()
    matches(ga:mm(gb), a:mm(b), "mm " .. tostring(dt))
    matches(gb:t():mm(ga:t()), b:t():mm(a:t()), "mm of transposed operands")
    matches(ga:narrow(0, 3, 20):mm(gb:narrow(1, 4, 9)), a:narrow(0, 3, 20):mm(b:narrow(1, 4, 9)),
            "mm of sliced operands")
    local x, w, bias = random(dt, {4, 6, 17}), random(dt, {11, 17}), random(dt, {11})
    matches(torch.matmul(x:cuda(), w:cuda():t()), torch.matmul(x, w:t()), "batched @ matrix")
    local y = random(dt, {4, 17, 3})
    matches(torch.matmul(x:cuda(), y:cuda()), torch.matmul(x, y), "batched @ batched")
    local v = random(dt, {17})
    matches(torch.matmul(ga, v:cuda()), torch.matmul(a, v), "matrix @ vector")
    matches(torch.matmul(v:cuda(), gb), torch.matmul(v, b), "vector @ matrix")
    matches(nn.functional.linear(x:cuda(), w:cuda(), bias:cuda()), nn.functional.linear(x, w, bias),
            "linear with bias")
    local e1, e2 = torch.zeros(5, 0, {dtype = dt}), torch.zeros(0, 3, {dtype = dt})
    matches(e1:cuda():mm(e2:cuda()), e1:mm(e2), "an empty inner dim gives zeros")
  end
  T.raises(function() return torch.ones(2, 2, {dtype = torch.int64}):cuda():mm(
                        torch.ones(2, 2, {dtype = torch.int64}):cuda()) end,
           "do not run on CUDA (as in PyTorch)")
end)

T.test("TF32 only when asked for", function()
  T.eq(torch.backends.cuda.matmul.allow_tf32, false, "off by default, as in PyTorch")
  local a, b = torch.randn(256, 512), torch.randn(512, 128)
  local exact = a:mm(b)
  matches(a:cuda():mm(b:cuda()), exact, "float32 GEMM without TF32")
  torch.backends.cuda.matmul.allow_tf32 = true
  local ok, err = pcall(matches, a:cuda():mm(b:cuda()), exact, "float32 GEMM with TF32", true)
  torch.backends.cuda.matmul.allow_tf32 = false
  T.is_true(ok, err)
  T.raises(function() torch.backends.cuda.matmul.allow_tf32 = 1 end, "takes true or false")
end)

T.done()
