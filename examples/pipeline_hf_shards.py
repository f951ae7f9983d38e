"""A Hugging Face ``datasets`` IterableDataset with 2 shards behind a DataLoader, each sample
waiting 3 ms on "storage": a worker beyond one per shard gets no data.

``tracelens profile`` caps num_workers at the dataset's n_shards (2) and says how to re-shard.

    tracelens profile examples/pipeline_hf_shards.py
    python examples/pipeline_hf_shards.py --num-workers 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import torch
from datasets import IterableDataset
from torch.utils.data import DataLoader


def rows(shards: list[int]) -> Iterator[dict[str, Any]]:
    for shard in shards:
        for i in range(1200):
            time.sleep(0.003)
            yield {"x": [float((shard * 7 + i) % 5)] * 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = IterableDataset.from_generator(rows, gen_kwargs={"shards": list(range(args.shards))}).with_format("torch")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.num_workers)
    t0, steps = time.perf_counter(), 0
    for batch in loader:
        loss = model(batch["x"]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    print(f"{steps} steps, {1000 * (time.perf_counter() - t0) / max(steps, 1):.2f} ms/step")


if __name__ == "__main__":
    main()
