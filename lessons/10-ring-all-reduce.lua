-- Lesson 10: under the hood, a ring all-reduce written from point-to-point messages.
-- The learner passes a message around the ring, writes the reduce-scatter and all-gather
-- phases with dist.isend/dist.irecv, checks the result against dist.all_reduce, and
-- times both. The text draws the ring step by step for 4 ranks and derives 2(n-1)/n.
local shared = require("lessons.shared") -- the checks' helpers
local msg, max_diff = shared.msg, shared.max_diff

local INIT = [[
if not dist.is_initialized() then dist.init_process_group{backend = "gloo"} end
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(rank)
data = torch.randn(world * 3)
CHUNK = setmetatable({}, {__index = function(_, k) -- chunk names: A, B, ... from 0
  return k < 26 and string.char(65 + k) or "#" .. k
end})
]]

local SOL_RS = [[
function ring_reduce_scatter(t)
  local n, left, right = world, (rank - 1) % world, (rank + 1) % world
  local chunks = t:chunk(n)     -- views into t; chunk k is chunks[k + 1]
  local inbox = torch.empty_like(chunks[1])
  for s = 0, n - 2 do
    local send_k, recv_k = (rank - s) % n, (rank - s - 1) % n
    local sw = dist.isend(chunks[send_k + 1], right)
    local rw = dist.irecv(inbox, left)
    sw:wait(); rw:wait()
    chunks[recv_k + 1]:add_(inbox)
    if trace then print(s, "sent", CHUNK[send_k], "added", CHUNK[recv_k]) end
  end
  return t
end
rs = ring_reduce_scatter(data:clone())]]

local SOL_AR = [[
function ring_all_gather(t)
  local n, left, right = world, (rank - 1) % world, (rank + 1) % world
  local chunks = t:chunk(n)
  for s = 0, n - 2 do
    local send_k, recv_k = (rank + 1 - s) % n, (rank - s) % n
    local sw = dist.isend(chunks[send_k + 1], right)
    local rw = dist.irecv(chunks[recv_k + 1], left)
    sw:wait(); rw:wait()
  end
  return t
end
function ring_all_reduce(t)
  return ring_all_gather(ring_reduce_scatter(t))
end
ring = ring_all_reduce(data:clone())
lib = data:clone(); dist.all_reduce(lib)]]

local SOL_TIME = [[
big = torch.randn(world * 262144)   -- world chunks of 1 MiB (262144 float32)
function time_it(f)
  dist.barrier()
  local t0 = torch.time()
  for _ = 1, 5 do f(big:clone()) end
  dist.barrier()
  return (torch.time() - t0) / 5
end
t_ring = time_it(ring_all_reduce)
t_lib = time_it(dist.all_reduce)
print(("ring %.2f ms, library %.2f ms"):format(t_ring * 1e3, t_lib * 1e3))]]

local function sum_of(all)
  local s = all[1]:double()
  for r = 2, #all do s = s + all[r]:double() end
  return s
end

