"""gpu_bench_torch.py — PyTorch's side of bench/gpu/run.sh: the cases of gpu_bench.lua,
timed the same way (median over windows after a warm-up, torch.cuda.synchronize()
closing each window, time.perf_counter), printing "RESULT <case> <seconds> s".

Adam is PyTorch's fused one (fused=True), the fastest eager form; `tiny_foreach` is the
default foreach form and `tiny_graph` the tutorial's step captured in a CUDA graph and
replayed, the figure the issue asks ddplab to aim at. `nccl_<bytes>` is all_reduce over
NCCL with one rank (env:// rendezvous on localhost). DDP_BENCH_QUICK=1 shrinks it all.
"""
import os
import statistics
import time

import torch
import torch.distributed as dist

quick = os.environ.get("DDP_BENCH_QUICK") == "1"
dev = "cuda"


def timed(fn, warmup, windows, calls):
    if quick:
        warmup, windows, calls = 1, 3, 1
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        per.append((time.perf_counter() - t0) / calls)
    return statistics.median(per)


def result(name, seconds):
    print(f"RESULT {name} {seconds:.9g} s", flush=True)


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(dev)


def train_step(sizes, batch, **adam):
    torch.manual_seed(0)
    model = mlp(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **adam)
    x = torch.randn(batch, sizes[0], device=dev)
    y = torch.randn(batch, sizes[-1], device=dev)
    loss_fn = torch.nn.MSELoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def graph_step(sizes, batch):
    """The tutorial's step captured once in a CUDA graph (PyTorch's recipe), replayed."""
    step = train_step(sizes, batch, capturable=True, foreach=True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


big = (1 << 16) if quick else (256 << 20)
mlp_sizes = [64, 256, 256, 64] if quick else [1024, 4096, 4096, 1024]
mlp_batch = 256 if quick else 4096

result("tiny", timed(train_step([5, 10, 5], 64, fused=True), 200, 9, 200))
result("tiny_foreach", timed(train_step([5, 10, 5], 64, foreach=True), 200, 9, 200))
result("tiny_graph", timed(graph_step([5, 10, 5], 64), 200, 9, 200))
torch.backends.cuda.matmul.allow_tf32 = False
result("mlp", timed(train_step(mlp_sizes, mlp_batch, fused=True), 3, 7, 5))
torch.backends.cuda.matmul.allow_tf32 = True
result("mlp_tf32", timed(train_step(mlp_sizes, mlp_batch, fused=True), 3, 7, 5))
torch.backends.cuda.matmul.allow_tf32 = False

p = torch.nn.Parameter(torch.randn(big, device=dev))
p.grad = torch.randn(big, device=dev)
opt = torch.optim.Adam([p], lr=1e-3, fused=True)
result("adam", timed(opt.step, 3, 7, 5))
src, dst = torch.randn(big, device=dev), torch.empty(big, device=dev)
result("copy", timed(lambda: dst.copy_(src), 3, 7, 5))
del p, opt, src, dst

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("nccl", rank=0, world_size=1)
nbytes = 4
while nbytes <= ((1 << 20) if quick else (1 << 30)):
    t = torch.ones(nbytes // 4, device=dev)
    calls = 5 if nbytes >= (1 << 26) else 50
    result(f"nccl_{nbytes}", timed(lambda: dist.all_reduce(t), 5, 7, calls))
    nbytes *= 16
dist.destroy_process_group()
