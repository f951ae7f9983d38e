"""Rendering of a comparison: the terminal table and the one-file HTML page."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tracelens.document.compare import NEGLIGIBLE_WAIT_FRACTION, Comparison, rank_document
from tracelens.render.charts import line_chart_spec, stacked_bars_spec
from tracelens.render.format import fmt_ms
from tracelens.render.html import render_page, write_atomic


def _fmt(key: str, x: Any) -> str:
    if x is None:
        return "n/a"
    if key.endswith("_fraction"):
        return f"{100 * float(x):.1f} %"
    if key.endswith("_ms_median") or key.endswith("_ms_per_step"):
        return f"{float(x):,.1f} ms"
    return str(x)


def _fmt_delta(key: str, x: Any) -> str:
    if x is None:
        return "n/a"
    if key.endswith("_fraction"):
        return f"{100 * float(x):+.1f} pts"
    return f"{float(x):+,.1f} ms"


ROW_LABELS = (
    ("step_time_ms_median", "step time (median)"),
    ("data_wait_fraction", "data wait"),
    ("exposed_data_wait_fraction", "exposed data wait"),
    ("exposed_data_wait_ms_per_step", "exposed wait per step"),
    ("gpu_busy_fraction", "GPU busy"),
)


def comparison_rows(c: Comparison) -> list[dict[str, str]]:
    """The metric table as display strings: label, A, B, B − A."""
    a, b = rank_document(c.a), rank_document(c.b)
    rows = []
    for key, label in ROW_LABELS:
        if key == "exposed_data_wait_ms_per_step":
            va, vb = a.metrics.exposed_wait_ms_per_step(), b.metrics.exposed_wait_ms_per_step()
        else:
            va, vb = getattr(a.metrics, key), getattr(b.metrics, key)
        rows.append({"label": label, "a": _fmt(key, va), "b": _fmt(key, vb), "delta": _fmt_delta(key, c.delta.get(key))})
    rows.append({"label": "diagnosis", "a": a.diagnosis, "b": b.diagnosis, "delta": ""})
    for k, (x, y) in c.loader_changes.items():
        rows.append({"label": k, "a": "unknown" if x is None else str(x),
                     "b": "unknown" if y is None else str(y), "delta": ""})
    return rows


def format_comparison(c: Comparison) -> str:
    """The terminal table: paths, metrics A / B / delta, findings, verdict."""
    a, b = rank_document(c.a), rank_document(c.b)
    lines = [f"A: {a.source.path}", f"B: {b.source.path}", ""]
    rows = comparison_rows(c)
    w = max(len(r["label"]) for r in rows)
    wa = max(12, *(len(r["a"]) for r in rows))
    wb = max(12, *(len(r["b"]) for r in rows))
    lines.append(f"  {'':<{w}}  {'A':>{wa}}  {'B':>{wb}}  {'B − A':>12}")
    for r in rows:
        lines.append(f"  {r['label']:<{w}}  {r['a']:>{wa}}  {r['b']:>{wb}}  {r['delta']:>12}")
    if c.findings:
        lines.append("")
        lines.append("  findings:")
        for f in c.findings:
            sev = f.severity_b or f.severity_a
            if f.status == "changed":
                sev = f"{f.severity_a} → {f.severity_b}"
            lines.append(f"    {f.status:<9} {f.id:<8} [{sev}] {f.title}")
    for n in c.notes:
        lines.append(f"  note: {n}")
    lines.append("")
    lines.append(c.verdict)
    return "\n".join(lines)


def step_charts(c: Comparison) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Chart specs (tracelens.report's builders): per-step durations of A and B with their
    medians, and the mean step of each split into exposed data wait and the rest."""
    a, b = rank_document(c.a), rank_document(c.b)
    series: list[dict[str, Any]] = []
    for name, doc, cls in (("A (before)", a, "c-s1"), ("B (after)", b, "c-s0")):
        steps = doc.step_durations()
        if steps:
            series.append({"label": f"{name}: step duration", "cls": cls,
                           "points": [[i, round(d, 4)] for i, d in enumerate(steps)]})
            med = doc.metrics.step_time_ms_median
            if med is not None:
                series.append({"label": f"{name}: median {fmt_ms(med)}", "cls": cls, "thin": True,
                               "points": [[0, med], [max(len(steps) - 1, 1), med]]})
    lines = line_chart_spec("Step durations", series, x_unit="step", y_unit="ms", markers=True,
                            note="Thin lines: each run's median.") if series else None
    bars = []
    for name, doc in (("A (before)", a), ("B (after)", b)):
        step, wait = doc.metrics.mean_step_ms(), doc.metrics.exposed_wait_ms_per_step()
        if step is None:
            continue
        wait = min(wait or 0.0, step)
        bars.append({"label": name, "values": [round(wait, 4), round(step - wait, 4)],
                     "tip": f"{name}: mean step {fmt_ms(step)}, of which exposed data wait {fmt_ms(wait)}"})
    split = stacked_bars_spec(
        "Mean step: exposed data wait and the rest",
        [{"key": "wait", "label": "exposed data wait", "cls": "c-exposed"},
         {"key": "rest", "label": "the rest of the step", "cls": "c-other"}],
        bars, y_unit="ms") if len(bars) == 2 else None
    return lines, split


def verdict_tone(c: Comparison) -> str:
    """``good`` when B is faster or waits less, ``bad`` when it is slower, else ``neutral``."""
    step = c.delta.get("step_time_change_fraction")
    wait = c.delta.get("exposed_data_wait_fraction")
    if c.step_time_changed and step is not None:
        return "good" if step < 0 else "bad"
    if wait is not None and abs(wait) >= NEGLIGIBLE_WAIT_FRACTION:
        return "good" if wait < 0 else "bad"
    return "neutral"


def render_comparison_html(c: Comparison) -> str:
    """The one-file HTML page for a comparison (the report's base layout and chart macros)."""
    a, b = rank_document(c.a), rank_document(c.b)
    lines, split = step_charts(c)
    return render_page(
        "compare.html.j2",
        title="tracelens compare",
        path_a=a.source.path,
        path_b=b.source.path,
        rows=comparison_rows(c),
        findings=[asdict(f) for f in c.findings],
        verdict=c.verdict,
        tone=verdict_tone(c),
        notes=list(c.notes),
        steps_chart=lines,
        split_chart=split,
    )


def write_comparison_html(c: Comparison, path: str | Path) -> Path:
    """Write :func:`render_comparison_html` to ``path``."""
    return write_atomic(path, render_comparison_html(c))
