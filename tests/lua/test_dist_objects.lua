-- ranks: 1 2 4
-- test_dist_objects.lua — dist.broadcast_object_list and dist.all_gather_object for plain
-- Lua values (integers vs floats, strings with any bytes, booleans, holes, nested tables,
-- tensors of every dtype), the values they refuse, and dist.monitored_barrier naming the
-- rank that did not arrive (in a child ddplab, so the main run's collectives stay in step).
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()

-- Deep equality, number subtypes and tensor dtypes included.
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
    T.eq(math.type(a), math.type(b), where .. " subtype")
    if a == a then T.eq(a, b, where) else T.is_true(b ~= b, where .. " NaN") end
  elseif type(a) == "table" then
    for k, v in pairs(a) do same(v, b[k], where .. "[" .. tostring(k) .. "]") end
    for k in pairs(b) do T.is_true(a[k] ~= nil, where .. ": extra key " .. tostring(k)) end
  else
    T.eq(a, b, where)
  end
end

-- A value that depends on the rank, with every kind of thing in it.
local function value_of(r)
  return {
    r, r + 0.5, 3.0, math.maxinteger - r, -0.0, 1 / 0, "rank " .. r, "\0\255bytes" .. r, r % 2 == 0,
    {[0] = "zero", [2] = "hole at 1", nested = {deeper = {r}}},
    torch.arange(6):reshape(2, 3):float() * (r + 1),
    torch.tensor(r + 0.25):double(), torch.arange(r + 1), torch.tensor({true, r == 1}),
    torch.zeros(0, 3),
    [20] = "after a hole", name = "x" .. r, [1.5] = "float key", [true] = "boolean key",
  }
end

T.test("broadcast_object_list: every rank gets src's list", function()
  for src = 0, world - 1 do
    local list = rank == src and value_of(src) or {"stale", "entries", extra = 1}
    dist.broadcast_object_list(list, src)
    same(value_of(src), list, "from rank " .. src)
  end
  -- options table form, and nil entries of a placeholder list
  local list = rank == 0 and {42, "x"} or {nil, nil}
  dist.broadcast_object_list(list, {src = 0})
  same({42, "x"}, list)
end)

T.test("all_gather_object: out[r + 1] is rank r's object", function()
  local out = {"stale"}
  dist.all_gather_object(out, value_of(rank))
  T.eq(#out, world)
  for r = 0, world - 1 do same(value_of(r), out[r + 1], "from rank " .. r) end
  -- objects of very different sizes, and nil
  local big = rank == 0 and string.rep("z", 100003) or nil
  dist.all_gather_object(out, big)
  T.eq(out[1], string.rep("z", 100003))
  for r = 2, world do T.eq(out[r], nil) end
  dist.all_gather_object(out, rank * 1.0)
  for r = 1, world do T.eq(math.type(out[r]), "float") end
end)

T.test("what cannot be sent is named, and every rank fails at the same call", function()
  T.raises(function() dist.all_gather_object({}, {fn = print}) end, "obj.fn is a function")
  local cyc = {}
  cyc[1] = cyc
  T.raises(function() dist.broadcast_object_list(rank == 0 and {cyc} or {}, 0) end,
           rank == 0 and "contains itself (a cycle)" or "rank 0 could not send its list")
  T.raises(function() dist.all_gather_object({}, rank == world - 1 and nn.Linear(2, 2) or 1) end,
           rank == world - 1 and "a table with a metatable"
           or string.format("rank %d could not send its object", world - 1))
  T.raises(function() dist.all_gather_object({}, io.stdout) end, "is a userdata")
  T.raises(function() dist.broadcast_object_list("x", 0) end, "must be a list")
  T.raises(function() dist.broadcast_object_list({}, 0.5) end, "src must be a rank")
  T.raises(function() dist.broadcast_object_list({}, {src = 0, grp = 1}) end, "unknown option 'grp'")
  T.raises(function() dist.all_gather_object(nil, 1) end, "must be a list")
  -- the collectives after the refusals still line up
  local out = {}
  dist.all_gather_object(out, rank)
  T.eq(#out, world)
end)

T.test("monitored_barrier passes when everyone comes, and checks its arguments", function()
  dist.monitored_barrier()
  dist.monitored_barrier{timeout = 5}
  dist.monitored_barrier(5)
  T.raises(function() dist.monitored_barrier{timeout = -1} end, "timeout must be a positive number")
  T.raises(function() dist.monitored_barrier{timout = 1} end, "did you mean 'timeout'?")
  T.raises(function() dist.monitored_barrier("soon") end, "unexpected argument #1 (string)")
end)

T.test("monitored_barrier names the rank that does not arrive", function()
  if world == 1 or rank ~= 0 then return end -- one child world, started from rank 0
  local chunk = [[
dist.init_process_group{backend = "gloo"}
if dist.get_rank() == 2 then os.execute("sleep 2") else dist.monitored_barrier{timeout = 0.5} end]]
  local out = T.run_ddplab("-n 3 -e " .. T.shell_quote(chunk))
  T.has(out, "monitored_barrier: collective #1 of this chunk: rank 2 did not arrive within 0.5 s")
  T.has(out, "ranks 0,1 are waiting in monitored_barrier() (timeout= sets the limit)")
  -- and the same when the cross-check of collectives is off
  out = T.run_ddplab("-n 3 --no-collective-check -e " .. T.shell_quote(chunk))
  T.has(out, "rank 2 did not arrive within 0.5 s")
end)

dist.destroy_process_group()
T.done()
