"""Per-step DataLoader wait versus GPU activity (SPEC §2), as pure functions over a Trace.

All durations inside are int64 ns; the public result reports ms and fractions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracelens import breakdown
from tracelens import intervals as iv
from tracelens.columnset import StepTable, median_index
from tracelens.model import (
    GPU_ACTIVITY_CATEGORIES,
    RUNTIME_CATEGORIES,
    RowFilter,
    SymbolTable,
    Trace,
)
from tracelens.rowsplit import split_rows
from tracelens.steps import (
    NS_PER_MS,
    Activity,
    StepInputs,
    Steps,
    median_step_breakdown,
    per_step_table,
)

STEP_NAME = re.compile(r"^ProfilerStep#(\d+)$")
DATA_WAIT_NAME = re.compile(r"^enumerate\(DataLoader\)#.*\.__next__$|^enumerate\(DataPipe\)#|^tracelens#next\(")
#: The ``next()`` of whatever feeds the training loop, written by ``tracelens profile`` (any input
#: pipeline); where present it is the data wait, and a DataLoader drawn inside it is not counted twice.
PIPELINE_NEXT_NAME = re.compile(r"^tracelens#next\(")
#: In a trace recorded ``with_stack``, the ``python_function`` frames of known loaders' ``next()``
#: (torchdata.nodes, NVIDIA DALI, FFCV): the data wait when no DataLoader or tracelens event is there.
STACK_NEXT_NAME = re.compile(r"(?:torchdata/nodes/(?:base_node|loader)\.py|nvidia/dali/plugin/pytorch/[\w/]*\.py"
                             r"|ffcv/loader/epoch_iterator\.py)\(\d+\): __next__$")
#: Collective communication on the host (process-group annotations, c10d ops) and the device
#: (NCCL/RCCL kernels). In data-parallel training every rank waits in them for the slowest rank.
COLLECTIVE_NAME = re.compile(r"^(?:nccl|gloo|mpi|ucc|xccl|hccl):|^c10d::|^record_param_comms$|^[nr]cclDev(?:ice)?Kernel|^[nr]cclKernel")
SYNC_NAMES = frozenset(
    {"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize",
     "hipDeviceSynchronize", "hipStreamSynchronize", "hipEventSynchronize"}
)


def reads_name(name: str) -> bool:
    """Whether the analysis reads events of this name (besides steps and GPU activity)."""
    return (DATA_WAIT_NAME.match(name) is not None or COLLECTIVE_NAME.match(name) is not None
            or STEP_NAME.match(name) is not None or name in SYNC_NAMES or _is_copy_call(name)
            or breakdown.reads_name(name) or PIPELINE_NEXT_NAME.match(name) is not None
            or STACK_NEXT_NAME.search(name) is not None)


def _is_copy_call(name: str) -> bool:
    return "Memcpy" in name and name.startswith(("cuda", "hip"))


#: The rows :func:`analyze_trace` reads: load a trace with it to skip the rest (operator events,
#: launches) before they become rows. The fallback steps read every row of one thread:
#: :func:`needs_every_row` says when to load again without it.
ROWS_READ = RowFilter(reads_name, GPU_ACTIVITY_CATEGORIES)

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
    next_wait_ms: np.ndarray = field(repr=False, compare=False)  # each __next__ call inside the steps, in order (ms)
    per_step: StepTable = field(repr=False, compare=False)
    copies: CopyStats = field(default_factory=CopyStats)
    has_gpu_activity: bool = False
    gpu_expected: bool = False  # deviceProperties present or runtime calls seen
    with_stack: bool = False
    category_counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    timeline: StepTimeline | None = None
    bad_time_events: int = 0  # events the loader skipped for an unusable ts or dur
    bad_time_examples: tuple[str, ...] = ()  # a few of them: 'name: dur=-5'
    dropped_steps: int = 0  # of which ProfilerStep# events: the step list is incomplete
    dropped_waits: int = 0  # of which DataLoader __next__ events: waits may be missing
    zero_length_steps: int = 0  # steps of zero duration (they measure nothing)
    collective_ms_per_step: float | None = None  # time inside collectives per step (None: none seen)
    step_breakdown: dict[str, Any] | None = None  # the median step's parts (median_step_breakdown)


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
    if trace.rows is not None:
        raise ValueError("steps between __next__ calls need every row of the trace: load it without a row filter")
    order = np.argsort(trace.ts_ns[nxt], kind="stable")
    idx = nxt[order]
    starts = trace.ts_ns[idx]
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    last = idx[-1]
    same_thread = (trace.pid == trace.pid[last]) & (trace.tid == trace.tid[last])
    ends[-1] = int((trace.ts_ns[same_thread] + trace.dur_ns[same_thread]).max())
    return starts, ends


def _step_mask(trace: Trace) -> np.ndarray:
    """Rows of ``ProfilerStep#N`` events: numbered by the loader, or named so (an N too big
    for int64, or a hand-built trace)."""
    return (trace.step_number >= 0) | trace.mask_names(lambda n: STEP_NAME.match(n) is not None)


def needs_every_row(trace: Trace) -> bool:
    """Whether :func:`analyze_trace` needs rows ``trace`` was loaded without (the steps fall
    back to the intervals between ``__next__`` calls, and the last one ends with its thread)."""
    if trace.rows is None or _step_mask(trace).any():
        return False
    return bool(trace.mask_names(lambda n: DATA_WAIT_NAME.match(n) is not None).any())


def _row_masks(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the host ``ProfilerStep#`` rows, the ``__next__`` rows and the GPU activity."""
    gpu_ann = trace.mask_categories({"gpu_user_annotation"})
    gpu_rows = trace.mask_categories(GPU_ACTIVITY_CATEGORIES)
    step_rows = _step_mask(trace) & ~gpu_ann
    host = ~gpu_ann & ~gpu_rows
    del gpu_ann
    next_rows = trace.mask_names(lambda n: PIPELINE_NEXT_NAME.match(n) is not None) & host
    if not next_rows.any():
        next_rows = trace.mask_names(lambda n: DATA_WAIT_NAME.match(n) is not None) & host
    if not next_rows.any():
        frames = outermost(trace, np.flatnonzero(trace.mask_names(lambda n: STACK_NEXT_NAME.search(n) is not None)
                                                 & host))
        next_rows[frames] = True
    return step_rows, next_rows, gpu_rows


