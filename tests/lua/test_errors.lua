-- test_errors.lua — errors are for learners: wrong argument types are Lua argument
-- errors, core failures carry the core's message (naming the op and the shapes) without
-- C file:line, ragged tables say where, and an error leaves nothing half-done (this file
-- also runs under ASan + LeakSanitizer in CI, so every failing path here must not leak).
local T = require "support"

T.test("wrong argument types are Lua argument errors", function()
  T.raises(function() torch.mm({}, torch.zeros(2, 2)) end, "bad argument #1 to 'mm' (tensor expected, got table")
  T.raises(function() torch.zeros(2, 2):mm(5) end, "tensor expected, got number")
  T.raises(function() torch.zeros("a") end, "bad argument #1 to 'zeros'")
  T.raises(function() torch.add(torch.zeros(2), "x") end, "tensor or number expected")
  T.raises(function() torch.cat({torch.zeros(2), 3}) end, "element 2 of the list is a number")
  T.raises(function() torch.zeros(2):to(42) end, "dtype, device or tensor expected")
  T.raises(function() torch.zeros(2, {dtype = "complex"}) end, "dtype expected")
end)

T.test("core errors name the op and the shapes, without C file:line", function()
  local err = T.raises(function() torch.mm(torch.zeros(4, 5), torch.zeros(10, 5)) end,
                       "mm: (4x5) @ (10x5): inner sizes 5 and 10 differ")
  T.is_true(not err:find("%.c:%d"), "no C position in: " .. err)
  T.raises(function() return torch.zeros(2, 3) + torch.zeros(3, 2) end, "(2x3) and (3x2)")
  T.raises(function() torch.zeros(2):view(3) end, "view")
  T.raises(function() torch.zeros(2, 3):sum(5) end, "out of range")
  T.raises(function() torch.zeros(2):item() end, "one-element")
  T.raises(function() torch.tensor({1, 2}):mean() end, "floating point")
end)

