-- ranks: 1 2 4
-- test_data.lua — torch.utils.data: TensorDataset, DistributedSampler against the index
-- lists PyTorch 1.13 gives (tests/fixtures/sampler_indices.lua, written by
-- gen_sampler_fixtures.py), DataLoader batching, its errors, and the sampler's defaults
-- from the process group.
local T = require "support"

local fixtures = dofile(os.getenv("DDP_TEST_FIXTURES") .. "/sampler_indices.lua")

-- A dataset of n samples whose y is the sample's index.
local function indexed(n)
  return data.TensorDataset(torch.arange(n):reshape(n, 1):float() * 10, torch.arange(n))
end

T.test("the module has every name", function()
  T.is_true(torch.utils.data == data, "torch.utils.data is the global data")
  T.is_true(require("torch.utils.data") == data, "require gives the same table")
end)

T.test("TensorDataset: length, 0-based items, negative indices, mismatch", function()
  local ds = indexed(5)
  T.eq(#ds, 5)
  T.eq(ds[0][2]:item(), 0)
  T.eq(ds[4][1]:tolist(), {40.0})
  T.eq(ds[-1][2]:item(), 4)
  T.raises(function() return ds[5] end, "index 5 is out of range for a dataset of size 5")
  T.raises(function() data.TensorDataset(torch.zeros(5, 2), torch.zeros(4)) end,
           "tensor 1 has 5 samples (dim 0) but tensor 2 has 4")
  T.raises(function() data.TensorDataset(torch.zeros(3), 7) end, "argument 2 is a number, not a tensor")
  T.raises(function() data.TensorDataset() end, "at least one tensor")
  T.raises(function() data.TensorDataset(torch.tensor(1.0)) end, "0-d")
end)

T.test("DistributedSampler equals PyTorch, shuffle off", function()
  local checked = 0
  for _, c in ipairs(fixtures.sampler) do
    if not c.shuffle then
      local s = data.DistributedSampler(indexed(c.n), {num_replicas = c.num_replicas, rank = c.rank,
                                                       shuffle = false, drop_last = c.drop_last})
      s:set_epoch(c.epoch)
      T.eq(s:indices(), c.indices, string.format("n=%d world=%d rank=%d drop_last=%s", c.n,
                                                 c.num_replicas, c.rank, tostring(c.drop_last)))
      T.eq(#s, #c.indices, "len")
      checked = checked + 1
    end
  end
  T.is_true(checked > 100, "few cases: " .. checked)
end)

T.test("DistributedSampler equals PyTorch, shuffle on", function()
  local checked = 0
  for _, c in ipairs(fixtures.sampler) do
    if c.shuffle then
      local s = data.DistributedSampler(indexed(c.n), {num_replicas = c.num_replicas, rank = c.rank,
                                                       seed = c.seed, drop_last = c.drop_last})
      s:set_epoch(c.epoch)
      T.eq(s:indices(), c.indices, string.format("n=%d world=%d rank=%d seed=%d epoch=%d drop_last=%s",
                                                 c.n, c.num_replicas, c.rank, c.seed, c.epoch,
                                                 tostring(c.drop_last)))
      checked = checked + 1
    end
  end
  T.is_true(checked > 100, "few cases: " .. checked)
end)

T.test("DistributedSampler: padding repeats from the start, ranks cover the data", function()
  -- 10 samples over 4 ranks: 3 each, padded with indices 0 and 1
  local seen = {}
  for r = 0, 3 do
    local s = data.DistributedSampler(indexed(10), {num_replicas = 4, rank = r, shuffle = false})
    T.eq(#s, 3)
    for i in s() do seen[#seen + 1] = i end
  end
  table.sort(seen)
  T.eq(seen, {0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9})
  -- drop_last: 2 each, samples 8 and 9 dropped
  local s = data.DistributedSampler(indexed(10), {num_replicas = 4, rank = 3, shuffle = false, drop_last = true})
  T.eq(s:indices(), {3, 7})
  -- 1 sample over 4 ranks: everyone gets sample 0
  T.eq(data.DistributedSampler(indexed(1), {num_replicas = 4, rank = 2, shuffle = false}):indices(), {0})
end)

T.test("DistributedSampler: errors in the learner's words", function()
  local ds = indexed(4)
  T.raises(function() data.DistributedSampler(ds, {num_replicas = 2, rank = 2}) end,
           "Invalid rank 2, rank should be in the interval [0, 1]")
  T.raises(function() data.DistributedSampler(ds, {num_replicas = 2, rank = -1}) end, "Invalid rank -1")
  T.raises(function() data.DistributedSampler(ds, {num_replicas = 0, rank = 0}) end,
           "num_replicas must be an integer >= 1, got 0")
  T.raises(function() data.DistributedSampler(ds, {num_replica = 2, rank = 0}) end,
           "unknown option 'num_replica' (did you mean 'num_replicas'?)")
  T.raises(function() data.DistributedSampler(ds, {num_replicas = 2, rank = 0, shuffle = "yes"}) end,
           "shuffle must be true or false")
  T.raises(function() data.DistributedSampler(ds, {num_replicas = 2, rank = 0, seed = 1.5}) end,
           "seed must be an integer")
  T.raises(function() data.DistributedSampler(42, {num_replicas = 2, rank = 0}) end,
           "must have a length")
  local s = data.DistributedSampler(ds, {num_replicas = 2, rank = 0})
  T.raises(function() s.set_epoch(3) end, "call it as sampler:set_epoch(epoch), with a colon")
  T.raises(function() s:set_epoch(1.5) end, "the epoch must be an integer")
end)

T.test("DataLoader: batches are stacked, the last one short unless drop_last", function()
  local ds = indexed(7)
  local loader = data.DataLoader(ds, {batch_size = 3})
  T.eq(#loader, 3)
  local got = {}
  for x, y in loader do
    T.eq(x:size(0), y:size(0))
    T.eq(x:size(1), 1)
    T.close(x, (y:float() * 10):reshape(y:size(0), 1))
    got[#got + 1] = y:tolist()
  end
  T.eq(#got, 3)
  T.eq(got[1], {0, 1, 2})
  T.eq(got[3], {6})
  -- a second loop is a new epoch, from the start
  local n = 0
  for _, y in loader do
    n = n + 1
    if n == 1 then T.eq(y:tolist(), {0, 1, 2}) end
  end
  T.eq(n, 3)
  local dl = data.DataLoader(ds, {batch_size = 3, drop_last = true})
  T.eq(#dl, 2)
  n = 0
  for _ in dl do n = n + 1 end
  T.eq(n, 2)
  -- the default batch size is 1
  T.eq(#data.DataLoader(ds), 7)
end)

T.test("DataLoader: with a DistributedSampler, each rank its share", function()
  local ds = indexed(10)
  local s = data.DistributedSampler(ds, {num_replicas = 3, rank = 1, shuffle = false})
  local loader = data.DataLoader(ds, {batch_size = 2, sampler = s})
  T.eq(#loader, 2)
  local all = {}
  for _, y in loader do for _, v in ipairs(y:tolist()) do all[#all + 1] = v end end
  T.eq(all, {1, 4, 7, 0})
  -- a breaking loop does not disturb the next one
  for _ in loader do break end
  local first
  for _, y in loader do first = first or y:tolist() end
  T.eq(first, {1, 4})
end)

T.test("DataLoader: other datasets collate as default_collate does", function()
  -- a tensor is a dataset of its rows
  local rows = {}
  for x in data.DataLoader(torch.arange(6):reshape(3, 2), {batch_size = 2}) do rows[#rows + 1] = x end
  T.eq(tostring(rows[1].shape), "torch.Size([2, 2])")
  -- any object with # and [i]: numbers become int64 / float64 tensors, tables per key
  local squares = setmetatable({}, {__len = function() return 4 end,
                                    __index = function(_, i) return {i = i, half = i / 2} end})
  local batches = {}
  for b in data.DataLoader(squares, {batch_size = 4}) do batches[#batches + 1] = b end
  T.eq(#batches, 1)
  T.eq(batches[1].i:tolist(), {0, 1, 2, 3})
  T.eq(tostring(batches[1].i.dtype), "torch.int64")
  T.eq(tostring(batches[1].half.dtype), "torch.float64")
  -- collate_fn gets the list of samples
  local sizes = {}
  for n in data.DataLoader(indexed(5), {batch_size = 2, collate_fn = function(items) return #items end}) do
    sizes[#sizes + 1] = n
  end
  T.eq(sizes, {2, 2, 1})
end)

T.test("DataLoader: shuffle with a generator equals PyTorch, epoch after epoch", function()
  for _, c in ipairs(fixtures.loader) do
    local g = torch.Generator()
    g:manual_seed(c.seed)
    local loader = data.DataLoader(data.TensorDataset(torch.arange(c.n)),
                                   {batch_size = c.batch_size, shuffle = true, generator = g,
                                    drop_last = c.drop_last})
    for e, want in ipairs(c.epochs) do
      local got = {}
      for x in loader do got[#got + 1] = x:tolist() end
      T.eq(#got, #want, "batches")
      for b = 1, #want do T.eq(got[b], want[b], string.format("seed %d epoch %d batch %d", c.seed, e, b)) end
    end
  end
end)

T.test("DataLoader: shuffle without a generator equals PyTorch after torch.manual_seed", function()
  for _, c in ipairs(fixtures.loader_global) do
    torch.manual_seed(c.seed)
    local loader = data.DataLoader(data.TensorDataset(torch.arange(c.n)),
                                   {batch_size = c.batch_size, shuffle = true})
    for e, want in ipairs(c.epochs) do
      local got = {}
      for x in loader do got[#got + 1] = x:tolist() end
      T.eq(#got, #want, "batches")
      for b = 1, #want do T.eq(got[b], want[b], string.format("seed %d epoch %d batch %d", c.seed, e, b)) end
    end
    T.eq(torch.randint(0, 1000, {3}):tolist(), c.after, "the global generator after two epochs")
  end
end)

T.test("DataLoader: errors", function()
  local ds = indexed(4)
  local s = data.DistributedSampler(ds, {num_replicas = 2, rank = 0})
  T.raises(function() data.DataLoader(ds, {sampler = s, shuffle = true}) end,
           "sampler option is mutually exclusive with shuffle")
  T.raises(function() data.DataLoader(ds, {batch_size = 0}) end, "batch_size must be an integer >= 1, got 0")
  T.raises(function() data.DataLoader(ds, {batch_size = 2.5}) end, "batch_size must be an integer >= 1")
  T.raises(function() data.DataLoader(ds, {batchsize = 2}) end, "did you mean 'batch_size'?")
  T.raises(function() data.DataLoader(ds, {sampler = 3}) end, "sampler must be a sampler")
  T.raises(function() data.DataLoader(nil) end, "must have a length")
  T.raises(function()
    for _ in data.DataLoader(ds, {sampler = {0, 9}}) do end
  end, "the sampler gave index 9, out of range for a dataset of size 4")
end)

T.test("DistributedSampler: defaults from the process group", function()
  T.raises(function() data.DistributedSampler(indexed(8)) end,
           "the process group is not initialised")
  dist.init_process_group{backend = "gloo"}
  local rank, world = dist.get_rank(), dist.get_world_size()
  local s = data.DistributedSampler(indexed(8), {shuffle = false})
  T.eq(s.rank, rank)
  T.eq(s.num_replicas, world)
  T.eq(#s, (8 + world - 1) // world)
  T.eq(s:indices()[1], rank % 8)
  -- every sample is seen once per epoch across the ranks (8 divides 1, 2 and 4)
  local mine = torch.zeros(8, {dtype = torch.int64})
  for i in s() do mine[i] = mine[i] + 1 end
  dist.all_reduce(mine)
  T.eq(mine:tolist(), {1, 1, 1, 1, 1, 1, 1, 1})
  dist.destroy_process_group()
end)

T.test("synthetic.regression: seeded, the tutorial's shapes, exactly affine without noise", function()
  local ds, x, y = data.synthetic.regression{n = 64, seed = 3}
  T.eq(#ds, 64)
  T.eq(tostring(x.shape), "torch.Size([64, 5])")
  T.eq(tostring(y.shape), "torch.Size([64, 5])")
  T.eq(tostring(x.dtype), "torch.float32")
  local _, x2, y2 = data.synthetic.regression{n = 64, seed = 3}
  T.is_true(x:equal(x2) and y:equal(y2), "the same seed gives the same data")
  local _, x3 = data.synthetic.regression{n = 64, seed = 4}
  T.is_true(not x:equal(x3), "another seed gives other data")
  -- making a dataset leaves torch's own random numbers alone
  torch.manual_seed(5)
  local a = torch.randn(3)
  torch.manual_seed(5)
  data.synthetic.regression{n = 16}
  T.is_true(torch.randn(3):equal(a), "the dataset moved torch's generator")
  -- noise = 0: a Linear(5, 5) fits it to float32 rounding
  local _, xe, ye = data.synthetic.regression{n = 64, noise = 0, seed = 1}
  torch.manual_seed(0)
  local lin = nn.Linear(5, 5)
  local opt = optim.Adam(lin:parameters(), {lr = 0.05})
  local loss
  for _ = 1, 400 do
    opt:zero_grad()
    loss = nn.MSELoss()(lin(xe), ye)
    loss:backward()
    opt:step()
  end
  T.is_true(loss:item() < 1e-4, "noise-free data is not affine: loss " .. loss:item())
  local _, xo, yo = data.synthetic.regression{n = 10, in_features = 3, out_features = 2}
  T.eq(tostring(xo.shape), "torch.Size([10, 3])")
  T.eq(tostring(yo.shape), "torch.Size([10, 2])")
  T.raises(function() data.synthetic.regression{n = 0} end, "n must be an integer >= 1, got 0")
  T.raises(function() data.synthetic.regression{noise = -1} end, "noise must be a number >= 0")
  T.raises(function() data.synthetic.regression{sed = 1} end, "did you mean 'seed'?")
  -- a huge size is refused at once (the API fuzz's seed 11 spent 3 minutes filling memory)
  T.raises(function() data.synthetic.regression{out_features = 1 << 62} end,
           "n x out_features (64 x 4611686018427387904) is more than 10000000 numbers")
  T.raises(function() data.synthetic.regression{n = 1 << 40, in_features = 1 << 40} end,
           "n x in_features")
end)

T.test("synthetic.spiral: arms, labels, radius, seed", function()
  local ds, x, y = data.synthetic.spiral{n = 101, classes = 3, seed = 2}
  T.eq(#ds, 101)
  T.eq(tostring(x.shape), "torch.Size([101, 2])")
  T.eq(tostring(y.dtype), "torch.int64")
  local counts = {0, 0, 0}
  for _, k in ipairs(y:tolist()) do counts[k + 1] = counts[k + 1] + 1 end
  T.eq(counts, {34, 34, 33})
  local r = (x * x):sum(1):sqrt()
  T.is_true(r:max():item() <= 1.0 + 1e-6, "a point lies outside the unit disc")
  local _, x2 = data.synthetic.spiral{n = 101, classes = 3, seed = 2}
  T.is_true(x:equal(x2), "the same seed gives the same points")
  local _, x3 = data.synthetic.spiral{n = 101, classes = 3, seed = 9}
  T.is_true(not x:equal(x3), "the noise depends on the seed")
  T.raises(function() data.synthetic.spiral{classes = 1} end, "classes must be an integer >= 2")
  T.raises(function() data.synthetic.spiral{n = 2, classes = 3} end, "n (2) must be at least classes (3)")
  T.raises(function() data.synthetic.spiral{n = math.maxinteger} end, "a synthetic set is for lessons")
end)

T.test("load_csv: numbers, header, dtype, and errors naming line and column", function()
  local base = os.tmpname()
  local function csv(name, text)
    local f = assert(io.open(base .. name, "wb"))
    f:write(text)
    f:close()
    return base .. name
  end
  local p = csv("ok.csv", "\239\187\191x, y ,label\r\n1,2.5,0\n\n-3e2, nan ,1\n4,inf,\"1\"\n")
  local t, names = data.load_csv(p)
  T.eq(names, {"x", "y", "label"})
  T.eq(tostring(t.shape), "torch.Size([3, 3])")
  T.eq(tostring(t.dtype), "torch.float32")
  T.eq(t[0]:tolist(), {1.0, 2.5, 0.0})
  T.eq(t[1][0]:item(), -300.0)
  T.is_true(t[1][1]:item() ~= t[1][1]:item(), "nan")
  T.eq(t[2][1]:item(), math.huge)
  local ds = data.TensorDataset(t:narrow(1, 0, 2), t:narrow(1, 2, 1))
  T.eq(#ds, 3)
  local i = data.load_csv(csv("int.csv", "1,2\n3,4\n"), {header = false, dtype = torch.int64})
  T.eq(tostring(i.dtype), "torch.int64")
  T.eq(i:tolist(), {{1, 2}, {3, 4}})
  T.eq(data.load_csv(csv("semi.csv", "a;b\n1;2\n"), {delimiter = ";"})[0]:tolist(), {1.0, 2.0})
  T.eq(tostring(data.load_csv(csv("empty.csv", "a,b\n")).shape), "torch.Size([0, 2])")
  T.raises(function() data.load_csv(csv("ragged.csv", "a,b,c\n1,2,3\n4,5\n")) end,
           "line 3 has 2 columns, but line 1 has 3")
  T.raises(function() data.load_csv(csv("word.csv", "a,b\n1,2\n3,four\n")) end,
           "line 3, column 2: \"four\" is not a number")
  T.raises(function() data.load_csv(csv("hole.csv", "1,,3\n"), {header = false}) end,
           "line 1, column 2: an empty field is not a number")
  T.raises(function() data.load_csv(csv("frac.csv", "1,2.5\n"), {header = false, dtype = torch.int64}) end,
           "line 1, column 2: 2.5 is not an integer (dtype int64)")
  T.raises(function() data.load_csv(base .. "missing.csv") end, "cannot open")
  T.raises(function() data.load_csv(p, {dtype = torch.bool}) end, "dtype must be torch.float32")
  T.raises(function() data.load_csv(p, {headers = false}) end, "did you mean 'header'?")
  os.execute("rm -f " .. T.shell_quote(base) .. "*")
end)

T.test("load_csv refuses a FIFO instead of waiting for a writer (API fuzz defect 5)", function()
  local base = os.tmpname()
  os.remove(base)
  if not os.execute("mkfifo " .. T.shell_quote(base .. ".csv") .. " 2>/dev/null") then
    print("(no mkfifo here: load_csv's FIFO check not run)")
    return
  end
  T.raises(function() data.load_csv(base .. ".csv") end,
           "load_csv: cannot read '" .. base .. ".csv' as CSV: it is not a regular file (a FIFO)")
  os.remove(base .. ".csv")
end)

T.done()
