"""Regenerate the synthetic traces in sample_traces/synthetic/ from the test builders.

    python -m tests.make_samples

tests/test_samples.py fails when a committed file differs from what this writes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.builders import TraceBuilder, starved_loop

OUT = Path(__file__).resolve().parents[1] / "sample_traces" / "synthetic"


def samples() -> dict[str, bytes]:
    """File name → gzip bytes (mtime 0, so the output is reproducible)."""
    gpu = starved_loop(TraceBuilder(device_names=("NVIDIA A100-SXM4-80GB",)), steps=12,
                       wait_us=45_000, compute_us=105_000, mirror_on_gpu=True)
    ranks = {
        f"ranks/rank{r}.pt.trace.json.gz": starved_loop(
            TraceBuilder(device_names=("NVIDIA H100",), rank=r), steps=6,
            wait_us=2_000 + 9_000 * r, compute_us=60_000, iterator="_MultiProcessingDataLoaderIter", copy="Pinned")
        for r in range(2)
    }
    builders = {"gpu_input_bound.json.gz": gpu, **ranks}
    return {name: gzip.compress(b.text().encode(), mtime=0) for name, b in builders.items()}


def main() -> None:
    for name, data in samples().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(path)


if __name__ == "__main__":
    main()
