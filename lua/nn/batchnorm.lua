-- nn/batchnorm.lua — nn.BatchNorm1d and nn.SyncBatchNorm, with
-- nn.SyncBatchNorm.convert_sync_batchnorm(model), as PyTorch has them. nn.lua hands its
-- table in: require("nn.batchnorm")(nn).
--
-- Both normalise over F.batch_norm (src/nn/batchnorm.c, PyTorch's CPU arithmetic). The
-- running statistics are buffers under PyTorch's state_dict names (running_mean,
-- running_var, num_batches_tracked); model:train() / model:eval() switch between batch
-- and running statistics. SyncBatchNorm takes its batch statistics over every rank of
-- its process group: the op calls back into Lua for dist.all_reduce (forward: counts and
-- sums, then centered squared sums; backward: the gradient sums), so N ranks with local
-- batch b normalise as one process with batch N * b.
local torch = require "torch"
local util = require "torch.util"
local raise = util.raise

return function(nn)
  local F = nn.functional

  -- The constructor both share: (num_features, {eps, momentum, affine,
  -- track_running_stats, dtype}) plus what `extra` (SyncBatchNorm's process_group) adds.
  local function init(self, name, num_features, opts, extra)
    if math.type(num_features) ~= "integer" or num_features <= 0 then
      raise(string.format("%s: num_features must be a positive integer (the C of an (N, C) "
                          .. "or (N, C, L) input), got %s", name, util.describe(num_features)))
    end
    if opts ~= nil and type(opts) ~= "table" then
      raise(string.format("%s: options go in a table, e.g. nn.%s(%d, {momentum = 0.1}); got %s",
                          name, name, num_features, util.describe(opts)))
    end
    opts = opts or {}
    local known = {"eps", "momentum", "affine", "track_running_stats", "dtype"}
    for _, k in ipairs(extra or {}) do known[#known + 1] = k end
    util.check_options(opts, name, known)
    self.num_features = num_features
    self.eps = opts.eps or 1e-5
    self.momentum = opts.momentum or 0.1
    self.affine = opts.affine ~= false
    self.track_running_stats = opts.track_running_stats ~= false
    local dt = opts.dtype or torch.float32
    if self.affine then
      self.weight = nn.Parameter(torch.ones(num_features, {dtype = dt}))
      self.bias = nn.Parameter(torch.zeros(num_features, {dtype = dt}))
    else
      self:register_parameter("weight", nil)
      self:register_parameter("bias", nil)
    end
    if self.track_running_stats then
      self:register_buffer("running_mean", torch.zeros(num_features, {dtype = dt}))
      self:register_buffer("running_var", torch.ones(num_features, {dtype = dt}))
      self:register_buffer("num_batches_tracked", torch.tensor(0))
    end
    return opts
  end

  -- PyTorch's _BatchNorm.forward: counts the batch, then batch statistics in training
  -- (or without running ones), running statistics in evaluation. `norm` is F.batch_norm
  -- or the synced one.
  local function forward(self, x, norm)
    if self.training and self.track_running_stats then
      self.num_batches_tracked:add_(1)
    end
    local bn_training = self.training or self.running_mean == nil
    local use_running = not self.training or self.track_running_stats
    return norm(x, use_running and self.running_mean or nil, use_running and self.running_var or nil,
                self.weight, self.bias, bn_training, self.momentum, self.eps)
  end

  local function extra_repr(self)
    return string.format("%d, eps=%g, momentum=%g, affine=%s, track_running_stats=%s",
                         self.num_features, self.eps, self.momentum,
                         self.affine and "True" or "False",
                         self.track_running_stats and "True" or "False")
  end

  local BatchNorm1d = nn.Module:extend("BatchNorm1d")
  nn.BatchNorm1d = BatchNorm1d

  -- nn.BatchNorm1d(num_features, {eps=1e-5, momentum=0.1, affine=true,
  -- track_running_stats=true, dtype=torch.float32})
  function BatchNorm1d:__init(num_features, opts)
    init(self, "BatchNorm1d", num_features, opts)
  end

  function BatchNorm1d:forward(x)
    nn._need_instance(self, BatchNorm1d, "forward", "bn", "x")
    if not torch.is_tensor(x) then
      raise("BatchNorm1d: forward expects a tensor, got " .. util.describe(x)
            .. " (call it as model(x), or model:forward(x) with a colon)")
    end
    if x:dim() ~= 2 and x:dim() ~= 3 then
      raise(string.format("BatchNorm1d: expected 2D or 3D input (got %dD input)", x:dim()))
    end
    return forward(self, x, F.batch_norm)
  end
  function BatchNorm1d:extra_repr()
    nn._need_instance(self, BatchNorm1d, "extra_repr", "bn")
    return extra_repr(self)
  end

  local SyncBatchNorm = nn.Module:extend("SyncBatchNorm")
  nn.SyncBatchNorm = SyncBatchNorm

  -- nn.SyncBatchNorm(num_features, {eps, momentum, affine, track_running_stats, dtype,
  -- process_group}): the default group when process_group is absent.
  function SyncBatchNorm:__init(num_features, opts)
    opts = init(self, "SyncBatchNorm", num_features, opts, {"process_group"})
    self.process_group = opts.process_group
  end

  function SyncBatchNorm:forward(x)
    nn._need_instance(self, SyncBatchNorm, "forward", "bn", "x")
    if not torch.is_tensor(x) then
      raise("SyncBatchNorm: forward expects a tensor, got " .. util.describe(x)
            .. " (call it as model(x), or model:forward(x) with a colon)")
    end
    if x:dim() < 2 then
      raise(string.format("SyncBatchNorm: expected at least 2D input (got %dD input)", x:dim()))
    end
    if x:dim() > 3 then
      raise(string.format("SyncBatchNorm: ddplab normalises (N, C) and (N, C, L) inputs; got %dD "
                          .. "input", x:dim()))
    end
    -- as PyTorch: the sums go over the group only in training with an initialised group
    if not (self.training and dist.is_initialized()) then
      return forward(self, x, F.batch_norm)
    end
    local group = self.process_group
    local function sum(t)
      if group then dist.all_reduce(t, dist.ReduceOp.SUM, group) else dist.all_reduce(t) end
    end
    return forward(self, x, function(...)
      local args = table.pack(...)
      return F._sync_batch_norm(args[1], args[2], args[3], args[4], args[5], args[6], args[7],
                                args[8], sum)
    end)
  end
  function SyncBatchNorm:extra_repr()
    nn._need_instance(self, SyncBatchNorm, "extra_repr", "bn")
    return extra_repr(self)
  end

  -- nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group?): every BatchNorm1d
  -- inside module (module itself included) replaced by a SyncBatchNorm that shares its
  -- parameters and buffers and its train/eval mode; returns the converted module.
  function SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    if not nn.is_module(module) then
      raise("convert_sync_batchnorm: expected a module, got " .. util.describe(module)
            .. " (call it as nn.SyncBatchNorm.convert_sync_batchnorm(model), with a dot)")
    end
    local out = module
    if module.__name == "BatchNorm1d" then
      out = SyncBatchNorm(module.num_features, {eps = module.eps, momentum = module.momentum,
                                                affine = module.affine,
                                                track_running_stats = module.track_running_stats,
                                                process_group = process_group})
      if module.affine then
        out.weight, out.bias = module.weight, module.bias
      end
      if module.track_running_stats then
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
      end
      out.training = module.training
    end
    for _, pair in ipairs(module:named_children()) do
      local name, child = pair[1], pair[2]
      local converted = SyncBatchNorm.convert_sync_batchnorm(child, process_group)
      if converted ~= child then out[name] = converted end
    end
    return out
  end
end
