"""The 1 ms-per-item loader of the num_workers article (shared/background/num_workers-article.md):
a Dataset whose __getitem__ sleeps 1 ms and returns a 3×32×32 tensor, batch 64, with a small
model step. Sleep-bound work is latency-bound: 4 or 16 workers help even on 2 cores.
The dataset holds 16,000 items (250 batches) so the loader reaches steady state.

    tracelens profile examples/sleep_1ms_loader.py
    python examples/sleep_1ms_loader.py --num-workers 4
"""

from __future__ import annotations

import time

import torch
from _common import loader_args, make_loader, train
from torch.utils.data import Dataset


class DummyDataset(Dataset[tuple[torch.Tensor, int]]):
    """The article's DummyDataset: 1 ms of waiting per item."""

    def __init__(self, size: int = 16_000) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        time.sleep(0.001)
        return torch.randn(3, 32, 32), idx % 10


def main() -> None:
    args = loader_args(__doc__ or "", num_workers=0, batch_size=64, epochs=1).parse_args()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    train(model, make_loader(DummyDataset(), args), args.epochs)


if __name__ == "__main__":
    main()
