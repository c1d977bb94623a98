-- torch/serialization.lua — torch.save(obj, path) and torch.load(path, {map_location}).
--
-- The file's extension picks the format, so files move to and from Python unchanged:
-- `.npy` holds one tensor (numpy), `.safetensors` a table of name -> tensor (a state
-- dict, read by Python's safetensors). A table may also hold values that are not tensors
-- at its top level, such as an optimizer's state dict ({state = {[0] = {...}},
-- param_groups = {{lr = 0.01, ...}}}): each such entry is written as JSON text into the
-- safetensors header's "__metadata__" under its own key (torch/json.lua keeps integer and
-- float, integer keys and odd strings exact), with the tensors nested in it stored as
-- ordinary safetensors entries named by their place ("state[0].exp_avg") and referenced
-- from the JSON. Metadata "ddplab.keys" lists the top-level keys in order, so the same
-- table, in the same order, comes back. Python sees every tensor, and
-- `json.loads(metadata["param_groups"])` gives the groups.
--
-- Writing is atomic (src/tensor/tensor_io.c): a temporary file renamed into place, so a
-- crash leaves the old checkpoint or the new one, never half of one; a second process
-- saving the same path at the same moment is told to save on rank 0 only.
local util = require "torch.util"
local json = require "torch.json"
local ordered = require "torch.ordered"
local core = require "ddp.io_core"

local M = {}

local KEYS = "ddplab.keys" -- metadata: the top-level keys, in order, when any is not a tensor
local RESERVED = {[KEYS] = true, format = true}

local function ends_with(s, suffix)
  return #s >= #suffix and s:sub(-#suffix) == suffix
end

local function kind_of(path, op)
  if ends_with(path, ".npy") then return "npy" end
  if ends_with(path, ".safetensors") then return "safetensors" end
  util.raise(string.format("%s: cannot tell the format of '%s' from its name: use .safetensors "
                           .. "for a table of named tensors (a state dict) or .npy for one tensor",
                           op, path))
end

local function check_path(path, op)
  if type(path) ~= "string" then
    util.raise(string.format("%s: the path must be a string, got %s", op, util.describe(path)))
  end
end

local function check_name(name)
  if name:find("\0", 1, true) then
    util.raise(string.format("save: the name %q holds a NUL byte (\\0); a safetensors file "
                             .. "cannot keep it whole, so choose a name without one", name))
  end
end

