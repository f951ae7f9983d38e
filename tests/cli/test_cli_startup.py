"""``tracelens --version`` and ``--help`` start fast: they import neither pandas nor numpy (nor
anything that analyzes); the analysis is imported only when a command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas", "jinja2", "torch")


def _imported(*args: str) -> set[str]:
    """Top-level modules ``python -m tracelens ARGS`` imports (from ``-X importtime``)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tracelens", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("analyze", "--help"), ("report", "--help"),
                                  ("annotate", "--help"), ("rules", "--help"), ("compare", "--help")])
def test_version_and_help_import_neither_pandas_nor_numpy(args: tuple[str, ...]) -> None:
    loaded = _imported(*args)
    assert "tracelens.cli" in loaded  # the measurement sees the CLI's own imports
    assert not [m for m in HEAVY if m in loaded]


def test_help_speaks_to_users_not_to_spec_sections() -> None:
    for args in (("--help",), ("analyze", "--help"), ("compare", "--help"), ("report", "--help")):
        r = subprocess.run([sys.executable, "-m", "tracelens", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "SPEC" not in r.stdout and "§" not in r.stdout


def test_rules_wrap_to_the_terminal_width() -> None:
    import os

    r = subprocess.run([sys.executable, "-m", "tracelens", "rules"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "72"})
    assert r.returncode == 0 and "TL101" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 72
