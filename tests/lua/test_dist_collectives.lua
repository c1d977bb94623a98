-- ranks: 1 2 4
-- test_dist_collectives.lua — torch.distributed from Lua on 1, 2 and 4 ranks: init, every
-- collective against values computed by hand, dtypes and reduce ops, async work objects,
-- point to point, subgroups, and destroy + init again.
local T = require "support"

local f32, f64, i64 = torch.float32, torch.float64, torch.int64

T.test("before init: PyTorch's message", function()
  T.eq(dist.is_available(), true)
  T.eq(dist.is_initialized(), false)
  T.raises(function() dist.all_reduce(torch.zeros(2)) end,
           "Default process group has not been initialized, please make sure to call init_process_group.")
  T.raises(function() dist.get_rank() end, "Default process group has not been initialized")
end)

dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, n = dist.get_rank(), dist.get_world_size()

T.test("rank and world size come from torchrun's environment", function()
  T.eq(dist.is_initialized(), true)
  T.eq(rank, tonumber(os.getenv("RANK")))
  T.eq(n, tonumber(os.getenv("WORLD_SIZE")))
  T.eq(dist.get_backend(), "gloo")
  T.raises(function() dist.init_process_group{backend = "gloo"} end, "twice")
end)

-- element i (1-based) of rank r's tensor: (r + 1) * i
local function mine(dt)
  local v = {}
  for i = 1, 3 do v[i] = (rank + 1) * i end
  return torch.tensor(v, {dtype = dt})
end

local function expected(op, i)
  local acc = op == "PRODUCT" and 1 or (op == "MIN" and math.huge or (op == "MAX" and -math.huge or 0))
  for r = 0, n - 1 do
    local x = (r + 1) * i
    if op == "SUM" or op == "AVG" then acc = acc + x
    elseif op == "PRODUCT" then acc = acc * x
    elseif op == "MIN" then acc = math.min(acc, x)
    else acc = math.max(acc, x) end
  end
  if op == "AVG" then acc = acc / n end
  return acc
end

T.test("all_reduce: every op and dtype", function()
  for _, op in ipairs({"SUM", "AVG", "PRODUCT", "MIN", "MAX"}) do
    for _, dt in ipairs({f32, f64, i64}) do
      if not (op == "AVG" and dt == i64) then
        local t = mine(dt)
        dist.all_reduce(t, dist.ReduceOp[op])
        local want = {}
        for i = 1, 3 do want[i] = expected(op, i) end
        T.close(t:double(), want, 1e-6, op .. " " .. tostring(dt))
      end
    end
  end
end)

T.test("all_reduce: default SUM, options table, AVG of int64 refused before sending", function()
  local t = torch.ones(4)
  dist.all_reduce(t)
  T.eq(t:tolist(), {n, n, n, n})
  local u = torch.ones(2, {dtype = f64})
  dist.all_reduce(u, {op = dist.ReduceOp.MAX})
  T.eq(u:tolist(), {1, 1})
  T.raises(function() dist.all_reduce(torch.ones(2, {dtype = i64}), dist.ReduceOp.AVG) end,
           "AVG needs a float tensor")
end)

T.test("broadcast from the last rank, positional and {src=}", function()
  local t = torch.tensor({rank, rank * 10}, {dtype = i64})
  dist.broadcast(t, n - 1)
  T.eq(t:tolist(), {n - 1, (n - 1) * 10})
  local u = torch.full({2, 2}, rank, {dtype = f32})
  dist.broadcast(u, {src = 0})
  T.eq(u:sum():item(), 0)
end)

T.test("reduce SUM to rank 0", function()
  local t = torch.tensor({rank + 1.0}, {dtype = f64})
  dist.reduce(t, 0, dist.ReduceOp.SUM)
  if rank == 0 then T.eq(t:item(), n * (n + 1) / 2) end
end)

T.test("all_gather into a list and into one tensor", function()
  local list = {}
  for i = 1, n do list[i] = torch.zeros(2) end
  dist.all_gather(list, torch.tensor({rank, -rank}, {dtype = f32}))
  for i = 1, n do T.eq(list[i]:tolist(), {i - 1, -(i - 1)}) end
  local out = torch.zeros(n, 2)
  dist.all_gather_into_tensor(out, torch.tensor({rank, 1}, {dtype = f32}))
  for i = 0, n - 1 do T.eq(out[i]:tolist(), {i, 1}) end
  local too_many = {}
  for i = 1, n + 1 do too_many[i] = torch.zeros(2) end
  T.raises(function() dist.all_gather(too_many, torch.zeros(2)) end, "one tensor per rank")
end)

