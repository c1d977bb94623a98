-- Lesson 6: the training loop, and the DDP invariant proved numerically.
-- The learner writes the data parallel loop by hand (shard, forward, backward, average
-- the gradients, step), then trains one process on the whole batch from the same start
-- and finds the same weights, to float32 rounding; then reports the whole-batch loss.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg = shared.msg
local max_diff = shared.max_diff
local params_of = shared.params_of
local all_equal = shared.all_equal
local single_process = shared.single_process

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
F = torch.nn.functional
]] .. shared.LINEAR_MODEL .. [[torch.manual_seed(0)
N = 4 * world -- one batch: 4 rows per rank (16 on 4 ranks)
X, Y = torch.randn(N, 5), torch.randn(N, 5)
torch.manual_seed(100 + rank)
model = LinearModel()
for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end
init_state = {}
for name, t in pairs(model:state_dict()) do init_state[name] = t:clone() end
b = #X // world
x = X:narrow(0, rank * b, b)
y = Y:narrow(0, rank * b, b)
criterion = nn.MSELoss()
optimizer = optim.Adam(model:parameters(), {lr = 0.01})
]]

local SOL_LOOP = [[
losses = {}
for step = 1, 20 do
  optimizer:zero_grad()
  loss = criterion(model(x), y)
  loss:backward()
  for _, p in ipairs(model:parameters()) do
    dist.all_reduce(p.grad); p.grad:div_(world)
  end
  optimizer:step()
  losses[step] = loss:item()
end]]

local SOL_SINGLE = [[
single = LinearModel()
single:load_state_dict(init_state)
single_optimizer = optim.Adam(single:parameters(), {lr = 0.01})
for step = 1, 20 do
  single_optimizer:zero_grad()
  criterion(single(X), Y):backward()
  single_optimizer:step()
end
max_diff = 0
for i, p in ipairs(model:parameters()) do
  local d = (p - single:parameters()[i]):abs():max():item()
  max_diff = math.max(max_diff, d)
end]]

