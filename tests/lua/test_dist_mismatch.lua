-- ranks: 2 4
-- test_dist_mismatch.lua — the mismatch matrix in a script (one chunk): each kind of
-- mismatched collective (different op, reduce op, shape, dtype, root, order) in each
-- context (the world, and subgroups from dist.new_group: {0,1} on 2 ranks, {1,2,3} and
-- {0,3} on 4) is caught before it hangs; every member of the group raises the same
-- message, naming which ranks called what; the ranks outside the group are untouched;
-- afterwards a collective on the group and one on the world work. A recv whose peer waits
-- in a collective fails at once. Last, rank n-1 finishes the script without calling, and
-- the others are told so in every context; a timeout at that moment says so too. (The
-- REPL's contexts, chunks and :on, are in test_dist_mismatch_repl.lua and
-- tests/e2e/test_repl_mismatch_on.sh.)
local T = require "support"

dist.init_process_group{backend = "gloo"}
local rank, n = dist.get_rank(), dist.get_world_size()
local last = n - 1

-- "rank 2" or "ranks 0,2", as the messages name ranks.
local function who(list)
  return (#list == 1 and "rank " or "ranks ") .. table.concat(list, ",")
end

-- The groups the matrix runs in. The members of each are split into two sides by turns
-- (side a holds the first member), and the sides call different things.
local contexts = {{name = "the world", ranks = {}}}
for r = 0, n - 1 do contexts[1].ranks[r + 1] = r end
for _, list in ipairs(n == 2 and {{0, 1}} or {{1, 2, 3}, {0, 3}}) do
  contexts[#contexts + 1] = {name = "group {" .. table.concat(list, ",") .. "}", ranks = list,
                             group = dist.new_group(list)}
end
for _, c in ipairs(contexts) do
  c.a, c.b = {}, {}
  for i, r in ipairs(c.ranks) do
    local side = i % 2 == 1 and c.a or c.b
    side[#side + 1] = r
    if r == rank then c.member, c.on_a = true, side == c.a end
  end
  -- what the messages say after "collective #k " for a call on this group
  c.label = c.group and "of this chunk in group (" .. who(c.ranks) .. "): " or "of this chunk: "
end

-- The kinds of mismatch in context c. Each is a list of steps (order has two); in a step
-- side a runs a() and side b runs b(), and the message must name a_call and b_call.
local function kinds_for(c)
  local g, first, second = c.group, c.ranks[1], c.ranks[2]
  local function all_reduce(t, op) return function() dist.all_reduce(t, op, g) end end
  local function broadcast(t, src) return function() dist.broadcast(t, src, g) end end
  local function barrier() dist.barrier(g) end
  local function step(a, a_call, b, b_call) return {a = a, a_call = a_call, b = b, b_call = b_call} end
  local f64 = {dtype = torch.float64}
  return {
    {name = "different collectives", step(
      all_reduce(torch.ones(3)), "all_reduce(float32[3], op=SUM)",
      broadcast(torch.ones(3), first), "broadcast(float32[3], src=" .. first .. ")")},
    {name = "different reduce ops", step(
      all_reduce(torch.ones(3), dist.ReduceOp.SUM), "all_reduce(float32[3], op=SUM)",
      all_reduce(torch.ones(3), dist.ReduceOp.MAX), "all_reduce(float32[3], op=MAX)")},
    {name = "different shapes", step(
      all_reduce(torch.ones(3)), "all_reduce(float32[3], op=SUM)",
      all_reduce(torch.ones(2, 3)), "all_reduce(float32[2,3], op=SUM)")},
    {name = "different dtypes", step(
      all_reduce(torch.ones(3)), "all_reduce(float32[3], op=SUM)",
      all_reduce(torch.ones(3, f64)), "all_reduce(float64[3], op=SUM)")},
    {name = "different roots", step(
      broadcast(torch.ones(2), first), "broadcast(float32[2], src=" .. first .. ")",
      broadcast(torch.ones(2), second), "broadcast(float32[2], src=" .. second .. ")")},
    {name = "different order",
      step(all_reduce(torch.ones(2)), "all_reduce(float32[2], op=SUM)", barrier, "barrier()"),
      step(barrier, "barrier()", all_reduce(torch.ones(2)), "all_reduce(float32[2], op=SUM)")},
  }
end

-- A number that differs when the text differs, for comparing messages across ranks.
local function checksum(text)
  local h = 0
  for i = 1, #text do h = (h * 31 + text:byte(i)) % 2147483647 end
  return h
end

-- Raises unless every member of g passed the same text.
local function same_on_every_member(text, g)
  local sum = torch.tensor({checksum(text)}, {dtype = torch.float64})
  local lo, hi = sum:clone(), sum:clone()
  dist.all_reduce(lo, dist.ReduceOp.MIN, g)
  dist.all_reduce(hi, dist.ReduceOp.MAX, g)
  T.eq(lo:item(), hi:item(), "the message differs between the ranks of the group: " .. text)
end

-- The message of err from "collective #" on, split into what follows the number up to
-- the colon (the label) and the rest (who called what).
local function parts(err)
  local text = err:match("collective #%d+ .*") or err
  local label, calls = text:match("^collective #%d+ (.-: )(.*)$")
  return text, label, calls
end

local cases = 0
for _, c in ipairs(contexts) do
  for _, kind in ipairs(kinds_for(c)) do
    T.test(kind.name .. " in " .. c.name, function()
      if c.member then
        for _, s in ipairs(kind) do
          local err = T.raises(c.on_a and s.a or s.b, "called")
          local text, label, calls = parts(err)
          T.eq(label, c.label, "label")
          T.eq(calls, who(c.a) .. " called " .. s.a_call .. "; " .. who(c.b) .. " called " .. s.b_call)
          same_on_every_member(text, c.group)
        end
        -- the group still works afterwards
        local t = torch.ones(1)
        dist.all_reduce(t, c.group)
        T.eq(t:item(), #c.ranks)
      end
      -- and so does the world, for the ranks outside the group too
      local t = torch.ones(1)
      dist.all_reduce(t)
      T.eq(t:item(), n)
    end)
    cases = cases + 1
  end
end

T.test("the matrix ran every case", function()
  T.eq(cases, 6 * (n == 2 and 2 or 3))
end)

T.test("send and recv of different sizes", function()
  local even = rank % 2 == 0
  local peer = even and rank + 1 or rank - 1
  local err = T.raises(function()
    if even then dist.send(torch.ones(3), peer) else dist.recv(torch.zeros(4), peer) end
  end, "must match")
  T.is_true(err:find("float32[3]", 1, true) and err:find("float32[4]", 1, true), err)
end)

T.test("a recv whose peer waits in a collective instead of sending", function()
  if rank % 2 == 0 then
    local err = T.raises(function() dist.recv(torch.zeros(2), rank + 1) end,
                         "instead of a matching send; the two ranks would wait for each other")
    T.is_true(err:find("rank " .. rank + 1 .. " called barrier() (collective #", 1, true), err)
  end
  dist.barrier() -- the even ranks join the odd ones' barrier: everyone goes on
  local t = torch.ones(1)
  dist.all_reduce(t)
  T.eq(t:item(), n)
end)

-- Defect 9 of docs/reliability.md: a rank that arrived at a collective after the others
-- had given up waiting for it found every fingerprint there, entered Gloo alone and timed
-- out inside it ("timed out inside Gloo", or a 60 s rebuild for new_group). Now whoever
-- gives up marks the missing rank's slot, and the late rank is told at once.
T.test("a rank that arrives after the others gave up is told so at once", function()
  if rank ~= last then
    -- each gives up itself, or first reads the mark of one that did
    local err = T.raises(function() dist.monitored_barrier{timeout = 0.2} end, "0.2 s")
    T.is_true(err:find("rank " .. last .. " did not arrive within 0.2 s", 1, true)
              or err:find("stopped waiting for rank " .. last .. " (it timed out after 0.2 s)", 1, true), err)
  else
    local t0 = torch.time()
    while torch.time() - t0 < 1.0 do end -- the others give up meanwhile
    t0 = torch.time()
    local err = T.raises(function() dist.monitored_barrier{timeout = 0.2} end, "stopped waiting")
    T.is_true(err:find("this rank arrived after rank %d had stopped waiting for it %(rank %d "
                       .. "timed out after 0.2 s%), so the call fails on every rank"), err)
    T.is_true(torch.time() - t0 < 0.5, "told at once, not after a wait")
  end
  local x = torch.ones(2)
  dist.all_reduce(x) -- the next collective works
  T.eq(x:tolist(), {n, n})
end)

-- One rank skips: the last one finishes the script without calling, in every context
-- (each holds it); the others call an all_reduce on each group they are in.
T.test("the last rank finishes the script without calling", function()
  if rank == last then return end
  for _, c in ipairs(contexts) do
    if c.member then
      local callers = {}
      for _, r in ipairs(c.ranks) do
        if r ~= last then callers[#callers + 1] = r end
      end
      local err = T.raises(function() dist.all_reduce(torch.ones(5), c.group) end, "called")
      local _, label, calls = parts(err)
      T.eq(label, c.label, "label in " .. c.name)
      T.eq(calls, who(callers) .. " called all_reduce(float32[5], op=SUM); rank " .. last
                  .. " called nothing and finished the chunk", "in " .. c.name)
    end
  end
end)

-- Defect 16 of docs/reliability.md: a wait that timed out just as the last missing ranks
-- finished the chunk said "ranks  did not arrive" (nobody). Rank 0 calls monitored_barrier
-- with a timeout shorter than one wait slice until the others, done with the script, are
-- no longer missing: then it is a mismatch naming them.
T.test("a timeout as the missing ranks finish names them as finished", function()
  if rank ~= 0 then return end
  local err
  for _ = 1, 600 do -- each try waits at least 50 ms
    err = T.raises(function() dist.monitored_barrier{timeout = 0.01} end, "of this chunk")
    if not err:find("%d did not arrive") then break end
  end
  local _, label, calls = parts(err)
  T.eq(label, "of this chunk: ", err)
  T.eq(calls, "rank 0 called monitored_barrier(); " .. who({table.unpack(contexts[1].ranks, 2)})
              .. " called nothing and finished the chunk")
end)

T.done()
