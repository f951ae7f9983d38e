"""A torchdata.nodes pipeline whose mapping is latency-bound: each sample waits 4 ms on
"storage" inside ``ParallelMapper`` (threads), so the training loop waits for data.

No DataLoader is involved: ``tracelens profile`` finds the ``Loader`` the training loop draws
from, times each ``next()`` and advises ``ParallelMapper(num_workers=…)``.

    tracelens profile examples/pipeline_torchdata_nodes.py
    python examples/pipeline_torchdata_nodes.py --num-workers 16
"""

from __future__ import annotations

import argparse
import time

import torch
import torchdata.nodes as tn


def fetch(i: int) -> torch.Tensor:
    """One sample read with a fixed latency (an object store), almost no CPU."""
    time.sleep(0.004)
    return torch.full((64,), float(i % 5))


def collate(samples: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(samples)


def build(samples: int, batch_size: int, num_workers: int) -> tn.Loader[torch.Tensor]:
    node: tn.BaseNode = tn.IterableWrapper(range(samples))
    node = tn.ParallelMapper(node, map_fn=fetch, num_workers=num_workers, method="thread")
    node = tn.Batcher(node, batch_size=batch_size, drop_last=True)
    node = tn.Mapper(node, collate)
    node = tn.Prefetcher(node, prefetch_factor=2)
    return tn.Loader(node)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = build(args.samples, args.batch_size, args.num_workers)
    t0, steps = time.perf_counter(), 0
    for _ in range(args.epochs):
        for batch in loader:
            loss = model(batch).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    print(f"{steps} steps, {1000 * (time.perf_counter() - t0) / max(steps, 1):.2f} ms/step")


if __name__ == "__main__":
    main()
