-- ranks: 1 2 4
-- test_dist_semantics.lua — the corners of torch.distributed where ddplab must behave as
-- PyTorch does: new_group sorts its ranks, zero-element tensors, reduce on the other
-- ranks, all_gather_into_tensor from a slice of its own output, a non-contiguous tensor,
-- and a group made before destroy_process_group that must stay dead in a later world
-- even when that world's store numbers its generations from 1 again.
local T = require "support"

dist.init_process_group{backend = "gloo", init_method = "env://"}
local rank, n = dist.get_rank(), dist.get_world_size()

T.test("new_group sorts its ranks, as PyTorch does", function()
  local reversed = {}
  for r = n - 1, 0, -1 do reversed[#reversed + 1] = r end
  local g = dist.new_group(reversed)
  T.eq(g:rank(), rank, "group rank of a reversed list")
  T.eq(dist.get_rank(g), rank)
  -- every member lists the ranks in a different order: still one group
  local rotated = {}
  for i = 0, n - 1 do rotated[#rotated + 1] = (rank + i) % n end
  local h = dist.new_group(rotated)
  T.eq(h:rank(), rank, "group rank of a rotated list")
  local t = torch.tensor({rank + 1.0})
  dist.all_reduce(t, {group = h})
  T.eq(t:item(), n * (n + 1) / 2)
  -- src is a global rank: rank n-1 sends
  local b = torch.tensor({rank * 1.0})
  dist.broadcast(b, n - 1, {group = g})
  T.eq(b:item(), n - 1)
end)

T.test("new_group with different lists on different ranks fails on every rank", function()
  if n < 2 then return end
  -- the slip: each half makes "its" group
  local half = {}
  for r = 0, n - 1 do
    if (r < n / 2) == (rank < n / 2) then half[#half + 1] = r end
  end
  local err = T.raises(function() dist.new_group(half) end, "called new_group(ranks=")
  T.is_true(err:find("new_group(ranks=0", 1, true), err)
  -- the default group still works
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end)

T.test("zero-element tensors go through every collective", function()
  local e = torch.zeros(0)
  dist.all_reduce(e)
  dist.broadcast(e, 0)
  dist.reduce(e, 0)
  local list = {}
  for i = 1, n do list[i] = torch.zeros(0) end
  dist.all_gather(list, e)
  dist.all_gather_into_tensor(torch.zeros(0), e)
  dist.reduce_scatter(e, list)
  dist.gather(e, rank == 0 and list or nil, 0)
  dist.scatter(e, rank == 0 and list or nil, 0)
  T.eq(e:numel(), 0)
  -- the group still agrees afterwards
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end)

T.test("reduce: dst gets the result", function()
  local t = torch.tensor({rank + 1.0, 2.0})
  dist.reduce(t, n - 1, dist.ReduceOp.MAX)
  if rank == n - 1 then T.eq(t:tolist(), {n, 2}) end
end)

T.test("all_gather_into_tensor from a slice of its own output", function()
  local out = torch.zeros(n, 3)
  local mine = out[rank]
  mine:copy_(torch.tensor({rank, rank, rank}))
  dist.all_gather_into_tensor(out, mine)
  for r = 0, n - 1 do T.eq(out[r]:tolist(), {r, r, r}) end
end)

T.test("a non-contiguous tensor is refused before anything is sent", function()
  local t = torch.ones(2, 3):t()
  T.raises(function() dist.broadcast(t, 0) end, "not contiguous")
  local u = torch.ones(1)
  dist.all_reduce(u)
  T.eq(u:item(), n)
end)

T.test("a group from an earlier world stays destroyed in a new world", function()
  local old = dist.new_group()
  dist.destroy_process_group()
  -- file:// makes rank 0 host a fresh store, whose generation count starts again
  local path = "/tmp/ddplab-test-semantics-" .. os.getenv("MASTER_PORT")
  dist.init_process_group{backend = "gloo", init_method = "file://" .. path, rank = rank,
                          world_size = n, timeout = 20}
  T.raises(function() dist.all_reduce(torch.ones(2), {group = old}) end, "destroyed")
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
  dist.barrier()
  if rank == 0 then os.remove(path) end
end)

dist.destroy_process_group()
T.done()
