-- test_errors.lua — errors are for learners: wrong argument types are Lua argument
-- errors, core failures carry the core's message (naming the op and the shapes) without
-- C file:line, ragged tables say where, and an error leaves nothing half-done (this file
-- also runs under ASan + LeakSanitizer in CI, so every failing path here must not leak).
local T = require "support"

T.test("wrong argument types are Lua argument errors", function()
  T.raises(function() torch.mm({}, torch.zeros(2, 2)) end, "bad argument #1 to 'mm' (tensor expected, got table)")
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
  T.raises(function() torch.save({a = 1}, os.tmpname() .. ".safetensors") end, "'a' is a number")
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

T.done()
