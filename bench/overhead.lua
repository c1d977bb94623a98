-- overhead.lua — run by bench_overhead (bench/overhead.c): each collective through
-- ddplab's Lua API (dist.*) and through raw Gloo on the same connections (raw.*, defined
-- by bench_overhead), window by window, so that both sides see the same machine.
--
-- Schedule (bench/collectives_lib.lua): for each size WARMUP calls of each side, then
-- --windows pairs of windows, the side that goes first alternating; a window is k
-- back-to-back calls after a 1 ms pause and a barrier. Both all_gather forms are measured
-- against Gloo's allgather into one buffer.
--
-- run: bench_overhead -n N [--no-collective-check] bench/overhead.lua [--min-bytes B]
--      [--max-bytes B] [--windows W] [--ops ...]
-- Rank 0 prints, per op and size, a line "PAIR <op> <ranks> <bytes> <raw seconds> <ddplab
-- seconds>" for each pair of neighbouring windows, then "RESULT ..." with the same fields
-- for each side's fastest window.

local lib = dofile((arg[0]:match("(.*/)") or "./") .. "collectives_lib.lua")
local opts = lib.options(arg, {windows = 9}, "overhead.lua")
local rank, n = dist.get_rank(), dist.get_world_size()

-- Seconds per call of one window of k calls.
local function window(call, k)
  raw.pause()
  raw.barrier()
  local t0 = torch.time()
  for _ = 1, k do call() end
  return (torch.time() - t0) / k
end

local function sweep(op)
  lib.each_size(opts, function(bytes)
    local calls = lib.calls(op, bytes, n)
    if not calls then return end
    for _ = 1, lib.WARMUP do calls.ddplab(); calls.raw() end
    local k = lib.calls_per_window(bytes)
    local best_raw, best_ddp, pairs = math.huge, math.huge, {}
    for w = 1, opts.windows do
      local r, d
      if w % 2 == 1 then
        r = window(calls.raw, k); d = window(calls.ddplab, k)
      else
        d = window(calls.ddplab, k); r = window(calls.raw, k)
      end
      best_raw, best_ddp = math.min(best_raw, r), math.min(best_ddp, d)
      pairs[w] = string.format("PAIR %s %d %d %.9f %.9f", op, n, bytes, r, d)
    end
    if rank == 0 then
      print(table.concat(pairs, "\n"))
      print(string.format("RESULT %s %d %d %.9f %.9f", op, n, bytes, best_raw, best_ddp))
    end
    calls = nil
    collectgarbage() -- this size's tensors go before the next size's
  end)
end

for op in opts.ops:gmatch("[^,]+") do sweep(op) end
raw.barrier()
