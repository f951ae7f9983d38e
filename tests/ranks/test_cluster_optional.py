"""The cluster support is optional: nothing of Dask or fsspec loads unless asked for, and asking
without it installed is one line saying what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, starved_loop

# Runs the CLI in-process, then reports which optional packages got imported (on stderr).
# ``sys.modules[name] = None`` makes ``import name`` fail, as if it were not installed.
PROBE = """
import os, sys
os.environ.pop("TRACELENS_SCHEDULER", None)
for name in sys.argv[1].split(","):
    if name:
        sys.modules[name] = None
sys.argv = ["tracelens", *sys.argv[2:]]
import tracelens.api, tracelens.cli
try:
    tracelens.cli.main()
except SystemExit as exc:
    code = exc.code
loaded = sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None} & {"dask", "distributed", "fsspec"})
sys.stderr.write(f"\\nEXIT {code} LOADED {','.join(loaded) or '-'}\\n")
"""


def probe(*args: str, hide: str = "") -> tuple[str, str]:
    """(stderr without the probe's line, the probe's line) of the CLI run with ``args``."""
    env = {k: v for k, v in os.environ.items() if k != "TRACELENS_SCHEDULER"}
    out = subprocess.run([sys.executable, "-c", PROBE, hide, *args], capture_output=True, text=True, timeout=120, env=env)
    err, _, last = out.stderr.rstrip().rpartition("\n")
    return err.strip(), last


@pytest.fixture
def ranks(tmp_path: Path) -> Path:
    for r in range(2):
        starved_loop(TraceBuilder(rank=r), steps=2).write(tmp_path / f"rank{r}.json")
    return tmp_path


def test_analyze_without_a_scheduler_never_imports_dask_or_fsspec(ranks: Path) -> None:
    assert probe("analyze", "--json", str(ranks))[1] == "EXIT 0 LOADED -"
    assert probe("analyze", str(ranks / "rank0.json"))[1] == "EXIT 0 LOADED -"


def test_scheduler_without_dask_installed_says_what_to_install(ranks: Path) -> None:
    err, last = probe("analyze", str(ranks), "--scheduler", "tcp://127.0.0.1:1", hide="distributed,dask")
    assert last.startswith("EXIT 1")
    assert err == 'tracelens: error: --scheduler needs Dask distributed: pip install "tracelens-dataloader[cluster]"'


def test_url_without_fsspec_installed_says_what_to_install(ranks: Path) -> None:
    err, last = probe("analyze", ranks.as_uri(), hide="fsspec")
    assert last.startswith("EXIT 1")
    assert err.startswith(f"tracelens: error: {ranks.as_uri()}: reading a URL needs fsspec: pip install")
    assert "\n" not in err
