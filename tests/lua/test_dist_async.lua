-- ranks: 1 2 4
-- test_dist_async.lua — dist.all_reduce(t, {async_op=true}): a pending work that
-- completes on :wait(); several outstanding all_reduces complete in the order posted,
-- and a blocking collective called after them runs after them; a mismatch is caught when
-- the call is posted, on every rank; a work collected unwaited still finishes its call.
-- Last, Ctrl-C while a rank waits on a work leaves the wait and the group works again.
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, n = dist.get_rank(), dist.get_world_size()

T.test("a pending work completes on wait", function()
  local t = torch.full({1 << 18}, rank + 1.0)
  local w = dist.all_reduce(t, {async_op = true})
  T.eq(w:wait(), true)
  T.is_true(w:is_completed())
  T.eq(t[0]:item(), n * (n + 1) / 2)
  T.eq(w:wait(), true) -- waiting again is fine
end)

T.test("outstanding all_reduces complete in order, before a later blocking one", function()
  local ts, ws = {}, {}
  for i = 1, 6 do
    ts[i] = torch.full({1000 * i}, (rank + 1) * i)
    ws[i] = dist.all_reduce(ts[i], {async_op = true})
  end
  local last = torch.ones(1)
  dist.all_reduce(last) -- blocks, queued behind the six
  for i = 1, 6 do T.is_true(ws[i]:is_completed(), "work " .. i .. " done before the blocking one") end
  for i = 6, 1, -1 do ws[i]:wait() end
  for i = 1, 6 do T.eq(ts[i][1000 * i - 1]:item(), i * n * (n + 1) / 2) end
  T.eq(last:item(), n)
end)

T.test("an unwaited work still finishes its call", function()
  local t = torch.ones(4096)
  do dist.all_reduce(t, {async_op = true}) end
  collectgarbage()
  collectgarbage()
  dist.barrier()
  local u = torch.ones(1)
  dist.all_reduce(u)
  T.eq(u:item(), n)
end)

T.test("ops other than SUM", function()
  local t = torch.tensor({rank * 1.0, -rank * 1.0})
  dist.all_reduce(t, dist.ReduceOp.MAX, {async_op = true}):wait()
  T.eq(t:tolist(), {n - 1, 0})
end)

if n > 1 then
  T.test("a mismatch fails when posted, on every rank", function()
    local t = rank == 0 and torch.ones(3) or torch.ones(4)
    local err = T.raises(function() dist.all_reduce(t, {async_op = true}) end, "called")
    T.is_true(err:find("all_reduce(float32[3], op=SUM)", 1, true), err)
    local u = torch.ones(1)
    dist.all_reduce(u, {async_op = true}):wait()
    T.eq(u:item(), n)
  end)
end

if n == 2 and rank == 0 then
  T.test("Ctrl-C while waiting on a work, then the group works again", function()
    local out = T.run_ddplab("-n 2 -i --no-collective-check --collective-timeout 3600",
      table.concat({
        'dist.init_process_group{backend = "gloo"}; rank = dist.get_rank()',
        "if rank == 0 then os.execute(\"(sleep 1; kill -INT $PPID) &\"); "
          .. "t = torch.ones(3); w = dist.all_reduce(t, {async_op = true}); print('posted'); "
          .. "w:wait(); print('not interrupted') end",
        "w = nil; collectgarbage(); t = torch.ones(3) * (rank + 1); dist.all_reduce(t); print(t)",
      }, "\n") .. "\n", {"COLUMNS=200"})
    T.has(out, "[0] posted")
    T.has(out, "interrupted")
    T.lacks(out, "not interrupted")
    T.has(out, "[0,1] tensor([3., 3., 3.])")
  end)
end

T.done()
