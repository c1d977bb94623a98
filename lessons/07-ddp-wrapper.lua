-- Lesson 7: the DDP wrapper — nn.DistributedDataParallel(model), its buckets and the
-- overlap of communication with backward (ddp:summary()), and ddp:no_sync for gradient
-- accumulation. Checks compare with one process on the whole batch (as lesson 6) and
-- with gradients recomputed from the ranks' own data.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg = shared.msg
local max_diff = shared.max_diff
local params_of = shared.params_of
local all_equal = shared.all_equal
local single_process = shared.single_process

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
]] .. shared.LINEAR_MODEL .. [[torch.manual_seed(0)
N = 4 * world -- one batch: 4 rows per rank (16 on 4 ranks)
X, Y = torch.randn(N, 5), torch.randn(N, 5)
b = #X // world
x = X:narrow(0, rank * b, b)
y = Y:narrow(0, rank * b, b)
criterion = nn.MSELoss()
torch.manual_seed(100 + rank)
model = LinearModel()
]]

local WRAPPED = INIT .. [[
ddp = nn.DistributedDataParallel(model)
init_state = {}
for name, t in pairs(model:state_dict()) do init_state[name] = t:clone() end
optimizer = optim.Adam(model:parameters(), {lr = 0.01})
]]

local SOL_LOOP = [[
losses = {}
for step = 1, 20 do
  optimizer:zero_grad()
  loss = criterion(ddp(x), y)
  loss:backward()
  optimizer:step()
  losses[step] = loss:item()
end]]

local BIG = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
big = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                    nn.Linear(1024, 256))
big_ddp = nn.DistributedDataParallel(big, {bucket_cap_mb = 1})
torch.manual_seed(10 + rank)
xb, yb = torch.randn(32, 256), torch.randn(32, 256)
]]

local SOL_NO_SYNC = [[
optimizer:zero_grad()
ddp:no_sync(function()
  criterion(ddp(x1), y1):backward()
end)
criterion(ddp(x2), y2):backward()]]

-- The local gradients of the model's MSE loss, summed over the given micro-batches.
local function local_grads(model, pairs_)
  local ps = {}
  for i, p in ipairs(model:parameters()) do ps[i] = p:detach():clone():requires_grad_() end
  local F = torch.nn.functional
  for _, xy in ipairs(pairs_) do
    F.mse_loss(F.linear(F.relu(F.linear(xy[1], ps[1], ps[2])), ps[3], ps[4]), xy[2]):backward()
  end
  local grads = {}
  for i, p in ipairs(ps) do grads[i] = p.grad end
  return grads
end

