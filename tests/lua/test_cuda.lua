-- ranks: 1 2
-- test_cuda.lua — the CUDA face of the Lua API where no GPU can be used (a CPU-only
-- build, or a CUDA build on a machine without a GPU): torch.device objects, the
-- torch.cuda functions, and every request for a GPU failing with the message that says
-- which of the two it is, while the CPU path works unchanged. With a GPU the same
-- requests succeed: tests/gpu/ checks those.
local T = require "support"

if torch.cuda.is_available() then
  print("test_cuda.lua: a GPU is visible; the no-GPU checks are skipped (tests/gpu runs)")
  T.done()
  return
end

local no_gpu = torch.backends.cuda.is_built()
    and "cuda: no GPU is visible (torch.cuda.is_available() is false)"
    or "this build has no CUDA support"

T.test("torch.device objects: name, type, index, interned", function()
  local d = torch.device("cuda:1")
  T.eq(tostring(d), "cuda:1")
  T.eq(d.type, "cuda")
  T.eq(d.index, 1)
  T.eq(torch.device("cuda", 1), d) -- interned: the same object
  T.eq(tostring(torch.device("cuda")), "cuda")
  T.eq(torch.device("cuda").index, nil)
  T.eq(torch.device("cpu").type, "cpu")
  T.eq(torch.device("cpu").index, nil)
  T.eq(torch.device(d), d)
  T.is_true(torch.device("cuda:0") ~= torch.device("cuda:1"))
  T.raises(function() torch.device("gpu") end, "unknown device 'gpu'")
  T.raises(function() torch.device("cuda:0", 1) end, "an index goes with a type without one")
  T.raises(function() torch.device(3) end, "device (\"cpu\", \"cuda\", \"cuda:N\" or torch.device) expected")
end)

T.test("a CPU tensor's device and is_cuda", function()
  local x = torch.ones(2, 3)
  T.eq(x.device, torch.device("cpu"))
  T.eq(x.is_cuda, false)
  T.eq(x:cpu(), x) -- already there: the same tensor
  T.eq(x:to("cpu"), x)
  T.eq(x:to(torch.device("cpu")), x)
  T.eq(x:to(torch.zeros(1)), x)
  T.eq(x:to("cpu", torch.float64).dtype, torch.float64)
  T.eq(torch.zeros(2, {device = "cpu"}).device, torch.device("cpu"))
  T.eq(torch.zeros(2, {device = torch.device("cpu")}).device, torch.device("cpu"))
end)

T.test("torch.cuda answers without a GPU", function()
  T.eq(torch.cuda.is_available(), false)
  T.eq(torch.cuda.device_count(), 0)
  torch.cuda.empty_cache() -- nothing to return: no error, as in PyTorch
  for _, name in ipairs{"current_device", "synchronize", "memory_allocated",
                        "max_memory_allocated", "memory_reserved", "max_memory_reserved",
                        "reset_peak_memory_stats"} do
    T.raises(torch.cuda[name], no_gpu, name)
  end
  T.raises(function() torch.cuda.set_device(0) end, no_gpu)
  T.raises(function() torch.cuda.set_device("cuda:1") end, no_gpu)
  T.raises(function() torch.cuda.memory_allocated(torch.device("cuda:0")) end, no_gpu)
  T.raises(function() torch.cuda.memory_allocated("cpu") end, "expected a CUDA device, got cpu")
end)

T.test("every way to ask for a GPU tensor says why there is none", function()
  local x = torch.randn(3, 2)
  local asks = {
    ['x:to("cuda")'] = function() return x:to("cuda") end,
    ['x:to("cuda:1")'] = function() return x:to("cuda:1") end,
    ["x:to(torch.device)"] = function() return x:to(torch.device("cuda:0")) end,
    ["x:to{device=}"] = function() return x:to{device = "cuda"} end,
    ["x:cuda()"] = function() return x:cuda() end,
    ["x:cuda(1)"] = function() return x:cuda(1) end,
    ["zeros"] = function() return torch.zeros(2, 3, {device = "cuda"}) end,
    ["ones"] = function() return torch.ones(2, {device = torch.device("cuda")}) end,
    ["randn"] = function() return torch.randn(4, {device = "cuda:0"}) end,
    ["full"] = function() return torch.full({2}, 7, {device = "cuda"}) end,
    ["zeros_like"] = function() return torch.zeros_like(x, {device = "cuda"}) end,
    ["tensor"] = function() return torch.tensor({1, 2, 3}, {device = "cuda"}) end,
    ["arange"] = function() return torch.arange(5, {device = "cuda"}) end,
    ["model:to"] = function() return nn.Linear(3, 2):to("cuda") end,
  }
  for what, fn in pairs(asks) do T.raises(fn, no_gpu, what) end
  -- the tensor asked to move is untouched
  T.eq(x.device, torch.device("cpu"))
  T.eq(x.shape[1], 3)
end)

T.test("model:to keeps CPU parameters when the move fails", function()
  local m = nn.Linear(3, 2)
  local w = m.weight
  T.raises(function() m:to("cuda") end, no_gpu)
  T.eq(m.weight, w)
  T.eq(m.weight.device, torch.device("cpu"))
  T.eq(m:to("cpu"), m)
  T.eq(m.weight, w) -- nothing to move: the same parameter
end)

T.done()
