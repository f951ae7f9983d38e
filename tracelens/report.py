"""The shareable HTML report: a JSON-ready view model, then jinja2 templates.

:func:`build_view` turns a :class:`tracelens.api.Result` into plain data (numbers in data units,
sentences already worded, nothing HTML); :func:`render_report` feeds it to
``templates/report.html.j2``. Charts are SVG drawn by the macros of ``templates/_charts.html.j2``
from the chart specs built here (:func:`stacked_bars_spec`, :func:`timeline_spec`,
:func:`histogram_spec`, :func:`line_chart_spec`), so the page reads with scripts disabled; one
small inline script only adds hover tooltips and a copy button. :func:`render_page` is the
shared entry point for other pages (sweep, compare): it adds the page script and its
Content-Security-Policy (no network access at all) to any template extending ``base.html.j2``.

Size budget: every series is bounded (per-step bars, histogram bins, timeline intervals and
telemetry points), so the page does not grow with the trace; the page says what was reduced.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import math
import os
import re
import socket
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tracelens.errors import TracelensError

if TYPE_CHECKING:
    import jinja2

    from tracelens.results import Result
    from tracelens.runjson import ProcessTelemetry, RunInfo, Samples

MAX_STEP_BARS = 400  # per-step bars drawn; longer runs are shown as means of consecutive steps
MAX_LINE_POINTS = 300  # points per telemetry line
MAX_HIST_BINS = 30
MAX_WORKER_LINES = 8  # more workers than this are drawn as their sum and mean
SCRIPT_NAME = "tracelens.js"
SETTING_KEYS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
REDACTED = "[redacted]"

# ----------------------------------------------------------------------------- templates


def templates_dir() -> Path:
    """The templates: inside the package (wheel), else the repository's top-level ``templates/``."""
    pkg = Path(__file__).resolve().parent  # the tracelens package
    candidates = (pkg / "templates", pkg.parent / "templates")
    for cand in candidates:
        if (cand / "base.html.j2").is_file():
            return cand
    raise TracelensError(
        "tracelens templates not found (looked in " + " and ".join(str(c) for c in candidates)
        + "): reinstall tracelens"
    )


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The jinja2 environment every page uses: autoescaping on, undefined names are errors."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=fmt_pct, ms=fmt_ms, num=fmt_value, px=_px)
    return env


@lru_cache(maxsize=1)
def _page_script() -> tuple[str, str]:
    """The inline script and its CSP hash source."""
    text = (templates_dir() / SCRIPT_NAME).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"'sha256-{digest}'"


