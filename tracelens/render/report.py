"""The shareable HTML report: a JSON-ready view model, then jinja2 templates.

:func:`build_view` turns a :class:`tracelens.document.result.Result` into plain data (numbers in data
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
from msgspec.structs import replace

from tracelens._version import __version__
from tracelens.analysis import TraceAnalysis
from tracelens.columnset import StepTable
from tracelens.document.distribution import WaitMatrix, exposed_wait_matrix, rank_distribution
from tracelens.document.jsondoc import Rows
from tracelens.document.result import RankResult, Result
from tracelens.document.schema import Document, Finding, JobDocument, StepRow
from tracelens.render.breakdown import breakdown_view
from tracelens.render.charts import heatmap_spec, histogram_spec, stacked_bars_spec, timeline_spec
from tracelens.render.format import fmt_ms, fmt_value, rounded, visible_all
from tracelens.render.html import render_page
from tracelens.render.redact import redact_view, sensitive_strings
from tracelens.render.telemetry import MAX_LINE_POINTS, bucket_mean, telemetry_view
from tracelens.render.wording import (
    TONES,
    busy_machine_line,
    recommendation_view,
    user_code_edit,
    verdict_sentence,
)
from tracelens.runjson import RunInfo
from tracelens.system.atomic import write_atomic
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


def steps_chart(df: StepTable | None) -> tuple[dict[str, Any] | None, str | None]:
    """Per-step stacked bars from the per-step table, means of consecutive steps when long."""
    if df is None or len(df) == 0:
        return None, None
    dur = np.asarray(df["duration_ms"], dtype=float)
    wait = np.asarray(df["data_wait_ms"], dtype=float)
    exp = np.asarray(df["exposed_wait_ms"], dtype=float)
    gpu = np.asarray(df["gpu_busy_ms"], dtype=float)
    calls = np.asarray(df["next_calls"], dtype=float)
    longest = np.asarray(df["next_longest_ms"], dtype=float)
    steps = np.asarray(df["step"])
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
    title = f"Inside step {tl.step}, the middle step by length ({fmt_ms(tl.duration_ms)}): its intervals"
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


def _finding_view(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": f.kind,
        "severity": f.severity,
        "confidence": pct(float(f.confidence), 0),
        "title": f.title,
        "advice": f.advice,
        "evidence": [_evidence_item(str(k), v) for k, v in f.evidence.items()],
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
    if number and key.endswith(("speedup", "ceiling")):
        return {"key": key.replace("_", " "), "value": f"{float(value):.2f}×"}
    if isinstance(value, float) and ("cores" in key or "workers" in key):
        return {"key": key.replace("_", " "), "value": f"{value:,.1f}"}
    if isinstance(value, float) and abs(value) < 1e4:
        return {"key": key.replace("_", " "), "value": f"{value:.3g}"}  # the JSON keeps full precision
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


def _supply_rows(run: RunInfo) -> list[tuple[str, Any]]:
    """The CPU supply over the window: what other processes took from the cores (run.json)."""
    s = run.telemetry.supply if run.telemetry is not None else None
    if s is None:
        return []
    rows: list[tuple[str, Any]] = []
    for label, v in (("cores used by other processes (window mean)", s.other_cpu_cores),
                     ("cores left to the job (window mean)", s.cores_left),
                     ("cores used by the job (window mean)", s.job_cpu_cores)):
        if v is not None:
            rows.append((label, f"{v:.2f}"))
    if s.top_other_processes:
        rows.append(("busiest other processes", "; ".join(f"{o.name} (pid {o.pid}) {o.cores:.2f} cores"
                                                          for o in s.top_other_processes)))
    if s.cgroup_throttled_fraction:
        rows.append(("cgroup quota throttling", pct(s.cgroup_throttled_fraction)))
    if s.pressure_fraction is not None:
        rows.append(("CPU pressure (PSI some)", pct(s.pressure_fraction)))
    return rows


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
    rows += _supply_rows(run)
    if run.host:
        rows.append(("host", run.host))
    if run.command.argv:
        rows.append(("command", " ".join(run.command.argv)))
    return rows


def _facts(doc: Document, run: RunInfo | None) -> dict[str, list[dict[str, str]]]:
    loader = doc.loader
    lrows: list[tuple[str, Any]] = [("iterator", loader.iterator)]
    lrows += [(k.replace("_", " "), getattr(loader, k)) for k in SETTING_KEYS]
    ml = run.main_loader if run is not None else None
    if ml is not None:
        dataset = ml.dataset_class.rsplit(".", 1)[-1] or None
        if dataset is not None and ml.dataset_len is not None:
            dataset += f" ({ml.dataset_len:,} samples, {ml.dataset_kind}-style)"
        lrows += [("batch size", ml.batch_size), ("multiprocessing context", ml.multiprocessing_context),
                  ("drop last", ml.drop_last), ("worker_init_fn", "yours" if ml.has_worker_init_fn else "none"),
                  ("collate_fn", "yours" if ml.has_collate_fn else "default"), ("sampler", ml.sampler_class),
                  ("dataset", dataset), ("batches per epoch", ml.batches_per_epoch)]
    if loader.iterator_names:
        lrows.append(("iterator events", ", ".join(loader.iterator_names)))
    mrows = _machine_rows(run) if run is not None else []
    m, trace, copies = doc.metrics, doc.trace, doc.copies
    trows: list[tuple[str, Any]] = [
        ("file", doc.source.path), ("format", doc.source.format),
        ("events", trace.events),
        ("steps (ProfilerStep#)", doc.steps), ("steps measured", m.measured_steps),
    ]
    if doc.fallback:
        trows.append(("step fallback", doc.fallback))
    trows += [("devices", ", ".join(doc.source.devices) or "none"),
              ("GPU activity", trace.has_gpu_activity),
              ("Python stacks recorded", trace.with_stack),
              ("truncated", trace.truncated),
              ("malformed events skipped", trace.skipped_events)]
    if copies.h2d_pageable or copies.h2d_pinned or copies.h2d_other:
        trows.append(("host→device copies", f"{copies.h2d_pageable:,} pageable, "
                      f"{copies.h2d_pinned:,} pinned, {copies.h2d_other:,} unknown"))
        if copies.h2d_pageable:
            trows.append(("pageable copy time per step", fmt_ms(copies.h2d_pageable_ms_per_step)))
    if m.sync_ms_per_step is not None:
        trows.append(("device syncs per step", fmt_ms(m.sync_ms_per_step)))

    def fmt(rows: list[tuple[str, Any]]) -> list[dict[str, str]]:
        return [{"key": k, "value": fmt_value(v) if v is not None else "unknown"} for k, v in rows]

    return {"loader": fmt(lrows), "machine": fmt(mrows), "trace": fmt(trows)}


def _metric_tiles(doc: Document) -> list[dict[str, str]]:
    m = doc.metrics
    c = m.speedup_ceiling
    tiles = [
        {"label": "speed-up ceiling", "value": f"{c:.2f}×" if c else "n/a",
         "hint": "if the exposed data wait were gone"},
        {"label": "exposed data wait", "value": pct(m.exposed_data_wait_fraction),
         "hint": "of step time, GPU idle while waiting" if m.gpu_busy_fraction is not None
         else "of step time (no GPU activity in the trace)"},
        {"label": "data wait", "value": pct(m.data_wait_fraction), "hint": "of step time, in __next__"},
        {"label": "GPU busy", "value": pct(m.gpu_busy_fraction), "hint": "of step time"}
        if m.gpu_busy_fraction is not None else
        {"label": "GPU busy", "value": "no GPU", "hint": "no GPU activity in the trace"},
        {"label": "step time", "value": fmt_ms(m.step_time_ms_median), "hint": "median"},
        {"label": "steps", "value": f"{m.measured_steps or 0:,}",
         "hint": "measured" + (" (fallback)" if doc.fallback else "")},
    ]
    return tiles


#: Rank rows the report lists at most (the ranks waiting most when there are more).
MAX_RANK_ROWS = 64


def _rank_rows(docs: list[Document], slowest: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """The per-rank table (at most MAX_RANK_ROWS, the ranks waiting most), and a notice when cut."""
    def exposed(d: Document) -> float:
        return float(d.metrics.exposed_data_wait_fraction or 0.0)

    shown = sorted(docs, key=exposed, reverse=True)[:MAX_RANK_ROWS] if len(docs) > MAX_RANK_ROWS else docs
    rows: list[dict[str, Any]] = []
    for d in shown:
        m = d.metrics
        e = m.exposed_data_wait_fraction
        waits = d.waits_for_rank
        rows.append({
            "rank": d.rank, "steps": d.steps,
            "step_ms": fmt_ms(m.step_time_ms_median), "data_wait": pct(m.data_wait_fraction),
            "exposed": pct(e), "exposed_fraction": rounded(e or 0.0), "gpu_busy": pct(m.gpu_busy_fraction),
            "exposed_ms_value": m.exposed_wait_ms_per_step() or 0.0, "exposed_ms": fmt_ms(m.exposed_wait_ms_per_step() or 0.0),
            "collective_ms_value": m.collective_ms_per_step or 0.0, "collective": fmt_ms(m.collective_ms_per_step or 0.0),
            "ceiling": f"{m.speedup_ceiling:.2f}×" if m.speedup_ceiling else "n/a",
            "diagnosis": f"waits for rank {waits}" if waits is not None else d.diagnosis,
            "slowest": d.rank == slowest,
        })
    # both bars on one scale (ms per step), so a straggler's wait and the others' collective wait compare
    top = max((max(row["exposed_ms_value"], row["collective_ms_value"]) for row in rows), default=0.0) or 1.0
    for row in rows:
        row["bar_pct"] = rounded(100 * row.pop("exposed_ms_value") / top, 1)
        row["coll_bar_pct"] = rounded(100 * row.pop("collective_ms_value") / top, 1)
    notice = (f"The rank table lists the {len(shown)} of {len(docs):,} ranks that wait most for data; "
              "every rank is in `analyze --json`.") if len(shown) < len(docs) else None
    return rows, notice


def _straggler_view(job: JobDocument) -> dict[str, str] | None:
    """The job's rank_straggler finding (title, first sentence of advice), None without one."""
    f = next((f for f in job.findings if f.kind == "rank_straggler"), None)
    if f is None:
        return None
    advice = f.advice or ""
    return {"title": f.title, "advice": advice.split(". ")[0].rstrip(".") + "." if advice else ""}


