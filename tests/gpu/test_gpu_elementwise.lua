-- test_gpu_elementwise.lua — the CUDA kernels of the element-wise ops against the CPU
-- path on fresh random data (never zeros): every binary op (tensor-tensor with
-- broadcasting, tensor-scalar both ways, in place, strided operands, mixed dtypes) and
-- every unary op, clamp and add_ with alpha. The measure is the relative error
-- max|gpu - cpu| / max|cpu|: float32 under 1e-5, float64 under 1e-12, integers and bools
-- equal. The ops staged through the
-- host (where, equal, allclose) and the copying ones (cat, stack, index_select) too.
-- Skips (exit 77) where no GPU is visible.
local T = require "support"

local G = require "gpu_support"
G.skip_without_gpu()
local matches, random = G.matches, G.random

torch.manual_seed(11)

local binary = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                "eq", "ne", "lt", "le", "gt", "ge"}

local function call(name, a, b)
  if name == "maximum" or name == "minimum" then return torch[name](a, b) end
  return a[name](a, b)
end

T.test("binary ops, same shapes and broadcast, float32 and float64", function()
  local shapes = {{{17, 33}, {17, 33}}, {{17, 33}, {33}}, {{4, 1, 5}, {3, 5}},
                  {{1}, {6, 7}}, {{}, {5}}, {{2, 3, 4, 5}, {3, 1, 5}}}
  for _, dt in ipairs{torch.float32, torch.float64} do
    for _, sh in ipairs(shapes) do
      local a, b = random(dt, sh[1]), random(dt, sh[2])
      if true then a = a:abs() end -- pow of a negative base to a fraction is NaN on both
      local ga, gb = a:cuda(), b:cuda()
      for _, op in ipairs(binary) do
        matches(call(op, ga, gb), call(op, a, b),
                op .. " " .. tostring(dt) .. " " .. tostring(a.shape) .. " " .. tostring(b.shape))
      end
    end
  end
end)

T.test("binary ops on integers, bools and mixed dtypes (PyTorch's promotion)", function()
  local pairs_ = {{torch.int64, torch.int64}, {torch.int64, torch.float32},
                  {torch.bool, torch.float32}, {torch.bool, torch.bool},
                  {torch.float32, torch.float64}, {torch.int64, torch.bool}}
  for _, dts in ipairs(pairs_) do
    local a, b = random(dts[1], {9, 8}), random(dts[2], {8})
    local ga, gb = a:cuda(), b:cuda()
    for _, op in ipairs(binary) do
      local ok_cpu, cpu = pcall(call, op, a, b)
      local ok_gpu, gpu = pcall(call, op, ga, gb)
      local what = op .. " " .. tostring(dts[1]) .. " " .. tostring(dts[2])
      T.eq(ok_gpu, ok_cpu, what .. ": fails on one device only")
      if ok_cpu and not (op == "pow" and dts[1] == torch.int64 and dts[2] == torch.int64) then
        matches(gpu, cpu, what)
      elseif ok_cpu then -- int64 powers: keep the exponents small, then compare exactly
        local e = b:abs():clamp(0, 4)
        matches(ga:pow(e:cuda()), a:pow(e), what)
      end
    end
  end
end)

T.test("scalars on either side travel by value", function()
  for _, dt in ipairs{torch.float32, torch.float64, torch.int64} do
    local a = random(dt, {5, 6})
    local g = a:cuda()
    matches(g + 1, a + 1, "t + 1 " .. tostring(dt))
    matches(g * 2.5, a * 2.5, "t * 2.5")
    matches(2 - g, 2 - a, "2 - t")
    matches(1 / g, 1 / a, "1 / t")
    matches(g:pow(2), a:pow(2), "t:pow(2)")
    matches(g:gt(0), a:gt(0), "t:gt(0)")
    matches(g + torch.tensor(3), a + torch.tensor(3), "t + a CPU 0-dim tensor")
  end
end)

T.test("strided operands and in-place ops", function()
  local a, b = random(torch.float32, {12, 7}), random(torch.float32, {7, 12})
  local ga, gb = a:cuda(), b:cuda()
  matches(ga + gb:t(), a + b:t(), "a + b:t()")
  matches(ga:narrow(1, 2, 3) * gb:t():narrow(1, 2, 3), a:narrow(1, 2, 3) * b:t():narrow(1, 2, 3),
          "narrowed views")
  local x, gx = a:clone(), ga:clone()
  x:add_(b:t())
  gx:add_(gb:t())
  matches(gx, x, "add_")
  x:mul_(3)
  gx:mul_(3)
  matches(gx, x, "mul_(3)")
  x:t():sub_(1.5)
  gx:t():sub_(1.5)
  matches(gx, x, "sub_ on a transposed view")
  T.eq(gx._version, x._version)
end)

