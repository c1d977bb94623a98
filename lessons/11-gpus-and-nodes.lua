-- Lesson 11: GPUs and many machines.
-- What changes with GPUs (NCCL, one rank per GPU chosen by LOCAL_RANK) and with several
-- machines (--nnodes, global rank = node * ranks per node + local rank), taught so that a
-- CPU-only build can do every step: the checks accept the answers of both kinds of build,
-- and the many-machine steps simulate nodes by splitting this machine's ranks.
local shared = require("lessons.shared") -- the checks' helpers
local msg = shared.msg

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
]]

local SOL_DEVICE = [[
local_rank = tonumber(os.getenv("LOCAL_RANK"))
gpu = torch.cuda.is_available()
device = gpu and ("cuda:" .. local_rank) or "cpu"
backend = (gpu and dist.is_nccl_available()) and "nccl" or "gloo"]]

local SOL_LAYOUT = [[
nnodes = 2
per_node = (world + nnodes - 1) // nnodes   -- rounded up
node = rank // per_node
local_r = rank % per_node]]

local SOL_HIER = [[
node_groups = {}
for k = 0, nnodes - 1 do
  local members = {}
  for r = k * per_node, math.min((k + 1) * per_node, world) - 1 do
    members[#members + 1] = r
  end
  node_groups[k] = dist.new_group(members)
end
leader_ranks = {}
for k = 0, nnodes - 1 do leader_ranks[#leader_ranks + 1] = k * per_node end
leaders = dist.new_group(leader_ranks)
h = torch.tensor({rank + 1.0})
dist.all_reduce(h, {group = node_groups[node]})
if local_r == 0 then dist.all_reduce(h, {group = leaders}) end
dist.broadcast(h, node * per_node, {group = node_groups[node]})]]

-- Step texts name the code they show (`${SOL_DEVICE}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local CODE = { SOL_DEVICE = SOL_DEVICE, SOL_LAYOUT = SOL_LAYOUT, SOL_HIER = SOL_HIER }
local fill = shared.filler(CODE)

return {
  title = {
    en = "GPUs and many machines",
    zh = "GPU 与多机训练",
  },
  min_ranks = 2,
  intro = {
    en = [[
Everything so far ran on CPUs with Gloo. Real DDP jobs run one rank per GPU, use NCCL
for the collectives, and often span several machines. The code changes very little; the
ideas are the same. This lesson shows what changes, and simulates on any machine what it
cannot run here.]],
    zh = [[
到目前为止，一切都在 CPU 上用 Gloo 运行。真实的 DDP 任务通常是每块 GPU 一个 rank，用 NCCL
做集合通信，而且常常跨越多台机器。代码几乎不用改，思想也完全相同。这一课说明哪些
地方会变化，并在任何机器上模拟这里无法真正运行的部分。]],
  },
  steps = {
    {
      text = {
        en = [[
First find out what you have. `ddplab --version` says what the build supports (for
instance `CUDA yes, NCCL no, Gloo yes`); whether a GPU is actually there is another
question, which every rank can ask (a build with CUDA on a machine without a GPU
answers false):

```lua
has_cuda = torch.cuda.is_available()
has_nccl = dist.is_nccl_available()
```

NCCL (NVIDIA's collective communication library) is the backend for GPU tensors: it
moves data between GPUs directly, over NVLink inside a machine and over the network
(InfiniBand or Ethernet) between machines. Gloo is the backend for CPU tensors. When both
are false, as on a machine without a GPU, `backend = "nccl"` is refused and
`t:to("cuda")` is an error, each saying why: the rest of this lesson still works.]],
        zh = [[
先弄清楚你手头有什么。`ddplab --version` 会显示这个版本支持什么（例如 `CUDA
yes, NCCL no, Gloo yes`）；而机器上是否真的有 GPU 是另一个问题，每个 rank 都可以
查询（支持 CUDA 的版本运行在没有 GPU 的机器上，得到的也是 false）：

```lua
has_cuda = torch.cuda.is_available()
has_nccl = dist.is_nccl_available()
```

NCCL（NVIDIA 的集合通信库）是 GPU 张量使用的后端：它在 GPU 之间直接传输数据，机器内部
走 NVLink，机器之间走网络（InfiniBand 或以太网）。Gloo 是 CPU 张量使用的后端。如果两者
都是 false（比如在没有 GPU 的机器上），`backend = "nccl"` 会被拒绝，`t:to("cuda")` 也会
报错，并各自说明原因：本课剩下的内容照样可以完成。]],
      },
      pytorch = [[
has_cuda = torch.cuda.is_available()
has_nccl = dist.is_nccl_available()]],
      setup = INIT .. "has_cuda, has_nccl = nil, nil\n",
      solution = "has_cuda = torch.cuda.is_available()\nhas_nccl = dist.is_nccl_available()",
      hints = {
        msg("Both are functions that return a boolean.", "两者都是返回布尔值的函数。"),
      },
      check = function(c)
        local hc, hn = c.global("has_cuda"), c.global("has_nccl")
        if type(hc) ~= "boolean" or type(hn) ~= "boolean" then
          return false, msg("`has_cuda` and `has_nccl` should be booleans", "`has_cuda` 和 `has_nccl` 应该是布尔值")
        end
        if hc ~= torch.cuda.is_available() or hn ~= dist.is_nccl_available() then
          return false, msg("ask the build: `torch.cuda.is_available()` and `dist.is_nccl_available()`",
            "向这个版本查询：`torch.cuda.is_available()` 和 `dist.is_nccl_available()`")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
One rank per GPU. A launcher (torchrun, or ddplab) starts as many ranks on a machine as
it has GPUs (`-n`, torchrun's `--nproc_per_node`) and gives each its `LOCAL_RANK`, its
index on this machine. A rank uses the GPU of that number: `LOCAL_RANK`, not `RANK`,
because on the second machine the ranks are 4 to 7 but the GPUs are still 0 to 3.
Write the choice so that it runs anywhere (`a and b or c` is Lua's `b if a else c`):

```lua
${SOL_DEVICE}
```

In PyTorch the rest follows: `torch.cuda.set_device(local_rank)`, the model moved with
`model.to(device)`, the wrapper told its device with `DDP(model, device_ids=[local_rank])`,
and every batch moved to `device`. Two ranks sharing one GPU is a classic mistake (they
fight over its memory, and NCCL refuses a GPU used twice); forgetting `set_device` puts every
rank's work on GPU 0.]]),
        zh = fill([[
每块 GPU 一个 rank。启动器（torchrun 或 ddplab）在一台机器上启动与 GPU 数量相同的
rank （`-n`，即 torchrun 的 `--nproc_per_node`），并给每个 rank 设置 `LOCAL_RANK`，也就是它
在本机上的序号。rank 使用编号与之相同的那块 GPU：用 `LOCAL_RANK` 而不是 `RANK`，因为在
第二台机器上 rank 是 4 到 7，GPU 却仍然是 0 到 3。把这个选择写成在任何地方都能运行的
形式（`a and b or c` 相当于 Python 的 `b if a else c`）：

```lua
${SOL_DEVICE}
```

在 PyTorch 中接下来是：`torch.cuda.set_device(local_rank)`，用 `model.to(device)` 移动
模型，用 `DDP(model, device_ids=[local_rank])` 告诉包装器它的设备，并把每个 batch 都移到 `device`
上。两个 rank 共用一块 GPU 是典型错误（它们争抢显存，NCCL 也会拒绝同一块 GPU 被用两次）；
忘记 `set_device` 则会让所有 rank 的计算都跑到 GPU 0 上。]]),
      },
      pytorch = [[
local_rank = int(os.environ["LOCAL_RANK"])
gpu = torch.cuda.is_available()
device = f"cuda:{local_rank}" if gpu else "cpu"
backend = "nccl" if gpu and dist.is_nccl_available() else "gloo"
if gpu:
    torch.cuda.set_device(local_rank)]],
      setup = INIT .. "local_rank, gpu, device, backend = nil, nil, nil, nil\n",
      solution = SOL_DEVICE,
      hints = {
        msg("`os.getenv` gives a string: `tonumber` turns it into a number.",
          "`os.getenv` 返回字符串：用 `tonumber` 把它变成数字。"),
        msg("`..` joins strings in Lua: `\"cuda:\" .. local_rank`.", "Lua 用 `..` 连接字符串：`\"cuda:\" .. local_rank`。"),
      },
      check = function(c)
        local lr = tonumber(os.getenv("LOCAL_RANK"))
        local gpu = torch.cuda.is_available()
        local want_device = gpu and ("cuda:" .. lr) or "cpu"
        local want_backend = (gpu and dist.is_nccl_available()) and "nccl" or "gloo"
        if c.global("local_rank") ~= lr then
          return false, msg("`local_rank` should be the number in the LOCAL_RANK variable",
            "`local_rank` 应该是环境变量 LOCAL_RANK 中的数字")
        end
        if c.global("device") ~= want_device then
          return false, msg(string.format("on this build and rank, `device` should be %q", want_device),
            string.format("在这个版本和这个 rank 上，`device` 应该是 %q", want_device))
        end
        if c.global("backend") ~= want_backend then
          return false, msg(string.format("on this build, `backend` should be %q", want_backend),
            string.format("在这个版本上，`backend` 应该是 %q", want_backend))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Many machines. With torchrun, every machine runs the same command with its own
`--node_rank`:

```text
torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 \
         --master_addr=10.0.0.1 --master_port=29500 train.py
```

and ddplab has the same options: `ddplab --nnodes 2 --node-rank K --master-addr HOST -n 4`
on each machine, all with the same `DDPLAB_SECRET` (hex). You can try it on one computer
in two terminals, node 0 with `--master-port 29500` and node 1 with
`--master-addr 127.0.0.1 --master-port 29500`.

Ranks are numbered machine by machine: global rank = node * ranks per node + local rank.
Simulate a layout of 2 machines with this session's ranks:

```lua
${SOL_LAYOUT}
```

`:show node` and `:show local_r`: with 4 ranks, ranks 2 and 3 play the second machine.
(With an odd number of ranks the second machine gets one rank fewer; real machines
usually have the same number of GPUs each.)]]),
        zh = fill([[
多台机器。使用 torchrun 时，每台机器运行同样的命令，只是 `--node_rank` 各不相同：

```text
torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 \
         --master_addr=10.0.0.1 --master_port=29500 train.py
```

ddplab 也有同样的选项：在每台机器上运行 `ddplab --nnodes 2 --node-rank K --master-addr HOST -n 4`，
所有机器使用同一个 `DDPLAB_SECRET`（十六进制）。也可以在一台电脑上开两个终端试一试：
节点 0 加 `--master-port 29500`，节点 1 加 `--master-addr 127.0.0.1 --master-port 29500`。

rank 按机器依次编号：全局 rank = 节点编号 * 每台机器的 rank 数 + 本地 rank。用本次会话
的 rank 模拟一个两台机器的布局：

```lua
${SOL_LAYOUT}
```

试试 `:show node` 和 `:show local_r`：在 4 个 rank 时，rank 2 和 3 扮演第二台机器。
（rank 数为奇数时，第二台机器少一个 rank；真实的机器通常每台的 GPU 数量都一样。）]]),
      },
      pytorch = [[
nnodes = 2
per_node = (world + nnodes - 1) // nnodes   # rounded up
node = rank // per_node
local_r = rank % per_node]],
      setup = INIT .. "nnodes, per_node, node, local_r = nil, nil, nil, nil\n",
      solution = SOL_LAYOUT,
      hints = {
        msg("`//` divides and drops the remainder; `%` is the remainder.", "`//` 是整除（舍去余数）；`%` 是取余数。"),
      },
      check = function(c)
        local per = (c.world_size + 1) // 2
        local want = { nnodes = 2, per_node = per, node = c.rank // per, local_r = c.rank % per }
        for _, name in ipairs({ "nnodes", "per_node", "node", "local_r" }) do
          if c.global(name) ~= want[name] then
            return false, msg(string.format("`%s` should be %d on rank %d", name, want[name], c.rank),
              string.format("rank %d 上的 `%s` 应该是 %d", c.rank, name, want[name]))
          end
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Inside a machine GPUs talk fast (NVLink); between machines the network is slower. So a
large job can all-reduce in three stages: inside each machine, then across machines
with one rank per machine, then back inside each machine. NCCL does this kind of
topology-aware work for you; here you build it from process groups, on the simulated
layout. Every rank must create every group, in the same order:

```lua
${SOL_HIER}
```

Every rank ends with 1 + 2 + ... + world, as `dist.all_reduce` alone would give; but
only one rank per machine used the slow link. (The broadcast's source is a global rank,
as in PyTorch.)]]),
        zh = fill([[
在一台机器内部，GPU 之间通信很快（NVLink）；机器之间的网络则慢得多。所以大规模任务可以
分三个阶段做 all-reduce：先在每台机器内部，再在机器之间（每台机器出一个 rank），最后
再回到每台机器内部。NCCL 会替你完成这类感知拓扑的工作；这里你在模拟的布局上，用进程组
亲手搭建它。每个 rank 都必须按同样的顺序创建每一个组：

```lua
${SOL_HIER}
```

每个 rank 最终都得到 1 + 2 + ... + world，和只调用一次 `dist.all_reduce` 的结果一样；
但每台机器只有一个 rank 用到了慢速链路。（和 PyTorch 一样，broadcast 的源是全局 rank。）]]),
      },
      pytorch = [[
node_groups = [dist.new_group(list(range(k * per_node,
                                         min((k + 1) * per_node, world))))
               for k in range(nnodes)]
leaders = dist.new_group([k * per_node for k in range(nnodes)])
h = torch.tensor([rank + 1.0])
dist.all_reduce(h, group=node_groups[node])
if local_r == 0:
    dist.all_reduce(h, group=leaders)
dist.broadcast(h, src=node * per_node, group=node_groups[node])]],
      setup = INIT .. SOL_LAYOUT .. "\nh = nil\n",
      solution = SOL_HIER,
      hints = {
        msg("`dist.new_group` must be called by every rank for every group, even the groups it is not in.",
          "每个 rank 都必须为每一个组调用 `dist.new_group`，包括自己不在其中的组。"),
        msg("The broadcast goes from the machine's local rank 0, whose global rank is `node * per_node`.",
          "广播从本机的本地 rank 0 发出，它的全局 rank 是 `node * per_node`。"),
      },
      check = function(c)
        local h = c.global("h")
        local n = c.world_size
        local want = n * (n + 1) / 2
        if not c.is_tensor(h) or h:numel() ~= 1 then
          return false, msg("there is no one-element tensor `h` yet", "还没有只含一个元素的张量 `h`")
        end
        if h:item() ~= want then
          return false, msg(string.format("`h` is %g on rank %d; every rank should end with %g", h:item(), c.rank, want),
            string.format("rank %d 上的 `h` 是 %g；每个 rank 最终都应该是 %g", c.rank, h:item(), want))
        end
        if c.ran("dist%.all_reduce%(h%)") then
          return false, msg("build it from the three stages with groups, not one all_reduce over everyone",
            "用进程组分三个阶段来实现，而不是对所有 rank 做一次 all_reduce")
        end
        return true
      end,
    },
  },
}
