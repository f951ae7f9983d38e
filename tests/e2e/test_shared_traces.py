"""End-to-end over the real traces in ../shared/traces, against an independent stdlib reference.

The reference re-implements SPEC §2 with ``json.load`` and plain Python lists, sharing no code
with tracelens, so agreement checks the loader, the model and the interval algebra together.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.builders import plain
from tests.conftest import SHARED_TRACES
from tracelens.api import analyze_path

pytestmark = pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="../shared/traces is not present")

ALL = sorted(str(p.relative_to(SHARED_TRACES)) for p in SHARED_TRACES.rglob("*.json*")) if SHARED_TRACES.is_dir() else []
GPU_CATS = {"kernel", "gpu_memcpy", "memcpy", "gpu_memset", "memset"}
DATA = re.compile(r"^enumerate\(DataLoader\)#.*\.__next__$|^enumerate\(DataPipe\)#")


def _merge(iv: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(x for x in iv if x[1] > x[0]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _length(a: list[tuple[float, float]]) -> float:
    return sum(e - s for s, e in a)


@cache
def reference(rel: str) -> dict[str, Any]:
    raw = (SHARED_TRACES / rel).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    doc = json.loads(raw)
    events = doc if isinstance(doc, list) else doc["traceEvents"]
    xs = [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "ts" in e]
    steps = [(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in xs
             if str(e.get("name", "")).startswith("ProfilerStep#") and str(e.get("cat", "")).lower() != "gpu_user_annotation"]
    waits = [(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in xs if DATA.match(str(e.get("name", "")))]
    gpu = [(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in xs if str(e.get("cat", "")).lower() in GPU_CATS]
    step_set = _merge(steps)
    total = sum(e - s for s, e in steps)
    wait = _intersect(_merge(waits), step_set)
    busy = _intersect(_merge(gpu), step_set)
    exposed = _length(wait) - _length(_intersect(wait, busy))
    durs = sorted(e - s for s, e in steps)
    return {
        "steps": len(steps),
        "data_wait_fraction": _length(wait) / total if total else None,
        "gpu_busy_fraction": (_length(busy) / total if total else None) if gpu else None,
        "exposed_data_wait_fraction": exposed / total if total else None,
        "median_ms": (durs[(len(durs) - 1) // 2] + durs[len(durs) // 2]) / 2 / 1000 if durs else None,
    }


@pytest.mark.parametrize("rel", ALL)
def test_every_shared_trace_matches_the_reference(rel: str) -> None:
    ref = reference(rel)
    doc = plain(analyze_path(SHARED_TRACES / rel).document)
    assert doc["steps"] == ref["steps"]
    if ref["steps"] == 0:
        return
    m = doc["metrics"]
    for key in ("data_wait_fraction", "exposed_data_wait_fraction"):
        assert m[key] == pytest.approx(ref[key], abs=0.005), key
    if ref["gpu_busy_fraction"] is None:
        assert m["gpu_busy_fraction"] is None
    else:
        assert m["gpu_busy_fraction"] == pytest.approx(ref["gpu_busy_fraction"], abs=0.005)
    assert m["step_time_ms_median"] == pytest.approx(ref["median_ms"], rel=1e-4)


REQUIRED = {"schema_version", "source", "steps", "metrics", "loader", "diagnosis", "recommendation", "findings"}


def test_json_output_has_every_spec_key() -> None:
    rel = "kineto/plugin/samples/resnet50_num_workers_0/worker0.pt.trace.json.gz"
    out = subprocess.run([sys.executable, "-m", "tracelens", "analyze", "--json", str(SHARED_TRACES / rel)],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert set(doc) >= REQUIRED
    assert set(doc["source"]) >= {"path", "format", "ranks", "devices"}
    assert set(doc["metrics"]) >= {"step_time_ms_median", "data_wait_fraction", "exposed_data_wait_fraction", "gpu_busy_fraction"}
    assert set(doc["loader"]) >= {"iterator", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor"}
    assert set(doc["recommendation"]) >= {"num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "notes"}
    assert doc["loader"]["iterator"] == "single_process" and doc["loader"]["num_workers"] == 0
    assert doc["steps"] == 6
    # Hand-checked from the catalog: 6 steps averaging 213.8 ms, __next__ 52.2 ms each.
    assert doc["metrics"]["data_wait_fraction"] == pytest.approx(313.37 / (6 * 213.78), abs=0.005)


def test_eight_dlrm_ranks_give_eight_analyses_and_the_slowest() -> None:
    d = SHARED_TRACES / "param/train/compute/python/test/data/dlrm_kineto"
    doc = plain(analyze_path(d).document)
    assert [r["rank"] for r in doc["ranks"]] == list(range(8))
    exposed = {r["rank"]: r["metrics"]["exposed_data_wait_fraction"] for r in doc["ranks"]}
    assert doc["slowest_rank"] == max(exposed, key=lambda k: exposed[k])
    for r in doc["ranks"]:
        ref = reference(str(Path(r["source"]["path"]).relative_to(SHARED_TRACES)))
        assert r["metrics"]["exposed_data_wait_fraction"] == pytest.approx(ref["exposed_data_wait_fraction"], abs=0.005)


def test_trace_without_profiler_steps_uses_the_next_fallback() -> None:
    rel = "kineto/tb_plugin/samples/resnet50_autograd_api_num_workers_0/worker0.pt.trace.json.gz"
    doc = plain(analyze_path(SHARED_TRACES / rel).document)
    assert doc["steps"] == 0 and doc["step_source"] == "dataloader_next"
    assert doc["metrics"]["measured_steps"] == 6 and doc["fallback"]


def test_real_trace_cut_at_60_percent_still_gives_its_steps(tmp_path: Path) -> None:
    rel = "kineto/plugin/samples/resnet50_num_workers_0/worker0.pt.trace.json.gz"
    raw = gzip.decompress((SHARED_TRACES / rel).read_bytes())
    cut = tmp_path / "cut.json"
    cut.write_bytes(raw[: int(len(raw) * 0.6)])
    doc = plain(analyze_path(cut).document)
    assert doc["trace"]["truncated"]
    assert 1 <= doc["steps"] <= 6
    assert any("truncated" in w for w in doc["warnings"])
    gz = tmp_path / "cut.json.gz"
    gz.write_bytes(gzip.compress(raw)[: int(len(gzip.compress(raw)) * 0.6)])
    assert analyze_path(gz).document.steps >= 1
