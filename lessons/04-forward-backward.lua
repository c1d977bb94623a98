-- Lesson 4: forward and backward on each rank's shard.
-- The tutorial's two-layer model on every rank, each rank on its own slice of one batch;
-- the learner sees that the gradients differ from rank to rank, and what happens when
-- each rank steps on its own. Checks recompute the expected numbers from the learner's
-- own tensors (never hard-coded values), so they hold for any seed and generator.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg, max_diff = shared.msg, shared.max_diff

-- Shared code, built into the setups. Every setup builds the whole state its step needs
-- from nothing, so :reset (fresh ranks) and a step opened directly both work; it is also
-- safe to run again in ranks that already went through the earlier steps.

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
F = torch.nn.functional
]] .. shared.LINEAR_MODEL .. [[torch.manual_seed(0)
N = 4 * world -- one batch: 4 rows per rank (16 on 4 ranks)
X, Y = torch.randn(N, 5), torch.randn(N, 5)
torch.manual_seed(100 + rank)
]]

local SOL_MODEL = [[
model = LinearModel()
for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end]]

local SOL_SHARD = [[
b = #X // world
x = X:narrow(0, rank * b, b)
y = Y:narrow(0, rank * b, b)]]

local SOL_BACKWARD = [[
criterion = nn.MSELoss()
optimizer = optim.Adam(model:parameters(), {lr = 1e-3})
optimizer:zero_grad()
loss = criterion(model(x), y)
loss:backward()]]

-- The local loss and gradients of `model` on (x, y), computed on copies of its
-- parameters so the learner's own .grad fields are left alone.
local function reference(model, x, y)
  local ps = {}
  for i, p in ipairs(model:parameters()) do ps[i] = p:detach():clone():requires_grad_() end
  local F = torch.nn.functional
  local out = F.linear(F.relu(F.linear(x, ps[1], ps[2])), ps[3], ps[4])
  local l = F.mse_loss(out, y)
  l:backward()
  local grads = {}
  for i, p in ipairs(ps) do grads[i] = p.grad end
  return l:item(), grads
end

local function is_model(c, m)
  if type(m) ~= "table" or not nn.is_module(m) then
    return false, msg("there is no model yet: make one with `model = LinearModel()`",
      "还没有模型：先用 `model = LinearModel()` 创建一个")
  end
  local ps = m:parameters()
  if #ps ~= 4 or not m.fc1 or not m.fc2 then
    return false, msg("`model` should be a LinearModel (fc1 and fc2, four parameters)",
      "`model` 应该是 LinearModel（fc1 和 fc2，共四个参数）")
  end
  return true
end

-- Whether every rank's parameters equal rank 0's; false plus the first rank and
-- parameter that differ. Every rank gathers exactly once, whatever its state, so the
-- ranks never wait for each other in different places, and all ranks get one verdict.
local function replicas_equal(c, m)
  local mine = nil
  if type(m) == "table" and nn.is_module(m) then
    mine = {}
    for i, p in ipairs(m:parameters()) do mine[i] = p:detach() end
  end
  local all = c.gather(mine)
  for r = 1, #all do
    if all[r] == nil or all[1] == nil or #all[r] ~= #all[1] then return false, r - 1, 1 end
    for i = 1, #all[1] do
      if not c.equal(all[r][i], all[1][i]) then return false, r - 1, i end
    end
  end
  return true
end

local function shard_ok(c)
  local X, x, y = c.global("X"), c.global("x"), c.global("y")
  local Y = c.global("Y")
  if not (c.is_tensor(x) and c.is_tensor(y)) then return false end
  local b = #X // c.world_size
  return c.equal(x, X:narrow(0, c.rank * b, b)) and c.equal(y, Y:narrow(0, c.rank * b, b))
end

