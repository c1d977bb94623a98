#!/usr/bin/python3
"""PyTorch's side of bench/run.sh: the same training steps as bench/train_step.lua
(forward, MSE loss, backward, Adam step, zero_grad) in eager mode on the CPU with one
thread, printing "RESULT <case> <seconds per step> <clock>" lines: the median over
several timed windows after a warm-up. Needs Debian's python3-torch (/usr/bin/python3).
The clock is time.perf_counter, the twin of ddplab's torch.time().
DDP_BENCH_QUICK=1 shrinks the windows, to check the script itself."""
import os
import statistics
import time

import torch
from torch import nn

QUICK = os.environ.get("DDP_BENCH_QUICK") == "1"
CASES = [
    dict(name="a", sizes=[5, 10, 5], batch=64, warmup=300, windows=9, steps=400),
    dict(name="b", sizes=[256, 1024, 1024, 256], batch=256, warmup=3, windows=7, steps=4),
]


def build(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def main():
    clock, clock_name = time.perf_counter, "perf_counter"
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for c in CASES:
        if QUICK:
            c.update(warmup=2, windows=3, steps=2)
        model = build(c["sizes"])
        x = torch.randn(c["batch"], c["sizes"][0])
        y = torch.randn(c["batch"], c["sizes"][-1])
        criterion = nn.MSELoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()

        for _ in range(c["warmup"]):
            step()
        per_step = []
        for _ in range(c["windows"]):
            t0 = clock()
            for _ in range(c["steps"]):
                step()
            per_step.append((clock() - t0) / c["steps"])
        print("RESULT %s %.9g %s" % (c["name"], statistics.median(per_step), clock_name))


if __name__ == "__main__":
    main()
