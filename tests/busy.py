"""CPU-bound neighbours for busy-machine scenarios: ``python -c "while True: pass"`` processes
started around a measurement and stopped by their PID (never by name)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

HOG = "while True: pass"


def cores() -> int:
    """The cores this process may use (its CPU affinity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def neighbours(n: int, settle_s: float = 0.3) -> Iterator[list[int]]:
    """Start ``n`` CPU-bound processes; yield their PIDs; kill and reap each by its PID on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(max(0, n))]
    try:
        time.sleep(settle_s if procs else 0.0)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
