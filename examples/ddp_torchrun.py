"""DistributedDataParallel on CPU (gloo), launched by torchrun, with one slow rank.

Each rank reads its shard through a DistributedSampler; every sample costs ``--sample-ms`` of
read latency (a sleep: remote storage), and on rank ``--slow-rank`` ``--slow-ms`` more (its
shard sits on slower storage). The gradient all-reduce in ``backward()`` makes every rank wait
for the slowest one, so rank 0 is held at the collective by rank 1's loader, while its own
loader keeps up.

    torchrun --nproc_per_node=2 examples/ddp_torchrun.py
    torchrun --nproc_per_node=2 examples/ddp_torchrun.py --num-workers 4
    torchrun --nproc_per_node=2 examples/ddp_torchrun.py --slow-ms 0     # no straggler
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
from _common import SteadyRate, fit, loader_args, loader_kwargs, set_main_threads
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ShardedReads(Dataset[tuple[torch.Tensor, int]]):
    """Feature vectors read with a per-sample latency (plus ``extra_s`` on the slow rank)."""

    def __init__(self, n: int, latency_s: float, extra_s: float) -> None:
        self.n, self.latency_s, self.extra_s = n, latency_s, extra_s

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        time.sleep(self.latency_s + self.extra_s)
        x = torch.randn(512, generator=torch.Generator().manual_seed(i))
        return x, int(x[:8].sum() > 0)


def main() -> None:
    ap = loader_args(__doc__ or "", num_workers=0, batch_size=16, epochs=2)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    ap.add_argument("--samples", type=int, default=2048, help="dataset size (all ranks)")
    ap.add_argument("--sample-ms", type=float, default=1.0, help="read latency per sample")
    ap.add_argument("--slow-rank", type=int, default=1)
    ap.add_argument("--slow-ms", type=float, default=2.0, help="extra latency on --slow-rank")
    ap.add_argument("--warmup-steps", type=int, default=5)
    args = ap.parse_args()
    set_main_threads(args)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    extra = args.slow_ms / 1000 if rank == args.slow_rank else 0.0
    dataset = ShardedReads(args.samples, args.sample_ms / 1000, extra)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                        **loader_kwargs(args))
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Sequential(
        torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    meter = SteadyRate(args.warmup_steps)
    steps = fit(model, loader, opt, args.epochs, meter, max_steps=args.steps, on_epoch=sampler.set_epoch)
    print(f"rank {rank}/{world} (pid {os.getpid()}): {steps} steps, torch threads "
          f"{torch.get_num_threads()}, {meter.summary()}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
