"""Short epochs, many of them, with workers that are expensive to start.

The dataset opens its index lazily on first access in each process (like an HDF5 file or a
LMDB environment that must not be shared across fork): ``--open-ms`` of work per process that
touches it. With ``persistent_workers=False`` (the DataLoader default) every epoch forks new
workers that each open the index again, and an epoch is only 4 batches long, so the start-up is
paid every 4 steps. A ``worker_init_fn`` seeding numpy and setting up logging adds
``--init-ms`` more per worker.

    python examples/short_epoch_respawn.py                       # 2 workers, not persistent
    python examples/short_epoch_respawn.py --persistent-workers
    python examples/short_epoch_respawn.py --num-workers 0
    tracelens profile examples/short_epoch_respawn.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import SteadyRate, fit, loader_args, make_loader
from torch.utils.data import Dataset, get_worker_info

INIT_MS = 50.0


def worker_setup(worker_id: int) -> None:
    """worker_init_fn: seed numpy per worker, set up per-worker logging (costs ``INIT_MS``)."""
    info = get_worker_info()
    np.random.seed((info.seed if info is not None else 0) % 2**32)
    time.sleep(INIT_MS / 1000)


class IndexedRecords(Dataset[tuple[torch.Tensor, int]]):
    """Records looked up through an index that each process opens on first use."""

    def __init__(self, n: int, open_ms: float) -> None:
        self.n, self.open_ms = n, open_ms
        self.index: np.ndarray | None = None

    def _open(self) -> np.ndarray:
        time.sleep(self.open_ms / 2000)  # the open itself (metadata round trips)
        end = time.thread_time() + self.open_ms / 2000  # and reading/parsing the index
        order = np.arange(self.n)
        while time.thread_time() < end:
            order = np.random.default_rng(0).permutation(self.n)
        return order

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.index is None:
            self.index = self._open()
        j = int(self.index[i])
        x = torch.from_numpy(np.random.default_rng(j).standard_normal(128).astype(np.float32))
        return x, j % 4


def main() -> None:
    global INIT_MS
    ap = loader_args(__doc__ or "", num_workers=2, batch_size=32, epochs=20)
    ap.add_argument("--samples", type=int, default=128, help="4 batches of 32 per epoch")
    ap.add_argument("--open-ms", type=float, default=150.0, help="index open, per process")
    ap.add_argument("--init-ms", type=float, default=INIT_MS, help="worker_init_fn cost")
    ap.add_argument("--warmup-steps", type=int, default=4)
    args = ap.parse_args()
    INIT_MS = args.init_ms
    loader = make_loader(IndexedRecords(args.samples, args.open_ms), args,
                         worker_init_fn=worker_setup)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    meter = SteadyRate(args.warmup_steps)
    fit(model, loader, opt, args.epochs, meter)
    print(f"{len(meter.ticks)} steps in {args.epochs} epochs of {len(loader)} batches")
    print(meter.summary())


if __name__ == "__main__":
    main()
