-- collectives.lua — ddplab's side of bench/collectives.sh: collectives called through the
-- Lua API a learner uses (dist.all_reduce, dist.broadcast, dist.all_gather), timed with
-- the same schedule as the raw Gloo reference (bench/gloo_raw.cc), so that the two
-- differ only by what ddplab adds: the Lua binding, argument checks, the collective
-- fingerprint check (when on) and the process-group layer.
--
-- Schedule, the same as gloo_raw.cc: sizes 4 B, 16 B, ... (powers of 4) up to
-- --max-bytes, float32; for each size WARMUP calls, then --windows windows of k
-- back-to-back calls behind a barrier, k = clamp(WINDOW_BYTES // bytes, 1, MAX_CALLS);
-- the time of a call is the fastest window's (window time / k), on rank 0 (the fastest,
-- not the median: on a shared machine the noise only ever adds time).
-- bytes is the tensor size for all_reduce and broadcast, and the whole gathered output
-- for all_gather (nccl-tests' convention). all_gather is timed twice: the list form
-- (dist.all_gather(list, t), PyTorch's everyday call) and all_gather_into_tensor.
--
-- run: ddplab -n N [--no-collective-check] bench/collectives.lua [--min-bytes B] [--max-bytes B]
--      [--windows W] [--ops all_reduce,broadcast,all_gather,all_gather_into_tensor]
-- Rank 0 prints "RESULT <op> <ranks> <bytes> <seconds per call>" lines.

local WARMUP, WINDOW_BYTES, MAX_CALLS = 2, 8 * 1024 * 1024, 10

local opts = {min_bytes = 4, max_bytes = 64 * 1024 * 1024, windows = 5,
              ops = "all_reduce,broadcast,all_gather,all_gather_into_tensor"}
local i = 1
while arg and arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--min-bytes" and v then opts.min_bytes = math.tointeger(tonumber(v))
  elseif a == "--max-bytes" and v then opts.max_bytes = math.tointeger(tonumber(v))
  elseif a == "--windows" and v then opts.windows = math.tointeger(tonumber(v))
  elseif a == "--ops" and v then opts.ops = v
  else error("collectives.lua: unknown argument " .. tostring(a)) end
  i = i + 2
end

dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, n = dist.get_rank(), dist.get_world_size()

local function calls_per_window(bytes)
  return math.max(1, math.min(MAX_CALLS, WINDOW_BYTES // bytes))
end

-- A closure that makes one call of `op` moving `bytes`, or nil when the size does not
-- split into whole float32s per rank (all_gather).
local function make_call(op, bytes)
  if op == "all_reduce" then
    local t = torch.zeros(bytes // 4)
    return function() dist.all_reduce(t) end
  elseif op == "broadcast" then
    local t = torch.zeros(bytes // 4)
    return function() dist.broadcast(t, 0) end
  elseif op == "all_gather" or op == "all_gather_into_tensor" then
    if bytes % (4 * n) ~= 0 then return nil end
    local count = bytes // (4 * n)
    local t = torch.zeros(count)
    if op == "all_gather_into_tensor" then
      local out = torch.zeros(count * n)
      return function() dist.all_gather_into_tensor(out, t) end
    end
    local list = {}
    for r = 1, n do list[r] = torch.zeros(count) end
    return function() dist.all_gather(list, t) end
  end
  error("collectives.lua: unknown op " .. op)
end

local function sweep(op)
  local bytes = 4
  while bytes <= opts.max_bytes do
    local call = bytes >= opts.min_bytes and make_call(op, bytes)
    if call then
      for _ = 1, WARMUP do call() end
      local k, per_call = calls_per_window(bytes), {}
      for w = 1, opts.windows do
        dist.barrier()
        local t0 = torch.time()
        for _ = 1, k do call() end
        per_call[w] = (torch.time() - t0) / k
      end
      if rank == 0 then
        print(string.format("RESULT %s %d %d %.9f", op, n, bytes, math.min(table.unpack(per_call))))
      end
      call = nil
      collectgarbage() -- the big tensors of this size go before the next size's
    end
    bytes = bytes * 4
  end
end

for op in opts.ops:gmatch("[^,]+") do sweep(op) end
dist.barrier()
dist.destroy_process_group()