-- Step texts name the code they show (`${SOL_LOOP}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local CODE = { SOL_LOOP = SOL_LOOP, SOL_SINGLE = SOL_SINGLE }
local fill = shared.filler(CODE)

return {
  title = {
    en = "The training loop, and the DDP invariant",
    zh = "训练循环，以及 DDP 的不变量",
  },
  min_ranks = 2,
  intro = {
    en = [[
Put lessons 4 and 5 together into a training loop, then prove the property that makes
data parallel training correct: N ranks, each with a local batch of b rows and averaged
gradients, take exactly the steps one process would take on the whole batch of N*b rows.
DDP is a faster way to compute the same thing, not an approximation of it.]],
    zh = [[
把第 4 课和第 5 课组合成一个训练循环，然后证明让数据并行训练成立的那条性质：N 个 rank、
每个 rank 的本地 batch 有 b 行、梯度取平均，这样走出的每一步和单个进程在 N*b 行的完整 batch
上走出的每一步完全相同。DDP 是计算同一件事的更快方法，而不是它的近似。]],
  },
  steps = {
    {
      text = {
        en = fill([[
`model` (the same on every rank), the shard `x`, `y`, `criterion` and an Adam
`optimizer` with `lr = 0.01` are ready. Write the loop: 20 steps, each one zero_grad,
forward and loss on the shard, backward, average the gradients, step. Keep each step's
local loss in a list `losses`:

```lua
${SOL_LOOP}
```

Every rank runs this loop at the same time, each on its own rows. Note what is not
here: no `if rank == ...`, no ranks taking turns. `:show losses[20]` differs per rank
(each is the loss on that rank's rows); `:show model.fc1.weight:sum():item()` does not.
`plot(losses, {per_rank = true})` draws every rank's loss curve on one chart: the curves
differ, yet they all come down together, because one shared model is learning.]]),
        zh = fill([[
`model`（每个 rank 上都相同）、分片 `x` 和 `y`、`criterion`，以及 `lr = 0.01` 的
Adam 优化器 `optimizer` 都已准备好。写出训练循环：共 20 步，每一步依次是 zero_grad、在分片上
前向并计算损失、反向、平均梯度、更新。把每一步的本地损失保存在列表 `losses` 中：

```lua
${SOL_LOOP}
```

所有 rank 同时运行这个循环，各自处理自己的数据行。注意这里没有的东西：没有 `if
rank == ...`，也没有让各 rank 轮流执行。`:show losses[20]` 在各 rank 上不同（每个
都是该 rank 数据行上的损失）；`:show model.fc1.weight:sum():item()` 则完全相同。 `plot(losses,
{per_rank = true})` 会把每个 rank 的损失曲线画在同一张图上：各条曲线不同，
却一起下降，因为在学习的是同一个共享的模型。]]),
      },
      pytorch = [[
losses = []
for step in range(20):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad); p.grad /= world
    optimizer.step()
    losses.append(loss.item())]],
      setup = INIT .. "losses = nil\n",
      solution = SOL_LOOP,
      hints = {
        msg("The loop body is lesson 4's forward and backward plus lesson 5's averaging and step.",
          "循环体就是第 4 课的前向和反向，加上第 5 课的梯度平均和更新。"),
        msg("`losses[step] = loss:item()` keeps a plain number, not the tensor and its graph.",
          "`losses[step] = loss:item()` 保存的是普通数字，而不是张量及其计算图。"),
        msg("Average the gradients after `loss:backward()` and before `optimizer:step()`.",
          "在 `loss:backward()` 之后、`optimizer:step()` 之前平均梯度。"),
      },
      check = function(c)
        local m, losses = c.global("model"), c.global("losses")
        local same = all_equal(c, params_of(m))
        if type(losses) ~= "table" or #losses < 1 then
          return false, msg("there is no list `losses` yet", "还没有列表 `losses`")
        end
        if not params_of(m) then
          return false, msg("`model` is gone: :reset brings it back", "`model` 不见了：用 :reset 恢复")
        end
        if not same then
          return false, msg("the replicas differ: average the gradients before every step",
            "各副本不一致：每一步更新前都要平均梯度")
        end
        local want = single_process(c, #losses, 0.01)
        for i, p in ipairs(m:parameters()) do
          if max_diff(p, want[i]) > 1e-4 then
            return false, msg(
              string.format("after %d steps the weights are not those of one process on the whole batch: average (not sum) the gradients, once per step", #losses),
              string.format("%d 步之后，权重与单个进程在整个 batch 上训练的结果不同：每一步对梯度做一次平均（不是求和）", #losses))
          end
        end
        if #losses < 20 then
          return false, msg("train for 20 steps", "训练 20 步")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Now the proof. Start one model from the same initial weights (`init_state`, saved before
training), train it in this process alone, without any communication, on the whole
batch `X`, `Y`, with the same optimizer and the same 20 steps; then measure how far it
is from the DDP-trained `model`:

```lua
${SOL_SINGLE}
```

`max_diff` is tiny (around 1e-7, sometimes 0): float32 rounding, because a mean of means adds the same
numbers in a different order. This is the DDP invariant. It needs equal shard sizes and
a mean-reduced loss; lesson 8 returns to uneven shards.]]),
        zh = fill([[
现在来证明。从相同的初始权重（训练前保存的 `init_state`）开始创建一个模型，只在本进程
中、不做任何通信，用整个 batch `X`、`Y`、同样的优化器训练同样的 20 步；然后测量它与 DDP
训练出的 `model` 相差多少：

```lua
${SOL_SINGLE}
```

`max_diff` 非常小（大约 1e-7，有时是 0）：这是 float32 的舍入误差，因为“平均值的平均值”是用不同的顺序
把同样的数加起来的。这就是 DDP 的不变量。它要求每个分片大小相同，并且损失按平均值
归约；第 8 课会再谈分片不均匀的情况。]]),
      },
      pytorch = [[
single = LinearModel()
single.load_state_dict(init_state)
single_optimizer = torch.optim.Adam(single.parameters(), lr=0.01)
for step in range(20):
    single_optimizer.zero_grad()
    criterion(single(X), Y).backward()
    single_optimizer.step()
max_diff = max((p - q).abs().max().item()
               for p, q in zip(model.parameters(), single.parameters()))]],
      setup = INIT .. SOL_LOOP .. "\nsingle, max_diff = nil, nil\n",
      solution = SOL_SINGLE,
      hints = {
        msg("`single` trains on `X` and `Y` (the whole batch), not on `x` and `y`.",
          "`single` 在 `X` 和 `Y`（整个 batch）上训练，而不是 `x` 和 `y`。"),
        msg("No all_reduce in this loop: one process has all the data.",
          "这个循环里没有 all_reduce：单个进程拥有全部数据。"),
      },
      check = function(c)
        local m, single, d = c.global("model"), c.global("single"), c.global("max_diff")
        if not params_of(single) or #single:parameters() ~= 4 then
          return false, msg("there is no `single` model yet", "还没有 `single` 模型")
        end
        local worst = 0
        for i, p in ipairs(m:parameters()) do worst = math.max(worst, max_diff(p, single:parameters()[i])) end
        if worst > 1e-4 then
          return false, msg(
            string.format("`single` is %.3g away from `model`: start it from init_state and train 20 steps on X, Y with lr = 0.01", worst),
            string.format("`single` 与 `model` 相差 %.3g：从 init_state 开始，用 lr = 0.01 在 X、Y 上训练 20 步", worst))
        end
        if type(d) ~= "number" or math.abs(d - worst) > 1e-9 then
          return false, msg("`max_diff` should be the largest difference between the two models' parameters",
            "`max_diff` 应该是两个模型参数之间的最大差值")
        end
        return true
      end,
    },
    {
      text = {
        en = [[
One more habit. `loss` on rank 0 is the loss on rank 0's rows only; printing it from
rank 0 does not report the model's loss on the batch. To log the whole-batch loss,
all-reduce a detached copy and average it:

```lua
l = criterion(model(x), y):detach()
dist.all_reduce(l)
global_loss = l:item() / world
```

Every rank now holds the same number: the MSE of the current model on all `N` rows (check
it: `criterion(model(X), Y)`). Detach first, so that logging never touches the graph.]],
        zh = [[
再养成一个习惯。rank 0 上的 `loss` 只是 rank 0 那几行上的损失；在 rank 0 上打印它，
并不能反映模型在整个 batch 上的损失。要记录整个 batch 的损失，就对它 detach 后的副本做 all-reduce
并求平均：

```lua
l = criterion(model(x), y):detach()
dist.all_reduce(l)
global_loss = l:item() / world
```

现在每个 rank 上都是同一个数：当前模型在全部 `N` 行上的 MSE（可以用 `criterion(model(X),
Y)` 验证）。先 detach，这样记录日志就不会碰到计算图。]],
      },
      pytorch = [[
l = criterion(model(x), y).detach()
dist.all_reduce(l)
global_loss = l.item() / world]],
      setup = INIT .. SOL_LOOP .. "\nglobal_loss = nil\n",
      solution = "l = criterion(model(x), y):detach()\ndist.all_reduce(l)\nglobal_loss = l:item() / world",
      hints = {
        msg("Sum the ranks' losses with all_reduce, then divide by `world`.",
          "用 all_reduce 把各 rank 的损失加起来，再除以 `world`。"),
      },
      check = function(c)
        local g = c.global("global_loss")
        if type(g) ~= "number" then
          return false, msg("`global_loss` should be a number", "`global_loss` 应该是一个数")
        end
        local want = torch.no_grad(function()
          return c.global("criterion")(c.global("model")(c.global("X")), c.global("Y")):item()
        end)
        if math.abs(g - want) > 1e-5 * math.max(1, want) then
          return false, msg(
            string.format("`global_loss` is %.6g, but the model's loss on the whole batch is %.6g", g, want),
            string.format("`global_loss` 是 %.6g，但模型在整个 batch 上的损失是 %.6g", g, want))
        end
        return true
      end,
    },
  },
}
