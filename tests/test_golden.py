"""Every ``analyze --json`` document (and every sample's report view model) equals the one
recorded in tests/golden/: a refactor must not change a number. Re-record on purpose only:
``python -m tests.golden --update``."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from tests import golden
from tests.conftest import SHARED_TRACES


@cache
def _recorded(which: str) -> dict[str, Any]:
    return golden.read(golden.SAMPLES_FILE if which == "samples" else golden.SHARED_FILE)


def _check(which: str, key: str, actual: dict[str, Any]) -> None:
    expected = _recorded(which).get(key)
    assert expected is not None, f"{key} has no golden record: run `python -m tests.golden --update`"
    diffs = golden.differences(expected, actual, key)
    assert not diffs, "document changed:\n" + "\n".join(diffs)


def test_golden_files_cover_every_sample() -> None:
    keys = set(_recorded("samples"))
    assert {f"document:{n}" for n in golden.sample_cases()} <= keys


@pytest.mark.parametrize("name", sorted(golden.sample_cases()))
def test_sample_document_is_unchanged(name: str) -> None:
    path = golden.sample_cases()[name]
    _check("samples", f"document:{name}", golden.document(path))
    if path.is_dir() and (path / "run.json").is_file():
        _check("samples", f"view:{name}", golden.view(path))


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="../shared/traces is not present")
@pytest.mark.parametrize("name", sorted(golden.shared_cases()))
def test_shared_trace_document_is_unchanged(name: str) -> None:
    _check("shared", f"document:{name}", golden.document(golden.shared_cases()[name]))
