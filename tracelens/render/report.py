"""The shareable HTML report: a JSON-ready view model, then jinja2 templates.

:func:`build_view` turns a :class:`tracelens.results.Result` into plain data (numbers in data
units, sentences already worded, nothing HTML); :func:`render_report` feeds it to
``templates/report.html.j2``. Size budget: every series is bounded (per-step bars, histogram
bins, timeline intervals and telemetry points), so the page does not grow with the trace; the
page says what was reduced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tracelens._version import __version__
from tracelens.analysis import TraceAnalysis
from tracelens.render.charts import histogram_spec, stacked_bars_spec, timeline_spec
from tracelens.render.format import fmt_ms, fmt_value, rounded, visible_all
from tracelens.render.html import render_page, write_atomic
from tracelens.render.redact import redact_view, sensitive_strings
from tracelens.render.telemetry import MAX_LINE_POINTS, bucket_mean, telemetry_view
from tracelens.render.wording import TONES, recommendation_view, verdict_sentence
from tracelens.results import Result
from tracelens.runjson import RunInfo
from tracelens.vocab import SETTING_KEYS, pct, severity_rank

MAX_STEP_BARS = 400  # per-step bars drawn; longer runs are shown as means of consecutive steps


STEP_SERIES_GPU: tuple[dict[str, str], ...] = (
    {"key": "exposed", "label": "exposed data wait (GPU idle)", "cls": "c-exposed"},
    {"key": "hidden", "label": "data wait hidden by GPU work", "cls": "c-hidden"},
    {"key": "compute", "label": "GPU busy", "cls": "c-gpu"},
    {"key": "other", "label": "other (GPU idle, not waiting for data)", "cls": "c-other"},
)
STEP_SERIES_CPU: tuple[dict[str, str], ...] = (
    {"key": "exposed", "label": "data wait (no GPU activity in the trace)", "cls": "c-exposed"},
    {"key": "other", "label": "rest of the step (host work)", "cls": "c-other"},
)


def steps_chart(analysis: TraceAnalysis) -> tuple[dict[str, Any] | None, str | None]:
    """Per-step stacked bars from ``analysis.per_step``, means of consecutive steps when long."""
    df = analysis.per_step
    if df is None or len(df) == 0:
        return None, None
    dur = df["duration_ms"].to_numpy(float)
    wait = df["data_wait_ms"].to_numpy(float)
    exp = df["exposed_wait_ms"].to_numpy(float)
    gpu = df["gpu_busy_ms"].to_numpy(float)
    calls = df["next_calls"].to_numpy(float)
    longest = df["next_longest_ms"].to_numpy(float)
    steps = df["step"].to_numpy()
    has_gpu = bool(np.isfinite(gpu).any())
    hidden = np.maximum(wait - exp, 0.0)
    if has_gpu:
        compute = np.maximum(np.nan_to_num(gpu) - hidden, 0.0)
        other = np.maximum(dur - exp - hidden - compute, 0.0)
        parts = {"exposed": exp, "hidden": hidden, "compute": compute, "other": other}
        series = STEP_SERIES_GPU
    else:
        parts = {"exposed": wait, "other": np.maximum(dur - wait, 0.0)}
        series = STEP_SERIES_CPU
    n = dur.size
    k = max(1, math.ceil(n / MAX_STEP_BARS))
    notice = None
    if k > 1:
        parts = {key: bucket_mean(v, k) for key, v in parts.items()}
        dur, calls, longest = bucket_mean(dur, k), bucket_mean(calls, k), longest
        notice = (f"{n:,} steps are drawn as {dur.size:,} bars, each the mean of {k} consecutive steps "
                  f"(to keep the report small).")
    bars = []
    for i in range(dur.size):
        if k > 1:
            a, b = int(steps[i * k]), int(steps[min(n, (i + 1) * k) - 1])
            head = f"steps {a}–{b} (mean of {min(n, (i + 1) * k) - i * k}): {fmt_ms(dur[i])}"
            label = str(a)
        else:
            head = f"step {int(steps[i])}: {fmt_ms(dur[i])}"
            label = str(int(steps[i]))
        lines = [head]
        for s in series:
            v = float(parts[s["key"]][i])
            share = v / dur[i] if dur[i] > 0 else 0.0
            lines.append(f"{s['label']}: {fmt_ms(v)} ({pct(share)})")
        if k == 1:
            lines.append(f"__next__ calls: {int(calls[i])}, longest {fmt_ms(float(longest[i]))}")
        bars.append({"label": label, "values": [rounded(parts[s["key"]][i]) for s in series],
                     "tip": "\n".join(lines)})
    title = "Where each step's time goes"
    return stacked_bars_spec(title, series, bars, x_label="step", note=notice or ""), notice


def timeline_chart(analysis: TraceAnalysis) -> dict[str, Any] | None:
    """The representative step: __next__ waits, GPU activity, and the exposed part."""
    tl = analysis.timeline
    if tl is None:
        return None
    waits = [[rounded(a), rounded(b)] for a, b in tl.data_wait]
    busy = [[rounded(a), rounded(b)] for a, b in tl.gpu_busy]
    lanes = [{"label": "DataLoader __next__ (data wait)", "cls": "c-wait", "intervals": waits}]
    if analysis.has_gpu_activity:
        lanes.append({"label": "GPU activity (kernels, copies)", "cls": "c-gpu", "intervals": busy})
        lanes.append({"label": "exposed wait (GPU idle while waiting)", "cls": "c-exposed",
                      "intervals": [[rounded(a), rounded(b)] for a, b in tl.exposed]})
    note = ""
    if tl.downsampled:
        note = f"Gaps shorter than {fmt_ms(tl.merge_gap_ms)} were closed to keep the chart small."
    title = f"Inside one typical step: step {tl.step} (median duration, {fmt_ms(tl.duration_ms)})"
    return timeline_spec(title, tl.duration_ms, lanes, note=note)


def wait_stats(values: Sequence[float], steps: int) -> list[dict[str, str]]:
    """Summary numbers of the __next__ waits."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    q = np.percentile(v, [50, 90, 99])
    out = [("calls", f"{v.size:,}"), ("median", fmt_ms(float(q[0]))), ("p90", fmt_ms(float(q[1]))),
           ("p99", fmt_ms(float(q[2]))), ("longest", fmt_ms(float(v.max()))),
           ("total", fmt_ms(float(v.sum())))]
    if steps:
        out.append(("per step", fmt_ms(float(v.sum()) / steps)))
    return [{"label": a, "value": b} for a, b in out]


