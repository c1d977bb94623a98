-- test_api_fuzz.lua — every function and method of ddplab's Lua API called with random
-- arguments: wrong types, nil, huge and negative sizes, NaN and inf, odd strings, tables
-- with strange metatables, empty, 0-dim and non-contiguous tensors of every dtype,
-- modules, optimizers, other objects given as `self`. The rule: each call either returns
-- or raises a Lua error whose message is a string (no crash, no sanitizer report, no
-- "PANIC"). It runs in the sanitizer build too (label san, detect_leaks=1), which is
-- where a wrong free or an overflow shows.
--
-- What is called: every function reachable from the globals torch, nn, optim, dist and
-- data and from the modules the library loads (package.loaded: the C halves ddp.nn_core,
-- ddp.io_core, ddp.reducer_core, ddplab.rank, and the Lua helpers), plus the functions of
-- the metatables (and __index tables) of every kind of object the API hands out: tensors,
-- modules, optimizers, generators, devices, dtypes, sizes, groups, work handles, hook
-- handles, datasets, samplers, loaders. torch.distributed runs twice: before
-- init_process_group and with a gloo group of 1; the rest runs with the group.
--
-- Seed: DDP_FUZZ_SEED=<integer> replays a run; without it the seed comes from the clock,
-- and is printed first. DDP_FUZZ_CALLS sets the calls per function (default 1000);
-- DDP_FUZZ_VERBOSE=1 prints every call before it is made (to find the one that crashed).
local T = require "support"

local seed = tonumber(os.getenv("DDP_FUZZ_SEED") or "")
if not seed then seed = os.time() * 1000 + math.floor(os.clock() * 1000) % 1000 end
seed = math.tointeger(seed) or error("DDP_FUZZ_SEED must be an integer")
local CALLS = math.tointeger(tonumber(os.getenv("DDP_FUZZ_CALLS") or "1000")) or 1000
local VERBOSE = os.getenv("DDP_FUZZ_VERBOSE") == "1"
local BUDGET_S = 45 -- the run stops drawing new calls after this long (it reports it)
print(string.format("api fuzz: seed %d (replay with DDP_FUZZ_SEED=%d), %d calls per function",
                    seed, seed, CALLS))

