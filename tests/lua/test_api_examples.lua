-- ranks: 1 2
-- test_api_examples.lua — every example of docs/api.md, run and checked.
--
-- Three kinds of examples, each kept here exactly as the page shows it:
--   * single-process examples: Lua code and the text it prints. The code runs here with
--     `print` captured (chunk name "example.lua", so error positions read as they would
--     for a learner who saved the snippet), and the capture must equal the text;
--   * REPL transcripts on 4 ranks: the lines typed after the prompt are fed to a fresh
--     `ddplab -n 4 -i` (this same binary), and its grouped output, with the typed lines
--     put back after each prompt, must equal the transcript; rank 0 does this once;
--   * command lines (`ddplab --help`, script mode): run the same way, on rank 0; output
--     that ranks print concurrently is compared as sorted lines;
--   * the distributed statements of those transcripts also run here, on this test's own
--     world (1 or 2 ranks), with assertions that hold for any world size.
-- Finally every code block and output above must appear verbatim in docs/api.md, so the
-- page and this file cannot drift apart.
local T = require "support"

-- ---- helpers ---------------------------------------------------------------------------

-- Runs `code` as a chunk named "example.lua" with print captured; returns the text.
local function run_example(code)
  local out = {}
  local env = setmetatable({}, {__index = _G})
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(parts, "\t") .. "\n"
  end
  local fn = assert(load(code, "=example.lua", "t", env))
  fn()
  return table.concat(out)
end

-- Fails with both texts shown raw (they are multi-line) when they differ.
local function same_text(got, want, what)
  if got ~= want then
    error(string.format("%s differs.\n--- got:\n%s--- expected:\n%s---", what, got, want), 2)
  end
end


local run_ddplab = T.run_ddplab

-- A REPL prompt at position i of s: "[all]> ", "[0,2]> " or the continuation "  ...> ".
local function prompt_at(s, i)
  local _, e = s:find("^%[[%w,%-]+%]> ", i)
  if not e then _, e = s:find("^ *%.%.%.> ", i) end
  return e
end

