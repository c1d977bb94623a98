-- bench_lib.lua — what the Lua sides of the benchmarks share (train_step.lua,
-- ddp/ddp_step.lua, gpu/gpu_bench.lua load it with dofile from their own folder's path):
-- the MLP they time and the median of their windows.
local lib = {}

-- Linear layers of the given sizes with a ReLU between each two.
function lib.mlp(sizes)
  local layers = {}
  for i = 1, #sizes - 1 do
    layers[#layers + 1] = nn.Linear(sizes[i], sizes[i + 1])
    if i < #sizes - 1 then layers[#layers + 1] = nn.ReLU() end
  end
  return nn.Sequential(table.unpack(layers))
end

-- The median of a list of numbers (sorts it).
function lib.median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

return lib
