"""Far more loader processes and threads than cores: 8 workers, each raising torch's
intra-op threads to 4 in its worker_init_fn, doing multi-threaded tensor work per sample, on a
machine with a couple of cores. Expected diagnosis: oversubscription (run-queue delay and
involuntary context switches in the telemetry; fewer workers and 1 thread each go faster).

    tracelens profile examples/oversubscribed.py
    python examples/oversubscribed.py --num-workers 2 --worker-threads 1 --main-threads 1
"""

from __future__ import annotations

import torch
from _common import loader_args, make_loader, train
from torch.utils.data import Dataset


class MatmulFeatures(Dataset[tuple[torch.Tensor, int]]):
    """Features computed with matmuls and elementwise ops per sample (each threaded by torch)."""

    def __init__(self, n: int = 4096) -> None:
        self.n = n
        self.w = torch.randn(256, 256)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.randn(256, 256, generator=torch.Generator().manual_seed(i))
        for _ in range(2):
            x = torch.tanh(x @ self.w)
        for _ in range(12):  # elementwise ops on 65k elements: torch splits each across its threads
            x = torch.tanh(x * 0.9 + 0.1)
        return x.mean(0), i % 5


def main() -> None:
    # Each worker raises torch's intra-op threads to 4 (the DataLoader sets 1).
    args = loader_args(__doc__ or "", num_workers=8, batch_size=32, epochs=1, worker_threads=4).parse_args()
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 5))
    train(model, make_loader(MatmulFeatures(), args), args.epochs)


if __name__ == "__main__":
    main()
