-- collectives_lib.lua — what bench/collectives.lua (run by ddplab) and bench/overhead.lua
-- (run by bench_overhead) share: their options and the calls they time. Loaded with
-- dofile from the folder of the script that uses it.
--
-- Sizes are 4 B, 16 B, ... (powers of 4) from min_bytes to max_bytes, float32; bytes is
-- the tensor size for all_reduce and broadcast and the whole gathered output for
-- all_gather (nccl-tests' convention). A window is k back-to-back calls, k =
-- clamp(WINDOW_BYTES // bytes, 1, MAX_CALLS), after WARMUP calls per size.

local lib = {WARMUP = 2, WINDOW_BYTES = 8 * 1024 * 1024, MAX_CALLS = 10}

-- The options in argv (`--min-bytes B --max-bytes B --windows W --ops a,b`), over the
-- defaults given; `who` names the script in errors.
function lib.options(argv, defaults, who)
  local opts = {min_bytes = 4, max_bytes = 64 * 1024 * 1024,
                ops = "all_reduce,broadcast,all_gather,all_gather_into_tensor"}
  for k, v in pairs(defaults) do opts[k] = v end
  local names = {["--min-bytes"] = "min_bytes", ["--max-bytes"] = "max_bytes",
                 ["--windows"] = "windows", ["--ops"] = "ops"}
  local i = 1
  while argv and argv[i] do
    local key, v = names[argv[i]], argv[i + 1]
    if not key or not v then error(who .. ": unknown argument " .. tostring(argv[i])) end
    opts[key] = key == "ops" and v or math.tointeger(tonumber(v))
    i = i + 2
  end
  return opts
end

function lib.calls_per_window(bytes)
  return math.max(1, math.min(lib.MAX_CALLS, lib.WINDOW_BYTES // bytes))
end

-- The calls of `op` moving `bytes` on n ranks: {ddplab = function, raw = function} (raw
-- only where the global `raw` of bench_overhead exists: Gloo's allgather into one buffer
-- stands for both all_gather forms), or nil when the size does not split into whole
-- float32s per rank (all_gather).
function lib.calls(op, bytes, n)
  local have_raw = rawget(_G, "raw") ~= nil
  if op == "all_reduce" or op == "broadcast" then
    local t = torch.zeros(bytes // 4)
    if op == "all_reduce" then
      return {ddplab = function() dist.all_reduce(t) end,
              raw = have_raw and function() raw.all_reduce(t) end or nil}
    end
    return {ddplab = function() dist.broadcast(t, 0) end,
            raw = have_raw and function() raw.broadcast(t, 0) end or nil}
  elseif op == "all_gather" or op == "all_gather_into_tensor" then
    if bytes % (4 * n) ~= 0 then return nil end
    local count = bytes // (4 * n)
    local t, out = torch.zeros(count), torch.zeros(count * n)
    local raw_call = have_raw and function() raw.all_gather_into_tensor(out, t) end or nil
    if op == "all_gather_into_tensor" then
      return {ddplab = function() dist.all_gather_into_tensor(out, t) end, raw = raw_call}
    end
    local list = {}
    for r = 1, n do list[r] = torch.zeros(count) end
    return {ddplab = function() dist.all_gather(list, t) end, raw = raw_call}
  end
  error("unknown op " .. op)
end

-- Runs each(bytes) for the sizes of opts, in order.
function lib.each_size(opts, each)
  local bytes = 4
  while bytes <= opts.max_bytes do
    if bytes >= opts.min_bytes then each(bytes) end
    bytes = bytes * 4
  end
end

return lib
