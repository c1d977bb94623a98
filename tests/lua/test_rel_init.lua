-- ranks: 2
-- test_rel_init.lua — issue 10, defect 5: an init_process_group that fails (here rank 0
-- alone, timing out) leaves nothing behind that blocks the next one: the rank that comes
-- later skips the failed rendezvous and meets rank 0's retry.
local T = require "support"
local rank = tonumber(os.getenv("RANK"))

T.test("a failed init does not block the next", function()
  if rank == 0 then
    local ok, err = pcall(dist.init_process_group, {backend = "gloo", timeout = 1})
    T.is_true(not ok, "rank 0 alone cannot initialise")
    T.has(err, "not every rank of the group arrived within 1 s")
    T.is_true(not dist.is_initialized(), "nothing initialised")
  else
    local t0 = os.time()
    while os.time() - t0 < 3 do end -- comes after rank 0 gave up
  end
  dist.init_process_group{backend = "gloo", timeout = 10}
  T.eq(dist.get_world_size(), 2)
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), 2.0)
  dist.destroy_process_group()
  -- and once more, everyone together
  dist.init_process_group{backend = "gloo", timeout = 10}
  dist.barrier()
  dist.destroy_process_group()
end)

T.done()