def render_page(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>``; pages extending base.html.j2 get script and CSP.

    The Content-Security-Policy allows no network request at all, inline styles, data: images
    and only the page's own script (by hash), so even a name that escaped escaping could not run.
    """
    from markupsafe import Markup

    script, source = _page_script()
    context.setdefault("page_script", Markup(script))
    context.setdefault(
        "page_csp",
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {source}; "
        "base-uri 'none'; form-action 'none'",
    )
    return str(environment().get_template(template_name).render(**context))


# ----------------------------------------------------------------------------- formatting


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage ("n/a" when unknown)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def fmt_ms(x: float | None) -> str:
    """Milliseconds with precision that suits the size."""
    if x is None or not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f} ms"
    if a >= 10:
        return f"{x:.1f} ms"
    if a >= 1:
        return f"{x:.2f} ms"
    return f"{x:.3f} ms"


def fmt_value(v: Any) -> str:
    """Any evidence value as short text."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        items = [fmt_value(x) for x in v[:12]]
        return ", ".join(items) + (f", … ({len(v)} in all)" if len(v) > 12 else "")
    if isinstance(v, dict):
        return "; ".join(f"{k}: {fmt_value(x)}" for k, x in list(v.items())[:12])
    return str(v)


def _px(x: float) -> str:
    """A pixel coordinate with one decimal (keeps the SVG small)."""
    r = round(float(x), 1)
    return str(int(r)) if r == int(r) else str(r)


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


# ----------------------------------------------------------------------------- chart specs


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
        bins.append({"lo": _r(a), "hi": _r(b), "count": int(c),
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


# ----------------------------------------------------------------------------- wording


CAUSES = {
    "cpu_starvation": "Input-bound, CPU-starved: preparing batches is CPU work and too few processes do it",
    "io_bound": "Input-bound, I/O-bound: preparing batches mostly waits for storage or the network",
    "oversubscription": "Oversubscribed: loader processes × threads exceed the CPU cores and slow the step",
    "input_bound": "Input-bound",
    "healthy": "The DataLoader keeps up",
    "undetermined": "Undetermined",
}
TONES = {"healthy": "good", "undetermined": "neutral"}


def verdict_sentence(doc: dict[str, Any]) -> str:
    """The verdict in one sentence, with the speed-up ceiling (one rank's SPEC §3 document)."""
    m = doc["metrics"]
    diagnosis = doc["diagnosis"]
    exposed = m.get("exposed_data_wait_fraction")
    ceiling = m.get("speedup_ceiling")
    has_gpu = m.get("gpu_busy_fraction") is not None
    if diagnosis == "undetermined" or exposed is None:
        reason = doc.get("fallback") or (
            "it holds no DataLoader __next__ events" if not m.get("next_calls") else "the evidence is inconclusive")
        return f"The trace cannot say whether data loading slows this run: {reason}."
    c = f"{ceiling:.2f}×" if ceiling else "unbounded"
    if has_gpu:
        share = f"steps wait for data with the GPU idle {'only ' if diagnosis == 'healthy' else ''}{fmt_pct(exposed)} of the time"
    else:
        share = f"steps spend {'only ' if diagnosis == 'healthy' else ''}{fmt_pct(exposed)} of their time waiting for data"
    if diagnosis == "healthy":
        return f"{CAUSES['healthy']}: {share}, so faster loading would make steps at most {c} faster."
    cause = CAUSES.get(diagnosis, diagnosis)
    return f"{cause}: {share}; removing that wait would make steps up to {c} faster."


def settings_call(settings: dict[str, Any]) -> str:
    """``DataLoader(dataset, num_workers=..., ...)`` for the settings given (unknowns left out)."""
    parts = [f"{k}={settings[k]!r}" for k in SETTING_KEYS if settings.get(k) is not None]
    return "DataLoader(dataset, " + ", ".join(parts) + ")"


# PyTorch's DataLoader defaults: an unknown current value recommended at its default is no change.
DEFAULTS: dict[str, Any] = {"num_workers": 0, "pin_memory": False, "persistent_workers": False,
                            "prefetch_factor": (None, 2)}


def _is_default(key: str, value: Any) -> bool:
    d = DEFAULTS.get(key)
    return value in d if isinstance(d, tuple) else value == d


def settings_diff(current: dict[str, Any], recommended: dict[str, Any],
                  context: Sequence[str] = (), *, keep: Sequence[str] = (),
                  threads_per_worker: int | None = None,
                  threads_main: int | None = None) -> list[dict[str, str]]:
    """The recommended ``DataLoader(...)`` call as diff lines ``{op: " "|"-"|"+", text}``.

    ``current`` values of ``None`` are unknown (not in the trace): their line is added with a
    comment, or left out when the recommendation is PyTorch's default. ``keep`` settings (whose
    recommended value is only a lower bound) become a "keep your current value" comment.
    ``context`` lines (e.g. ``batch_size=64``) are shown unchanged. Thread advice adds a
    ``torch.set_num_threads`` line for the main process and a ``worker_init_fn``.
    """
    lines = []
    if threads_main is not None:
        lines.append({"op": "+", "text": f"torch.set_num_threads({threads_main})  # main process"})
    if threads_per_worker is not None:
        # A module-level function, not a lambda: spawn/forkserver workers must pickle it.
        lines += [
            {"op": "+", "text": "def set_worker_threads(worker_id):  # call it from your worker_init_fn if you have one"},
            {"op": "+", "text": f"    torch.set_num_threads({threads_per_worker})"},
        ]
    lines += [{"op": " ", "text": "loader = DataLoader("}, {"op": " ", "text": "    dataset,"}]
    lines += [{"op": " ", "text": f"    {c},"} for c in context]
    for k in SETTING_KEYS:
        cur, rec = current.get(k), recommended.get(k)
        if k in keep:
            lines.append({"op": " ", "text": f"    # {k}: keep your current value"})
            continue
        if cur is None and (rec is None or _is_default(k, rec)):
            continue
        if cur == rec:
            lines.append({"op": " ", "text": f"    {k}={rec!r},"})
            continue
        if cur is not None:
            lines.append({"op": "-", "text": f"    {k}={cur!r},"})
        if rec is not None:
            note = "  # current value not recorded in the trace" if cur is None else ""
            lines.append({"op": "+", "text": f"    {k}={rec!r},{note}"})
    if threads_per_worker is not None:
        lines.append({"op": "+", "text": "    worker_init_fn=set_worker_threads,"})
    lines.append({"op": " ", "text": ")"})
    return lines


def diff_after(lines: Sequence[dict[str, str]]) -> str:
    """The code after applying the diff, comments dropped: what the copy button copies."""
    kept = [ln["text"].split("  #")[0] for ln in lines
            if ln["op"] != "-" and not ln["text"].lstrip().startswith("#")]
    return "\n".join(kept)


def current_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """The loader settings the trace shows; ``pin_memory`` inferred when every copy was pinned."""
    cur = {k: doc["loader"].get(k) for k in SETTING_KEYS}
    copies = doc.get("copies") or {}
    if cur["pin_memory"] is None and copies.get("h2d_pinned") and not copies.get("h2d_pageable"):
        cur["pin_memory"] = True
    return cur


def recommendation_view(doc: dict[str, Any], context: Sequence[str] = ()) -> dict[str, Any]:
    """The change to make (one rank's document): diff, code to copy, environment, expected gain."""
    rec = doc["recommendation"]
    keep = [str(k) for k in rec.get("keep_current") or []]
    diff = settings_diff(current_settings(doc), {k: rec.get(k) for k in SETTING_KEYS}, context,
                         keep=keep, threads_per_worker=rec.get("torch_threads_per_worker"),
                         threads_main=rec.get("torch_threads_main"))
    env = {str(k): str(v) for k, v in (rec.get("env") or {}).items()
           if re.fullmatch(r"[A-Z][A-Z0-9_]*", str(k)) and re.fullmatch(r"[\w.,:-]*", str(v))}
    speed = rec.get("expected_speedup")
    expected = (f"{speed:.2f}×" if isinstance(speed, (int, float)) and speed >= 1.005
                and doc.get("diagnosis") not in ("healthy", "undetermined") else None)
    return {"diff": diff, "code": diff_after(diff), "changed": any(ln["op"] != " " for ln in diff) or bool(env),
            "keep": keep, "env": [f"{k}={v}" for k, v in sorted(env.items())], "expected": expected,
            "expected_value": float(speed) if expected else None,
            "notes": [str(n) for n in rec.get("notes", [])]}


# ----------------------------------------------------------------------------- run.json (duck typed)


def _arr(v: Any) -> np.ndarray:
    if v is None:
        return np.zeros(0)
    return np.array([np.nan if x is None else x for x in v], dtype=float) if isinstance(v, list) else np.asarray(v, dtype=float)


def _bucket_mean(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or x.size == 0:
        return x
    starts = np.arange(0, x.size, k)
    sums = np.add.reduceat(np.nan_to_num(x), starts)
    return sums / np.diff(np.append(starts, x.size))


def _rates(t_s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-second rate of a cumulative counter between samples, at interval midpoints."""
    ok = np.isfinite(t_s) & np.isfinite(v)
    t, c = t_s[ok], v[ok]
    if t.size < 2:
        return np.zeros(0), np.zeros(0)
    dt = np.diff(t)
    good = dt > 0
    rate = np.diff(c)[good] / dt[good]
    return ((t[1:] + t[:-1]) / 2)[good], np.maximum(rate, 0.0)


def _points(t: np.ndarray, y: np.ndarray) -> list[list[float]]:
    k = max(1, math.ceil(t.size / MAX_LINE_POINTS))
    tt, yy = _bucket_mean(t, k), _bucket_mean(y, k)
    return [[_r(a, 3), _r(b, 4)] for a, b in zip(tt.tolist(), yy.tolist())]


def _process_label(p: ProcessTelemetry) -> str:
    if p.role == "main":
        return "main process"
    return f"worker {p.worker_id}" if p.worker_id is not None else f"{p.role or 'process'} {p.pid}"


def _process_row(p: ProcessTelemetry) -> dict[str, Any] | None:
    """The telemetry table's row of one process: its counters over all its samples."""
    s = p.summary()
    if s is None:
        return None
    read = s.read_bytes if s.read_bytes is not None else s.read_chars
    return {
        "label": _process_label(p), "role": p.role or "process",
        "cpu_s": _r(s.cpu_s, 3), "cores": _r(s.cpu_s / s.wall_s, 3) if s.wall_s > 0 else None,
        "read_mb": _r(read / 1e6, 3) if read is not None else None,
        "delay_ms": _r(s.run_delay_s * 1e3, 3) if s.run_delay_s is not None else None,
        "threads": s.max_threads or None,
    }


def _cpu_seconds(samples: Samples, size: int) -> np.ndarray:
    cpu_ns = _arr(samples.cpu_ns)
    if cpu_ns.size == size and np.isfinite(cpu_ns).sum() >= 2:
        return cpu_ns / 1e9
    return _arr(samples.cpu_user_s) + _arr(samples.cpu_system_s)


def telemetry_view(run: RunInfo | None) -> dict[str, Any] | None:
    """Worker CPU, I/O and run-queue charts over the window from run.json telemetry (or None)."""
    tel = run.telemetry if run is not None else None
    if run is None or tel is None or not tel.processes:
        return None
    t0_us = tel.start_us
    if t0_us is None:
        firsts = [p.samples.t_us[0] for p in tel.processes if p.samples.t_us and p.samples.t_us[0] is not None]
        if not firsts:
            return None
        t0_us = min(firsts)
    series: dict[str, list[dict[str, Any]]] = {"cpu": [], "io": [], "delay": []}
    rows: list[dict[str, Any]] = []
    # the main process, then workers by id
    procs = sorted(tel.processes, key=lambda p: (0 if p.role == "main" else 1,
                                                  math.inf if p.worker_id is None else float(p.worker_id), str(p.pid)))
    workers = [p for p in procs if p.role != "main"]
    many = len(workers) > MAX_WORKER_LINES
    agg: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"cpu": [], "io": [], "delay": []}
    reduced = False
    for idx, p in enumerate(procs):
        s = p.samples
        t = (_arr(s.t_us) - float(t0_us)) / 1e6
        if t.size < 2:
            continue
        read = _arr(s.read_bytes)
        if not (read.size == t.size and np.isfinite(read).sum() >= 2):
            read = _arr(s.read_chars)
        delay = _arr(s.run_delay_ns)
        label = _process_label(p)
        cls = "c-main" if p.role == "main" else f"c-s{idx % 8}"
        for key, vals, scale in (("cpu", _cpu_seconds(s, t.size), 1.0), ("io", read, 1e-6),
                                 ("delay", delay / 1e9 if delay.size else delay, 1.0)):
            if vals.size != t.size:
                continue
            tm, r = _rates(t, vals * scale)
            if tm.size == 0:
                continue
            if tm.size > MAX_LINE_POINTS:
                reduced = True
            if p.role == "main" or not many:
                series[key].append({"label": label, "cls": cls, "points": _points(tm, r)})
            else:
                agg[key].append((tm, r))
        if (row := _process_row(p)) is not None:
            rows.append(row)
    if many:
        for key, parts in agg.items():
            if not parts:
                continue
            grid = parts[0][0]
            stacked = np.vstack([np.interp(grid, tm, r) for tm, r in parts])
            series[key].append({"label": f"{len(parts)} workers (sum)", "cls": "c-s1", "points": _points(grid, stacked.sum(0))})
            series[key].append({"label": "workers (mean)", "cls": "c-s3", "points": _points(grid, stacked.mean(0))})
    bands = []
    ws, we = run.window.start_us, run.window.end_us
    if ws is not None and we is not None:
        bands.append({"x0": _r((ws - t0_us) / 1e6, 3), "x1": _r((we - t0_us) / 1e6, 3), "label": "recorded window"})
    sampled = f"Sampled every {tel.interval_ms:g} ms." if tel.interval_ms is not None else ""

    def flat(key: str) -> bool:  # every point zero: nothing to draw
        return all(p[1] == 0 for s in series[key] for p in s["points"])

    missing = []
    if not series["io"]:
        missing.append("I/O bytes are not exposed for these processes")
    elif flat("io"):
        missing.append("no process read from storage during the run (data came from memory or the page cache)")
        series["io"] = []
    if not series["delay"]:
        missing.append("run-queue delay is not exposed by this OS")
    charts = [
        line_chart_spec("CPU used per process (cores)", series["cpu"], y_unit="cores", bands=bands),
        line_chart_spec("Storage reads per process (MB/s)", series["io"], y_unit="MB/s", bands=bands),
        line_chart_spec("Waiting for a CPU (run-queue delay: threads waiting, on average)", series["delay"],
                        y_unit="threads", bands=bands),
    ]
    return {"charts": [c for c in charts if c is not None], "processes": rows, "missing": missing, "sampled": sampled,
            "reduced": reduced, "workers": len(workers), "aggregated": many}


# ----------------------------------------------------------------------------- view model


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


def steps_chart(analysis: Any) -> tuple[dict[str, Any] | None, str | None]:
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
        parts = {key: _bucket_mean(v, k) for key, v in parts.items()}
        dur, calls, longest = _bucket_mean(dur, k), _bucket_mean(calls, k), longest
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
            lines.append(f"{s['label']}: {fmt_ms(v)} ({fmt_pct(share)})")
        if k == 1:
            lines.append(f"__next__ calls: {int(calls[i])}, longest {fmt_ms(float(longest[i]))}")
        bars.append({"label": label, "values": [_r(parts[s["key"]][i]) for s in series],
                     "tip": "\n".join(lines)})
    title = "Where each step's time goes"
    return stacked_bars_spec(title, series, bars, x_label="step", note=notice or ""), notice


def _subtract(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[list[float]]:
    """Sorted, disjoint interval lists: ``a`` minus ``b``."""
    out: list[list[float]] = []
    j = 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append([cur, b[k][0]])
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append([cur, e])
    return out


def timeline_chart(analysis: Any) -> dict[str, Any] | None:
    """The representative step: __next__ waits, GPU activity, and the exposed part."""
    tl = getattr(analysis, "timeline", None)
    if tl is None:
        return None
    waits = [[_r(a), _r(b)] for a, b in tl.data_wait]
    busy = [[_r(a), _r(b)] for a, b in tl.gpu_busy]
    lanes = [{"label": "DataLoader __next__ (data wait)", "cls": "c-wait", "intervals": waits}]
    if getattr(analysis, "has_gpu_activity", False):
        lanes.append({"label": "GPU activity (kernels, copies)", "cls": "c-gpu", "intervals": busy})
        lanes.append({"label": "exposed wait (GPU idle while waiting)", "cls": "c-exposed",
                      "intervals": _subtract(waits, busy)})
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


def _finding_view(f: Any) -> dict[str, Any]:
    d = f if isinstance(f, dict) else dataclasses.asdict(f)
    conf = d.get("confidence")
    evidence = d.get("evidence") or {}
    return {
        "id": str(d.get("id", "")),
        "kind": str(d.get("kind", "")),
        "severity": str(d.get("severity", "info")),
        "confidence": fmt_pct(float(conf), 0) if isinstance(conf, (int, float)) else "n/a",
        "title": str(d.get("title", "")),
        "advice": str(d.get("advice", "") or ""),
        "evidence": [_evidence_item(str(k), v) for k, v in evidence.items()],
    }


def _evidence_item(key: str, value: Any) -> dict[str, str]:
    """One evidence entry, its unit moved from the key's suffix into the value."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and key.endswith("_fraction"):
        return {"key": key[: -len("_fraction")].replace("_", " "), "value": fmt_pct(float(value))}
    if number and key.endswith("_ms"):
        return {"key": key[:-3].replace("_", " "), "value": fmt_ms(float(value))}
    if number and key.endswith("_ms_per_step"):
        return {"key": key[: -len("_ms_per_step")].replace("_", " ") + " per step", "value": fmt_ms(float(value))}
    if number and key.endswith("_bytes"):
        return {"key": key[: -len("_bytes")].replace("_", " "), "value": f"{float(value) / 1e6:,.1f} MB"}
    return {"key": key.replace("_", " "), "value": fmt_value(value)}


SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


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
        {"label": "exposed data wait", "value": fmt_pct(m.get("exposed_data_wait_fraction")),
         "hint": "of step time, GPU idle while waiting" if m.get("gpu_busy_fraction") is not None
         else "of step time (no GPU activity in the trace)"},
        {"label": "data wait", "value": fmt_pct(m.get("data_wait_fraction")), "hint": "of step time, in __next__"},
        {"label": "GPU busy", "value": fmt_pct(m.get("gpu_busy_fraction")), "hint": "of step time"}
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
            "step_ms": fmt_ms(m.get("step_time_ms_median")), "data_wait": fmt_pct(m.get("data_wait_fraction")),
            "exposed": fmt_pct(e), "exposed_fraction": _r(e or 0.0), "gpu_busy": fmt_pct(m.get("gpu_busy_fraction")),
            "ceiling": f"{m['speedup_ceiling']:.2f}×" if m.get("speedup_ceiling") else "n/a",
            "diagnosis": d.get("diagnosis"), "slowest": d.get("rank", r.rank) == slowest,
        })
    top = max((row["exposed_fraction"] for row in rows), default=0.0) or 1.0
    for row in rows:
        row["bar_pct"] = _r(100 * row["exposed_fraction"] / top, 1)
    return rows


def build_view(result: Result, *, redact: bool = False) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (no HTML, nothing escaped yet)."""
    from tracelens._version import __version__

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
                      key=lambda f: (SEVERITY_ORDER.get(f["severity"], 9), f["id"]))
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
    return view


# ----------------------------------------------------------------------------- redaction


_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:[\\/]|/)(?:[^\s/\\\"'<>|]+[\\/])+[^\s/\\\"'<>|,;)]*")


def sensitive_strings(result: Result) -> list[str]:
    """Paths, file names and host names that --redact removes, longest first."""
    found: set[str] = set()
    paths = [result.path, str(result.document.get("source", {}).get("path") or "")]
    for r in result.ranks:
        paths += [*r.paths, r.analysis.path]
        run = r.run
        if run is not None:
            cmd = run.command
            found.update(s for s in (run.host, cmd.kind, cmd.target, cmd.cwd, run.trace.path, *cmd.argv) if s)
    for p in paths:
        if not p:
            continue
        pp = Path(p)
        found.update({p, str(pp.resolve()), pp.name, pp.parent.name, str(pp.parent)})
    with contextlib.suppress(OSError):
        found.add(socket.gethostname())
    return sorted((s for s in found if len(s) >= 3 and s not in {".", ".."}), key=len, reverse=True)


def redact_view(view: Any, secrets: Sequence[str]) -> Any:
    """``view`` with every secret and every absolute path replaced by ``[redacted]``."""
    if isinstance(view, str):
        for s in secrets:
            if s in view:
                view = view.replace(s, REDACTED)
        return _ABS_PATH.sub(REDACTED, view)
    if isinstance(view, dict):
        return {k: redact_view(v, secrets) for k, v in view.items()}
    if isinstance(view, list):
        return [redact_view(v, secrets) for v in view]
    return view


# ----------------------------------------------------------------------------- public API


def render_report(result: Result, *, redact: bool = False) -> str:
    """The self-contained HTML report of ``result``."""
    view = build_view(result, redact=redact)
    data = {k: view[k] for k in ("tool", "verdict", "recommendation", "findings", "ranks", "redacted")}
    return render_page("report.html.j2", view=view, data=data)


def write_report(result: Result, path: str | Path, *, redact: bool = False) -> None:
    """Write the report to ``path`` atomically (a reader never sees half a file)."""
    write_atomic(path, render_report(result, redact=redact))


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, readable by others
    (the umask's permissions: a report is meant to be shared)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(out.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
