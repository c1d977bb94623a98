-- nn.lua — torch.nn for Lua: the Module class that users subclass, the layers (Linear,
-- ReLU, Sequential, ...) and the losses, over the C half in src/lua/l_nn.c.
--
-- A class is made with nn.Module:extend("Name"); calling the class makes an instance and
-- runs its __init. As in PyTorch's __setattr__, assigning a Module or an nn.Parameter to
-- a field of self registers it, in order, so parameters() and state_dict() list them in
-- the order PyTorch would. Registered things live in self._parameters / self._modules
-- (not as raw fields), which is what lets every assignment to them be seen.
local torch = require "torch"
local util = require "torch.util"
local raise = util.raise
local core = require "ddp.nn_core"
local ordered = require "torch.ordered"

local F = core.functional
local nn = {functional = F}

-- ---- parameters ----------------------------------------------------------------------

-- Tensors made parameters by nn.Parameter (weak keys: a parameter no one holds goes away).
local is_param = setmetatable({}, {__mode = "k"})

-- nn.Parameter(t, requires_grad=true): marks t (a leaf; a non-leaf is detached first) as
-- a parameter, so that assigning it to a module registers it.
function nn.Parameter(t, requires_grad)
  if not torch.is_tensor(t) then raise("Parameter: expected a tensor, got " .. type(t)) end
  local p = t.is_leaf and t or t:detach()
  if requires_grad == nil then requires_grad = true end
  if requires_grad and p.dtype.is_floating_point then p.requires_grad = true end
  is_param[p] = true
  return p
end

function nn.is_parameter(t) return is_param[t] == true end

-- ---- Module ---------------------------------------------------------------------------

local Module = {__name = "Module"}
nn.Module = Module

-- The metatables of module instances (one per class, made by instance_metatable). Every
-- public method checks that its self has one, so that `model.state_dict()` (a dot typed
-- for a colon: Lua then passes no model) says what to type instead of failing inside
-- this file. The check is one table lookup, cheap enough for forward.
-- Each maps to its class, so that a class's own methods can check that self is one of
-- theirs (nn.BatchNorm1d.forward(linear, x) would otherwise fail deep inside).
local module_mts = setmetatable({}, {__mode = "k"})
local getmetatable = getmetatable

-- Raises the dot-for-colon error unless self is a module instance.
local function need_module(self, method, args)
  if not module_mts[getmetatable(self)] then
    util.dot_call_error(method, "model", "module", self, args)
  end
end

-- Whether self is an instance of cls or of a class extended from it.
local function is_instance_of(self, cls)
  local c = module_mts[getmetatable(self)]
  while c do
    if c == cls then return true end
    local cmt = getmetatable(c)
    c = cmt and rawget(cmt, "__index")
  end
  return false
end

-- need_module for a method of one class: self must be an instance of cls. var and args
-- show the usual call ("model", "x") in the dot-for-colon error.
local function need_instance(self, cls, method, var, args)
  if is_instance_of(self, cls) then return end
  if not module_mts[getmetatable(self)] then util.dot_call_error(method, var, "module", self, args) end
  raise(string.format("%s: this is %s's %s, and it was given a %s as self; call it on a %s, " ..
                      "as %s:%s(%s)", method, cls.__name, method, module_mts[getmetatable(self)].__name,
                      cls.__name, var, method, args or ""))
end
-- for the classes defined in other files (lua/nn/batchnorm.lua, lua/nn/ddp.lua)
nn._need_instance = need_instance

-- The dot-for-colon error of forward, which a module is usually called for: `model(x)`.
-- `var` and `args` name the usual call ("model", "x" or "criterion", "output, target").
local function forward_dot_call(self, var, args)
  local came = self == nil and "" or (": " .. util.describe(self) .. " came in its place")
  raise(string.format("forward: call it as %s(%s), or %s:forward(%s) with a colon (in Lua, " ..
                      "%s.forward(%s) passes no module%s)", var, args, var, args, var, args, came))
end

-- The self check of a class's forward, the hot path: one lookup when self is one of cls.
local function need_forward_self(self, cls, var, args)
  if is_instance_of(self, cls) then return end
  if not module_mts[getmetatable(self)] then forward_dot_call(self, var, args) end
  need_instance(self, cls, "forward", var, args)
end

local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt ~= nil and rawget(mt, "__ddp_module") == true
end
nn.is_module = is_module

