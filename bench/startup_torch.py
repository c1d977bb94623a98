"""startup_torch.py — PyTorch's side of bench/startup.sh: what ddplab's
`-e 'dist.init_process_group{backend="gloo"}; ...all_reduce...'` does, as one rank of a
torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the
environment; bench/startup.sh starts the processes). Run with /usr/bin/python3 (Debian's
python3-torch)."""
import torch
import torch.distributed as dist

dist.init_process_group(backend="gloo", init_method="env://")
t = torch.ones(4) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(t)
dist.destroy_process_group()
