"""Latency-bound reads: each sample waits on "storage" (a 5 ms sleep), using almost no CPU.

The workers are idle while they wait, so more workers than cores still help; CPU-starved
loaders would not. Expected diagnosis: io_bound (low worker CPU per batch, long waits).

    tracelens profile examples/latency_bound_reads.py
    python examples/latency_bound_reads.py --num-workers 8
"""

from __future__ import annotations

import time

import torch
from _common import loader_args, make_loader, train
from torch.utils.data import Dataset


class RemoteSamples(Dataset[tuple[torch.Tensor, int]]):
    """Samples fetched with a fixed per-item latency (object store, network file system)."""

    def __init__(self, n: int = 4096, latency_s: float = 0.005) -> None:
        self.n, self.latency_s = n, latency_s

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        time.sleep(self.latency_s)
        return torch.full((256,), float(i % 7)), i % 4


def main() -> None:
    args = loader_args(__doc__ or "", num_workers=2, batch_size=32, epochs=1).parse_args()
    model = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))
    train(model, make_loader(RemoteSamples(), args), args.epochs)


if __name__ == "__main__":
    main()
