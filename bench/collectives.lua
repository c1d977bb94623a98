-- collectives.lua — ddplab's side of bench/collectives.sh: collectives called through the
-- Lua API a learner uses (dist.all_reduce, dist.broadcast, dist.all_gather), timed with
-- the same schedule as the raw Gloo reference (bench/gloo_raw.cc), so that the two
-- differ only by what ddplab adds: the Lua binding, argument checks, the collective
-- fingerprint check (when on) and the process-group layer.
--
-- Schedule (bench/collectives_lib.lua, the same as gloo_raw.cc): for each size WARMUP
-- calls, then --windows windows of k back-to-back calls behind a barrier; the time of a
-- call is the fastest window's (window time / k), on rank 0 (the fastest, not the
-- median: on a shared machine the noise only ever adds time). all_gather is timed twice:
-- the list form (dist.all_gather(list, t), PyTorch's everyday call) and
-- all_gather_into_tensor.
--
-- run: ddplab -n N [--no-collective-check] bench/collectives.lua [--min-bytes B]
--      [--max-bytes B] [--windows W] [--ops all_reduce,broadcast,all_gather,...]
-- Rank 0 prints "RESULT <op> <ranks> <bytes> <seconds per call>" lines.

local lib = dofile((arg[0]:match("(.*/)") or "./") .. "collectives_lib.lua")
local opts = lib.options(arg, {windows = 5}, "collectives.lua")

dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, n = dist.get_rank(), dist.get_world_size()

local function sweep(op)
  lib.each_size(opts, function(bytes)
    local calls = lib.calls(op, bytes, n)
    if not calls then return end
    local call = calls.ddplab
    for _ = 1, lib.WARMUP do call() end
    local k, best = lib.calls_per_window(bytes), math.huge
    for _ = 1, opts.windows do
      dist.barrier()
      local t0 = torch.time()
      for _ = 1, k do call() end
      best = math.min(best, (torch.time() - t0) / k)
    end
    if rank == 0 then print(string.format("RESULT %s %d %d %.9f", op, n, bytes, best)) end
    calls, call = nil, nil
    collectgarbage() -- the big tensors of this size go before the next size's
  end)
end

for op in opts.ops:gmatch("[^,]+") do sweep(op) end
dist.barrier()
dist.destroy_process_group()
