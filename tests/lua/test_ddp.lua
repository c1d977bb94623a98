-- ranks: 1 2 4
-- test_ddp.lua — nn.DistributedDataParallel against the arithmetic it stands for: from the
-- same initial weights and data, N ranks x local batch b with the wrapper end with the
-- same weights (to float32 rounding) as one process with batch N*b, for SGD with momentum
-- and for Adam; several bucket sizes give the same weights; no_sync accumulation equals
-- one big batch; a comm hook sees each bucket once per step; an unused parameter makes the
-- next forward fail naming it (and find_unused_parameters=true trains); join with uneven
-- shards finishes and matches the arithmetic; construction checks and broadcasts.
-- Every rank computes the single-process reference itself, without collectives.
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, n = dist.get_rank(), dist.get_world_size()
local b = 8 -- local batch

-- The tutorial's model, or a deeper MLP, with weights from `seed` (the same on every rank
-- unless told otherwise).
local function make_model(seed, deep)
  torch.manual_seed(seed)
  if deep then
    return nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU(),
                         nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))
  end
  return nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
end

-- steps batches of N*b rows (the same on every rank).
local function make_data(steps)
  torch.manual_seed(1234)
  local xs, ys = {}, {}
  for s = 1, steps do xs[s], ys[s] = torch.randn(n * b, 5), torch.randn(n * b, 5) end
  return xs, ys
end

local function local_rows(t) return t:narrow(0, rank * b, b) end

local function make_opt(kind, params)
  if kind == "sgd" then return optim.SGD(params, {lr = 0.05, momentum = 0.9}) end
  return optim.Adam(params, {lr = 0.01})
end

-- One process with the whole batch.
local function reference(kind, steps, deep)
  local model = make_model(7, deep)
  local opt = make_opt(kind, model:parameters())
  local xs, ys = make_data(steps)
  for s = 1, steps do
    opt:zero_grad()
    nn.MSELoss()(model(xs[s]), ys[s]):backward()
    opt:step()
  end
  return model:parameters()
end

-- N ranks with the wrapper.
local function distributed(kind, steps, deep, ddp_opts, hook)
  local model = make_model(7, deep)
  local ddp = nn.DistributedDataParallel(model, ddp_opts)
  if hook then ddp:register_comm_hook(nil, hook) end
  local opt = make_opt(kind, ddp:parameters())
  local xs, ys = make_data(steps)
  for s = 1, steps do
    opt:zero_grad()
    nn.MSELoss()(ddp(local_rows(xs[s])), local_rows(ys[s])):backward()
    opt:step()
  end
  return model:parameters(), ddp
end

