"""Freed arrays are given back to the OS once the analysis asked glibc to (peak RSS = memory held)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np, psutil, sys
from tracelens.system.memory import return_freed_memory
if sys.argv[1] == "on":
    assert return_freed_memory()
first = np.ones(1_000_000)
del first  # one 8 MB column freed: glibc's threshold rises to 8 MB
columns, kept = [], []
for _ in range(20):  # 160 MB of columns, each followed by a small block that stays
    columns.append(np.ones(1_000_000))
    kept.append(bytearray(200_000))
peak = psutil.Process().memory_info().rss
del columns
print(peak - psutil.Process().memory_info().rss)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_columns_leave_the_process_once_asked() -> None:
    def freed(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert freed("on") > 150e6  # every 8 MB column unmapped when freed
    assert freed("off") < 50e6  # glibc's default: held in its heap below the small blocks
