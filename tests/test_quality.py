"""Lint and type check as tests, so the one test command covers them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _tool(name: str) -> list[str]:
    # Asked of this interpreter, not of PATH: `.venv/bin/python -m pytest` with another PATH
    # must still lint. The dev extra installs both; in CI a missing one is a failure.
    if importlib.util.find_spec(name) is None:
        pytest.fail(f"{name} is not installed in this interpreter (pip install -e '.[dev]')")
    return [sys.executable, "-m", name]


def test_ruff_finds_nothing() -> None:
    out = subprocess.run([*_tool("ruff"), "check", "tracelens", "tests", "bench", "examples"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing() -> None:
    out = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
