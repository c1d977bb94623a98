-- Lesson 8: data — sharding with DistributedSampler, set_epoch, uneven data, join.
-- The learner shards a dataset with the sampler, sees the same order every epoch when
-- set_epoch is forgotten and a new one when it is called, counts what padding and
-- drop_last do to an uneven dataset, and then meets uneven inputs in training: the hang
-- (reported by ddplab) and ddp:join. The expected index lists come from the sampler
-- itself, so the checks hold for any generator.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg, params_of = shared.msg, shared.params_of

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
]] .. shared.LINEAR_MODEL .. [[torch.manual_seed(0)
N = 4 * world -- 16 samples on 4 ranks
X = torch.randn(N, 5)
ds = data.TensorDataset(X, torch.arange(N))
]]

local SOL_EPOCHS_NO_SET = [[
loader = data.DataLoader(ds, {batch_size = 2, sampler = sampler})
orders = {}
for epoch = 0, 2 do
  orders[epoch + 1] = {}
  for xb, ib in loader do
    for _, i in ipairs(ib:tolist()) do table.insert(orders[epoch + 1], i) end
  end
end]]

local SOL_EPOCHS_SET = [[
orders = {}
for epoch = 0, 2 do
  sampler:set_epoch(epoch)
  orders[epoch + 1] = {}
  for xb, ib in loader do
    for _, i in ipairs(ib:tolist()) do table.insert(orders[epoch + 1], i) end
  end
end]]

-- Each rank gets a different number of batches, as when a dataset is split by hand.
local UNEVEN = INIT .. [[
torch.manual_seed(1)
model = LinearModel()
ddp = nn.DistributedDataParallel(model)
criterion = nn.MSELoss()
optimizer = optim.SGD(model:parameters(), {lr = 0.1})
torch.manual_seed(7 + rank)
batches = {}
for i = 1, 3 + rank do batches[i] = {torch.randn(4, 5), torch.randn(4, 5)} end
done = 0
]]

local SOL_JOIN = [[
ddp:join(function()
  for _, b in ipairs(batches) do
    optimizer:zero_grad()
    criterion(ddp(b[1]), b[2]):backward()
    optimizer:step()
    done = done + 1
  end
end)]]

local function list_equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Whether the ranks' lists are disjoint and together are exactly 0 .. n-1.
local function partition(all, n, world)
  local seen, count = {}, 0
  for r = 1, world do
    local list = all[r]
    if type(list) ~= "table" then return false end
    for _, i in ipairs(list) do
      if seen[i] or math.type(i) ~= "integer" or i < 0 or i >= n then return false end
      seen[i] = true
      count = count + 1
    end
  end
  return count == n
end

