"""Per-step DataLoader wait versus GPU activity (SPEC §2), as pure functions over a Trace.

All durations inside are int64 ns; the public result reports ms and fractions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tracelens import intervals as iv
from tracelens.model import GPU_ACTIVITY_CATEGORIES, RUNTIME_CATEGORIES, Trace

STEP_NAME = re.compile(r"^ProfilerStep#(\d+)$")
DATA_WAIT_NAME = re.compile(r"^enumerate\(DataLoader\)#.*\.__next__$|^enumerate\(DataPipe\)#")
SYNC_NAMES = frozenset(
    {"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize",
     "hipDeviceSynchronize", "hipStreamSynchronize", "hipEventSynchronize"}
)
NS_PER_MS = 1e6

STEP_COLUMNS = [
    "step", "start_ms", "duration_ms", "data_wait_ms", "gpu_busy_ms", "exposed_wait_ms",
    "next_calls", "next_longest_ms",
]


@dataclass(frozen=True)
class DeviceActivity:
    """GPU activity of one device within the host steps."""

    device: int
    label: str
    busy_ms: float
    busy_fraction: float
    exposed_data_wait_fraction: float


@dataclass(frozen=True)
class StepTimeline:
    """One representative step (the one of median duration) as intervals, ms from its start."""

    step: int
    duration_ms: float
    data_wait: tuple[tuple[float, float], ...]
    gpu_busy: tuple[tuple[float, float], ...]
    exposed: tuple[tuple[float, float], ...]  # data wait with the GPU idle
    downsampled: bool  # gaps under ``merge_gap_ms`` were closed to bound the interval count
    merge_gap_ms: float


TIMELINE_MAX_INTERVALS = 400


def _timeline_intervals(s: iv.IntervalSet, lo: int, hi: int) -> tuple[tuple[tuple[float, float], ...], float]:
    """``s`` within ``[lo, hi)`` in ms from ``lo``; closes the smallest gaps beyond the cap."""
    c = iv.clip(s, lo, hi)
    gap_ns = 0
    if len(c) > TIMELINE_MAX_INTERVALS:
        gaps = np.sort(c.starts[1:] - c.ends[:-1])
        gap_ns = int(gaps[len(c) - TIMELINE_MAX_INTERVALS])
        c = iv.union(c.starts, c.ends + gap_ns)
        c = iv.IntervalSet(c.starts, np.minimum(c.ends - gap_ns, hi))
    pairs = tuple(
        (round((a - lo) / NS_PER_MS, 4), round((b - lo) / NS_PER_MS, 4))
        for a, b in zip(c.starts.tolist(), c.ends.tolist())
    )
    return pairs, gap_ns / NS_PER_MS


@dataclass(frozen=True)
class CopyStats:
    """Host-to-device copies inside the steps (counts, and ms per step on the GPU)."""

    h2d_pageable: int = 0
    h2d_pinned: int = 0
    h2d_other: int = 0  # e.g. ROCm's "Host -> Device": pinned-ness unknown
    h2d_pageable_ms_per_step: float = 0.0
    h2d_pageable_host_blocked_ms_per_step: float = 0.0  # host time in copy calls meanwhile


@dataclass(frozen=True)
class TraceAnalysis:
    """What one trace says about data loading, per SPEC §2."""

    path: str
    format: str
    truncated: bool
    skipped_events: int
    events: int
    rank: int | None
    devices: tuple[DeviceActivity, ...]
    step_source: str  # "profiler_steps", "dataloader_next" or "none"
    fallback: str | None  # how steps were found when the trace has no ProfilerStep#
    steps: int  # host ProfilerStep# events (0 when a fallback was used)
    measured_steps: int  # the steps the metrics below were computed over
    step_time_ms: float | None
    step_time_ms_median: float | None
    data_wait_fraction: float | None
    exposed_data_wait_fraction: float | None
    gpu_busy_fraction: float | None
    speedup_ceiling: float | None
    gpu_idle_other_fraction: float | None  # GPU idle and not waiting for data
    sync_ms_per_step: float | None  # host time in device/stream synchronizations
    iterator: str  # "single_process", "multi_process" or "unknown"
    iterator_names: tuple[str, ...]
    next_calls: int
    next_wait_ms: tuple[float, ...]  # each __next__ call inside the steps, in order
    per_step: pd.DataFrame = field(repr=False, compare=False)
    copies: CopyStats = field(default_factory=CopyStats)
    has_gpu_activity: bool = False
    gpu_expected: bool = False  # deviceProperties present or runtime calls seen
    with_stack: bool = False
    category_counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    timeline: StepTimeline | None = None


def _iterator_kind(names: list[str]) -> str:
    kinds = set()
    for n in names:
        if "_SingleProcessDataLoaderIter" in n:
            kinds.add("single_process")
        elif "_MultiProcessingDataLoaderIter" in n:
            kinds.add("multi_process")
        else:
            kinds.add("unknown")
    if len(kinds) == 1:
        return kinds.pop()
    return "multi_process" if "multi_process" in kinds else "unknown"


def _rank(trace: Trace) -> int | None:
    info = trace.meta.distributed_info or {}
    r = info.get("rank")
    return int(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else None


def _device_label(trace: Trace, device: int) -> str:
    props = trace.meta.device_properties
    for p in props:
        if p.get("id") == device and p.get("name"):
            return f"GPU {device}: {p['name']}"
    if 0 <= device < len(props) and props[device].get("name"):
        return f"GPU {device}: {props[device]['name']}"
    return f"GPU {device}"


def _fallback_steps(trace: Trace, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-steps from one ``__next__`` start to the next; the last ends with its thread's work."""
    order = np.argsort(trace.ts_ns[nxt], kind="stable")
    idx = nxt[order]
    starts = trace.ts_ns[idx]
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    last = idx[-1]
    same_thread = (trace.pid == trace.pid[last]) & (trace.tid == trace.tid[last])
    ends[-1] = int((trace.ts_ns[same_thread] + trace.dur_ns[same_thread]).max())
    return starts, ends


