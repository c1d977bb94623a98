-- Lesson 5: all-reduce, and where it goes in a training step.
-- Sum versus average; averaging the gradients before optimizer:step(); then the common
-- tutorial mistake (step first, then all-reduce the weights), done and measured against
-- the right order. Checks recompute every expected number from the ranks' own tensors.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg = shared.msg
local max_diff = shared.max_diff
local params_of = shared.params_of
local all_equal = shared.all_equal

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
F = torch.nn.functional
]] .. shared.LINEAR_MODEL .. [[torch.manual_seed(0)
N = 4 * world -- one batch: 4 rows per rank (16 on 4 ranks)
X, Y = torch.randn(N, 5), torch.randn(N, 5)
torch.manual_seed(100 + rank)
]]

-- Lesson 4's state: one model everywhere, this rank's shard, local gradients.
local LOCAL_GRADS = INIT .. [[
model = LinearModel()
for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end
b = #X // world
x = X:narrow(0, rank * b, b)
y = Y:narrow(0, rank * b, b)
criterion = nn.MSELoss()
optimizer = optim.Adam(model:parameters(), {lr = 1e-3})
optimizer:zero_grad()
loss = criterion(model(x), y)
loss:backward()
]]

local SOL_AVERAGE = [[
for _, p in ipairs(model:parameters()) do
  dist.all_reduce(p.grad)
  p.grad:div_(world)
end]]

-- The gradients of the MSE loss of `model` on (x, y), on copies of its parameters.
local function local_grads(model, x, y)
  local ps = {}
  for i, p in ipairs(model:parameters()) do ps[i] = p:detach():clone():requires_grad_() end
  local F = torch.nn.functional
  local out = F.linear(F.relu(F.linear(x, ps[1], ps[2])), ps[3], ps[4])
  F.mse_loss(out, y):backward()
  local grads = {}
  for i, p in ipairs(ps) do grads[i] = p.grad end
  return grads
end