def _span(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}–{b}"


def heatmap_view(m: WaitMatrix) -> dict[str, Any] | None:
    """The rank × step matrix as a heat map spec (a row per bucket of ranks, a column per bucket of steps)."""
    tips = [[f"ranks {_span(*rb)}, steps {_span(*sb)}: " + (
        f"exposed wait {fmt_ms(mean)} per step on average, {fmt_ms(peak)} at most; rank {worst} waits most"
        if mean is not None else "no steps") for sb, mean, peak in zip(m.step_buckets, means, peaks)]
        for rb, means, peaks, worst in zip(m.rank_buckets, m.mean_ms, m.max_ms, m.worst_rank)]
    per_row = m.rank_buckets[0][1] - m.rank_buckets[0][0] + 1 if m.rank_buckets else 1
    note = (f"Each row is {per_row} ranks and each column a run of steps, shaded by the rank that waits most in "
            "it (a single straggler stays visible); hover a cell for the mean.") if per_row > 1 else ""
    return heatmap_spec("Exposed data wait by rank and step", [_span(*rb) for rb in m.rank_buckets],
                        [_span(*sb) for sb in m.step_buckets], m.max_ms, tips,
                        row_title="rank", col_title="step", note=note)


def _spread_view(docs: list[Document]) -> dict[str, Any]:
    """Data wait across the ranks: median, p90 and max, and the heat map of exposed wait."""
    dist = rank_distribution(docs)
    spread = [{"label": label, "median": pct(sp.median), "p90": pct(sp.p90), "max": pct(sp.max)}
              for label, sp in (("data wait", dist.data_wait), ("exposed data wait", dist.exposed_wait))]
    return {"spread": spread, "ranks": dist.ranks, "heatmap": heatmap_view(exposed_wait_matrix(docs))}


