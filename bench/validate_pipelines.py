"""Apply the advice tracelens gives for each example pipeline and time it (docs/validation.md,
"Input pipelines without a DataLoader").

Runs every example of ``examples/pipeline_*.py`` as the user would, with the settings it has
and with the recommended ones, alternating, ``--repeats`` times each, and prints the median
ms/step the examples print themselves (a markdown table) with the load average.

    python bench/validate_pipelines.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: (example, flag, as written, as advised by `tracelens profile` on the 2-core machine, extra)
CASES = [
    ("pipeline_torchdata_nodes.py", "--num-workers", 1, 32, 16),
    ("pipeline_generator.py", "--threads", 0, 2, 8),
    ("pipeline_stateful.py", "--num-workers", 0, 3, None),
    ("pipeline_hf_shards.py", "--num-workers", 0, 2, 4),
    ("pipeline_webdataset.py", "--num-workers", 1, 2, None),
]


def ms_per_step(example: str, flag: str, value: int) -> float:
    out = subprocess.run([sys.executable, str(EXAMPLES / example), flag, str(value)], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(r"([0-9.]+) ms/step", out)
    assert m is not None, out
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("examples", nargs="*", help="only these (e.g. pipeline_generator.py); default: all")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}\n")
    print("| example | knob | as written | ms/step | advised | ms/step | speed-up | more | ms/step |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for example, flag, now, advised, more in CASES:
        if args.examples and example not in args.examples:
            continue
        values = [v for v in (now, advised, more) if v is not None]
        times: dict[int, list[float]] = {v: [] for v in values}
        for r in range(args.repeats):
            for v in values if r % 2 == 0 else reversed(values):
                times[v].append(ms_per_step(example, flag, v))
        med = {v: statistics.median(t) for v, t in times.items()}
        extra = f"{more} | {med[more]:.1f}" if more is not None else "– | –"
        print(f"| {example} | {flag} | {now} | {med[now]:.1f} | {advised} | {med[advised]:.1f} | "
              f"{med[now] / med[advised]:.2f}× | {extra} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
