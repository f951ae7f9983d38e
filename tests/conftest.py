"""Shared fixtures: the builder, and the real traces in ../shared/traces when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared/traces beside the checkout; TRACELENS_SHARED_TRACES names it for a checkout that
#: lives elsewhere (a git worktree).
SHARED_TRACES = Path(os.environ.get("TRACELENS_SHARED_TRACES") or REPO.parent / "shared" / "traces")


@pytest.fixture
def shared_traces() -> Path:
    """The directory of real traces beside the repository (skip when absent)."""
    if not SHARED_TRACES.is_dir():
        pytest.skip("../shared/traces is not present")
    return SHARED_TRACES
