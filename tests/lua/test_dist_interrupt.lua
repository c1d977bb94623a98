-- test_dist_interrupt.lua — Ctrl-C while a rank sits inside Gloo, through the runtime: a
-- 2-rank REPL driven through stdin, with the collective check off and a one-hour
-- collective timeout. Rank 0 calls all_reduce alone (Gloo would hold it for the hour, and
-- ctest's timeout would fail the test) and gets a SIGINT a second later, as the driver
-- sends on Ctrl-C; the chunk must end "interrupted", and the next all_reduce of both
-- ranks must give the right sum on rebuilt connections. This test runs on one rank and
-- starts its own REPL.
local T = require "support"

local has, lacks = T.has, T.lacks

T.test("Ctrl-C ends a collective a rank entered alone; the next one works", function()
  local out = T.run_ddplab("-n 2 -i --no-collective-check --collective-timeout 3600", table.concat({
    'dist.init_process_group{backend = "gloo"}; rank = dist.get_rank()',
    -- $PPID of the shell os.execute starts is rank 0 itself
    'if rank == 0 then os.execute("(sleep 1; kill -INT $PPID) &"); '
      .. "t = torch.ones(3); dist.all_reduce(t); print('not interrupted', t) end",
    "t = torch.ones(3) * (rank + 1); dist.all_reduce(t); print(t)",
    "t = torch.ones(2) * (rank + 1); dist.all_reduce(t); print(t)",
  }, "\n") .. "\n", {"COLUMNS=200"})
  has(out, "[0] interrupted")
  lacks(out, "not interrupted")
  lacks(out, "timed out") -- the watchdog did not end it
  has(out, "[0,1] tensor([3., 3., 3.])")
  has(out, "[0,1] tensor([3., 3.])")
end)

T.done()