-- Step texts name the code they show (`${SOL_MODEL}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local CODE = { SOL_MODEL = SOL_MODEL, SOL_SHARD = SOL_SHARD, SOL_BACKWARD = SOL_BACKWARD }
local fill = shared.filler(CODE)

return {
  title = {
    en = "Forward and backward on each rank's shard",
    zh = "每个 rank 在自己的数据分片上做前向和反向",
  },
  min_ranks = 2,
  intro = {
    en = [[
Data parallel training, the kind DistributedDataParallel (DDP) does, keeps a full copy
of the model on every rank and gives each rank a different slice of the data. The model
is not split: every rank holds every weight. (Splitting one model across devices is a
different technique, model parallelism, and it is not what DDP does.)

In this lesson you build the model of a classic beginner's tutorial, a small network
`Linear(5, 10) -> ReLU -> Linear(10, 5)` trained with MSE loss and Adam, run it on each
rank's slice of one batch, and look at the gradients.

The globals `rank` and `world` are set for you, and so is the class `LinearModel`.]],
    zh = [[
数据并行训练，也就是 DistributedDataParallel（简称 DDP）所做的事，在每个 rank 上都放一份
完整的模型，再让每个 rank 处理数据的不同部分。模型并没有被切开：每个 rank 都持有全部权重。
（把一个模型拆到多个设备上是另一种技术，叫模型并行，DDP 并不这样做。）

这一课里，你会搭建入门教程里常见的那个小网络：`Linear(5, 10) -> ReLU -> Linear(10, 5)`，
用 MSE 损失和 Adam 训练；让它在每个 rank 各自的那一份数据上运行，然后观察梯度。

全局变量 `rank`、`world` 和类 `LinearModel` 已经为你准备好了。]],
  },
  steps = {
    {
      text = {
        en = fill([[
First, one model on every rank, with the same weights everywhere. `LinearModel()` draws
random weights, and each rank has its own random state, so build it and then copy rank
0's weights to the others, as in lesson 3:

```lua
${SOL_MODEL}
```

Broadcast one tensor at a time: a collective takes a tensor, not a whole state dict.
Then `:show model.fc1.weight:sum():item()` should read the same on every rank.]]),
        zh = fill([[
第一步：每个 rank 上一个模型，而且各处权重相同。`LinearModel()` 会随机初始化权重，
而每个 rank 的随机状态各不相同，所以先创建模型，再像第 3 课那样把 rank 0 的权重复制
给其他 rank：

```lua
${SOL_MODEL}
```

一次广播一个张量：集合通信操作的参数是张量，而不是整个 state dict。
之后 `:show model.fc1.weight:sum():item()` 在每个 rank 上都应该显示同一个数。]]),
      },
      pytorch = [[
model = LinearModel()
for p in model.parameters():
    dist.broadcast(p.data, src=0)]],
      setup = INIT .. "model = nil\n",
      solution = SOL_MODEL,
      hints = {
        msg("`model:parameters()` is a Lua list: walk it with `ipairs`.",
          "`model:parameters()` 是一个 Lua 列表：用 `ipairs` 遍历它。"),
        msg("Every rank must call `dist.broadcast(p, 0)` for every parameter, in the same order.",
          "每个 rank 都要按同样的顺序对每个参数调用 `dist.broadcast(p, 0)`。"),
      },
      check = function(c)
        local m = c.global("model")
        local same, r, i = replicas_equal(c, m)
        local ok, why = is_model(c, m)
        if not ok then return false, why end
        if not same then
          return false, msg(
            string.format("rank %d's parameter %d differs from rank 0's: broadcast every parameter from rank 0", r, i),
            string.format("rank %d 的第 %d 个参数与 rank 0 的不同：请从 rank 0 广播每一个参数", r, i))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
`X` and `Y` are one batch of `N = 4 * world` samples (16 on 4 ranks; the same on
every rank: they come from the same seed). In data parallel training each rank takes its own shard: with `world` ranks,
rank `r` takes rows `r*b` to `r*b + b - 1`, where `b = N / world`.

```lua
${SOL_SHARD}
```

`narrow(dim, start, length)` counts from 0, like ranks. Look at `:show x:sum():item()`:
every rank now sees different data. Between them, the ranks cover the whole batch once.]]),
        zh = fill([[
`X` 和 `Y` 是一个包含 `N = 4 * world` 个样本的 batch（4 个 rank 时是 16 个；每个
rank 上都一样：它们来自同一个随机种子）。
数据并行时每个 rank 只取属于自己的那一份分片：共有 `world` 个 rank 时，rank `r` 取第 `r*b`
到 `r*b + b - 1` 行，其中 `b = N / world`。

```lua
${SOL_SHARD}
```

`narrow(dim, start, length)` 和 rank 一样从 0 开始计数。看看 `:show x:sum():item()`：
现在每个 rank 看到的数据都不同，而所有 rank 合起来正好把整个 batch 覆盖一遍。]]),
      },
      pytorch = [[
b = X.size(0) // world
x = X.narrow(0, rank * b, b)
y = Y.narrow(0, rank * b, b)]],
      setup = INIT .. SOL_MODEL .. "\nx, y, b = nil, nil, nil\n",
      solution = SOL_SHARD,
      hints = {
        msg("`#X` is the number of rows of `X`; `//` is integer division in Lua.",
          "`#X` 是 `X` 的行数；Lua 里 `//` 是整除。"),
        msg("Rank 0 starts at row 0, rank 1 at row `b`: the start is `rank * b`.",
          "rank 0 从第 0 行开始，rank 1 从第 `b` 行开始：起点是 `rank * b`。"),
      },
      check = function(c)
        local x, y = c.global("x"), c.global("y")
        if not (c.is_tensor(x) and c.is_tensor(y)) then
          return false, msg("there are no tensors `x` and `y` yet", "还没有张量 `x` 和 `y`")
        end
        local b = 4
        if x:dim() ~= 2 or x:size(0) ~= b or x:size(1) ~= 5 or x.shape ~= y.shape then
          return false, msg(
            string.format("`x` and `y` should each be %d rows of 5 (%d rows over %d ranks)", b, 4 * c.world_size, c.world_size),
            string.format("`x` 和 `y` 应该各有 %d 行、每行 5 个数（%d 行分给 %d 个 rank）", b, 4 * c.world_size, c.world_size))
        end
        if not shard_ok(c) then
          return false, msg(
            string.format("rank %d should hold rows %d to %d of X and Y", c.rank, c.rank * b, c.rank * b + b - 1),
            string.format("rank %d 应该持有 X 和 Y 的第 %d 到 %d 行", c.rank, c.rank * b, c.rank * b + b - 1))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Now the usual training code, on the local shard only: a loss, an optimizer, a forward
