"""Worker start-up repeated every epoch: persistent_workers=False, short epochs, and an
expensive worker start (0.4 s: opening files, loading an index...). Each epoch's first batch
waits for fresh workers. Expected finding: worker_respawn (fix: persistent_workers=True).

The default window fits the first loader's epoch; record several epochs with e.g.
    tracelens profile --wait 2 --active 24 examples/worker_startup_per_epoch.py
    python examples/worker_startup_per_epoch.py --persistent-workers
"""

from __future__ import annotations

import time

import torch
from _common import loader_args, make_loader, train
from torch.utils.data import Dataset


def slow_worker_start(worker_id: int) -> None:
    """worker_init_fn that costs 0.4 s, like opening a dataset index in each worker."""
    time.sleep(0.4)


class SmallEpochs(Dataset[tuple[torch.Tensor, int]]):
    """A small dataset: 8 batches of 16 per epoch."""

    def __len__(self) -> int:
        return 128

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((64,), float(i % 3)), i % 3


def main() -> None:
    args = loader_args(__doc__ or "", num_workers=2, batch_size=16, epochs=6).parse_args()
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))
    train(model, make_loader(SmallEpochs(), args, worker_init_fn=slow_worker_start), args.epochs)


if __name__ == "__main__":
    main()
