"""A webdataset pipeline that rebatches in the main process: workers decode 8-sample batches
(2 ms of waiting per sample), and ``.unbatched().shuffle().batched(16)`` after the WebLoader
runs in the training process, the pattern webdataset's docs show.

``tracelens profile`` times the WebLoader's ``next()`` (the rebatching is loader time, in the
main process) and advises WebLoader(num_workers=…) and batching inside the workers. The shards
are written to a temporary directory first.

    tracelens profile examples/pipeline_webdataset.py
    python examples/pipeline_webdataset.py --num-workers 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import webdataset as wds


def write_shards(root: Path, shards: int, per_shard: int) -> list[str]:
    urls = []
    for s in range(shards):
        path = root / f"shard-{s:04d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                sink.write({"__key__": f"{s:04d}{i:06d}", "x.pyd": [float((s + i) % 5)] * 64})
        urls.append(str(path))
    return urls


def slow(sample: Any) -> Any:
    time.sleep(0.002)  # a read from an object store
    return (torch.tensor(sample[0]),)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shards", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        urls = write_shards(Path(d), args.shards, 300)
        ds = wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("x.pyd").map(slow).batched(8)
        loader = wds.WebLoader(ds, batch_size=None, num_workers=args.num_workers)
        loader = loader.unbatched().shuffle(64).batched(args.batch_size)
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        t0, steps = time.perf_counter(), 0
        for (batch,) in loader:
            loss = model(batch).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        print(f"{steps} steps, {1000 * (time.perf_counter() - t0) / max(steps, 1):.2f} ms/step")


if __name__ == "__main__":
    main()
