-- nn/ddp.lua — nn.DistributedDataParallel, as PyTorch's: the Module front (checks across
-- ranks, the broadcast from rank 0, forward, no_sync, comm hooks, join, the summary) over
-- the C reducer (src/dist/reducer.c, bound in src/lua/l_ddp.c), which packs gradients into
-- buckets and all-reduces each one while backward goes on. Also
-- nn.utils.consume_prefix_in_state_dict_if_present. Installed by nn.lua: require
-- "nn.ddp"(nn).
local torch = require "torch"
local dist = require "torch.distributed"
local util = require "torch.util"
local core = require "ddp.reducer_core"
local raise = util.raise

local MiB = 1024 * 1024

return function(nn)
  local DDP = nn.Module:extend("DistributedDataParallel")

  -- Every public method starts here: self must be a DistributedDataParallel (ddp.summary()
  -- with a dot passes none).
  local function need_ddp(self, method, args)
    nn._need_instance(self, DDP, method, "ddp", args)
  end
  nn.DistributedDataParallel = DDP
  nn.parallel = nn.parallel or {}
  nn.parallel.DistributedDataParallel = DDP

  local options = {"device_ids", "output_device", "broadcast_buffers", "bucket_cap_mb",
                   "find_unused_parameters", "gradient_as_bucket_view", "static_graph",
                   "process_group", "dim"}

  -- "[5, 10]" as PyTorch prints sizes in its messages.
  local function sizes_str(t)
    local s = {}
    for i, v in ipairs(t.shape) do s[i] = tostring(v) end
    return "[" .. table.concat(s, ", ") .. "]"
  end

  -- A new int64 tensor of the values in a list.
  local function int64(v) return torch.tensor(v, {dtype = torch.int64}) end

  -- PyTorch's verify_params_across_processes: the count first, then every shape against
  -- rank 0's. Every rank learns about every mismatch, so all of them raise (PyTorch's words
  -- on the rank that differs) instead of some going on to hang in the first all_reduce.
  local function verify_across_ranks(self, names, params)
    local group, me, world = self.process_group, self._rank, self._world
    local counts = {}
    for r = 1, world do counts[r] = int64({0}) end
    dist.all_gather(counts, int64({#params}), group)
    for r = 0, world - 1 do
      local c = counts[r + 1]:item()
      if c ~= #params then
        raise(string.format("DDP expects same model across all ranks, but Rank %d has %d params, " ..
                            "while rank %d has inconsistent %d params.", me, #params, r, c))
      end
    end
    -- rank 0's shapes, one row per parameter: ndim, then up to 8 sizes
    local width = 9
    local shapes = torch.zeros(#params * width, {dtype = torch.int64})
    if self._group_rank == 0 then
      local rows = {}
      for i, p in ipairs(params) do
        local row = {p:dim()}
        for d = 1, width - 1 do row[d + 1] = p.shape[d] or 0 end
        for d = 1, width do rows[(i - 1) * width + d] = row[d] end
      end
      shapes = int64(rows)
    end
    dist.broadcast(shapes, self._src, group)
    local bad = -1
    for i, p in ipairs(params) do
      local base = (i - 1) * width
      local same = shapes[base]:item() == p:dim()
      for d = 1, p:dim() do same = same and shapes[base + d]:item() == p.shape[d] end
      if not same then bad = i - 1 break end
    end
    local flags = {}
    for r = 1, world do flags[r] = int64({0}) end
    dist.all_gather(flags, int64({bad}), group)
    if bad >= 0 then
      raise(string.format("[%d]: params[%d] in this process with sizes %s appears not to match " ..
                          "sizes of the same param in process 0. (params[%d] is '%s')", me, bad,
                          sizes_str(params[bad + 1]), bad, names[bad + 1]))
    end
    for r = 0, world - 1 do
      local b = flags[r + 1]:item()
      if b >= 0 then
        raise(string.format("DistributedDataParallel: rank %d's params[%d] ('%s') does not match " ..
                            "the sizes of the same param in process 0 (rank %d raised: \"[%d]: " ..
                            "params[%d] in this process ... appears not to match sizes of the " ..
                            "same param in process 0.\"); every rank must build the same model",
                            r, b, names[b + 1], r, r, b))
      end
    end
  end

  -- Broadcasts every parameter and buffer from the group's first rank (rank 0).
  local function sync_module_states(self, src)
    torch.no_grad(function()
      for _, p in ipairs(self.module:parameters()) do dist.broadcast(p, src, self.process_group) end
      for _, b in ipairs(self.module:buffers()) do dist.broadcast(b, src, self.process_group) end
    end)
  end

  -- A device given as a number, a name or a torch.device: its index (nil when it names
  -- no GPU).
  local function device_index(d)
    if math.type(d) == "integer" then return d end
    if type(d) == "string" then
      local ok, dev = pcall(torch.device, d)
      return ok and dev.type == "cuda" and dev.index or nil
    end
    if type(d) == "userdata" and d.type == "cuda" then return d.index end
  end

  -- device_ids and output_device as PyTorch takes them: left out for a CPU module; for a
  -- module on one GPU, nothing or that GPU (device_ids a list of exactly it).
  local function check_devices(module, opts)
    local ids, out = opts.device_ids, opts.output_device
    if ids == nil and out == nil then return end
    local first = module:parameters()[1]
    if not (first and first.is_cuda) then
      raise(string.format("DistributedDataParallel device_ids and output_device arguments only " ..
                          "work with single-device/multiple-device GPU modules or CPU modules, but " ..
                          "got device_ids %s, output_device %s, and module parameters {device(type='cpu')}. " ..
                          "(Leave them out for a model on the CPU.)",
                          util.describe(ids), util.describe(out)))
    end
    local index = first.device.index
    local ok_ids = ids == nil or (type(ids) == "table" and #ids == 1 and device_index(ids[1]) == index)
    if not ok_ids then
      raise(string.format("DistributedDataParallel: device_ids %s do not name the module's GPU " ..
                          "cuda:%d (a module on one GPU takes device_ids={%d}, or leave it out)",
                          util.describe(ids), index, index))
    end
    if out ~= nil and device_index(out) ~= index then
      raise(string.format("DistributedDataParallel: output_device %s is not the module's GPU " ..
                          "cuda:%d", util.describe(out), index))
    end
  end

  function DDP:__init(module, opts)
    util.check_options(opts, "DistributedDataParallel", options)
    opts = opts or {}
    if not nn.is_module(module) then
      raise("DistributedDataParallel: expected a Module to wrap, got " .. util.describe(module))
    end
    check_devices(module, opts)
    if opts.dim ~= nil and opts.dim ~= 0 then raise("DistributedDataParallel: only dim=0 is supported") end
    if not dist.is_initialized() then
      raise("Default process group has not been initialized, please make sure to call " ..
            "init_process_group.")
    end
    local cap_mb = opts.bucket_cap_mb
    if cap_mb ~= nil and (type(cap_mb) ~= "number" or cap_mb <= 0) then
      raise("DistributedDataParallel: bucket_cap_mb must be a positive number of MiB, got " ..
            util.describe(cap_mb))
    end
    for _, k in ipairs({"broadcast_buffers", "find_unused_parameters", "gradient_as_bucket_view",
                        "static_graph"}) do
      if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
        raise("DistributedDataParallel: " .. k .. " must be true or false, got " .. util.describe(opts[k]))
      end
    end
    self.module = module
    rawset(self, "process_group", opts.process_group)
    rawset(self, "broadcast_buffers", opts.broadcast_buffers ~= false)
    rawset(self, "find_unused_parameters", opts.find_unused_parameters == true)
    rawset(self, "gradient_as_bucket_view", opts.gradient_as_bucket_view == true)
    rawset(self, "static_graph", opts.static_graph == true)
    rawset(self, "bucket_bytes_cap", math.floor((cap_mb or 25) * MiB))
    rawset(self, "require_backward_grad_sync", true)
    rawset(self, "require_forward_param_sync", true)
    local group = opts.process_group
    rawset(self, "_rank", dist.get_rank())
    rawset(self, "_world", dist.get_world_size(group))
    rawset(self, "_group_rank", dist.get_rank(group))
    -- the global rank of the group's rank 0
    local src = 0
    if group ~= nil then
      local t = int64({self._group_rank == 0 and self._rank or 0})
      dist.all_reduce(t, dist.ReduceOp.MAX, group)
      src = t:item()
    end
    rawset(self, "_src", src)

    local names, params = {}, {}
    for _, np in ipairs(module:named_parameters()) do
      if np[2].requires_grad then
        names[#names + 1], params[#params + 1] = np[1], np[2]
      end
    end
    if #params == 0 then
      raise("DistributedDataParallel is not needed when a module doesn't have any parameter that " ..
            "requires a gradient.")
    end
    verify_across_ranks(self, names, params)
    sync_module_states(self, src)
    rawset(self, "_names", names)
    rawset(self, "_params", params)
    local cap = self.bucket_bytes_cap
    rawset(self, "_reducer", core.new(params, names, {
      first_cap = cap_mb == nil and MiB or cap,
      cap = cap,
      gradient_as_bucket_view = self.gradient_as_bucket_view,
      find_unused_parameters = self.find_unused_parameters,
    }, group))
    rawset(self, "_steps", {}) -- the last step's times, for summary()
  end

  -- Is this rank inside ddp:join() and still has data?
  local function join_notify(self)
    if self._joining then
      dist.all_reduce(torch.ones(1), self.process_group) -- "one rank still has data"
    end
  end

  local function sync_buffers(self)
    if not self.broadcast_buffers or not self.require_forward_param_sync then return end
    local bufs = self.module:buffers()
    if #bufs == 0 then return end
    torch.no_grad(function()
      for _, b in ipairs(bufs) do dist.broadcast(b, self._src, self.process_group) end
    end)
  end

  function DDP:forward(...)
    local r = type(self) == "table" and rawget(self, "_reducer")
    if not r then
      raise("forward: call it as ddp(x), or ddp:forward(x) with a colon (in Lua, ddp.forward(x) " ..
            "passes no module)")
    end
    local t0 = core.now()
    local last = self._steps
    local grad = torch.is_grad_enabled()
    -- the picture of the step that ended: taken before this forward resets the reducer
    local snap = grad and self.require_backward_grad_sync and last.forward and not r:armed()
                 and self:_snapshot(last.forward, t0)
    join_notify(self)
    if grad and self.require_backward_grad_sync then r:check_finished() end
    if grad then
      if r:rebuild() then rawset(self, "_rebuilt_at", (self._iterations or 0) + 1) end
    end
    sync_buffers(self)
    local out = table.pack(self.module(...))
    if grad and self.require_backward_grad_sync then
      rawset(self, "require_forward_param_sync", true)
      r:prepare(self.find_unused_parameters and not self.static_graph and out or nil)
      rawset(self, "_iterations", (self._iterations or 0) + 1)
      if snap then rawset(self, "_last", snap) end
      rawset(self, "_steps", {forward = {t0, core.now()}})
    else
      rawset(self, "require_forward_param_sync", false)
    end
    return table.unpack(out, 1, out.n)
  end

  -- ddp:no_sync(fn): runs fn with gradient synchronisation off (gradients accumulate
  -- locally; the next synchronised backward reduces the sum). Without fn it returns a
  -- guard for `local _ <close> = ddp:no_sync()`.
  function DDP:no_sync(fn)
    need_ddp(self, "no_sync", "fn")
    local old = self.require_backward_grad_sync
    rawset(self, "require_backward_grad_sync", false)
    local function restore() rawset(self, "require_backward_grad_sync", old) end
    if fn == nil then
      return setmetatable({}, {__close = restore})
    end
    if type(fn) ~= "function" then raise("no_sync: expected a function, got " .. util.describe(fn)) end
    local res = table.pack(pcall(fn))
    restore()
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end

  -- ---- comm hooks ---------------------------------------------------------------------

  local Bucket = {}
  Bucket.__index = Bucket
  Bucket.__name = "GradBucket"
  function Bucket:buffer() return self._reducer:bucket_buffer(self._i) end
  function Bucket:index() return self._i end
  function Bucket:is_last() return self._i == self._reducer:bucket_count() - 1 end
  function Bucket:parameters()
    local out = {}
    for k, i in ipairs(self._reducer:bucket_params(self._i)) do out[k] = self._params[i + 1] end
    return out
  end
  function Bucket:gradients()
    local out, buf, off = {}, self:buffer(), 0
    for k, p in ipairs(self:parameters()) do
      local n = p:numel()
      out[k] = buf:narrow(0, off, n):view(p.shape)
      off = off + n
    end
    return out
  end
  Bucket.__tostring = function(b)
    return string.format("GradBucket(index=%d, parameters=%d, numel=%d)", b._i, #b:parameters(),
                         b:buffer():numel())
  end

  -- The built-in hooks, as torch.distributed.algorithms.ddp_comm_hooks.default_hooks.
  DDP.hooks = {}
  -- allreduce_hook(group, bucket): what DDP does without a hook: divide by the world size,
  -- all-reduce SUM, asynchronously.
  function DDP.hooks.allreduce_hook(group, bucket)
    if getmetatable(bucket) ~= Bucket then
      raise("allreduce_hook: the second argument is the bucket DDP passes to a comm hook, got " ..
            util.describe(bucket) .. " (register it: ddp:register_comm_hook(nil, " ..
            "nn.DistributedDataParallel.hooks.allreduce_hook))")
    end
    local buf = bucket:buffer()
    buf:div_(dist.get_world_size(group))
    return dist.all_reduce(buf, {group = group, async_op = true})
  end

  -- Waits for a hook's result: a work (its :wait()), or a tensor (copied into the bucket).
  local function settle(result, bucket)
    if torch.is_tensor(result) then
      local buf = bucket:buffer()
      if result ~= buf then buf:copy_(result) end
      return
    end
    if (type(result) == "userdata" or type(result) == "table") and result.wait then
      local v = result:wait()
      if torch.is_tensor(v) then settle(v, bucket) end
      return
    end
    raise("comm hook: must return a work (e.g. dist.all_reduce(buf, {async_op = true})) or a " ..
          "tensor, got " .. util.describe(result))
  end

  -- register_comm_hook(state, hook): hook(state, bucket) runs for every bucket once its
  -- gradients are in (undivided: the hook divides), and returns a work or a tensor.
  function DDP:register_comm_hook(state, hook)
    need_ddp(self, "register_comm_hook", "state, hook")
    if type(hook) ~= "function" then
      raise("register_comm_hook: the hook must be a function(state, bucket), got " .. util.describe(hook))
    end
    if self._comm_hook then
      raise("register_comm_hook or register_builtin_comm_hook can only be called once.")
    end
    if (self._iterations or 0) > 0 then
      raise("register_comm_hook: communication hook can only be registered before training " ..
            "starts (before the first forward)")
    end
    rawset(self, "_comm_hook", hook)
    local r, pending = self._reducer, {}
    local function launcher()
      while true do
        local b = r:take_launch()
        if not b then break end
        local bucket = setmetatable({_i = b, _reducer = r, _params = self._params}, Bucket)
        pending[#pending + 1] = {hook(state, bucket), bucket}
      end
      if r:all_launched() then
        local list = pending
        pending = {}
        for _, pb in ipairs(list) do settle(pb[1], pb[2]) end
        r:finalize()
      end
    end
    r:set_external(launcher)
  end

  -- ---- join (uneven inputs) -------------------------------------------------------------

  -- ddp:join(fn, {divide_by_initial_world_size = true, enable = true}): runs fn (this
  -- rank's training loop); once it returns, this rank has run out of data and shadows the
  -- others' steps (their join all_reduce, buffers, and every bucket's all_reduce, with
  -- zeros) until every rank is done, as torch.distributed.algorithms.Join with DDP. Then
  -- the parameters and buffers of a rank that joined last are broadcast to all, since the
  -- ranks that joined early stopped stepping.
  function DDP:join(fn, opts)
    need_ddp(self, "join", "fn")
    util.check_options(opts, "join", {"divide_by_initial_world_size", "enable",
                                      "throw_on_early_termination"})
    opts = opts or {}
    if type(fn) ~= "function" then raise("join: expected a function (the training loop), got " .. util.describe(fn)) end
    if opts.divide_by_initial_world_size == false then
      raise("join: divide_by_initial_world_size=false is not supported (gradients are divided " ..
            "by the initial world size)")
    end
    if opts.throw_on_early_termination then
      raise("join: throw_on_early_termination=true is not supported")
    end
    if opts.enable == false then return fn() end
    rawset(self, "_joining", true)
    local res = table.pack(pcall(fn))
    rawset(self, "_joining", false)
    if not res[1] then error(res[2], 0) end
    local group, r = self.process_group, self._reducer
    local first, last_joiner = true, false
    while true do
      local t = torch.zeros(1)
      dist.all_reduce(t, group) -- 0 from every joined rank, 1 from each still training
      if first then last_joiner = t:item() == 0 end
      first = false
      if t:item() == 0 then break end
      -- shadow one step of the others: their forward's collectives, then backward's
      if r:rebuild() then rawset(self, "_rebuilt_at", (self._iterations or 0) + 1) end
      sync_buffers(self)
      if self._comm_hook then
        r:zero_buckets()
        local works = {}
        for b = 0, r:bucket_count() - 1 do
          local bucket = setmetatable({_i = b, _reducer = r, _params = self._params}, Bucket)
          works[#works + 1] = {self._comm_hook(nil, bucket), bucket}
        end
        for _, wb in ipairs(works) do settle(wb[1], wb[2]) end
      else
        r:shadow_backward()
      end
    end
    -- the authoritative rank: the highest that joined last
    local who = int64({last_joiner and self._rank or -1})
    dist.all_reduce(who, dist.ReduceOp.MAX, group)
    sync_module_states(self, who:item())
    return table.unpack(res, 2, res.n)
  end

  -- ---- state dict, repr ---------------------------------------------------------------

  -- PyTorch's repr, then a compact summary (buckets, the last step), so that `print(ddp)`
  -- shows every rank's buckets and timeline too.
  function DDP:__repr()
    need_ddp(self, "__repr", "")
    local inner = tostring(self.module):gsub("\n", "\n  ")
    return "DistributedDataParallel(\n  (module): " .. inner .. "\n)\n" ..
           self:summary({print = false, width = 20, compact = true})
  end

  -- What the REPL's `:show ddp` shows on each rank (lua/torch/show.lua): the compact summary.
  function DDP:__show()
    need_ddp(self, "__show", "")
    return self:summary({print = false, width = 20, compact = true})
  end

  -- ---- the summary: buckets and the last step's timeline -------------------------------

  -- What the last synchronised step looked like (times in ms from its forward's start).
  function DDP:_snapshot(fwd, next_forward)
    local r = self._reducer
    local t0 = fwd[1]
    local ms = function(t) return t and t > 0 and (t - t0) * 1000 or nil end
    local snap = {forward = {0, ms(fwd[2])}, buckets = {}}
    local fa, fz = r:finalize_times()
    if fz >= t0 then snap.backward_end = ms(fz) end
    for b = 0, r:bucket_count() - 1 do
      local ready, s, e = r:bucket_times(b)
      snap.buckets[b + 1] = {ready = ms(ready), start = ms(s), finish = ms(e)}
    end
    if next_forward then snap.next_forward = ms(next_forward) end
    return snap
  end

  -- The buckets as a table: {index, params = {names}, numel, bytes}.
  function DDP:buckets()
    need_ddp(self, "buckets", "")
    local r, out = self._reducer, {}
    for b = 0, r:bucket_count() - 1 do
      local names, numel = {}, 0
      for k, i in ipairs(r:bucket_params(b)) do
        names[k] = self._names[i + 1]
        numel = numel + self._params[i + 1]:numel()
      end
      local buf = r:bucket_buffer(b)
      out[#out + 1] = {index = b, params = names, numel = numel,
                       bytes = numel * (buf.dtype == torch.float64 and 8 or 4)}
    end
    return out
  end

  -- The picture of the last complete step (nil before the second synchronised forward
  -- or... when the step that just ended is wanted: finalize has run, so it is complete).
  function DDP:timeline()
    need_ddp(self, "timeline", "")
    local cur = self._steps
    if cur.forward and not self._reducer:armed() then
      local fa, fz = self._reducer:finalize_times()
      if fz >= cur.forward[1] then return self:_snapshot(cur.forward, nil) end
    end
    return self._last
  end

  local function bar(width, total, spans)
    local line = {}
    for i = 1, width do line[i] = " " end
    for _, s in ipairs(spans) do
      local a, z, ch = s[1], s[2], s[3]
      if a and z then
        local i0 = math.floor(a / total * (width - 1)) + 1
        local i1 = math.max(i0, math.floor(z / total * (width - 1)) + 1)
        for i = i0, math.min(i1, width) do line[i] = ch end
      end
    end
    return table.concat(line)
  end

  -- ddp:summary(): prints the buckets (parameters, bytes) and the last step as a
  -- timeline: forward, loss and backward, each bucket's all-reduce from the moment its
  -- last gradient was ready (.) through the backend call (=), so overlap shows.
  function DDP:summary(opts)
    need_ddp(self, "summary", "opts")
    util.check_options(opts, "summary", {"width", "print", "compact"})
    opts = opts or {}
    local width = opts.width or 50
    local lines = {}
    local function add(s) lines[#lines + 1] = s end
    local bs = self:buckets()
    add(string.format("%s: rank %d of %d, %d parameters in %d bucket%s (cap %.4g MiB%s)%s",
                      opts.compact and "DDP" or "DistributedDataParallel",
                      self._rank, self._world, #self._params, #bs, #bs == 1 and "" or "s",
                      self.bucket_bytes_cap / MiB,
                      self._reducer:rebuilt() and ", rebuilt in gradient-ready order" or "",
                      self.find_unused_parameters and ", find_unused_parameters" or ""))
    local compact = opts.compact
    for _, b in ipairs(bs) do
      add(string.format("  bucket %d: %d params, %d elements, %s%s", b.index, #b.params, b.numel,
                        b.bytes >= MiB and string.format("%.2f MiB", b.bytes / MiB)
                          or b.bytes >= 1024 and string.format("%.1f KiB", b.bytes / 1024)
                          or (b.bytes .. " B"),
                        compact and "" or "  " .. table.concat(b.params, ", ")))
    end
    local tl = self:timeline()
    if not tl then
      add("  no step yet: run a forward and backward pass, then summary() shows its timeline")
    else
      local total = tl.backward_end or tl.forward[2] or 1
      for _, b in ipairs(tl.buckets) do total = math.max(total, b.finish or 0) end
      if tl.next_forward then total = math.max(total, tl.next_forward) end
      if total <= 0 then total = 1 end
      add(string.format("  last step (ms from its forward's start; %.3f ms in all):", total))
      add(string.format("  %-14s|%s| %7.3f - %7.3f", "forward", bar(width, total, {{0, tl.forward[2], "#"}}),
                        0, tl.forward[2] or 0))
      if tl.backward_end then
        add(string.format("  %-14s|%s| %7.3f - %7.3f", "loss+backward",
                          bar(width, total, {{tl.forward[2], tl.backward_end, "#"}}),
                          tl.forward[2] or 0, tl.backward_end))
      end
      for i, b in ipairs(tl.buckets) do
        add(string.format("  %-14s|%s| %s", "all_reduce " .. (i - 1),
                          bar(width, total, {{b.ready, b.start or b.finish, "."},
                                             {b.start, b.finish, "="}}),
                          b.start and string.format("%7.3f - %7.3f (ready %.3f)", b.start, b.finish, b.ready)
                            or b.ready and string.format("ready %.3f", b.ready) or "not launched"))
      end
      if tl.next_forward and tl.backward_end then
        add(string.format("  %-14s|%s| %7.3f - %7.3f", "step+next",
                          bar(width, total, {{tl.backward_end, tl.next_forward, "~"}}),
                          tl.backward_end, tl.next_forward))
      end
      if not compact then
        add("  (# computing   . gradients ready, waiting for the link   = all-reduce running   " ..
            "~ optimizer step and next batch)")
      end
    end
    local text = table.concat(lines, "\n")
    if opts.print ~= false then print(text) end
    return text
  end

  -- ---- nn.utils ---------------------------------------------------------------------------

  nn.utils = nn.utils or {}
  -- consume_prefix_in_state_dict_if_present(sd, prefix): strips prefix from every key that
  -- has it, in place, keeping the order (a DDP state dict's "module." goes away, so it
  -- loads into the bare model).
  function nn.utils.consume_prefix_in_state_dict_if_present(sd, prefix)
    if type(sd) ~= "table" or nn.is_module(sd) then
      raise("consume_prefix_in_state_dict_if_present: expected a state dict (model:state_dict()), got " ..
            util.describe(sd))
    end
    if type(prefix) ~= "string" then
      raise("consume_prefix_in_state_dict_if_present: the prefix must be a string, got " ..
            util.describe(prefix))
    end
    local pairs_in_order = {}
    for k, v in pairs(sd) do pairs_in_order[#pairs_in_order + 1] = {k, v} end
    for _, kv in ipairs(pairs_in_order) do sd[kv[1]] = nil end
    for _, kv in ipairs(pairs_in_order) do
      local k = kv[1]
      if type(k) == "string" and k:sub(1, #prefix) == prefix then k = k:sub(#prefix + 1) end
      sd[k] = kv[2]
    end
    return sd
  end
end
