-- Lesson 1: ranks and the world. What a rank is, the environment every rank is started
-- with (as torchrun does), joining the process group through env://, and counting from
-- 0 (ranks, tensor dims) next to Lua's tables counted from 1.
local function init_if_needed()
  return [[if not dist.is_initialized() then dist.init_process_group{backend="gloo", init_method="env://"} end]]
end

return {
  title = { en = "Ranks and the world", zh = "rank 与 world：进程和它们的编号" },
  min_ranks = 2,
  intro = {
    en = [[
Distributed data parallel training runs the *same program* in several processes at
once. Each process is called a rank. Here every line you type runs on every rank, and
their answers are shown side by side: `[0-1]` means "ranks 0 and 1 printed this".

In this lesson you find out who each rank is, how ranks find each other, and how
ddplab counts: ranks from 0, as in PyTorch, but Lua tables from 1.]],
    zh = [[
分布式数据并行（DDP）训练时，*同一份程序*会同时在好几个进程里运行，每个进程叫作一个
rank。在这里，你输入的每一行都会在所有 rank 上执行，结果并排显示：`[0-1]` 表示
"rank 0 和 rank 1 都打印了这一行"。

这一课你会了解：每个 rank 怎样知道自己是谁，rank 之间怎样找到彼此，以及 ddplab 的
计数方式——rank 从 0 开始（和 PyTorch 一样），而 Lua 的表从 1 开始。]],
  },
  steps = {
    {
      text = {
        en = [[
# Who am I?

A launcher (torchrun in PyTorch, ddplab here) starts one process per rank and tells
each one its number in the environment variable `RANK`. Environment variables are
strings, so turn it into a number.

Make a global `rank` holding this process's rank as a number:

```lua
rank = tonumber(os.getenv("RANK"))
```

Then type `rank` alone to see it on every rank.]],
        zh = [[
# 我是谁？

启动器（PyTorch 里是 torchrun，这里是 ddplab）为每个 rank 启动一个进程，并通过环境
变量 `RANK` 告诉它自己的编号。环境变量是字符串，需要转换成数字。

定义一个全局变量 `rank`，值为本进程的 rank（数字）：

```lua
rank = tonumber(os.getenv("RANK"))
```

然后单独输入 `rank`，看看每个 rank 的值。]],
      },
      pytorch = [[rank = int(os.environ["RANK"])]],
      solution = [[rank = tonumber(os.getenv("RANK"))]],
      hints = {
        { en = "`os.getenv(\"RANK\")` gives a string such as \"1\"; `tonumber` turns it into 1.",
          zh = "`os.getenv(\"RANK\")` 得到像 \"1\" 这样的字符串；`tonumber` 把它变成数字 1。" },
        { en = "Do not write `local rank = ...`: a local lasts one line only. Write `rank = ...`.",
          zh = "不要写 `local rank = ...`：local 变量只在这一行有效。请写 `rank = ...`。" },
      },
      check = function(c)
        local r = c.global("rank")
        if r == nil then
          return false, { en = "there is no global `rank` yet", zh = "还没有全局变量 `rank`" }
        end
        if type(r) == "string" then
          return false, { en = "`rank` is the string \"" .. r .. "\": wrap it in tonumber(...)",
                          zh = "`rank` 是字符串 \"" .. r .. "\"：请用 tonumber(...) 转换" }
        end
        if r ~= c.rank then
          return false, { en = "`rank` is " .. tostring(r) .. " but this is rank " .. c.rank,
                          zh = "`rank` 是 " .. tostring(r) .. "，但这里是 rank " .. c.rank }
        end
        return true
      end,
    },
    {
      text = {
        en = [[
# How many of us?

Two more variables come with every rank: `WORLD_SIZE`, how many ranks take part in
all, and `LOCAL_RANK`, the rank's number on its own machine (on one machine it equals
`RANK`; with 2 machines of 4 GPUs, global rank 5 is local rank 1 of the second
machine, and it uses GPU 1 there).

Set the globals `world_size` and `local_rank` as numbers, the way you set `rank`.]],
        zh = [[
# 一共有几个？

每个 rank 还会拿到两个环境变量：`WORLD_SIZE` 是参与的 rank 总数，`LOCAL_RANK` 是它在
本机上的编号（单机时它等于 `RANK`；如果两台机器各有 4 块 GPU，全局 rank 5 就是第二台
机器上的 local rank 1，使用那台机器的 1 号 GPU）。

像设置 `rank` 那样，把全局变量 `world_size` 和 `local_rank` 设为数字。]],
      },
      pytorch = [[world_size = int(os.environ["WORLD_SIZE"])
local_rank = int(os.environ["LOCAL_RANK"])]],
      solution = [[world_size = tonumber(os.getenv("WORLD_SIZE"))
local_rank = tonumber(os.getenv("LOCAL_RANK"))]],
      hints = {
        { en = "Two lines, each like `rank = tonumber(os.getenv(\"RANK\"))` with another name.",
          zh = "两行代码，每行都和 `rank = tonumber(os.getenv(\"RANK\"))` 类似，只是换了名字。" },
      },
      check = function(c)
        local w, l = c.global("world_size"), c.global("local_rank")
        if w == nil then return false, { en = "there is no global `world_size` yet", zh = "还没有全局变量 `world_size`" } end
        if w ~= c.world_size then
          return false, { en = "`world_size` is " .. tostring(w) .. " but " .. c.world_size .. " ranks take part (a string? use tonumber)",
                          zh = "`world_size` 是 " .. tostring(w) .. "，但实际有 " .. c.world_size .. " 个 rank（是字符串吗？用 tonumber）" }
        end
        if l == nil then return false, { en = "there is no global `local_rank` yet", zh = "还没有全局变量 `local_rank`" } end
        if l ~= tonumber(os.getenv("LOCAL_RANK")) then
          return false, { en = "`local_rank` is " .. tostring(l) .. ", not this rank's LOCAL_RANK",
                          zh = "`local_rank` 是 " .. tostring(l) .. "，不是本 rank 的 LOCAL_RANK" }
        end
        return true
      end,
    },
    {
      text = {
        en = [[
# Finding each other

Knowing your number is not enough: the ranks must connect before they can exchange
tensors. They meet at a rendezvous, a small key-value store at `MASTER_ADDR` and
`MASTER_PORT` (both set for you; look with `os.getenv("MASTER_PORT")`). The
`init_method` "env://" means exactly that: read RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT from the environment.

`backend` picks the library that moves the data: "gloo" runs on CPUs, "nccl" on
NVIDIA GPUs. Join the process group on every rank:

```lua
dist.init_process_group{backend="gloo", init_method="env://"}
```

Then `dist.get_rank()` and `dist.get_world_size()` answer from the group.]],
        zh = [[
# 互相找到

只知道自己的编号还不够：rank 之间要先建立连接，才能交换张量。它们在一个"集合点"
（rendezvous）会合，这是位于 `MASTER_ADDR` 和 `MASTER_PORT` 的一个小型键值存储（两者都
已经设好，可以用 `os.getenv("MASTER_PORT")` 看看）。`init_method` 为 "env://" 的意思
正是：从环境变量读取 RANK、WORLD_SIZE、MASTER_ADDR 和 MASTER_PORT。

`backend` 决定由哪个库来传输数据："gloo" 用于 CPU，"nccl" 用于 NVIDIA GPU。在每个
rank 上加入进程组：

```lua
dist.init_process_group{backend="gloo", init_method="env://"}
```

之后 `dist.get_rank()` 和 `dist.get_world_size()` 会从进程组得到答案。]],
      },
      pytorch = [[dist.init_process_group(backend="gloo", init_method="env://")]],
      solution = [[dist.init_process_group{backend="gloo", init_method="env://"}]],
      hints = {
        { en = "In Lua a function called with one table can drop the parentheses: f{a=1} is f({a=1}).",
          zh = "Lua 中只传一个表作参数时可以省略括号：f{a=1} 就是 f({a=1})。" },
        { en = "Every rank must call it: a rank that does not join leaves the others waiting.",
          zh = "每个 rank 都必须调用它：有一个 rank 不加入，其他 rank 就会一直等待。" },
      },
      check = function(c)
        if not c.initialized() then
          return false, { en = "the process group is not initialised on this rank yet",
                          zh = "本 rank 还没有初始化进程组" }
        end
        if dist.get_rank() ~= c.rank or dist.get_world_size() ~= c.world_size then
          return false, { en = "the group says rank " .. dist.get_rank() .. " of " .. dist.get_world_size() .. ", not what the launcher set",
                          zh = "进程组给出的是第 " .. dist.get_rank() .. " 个（共 " .. dist.get_world_size() .. " 个），与启动器设置的不同" }
        end
        return true
      end,
    },
    {
      setup = init_if_needed() .. [[

letters = {}
for i = 1, dist.get_world_size() do letters[i] = string.char(96 + i) end]],
      text = {
        en = [[
# Counting from 0, counting from 1

Ranks count from 0 (rank 0 is the first), and so do tensor dimensions and indices, as
in PyTorch: `x:narrow(0, rank * b, b)` reads as in Python. Plain Lua tables count
from 1: the first element of `letters` is `letters[1]`, and `letters[0]` is nil.

The setup made a list `letters` with one letter per rank (`{"a", "b", ...}`; look
with `=letters[1]`). Let each rank take its own letter: rank 0 gets "a", rank 1 gets
"b". Store it in the global `mine`.]],
        zh = [[
# 从 0 数，从 1 数

rank 从 0 开始计数（rank 0 是第一个），张量的维度和下标也是如此，和 PyTorch 一样：
`x:narrow(0, rank * b, b)` 和 Python 中的写法一致。而普通的 Lua 表从 1 开始：`letters`
的第一个元素是 `letters[1]`，`letters[0]` 是 nil。

准备步骤创建了列表 `letters`，每个 rank 一个字母（`{"a", "b", ...}`，可以用
`=letters[1]` 查看）。让每个 rank 取自己的字母：rank 0 取 "a"，rank 1 取 "b"。把它存到
全局变量 `mine` 中。]],
      },
      pytorch = [[mine = letters[rank]   # Python lists count from 0]],
      solution = [=[mine = letters[dist.get_rank() + 1]]=],
      hints = {
        { en = "Rank 0's letter is letters[1]: add one to the rank.",
          zh = "rank 0 的字母是 letters[1]：把 rank 加一。" },
      },
      check = function(c)
        local letters, mine = c.global("letters"), c.global("mine")
        if type(letters) ~= "table" then
          return false, { en = "`letters` is gone: :reset brings it back", zh = "`letters` 不见了：用 :reset 恢复" }
        end
        if mine == nil then
          if c.ran("letters%[%s*dist%.get_rank%(%)%s*%]") or c.ran("letters%[%s*rank%s*%]") then
            return false, { en = "`mine` is nil on rank 0: letters[0] does not exist in Lua (the first is letters[1])",
                            zh = "rank 0 上的 `mine` 是 nil：Lua 中没有 letters[0]（第一个是 letters[1]）" }
          end
          return false, { en = "there is no global `mine` yet", zh = "还没有全局变量 `mine`" }
        end
        if mine == letters[c.rank] then
          return false, { en = "`mine` is the letter of rank " .. (c.rank - 1) .. ": Lua lists start at 1, so add one to the rank",
                          zh = "`mine` 是 rank " .. (c.rank - 1) .. " 的字母：Lua 列表从 1 开始，请把 rank 加一" }
        end
        if mine ~= letters[c.rank + 1] then
          return false, { en = "`mine` is " .. tostring(mine) .. ", not this rank's letter " .. letters[c.rank + 1],
                          zh = "`mine` 是 " .. tostring(mine) .. "，而不是本 rank 的字母 " .. letters[c.rank + 1] }
        end
        local all = c.gather(mine)
        for r = 1, c.world_size do
          if all[r] ~= letters[r] then
            return false, { en = "rank " .. (r - 1) .. " holds " .. tostring(all[r]) .. " instead of " .. letters[r],
                            zh = "rank " .. (r - 1) .. " 拿到的是 " .. tostring(all[r]) .. "，应为 " .. letters[r] }
          end
        end
        return true
      end,
    },
  },
}
