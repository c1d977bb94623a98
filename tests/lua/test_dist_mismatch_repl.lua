-- test_dist_mismatch_repl.lua — "one rank skips" in REPL chunks, in every context of
-- test_dist_mismatch.lua (the world; subgroups {0,1} on 2 ranks, {1,2,3} and {0,3} on 4):
-- the ranks that call are told which ranks called nothing and finished the chunk, and the
-- next chunk's collectives on the group and on the world work. Then the ranks that skipped
-- a subgroup's collective go on to one of the world: each side waits for the other, which
-- is told at once (reliability defect 17), not at the watchdog. This test runs on one rank
-- and starts its own REPLs of 2 and 4 ranks. (A script, one chunk, is in
-- test_dist_mismatch.lua; chunks sent with :on in tests/e2e/test_repl_mismatch_on.sh.)
local T = require "support"

-- Runs `ddplab -n N -i` on the given lines; returns its output. The collective timeout is
-- 30 s: had a rank waited for the watchdog, the message would say "did not arrive", which
-- the checks refuse.
local function repl(n, lines)
  return (T.run_ddplab("-n " .. n .. " -i --collective-timeout 30", table.concat(lines, "\n") .. "\n",
                       {"COLUMNS=400"}))
end

-- "rank 2" or "ranks 0,2", as the messages name ranks.
local function who(list)
  return (#list == 1 and "rank " or "ranks ") .. table.concat(list, ",")
end

-- A Lua condition true on the ranks of list: "(r == 1 or r == 3)".
local function on(list)
  local terms = {}
  for i, r in ipairs(list) do terms[i] = "r == " .. r end
  return "(" .. table.concat(terms, " or ") .. ")"
end

for _, n in ipairs({2, 4}) do
  local world = {}
  for r = 0, n - 1 do world[r + 1] = r end
  local contexts = {{name = "the world", ranks = world, var = "nil"}}
  local lines = {'dist.init_process_group{backend = "gloo"}', "r = dist.get_rank()"}
  for i, list in ipairs(n == 2 and {{0, 1}} or {{1, 2, 3}, {0, 3}}) do
    local var = "g" .. i
    contexts[#contexts + 1] = {name = "group {" .. table.concat(list, ",") .. "}", ranks = list,
                               var = var}
    lines[#lines + 1] = var .. " = dist.new_group({" .. table.concat(list, ", ") .. "})"
  end
  -- side a: every other member, from the first; side b: the rest
  for _, c in ipairs(contexts) do
    c.a, c.b = {}, {}
    for i, r in ipairs(c.ranks) do table.insert(i % 2 == 1 and c.a or c.b, r) end
    c.label = c.var == "nil" and "collective #1 of this chunk: "
              or "collective #1 of this chunk in group (" .. who(c.ranks) .. "): "
  end
  for _, c in ipairs(contexts) do
    local g = c.var
    lines[#lines + 1] = "if " .. on(c.a) .. " then dist.all_reduce(torch.ones(3), " .. g .. ") end"
    lines[#lines + 1] = "if " .. on(c.ranks) .. " then t = torch.ones(1); dist.all_reduce(t, " .. g
                        .. "); print('" .. c.name .. " after the skip: ' .. t:item()) end"
    lines[#lines + 1] = "t = torch.ones(1); dist.all_reduce(t); print('the world after the skip in "
                        .. c.name .. ": ' .. t:item())"
    if c.var ~= "nil" then -- side b skips the group's collective and calls the world's
      lines[#lines + 1] = "if " .. on(c.a) .. " then dist.all_reduce(torch.ones(3), " .. g
                          .. ") end; dist.all_reduce(torch.ones(1))"
      lines[#lines + 1] = "if " .. on(c.ranks) .. " then t = torch.ones(1); dist.all_reduce(t, "
                          .. g .. "); print('" .. c.name .. " after the crossed wait: ' .. t:item()) end"
      lines[#lines + 1] = "t = torch.ones(1); dist.all_reduce(t); print('the world after the "
                          .. "crossed wait in " .. c.name .. ": ' .. t:item())"
    end
  end
  local out = repl(n, lines)

  for _, c in ipairs(contexts) do
    T.test(n .. " ranks: one side skips in " .. c.name, function()
      T.has(out, "[" .. table.concat(c.a, ",") .. "] error: stdin:1: " .. c.label .. who(c.a)
                 .. " called all_reduce(float32[3], op=SUM); " .. who(c.b)
                 .. " called nothing and finished the chunk")
      T.has(out, c.name .. " after the skip: " .. #c.ranks .. ".0")
      T.has(out, "the world after the skip in " .. c.name .. ": " .. n .. ".0")
    end)
    if c.var ~= "nil" then
      T.test(n .. " ranks: the skipping side calls the world's collective, in " .. c.name, function()
        -- the first rank to see it names where the other side waits (the group's call or
        -- the world's); the others may see that rank finish the chunk first
        local found = false
        for line in out:gmatch("[^\n]+") do
          if line:find("in group (" .. who(c.ranks) .. ")", 1, true)
             and line:find("which this rank has not called: each waits for the other", 1, true) then
            found = true
          end
        end
        T.is_true(found, "no rank said where the other side waits, in:\n" .. out)
        T.has(out, c.name .. " after the crossed wait: " .. #c.ranks .. ".0")
        T.has(out, "the world after the crossed wait in " .. c.name .. ": " .. n .. ".0")
      end)
    end
  end
  T.test(n .. " ranks: no rank waited for the watchdog", function()
    T.lacks(out, "did not arrive")
  end)
end

T.done()
