-- soak.lua — the soak test's training loop (run by test_soak.sh on 4 ranks): DDP steps of
-- a small MLP with SGD. Every SAMPLE steps each rank reads its own resident memory
-- (VmRSS of /proc/self/status) and open descriptors (/proc/self/fd), rank 0 also the
-- driver's (its parent), and the CPU seconds the last SAMPLE steps took. After the warm-up
-- (a fifth of the steps) every figure must stay flat: memory within 5% of the lowest
-- sample, descriptors exactly the same, and no steady slowdown (the medians of CPU time per
-- block in each third of the run: see below; medians, for the machine may be loaded).
-- Usage: soak.lua STEPS
local steps = tonumber(arg[1]) or 500
local SAMPLE = steps >= 5000 and 250 or 25
-- resident memory climbs for the first few hundred steps (the Lua GC finds its pace:
-- tensors' C memory is freed when their userdata is collected), then stays
local warm = steps >= 5000 and 1000 or 400

dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()

local function status_kb(pid, field)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+)"))
end
local function fd_count(pid)
  -- not counted: the pipe of io.popen itself (both of its ends, for the write end may
  -- still be open in this process while the child runs), found as the shell's stdout
  local p = io.popen("me=$(readlink /proc/$$/fd/1); ls -l /proc/" .. pid ..
                     "/fd 2>/dev/null | grep -e '->' | grep -vF \"$me\" | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end
local stat_file = io.open("/proc/self/stat")
local stat = stat_file:read("a")
stat_file:close() -- a handle left to the GC would be counted, or not, as it runs
local self = tonumber(stat:match("^%d+"))
local driver = tonumber(stat:match("^%d+ %b() %a (%d+)"))

torch.manual_seed(rank)
local model = nn.DistributedDataParallel(nn.Sequential(nn.Linear(32, 64), nn.ReLU(),
                                                       nn.Linear(64, 8)))
local opt = optim.SGD(model:parameters(), {lr = 0.01})
local loss_fn = nn.MSELoss()
local x, y = torch.randn(16, 32), torch.randn(16, 8)

local samples = {}
local t0 = os.clock()
local wall0 = torch.time()
for step = 1, steps do
  opt:zero_grad()
  local loss = loss_fn(model(x), y)
  loss:backward()
  opt:step()
  if step % SAMPLE == 0 then
    local t1 = os.clock()
    samples[#samples + 1] = {
      step = step, rss = status_kb("self", "VmRSS"), fds = fd_count(self), cpu = t1 - t0,
      drss = rank == 0 and status_kb(driver, "VmRSS") or 0,
      dfds = rank == 0 and fd_count(driver) or 0,
    }
    t0 = os.clock() -- the sampling itself is not counted
  end
end
local wall = torch.time() - wall0
if os.getenv("DDP_SOAK_TRACE") then
  for _, s in ipairs(samples) do
    print(("trace %d step %d rss %d fds %d cpu %.3f drss %d dfds %d"):format(rank, s.step, s.rss, s.fds, s.cpu, s.drss, s.dfds))
  end
end

local lo = {rss = math.huge, drss = math.huge, cpu = math.huge}
local hi = {rss = 0, drss = 0, cpu = 0}
local fds, dfds, bad = nil, nil, {}
for _, s in ipairs(samples) do
  if s.step > warm then
    for _, k in ipairs({"rss", "drss", "cpu"}) do
      lo[k] = math.min(lo[k], s[k])
      hi[k] = math.max(hi[k], s[k])
    end
    fds, dfds = fds or s.fds, dfds or s.dfds
    if s.fds ~= fds then bad[#bad + 1] = ("descriptors %d at step %d, %d before"):format(s.fds, s.step, fds) end
    if s.dfds ~= dfds then bad[#bad + 1] = ("driver descriptors %d at step %d, %d before"):format(s.dfds, s.step, dfds) end
  end
end
local function grew(k) return (hi[k] - lo[k]) / lo[k] end
if grew("rss") > 0.05 then bad[#bad + 1] = ("resident memory grew %.1f%% (%d -> %d kB)"):format(100 * grew("rss"), lo.rss, hi.rss) end
if rank == 0 and grew("drss") > 0.05 then bad[#bad + 1] = ("driver's resident memory grew %.1f%% (%d -> %d kB)"):format(100 * grew("drss"), lo.drss, hi.drss) end
-- CPU seconds per block: a leak of work (a list that grows, a hook added each step) shows
-- as blocks that get slower
local blocks = {}
for _, s in ipairs(samples) do if s.step > warm then blocks[#blocks + 1] = s.cpu end end
local function median(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = blocks[i] end
  table.sort(t)
  return t[(#t + 1) // 2]
end
-- a slowdown that comes from the program grows steadily: the median of each third of the
-- blocks is at least a quarter higher than the one before, the last more than twice the
-- first (work that grows with the step count gives that, or more). A loaded machine makes
-- single blocks, even a whole third, slower, but not such a staircase: the ranks spin
-- while they wait for a peer, so CPU time follows the machine's load in a step (seen in a
-- full parallel make test: 0.015, 0.042, then 0.043 s when other tests started beside it)
local third = #blocks // 3
local early, middle, late = median(1, third), median(third + 1, 2 * third),
                            median(2 * third + 1, #blocks)
if late > 2 * early and middle > 1.25 * early and late > 1.25 * middle then
  bad[#bad + 1] = ("blocks of %d steps slowed down: median %.3f, %.3f, then %.3f CPU s")
                  :format(SAMPLE, early, middle, late)
end
print(("soak rank %d: %d steps in %.1f s; after warm-up rss %d..%d kB, fds %d, median cpu/block %.3f then %.3f s%s"):format(
  rank, steps, wall, lo.rss, hi.rss, fds, early, late,
  rank == 0 and (("; driver rss %d..%d kB, fds %d"):format(lo.drss, hi.drss, dfds)) or ""))
for _, b in ipairs(bad) do print("SOAK FAIL rank " .. rank .. ": " .. b) end
if #bad > 0 then os.exit(1) end
