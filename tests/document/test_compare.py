"""compare: deltas, finding diff and verdict from documents; end to end on real num_workers pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.builders import TraceBuilder, finding, make_document, plain, starved_loop
from tracelens.api import compare_paths
from tracelens.document.compare import (
    compare_documents,
    comparison_document,
    diff_findings,
    encode_comparison,
)
from tracelens.document.schema import AnalysisDocument, Document, Finding, JobDocument, JobSource
from tracelens.render.compare import format_comparison, render_comparison_html

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PAIRS = [
    ("kineto/plugin/samples/resnet50_num_workers_0", "kineto/plugin/samples/resnet50_num_workers_4"),
    ("kineto/tb_plugin/samples/resnet50_profiler_api_num_workers_0",
     "kineto/tb_plugin/samples/resnet50_profiler_api_num_workers_4"),
]


def _doc(step_ms: float, exposed: float, *, findings: list[dict[str, Any]] | None = None,
         steps: list[float] | None = None, num_workers: int | None = 0, rank: int | None = None) -> Document:
    per_step = [{"step": i, "duration_ms": d} for i, d in enumerate(steps or [step_ms] * 5)]
    return make_document(
        source={"path": f"run-{step_ms}", "format": "json"},
        steps=len(per_step),
        metrics={"step_time_ms_median": step_ms, "data_wait_fraction": exposed,
                 "exposed_data_wait_fraction": exposed, "gpu_busy_fraction": 0.5,
                 "step_time_ms_total": step_ms * len(per_step), "measured_steps": len(per_step)},
        loader={"iterator": "single_process" if num_workers == 0 else "multi_process",
                "num_workers": num_workers, "pin_memory": False, "persistent_workers": False,
                "prefetch_factor": None},
        diagnosis="input_bound" if exposed > 0.05 else "healthy",
        findings=[plain(f) for f in findings or []],
        per_step=per_step,
        **({"rank": rank} if rank is not None else {}),
    )


def _finding(fid: str, severity: str, confidence: float = 0.9) -> Finding:
    return msgspec.convert(finding(fid, severity, confidence=confidence), Finding)


def test_delta_is_b_minus_a_and_verdict_names_both_changes() -> None:
    # GIVEN a run waiting 30 % of a 176 ms step and a fixed one at 127 ms with 1 % wait
    a, b = _doc(176.0, 0.30), _doc(127.0, 0.01, num_workers=4)
    # WHEN compared
    c = compare_documents(a, b)
    # THEN deltas are B − A and the verdict says how much wait went and the step-time change
    assert c.delta["step_time_ms_median"] == pytest.approx(-49.0)
    assert c.delta["exposed_data_wait_fraction"] == pytest.approx(-0.29)
    assert c.delta["exposed_data_wait_removed_fraction"] == pytest.approx(0.29 / 0.30, abs=1e-6)
    assert c.delta["speedup"] == pytest.approx(176 / 127, rel=1e-5)
    assert c.delta["exposed_data_wait_ms_per_step"] == pytest.approx(0.01 * 127 - 0.30 * 176)
    assert c.step_time_changed
    assert "removed 97 %" in c.verdict and "176.0 → 127.0 ms" in c.verdict and "faster" in c.verdict
    assert c.loader_changes["num_workers"] == (0, 4)


def test_small_step_change_is_within_noise() -> None:
    a = _doc(100.0, 0.0, steps=[90, 95, 100, 105, 110, 100])
    b = _doc(101.0, 0.0, steps=[91, 96, 101, 106, 111, 101])
    c = compare_documents(a, b)
    assert not c.step_time_changed
    assert "within noise" in c.verdict and "neither run waits" in c.verdict.lower()


def test_regression_is_called_slower() -> None:
    c = compare_documents(_doc(100.0, 0.02), _doc(150.0, 0.20))
    assert "slower" in c.verdict and "grew" in c.verdict


def test_findings_are_matched_by_id() -> None:
    a = [_finding("TL101", "high"), _finding("TL102", "medium"), _finding("TL103", "low")]
    b = [_finding("TL102", "low"), _finding("TL103", "low", 0.92), _finding("TL104", "info")]
    by_id = {f.id: f for f in diff_findings(a, b)}
    assert by_id["TL101"].status == "gone"
    assert by_id["TL104"].status == "new"
    assert by_id["TL102"].status == "changed"
    assert (by_id["TL102"].severity_a, by_id["TL102"].severity_b) == ("medium", "low")
    assert by_id["TL103"].status == "unchanged"  # confidence moved less than the epsilon


def test_document_follows_spec_and_renders() -> None:
    c = compare_documents(_doc(176.0, 0.30, findings=[_finding("TL101", "high")]), _doc(127.0, 0.01))
    doc = comparison_document(c)
    assert doc["schema_version"] == 1 and doc["a"].metrics.step_time_ms_median == 176.0
    assert {"step_time_ms_median", "exposed_data_wait_fraction", "findings"} <= set(doc["delta"])
    assert json.loads(encode_comparison(c))["a"]["metrics"]["step_time_ms_median"] == 176.0
    text = format_comparison(c)
    assert "B − A" in text and "gone" in text and c.verdict in text
    html = render_comparison_html(c)
    assert html.startswith("<!doctype html>") and "TL101" in html and "http" not in html.split("<body>")[1]


def test_multi_rank_documents_compare_their_slowest_rank() -> None:
    r0, r1 = _doc(100.0, 0.1, rank=0), _doc(120.0, 0.3, rank=1)
    multi = JobDocument(schema_version=1, source=JobSource(path="d"), ranks=[r0, r1], slowest_rank=1,
                        diagnosis=r1.diagnosis, recommendation=r1.recommendation, findings=[])
    c = compare_documents(multi, _doc(110.0, 0.0))
    assert c.delta["step_time_ms_median"] == pytest.approx(-10.0)
    assert any("slowest rank 1" in n for n in c.notes)


def test_built_traces_end_to_end(tmp_path: Path) -> None:
    a = starved_loop(TraceBuilder(device_names=("H100",)), steps=6, wait_us=30_000, compute_us=70_000)
    b = starved_loop(TraceBuilder(device_names=("H100",)), steps=6, wait_us=1_000, compute_us=70_000,
                     iterator="_MultiProcessingDataLoaderIter")
    c = compare_paths(a.write(tmp_path / "a.json"), b.write(tmp_path / "b.json"))
    assert c.delta["step_time_ms_median"] == pytest.approx(-29.0, abs=0.01)
    assert c.delta["exposed_data_wait_fraction"] < -0.25


@pytest.mark.parametrize(("before", "after"), PAIRS)
def test_shared_num_workers_pairs(before: str, after: str) -> None:
    if not (SHARED / "traces").is_dir():
        pytest.skip("../shared is not present")
    # GIVEN a ResNet50 run with num_workers=0 and the same with num_workers=4
    c = compare_paths(SHARED / "traces" / before, SHARED / "traces" / after)
    d = c.delta
    # THEN 4 workers remove nearly all of the ~20 % exposed wait and steps get 15-30 % faster
    assert rank_exposed(c.a) > 0.15 and rank_exposed(c.b) < 0.02
    assert d["exposed_data_wait_removed_fraction"] > 0.9
    assert -0.30 < d["step_time_change_fraction"] < -0.15
    assert d["gpu_busy_fraction"] > 0.05
    assert c.step_time_changed
    assert d["loader"]["iterator"] == {"a": "single_process", "b": "multi_process"}
    assert "faster" in c.verdict


def rank_exposed(doc: AnalysisDocument) -> float:
    assert isinstance(doc, Document)
    return float(doc.metrics.exposed_data_wait_fraction or 0.0)


def test_cli_json_and_html(tmp_path: Path) -> None:
    a = starved_loop(TraceBuilder(), steps=4).write(tmp_path / "a.json")
    b = starved_loop(TraceBuilder(), steps=4, wait_us=2_000).write(tmp_path / "b.json")
    out = subprocess.run([sys.executable, "-m", "tracelens", "compare", str(a), str(b), "--json",
                          "--html", str(tmp_path / "c.html")], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["delta"]["step_time_ms_median"] == pytest.approx(-28.0, abs=0.01)
    assert (tmp_path / "c.html").read_text().count("<svg") == 2


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tracelens", "compare", str(tmp_path / "nope.json"),
                          str(tmp_path / "nope2.json")], capture_output=True, text=True)
    assert out.returncode == 1 and "nope.json" in out.stderr and "Traceback" not in out.stderr


def test_page_uses_the_report_layout_and_chart_macros() -> None:
    c = compare_documents(_doc(176.0, 0.30, findings=[_finding("TL101", "high")]), _doc(127.0, 0.01))
    html = render_comparison_html(c)
    assert "Content-Security-Policy" in html and '<main class="page">' in html  # base.html.j2
    assert "svg.svg-chart" in html  # the shared tracelens.css, inline
    body = html.split("<body>", 1)[1]
    assert "http" not in body and " src=" not in body and "<link" not in body
    assert "tone-good" in html and "Mean step: exposed data wait and the rest" in html
    assert 'class="gone"' in html


def test_a_cpu_only_run_against_a_gpu_trace_is_flagged(tmp_path: Path) -> None:
    gpu = starved_loop(TraceBuilder(device_names=("NVIDIA H100",)), steps=4).write(tmp_path / "gpu.json")
    b = TraceBuilder()
    for i in range(4):  # the same loop on the CPU: no kernels, no copies
        b.step(i + 1, i * 100_000.0, 100_000)
        b.next_call(i * 100_000.0, 30_000)
    cpu = b.write(tmp_path / "cpu.json")
    c = compare_paths(cpu, gpu)
    assert any("A has no GPU activity and B has" in n for n in c.notes)
    assert "not like for like" in format_comparison(c)
    assert not compare_paths(gpu, gpu).notes
