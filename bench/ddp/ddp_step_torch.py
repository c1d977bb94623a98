#!/usr/bin/python3
"""PyTorch's side of bench/ddp/run.sh: the same DDP training steps as bench/ddp/ddp_step.lua
(forward through torch.nn.parallel.DistributedDataParallel, MSE, backward, Adam,
zero_grad) on 2 CPU processes over Gloo, one thread each, printing on rank 0
"RESULT <case> <seconds per step> perf_counter <buckets>" lines: the median over timed
windows after a warm-up. Started twice by run.sh with RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set. Needs Debian's python3-torch (/usr/bin/python3).
DDP_BENCH_QUICK=1 shrinks the windows, to check the script itself."""
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

QUICK = os.environ.get("DDP_BENCH_QUICK") == "1"
CASES = [
    dict(name="a", sizes=[5, 10, 5], batch=64, warmup=200, windows=9, steps=300, cap=None),
    dict(name="b", sizes=[256, 1024, 1024, 256], batch=256, warmup=3, windows=7, steps=5, cap=None),
    dict(name="c", sizes=[256, 1024, 1024, 1024, 1024, 256], batch=128, warmup=3, windows=7,
         steps=4, cap=4),
]


def build(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def main():
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    for c in CASES:
        if QUICK:
            c.update(warmup=2, windows=3, steps=2)
        kw = {} if c["cap"] is None else {"bucket_cap_mb": c["cap"]}
        ddp = DDP(build(c["sizes"]), **kw)
        x = torch.randn(c["batch"], c["sizes"][0])
        y = torch.randn(c["batch"], c["sizes"][-1])
        criterion = nn.MSELoss()
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            criterion(ddp(x), y).backward()
            opt.step()

        for _ in range(c["warmup"]):
            step()
        per_step = []
        for _ in range(c["windows"]):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(c["steps"]):
                step()
            per_step.append((time.perf_counter() - t0) / c["steps"])
        if rank == 0:
            buckets = len(ddp.reducer._get_zeros_like_grad_buckets()) if hasattr(
                ddp.reducer, "_get_zeros_like_grad_buckets") else 0
            print("RESULT %s %.9g perf_counter %d" % (c["name"], statistics.median(per_step), buckets),
                  flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