-- The lines typed in a transcript (what follows each prompt), in order.
local function typed_lines(transcript)
  local lines = {}
  for line in transcript:gmatch("([^\n]*)\n") do
    local e = prompt_at(line, 1)
    if e then lines[#lines + 1] = line:sub(e + 1) end
  end
  return lines
end

-- Puts the typed lines back after the prompts of a REPL that read a pipe (where the
-- terminal's echo is missing), so the result reads as the learner's screen.
local function with_echo(raw, lines)
  local out, i = {}, 1
  for n, line in ipairs(lines) do
    local e = prompt_at(raw, i)
    if not e then error("no prompt before typed line " .. n .. " in:\n" .. raw, 2) end
    out[#out + 1] = raw:sub(i, e) .. line .. "\n"
    i = e + 1
    local j = i -- the output runs to the next prompt at the start of a line
    while j <= #raw and not ((j == i or raw:sub(j - 1, j - 1) == "\n") and prompt_at(raw, j)) do
      j = j + 1
    end
    out[#out + 1] = raw:sub(i, j - 1)
    i = j
  end
  return table.concat(out), raw:sub(i)
end

-- Runs the blocks of a session in one `ddplab -n 4 -i`; returns the screen text.
local function replay_session(sess)
  local whole = table.concat(sess.blocks)
  local lines = typed_lines(whole)
  local raw = run_ddplab("-n 4 -i", table.concat(lines, "\n") .. "\n")
  return with_echo(raw, lines)
end

-- The examples, in the order of the page: {name, code, output}.
local examples = {}
local function example(name, code, output)
  examples[#examples + 1] = {name = name, code = code, output = output}
end

-- ---- Conventions -------------------------------------------------------------------------

example("counting from 0 and from 1", [==[
local x = torch.tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}})
print(x[0])               -- tensor index 0: the first row
print(x:select(1, 2))     -- dimension 1, index 2: the last column
print(x:size(0), x.shape) -- dimension 0 has 2 entries
print(x.shape[1])         -- the shape is a Lua list: its first entry is [1]
print(x:tolist()[1][3])   -- tolist() gives nested Lua tables, counted from 1
]==], [==[
tensor([1., 2., 3.])
tensor([3., 6.])
2	torch.Size([2, 3])
2
3.0
]==])

example("Lua and Python", [==[
local F = torch.nn.functional
local a = torch.ones(2, 3, {dtype = torch.float64}) -- dtype=torch.float64
print(a:sum({dim = 1, keepdim = true}))             -- a.sum(dim=1, keepdim=True)
local b, c = torch.ones(2), torch.ones(2)
print(b == c, b:eq(c), torch.equal(b, c))
print(F.relu(torch.tensor({-1.0, 1.0})))
]==], [==[
tensor([[3.],
        [3.]], dtype=torch.float64)
false	tensor([True, True])	true
tensor([0., 1.])
]==])

-- ---- torch -----------------------------------------------------------------------------

example("creation", [==[
print(torch.tensor({{1, 2}, {3, 4}}))
print(torch.tensor({1.5, 2}))
print(torch.zeros(2, 3))
print(torch.ones(2, {dtype = torch.int64}), torch.full({2}, 7.5))
print(torch.arange(5), torch.arange(0, 1, 0.25))
print(torch.linspace(0, 1, 3))
print(torch.eye(2))
print(torch.zeros_like(torch.ones(3)))
]==], [==[
tensor([[1, 2],
        [3, 4]])
tensor([1.5000, 2.0000])
tensor([[0., 0., 0.],
        [0., 0., 0.]])
tensor([1, 1])	tensor([7.5000, 7.5000])
tensor([0, 1, 2, 3, 4])	tensor([0.0000, 0.2500, 0.5000, 0.7500])
tensor([0.0000, 0.5000, 1.0000])
tensor([[1., 0.],
        [0., 1.]])
tensor([0., 0., 0.])
]==])

example("dtypes", [==[
print(torch.float32, torch.float == torch.float32, torch.long)
local t = torch.tensor({1.7, -1.7})
print(t.dtype, t:long(), t:double())
print(t:to(torch.int64).dtype, torch.int64.is_floating_point, torch.float64.itemsize)
print(torch.tensor({true, false}), torch.arange(3.0).dtype)
]==], [==[
torch.float32	true	torch.int64
torch.float32	tensor([ 1, -1])	tensor([ 1.7000, -1.7000], dtype=torch.float64)
torch.int64	false	8
tensor([ True, False])	torch.float32
]==])

example("random seeds", [==[
torch.manual_seed(0)
print(torch.randn(3))
local a = torch.rand(3)
torch.manual_seed(0)
torch.randn(3)
print(torch.equal(a, torch.rand(3)), torch.initial_seed())
print(torch.randint(0, 10, {4}), torch.randperm(8))
]==], [==[
tensor([ 1.5410, -0.2934, -2.1788])
true	0
tensor([6, 6, 9, 8])	tensor([0, 5, 2, 7, 1, 3, 4, 6])
]==])

example("generators and state", [==[
local g = torch.Generator():manual_seed(42)
local perm = torch.randperm(6, {generator = g})
print(perm, g:initial_seed())
torch.manual_seed(1)
local state = torch.get_rng_state()
local x = torch.empty(2):uniform_(-1, 1)
torch.set_rng_state(state)
print(torch.equal(x, torch.empty(2):uniform_(-1, 1)), state:numel())
]==], [==[
tensor([0, 3, 2, 4, 1, 5])	42
true	5056
]==])

example("grad mode", [==[
local x = torch.tensor({1.0, 2.0, 3.0}, {requires_grad = true})
local y = (x * x):sum()
print(y)
y:backward()
print(x.grad)
local z = torch.no_grad(function() return x * 2 end)
print(z.requires_grad, torch.is_grad_enabled())
do
  local _ <close> = torch.no_grad()
  print(torch.is_grad_enabled(), (x * 2).requires_grad)
end
print(torch.is_grad_enabled(), x:detach().requires_grad)
]==], [==[
tensor(14., grad_fn=<SumBackward0>)
tensor([2., 4., 6.])
false	true
false	false
true	false
]==])

example("save and load", [==[
local model = nn.Linear(2, 1)
local base = os.tmpname()
torch.save(model:state_dict(), base .. ".safetensors")
local sd = torch.load(base .. ".safetensors")
for name, t in pairs(sd) do print(name, t.shape) end
print(torch.equal(sd.weight, model.weight))
torch.save(torch.arange(3), base .. ".npy")
print(torch.load(base .. ".npy"))
os.remove(base); os.remove(base .. ".safetensors"); os.remove(base .. ".npy")
]==], [==[
weight	torch.Size([1, 2])
bias	torch.Size([1])
true
tensor([0, 1, 2])
]==])

example("data: TensorDataset and DataLoader", [==[
local x = torch.arange(10):reshape(5, 2):float()
local y = torch.arange(5)
local ds = data.TensorDataset(x, y)
print(#ds, ds[0][1], ds[0][2])
local loader = data.DataLoader(ds, {batch_size = 2})
print(#loader)
for xb, yb in loader do print(xb:size(0), yb) end
]==], [==[
5	tensor([0., 1.])	tensor(0)
3
2	tensor([0, 1])
2	tensor([2, 3])
1	tensor([4])
]==])

example("data: DistributedSampler padding and drop_last", [==[
local ds = data.TensorDataset(torch.arange(10))
for rank = 0, 3 do
  local s = data.DistributedSampler(ds, {num_replicas = 4, rank = rank, shuffle = false})
  print(rank, table.concat(s:indices(), " "))
end
local s = data.DistributedSampler(ds, {num_replicas = 4, rank = 3, shuffle = false, drop_last = true})
print(#s, table.concat(s:indices(), " "))
]==], [==[
0	0 4 8
1	1 5 9
2	2 6 0
3	3 7 1
2	3 7
]==])

example("data: shuffled as PyTorch shuffles", [==[
local ds = data.TensorDataset(torch.arange(10))
local s = data.DistributedSampler(ds, {num_replicas = 4, rank = 0, seed = 0})
print(table.concat(s:indices(), " "))
s:set_epoch(1)
print(table.concat(s:indices(), " "))
local g = torch.Generator()
g:manual_seed(0)
local loader = data.DataLoader(ds, {batch_size = 3, shuffle = true, generator = g})
for x in loader do print(x) break end
]==], [==[
4 3 6
5 0 7
tensor([3, 7, 5])
]==])

example("data: synthetic and CSV", [==[
local ds, x, y = data.synthetic.spiral{n = 6, classes = 2, seed = 0}
print(#ds, x.shape, y)
local path = os.tmpname() .. ".csv"
local f = io.open(path, "w")
f:write("height,weight,label\n1.5,60,0\n1.8,85,1\n")
f:close()
local t, names = data.load_csv(path)
print(table.concat(names, " "))
print(t)
os.remove(path)
]==], [==[
6	torch.Size([6, 2])	tensor([0, 0, 0, 1, 1, 1])
height weight label
tensor([[ 1.5000, 60.0000,  0.0000],
        [ 1.8000, 85.0000,  1.0000]])
]==])

example("checkpoints: an optimizer state dict", [==[
local model = nn.Linear(2, 1)
local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
nn.MSELoss()(model(torch.ones(4, 2)), torch.zeros(4, 1)):backward()
opt:step()
local base = os.tmpname()
torch.save(opt:state_dict(), base .. ".safetensors")
local sd = torch.load(base .. ".safetensors", {map_location = "cpu"})
local g = sd.param_groups[1]
print(g.lr, math.type(g.lr), g.momentum, g.nesterov, g.params[1], math.type(g.params[1]))
for k, v in pairs(sd.state[0]) do print(k, v.shape) end
opt:load_state_dict(sd)
os.remove(base); os.remove(base .. ".safetensors")
]==], [==[
0.1	float	0.9	false	0	integer
momentum_buffer	torch.Size([1, 2])
]==])

example("timing", [==[
local t0 = torch.time()
local x = torch.randn(64, 64)
for _ = 1, 10 do x = x:mm(x):div(64) end
local seconds = torch.time() - t0
print(math.type(seconds), seconds >= 0)
]==], [==[
float	true
]==])

example("gpus and devices", [==[
local d = torch.device("cuda:1")
print(d, d.type, d.index, torch.device("cuda").index)
local t = torch.zeros(2)
print(t.device, t.is_cuda, t.device == torch.device("cpu"), t:cpu() == t)
local device = torch.cuda.is_available() and "cuda" or "cpu"
print(torch.ones(2, {device = device}):cpu())
]==], [==[
cuda:1	cuda	1	nil
cpu	false	true	true
tensor([1., 1.])
]==])

-- ---- Tensor ----------------------------------------------------------------------------

example("fields", [==[
local t = torch.ones(2, 3)
print(t.shape, t.dtype, t.device, t.ndim)
print(t.requires_grad, t.grad, t.is_leaf, t.T.shape)
print(t:size(), t:size(1), t:dim(), t:numel(), #t)
print(table.concat(t:stride(), ","), t:is_contiguous(), t:t():is_contiguous())
]==], [==[
torch.Size([2, 3])	torch.float32	cpu	2
false	nil	true	torch.Size([3, 2])
torch.Size([2, 3])	3	2	6	2
3,1	true	false
]==])

example("indexing and views", [==[
local x = torch.arange(6):view(2, 3)
print(x)
print(x[1], x[1][2], x[-1][-1]:item())
x[0] = 9
print(x)
print(x:narrow(1, 1, 2))
print(x:t():contiguous():view(-1))
print(x:unsqueeze(0).shape, x:flatten().shape, x:reshape(3, -1).shape)
]==], [==[
tensor([[0, 1, 2],
        [3, 4, 5]])
tensor([3, 4, 5])	tensor(5)	5
tensor([[9, 9, 9],
        [3, 4, 5]])
tensor([[9, 9],
        [4, 5]])
tensor([9, 3, 9, 4, 9, 5])
torch.Size([1, 2, 3])	torch.Size([6])	torch.Size([3, 2])
]==])

example("arithmetic", [==[
local a = torch.tensor({1.0, 2.0, 3.0})
local b = torch.tensor({{10.0}, {20.0}})
print(a + 1, 2 * a, -a)
print(a / 2, a ^ 2)
print(a + b) -- broadcasting: (3) with (2x1) gives (2x3)
print(a:add(a, {alpha = 10}), a:clamp(1.5, 2.5))
a:mul_(2)
print(a)
]==], [==[
tensor([2., 3., 4.])	tensor([2., 4., 6.])	tensor([-1., -2., -3.])
tensor([0.5000, 1.0000, 1.5000])	tensor([1., 4., 9.])
tensor([[11., 12., 13.],
        [21., 22., 23.]])
tensor([11., 22., 33.])	tensor([1.5000, 2.0000, 2.5000])
tensor([2., 4., 6.])
]==])

example("reductions and comparisons", [==[
local x = torch.tensor({{1.0, 5.0}, {3.0, 2.0}})
print(x:sum(), x:sum(0), x:mean())
print(x:mean({dim = 1, keepdim = true}))
local values, indices = x:max(1)
print(values, indices, x:argmax())
print(x:gt(2))
print(torch.where(x:gt(2), x, 0))
print(x:allclose(x + 1e-7), torch.equal(x, x:clone()))
]==], [==[
tensor(11.)	tensor([4., 7.])	tensor(2.7500)
tensor([[3.0000],
        [2.5000]])
tensor([5., 3.])	tensor([1, 0])	tensor(1)
tensor([[False,  True],
        [ True, False]])
tensor([[0., 5.],
        [3., 0.]])
true	true
]==])

example("matmul, joining, splitting", [==[
local a = torch.ones(2, 3)
local b = torch.arange(6.0):view(3, 2)
print(a:mm(b))
print(torch.matmul(a, b).shape, (a:t()):mm(a).shape)
print(torch.cat({a, a}).shape, torch.cat({a, a}, 1).shape, torch.stack({a, a}).shape)
print(#a:chunk(2, 1), a:split(2, 1)[2].shape)
print(torch.tensor({{0.0, 0.0}}):softmax(1))
]==], [==[
tensor([[6., 9.],
        [6., 9.]])
torch.Size([2, 2])	torch.Size([3, 3])
torch.Size([4, 3])	torch.Size([2, 6])	torch.Size([2, 2, 3])
2	torch.Size([2, 1])
tensor([[0.5000, 0.5000]])
]==])

example("printing", [==[
print(torch.tensor({1.0, 2.5}), torch.tensor({1e-5, 1.0}))
print(torch.arange(2000))
print(torch.ones(1, {dtype = torch.float64, requires_grad = true}))
torch.set_printoptions{precision = 2}
print(torch.tensor({1 / 3}))
torch.set_printoptions{precision = 4}
print(tostring(torch.tensor({1 / 3})))
]==], [==[
tensor([1.0000, 2.5000])	tensor([1.0000e-05, 1.0000e+00])
tensor([   0,    1,    2,  ..., 1997, 1998, 1999])
tensor([1.], dtype=torch.float64, requires_grad=True)
tensor([0.33])
tensor([0.3333])
]==])

example("autograd", [==[
local w = torch.tensor({1.0, 2.0}, {requires_grad = true})
local loss = (w * 3):sum()
loss:backward()
print(w.grad)
loss = (w * w):sum()
loss:backward()
print(w.grad) -- grads add up: 3 + 2w
print(loss.grad_fn, loss.grad_fn:name(), w.grad_fn, w.is_leaf)
w.grad = nil
print(w.grad)
]==], [==[
tensor([3., 3.])
tensor([5., 7.])
<SumBackward0>	SumBackward0	nil	true
nil
]==])

-- ---- torch.nn ---------------------------------------------------------------------------

example("Module subclass", [==[
local LinearModel = nn.Module:extend("LinearModel")

function LinearModel:__init()
  self.fc1 = nn.Linear(5, 10)
  self.fc2 = nn.Linear(10, 5)
end

function LinearModel:forward(x)
  return self.fc2(torch.relu(self.fc1(x)))
end

torch.manual_seed(0)
local model = LinearModel()
print(model)
print(#model:parameters(), model(torch.randn(3, 5)).shape)
for name, p in model:named_parameters() do print(name, p.shape) end
]==], [==[
LinearModel(
  (fc1): Linear(in_features=5, out_features=10, bias=True)
  (fc2): Linear(in_features=10, out_features=5, bias=True)
)
4	torch.Size([3, 5])
fc1.weight	torch.Size([10, 5])
fc1.bias	torch.Size([10])
fc2.weight	torch.Size([5, 10])
fc2.bias	torch.Size([5])
]==])

example("Sequential and state_dict", [==[
local seq = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
print(seq[0], #seq)
local keys = {}
for k in pairs(seq:state_dict()) do keys[#keys + 1] = k end
print(table.concat(keys, " "))
local copy = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
copy:load_state_dict(seq:state_dict())
print(torch.equal(copy[2].weight, seq[2].weight))
local bad = seq:state_dict()
bad["0.weight"] = torch.zeros(10, 4)
local ok, err = pcall(function() copy:load_state_dict(bad) end)
print(err)
]==], [==[
Linear(in_features=5, out_features=10, bias=True)	3
0.weight 0.bias 2.weight 2.bias
true
example.lua:11: Error(s) in loading state_dict for Sequential:
	size mismatch for 0.weight: copying a param with shape torch.Size([10, 4]) from checkpoint, the shape in current model is torch.Size([10, 5]).
]==])

example("zero_grad, train, eval", [==[
local m = nn.Linear(2, 1)
m(torch.ones(1, 2)):sum():backward()
print(m.weight.grad ~= nil)
m:zero_grad()
print(m.weight.grad, m.training)
m:eval()
print(m.training)
]==], [==[
true
nil	true
false
]==])

example("losses", [==[
local loss_fn = nn.MSELoss()
print(loss_fn(torch.tensor({1.0, 2.0, 3.0}), torch.tensor({1.0, 0.0, 0.0})))
print(nn.MSELoss({reduction = "sum"})(torch.tensor({1.0, 2.0}), torch.zeros(2)))
local ce = nn.CrossEntropyLoss()
print(ce(torch.zeros(2, 3), torch.tensor({0, 2})))
local ok, err = pcall(loss_fn, torch.zeros(4, 1), torch.zeros(4))
print(err:match("mse_loss: [^;]*"))
]==], [==[
tensor(4.3333)
tensor(5.)
tensor(1.0986)
mse_loss: input (4x1) and target (4) have different shapes
]==])

example("batch norm", [==[
torch.manual_seed(0)
local bn = nn.BatchNorm1d(3)
local x = torch.randn(4, 3)
print(bn(x)[0])
print(bn.running_mean, bn.num_batches_tracked)
bn:eval()
print(bn(x)[0])
print(bn)
local model = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
print(model[1])
]==], [==[
tensor([ 1.4666, -0.0131, -1.3234], grad_fn=<SelectBackward0>)
tensor([ 0.0527, -0.0284, -0.1029])	tensor(1)
tensor([ 1.5160, -0.2696, -2.0752], grad_fn=<SelectBackward0>)
BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
SyncBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
]==])

example("functional", [==[
local F = torch.nn.functional
print(F.relu(torch.tensor({-1.0, 2.0})))
print(F.linear(torch.ones(1, 3), torch.ones(2, 3), torch.tensor({1.0, 2.0})))
print(F.mse_loss(torch.tensor({1.0, 2.0}), torch.zeros(2), {reduction = "none"}))
print(F.cross_entropy(torch.zeros(2, 3), torch.tensor({0, 2}), {reduction = "sum"}))
print(F.softmax(torch.zeros(1, 4), 1))
]==], [==[
tensor([0., 2.])
tensor([[4., 5.]])
tensor([1., 4.])
tensor(2.1972)
tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
]==])

-- ---- torch.optim ------------------------------------------------------------------------

example("training loop", [==[
torch.manual_seed(0)
local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
local loss_fn = nn.MSELoss()
local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
local x, y = torch.randn(64, 5), torch.randn(64, 5)
for step = 1, 5 do
  opt:zero_grad()
  local loss = loss_fn(model(x), y)
  loss:backward()
  opt:step()
  print(step, string.format("%.3f", loss:item()))
end
]==], [==[
1	1.263
2	1.243
3	1.211
4	1.175
5	1.143
]==])

example("Adam and its state", [==[
local w = nn.Parameter(torch.tensor({1.0, -1.0}))
local opt = optim.Adam({w}, {lr = 0.1})
local loss = (w * w):sum()
loss:backward()
opt:step()
print(w)
local sd = opt:state_dict()
print(sd.state[0].step, sd.state[0].exp_avg, sd.param_groups[1].lr)
print(optim.AdamW({w}).defaults.weight_decay)
local ok, err = pcall(optim.SGD, {w})
print(err)
]==], [==[
tensor([ 0.9000, -0.9000], requires_grad=True)
1	tensor([ 0.2000, -0.2000])	0.1
0.01
example.lua:10: SGD: lr is required: parameter group didn't specify a value of required optimization parameter lr; give it in the options, e.g. optim.SGD(model:parameters(), {lr=0.01})
]==])

-- ---- REPL transcripts on 4 ranks ----------------------------------------------------------

-- Each session is a list of transcript blocks shown one after the other on the page; the
-- blocks of a session run in one fresh `ddplab -n 4 -i`.
local sessions = {}
local function session(name, blocks)
  sessions[#sessions + 1] = {name = name, blocks = blocks}
end

session("nn.DistributedDataParallel: the tutorial's training stage", {[==[
[all]> dist.init_process_group{backend = "gloo"}
[all]> rank, world = dist.get_rank(), dist.get_world_size()
[all]> torch.manual_seed(rank) -- a different model on every rank, until DDP broadcasts rank 0's
[all]> model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
[all]> ddp = nn.DistributedDataParallel(model)
[all]> loss_fn = nn.MSELoss()
[all]> opt = optim.Adam(ddp:parameters(), {lr = 1e-3})
[all]> torch.manual_seed(100 + rank) -- each rank its own data
[all]> x, y = torch.randn(64, 5), torch.randn(64, 5)
[all]> for step = 1, 5 do opt:zero_grad(); loss_fn(ddp(x), y):backward(); opt:step() end
[all]> w = model[2].bias:clone(); dist.broadcast(w, 0)
[all]> =torch.equal(w, model[2].bias), model[2].bias.grad.shape
[0-3] true	torch.Size([5])
[all]> b = ddp:buckets()[1]
[all]> =#ddp:buckets(), b.bytes, table.concat(b.params, " ")
[0-3] 1	460	2.weight 2.bias 0.weight 0.bias
[all]> sd = ddp:state_dict(); keys = {}; for k in pairs(sd) do keys[#keys + 1] = k end
[all]> =table.concat(keys, " ")
[0-3] module.0.weight module.0.bias module.2.weight module.2.bias
[all]> sd = nn.utils.consume_prefix_in_state_dict_if_present(sd, "module.")
[all]> _ = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5)):load_state_dict(sd)
]==]})

session("data: a sampler per rank", {[==[
[all]> dist.init_process_group{backend = "gloo"}
[all]> ds = data.synthetic.regression{n = 64, seed = 0}
[all]> sampler = data.DistributedSampler(ds, {shuffle = false})
[all]> loader = data.DataLoader(ds, {batch_size = 8, sampler = sampler})
[all]> =#sampler, #loader
[0-3] 16	2
[all]> =sampler:indices()[1], sampler:indices()[2]
[0] 0	4
[1] 1	5
[2] 2	6
[3] 3	7
[all]> for x, y in loader do print(x.shape, y.shape) break end
[0-3] torch.Size([8, 5])	torch.Size([8, 5])
]==]})

session("checkpoints: rank 0 saves, barrier, every rank loads", {[==[
[all]> dist.init_process_group{backend = "gloo"}
[all]> rank = dist.get_rank()
[all]> torch.manual_seed(rank)
[all]> model = nn.Linear(5, 5)
[all]> opt = optim.Adam(model:parameters(), {lr = 1e-3})
[all]> base = {rank == 0 and os.tmpname() or nil}
[all]> dist.broadcast_object_list(base, 0)
[all]> if rank == 0 then
  ...>   torch.save(model:state_dict(), base[1] .. ".model.safetensors")
  ...>   torch.save(opt:state_dict(), base[1] .. ".opt.safetensors")
  ...> end
[all]> dist.barrier()
[all]> result = model:load_state_dict(torch.load(base[1] .. ".model.safetensors", {map_location = "cpu"}))
[all]> =#result.missing_keys, #result.unexpected_keys
[0-3] 0	0
[all]> opt:load_state_dict(torch.load(base[1] .. ".opt.safetensors", {map_location = "cpu"}))
[all]> biases = {}
[all]> dist.all_gather_object(biases, model.bias)
[all]> =biases[1]:equal(biases[4]), #biases
[0-3] true	4
[all]> if rank == 0 then os.remove(base[1] .. ".model.safetensors"); os.remove(base[1] .. ".opt.safetensors"); os.remove(base[1]) end
]==]})

session("the REPL", {[==[
[all]> dist.init_process_group{backend = "gloo"}
[all]> rank = dist.get_rank()
[all]> t = torch.ones(3) * (rank + 1)
[all]> t
[0] tensor([1., 1., 1.])
[1] tensor([2., 2., 2.])
[2] tensor([3., 3., 3.])
[3] tensor([4., 4., 4.])
[all]> dist.all_reduce(t)
[all]> t
[0-3] tensor([10., 10., 10.])
]==], [==[
[all]> :show rank * 10
[0]   [1]   [2]   [3]
0     10    20    30
≠ every rank differs
[all]> :show t:sum():item()
[0]    [1]    [2]    [3]
30.0   30.0   30.0   30.0
✓ all equal
]==], [==[
[all]> :on 0,2
[0,2]> print("only here", rank)
[0] only here	0
[2] only here	2
[0,2]> :on all
[all]> for i = 1, 2 do
  ...> print(i)
  ...> end
[0-3] 1
      2
]==], [==[
[all]> torch.zeros(2) + torch.zeros(3)
[0-3] error: stdin:1: add: shapes (2) and (3) cannot be broadcast (dim 0: 2 vs 3)
      stack traceback:
      	[C]: in metamethod 'add'
      	stdin:1: in main chunk
]==]})

session("plots", {[==[
[all]> rank = tonumber(os.getenv("RANK"))
[all]> losses = {}
[all]> for step in progress(6) do losses[#losses + 1] = (rank + 1) / (step + 1) end
[all]> plot(losses, {per_rank = true, width = 30, height = 8, title = "loss per rank"})
[0]            loss per rank
            4 │x
              │ xx
              │++ x
        2.357 │  ++xx
              │ooo ++xxxx
              │*  ooo=+++==xxxxxx
              │ ******=oooo==================
       0.1667 │        *************=========
              └──────────────────────────────
               1                            6
               * rank 0   o rank 1   + rank 2   x rank 3   (= where they overlap)
]==]})

session("collectives", {[==[
[all]> dist.init_process_group{backend = "gloo", init_method = "env://"}
[all]> rank, world = dist.get_rank(), dist.get_world_size()
[all]> =rank, world, dist.get_backend()
[0] 0	4	gloo
[1] 1	4	gloo
[2] 2	4	gloo
[3] 3	4	gloo
]==], [==[
[all]> t = torch.tensor({1.0, 2.0}) * (rank + 1)
[all]> dist.all_reduce(t, dist.ReduceOp.SUM)
[all]> t
[0-3] tensor([10., 20.])
[all]> m = torch.tensor({rank * 1.0}); dist.all_reduce(m, {op = dist.ReduceOp.MAX}); print(m)
[0-3] tensor([3.])
[all]> a = torch.tensor({rank * 1.0}); dist.all_reduce(a, dist.ReduceOp.AVG); print(a)
[0-3] tensor([1.5000])
]==], [==[
[all]> b = torch.arange(3) + rank * 10
[all]> dist.broadcast(b, 0)
[all]> b
[0-3] tensor([0, 1, 2])
[all]> r = torch.tensor({rank + 1.0}); dist.reduce(r, 0)
[all]> if rank == 0 then print(r) end
[0] tensor([10.])
]==], [==[
[all]> parts = {}; for i = 1, world do parts[i] = torch.zeros(1) end
[all]> dist.all_gather(parts, torch.tensor({rank * 1.0}))
[all]> =torch.cat(parts)
[0-3] tensor([0., 1., 2., 3.])
[all]> flat = torch.zeros(world)
[all]> dist.all_gather_into_tensor(flat, torch.tensor({rank * 2.0}))
[all]> flat
[0-3] tensor([0., 2., 4., 6.])
]==], [==[
[all]> inputs = {}; for i = 1, world do inputs[i] = torch.tensor({rank * 10 + i - 1}) end
[all]> out = torch.zeros(1, {dtype = torch.int64})
[all]> dist.reduce_scatter(out, inputs, dist.ReduceOp.SUM)
[all]> out
[0] tensor([60])
[1] tensor([64])
[2] tensor([68])
[3] tensor([72])
]==], [==[
[all]> list = nil
[all]> if rank == 0 then list = {}; for i = 1, world do list[i] = torch.zeros(1) end end
[all]> dist.gather(torch.tensor({rank * 3.0}), list, 0)
[all]> if rank == 0 then print(torch.cat(list)) end
[0] tensor([0., 3., 6., 9.])
[all]> pieces = nil
[all]> if rank == 0 then pieces = {}; for i = 1, world do pieces[i] = torch.tensor({4.0 + i}) end end
[all]> got = torch.zeros(1)
[all]> dist.scatter(got, pieces, 0)
[all]> got
[0] tensor([5.])
[1] tensor([6.])
[2] tensor([7.])
[3] tensor([8.])
]==], [==[
[all]> dist.barrier()
[all]> t = torch.ones(1); w = dist.all_reduce(t, {async_op = true})
[all]> =w:wait(), w:is_completed(), t
[0-3] true	true	tensor([4.])
]==], [==[
[all]> x = torch.tensor({rank * 1.0})
[all]> if rank == 0 then dist.send(x, 1) elseif rank == 1 then print(dist.recv(x, 0), x) end
[1] 0	tensor([0.])
[all]> inbox = torch.zeros(1)
[all]> s = dist.isend(torch.tensor({rank * 1.0}), (rank + 1) % world); r = dist.irecv(inbox, (rank - 1) % world); s:wait(); r:wait()
[all]> inbox
[0] tensor([3.])
[1] tensor([0.])
[2] tensor([1.])
[3] tensor([2.])
[all]> if rank == 0 then total = 0; for _ = 1, world - 1 do total = total + dist.recv(torch.zeros(1)) end; print(total) else dist.send(torch.ones(1), 0) end
[0] 6
]==], [==[
[all]> g = dist.new_group({0, 1})
[all]> g
[0]   ProcessGroup(ranks={0, 1}, rank=0, backend=gloo)
[1]   ProcessGroup(ranks={0, 1}, rank=1, backend=gloo)
[2,3] GroupMember.NON_GROUP_MEMBER
[all]> =dist.get_rank(g), dist.get_world_size(g)
[0]   0	2
[1]   1	2
[2,3] -1	-1
[all]> if g ~= dist.GroupMember.NON_GROUP_MEMBER then t = torch.ones(1); dist.all_reduce(t, {group = g}); print(t) end
[0,1] tensor([2.])
]==], [==[
[all]> dist.destroy_process_group()
[all]> =dist.is_initialized()
[0-3] false
]==]})

session("mismatches", {[==[
[all]> dist.init_process_group{backend = "gloo"}
[all]> rank = dist.get_rank()
[all]> t = torch.ones(3)
[all]> if rank == 3 then dist.broadcast(t, 0) else dist.all_reduce(t) end
[0-2] error: stdin:1: collective #1 of this chunk: ranks 0,1,2 called all_reduce(float32[3], op=SUM); rank 3 called broadcast(float32[3], src=0)
      stack traceback:
      	[C]: in function 'torch.distributed.all_reduce'
      	stdin:1: in main chunk
[3]   error: stdin:1: collective #1 of this chunk: ranks 0,1,2 called all_reduce(float32[3], op=SUM); rank 3 called broadcast(float32[3], src=0)
      stack traceback:
      	[C]: in function 'torch.distributed.broadcast'
      	stdin:1: in main chunk
]==], [==[
[all]> x = torch.ones(rank == 3 and 4 or 3)
[all]> dist.all_reduce(x)
[0-3] error: stdin:1: collective #1 of this chunk: ranks 0,1,2 called all_reduce(float32[3], op=SUM); rank 3 called all_reduce(float32[4], op=SUM)
      stack traceback:
      	[C]: in function 'torch.distributed.all_reduce'
      	stdin:1: in main chunk
]==], [==[
[all]> if rank < 2 then dist.all_reduce(t) end
[0,1] error: stdin:1: collective #1 of this chunk: ranks 0,1 called all_reduce(float32[3], op=SUM); ranks 2,3 called nothing and finished the chunk
      stack traceback:
      	[C]: in function 'torch.distributed.all_reduce'
      	stdin:1: in main chunk
]==], [==[
[all]> dist.all_reduce(t); print(t)
[0-3] tensor([4., 4., 4.])
]==], [==[
[all]> dist.broadcast(nn.Linear(2, 2):state_dict(), 0)
[0-3] error: stdin:1: broadcast: a collective takes one tensor, got a table (a state_dict or a list of tensors?). For a whole model, call it once per tensor:
        for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end
      stack traceback:
      	[C]: in function 'torch.distributed.broadcast'
      	stdin:1: in main chunk
]==]})

-- ---- the command line ---------------------------------------------------------------------

-- {args, the page's block (a "$ ddplab ARGS" line, then the output), exit status,
-- whether the output lines may come in any order (ranks print concurrently)}
local commands = {
  {"--help", [==[
$ ddplab --help
usage: ddplab [options] [script.lua [args]]

Runs Lua on N rank processes, one terminal for all of them, to learn how
PyTorch's DistributedDataParallel works. Without a script it opens the REPL:
every line you type runs on every rank and their outputs are shown side by side.

options:
  -n, --nproc-per-node N   ranks on this machine (default: number of GPUs, else 4)
  --backend gloo|nccl      collective backend (default: gloo on CPU)
  --nnodes M               machines taking part (default 1)
  --node-rank K            this machine's index, 0..M-1 (default 0)
  --master-addr A          address of node 0 (default 127.0.0.1)
  --master-port P          port of the rendezvous store (default: a free one)
  --collective-timeout S   seconds before a stuck collective is reported (default 5)
  --no-collective-check    do not cross-check collectives (for benchmarks)
  -e CHUNK                 run the Lua CHUNK on every rank
  -i                       enter the REPL after running the script or -e
  --lesson N               open lesson N of the course (or a lesson file's path)
  --verify-lessons [N]     run every lesson's (or lesson N's) steps: each check must
                           fail from the step's setup and pass after its solution
  -h, --help               show this help
  --version                show the version and what this build has
  script.lua [args]        run a script on every rank ('-' reads standard input)

examples:
  ddplab -n 2                          open the REPL on 2 ranks
  ddplab --lesson 1                    start the course at lesson 1
  ddplab -n 4 -e 'dist.init_process_group{backend="gloo"}; print(dist.get_rank())'
                                       run one line on 4 ranks and exit
]==], 0, false},
  {[[-n 2 -e 'dist.init_process_group{backend = "gloo"}' -e 'print("hello from rank", dist.get_rank())']], [==[
$ ddplab -n 2 -e 'dist.init_process_group{backend = "gloo"}' -e 'print("hello from rank", dist.get_rank())'
[0] hello from rank	0
[1] hello from rank	1
]==], 0, true},
  {[[-n 2 -e 'if os.getenv("RANK") == "1" then error("bad input") end']], [==[
$ ddplab -n 2 -e 'if os.getenv("RANK") == "1" then error("bad input") end'
[1] error: (command line):1: bad input
    stack traceback:
    	[C]: in function 'error'
    	(command line):1: in main chunk
ddplab: rank 1 failed (exit status 1)
]==], 1, false},
}

-- The output part of a command block (everything after its "$ " line), as sorted lines
-- when the order may vary.
local function command_output(block, any_order)
  local out = block:gsub("^%$ [^\n]*\n", "")
  if not any_order then return out end
  local lines = {}
  for line in out:gmatch("[^\n]*\n") do lines[#lines + 1] = line end
  table.sort(lines)
  return table.concat(lines)
end

-- ---- running it all ---------------------------------------------------------------------

for _, e in ipairs(examples) do
  T.test("example: " .. e.name, function() same_text(run_example(e.code), e.output, e.name) end)
end

-- The statements of the "collectives" and "mismatches" transcripts on this test's own
-- world, with the values they must give for any world size.
dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, world = dist.get_rank(), dist.get_world_size()

T.test("dist: rank, world size, backend", function()
  T.eq(rank, tonumber(os.getenv("RANK")))
  T.eq(world, tonumber(os.getenv("WORLD_SIZE")))
  T.eq(dist.get_backend(), "gloo")
end)

T.test("dist: all_reduce with SUM, MAX, AVG", function()
  local t = torch.tensor({1.0, 2.0}) * (rank + 1)
  dist.all_reduce(t, dist.ReduceOp.SUM)
  local sum = world * (world + 1) / 2
  T.eq(t:tolist(), {sum, 2 * sum})
  local m = torch.tensor({rank * 1.0}); dist.all_reduce(m, {op = dist.ReduceOp.MAX})
  T.eq(m:item(), world - 1)
  local a = torch.tensor({rank * 1.0}); dist.all_reduce(a, dist.ReduceOp.AVG)
  T.close(a:item(), (world - 1) / 2)
end)

T.test("dist: broadcast and reduce", function()
  local b = torch.arange(3) + rank * 10
  dist.broadcast(b, 0)
  T.eq(b:tolist(), {0, 1, 2})
  local r = torch.tensor({rank + 1.0}); dist.reduce(r, 0)
  if rank == 0 then T.eq(r:item(), world * (world + 1) / 2) end
end)

T.test("dist: all_gather and all_gather_into_tensor", function()
  local parts = {}; for i = 1, world do parts[i] = torch.zeros(1) end
  dist.all_gather(parts, torch.tensor({rank * 1.0}))
  T.eq(torch.cat(parts):tolist(), torch.arange(world):tolist())
  local flat = torch.zeros(world)
  dist.all_gather_into_tensor(flat, torch.tensor({rank * 2.0}))
  T.eq(flat:tolist(), (torch.arange(world) * 2):tolist())
end)

T.test("dist: reduce_scatter", function()
  local inputs = {}; for i = 1, world do inputs[i] = torch.tensor({rank * 10 + i - 1}) end
  local out = torch.zeros(1, {dtype = torch.int64})
  dist.reduce_scatter(out, inputs, dist.ReduceOp.SUM)
  T.eq(out:item(), 10 * world * (world - 1) // 2 + world * rank)
end)

T.test("dist: gather and scatter", function()
  local list = nil
  if rank == 0 then list = {}; for i = 1, world do list[i] = torch.zeros(1) end end
  dist.gather(torch.tensor({rank * 3.0}), list, 0)
  if rank == 0 then T.eq(torch.cat(list):tolist(), (torch.arange(world) * 3):tolist()) end
  local pieces = nil
  if rank == 0 then pieces = {}; for i = 1, world do pieces[i] = torch.tensor({4.0 + i}) end end
  local got = torch.zeros(1)
  dist.scatter(got, pieces, 0)
  T.eq(got:item(), 5 + rank)
end)

T.test("dist: barrier and async_op", function()
  dist.barrier()
  local t = torch.ones(1)
  local w = dist.all_reduce(t, {async_op = true})
  T.eq(w:wait(), true)
  T.eq(w:is_completed(), true)
  T.eq(t:item(), world)
end)

if world > 1 then
  T.test("dist: send/recv and an isend/irecv ring", function()
    local x = torch.tensor({rank * 1.0})
    if rank == 0 then dist.send(x, 1) elseif rank == 1 then
      T.eq(dist.recv(x, 0), 0)
      T.eq(x:item(), 0)
    end
    local inbox = torch.zeros(1)
    local s = dist.isend(torch.tensor({rank * 1.0}), (rank + 1) % world); local r = dist.irecv(inbox, (rank - 1) % world); s:wait(); r:wait()
    T.eq(inbox:item(), (rank - 1) % world)
  end)
end

T.test("dist: new_group", function()
  local g = dist.new_group(world > 1 and {0, world - 1} or {0})
  if rank == 0 or rank == world - 1 then
    T.eq(dist.get_rank(g), rank == 0 and 0 or 1)
    T.eq(dist.get_world_size(g), world > 1 and 2 or 1)
    local t = torch.ones(1); dist.all_reduce(t, {group = g})
    T.eq(t:item(), world > 1 and 2 or 1)
  else
    T.is_true(g == dist.GroupMember.NON_GROUP_MEMBER)
    T.eq(dist.get_rank(g), -1)
  end
end)

T.test("dist: mismatches are errors on every rank, and the group goes on", function()
  local t = torch.ones(3)
  if world > 1 then
    local last = world - 1
    local err = T.raises(function()
      if rank == last then dist.broadcast(t, 0) else dist.all_reduce(t) end
    end, "called")
    T.is_true(err:find("rank " .. last .. " called broadcast(float32[3], src=0)", 1, true), err)
    local x = torch.ones(rank == last and 4 or 3)
    T.raises(function() dist.all_reduce(x) end, "rank " .. last .. " called all_reduce(float32[4], op=SUM)")
    -- (a rank that skips a collective is caught when its chunk ends: in the REPL each line
    -- is a chunk, in a script the whole file; tests/lua/test_dist_mismatch.lua has it)
  end
  t = torch.ones(3)
  dist.all_reduce(t)
  T.eq(t:tolist(), {world, world, world})
  T.raises(function() dist.broadcast(nn.Linear(2, 2):state_dict(), 0) end,
           "broadcast: a collective takes one tensor, got a table")
end)

T.test("dist: destroy_process_group", function()
  dist.destroy_process_group()
  T.eq(dist.is_initialized(), false)
end)

-- The transcripts and the command lines, on rank 0 only: they start their own ranks.
if rank == 0 then
  for _, sess in ipairs(sessions) do
    T.test("REPL transcript: " .. sess.name, function()
      local screen, rest = replay_session(sess)
      same_text(screen, table.concat(sess.blocks), sess.name)
      T.eq(rest, "[all]> ", "the REPL waits at its prompt at the end of the input")
    end)
  end

  T.test("REPL :ranks lists every rank", function()
    local out = run_ddplab("-n 2 -i", ":ranks\n")
    T.is_true(out:find("rank%s+host%s+pid%s+device%s+state%s+memory\n"), out)
    for r = 0, 1 do
      T.is_true(out:find("\n" .. r .. "%s+%S+%s+%d+%s+cpu%s+idle%s+[%d.]+ %a+\n"), out)
    end
  end)

  for _, c in ipairs(commands) do
    T.test("command line: ddplab " .. c[1], function()
      local out, status = run_ddplab(c[1])
      same_text(command_output(out, c[4]), command_output(c[2], c[4]), "ddplab " .. c[1])
      T.eq(status, c[3], "exit status")
    end)
  end
end

-- The page shows every block of this file verbatim.
T.test("docs/api.md shows these examples verbatim", function()
  local fixtures = os.getenv("DDP_TEST_FIXTURES")
  local root = fixtures and fixtures:gsub("/tests/fixtures/?$", "") or arg[0]:gsub("/?tests/lua/[^/]*$", "")
  if root == "" then root = "." end
  local f = assert(io.open(root .. "/docs/api.md"))
  local page = f:read("a")
  f:close()
  local function shown(block, lang, what)
    T.is_true(page:find("```" .. lang .. "\n" .. block .. "```\n", 1, true),
              what .. " is not on the page as a ```" .. lang .. " block:\n" .. block)
  end
  for _, e in ipairs(examples) do
    shown(e.code, "lua", "the code of '" .. e.name .. "'")
    shown(e.output, "text", "the output of '" .. e.name .. "'")
  end
  for _, sess in ipairs(sessions) do
    for i, block in ipairs(sess.blocks) do shown(block, "text", sess.name .. " block " .. i) end
  end
  for _, c in ipairs(commands) do shown(c[2], "text", "ddplab " .. c[1]) end
end)

T.done()