T.test("reduce_scatter: rank r gets the sum of everyone's r-th input", function()
  local inputs = {}
  for i = 1, n do inputs[i] = torch.tensor({rank * 100 + (i - 1)}, {dtype = i64}) end
  local out = torch.zeros(1, {dtype = i64})
  dist.reduce_scatter(out, inputs, dist.ReduceOp.SUM)
  T.eq(out:item(), 100 * n * (n - 1) / 2 + rank * n)
end)

T.test("gather to the last rank, scatter from rank 0", function()
  local dst = n - 1
  local list = nil
  if rank == dst then
    list = {}
    for i = 1, n do list[i] = torch.zeros(1) end
  end
  dist.gather(torch.tensor({rank * 2.0}), list, dst)
  if rank == dst then for i = 1, n do T.eq(list[i]:item(), (i - 1) * 2) end end
  local parts = nil
  if rank == 0 then
    parts = {}
    for i = 1, n do parts[i] = torch.tensor({(i - 1) * 3.0}) end
  end
  local got = torch.zeros(1)
  dist.scatter(got, parts, 0)
  T.eq(got:item(), rank * 3)
  if n > 1 and rank ~= 0 then
    T.raises(function() dist.scatter(got, {torch.zeros(1)}, 0) end, "must be nil")
  end
end)

T.test("barrier and async_op work objects", function()
  dist.barrier()
  local t = torch.ones(3)
  local work = dist.all_reduce(t, {async_op = true})
  T.eq(work:wait(), true)
  T.is_true(work:is_completed())
  T.eq(t:tolist(), {n, n, n})
  work = dist.broadcast(t, 0, {async_op = true}) -- the others complete before they return
  T.is_true(work:is_completed())
end)

if n > 1 then
  T.test("isend/irecv around a ring", function()
    local out = torch.tensor({rank, 7}, {dtype = f32})
    local inb = torch.zeros(2)
    local s = dist.isend(out, (rank + 1) % n)
    local r = dist.irecv(inb, (rank - 1) % n)
    s:wait()
    r:wait()
    T.is_true(r:is_completed())
    T.eq(inb:tolist(), {(rank - 1) % n, 7})
  end)

  T.test("send/recv: rank 0 sends, rank 1 receives", function()
    local t = torch.tensor({rank + 0.5}, {dtype = f64})
    if rank == 0 then dist.send(t, 1) end
    if rank == 1 then
      T.eq(dist.recv(t, 0), 0)
      T.eq(t:item(), 0.5)
    end
  end)

  T.test("an isend waited for after a collective, against a recv before it", function()
    -- as in PyTorch, the queued send goes out while its rank waits in the barrier
    local t = torch.full({2}, rank + 1.0)
    if rank == 0 then
      local w = dist.isend(t, 1)
      dist.barrier()
      w:wait()
    elseif rank == 1 then
      dist.recv(t, 0)
      dist.barrier()
      T.eq(t:tolist(), {1, 1})
    else
      dist.barrier()
    end
  end)

  T.test("mismatched calls raise the same story on every rank", function()
    local t = torch.ones(3)
    local err = T.raises(function()
      if rank % 2 == 0 then dist.all_reduce(t) else dist.broadcast(t, 0) end
    end, "called")
    T.is_true(err:find("all_reduce(float32[3], op=SUM)", 1, true), err)
    T.is_true(err:find("broadcast(float32[3], src=0)", 1, true), err)
    -- and the group still works
    dist.all_reduce(t)
    T.eq(t:tolist(), {n, n, n})
  end)
end

T.test("new_group: members reduce among themselves, the others get NON_GROUP_MEMBER", function()
  local g = dist.new_group({0})
  if rank == 0 then
    T.eq(g:size(), 1)
    local t = torch.ones(2)
    dist.all_reduce(t, {group = g})
    T.eq(t:tolist(), {1, 1})
  else
    T.is_true(g == dist.GroupMember.NON_GROUP_MEMBER)
    T.eq(dist.get_rank(g), -1)
    T.raises(function() dist.all_reduce(torch.ones(2), {group = g}) end, "not a member")
  end
end)

