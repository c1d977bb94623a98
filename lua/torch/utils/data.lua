-- torch/utils/data.lua — datasets, samplers and loaders as torch.utils.data has them: the
-- global `data`, also `torch.utils.data` and require("torch.utils.data").
--
--   ds = data.TensorDataset(x, y)            -- #ds rows; ds[i] = {x[i], y[i]}, i from 0
--   sampler = data.DistributedSampler(ds)   -- this rank's share of the indices
--   loader = data.DataLoader(ds, {batch_size = 32, sampler = sampler})
--   for epoch = 0, 9 do
--     sampler:set_epoch(epoch)
--     for x, y in loader do ... end          -- stacked batches
--   end
--
-- DistributedSampler follows torch/utils/data/distributed.py exactly: the index list is
-- 0..n-1, or with shuffle a torch.randperm from a torch.Generator seeded seed + epoch;
-- without drop_last it is padded to a multiple of the world size by repeating indices
-- from its start, with drop_last cut down to one; rank r then takes every
-- num_replicas-th index from position r. So every rank sees the same number of samples
-- and, for the same seed and epoch, the same indices as under PyTorch. Indices count
-- from 0, as PyTorch's; Lua lists handed back (sampler:indices()) are lists from 1 of
-- those 0-based indices. Datasets are anything with #ds and ds[i] (0-based); a
-- TensorDataset batches with one index_select per tensor instead of stacking rows.
local util = require "torch.util"
local raise, describe = util.raise, util.describe

local data = {}

-- ---- helpers ------------------------------------------------------------------------

local function is_int(v)
  return math.type(v) == "integer"
end

