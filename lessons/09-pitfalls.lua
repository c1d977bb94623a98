-- Lesson 9: pitfalls, each one experienced and then fixed.
-- A collective on only some ranks (ddplab's real mismatch message), ranks taking turns,
-- forwarding through the wrapper on rank 0 only, training through ddp.module, saving a
-- checkpoint from every rank and loading it without map_location, the same augmentation
-- seed on every rank, unused parameters, and scaling the learning rate. An "experience"
-- step passes once the learner has seen the failure (an error on some rank, or replicas
-- that drifted); the step after it fixes it.

local shared = require("lessons.shared") -- the tutorial's model, the checks' helpers
local msg, params_of, all_equal = shared.msg, shared.params_of, shared.all_equal

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
]]

local WRAPPED = INIT .. [[
model = LinearModel()
ddp = nn.DistributedDataParallel(model)
optimizer = optim.Adam(model:parameters(), {lr = 0.01})
]]

local BRANCHY = INIT .. [[
Branchy = nn.Module:extend("Branchy")
function Branchy:__init()
  self.fc1 = nn.Linear(5, 10)
  self.fc2 = nn.Linear(10, 5)
  self.aux = nn.Linear(10, 5)     -- an extra head that this forward never uses
end
function Branchy:forward(x)
  return self.fc2(torch.relu(self.fc1(x)))
end
net = Branchy()
net_optimizer = optim.SGD(net:parameters(), {lr = 0.1})
steps_done = 0
]]

local TRAIN_TWICE = [[
for step = 1, 2 do
  net_optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  net_optimizer:step()
  steps_done = steps_done + 1
end]]

-- Whether some rank's last error in this step contains one of the patterns.
local function some_rank_saw(c, patterns)
  local errs = c.gather(c.last_error())
  for r = 1, c.world_size do -- not ipairs: a rank without an error is a nil
    local e = errs[r]
    if type(e) == "string" then
      for _, p in ipairs(patterns) do
        if e:find(p, 1, true) then return true end
      end
    end
  end
  return false
end

