-- test_gpu_tensor.lua — CUDA tensors on a real GPU: creation on the device, copies
-- host <-> device and device <-> device bit-exact on fresh random data (never zeros),
-- strided views and dtype changes across devices, fills, printing, the current device,
-- model:to("cuda"), and a move that autograd records (the other test_gpu_*.lua files
-- check the ops).
-- Skips (exit 77, ctest's SKIP_RETURN_CODE) where no GPU is visible.
local T = require "support"

if not torch.cuda.is_available() then
  print("SKIP: no GPU is visible (torch.cuda.is_available() is false): " ..
        (torch.backends.cuda.is_built() and "CUDA build, no GPU" or "this build has no CUDA support"))
  os.exit(77)
end

torch.manual_seed(7)

-- fresh random data of each dtype: never zeros, so a copy that moved nothing fails
local function random(dtype, ...)
  local shape = {...}
  if dtype == torch.float32 or dtype == torch.float64 then
    return torch.randn(shape, {dtype = dtype}) * 3 + 0.5
  elseif dtype == torch.int64 then
    return torch.randint(-1000000, 1000000, shape)
  end
  return torch.randint(0, 2, shape):to(torch.bool)
end

local function same(a, b, what)
  T.eq(tostring(a.shape), tostring(b.shape), what .. " shape")
  T.eq(a.dtype, b.dtype, what .. " dtype")
  T.is_true(torch.equal(a, b), what .. ": values differ")
end

T.test("the current device is cuda:LOCAL_RANK; t.device and is_cuda", function()
  local local_rank = tonumber(os.getenv("LOCAL_RANK") or "0")
  T.eq(torch.cuda.current_device(), local_rank % torch.cuda.device_count())
  local x = torch.zeros(3, {device = "cuda"})
  T.eq(x.device, torch.device("cuda:" .. torch.cuda.current_device()))
  T.eq(x.is_cuda, true)
  T.eq(x.device.type, "cuda")
  T.eq(x:cuda(), x) -- already there: the same tensor
  T.eq(x:cpu().device, torch.device("cpu"))
end)

T.test("round trips host -> device -> host are bit-exact for every dtype", function()
  for _, dt in ipairs{torch.float32, torch.float64, torch.int64, torch.bool} do
    for _, shape in ipairs{{1}, {1000}, {37, 129}, {2, 3, 4, 5}} do
      local h = random(dt, table.unpack(shape))
      local d = h:to("cuda")
      T.eq(d.is_cuda, true)
      same(d:cpu(), h, tostring(dt) .. " " .. tostring(h.shape))
      same(h:cuda():to("cpu"), h, "cuda()/to(cpu)")
    end
  end
  local big = torch.randn(1 << 22) -- 16 MiB
  same(big:cuda():cpu(), big, "16 MiB")
end)

T.test("device -> device copies: clone, copy_, to(other.device), another GPU", function()
  local h = random(torch.float32, 64, 33)
  local d = h:cuda()
  local c = d:clone()
  T.eq(c.is_cuda, true)
  same(c:cpu(), h, "clone on the device")
  local e = torch.empty(64, 33, {device = "cuda"})
  e:copy_(d)
  same(e:cpu(), h, "copy_ device to device")
  local back = torch.zeros(64, 33)
  back:copy_(e)
  same(back, h, "copy_ device to host")
  local u = torch.zeros(64, 33, {device = "cuda"})
  u:copy_(h)
  same(u:cpu(), h, "copy_ host to device")
  same(h:to(d.device):cpu(), h, "to(other.device)")
  same(h:to(d):cpu(), h, "to(other tensor)")
  if torch.cuda.device_count() > 1 then
    local other = d:to("cuda:1")
    T.eq(other.device, torch.device("cuda:1"))
    same(other:cpu(), h, "cuda:0 -> cuda:1")
    same(other:to("cuda:0"):cpu(), h, "cuda:1 -> cuda:0")
  end
end)

T.test("strided views, broadcasts and dtype changes across devices", function()
  local h = random(torch.float64, 12, 7)
  local d = h:cuda()
  same(d:t():cpu(), h:t(), "a transposed device view read back")
  same(d:narrow(1, 2, 3):cpu(), h:narrow(1, 2, 3), "a narrowed device view")
  same(h:t():cuda():cpu(), h:t():contiguous(), "a transposed host view sent")
  same(d:to(torch.float32):cpu(), h:to(torch.float32), "float64 -> float32 on the device")
  same(d:cpu():to(torch.int64), d:to(torch.int64):cpu(), "float -> int64")
  local row = random(torch.float32, 7)
  local target = torch.zeros(12, 7, {device = "cuda"})
  target:copy_(row) -- broadcast host row into every device row
  same(target:cpu(), row:expand(12, 7):contiguous(), "broadcast copy_")
  local part = torch.zeros(12, 7, {device = "cuda"})
  part:narrow(1, 1, 4):copy_(h:narrow(1, 1, 4):float())
  local expect = torch.zeros(12, 7)
  expect:narrow(1, 1, 4):copy_(h:narrow(1, 1, 4):float())
  same(part:cpu(), expect, "copy_ into a strided device view keeps its neighbours")
end)

T.test("creation and fills on the device", function()
  same(torch.zeros(5, 6, {device = "cuda"}):cpu(), torch.zeros(5, 6), "zeros")
  same(torch.ones(1000, {device = "cuda", dtype = torch.float64}):cpu(),
       torch.ones(1000, {dtype = torch.float64}), "ones float64")
  same(torch.full({3, 3}, 7, {device = "cuda"}):cpu(), torch.full({3, 3}, 7), "full int64")
  same(torch.full({4}, -2.5, {device = "cuda"}):cpu(), torch.full({4}, -2.5), "full float32")
  same(torch.full({9}, true, {device = "cuda"}):cpu(), torch.full({9}, true), "full bool")
  same(torch.tensor({{1, 2}, {3, 4}}, {device = "cuda"}):cpu(), torch.tensor({{1, 2}, {3, 4}}), "tensor")
  same(torch.arange(10, {device = "cuda"}):cpu(), torch.arange(10), "arange")
  local x = torch.empty(4, 5, {device = "cuda"})
  x:fill_(3.25)
  same(x:cpu(), torch.full({4, 5}, 3.25), "fill_")
  x:t():fill_(1.5) -- a strided fill
  same(x:cpu(), torch.full({4, 5}, 1.5), "strided fill_")
  torch.manual_seed(3)
  local r = torch.randn(100, {device = "cuda"})
  torch.manual_seed(3)
  same(r:cpu(), torch.randn(100), "randn on cuda (numbers from the CPU generator for now)")
  same(torch.zeros_like(r):cpu(), torch.zeros(100), "zeros_like keeps the device")
  T.eq(torch.zeros_like(r).device, r.device)
end)

T.test("item, tolist, indexing and printing read through a copy", function()
  local h = torch.tensor({{1.5, -2}, {3, 4.25}})
  local d = h:cuda()
  T.eq(d[1][1]:item(), 4.25)
  T.eq(d:tolist()[2][1], 3)
  T.eq(tostring(d), "tensor([[ 1.5000, -2.0000],\n        [ 3.0000,  4.2500]], device='cuda:" ..
       torch.cuda.current_device() .. "')")
  T.eq(tostring(torch.zeros(2, {device = "cuda", dtype = torch.int64})),
       "tensor([0, 0], device='cuda:" .. torch.cuda.current_device() .. "')")
end)

T.test("model:to('cuda') moves parameters; a move is differentiable", function()
  local m = nn.Linear(4, 3)
  local w = m.weight:clone()
  m:to("cuda")
  T.eq(m.weight.is_cuda, true)
  T.eq(m.bias.is_cuda, true)
  T.eq(m.weight.requires_grad, true)
  same(m.weight:detach():cpu(), w, "moved weight")
  m:to("cpu")
  T.eq(m.weight.is_cuda, false)
  same(m.weight:detach(), w, "weight moved back")
  local d = torch.randn(3):cuda()
  T.raises(function() return d + torch.randn(3) end, "cpu")
  -- the gradient of a copy to the GPU flows back to the CPU leaf (ToCopyBackward0)
  local x = torch.randn(2, {requires_grad = true})
  local y = x:cuda()
  T.eq(y.grad_fn:name(), "ToCopyBackward0")
  local total = (y * 3):sum()
  total:backward()
  T.eq(x.grad.is_cuda, false, "the leaf's gradient is on its own device")
  same(x.grad, torch.full({2}, 3.0), "d(3 * sum(x))/dx")
end)

T.test("a GPU model's state_dict saves and loads back", function()
  local m = nn.Linear(4, 3)
  m:to("cuda")
  local path = os.tmpname() .. ".safetensors"
  torch.save(m:state_dict(), path)
  local back = torch.load(path)
  os.remove(path)
  T.eq(back.weight.is_cuda, false, "a file loads onto the CPU, as in PyTorch with map_location")
  same(back.weight, m.weight:detach():cpu(), "weight through the file")
  local m2 = nn.Linear(4, 3):to("cuda")
  m2:load_state_dict(back)
  same(m2.weight:detach():cpu(), m.weight:detach():cpu(), "loaded into a GPU model")
  local npy = os.tmpname() .. ".npy"
  torch.save(torch.arange(0, 6):view(2, 3):t():cuda(), npy) -- a strided GPU view
  same(torch.load(npy), torch.arange(0, 6):view(2, 3):t():contiguous(), "an .npy of a GPU view")
  os.remove(npy)
end)

T.done()
