-- Lesson source shared by the lessons of the course, required as
-- `local shared = require("lessons.shared")`: the tutorial's model (spliced into the
-- setups and texts of lessons 04-09, so it is spelt once) and the helpers their checks
-- share. Not a lesson: its name starts with no number, so
-- :lessons does not list it. A teacher's own lesson may use it or not.
local M = {}

-- The seed tutorial's two-layer model, as the learner types it.
M.LINEAR_MODEL = [[
LinearModel = nn.Module:extend("LinearModel")
function LinearModel:__init()
  self.fc1 = nn.Linear(5, 10)
  self.fc2 = nn.Linear(10, 5)
end
function LinearModel:forward(x)
  return self.fc2(torch.relu(self.fc1(x)))
end
]]

-- ---- helpers of the lessons' checks ----------------------------------------------------

-- A message in both languages: msg("text", "文本").
function M.msg(en, zh) return { en = en, zh = zh } end

-- The largest absolute difference of two tensors, in float64.
function M.max_diff(a, b) return (a:double() - b:double()):abs():max():item() end

-- Detached copies of a module's parameters, or nil when m is not a module.
function M.params_of(m)
  if type(m) ~= "table" or not nn.is_module(m) then return nil end
  local out = {}
  for i, p in ipairs(m:parameters()) do out[i] = p:detach() end
  return out
end

-- Whether every rank's list of tensors equals rank 0's (c is the check context); when not,
-- also the first rank that differs.
function M.all_equal(c, list)
  local all = c.gather(list)
  for r = 1, #all do
    if all[r] == nil or all[1] == nil or #all[r] ~= #all[1] then return false, r - 1 end
    for i = 1, #all[1] do
      if not c.equal(all[r][i], all[1][i]) then return false, r - 1 end
    end
  end
  return true
end

-- One process, the whole batch (the globals X, Y), `steps` Adam steps from the global
-- init_state of the tutorial's model: what DDP must equal. Works on functional copies, so
-- nothing of the learner's changes.
function M.single_process(c, steps, lr)
  local sd = c.global("init_state")
  local names = { "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias" }
  local ps = {}
  for i, n in ipairs(names) do ps[i] = nn.Parameter(sd[n]:clone()) end
  local opt = optim.Adam(ps, { lr = lr })
  local F = torch.nn.functional
  local X, Y = c.global("X"), c.global("Y")
  for _ = 1, steps do
    opt:zero_grad()
    F.mse_loss(F.linear(F.relu(F.linear(X, ps[1], ps[2])), ps[3], ps[4]), Y):backward()
    opt:step()
  end
  return ps
end

-- fill = shared.filler(CODE): fill(s) replaces each ${NAME} in a step's text with
-- CODE.NAME, so a text shows the very string that :solution shows and the setup runs.
function M.filler(code)
  return function(s)
    return (s:gsub("%${([%u%d_]+)}", function(k) return assert(code[k], k) end))
  end
end

return M
