"""The HTML report: renders for every trace at hand, stays inert with hostile names, offline, small."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from msgspec.structs import replace

from tests.builders import TraceBuilder, finding, make_document
from tests.conftest import REPO, SHARED_TRACES
from tracelens.api import analyze_files, analyze_path
from tracelens.columnset import StepTable
from tracelens.document.result import Result
from tracelens.document.schema import Finding, JobDocument
from tracelens.render.charts import histogram_spec, nice_axis
from tracelens.render.format import fmt_ms
from tracelens.render.html import render_page, templates_dir
from tracelens.render.redact import redact_view
from tracelens.render.report import build_view, render_report, write_report
from tracelens.render.telemetry import telemetry_view
from tracelens.render.wording import (
    current_settings,
    diff_after,
    recommendation_view,
    settings_diff,
    verdict_sentence,
)
from tracelens.runjson import RunInfo

HOSTILE = "</script><img src=x onerror=alert(1)>"
TAG = re.compile(r"<[a-zA-Z][^>]*>")
URL_ATTR = re.compile(r"""\s(?:src|href|xlink:href|action|poster|srcset|data)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]*)""", re.I)


def _gpu_trace(b: TraceBuilder, steps: int = 4, wait_us: float = 30_000, kernel: str = "gemm") -> TraceBuilder:
    for i in range(steps):
        t0 = i * 100_000
        b.step(i + 1, t0, 100_000).next_call(t0, wait_us)
        b.kernel(t0 + wait_us + 100, 60_000, name=kernel)
    return b


def _result(path: Path) -> Result:
    return analyze_path(path)


def _run(doc: dict[str, Any]) -> RunInfo:
    """A typed run.json from the keys given (schema_version 1)."""
    return msgspec.convert({"schema_version": 1, **doc}, RunInfo)


def _assert_offline(html: str) -> None:
    refs = [(m.group(0), next((g for g in m.groups() if g is not None), ""))
            for tag in TAG.findall(html) for m in URL_ATTR.finditer(tag)]
    refs += [(m.group(0), m.group(1)) for m in CSS_URL.finditer(html)]
    for whole, value in refs:
        value = value.strip()
        assert value == "" or value.startswith(("#", "data:")), f"external reference: {whole!r}"
    assert not re.search(r"https?://", html), "a URL in the page"
    assert "@import" not in html and "@font-face" not in html


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", html, re.I)


# ------------------------------------------------------------------ rendering


def test_gpu_trace_report_holds_every_section_in_order(tmp_path: Path) -> None:
    # GIVEN an input-bound GPU trace
    p = _gpu_trace(TraceBuilder(device_names=("H100",))).write(tmp_path / "t.json")
    # WHEN its report is rendered
    html = render_report(_result(p))
    # THEN the sections come in the order and the charts are inline SVG
    ids = ["verdict", "fix", "findings", "charts", "setup", "howto"]
    positions = [html.index(f'id="{i}"') for i in ids]
    assert positions == sorted(positions)
    assert html.count("<svg") >= 3
    assert "speed-up ceiling" in html and "1.43×" in html
    assert "loader = DataLoader(" in html
    _assert_offline(html)


@pytest.mark.parametrize("kind", ["cpu_only", "no_steps", "no_loader", "one_step"])
def test_report_renders_for_degenerate_traces(kind: str, tmp_path: Path) -> None:
    # GIVEN traces missing parts: no GPU, no ProfilerStep#, no DataLoader events, a single step
    b = TraceBuilder()
    if kind == "cpu_only":
        for i in range(3):
            b.step(i, i * 10_000, 10_000).next_call(i * 10_000, 4_000)
    elif kind == "no_steps":
        for i in range(3):
            b.next_call(i * 10_000, 4_000).op("aten::mm", i * 10_000 + 4_000, 5_000)
    elif kind == "no_loader":
        b.step(1, 0, 10_000).op("aten::mm", 0, 5_000)
    else:
        _gpu_trace(b, steps=1)
    p = b.write(tmp_path / "t.json")
    # WHEN rendered THEN it is a complete page that names the situation
    html = render_report(_result(p))
    assert html.rstrip().endswith("</html>")
    if kind == "no_loader":
        assert "cannot say" in html
    _assert_offline(html)


def test_multi_rank_report_marks_the_slowest_rank(tmp_path: Path) -> None:
    # GIVEN two ranks, rank 1 waiting three times longer
    d = tmp_path / "ranks"
    d.mkdir()
    _gpu_trace(TraceBuilder(rank=0), wait_us=10_000).write(d / "rank0.json")
    _gpu_trace(TraceBuilder(rank=1), wait_us=30_000).write(d / "rank1.json")
    # WHEN reported
    result = analyze_path(d, jobs=1)
    html = render_report(result)
    view = build_view(result)
    # THEN the per-rank table marks rank 1 and the verdict is about it
    assert view["focus_rank"] == 1
    assert [r["slowest"] for r in view["ranks"]] == [False, True]
    assert 'class="slowest"' in html and "◀ slowest" in html and 'id="ranks"' in html


def _sample_dirs() -> list[Path]:
    root = REPO / "sample_traces"
    found = [p for p in sorted(root.glob("*")) if p.is_dir() or p.name.endswith((".json", ".json.gz"))]
    return found


@pytest.mark.parametrize("path", _sample_dirs(), ids=lambda p: p.name)
def test_report_renders_for_every_sample_trace(path: Path) -> None:
    html = render_report(_result(path))
    assert "</html>" in html
    _assert_offline(html)


def _shared_files() -> list[Path]:
    if not SHARED_TRACES.is_dir():
        return []
    return sorted(p for p in SHARED_TRACES.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz")))


@pytest.mark.parametrize("path", _shared_files(), ids=lambda p: str(p.relative_to(SHARED_TRACES)))
def test_report_renders_for_every_shared_trace(path: Path) -> None:
    from tracelens.errors import BadInputError

    try:
        result = _result(path)
    except BadInputError:
        pytest.skip("not a trace tracelens reads")
    html = render_report(result)
    assert "</html>" in html and len(html) < 3_000_000
    _assert_offline(html)


def test_sample_run_directory_report_charts_worker_telemetry() -> None:
    # GIVEN a run directory recorded by tracelens profile, with its run.json telemetry
    d = REPO / "sample_traces" / "latency_bound_reads"
    if not (d / "run.json").is_file():
        pytest.skip("sample run directory not present")
    from tracelens.runjson import read_run_info

    r = analyze_files([d / "trace.json.gz"], run=read_run_info(d / "run.json"))
    # WHEN rendered THEN CPU and run-queue charts and the per-process table appear
    html = render_report(Result(str(d), (r,), r.document))
    assert 'id="telemetry"' in html and "CPU used per process" in html and "worker 0" in html


# ------------------------------------------------------------------ safety


def test_direction_overrides_and_zero_width_characters_are_shown(tmp_path: Path) -> None:
    # GIVEN a trace whose file name and kernel names hide characters (a right-to-left override
    # makes "gnp.exe" read as "exe.png"; a zero-width space splits a word invisibly)
    path = _gpu_trace(TraceBuilder(), kernel="ge\u200bmm").write(tmp_path / "report\u202egnp.json")
    html = render_report(_result(path))
    # THEN the page shows their escapes instead of obeying them
    assert "\u202e" not in html and "\u200b" not in html
    assert "report\\u202egnp.json" in html


def test_hostile_names_stay_inert(tmp_path: Path) -> None:
    # GIVEN a trace whose kernel and DataLoader iterator names and file name carry markup
    b = _gpu_trace(TraceBuilder(device_names=(HOSTILE,)), kernel=HOSTILE)
    b.next_call(50_000, 1_000, iterator=HOSTILE)
    p = b.write(tmp_path / "<img src=x onerror=alert(1)>.json")
    result = _result(p)
    # ... and a finding whose title, advice and evidence carry it too
    doc = result.ranks[0].document
    evil = finding("TL999", "high", kind=HOSTILE, confidence=0.5, title=HOSTILE,
                   evidence={HOSTILE: HOSTILE, "n": [HOSTILE]}, advice=HOSTILE)
    doc = replace(doc, findings=[msgspec.convert(evil, Finding)],
                  recommendation=replace(doc.recommendation, notes=[HOSTILE]))
    rank = dataclasses.replace(result.ranks[0], document=doc)
    result = Result(result.path, (rank,), doc)
    # WHEN rendered
    html = render_report(result)
    # THEN no markup from the trace survives: only the page's own two script tags, no <img>
    assert "<img" not in html.lower()
    assert "onerror=alert(1)>" not in html
    assert _scripts(html) == ['<script type="application/json" id="tracelens-data">', "<script>"]
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    # AND the JSON block holds the name escaped for a script context, and parses back
    block = html.split('id="tracelens-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block
    assert json.loads(block)["findings"][0]["title"] == HOSTILE


def test_csp_allows_only_the_page_script_by_hash(tmp_path: Path) -> None:
    import base64
    import hashlib

    html = render_report(_result(_gpu_trace(TraceBuilder()).write(tmp_path / "t.json")))
    import html as html_mod

    csp = html_mod.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))  # type: ignore[union-attr]
    script = html.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp


def test_redact_hides_paths_file_names_and_host(tmp_path: Path) -> None:
    # GIVEN a trace in a directory whose name could identify someone
    d = tmp_path / "alice-secret-project"
    d.mkdir()
    p = _gpu_trace(TraceBuilder()).write(d / "gpu-host-17_4242.pt.trace.json")
    result = _result(p)
    # WHEN rendered with redact
    html = render_report(result, redact=True)
    # THEN neither the path, the directory nor the file name appear
    for s in ("alice-secret-project", "gpu-host-17_4242", str(tmp_path)):
        assert s not in html
    assert "[redacted]" in html
    assert "alice-secret-project" in render_report(result)


def test_redact_view_scrubs_absolute_paths_and_given_strings() -> None:
    view = {"a": "read /home/bob/data/x.bin fast", "b": ["on host node-17"], "n": 3}
    out = redact_view(view, ["node-17"])
    assert out == {"a": "read [redacted] fast", "b": ["on host [redacted]"], "n": 3}


def test_no_environment_values_reach_the_report(tmp_path: Path) -> None:
    # GIVEN a trace carrying environment metadata with a token (as some real traces do)
    b = _gpu_trace(TraceBuilder())
    b.extra["metadata"] = {"env": {"HF_TOKEN": "hf_SECRETVALUE123", "OMP_NUM_THREADS": "4"}}
    html = render_report(_result(b.write(tmp_path / "t.json")))
    assert "hf_SECRETVALUE123" not in html and "HF_TOKEN" not in html


# ------------------------------------------------------------------ size budget


def test_long_runs_are_downsampled_and_the_page_says_so(tmp_path: Path) -> None:
    # GIVEN an analysis with 200,000 steps and as many __next__ waits (a very long trace)
    result = _result(_gpu_trace(TraceBuilder()).write(tmp_path / "t.json"))
    a = result.ranks[0].analysis
    n = 200_000
    rng = np.random.default_rng(0)
    per_step = StepTable({
        "step": np.arange(n), "start_ms": np.arange(n) * 100.0, "duration_ms": np.full(n, 100.0),
        "data_wait_ms": rng.uniform(0, 30, n), "gpu_busy_ms": np.full(n, 60.0), "exposed_wait_ms": rng.uniform(0, 20, n),
        "next_calls": np.ones(n, dtype=np.int64), "next_longest_ms": rng.uniform(0, 30, n)})
    big = dataclasses.replace(a, per_step=per_step, next_wait_ms=tuple(rng.exponential(5, n).tolist()))
    rank = dataclasses.replace(result.ranks[0], analysis=big)
    # WHEN rendered
    html = render_report(Result(result.path, (rank,), result.document))
    # THEN the page stays far under the 3 MB budget and says the bars are means
    assert len(html.encode()) < 1_000_000
    assert "200,000 steps are drawn as" in html


# ------------------------------------------------------------------ pieces


def test_templates_are_found_and_shipped_in_the_wheel() -> None:
    assert (templates_dir() / "report.html.j2").is_file()
    text = (REPO / "pyproject.toml").read_text()
    assert '"templates" = "tracelens/templates"' in text


def test_render_page_serves_other_pages_with_the_shared_layout(tmp_path: Path) -> None:
    # GIVEN a page template that extends the base layout and uses a chart macro
    html = render_page("report.html.j2", view=build_view(_result(_gpu_trace(TraceBuilder()).write(tmp_path / "t.json"))), data={})
    assert "Content-Security-Policy" in html and "<style>" in html


def test_settings_diff_marks_changes_and_unknowns() -> None:
    cur = {"num_workers": 0, "pin_memory": None, "persistent_workers": False, "prefetch_factor": None}
    rec = {"num_workers": 4, "pin_memory": True, "persistent_workers": False, "prefetch_factor": 2}
    lines = [(d["op"], d["text"].strip()) for d in settings_diff(cur, rec, ["batch_size=64"])]
    assert ("-", "num_workers=0,") in lines and ("+", "num_workers=4,") in lines
    assert ("+", "pin_memory=True,  # current value not recorded in the trace") in lines
    assert (" ", "persistent_workers=False,") in lines and (" ", "batch_size=64,") in lines


def test_settings_diff_keeps_unshown_values_and_adds_thread_advice() -> None:
    # GIVEN a recommendation whose num_workers is only a lower bound, with thread advice
    cur = {"num_workers": None, "pin_memory": None, "persistent_workers": None, "prefetch_factor": None}
    rec = {"num_workers": 1, "pin_memory": True, "persistent_workers": False, "prefetch_factor": None}
    lines = settings_diff(cur, rec, keep=["num_workers"], threads_per_worker=1, threads_main=2)
    pairs = [(d["op"], d["text"].strip()) for d in lines]
    # THEN the bound is not shown as a value; an unknown setting at PyTorch's default is no change
    assert (" ", "# num_workers: keep your current value") in pairs
    assert not any("num_workers=1" in t or "persistent_workers" in t for _, t in pairs)
    assert pairs[0] == ("+", "torch.set_num_threads(2)  # main process")
    assert ("+", "worker_init_fn=set_worker_threads,") in pairs
    assert ("+", "torch.set_num_threads(1)") in pairs  # inside the module-level function (picklable for spawn)
    # AND the code to copy has no comment lines left
    code = diff_after(lines)
    assert "#" not in code and "keep" not in code and code.startswith("torch.set_num_threads(2)")


def test_recommendation_view_words_keep_env_and_expected_gain() -> None:
    doc = make_document(
        diagnosis="oversubscription",
        loader={"num_workers": 8, "pin_memory": False, "persistent_workers": False, "prefetch_factor": 2},
        copies={"h2d_pinned": 0, "h2d_pageable": 0},
        recommendation={"num_workers": 1, "pin_memory": False, "persistent_workers": False,
                        "prefetch_factor": 2, "expected_speedup": 2.5, "torch_threads_per_worker": 1,
                        "torch_threads_main": 1, "keep_current": [], "notes": [],
                        "env": {"OMP_NUM_THREADS": "1", "BAD;rm -rf": "x", "MKL_NUM_THREADS": "$(x)"}},
    )
    view = recommendation_view(doc)
    assert view["changed"] and view["expected"] == "2.50×" and view["env"] == ["OMP_NUM_THREADS=1"]
    assert recommendation_view(replace(doc, diagnosis="healthy"))["expected"] is None


def test_current_pin_memory_is_inferred_from_pinned_copies() -> None:
    doc = make_document(copies={"h2d_pinned": 5, "h2d_pageable": 0})
    assert current_settings(doc)["pin_memory"] is True
    doc = make_document(copies={"h2d_pinned": 5, "h2d_pageable": 1})
    assert current_settings(doc)["pin_memory"] is None


@pytest.mark.parametrize(("diagnosis", "needle"), [
    ("healthy", "keeps up"), ("input_bound", "up to 1.25× faster"), ("cpu_starvation", "CPU-starved"),
    ("io_bound", "I/O-bound"), ("oversubscription", "Oversubscribed"), ("undetermined", "cannot say"),
])
def test_verdict_is_one_sentence_with_the_ceiling(diagnosis: str, needle: str) -> None:
    doc = make_document(diagnosis=diagnosis, metrics={
        "exposed_data_wait_fraction": 0.2, "speedup_ceiling": 1.25, "gpu_busy_fraction": 0.5, "next_calls": 3})
    s = verdict_sentence(doc)
    assert needle in s and s.endswith(".") and s.count(". ") == 0


def test_nice_axis_covers_the_maximum_with_round_ticks() -> None:
    ax = nice_axis(211.7, unit="ms")
    assert ax["max"] >= 211.7 and [t["v"] for t in ax["ticks"]][:3] == [0, 50, 100]
    assert all(float(t["v"]).is_integer() for t in nice_axis(3, integer=True)["ticks"])


def test_histogram_uses_log_bins_when_waits_span_decades() -> None:
    spec = histogram_spec("w", [0.1, 0.2, 50.0, 60.0])
    assert spec is not None and spec["log"] and sum(b["count"] for b in spec["bins"]) == 4
    assert histogram_spec("w", []) is None


def test_histogram_of_alike_waits_starts_near_the_shortest() -> None:
    spec = histogram_spec("w", [0.061, 0.07, 0.071, 0.073])
    assert spec is not None and not spec["log"] and 0 < spec["bins"][0]["lo"] <= 0.061
    assert spec["bins"][-1]["hi"] >= 0.073 and sum(b["count"] for b in spec["bins"]) == 4


def test_telemetry_aggregates_many_workers_and_tolerates_missing_fields() -> None:
    # GIVEN run.json telemetry of a main process and 12 workers, without run-queue delay
    t = [i * 100_000.0 for i in range(20)]
    procs = [{"pid": 1, "role": "main", "worker_id": None,
              "samples": {"t_us": t, "cpu_user_s": [i * 0.05 for i in range(20)], "cpu_system_s": [0.0] * 20}}]
    procs += [{"pid": 10 + w, "role": "worker", "worker_id": w,
               "samples": {"t_us": t, "cpu_ns": [i * 90_000_000 for i in range(20)], "read_bytes": [i * 1_000_000 for i in range(20)]}}
              for w in range(12)]
    run = _run({"telemetry": {"interval_ms": 100, "start_us": 0.0, "processes": procs},
                "window": {"start_us": 200_000.0, "end_us": 1_500_000.0}})
    # WHEN turned into the view
    tv = telemetry_view(run)
    # THEN workers are drawn as sum and mean, and the missing run-queue delay is said
    assert tv is not None and tv["aggregated"]
    cpu = tv["charts"][0]
    assert [s["label"] for s in cpu["series"]] == ["main process", "12 workers (sum)", "workers (mean)"]
    assert cpu["series"][1]["points"][3][1] == pytest.approx(10.8)
    assert any("run-queue" in m for m in tv["missing"])
    assert telemetry_view(None) is None and telemetry_view(_run({"telemetry": None})) is None


def test_telemetry_lists_the_main_process_then_workers_by_id() -> None:
    t = [i * 100_000.0 for i in range(5)]
    procs = [{"pid": 10 + w, "role": "worker", "worker_id": w, "samples": {"t_us": t, "cpu_ns": [i * 100_000_000 for i in range(5)]}}
             for w in (3, 10, 0, 2)]
    procs.append({"pid": 1, "role": "main", "worker_id": None, "samples": {"t_us": t, "cpu_ns": [0] * 5}})
    tv = telemetry_view(_run({"telemetry": {"start_us": 0.0, "processes": procs}}))
    assert tv is not None
    assert [r["label"] for r in tv["processes"]] == ["main process", "worker 0", "worker 2", "worker 3", "worker 10"]


def test_write_report_replaces_the_file_atomically(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    result = _result(_gpu_trace(TraceBuilder()).write(tmp_path / "t.json"))
    write_report(result, out)
    write_report(result, out)
    assert out.read_text().startswith("<!doctype html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_notes_repeating_a_finding_are_cut_to_a_first_sentence_with_a_link() -> None:
    from tracelens.render.report import _short_notes

    advice = "Set num_workers=2 (capped: 5). Each batch takes 44 ms."
    notes = _short_notes([advice, "prefetch_factor=2: fine."], [{"id": "TL104", "advice": advice}])
    assert notes == [{"text": "Set num_workers=2 (capped: 5).", "see": "TL104"},
                     {"text": "prefetch_factor=2: fine.", "see": ""}]


def test_a_4096_rank_report_stays_small_and_shows_the_spread_the_heat_map_and_the_straggler(tmp_path: Path) -> None:
    # GIVEN the documents of 4,096 ranks (as a cluster returns them: no full analyses)
    from tests.builders import synthetic_job

    doc = synthetic_job(tmp_path, 4096)
    result = Result("job/", (), doc)
    # WHEN rendered
    html = render_report(result)
    view = build_view(result)
    # THEN the page stays under 5 MB, lists only the ranks waiting most, and shows the spread,
    # the rank x step heat map (at most 64 x 64 cells) and the straggler first
    assert len(html.encode()) < 5_000_000
    assert len(view["ranks"]) == 64 and view["rank_count"] == 4096
    assert any("64 of 4,096 ranks" in n for n in view["notices"])
    assert view["across"]["heatmap"] is not None and len(view["across"]["heatmap"]["rows"]) <= 64
    assert view["findings"][0]["kind"] == "rank_straggler" and "Rank 7" in view["findings"][0]["title"]
    assert html.count("<rect class=\"c-exposed\"") + html.count("<rect class=\"hm-empty\"") >= 64 * 40


def test_redaction_keeps_every_word_of_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an oversubscribed run whose identifiers are parts of the verdict's words: the command
    # kind "script", a user "subscri" and a host "oversub"
    import getpass
    import socket

    from tracelens.api import analyze_path
    from tracelens.render.report import build_view

    monkeypatch.setattr(getpass, "getuser", lambda: "subscri")
    monkeypatch.setattr(socket, "gethostname", lambda: "oversub")
    result = analyze_path(REPO / "sample_traces" / "oversubscribed")
    plain, redacted = build_view(result), build_view(result, redact=True)
    # THEN every word of the verdict survives redaction, the diagnosis word whole
    assert redacted["verdict"] == plain["verdict"]
    assert "oversubscription" in redacted["verdict"]["diagnosis"]
    assert "[redacted]" not in redacted["verdict"]["sentence"]
    # and the script's name is still hidden wherever it stands as a name
    assert "oversubscribed.py" not in json.dumps(redacted)


def test_redact_text_hides_whole_tokens_only() -> None:
    from tracelens.render.redact import redact_text

    text = "OVERSUBSCRIPTION: script.py on node-17 (node-170 is another), a script; user bob, bobcat"
    out = redact_text(text, ["script", "script.py", "node-17", "bob"])
    assert out == ("OVERSUBSCRIPTION: [redacted] on [redacted] (node-170 is another), a [redacted]; "
                   "user [redacted], bobcat")


def test_multi_rank_report_puts_the_ranks_right_after_the_verdict() -> None:
    # GIVEN the two-rank job whose rank 1 holds rank 0 at the collectives
    result = analyze_path(REPO / "sample_traces" / "ddp_torchrun")
    page = render_report(result)
    # THEN the ranks come after the verdict and before the numbers, the change and the findings
    order = [page.index(f'id="{s}"') for s in ("verdict", "ranks", "breakdown", "fix", "findings")]
    assert order == sorted(order)
    ranks = page[page.index('id="ranks"'):page.index('id="breakdown"')]
    # with the straggler said, the heat map, and each rank's collective wait drawn beside its data wait
    assert 'class="straggler"' in ranks and "Exposed data wait by rank and step" in ranks
    assert isinstance(result.document, JobDocument)
    for r in result.document.ranks:
        coll = fmt_ms(r.metrics.collective_ms_per_step)
        assert f"rank {r.rank}: {coll} per step inside collectives" in ranks


def test_evidence_reads_with_units_and_meaningful_precision() -> None:
    from tracelens.render.report import _evidence_item

    assert _evidence_item("expected_speedup", 4.356)["value"] == "4.36×"
    assert _evidence_item("workers_needed", 11.6912)["value"] == "11.7"
    assert _evidence_item("loading_cpu", 0.93091)["value"] == "0.931"
    assert _evidence_item("exposed_wait_fraction", 0.93091)["value"] == "93.1 %"
