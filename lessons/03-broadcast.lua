-- Lesson 3: broadcast. Replicas must start identical, so rank 0's values are sent to
-- every rank; a collective moves tensors, so a model goes one parameter at a time (the
-- seed tutorial broadcasts a whole state_dict, which fails: here the learner sees why);
-- and the learner checks agreement across ranks themselves.
local INIT = [[if not dist.is_initialized() then dist.init_process_group{backend="gloo", init_method="env://"} end]]

local function differs(c, name, value)
  local all = c.gather(value)
  for r = 2, c.world_size do
    if not c.equal(all[r], all[1]) then return r - 1 end
  end
  return nil
end

return {
  title = { en = "Broadcast: one model, every rank", zh = "广播：让每个 rank 拥有同一个模型" },
  min_ranks = 2,
  intro = {
    en = [[
DDP replicates the model: every rank holds a whole copy and trains it on its own part of
the data. (It does not split the model across machines: that is model parallelism, a
different technique.) The copies must start out identical, or they would drift apart
from the first step. `dist.broadcast` makes them so.]],
    zh = [[
DDP 复制模型：每个 rank 都持有一份完整的模型，在自己那部分数据上训练。（它并不把模型
拆分到多台机器上——那是模型并行，另一种技术。）各份模型在开始时必须完全相同，否则从第一
步起就会越走越远。`dist.broadcast` 可以做到这一点。]],
  },
  steps = {
    {
      setup = INIT .. "\ntorch.manual_seed(dist.get_rank())\nw = torch.randn(3)",
      text = {
        en = [[
# One tensor from rank 0

The setup gave each rank a different random `w` (look: `:show w`).
`dist.broadcast(t, src)` sends rank `src`'s `t` to every rank, overwriting theirs in
place. Every rank calls it with the same `src`: rank 0 sends, the others receive.

Make `w` the same everywhere, taking rank 0's values.]],
        zh = [[
# 从 rank 0 发出一个张量

准备步骤给每个 rank 生成了不同的随机张量 `w`（用 `:show w` 看看）。
`dist.broadcast(t, src)` 把 rank `src` 上的 `t` 发送到所有 rank，原地覆盖它们的值。每个
rank 都用相同的 `src` 调用它：rank 0 发送，其他 rank 接收。

让所有 rank 上的 `w` 都变成 rank 0 的值。]],
      },
      pytorch = [[dist.broadcast(w, src=0)]],
      solution = [[dist.broadcast(w, 0)]],
      hints = {
        { en = "Every rank runs the same line: `dist.broadcast(w, 0)`.", zh = "每个 rank 运行同一行：`dist.broadcast(w, 0)`。" },
        { en = "Writing `if dist.get_rank() == 0 then ... end` around it would leave the other ranks out: a collective needs every rank.",
          zh = "如果外面包一层 `if dist.get_rank() == 0 then ... end`，其他 rank 就不参与了：集合通信需要所有 rank 一起调用。" },
      },
      check = function(c)
        local w = c.global("w")
        if not c.is_tensor(w) then return false, { en = "there is no tensor `w`: :reset brings it back", zh = "没有张量 `w`：用 :reset 恢复" } end
        local r = differs(c, "w", w)
        if r then
          return false, { en = "w on rank " .. r .. " differs from rank 0's: did every rank call broadcast?",
                          zh = "rank " .. r .. " 上的 w 与 rank 0 的不同：每个 rank 都调用 broadcast 了吗？" }
        end
        return true
      end,
    },
    {
      setup = INIT .. "\ntorch.manual_seed(dist.get_rank())\nmodel = nn.Linear(4, 2)",
      text = {
        en = [[
# A whole model in one call?

The setup built `model = nn.Linear(4, 2)` on every rank, each with its own random
weights. Tutorials sometimes write `dist.broadcast(model.state_dict(), src=0)`. Try
the same here:

```lua
dist.broadcast(model:state_dict(), 0)
```

and read the error. A collective moves one tensor: a state dict is a table of them.]],
        zh = [[
# 一次广播整个模型？

准备步骤在每个 rank 上创建了 `model = nn.Linear(4, 2)`，权重各自随机。有些教程会写
`dist.broadcast(model.state_dict(), src=0)`。在这里也试一下：

```lua
dist.broadcast(model:state_dict(), 0)
```

读一读报错信息。集合通信一次传输一个张量，而 state dict 是由许多张量组成的表。]],
      },
      pytorch = [[dist.broadcast(model.state_dict(), src=0)  # fails: not a tensor]],
      solution = [[dist.broadcast(model:state_dict(), 0)]],
      hints = {
        { en = "Type the line as it is: this step is about the error it gives.", zh = "照原样输入这一行：这一步要看的就是它的报错。" },
      },
      check = function(c)
        local e = c.last_error()
        if e and e:find("broadcast", 1, true) and e:find("tensor", 1, true) then return true end
        return false, { en = "try `dist.broadcast(model:state_dict(), 0)` and read what it says",
                        zh = "试试 `dist.broadcast(model:state_dict(), 0)`，读一读它的提示" }
      end,
    },
    {
      setup = INIT .. "\ntorch.manual_seed(dist.get_rank())\nmodel = nn.Linear(4, 2)",
      text = {
        en = [[
# One parameter at a time

`model:parameters()` is a Lua list of the model's tensors (the weight and the bias).
Broadcast each from rank 0, in the same order on every rank:

```lua
for _, p in ipairs(model:parameters()) do
  -- your line here
end
```

Afterwards `:show model.weight` shows one value for all ranks. This is what
`DistributedDataParallel` does for you when it wraps a model.]],
        zh = [[
# 逐个参数广播

`model:parameters()` 是模型中所有张量（权重和偏置）组成的 Lua 列表。在每个 rank 上按相同
顺序，把它们逐个从 rank 0 广播出去：

```lua
for _, p in ipairs(model:parameters()) do
  -- 在这里写你的代码
end
```

完成后 `:show model.weight` 会显示所有 rank 相同的值。`DistributedDataParallel` 包装模型
时替你做的正是这件事。]],
      },
      pytorch = [[for p in model.parameters():
    dist.broadcast(p.data, src=0)]],
      solution = [[for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end]],
      hints = {
        { en = "Inside the loop: `dist.broadcast(p, 0)`.", zh = "循环里写：`dist.broadcast(p, 0)`。" },
        { en = "The order matters: every rank walks the same list, so the k-th broadcast on every rank is about the same tensor.",
          zh = "顺序很重要：每个 rank 遍历的是同一个列表，所以各 rank 的第 k 次广播针对的是同一个张量。" },
      },
      check = function(c)
        local model = c.global("model")
        if type(model) ~= "table" or not model.parameters then
          return false, { en = "there is no `model`: :reset brings it back", zh = "没有 `model`：用 :reset 恢复" }
        end
        for i, p in ipairs(model:parameters()) do
          local r = differs(c, "p", p)
          if r then
            return false, { en = "parameter " .. i .. " of the model on rank " .. r .. " differs from rank 0's",
                            zh = "rank " .. r .. " 上模型的第 " .. i .. " 个参数与 rank 0 的不同" }
          end
        end
        return true
      end,
    },
    {
      setup = INIT .. [[

torch.manual_seed(dist.get_rank())
model = nn.Linear(4, 2)
for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end]],
      text = {
        en = [[
# Do we agree?

On a real cluster nobody prints the weights of eight GPUs side by side. Let every rank
find out for itself whether its weight equals rank 0's: broadcast a copy of rank 0's
weight into a clone, then compare.

```lua
ref = model.weight:clone()
dist.broadcast(ref, 0)
```

Set the global `agree` to `ref:equal(model.weight)`; it should be true on every rank.]],
        zh = [[
# 大家一致吗？

在真实的集群上，没有人会把八块 GPU 的权重并排打印出来。让每个 rank 自己判断它的权重是否
与 rank 0 的相同：先克隆一份权重，把 rank 0 的值广播进这个副本，再做比较。

```lua
ref = model.weight:clone()
dist.broadcast(ref, 0)
```

把全局变量 `agree` 设为 `ref:equal(model.weight)`；它在每个 rank 上都应为 true。]],
      },
      pytorch = [[ref = model.weight.detach().clone()
dist.broadcast(ref, src=0)
agree = torch.equal(ref, model.weight)]],
      solution = [[ref = model.weight:clone()
dist.broadcast(ref, 0)
agree = ref:equal(model.weight)]],
      hints = {
        { en = "Broadcast into a clone: broadcasting `model.weight` itself would overwrite what you want to compare.",
          zh = "要广播到副本里：直接广播 `model.weight` 会覆盖你要比较的值。" },
      },
      check = function(c)
        local agree = c.global("agree")
        if agree == nil then return false, { en = "there is no global `agree` yet", zh = "还没有全局变量 `agree`" } end
        if agree ~= true then
          return false, { en = "`agree` is " .. tostring(agree) .. " here (a boolean from ref:equal(model.weight) is expected)",
                          zh = "这里的 `agree` 是 " .. tostring(agree) .. "（应当是 ref:equal(model.weight) 得到的布尔值）" }
        end
        if not c.ran("broadcast") then
          return false, { en = "compute `agree` from a broadcast copy of rank 0's weight", zh = "请用从 rank 0 广播来的权重副本计算 `agree`" }
        end
        return true
      end,
    },
  },
}