-- Step texts name the code they show (`${SOL_RS}` in a ```lua fence), filled from the
-- very strings that :solution shows and the setups run.
local EX_PASS = [[
got = torch.zeros(1)
s = dist.isend(mine, (rank + 1) % world)
r = dist.irecv(got, (rank - 1) % world)
s:wait(); r:wait()]]
local EX_TIMING = [[
big = torch.randn(world * 262144)
function time_it(f)
  dist.barrier()
  local t0 = torch.time()
  for _ = 1, 5 do f(big:clone()) end
  dist.barrier()
  return (torch.time() - t0) / 5
end
t_ring = time_it(ring_all_reduce)
t_lib = time_it(dist.all_reduce)
print(("ring %.2f ms, library %.2f ms"):format(t_ring * 1e3, t_lib * 1e3))]]
local CODE = { EX_PASS = EX_PASS, EX_TIMING = EX_TIMING, SOL_RS = SOL_RS, SOL_AR = SOL_AR }
local fill = shared.filler(CODE)

return {
  title = {
    en = "Under the hood: a ring all-reduce from send and recv",
    zh = "深入底层：用 send 和 recv 实现环形 all-reduce",
  },
  min_ranks = 2,
  intro = {
    en = [[
`dist.all_reduce` looks like one operation, but inside it is a pattern of messages
between pairs of ranks. The classic pattern is the ring: every rank talks only to its two
neighbours, and each rank sends about twice the size of the tensor in all, however many
ranks there are. You will write it yourself, check it, and time it.]],
    zh = [[
`dist.all_reduce` 看起来是一个操作，内部却是 rank 两两之间的一系列消息。经典的做法是
环形（ring）：每个 rank 只和左右两个邻居通信，而且无论有多少个 rank，每个 rank 发送的
数据总量大约都是张量大小的两倍。你将亲手实现它、验证它，并测量它的耗时。]],
  },
  steps = {
    {
      text = {
        en = fill([[
Arrange the ranks in a ring: rank `r` sends to `(r + 1) % world` (its right neighbour)
and receives from `(r - 1) % world` (its left; Lua's `%` of a negative number is
non-negative, so rank 0's left is the last rank). Pass `mine` one place to the right:

```lua
${EX_PASS}
```

Put it on one line, or one chunk: both sides of a message must be posted in the same
chunk. Why `isend`/`irecv` rather than `send`/`recv`? If every rank first called a
blocking `send`, every rank would wait for a receiver that is itself still sending: a
deadlock. Posting both and then waiting lets every message move.]]),
        zh = fill([[
把各个 rank 排成一个环：rank `r` 发送给 `(r + 1) % world`（右邻居），从 `(r - 1) %
world` （左邻居）接收。Lua 中负数取模的结果是非负的，所以 rank 0 的左邻居是最后一个 rank。
把 `mine` 向右传一位：

```lua
${EX_PASS}
```

写在一行里，或者放在同一个代码块里：一条消息的发送端和接收端必须在同一个代码块中发起。
为什么用 `isend`/`irecv` 而不是 `send`/`recv`？如果每个 rank 都先调用阻塞的 `send`，
每个 rank 都会等待一个自己也还在发送的接收者：这就是死锁。先把发送和接收都发起，
再等待，所有消息就都能送达。]]),
      },
      pytorch = [[
got = torch.zeros(1)
s = dist.isend(mine, (rank + 1) % world)
r = dist.irecv(got, (rank - 1) % world)
s.wait(); r.wait()]],
      setup = INIT .. "mine = torch.tensor({rank * 1.0})\ngot = nil\n",
      solution = "got = torch.zeros(1); s = dist.isend(mine, (rank + 1) % world); r = dist.irecv(got, (rank - 1) % world); s:wait(); r:wait()",
      hints = {
        msg("The right neighbour is `(rank + 1) % world`, the left one `(rank - 1) % world`.",
          "右邻居是 `(rank + 1) % world`，左邻居是 `(rank - 1) % world`。"),
        msg("`irecv` writes into the tensor you give it: make `got` first, with one element.",
          "`irecv` 会写入你传给它的张量：先创建只有一个元素的 `got`。"),
      },
      check = function(c)
        local all = c.gather(c.global("mine"))
        local got = c.global("got")
        local left = (c.rank - 1) % c.world_size
        if not c.is_tensor(got) then
          return false, msg("there is no tensor `got` yet", "还没有张量 `got`")
        end
        if not c.equal(got, all[left + 1]) then
          return false, msg(
            string.format("`got` should hold rank %d's `mine` (the left neighbour's)", left),
            string.format("`got` 应该是 rank %d（左邻居）的 `mine`", left))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
The ring all-reduce has two phases. Cut the tensor into `world` chunks, numbered from 0.

Phase 1, reduce-scatter, `world - 1` steps: at step `s` (from 0), rank `r` sends chunk
`(r - s) % world` to the right and receives chunk `(r - s - 1) % world` from the left,
adding it to its own copy of that chunk. Each chunk travels once around the ring,
collecting every rank's part. On 4 ranks, with chunks A, B, C, D and `A01` meaning
"A of rank 0 plus A of rank 1":

```text
             rank 0      rank 1      rank 2      rank 3
step 0 sends A           B           C           D
      holds  D30         A01         B12         C23
step 1 sends D30         A01         B12         C23
      holds  C230        D301        A012        B123
step 2 sends C230        D301        A012        B123
      holds  B (all 4)   C (all 4)   D (all 4)   A (all 4)
```

After the last step rank `r` holds the complete sum of chunk `(r + 1) % world`. Write it:

```lua
${SOL_RS}
```

Mind the two ways of counting: chunk numbers `k` count from 0 like ranks, the Lua list
`chunks` from 1. With `trace = true` (set for you) each rank prints what it sent and
added at every step, named as in the table (`CHUNK[k]`): compare with the drawing.]]),
        zh = fill([[
环形 all-reduce 分两个阶段。把张量切成 `world` 块，从 0 开始编号。

第一阶段是 reduce-scatter，共 `world - 1` 步：第 `s` 步（从 0 开始），rank `r` 把第 `(r
- s) % world` 块发给右邻居，从左邻居收到第 `(r - s - 1) % world` 块，并把它加到自己
的那一块上。每一块都沿着环走一圈，沿途收集每个 rank 的那一部分。在 4 个 rank 上，
记各块为 A、B、C、D，`A01` 表示“rank 0 的 A 加上 rank 1 的 A”，“全部”表示 4 个 rank 的总和：

```text
             rank 0      rank 1      rank 2      rank 3
step 0 发送  A           B           C           D
       持有  D30         A01         B12         C23
step 1 发送  D30         A01         B12         C23
       持有  C230        D301        A012        B123
step 2 发送  C230        D301        A012        B123
       持有  B（全部）   C（全部）   D（全部）   A（全部）
```

最后一步之后，rank `r` 持有第 `(r + 1) % world` 块的完整总和。写出来：

```lua
${SOL_RS}
```

注意两种计数方式：块编号 `k` 和 rank 一样从 0 开始，而 Lua 列表 `chunks` 从 1 开始。 `trace
= true`（已经为你设好）时，每个 rank 每一步都会打印它发送了哪一块、加上了哪一块，
名字与上表相同（`CHUNK[k]`）：和上面的图对照一下。]]),
      },
      pytorch = [[
def ring_reduce_scatter(t):
    n, left, right = world, (rank - 1) % world, (rank + 1) % world
    chunks = t.chunk(n)
    inbox = torch.empty_like(chunks[0])
    for s in range(n - 1):
        send_k, recv_k = (rank - s) % n, (rank - s - 1) % n
        sw = dist.isend(chunks[send_k], right)
        rw = dist.irecv(inbox, left)
        sw.wait(); rw.wait()
        chunks[recv_k].add_(inbox)
    return t]],
      setup = INIT .. "trace = true\nrs = nil\n",
      solution = SOL_RS,
      hints = {
        msg("`t:chunk(n)` gives views: adding into `chunks[k + 1]` changes `t` itself.",
          "`t:chunk(n)` 返回的是视图：对 `chunks[k + 1]` 做加法会直接改变 `t`。"),
        msg("Receive into a separate buffer, then add it: receiving straight into the chunk would overwrite your own part.",
          "先接收到单独的缓冲区，再加上去：直接接收到块里会覆盖你自己的那部分。"),
        msg("There are `world - 1` steps: `for s = 0, n - 2 do`.", "一共 `world - 1` 步：`for s = 0, n - 2 do`。"),
      },
      check = function(c)
        local all = c.gather(c.global("data"))
        local rs = c.global("rs")
        local n = c.world_size
        if not c.is_tensor(rs) or rs.shape ~= all[1].shape then
          return false, msg("there is no result `rs` of the size of `data` yet", "还没有与 `data` 同样大小的结果 `rs`")
        end
        local k = (c.rank + 1) % n
        local want = sum_of(all):chunk(n)[k + 1]
        if max_diff(rs:chunk(n)[k + 1], want) > 1e-5 then
          return false, msg(
            string.format("chunk %d of `rs` should be the sum of every rank's chunk %d of `data`", k, k),
            string.format("`rs` 的第 %d 块应该是所有 rank 的 `data` 第 %d 块之和", k, k))
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Phase 2, all-gather, again `world - 1` steps: each rank passes its completed chunk to the
right, and whatever arrives from the left is complete too, so it is copied, not added.
At step `s` rank `r` sends chunk `(r + 1 - s) % world` and receives chunk
`(r - s) % world` straight into place:

```lua
${SOL_AR}
```

`ring` and `lib` agree to float32 rounding (the additions happen in a different order).]]),
        zh = fill([[
第二阶段是 all-gather，同样是 `world - 1` 步：每个 rank 把自己已完成的块传给右邻居，
而从左邻居收到的块也已经是完整的，所以是复制而不是相加。第 `s` 步，rank `r` 发送第 `(r
+ 1 - s) % world` 块，并把第 `(r - s) % world` 块直接接收到对应位置：

```lua
${SOL_AR}
```

`ring` 和 `lib` 在 float32 舍入误差范围内一致（加法的顺序不同）。]]),
      },
      pytorch = [[
def ring_all_gather(t):
    n, left, right = world, (rank - 1) % world, (rank + 1) % world
    chunks = t.chunk(n)
    for s in range(n - 1):
        send_k, recv_k = (rank + 1 - s) % n, (rank - s) % n
        sw = dist.isend(chunks[send_k], right)
        rw = dist.irecv(chunks[recv_k], left)
        sw.wait(); rw.wait()
    return t

ring = ring_all_gather(ring_reduce_scatter(data.clone()))
lib = data.clone(); dist.all_reduce(lib)]],
      setup = INIT .. SOL_RS .. "\ntrace = false\nring, lib = nil, nil\n",
      solution = SOL_AR,
      hints = {
        msg("After phase 1, rank `r` owns chunk `(r + 1) % world`: that is what it sends first.",
          "第一阶段结束后，rank `r` 拥有第 `(r + 1) % world` 块：这就是它第一步要发送的。"),
        msg("In phase 2 the received chunk replaces yours: receive straight into `chunks[recv_k + 1]`.",
          "第二阶段收到的块直接替换你的：直接接收到 `chunks[recv_k + 1]`。"),
      },
      check = function(c)
        local all = c.gather(c.global("data"))
        local ring, lib = c.global("ring"), c.global("lib")
        if not c.is_tensor(ring) or ring.shape ~= all[1].shape then
          return false, msg("there is no result `ring` of the size of `data` yet", "还没有与 `data` 同样大小的结果 `ring`")
        end
        local want = sum_of(all)
        if max_diff(ring, want) > 1e-5 then
          return false, msg("`ring` is not the sum of every rank's `data` in every chunk",
            "`ring` 的每一块并不都是所有 rank 的 `data` 之和")
        end
        if not c.is_tensor(lib) or max_diff(lib, want) > 1e-5 then
          return false, msg("now compare: `lib = data:clone(); dist.all_reduce(lib)`",
            "现在来对比：`lib = data:clone(); dist.all_reduce(lib)`")
        end
        return true
      end,
    },
    {
      text = {
        en = fill([[
Time both on a bigger tensor, `world` chunks of 262144 floats (1 MiB each), five calls
each:

```lua
${EX_TIMING}
```

Count what one rank sends. A tensor of S bytes is cut into n chunks of S/n. Phase 1 sends
n - 1 chunks, phase 2 another n - 1, so each rank sends 2(n - 1)/n * S bytes, and
receives as much. That is less than 2S however large n grows: adding ranks does not add
traffic per rank, and every link of the ring is busy at every step. Compare the naive
way, everyone sending to rank 0 and rank 0 broadcasting back: rank 0 alone receives
(n - 1) * S and sends (n - 1) * S. The ring's price is latency, 2(n - 1) steps one after
the other, which is why libraries switch to other patterns (trees, halving and doubling)
for small tensors. Gloo and NCCL run algorithms like this one in C++, some with the
steps pipelined. Do not be surprised if your ring keeps up with `dist.all_reduce` on a
large tensor: the work is moving and adding bytes, and your Lua only issues 2(n - 1)
messages. Try a tensor of 16 floats instead: there latency dominates.]]),
        zh = fill([[
在一个更大的张量上给两者计时（共 `world` 块，每块 262144 个浮点数，即 1 MiB），
各调用五次：

```lua
${EX_TIMING}
```

数一数一个 rank 发送了多少数据。大小为 S 字节的张量被切成 n 块，每块 S/n。第一阶段
发送 n - 1 块，第二阶段再发送 n - 1 块，所以每个 rank 发送 2(n - 1)/n * S 字节，
接收的也一样多。无论 n 多大，这都小于 2S：增加 rank 不会增加每个 rank 的通信量，而且
环上的每条链路在每一步都在工作。对比一下朴素的做法：所有 rank 都发给 rank 0，再由 rank
0 广播回去，仅 rank 0 一个就要接收 (n - 1) * S、发送 (n - 1) * S。环形算法的代价
是延迟：2(n - 1) 步必须一步接一步地完成，所以通信库对小张量会改用其他模式（树形、 halving-doubling）。
Gloo 和 NCCL 用 C++ 实现这类算法，有些还把各步流水线化。如果在
大张量上你的环形实现和 `dist.all_reduce` 差不多快，也不必惊讶：真正的工作是搬运和
相加字节，而你的 Lua 代码只发起 2(n - 1) 条消息。换成只有 16 个浮点数的张量试试：
那时起决定作用的是延迟。]]),
      },
      pytorch = [[
big = torch.randn(world * 262144)
def time_it(f):
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(5):
        f(big.clone())
    dist.barrier()
    return (time.perf_counter() - t0) / 5
t_ring = time_it(ring_all_reduce)
t_lib = time_it(dist.all_reduce)]],
      setup = INIT .. SOL_RS .. "\n" .. SOL_AR .. "\ntrace = false\nt_ring, t_lib = nil, nil\n",
      solution = SOL_TIME,
      hints = {
        msg("`torch.time()` reads a monotonic clock in seconds; the barriers line the ranks up before and after.",
          "`torch.time()` 读取以秒为单位的单调时钟；前后的 barrier 让各 rank 对齐。"),
      },
      check = function(c)
        local tr, tl = c.global("t_ring"), c.global("t_lib")
        if type(tr) ~= "number" or type(tl) ~= "number" or tr <= 0 or tl <= 0 then
          return false, msg("time both: `t_ring` and `t_lib` should be seconds per call",
            "给两者计时：`t_ring` 和 `t_lib` 应该是每次调用的秒数")
        end
        if not c.ran("ring_all_reduce") then
          return false, msg("`t_ring` should time your `ring_all_reduce`", "`t_ring` 应该测量你的 `ring_all_reduce`")
        end
        return true
      end,
    },
  },
}