-- The number of samples in a dataset: #ds, or a tensor's first dimension.
local function length(ds, fn)
  if torch.is_tensor(ds) then
    if ds:dim() == 0 then raise(fn .. ": a 0-d tensor has no samples to index") end
    return ds:size(0)
  end
  local ok, n = pcall(function() return #ds end)
  if not ok or not is_int(n) then
    raise(string.format("%s: the dataset must have a length (#ds) and items ds[i], got %s",
                        fn, describe(ds)))
  end
  return n
end

local function check_bool(v, fn, name)
  if v ~= nil and type(v) ~= "boolean" then
    raise(string.format("%s: %s must be true or false, got %s", fn, name, describe(v)))
  end
end

local function check_count(v, fn, name, min)
  if not is_int(v) or v < min then
    raise(string.format("%s: %s must be an integer >= %d, got %s", fn, name, min,
                        is_int(v) and tostring(v) or describe(v)))
  end
end

-- ---- TensorDataset ------------------------------------------------------------------

local TensorDataset = {__name = "TensorDataset"}

-- ds[i] -> {t1[i], t2[i], ...}; other keys are methods and fields
TensorDataset.__index = function(ds, k)
  if type(k) == "number" then
    local n = rawget(ds, "_n")
    if not is_int(k) then raise(string.format("TensorDataset: index %s is not an integer", k)) end
    local i = k < 0 and k + n or k
    if i < 0 or i >= n then
      raise(string.format("TensorDataset: index %d is out of range for a dataset of size %d "
                          .. "(indices count from 0)", k, n))
    end
    local item = {}
    for j, t in ipairs(rawget(ds, "tensors")) do item[j] = t[i] end
    return item
  end
  return TensorDataset[k]
end

TensorDataset.__len = function(ds)
  return rawget(ds, "_n")
end

TensorDataset.__tostring = function(ds)
  return string.format("TensorDataset(%d samples, %d tensors)", ds._n, #ds.tensors)
end

-- The batch of samples `indices` (a Lua list of 0-based indices) as one index_select per
-- tensor: the same tensors as stacking ds[i] for each i, without the per-row copies.
function TensorDataset:_batch(indices)
  local n = self._n
  for _, i in ipairs(indices) do
    if not is_int(i) or i < 0 or i >= n then
      raise(string.format("DataLoader: the sampler gave index %s, out of range for a dataset "
                          .. "of size %d", tostring(i), n))
    end
  end
  local idx = torch.tensor(indices, {dtype = torch.int64})
  local out = {}
  for j, t in ipairs(self.tensors) do out[j] = t:index_select(0, idx) end
  return out
end

-- data.TensorDataset(t1, t2, ...): samples are the rows (dim 0) of every tensor.
function data.TensorDataset(...)
  local tensors = table.pack(...)
  if tensors.n == 0 then raise("TensorDataset: give it at least one tensor (x, or x and y)") end
  local n
  for j = 1, tensors.n do
    local t = tensors[j]
    if not torch.is_tensor(t) then
      raise(string.format("TensorDataset: argument %d is %s, not a tensor", j, describe(t)))
    end
    if t:dim() == 0 then
      raise(string.format("TensorDataset: tensor %d is 0-d; each sample is a row (dim 0)", j))
    end
    if n == nil then
      n = t:size(0)
    elseif t:size(0) ~= n then
      raise(string.format("TensorDataset: size mismatch between tensors: tensor 1 has %d "
                          .. "samples (dim 0) but tensor %d has %d", n, j, t:size(0)))
    end
  end
  tensors.n = nil
  return setmetatable({tensors = tensors, _n = n}, TensorDataset)
end

-- ---- DistributedSampler -------------------------------------------------------------

local DistributedSampler = {__name = "DistributedSampler"}
DistributedSampler.__index = DistributedSampler

-- ceil(a / b) for b > 0 and any integer a, as Python's math.ceil of the true quotient.
local function ceil_div(a, b)
  return -((-a) // b)
end

-- data.DistributedSampler(ds, {num_replicas, rank, shuffle = true, seed = 0,
-- drop_last = false}); num_replicas and rank default to the process group's.
function data.DistributedSampler(ds, opts)
  local fn = "DistributedSampler"
  util.check_options(opts, fn, {"num_replicas", "rank", "shuffle", "seed", "drop_last"})
  opts = opts or {}
  local n = length(ds, fn)
  local num_replicas, rank = opts.num_replicas, opts.rank
  if num_replicas == nil or rank == nil then
    if not dist.is_initialized() then
      raise(fn .. ": the process group is not initialised, so the number of replicas and this "
            .. "rank are unknown: call dist.init_process_group() first, or give both "
            .. "{num_replicas = ..., rank = ...}")
    end
    if num_replicas == nil then num_replicas = dist.get_world_size() end
    if rank == nil then rank = dist.get_rank() end
  end
  check_count(num_replicas, fn, "num_replicas", 1)
  if not is_int(rank) then raise(string.format("%s: rank must be an integer, got %s", fn, describe(rank))) end
  if rank >= num_replicas or rank < 0 then
    raise(string.format("%s: Invalid rank %d, rank should be in the interval [0, %d]", fn, rank,
                        num_replicas - 1))
  end
  check_bool(opts.shuffle, fn, "shuffle")
  check_bool(opts.drop_last, fn, "drop_last")
  local seed = opts.seed == nil and 0 or opts.seed
  if not is_int(seed) then raise(string.format("%s: seed must be an integer, got %s", fn, describe(seed))) end
  local drop_last = opts.drop_last == true
  local num_samples
  if drop_last and n % num_replicas ~= 0 then
    num_samples = ceil_div(n - num_replicas, num_replicas)
  else
    num_samples = ceil_div(n, num_replicas)
  end
  return setmetatable({
    dataset = ds, num_replicas = num_replicas, rank = rank, epoch = 0,
    drop_last = drop_last, shuffle = opts.shuffle ~= false, seed = seed,
    num_samples = num_samples, total_size = num_samples * num_replicas, _n = n,
  }, DistributedSampler)
end

-- sampler:set_epoch(e): the next pass shuffles with seed + e (call it every epoch, or
-- every epoch repeats the first one's order).
function DistributedSampler:set_epoch(epoch)
  if getmetatable(self) ~= DistributedSampler then
    util.dot_call_error("set_epoch", "sampler", "sampler", self, "epoch")
  end
  if not is_int(epoch) then
    raise(string.format("set_epoch: the epoch must be an integer, got %s", describe(epoch)))
  end
  self.epoch = epoch
end

-- The 0..n-1 permutation drawn as PyTorch draws it: torch.randperm(n) from a fresh
-- torch.Generator seeded `seed`.
local function randperm(n, seed)
  local g = torch.Generator()
  g:manual_seed(seed)
  return torch.randperm(n, {generator = g}):tolist()
end

-- sampler:indices() -> this rank's indices for the current epoch (a Lua list of 0-based
-- indices), as list(sampler) in PyTorch.
function DistributedSampler:indices()
  if getmetatable(self) ~= DistributedSampler then
    util.dot_call_error("indices", "sampler", "sampler", self)
  end
  local n = self._n
  local indices
  if self.shuffle then
    indices = randperm(n, self.seed + self.epoch)
  else
    indices = {}
    for i = 1, n do indices[i] = i - 1 end
  end
  local total = self.total_size
  if not self.drop_last then
    -- pad by repeating from the start (over and over when the padding exceeds n)
    local have = #indices
    for k = have + 1, total do indices[k] = indices[(k - have - 1) % have + 1] end
  else
    for k = #indices, total + 1, -1 do indices[k] = nil end
  end
  local mine = {}
  for k = self.rank + 1, total, self.num_replicas do mine[#mine + 1] = indices[k] end
  return mine
end

-- for i in sampler() do ... end
DistributedSampler.__call = function(self)
  local list, k = self:indices(), 0
  return function()
    k = k + 1
    return list[k]
  end
end

DistributedSampler.__len = function(self)
  return self.num_samples
end

DistributedSampler.__tostring = function(self)
  return string.format("DistributedSampler(rank %d of %d, %d samples, shuffle=%s, seed=%d, "
                       .. "epoch=%d, drop_last=%s)", self.rank, self.num_replicas,
                       self.num_samples, tostring(self.shuffle), self.seed, self.epoch,
                       tostring(self.drop_last))
end

-- ---- DataLoader ---------------------------------------------------------------------

local DataLoader = {__name = "DataLoader"}
DataLoader.__index = DataLoader

-- The indices a sampler gives for one pass: a DistributedSampler or any object with
-- :indices(), a callable returning an iterator, or a plain Lua list of indices.
local function sampler_indices(sampler)
  if type(sampler) == "table" and type(sampler.indices) == "function" then
    return sampler:indices()
  end
  local mt = getmetatable(sampler)
  if type(sampler) == "function" or (type(mt) == "table" and mt.__call) then
    local list = {}
    for i in sampler() do list[#list + 1] = i end
    return list
  end
  return sampler -- a list, checked at construction
end

-- torch.utils.data's default_collate: tensors are stacked, numbers become a tensor
-- (integers int64, floats float64, booleans bool), tables are collated per position or
-- per key.
local function collate(items)
  local first = items[1]
  if torch.is_tensor(first) then return torch.stack(items, 0) end
  local tf = type(first)
  if tf == "number" then
    local all_int = true
    for _, v in ipairs(items) do all_int = all_int and is_int(v) end
    return torch.tensor(items, {dtype = all_int and torch.int64 or torch.float64})
  end
  if tf == "boolean" then return torch.tensor(items, {dtype = torch.bool}) end
  if tf == "table" then
    local out = {}
    for k in pairs(first) do
      local column = {}
      for i, item in ipairs(items) do
        if type(item) ~= "table" or item[k] == nil then
          raise(string.format("DataLoader: sample %d of the batch has no entry [%s] that the "
                              .. "first sample has", i - 1, tostring(k)))
        end
        column[i] = item[k]
      end
      out[k] = collate(column)
    end
    return out
  end
  return items -- strings and other values: the list of them, as default_collate does
end

-- data.DataLoader(ds, {batch_size = 1, shuffle = false, sampler, drop_last = false,
-- generator, collate_fn}); `for x, y in loader do` walks one epoch of batches.
function data.DataLoader(ds, opts)
  local fn = "DataLoader"
  util.check_options(opts, fn, {"batch_size", "shuffle", "sampler", "drop_last", "generator",
                                "collate_fn"})
  opts = opts or {}
  local n = length(ds, fn)
  local batch_size = opts.batch_size == nil and 1 or opts.batch_size
  check_count(batch_size, fn, "batch_size", 1)
  check_bool(opts.shuffle, fn, "shuffle")
  check_bool(opts.drop_last, fn, "drop_last")
  if opts.sampler ~= nil and opts.shuffle then
    raise(fn .. ": sampler option is mutually exclusive with shuffle (the sampler chooses the "
          .. "order: give DistributedSampler(ds, {shuffle = true}) and call "
          .. "sampler:set_epoch(epoch) each epoch)")
  end
  local sampler = opts.sampler
  if sampler ~= nil then
    local mt = getmetatable(sampler)
    local ok = type(sampler) == "function" or (type(mt) == "table" and mt.__call ~= nil)
        or (type(sampler) == "table" and type(sampler.indices) == "function")
        or (type(sampler) == "table" and (#sampler > 0 or next(sampler) == nil))
    if not ok then
      raise(string.format("%s: sampler must be a sampler (data.DistributedSampler) or a list of "
                          .. "indices, got %s", fn, describe(sampler)))
    end
  end
  local g = opts.generator
  if g ~= nil and type(g) ~= "userdata" and type(g) ~= "table" then
    raise(string.format("%s: generator must be a torch.Generator, got %s", fn, describe(g)))
  end
  if opts.collate_fn ~= nil and type(opts.collate_fn) ~= "function" then
    raise(string.format("%s: collate_fn must be a function, got %s", fn, describe(opts.collate_fn)))
  end
  return setmetatable({
    dataset = ds, batch_size = batch_size, shuffle = opts.shuffle == true, sampler = sampler,
    drop_last = opts.drop_last == true, generator = opts.generator, collate_fn = opts.collate_fn,
    _n = n,
  }, DataLoader)
end

-- PyTorch's torch.empty((), dtype=torch.int64).random_(generator=g): one 64-bit word
-- modulo 2^63. randint over a range of exactly 2^63 draws one 64-bit word and takes it
-- modulo the range, so shifting the range back gives the same number.
local function random64(g)
  local lo = -(1 << 62)
  return torch.randint(lo, 1 << 62, {1}, {generator = g}):tolist()[1] - lo
end

-- The indices of one pass, before batching.
function DataLoader:_order()
  if self.sampler ~= nil then return sampler_indices(self.sampler) end
  local n = self._n
  if self.shuffle then
    -- as PyTorch's loader iterator: first one 64-bit draw (the base seed it gives worker
    -- processes), then RandomSampler's randperm, from the loader's generator; at the end
    -- of the pass RandomSampler draws one more (discarded) permutation (iter below). With
    -- no generator both draws come from the global one and the permutation from a fresh
    -- generator seeded by the second. So the same seed gives PyTorch's batches.
    random64(self.generator)
    if self.generator ~= nil then
      return torch.randperm(n, {generator = self.generator}):tolist(), true
    end
    local g = torch.Generator()
    g:manual_seed(random64(nil))
    return torch.randperm(n, {generator = g}):tolist()
  end
  local list = {}
  for i = 1, n do list[i] = i - 1 end
  return list
end

-- The batch of 0-based `indices`, collated: a list of values to hand to the loop.
function DataLoader:_fetch(indices)
  local ds = self.dataset
  if self.collate_fn == nil and getmetatable(ds) == TensorDataset then return ds:_batch(indices) end
  if self.collate_fn == nil and torch.is_tensor(ds) then
    return {ds:index_select(0, torch.tensor(indices, {dtype = torch.int64}))}
  end
  local items = {}
  for k, i in ipairs(indices) do items[k] = ds[i] end
  if self.collate_fn then
    local b = self.collate_fn(items)
    if type(b) == "table" and not torch.is_tensor(b) and getmetatable(b) == nil then return b end
    return {b}
  end
  local b = collate(items)
  -- a sample that is a list (x, y) gives the loop one value per position; anything else
  -- (a tensor, a table with named fields) is one value
  if type(b) == "table" and not torch.is_tensor(b) and type(items[1]) == "table" and #items[1] > 0 then
    return b
  end
  return {b}
end

-- loader:iter() -> an iterator over one epoch's batches (each a list of values)
function DataLoader:iter()
  if getmetatable(self) ~= DataLoader then util.dot_call_error("iter", "loader", "loader", self) end
  local order, seeded = self:_order()
  local bs, pos = self.batch_size, 1
  return function()
    local remaining = #order - pos + 1
    if remaining <= 0 or (self.drop_last and remaining < bs) then
      if seeded then -- RandomSampler's tail, randperm(n)[:num_samples % n], drawn once
        torch.randperm(self._n, {generator = self.generator})
        seeded = false
      end
      return nil
    end
    local indices = table.move(order, pos, math.min(pos + bs - 1, #order), 1, {})
    pos = pos + bs
    return self:_fetch(indices)
  end
end

-- `for x, y in loader do`: Lua calls the loader once per batch, with the previous
-- batch's first value; nil (the first call) starts a new pass.
DataLoader.__call = function(self, _, previous)
  if previous == nil or self._next == nil then self._next = self:iter() end
  local batch = self._next()
  if batch == nil then
    self._next = nil
    return nil
  end
  return table.unpack(batch, 1, #batch)
end

-- #loader: batches per epoch
DataLoader.__len = function(self)
  local n = self.sampler ~= nil and #sampler_indices(self.sampler) or self._n
  if self.sampler ~= nil and getmetatable(self.sampler) == DistributedSampler then
    n = self.sampler.num_samples
  end
  if self.drop_last then return n // self.batch_size end
  return ceil_div(n, self.batch_size)
end

DataLoader.__tostring = function(self)
  return string.format("DataLoader(%d batches of %d)", #self, self.batch_size)
end

-- ---- data sources (torch/utils/data_sources.lua) ---------------------------------------

local sources = require "torch.utils.data_sources"
data.synthetic = sources.synthetic
data.load_csv = sources.load_csv

return data