-- Step texts name the code they show (`${SOL_AVERAGE}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local EX_STEP_AFTER = [[
optimizer:step()
torch.no_grad(function()
  for _, p in ipairs(model:parameters()) do
    dist.all_reduce(p); p:div_(world)
  end
end)
diff = (model.fc1.weight - good.fc1.weight):abs():max():item()
:show diff]]
local CODE = { EX_STEP_AFTER = EX_STEP_AFTER, SOL_AVERAGE = SOL_AVERAGE }
local fill = shared.filler(CODE)

return {
  title = {
    en = "All-reduce: average the gradients, then step",
    zh = "All-reduce：先平均梯度，再更新参数",
  },
  min_ranks = 2,
  intro = {
    en = [[
At the end of lesson 4 every rank had the same weights but its own gradient, and one
optimizer step made the replicas drift apart. The cure is one collective, all-reduce:
every rank contributes a tensor and every rank gets back the combination of all of
them. Used on the gradients, at the right moment, it keeps every replica identical.]],
    zh = [[
第 4 课结束时，每个 rank 的权重相同，梯度却各不相同，一步优化之后各副本就不一致了。
解决办法是一个集合通信操作：all-reduce。每个 rank 贡献一个张量，每个 rank 都拿回所有
张量合并后的结果。在正确的时机对梯度做 all-reduce，所有副本就能一直保持一致。]],
  },
  steps = {
    {
      text = {
        en = [[
`v` holds two numbers that differ per rank (`:show v`). `dist.all_reduce(t)` replaces
`t`, in place, with the sum over all ranks. For the average, divide by the number of
ranks afterwards. Keep `v` as it is and work on copies:

```lua
s = v:clone(); dist.all_reduce(s)
a = v:clone(); dist.all_reduce(a); a:div_(world)
```

Compare `:show s` and `:show a` with `:show v`. ddplab also has
`dist.ReduceOp.AVG`, but in PyTorch AVG works only with the NCCL backend (GPUs); with
Gloo, PyTorch code sums and divides, exactly as you just did.]],
        zh = [[
`v` 里有两个数，每个 rank 的都不一样（`:show v`）。`dist.all_reduce(t)` 会原地把
`t` 替换成所有 rank 上的和。想要平均值，就在之后除以 rank 的数量。保留 `v` 不动，在副本上
操作：

```lua
s = v:clone(); dist.all_reduce(s)
a = v:clone(); dist.all_reduce(a); a:div_(world)
```

用 `:show s`、`:show a` 和 `:show v` 对比一下。ddplab 也提供 `dist.ReduceOp.AVG`，
但在 PyTorch 中 AVG 只能用于 NCCL 后端（GPU）；使用 Gloo 时，PyTorch 代码都是先求和再
相除，和你刚才做的一样。]],
      },
      pytorch = [[
s = v.clone(); dist.all_reduce(s)             # op=dist.ReduceOp.SUM
a = v.clone(); dist.all_reduce(a); a /= world]],
      setup = INIT .. "v = torch.tensor({rank + 1.0, 10.0 * (rank + 1)})\ns, a = nil, nil\n",
      solution = "s = v:clone(); dist.all_reduce(s)\na = v:clone(); dist.all_reduce(a); a:div_(world)",
      hints = {
        msg("all_reduce changes its argument in place: `v:clone()` first, or `v` is lost.",
          "all_reduce 会原地修改参数：先 `v:clone()`，否则 `v` 就被覆盖了。"),
        msg("The average is the sum divided by `world`: `a:div_(world)`.",
          "平均值就是和除以 `world`：`a:div_(world)`。"),
      },
      check = function(c)
        local v, s, a = c.global("v"), c.global("s"), c.global("a")
        local all = c.gather(v)
        local want = all[1]:clone()
        for r = 2, #all do want = want + all[r] end
        if not c.is_tensor(v) or not c.equal(v, torch.tensor({c.rank + 1.0, 10.0 * (c.rank + 1)})) then
          return false, msg("`v` changed: all_reduce works in place, so reduce a clone of it",
            "`v` 被改动了：all_reduce 是原地操作，请对它的副本做 reduce")
        end
        if not c.is_tensor(s) or not c.close(s, want) then
          return false, msg("`s` should be the sum of every rank's `v`", "`s` 应该是所有 rank 的 `v` 之和")
        end
        if not c.is_tensor(a) or not c.close(a, want / c.world_size) then
          return false, msg("`a` should be the average of every rank's `v`", "`a` 应该是所有 rank 的 `v` 的平均值")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
The state of lesson 4 is back: one model on every rank, each rank's own shard, and the
local gradients after `loss:backward()`. Average every parameter's gradient across the
ranks, one tensor at a time:

```lua
${SOL_AVERAGE}
```

Why the average and not the sum? Each rank's loss is the mean over its own rows, so the
mean of the ranks' gradients is the gradient of the mean over all `N` rows: exactly the
gradient one process would get on the whole batch. The sum would be `world` times too
large, as if the learning rate had been multiplied by `world`.

A whole state dict cannot be all-reduced in one call (`dist.all_reduce(model:state_dict())`
is refused with a hint): collectives take tensors.]]),
        zh = fill([[
第 4 课的状态已经恢复：每个 rank 上一个模型、各自的数据分片，以及
`loss:backward()` 之后的本地梯度。现在把每个参数的梯度在所有 rank 之间求平均，一次一个张量：

```lua
${SOL_AVERAGE}
```

为什么是平均而不是求和？每个 rank 的损失是它自己那几行的平均值，所以各 rank 梯度的
平均，正好是全部 `N` 行平均损失的梯度，也就是单个进程在整个 batch 上得到的梯度。
如果只求和，梯度会大 `world` 倍，相当于把学习率乘了 `world`。

整个 state dict 不能一次做 all-reduce（`dist.all_reduce(model:state_dict())` 会被拒绝，
并给出提示）：集合通信操作的参数是张量。]]),
      },
      pytorch = [[
for p in model.parameters():
    dist.all_reduce(p.grad)
    p.grad /= world]],
      setup = LOCAL_GRADS,
      solution = SOL_AVERAGE,
      hints = {
        msg("Each parameter `p` has its gradient in `p.grad`: reduce that, not `p`.",
          "每个参数 `p` 的梯度在 `p.grad` 里：对它做 reduce，而不是对 `p`。"),
        msg("After the sum, `p.grad:div_(world)` turns it into the average.",
          "求和之后，用 `p.grad:div_(world)` 把它变成平均值。"),
      },
      check = function(c)
        local m = c.global("model")
        local ps = params_of(m)
        local mine_grads, expected = nil, nil
        if ps then
          mine_grads = {}
          for i, p in ipairs(m:parameters()) do mine_grads[i] = p.grad end
          expected = local_grads(m, c.global("x"), c.global("y"))
        end
        local all = c.gather(expected)
        local missing = false
        for r = 1, c.world_size do missing = missing or all[r] == nil end
        if not ps or #mine_grads ~= 4 or missing then
          return false, msg("the model has no gradients: run lesson 4's backward first (:reset)",
            "模型还没有梯度：先完成第 4 课的 backward（:reset）")
        end
        for i = 1, 4 do
          local want = all[1][i]:double()
          for r = 2, #all do want = want + all[r][i]:double() end
          want = want / c.world_size
          if max_diff(mine_grads[i], want) > 1e-6 then
            if max_diff(mine_grads[i], want * c.world_size) < 1e-5 then
              return false, msg("the gradients are the sum over ranks: divide them by `world`",
                "梯度是各 rank 的和：还要除以 `world`")
            end
            return false, msg(
              "parameter " .. i .. "'s gradient is not the average of every rank's gradient",
              "第 " .. i .. " 个参数的梯度不是所有 rank 梯度的平均值")
          end
        end
        return true
      end,
    },
    {
      text = {
        en = [[
Now step. Every rank applies the same averaged gradient to the same weights with the
same optimizer, so every rank computes the same new weights: no weights need to be sent.

```lua
optimizer:step()
:show model.fc1.weight:sum():item()
```

This is the whole idea of DDP: replicate the model, split the data, average the
gradients before the step. The replicas never drift, and they learn from all the data.]],
        zh = [[
现在执行更新。每个 rank 都用同一个优化器，把同样的平均梯度作用在同样的权重上，因此
每个 rank 算出的新权重也完全一样：根本不需要传输权重。

```lua
optimizer:step()
:show model.fc1.weight:sum():item()
```

这就是 DDP 的全部思想：复制模型、切分数据、在更新之前平均梯度。各副本始终一致，
同时又从全部数据中学习。]],
      },
      pytorch = [[
optimizer.step()]],
      setup = LOCAL_GRADS .. SOL_AVERAGE .. "\nw_before = model.fc1.weight:detach():clone()\n",
      solution = "optimizer:step()",
      hints = {
        msg("`optimizer:step()`, on every rank.", "在每个 rank 上执行 `optimizer:step()`。"),
      },
      check = function(c)
        local m = c.global("model")
        local same = all_equal(c, params_of(m))
        if not params_of(m) then
          return false, msg("there is no model: :reset brings it back", "没有模型：用 :reset 恢复")
        end
        if c.equal(m.fc1.weight:detach(), c.global("w_before")) then
          return false, msg("the weights have not changed yet: call `optimizer:step()`",
            "权重还没有变化：调用 `optimizer:step()`")
        end
        if not same then
          return false, msg("the replicas differ: were the gradients averaged on every rank before the step?",
            "各副本不一致：每个 rank 在更新前都平均过梯度吗？")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
A widespread beginner's tutorial does it the other way round: every rank steps with its
own gradient, and then the weights are all-reduced. Try that order on `model` (it has
local, not averaged, gradients again); `good` is a copy that was trained the right way.

```lua
${EX_STEP_AFTER}
```

The replicas agree again, but not with `good`. Adam's first step moves each weight by
about `lr` in the direction against the sign of its gradient, whatever the gradient's
size. Where two ranks' gradients have opposite signs, their steps cancel, so averaging
the weights moves that weight by nothing, where the right step (from the averaged
gradient) moves it by `lr`. Later steps go further wrong: each rank's Adam keeps its own
moment estimates, built from its own gradients. (With plain SGD and one step the two
orders agree, because SGD's step is linear in the gradient; that luck ends as soon as
there is momentum, Adam, or weight decay.) And the tutorial's `all_reduce` with no `op`
sums: without the division, every weight becomes `world` times larger.]]),
        zh = fill([[
一篇流传很广的入门教程把顺序弄反了：每个 rank 先用自己的梯度更新参数，再对权重做 all-reduce。
在 `model` 上试试这种顺序（它又回到了本地梯度、未做平均的状态）；
`good` 是按正确方式训练的一份副本。

```lua
${EX_STEP_AFTER}
```

各副本又一致了，却和 `good` 不一样。Adam 的第一步会让每个权重朝梯度符号的反方向移动
大约 `lr`，与梯度大小无关。如果两个 rank 的梯度符号相反，它们的更新就会相互抵消，
对权重求平均后这个权重几乎不动；而正确的做法（用平均后的梯度更新）会让它移动 `lr`。
之后的每一步错得更多：每个 rank 的 Adam 都保存着由自己梯度得到的动量估计。（如果是
普通 SGD 并且只走一步，两种顺序结果相同，因为 SGD 的更新对梯度是线性的；一旦有了 momentum、
Adam 或 weight decay，这种巧合就不存在了。）另外，那篇教程调用
`all_reduce` 时没有指定 `op`，默认是求和：不做除法的话，每个权重都会变成原来的 `world` 倍。]]),
      },
      pytorch = [[
optimizer.step()
with torch.no_grad():
    for p in model.parameters():
        dist.all_reduce(p); p /= world
diff = (model.fc1.weight - good.fc1.weight).abs().max().item()]],
      setup = LOCAL_GRADS .. [[
w0, g_local = {}, {}
for i, p in ipairs(model:parameters()) do
  w0[i] = p:detach():clone(); g_local[i] = p.grad:clone()
end
good = LinearModel()
good:load_state_dict(model:state_dict())
for i, p in ipairs(good:parameters()) do
  p.grad = g_local[i]:clone(); dist.all_reduce(p.grad); p.grad:div_(world)
end
good_optimizer = optim.Adam(good:parameters(), {lr = 1e-3})
good_optimizer:step()
diff = nil
]],
      solution = [[
optimizer:step()
torch.no_grad(function()
  for _, p in ipairs(model:parameters()) do
    dist.all_reduce(p); p:div_(world)
  end
end)
diff = (model.fc1.weight - good.fc1.weight):abs():max():item()]],
      hints = {
        msg("Changing a parameter in place needs `torch.no_grad(function() ... end)`, as optimizers do.",
          "原地修改参数需要放在 `torch.no_grad(function() ... end)` 里，优化器也是这样做的。"),
        msg("Step first, then all-reduce each parameter and divide by `world`, then compute `diff`.",
          "先 step，再对每个参数做 all-reduce 并除以 `world`，最后计算 `diff`。"),
      },
      check = function(c)
        local m, w0, g = c.global("model"), c.global("w0"), c.global("g_local")
        local ps = params_of(m)
        -- What each rank's own first Adam step gives (float64), then its average.
        local stepped = nil
        if ps and w0 and g then
          stepped = {}
          for i = 1, #w0 do
            local gi = g[i]:double()
            stepped[i] = w0[i]:double() - 1e-3 * gi / (gi:abs() + 1e-8)
          end
        end
        local all = c.gather(stepped)
        local missing = false
        for r = 1, c.world_size do missing = missing or all[r] == nil end
        if not stepped or missing then
          return false, msg("the step's state is missing: :reset brings it back", "这一步的状态不见了：用 :reset 恢复")
        end
        for i = 1, #ps do
          local want = all[1][i]
          for r = 2, #all do want = want + all[r][i] end
          want = want / c.world_size
          if max_diff(ps[i], want) > 1e-6 then
            return false, msg(
              "the weights are not the average of every rank's own Adam step: step first, then all-reduce the weights and divide",
              "权重不是各 rank 各自执行 Adam 更新后的平均值：先 step，再对权重做 all-reduce 并相除")
          end
        end
        local diff = c.global("diff")
        if type(diff) ~= "number" then
          return false, msg("now measure `diff` against `good`", "接下来计算与 `good` 的差 `diff`")
        end
        if math.abs(diff - max_diff(m.fc1.weight, c.global("good").fc1.weight)) > 1e-9 then
          return false, msg("`diff` should be the largest difference between `model.fc1.weight` and `good.fc1.weight`",
            "`diff` 应该是 `model.fc1.weight` 与 `good.fc1.weight` 的最大差值")
        end
        return true
      end,
    },
  },
}
