-- test_dist_repl.lua — what the learner sees of the dist checks in a REPL of 4 ranks,
-- driven through stdin: a chunk sent to some ranks only (:on) fails at once and says why;
-- a mismatch reads the same on every rank however many collectives each called before,
-- so it shows as one block; isend/irecv posted in one chunk may be waited on in the next,
-- and a pair posted in different chunks says so; a rank whose init_process_group fails
-- tells the others at once. This test runs on one rank and starts its own 4-rank REPL.
local T = require "support"

-- Runs `ddplab -n 4 -i` on the given input lines in a clean environment; returns its
-- output (stdout and stderr together).
local function repl(lines)
  return (T.run_ddplab("-n 4 -i --collective-timeout 30", table.concat(lines, "\n") .. "\n",
                       {"COLUMNS=200", "DDPLAB_COLLECTIVE_TIMEOUT=30"}))
end

local has, lacks = T.has, T.lacks

-- (the collective timeout is 30 s: had a rank waited for the watchdog, the message would
-- be "did not arrive", which the checks below refuse)

T.test(":on 1-2 then a collective of all ranks fails at once on ranks 1,2", function()
  local out = repl({
    'dist.init_process_group{backend = "gloo"}',
    ":on 1-2",
    "t = torch.ones(1)",
    "dist.all_reduce(t)",
    "g = dist.new_group({0, 1, 2, 3})",
    "if dist.get_rank() == 1 then dist.send(t, 2) else dist.recv(t, 1) end; print(t)",
    ":on all",
    "dist.all_reduce(torch.ones(1))",
    "print(dist.get_world_size())",
  })
  has(out, "[1,2] error: stdin:1: all_reduce: ranks 0,3 are not running this chunk (it was "
           .. "sent to ranks 1,2 with :on); a collective needs every rank of its group: use "
           .. ":on all")
  has(out, "[1,2] error: stdin:1: new_group: ranks 0,3 are not running this chunk")
  -- a send between two ranks that both run the chunk is fine
  has(out, "[1,2] tensor([1.])")
  lacks(out, "did not arrive")
  has(out, "[0-3] 4")
end)

T.test("a mismatch after chunks with different numbers of calls is one block", function()
  local out = repl({
    'dist.init_process_group{backend = "gloo"}',
    "rank = dist.get_rank()",
    "t = torch.ones(3)",
    "if rank < 2 then dist.all_reduce(t) end",
    "x = torch.ones(rank == 3 and 4 or 3)",
    "dist.all_reduce(x)",
  })
  -- ranks 0,1 have called one collective more than ranks 2,3: the numbers still agree
  has(out, "[0,1] error: stdin:1: collective #1 of this chunk: ranks 0,1 called "
           .. "all_reduce(float32[3], op=SUM); ranks 2,3 called nothing and finished the chunk")
  has(out, "[0-3] error: stdin:1: collective #1 of this chunk: ranks 0,1,2 called "
           .. "all_reduce(float32[3], op=SUM); rank 3 called all_reduce(float32[4], op=SUM)")
end)

T.test("isend and irecv posted in one chunk may be waited on in the next; not posted apart",
       function()
  local out = repl({
    'dist.init_process_group{backend = "gloo"}',
    "r = dist.get_rank(); t = torch.full({2}, r + 1.0)",
    "if r == 0 then w = dist.isend(t, 1) elseif r == 1 then w = dist.irecv(t, 0) end",
    "if r < 2 then w:wait() end; print(t)",
    "if r == 0 then w = dist.isend(t, 1) end",
    "if r == 1 then w = dist.irecv(t, 0) end; if r < 2 then w:wait() end",
  })
  has(out, "[0,1] tensor([1., 1.])")
  has(out, "[0] error: stdin:1: send #1 from rank 0 to rank 1, posted in an earlier chunk: "
           .. "rank 1 posted no matching recv in that chunk (a message's send and recv must be "
           .. "posted in the same chunk; waiting may come later)")
  lacks(out, "did not arrive")
end)

T.test("a rank whose init fails tells the others at once", function()
  local out = repl({
    'bad = os.getenv("RANK") == "2"',
    'dist.init_process_group{backend = bad and "mpi" or "gloo", timeout = 60}',
    'dist.init_process_group{backend = "gloo"}',
    "t = torch.ones(1); dist.all_reduce(t); print(t)",
  })
  has(out, "[0,1,3] error: stdin:1: init_process_group: rank 2 failed to initialise: "
           .. "unknown backend 'mpi'")
  has(out, "[2]     error: stdin:1: init_process_group: unknown backend 'mpi'")
  lacks(out, "arrived within")
  has(out, "[0-3] tensor([4.])")
end)

T.done()
