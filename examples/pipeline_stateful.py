"""torchdata's StatefulDataLoader (a DataLoader subclass with its own ``__init__``, ``__iter__``
and iterators) over latency-bound samples: 3 ms per sample, batch 8, no workers.

``tracelens profile`` records it in a window like a DataLoader and names the change in
``StatefulDataLoader(...)``; ``tracelens sweep --num-workers 0,4`` runs the worker counts asked for.

    tracelens profile examples/pipeline_stateful.py
    python examples/pipeline_stateful.py --num-workers 4
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader


class Reads(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 2400

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(0.003)
        return torch.full((64,), float(i % 5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = StatefulDataLoader(Reads(), batch_size=args.batch_size, num_workers=args.num_workers)
    t0, steps = time.perf_counter(), 0
    for batch in loader:
        loss = model(batch).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    print(f"{steps} steps, {1000 * (time.perf_counter() - t0) / max(steps, 1):.2f} ms/step")


if __name__ == "__main__":
    main()
