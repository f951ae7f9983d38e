"""The telemetry part of the report: CPU, storage reads and run-queue delay per process over the
window, from run.json (lines bounded in points; many workers drawn as their sum and mean)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracelens.render.charts import line_chart_spec
from tracelens.render.format import rounded
from tracelens.runjson import ProcessTelemetry, RunInfo, Samples, Telemetry

MAX_LINE_POINTS = 300  # points per telemetry line
MAX_WORKER_LINES = 8  # more workers than this are drawn as their sum and mean


def _arr(v: Any) -> np.ndarray:
    if v is None:
        return np.zeros(0)
    return np.array([np.nan if x is None else x for x in v], dtype=float) if isinstance(v, list) else np.asarray(v, dtype=float)


def bucket_mean(x: np.ndarray, k: int) -> np.ndarray:
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
    tt, yy = bucket_mean(t, k), bucket_mean(y, k)
    return [[rounded(a, 3), rounded(b, 4)] for a, b in zip(tt.tolist(), yy.tolist())]


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
        "cpu_s": rounded(s.cpu_s, 3), "cores": rounded(s.cpu_s / s.wall_s, 3) if s.wall_s > 0 else None,
        "read_mb": rounded(read / 1e6, 3) if read is not None else None,
        "delay_ms": rounded(s.run_delay_s * 1e3, 3) if s.run_delay_s is not None else None,
        "threads": s.max_threads or None,
    }


def _cpu_seconds(samples: Samples, size: int) -> np.ndarray:
    cpu_ns = _arr(samples.cpu_ns)
    if cpu_ns.size == size and np.isfinite(cpu_ns).sum() >= 2:
        return cpu_ns / 1e9
    return _arr(samples.cpu_user_s) + _arr(samples.cpu_system_s)


SUPPLY_LINES = (("job_cpu_cores", "this job", "c-main"), ("other_cpu_cores", "other processes", "c-s1"),
                ("cores_left", "cores left to the job", "c-s3"))


def supply_chart(tel: Telemetry, t0_us: float, bands: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The machine's CPU over the window: this job, other processes, the cores left (run.json
    ``telemetry.supply``; None in files without it)."""
    sup = tel.supply
    if sup is None or len(sup.samples.t_us) < 2:
        return None
    t = (_arr(sup.samples.t_us) - t0_us) / 1e6
    series = []
    for key, label, cls in SUPPLY_LINES:
        y = _arr(getattr(sup.samples, key))
        ok = np.isfinite(t) & np.isfinite(y) if y.size == t.size else np.zeros(0, bool)
        if ok.sum() >= 2:
            series.append({"label": label, "cls": cls, "points": _points(t[ok], y[ok])})
    return line_chart_spec("CPU of the cores this job may use: the job and other processes (cores)", series,
                           y_unit="cores", bands=bands)


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
        bands.append({"x0": rounded((ws - t0_us) / 1e6, 3), "x1": rounded((we - t0_us) / 1e6, 3), "label": "recorded window"})
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
        supply_chart(tel, float(t0_us), bands),
        line_chart_spec("Storage reads per process (MB/s)", series["io"], y_unit="MB/s", bands=bands),
        line_chart_spec("Waiting for a CPU (run-queue delay: threads waiting, on average)", series["delay"],
                        y_unit="threads", bands=bands),
    ]
    return {"charts": [c for c in charts if c is not None], "processes": rows, "missing": missing, "sampled": sampled,
            "reduced": reduced, "workers": len(workers), "aggregated": many}
