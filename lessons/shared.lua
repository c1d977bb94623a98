-- Lesson source shared by several lessons of the course (lessons 04-09), required as
-- `local shared = require("lessons.shared")` and spliced into their setups and texts, so
-- the tutorial's model is spelt once. Not a lesson: its name starts with no number, so
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

return M
