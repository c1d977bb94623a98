-- ranks: 2 4
-- test_rel_p2p.lua — issue 10, defects 10 and 14: two ranks that both block in send (or
-- both in recv) toward each other are told so at once, on both ranks; dist.recv(t)
-- without src receives from any rank and returns the sender, as PyTorch's src=None.
local T = require "support"
dist.init_process_group{backend = "gloo"}
local rank, world = dist.get_rank(), dist.get_world_size()

T.test("both ranks in send: said at once, on both", function()
  if rank < 2 then
    local t = torch.ones(2)
    local t0 = os.clock()
    local err = T.raises(function() dist.send(t, 1 - rank) end,
                         string.format("send #1 from rank %d to rank %d: rank %d is in its own send #1 to rank %d",
                                       rank, 1 - rank, 1 - rank, rank))
    T.has(err, "both ranks are in send and would wait for each other")
    T.lacks(err, "finished the chunk")
    T.is_true(os.clock() - t0 < 2, "reported before the watchdog")
  end
  dist.barrier()
end)

T.test("both ranks in recv: said at once, on both", function()
  if rank < 2 then
    local err = T.raises(function() dist.recv(torch.ones(2), 1 - rank) end,
                         string.format("rank %d is in its own recv #1 from rank %d", 1 - rank, rank))
    T.has(err, "both ranks are in recv and would wait for each other")
  end
  dist.barrier()
end)

T.test("after a reported deadlock the pair still works", function()
  if rank < 2 then
    local t = torch.tensor({rank + 1.0})
    if rank == 0 then dist.send(t, 1) else dist.recv(t, 0) end
    T.eq(t:item(), 1.0)
  end
  dist.barrier()
end)

T.test("recv without src receives from any rank and returns the sender", function()
  if rank == 0 then
    local seen = {}
    for _ = 1, world - 1 do
      local t = torch.zeros(1)
      local src = dist.recv(t)
      T.is_true(src >= 1 and src < world, "sender " .. tostring(src))
      T.eq(t:item(), src * 10.0)
      T.is_true(not seen[src], "sender " .. src .. " twice")
      seen[src] = true
    end
  else
    dist.send(torch.tensor({rank * 10.0}), 0)
  end
  dist.barrier()
end)

T.test("irecv without src, and a recv from any rank that nobody sends to", function()
  if rank == 1 then
    local t = torch.zeros(1)
    local w = dist.irecv(t)
    w:wait()
    T.eq(t:item(), 7.0)
  elseif rank == 0 then
    dist.send(torch.tensor({7.0}), 1)
  end
  dist.barrier()
end)

T.test("send still needs dst", function()
  T.raises(function() dist.send(torch.ones(1)) end, "send: which rank? pass dst")
end)

T.done()
