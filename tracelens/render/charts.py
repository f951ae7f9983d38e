"""Chart specs in data units: axes, stacked bars, timelines, histograms, lines.

The SVG geometry is drawn by the macros of ``templates/_charts.html.j2`` from these specs, so
pages read with scripts disabled; every series here is bounded in size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tracelens.render.format import fmt_ms, rounded

MAX_HIST_BINS = 30


def nice_axis(hi: float, lo: float = 0.0, n: int = 5, unit: str = "", integer: bool = False) -> dict[str, Any]:
    """An axis from ``lo`` to a round number ≥ ``hi`` with about ``n`` labelled ticks."""
    if not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    span = hi - lo
    mag = 10 ** math.floor(math.log10(span / n))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if span / step <= n and not (integer and step != int(step)):
            break
    if integer:
        step = max(1.0, float(round(step)))
        mag = max(mag, 1.0)
    start = math.floor(lo / step + 1e-9) * step
    count = math.ceil((hi - start) / step - 1e-9)
    values = [round(start + i * step, 10) for i in range(count + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / mag, 3) == 2.5 else 0)
    ticks = [{"v": v, "label": f"{v:,.{decimals}f}"} for v in values]
    return {"min": values[0], "max": values[-1], "ticks": ticks, "unit": unit}


def stacked_bars_spec(
    title: str,
    series: Sequence[dict[str, str]],
    bars: Sequence[dict[str, Any]],
    *,
    y_unit: str = "ms",
    x_label: str = "",
    note: str = "",
) -> dict[str, Any]:
    """Stacked bars: ``series`` = [{key, label, cls}], ``bars`` = [{label, values, tip}]."""
    top = max((sum(b["values"]) for b in bars), default=0.0)
    n = len(bars)
    every = max(1, math.ceil(n / 10))
    x_ticks = [{"i": i, "label": str(b["label"])} for i, b in enumerate(bars) if i % every == 0]
    return {
        "kind": "stacked_bars", "title": title, "series": list(series), "bars": list(bars),
        "y_axis": nice_axis(top, unit=y_unit), "x_ticks": x_ticks, "x_label": x_label, "note": note,
    }


def timeline_spec(title: str, duration: float, lanes: Sequence[dict[str, Any]], *,
                  unit: str = "ms", note: str = "") -> dict[str, Any]:
    """Lanes of intervals on one time axis: ``lanes`` = [{label, cls, intervals: [[a, b], ...]}]."""
    axis = nice_axis(duration, unit=unit)
    for lane in lanes:
        lane["tips"] = [f"{lane['label']}: {fmt_ms(a)} – {fmt_ms(b)} ({fmt_ms(b - a)})"
                        for a, b in lane["intervals"]] if unit == "ms" else []
    return {"kind": "timeline", "title": title, "duration": duration, "x_axis": axis,
            "lanes": list(lanes), "note": note}


def histogram_spec(title: str, values: Sequence[float], *, unit: str = "ms", what: str = "calls",
                   note: str = "") -> dict[str, Any] | None:
    """Counts of ``values`` in at most ``MAX_HIST_BINS`` bins (log-spaced when they span decades)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    nbins = int(min(MAX_HIST_BINS, max(6, 2 * math.ceil(math.log2(v.size) + 1))))
    lo, hi = float(v.min()), float(v.max())
    log = lo > 0 and hi / lo > 50
    if log:
        edges = np.geomspace(lo, hi, nbins + 1)
    else:  # from 0, or from a round number below the shortest when all are alike
        start, end = 0.0, hi if hi > 0 else 1.0
        if lo > 0.3 * hi:
            mag = 10 ** math.floor(math.log10(hi - lo if hi > lo else lo))
            start = math.floor(lo / mag) * mag
            end = max(hi, start + mag)
        edges = np.linspace(start, end, nbins + 1)
    counts, _ = np.histogram(v, bins=edges)
    bins = []
    for i, c in enumerate(counts.tolist()):
        a, b = float(edges[i]), float(edges[i + 1])
        bins.append({"lo": rounded(a), "hi": rounded(b), "count": int(c),
                     "tip": f"{c:,} {what} of {fmt_ms(a)} – {fmt_ms(b)}" if unit == "ms"
                     else f"{c:,} {what} of {a:.4g} – {b:.4g} {unit}"})
    every = max(1, math.ceil((nbins + 1) / 7))
    x_labels: list[dict[str, Any]] = [{"i": i, "label": "0" if e == 0 else fmt_ms(float(e)).replace(" ms", "") if unit == "ms" else f"{e:.3g}"}
                for i, e in enumerate(edges.tolist()) if i % every == 0 or i == nbins]
    if x_labels[-1]["i"] == nbins and len(x_labels) > 1 and x_labels[-2]["i"] > nbins - every:
        x_labels.pop(-2)
    return {"kind": "histogram", "title": title, "bins": bins, "log": log, "unit": unit,
            "y_axis": nice_axis(float(counts.max()), n=4, integer=True), "x_labels": x_labels, "what": what,
            "note": note}


def line_chart_spec(title: str, series: Sequence[dict[str, Any]], *, x_unit: str = "s",
                    y_unit: str = "", bands: Sequence[dict[str, Any]] = (), markers: bool = False,
                    note: str = "") -> dict[str, Any] | None:
    """Lines: ``series`` = [{label, cls, points: [[x, y], ...], thin?}]; ``bands`` shade x ranges."""
    xs = [p[0] for s in series for p in s["points"]]
    ys = [p[1] for s in series for p in s["points"] if p[1] is not None]
    if not xs:
        return None
    x_lo, x_hi = min(xs), max(xs)
    x_axis = nice_axis(x_hi, lo=x_lo if x_lo < 0 else 0.0, unit=x_unit)
    y_axis = nice_axis(max(ys) if ys else 1.0, unit=y_unit, n=4)
    return {"kind": "line", "title": title, "series": list(series), "x_axis": x_axis,
            "y_axis": y_axis, "bands": list(bands), "markers": markers, "note": note}


def heatmap_spec(title: str, row_labels: Sequence[str], col_labels: Sequence[str],
                 values: Sequence[Sequence[float | None]], tips: Sequence[Sequence[str]], *,
                 row_title: str = "", col_title: str = "", unit: str = "ms", note: str = "") -> dict[str, Any] | None:
    """A grid of cells shaded by value (0 to the largest); ``None`` cells are empty."""
    top = max((v for row in values for v in row if v is not None), default=0.0)
    if not values or not col_labels:
        return None
    rows = [{"label": label,
             "cells": [{"o": rounded(v / top, 3) if v is not None and top > 0 else 0.0, "empty": v is None, "tip": t}
                       for v, t in zip(row, row_tips)]}
            for label, row, row_tips in zip(row_labels, values, tips)]
    every_row = max(1, math.ceil(len(rows) / 16))
    every_col = max(1, math.ceil(len(col_labels) / 8))
    return {"kind": "heatmap", "title": title, "rows": rows, "cols": len(col_labels),
            "row_ticks": [{"i": i, "label": r["label"]} for i, r in enumerate(rows) if i % every_row == 0],
            "col_ticks": [{"i": j, "label": c} for j, c in enumerate(col_labels) if j % every_col == 0],
            "row_title": row_title, "col_title": col_title,
            "top": f"{fmt_ms(top)}" if unit == "ms" else f"{top:.3g} {unit}", "note": note}
