"""Measure an example over a grid of flag settings: each setting run ``--repeats`` times,
interleaved (setting A, B, C, A, B, C, ...) so a burst of load on a shared machine hits all
settings alike; the steps/s is the ``steady-state: X steps/s`` line the script prints (under
torchrun one line per rank: the lowest is kept, every rank runs at the slowest one's pace).

    python bench/example_grid.py --out /tmp/grid/image.jsonl --max-load 4 \\
        --setting="" --setting="--num-workers 1 --main-threads 1" \\
        -- python examples/image_pipeline.py

(``--setting=VALUE`` with the ``=``: a value such as ``--persistent-workers`` would otherwise be
read as an option of this script.)

Writes one JSON line per run (setting, steps/s, 1-minute load average before and after, wall
time) and prints the median per setting with the load range.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

RATE = re.compile(r"steady-state: ([0-9.]+) steps/s")


def wait_for_quiet(max_load: float | None, max_wait: float) -> float:
    """Sleep until the 1-minute load average is below ``max_load`` (or ``max_wait`` passed)."""
    t0 = time.perf_counter()
    while max_load is not None and os.getloadavg()[0] >= max_load:
        if time.perf_counter() - t0 >= max_wait:
            break
        time.sleep(5)
    return round(time.perf_counter() - t0, 1)


def run_once(cmd: list[str], flags: str, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` with ``flags`` (and ``env`` added) once: exit status, the script's rate (the
    slowest rank's under torchrun), the 1-minute load before and after, and the wall time."""
    load0 = os.getloadavg()[0]
    started = time.strftime("%H:%M:%S")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([*cmd, *shlex.split(flags)], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        out, status = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, status = str(exc.stdout or "") + str(exc.stderr or ""), -1
    rates = [float(m.group(1)) for m in RATE.finditer(out)]
    return {"status": status, "started": started, "steps_per_s": min(rates) if rates else None,
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "wall_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setting", action="append", required=True, help="flags added to the command")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--max-load", type=float, default=None,
                    help="before each run, wait (up to --max-wait s) until the 1-minute load "
                         "average is below this (a shared machine: other tenants' jobs)")
    ap.add_argument("--max-wait", type=float, default=300.0)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    with args.out.open("a") as fh:
        for rep in range(args.repeats):
            for setting in args.setting:
                waited = wait_for_quiet(args.max_load, args.max_wait)
                run = run_once(cmd, setting, args.timeout)
                row = {"setting": setting, "repeat": rep, "started": run.pop("started"), **run,
                       "waited_s": waited, "command": cmd}
                rows.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(json.dumps(row), flush=True)
    print("\nsetting | steps/s median [runs] | load (1 min) min-max")
    for setting in args.setting:
        mine = [r for r in rows if r["setting"] == setting]
        rates = [r["steps_per_s"] for r in mine if r["steps_per_s"] is not None]
        loads = [r["load_before"] for r in mine] + [r["load_after"] for r in mine]
        med = f"{statistics.median(rates):.2f}" if rates else "n/a"
        print(f"{setting or '(defaults)'} | {med} {[round(x, 2) for x in rates]} | "  # type: ignore[arg-type]
              f"{min(loads):.1f}-{max(loads):.1f}")  # type: ignore[type-var]


if __name__ == "__main__":
    main()