-- xorshift64 (Marsaglia's 13, 7, 17): Lua 5.4 integers wrap and >> is a logical shift.
local state = seed ~= 0 and seed or 0x2545F4914F6CDD1D
local function rnd()
  state = state ~ (state << 13)
  state = state ~ (state >> 7)
  state = state ~ (state << 17)
  return state
end
local function below(n) return (rnd() >> 1) % n end -- 0 .. n-1
local function chance(p) return below(1000) < p * 1000 end
local function one_of(list) return list[below(#list) + 1] end

-- ---- temporary files for the functions that take a path --------------------------------

-- What the working folder holds, to find anything a call wrote there by mistake.
local function listing()
  local p = assert(io.popen("ls -A"))
  local names = {}
  for name in p:lines() do names[name] = true end
  p:close()
  return names
end
local before = listing()

local tmp = os.tmpname()
os.remove(tmp)
local dir = tmp .. ".fuzz"
assert(os.execute("mkdir -p " .. T.shell_quote(dir .. "/folder.safetensors")))
local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end
torch.save({w = torch.randn(2, 3), b = torch.zeros(3, {dtype = torch.int64})}, dir .. "/good.safetensors")
torch.save(torch.randn(4), dir .. "/good.npy")
write(dir .. "/garbage.safetensors", "\255\255\255\255\255\255\255\127{\"a\":")
write(dir .. "/garbage.npy", "\147NUMPY\1\0\255\255{'descr': '<f4'")
write(dir .. "/empty.npy", "")
write(dir .. "/data.csv", "x,y\n1,2\n3,nan\n,5\n")
write(dir .. "/ragged.csv", "1,2,3\n4\n\n\"a\",b\n")
local have_fifo = os.execute("mkfifo " .. T.shell_quote(dir .. "/fifo.npy") .. " 2>/dev/null")
local paths = {
  dir .. "/good.safetensors", dir .. "/good.npy", dir .. "/garbage.safetensors",
  dir .. "/garbage.npy", dir .. "/empty.npy", dir .. "/data.csv", dir .. "/ragged.csv",
  dir .. "/folder.safetensors", dir .. "/new.safetensors", dir .. "/new.npy", dir .. "/new.csv",
  dir .. "/no/such/dir/x.npy", dir .. "/x.pt", dir .. "/", dir .. "/a\0b.npy",
}
if have_fifo then paths[#paths + 1] = dir .. "/fifo.npy" end
-- A device: never the machine's own /dev/null (a save renamed a plain file over it, as
-- root, before saves refused what is not a regular file), but a node of the same device
-- in the folder, where root may make one.
for _, name in ipairs({"null.npy", "null.safetensors", "null.csv"}) do
  if os.execute("mknod " .. T.shell_quote(dir .. "/" .. name) .. " c 1 3 2>/dev/null") then
    paths[#paths + 1] = dir .. "/" .. name
  end
end

-- ---- the values arguments are drawn from ------------------------------------------------

local ints = {0, 1, 2, 3, -1, 7, math.maxinteger, math.mininteger, 1 << 53, -(1 << 31),
              1 << 62, -(1 << 40)}
local floats = {0 / 0, 1 / 0, -1 / 0, 1e308, -0.0, 0.5, 2.0, -1.5, 2.0 ^ 53, 5e-324, 1e-7}
local strings = {"", string.rep("long", 4096), "cuda", "cuda:7", "cuda:-1", "cpu", "cpu:0",
                 "float16", "float32", "float64", "int64", "bool", "a\0b", "sum", "mean", "none",
                 "max", "SUM", "MAX", "AVG", "gloo", "nccl", "env://", "tcp://127.0.0.1:1",
                 "file:///nonexistent/dir/f", "%s%n%d", "1", "0x10", "x", "weight", "train",
                 "\255\254", "nan", "-1"}
-- option names the API knows (a random options table mixes them with strangers)
local option_keys = {
  "dtype", "device", "requires_grad", "generator", "dim", "keepdim", "op", "group",
  "async_op", "src", "dst", "ranks", "reduction", "retain_graph", "rtol", "atol",
  "equal_nan", "alpha", "min", "max", "timeout", "wait_all_ranks", "backend",
  "init_method", "rank", "world_size", "params", "lr", "momentum", "dampening",
  "weight_decay", "nesterov", "betas", "eps", "amsgrad", "maximize", "affine",
  "track_running_stats", "bias", "width", "print", "compact", "title", "height", "per_rank",
  "map_location", "weights_only", "n", "in_features", "out_features", "noise", "seed",
  "classes", "header", "delimiter", "num_replicas", "shuffle", "drop_last", "batch_size",
  "sampler", "collate_fn", "precision", "threshold", "edgeitems", "linewidth", "device_ids",
  "output_device", "broadcast_buffers", "bucket_cap_mb", "find_unused_parameters",
  "gradient_as_bucket_view", "static_graph", "process_group", "strict", "opp", "dtyp",
}
-- non-function values found while walking the API (dtypes, ReduceOp names, ...)
local found_values = {}

local callbacks = {
  function() end,
  function(...) return ... end,
  function() error("fuzz callback error") end,
  function() coroutine.yield(1) end,
  function() return torch.zeros(2) end,
  function() return 1 / 0 end,
}

-- A table whose metatable fights back: __index and __len that raise, or lie.
local calling_c -- whether the function being fuzzed is a C function

local function strange_table()
  local k = below(5)
  -- a __len of 2^63 goes to C functions only (luaL_len believes it): Lua code that loops
  -- `for i = 1, #t` over it runs for ever by design, as Python would over such a __len__
  if k == 2 and not calling_c then k = 1 end
  if k == 0 then return setmetatable({}, {__index = function() error("fuzz __index") end}) end
  if k == 1 then return setmetatable({1, 2}, {__len = function() return -5 end}) end
  if k == 2 then return setmetatable({1, 2}, {__len = function() return math.maxinteger end}) end
  if k == 3 then return setmetatable({}, {__len = function() return 0.5 end}) end
  -- (an __index that answers every key would be an endless list, and ipairs over it
  -- endless by design: this one invents one element only)
  return setmetatable({}, {__index = function(_, key) return key == 2 and "x" or nil end,
                           __len = function() return 3 end})
end

-- Every call gets fresh objects (a call may free, resize or reset the ones it is given).
local pool

local value -- forward

local function random_table(depth)
  local k = below(13)
  if k == 0 then return {} end
  if k == 1 then return {1, 2, 3} end
  if k == 2 then return {{1, 2}, {3, 4}} end
  if k == 3 then return {{1}, {2, 3}} end
  if k == 4 then return {pool.tensors[1], pool.tensors[2]} end
  if k == 5 then
    local t = {}
    t[1] = t
    t.self = t
    return t
  end
  if k == 6 then return {[1 << 53] = 1, [-1] = 2, [0] = 3} end
  if k == 7 then return strange_table() end
  if k == 8 then
    local t = {}
    for i = 1, 200 do t[i] = i % 7 end
    return t
  end
  if k == 9 and depth < 2 then return {value(depth + 1), value(depth + 1), value(depth + 1)} end
  -- an options table: real option names with random values, and now and then a stranger
  local t = {}
  for _ = 1, 1 + below(3) do t[one_of(option_keys)] = value(depth + 1) end
  if chance(0.2) then t[one_of(strings)] = value(depth + 1) end
  if chance(0.1) then t[1] = value(depth + 1) end
  return t
end

function value(depth)
  depth = depth or 0
  local k = below(100)
  if k < 6 then return nil end
  if k < 10 then return k < 8 end
  if k < 26 then return one_of(ints) end
  if k < 34 then return one_of(floats) end
  if k < 44 then return one_of(pool.strings) end
  if k < 56 then return depth < 3 and random_table(depth) or {} end
  if k < 60 then return one_of(callbacks) end
  if k < 80 then return one_of(pool.tensors) end
  if k < 93 then return one_of(pool.objects) end
  if k < 96 and #found_values > 0 then return one_of(found_values) end
  if k < 98 then return coroutine.create(one_of(callbacks)) end
  return io.stdout
end

-- A value that looks like part of a real call (a tensor, a small dim, a real option name
-- with a plausible value), so that calls get past the first argument check.
local plausible_ints = {0, 1, 2, -1, 3}
local plausible_floats = {0.5, 2.0, 0 / 0, 1 / 0}
local plausible_strings = {"float64", "int64", "cpu", "sum", "mean", "none", "gloo", "max"}
local function plausible(depth)
  local k = below(100)
  if k < 30 then return one_of(pool.tensors) end
  if k < 70 then return one_of(plausible_ints) end
  if k < 77 then return one_of(plausible_floats) end
  if k < 85 and depth == 0 then return {[one_of(option_keys)] = plausible(1)} end
  if k < 92 then return one_of(plausible_strings) end
  if k < 96 then return one_of(pool.objects) end
  if k < 98 then return {pool.tensors[1], one_of(pool.tensors)} end
  return pool.params
end

-- ---- the objects -----------------------------------------------------------------------

local function make_tensors()
  local a = torch.randn(3, 4)
  local leaf = torch.randn(3, {requires_grad = true})
  local freed = torch.zeros(2)
  freed:free()
  return {
    a, a:t(), a:narrow(1, 1, 2), torch.randn(1, 4):expand(3, 4), torch.tensor(1.5),
    torch.tensor(3), torch.zeros(0), torch.zeros(0, 3), torch.tensor({1, 2, 3}),
    torch.randn(2, 3, {dtype = torch.float64}), torch.tensor({true, false, true}), leaf,
    leaf * 2, torch.tensor({0 / 0, 1 / 0, -1 / 0, 1e308}), torch.zeros(1, 1, 1, 1, 1, 1, 1, 2),
    torch.tensor({-1, math.maxinteger, math.mininteger}), torch.zeros(64, 64), freed,
    torch.randn(2, 3, 4):permute(2, 0, 1), torch.arange(12):view(3, 4), torch.tensor({0, 1}),
    torch.randn(5, {dtype = torch.float64}):narrow(0, 1, 3),
  }
end

-- Makes the objects of every kind, each under the name of its kind. Needs the group for
-- the distributed ones (a group, a work handle, DDP), and makes them only when it is up.
local function make_objects()
  local o = {}
  local lin = nn.Linear(4, 3)
  o.module = {lin, nn.Sequential(nn.Linear(4, 2), nn.ReLU()), nn.ReLU(), nn.MSELoss(),
              nn.CrossEntropyLoss(), nn.BatchNorm1d(3), nn.SyncBatchNorm(3), nn.Softmax(1),
              nn.ModuleList({nn.Tanh()}), nn.Flatten(), nn.Identity(), nn.LogSoftmax(0),
              nn.Sigmoid()}
  o.optimizer = {optim.SGD(lin:parameters(), {lr = 0.1, momentum = 0.9}),
                 optim.Adam(nn.Linear(2, 2):parameters()), optim.AdamW(lin:parameters())}
  local g = torch.Generator()
  g:manual_seed(1)
  o.generator = {g, torch.default_generator}
  o.device = {torch.device("cpu")}
  o.dtype = {torch.float64, torch.int64, torch.bool, torch.float32}
  o.size = {torch.zeros(2, 3).shape, torch.tensor(1).shape}
  local t = torch.randn(3, {requires_grad = true})
  o.hook = {t:register_post_accumulate_grad_hook(function() end)}
  local x, y = torch.randn(6, 4), torch.randn(6)
  local ds = data.TensorDataset(x, y)
  o.dataset = {ds}
  o.sampler = {data.DistributedSampler(ds, {num_replicas = 2, rank = 1})}
  local loader = data.DataLoader(ds, {batch_size = 4})
  o.loader = {loader}
  o.iterator = {loader:iter()}
  o.ordered = {package.loaded["torch.ordered"].new()}
  o.state_dict = {lin:state_dict()}
  if dist.is_initialized() then
    o.group = {dist.new_group({0})}
    o.work = {dist.all_reduce(torch.zeros(2), {async_op = true})}
    o.module[#o.module + 1] = nn.DistributedDataParallel(nn.Linear(4, 2))
  end
  return o
end

local function make_pool()
  local objects = make_objects()
  local all = {}
  for _, list in pairs(objects) do
    for _, v in ipairs(list) do all[#all + 1] = v end
  end
  pool = {tensors = make_tensors(), objects = all, by_kind = objects, strings = strings,
          params = objects.module[1]:parameters()}
end

-- ---- what is called --------------------------------------------------------------------

local entries, seen_fn = {}, {}

-- Adds fn under `name`, once (the first name it is found under); kind: what `self` to give
-- it most of the time (nil: none, it is a plain function).
local function add(name, fn, kind)
  if seen_fn[fn] then return end
  seen_fn[fn] = true
  entries[#entries + 1] = {name = name, fn = fn, kind = kind, c = debug.getinfo(fn, "S").what == "C"}
end

-- Walks a table of the API: functions are added, callable tables too (classes), and
-- nested tables walked; other values are kept for the argument pool.
local walked = {}
local function walk(name, t, kind, depth)
  if walked[t] or depth > 4 then return end
  walked[t] = true
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = rawget(t, k)
    local path = name .. "." .. k
    if type(v) == "function" then
      add(path, v, kind)
    elseif type(v) == "table" then
      local mt = getmetatable(v)
      if type(mt) == "table" and type(rawget(mt, "__call")) == "function" and not seen_fn[v] then
        seen_fn[v] = true
        add(path .. "()", function(...) return v(...) end, nil)
        local call_fn = rawget(mt, "__call")
        add(path .. ".__call", call_fn, nil)
        if entries[#entries].fn == call_fn then entries[#entries].selves = {v} end -- the class first
      end
      -- module classes: their instances' methods take a module as self
      local child_kind = kind
      if rawget(v, "_instance_mt") or v == nn.Module then child_kind = "module" end
      if v == optim.Optimizer or rawget(v, "_step_group") then child_kind = "optimizer" end
      walk(path, v, child_kind, depth + 1)
    elseif type(v) ~= "nil" and #found_values < 64 then
      found_values[#found_values + 1] = v
    end
  end
end

-- The functions of an object's metatable and its __index table, as methods of `kind`.
local function walk_object(kind, obj)
  local mt = getmetatable(obj)
  if type(mt) ~= "table" then return end
  walk(kind .. "<mt>", mt, kind, 2)
  local index = rawget(mt, "__index")
  if type(index) == "table" then walk(kind .. "<methods>", index, kind, 2) end
end

-- Skipped, each for a reason (they block, or end the process, by design):
local skips = {
  -- the library's error(msg, level) for messages that blame the learner's line: it raises
  -- whatever it is given, as error does
  ["torch.util.raise"] = "is error() itself",
}

-- dist.init_process_group with random options: a world_size above 1 or an init_method
-- that points nowhere waits for ranks that never come, up to the timeout (60 s by
-- default). That wait is the design, so the fuzz bounds it to a second.
local function bound_init(args, n)
  for i = 1, n do
    local t = args[i]
    if type(t) == "table" and getmetatable(t) == nil and (t.world_size ~= nil or t.init_method ~= nil) then
      t.timeout = 1
    end
  end
end

-- torch.arange's numbers are ends and a step, not sizes: arange(-2^31, 0.5) is 2^31
-- elements (8 GB, 40 s under ASan) and arange(0, 7, 1e-7) 7e7, requests the core rightly
-- accepts. A drawn arange of more than 2^22 elements (and fewer than 2^41, past which the
-- core must refuse it) has its end brought to 2^20 steps from its start.
local function bound_arange(args, n)
  local nums = {} -- Lua numbers, and strings that convert ("1"), as lua_tonumber reads them
  for i = 1, math.min(n, 3) do
    nums[i] = (type(args[i]) == "number" or type(args[i]) == "string") and tonumber(args[i]) or nil
    if nums[i] == nil then break end
  end
  local m = #nums
  if m == 0 then return end
  local a, b, step = 0, nums[1], 1
  if m >= 2 then a, b = nums[1], nums[2] end
  if m == 3 then step = nums[3] end
  local count = (b - a) / step
  if count > 1 << 22 and count < 2.0 ^ 41 then
    if m == 1 then args[1] = 1 << 20 else args[2] = a + step * (1 << 20) end
  end
end

-- ---- one call ----------------------------------------------------------------------------

local failures = {}
-- calls that took longer than a second (what the time budget would be spent on)
local slow_calls = {limit = 1.0}
local calls, raised, internal = 0, 0, {}
local public_internal = {} -- the places in lua/ a public call failed at, each shown once

local show, is_public_call
-- tostring that survives a broken __tostring (the fuzz calls those too)
local function str(v)
  local ok, s = pcall(tostring, v)
  return ok and type(s) == "string" and s or type(v)
end

function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then
    return #v > 40 and string.format("%q..(%d bytes)", v:sub(1, 20), #v) or string.format("%q", v)
  end
  if t == "number" then
    return math.type(v) == "integer" and string.format("%d", v) or string.format("%.17g", v)
  end
  if torch.is_tensor(v) then
    local ok, s = pcall(function()
      return string.format("tensor(%s, %s%s)", str(v.shape), str(v.dtype),
                           v:is_contiguous() and "" or ", strided")
    end)
    return ok and s or "tensor(released)"
  end
  if t == "table" then
    if depth > 0 then return "{...}" end -- a table may hold itself, as a key too
    local parts = {}
    for k, x in next, v do
      if #parts >= 4 then parts[#parts + 1] = "..." break end
      parts[#parts + 1] = (type(k) == "string" and k or show(k, depth + 1)) .. "="
                          .. show(x, depth + 1)
    end
    return "{" .. table.concat(parts, ", ") .. "}" .. (getmetatable(v) and "+mt" or "")
  end
  return t
end

local function describe_call(entry, args, n)
  local s = {}
  for i = 1, n do s[i] = show(args[i]) end
  return entry.name .. "(" .. table.concat(s, ", ") .. ")"
end

-- The library's helper modules: loaded by the API, not part of it.
local helper_modules = {"torch.util", "torch.format", "torch.json", "torch.ordered",
                        "torch.distributed_objects", "torch.show", "nn.batchnorm", "nn.ddp"}

local function of_kind(v, kind)
  if kind == "tensor" then return torch.is_tensor(v) end
  for _, obj in ipairs(pool.by_kind[kind] or {}) do
    if rawequal(obj, v) then return true end
  end
  return false
end

-- Whether a learner can make this call as drawn (see check_result).
function is_public_call(entry, args, n)
  for _, m in ipairs(helper_modules) do
    if entry.name == m or entry.name:sub(1, #m + 1) == m .. "." then return false end
  end
  local last = entry.name:match("([^.]+)$")
  if last == "__init" or entry.name:find("%.__call$") then return false end
  if last:find("^__") then return entry.kind ~= nil and n >= 1 and of_kind(args[1], entry.kind) end
  for part in entry.name:gmatch("[^.]+") do
    if part:find("^_") then return false end
  end
  return true
end

local function check_result(entry, args, n, ok, err)
  if ok then return end
  raised = raised + 1
  local bad
  if type(err) ~= "string" then
    bad = "raised a " .. type(err) .. ", not a message"
  elseif err:find("PANIC", 1, true) or err:find("stack traceback", 1, true) then
    bad = "raised " .. err
  end
  if bad then
    failures[#failures + 1] = describe_call(entry, args, n) .. ": " .. bad
    return
  end
  -- Lua's own error from inside the library's Lua code ("attempt to index a nil value"):
  -- a failure when the learner can make that call (a public function, a method of an
  -- object of its kind, a metamethod on its own object), since the learner's words are
  -- what the learner must read; counted and shown once each when the call reaches the
  -- library's insides (a helper module, a private function, a metamethod or __init called
  -- directly with a stranger for self), as Python's AttributeError would be
  local where = err:match("^(@?lua/[%w_/]+%.lua:%d+): attempt to ")
  if not where then return end
  if is_public_call(entry, args, n) then
    if not public_internal[where] then
      public_internal[where] = true
      failures[#failures + 1] = describe_call(entry, args, n) .. ": Lua's own error inside the library: " .. err
    end
  elseif not internal[where] then
    internal[where] = describe_call(entry, args, n) .. ": " .. err
  end
end

local function call(entry, args, n)
  calls = calls + 1
  if VERBOSE then
    io.stdout:write(describe_call(entry, args, n), "\n")
    io.stdout:flush()
  end
  local ok, err
  local t0 = torch.time()
  if chance(0.1) then -- inside a coroutine: a callback's yield then meets a C boundary
    local co = coroutine.create(entry.fn)
    ok, err = coroutine.resume(co, table.unpack(args, 1, n))
  else
    ok, err = pcall(entry.fn, table.unpack(args, 1, n))
  end
  local dt = torch.time() - t0
  if dt > slow_calls.limit then
    slow_calls[#slow_calls + 1] = string.format("%.2f s: %s", dt, describe_call(entry, args, n))
  end
  if ok and #entry.good < 16 then entry.good[#entry.good + 1] = table.move(args, 1, n, 1, {n = n}) end
  check_result(entry, args, n, ok, err)
  torch.set_grad_enabled(true) -- torch.no_grad() as a statement leaves it off
end

-- torch.cuda on a build or machine without a GPU: every call is an error, or answers
-- false, 0 or nothing.
local no_gpu = not torch.cuda.is_available()
local function check_cuda(entry, args, n)
  local res = table.pack(pcall(entry.fn, table.unpack(args, 1, n)))
  calls = calls + 1
  if not res[1] then return check_result(entry, args, n, false, res[2]) end
  if #entry.good < 16 then entry.good[#entry.good + 1] = table.move(args, 1, n, 1, {n = n}) end
  for i = 2, res.n do
    local v = res[i]
    if not (v == nil or v == false or v == 0) then
      failures[#failures + 1] = describe_call(entry, args, n) .. ": without a GPU returned " .. show(v)
    end
  end
end

local arg_counts = {0, 1, 1, 2, 2, 2, 3, 3, 4, 5}

-- Three ways to draw a call: wild (any value anywhere), plausible, or one of this
-- function's calls that returned, with one argument changed, dropped or added (a small
-- mutation fuzzer: it reaches the checks behind the first ones).
local function draw_args(entry)
  local args, n = {}, one_of(arg_counts)
  local mode = below(10)
  if mode >= 7 and #entry.good > 0 then
    local good = one_of(entry.good)
    n = good.n
    for i = 1, n do args[i] = good[i] end
    local k = below(4)
    if k == 0 and n > 0 then
      n = n - 1
    elseif k == 1 and n < 6 then
      n = n + 1
      args[n] = value()
    else
      args[below(math.max(n, 1)) + 1] = k == 2 and value() or plausible(0)
      n = math.max(n, 1)
    end
  else
    local draw = mode < 4 and value or plausible
    for i = 1, n do args[i] = draw(0) end
    local selves = entry.selves or entry.kind and pool.by_kind[entry.kind]
    if entry.kind == "tensor" then selves = pool.tensors end
    if not selves then selves = pool.tensors end -- most plain functions take a tensor first
    if chance((entry.kind or entry.selves) and 0.75 or 0.4) then
      n = math.max(n, 1)
      args[1] = one_of(selves)
    end
  end
  -- the functions that take a path get paths instead of plain strings, so that nothing
  -- lands in the test's working folder
  if entry.paths then
    for i = 1, n do
      local t = type(args[i])
      if t == "string" or t == "number" or chance(0.3) then args[i] = one_of(paths) end
    end
  end
  if entry.init then bound_init(args, n) end
  if entry.name == "torch.arange" then bound_arange(args, n) end
  return args, n
end

local start = torch.time()
local out_of_time = 0
local per_fn = {}
local never_returned = {} -- functions every call of which raised

local function fuzz(entry, calls_each)
  if skips[entry.name] then return end
  if torch.time() - start > BUDGET_S then
    out_of_time = out_of_time + 1
    return
  end
  local t0 = torch.time()
  calling_c = entry.c
  make_pool()
  entry.good = {} -- calls that returned, made of this pool's objects
  local cuda = no_gpu and entry.name:find("^torch%.cuda%.") ~= nil
  for _ = 1, calls_each do
    local args, n = draw_args(entry)
    if cuda then check_cuda(entry, args, n) else call(entry, args, n) end
  end
  per_fn[#per_fn + 1] = {entry.name, torch.time() - t0}
  if #entry.good == 0 and not entry.before_init then never_returned[#never_returned + 1] = entry.name end
end

-- Puts back what the fuzz may have changed for everyone.
local function reset()
  torch.set_printoptions{precision = 4, threshold = 1000, edgeitems = 3, linewidth = 80}
  torch.set_grad_enabled(true)
  torch.manual_seed(seed)
end

-- ---- the run -------------------------------------------------------------------------------

local io_functions = {
  ["torch.save"] = true, ["torch.load"] = true, ["data.load_csv"] = true,
}
local function takes_path(name)
  return io_functions[name] or name:find("^ddp%.io_core%.") or name:find("^torch%.serialization%.")
    or name:find("load_csv$")
end

-- Phase 1: torch.distributed before init_process_group.
walk("dist", dist, nil, 0)
local dist_entries = entries
entries = {}
for _, e in ipairs(dist_entries) do
  e.init = e.name == "dist.init_process_group"
  e.before_init = true
  fuzz(e, CALLS)
  e.before_init = nil
  if dist.is_initialized() then dist.destroy_process_group() end
end
reset()

-- Phase 2: everything, with a gloo group of 1.
dist.init_process_group{backend = "gloo", init_method = "env://"}
local function ensure_group()
  if not dist.is_initialized() then dist.init_process_group{backend = "gloo", init_method = "env://"} end
end
for _, e in ipairs(dist_entries) do
  local fn = e.fn
  e.fn = function(...)
    ensure_group()
    return fn(...)
  end
  fuzz(e, CALLS)
end
ensure_group()

walk("torch", torch, nil, 0)
walk("nn", nn, nil, 0)
walk("optim", optim, nil, 0)
walk("data", data, nil, 0)
local loaded = {}
for name, m in pairs(package.loaded) do
  if type(m) == "table" and (name:find("^ddp") or name:find("^torch") or name:find("^nn")
                             or name == "plot" or name == "optim") then
    loaded[#loaded + 1] = name
  elseif type(m) == "function" and (name:find("^nn%.") or name:find("^torch")) then
    add(name, m, nil)
  end
end
table.sort(loaded)
for _, name in ipairs(loaded) do walk(name, package.loaded[name], nil, 0) end
walk("_G", {plot = plot, progress = progress}, nil, 0)
make_pool()
walk_object("tensor", torch.zeros(1))
for kind, list in pairs(pool.by_kind) do
  for _, obj in ipairs(list) do walk_object(kind, obj) end
end
-- the Tensor methods table is walked as torch.Tensor, before the metatable: give them self
for _, e in ipairs(entries) do
  if e.name:find("^torch%.Tensor%.") then e.kind = "tensor" end
  if takes_path(e.name) then e.paths = true end
end

local n_entries = #entries + #dist_entries
for _, e in ipairs(entries) do
  fuzz(e, CALLS)
  ensure_group()
  reset()
end
dist.destroy_process_group()
collectgarbage()
collectgarbage()
os.execute("rm -rf " .. T.shell_quote(dir))
local strays = {}
for name in pairs(listing()) do
  if not before[name] then
    strays[#strays + 1] = name
    os.remove(name)
  end
end

local elapsed = torch.time() - start
table.sort(per_fn, function(a, b) return a[2] > b[2] end)
local slowest = {}
for i = 1, math.min(5, #per_fn) do slowest[i] = string.format("%s %.2fs", per_fn[i][1], per_fn[i][2]) end
local skipped = {}
for name, why in pairs(skips) do skipped[#skipped + 1] = name .. " (" .. why .. ")" end
print(string.format("api fuzz: %d functions and methods, %d calls, %d raised, %.1f s; skipped: %s",
                    n_entries, calls, raised, elapsed, table.concat(skipped, ", ")))
print("slowest: " .. table.concat(slowest, ", "))
print(string.format("%d functions raised at every call: %s", #never_returned,
                    table.concat(never_returned, " ")))
for _, what in ipairs(slow_calls) do print("slow call " .. what) end
local wheres = {}
for where in pairs(internal) do wheres[#wheres + 1] = where end
table.sort(wheres)
print(#wheres .. " places in lua/ raised Lua's own error (attempt to index, call, ...), one call each:")
for _, where in ipairs(wheres) do print("  " .. internal[where]) end

T.test("every call returns or raises a Lua error with a message", function()
  if #failures > 0 then
    error(#failures .. " bad calls (seed " .. seed .. "):\n  " .. table.concat(failures, "\n  ", 1, math.min(#failures, 30)))
  end
end)
T.test("nothing was written outside the fuzz's own folder", function()
  if #strays > 0 then error("files left in the working folder: " .. table.concat(strays, ", ")) end
end)
T.test("the run fitted its time budget", function()
  if out_of_time > 0 then
    error(string.format("%d functions not called: the run took longer than %d s", out_of_time, BUDGET_S))
  end
end)
T.done()
