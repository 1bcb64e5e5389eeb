"""Run Task payload: one all-reduce with gloo over every process torchrun started.

Each process adds rank + 1; with N processes every one must print the sum
N (N + 1) / 2. With --hold it then waits (a test kills one worker's process).
"""

import os
import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
print(
    f"rank {rank} of {world} on node {os.environ.get('GROUP_RANK', '?')}: sum {value.item():g}",
    flush=True,
)
if "--hold" in sys.argv:
    print(f"rank {rank} holding", flush=True)
    time.sleep(600)
dist.destroy_process_group()
