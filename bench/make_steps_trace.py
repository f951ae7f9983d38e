"""Build a trace of many small steps: one ``ProfilerStep#N`` and one DataLoader ``__next__`` each.

It stresses what grows with the number of steps (the per-step table, the waits, the document)
rather than with the number of events: 3 million steps make ~800 MB, one compact event a line.
``--compact`` writes the same steps in ~600 MB (integer µs, no ``cat`` field): the bytes per
step of the traces that issue 21's memory bound names. Step durations and waits vary
deterministically (a fixed seed), so every build is the same file.

    python bench/make_steps_trace.py OUT.json --steps 3000000 [--compact] [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

HEAD = (b'{\n  "schemaVersion": 1,\n  "deviceProperties": [],\n  "baseTimeNanoseconds": 1767189312000000000,\n'
        b'  "traceEvents": [\n')
TAIL = b'\n  ],\n  "traceName": "steps.json",\n  "displayTimeUnit": "ms"\n}\n'
PID, TID = 42, 43
ITER = "enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__"
EVENT = (
    '{{"ph":"X","cat":"user_annotation","name":"ProfilerStep#{n}","pid":{pid},"tid":{tid},'
    '"ts":{s:.3f},"dur":{d:.3f}}},\n'
    '{{"ph":"X","cat":"user_annotation","name":"{it}","pid":{pid},"tid":{tid},'
    '"ts":{ws:.3f},"dur":{wd:.3f}}}'
)
COMPACT = (
    '{{"ph":"X","name":"ProfilerStep#{n}","pid":{pid},"tid":{tid},"ts":{s},"dur":{d}}},\n'
    '{{"ph":"X","name":"{it}","pid":{pid},"tid":{tid},"ts":{ws},"dur":{wd}}}'
)
BATCH = 50_000  # steps formatted at a time


def build(out: Path, steps: int, compress: bool, seed: int = 0, compact: bool = False) -> int:
    """Write ``out`` with ``steps`` steps; return its size in bytes (uncompressed)."""
    rng = np.random.default_rng(seed)
    sink = gzip.open(out, "wb", compresslevel=6) if compress else out.open("wb")  # noqa: SIM115
    written = 0
    t = 1_000_000.0  # µs
    with sink as f:
        f.write(HEAD)
        written += len(HEAD)
        for lo in range(0, steps, BATCH):
            n = min(BATCH, steps - lo)
            dur = np.round(rng.uniform(50.0, 150.0, n), 3)  # µs per step
            wait = np.round(dur * rng.uniform(0.05, 0.6, n), 3)  # the __next__ wait inside it
            start = t + np.concatenate([[0.0], np.cumsum(dur[:-1] + 1.0)])
            t = float(start[-1] + dur[-1] + 1.0)
            if compact:  # whole µs: the wait starts with its step and ends inside it
                parts = [COMPACT.format(n=lo + i, pid=PID, tid=TID, s=s, d=d, it=ITER, ws=s, wd=max(1, min(w, d - 1)))
                         for i, (s, d, w) in enumerate(zip(np.floor(start).astype(np.int64).tolist(),
                                                           np.floor(dur).astype(np.int64).tolist(),
                                                           np.floor(wait).astype(np.int64).tolist()))]
            else:
                parts = [EVENT.format(n=lo + i, pid=PID, tid=TID, s=s, d=d, it=ITER, ws=s + 0.5, wd=w)
                         for i, (s, d, w) in enumerate(zip(start.tolist(), dur.tolist(), wait.tolist()))]
            text = (",\n".join(parts) + (",\n" if lo + n < steps else "")).encode()
            f.write(text)
            written += len(text)
            print(f"\rsteps {lo + n:,}/{steps:,}", end="", file=sys.stderr)
        f.write(TAIL)
        written += len(TAIL)
    print(file=sys.stderr)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=3_000_000)
    ap.add_argument("--gzip", action="store_true", help="write gzip-compressed")
    ap.add_argument("--compact", action="store_true", help="integer µs and no cat field (~200 B a step)")
    a = ap.parse_args()
    size = build(a.out, a.steps, a.gzip, compact=a.compact)
    print(f"{a.out}: {a.steps:,} steps, {size / 1e6:.0f} MB uncompressed")


if __name__ == "__main__":
    main()
