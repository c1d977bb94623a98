-- ranks: 1 2 4
-- test_checkpoint.lua — checkpoints: an optimizer's state dict saved to .safetensors
-- (param_groups and state kept as JSON in the header's metadata) loads back to the same
-- table, integer vs float and odd keys included, and training resumed from it equals
-- training that never stopped; torch.load's map_location; the NUL-byte name (issue 10,
-- defect 13); the documented pattern (rank 0 saves, barrier, every rank loads); several
-- ranks saving one path at once are told why.
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()

-- one scratch folder for all ranks: rank 0 makes it and tells the others
local dir = {rank == 0 and os.tmpname() .. ".d" or ""}
if rank == 0 then assert(os.execute("mkdir -p " .. T.shell_quote(dir[1]))) end
dist.broadcast_object_list(dir, 0)
dir = dir[1]
local function path(name) return dir .. "/" .. name end

-- Deep equality for plain values, tensors (dtype, shape, values) and tables, with the
-- Lua number subtype compared too.
local function same(a, b, where)
  where = where or "value"
  if torch.is_tensor(a) then
    T.is_true(torch.is_tensor(b), where .. ": not a tensor")
    T.eq(tostring(a.dtype), tostring(b.dtype), where .. " dtype")
    T.eq(tostring(a.shape), tostring(b.shape), where .. " shape")
    T.is_true(a:equal(b), where .. ": values differ")
    return
  end
  T.eq(type(a), type(b), where .. " type")
  if type(a) == "number" then
    T.eq(math.type(a), math.type(b), where .. " number subtype")
    if a == a then T.eq(a, b, where) else T.is_true(b ~= b, where .. " NaN") end
  elseif type(a) == "table" then
    for k, v in pairs(a) do same(v, b[k], where .. "[" .. tostring(k) .. "]") end
    for k in pairs(b) do T.is_true(a[k] ~= nil, where .. ": extra key " .. tostring(k)) end
  else
    T.eq(a, b, where)
  end
end

local function train(model, opt, steps, seed)
  torch.manual_seed(seed)
  for _ = 1, steps do
    local x, y = torch.randn(8, 4), torch.randn(8, 2)
    opt:zero_grad()
    nn.MSELoss()(model(x), y):backward()
    opt:step()
  end
end

local function make(kind)
  torch.manual_seed(1)
  local model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
  local opt = kind == "adam" and optim.Adam(model:parameters(), {lr = 1e-2})
      or optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
  return model, opt
end

for _, kind in ipairs({"sgd", "adam"}) do
  T.test(kind .. ": optimizer state dict round trip, and resumed training equals unbroken", function()
    local model, opt = make(kind)
    train(model, opt, 3, 10)
    local p = path(kind .. rank .. ".safetensors")
    torch.save(opt:state_dict(), p)
    torch.save(model:state_dict(), path(kind .. rank .. "_model.safetensors"))
    local back = torch.load(p)
    same(opt:state_dict(), back, "state_dict")
    T.eq(math.type(back.param_groups[1].lr), "float")
    T.eq(math.type(back.param_groups[1].params[1]), "integer")
    -- a fresh model and optimizer, loaded, then both go on for 3 more steps
    local model2, opt2 = make(kind)
    model2:load_state_dict(torch.load(path(kind .. rank .. "_model.safetensors")))
    opt2:load_state_dict(back)
    train(model, opt, 3, 20)
    train(model2, opt2, 3, 20)
    local a, b = model:parameters(), model2:parameters()
    for i = 1, #a do T.is_true(a[i]:equal(b[i]), "parameter " .. i .. " after resuming") end
  end)
end