-- A tensor as the file stores it: on the CPU (PyTorch's safetensors copies a GPU tensor to
-- the CPU the same way; torch.load's map_location puts it back).
local function on_cpu(t)
  if t.is_cuda then return t:to("cpu") end
  return t
end

-- torch.save(obj, path)
function M.save(obj, path)
  check_path(path, "save")
  local kind = kind_of(path, "save")
  if kind == "npy" then
    if not torch.is_tensor(obj) then
      util.raise(string.format("save: a .npy file holds one tensor, got %s (save a table of "
                               .. "tensors as .safetensors)", util.describe(obj)))
    end
    return core.write_npy(path, on_cpu(obj))
  end
  if torch.is_tensor(obj) or type(obj) ~= "table" then
    util.raise(string.format("save: a .safetensors file holds a table of name -> tensor (like "
                             .. "model:state_dict()), got %s (save one tensor as .npy)",
                             util.describe(obj)))
  end
  -- first the top-level tensors (their names are the file's own), then the rest
  local names, tensors, keys, others, taken = {}, {}, {}, {}, {}
  for k, v in pairs(obj) do
    if type(k) ~= "string" then
      util.raise(string.format("save: every key must be a string name, got a %s key (%s)",
                               type(k), tostring(k)))
    end
    check_name(k)
    keys[#keys + 1] = k
    if torch.is_tensor(v) then
      names[#names + 1], tensors[#tensors + 1] = k, on_cpu(v)
      taken[k] = true
    else
      if RESERVED[k] then
        util.raise(string.format("save: the key '%s' is taken by the file's own metadata; "
                                 .. "rename it", k))
      end
      others[#others + 1] = k
    end
  end
  if #keys == 0 then util.raise("save: the table is empty; there is nothing to save") end
  local meta_keys, meta_values = {}, {}
  local function on_tensor(t, where)
    local name, n = where, 1
    while taken[name] do
      n = n + 1
      name = where .. "#" .. n
    end
    check_name(name)
    taken[name] = true
    names[#names + 1], tensors[#tensors + 1] = name, on_cpu(t)
    return '{"__tensor__":' .. json.encode(name) .. "}"
  end
  for _, k in ipairs(others) do
    meta_keys[#meta_keys + 1] = k
    meta_values[#meta_values + 1] = json.encode(obj[k], k, on_tensor)
  end
  if #others > 0 then
    meta_keys[#meta_keys + 1] = KEYS
    meta_values[#meta_values + 1] = json.encode(keys)
  end
  return core.write_safetensors(path, names, tensors, meta_keys, meta_values)
end

-- The function that puts one loaded tensor where map_location says.
local function placer(map_location)
  if map_location == nil then return function(t) return t end end
  local function to_device(loc)
    if type(loc) ~= "string" then
      util.raise(string.format("load: map_location must name a device (\"cpu\"), a function "
                               .. "or a table, got %s", util.describe(loc)))
    end
    if loc == "cpu" then return function(t) return t end end
    if loc:match("^cuda") then
      if not torch.cuda.is_available() then
        util.raise(string.format("load: map_location '%s': this build of ddplab has no CUDA "
                                 .. "(use map_location = \"cpu\")", loc))
      end
      return function(t) return t:to(loc) end
    end
    util.raise(string.format("load: map_location '%s' is not a device (use \"cpu\" or "
                             .. "\"cuda:N\")", loc))
  end
  local tm = type(map_location)
  if tm == "function" then
    -- as PyTorch: called with the loaded value and where it was saved from ("cpu");
    -- nil keeps it where it is
    return function(t)
      local r = map_location(t, "cpu")
      if r == nil then return t end
      if not torch.is_tensor(r) then
        util.raise(string.format("load: the map_location function returned %s, not a tensor",
                                 util.describe(r)))
      end
      return r
    end
  end
  if tm == "table" then -- {["cpu"] = "cuda:0"}: from the saved location to another
    local to = map_location.cpu
    if to == nil then return function(t) return t end end
    return to_device(tostring(to))
  end
  return to_device(tostring(map_location))
end

-- torch.load(path[, {map_location = ..., weights_only = ...}]) -> tensor (.npy), or the
-- saved table. weights_only is accepted for PyTorch's signature: these files hold no code,
-- so every load is as safe as PyTorch's weights_only = true.
function M.load(path, opts)
  check_path(path, "load")
  util.check_options(opts, "load", {"map_location", "weights_only"})
  if opts and opts.weights_only ~= nil and type(opts.weights_only) ~= "boolean" then
    util.raise(string.format("load: weights_only must be true or false, got %s",
                             util.describe(opts.weights_only)))
  end
  local place = placer(opts and opts.map_location)
  if kind_of(path, "load") == "npy" then return place(core.read_npy(path)) end
  local names, tensors, meta_keys, meta_values = core.read_safetensors(path)
  local by_name = {}
  for i, name in ipairs(names) do by_name[name] = place(tensors[i]) end
  local meta = {}
  for i, k in ipairs(meta_keys) do meta[k] = meta_values[i] end
  local result = ordered.new()
  local function decode(k)
    local ok, v = pcall(json.decode, meta[k], function(name) return by_name[name] end)
    if not ok then
      util.raise(string.format("load: cannot read '%s': its metadata entry '%s' is not what "
                               .. "torch.save writes (%s)", path, k, v))
    end
    return v
  end
  if meta[KEYS] == nil then -- a plain state dict, perhaps written by Python
    for _, name in ipairs(names) do result[name] = by_name[name] end
    return result
  end
  local keys = decode(KEYS)
  if type(keys) ~= "table" then
    util.raise(string.format("load: cannot read '%s': its metadata entry '%s' is not a list",
                             path, KEYS))
  end
  for _, k in ipairs(keys) do
    if meta[k] ~= nil and not RESERVED[k] then
      result[k] = decode(k)
    elseif by_name[k] ~= nil then
      result[k] = by_name[k]
    else
      util.raise(string.format("load: cannot read '%s': '%s' is listed but missing", path, k))
    end
  end
  return result
end

return M
