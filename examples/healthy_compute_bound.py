"""A healthy run: the model's compute dominates and the loader (1 worker, cheap samples)
keeps up. Expected diagnosis: healthy (small exposed data wait; nothing to change).

Each ``__next__`` still costs about 1 ms in the main process (taking the batch off the worker's
queue and mapping its shared memory), whatever the worker count: the step is made long enough
(about 50 ms on 2 cores) that this hand-over stays well under the 5 % input-bound threshold. With
a 22 ms step it was 4.8-5.3 % and the verdict flapped between healthy and input_bound.

    tracelens profile examples/healthy_compute_bound.py
"""

from __future__ import annotations

import torch
from _common import loader_args, make_loader, train
from torch.utils.data import Dataset


class Preloaded(Dataset[tuple[torch.Tensor, int]]):
    """An in-memory tensor dataset: indexing costs microseconds."""

    def __init__(self, n: int = 2048) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 512, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def main() -> None:
    args = loader_args(__doc__ or "", num_workers=1, batch_size=64, epochs=1).parse_args()
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 3072),
        torch.nn.ReLU(),
        torch.nn.Linear(3072, 3072),
        torch.nn.ReLU(),
        torch.nn.Linear(3072, 10),
    )
    train(model, make_loader(Preloaded(), args), args.epochs)


if __name__ == "__main__":
    main()
