-- ranks: 1 2 4
-- test_rank_events.lua — `ddplab.rank`, the typed events a rank sends its driver: gather
-- goes through the driver (no process group needed, none created), answers with every
-- rank's bytes in rank order, and can be called several times in one chunk; verdict and
-- progress are accepted (their rendering is the REPL's, tested in tests/e2e).
local T = require "support"
local R = require "ddplab.rank"
local rank, world = tonumber(os.getenv("RANK")), tonumber(os.getenv("WORLD_SIZE"))

T.test("connected to a driver", function() T.eq(R.connected, true) end)

T.test("gather without a process group", function()
  T.eq(dist.is_initialized(), false)
  local all = R.gather("r" .. rank)
  T.eq(#all, world)
  for i = 1, world do T.eq(all[i], "r" .. (i - 1)) end
  T.eq(dist.is_initialized(), false)
end)

T.test("gather twice in a row, binary bytes kept", function()
  local a = R.gather(string.rep("\0\255", rank + 1))
  local b = R.gather(tostring(rank * 10))
  for i = 1, world do
    T.eq(a[i], string.rep("\0\255", i))
    T.eq(b[i], tostring((i - 1) * 10))
  end
end)

T.test("verdict and progress are sent", function()
  T.eq(R.verdict("pass", "fine"), true)
  for i = 0, 10 do R.progress(i, 10, "steps") end
  T.eq(select("#", pcall(R.verdict, "maybe")) >= 1, true)
  T.eq(pcall(R.verdict, "maybe"), false)
end)

T.done()