local function same_weights(got, want, tol, what)
  T.eq(#got, #want, what .. ": parameter count")
  for i = 1, #want do T.close(got[i], want[i], tol, what .. ": parameter " .. i) end
end

T.test("N ranks x b equals one process with N*b: SGD with momentum", function()
  same_weights(distributed("sgd", 5), reference("sgd", 5), 1e-5, "sgd")
end)

T.test("N ranks x b equals one process with N*b: Adam", function()
  same_weights(distributed("adam", 5), reference("adam", 5), 1e-5, "adam")
end)

T.test("the deeper MLP in several buckets, and in one, matches one process", function()
  local want = reference("adam", 4, true)
  local small, ddp = distributed("adam", 4, true, {bucket_cap_mb = 0.002})
  T.is_true(#ddp:buckets() >= 3, "small cap: several buckets, got " .. #ddp:buckets())
  local big, one = distributed("adam", 4, true, {bucket_cap_mb = 100})
  T.eq(#one:buckets(), 1)
  local default = distributed("adam", 4, true)
  -- Adam divides by sqrt(v): where a gradient is tiny, the rounding of a sum taken in
  -- another order (ranks, then rows) is magnified; 4 steps of a 4-layer MLP stay within 1e-4
  same_weights(small, want, 1e-4, "small buckets")
  -- the bucketing does not change the arithmetic: with 2 ranks a sum of two is exact,
  -- so the weights are identical; with 4 Gloo's ring may add in another order
  local tol = n <= 2 and 0 or 1e-6
  same_weights(small, big, tol, "small vs one bucket")
  same_weights(default, big, tol, "default vs one bucket")
end)

T.test("buckets: reverse order, the first capped at 1 MiB by default, rebuilt in ready order", function()
  torch.manual_seed(3)
  -- 4 layers of 512x512 floats (1 MiB each) and their biases
  local model = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 512), nn.Linear(512, 512))
  local ddp = nn.DistributedDataParallel(model)
  local bs = ddp:buckets()
  -- the last layer first; its weight alone reaches the 1 MiB of the first bucket
  T.eq(bs[1].params, {"2.bias", "2.weight"})
  T.eq(#bs, 2)
  T.eq(bs[2].params, {"1.bias", "1.weight", "0.bias", "0.weight"})
  local capped = nn.DistributedDataParallel(model, {bucket_cap_mb = 1})
  T.eq(capped:buckets()[1].params, {"2.bias", "2.weight"})
  T.eq(#capped:buckets(), 3, "every bucket capped at 1 MiB")
  local x = torch.randn(2, 512)
  ddp(x):sum():backward()
  T.is_true(not ddp._reducer:rebuilt())
  ddp(x):sum():backward() -- the second forward rebuilds, in the order grads were ready
  T.is_true(ddp._reducer:rebuilt())
  T.eq(ddp:buckets()[1].params[1]:sub(1, 2), "2.")
end)

T.test("gradient_as_bucket_view gives the same weights, .grad a view of the bucket", function()
  local want = reference("sgd", 3)
  local got, ddp = distributed("sgd", 3, false, {gradient_as_bucket_view = true})
  same_weights(got, want, 1e-5, "gradient_as_bucket_view")
  local buf = ddp._reducer:bucket_buffer(0)
  local g = ddp:parameters()[1].grad
  T.is_true(g ~= nil)
  buf:fill_(3)
  T.eq(g:sum():item(), 3 * g:numel(), "the gradient lives in the bucket")
end)

T.test("no_sync accumulation equals one big batch", function()
  local k = 4 -- micro-batches of b/k rows
  local model = make_model(7)
  local ddp = nn.DistributedDataParallel(model)
  local opt = make_opt("sgd", ddp:parameters())
  local xs, ys = make_data(1)
  local x, y = local_rows(xs[1]), local_rows(ys[1])
  local m = b // k
  opt:zero_grad()
  local function micro(i)
    local loss = nn.MSELoss()(ddp(x:narrow(0, i * m, m)), y:narrow(0, i * m, m)) * (1 / k)
    loss:backward()
  end
  ddp:no_sync(function() for i = 0, k - 2 do micro(i) end end)
  -- nothing was averaged yet: each rank holds its own gradient
  micro(k - 1)
  opt:step()
  same_weights(model:parameters(), reference("sgd", 1), 1e-5, "no_sync")
  -- the <close> form switches it off for a block too
  do
    local _ <close> = ddp:no_sync()
    T.eq(ddp.require_backward_grad_sync, false)
  end
  T.eq(ddp.require_backward_grad_sync, true)
end)

T.test("a comm hook sees each bucket once per step, and the default hook matches", function()
  local seen = {}
  local function hook(state, bucket)
    T.eq(state, nil)
    seen[bucket:index()] = (seen[bucket:index()] or 0) + 1
    T.eq(bucket:buffer():numel() > 0, true)
    return nn.DistributedDataParallel.hooks.allreduce_hook(state, bucket)
  end
  local got, ddp = distributed("adam", 3, true, {bucket_cap_mb = 0.002}, hook)
  local nb = #ddp:buckets()
  T.is_true(nb >= 3)
  for i = 0, nb - 1 do T.eq(seen[i], 3, "bucket " .. i .. " calls") end
  same_weights(got, reference("adam", 3, true), 1e-4, "allreduce_hook") -- see above
  T.raises(function() ddp:register_comm_hook(nil, hook) end, "can only be called once")
end)

T.test("a Lua hook's own arithmetic: bucket:parameters() and a tensor result", function()
  local calls = 0
  local function sum_only(_, bucket) -- all_reduce without dividing: gradients summed
    calls = calls + 1
    T.is_true(#bucket:parameters() > 0)
    local buf = bucket:buffer()
    dist.all_reduce(buf)
    return buf
  end
  local model = make_model(7)
  local ddp = nn.DistributedDataParallel(model)
  ddp:register_comm_hook(nil, sum_only)
  local xs, ys = make_data(1)
  nn.MSELoss()(ddp(local_rows(xs[1])), local_rows(ys[1])):backward()
  local ref = make_model(7)
  nn.MSELoss()(ref(xs[1]), ys[1]):backward()
  T.eq(calls, #ddp:buckets())
  T.close(model:parameters()[1].grad, ref:parameters()[1].grad * n, 1e-5)
end)

-- A model with a layer its forward never uses.
local Partial = nn.Module:extend("Partial")
function Partial:__init()
  self.used = nn.Linear(5, 5)
  self.extra = nn.Linear(5, 5)
end
function Partial:forward(x) return self.used(x) end

T.test("an unused parameter fails the next forward, naming it", function()
  torch.manual_seed(1)
  local ddp = nn.DistributedDataParallel(Partial())
  local x = torch.randn(4, 5)
  ddp(x):sum():backward()
  local err = T.raises(function() ddp(x) end, "Expected to have finished reduction in the prior iteration")
  T.is_true(err:find("Parameters which did not receive grad for rank " .. rank ..
                     ": extra.bias, extra.weight", 1, true), err)
  T.is_true(err:find("Parameter indices which did not receive grad for rank " .. rank .. ": 2 3", 1, true), err)
  T.is_true(err:find("find_unused_parameters=True", 1, true), err)
end)

T.test("find_unused_parameters=true trains a model with an unused layer", function()
  torch.manual_seed(1)
  local model = Partial()
  local ddp = nn.DistributedDataParallel(model, {find_unused_parameters = true})
  torch.manual_seed(1)
  local ref = Partial()
  local xs, ys = make_data(3)
  local opt, ropt = make_opt("sgd", ddp:parameters()), make_opt("sgd", ref:parameters())
  for s = 1, 3 do
    opt:zero_grad()
    ropt:zero_grad()
    nn.MSELoss()(ddp(local_rows(xs[s])), local_rows(ys[s])):backward()
    nn.MSELoss()(ref(xs[s]), ys[s]):backward()
    opt:step()
    ropt:step()
  end
  same_weights(model:parameters(), ref:parameters(), 1e-5, "find_unused")
  T.eq(model.extra.weight.grad, nil, "a parameter no rank used keeps its .grad (nil)")
end)

T.test("join: uneven shards finish and match the arithmetic", function()
  -- rank r has r + 1 batches; at step s the ranks with data average into n
  local steps_of = function(r) return r + 1 end
  local xs, ys = make_data(n)
  local model = make_model(7)
  local ddp = nn.DistributedDataParallel(model)
  local opt = optim.SGD(ddp:parameters(), {lr = 0.1})
  ddp:join(function()
    for s = 1, steps_of(rank) do
      opt:zero_grad()
      nn.MSELoss()(ddp(local_rows(xs[s])), local_rows(ys[s])):backward()
      opt:step()
    end
  end)
  -- the arithmetic: one model, the gradients of the ranks still training summed / n
  local ref = make_model(7)
  local rp = ref:parameters()
  for s = 1, steps_of(n - 1) do
    local sum = {}
    for r = 0, n - 1 do
      if s <= steps_of(r) then
        for _, p in ipairs(rp) do p.grad = nil end
        local x, y = xs[s]:narrow(0, r * b, b), ys[s]:narrow(0, r * b, b)
        nn.MSELoss()(ref(x), y):backward()
        for i, p in ipairs(rp) do sum[i] = sum[i] and sum[i] + p.grad or p.grad:clone() end
      end
    end
    torch.no_grad(function()
      for i, p in ipairs(rp) do p:sub_(sum[i] * (0.1 / n)) end
    end)
  end
  same_weights(model:parameters(), rp, 1e-5, "join")
end)

T.test("construction: broadcast from rank 0, module, state_dict prefix, options", function()
  local model = make_model(100 + rank) -- different weights on every rank
  local w0 = make_model(100):parameters()
  local ddp = nn.DistributedDataParallel(model)
  same_weights(model:parameters(), w0, 0, "rank 0's weights everywhere")
  T.is_true(ddp.module == model)
  local keys = {}
  for k in pairs(ddp:state_dict()) do keys[#keys + 1] = k end
  T.eq(keys, {"module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"})
  local sd = nn.utils.consume_prefix_in_state_dict_if_present(ddp:state_dict(), "module.")
  keys = {}
  for k in pairs(sd) do keys[#keys + 1] = k end
  T.eq(keys, {"0.weight", "0.bias", "2.weight", "2.bias"})
  make_model(5):load_state_dict(sd)
  T.raises(function() nn.DistributedDataParallel(model, {bucket_cap = 1}) end,
           "unknown option 'bucket_cap' (did you mean 'bucket_cap_mb'?)")
  T.raises(function() nn.DistributedDataParallel(model, {device_ids = {0}}) end, "device_ids")
  T.raises(function() nn.DistributedDataParallel(model, {bucket_cap_mb = -1}) end, "positive")
  T.raises(function() ddp:join(function() end, {divide_by_initial = true}) end, "unknown option")
  T.raises(function() ddp:summary({widht = 3}) end, "unknown option")
end)

if n > 1 then
  T.test("construction: a different parameter count fails on every rank", function()
    local model = rank == 1 and nn.Sequential(nn.Linear(5, 10), nn.Linear(10, 5), nn.Linear(5, 5))
                  or nn.Sequential(nn.Linear(5, 10), nn.Linear(10, 5))
    local err = T.raises(function() nn.DistributedDataParallel(model) end,
                         "DDP expects same model across all ranks, but Rank " .. rank)
    local want = rank == 1 and "while rank 0 has inconsistent 4 params" or
                 "while rank 1 has inconsistent 6 params"
    T.is_true(err:find(want, 1, true), err)
  end)

  T.test("construction: a different shape fails, naming the rank and the parameter", function()
    local model = nn.Sequential(nn.Linear(5, 10), nn.Linear(10, rank == 1 and 6 or 5))
    local err = T.raises(function() nn.DistributedDataParallel(model) end, "params[2]")
    if rank == 1 then
      T.is_true(err:find("[1]: params[2] in this process with sizes [6, 10] appears not to match " ..
                         "sizes of the same param in process 0. (params[2] is '1.weight')", 1, true), err)
    else
      T.is_true(err:find("rank 1's params[2] ('1.weight')", 1, true), err)
    end
  end)
end

if n == 4 then
  T.test("process_group: two pairs of ranks, each a DDP of its own", function()
    local g01, g23 = dist.new_group({0, 1}), dist.new_group({2, 3})
    local mine = rank < 2 and g01 or g23
    local first = rank < 2 and 0 or 2 -- the pair's rank 0
    local model = make_model(70 + first) -- what the pair's first rank broadcasts
    local ddp = nn.DistributedDataParallel(make_model(70 + rank), {process_group = mine})
    same_weights(ddp.module:parameters(), model:parameters(), 0, "the pair's first rank's weights")
    local opt = make_opt("sgd", ddp:parameters())
    local xs, ys = make_data(2)
    for s = 1, 2 do -- the pair splits rows [first*b, (first+2)*b) of every batch
      opt:zero_grad()
      nn.MSELoss()(ddp(local_rows(xs[s])), local_rows(ys[s])):backward()
      opt:step()
    end
    local ropt = make_opt("sgd", model:parameters())
    for s = 1, 2 do
      ropt:zero_grad()
      nn.MSELoss()(model(xs[s]:narrow(0, first * b, 2 * b)), ys[s]:narrow(0, first * b, 2 * b)):backward()
      ropt:step()
    end
    same_weights(ddp.module:parameters(), model:parameters(), 1e-5, "pair")
  end)
end

-- Every rank's copy of t equals rank 0's.
local function same_as_rank0(t, what)
  local ref = t:clone()
  dist.broadcast(ref, 0)
  T.is_true(torch.equal(ref, t), what .. " differs from rank 0's on rank " .. rank)
end

T.test("BatchNorm1d buffers: broadcast from rank 0 before a forward (broadcast_buffers)", function()
  torch.manual_seed(5)
  local model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5))
  local ddp = nn.DistributedDataParallel(model)
  torch.manual_seed(50 + rank) -- each rank its own data: local statistics differ
  for _ = 1, 2 do ddp(torch.randn(b, 5)):sum():backward() end
  model:eval()
  torch.no_grad(function() ddp(torch.randn(b, 5)) end) -- rank 0's buffers, not updated in eval
  same_as_rank0(model[1].running_mean, "running_mean")
  same_as_rank0(model[1].running_var, "running_var")
end)

T.test("SyncBatchNorm buffers agree after a forward and equal one process's", function()
  torch.manual_seed(5)
  local model = nn.SyncBatchNorm.convert_sync_batchnorm(
    nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5)))
  local ddp = nn.DistributedDataParallel(model)
  torch.manual_seed(5)
  local ref = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5))
  local xs = make_data(1)
  ddp(local_rows(xs[1])):sum():backward()
  ref(xs[1]):sum():backward()
  same_as_rank0(model[1].running_mean, "running_mean")
  T.close(model[1].running_mean, ref[1].running_mean, 1e-5)
  T.close(model[1].running_var, ref[1].running_var, 1e-5)
  T.close(model[0].weight.grad, ref[0].weight.grad * (1 / n), 1e-5) -- sum loss: mean over ranks
end)

T.test("the summary prints the buckets and the last step", function()
  local _, ddp = distributed("adam", 2, true, {bucket_cap_mb = 0.002})
  local text = ddp:summary({print = false})
  T.is_true(text:find("bucket 0: ", 1, true), text)
  T.is_true(text:find("6.weight", 1, true), text)
  T.is_true(text:find("all_reduce 0", 1, true), text)
  T.is_true(text:find("loss+backward", 1, true), text)
end)

if rank == 0 and n == 2 then
  T.test(":show ddp puts every rank's summary side by side", function()
    local out = T.run_ddplab("-n 2 -i", table.concat({
      'dist.init_process_group{backend = "gloo"}',
      "ddp = nn.DistributedDataParallel(nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5)))",
      "for i = 1, 2 do ddp(torch.randn(8, 5)):sum():backward() end",
      ":show ddp",
    }, "\n") .. "\n", {"COLUMNS=200"})
    T.has(out, "DDP: rank 0 of 2, 4 parameters in 1 bucket")
    T.has(out, "DDP: rank 1 of 2, 4 parameters in 1 bucket")
    T.has(out, "all_reduce 0")
    T.is_true(out:find("DDP: rank 0 of 2[^\n]+DDP: rank 1 of 2"), "side by side:\n" .. out)
  end)
end

T.done()