def _focus(result: Result) -> tuple[Document, RankResult | None]:
    """The document the report is about (the slowest rank's, with the job's recommendation and
    findings for several ranks) and its full analysis when it came back (not from a cluster)."""
    job = result.document
    full = result.slowest if result.ranks else None
    if not isinstance(job, JobDocument):
        return job, full
    return replace(job.slowest(), recommendation=job.recommendation, findings=job.findings), full


def _per_step_frame(doc: Document) -> StepTable:
    """The per-step table of a document (a rank whose analysis stayed where it ran); a field
    a row leaves null is NaN."""
    rows = doc.per_step
    if isinstance(rows, Rows):
        return StepTable(rows.columns)
    fields = StepRow.__struct_fields__
    return StepTable({k: np.array([_nan_if_none(getattr(r, k)) for r in rows], dtype=float) for k in fields})


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _charts(doc: Document, full: RankResult | None, notices: list[str]) -> tuple[dict[str, Any], list[float]]:
    """Steps, timeline and wait histogram of the focus rank: from its analysis, else its document."""
    per_step = full.analysis.per_step if full is not None else _per_step_frame(doc)
    steps, step_notice = steps_chart(per_step)
    if step_notice:
        notices.append(step_notice)
    timeline = timeline_chart(full.analysis) if full is not None else None
    if timeline is not None and timeline["note"]:
        notices.append("Timeline: " + timeline["note"])
    waits = list(full.analysis.next_wait_ms) if full is not None else [float(w) for w in doc.next_wait_ms]
    hist = histogram_spec("How long each __next__ call waited", waits, what="calls") if len(waits) > 1 else None
    return {"steps": steps, "timeline": timeline, "waits": hist}, waits