def analyze_trace(trace: Trace) -> TraceAnalysis:
    """Measure host steps, data wait, GPU activity and exposed wait in ``trace``."""
    ts, dur = trace.ts_ns, trace.dur_ns
    end = ts + dur
    gpu_ann = trace.mask_categories({"gpu_user_annotation"})
    gpu_rows = trace.mask_categories(GPU_ACTIVITY_CATEGORIES)
    step_rows = np.flatnonzero(trace.mask_names(lambda n: STEP_NAME.match(n) is not None) & ~gpu_ann)
    next_rows = np.flatnonzero(trace.mask_names(lambda n: DATA_WAIT_NAME.match(n) is not None) & ~gpu_ann & ~gpu_rows)
    warnings: list[str] = []

    fallback: str | None = None
    if step_rows.size:
        order = np.argsort(ts[step_rows], kind="stable")
        step_rows = step_rows[order]
        s_start, s_end = ts[step_rows], end[step_rows]
        step_numbers = [int(STEP_NAME.match(trace.names.names[i]).group(1))  # type: ignore[union-attr]
                        for i in trace.name_id[step_rows]]
        step_source = "profiler_steps"
    elif next_rows.size:
        s_start, s_end = _fallback_steps(trace, next_rows)
        step_numbers = list(range(s_start.size))
        step_source = "dataloader_next"
        fallback = ("no ProfilerStep# events: steps are the intervals between successive "
                    "DataLoader __next__ calls")
    else:
        s_start = s_end = np.zeros(0, np.int64)
        step_numbers = []
        step_source = "none"
        fallback = "no ProfilerStep# and no DataLoader __next__ events: no steps to measure"

    steps_set = iv.union(s_start, s_end)
    wait_raw = iv.union(ts[next_rows], end[next_rows])
    data_wait = iv.intersect(wait_raw, steps_set)
    gpu_all = iv.union(ts[gpu_rows], end[gpu_rows])
    gpu_act = iv.intersect(gpu_all, steps_set)
    exposed = iv.subtract(data_wait, gpu_act)
    has_gpu = bool(gpu_rows.any())
    runtime_rows = trace.mask_categories(RUNTIME_CATEGORIES)
    gpu_expected = bool(trace.meta.device_properties) or bool(runtime_rows.any()) or has_gpu

    step_time = int((s_end - s_start).sum())
    n_steps = int(s_start.size)
    iter_names = sorted({trace.names.names[i] for i in trace.name_id[next_rows]})

    # Per-step table.
    wait_ms = iv.measure_within(data_wait, s_start, s_end) / NS_PER_MS
    gpu_ms = iv.measure_within(gpu_act, s_start, s_end) / NS_PER_MS
    exp_ms = iv.measure_within(exposed, s_start, s_end) / NS_PER_MS
    n_start = ts[next_rows]
    n_dur = dur[next_rows]
    which = np.searchsorted(s_start, n_start, side="right") - 1
    inside = (which >= 0) & (n_start < s_end[np.clip(which, 0, None)]) if n_steps else np.zeros(n_start.size, bool)
    counts = np.bincount(which[inside], minlength=n_steps) if n_steps else np.zeros(0, int)
    longest = np.zeros(n_steps)
    if n_steps and inside.any():
        np.maximum.at(longest, which[inside], n_dur[inside] / NS_PER_MS)
    origin = int(s_start[0]) if n_steps else 0
    per_step = pd.DataFrame(
        {
            "step": np.asarray(step_numbers, dtype=np.int64),
            "start_ms": (s_start - origin) / NS_PER_MS,
            "duration_ms": (s_end - s_start) / NS_PER_MS,
            "data_wait_ms": wait_ms,
            "gpu_busy_ms": gpu_ms if has_gpu else np.full(n_steps, np.nan),
            "exposed_wait_ms": exp_ms,
            "next_calls": counts.astype(np.int64),
            "next_longest_ms": longest,
        },
        columns=STEP_COLUMNS,
    )
    in_order = np.argsort(n_start[inside], kind="stable")
    next_wait = tuple(float(x) for x in (n_dur[inside][in_order] / NS_PER_MS))

    # Per device.
    devices: list[DeviceActivity] = []
    if has_gpu:
        gpids = trace.pid[gpu_rows]
        for dev in sorted(set(gpids.tolist())):
            rows = np.flatnonzero(gpu_rows)[gpids == dev]
            act = iv.intersect(iv.union(ts[rows], end[rows]), steps_set)
            exp_dev = iv.subtract(data_wait, act)
            devices.append(
                DeviceActivity(
                    device=int(dev),
                    label=_device_label(trace, int(dev)),
                    busy_ms=act.total / NS_PER_MS,
                    busy_fraction=act.total / step_time if step_time else 0.0,
                    exposed_data_wait_fraction=exp_dev.total / step_time if step_time else 0.0,
                )
            )

    def frac(x: int) -> float | None:
        return x / step_time if step_time else None

    exposed_frac = frac(exposed.total)
    ceiling = 1.0 / (1.0 - exposed_frac) if exposed_frac is not None and exposed_frac < 1 else None
    other_idle = None
    sync_ms = None
    if step_time:
        busy_or_wait = iv.combine(gpu_act, data_wait)
        other_idle = (step_time - busy_or_wait.total) / step_time if has_gpu else None
        sync_rows = np.flatnonzero(trace.mask_names(lambda n: n in SYNC_NAMES))
        sync = iv.intersect(iv.union(ts[sync_rows], end[sync_rows]), steps_set)
        sync_ms = sync.total / NS_PER_MS / max(n_steps, 1)

    copies = _copy_stats(trace, gpu_rows, steps_set, n_steps)
    timeline = None
    if n_steps:
        k = int(np.argsort(s_end - s_start, kind="stable")[(n_steps - 1) // 2])
        lo, hi = int(s_start[k]), int(s_end[k])
        waits, g1 = _timeline_intervals(data_wait, lo, hi)
        busy, g2 = _timeline_intervals(gpu_act, lo, hi)
        shown, g3 = _timeline_intervals(exposed, lo, hi)
        timeline = StepTimeline(step_numbers[k], (hi - lo) / NS_PER_MS, waits, busy, shown,
                                bool(g1 or g2 or g3), max(g1, g2, g3))
    if trace.stats.truncated:
        warnings.append("the file is truncated: analyzed up to its last complete event")
    if trace.stats.skipped_malformed:
        warnings.append(f"{trace.stats.skipped_malformed} malformed event(s) skipped")
    if gpu_expected and not has_gpu and trace.meta.device_properties:
        warnings.append("the trace lists GPUs but holds no kernel or memcpy events")

    cat_counts = trace.stats.category_counts
    return TraceAnalysis(
        path=trace.meta.path,
        format=trace.meta.format,
        truncated=trace.stats.truncated,
        skipped_events=trace.stats.skipped_malformed,
        events=trace.stats.events_total,
        rank=_rank(trace),
        devices=tuple(devices),
        step_source=step_source,
        fallback=fallback,
        steps=int(step_rows.size),
        measured_steps=n_steps,
        step_time_ms=step_time / NS_PER_MS if n_steps else None,
        step_time_ms_median=float(np.median(s_end - s_start)) / NS_PER_MS if n_steps else None,
        data_wait_fraction=frac(data_wait.total),
        exposed_data_wait_fraction=exposed_frac,
        gpu_busy_fraction=frac(gpu_act.total) if has_gpu else None,
        speedup_ceiling=ceiling,
        gpu_idle_other_fraction=other_idle,
        sync_ms_per_step=sync_ms,
        iterator=_iterator_kind(iter_names) if iter_names else "unknown",
        iterator_names=tuple(iter_names),
        next_calls=int(next_rows.size),
        next_wait_ms=next_wait,
        per_step=per_step,
        copies=copies,
        has_gpu_activity=has_gpu,
        gpu_expected=gpu_expected,
        with_stack=bool(trace.meta.with_stack) or cat_counts.get("python_function", 0) + cat_counts.get("python", 0) > 0,
        category_counts=cat_counts,
        warnings=tuple(warnings),
        timeline=timeline,
    )


def _copy_stats(trace: Trace, gpu_rows: np.ndarray, steps: iv.IntervalSet, n_steps: int) -> CopyStats:
    names = trace.names.names
    memcpy_rows = np.flatnonzero(gpu_rows & trace.mask_names(lambda n: "HtoD" in n))
    if memcpy_rows.size == 0:
        return CopyStats()
    kinds = np.array(
        [2 if "Pageable" in names[i] else 1 if "Pinned" in names[i] else 0
         for i in trace.name_id[memcpy_rows]]
    )
    start = trace.ts_ns[memcpy_rows]
    inside = iv.measure_within(steps, start, start + 1) > 0 if len(steps) else np.zeros(start.size, bool)
    pageable = memcpy_rows[(kinds == 2) & inside]
    pg = iv.union(trace.ts_ns[pageable], trace.ts_ns[pageable] + trace.dur_ns[pageable])
    # Host time spent in copy calls while pageable copies ran: the copy blocks the host.
    call_rows = np.flatnonzero(trace.mask_names(lambda n: "Memcpy" in n and n.startswith(("cuda", "hip"))))
    calls = iv.union(trace.ts_ns[call_rows], trace.ts_ns[call_rows] + trace.dur_ns[call_rows])
    blocked = iv.intersect(calls, iv.intersect(steps, iv.union(pg.starts - 0, pg.ends))) if len(pg) else iv.empty()
    per = max(n_steps, 1)
    return CopyStats(
        h2d_pageable=int(((kinds == 2) & inside).sum()),
        h2d_pinned=int(((kinds == 1) & inside).sum()),
        h2d_other=int(((kinds == 0) & inside).sum()),
        h2d_pageable_ms_per_step=pg.total / NS_PER_MS / per,
        h2d_pageable_host_blocked_ms_per_step=blocked.total / NS_PER_MS / per,
    )
