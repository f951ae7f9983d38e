"""A script that drives its own torch.profiler (a schedule of two cycles written by
``tensorboard_trace_handler``), over a latency-bound DataLoader (3 ms per sample, no workers).

``tracelens profile`` cannot run a second profiler beside it: it keeps the script's first
recorded cycle as the trace and analyzes it with its own telemetry. ``tracelens analyze`` of the
log directory reads the two cycles as one process, not two ranks.

    tracelens profile examples/pipeline_own_profiler.py
    tracelens analyze ./tb_own_profiler
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Reads(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 1600

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(0.003)
        return torch.full((64,), float(i % 5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--logdir", default="tb_own_profiler")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Reads(), batch_size=8, num_workers=args.num_workers)
    schedule = torch.profiler.schedule(wait=2, warmup=2, active=10, repeat=2)
    with torch.profiler.profile(schedule=schedule,
                                on_trace_ready=torch.profiler.tensorboard_trace_handler(args.logdir)) as prof:
        for batch in loader:
            loss = model(batch).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            prof.step()


if __name__ == "__main__":
    main()