T.test("unary ops", function()
  local unary = {"neg", "sqrt", "exp", "log", "abs", "relu", "tanh", "sigmoid", "sign"}
  for _, dt in ipairs{torch.float32, torch.float64, torch.int64} do
    local a = random(dt, {33, 17})
    local pos = a:abs() -- sqrt and log of a negative number are NaN on both
    for _, op in ipairs(unary) do
      local src = (op == "sqrt" or op == "log") and pos or a
      matches(src:cuda()[op](src:cuda()), src[op](src), op .. " " .. tostring(dt))
      matches(src:cuda():t()[op](src:cuda():t()), src:t()[op](src:t()), op .. " strided")
    end
  end
  local b = random(torch.bool, {10})
  for _, op in ipairs{"abs", "relu", "sign"} do matches(b:cuda()[op](b:cuda()), b[op](b), op .. " bool") end
  local x, gx = random(torch.float32, {100}), nil
  gx = x:cuda()
  x:exp_()
  gx:exp_()
  matches(gx, x, "exp_")
end)

T.test("clamp and add_ with alpha", function()
  for _, dt in ipairs{torch.float32, torch.float64, torch.int64} do
    local a, b = random(dt, {13, 9}), random(dt, {9})
    local ga = a:cuda()
    matches(ga:clamp(-1, 1), a:clamp(-1, 1), "clamp(-1, 1) " .. tostring(dt))
    matches(ga:clamp(nil, 0.5), a:clamp(nil, 0.5), "clamp(nil, 0.5) " .. tostring(dt))
    matches(ga:t():clamp(0), a:t():clamp(0), "clamp of a transposed view")
    local x, gx = a:clone(), ga:clone()
    x:clamp_(-2, 2)
    gx:clamp_(-2, 2)
    matches(gx, x, "clamp_")
    x:add_(b, {alpha = 3})
    gx:add_(b:cuda(), {alpha = 3})
    matches(gx, x, "add_ with alpha, broadcast")
  end
  local n = torch.tensor({0 / 0, -5, 5}):cuda():clamp(-1, 1):cpu()
  T.is_true(n[0]:item() ~= n[0]:item(), "NaN stays NaN through clamp")
end)

T.test("where, cat, stack, index_select, equal and allclose on CUDA tensors", function()
  local a, b = random(torch.float32, {6, 5}), random(torch.float32, {6, 5})
  local ga, gb = a:cuda(), b:cuda()
  matches(torch.where(ga:gt(0), ga, gb), torch.where(a:gt(0), a, b), "where")
  matches(torch.cat({ga, gb}, 1), torch.cat({a, b}, 1), "cat along dim 1")
  matches(torch.stack({ga, gb:t():t()}), torch.stack({a, b}), "stack")
  local idx = torch.tensor({4, 0, 0, 2})
  matches(ga:index_select(0, idx:cuda()), a:index_select(0, idx), "index_select")
  T.eq(torch.equal(ga, a:cuda()), true, "equal on the GPU")
  T.eq(torch.equal(ga, gb), false, "unequal on the GPU")
  T.eq(torch.allclose(ga, ga + 1e-9), true, "allclose on the GPU")
end)

T.test("mixing devices names both", function()
  local g = torch.randn(3):cuda()
  T.raises(function() return g + torch.randn(3) end,
           "add: tensors are on different devices (cuda:" .. torch.cuda.current_device() .. " and cpu)")
  T.raises(function() return torch.randn(3) + g end, "different devices (cpu and cuda:")
  T.raises(function() return torch.cat({g, torch.randn(3)}) end,
           "cat: tensors are on different devices")
  -- a graph on the GPU runs backward there; a gradient from another device is refused
  local x = torch.randn(3, {device = "cuda", requires_grad = true})
  local y = x:tanh() * 2
  T.eq(y.requires_grad, true)
  T.raises(function() y:backward(torch.ones(3)) end,
           "backward: the gradient is on cpu but the tensor is on cuda:")
  T.raises(function() return nn.functional.cross_entropy(torch.randn(2, 3):cuda(),
                                                         torch.tensor({0, 1})) end,
           "cross_entropy: the input is on cuda:")
end)

T.done()