-- Step texts name the code they show (`${SOL_LOOP}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local CODE = { SOL_LOOP = SOL_LOOP, SOL_NO_SYNC = SOL_NO_SYNC }
local fill = shared.filler(CODE)

return {
  title = {
    en = "The DDP wrapper: buckets, overlap and no_sync",
    zh = "DDP 包装器：bucket、通信与计算重叠、no_sync",
  },
  min_ranks = 2,
  intro = {
    en = [[
Everything you wrote by hand in lessons 4 to 6 (broadcast the weights once, average the
gradients every step) is what `nn.DistributedDataParallel` does for you, with one
improvement: it starts averaging some gradients while backward is still computing
others. The training loop then reads exactly like single-process training.

(A widely copied tutorial says DDP needs PyTorch 1.9 or later. It is much older:
`DistributedDataParallel` was already part of PyTorch 1.0, released in December 2018,
where torch.distributed was rebuilt on its c10d library.)]],
    zh = [[
你在第 4 到第 6 课里手写的一切（开始时广播一次权重，每一步平均梯度）， `nn.DistributedDataParallel`
都会替你完成，而且还多了一项改进：在 backward 还在计算
其他梯度的时候，它就开始对已经算好的梯度求平均。这样训练循环看起来和单进程训练完全一样。

（一篇流传很广的教程说 DDP 需要 PyTorch 1.9 或更高版本。其实它早得多：2018 年 12 月发布的 PyTorch
1.0 就已经包含 `DistributedDataParallel`，那一版把 torch.distributed 重建在了 c10d
库之上。）]],
  },
  steps = {
    {
      text = {
        en = [[
`model` was built with a different seed on every rank, so the replicas differ
(`:show model.fc1.weight:sum():item()`). Wrap it:

```lua
ddp = nn.DistributedDataParallel(model)
```

Constructing the wrapper is a collective: every rank must do it. It first checks that
every rank has the same parameters (count and shapes; a mismatch is an error naming the
rank and the parameter), then broadcasts rank 0's parameters and buffers. Show the sums
again: identical. `ddp.module` is your `model`; calling `ddp(x)` runs its forward.
`ddp:state_dict()` names every tensor with a `module.` prefix, as in PyTorch.]],
        zh = [[
`model` 在每个 rank 上用不同的随机种子创建，所以各副本并不相同
（`:show model.fc1.weight:sum():item()`）。把它包装起来：

```lua
ddp = nn.DistributedDataParallel(model)
```

创建包装器本身就是一次集合通信：每个 rank 都必须执行。它先检查每个 rank 的参数是否
相同（数量和形状；不一致时会报错，并指出是哪个 rank、哪个参数），然后广播 rank 0 的
参数和 buffer。再看一次各 rank 的和：完全相同。`ddp.module` 就是你的 `model`；调用 `ddp(x)`
会执行它的 forward。和 PyTorch 一样，`ddp:state_dict()` 中每个张量的名字都带有 `module.`
前缀。]],
      },
      pytorch = [[
from torch.nn.parallel import DistributedDataParallel as DDP
ddp = DDP(model)]],
      setup = INIT .. "ddp = nil\n",
      solution = "ddp = nn.DistributedDataParallel(model)",
      hints = {
        msg("`nn.DistributedDataParallel(model)`, on every rank.", "在每个 rank 上调用 `nn.DistributedDataParallel(model)`。"),
      },
      check = function(c)
        local m, d = c.global("model"), c.global("ddp")
        local same = all_equal(c, params_of(m))
        if d == nil then
          return false, msg("there is no `ddp` yet", "还没有 `ddp`")
        end
        if d.module ~= m then
          return false, msg("`ddp` should wrap `model`: `ddp.module` is not `model`", "`ddp` 应该包装 `model`：`ddp.module` 不是 `model`")
        end
        if not same then
          return false, msg("the replicas still differ", "各副本仍然不一致")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Train with it. The loop is lesson 6's without the averaging loop: `backward` through
the wrapper averages the gradients across ranks.

```lua
${SOL_LOOP}
```

The check compares your weights with one process trained on the whole batch from the
same start, as you did by hand in lesson 6: they agree to float32 rounding.]]),
        zh = fill([[
用它来训练。循环就是第 6 课的循环去掉求平均的那一段：通过包装器执行的
`backward` 会在各 rank 之间平均梯度。

```lua
${SOL_LOOP}
```

检查会把你的权重与单个进程从相同起点在整个 batch 上训练的结果进行比较，就像你在
第 6 课里手工做的那样：两者在 float32 舍入误差范围内一致。]]),
      },
      pytorch = [[
for step in range(20):
    optimizer.zero_grad()
    loss = criterion(ddp(x), y)
    loss.backward()
    optimizer.step()]],
      setup = WRAPPED .. "losses = nil\n",
      solution = SOL_LOOP,
      hints = {
        msg("Forward through `ddp`, not `model`: only the wrapper's backward averages the gradients.",
          "通过 `ddp` 而不是 `model` 做前向：只有经过包装器的 backward 才会平均梯度。"),
      },
      check = function(c)
        local m, losses = c.global("model"), c.global("losses")
        local same = all_equal(c, params_of(m))
        if type(losses) ~= "table" or #losses < 20 then
          return false, msg("train for 20 steps, keeping `losses`", "训练 20 步，并记录 `losses`")
        end
        if not same then
          return false, msg("the replicas differ: forward through `ddp`", "各副本不一致：请通过 `ddp` 做前向")
        end
        local want = single_process(c, #losses, 0.01)
        for i, p in ipairs(m:parameters()) do
          if max_diff(p, want[i]) > 1e-4 then
            return false, msg("the weights are not those of one process on the whole batch",
              "权重与单个进程在整个 batch 上训练的结果不同")
          end
        end
        return true
      end,
    },
    {
      text = {
        en = [[
How the wrapper averages: it groups the gradients into buckets, in reverse order of the
parameters, because backward produces the last layer's gradients first. As soon as every
gradient of a bucket is ready, that bucket's all-reduce starts (each gradient divided by
the world size, then summed), while backward carries on with earlier layers. The first
bucket is kept small (1 MiB) so that communication starts early; the others hold up to
`bucket_cap_mb` (25 by default), and a parameter larger than that gets a bucket of its
own. The optimizer step waits for all of them.

`big` is a 6 MiB MLP, wrapped with 1 MiB buckets. Run one step and look:

```lua
big_ddp(xb):sub(yb):pow(2):mean():backward()
big_ddp:summary()
```

The summary lists the buckets (which parameters, how many bytes) and a timeline per rank:
forward, backward, each bucket's all-reduce from start to end, the step. The all-reduces
of the first buckets begin before backward ends: that overlap is why DDP is faster than
the loop you wrote by hand, which only starts communicating when backward is over. After
the first step, the buckets are rebuilt in the order the gradients actually arrived.]],
        zh = [[
包装器是怎样求平均的：它把梯度分成若干个 bucket，按参数的逆序排列，因为 backward 最先
算出最后一层的梯度。一个 bucket 里的梯度全部就绪后，这个 bucket 的 all-reduce 就立即
开始（每个梯度先除以 world size，再求和），与此同时 backward 继续计算前面各层。第一个 bucket
很小（1 MiB），这样通信能尽早开始；其余的最多容纳 `bucket_cap_mb`（默认 25），
比这还大的参数则单独占一个 bucket。优化器的 step 会等待所有 bucket 完成。

`big` 是一个 6 MiB 的 MLP，用 1 MiB 的 bucket 包装。运行一步看看：

```lua
big_ddp(xb):sub(yb):pow(2):mean():backward()
big_ddp:summary()
```

summary 会列出各个 bucket（包含哪些参数、多少字节），以及每个 rank 的时间线：前向、
反向、每个 bucket 的 all-reduce 从开始到结束、更新。前几个 bucket 的 all-reduce 在 backward
结束之前就开始了：正是这种重叠让 DDP 比你手写的循环更快，因为手写的循环要等 backward
全部结束才开始通信。第一步之后，bucket 会按照梯度实际到达的顺序重新构建。]],
      },
      pytorch = [[
big_ddp = DDP(big, bucket_cap_mb=1)
((big_ddp(xb) - yb) ** 2).mean().backward()
# PyTorch has no summary(); the profiler shows the same timeline]],
      setup = BIG,
      solution = "big_ddp(xb):sub(yb):pow(2):mean():backward()\nbig_ddp:summary()",
      hints = {
        msg("Forward and backward through `big_ddp` first, then `big_ddp:summary()`.",
          "先通过 `big_ddp` 做前向和反向，然后调用 `big_ddp:summary()`。"),
      },
      check = function(c)
        local big = c.global("big")
        local sums = nil
        if type(big) == "table" and nn.is_module(big) then
          sums = {}
          for i, p in ipairs(big:parameters()) do
            sums[i] = p.grad and p.grad:double():sum():item() or false
          end
        end
        local all = c.gather(sums)
        if not sums or sums[1] == false then
          return false, msg("there are no gradients yet: forward and backward through `big_ddp`",
            "还没有梯度：先通过 `big_ddp` 做前向和反向")
        end
        for r = 2, #all do
          for i = 1, #sums do
            if all[r][i] ~= all[1][i] then
              return false, msg("the gradients differ across ranks: go through `big_ddp`, not `big`",
                "各 rank 的梯度不同：要通过 `big_ddp`，而不是 `big`")
            end
          end
        end
        if not c.ran("summary") then
          return false, msg("now look at `big_ddp:summary()`", "现在看看 `big_ddp:summary()`")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Gradient accumulation: to train with a batch larger than memory allows, run several
micro-batches and step once. Gradients add up in `.grad` across backward calls, so
averaging them after every micro-batch would be wasted communication: only the sum
matters. `ddp:no_sync(fn)` runs `fn` with the all-reduce switched off; the next backward
outside it all-reduces the accumulated gradients.

`x1, y1` and `x2, y2` are the two halves of this rank's shard:

```lua
${SOL_NO_SYNC}
```

Every rank now holds the average over ranks of (gradient of micro-batch 1 + gradient of
micro-batch 2), after one all-reduce instead of two; the result is the same as without
`no_sync`, only cheaper. To match one batch of both halves exactly, divide each
micro-batch's loss by the number of micro-batches.]]),
        zh = fill([[
梯度累积：如果想用超出显存容量的 batch 训练，可以跑几个 micro-batch，然后只更新一次。
多次 backward 的梯度会在 `.grad` 中累加，所以每个 micro-batch 之后都求平均纯属浪费通信：
真正要的只是总和。`ddp:no_sync(fn)` 在关闭 all-reduce 的情况下运行 `fn`；在它之外的
下一次 backward 会对累积的梯度做 all-reduce。

`x1, y1` 和 `x2, y2` 是本 rank 分片的前后两半：

```lua
${SOL_NO_SYNC}
```

现在每个 rank 上都是（micro-batch 1 的梯度 + micro-batch 2 的梯度）在各 rank 间的平均，
只做了一次 all-reduce 而不是两次；结果与不用 `no_sync` 时相同，只是更省。若要与两半
合成的一个 batch 完全一致，就把每个 micro-batch 的损失除以 micro-batch 的个数。]]),
      },
      pytorch = [[
optimizer.zero_grad()
with ddp.no_sync():
    criterion(ddp(x1), y1).backward()
criterion(ddp(x2), y2).backward()]],
      setup = WRAPPED .. [[
h = b // 2
x1, y1 = x:narrow(0, 0, h), y:narrow(0, 0, h)
x2, y2 = x:narrow(0, h, b - h), y:narrow(0, h, b - h)
optimizer:zero_grad()
]],
      solution = SOL_NO_SYNC,
      hints = {
        msg("Only the first micro-batch goes inside `no_sync`; the last backward must sync.",
          "只有第一个 micro-batch 放在 `no_sync` 里面；最后一次 backward 必须同步。"),
      },
      check = function(c)
        local m = c.global("model")
        local mine = local_grads(m, { { c.global("x1"), c.global("y1") }, { c.global("x2"), c.global("y2") } })
        local all = c.gather(mine)
        for i, p in ipairs(m:parameters()) do
          if not c.is_tensor(p.grad) then
            return false, msg("there are no gradients yet", "还没有梯度")
          end
          local want = all[1][i]:double()
          for r = 2, #all do want = want + all[r][i]:double() end
          want = want / c.world_size
          if max_diff(p.grad, want) > 1e-5 then
            return false, msg("the gradients are not the average over ranks of both micro-batches' gradients",
              "梯度不是两个 micro-batch 梯度之和在各 rank 间的平均")
          end
        end
        if not c.ran("no_sync") then
          return false, msg("right numbers, but use `ddp:no_sync` for the first micro-batch",
            "结果正确，但第一个 micro-batch 要用 `ddp:no_sync`")
        end
        return true
      end,
    },
  },
}
