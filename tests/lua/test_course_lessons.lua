-- ranks: 2 4
-- test_course_lessons.lua — every step of the course's lessons 04-11 (lessons/*.lua):
-- from the step's setup its check fails, after the reference solution it passes, on
-- every rank; every text, hint and title has English and Chinese. Runs the steps with
-- scripts/course_check.lua (the same thing by hand that the engine's --verify-lessons
-- does, and tests/tests.cmake runs too). Steps that need an API this build does not have
-- yet are skipped and listed, and so are the three whose failure needs a REPL chunk
-- boundary (below); the engine's --verify-lessons covers those.
local T = require "support"

local root = os.getenv("DDP_TEST_FIXTURES") .. "/../.."
local run = dofile(root .. "/scripts/course_check.lua")

local has_ddp = nn.DistributedDataParallel ~= nil
local has_data = rawget(_G, "data") ~= nil and data.DistributedSampler ~= nil
local has_generator = torch.Generator ~= nil

-- The steps to run of a lesson of n steps: all but `skip` (a list).
local function all_but(n, skip)
  local steps = {}
  for i = 1, n do steps[i] = true end
  for _, i in ipairs(skip) do steps[i] = nil end
  return steps
end

-- lesson file, and the steps to run (nil: all), given what this build has. Skipped
-- always: steps whose failure is a rank leaving a collective behind at the end of a REPL
-- chunk (lesson 8 step 5, lesson 9 steps 1 and 4): a script is one chunk, so there the
-- other ranks would meet that rank in its next collective instead.
local plan = {
  { "04-forward-backward.lua" },
  { "05-all-reduce.lua" },
  { "06-training-loop.lua" },
  { "07-ddp-wrapper.lua", need = has_ddp },
  { "08-data.lua", partial = not (has_data and has_generator and has_ddp),
    steps = (has_data and has_generator and has_ddp) and all_but(6, { 5 })
      or (has_data and has_generator) and all_but(4, {})
      or has_data and { [1] = true, [4] = true } or {} },
  { "09-pitfalls.lua", steps = has_ddp and all_but(11, { 1, 4 })
      or { [2] = true, [3] = true, [7] = true, [8] = true, [11] = true } },
  { "10-ring-all-reduce.lua" },
  { "11-gpus-and-nodes.lua" },
}

for _, entry in ipairs(plan) do
  local file = entry[1]
  if entry.need == false then
    print("SKIP " .. file .. ": this build lacks the API it teaches")
  else
    if entry.partial then print("PARTIAL " .. file .. ": steps needing missing APIs skipped") end
    T.test(file, function()
      local failed = run(root .. "/lessons/" .. file, entry.steps)
      T.eq(failed, 0, file .. ": failed checks")
    end)
  end
end

T.done()
