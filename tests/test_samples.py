"""The committed synthetic samples are what the builders make, and every sample analyzes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import job_of, single_of
from tests.make_samples import OUT, samples
from tracelens.api import analyze_path

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"


def test_synthetic_samples_are_current() -> None:
    for name, data in samples().items():
        assert (OUT / name).read_bytes() == data, f"run `python -m tests.make_samples` ({name} is stale)"


def test_synthetic_gpu_sample_is_input_bound_with_pageable_copies() -> None:
    doc = single_of(analyze_path(OUT / "gpu_input_bound.json.gz").document)
    assert doc.steps == 12 and doc.diagnosis == "input_bound"
    assert doc.metrics.exposed_data_wait_fraction == pytest.approx(0.30)
    assert doc.copies.h2d_pageable == 12  # 0.1 ms each: below the pin_memory threshold


def test_synthetic_ranks_sample_names_the_slowest_rank() -> None:
    doc = job_of(analyze_path(OUT / "ranks").document)
    assert [r.rank for r in doc.ranks] == [0, 1] and doc.slowest_rank == 1


@pytest.mark.parametrize("run_dir", sorted(p.name for p in SAMPLES.iterdir() if (p / "run.json").is_file()))
def test_every_recorded_example_analyzes(run_dir: str) -> None:
    doc = single_of(analyze_path(SAMPLES / run_dir).document)
    assert doc.steps > 0 and doc.diagnosis != "undetermined"


def test_no_sample_is_a_copy_of_a_shared_trace() -> None:
    """Run directories must name their trace trace.json.gz (SPEC §1), a name some shared traces
    also have: the contents must be our own recordings, never copies of ../shared/traces."""
    from tests.conftest import SHARED_TRACES

    if not SHARED_TRACES.is_dir():
        pytest.skip("../shared/traces is not present")
    ours = [p for p in SAMPLES.rglob("*.json*") if p.is_file()]
    for p in ours:
        for twin in SHARED_TRACES.rglob(p.name):
            assert twin.read_bytes() != p.read_bytes(), f"{p} is a copy of {twin}"
