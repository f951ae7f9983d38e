"""The num_workers pairs of real Kineto traces (../shared/traces): the num_workers=0 halves are
input-bound with a computed num_workers >= 1 and pin_memory advice (their copies are pageable);
the num_workers=4 halves are healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracelens.api import analyze_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PAIRS = (
    "kineto/plugin/samples/resnet50_num_workers_{}",
    "kineto/tb_plugin/samples/resnet50_profiler_api_num_workers_{}",
    "kineto/tb_plugin/samples/resnet50_autograd_api_num_workers_{}",
)


def _trace(pattern: str, workers: int) -> Path:
    p = SHARED / "traces" / pattern.format(workers) / "worker0.pt.trace.json.gz"
    if not p.is_file():
        pytest.skip(f"{p} is not present")
    return p


@pytest.mark.parametrize("pattern", PAIRS)
def test_num_workers_0_half_is_input_bound_with_computed_settings(pattern: str) -> None:
    r = analyze_path(_trace(pattern, 0)).ranks[0]
    d = r.diagnosis
    assert d.diagnosis == "input_bound"
    rec = d.recommendation
    assert rec.num_workers >= 1 and rec.pin_memory is True and rec.prefetch_factor == 2
    f = next(f for f in d.findings if f.id == "TL104")
    assert "num_workers=0" in f.evidence["batch_ms_source"]
    assert 0.2 < f.evidence["exposed_wait_fraction"] < 0.35
    assert any(f.kind == "pageable_memcpy" for f in d.findings)
    assert any("tracelens profile" in n for n in rec.notes)
    assert r.document.diagnosis == "input_bound"


@pytest.mark.parametrize("pattern", PAIRS)
def test_num_workers_4_half_is_healthy(pattern: str) -> None:
    d = analyze_path(_trace(pattern, 4)).ranks[0].diagnosis
    assert d.diagnosis == "healthy"
    # the worker settings are not in the trace: kept (null), never replaced by a guess
    assert d.recommendation.keep_current == ("num_workers", "persistent_workers", "prefetch_factor")
    assert d.recommendation.num_workers is None
    assert d.recommendation.pin_memory is True  # pageable copies in this half too