def _finding_view(d: dict[str, Any]) -> dict[str, Any]:
    conf = d.get("confidence")
    evidence = d.get("evidence") or {}
    return {
        "id": str(d.get("id", "")),
        "kind": str(d.get("kind", "")),
        "severity": str(d.get("severity", "info")),
        "confidence": pct(float(conf), 0) if isinstance(conf, (int, float)) else "n/a",
        "title": str(d.get("title", "")),
        "advice": str(d.get("advice", "") or ""),
        "evidence": [_evidence_item(str(k), v) for k, v in evidence.items()],
    }


def _evidence_item(key: str, value: Any) -> dict[str, str]:
    """One evidence entry, its unit moved from the key's suffix into the value."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and key.endswith("_fraction"):
        return {"key": key[: -len("_fraction")].replace("_", " "), "value": pct(float(value))}
    if number and key.endswith("_ms"):
        return {"key": key[:-3].replace("_", " "), "value": fmt_ms(float(value))}
    if number and key.endswith("_ms_per_step"):
        return {"key": key[: -len("_ms_per_step")].replace("_", " ") + " per step", "value": fmt_ms(float(value))}
    if number and key.endswith("_bytes"):
        return {"key": key[: -len("_bytes")].replace("_", " "), "value": f"{float(value) / 1e6:,.1f} MB"}
    return {"key": key.replace("_", " "), "value": fmt_value(value)}


def _short_notes(notes: Sequence[str], findings: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Notes as ``{text, see}``: one repeating a finding's advice is cut to its first sentence."""
    out = []
    for n in notes:
        f = next((f for f in findings if f["advice"] and f["advice"] in n), None)
        if f is None:
            out.append({"text": n, "see": ""})
            continue
        first = re.split(r"(?<=[.!?])\s+", n.strip(), maxsplit=1)[0]
        out.append({"text": first, "see": f["id"]})
    return out


MACHINE_ROWS = (("logical_cores", "logical cores"), ("physical_cores", "physical cores"),
                ("affinity_cores", "cores in affinity mask"), ("cgroup_cpu_quota_cores", "cgroup CPU quota (cores)"),
                ("usable_cores", "cores usable by the run"), ("torch_threads_main", "torch threads (main)"),
                ("torch_interop_threads_main", "torch inter-op threads (main)"),
                ("local_world_size", "local world size"), ("world_size", "world size"),
                ("torch_version", "torch"), ("torch_cuda_version", "CUDA (torch build)"),
                ("python_version", "Python"), ("memory_total_bytes", "memory"))


