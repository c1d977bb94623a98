-- Lesson 2: tensors on every rank. The same code runs everywhere but each rank holds its
-- own data; :show puts every rank's value side by side; seeds decide whether random
-- tensors agree; each rank takes its own slice of a dataset.
local INIT = [[if not dist.is_initialized() then dist.init_process_group{backend="gloo", init_method="env://"} end]]

local function no_tensor(name)
  return false, { en = "there is no tensor `" .. name .. "` yet", zh = "还没有张量 `" .. name .. "`" }
end

return {
  title = { en = "Tensors on every rank", zh = "每个 rank 上的张量" },
  min_ranks = 2,
  intro = {
    en = [[
Every rank is a separate process with its own memory. A line you type runs on all of
them, but a tensor made on rank 1 lives on rank 1 only. Same code, different data: that
is the whole idea of data parallel training.]],
    zh = [[
每个 rank 都是独立的进程，拥有自己的内存。你输入的一行代码会在所有 rank 上运行，但在
rank 1 上创建的张量只存在于 rank 1。代码相同，数据不同——这正是数据并行训练的核心。]],
  },
  steps = {
    {
      setup = INIT,
      text = {
        en = [[
# Same code, different values

Make a tensor `x` of three elements, all equal to this rank's number:

```lua
x = torch.full({3}, dist.get_rank())
```

Then look at it with `:show x`: one column per rank. `:show` compares the values too,
and says whether every rank holds the same.]],
        zh = [[
# 代码相同，值不同

创建一个含三个元素的张量 `x`，每个元素都等于本 rank 的编号：

```lua
x = torch.full({3}, dist.get_rank())
```

然后用 `:show x` 查看：每个 rank 一列。`:show` 还会比较这些值，告诉你是否所有 rank 都
相同。]],
      },
      pytorch = [[x = torch.full((3,), dist.get_rank())]],
      solution = [[x = torch.full({3}, dist.get_rank())]],
      hints = {
        { en = "The size is a table: `{3}`; the value is `dist.get_rank()`.",
          zh = "形状写成表：`{3}`；值是 `dist.get_rank()`。" },
      },
      check = function(c)
        local x = c.global("x")
        if not c.is_tensor(x) then return no_tensor("x") end
        if x:numel() ~= 3 then
          return false, { en = "`x` has " .. x:numel() .. " elements, not 3", zh = "`x` 有 " .. x:numel() .. " 个元素，而不是 3 个" }
        end
        if not c.close(x:double(), torch.full({3}, c.rank, {dtype = torch.float64})) then
          return false, { en = "`x` should hold " .. c.rank .. " (this rank's number) three times",
                          zh = "`x` 应当是三个 " .. c.rank .. "（本 rank 的编号）" }
        end
        return true
      end,
    },
    {
      setup = INIT .. "\ntorch.manual_seed(100 + dist.get_rank())",
      text = {
        en = [[
# Random numbers and seeds

Each rank's random generator starts from its own seed (the setup gave rank r the seed
100 + r), so `torch.randn(4)` differs between ranks: try `:show torch.randn(4)`.

When every rank must draw the same numbers (the initial weights of a model, say), seed
them all alike. Set the seed 42 on every rank, then make `w = torch.randn(4)`, and
check with `:show w` that the ranks agree.]],
        zh = [[
# 随机数与种子

每个 rank 的随机数生成器都有自己的种子（准备步骤给 rank r 设置了种子 100 + r），所以
`torch.randn(4)` 在各个 rank 上不同：试试 `:show torch.randn(4)`。

如果所有 rank 需要得到相同的随机数（比如模型的初始权重），就给它们设置相同的种子。在每个
rank 上设置种子 42，然后创建 `w = torch.randn(4)`，再用 `:show w` 确认各 rank 一致。]],
      },
      pytorch = [[torch.manual_seed(42)
w = torch.randn(4)]],
      solution = [[torch.manual_seed(42)
w = torch.randn(4)]],
      hints = {
        { en = "`torch.manual_seed(42)` first, then `w = torch.randn(4)`.",
          zh = "先 `torch.manual_seed(42)`，再 `w = torch.randn(4)`。" },
        { en = "Seed right before drawing: numbers drawn in between move every rank's generator on.",
          zh = "在取随机数之前紧接着设置种子：中间再取的随机数会让生成器继续前进。" },
      },
      check = function(c)
        local w = c.global("w")
        if not c.is_tensor(w) then return no_tensor("w") end
        local all = c.gather(w)
        for r = 1, c.world_size do
          if not c.equal(all[r], all[1]) then
            return false, { en = "`w` on rank " .. (r - 1) .. " differs from rank 0's: did every rank set the same seed just before?",
                            zh = "rank " .. (r - 1) .. " 上的 `w` 与 rank 0 的不同：每个 rank 都在之前设置了相同的种子吗？" }
          end
        end
        return true
      end,
    },
    {
      setup = INIT .. "\ndata = torch.arange(4 * dist.get_world_size()):float()",
      text = {
        en = [[
# A slice for every rank

Data parallel training gives each rank a different part of the data. The setup made
`data`, the numbers 0, 1, 2, ... with 4 per rank. Let each rank take its own 4: rank 0
the first four, rank 1 the next four, and so on, in the global `mine`.

`t:narrow(dim, start, length)` takes `length` elements from `start`, and `start`
counts from 0.]],
        zh = [[
# 每个 rank 一份数据

数据并行训练让每个 rank 处理数据的不同部分。准备步骤创建了 `data`，即 0, 1, 2, ...，每个
rank 4 个数。让每个 rank 取自己的 4 个数：rank 0 取前四个，rank 1 取接下来的四个，依此
类推，存入全局变量 `mine`。

`t:narrow(dim, start, length)` 从 `start` 开始取 `length` 个元素，`start` 从 0 开始计数。]],
      },
      pytorch = [[mine = data.narrow(0, 4 * rank, 4)]],
      solution = [[mine = data:narrow(0, 4 * dist.get_rank(), 4)]],
      hints = {
        { en = "Rank r starts at element 4 * r.", zh = "rank r 从第 4 * r 个元素开始。" },
        { en = "`data:narrow(0, 4 * dist.get_rank(), 4)`", zh = "`data:narrow(0, 4 * dist.get_rank(), 4)`" },
      },
      check = function(c)
        local mine = c.global("mine")
        if not c.is_tensor(mine) then return no_tensor("mine") end
        local want = torch.arange(4 * c.rank, 4 * c.rank + 4):float()
        if mine:numel() ~= 4 then
          return false, { en = "`mine` has " .. mine:numel() .. " elements; each rank takes 4",
                          zh = "`mine` 有 " .. mine:numel() .. " 个元素；每个 rank 应取 4 个" }
        end
        if not c.close(mine:float():reshape(-1), want) then
          return false, { en = "`mine` starts at " .. mine:reshape(-1)[0]:item() .. "; rank " .. c.rank .. "'s slice starts at " .. 4 * c.rank,
                          zh = "`mine` 从 " .. mine:reshape(-1)[0]:item() .. " 开始；rank " .. c.rank .. " 的数据应从 " .. 4 * c.rank .. " 开始" }
        end
        return true
      end,
    },
    {
      setup = INIT .. "\ndata = torch.arange(4 * dist.get_world_size()):float()\nmine = data:narrow(0, 4 * dist.get_rank(), 4)",
      text = {
        en = [[
# Each rank its own result

Compute on your slice: set the global `total` to the sum of `mine` as a plain Lua
number (`:item()` turns a one-element tensor into a number). Then `:show total`: the
ranks differ, as the losses of different batches will later.]],
        zh = [[
# 每个 rank 自己的结果

在自己的数据上计算：把全局变量 `total` 设为 `mine` 的元素之和，并转换成普通的 Lua 数字
（`:item()` 把只有一个元素的张量变成数字）。然后 `:show total`：各 rank 的值不同，就像
以后不同批次的 loss 各不相同。]],
      },
      pytorch = [[total = mine.sum().item()]],
      solution = [[total = mine:sum():item()]],
      hints = {
        { en = "`mine:sum()` is a tensor with one element; add `:item()`.", zh = "`mine:sum()` 是只有一个元素的张量；再加上 `:item()`。" },
      },
      check = function(c)
        local total, mine = c.global("total"), c.global("mine")
        if total == nil then return false, { en = "there is no global `total` yet", zh = "还没有全局变量 `total`" } end
        if c.is_tensor(total) then
          return false, { en = "`total` is a tensor: turn it into a number with :item()", zh = "`total` 是张量：用 :item() 转换成数字" }
        end
        if type(total) ~= "number" or not c.close(total, mine:sum():item()) then
          return false, { en = "`total` is " .. tostring(total) .. ", not the sum of `mine`", zh = "`total` 是 " .. tostring(total) .. "，不是 `mine` 的和" }
        end
        return true
      end,
    },
  },
}