T.test("argument errors before anything is sent", function()
  local sd = {["fc1.weight"] = torch.ones(2, 2), ["fc1.bias"] = torch.ones(2)}
  T.raises(function() dist.broadcast(sd, 0) end, "a collective takes one tensor")
  local err = T.raises(function() dist.all_reduce(sd) end,
                       "for _, p in ipairs(model:parameters()) do dist.all_reduce(p.grad, dist.ReduceOp.AVG) end")
  -- it recommends only what works today
  T.is_true(not err:find("DistributedDataParallel", 1, true), err)
  T.is_true(not err:find("pairs(model:state_dict())", 1, true), err)
  T.raises(function() dist.all_reduce(nn.Linear(2, 2).weight.grad) end, "until loss:backward()")
  T.raises(function() dist.all_reduce(torch.ones(2, 3):t()) end, ":contiguous()")
  T.raises(function() dist.broadcast(torch.ones(2)) end, "pass src")
  T.raises(function() dist.broadcast(torch.ones(2), n) end, "is not a rank of the group")
  T.raises(function() dist.all_reduce(torch.ones(2), "MEDIAN") end, "unknown reduce op")
  -- everyone still agrees afterwards
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end)

T.test("a collective that writes into a tensor counts as an in-place change", function()
  local t = torch.ones(3)
  local v = t._version
  dist.all_reduce(t)
  T.eq(t._version, v + 1, "all_reduce writes t")
  local src = torch.ones(2)
  local outs = {}
  for i = 1, n do outs[i] = torch.zeros(2) end
  local vs, vo = src._version, outs[1]._version
  dist.all_gather(outs, src)
  T.eq(src._version, vs, "all_gather only reads its input")
  T.eq(outs[1]._version, vo + 1, "all_gather writes its outputs")
  -- a weight saved for backward, then overwritten by a broadcast: backward refuses
  local w = torch.ones(3, {requires_grad = true})
  local x = torch.ones(3)
  local loss = (w * x):sum()
  dist.broadcast(x, 0)
  T.raises(function() loss:backward() end, "modified by an inplace operation")
end)

T.test("destroy_process_group, then init again", function()
  dist.destroy_process_group()
  T.eq(dist.is_initialized(), false)
  T.raises(function() dist.barrier() end, "has not been initialized")
  dist.init_process_group{backend = "gloo"}
  local t = torch.ones(2)
  dist.all_reduce(t)
  T.eq(t:tolist(), {n, n})
end)

T.test("init_method tcp:// and file:// with rank and world_size", function()
  dist.destroy_process_group()
  local addr, port = os.getenv("MASTER_ADDR"), os.getenv("MASTER_PORT")
  dist.init_process_group{backend = "gloo", init_method = "tcp://" .. addr .. ":" .. port,
                          rank = rank, world_size = n}
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
  dist.destroy_process_group()
  local path = "/tmp/ddplab-test-rdv-" .. port
  dist.init_process_group{backend = "gloo", init_method = "file://" .. path, rank = rank,
                          world_size = n, timeout = 20}
  t = torch.ones(1) * (rank + 1)
  dist.all_reduce(t)
  T.eq(t:item(), n * (n + 1) / 2)
  dist.barrier()
  if rank == 0 then os.remove(path) end
  dist.destroy_process_group()
  dist.init_process_group{backend = "gloo"}
  T.raises(function() dist.init_process_group{init_method = "smtp://x"} end, "twice")
end)

-- What backend="nccl" says where it cannot run: each build and machine has its own words,
-- and the rank that cannot run it is named. A GPU machine runs tests/gpu instead.
T.test("nccl without CUDA, NCCL or a GPU", function()
  if torch.cuda.is_available() and dist.is_nccl_available() then return end
  local cuda_built = not select(2, pcall(torch.cuda.set_device, 0)):find("no CUDA support")
  local want
  if not cuda_built then
    want = "init_process_group: this build has no CUDA support"
  elseif not dist.is_nccl_available() then
    want = "init_process_group: this build has CUDA but no NCCL"
  else
    want = "nccl: no GPU visible to rank " .. dist.get_rank() .. ";"
  end
  dist.destroy_process_group()
  T.raises(function() dist.init_process_group{backend = "nccl"} end, want)
  T.eq(dist.is_initialized(), false)
  dist.init_process_group{backend = "gloo"}
  T.eq(dist.get_backend(), "gloo")
end)

dist.destroy_process_group()
T.done()
