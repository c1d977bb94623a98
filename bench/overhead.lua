-- overhead.lua — run by bench_overhead (bench/overhead.c): each collective through
-- ddplab's Lua API (dist.*) and through raw Gloo on the same connections (raw.*, defined
-- by bench_overhead), window by window, so that both sides see the same machine.
--
-- Schedule: sizes 4 B, 16 B, ... (powers of 4) from --min-bytes to --max-bytes, float32;
-- for each size WARMUP calls of each side, then --windows pairs of windows, the side that
-- goes first alternating; a window is k back-to-back calls after a 1 ms pause and a
-- barrier, k =
-- clamp(WINDOW_BYTES // bytes, 1, MAX_CALLS). A side's time per call is its fastest
-- window's (window time / k). bytes is the tensor size for all_reduce and broadcast and
-- the whole gathered output for all_gather (nccl-tests' convention). Both all_gather
-- forms are measured against Gloo's allgather into one buffer.
-- Rank 0 prints, per op and size, a line "PAIR <op> <ranks> <bytes> <raw seconds> <ddplab
-- seconds>" for each pair of neighbouring windows, then "RESULT ..." with the same fields
-- for each side's fastest window.

local WARMUP, WINDOW_BYTES, MAX_CALLS = 2, 8 * 1024 * 1024, 10

local opts = {min_bytes = 4, max_bytes = 64 * 1024 * 1024, windows = 9,
              ops = "all_reduce,broadcast,all_gather,all_gather_into_tensor"}
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--min-bytes" and v then opts.min_bytes = math.tointeger(tonumber(v))
  elseif a == "--max-bytes" and v then opts.max_bytes = math.tointeger(tonumber(v))
  elseif a == "--windows" and v then opts.windows = math.tointeger(tonumber(v))
  elseif a == "--ops" and v then opts.ops = v
  else error("overhead.lua: unknown argument " .. tostring(a)) end
  i = i + 2
end

local rank, n = dist.get_rank(), dist.get_world_size()

-- The two calls of `op` moving `bytes` (ddplab's, raw Gloo's), or nil when the size does
-- not split into whole float32s per rank (all_gather).
local function make_calls(op, bytes)
  if op == "all_reduce" then
    local t = torch.zeros(bytes // 4)
    return function() dist.all_reduce(t) end, function() raw.all_reduce(t) end
  elseif op == "broadcast" then
    local t = torch.zeros(bytes // 4)
    return function() dist.broadcast(t, 0) end, function() raw.broadcast(t, 0) end
  elseif op == "all_gather" or op == "all_gather_into_tensor" then
    if bytes % (4 * n) ~= 0 then return nil end
    local count = bytes // (4 * n)
    local t, out = torch.zeros(count), torch.zeros(count * n)
    local raw_call = function() raw.all_gather_into_tensor(out, t) end
    if op == "all_gather_into_tensor" then
      return function() dist.all_gather_into_tensor(out, t) end, raw_call
    end
    local list = {}
    for r = 1, n do list[r] = torch.zeros(count) end
    return function() dist.all_gather(list, t) end, raw_call
  end
  error("overhead.lua: unknown op " .. op)
end

-- Seconds per call of one window of k calls.
local function window(call, k)
  raw.pause()
  raw.barrier()
  local t0 = torch.time()
  for _ = 1, k do call() end
  return (torch.time() - t0) / k
end

local function sweep(op)
  local bytes = 4
  while bytes <= opts.max_bytes do
    local ddp, rawc
    if bytes >= opts.min_bytes then ddp, rawc = make_calls(op, bytes) end
    if ddp then
      for _ = 1, WARMUP do ddp(); rawc() end
      local k = math.max(1, math.min(MAX_CALLS, WINDOW_BYTES // bytes))
      local best_raw, best_ddp, pairs = math.huge, math.huge, {}
      for w = 1, opts.windows do
        local r, d
        if w % 2 == 1 then
          r = window(rawc, k); d = window(ddp, k)
        else
          d = window(ddp, k); r = window(rawc, k)
        end
        best_raw, best_ddp = math.min(best_raw, r), math.min(best_ddp, d)
        pairs[w] = string.format("PAIR %s %d %d %.9f %.9f", op, n, bytes, r, d)
      end
      if rank == 0 then
        print(table.concat(pairs, "\n"))
        print(string.format("RESULT %s %d %d %.9f %.9f", op, n, bytes, best_raw, best_ddp))
      end
      ddp, rawc = nil, nil
      collectgarbage() -- this size's tensors go before the next size's
    end
    bytes = bytes * 4
  end
end

for op in opts.ops:gmatch("[^,]+") do sweep(op) end
raw.barrier()
