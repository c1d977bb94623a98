-- optim.lua — torch.optim for Lua: SGD, Adam and AdamW with PyTorch's options, param
-- groups, zero_grad, step and state_dict / load_state_dict.
--
-- The update itself is one C call per param group (src/lua/l_nn.c over src/nn/optim.c):
-- the optimizer keeps its state tensors in lists parallel to each group's params, which
-- the C step reads, fills on first use and updates, so a step allocates nothing in Lua.
local torch = require "torch"
local util = require "torch.util"
local raise = util.raise
local core = require "ddp.nn_core"

local optim = {}

local Optimizer = {}
Optimizer.__index = Optimizer
optim.Optimizer = Optimizer

local REQUIRED = {} -- marks a default the caller must give (SGD's lr)

-- Raises the dot-for-colon error (`opt.step()` for `opt:step()`) unless self is an
-- optimizer: every public method starts with this one test.
local function need_optimizer(self, method, args)
  if type(self) ~= "table" or rawget(self, "param_groups") == nil then
    util.dot_call_error(method, "opt", "optimizer", self, args)
  end
end

-- Names learners reach for, from other libraries or by guess, and the option meant.
local OPTION_ALIASES = {
  learning_rate = "lr", lrate = "lr", learningrate = "lr", LR = "lr", alpha = "lr",
  beta1 = "betas", beta2 = "betas", beta = "betas", epsilon = "eps",
  wd = "weight_decay", decay = "weight_decay", l2 = "weight_decay", mom = "momentum",
}

-- The option names of `defaults`, sorted, for messages.
local function option_names(defaults)
  local names = {}
  for k in pairs(defaults) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Checks what a learner passes as params and opts, with a message that says what to
-- type instead for each usual mistake (Python's keyword arguments have no Lua twin, so
-- options go in a table by name).
local function check_arguments(name, params, opts, defaults)
  local example = "optim." .. name .. "(model:parameters(), {lr=" ..
                  (type(opts) == "number" and tostring(opts) or "0.01") .. "})"
  if type(params) == "function" then
    raise(name .. ": params must be a list of tensors, got a function; call it: " .. example)
  elseif util.describe(params) == "a module" then
    raise(name .. ": params must be a list of tensors, got a module; pass its parameters: " .. example)
  elseif torch.is_tensor(params) then
    raise(name .. ": params must be a list of tensors, got one tensor; put it in a list: optim." ..
          name .. "({t}, {lr=0.01})")
  elseif type(params) ~= "table" then
    raise(name .. ": params must be a list of tensors (e.g. model:parameters()), got " .. type(params))
  elseif params[1] == nil and next(params) ~= nil and params.params == nil then
    raise(name .. ": the first argument is the list of parameters and the second the options: " .. example)
  end
  if type(opts) == "number" then
    raise(name .. ": options go in a table by name: " .. example)
  elseif opts ~= nil and type(opts) ~= "table" then
    raise(name .. ": the second argument is a table of options, e.g. {lr=0.01}; got " .. util.describe(opts))
  end
  for k, v in pairs(opts or {}) do
    if type(k) ~= "string" then
      raise(name .. ": options go in a table by name, e.g. {lr=" .. tostring(v) .. "}, not as a list")
    elseif defaults[k] == nil then
      local hint = OPTION_ALIASES[k] and defaults[OPTION_ALIASES[k]] ~= nil
                   and ("; did you mean '" .. OPTION_ALIASES[k] .. "'?") or ""
      raise(name .. ": unknown option '" .. k .. "' (" .. name .. " takes " ..
            option_names(defaults) .. ")" .. hint)
    end
  end
end

-- Refuses options of the wrong type before any arithmetic meets them: `types` maps each
-- option to "number" or "boolean"; betas must be a list of two numbers.
local function check_types(name, g, types)
  for k, want in pairs(types) do
    local v = g[k]
    if type(v) ~= want then
      raise(string.format("%s: option '%s' must be a %s, got %s", name, k, want, util.describe(v)))
    end
  end
  if g.betas ~= nil then
    local b = g.betas
    if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
      raise(name .. ": option 'betas' must be a list of two numbers, e.g. {0.9, 0.999}; got " ..
            util.describe(b))
    end
  end
end

-- Makes the optimizer `cls` over params (a list of tensors, or a list of groups
-- {params = {...}, lr = ...}) with `defaults` overridden by opts.
local function new_optimizer(cls, name, params, opts, defaults)
  check_arguments(name, params, opts, defaults)
  opts = opts or {}
  local self = setmetatable({name = name, defaults = {}, param_groups = {}, _state = {}}, cls)
  for k, v in pairs(defaults) do
    local o = opts[k]
    if o == nil then o = v end
    self.defaults[k] = o
  end
  local groups = params
  if params[1] ~= nil and not torch.is_tensor(params[1]) then
    if type(params[1]) ~= "table" or params[1].params == nil then
      raise(name .. ": params must be tensors or groups like {params = {...}, lr = ...}")
    end
  else
    groups = {{params = params}}
  end
  for _, g in ipairs(groups) do self:add_param_group(g) end
  if #self.param_groups == 0 or #self.param_groups[1].params == 0 then
    raise(name .. ": optimizer got an empty parameter list")
  end
  return self
end

-- add_param_group{params = {...}, lr = ...}: missing options come from the defaults.
function Optimizer:add_param_group(g)
  need_optimizer(self, "add_param_group", "{params = {...}}")
  if type(g) ~= "table" or type(g.params) ~= "table" then
    raise(self.name .. ": a parameter group is a table like {params = {...}, lr = 0.01}")
  end
  local known = {"params"}
  for k in pairs(self.defaults) do known[#known + 1] = k end
  table.sort(known)
  util.check_options(g, self.name .. " parameter group", known)
  local group = {}
  for k, v in pairs(g) do group[k] = v end
  local list = {}
  for i, p in ipairs(g.params) do
    if not torch.is_tensor(p) then
      raise(self.name .. ": parameter " .. i .. " is a " .. type(p) .. ", expected a tensor")
    end
    list[i] = p
  end
  group.params = list
  for k, v in pairs(self.defaults) do
    if group[k] == nil then group[k] = v end
    if group[k] == REQUIRED then -- PyTorch's words, then what to type
      raise(self.name .. ": " .. k .. " is required: parameter group didn't specify a value of " ..
            "required optimization parameter " .. k .. "; give it in the options, e.g. optim." ..
            self.name .. "(model:parameters(), {" .. k .. "=0.01})")
    end
  end
  self:_check_group(group)
  self.param_groups[#self.param_groups + 1] = group
  self._state[#self.param_groups] = {a = {}, b = {}, steps = {}}
end

-- zero_grad(set_to_none=true): grads to nil, as PyTorch does by default.
function Optimizer:zero_grad(set_to_none)
  need_optimizer(self, "zero_grad")
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if set_to_none == false then
        local grad = p.grad
        if grad then grad:zero_() end
      else
        p.grad = nil
      end
    end
  end
end

-- step(closure?): one update of every parameter that has a grad.
function Optimizer:step(closure)
  if type(self) ~= "table" then need_optimizer(self, "step") end -- opt.step() or opt.step(fn)
  local loss
  if closure then loss = torch.enable_grad(closure) end
  for i, g in ipairs(self.param_groups) do self:_step_group(g, self._state[i]) end
  return loss
end

-- state_dict(): {state = {[0] = {...}, ...}, param_groups = {{lr=..., params = {0, 1}}}},
-- indices counting the params of all groups from 0, as PyTorch.
function Optimizer:state_dict()
  need_optimizer(self, "state_dict")
  local state, groups, index = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local st = self._state[gi]
    local ids = {}
    for pi in ipairs(g.params) do
      ids[pi] = index
      local s = self:_param_state(st, pi)
      if s then state[index] = s end
      index = index + 1
    end
    local copy = {}
    for k, v in pairs(g) do if k ~= "params" then copy[k] = v end end
    copy.params = ids
    groups[gi] = copy
  end
  return {state = state, param_groups = groups}
end

-- load_state_dict(sd): hyper-parameters and state from sd (made by state_dict()).
function Optimizer:load_state_dict(sd)
  need_optimizer(self, "load_state_dict", "sd")
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    raise("load_state_dict: expected a table with 'state' and 'param_groups'")
  end
  if #sd.param_groups ~= #self.param_groups then
    raise("load_state_dict: loaded state dict has a different number of parameter groups")
  end
  for gi, g in ipairs(self.param_groups) do
    if #sd.param_groups[gi].params ~= #g.params then
      raise("load_state_dict: loaded state dict contains a parameter group that doesn't match the size of optimizer's group")
    end
  end
  for gi, g in ipairs(self.param_groups) do
    local saved = sd.param_groups[gi]
    for k, v in pairs(saved) do
      if k ~= "params" then g[k] = v end
    end
    local st = {a = {}, b = {}, steps = {}}
    for pi, p in ipairs(g.params) do
      local s = sd.state[saved.params[pi]]
      if s then self:_set_param_state(st, pi, s, p) end
    end
    self._state[gi] = st
  end
end

-- A copy of a saved state tensor with the param's dtype, owned by the optimizer.
local function adopt(t, p)
  return t:detach():to(p.dtype):clone()
end

-- ---- SGD ------------------------------------------------------------------------------

local SGD = {}
SGD.__index = SGD
optim.SGD = SGD

-- optim.SGD(params, {lr=, momentum=0, dampening=0, weight_decay=0, nesterov=false})
setmetatable(SGD, {__index = Optimizer, __call = function(cls, params, opts)
  return new_optimizer(cls, "SGD", params, opts,
                       {lr = REQUIRED, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false})
end})

function SGD:_check_group(g)
  check_types("SGD", g, {lr = "number", momentum = "number", dampening = "number",
                         weight_decay = "number", nesterov = "boolean"})
  if g.lr < 0 then raise("SGD: invalid learning rate: " .. g.lr) end
  if g.momentum < 0 then raise("SGD: invalid momentum value: " .. g.momentum) end
  if g.weight_decay < 0 then raise("SGD: invalid weight_decay value: " .. g.weight_decay) end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    raise("SGD: Nesterov momentum requires a momentum and zero dampening")
  end
end

function SGD:_step_group(g, st)
  core._sgd_step(g.params, st.a, g.lr, g.momentum, g.dampening, g.weight_decay, g.nesterov)
end

function SGD:_param_state(st, i)
  if st.a[i] then return {momentum_buffer = st.a[i]} end
end

function SGD:_set_param_state(st, i, s, p)
  if s.momentum_buffer then st.a[i] = adopt(s.momentum_buffer, p) end
end

-- ---- Adam / AdamW ---------------------------------------------------------------------

local function make_adam(name, default_wd, decoupled)
  local cls = {}
  cls.__index = cls
  setmetatable(cls, {__index = Optimizer, __call = function(c, params, opts)
    return new_optimizer(c, name, params, opts,
                         {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = default_wd,
                          amsgrad = false})
  end})
  function cls:_check_group(g)
    check_types(name, g, {lr = "number", eps = "number", weight_decay = "number", amsgrad = "boolean"})
    if g.lr < 0 then raise(name .. ": invalid learning rate: " .. g.lr) end
    if g.eps < 0 then raise(name .. ": invalid epsilon value: " .. g.eps) end
    local b1, b2 = g.betas[1], g.betas[2]
    if not (b1 and b1 >= 0 and b1 < 1) then raise(name .. ": invalid beta parameter at index 0: " .. tostring(b1)) end
    if not (b2 and b2 >= 0 and b2 < 1) then raise(name .. ": invalid beta parameter at index 1: " .. tostring(b2)) end
    if g.weight_decay < 0 then raise(name .. ": invalid weight_decay value: " .. g.weight_decay) end
    if g.amsgrad then raise(name .. ": amsgrad is not supported") end
  end
  function cls:_step_group(g, st)
    core._adam_step(g.params, st.a, st.b, st.steps, g.lr, g.betas[1], g.betas[2], g.eps,
                    g.weight_decay, decoupled)
  end
  function cls:_param_state(st, i)
    if st.steps[i] then return {step = st.steps[i], exp_avg = st.a[i], exp_avg_sq = st.b[i]} end
  end
  function cls:_set_param_state(st, i, s, p)
    local step = s.step
    if torch.is_tensor(step) then step = step:item() end
    st.steps[i] = math.tointeger(step) or math.floor(step)
    st.a[i] = adopt(s.exp_avg, p)
    st.b[i] = adopt(s.exp_avg_sq, p)
  end
  return cls
end

-- optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0})
optim.Adam = make_adam("Adam", 0, false)
-- optim.AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=1e-2})
optim.AdamW = make_adam("AdamW", 1e-2, true)

return optim
