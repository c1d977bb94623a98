-- scale.lua — the scale test's script (run by test_scale.sh on many ranks): start,
-- all_reduce across the world, create four subgroups (even ranks, odd ranks, the lower
-- half, ranks {0, 1}), all_reduce in each, drop them (their Gloo contexts close), and
-- leave. Each rank measures its open descriptors and threads after init, with the
-- groups, and after dropping them; rank 0 prints the lowest and highest of each across
-- ranks, and the seconds the phases took. Usage: scale.lua MARKER_FILE
local marker = arg[1]
local t0 = torch.time()
local function count_fds()
  local p = io.popen("me=$(readlink /proc/$$/fd/1); ls -l /proc/" ..
                     io.open("/proc/self/stat"):read("n") ..
                     "/fd 2>/dev/null | grep -e '->' | grep -vF \"$me\" | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end
local function threads()
  local f = io.open("/proc/self/status")
  local n = tonumber(f:read("a"):match("Threads:%s*(%d+)"))
  f:close()
  return n
end
-- min and max of a number across the world
local function span(x)
  local lo, hi = torch.tensor({-x}, {dtype = torch.float64}), torch.tensor({x}, {dtype = torch.float64})
  dist.all_reduce(lo, dist.ReduceOp.MAX)
  dist.all_reduce(hi, dist.ReduceOp.MAX)
  return -lo:item(), hi:item()
end

dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()
local t = torch.ones(1)
dist.all_reduce(t)
assert(t:item() == world, "all_reduce gave " .. t:item())
local t_init = torch.time() - t0
if rank == 0 and marker then os.execute("date +%s%N > " .. marker) end
collectgarbage()
local fd_init, th_init = count_fds(), threads()

local t1 = torch.time()
local evens, odds, lower = {}, {}, {}
for r = 0, world - 1 do
  if r % 2 == 0 then evens[#evens + 1] = r else odds[#odds + 1] = r end
  if r < world // 2 then lower[#lower + 1] = r end
end
local groups = {dist.new_group(evens), dist.new_group(odds), dist.new_group(lower),
                dist.new_group({0, 1})}
local want = {#evens, #odds, #lower, 2}
for i, g in ipairs(groups) do
  if g ~= dist.GroupMember.NON_GROUP_MEMBER then
    local u = torch.ones(1)
    dist.all_reduce(u, {group = g})
    assert(u:item() == want[i], ("group %d: all_reduce gave %g, not %d"):format(i, u:item(), want[i]))
  end
end
local t_groups = torch.time() - t1
local fd_groups, th_groups = count_fds(), threads()
groups = nil
collectgarbage()
collectgarbage()
dist.barrier()
local fd_after, th_after = count_fds(), threads()

local f_lo, f_hi = span(fd_init)
local g_lo, g_hi = span(fd_groups)
local a_lo, a_hi = span(fd_after)
local th_lo, th_hi = span(th_init)
local tg_lo, tg_hi = span(th_groups)
local ta_lo, ta_hi = span(th_after)
local _, init_s = span(t_init)
local _, groups_s = span(t_groups)
if rank == 0 then
  print(("scale %d ranks: init + all_reduce %.2f s, 4 groups %.2f s; descriptors per rank "
         .. "%d..%d after init, %d..%d with the groups, %d..%d after; threads %d..%d, "
         .. "%d..%d, %d..%d"):format(world, init_s, groups_s, f_lo, f_hi, g_lo, g_hi, a_lo,
         a_hi, th_lo, th_hi, tg_lo, tg_hi, ta_lo, ta_hi))
end
if fd_after > fd_init or th_after > th_init then
  print(("SCALE FAIL rank %d: dropped groups left %d descriptors and %d threads behind")
        :format(rank, fd_after - fd_init, th_after - th_init))
  os.exit(1)
end
dist.destroy_process_group()
