"""The article's DataLoader (batch 64, 1 ms per item) as a training-like script, for sweep tests.

``--work sleep`` sleeps 1 ms per item (latency-bound, like the article); ``--work cpu`` spends
about the same time computing in Python (CPU-bound). ``--items`` sizes the dataset so that a
trial reaches steady state; ``--compute-ms`` is per-step work in the main loop; ``--train``
makes each step a backward pass of a small model (so the loader is the training loader).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset


class DummyDataset(Dataset):  # type: ignore[type-arg]
    def __init__(self, size: int, work: str, item_ms: float) -> None:
        self.size, self.work, self.item_s = size, work, item_ms / 1000

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> torch.Tensor:
        if self.work == "sleep":
            time.sleep(self.item_s)
        else:
            end = time.thread_time() + self.item_s
            x = 0
            while time.thread_time() < end:
                x += sum(i * i for i in range(200))
        return torch.randn(3, 32, 32)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--work", choices=("sleep", "cpu"), default="sleep")
    p.add_argument("--item-ms", type=float, default=1.0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--compute-ms", type=float, default=0.0)
    p.add_argument("--train", action="store_true")
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    loader = DataLoader(DummyDataset(a.items, a.work, a.item_ms), batch_size=64, shuffle=True,
                        num_workers=a.num_workers)
    model = torch.nn.Linear(3 * 32 * 32, 1)
    start = time.time()
    for _epoch in range(a.epochs):
        for batch in loader:
            if a.compute_ms:
                time.sleep(a.compute_ms / 1000)
            if a.train:
                model(batch.flatten(1)).sum().backward()
    print(f"Data loading with num_workers={a.num_workers} took: {time.time() - start:.4f} seconds")


if __name__ == "__main__":
    main()
