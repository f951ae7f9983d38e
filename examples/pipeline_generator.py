"""A plain generator pipeline: batches are built in the training process, each sample waiting
3 ms on "storage", so every ``next()`` waits ~24 ms.

``tracelens profile`` times each resumption of the generator and advises the concurrency
(Little's law) a thread pool or prefetch queue needs; ``--threads N`` applies it here with a
``ThreadPoolExecutor`` mapping the reads ahead of the loop.

    tracelens profile examples/pipeline_generator.py
    python examples/pipeline_generator.py --threads 8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch


def read(i: int) -> torch.Tensor:
    time.sleep(0.003)
    return torch.full((64,), float(i % 5))


def batches(samples: int, batch_size: int, threads: int) -> Iterator[torch.Tensor]:
    """Batches of ``batch_size`` reads; with ``threads`` > 0 the reads run ahead in a pool."""
    if threads > 0:
        with ThreadPoolExecutor(threads) as pool:
            reads = pool.map(read, range(samples))
            for _ in range(samples // batch_size):
                yield torch.stack([next(reads) for _ in range(batch_size)])
        return
    for start in range(0, samples - batch_size + 1, batch_size):
        yield torch.stack([read(i) for i in range(start, start + batch_size)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2400)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t0, steps = time.perf_counter(), 0
    for batch in batches(args.samples, args.batch_size, args.threads):
        loss = model(batch).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    print(f"{steps} steps, {1000 * (time.perf_counter() - t0) / max(steps, 1):.2f} ms/step")


if __name__ == "__main__":
    main()
