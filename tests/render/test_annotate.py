"""``tracelens annotate``: the user's own trace, every event kept, with tracelens's tracks added
(data wait per step, exposed and hidden; the verdict; the findings) in a format Perfetto and
chrome://tracing read."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens.api import analyze_path, annotate_path
from tracelens.document.schema import Document

#: Event phases of the Trace Event Format that tracelens writes.
WRITTEN_PHASES = {"X", "M"}


def _gpu_trace(tmp_path: Path) -> Path:
    b = starved_loop(TraceBuilder(device_names=("NVIDIA H100",)), steps=6)
    b.kernel(20_000, 5_000)  # GPU work under the first wait: part of it is hidden
    return b.write(tmp_path / "train.pt.trace.json")


def _load(path: Path) -> Any:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return json.load(f)


def _added(events: list[dict[str, Any]], n_original: int) -> tuple[int, list[dict[str, Any]]]:
    added = events[n_original:]
    pid = next(e["pid"] for e in added if e["name"] == "process_name" and e["args"]["name"] == "tracelens")
    assert all(e["pid"] == pid for e in added)
    return pid, added


def _tracks(added: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    names = {e["tid"]: e["args"]["name"] for e in added if e["name"] == "thread_name"}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in added:
        if e["ph"] == "X":
            out[names[e["tid"]]].append(e)
    return out


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_annotated_trace_holds_every_original_event_plus_the_tracks(tmp_path: Path, suffix: str) -> None:
    # GIVEN a GPU trace that waits for data every step
    src = _gpu_trace(tmp_path)
    original = json.loads(src.read_text())
    out = tmp_path / f"out{suffix}"
    # WHEN annotated
    result = annotate_path(src, out)
    doc = _load(out)
    # THEN every original event is there, unchanged and in order, and so is every other key
    n = len(original["traceEvents"])
    assert doc["traceEvents"][:n] == original["traceEvents"]
    assert {k: v for k, v in doc.items() if k != "traceEvents"} == {k: v for k, v in original.items() if k != "traceEvents"}
    # AND the tracelens process holds the step, exposed, hidden, verdict and finding tracks
    pid, added = _added(doc["traceEvents"], n)
    assert pid not in {e["pid"] for e in original["traceEvents"]}
    tracks = _tracks(added)
    assert {"steps (data wait per step)", "data wait, exposed (GPU idle)", "data wait, hidden (GPU busy)",
            "verdict"} <= set(tracks)
    steps = {e["name"]: e for e in original["traceEvents"] if e["name"].startswith("ProfilerStep#")}
    assert [e["ts"] for e in tracks["steps (data wait per step)"]] == [s["ts"] for s in steps.values()]
    per_step = result.ranks[0].analysis.per_step
    exposed_ms = sum(e["dur"] for e in tracks["data wait, exposed (GPU idle)"]) / 1000
    hidden_ms = sum(e["dur"] for e in tracks["data wait, hidden (GPU busy)"]) / 1000
    assert exposed_ms == pytest.approx(per_step["exposed_wait_ms"].sum(), abs=1e-3)
    assert hidden_ms == pytest.approx((per_step["data_wait_ms"] - per_step["exposed_wait_ms"]).sum(), abs=1e-3)
    assert hidden_ms > 0
    verdict = tracks["verdict"][0]
    assert verdict["name"] == result.document.diagnosis.replace("_", " ").upper()
    assert "removing that wait would make steps" in verdict["args"]["verdict"]
    assert result.document.findings
    for f in result.document.findings:
        slices = [e for t, es in tracks.items() if t.startswith(f"finding {f.id}") for e in es]
        assert slices and slices[0]["args"]["advice"] == f.advice


def test_annotated_trace_is_valid_trace_event_format(tmp_path: Path) -> None:
    # Perfetto's JSON importer and chrome://tracing need: known phases, numeric times, integer
    # ids, named tracks, and slices on one thread that nest (never partly overlap)
    src = _gpu_trace(tmp_path)
    out = annotate_path(src, tmp_path / "out.json") and tmp_path / "out.json"
    doc = _load(out)
    n = len(json.loads(src.read_text())["traceEvents"])
    _, added = _added(doc["traceEvents"], n)
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in added:
        assert e["ph"] in WRITTEN_PHASES and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert isinstance(e["name"], str) and e["name"]
        if e["ph"] == "M":
            assert e["name"] in {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}
            assert isinstance(e["args"], dict)
            continue
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        json.dumps(e["args"], allow_nan=False)  # args are plain JSON
        by_thread[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        stack: list[float] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1] + 1e-6, "slices on one track must nest"
            stack.append(end)
    # and it is still a trace tracelens reads, with the same numbers as the original
    again = analyze_path(out).document
    first = analyze_path(src).document
    assert isinstance(again, Document) and isinstance(first, Document)
    assert again.metrics.exposed_data_wait_fraction == pytest.approx(first.metrics.exposed_data_wait_fraction)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracelens", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_annotate_command_writes_the_default_file_and_never_overwrites(tmp_path: Path) -> None:
    src = _gpu_trace(tmp_path)
    r = _cli("annotate", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "train.tracelens.json.gz"
    assert out.is_file() and str(out.name) in r.stdout
    r = _cli("annotate", str(src), cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr


def test_annotate_refuses_a_job_of_several_ranks_in_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for rank in (0, 1):
        b = starved_loop(TraceBuilder(rank=rank), steps=3)
        b.write(job / f"rank{rank}.pt.trace.json")
    r = _cli("annotate", str(job), "-o", str(tmp_path / "x.json"), cwd=tmp_path)
    assert r.returncode == 1 and "ranks" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
