"""The step breakdown: each step split into data wait (exposed, hidden), forward, backward,
optimizer, collectives and other from the trace's own events, summing to the step; the same
numbers in the JSON, the terminal and the HTML report."""

from __future__ import annotations

import html as html_mod
import re
from pathlib import Path

import pytest

from tests.builders import TraceBuilder
from tests.conftest import REPO, SHARED_TRACES
from tracelens.api import analyze_files, analyze_path
from tracelens.breakdown import READING_ORDER
from tracelens.document.schema import AnalysisDocument, Document, rank_documents
from tracelens.render.breakdown import breakdown_view
from tracelens.render.format import fmt_ms
from tracelens.render.report import render_report
from tracelens.render.terminal import format_summary
from tracelens.vocab import pct

AUTOGRAD_TID = 2


def _training_steps(b: TraceBuilder, steps: int = 3, *, hidden_us: float = 0) -> TraceBuilder:
    """Steps of 100 ms: wait 30 (``hidden_us`` of it under a kernel), forward 20, backward 30 on
    the autograd thread, optimizer 10, then 10 of other host work."""
    for i in range(steps):
        t = i * 100_000.0
        b.step(i + 1, t, 100_000).next_call(t, 30_000)
        if hidden_us:
            b.kernel(t + 30_000 - hidden_us, hidden_us)
        b.op("aten::linear", t + 31_000, 18_000)
        b.add("autograd::engine::evaluate_function: AddmmBackward0", "op", t + 50_000, 14_000, tid=AUTOGRAD_TID)
        b.add("AddmmBackward0", "op", t + 65_000, 15_000, tid=AUTOGRAD_TID)
        b.add("Optimizer.step#SGD.step", "user_annotation", t + 80_000, 10_000)
        b.op("aten::item", t + 92_000, 1_000)
    return b


def test_each_part_comes_from_the_traces_own_events(tmp_path: Path) -> None:
    path = _training_steps(TraceBuilder(), hidden_us=5_000).write(tmp_path / "t.json")
    b = analyze_files([str(path)]).document.metrics.step_breakdown
    assert b is not None and b.step_ms == pytest.approx(100.0)
    assert b.data_wait_exposed_ms == pytest.approx(25.0) and b.data_wait_hidden_ms == pytest.approx(5.0)
    # forward: from the batch's arrival to the first autograd event (the ops between included)
    assert b.forward_ms == pytest.approx(20.0)
    # backward: the whole span of the autograd thread's work, its gap included
    assert b.backward_ms == pytest.approx(30.0)
    assert b.optimizer_ms == pytest.approx(10.0)
    assert b.collective_ms == 0 and b.other_ms == pytest.approx(10.0)
    assert b.gpu_busy_ms == pytest.approx(5.0)


def test_collectives_outside_the_backward_are_their_own_part(tmp_path: Path) -> None:
    b = _training_steps(TraceBuilder())
    for i in range(3):
        b.add("nccl:all_reduce", "user_annotation", i * 100_000 + 93_500, 4_000)
    parts = analyze_files([str(b.write(tmp_path / "t.json"))]).document.metrics.step_breakdown
    assert parts is not None
    assert parts.collective_ms == pytest.approx(4.0) and parts.other_ms == pytest.approx(6.0)


def _sums(doc: AnalysisDocument) -> None:
    for d in rank_documents(doc):
        b = d.metrics.step_breakdown
        assert b is not None
        assert sum(b.parts().values()) == pytest.approx(b.step_ms, rel=0.02)
        assert b.step_ms == pytest.approx(d.metrics.step_time_ms_median, abs=1e-4)  # the JSON rounds it
        for row in d.per_step:
            parts = [getattr(row, f"part_{k}") for k in READING_ORDER]
            assert sum(parts) == pytest.approx(row.duration_ms, rel=0.02, abs=1e-3)
            assert row.part_data_wait_exposed_ms == pytest.approx(row.exposed_wait_ms, abs=1e-3)


@pytest.mark.parametrize("sample", sorted(p.name for p in (REPO / "sample_traces").iterdir()
                                          if (p / "trace.json.gz").is_file()))
def test_breakdown_sums_to_the_step_time_on_every_sample(sample: str) -> None:
    _sums(analyze_path(REPO / "sample_traces" / sample).document)


def test_breakdown_sums_to_the_step_time_on_a_real_gpu_trace() -> None:
    path = SHARED_TRACES / "hta" / "tests" / "data" / "trace_diff" / "control" / "control.json.gz"
    if not path.is_file():
        pytest.skip("shared traces not present")
    doc = analyze_path(path).document
    _sums(doc)
    assert isinstance(doc, Document)
    b = doc.metrics.step_breakdown
    assert b is not None and b.backward_ms > 0 and b.optimizer_ms > 0 and b.collective_ms > 0
    assert b.gpu_busy_ms is not None and b.gpu_busy_ms > 0


def test_terminal_html_and_json_give_the_same_numbers() -> None:
    result = analyze_path(REPO / "sample_traces" / "sleep_1ms_loader")
    doc = result.document
    assert isinstance(doc, Document)
    text = format_summary(doc)
    page = html_mod.unescape(re.sub(r"<[^>]+>", " ", render_report(result)))
    page = re.sub(r"\s+", " ", page)
    m = doc.metrics
    view = breakdown_view(doc)
    assert view is not None and m.step_breakdown is not None and m.speedup_ceiling is not None
    assert doc.recommendation.expected_speedup is not None
    expected = [fmt_ms(m.step_time_ms_median), pct(m.exposed_data_wait_fraction),
                f"{m.speedup_ceiling:.2f}×", f"{doc.recommendation.expected_speedup:.2f}×"]
    expected += [fmt_ms(v) for v in m.step_breakdown.parts().values() if v > 0]
    flat_text = re.sub(r"\s+", " ", text)
    for number in expected:
        assert number in flat_text, number
        assert number in page, number