def _machine_rows(run: RunInfo) -> list[tuple[str, Any]]:
    mach = run.machine
    rows: list[tuple[str, Any]] = []
    for k, label in MACHINE_ROWS:
        v = getattr(mach, k)
        if v is None:
            continue
        rows.append((label, f"{v / 2**30:.1f} GiB" if k == "memory_total_bytes" else v))
    # the allow-listed thread variables only; never the environment
    rows += [(k, mach.thread_env[k]) for k in sorted(mach.thread_env)
             if re.fullmatch(r"[A-Z_]*(THREADS|THREAD_LIMIT)[A-Z_]*", k)]
    if mach.gpus:
        rows.append(("GPUs", ", ".join(str(g.name or "?") for g in mach.gpus)))
    if run.host:
        rows.append(("host", run.host))
    if run.command.argv:
        rows.append(("command", " ".join(run.command.argv)))
    return rows


def _facts(doc: dict[str, Any], run: RunInfo | None) -> dict[str, list[dict[str, str]]]:
    loader = doc["loader"]
    lrows: list[tuple[str, Any]] = [("iterator", loader.get("iterator"))]
    lrows += [(k.replace("_", " "), loader.get(k)) for k in SETTING_KEYS]
    ml = run.main_loader if run is not None else None
    if ml is not None:
        dataset = ml.dataset_class.rsplit(".", 1)[-1] or None
        if dataset is not None and ml.dataset_len is not None:
            dataset += f" ({ml.dataset_len:,} samples, {ml.dataset_kind}-style)"
        lrows += [("batch size", ml.batch_size), ("multiprocessing context", ml.multiprocessing_context),
                  ("drop last", ml.drop_last), ("worker_init_fn", "yours" if ml.has_worker_init_fn else "none"),
                  ("collate_fn", "yours" if ml.has_collate_fn else "default"), ("sampler", ml.sampler_class),
                  ("dataset", dataset), ("batches per epoch", ml.batches_per_epoch)]
    names = loader.get("iterator_names") or []
    if names:
        lrows.append(("iterator events", ", ".join(names)))
    mrows = _machine_rows(run) if run is not None else []
    m = doc["metrics"]
    trows: list[tuple[str, Any]] = [
        ("file", doc["source"]["path"]), ("format", doc["source"].get("format")),
        ("events", doc["trace"]["events"]),
        ("steps (ProfilerStep#)", doc.get("steps")), ("steps measured", m.get("measured_steps")),
    ]
    if doc.get("fallback"):
        trows.append(("step fallback", doc["fallback"]))
    trows += [("devices", ", ".join(doc["source"].get("devices") or []) or "none"),
              ("GPU activity", doc["trace"]["has_gpu_activity"]),
              ("Python stacks recorded", doc["trace"]["with_stack"]),
              ("truncated", doc["trace"]["truncated"]),
              ("malformed events skipped", doc["trace"]["skipped_events"])]
    copies = doc.get("copies") or {}
    if copies.get("h2d_pageable") or copies.get("h2d_pinned") or copies.get("h2d_other"):
        trows.append(("host→device copies", f"{copies.get('h2d_pageable', 0):,} pageable, "
                      f"{copies.get('h2d_pinned', 0):,} pinned, {copies.get('h2d_other', 0):,} unknown"))
        if copies.get("h2d_pageable"):
            trows.append(("pageable copy time per step", fmt_ms(copies.get("h2d_pageable_ms_per_step"))))
    if m.get("sync_ms_per_step") is not None:
        trows.append(("device syncs per step", fmt_ms(m["sync_ms_per_step"])))

    def fmt(rows: list[tuple[str, Any]]) -> list[dict[str, str]]:
        return [{"key": k, "value": fmt_value(v) if v is not None else "unknown"} for k, v in rows]

    return {"loader": fmt(lrows), "machine": fmt(mrows), "trace": fmt(trows)}


def _metric_tiles(doc: dict[str, Any]) -> list[dict[str, str]]:
    m = doc["metrics"]
    c = m.get("speedup_ceiling")
    tiles = [
        {"label": "speed-up ceiling", "value": f"{c:.2f}×" if c else "n/a",
         "hint": "if the exposed data wait were gone"},
        {"label": "exposed data wait", "value": pct(m.get("exposed_data_wait_fraction")),
         "hint": "of step time, GPU idle while waiting" if m.get("gpu_busy_fraction") is not None
         else "of step time (no GPU activity in the trace)"},
        {"label": "data wait", "value": pct(m.get("data_wait_fraction")), "hint": "of step time, in __next__"},
        {"label": "GPU busy", "value": pct(m.get("gpu_busy_fraction")), "hint": "of step time"}
        if m.get("gpu_busy_fraction") is not None else
        {"label": "GPU busy", "value": "no GPU", "hint": "no GPU activity in the trace"},
        {"label": "step time", "value": fmt_ms(m.get("step_time_ms_median")), "hint": "median"},
        {"label": "steps", "value": f"{m.get('measured_steps') or 0:,}",
         "hint": "measured" + (" (fallback)" if doc.get("fallback") else "")},
    ]
    return tiles