def _rows(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host ``ProfilerStep#`` rows, ``__next__`` rows (indices) and the GPU-activity mask."""
    step_rows, next_rows, gpu_rows = _row_masks(trace)
    return np.flatnonzero(step_rows), np.flatnonzero(next_rows), gpu_rows


def outermost(trace: Trace, rows: np.ndarray) -> np.ndarray:
    """``rows`` without those inside another of them (a pipeline's nodes call each other's
    ``__next__``: the outermost call is the wait the loop sees)."""
    if rows.size < 2:
        return rows
    rows = rows[np.lexsort((-trace.dur_ns[rows], trace.ts_ns[rows]))]
    ends = trace.ts_ns[rows] + trace.dur_ns[rows]
    reach = np.maximum.accumulate(ends)
    inside = np.zeros(rows.size, bool)
    inside[1:] = trace.ts_ns[rows][1:] < reach[:-1]
    return np.sort(rows[~inside])


def profiler_steps(start: np.ndarray, dur: np.ndarray, numbers: np.ndarray,
                   name_ids: Callable[[np.ndarray], np.ndarray], names: SymbolTable) -> Steps:
    """The steps of the ``ProfilerStep#`` rows from their columns in file order: ``start`` and
    ``dur`` (ns; ``dur`` becomes the ends, in place), ``numbers`` (-1 where the loader did not read
    N: hand-built traces) and ``name_ids(positions)``, the name ids of those rows."""
    named = np.flatnonzero(numbers < 0)
    if named.size:
        numbers = numbers.astype(np.int64)  # (a copy, wide enough for any N)
        numbers[named] = [int(STEP_NAME.match(names.names[i]).group(1))  # type: ignore[union-attr]
                          for i in name_ids(named).tolist()]
    if not (start[1:] >= start[:-1]).all():  # out of file order (rare): sorted, stably
        order = np.argsort(start, kind="stable")
        start, dur, numbers = start[order], dur[order], numbers[order]
    return Steps(start, _ends(start, dur), numbers, "profiler_steps", None, int(start.size))


def find_steps(trace: Trace, step_rows: np.ndarray, next_rows: np.ndarray) -> Steps:
    """Host steps: every ``ProfilerStep#``, else the intervals between ``__next__`` calls."""
    if step_rows.size:
        return profiler_steps(trace.ts_ns[step_rows], trace.dur_ns[step_rows], trace.step_number[step_rows],
                              lambda at: trace.name_id[step_rows[at]], trace.names)
    if next_rows.size:
        start, end = _fallback_steps(trace, next_rows)
        return Steps(start, end, np.arange(start.size, dtype=np.int64), "dataloader_next",
                     "no ProfilerStep# events: steps are the intervals between successive DataLoader "
                     "__next__ calls", 0)
    none = np.zeros(0, np.int64)
    return Steps(none, none, none, "none",
                 "no ProfilerStep# and no DataLoader __next__ events: no steps to measure", 0)


def measure_activity(trace: Trace, steps: Steps, next_start: np.ndarray, next_end: np.ndarray,
                     gpu_rows: np.ndarray) -> Activity:
    """Data wait (the ``__next__`` calls from ``next_start`` to ``next_end``, ns), GPU activity
    (kernel/memcpy/memset categories, ``gpu_rows``) and their difference, each a union of
    intervals clipped to the steps."""
    steps_set = iv.union(steps.start, steps.end)
    data_wait = iv.intersect(iv.union(next_start, next_end), steps_set)
    gpu = iv.intersect(_spans(trace, gpu_rows), steps_set)
    coll_rows = np.flatnonzero(trace.mask_names(lambda n: COLLECTIVE_NAME.match(n) is not None))
    collectives = iv.intersect(_spans(trace, coll_rows), steps_set)
    return Activity(steps_set, data_wait, gpu, iv.subtract(data_wait, gpu), bool(gpu_rows.any()), collectives)


def _ends(start: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """``start + dur`` (ns), written over ``dur`` when it is an array of its own."""
    if not dur.flags.writeable or dur.base is not None:
        return start + dur
    dur += start
    return dur


def measure(trace: Trace) -> tuple[Steps, Activity]:
    """The steps of ``trace`` and the SPEC §2 interval sets every metric is computed from."""
    step_rows, next_rows, gpu_rows = _rows(trace)
    steps = find_steps(trace, step_rows, next_rows)
    n_start = trace.ts_ns[next_rows]
    return steps, measure_activity(trace, steps, n_start, _ends(n_start, trace.dur_ns[next_rows]), gpu_rows)


def _spans(trace: Trace, rows: np.ndarray) -> iv.IntervalSet:
    """The union of the events at ``rows`` (indices or a mask), no column of the whole trace made."""
    ts = trace.ts_ns[rows]
    return iv.union(ts, ts + trace.dur_ns[rows])


def per_device(trace: Trace, act: Activity, gpu_rows: np.ndarray, step_time_ns: int) -> tuple[DeviceActivity, ...]:
    """GPU activity and exposed wait of each device (pid) on its own."""
    if not act.has_gpu:
        return ()
    gpids = trace.pid[gpu_rows]
    devices = []
    for dev in sorted(set(gpids.tolist())):
        rows = np.flatnonzero(gpu_rows)[gpids == dev]
        busy = iv.intersect(_spans(trace, rows), act.steps)
        exposed = iv.subtract(act.data_wait, busy)
        devices.append(DeviceActivity(
            device=int(dev), label=_device_label(trace, int(dev)), busy_ms=busy.total / NS_PER_MS,
            busy_fraction=busy.total / step_time_ns if step_time_ns else 0.0,
            exposed_data_wait_fraction=exposed.total / step_time_ns if step_time_ns else 0.0))
    return tuple(devices)


def host_syncs_ms_per_step(trace: Trace, act: Activity, steps: Steps) -> float | None:
    """Host time in device/stream/event synchronizations per step (ms)."""
    if not steps.time_ns:
        return None
    rows = np.flatnonzero(trace.mask_names(lambda n: n in SYNC_NAMES))
    sync = iv.intersect(iv.union(trace.ts_ns[rows], trace.ts_ns[rows] + trace.dur_ns[rows]), act.steps)
    return sync.total / NS_PER_MS / max(steps.count, 1)


def step_timeline(steps: Steps, act: Activity, middle: int | None = None) -> StepTimeline | None:
    """The step of median duration as intervals, ms from its start (``middle``: its index, when
    the caller has it)."""
    if not steps.count:
        return None
    k = median_index(steps.end - steps.start) if middle is None else middle
    lo, hi = int(steps.start[k]), int(steps.end[k])
    waits, g1 = _timeline_intervals(act.data_wait, lo, hi)
    busy, g2 = _timeline_intervals(act.gpu, lo, hi)
    shown, g3 = _timeline_intervals(act.exposed, lo, hi)
    return StepTimeline(int(steps.numbers[k]), (hi - lo) / NS_PER_MS, waits, busy, shown,
                        bool(g1 or g2 or g3), max(g1, g2, g3))


def dropped(trace: Trace) -> tuple[int, int]:
    """Step and ``__next__`` events the loader skipped for an unusable ts or dur."""
    names = trace.stats.bad_time_names
    steps = sum(n for name, n in names.items() if STEP_NAME.match(name))
    waits = sum(n for name, n in names.items() if DATA_WAIT_NAME.match(name))
    return steps, waits


def trace_warnings(trace: Trace, has_gpu: bool, gpu_expected: bool) -> tuple[str, ...]:
    """What the reader of the numbers should know about the file."""
    warnings = []
    steps, waits = dropped(trace)
    if steps or waits:
        warnings.append(f"{steps} ProfilerStep# and {waits} DataLoader __next__ event(s) had unusable times and "
                        "were dropped: the steps and waits measured are incomplete")
    if trace.stats.truncated:
        warnings.append("the file is truncated: analyzed up to its last complete event")
    if trace.stats.skipped_malformed:
        warnings.append(f"{trace.stats.skipped_malformed} malformed event(s) skipped")
    if gpu_expected and not has_gpu and trace.meta.device_properties:
        warnings.append("the trace lists GPUs but holds no kernel or memcpy events")
    return tuple(warnings)


def analyze_trace(trace: Trace) -> TraceAnalysis:
    """Measure host steps, data wait, GPU activity and exposed wait in ``trace`` (SPEC §2)."""
    return with_steps(*measure_trace(trace))


@dataclass(frozen=True)
class Measured:
    """A :class:`TraceAnalysis` but its per-step table and ``__next__`` waits: the keyword
    arguments of the rest (the table grows with the steps: it is built once the caller has let
    the trace go)."""

    fields: dict[str, Any]


def with_steps(measured: Measured, inputs: StepInputs) -> TraceAnalysis:
    """The analysis, with its per-step table and ``__next__`` waits built from ``inputs``."""
    return with_table(measured, *per_step_table(inputs))


def with_table(measured: Measured, per_step: StepTable, next_wait: np.ndarray) -> TraceAnalysis:
    """The analysis from its per-step table (a caller may let the table's inputs go first)."""
    return TraceAnalysis(**measured.fields, per_step=per_step, next_wait_ms=next_wait,
                         step_breakdown=median_step_breakdown(per_step))


def measure_trace(trace: Trace) -> tuple[Measured, StepInputs]:
    """Everything :func:`analyze_trace` reads from the rows of ``trace``: the analysis without
    its per-step table and waits, and what :func:`with_steps` builds them from, so that a caller
    can let the trace go first (the table grows with the steps, as the trace does)."""
    step_rows, next_rows, _ = _rows(trace)
    steps = find_steps(trace, step_rows, next_rows)
    del step_rows
    n_start = trace.ts_ns[next_rows]
    taken = Taken(steps, n_start, _ends(n_start, trace.dur_ns[next_rows]), _names_of(trace, trace.name_id[next_rows]))
    return _measure(trace, taken)


def measure_owned(box: list[Trace]) -> tuple[Measured, StepInputs]:
    """:func:`measure_trace` of the trace in ``box``, taken out of it. With ``box`` its only
    holder, the step and ``__next__`` rows are split out of the trace a column at a time
    (:func:`tracelens.rowsplit.split_rows`), each column freed once split: a trace of millions of
    small steps is never held beside its steps. Same results as :func:`measure_trace`."""
    trace = box[0]
    step_rows, next_rows, gpu_rows = _row_masks(trace)
    if not step_rows.any() or (step_rows & gpu_rows).any():  # steps between __next__ calls read every row
        del trace, step_rows, next_rows, gpu_rows
        return measure_trace(box.pop())
    del gpu_rows
    named = bool(np.any(step_rows & (trace.step_number < 0)))
    names = trace.names
    del trace
    rest, (s, nx) = split_rows(box, [(step_rows, ("ts_ns", "dur_ns", "step_number") + (("name_id",) if named else ())),
                                     (next_rows, ("ts_ns", "dur_ns", "name_id"))])
    del step_rows, next_rows
    steps = profiler_steps(s.pop("ts_ns"), s.pop("dur_ns"), s.pop("step_number"), lambda at: s["name_id"][at], names)
    n_start = nx.pop("ts_ns")
    taken = Taken(steps, n_start, _ends(n_start, nx.pop("dur_ns")), _names_of(rest, nx.pop("name_id")))
    return _measure(rest, taken)


@dataclass(frozen=True)
class Taken:
    """What the analysis reads of the step and ``__next__`` rows, as columns of their own."""

    steps: Steps
    next_start: np.ndarray  # ns, in file order
    next_end: np.ndarray  # ns
    next_names: tuple[str, ...]  # the distinct names of the __next__ rows, sorted


def _names_of(trace: Trace, name_ids: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted({trace.names.names[i] for i in np.unique(name_ids).tolist()}))


def _measure(trace: Trace, taken: Taken) -> tuple[Measured, StepInputs]:
    """The analysis of ``trace`` (or of its rows but the steps and waits) given those in ``taken``."""
    steps = taken.steps
    durations = steps.end - steps.start
    median_ms = float(np.median(durations)) / NS_PER_MS if steps.count else None
    middle = median_index(durations) if steps.count else None
    zero_length = int((durations <= 0).sum())
    del durations
    iter_names = list(taken.next_names)
    n_next = int(taken.next_start.size)
    gpu_rows = trace.mask_categories(GPU_ACTIVITY_CATEGORIES)
    act = measure_activity(trace, steps, taken.next_start, taken.next_end, gpu_rows)
    step_time, n_steps = steps.time_ns, steps.count
    has_gpu = act.has_gpu
    cat_counts = trace.stats.category_counts
    runtime_calls = any(cat_counts.get(c, 0) for c in RUNTIME_CATEGORIES)
    gpu_expected = bool(trace.meta.device_properties) or runtime_calls or has_gpu
    inputs = StepInputs(steps, act, taken.next_start, taken.next_end,
                        breakdown.host_spans(trace, breakdown.OPTIMIZER_NAME),
                        breakdown.host_spans(trace, breakdown.BACKWARD_NAME))

    def frac(x: int) -> float | None:
        return x / step_time if step_time else None

    exposed_frac = frac(act.exposed.total)
    fields: dict[str, Any] = dict(
        path=trace.meta.path, format=trace.meta.format, truncated=trace.stats.truncated,
        skipped_events=trace.stats.skipped_malformed, events=trace.stats.events_total, rank=_rank(trace),
        devices=per_device(trace, act, gpu_rows, step_time), step_source=steps.source,
        fallback=steps.fallback, steps=steps.profiler_steps, measured_steps=n_steps,
        step_time_ms=step_time / NS_PER_MS if n_steps else None,
        step_time_ms_median=median_ms,
        data_wait_fraction=frac(act.data_wait.total),
        exposed_data_wait_fraction=exposed_frac,
        gpu_busy_fraction=frac(act.gpu.total) if has_gpu else None,
        speedup_ceiling=1.0 / (1.0 - exposed_frac) if exposed_frac is not None and exposed_frac < 1 else None,
        gpu_idle_other_fraction=(step_time - iv.combine(act.gpu, act.data_wait).total) / step_time
        if step_time and has_gpu else None,
        sync_ms_per_step=host_syncs_ms_per_step(trace, act, steps),
        iterator=_iterator_kind(iter_names) if iter_names else "unknown",
        iterator_names=tuple(iter_names), next_calls=n_next,
        copies=_copy_stats(trace, gpu_rows, act.steps, n_steps),
        has_gpu_activity=has_gpu, gpu_expected=gpu_expected,
        with_stack=bool(trace.meta.with_stack) or cat_counts.get("python_function", 0) + cat_counts.get("python", 0) > 0,
        category_counts=cat_counts, warnings=trace_warnings(trace, has_gpu, gpu_expected),
        timeline=step_timeline(steps, act, middle),
        bad_time_events=trace.stats.bad_time_events,
        bad_time_examples=tuple(f"{b.name}: {b.field}={b.value}" for b in trace.stats.bad_time_examples),
        dropped_steps=dropped(trace)[0], dropped_waits=dropped(trace)[1],
        zero_length_steps=zero_length,
        collective_ms_per_step=act.collectives.total / NS_PER_MS / n_steps if n_steps and len(act.collectives) else None,
    )
    return Measured(fields), inputs


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