def build_view(result: Result, *, redact: bool = False) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (no HTML, nothing escaped yet)."""
    doc, full = _focus(result)
    run = full.run if full is not None else None
    notices: list[str] = []
    charts, waits = _charts(doc, full, notices)
    telemetry = telemetry_view(run)
    if telemetry is not None and telemetry["reduced"]:
        notices.append(f"Telemetry lines show at most {MAX_LINE_POINTS} points each (means of neighbouring samples).")
    ml = run.main_loader if run is not None else None
    context = [f"batch_size={ml.batch_size!r}"] if ml is not None and ml.batch_size is not None else []
    # by severity, keeping the document's order within one (the main cause, the job's finding first)
    findings = sorted((_finding_view(f) for f in doc.findings), key=lambda f: -severity_rank(f["severity"]))
    edit = user_code_edit(doc, run.command.cwd if run is not None else None)
    recommendation = recommendation_view(doc, context, edit)
    recommendation["notes"] = _short_notes(recommendation["notes"], findings)
    job = result.document if isinstance(result.document, JobDocument) else None
    source_path = result.document.source.path or result.path
    name = Path(source_path).name or source_path
    multi = job is not None
    rank_docs = list(job.ranks) if job is not None else []
    rows, rows_notice = _rank_rows(rank_docs, job.slowest_rank) if job is not None else ([], None)
    if rows_notice:
        notices.append(rows_notice)
    view: dict[str, Any] = {
        "tool": {"name": "tracelens", "version": __version__},
        "title": f"tracelens report: {name}",
        "source": {"path": source_path, "name": name},
        "redacted": redact,
        "multi_rank": multi,
        "rank_count": len(rank_docs),
        "ranks": rows,
        "across": _spread_view(rank_docs) if multi else None,
        "straggler": _straggler_view(job) if job is not None else None,
        "failed_ranks": [{"rank": f.rank, "error": f.error}
                         for f in (job.failed_ranks if job is not None else [])][:MAX_RANK_ROWS],
        "focus_rank": doc.rank if multi else None,
        "verdict": {"diagnosis": doc.diagnosis, "sentence": verdict_sentence(doc),
                    "tone": TONES.get(doc.diagnosis, "bad"),
                    "ceiling": doc.metrics.speedup_ceiling},
        "metrics": _metric_tiles(doc),
        "breakdown": breakdown_view(doc),
        "busy_machine": busy_machine_line(doc),
        "recommendation": recommendation,
        "findings": findings,
        "charts": charts,
        "wait_stats": wait_stats(waits, doc.metrics.measured_steps),
        "telemetry": telemetry,
        "facts": _facts(doc, run),
        "warnings": list(doc.warnings),
        "notices": notices,
    }
    if full is None and multi:
        notices.append("The ranks were analyzed where they are stored: the per-step timeline and telemetry of "
                       "the slowest rank stayed there (its steps, waits and findings are shown).")
    if redact:
        view = redact_view(view, sensitive_strings(result))
        view["title"] = "tracelens report"
        view["notices"].append("Redacted for sharing: file paths, file and directory names, the host and user names, "
                               "the command line and the names of other processes are hidden.")
    return dict(visible_all(view))


def render_report(result: Result, *, redact: bool = False) -> str:
    """The self-contained HTML report of ``result``."""
    view = build_view(result, redact=redact)
    data = {k: view[k] for k in ("tool", "verdict", "recommendation", "findings", "ranks", "redacted")}
    return render_page("report.html.j2", view=view, data=data)


def write_report(result: Result, path: str | Path, *, redact: bool = False) -> None:
    """Write the report to ``path`` atomically (a reader never sees half a file)."""
    write_atomic(path, render_report(result, redact=redact))
