"""A pipeline example beside a CPU-bound neighbour per core: its loaded verdict and advice
(``tracelens profile``), then the script as written against the advice, timed under the same
neighbours (``--repeats`` alternating runs, medians of the script's own ms/step).

    python bench/validate_pipeline_loaded.py pipeline_torchdata_nodes.py --now 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from validate_pipelines import EXAMPLES, ms_per_step

from tests.busy import neighbours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("example", help="a script under examples/, e.g. pipeline_torchdata_nodes.py")
    ap.add_argument("--flag", default="--num-workers", help="the example's flag for the advised knob (as --flag=--threads)")
    ap.add_argument("--now", type=int, default=1, help="the value the example is written with")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with neighbours(os.cpu_count() or 1):
        out = Path(tempfile.mkdtemp()) / "run"
        subprocess.run([sys.executable, "-m", "tracelens", "profile", "--out", str(out), str(EXAMPLES / args.example)],
                       capture_output=True, text=True, timeout=300)
        doc = json.loads((out / "analysis.json").read_text())
        rec = doc["recommendation"]
        busy = next((f["evidence"]["other_cpu_cores"] for f in doc["findings"] if f["kind"] == "busy_machine"), None)
        advised = int(rec["num_workers"])
        print(f"loaded verdict {doc['diagnosis']}, advice {rec.get('knob')}={advised}, "
              f"busy_machine other_cpu_cores {busy}, load {os.getloadavg()}")
        times: dict[int, list[float]] = {args.now: [], advised: []}
        for r in range(args.repeats):
            for v in (args.now, advised) if r % 2 == 0 else (advised, args.now):
                times[v].append(ms_per_step(args.example, args.flag, v))
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"ms/step as written ({args.now}) {med[args.now]:.1f} {times[args.now]} -> advised ({advised}) "
          f"{med[advised]:.1f} {times[advised]}: {med[args.now] / med[advised]:.2f}x; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
