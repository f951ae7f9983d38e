"""How long ``tracelens --version`` and ``--help`` take to start, against ``python -c pass``.

Run under the shared lock on a quiet machine: ``flock /work/cpu.lock python bench/bench_startup.py``.
Prints one line per command: the median and the spread of N alternating runs (wall seconds).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 9
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "tracelens --version": [sys.executable, "-m", "tracelens", "--version"],
    "tracelens --help": [sys.executable, "-m", "tracelens", "--help"],
    "tracelens analyze --help": [sys.executable, "-m", "tracelens", "analyze", "--help"],
}


def main() -> None:
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(RUNS):  # alternating, so drifting load hits every command alike
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["python -c pass"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} median {med * 1000:7.1f} ms  (min {min(ts) * 1000:.1f}, max {max(ts) * 1000:.1f}; "
              f"{med - base:+.3f} s over python -c pass; {RUNS} runs)")


if __name__ == "__main__":
    main()
