"""A streaming IterableDataset: records read one by one from a list of shards (object-store
files, a message queue), each worker taking its own shards via ``get_worker_info()``.

Each record costs ``--latency-ms`` of waiting (the read) and ``--cpu-ms`` of CPU (parsing,
decoding). The stream has no length, so the DataLoader has no ``len()``. With the defaults the
stream is mostly waiting: more workers than cores help.

    python examples/iterable_stream.py                       # num_workers=0
    python examples/iterable_stream.py --num-workers 4
    python examples/iterable_stream.py --latency-ms 0 --cpu-ms 2 --num-workers 1   # CPU-bound
    tracelens profile examples/iterable_stream.py
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from _common import SteadyRate, fit, loader_args, make_loader, print_rate
from torch.utils.data import IterableDataset, get_worker_info


def burn(ms: float) -> None:
    """About ``ms`` of CPU work (record parsing)."""
    end = time.thread_time() + ms / 1000
    x = np.arange(4096, dtype=np.float64)
    while time.thread_time() < end:
        x = np.sqrt(x * x + 1.0)


class RecordStream(IterableDataset[tuple[torch.Tensor, int]]):
    """``shards`` × ``per_shard`` records; worker k of N reads shards k, k+N, k+2N..."""

    def __init__(self, shards: int, per_shard: int, latency_ms: float, cpu_ms: float) -> None:
        self.shards, self.per_shard = shards, per_shard
        self.latency_ms, self.cpu_ms = latency_ms, cpu_ms

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        mine = range(self.shards)
        if info is not None:
            mine = range(info.id, self.shards, info.num_workers)
        for shard in mine:
            rng = np.random.default_rng(shard)
            for _ in range(self.per_shard):
                if self.latency_ms:
                    time.sleep(self.latency_ms / 1000)
                if self.cpu_ms:
                    burn(self.cpu_ms)
                x = rng.standard_normal(256).astype(np.float32)
                yield torch.from_numpy(x), int(x[0] > 0)


def main() -> None:
    ap = loader_args(__doc__ or "", num_workers=0, batch_size=32, epochs=1)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--per-shard", type=int, default=512)
    ap.add_argument("--latency-ms", type=float, default=0.5, help="wait per record")
    ap.add_argument("--cpu-ms", type=float, default=0.1, help="CPU per record")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    ap.add_argument("--warmup-steps", type=int, default=10)
    args = ap.parse_args()
    stream = RecordStream(args.shards, args.per_shard, args.latency_ms, args.cpu_ms)
    loader = make_loader(stream, args, shuffle=False, drop_last=False)  # a stream: no shuffle
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    meter = SteadyRate(args.warmup_steps)
    steps = fit(model, loader, opt, args.epochs, meter, max_steps=args.steps)
    print_rate(steps, meter)


if __name__ == "__main__":
    main()