-- Step texts name the code they show (`${EX_TURNS}` in a ```lua fence), filled from one
-- string, so the English and the Chinese text show the same code.
local EX_TURNS = [[
t0 = torch.time()
for i = 0, world - 1 do
  if rank == i then work() end
  dist.barrier()
end
t_turns = torch.time() - t0
t0 = torch.time(); work(); dist.barrier(); t_together = torch.time() - t0]]
local EX_SAVE = [[
if rank == 0 then torch.save(model:state_dict(), ckpt) end
dist.barrier()
sd = torch.load(ckpt, {map_location = "cpu"})
model:load_state_dict(sd)]]
local EX_UNUSED = [[
ddp = nn.DistributedDataParallel(net)
for step = 1, 2 do
  net_optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  net_optimizer:step()
  steps_done = steps_done + 1
end]]
local EX_FIND_UNUSED = [[
ddp = nn.DistributedDataParallel(net, {find_unused_parameters = true})
for step = 1, 2 do
  net_optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  net_optimizer:step()
  steps_done = steps_done + 1
end]]
local CODE = {
  EX_TURNS = EX_TURNS,
  EX_SAVE = EX_SAVE,
  EX_UNUSED = EX_UNUSED,
  EX_FIND_UNUSED = EX_FIND_UNUSED,
}
local fill = shared.filler(CODE)

return {
  title = {
    en = "Pitfalls: break it, see it, fix it",
    zh = "常见陷阱：弄坏它、看清它、修好它",
  },
  min_ranks = 2,
  intro = {
    en = [[
Most DDP bugs come from a handful of mistakes, and several of them appear in popular
tutorials. In this lesson you make each mistake on purpose, see how it shows itself
(an error, a hang, or worse, nothing at all), and then fix it. Some steps end in an
error: that error is the point of the step.]],
    zh = [[
大多数 DDP 的 bug 都来自少数几种错误，其中好几种还出现在流行的教程里。在这一课里，你会
故意犯下每一种错误，看看它如何表现（报错、卡住，或者更糟：什么都不发生），然后修正它。
有些步骤会以报错结束：这个报错正是这一步要看的东西。]],
  },
  steps = {
    {
      text = {
        en = [[
A collective must be called by every rank of its group. Call one on rank 0 only:

```lua
if rank == 0 then dist.all_reduce(t) end
```

In PyTorch, rank 0 would wait for partners that never come, until the process group's
timeout (many minutes by default) kills the job. ddplab compares every collective across
the ranks and tells you at once which ranks called what, and which ones "called nothing
and finished the chunk". Read the message: it is the one you will meet when a collective
hides in an `if`.]],
        zh = [[
集合通信操作必须由组内的每个 rank 调用。只在 rank 0 上调用一次试试：

```lua
if rank == 0 then dist.all_reduce(t) end
```

在 PyTorch 中，rank 0 会一直等待永远不会到来的伙伴，直到进程组超时（默认长达好几分钟）
终止任务。ddplab 会在各 rank 之间比对每一次集合通信，立即告诉你哪些 rank 调用了什么，
哪些 rank “called nothing and finished the chunk”（什么都没调用就结束了代码块）。
仔细读这条消息：当集合通信藏在某个 `if` 里时，你遇到的就是它。]],
      },
      pytorch = [[
if rank == 0:
    dist.all_reduce(t)   # hangs: the other ranks never join]],
      setup = INIT .. "t = torch.ones(3)\n",
      solution = "if rank == 0 then dist.all_reduce(t) end",
      hints = {
        msg("Type the line as it is, and read the error.", "照原样输入这一行，然后阅读报错。"),
      },
      check = function(c)
        if some_rank_saw(c, { "called nothing", "did not arrive" }) then return true end
        return false, msg("call `dist.all_reduce(t)` on rank 0 only, and read what ddplab says",
          "只在 rank 0 上调用 `dist.all_reduce(t)`，看看 ddplab 怎么说")
      end,
    },
    {
      text = {
        en = [[
The fix: every rank calls every collective, in the same order with the same shapes.
Only the work around it may depend on the rank (printing, saving a file, logging):

```lua
dist.all_reduce(t)
if rank == 0 then print(t) end
```

A collective inside `if rank == 0`, inside a loop whose length differs per rank, or
after an early `return` on some ranks is the same bug in other clothes.]],
        zh = [[
修正方法：每个 rank 都按相同的顺序、用相同形状的张量调用每一个集合通信操作。只有它
周围的工作（打印、保存文件、记录日志）才可以依赖 rank：

```lua
dist.all_reduce(t)
if rank == 0 then print(t) end
```

放在 `if rank == 0` 里的集合通信、放在各 rank 循环次数不同的循环里的集合通信、或者在
某些 rank 提前 `return` 之后的集合通信，都是同一个 bug 换了件衣服。]],
      },
      pytorch = [[
dist.all_reduce(t)
if rank == 0:
    print(t)]],
      setup = INIT .. "t = torch.ones(3)\n",
      solution = "dist.all_reduce(t)\nif rank == 0 then print(t) end",
      hints = {
        msg("Move the collective out of the `if`.", "把集合通信移到 `if` 外面。"),
      },
      check = function(c)
        local t = c.global("t")
        if not c.is_tensor(t) or not c.equal(t, torch.full({ 3 }, c.world_size * 1.0)) then
          return false, msg(string.format("`t` should be all %d: all-reduce it on every rank", c.world_size),
            string.format("`t` 应该全是 %d：在每个 rank 上对它做 all-reduce", c.world_size))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Taking turns. A beginner's tutorial wraps training in
`for i in range(world_size): if rank == i: ...`. Without anything that waits, that loop
only runs the body once on each rank (the `if` just hides it). With anything that does
wait for the others inside it, a barrier or a collective, the ranks really take turns:
one works, the rest wait. `work()` stands for a training step of 0.2 s. Time both ways:

```lua
${EX_TURNS}
```

Taking turns costs `world` times as long, and buys nothing: the ranks are separate
processes, and there is nothing to protect from each other.]]),
        zh = fill([[
轮流执行。一篇入门教程把训练包在 `for i in range(world_size): if rank == i: ...` 里。
如果里面没有任何等待，这个循环只是让每个 rank 执行一次循环体（`if` 只是把这一点掩盖了）。
如果里面有任何会等待其他 rank 的东西（barrier 或集合通信），各 rank 就真的在轮流：一个
在干活，其余的都在等。`work()` 代表一个耗时 0.2 秒的训练步骤。两种方式都计时看看：

```lua
${EX_TURNS}
```

轮流执行要花 `world` 倍的时间，却换不来任何好处：各 rank 是彼此独立的进程，没有什么
需要互相保护的。]]),
      },
      pytorch = [[
t0 = time.perf_counter()
for i in range(world):
    if rank == i:
        work()
    dist.barrier()
t_turns = time.perf_counter() - t0]],
      setup = INIT .. [[
function work()
  local t0 = torch.time()
  while torch.time() - t0 < 0.2 do end
end
t_turns, t_together = nil, nil
]],
      solution = [[
t0 = torch.time()
for i = 0, world - 1 do
  if rank == i then work() end
  dist.barrier()
end
t_turns = torch.time() - t0
t0 = torch.time(); work(); dist.barrier(); t_together = torch.time() - t0]],
      hints = {
        msg("The barrier inside the loop is what makes the ranks wait for their turn.",
          "循环里的 barrier 正是让各 rank 排队等候的原因。"),
      },
      check = function(c)
        local tt, tg = c.global("t_turns"), c.global("t_together")
        if type(tt) ~= "number" or type(tg) ~= "number" then
          return false, msg("time both: `t_turns` and `t_together`", "两种方式都要计时：`t_turns` 和 `t_together`")
        end
        if tt < 0.2 * c.world_size * 0.9 then
          return false, msg("`t_turns` should time the loop of turns with a barrier in each turn",
            "`t_turns` 应该测量每一轮都带 barrier 的轮流循环")
        end
        if tg > tt / 1.5 then
          return false, msg("`t_together` should time one `work()` on every rank at once",
            "`t_together` 应该测量所有 rank 同时执行一次 `work()`")
        end
        return true
      end,
    },
    {
      text = {
        en = [[
The wrapper's backward is collective too: every backward through `ddp` all-reduces the
gradients. Forward and backward on rank 0 only, as if the other ranks had nothing to do:

```lua
if rank == 0 then criterion(ddp(x), y):backward() end
```

Rank 0's backward waits for gradients from ranks that never ran one. Every rank must
run the same number of forward and backward passes through the wrapper. To evaluate or
print on one rank, use the plain model without gradients:
`torch.no_grad(function() return criterion(ddp.module(X), Y) end)`.]],
        zh = [[
包装器的 backward 同样是集合操作：每一次通过 `ddp` 的 backward 都会对梯度做 all-reduce。
只在 rank 0 上做前向和反向，就好像其他 rank 无事可做一样：

```lua
if rank == 0 then criterion(ddp(x), y):backward() end
```

rank 0 的 backward 会等待那些根本没有执行 backward 的 rank 发来梯度。每个 rank 通过包装器
执行的前向和反向次数必须相同。如果只想在一个 rank 上评估或打印，就用不带梯度的原始模型： `torch.no_grad(function()
return criterion(ddp.module(X), Y) end)`。]],
      },
      pytorch = [[
if rank == 0:
    criterion(ddp(x), y).backward()   # rank 0 waits for the others forever]],
      setup = WRAPPED,
      solution = "if rank == 0 then criterion(ddp(x), y):backward() end",
      hints = {
        msg("Type it as it is: the error is the lesson.", "照原样输入：报错正是这一步要看的。"),
      },
      check = function(c)
        if some_rank_saw(c, { "collective", "did not arrive", "called nothing" }) then return true end
        return false, msg("run the forward and backward on rank 0 only, and read the error",
          "只在 rank 0 上运行前向和反向，然后阅读报错")
      end,
    },
    {
      text = {
        en = [[
A quieter bug: training through `ddp.module` instead of `ddp`. It runs, with no error:

```lua
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp.module(x), y):backward()
  optimizer:step()
