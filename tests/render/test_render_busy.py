"""The busy machine in every output (issue 19): a run.json whose CPU supply shows other
processes on the cores gives a busy_machine finding that the JSON document, the terminal summary
and the HTML report show, with the other processes' names escaped and hidden by ``--redact``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.builders import single_of
from tests.conftest import REPO
from tracelens.api import analyze_path
from tracelens.render.report import render_report
from tracelens.render.terminal import format_summary

SAMPLE = REPO / "sample_traces" / "latency_bound_reads"
HOSTILE = "<b>x\x1b[31m"  # markup and a terminal escape in a process name


def _loaded_run(tmp_path: Path, other: float) -> Path:
    """The latency-bound sample run directory, with a CPU supply in which other processes
    (one of them with a hostile name) used ``other`` of its cores."""
    if not (SAMPLE / "run.json").is_file():
        pytest.skip("sample run directory not present")
    d = tmp_path / "run"
    shutil.copytree(SAMPLE, d)
    run: dict[str, Any] = json.loads((d / "run.json").read_text())
    usable = float(run["machine"].get("usable_cores") or 2.0)
    run["telemetry"]["supply"] = {
        "job_root_pid": 1000, "job_processes": 3, "cpus": int(usable), "usable_cores": usable, "wall_s": 2.0,
        "busy_cores": min(usable, other + 0.4), "job_cpu_cores": 0.4, "other_cpu_cores": other,
        "cores_left": max(0.0, usable - other), "pressure_fraction": 0.5,
        "top_other_processes": [{"pid": 4242, "name": "hogworker", "cores": other / 2},
                                {"pid": 4243, "name": HOSTILE, "cores": other / 2}],
    }
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_a_loaded_run_names_the_busy_machine_in_json_terminal_and_html(tmp_path: Path) -> None:
    result = analyze_path(_loaded_run(tmp_path, 1.5))
    doc = single_of(result.document)
    # THEN the JSON has the supply and the finding with its evidence
    data = json.loads(msgspec.json.encode(doc))
    assert data["cpu_supply"]["other_cpu_cores"] == pytest.approx(1.5)
    assert data["cpu_supply"]["top_other_processes"][0]["name"] == "hogworker"
    busy = next(f for f in data["findings"] if f["kind"] == "busy_machine")
    assert busy["evidence"]["other_cpu_cores"] == pytest.approx(1.5)
    assert {o["name"] for o in busy["evidence"]["top_other_processes"]} == {"hogworker", HOSTILE}
    assert doc.diagnosis == "io_bound"
    # AND the terminal names it, says the numbers are inflated, and shows no raw escape
    text = format_summary(doc)
    assert "Busy machine: processes outside this job used 1.50" in text and "inflated" in text
    assert "\x1b" not in text and "hogworker (pid 4242)" in text
    # AND the report shows it with the name inert
    html = render_report(result)
    assert "Busy machine:" in html and "hogworker" in html and "cores used by other processes" in html
    assert "<b>x" not in html and "\x1b" not in html


def test_redact_hides_the_other_processes_names(tmp_path: Path) -> None:
    result = analyze_path(_loaded_run(tmp_path, 1.5))
    html = render_report(result, redact=True)
    assert "hogworker" not in html and "Busy machine:" in html and "names of other processes" in html


def test_a_quiet_supply_names_no_busy_machine(tmp_path: Path) -> None:
    doc = single_of(analyze_path(_loaded_run(tmp_path, 0.1)).document)
    assert doc.cpu_supply is not None and doc.cpu_supply.other_cpu_cores == pytest.approx(0.1)
    assert not any(f.kind == "busy_machine" for f in doc.findings)
    assert "Busy machine" not in format_summary(doc)
