-- test_parity.lua — ddplab against PyTorch on the same weights and data.
--
-- The fixtures (tests/fixtures/*.safetensors, written by tests/fixtures/gen_fixtures.py
-- with PyTorch 1.13) hold the inputs, the starting weights and what PyTorch computed:
-- forward outputs, losses, gradients, and the parameters after each of 10 optimizer
-- steps. Here the same models are built in Lua, loaded with the same weights, run, and
-- every tensor is compared. Relative error of a tensor = max|ours - torch| divided by
-- max(max|torch|, 1e-12); every float32 check must stay under 1e-5.

local dir = assert(os.getenv("DDP_TEST_FIXTURES"), "DDP_TEST_FIXTURES is not set")
local LIMIT = 1e-5
local worst = { err = -1, what = "nothing compared" }
local failures = {}

local function fixture(name)
    local sd = torch.load(dir .. "/" .. name .. ".safetensors")
    return setmetatable({}, {
        __index = function(_, key)
            return sd[key] or error(name .. ".safetensors has no tensor '" .. key .. "'", 2)
        end,
        __call = function() return sd end,
    })
end

-- The tensors of `fx` whose names start with `prefix`, keyed by the rest of the name.
local function with_prefix(fx, prefix)
    local out = {}
    for k, v in pairs(fx()) do
        if k:sub(1, #prefix) == prefix then out[k:sub(#prefix + 1)] = v end
    end
    return out
end

-- name -> parameter, from named_parameters()'s list of {name, param} pairs.
local function named_params(model)
    local out = {}
    for _, np in ipairs(model:named_parameters()) do out[np[1]] = np[2] end
    return out
end

local function sorted_pairs(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local i = 0
    return function()
        i = i + 1
        if keys[i] ~= nil then return keys[i], t[keys[i]] end
    end
end

-- Compares one tensor, records it, and returns its relative error (quiet: the caller
-- prints). A shape mismatch or NaN is a failure.
local function compare(what, ours, theirs)
    assert(ours ~= nil, what .. ": no tensor to compare")
    ours = ours:detach()
    if tostring(ours.shape) ~= tostring(theirs.shape) then
        failures[#failures + 1] = string.format("%s: shape %s, PyTorch has %s", what,
            tostring(ours.shape), tostring(theirs.shape))
        return math.huge
    end
    local diff = (ours:double() - theirs:double()):abs():max():item()
    local scale = math.max(theirs:double():abs():max():item(), 1e-12)
    local err = diff / scale
    if err ~= err then err = math.huge end -- NaN compares as a failure
    if err > worst.err then worst = { err = err, what = what } end
    if err > LIMIT then
        failures[#failures + 1] = string.format("%s: relative error %.3e > %.0e", what, err, LIMIT)
    end
    return err
end

local function check(what, ours, theirs)
    print(string.format("parity: %-28s relative error %.2e", what, compare(what, ours, theirs)))
end

local function check_grads(case, model, grads)
    local params = named_params(model)
    for name, g in sorted_pairs(grads) do
        local p = params[name] or error(case .. ": the model has no parameter " .. name)
        check(case .. " grad " .. name, p.grad, g)
    end
    for name in pairs(params) do
        assert(grads[name], case .. ": the fixture has no gradient for parameter " .. name)
    end
end

local function mlp()
    return nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
end

-- The seed tutorial's model, written the way a learner writes it.
local LinearModel = nn.Module:extend("LinearModel")
function LinearModel:__init()
    self.fc1 = nn.Linear(5, 10)
    self.relu = nn.ReLU()
    self.fc2 = nn.Linear(10, 5)
end
function LinearModel:forward(x)
    return self.fc2(self.relu(self.fc1(x)))
end

-- ---- forward and backward -----------------------------------------------------------

-- One forward and backward pass on fixture mlp_<case>: the model's output (the fixture's
-- `out_key`), the criterion's loss against `target_key`, and every parameter's gradient.
local function forward_backward(case, model, criterion, out_key, target_key)
    local fx = fixture("mlp_" .. case)
    model:load_state_dict(with_prefix(fx, "init."))
    local out = model(fx.x)
    check(case .. " forward " .. out_key, out, fx[out_key])
    local loss = criterion(out, fx[target_key])
    check(case .. " loss", loss, fx.loss)
    loss:backward()
    check_grads(case, model, with_prefix(fx, "grad."))
end

forward_backward("mse", mlp(), nn.MSELoss(), "out", "y")
forward_backward("ce", LinearModel(), nn.CrossEntropyLoss(), "logits", "target")

-- ---- optimizers: 10 steps each, parameters compared after every step -----------------

local function hp(fx, name) return fx["hp." .. name]:item() end

-- The constructor of an SGD (with or without Nesterov momentum) or Adam-like optimizer
-- taking its hyper-parameters from the fixture.
local function sgd(nesterov)
    return function(params, fx)
        return optim.SGD(params, { lr = hp(fx, "lr"), momentum = hp(fx, "momentum"),
            weight_decay = hp(fx, "weight_decay"), nesterov = nesterov })
    end
end
local function adam_like(cls)
    return function(params, fx)
        return cls(params, { lr = hp(fx, "lr"), betas = { hp(fx, "beta1"), hp(fx, "beta2") },
            eps = hp(fx, "eps"), weight_decay = hp(fx, "weight_decay") })
    end
end

local optimizers = {
    sgd = sgd(false),
    sgd_nesterov = sgd(true),
    adam = adam_like(optim.Adam),
    adamw = adam_like(optim.AdamW),
}

for _, name in ipairs({ "sgd", "sgd_nesterov", "adam", "adamw" }) do
    local fx = fixture("optim_" .. name)
    local model = mlp()
    model:load_state_dict(with_prefix(fx, "init."))
    local opt = optimizers[name](model:parameters(), fx)
    local criterion = nn.MSELoss()
    for step = 1, 10 do
        opt:zero_grad()
        local loss = criterion(model(fx.x), fx.y)
        local label = string.format("%s step %d", name, step)
        local step_worst, step_what = compare(label .. ", loss", loss, fx["loss" .. step]), "loss"
        loss:backward()
        opt:step()
        local params = named_params(model)
        for key, want in sorted_pairs(with_prefix(fx, "step" .. step .. ".")) do
            local err = compare(label .. ", " .. key, params[key], want)
            if err > step_worst then step_worst, step_what = err, key end
        end
        print(string.format("parity: %-28s relative error %.2e (worst: %s)", label, step_worst,
            step_what))
    end
end

print(string.format("parity: worst relative error %.1e (%s); relative error = max|ours - "
    .. "torch| / max(max|torch|, 1e-12), limit %.0e for float32", worst.err, worst.what, LIMIT))
if #failures > 0 then
    local shown = { table.unpack(failures, 1, math.min(#failures, 12)) }
    if #failures > #shown then shown[#shown + 1] = "... and " .. (#failures - #shown) .. " more" end
    error("parity with PyTorch failed:\n  " .. table.concat(shown, "\n  "), 0)
end