end
:show model.fc1.weight:sum():item()
```

`ddp.module` is the bare model: its backward never goes through the wrapper, so the
gradients are never averaged and every rank steps with its own. The replicas have
drifted apart, silently, as in lesson 4.]],
        zh = [[
一个更隐蔽的 bug：通过 `ddp.module` 而不是 `ddp` 来训练。它能运行，也不报错：

```lua
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp.module(x), y):backward()
  optimizer:step()
end
:show model.fc1.weight:sum():item()
```

`ddp.module` 是原始模型：它的 backward 从不经过包装器，所以梯度从未被平均，每个
rank 都用自己的梯度更新。各副本已经悄悄地走散了，就像第 4 课那样。]],
      },
      pytorch = [[
loss = criterion(ddp.module(x), y)   # no error, no gradient averaging
loss.backward()]],
      setup = WRAPPED,
      solution = [[
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp.module(x), y):backward()
  optimizer:step()
end]],
      hints = {
        msg("Run the loop as written, then compare the weights with `:show`.", "按原样运行循环，然后用 `:show` 比较权重。"),
      },
      check = function(c)
        local same = all_equal(c, params_of(c.global("model")))
        if same then
          return false, msg("the replicas are still identical: train a few steps through `ddp.module`",
            "各副本仍然相同：通过 `ddp.module` 训练几步")
        end
        return true
      end,
    },
    {
      text = {
        en = [[
The fix is one word: call the wrapper. (Fresh replicas are ready again.)

```lua
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  optimizer:step()
end
```

Use `ddp.module` only where no gradients are synced anyway: evaluation under `no_grad`,
and saving the model's weights without the `module.` prefix.]],
        zh = [[
修正只需要改一个词：调用包装器。（新的、一致的副本已经准备好了。）

```lua
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  optimizer:step()
end
```

只在本来就不需要同步梯度的地方使用 `ddp.module`：在 `no_grad` 下做评估，以及保存不带 `module.`
前缀的模型权重。]],
      },
      pytorch = [[
loss = criterion(ddp(x), y)
loss.backward()]],
      setup = WRAPPED,
      solution = [[
for step = 1, 5 do
  optimizer:zero_grad()
  criterion(ddp(x), y):backward()
  optimizer:step()
end]],
      hints = {
        msg("`ddp(x)`, not `ddp.module(x)`.", "用 `ddp(x)`，而不是 `ddp.module(x)`。"),
      },
      check = function(c)
        local m = c.global("model")
        local same = all_equal(c, params_of(m))
        local moved = m and m.fc1.weight.grad ~= nil
        if not moved then
          return false, msg("train 5 steps through `ddp`", "通过 `ddp` 训练 5 步")
        end
        if not same then
          return false, msg("the replicas differ: call `ddp(x)`, not `ddp.module(x)`",
            "各副本不一致：调用 `ddp(x)`，而不是 `ddp.module(x)`")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Checkpoints. The replicas are identical, so one copy is enough: save on rank 0 only.
If every rank saves to one path, the writes race and the file holds whichever finished
last (ddplab refuses a second rank saving the same file at the same moment, and says
so). Then the other ranks must wait until the file is complete before they read it:
a barrier. When loading, say where the tensors go: `map_location`. In PyTorch, a
checkpoint saved from GPU 0 loads back onto GPU 0 by default, on every rank, so all of
them crowd one GPU; with `map_location` each rank puts it on its own device.

```lua
${EX_SAVE}
```

`ckpt` is a path chosen for this session (the check removes the file once the step is
done). Save `model:state_dict()` (or
`ddp.module`'s), not `ddp:state_dict()`, whose keys start with `module.`, unless you
load it into a wrapped model again.]]),
        zh = fill([[
检查点（checkpoint）。各副本完全相同，所以保存一份就够了：只在 rank 0 上保存。如果每个 rank
都保存到同一个路径，写入会相互竞争，文件里留下的是最后写完的那一份（ddplab 会拒绝
第二个 rank 同时保存同一个文件，并说明原因）。其他 rank 必须等文件完整写好之后再读取：
这就需要一个 barrier。加载时要说明张量放到哪里：`map_location`。在 PyTorch 中，从 GPU
0 保存的检查点默认会加载回 GPU 0，而且每个 rank 都这样，于是所有 rank 都挤在一块 GPU 上；
有了 `map_location`，每个 rank 都把它放到自己的设备上。

```lua
${EX_SAVE}
```

`ckpt` 是为本次会话选好的路径（这一步完成后，检查会删掉这个文件）。保存 `model:state_dict()`（或 `ddp.module` 的），而不是 `ddp:state_dict()`，
后者的键都以 `module.` 开头，除非你还要把它加载回一个包装过的模型。]]),
      },
      pytorch = [[
if rank == 0:
    torch.save(model.state_dict(), ckpt)
dist.barrier()
sd = torch.load(ckpt, map_location={"cuda:0": f"cuda:{local_rank}"})
model.load_state_dict(sd)]],
      setup = INIT .. [[
model = LinearModel()
for _, p in ipairs(model:parameters()) do dist.broadcast(p, 0) end
ckpt = "/tmp/ddplab-lesson9-" .. os.getenv("MASTER_PORT") .. ".safetensors"
if rank == 0 then os.remove(ckpt) end
dist.barrier()
sd = nil
]],
      solution = [[
if rank == 0 then torch.save(model:state_dict(), ckpt) end
dist.barrier()
sd = torch.load(ckpt, {map_location = "cpu"})
model:load_state_dict(sd)]],
      hints = {
        msg("Save inside `if rank == 0 then ... end`, then `dist.barrier()` on every rank, then load.",
          "在 `if rank == 0 then ... end` 里保存，然后每个 rank 都调用 `dist.barrier()`，再加载。"),
        msg("`torch.load(path, {map_location = \"cpu\"})` on this machine; `\"cuda:\" .. local_rank` on GPUs.",
          "在这台机器上用 `torch.load(path, {map_location = \"cpu\"})`；在 GPU 上用 `\"cuda:\" .. local_rank`。"),
      },
      check = function(c)
        local m, sd = c.global("model"), c.global("sd")
        local all = c.gather(params_of(m))
        if type(sd) ~= "table" or not c.is_tensor(sd["fc1.weight"]) then
          return false, msg("there is no loaded state dict `sd` yet", "还没有加载好的 state dict `sd`")
        end
        if not c.equal(sd["fc1.weight"], all[1][1]) then
          return false, msg("`sd` does not hold rank 0's weights", "`sd` 中不是 rank 0 的权重")
        end
        if not c.ran("map_location") then
          return false, msg("load with `{map_location = ...}`", "加载时加上 `{map_location = ...}`")
        end
        if not c.ran("barrier") then
          return false, msg("wait for rank 0's file with `dist.barrier()` before loading",
            "加载之前用 `dist.barrier()` 等待 rank 0 写完文件")
        end
        -- done: every rank holds its copy in `sd`, so the file can go (no litter in /tmp)
        local ckpt = c.global("ckpt")
        if c.rank == 0 and type(ckpt) == "string" then os.remove(ckpt) end
        return true
      end,
    },
    {
      text = {
        en = [[
Random numbers: two rules that look opposite. The model may start from the same seed on
every rank (DDP broadcasts rank 0's weights anyway), and the sampler must use the same
seed on every rank (lesson 8). But random augmentation (noise, crops, flips, dropout)
should differ per rank: with one seed everywhere, every rank applies the very same
"random" changes to its samples. Here every rank seeded with 1234; `:show noise` is
identical. Seed per rank:

```lua
torch.manual_seed(1234 + rank)
noise = torch.randn(4)
```

In PyTorch the DataLoader's workers need the same care (`worker_init_fn`, or a
`generator` seeded with the rank).]],
        zh = [[
随机数：两条看似相反的规则。模型可以在每个 rank 上用同一个种子初始化（反正 DDP 会广播 rank
0 的权重），sampler 则必须在每个 rank 上使用同一个种子（第 8 课）。但随机数据增强
（噪声、裁剪、翻转、dropout）应该每个 rank 各不相同：如果到处都用同一个种子，每个
rank 都会对自己的样本施加一模一样的“随机”变换。这里每个 rank 都用 1234 设置了种子； `:show
noise` 完全相同。改成按 rank 设置种子：

```lua
torch.manual_seed(1234 + rank)
noise = torch.randn(4)
```

在 PyTorch 中，DataLoader 的 worker 也需要同样的处理（`worker_init_fn`，或者用
rank 设置种子的 `generator`）。]],
      },
      pytorch = [[
torch.manual_seed(1234 + rank)
noise = torch.randn(4)]],
      setup = INIT .. "torch.manual_seed(1234)\nnoise = torch.randn(4)\n",
      solution = "torch.manual_seed(1234 + rank)\nnoise = torch.randn(4)",
      hints = {
        msg("Add the rank to the seed.", "把 rank 加到种子上。"),
      },
      check = function(c)
        local noise = c.global("noise")
        local all = c.gather(noise)
        if not c.is_tensor(noise) then
          return false, msg("there is no tensor `noise`", "没有张量 `noise`")
        end
        for r = 1, #all do
          for q = r + 1, #all do
            if c.equal(all[r], all[q]) then
              return false, msg(string.format("ranks %d and %d drew the same noise: seed with the rank", r - 1, q - 1),
                string.format("rank %d 和 rank %d 生成了相同的噪声：用 rank 设置种子", r - 1, q - 1))
            end
          end
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Unused parameters. `net` has a head `aux` that its forward never uses, so `aux` never
gets a gradient. The wrapper waits for every parameter's gradient before a bucket is
complete; by default it assumes they all come. Wrap it and train two steps:

```lua
${EX_UNUSED}
```

The second forward stops with PyTorch's error: the previous iteration's reduction never
finished, because some parameters were not used to produce the loss. ddplab names them.]]),
        zh = fill([[
未使用的参数。`net` 有一个 forward 从不使用的输出头 `aux`，所以 `aux` 永远得不到梯度。
包装器要等一个 bucket 里每个参数的梯度都到齐才算完成；默认情况下它假定所有梯度都会来。
把它包装起来，训练两步：

```lua
${EX_UNUSED}
```

第二次前向会以 PyTorch 的报错停下：上一轮的归约（reduction）没有完成，因为有些参数没有
参与计算损失。ddplab 会指出它们的名字。]]),
      },
      pytorch = [[
ddp = DDP(net)
for step in range(2):
    net_optimizer.zero_grad()
    criterion(ddp(x), y).backward()   # the 2nd forward raises
    net_optimizer.step()]],
      setup = BRANCHY,
      solution = "ddp = nn.DistributedDataParallel(net)\n" .. TRAIN_TWICE,
      hints = {
        msg("Run it as it is and read the error: which parameters does it name?",
          "照原样运行并阅读报错：它指出了哪些参数？"),
      },
      check = function(c)
        if some_rank_saw(c, { "find_unused_parameters" }) then return true end
        return false, msg("wrap `net` and train two steps; the second forward should fail",
          "包装 `net` 并训练两步；第二次前向应该报错")
      end,
    },
    {
      text = {
        en = fill([[
Tell the wrapper that some parameters may go unused. After each backward it then looks
for the parameters that got no gradient and marks them ready itself:

```lua
${EX_FIND_UNUSED}
```

That search costs time every step, so it is off by default. Better still, when a
parameter is never used, remove it from the model.]]),
        zh = fill([[
告诉包装器有些参数可能用不到。这样在每次 backward 之后，它会找出没有得到梯度的参数，
并自行把它们标记为就绪：

```lua
${EX_FIND_UNUSED}
```

这种查找每一步都要花时间，所以默认是关闭的。更好的办法是：如果某个参数从来不用，
就把它从模型里删掉。]]),
      },
      pytorch = [[
ddp = DDP(net, find_unused_parameters=True)]],
      setup = BRANCHY,
      solution = "ddp = nn.DistributedDataParallel(net, {find_unused_parameters = true})\n" .. TRAIN_TWICE,
      hints = {
        msg("Options go in a table: `{find_unused_parameters = true}`.", "选项放在一个表里：`{find_unused_parameters = true}`。"),
      },
      check = function(c)
        local same = all_equal(c, params_of(c.global("net")))
        if c.global("steps_done") ~= 2 then
          return false, msg("train the two steps to the end", "把两步训练完整地跑完")
        end
        if not same then
          return false, msg("the replicas of `net` differ", "`net` 的各副本不一致")
        end
        return true
      end,
    },
    {
      text = {
        en = [[
The learning rate. Suppose `base_lr = 0.1` was tuned for one process with batch 32.
With DDP each rank also takes 32 samples, and the averaged gradient is that of a batch
of `32 * world`: a larger batch, less noisy gradients, and `world` times fewer steps per
epoch. A common starting point is the linear scaling rule (Goyal et al., 2017): scale
the learning rate by the number of ranks, and warm it up over the first epochs.

```lua
lr = base_lr * world
```

It is a heuristic, not a law: for Adam, smaller factors (such as the square root) are
often used. And if instead you keep the global batch at 32 (8 per rank on 4 ranks), the
steps are the same as before and the learning rate stays as it was.]],
        zh = [[
学习率。假设 `base_lr = 0.1` 是针对单进程、batch 为 32 调好的。使用 DDP 后，每个
rank 也各取 32 个样本，平均后的梯度相当于一个大小为 `32 * world` 的 batch：batch 更大，梯度
噪声更小，而每个 epoch 的步数变成原来的 `world` 分之一。常用的起点是线性缩放规则
（Goyal 等人，2017）：把学习率乘以 rank 的数量，并在最初几个 epoch 里做预热（warmup）。

```lua
lr = base_lr * world
```

这是经验法则，而不是定律：对 Adam 常用更小的倍数（比如平方根）。另外，如果你让全局 batch
保持为 32（4 个 rank 时每个 rank 8 个样本），每一步就和原来一样，学习率也保持不变。]],
      },
      pytorch = [[
lr = base_lr * world_size
optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)]],
      setup = INIT .. "base_lr = 0.1\nlr = nil\n",
      solution = "lr = base_lr * world",
      hints = {
        msg("The global batch grew by a factor of `world`.", "全局 batch 变成了原来的 `world` 倍。"),
      },
      check = function(c)
        local lr = c.global("lr")
        local want = 0.1 * c.world_size
        if type(lr) ~= "number" or math.abs(lr - want) > 1e-12 then
          return false, msg(string.format("with the linear rule, `lr` is %g on %d ranks", want, c.world_size),
            string.format("按线性规则，%d 个 rank 时 `lr` 是 %g", c.world_size, want))
        end
        return true
      end,
    },
  },
}
