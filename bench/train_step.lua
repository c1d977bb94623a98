-- train_step.lua — ddplab's side of bench/run.sh: times one training step (forward, MSE
-- loss, backward, Adam step, zero_grad) on the CPU for the two models of the foundation
-- issue, and prints one "RESULT <case> <seconds per step>" line per case: the median over
-- several timed windows after a warm-up. Run on one rank with one BLAS thread:
--   OPENBLAS_NUM_THREADS=1 build/ddplab -n 1 bench/train_step.lua
-- (DDP_BENCH_QUICK=1 shrinks the windows, to check the script itself.) The clock is
-- torch.time(), a monotonic wall clock, as time.perf_counter is on PyTorch's side; the
-- RESULT lines name it, and bench/run.sh prints that name.

local lib = dofile((arg[0]:match("(.*/)") or "./") .. "bench_lib.lua")

local quick = os.getenv("DDP_BENCH_QUICK") == "1"
local clock, clock_name = torch.time, "torch.time"

local cases = {
    { name = "a", sizes = { 5, 10, 5 }, batch = 64, warmup = 300, windows = 9, steps = 400 },
    { name = "b", sizes = { 256, 1024, 1024, 256 }, batch = 256, warmup = 3, windows = 7,
      steps = 4 },
}

torch.manual_seed(0)
for _, c in ipairs(cases) do
    if quick then c.warmup, c.windows, c.steps = 2, 3, 2 end
    local model = lib.mlp(c.sizes)
    local x = torch.randn(c.batch, c.sizes[1])
    local y = torch.randn(c.batch, c.sizes[#c.sizes])
    local criterion = nn.MSELoss()
    local opt = optim.Adam(model:parameters(), { lr = 1e-3 })
    local function step()
        opt:zero_grad()
        local loss = criterion(model(x), y)
        loss:backward()
        opt:step()
    end
    for _ = 1, c.warmup do step() end
    local per_step = {}
    for w = 1, c.windows do
        local t0 = clock()
        for _ = 1, c.steps do step() end
        per_step[w] = (clock() - t0) / c.steps
    end
    print(string.format("RESULT %s %.9g %s", c.name, lib.median(per_step), clock_name))
end