def _rank_rows(result: Result) -> list[dict[str, Any]]:
    slowest = result.document.get("slowest_rank")
    rows: list[dict[str, Any]] = []
    for r in result.ranks:
        d = r.document
        m = d["metrics"]
        e = m.get("exposed_data_wait_fraction")
        rows.append({
            "rank": d.get("rank", r.rank), "steps": d.get("steps"),
            "step_ms": fmt_ms(m.get("step_time_ms_median")), "data_wait": pct(m.get("data_wait_fraction")),
            "exposed": pct(e), "exposed_fraction": rounded(e or 0.0), "gpu_busy": pct(m.get("gpu_busy_fraction")),
            "ceiling": f"{m['speedup_ceiling']:.2f}×" if m.get("speedup_ceiling") else "n/a",
            "diagnosis": d.get("diagnosis"), "slowest": d.get("rank", r.rank) == slowest,
        })
    top = max((row["exposed_fraction"] for row in rows), default=0.0) or 1.0
    for row in rows:
        row["bar_pct"] = rounded(100 * row["exposed_fraction"] / top, 1)
    return rows


def build_view(result: Result, *, redact: bool = False) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (no HTML, nothing escaped yet)."""
    focus = result.slowest
    doc = focus.document
    analysis = focus.analysis
    run = focus.run
    notices: list[str] = []
    steps, step_notice = steps_chart(analysis)
    if step_notice:
        notices.append(step_notice)
    timeline = timeline_chart(analysis)
    if timeline is not None and timeline["note"]:
        notices.append("Timeline: " + timeline["note"])
    waits = list(analysis.next_wait_ms)
    hist = histogram_spec("How long each __next__ call waited", waits, what="calls") if len(waits) > 1 else None
    telemetry = telemetry_view(focus.run)
    if telemetry is not None and telemetry["reduced"]:
        notices.append(f"Telemetry lines show at most {MAX_LINE_POINTS} points each (means of neighbouring samples).")
    ml = run.main_loader if run is not None else None
    context = [f"batch_size={ml.batch_size!r}"] if ml is not None and ml.batch_size is not None else []
    findings = sorted((_finding_view(f) for f in doc.get("findings", [])),
                      key=lambda f: (-severity_rank(f["severity"]), f["id"]))
    recommendation = recommendation_view(doc, context)
    recommendation["notes"] = _short_notes(recommendation["notes"], findings)
    source_path = str(result.document.get("source", {}).get("path") or result.path)
    name = Path(source_path).name or source_path
    view: dict[str, Any] = {
        "tool": {"name": "tracelens", "version": __version__},
        "title": f"tracelens report: {name}",
        "source": {"path": source_path, "name": name},
        "redacted": redact,
        "multi_rank": result.is_multi_rank,
        "ranks": _rank_rows(result) if result.is_multi_rank else [],
        "focus_rank": doc.get("rank") if result.is_multi_rank else None,
        "verdict": {"diagnosis": doc["diagnosis"], "sentence": verdict_sentence(doc),
                    "tone": TONES.get(doc["diagnosis"], "bad"),
                    "ceiling": doc["metrics"].get("speedup_ceiling")},
        "metrics": _metric_tiles(doc),
        "recommendation": recommendation,
        "findings": findings,
        "charts": {"steps": steps, "timeline": timeline, "waits": hist},
        "wait_stats": wait_stats(waits, int(doc["metrics"].get("measured_steps") or 0)),
        "telemetry": telemetry,
        "facts": _facts(doc, run),
        "warnings": [str(w) for w in doc.get("warnings", [])],
        "notices": notices,
    }
    if redact:
        view = redact_view(view, sensitive_strings(result))
        view["title"] = "tracelens report"
        view["notices"].append("Redacted for sharing: file paths, file names, the host name and the command line are hidden.")
    return dict(visible_all(view))


def render_report(result: Result, *, redact: bool = False) -> str:
    """The self-contained HTML report of ``result``."""
    view = build_view(result, redact=redact)
    data = {k: view[k] for k in ("tool", "verdict", "recommendation", "findings", "ranks", "redacted")}
    return render_page("report.html.j2", view=view, data=data)


def write_report(result: Result, path: str | Path, *, redact: bool = False) -> None:
    """Write the report to ``path`` atomically (a reader never sees half a file)."""
    write_atomic(path, render_report(result, redact=redact))