pass and a backward pass. Nothing here talks to the other ranks.

```lua
${SOL_BACKWARD}
```

After `backward`, every parameter has a `.grad`: the gradient of this rank's loss, which
is the mean over this rank's rows only.]]),
        zh = fill([[
现在是熟悉的训练代码，但只作用于本地分片：损失函数、优化器、一次前向、一次反向。
这里没有任何与其他 rank 的通信。

```lua
${SOL_BACKWARD}
```

`backward` 之后，每个参数都有了 `.grad`：它是本 rank 损失的梯度，而这个损失只是对本 rank
那几行求的平均。]]),
      },
      pytorch = [[
criterion = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
optimizer.zero_grad()
loss = criterion(model(x), y)
loss.backward()]],
      setup = INIT .. SOL_MODEL .. "\n" .. SOL_SHARD .. "\nloss, criterion, optimizer = nil, nil, nil\n",
      solution = SOL_BACKWARD,
      hints = {
        msg("Call the model on the local `x`, not on the whole `X`.",
          "在本地的 `x` 上调用模型，而不是整个 `X`。"),
        msg("`loss:backward()` fills `p.grad` for every parameter `p`.",
          "`loss:backward()` 会为每个参数 `p` 填好 `p.grad`。"),
      },
      check = function(c)
        local m, loss = c.global("model"), c.global("loss")
        local ok, why = is_model(c, m)
        if not ok then return false, why end
        if not c.is_tensor(loss) or loss:numel() ~= 1 then
          return false, msg("there is no loss yet: `loss = criterion(model(x), y)`",
            "还没有损失：`loss = criterion(model(x), y)`")
        end
        local want, grads = reference(m, c.global("x"), c.global("y"))
        if math.abs(loss:item() - want) > 1e-5 * math.max(1, math.abs(want)) then
          return false, msg("`loss` is not the MSE of the model on this rank's shard (x, y)",
            "`loss` 不是模型在本 rank 分片 (x, y) 上的 MSE")
        end
        for i, p in ipairs(m:parameters()) do
          if not c.is_tensor(p.grad) then
            return false, msg("the parameters have no gradients yet: call `loss:backward()`",
              "参数还没有梯度：调用 `loss:backward()`")
          end
          if max_diff(p.grad, grads[i]) > 1e-5 then
            return false, msg(
              "parameter " .. i .. "'s gradient is not the gradient of this loss (called backward twice? zero_grad first)",
              "第 " .. i .. " 个参数的梯度不是这个损失的梯度（backward 调了两次？先 zero_grad）")
          end
        end
        return true
      end,
    },
    {
      text = {
        en = [[
Compare the gradients across ranks. Store the norm of the first layer's weight gradient
and show it:

```lua
gnorm = model.fc1.weight.grad:norm():item()
:show gnorm
```

(`:show` is a REPL command: type it on its own line.) The weights are identical on every
rank, yet the gradients differ, because each rank computed them from different rows. Each
rank's gradient is an estimate of the gradient of the whole batch. If every rank stepped
with its own gradient now, the replicas would drift apart after a single step. The next
lesson shows the fix: average the gradients across ranks before stepping.]],
        zh = [[
比较一下各个 rank 的梯度。把第一层权重梯度的范数存下来并显示：

```lua
gnorm = model.fc1.weight.grad:norm():item()
:show gnorm
```

（`:show` 是 REPL 命令，要单独占一行。）每个 rank 上的权重完全相同，梯度却各不相同，
因为每个 rank 是用不同的数据行算出来的。每个 rank 的梯度都只是对整个 batch 梯度的一个
估计。如果现在每个 rank 都用自己的梯度更新参数，只需一步，各个副本就不再一致了。
下一课给出解决办法：在更新之前，先在所有 rank 之间对梯度求平均。]],
      },
      pytorch = [[
gnorm = model.fc1.weight.grad.norm().item()
print(rank, gnorm)]],
      setup = INIT .. SOL_MODEL .. "\n" .. SOL_SHARD .. "\n" .. SOL_BACKWARD .. "\ngnorm = nil\n",
      solution = "gnorm = model.fc1.weight.grad:norm():item()",
      hints = {
        msg("`model.fc1.weight.grad` is a tensor; `:norm()` gives a one-element tensor and `:item()` its number.",
          "`model.fc1.weight.grad` 是张量；`:norm()` 得到只有一个元素的张量，`:item()` 取出其中的数。"),
      },
      check = function(c)
        local g = c.global("gnorm")
        local all = c.gather(g)
        if type(g) ~= "number" then
          return false, msg("`gnorm` should be a number: `gnorm = model.fc1.weight.grad:norm():item()`",
            "`gnorm` 应该是一个数：`gnorm = model.fc1.weight.grad:norm():item()`")
        end
        local want = c.global("model").fc1.weight.grad:norm():item()
        if math.abs(g - want) > 1e-5 * math.max(1, want) then
          return false, msg("`gnorm` is not the norm of `model.fc1.weight.grad`",
            "`gnorm` 不是 `model.fc1.weight.grad` 的范数")
        end
        for r = 2, #all do
          if all[r] ~= all[1] then return true end
        end
        return false, msg("every rank has the same gradient: does each rank use its own shard?",
          "每个 rank 的梯度都一样：每个 rank 用的是自己的分片吗？")
      end,
    },
    {
      text = {
        en = [[
See the drift for yourself. Step the optimizer on every rank with its own gradient:

```lua
optimizer:step()
:show model.fc1.weight:sum():item()
```

The replicas that were identical a moment ago now differ. From here on they would train
as separate models, each on its own share of the data: that is not DDP. Keep this
picture in mind for lesson 5.]],
        zh = [[
亲眼看看副本是怎样“走散”的。让每个 rank 用自己的梯度执行一步优化：

```lua
optimizer:step()
:show model.fc1.weight:sum():item()
```

刚才还完全相同的副本，现在已经不同了。再这样训练下去，它们就成了几个互不相干的模型，
各自只用了一部分数据：这不是 DDP。把这个现象记住，第 5 课会用到。]],
      },
      pytorch = [[
optimizer.step()
print(rank, model.fc1.weight.sum().item())]],
      setup = INIT .. SOL_MODEL .. "\n" .. SOL_SHARD .. "\n" .. SOL_BACKWARD .. "\n",
      solution = "optimizer:step()",
      hints = {
        msg("`optimizer:step()` updates every parameter from its `.grad`.",
          "`optimizer:step()` 根据每个参数的 `.grad` 更新参数。"),
      },
      check = function(c)
        local m = c.global("model")
        local same = replicas_equal(c, m)
        local ok, why = is_model(c, m)
        if not ok then return false, why end
        if same then
          return false, msg("the replicas are still identical: call `optimizer:step()` on every rank",
            "各副本仍然相同：在每个 rank 上调用 `optimizer:step()`")
        end
        return true
      end,
    },
  },
}