T.test("non-tensor values keep their Lua types through the metadata", function()
  local value = {
    weight = torch.arange(6):reshape(2, 3):float(),
    config = {
      int = 3, float = 3.0, tiny = 1e-300, big = 2 ^ 70, neg = -0.5, maxint = math.maxinteger,
      nan = 0 / 0, inf = math.huge, ninf = -math.huge, yes = true, no = false,
      text = "quote \" backslash \\ newline \n tab \t", utf8 = "größe ☃",
      bytes = "\0\1\255\254 not utf-8", empty = "", list = {1, 2.5, "three", {4}},
      holes = {[1] = "a", [3] = "c"}, zero_based = {[0] = "x", [1] = "y"},
      int_like = {["1"] = "string key", [1] = "integer key"}, nothing = {},
      nested = {deep = {deeper = {t = torch.tensor({true, false})}}},
      ["key with spaces and ünïcode"] = 1, [-5] = "negative key",
    },
    step = 7,
  }
  local p = path("values" .. rank .. ".safetensors")
  torch.save(value, p)
  same(value, torch.load(p))
  -- the top-level order comes back as saved (an ordered state dict)
  local sd = nn.Linear(2, 2):state_dict()
  torch.save(sd, p)
  local keys = {}
  for k in pairs(torch.load(p)) do keys[#keys + 1] = k end
  T.eq(keys, {"weight", "bias"})
end)

T.test("what a checkpoint cannot hold is named", function()
  local p = path("bad" .. rank .. ".safetensors")
  T.raises(function() torch.save({groups = {{fn = print}}}, p) end, "'groups[1].fn' is a function")
  local cyc = {}
  cyc.self = cyc
  T.raises(function() torch.save({c = cyc}, p) end, "'c.self' contains itself (a cycle)")
  T.raises(function() torch.save({t = {[1.5] = 1}}, p) end, "has a float key (1.5)")
  T.raises(function() torch.save({format = 1}, p) end, "the key 'format' is taken")
  T.raises(function() torch.save({}, p) end, "the table is empty")
  T.raises(function() torch.save({[1] = torch.zeros(1)}, p) end, "every key must be a string name")
end)

T.test("defect 13: a name with a NUL byte is refused, not cut", function()
  local p = path("nul" .. rank .. ".safetensors")
  T.raises(function() torch.save({["a\0b"] = torch.zeros(1)}, p) end, "holds a NUL byte")
  T.raises(function() torch.save({["a\0b"] = 1}, p) end, "holds a NUL byte")
  -- a NUL inside a non-tensor value is kept whole (JSON escapes it)
  torch.save({s = "a\0b"}, p)
  T.eq(torch.load(p).s, "a\0b")
  -- a file whose header holds one is refused by the reader
  local header = '{"a\\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
  local f = assert(io.open(p, "wb"))
  f:write(string.pack("<I8", #header), header, "\0\0\0\0")
  f:close()
  T.raises(function() torch.load(p) end, "holds a NUL character")
end)

T.test("torch.load: map_location", function()
  local p = path("map" .. rank .. ".safetensors")
  torch.save({w = torch.ones(2), opt = {t = torch.zeros(1)}}, p)
  T.is_true(torch.load(p, {map_location = "cpu"}).w:equal(torch.ones(2)))
  T.is_true(torch.load(p, {map_location = {cpu = "cpu"}}).w:equal(torch.ones(2)))
  local seen = {}
  local got = torch.load(p, {map_location = function(t, loc)
    seen[#seen + 1] = loc
    return t + 1
  end})
  T.eq(seen, {"cpu", "cpu"})
  T.is_true(got.w:equal(torch.full({2}, 2.0)))
  T.is_true(got.opt.t:equal(torch.ones(1)), "nested tensors are placed too")
  if not torch.cuda.is_available() then
    T.raises(function() torch.load(p, {map_location = "cuda"}) end, "this build of ddplab has no CUDA")
    T.raises(function() torch.load(p, {map_location = "cuda:1"}) end, "map_location 'cuda:1'")
  end
  T.raises(function() torch.load(p, {map_location = "tpu"}) end, "'tpu' is not a device")
  T.raises(function() torch.load(p, {map_location = function() return 5 end}) end, "returned a number")
  T.raises(function() torch.load(p, {maplocation = "cpu"}) end, "did you mean 'map_location'?")
  T.is_true(torch.load(p, {weights_only = true}).w:equal(torch.ones(2)), "weights_only is accepted")
  T.raises(function() torch.load(p, {weights_only = "yes"}) end, "weights_only must be true or false")
  torch.save(torch.ones(3), path("map" .. rank .. ".npy"))
  T.is_true(torch.load(path("map" .. rank .. ".npy"), {map_location = "cpu"}):equal(torch.ones(3)))
end)

T.test("the documented pattern: rank 0 saves, barrier, every rank loads", function()
  local model, opt = make("adam")
  train(model, opt, 2, 30 + rank) -- ranks differ on purpose
  if rank == 0 then
    torch.save(model:state_dict(), path("model.safetensors"))
    torch.save(opt:state_dict(), path("opt.safetensors"))
  end
  dist.barrier()
  local model2, opt2 = make("adam")
  model2:load_state_dict(torch.load(path("model.safetensors"), {map_location = "cpu"}))
  opt2:load_state_dict(torch.load(path("opt.safetensors"), {map_location = "cpu"}))
  -- every rank now holds rank 0's weights: the sum over ranks is world x rank 0's
  local w = model2:parameters()[1]:clone()
  local from0 = {rank == 0 and w or nil}
  dist.broadcast_object_list(from0, 0)
  T.is_true(w:equal(from0[1]), "rank " .. rank .. " loaded other weights than rank 0 saved")
  T.eq(opt2:state_dict().state[0].step, 2)
end)

T.test("several ranks saving one path at once are told to save on rank 0", function()
  local p = path("shared.safetensors")
  local big = {w = torch.randn(2000, 1000)} -- 8 MB: long enough for the writes to overlap
  dist.barrier()
  local ok, err = pcall(torch.save, big, p)
  if not ok then
    T.has(tostring(err), "is saving the same file at this moment")
    T.has(tostring(err), "if dist.get_rank() == 0 then torch.save(sd, path) end")
  end
  local failed = torch.tensor({ok and 0 or 1})
  dist.all_reduce(failed)
  -- whoever won wrote a whole file; nothing temporary is left beside it
  T.eq(tostring(torch.load(p).w.shape), "torch.Size([2000, 1000])")
  local ls = io.popen("ls " .. T.shell_quote(dir))
  local listing = ls:read("a")
  ls:close()
  T.lacks(listing, ".tmp")
  T.lacks(listing, ".lock")
  if rank == 0 then print(string.format("concurrent save: %d of %d ranks refused", failed:item(), world)) end
  if world > 1 then T.is_true(failed:item() < world, "every rank refused: nobody saved") end
end)

dist.barrier()
if rank == 0 then os.execute("rm -rf " .. T.shell_quote(dir)) end
dist.destroy_process_group()
T.done()