-- Step texts name the code they show (`${SOL_EPOCHS_NO_SET}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local EX_BATCHES = [[
for _, b in ipairs(batches) do
  optimizer:zero_grad()
  criterion(ddp(b[1]), b[2]):backward()
  optimizer:step()
  done = done + 1
end]]
local CODE = {
  EX_BATCHES = EX_BATCHES,
  SOL_EPOCHS_NO_SET = SOL_EPOCHS_NO_SET,
  SOL_EPOCHS_SET = SOL_EPOCHS_SET,
  SOL_JOIN = SOL_JOIN,
}
local fill = shared.filler(CODE)

return {
  title = {
    en = "Data: DistributedSampler, set_epoch, uneven data and join",
    zh = "数据：DistributedSampler、set_epoch、不均匀的数据与 join",
  },
  min_ranks = 2,
  intro = {
    en = [[
In lessons 4 to 6 each rank cut its rows out of the batch by hand. Real training reads a
dataset in many batches, shuffled anew each epoch, and the dataset's size rarely divides
evenly by the number of ranks. PyTorch's `DistributedSampler` and `DataLoader` handle
this, and ddplab has the same: `data` is `torch.utils.data`.

A tutorial that trains every rank on the whole dataset is not data parallel at all:
every rank computes the same gradient, and N ranks do the work of one.]],
    zh = [[
在第 4 到第 6 课里，每个 rank 都是手工从 batch 中切出自己的行。真实的训练会把数据集分成
许多 batch 读取，每个 epoch 重新打乱，而且数据集的大小很少能被 rank 的数量整除。 PyTorch
的 `DistributedSampler` 和 `DataLoader` 负责处理这些，ddplab 也有同样的东西： `data`
就是 `torch.utils.data`。

如果一篇教程让每个 rank 都在整个数据集上训练，那根本不是数据并行：每个 rank 算出的
梯度完全相同，N 个 rank 只做了一个 rank 的工作。]],
  },
  steps = {
    {
      text = {
        en = [[
`ds` is a dataset of `N = 4 * world` samples (16 on 4 ranks); each sample is a row of `X` and its own index (so you
can see which samples a rank gets). Make a sampler and ask for this rank's indices:

```lua
sampler = data.DistributedSampler(ds, {shuffle = false})
mine = sampler:indices()
```

`:show table.concat(mine, " ")`: rank `r` gets indices `r`, `r + world`,
`r + 2*world`, ... (a stride, not a block of rows). The sampler reads the world size and
the rank from the process group; the ranks' shares never overlap and together cover the
dataset once.]],
        zh = [[
`ds` 是一个有 `N = 4 * world` 个样本的数据集（4 个 rank 时是 16 个）；每个样本是 `X` 的一行加上它自己的序号（这样就能看出
每个 rank 拿到了哪些样本）。创建一个 sampler，取出本 rank 的序号：

```lua
sampler = data.DistributedSampler(ds, {shuffle = false})
mine = sampler:indices()
```

试试 `:show table.concat(mine, " ")`：rank `r` 拿到序号 `r`、`r + world`、 `r
+ 2*world`……（按步长间隔取，而不是连续的一段）。sampler 从进程组读取 world size 和 rank；
各 rank 分到的部分互不重叠，合起来正好把数据集覆盖一遍。]],
      },
      pytorch = [[
from torch.utils.data import DistributedSampler
sampler = DistributedSampler(ds, shuffle=False)
mine = list(sampler)]],
      setup = INIT .. "sampler, mine = nil, nil\n",
      solution = "sampler = data.DistributedSampler(ds, {shuffle = false})\nmine = sampler:indices()",
      hints = {
        msg("Options go in a table: `{shuffle = false}`.", "选项放在一个表里：`{shuffle = false}`。"),
        msg("`sampler:indices()` is what `list(sampler)` gives in PyTorch.",
          "`sampler:indices()` 相当于 PyTorch 中的 `list(sampler)`。"),
      },
      check = function(c)
        local mine = c.global("mine")
        local all = c.gather(type(mine) == "table" and mine or nil)
        if type(mine) ~= "table" then
          return false, msg("there is no list `mine` yet", "还没有列表 `mine`")
        end
        local want = {}
        for i = c.rank, 4 * c.world_size - 1, c.world_size do want[#want + 1] = i end
        if not list_equal(mine, want) then
          return false, msg("`mine` should be this rank's indices, unshuffled: `{shuffle = false}`",
            "`mine` 应该是本 rank 未打乱的序号：`{shuffle = false}`")
        end
        if not partition(all, 4 * c.world_size, c.world_size) then
          return false, msg(string.format("the ranks' indices should cover 0 to %d once", 4 * c.world_size - 1),
            string.format("所有 rank 的序号合起来应该恰好覆盖 0 到 %d 各一次", 4 * c.world_size - 1))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Now the usual setup: a shuffling sampler (the default, with `seed = 0`) and a loader
that reads batches of 2 through it. Run three epochs and keep the order of the indices
this rank saw in each:

```lua
${SOL_EPOCHS_NO_SET}
```

Compare `:show table.concat(orders[1], " ")` with `orders[2]` and `orders[3]`: the same,
every epoch. The sampler shuffles with the seed plus its epoch number, and nobody told it
that the epoch changed. Every rank uses the same seed on purpose: the ranks must agree on
one permutation, or their shares would overlap.]]),
        zh = fill([[
接下来是常见的写法：一个会打乱顺序的 sampler（默认如此，`seed = 0`），以及一个通过它
每次读取 2 个样本的 loader。运行三个 epoch，记录本 rank 每个 epoch 看到的序号顺序：

```lua
${SOL_EPOCHS_NO_SET}
```

把 `:show table.concat(orders[1], " ")` 与 `orders[2]`、`orders[3]` 比较：每个
epoch 都一模一样。sampler 用“种子加上 epoch 编号”来打乱顺序，而没有人告诉它 epoch 变了。
每个 rank 使用相同的种子是有意为之：所有 rank 必须在同一个排列上达成一致，否则它们分到
的部分就会重叠。]]),
      },
      pytorch = [[
loader = DataLoader(ds, batch_size=2, sampler=sampler)
orders = []
for epoch in range(3):
    orders.append([i for xb, ib in loader for i in ib.tolist()])]],
      setup = INIT .. "sampler = data.DistributedSampler(ds)\nloader, orders = nil, nil\n",
      solution = SOL_EPOCHS_NO_SET,
      hints = {
        msg("Pass the sampler to the loader, and no `shuffle`: the sampler already shuffles.",
          "把 sampler 传给 loader，不要再加 `shuffle`：sampler 已经在打乱了。"),
        msg("`ib` is a tensor of indices; `ib:tolist()` gives a Lua list of them.",
          "`ib` 是序号组成的张量；`ib:tolist()` 把它变成 Lua 列表。"),
      },
      check = function(c)
        local orders = c.global("orders")
        if type(orders) ~= "table" or #orders < 3 then
          return false, msg("`orders` should hold three epochs", "`orders` 应该包含三个 epoch")
        end
        local want = data.DistributedSampler(c.global("ds")):indices()
        for e = 1, 3 do
          if not list_equal(orders[e], want) then
            return false, msg(
              string.format("`orders[%d]` is not the order the loader gives without set_epoch", e),
              string.format("`orders[%d]` 不是没有调用 set_epoch 时 loader 给出的顺序", e))
          end
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Fix it: tell the sampler which epoch it is, at the start of every epoch.

```lua
${SOL_EPOCHS_SET}
```

Now every epoch has its own order, still the same permutation on every rank, so the
shares still cover the dataset once per epoch. Forgetting `set_epoch` raises no error;
the model just sees the same sequence of batches every epoch, which usually trains a
little worse.]]),
        zh = fill([[
修正它：在每个 epoch 开始时告诉 sampler 现在是第几个 epoch。

```lua
${SOL_EPOCHS_SET}
```

现在每个 epoch 都有自己的顺序，而且在每个 rank 上仍然是同一个排列，所以每个 epoch 各 rank
分到的部分仍然恰好覆盖数据集一遍。忘记 `set_epoch` 不会报任何错误；模型只是每个 epoch
都看到同样顺序的 batch，通常训练效果会差一些。]]),
      },
      pytorch = [[
for epoch in range(3):
    sampler.set_epoch(epoch)
    for xb, ib in loader:
        ...]],
      setup = INIT .. "sampler = data.DistributedSampler(ds)\n" .. SOL_EPOCHS_NO_SET .. "\n",
      solution = SOL_EPOCHS_SET,
      hints = {
        msg("`sampler:set_epoch(epoch)` goes inside the epoch loop, before the loop over the loader.",
          "`sampler:set_epoch(epoch)` 放在 epoch 循环内部、遍历 loader 之前。"),
      },
      check = function(c)
        local orders = c.global("orders")
        local all = c.gather(type(orders) == "table" and orders or nil)
        if type(orders) ~= "table" or #orders < 3 then
          return false, msg("`orders` should hold three epochs", "`orders` 应该包含三个 epoch")
        end
        local ds = c.global("ds")
        for e = 1, 3 do
          local s = data.DistributedSampler(ds)
          s:set_epoch(e - 1)
          if not list_equal(orders[e], s:indices()) then
            return false, msg(
              string.format("`orders[%d]` is not the order of epoch %d: call `sampler:set_epoch(epoch)` first", e, e - 1),
              string.format("`orders[%d]` 不是第 %d 个 epoch 的顺序：先调用 `sampler:set_epoch(epoch)`", e, e - 1))
          end
          local shares = {}
          for r = 1, #all do shares[r] = all[r] and all[r][e] end
          if not partition(shares, 4 * c.world_size, c.world_size) then
            return false, msg("in each epoch the ranks' shares should cover the dataset once",
              "每个 epoch 中各 rank 的部分应该恰好覆盖数据集一遍")
          end
        end
        return true
      end,
    },
    {
      text = {
        en = [[
A dataset of 19 samples does not divide by 2 or 4 ranks. The sampler gives every rank
the same number of samples anyway, because every rank must run the same number of steps
(each step's all-reduce needs everyone). By default it pads: it repeats indices from the
start of the (shuffled) list until the total divides. With `drop_last = true` it drops
the tail instead.

```lua
ds19 = data.TensorDataset(torch.randn(19, 5), torch.arange(19))
n_pad = #data.DistributedSampler(ds19, {shuffle = false})
n_drop = #data.DistributedSampler(ds19, {shuffle = false, drop_last = true})
```

`#sampler` is the number of samples per rank. With padding, a few samples are seen twice
per epoch: nearly harmless for training, but an evaluation that averages over padded shards
counts them twice. With `drop_last`, a few samples are skipped each epoch (different ones
each epoch when shuffling).]],
        zh = [[
19 个样本的数据集无法被 2 或 4 个 rank 整除。sampler 仍然会让每个 rank 分到同样多的
样本，因为每个 rank 必须执行同样多的步数（每一步的 all-reduce 都需要所有人参与）。
默认情况下它会填充：从（打乱后的）列表开头重复取序号，直到总数能够整除。设置 `drop_last
= true` 则会丢掉末尾多出来的部分。

```lua
ds19 = data.TensorDataset(torch.randn(19, 5), torch.arange(19))
n_pad = #data.DistributedSampler(ds19, {shuffle = false})
n_drop = #data.DistributedSampler(ds19, {shuffle = false, drop_last = true})
```

`#sampler` 是每个 rank 的样本数。填充时，每个 epoch 会有几个样本被看到两次：对训练
几乎无害，但如果评估时对填充过的分片求平均，这些样本就被算了两次。使用 `drop_last` 时，
每个 epoch 会跳过几个样本（打乱顺序时，每个 epoch 跳过的样本不同）。]],
      },
      pytorch = [[
ds19 = TensorDataset(torch.randn(19, 5), torch.arange(19))
n_pad = len(DistributedSampler(ds19, shuffle=False))
n_drop = len(DistributedSampler(ds19, shuffle=False, drop_last=True))]],
      setup = INIT .. "n_pad, n_drop = nil, nil\n",
      solution = "ds19 = data.TensorDataset(torch.randn(19, 5), torch.arange(19))\nn_pad = #data.DistributedSampler(ds19, {shuffle = false})\nn_drop = #data.DistributedSampler(ds19, {shuffle = false, drop_last = true})",
      hints = {
        msg("`#s` on a sampler is its number of samples for this rank, as `len(s)` in PyTorch.",
          "对 sampler 用 `#s` 得到本 rank 的样本数，相当于 PyTorch 的 `len(s)`。"),
      },
      check = function(c)
        local w = c.world_size
        local pad, drop = -((-19) // w), 19 // w
        if c.global("n_pad") ~= pad then
          return false, msg(string.format("`n_pad` should be %d: 19 samples padded to %d, over %d ranks", pad, pad * w, w),
            string.format("`n_pad` 应该是 %d：19 个样本填充到 %d 个，分给 %d 个 rank", pad, pad * w, w))
        end
        if c.global("n_drop") ~= drop then
          return false, msg(string.format("`n_drop` should be %d: 19 samples cut to %d, over %d ranks", drop, drop * w, w),
            string.format("`n_drop` 应该是 %d：19 个样本截断到 %d 个，分给 %d 个 rank", drop, drop * w, w))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Without a sampler, ranks can end up with different numbers of batches: here rank `r` has
`3 + r`. `ddp` wraps `model` (lesson 7). Train through every batch and watch what happens
when rank 0 runs out:

```lua
${EX_BATCHES}
```

Every backward all-reduces the gradients, so it needs every rank. Rank 0 finished its
3 batches and left the loop; the others wait for it in their 4th backward. In PyTorch this
hangs until a timeout; ddplab reports the collective that not every rank called.]]),
        zh = fill([[
如果不用 sampler，各 rank 拿到的 batch 数可能不同：这里 rank `r` 有 `3 + r` 个。
`ddp` 包装了 `model`（第 7 课）。遍历所有 batch 进行训练，看看 rank 0 用完数据时会发生什么：

```lua
${EX_BATCHES}
```

每次 backward 都会对梯度做 all-reduce，因此需要所有 rank 参与。rank 0 处理完它的 3 个 batch
就离开了循环；其他 rank 在第 4 次 backward 里等它。在 PyTorch 中这会一直卡住，
直到超时；ddplab 则会报告哪一个集合通信操作没有被所有 rank 调用。]]),
      },
      pytorch = [[
for xb, yb in batches:
    optimizer.zero_grad()
    criterion(ddp(xb), yb).backward()
    optimizer.step()]],
      setup = UNEVEN,
      solution = "for _, b in ipairs(batches) do optimizer:zero_grad(); criterion(ddp(b[1]), b[2]):backward(); optimizer:step(); done = done + 1 end",
      hints = {
        msg("Run the loop as it is: the error is the lesson.", "直接运行这个循环：报错正是这一步要看的。"),
      },
      check = function(c)
        local errs = c.gather(c.last_error())
        for r = 1, c.world_size do -- not ipairs: a rank without an error is a nil
          local e = errs[r]
          if type(e) == "string" and e:find("collective") then return true end
        end
        return false, msg("run the loop over `batches` on every rank and read the error",
          "在每个 rank 上运行遍历 `batches` 的循环，并阅读报错信息")
      end,
    },
    {
      text = {
        en = fill([[
`ddp:join(fn)` runs `fn` and handles the uneven end: a rank that has run out of batches
stays in `join` and takes part in the others' all-reduces with zeros for its
gradients, until every rank is done.

```lua
${SOL_JOIN}
```

Every rank finishes and the replicas stay identical. The joined ranks contribute zeros,
so the last steps average over fewer real gradients (by default still divided by the
full world size). Even shards from a sampler avoid the question altogether.]]),
        zh = fill([[
`ddp:join(fn)` 会运行 `fn`，并处理结尾不均匀的情况：已经用完 batch 的 rank 会留在 `join`
里，用全零的梯度参与其他 rank 的 all-reduce，直到所有 rank 都完成。

```lua
${SOL_JOIN}
```

每个 rank 都能顺利结束，各副本也保持一致。已经 join 的 rank 贡献的是零，所以最后几步
是对更少的真实梯度求平均（默认仍然除以完整的 world size）。用 sampler 得到均匀的分片，
就根本不会有这个问题。]]),
      },
      pytorch = [[
with ddp.join():
    for xb, yb in batches:
        optimizer.zero_grad()
        criterion(ddp(xb), yb).backward()
        optimizer.step()]],
      setup = UNEVEN,
      solution = SOL_JOIN,
      hints = {
        msg("Put the whole loop inside `ddp:join(function() ... end)`.", "把整个循环放进 `ddp:join(function() ... end)` 里。"),
      },
      check = function(c)
        local m = c.global("model")
        local all = c.gather(params_of(m))
        local done = c.global("done")
        if done ~= 3 + c.rank then
          return false, msg(string.format("rank %d should have trained on its %d batches (done = %s)", c.rank, 3 + c.rank, tostring(done)),
            string.format("rank %d 应该训练完它的 %d 个 batch（done = %s）", c.rank, 3 + c.rank, tostring(done)))
        end
        for r = 2, #all do
          for i = 1, #all[1] do
            if not c.equal(all[r][i], all[1][i]) then
              return false, msg("the replicas differ after training", "训练后各副本不一致")
            end
          end
        end
        if not c.ran("join") then
          return false, msg("use `ddp:join`", "使用 `ddp:join`")
        end
        return true
      end,
    },
  },
}
