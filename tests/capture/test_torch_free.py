"""The torch-free parts of capture stay torch-free: the ``tracelens profile`` process (it
claims, supervises and settles run.json while only the child loads torch) and the options the
CLI builds before torch loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ("tracelens.capture", "tracelens.capture.options", "tracelens.capture.destination",
              "tracelens.capture.recorded.outcome", "tracelens.capture.parent.profile",
              "tracelens.capture.parent.supervisor", "tracelens.capture.parent.launch")


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_parent_side_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit(2 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