T.test("errors point at the learner's line", function()
  local err = T.raises(function() torch.mm(torch.zeros(1, 2), torch.zeros(3, 1)) end, "mm")
  T.is_true(err:find("test_errors.lua:%d+:") ~= nil, err)
  -- even when the op runs inside a library module (nn.Linear's forward)
  err = T.raises(function() nn.Linear(5, 10)(torch.zeros(3, 4)) end, "linear")
  T.is_true(err:find("test_errors.lua:%d+:") ~= nil, err)
end)

T.test("ragged nested tables say where", function()
  T.raises(function() torch.tensor({{1, 2}, {3}}) end, "t[2] has 1 elements, expected 2")
  T.raises(function() torch.tensor({{1, 2}, 3}) end, "t[2] is a number")
  T.raises(function() torch.tensor({{{1, 2}, {3, 4}}, {{1, 2}, {3}}}) end, "t[2][2] has 1 elements")
  T.raises(function() torch.tensor({1, "a"}) end, "element t[2] is a string")
  T.raises(function() torch.tensor({torch.ones(2), torch.ones(2)}) end, "torch.stack")
  T.eq(torch.tensor({torch.tensor(1.5), 2}):tolist(), {1.5, 2}) -- one-element tensors are fine
end)

T.test("fields and indexing refuse what they cannot do", function()
  T.raises(function() torch.zeros(2).foo = 1 end, "cannot set field 'foo'")
  T.raises(function() return torch.tensor(1.0)[0] end, "0-dim")
  T.raises(function() return #torch.tensor(1.0) end, "0-d")
  T.raises(function() torch.zeros(2).grad = torch.zeros(3) end, "shape")
  T.raises(function() torch.zeros(2).grad = torch.zeros(2, {dtype = torch.float64}) end,
           "grad: assigned grad has dtype float64, but the tensor has dtype float32")
  T.raises(function() torch.zeros(2, 3):t():t():t():view(-1) end, "reshape")
end)

T.test("creation errors", function()
  T.raises(function() torch.zeros(-1) end, "negative")
  T.raises(function() torch.randn(2, {dtype = torch.int64}) end, "floating point")
  T.raises(function() torch.randint(5, 5, {2}) end, "empty range")
  T.raises(function() torch.zeros(2):to("cuda") end, "cuda")
  T.raises(function() torch.zeros(2):softmax() end, "dimension")
end)

T.test("nn errors name what went wrong", function()
  T.raises(function() nn.Linear(5, 10)(torch.zeros(3, 4)) end, "(3x4)")
  T.raises(function() nn.MSELoss()(torch.zeros(3), torch.zeros(4)) end, "mse_loss")
  T.raises(function() nn.CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor({0, 5})) end, "5")
  T.raises(function() nn.Linear(2.5, 3) end, "integer sizes")
  T.raises(function() nn.Sequential(nn.ReLU(), 3) end, "not a Module")
  -- errors raised by the Lua library point at the learner's line too
  local err = T.raises(function() optim.SGD({torch.zeros(1)}, {lr = -1}) end, "invalid learning rate")
  T.is_true(err:find("test_errors.lua:%d+:") ~= nil, err)
  err = T.raises(function() nn.Linear(2.5, 3) end, "integer sizes")
  T.is_true(err:find("test_errors.lua:%d+:") ~= nil, err)
end)

T.test("save and load: wrong kinds of values and files", function()
  T.raises(function() torch.save({a = print}, os.tmpname() .. ".safetensors") end, "'a' is a function")
  T.raises(function() torch.save(torch.zeros(2), "/tmp/x.pt") end, "cannot tell the format")
  T.raises(function() torch.save({a = torch.zeros(1)}, "/tmp/x.npy") end, "holds one tensor")
  T.raises(function() torch.save(torch.zeros(1), "/tmp/x.safetensors") end, "table of name")
  T.raises(function() torch.load("/nonexistent/dir/x.npy") end, "/nonexistent/dir/x.npy")
end)

T.test("a failed op leaves the tensors as they were", function()
  local a = torch.tensor({1.0, 2.0})
  T.raises(function() a:add_(torch.zeros(3)) end, "add")
  T.eq(a:tolist(), {1, 2})
  local x = torch.ones(2, {requires_grad = true})
  T.raises(function() x:mul_(2) end, "mul_")
  T.eq(x:tolist(), {1, 1})
  T.is_true(torch.is_grad_enabled())
end)

T.test("many failing calls in a row (leak check under ASan)", function()
  local failures = 0
  local function count(ok) if not ok then failures = failures + 1 end end
  for _ = 1, 200 do
    count(pcall(torch.mm, torch.zeros(4, 5), torch.zeros(10, 5)))
    count(pcall(torch.tensor, {{1, 2}, {3}}))
    count(pcall(torch.cat, {torch.zeros(2), torch.zeros(2, 2)}))
    count(pcall(function() return torch.ones(3) + torch.ones(4) end))
  end
  collectgarbage()
  T.eq(failures, 800)
end)

T.test("creation errors name no op the learner did not call", function()
  local err = T.raises(function() torch.zeros(-1) end, "negative dimension -1 in size (-1)")
  T.is_true(not err:find("empty"), err)
  err = T.raises(function() torch.ones(2, -3) end, "negative dimension -3 in size (2x-3)")
  T.is_true(not err:find("empty"), err)
  err = T.raises(function() torch.zeros(1e12) end, "size (1000000000000) and dtype float32 is too large")
  T.is_true(not err:find("empty"), err)
  T.raises(function() torch.rand(2 ^ 40, 2 ^ 40) end, "too large")
end)

T.test("sizes, dims and indices from the learner never overflow", function()
  T.raises(function() torch.zeros(4):view(2 ^ 40, 2 ^ 40, 2 ^ 40) end, "view: shape")
  T.raises(function() torch.zeros(4):view(-1, 2 ^ 62, 2 ^ 62) end, "is invalid")
  T.raises(function() torch.zeros(1):expand(2 ^ 62, 2 ^ 62) end, "more elements than a tensor can count")
  T.raises(function() torch.zeros(4):narrow(0, 1, math.maxinteger) end, "exceeds size 4")
  T.raises(function() torch.zeros(4):narrow(0, 0, -1) end, "narrow: length must be non-negative")
  T.raises(function() torch.zeros(4):narrow(0, math.mininteger, 1) end, "start")
  T.raises(function() torch.zeros(4):select(0, math.mininteger) end, "out of range")
  T.raises(function() return torch.zeros(4)[math.maxinteger] end, "out of range")
  T.raises(function() torch.zeros(4):transpose(0, math.mininteger) end, "out of range")
  local long = torch.zeros(1):expand(1 << 62)
  T.raises(function() torch.cat({long, long}) end, "cat: the joined size along dim 0 is too large")
end)

T.test("numbers that cannot be int64 are refused, as in PyTorch", function()
  T.raises(function() torch.tensor({1e300}, {dtype = torch.int64}) end, "cannot be converted to int64 without overflow")
  T.raises(function() torch.tensor({0 / 0}, {dtype = torch.int64}) end, "without overflow")
  T.raises(function() torch.tensor({1, -1 / 0}, {dtype = "long"}) end, "without overflow")
  T.eq(torch.tensor({1.7, -1.7}, {dtype = torch.int64}):tolist(), {1, -1}) -- truncates, as PyTorch
  T.eq(torch.tensor({0 / 0}):long():item(), math.mininteger) -- x86 PyTorch gives this too
end)

T.test("nested tables that share rows cannot overflow the element count", function()
  -- four small tables nested by reference describe 2^64 elements; the count used to wrap
  -- to 0 and the reader then wrote past its buffer (a crash)
  local row = {}
  for i = 1, 65536 do row[i] = 1 end
  local t = row
  for _ = 1, 3 do
    local outer = {}
    for i = 1, 65536 do outer[i] = t end
    t = outer
  end
  T.raises(function() torch.tensor(t) end, "tensor: the nested table holds more than")
end)

T.test("every torch function and Tensor method survives wrong arguments", function()
  -- a sweep of error paths: under ASan + UBSan (the sanitizer build) it found reads of
  -- uninitialised bools and integer overflows; here every failure must also be a Lua
  -- error in words, without a C file:line
  local values = {
    function() return nil end, function() return 1 end, function() return -1 end,
    function() return 2.5 end, function() return 1e300 end, function() return 0 / 0 end,
    function() return math.mininteger end, function() return math.maxinteger end,
    function() return true end, function() return "x" end, function() return {} end,
    function() return {1, 2} end, function() return {dim = 1, keepdim = true} end,
    function() return {dtype = torch.bool} end, function() return {-1} end,
    function() return torch.zeros(2, 3) end, function() return torch.zeros(0) end,
    function() return torch.tensor(1.5) end, function() return torch.tensor({1, 2}) end,
    function() return torch.tensor({true, false}) end,
    function() return torch.ones(3, 1):expand(3, 4) end,
    function() return torch.ones(2, {requires_grad = true}) end,
    function() local t <close> = torch.zeros(2); return t end, -- a released box
  }
  local selves = {
    function() return torch.zeros(2, 3) end, function() return torch.tensor(2.0) end,
    function() return torch.zeros(0, 3) end, function() return torch.arange(6) end,
    function() return torch.tensor({true, false}) end,
    function() return torch.randn(2, 3, {requires_grad = true}) end,
    function() return torch.randn(4, 3):t() end,
  }
  local skip = {manual_seed = true, set_printoptions = true, save = true, load = true}
  local failures = 0
  local function run(f, ...)
    local ok, r = pcall(f, ...)
    if ok then
      if torch.is_tensor(r) then local _ = tostring(r) end
      return
    end
    failures = failures + 1
    T.is_true(type(r) == "string", "error value is a " .. type(r))
    T.is_true(not r:find("%.c:%d"), "C position in: " .. r)
  end
  local names, methods = {}, {}
  for k, v in pairs(torch) do
    if type(v) == "function" and not skip[k] then names[#names + 1] = k end
  end
  for k, v in pairs(torch.Tensor) do if type(v) == "function" then methods[#methods + 1] = k end end
  table.sort(names)
  table.sort(methods)
  for _, name in ipairs(names) do
    for i = 1, #values do
      run(torch[name], values[i]())
      for j = 1, #values, 4 do run(torch[name], values[i](), values[j]()) end
    end
  end
  for _, m in ipairs(methods) do
    for _, make in ipairs(selves) do
      local function call(...) local t = make(); return t[m](t, ...) end
      for i = 1, #values do
        run(call, values[i]())
        for j = 1, #values, 5 do run(call, values[i](), values[j]()) end
      end
    end
  end
  collectgarbage()
  T.is_true(failures > 1000, "the sweep reached the error paths (" .. failures .. " errors)")
end)

-- ---- beginners' mistakes: Python habits typed into Lua ---------------------------------
-- Each must fail with a message that says what to type instead, positioned at the
-- learner's line, never "attempt to index a nil value (local 'self')" from lua/nn.lua.

-- Raises like T.raises, and checks the error points at this file and not at the library.
local function learner_error(fn, text)
  local err = T.raises(fn, text)
  T.is_true(err:find("test_errors.lua:%d+:") ~= nil, "not at the learner's line: " .. err)
  T.is_true(err:find("nn.lua", 1, true) == nil and err:find("optim.lua", 1, true) == nil,
            "names the library: " .. err)
  T.is_true(err:find("attempt to", 1, true) == nil, "a raw Lua error: " .. err)
  return err
end

T.test("tensor methods called with a dot say to use a colon", function()
  local t, x = torch.ones(2, 2, {requires_grad = true}), torch.zeros(4, 5)
  local loss = (t * 2):sum()
  learner_error(function() loss.backward() end,
                "backward: call it as t:backward(), with a colon (in Lua, t.backward() passes no tensor)")
  learner_error(function() t.sum() end, "sum: call it as t:sum(), with a colon")
  learner_error(function() t.size() end, "size: call it as t:size(), with a colon")
  learner_error(function() t.item() end, "item: call it as t:item()")
  learner_error(function() t.zero_() end, "zero_: call it as t:zero_()")
  learner_error(function() t.free() end, "free: call it as t:free()")
  -- an argument came where the tensor goes: a Lua argument error that names the colon
  learner_error(function() x.view(4, 5) end,
                "bad argument #1 to 'view' (tensor expected, got number; a method is called with a colon: t:view(...))")
  learner_error(function() x.mul(2) end, "a method is called with a colon: t:mul(...)")
  -- the tensor came as the only argument of a two-operand method
  learner_error(function() x.add(x) end,
                "add: missing an operand; call it as t:add(other), with a colon (in Lua, t.add(other) passes only other)")
  learner_error(function() t.mm(t) end, "mm: missing an operand; call it as t:mm(other)")
  learner_error(function() x.copy_(x) end, "copy_: missing an operand")
  -- written with a colon, a missing operand stays a plain argument error
  T.raises(function() x:add() end, "bad argument #1 to 'add' (tensor or number expected, got no value)")
  T.raises(function() t:mm() end, "bad argument #1 to 'mm' (tensor expected, got no value)")
  -- released tensors still say so
  local r = torch.ones(1)
  r:free()
  T.raises(function() r:sum() end, "released")
  r:free() -- twice is harmless
end)

T.test("every Tensor method called with a dot names the colon", function()
  local count = 0
  for name, f in pairs(torch.Tensor) do
    -- no arguments at all: t.name()
    local err = T.raises(function() f() end, "(), with a colon (in Lua, t.", name)
    T.is_true(err:find(": call it as t:", 1, true) ~= nil, name .. ": " .. err)
    -- an argument where the tensor goes: t.name(4, 5)
    T.raises(function() f(4, 5) end, "a method is called with a colon: t:", name)
    count = count + 1
  end
  T.is_true(count > 90, "swept " .. count .. " methods")
end)

T.test("module, loss and optimizer methods called with a dot say to use a colon", function()
  local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
  local criterion = nn.MSELoss()
  local opt = optim.Adam(model:parameters(), {lr = 0.001})
  learner_error(function() model.state_dict() end,
                "state_dict: call it as model:state_dict(), with a colon (in Lua, model.state_dict() passes no module)")
  learner_error(function() model.parameters() end, "parameters: call it as model:parameters(), with a colon")
  learner_error(function() model.named_parameters() end, "call it as model:named_parameters()")
  learner_error(function() model.zero_grad() end, "call it as model:zero_grad()")
  learner_error(function() model.train() end, "call it as model:train()")
  learner_error(function() model.eval() end, "call it as model:eval()")
  learner_error(function() model.load_state_dict(model:state_dict()) end,
                "call it as model:load_state_dict(sd), with a colon")
  learner_error(function() model.forward(torch.zeros(2, 5)) end,
                "forward: call it as model(x), or model:forward(x) with a colon (in Lua, model.forward(x) passes no module: a tensor came in its place)")
  learner_error(function() model[0].forward(torch.zeros(2, 5)) end, "forward: call it as model(x)")
  learner_error(function() model[1].forward(torch.zeros(2, 5)) end, "forward: call it as model(x)")
  learner_error(function() criterion.forward(torch.zeros(2), torch.zeros(2)) end,
                "forward: call it as criterion(output, target)")
  learner_error(function() opt.step() end,
                "step: call it as opt:step(), with a colon (in Lua, opt.step() passes no optimizer)")
  learner_error(function() opt.zero_grad() end, "zero_grad: call it as opt:zero_grad(), with a colon")
  learner_error(function() opt.state_dict() end, "call it as opt:state_dict()")
  learner_error(function() nn.Module.extend("Net") end, "nn.Module:extend(\"Net\")")
  learner_error(function() nn.Linear.new(5, 10) end, "new: call the class to make an instance")
  -- a sweep: every method of nn.Module, nn.Linear and the optimizers, called with a dot
  local classes = {{nn.Module, "model"}, {nn.Linear, "model"}, {nn.Flatten, "model"},
                   {nn.MSELoss, "criterion"}, {optim.Optimizer, "opt"}}
  for _, cv in ipairs(classes) do
    for name, f in pairs(cv[1]) do
      if type(f) == "function" and name ~= "__init" and not (cv[1] == nn.Module and name == "extra_repr") then
        local ok, err = pcall(function() local r = f(); return r end)
        T.is_true(not ok and tostring(err):find("with a colon", 1, true) ~= nil and
                  not tostring(err):find("attempt to", 1, true), name .. ": " .. tostring(err))
      end
    end
  end
  -- a user's own class gets the same for the inherited methods
  local Net = nn.Module:extend("Net")
  function Net:__init() self.fc1 = nn.Linear(2, 2) end
  local net = Net()
  learner_error(function() net.parameters() end, "call it as model:parameters()")
  -- and the colon forms all still work
  T.eq(#model:parameters(), 4)
  T.eq(#net:parameters(), 2)
  opt:zero_grad()
  criterion(model(torch.zeros(2, 5)), torch.zeros(2, 5)):backward()
  opt:step()
end)

T.test("optimizer options: what to type instead", function()
  local model = nn.Linear(5, 2)
  local params = model:parameters()
  learner_error(function() optim.Adam(params, 0.001) end,
                "Adam: options go in a table by name: optim.Adam(model:parameters(), {lr=0.001})")
  learner_error(function() optim.SGD(params, 0.1) end, "optim.SGD(model:parameters(), {lr=0.1})")
  learner_error(function() optim.Adam(params, {0.001}) end, "options go in a table by name, e.g. {lr=0.001}")
  learner_error(function() optim.Adam(params, "fast") end, "the second argument is a table of options")
  learner_error(function() optim.Adam(params, {learning_rate = 0.01}) end,
                "Adam: unknown option 'learning_rate' (Adam takes amsgrad, betas, eps, lr, weight_decay); did you mean 'lr'?")
  learner_error(function() optim.Adam(params, {lr = "0.01"}) end, "Adam: option 'lr' must be a number, got a string")
  learner_error(function() optim.Adam(params, {betas = 0.9}) end,
                "option 'betas' must be a list of two numbers, e.g. {0.9, 0.999}")
  learner_error(function() optim.SGD(params, {lr = 0.1, nesterov = 1}) end, "option 'nesterov' must be a boolean")
  -- missing lr: PyTorch's words, then what to type
  learner_error(function() optim.SGD(params) end,
                "SGD: lr is required: parameter group didn't specify a value of required optimization parameter lr; " ..
                "give it in the options, e.g. optim.SGD(model:parameters(), {lr=0.01})")
  -- what comes as params
  learner_error(function() optim.Adam(model.parameters, {lr = 0.1}) end, "got a function; call it")
  learner_error(function() optim.Adam(model, {lr = 0.1}) end, "got a module; pass its parameters")
  learner_error(function() optim.Adam({lr = 0.1}) end, "the first argument is the list of parameters")
  learner_error(function() optim.Adam(model.weight, {lr = 0.1}) end, "got one tensor; put it in a list")
  learner_error(function() optim.Adam({}, {lr = 0.1}) end, "optimizer got an empty parameter list")
end)

T.test("nn constructors: missing and wrong arguments", function()
  learner_error(function() nn.Linear(5) end,
                "Linear: __init__() missing 1 required positional argument: 'out_features'; give both sizes, e.g. nn.Linear(5, 10)")
  learner_error(function() nn.Linear() end,
                "missing 2 required positional arguments: 'in_features' and 'out_features'")
  learner_error(function() nn.Linear({5, 10}) end, "expected integer sizes, e.g. nn.Linear(5, 10); got nn.Linear(table, nil)")
  learner_error(function() nn.Linear(5.5, 10) end, "got nn.Linear(5.5, 10)")
  learner_error(function() nn.MSELoss("sum") end, "MSELoss: options go in a table, e.g. nn.MSELoss({reduction = \"sum\"})")
  learner_error(function() nn.CrossEntropyLoss({reduction = "avg"}) end,
                "CrossEntropyLoss: reduction must be \"mean\", \"sum\" or \"none\", got \"avg\"")
  T.eq(nn.MSELoss({reduction = "sum"}).reduction, "sum")
end)

T.test("loss mistakes: shapes as view arguments, integer labels", function()
  local criterion = nn.MSELoss()
  local out = torch.zeros(4, 2)
  -- same number of elements: the suggestion is valid Lua
  local err = learner_error(function() criterion(out, torch.zeros(8)) end,
                            "mse_loss: input (4x2) and target (8) have different shapes")
  T.is_true(err:find("target:view(4, 2))", 1, true) ~= nil, err)
  local fixed = torch.zeros(8):view(4, 2) -- and it works as suggested
  T.eq(criterion(out, fixed):item(), 0.0)
  -- different counts: no reshape can help, and the message does not suggest one
  err = learner_error(function() criterion(out, torch.zeros(4)) end, "no reshape can make them")
  T.is_true(err:find("view(", 1, true) == nil, err)
  -- integer labels
  learner_error(function() criterion(out, torch.tensor({0, 1, 1, 0})) end,
                "mse_loss: the target is int64 (4), but MSELoss compares floating point values: pass target:float() " ..
                "(class labels? nn.CrossEntropyLoss takes them as int64)")
  -- model(x) with the wrong feature size stays as it was
  learner_error(function() nn.Linear(5, 10)(torch.zeros(3, 4)) end,
                "linear: input (3x4) and weight (10x5): in_features 4 and 5 differ")
end)

T.done()