-- Appends name to an order list if it is new.
local function remember(names, map, name)
  if map[name] == nil then
    for _, n in ipairs(names) do if n == name then return end end
    names[#names + 1] = name
  end
end

-- The metatable every instance of class `cls` gets.
local function instance_metatable(cls)
  -- `methods`: the class, and `field_tables`: where parameters, children and buffers live,
  -- for tools (REPL completion) that cannot call __index
  local imt = {__ddp_module = true, __name = cls.__name, methods = cls,
               field_tables = {"_parameters", "_modules", "_buffers"}}
  imt.__index = function(self, k)
    local p = rawget(self, "_parameters")[k]
    if p ~= nil then return p end
    local m = rawget(self, "_modules")[k]
    if m ~= nil then return m end
    local b = rawget(self, "_buffers")[k]
    if b ~= nil then return b end
    if math.type(k) == "integer" then -- seq[0], seq[-1]: children by position, from 0
      local names = rawget(self, "_module_names")
      if k < 0 then k = #names + k end
      local name = names[k + 1]
      return name and rawget(self, "_modules")[name]
    end
    return cls[k]
  end
  imt.__newindex = function(self, k, v)
    local params, mods, bufs = rawget(self, "_parameters"), rawget(self, "_modules"),
                               rawget(self, "_buffers")
    if is_module(v) then
      params[k], bufs[k] = nil, nil
      remember(rawget(self, "_module_names"), mods, k)
      mods[k] = v
    elseif torch.is_tensor(v) and is_param[v] then
      mods[k], bufs[k] = nil, nil
      remember(rawget(self, "_param_names"), params, k)
      params[k] = v
    elseif v == nil and (params[k] ~= nil or mods[k] ~= nil or bufs[k] ~= nil) then
      params[k], mods[k], bufs[k] = nil, nil, nil
    elseif params[k] ~= nil then
      raise(string.format("cannot assign a %s as parameter '%s' (nn.Parameter or nil expected)",
                          torch.is_tensor(v) and "plain tensor" or type(v), k))
    elseif bufs[k] ~= nil then
      bufs[k] = v
    else
      rawset(self, k, v)
    end
  end
  -- model(x) runs forward; looked up without going through __index above, which saves
  -- the hot path a Lua call per module (a forward set on the instance itself still wins)
  imt.__call = function(self, ...) return (rawget(self, "forward") or cls.forward)(self, ...) end
  imt.__tostring = function(self) return self:__repr() end
  module_mts[imt] = cls
  return imt
end

-- Module:extend("Name"): a new class whose methods fall back to this class's.
function Module:extend(name)
  if type(self) ~= "table" or rawget(self, "_instance_mt") == nil then
    raise("extend: call it on a class with a colon, e.g. nn.Module:extend(\"Net\") (in Lua, " ..
          "nn.Module.extend(\"Net\") passes no class)")
  end
  if type(name) ~= "string" then raise("extend: give the class a name, e.g. nn.Module:extend(\"Net\")") end
  local cls = {__name = name}
  cls._instance_mt = instance_metatable(cls)
  return setmetatable(cls, {
    __index = self,
    __call = function(c, ...) return c:new(...) end,
    __tostring = function() return "<class '" .. name .. "'>" end,
  })
end

-- Class:new(...): an instance with empty registries, then Class.__init(self, ...).
function Module:new(...)
  if type(self) ~= "table" or rawget(self, "_instance_mt") == nil then
    raise("new: call the class to make an instance, e.g. Net(...) or Net:new(...) with a colon " ..
          "(in Lua, Net.new(...) passes no class)")
  end
  local inst = setmetatable({
    _parameters = {}, _param_names = {},
    _buffers = {}, _buffer_names = {},
    _modules = {}, _module_names = {},
    training = true,
  }, self._instance_mt)
  local init = self.__init
  if init then init(inst, ...) end
  return inst
end

-- PyTorch's super().__init__(): nothing to do here, kept so that subclasses may call it.
function Module.__init() end

-- nn.Module() itself makes an empty container module, as in PyTorch.
Module._instance_mt = instance_metatable(Module)
setmetatable(Module, {__call = function(c, ...) return c:new(...) end})

function Module:forward()
  if not module_mts[getmetatable(self)] then forward_dot_call(self, "model", "x") end
  raise(self.__name .. ": forward() is not defined; give the class a forward(self, x) method")
end

function Module:register_parameter(name, p)
  need_module(self, "register_parameter", "\"name\", p")
  if p ~= nil and not is_param[p] then p = nn.Parameter(p) end
  remember(self._param_names, self._parameters, name)
  self._parameters[name] = p
end

function Module:register_buffer(name, t)
  need_module(self, "register_buffer", "\"name\", t")
  remember(self._buffer_names, self._buffers, name)
  self._buffers[name] = t
end

function Module:add_module(name, m)
  need_module(self, "add_module", "\"name\", m")
  if type(name) ~= "string" then
    raise("add_module: the first argument is the name, a string (model:add_module(\"fc\", m)); got " ..
          util.describe(name))
  end
  if not is_module(m) then raise("add_module: '" .. tostring(name) .. "' is not a Module") end
  remember(self._module_names, self._modules, name)
  self._modules[name] = m
end
Module.register_module = Module.add_module

-- The second items of a list of {name, value} pairs, as a new list.
local function values_of(pair_list)
  local list = {}
  for i, nv in ipairs(pair_list) do list[i] = nv[2] end
  return list
end

-- named_children(): list of {name, module}, in registration order.
function Module:named_children()
  need_module(self, "named_children")
  local list = {}
  for _, name in ipairs(self._module_names) do
    local m = self._modules[name]
    if m ~= nil then list[#list + 1] = {name, m} end
  end
  return list
end

function Module:children()
  need_module(self, "children")
  return values_of(self:named_children())
end

-- named_modules(): self first (name ""), then every descendant depth-first.
local function walk_modules(m, prefix, seen, out)
  if seen[m] then return end
  seen[m] = true
  out[#out + 1] = {prefix, m}
  for _, nm in ipairs(m:named_children()) do
    walk_modules(nm[2], prefix == "" and nm[1] or (prefix .. "." .. nm[1]), seen, out)
  end
end

function Module:named_modules()
  need_module(self, "named_modules")
  local out = {}
  walk_modules(self, "", {}, out)
  return out
end

function Module:modules()
  need_module(self, "modules")
  return values_of(self:named_modules())
end

-- A list of {name, value} pairs that is also a `for name, value in list do` iterator.
local pair_list_mt = {}
pair_list_mt.__call = function(list, _, prev)
  local i = 1
  if prev ~= nil then
    for j, nv in ipairs(list) do
      if nv[1] == prev then i = j + 1; break end
    end
  end
  local nv = list[i]
  if nv then return nv[1], nv[2] end
end

local function named_members(self, field, names_field, recurse)
  local out, seen = setmetatable({}, pair_list_mt), {}
  local mods = recurse == false and {{"", self}} or self:named_modules()
  for _, pm in ipairs(mods) do
    local prefix, m = pm[1], pm[2]
    local map = rawget(m, field)
    for _, name in ipairs(rawget(m, names_field)) do
      local v = map[name]
      if v ~= nil and not seen[v] then
        seen[v] = true
        out[#out + 1] = {prefix == "" and name or (prefix .. "." .. name), v}
      end
    end
  end
  return out
end

-- named_parameters(): {{"fc1.weight", p}, ...}; also `for name, p in m:named_parameters() do`.
function Module:named_parameters(recurse)
  need_module(self, "named_parameters")
  return named_members(self, "_parameters", "_param_names", recurse)
end

-- parameters(): a Lua list of the parameter tensors, in PyTorch's order.
function Module:parameters(recurse)
  need_module(self, "parameters")
  return values_of(self:named_parameters(recurse))
end

function Module:named_buffers(recurse)
  need_module(self, "named_buffers")
  return named_members(self, "_buffers", "_buffer_names", recurse)
end

function Module:buffers(recurse)
  need_module(self, "buffers")
  return values_of(self:named_buffers(recurse))
end

-- state_dict(): an ordered table (pairs() follows PyTorch's key order, see
-- torch/ordered.lua) of name -> detached tensor sharing the parameter's storage.
function Module:state_dict()
  need_module(self, "state_dict")
  local sd = ordered.new()
  for _, pm in ipairs(self:named_modules()) do
    local prefix, m = pm[1], pm[2]
    prefix = prefix == "" and "" or (prefix .. ".")
    for _, name in ipairs(m._param_names) do
      local p = m._parameters[name]
      if p ~= nil then sd[prefix .. name] = p:detach() end
    end
    for _, name in ipairs(m._buffer_names) do
      local b = m._buffers[name]
      if b ~= nil then sd[prefix .. name] = b:detach() end
    end
  end
  return sd
end

local function quoted(list)
  local q = {}
  for i, k in ipairs(list) do q[i] = '"' .. k .. '"' end
  return table.concat(q, ", ")
end

-- load_state_dict(sd, strict=true): copies every value in; missing keys, unexpected keys
-- and shape mismatches are reported together, in one error, before anything is copied.
function Module:load_state_dict(sd, strict)
  need_module(self, "load_state_dict", "sd")
  if type(sd) ~= "table" then raise("load_state_dict: expected a table of tensors, got " .. type(sd)) end
  if strict == nil then strict = true end
  local own = self:state_dict()
  local missing, unexpected, errors = {}, {}, {}
  for _, k in ipairs(ordered.keys(own)) do
    if sd[k] == nil then missing[#missing + 1] = k end
  end
  for _, k in ipairs(ordered.keys(sd)) do
    local mine, theirs = own[k], sd[k]
    if mine == nil then
      unexpected[#unexpected + 1] = tostring(k)
    elseif not torch.is_tensor(theirs) then
      errors[#errors + 1] = string.format('While copying the parameter named "%s", expected a tensor, got %s.', k, type(theirs))
    elseif not (mine.shape == theirs.shape) then
      errors[#errors + 1] = string.format(
        "size mismatch for %s: copying a param with shape %s from checkpoint, the shape in current model is %s.",
        k, tostring(theirs.shape), tostring(mine.shape))
    end
  end
  if strict then
    if #unexpected > 0 then table.insert(errors, 1, "Unexpected key(s) in state_dict: " .. quoted(unexpected) .. ". ") end
    if #missing > 0 then table.insert(errors, 1, "Missing key(s) in state_dict: " .. quoted(missing) .. ". ") end
  end
  if #errors > 0 then
    raise("Error(s) in loading state_dict for " .. self.__name .. ":\n\t" .. table.concat(errors, "\n\t"))
  end
  torch.no_grad(function()
    for k, mine in pairs(own) do
      local theirs = sd[k]
      if theirs ~= nil then mine:copy_(theirs) end
    end
  end)
  return {missing_keys = missing, unexpected_keys = unexpected}
end

-- zero_grad(set_to_none=true): grads to nil (PyTorch's default), or to zeros.
function Module:zero_grad(set_to_none)
  need_module(self, "zero_grad")
  for _, p in ipairs(self:parameters()) do
    if set_to_none == false then
      local g = p.grad
      if g then g:zero_() end
    else
      p.grad = nil
    end
  end
end

function Module:train(mode)
  need_module(self, "train")
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode) end
  return self
end

function Module:eval()
  need_module(self, "eval")
  return self:train(false)
end

function Module:requires_grad_(on)
  need_module(self, "requires_grad_")
  if on == nil then on = true end
  for _, p in ipairs(self:parameters()) do p.requires_grad = on end
  return self
end

-- apply(fn): fn(m) on every descendant, then on self (as PyTorch).
function Module:apply(fn)
  need_module(self, "apply", "fn")
  if type(fn) ~= "function" then
    raise("apply: expected a function to call on every module, e.g. model:apply(function(m) " ..
          "print(m) end); got " .. util.describe(fn))
  end
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

-- to(dtype | device): converts or moves floating parameters and buffers; parameters are
-- replaced by converted ones (make the optimizer after calling this, as in PyTorch).
function Module:to(target)
  need_module(self, "to", "target")
  for _, m in ipairs(self:modules()) do
    for _, name in ipairs(m._param_names) do
      local p = m._parameters[name]
      if p ~= nil and p.dtype.is_floating_point then
        local q = p:detach():to(target)
        if q.dtype ~= p.dtype or q.device ~= p.device then
          -- in place, as PyTorch's module.to: the Parameter object stays the same, so an
          -- optimizer built before the move still holds it
          p.data = q
          if p.grad ~= nil then p.grad = p.grad:to(target) end
        end
      end
    end
    for _, name in ipairs(m._buffer_names) do
      local b = m._buffers[name]
      if b ~= nil and b.dtype.is_floating_point then m._buffers[name] = b:to(target) end
    end
  end
  return self
end
function Module:double()
  need_module(self, "double")
  return self:to(torch.float64)
end
function Module:float()
  need_module(self, "float")
  return self:to(torch.float32)
end

function Module:extra_repr() return "" end

-- PyTorch's module repr: "Name(extra)" or "Name(\n  (child): ...\n)".
function Module:__repr()
  need_module(self, "__repr")
  local lines = {}
  local extra = self:extra_repr()
  local extra_lines = {}
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do extra_lines[#extra_lines + 1] = line end
  end
  for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
  local children = self:named_children()
  for _, nm in ipairs(children) do
    local s = tostring(nm[2]):gsub("\n", "\n  ")
    lines[#lines + 1] = "(" .. nm[1] .. "): " .. s
  end
  local s = self.__name .. "("
  if #lines > 0 then
    if #extra_lines == 1 and #children == 0 then
      s = s .. extra_lines[1]
    else
      s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
    end
  end
  return s .. ")"
end

-- ---- layers --------------------------------------------------------------------------

local Linear = Module:extend("Linear")
nn.Linear = Linear

-- nn.Linear(in, out, {bias=true, dtype=}) or nn.Linear(in, out, false) (PyTorch's third
-- positional argument is bias): weight (out x in) then bias (out), drawn from the default
-- generator as PyTorch's reset_parameters draws them, bit for bit: the weight by
-- kaiming_uniform_(a=sqrt(5)), the bias uniform in +-1/sqrt(in).
function Linear:__init(in_features, out_features, opts)
  if out_features == nil and (in_features == nil or type(in_features) == "number") then
    raise("Linear: __init__() missing " ..
          (in_features == nil and "2 required positional arguments: 'in_features' and 'out_features'"
                               or "1 required positional argument: 'out_features'") ..
          "; give both sizes, e.g. nn.Linear(5, 10) maps 5 input features to 10 outputs")
  end
  if math.type(in_features) ~= "integer" or math.type(out_features) ~= "integer" then
    local function show(v) return type(v) == "number" and tostring(v) or type(v) end
    raise(string.format("Linear: expected integer sizes, e.g. nn.Linear(5, 10); got nn.Linear(%s, %s)",
                        show(in_features), show(out_features)))
  end
  if in_features < 0 or out_features < 0 then
    raise(string.format("Linear: sizes must be non-negative, got nn.Linear(%d, %d)",
                        in_features, out_features))
  end
  if type(opts) == "boolean" then opts = {bias = opts} end
  if opts ~= nil and type(opts) ~= "table" then
    raise("Linear: the third argument is bias (true or false) or an options table {bias=, dtype=}, got " .. type(opts))
  end
  util.check_options(opts, "Linear", {"bias", "dtype"})
  opts = opts or {}
  self.in_features, self.out_features = in_features, out_features
  local dt = opts.dtype or torch.float32
  -- kaiming_uniform_'s bound, computed in PyTorch's order (gain, std, sqrt(3) * std) so
  -- that it rounds as PyTorch's does; a zero-element weight is left as it is, as there
  local weight = torch.empty(out_features, in_features, {dtype = dt})
  if in_features > 0 and out_features > 0 then
    local a = math.sqrt(5)
    local gain = math.sqrt(2.0 / (1 + a ^ 2))
    local bound = math.sqrt(3.0) * (gain / math.sqrt(in_features))
    weight:uniform_(-bound, bound)
  end
  self.weight = nn.Parameter(weight)
  if opts.bias == false then
    self:register_parameter("bias", nil)
  else
    local bound = in_features > 0 and 1 / math.sqrt(in_features) or 0
    self.bias = nn.Parameter(torch.empty(out_features, {dtype = dt}):uniform_(-bound, bound))
  end
end

function Linear:forward(x)
  need_forward_self(self, Linear, "model", "x")
  if self.weight == nil then -- PyTorch lets m.weight = None through and fails here too
    raise("Linear: weight is nil (was it set to nil?); give it a parameter again, e.g. " ..
          "m.weight = nn.Parameter(torch.randn(" .. self.out_features .. ", " .. self.in_features .. "))")
  end
  return F.linear(x, self.weight, self.bias)
end

function Linear:extra_repr()
  need_instance(self, Linear, "extra_repr", "model")
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features,
                       self.out_features, self.bias ~= nil and "True" or "False")
end

-- Layers without parameters, each a forward and (where PyTorch has one) an extra_repr.
-- `var` and `args` show the usual call in the dot-for-colon error ("model", "x").
local function simple(name, forward, init, extra, var, args)
  local cls = Module:extend(name)
  var, args = var or "model", args or "x"
  cls.forward = function(self, a, b)
    need_forward_self(self, cls, var, args)
    return forward(self, a, b)
  end
  if init then cls.__init = init end
  if extra then
    cls.extra_repr = function(self)
      need_instance(self, cls, "extra_repr", var)
      return extra(self)
    end
  end
  nn[name] = cls
  return cls
end

simple("ReLU", function(_, x) return torch.relu(x) end)
simple("Tanh", function(_, x) return torch.tanh(x) end)
simple("Sigmoid", function(_, x) return torch.sigmoid(x) end)
simple("Identity", function(_, x) return x end)
simple("Flatten", function(self, x)
         if not torch.is_tensor(x) then
           raise("Flatten: forward expects a tensor, got " .. util.describe(x))
         end
         return x:flatten(self.start_dim, self.end_dim)
       end,
       function(self, start_dim, end_dim)
         self.start_dim, self.end_dim = start_dim or 1, end_dim or -1
       end,
       function(self) return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end)
simple("Softmax", function(self, x) return torch.softmax(x, self.dim) end,
       function(self, dim) self.dim = dim end,
       function(self) return "dim=" .. tostring(self.dim) end)
simple("LogSoftmax", function(self, x) return torch.log_softmax(x, self.dim) end,
       function(self, dim) self.dim = dim end,
       function(self) return "dim=" .. tostring(self.dim) end)

-- Losses take {reduction="mean"|"sum"|"none"}.
local function loss_init(self, opts)
  if opts ~= nil and type(opts) ~= "table" then
    raise(string.format("%s: options go in a table, e.g. nn.%s({reduction = \"sum\"}); got %s",
                        self.__name, self.__name, util.describe(opts)))
  end
  util.check_options(opts, self.__name, {"reduction"})
  opts = opts or {}
  local r = opts.reduction or "mean"
  if r ~= "mean" and r ~= "sum" and r ~= "none" then
    raise(string.format("%s: reduction must be \"mean\", \"sum\" or \"none\", got %s", self.__name,
                        type(r) == "string" and ('\"' .. r .. '\"') or util.describe(r)))
  end
  self.reduction = r
end
simple("MSELoss", function(self, input, target) return F.mse_loss(input, target, self.reduction) end,
       loss_init, nil, "criterion", "output, target")
simple("CrossEntropyLoss", function(self, input, target)
  return F.cross_entropy(input, target, self.reduction)
end, loss_init, nil, "criterion", "output, target")

-- nn.Sequential(m1, m2, ...): children named "0", "1", ...; seq[0] is the first.
local Sequential = Module:extend("Sequential")
nn.Sequential = Sequential

function Sequential:__init(...)
  local mods = {...}
  if #mods == 1 and not is_module(mods[1]) and type(mods[1]) == "table" then
    mods = mods[1] -- nn.Sequential({m1, m2}) as well as nn.Sequential(m1, m2)
  end
  for i, m in ipairs(mods) do
    if not is_module(m) then raise("Sequential: argument " .. i .. " is not a Module") end
    self:add_module(tostring(i - 1), m)
  end
end

function Sequential:forward(x)
  if not module_mts[getmetatable(self)] then forward_dot_call(self, "model", "x") end
  for _, name in ipairs(self._module_names) do
    local m = self._modules[name]
    if m ~= nil then x = m(x) end
  end
  return x
end

function Sequential:append(m)
  need_module(self, "append", "m")
  self:add_module(tostring(#self._module_names), m)
  return self
end

-- nn.ModuleList({m1, m2}): children "0", "1", ... without a forward.
local ModuleList = Module:extend("ModuleList")
nn.ModuleList = ModuleList
function ModuleList:__init(list)
  -- the modules are listed before any is appended: ipairs over a module counts its
  -- children from 1 (m[i] counts from 0, so child 0 was lost), and over self it never
  -- ended, as each append made the list longer
  local mods = {}
  if is_module(list) then
    for _, name in ipairs(rawget(list, "_module_names")) do
      mods[#mods + 1] = rawget(list, "_modules")[name]
    end
  else
    for _, m in ipairs(list or {}) do mods[#mods + 1] = m end
  end
  for _, m in ipairs(mods) do self:append(m) end
end
ModuleList.append = Sequential.append

-- Sequential and ModuleList answer # with their number of children.
for _, cls in ipairs({Sequential, ModuleList}) do
  cls._instance_mt.__len = function(self) return #rawget(self, "_module_names") end
end

require("nn.batchnorm")(nn) -- BatchNorm1d, SyncBatchNorm
require("nn.ddp")(nn) -- nn.DistributedDataParallel, nn.utils (lua/nn/ddp.lua)

return nn
