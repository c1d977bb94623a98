-- test_random.lua — PyTorch's CPU random numbers, bit for bit: every tensor of
-- tests/fixtures/rng.safetensors (written by PyTorch 1.13 with gen_rng_fixtures.py, which
-- lists the cases) is drawn again here and must be equal, not close.
local T = require "support"

local fx = torch.load(os.getenv("DDP_TEST_FIXTURES") .. "/rng.safetensors")
local F32, F64 = torch.float32, torch.float64
local DT = {f32 = F32, f64 = F64}

-- got must equal the fixture `name` exactly (same shape, dtype and every bit).
local function same(got, name)
  local want = assert(fx[name], "the fixture has no tensor " .. name)
  T.is_true(got.dtype == want.dtype, name .. ": dtype " .. tostring(got.dtype) .. ", expected " .. tostring(want.dtype))
  T.is_true(got.shape == want.shape, name .. ": shape " .. tostring(got.shape) .. ", expected " .. tostring(want.shape))
  if not torch.equal(got, want) then
    local g, w = got:reshape(-1):tolist(), want:reshape(-1):tolist()
    local bad, first = 0, nil
    for i = 1, #g do
      if g[i] ~= w[i] then bad = bad + 1; first = first or i end
    end
    error(string.format("%s: %d of %d values differ; first at [%d]: got %.17g, expected %.17g",
                        name, bad, #g, first - 1, g[first], w[first]), 2)
  end
end

T.test("torch.manual_seed(0); torch.randn(3) prints PyTorch's numbers", function()
  torch.manual_seed(0)
  T.eq(tostring(torch.randn(3)), "tensor([ 1.5410, -0.2934, -2.1788])")
end)

T.test("rand, randn, normal_, uniform_ of sizes 1, 15, 16, 17, 1000 in float32 and float64", function()
  for name, dt in pairs(DT) do
    for _, n in ipairs({1, 15, 16, 17, 1000}) do
      local suffix = "." .. name .. ".n" .. n
      torch.manual_seed(0)
      same(torch.rand(n, {dtype = dt}), "rand" .. suffix)
      torch.manual_seed(0)
      same(torch.randn(n, {dtype = dt}), "randn" .. suffix)
      torch.manual_seed(0)
      same(torch.empty(n, {dtype = dt}):normal_(0.5, 2.5), "normal" .. suffix)
      torch.manual_seed(0)
      same(torch.empty(n, {dtype = dt}):uniform_(-0.3, 0.7), "uniform" .. suffix)
    end
  end
  torch.manual_seed(1)
  same(torch.randn(4, 5), "randn.f32.4x5")
end)

T.test("one-at-a-time normals keep the second of each pair for the next call", function()
  torch.manual_seed(2)
  same(torch.randn(3), "cached.randn3")
  same(torch.randn(1), "cached.randn1")
  same(torch.randn(3, {dtype = F64}), "cached.randn3_f64")
  -- manual_seed forgets the cached value
  torch.manual_seed(2)
  torch.randn(3)
  torch.manual_seed(2)
  same(torch.randn(3), "cached.randn3")
end)

T.test("a transposed tensor is filled in memory order, normals one at a time", function()
  torch.manual_seed(4)
  same(torch.empty(5, 4):t():normal_(), "transposed.normal")
  same(torch.empty(6, 3):t():uniform_(-1, 1), "transposed.uniform")
end)

T.test("randint, 32-bit and 64-bit draws", function()
  torch.manual_seed(5)
  same(torch.randint(0, 10, {20}), "randint.0_10")
  same(torch.randint(-5, 5, {3, 4}), "randint.m5_5")
  same(torch.randint(3, 1000000, {1000}), "randint.3_1e6")
  same(torch.randint(0, 2 ^ 40 // 1, {10}), "randint.0_2p40")
end)

T.test("randperm for small n, and PyTorch's algorithm for large n", function()
  for _, n in ipairs({1, 2, 10, 100, 1000}) do
    torch.manual_seed(6)
    same(torch.randperm(n), "randperm.n" .. n)
  end
  -- the large-n algorithm needs n >= 214748364 to run by itself (1.7 GB); the unit test
  -- test_base_generator runs it on n = 100 against the fixture randperm_inside_out.n100
  T.is_true(fx["randperm_inside_out.n100"] ~= nil, "fixture for the large-n algorithm")
end)

T.test("torch.Generator objects and generator=", function()
  local g = torch.Generator()
  T.eq(g:initial_seed(), fx["generator.initial_seed"]:item())
  same(torch.rand(5, {generator = g}), "generator.rand5")
  torch.manual_seed(8)
  T.is_true(g:manual_seed(7) == g, "manual_seed returns the generator")
  same(torch.randn(20, {generator = g}), "generator.randn20")
  same(torch.randperm(10, {generator = g}), "generator.randperm10")
  same(torch.randint(0, 100, {5}, {generator = g}), "generator.randint5")
  same(torch.randn(20), "generator.default20")
  -- the in-place fills take it too
  g:manual_seed(7)
  same(torch.empty(20):normal_(0, 1, {generator = g}), "generator.randn20")
  g:manual_seed(0)
  local u = torch.empty(17):uniform_({generator = g})
  torch.manual_seed(0)
  same(u, "rand.f32.n17")
  T.eq(g:initial_seed(), 0)
  local s = g:seed()
  T.eq(g:initial_seed(), s)
  T.is_true(math.type(s) == "integer" and s >= 0 and s < 2 ^ 53, "seed() gives a 53-bit seed")
  T.eq(torch.default_generator:initial_seed(), torch.initial_seed())
end)

T.test("get_rng_state is PyTorch's bytes; set_rng_state restores", function()
  torch.manual_seed(3)
  torch.randn(3)
  local state = torch.get_rng_state()
  same(state, "state.bytes")
  same(torch.randn(5), "state.after")
  torch.manual_seed(99)
  torch.set_rng_state(fx["state.bytes"])
  T.eq(torch.initial_seed(), 3)
  same(torch.randn(5), "state.after")
  -- a Generator's state moves too
  local g = torch.Generator():manual_seed(11)
  local saved = g:get_state()
  local a = torch.rand(7, {generator = g})
  g:set_state(saved)
  T.is_true(torch.equal(torch.rand(7, {generator = g}), a), "set_state replays")
end)

T.test("nn.Linear's initial weights after a seed are PyTorch's", function()
  torch.manual_seed(0)
  local lin = nn.Linear(5, 10)
  same(lin.weight:detach(), "linear.5x10.weight")
  same(lin.bias:detach(), "linear.5x10.bias")
  torch.manual_seed(0)
  lin = nn.Linear(5, 10, {dtype = F64})
  same(lin.weight:detach(), "linear.f64.weight")
  same(lin.bias:detach(), "linear.f64.bias")
end)

T.test("the tutorial's model, data and first losses are PyTorch's", function()
  torch.manual_seed(0)
  local LinearModel = nn.Module:extend("LinearModel")
  function LinearModel:__init()
    self.fc1 = nn.Linear(5, 10)
    self.fc2 = nn.Linear(10, 5)
  end
  function LinearModel:forward(x) return self.fc2(torch.relu(self.fc1(x))) end
  local model = LinearModel()
  for k, v in pairs(model:state_dict()) do same(v, "tutorial." .. k) end
  local x, y = torch.randn(64, 5), torch.randn(64, 5)
  same(x, "tutorial.x")
  same(y, "tutorial.y")
  local opt = optim.Adam(model:parameters(), {lr = 0.01})
  local loss_fn = nn.MSELoss()
  for step = 1, 5 do
    opt:zero_grad()
    local loss = loss_fn(model(x), y)
    loss:backward()
    opt:step()
    T.close(loss:item(), fx["tutorial.loss" .. step]:item(), 1e-6, "loss" .. step)
  end
  T.close(model.fc2.bias:detach(), fx["tutorial.fc2.bias.after"], 1e-6, "fc2.bias after 5 steps")
end)

T.test("errors name the bad value", function()
  T.raises(function() torch.manual_seed(0.5) end, "manual_seed: the seed must be an integer, got 0.5")
  T.raises(function() torch.rand(3, {generator = 5}) end, "expected a torch.Generator")
  T.raises(function() torch.rand(3, {genrator = torch.Generator()}) end, "did you mean 'generator'")
  T.raises(function() torch.empty(3):normal_(0, 1, {seed = 1}) end, "normal_: unknown option 'seed'")
  T.raises(function() torch.set_rng_state(torch.zeros(5, {dtype = torch.int64})) end,
           "expected the state from get_rng_state() (int64[5056]), got int64[5]")
  local bad = fx["state.bytes"]:clone()
  bad[1] = 300
  T.raises(function() torch.set_rng_state(bad) end, "element 1 is 300")
  bad = fx["state.bytes"]:clone()
  for i = 8, 11 do bad[i] = 0 end -- left = 0 (bytes 8..11, little-endian int)
  T.raises(function() torch.set_rng_state(bad) end, "not a valid generator state")
  T.raises(function() torch.Generator("cuda") end, "only CPU generators")
end)

T.done()
