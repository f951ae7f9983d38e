"""Per-step DataLoader wait versus GPU activity (SPEC §2), as pure functions over a Trace.

All durations inside are int64 ns; the public result reports ms and fractions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracelens import breakdown
from tracelens import intervals as iv
from tracelens.breakdown import READING_ORDER, step_parts
from tracelens.columnset import ColumnSet, StepTable, median_index, ranked_index
from tracelens.model import GPU_ACTIVITY_CATEGORIES, RUNTIME_CATEGORIES, RowFilter, Trace

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
NS_PER_MS = 1e6


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

STEP_COLUMNS = [
    "step", "start_ms", "duration_ms", "data_wait_ms", "gpu_busy_ms", "exposed_wait_ms",
    "next_calls", "next_longest_ms", "collective_ms",
]
#: The step breakdown's columns (``breakdown.py``): disjoint parts summing to ``duration_ms``.
BREAKDOWN_COLUMNS = [f"part_{k}" for k in READING_ORDER]


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


@dataclass(frozen=True)
class Steps:
    """The host steps of a trace (ns), or the fallback standing in for them."""

    start: np.ndarray
    end: np.ndarray
    numbers: np.ndarray  # int64, each step's N
    source: str  # "profiler_steps", "dataloader_next" or "none"
    fallback: str | None
    profiler_steps: int  # ProfilerStep# events found (0 with a fallback)

    @property
    def count(self) -> int:
        return int(self.start.size)

    @property
    def time_ns(self) -> int:
        return int((self.end - self.start).sum())


@dataclass(frozen=True)
class Activity:
    """The SPEC §2 interval sets, clipped to the steps."""

    steps: iv.IntervalSet
    data_wait: iv.IntervalSet
    gpu: iv.IntervalSet
    exposed: iv.IntervalSet  # data wait with no GPU activity
    has_gpu: bool
    collectives: iv.IntervalSet  # time inside collective communication (any thread or device)


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


def _rows(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host ``ProfilerStep#`` rows, ``__next__`` rows and the GPU-activity mask."""
    gpu_ann = trace.mask_categories({"gpu_user_annotation"})
    gpu_rows = trace.mask_categories(GPU_ACTIVITY_CATEGORIES)
    step_rows = np.flatnonzero(_step_mask(trace) & ~gpu_ann)
    host = ~gpu_ann & ~gpu_rows
    pipeline = trace.mask_names(lambda n: PIPELINE_NEXT_NAME.match(n) is not None) & host
    next_rows = np.flatnonzero(pipeline if pipeline.any() else
                               trace.mask_names(lambda n: DATA_WAIT_NAME.match(n) is not None) & host)
    if not next_rows.size:
        next_rows = outermost(trace, np.flatnonzero(trace.mask_names(lambda n: STACK_NEXT_NAME.search(n) is not None)
                                                    & host))
    return step_rows, next_rows, gpu_rows


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


def find_steps(trace: Trace, step_rows: np.ndarray, next_rows: np.ndarray) -> Steps:
    """Host steps: every ``ProfilerStep#``, else the intervals between ``__next__`` calls."""
    if step_rows.size:
        start = trace.ts_ns[step_rows]
        if (start[1:] >= start[:-1]).all():  # in file order already (the usual case): no sort
            rows = step_rows
        else:
            rows = step_rows[np.argsort(start, kind="stable")]
            start = trace.ts_ns[rows]
        numbers = trace.step_number[rows]
        named = np.flatnonzero(numbers < 0)
        if named.size:  # numbers the loader did not read (hand-built traces)
            numbers = numbers.copy()
            numbers[named] = [int(STEP_NAME.match(trace.names.names[i]).group(1))  # type: ignore[union-attr]
                              for i in trace.name_id[rows[named]].tolist()]
        end = trace.dur_ns[rows]
        end += start
        return Steps(start, end, numbers, "profiler_steps", None, int(step_rows.size))
    if next_rows.size:
        start, end = _fallback_steps(trace, next_rows)
        return Steps(start, end, np.arange(start.size, dtype=np.int64), "dataloader_next",
                     "no ProfilerStep# events: steps are the intervals between successive DataLoader "
                     "__next__ calls", 0)
    none = np.zeros(0, np.int64)
    return Steps(none, none, none, "none",
                 "no ProfilerStep# and no DataLoader __next__ events: no steps to measure", 0)


def measure_activity(trace: Trace, steps: Steps, next_rows: np.ndarray, gpu_rows: np.ndarray,
                     next_calls: tuple[np.ndarray, np.ndarray] | None = None) -> Activity:
    """Data wait (``__next__`` by name), GPU activity (kernel/memcpy/memset categories) and their
    difference, each a union of intervals clipped to the steps. ``next_calls``: the start and
    duration (ns) of the rows ``next_rows``, when the caller has gathered them already."""
    steps_set = iv.union(steps.start, steps.end)
    n_start, n_dur = next_calls if next_calls is not None else (trace.ts_ns[next_rows], trace.dur_ns[next_rows])
    data_wait = iv.intersect(iv.union(n_start, n_start + n_dur), steps_set)
    del n_start, n_dur
    gpu = iv.intersect(_spans(trace, gpu_rows), steps_set)
    coll_rows = np.flatnonzero(trace.mask_names(lambda n: COLLECTIVE_NAME.match(n) is not None))
    collectives = iv.intersect(_spans(trace, coll_rows), steps_set)
    return Activity(steps_set, data_wait, gpu, iv.subtract(data_wait, gpu), bool(gpu_rows.any()), collectives)


def measure(trace: Trace) -> tuple[Steps, Activity]:
    """The steps of ``trace`` and the SPEC §2 interval sets every metric is computed from."""
    step_rows, next_rows, gpu_rows = _rows(trace)
    steps = find_steps(trace, step_rows, next_rows)
    return steps, measure_activity(trace, steps, next_rows, gpu_rows)


def _spans(trace: Trace, rows: np.ndarray) -> iv.IntervalSet:
    """The union of the events at ``rows`` (indices or a mask), no column of the whole trace made."""
    ts = trace.ts_ns[rows]
    return iv.union(ts, ts + trace.dur_ns[rows])


@dataclass(frozen=True)
class StepInputs:
    """What the per-step table is built from: the steps, the activity clipped to them, and the
    ``__next__`` calls (start and duration, ns). It holds no reference to the trace."""

    steps: Steps
    act: Activity
    next_start: np.ndarray
    next_dur: np.ndarray
    optimizer: breakdown.Spans  # Optimizer.step/zero_grad events (breakdown.host_spans)
    backward: breakdown.Spans  # autograd events


def per_step_table(inputs: StepInputs) -> tuple[StepTable, np.ndarray]:
    """The per-step table (ms) and every ``__next__`` wait inside the steps, in order (ms).

    Memory grows only by the distinct columns a trace has: a column with one value for every
    step (no GPU activity: ``gpu_busy_ms`` NaN; no collectives: ``collective_ms`` 0; one
    ``__next__`` a step: ``next_calls`` 1) is a read-only broadcast, and a column equal bit for
    bit to one already built is that one, shared (``exposed_wait_ms`` is ``data_wait_ms`` when
    the GPU is never busy; with one wait a step, ``next_longest_ms`` and the waits are too).
    The step breakdown is built first, so its intermediates are gone before the rest is made.
    """
    steps, act = inputs.steps, inputs.act
    s_start, s_end, n = steps.start, steps.end, steps.count
    n_start, n_dur = inputs.next_start, inputs.next_dur
    cols = ColumnSet()

    def ms_within(s: iv.IntervalSet) -> np.ndarray:
        return iv.measure_within(s, s_start, s_end, NS_PER_MS) if len(s) else np.broadcast_to(0.0, (n,))

    data_wait = cols.add(ms_within(act.data_wait))
    parts = {f"part_{k}": cols.add(v) for k, v in
             step_parts(inputs.optimizer, inputs.backward, s_start, s_end, act.data_wait, act.exposed,
                        act.collectives, data_wait).items()}
    which = np.searchsorted(s_start, n_start, side="right") - 1
    inside = (which >= 0) & (n_start < s_end[np.clip(which, 0, None)]) if n else np.zeros(n_start.size, bool)
    every = bool(inside.all())
    if not every:
        which = which[inside]
    counts = cols.add(np.bincount(which, minlength=n).astype(np.int64, copy=False) if n else np.zeros(0, np.int64))
    longest = np.zeros(n)
    if n and which.size:
        np.maximum.at(longest, which, (n_dur if every else n_dur[inside]) / NS_PER_MS)
    del which
    longest = cols.add(longest)
    in_order = np.argsort(n_start if every else n_start[inside], kind="stable")
    next_wait = cols.add((n_dur if every else n_dur[inside])[in_order] / NS_PER_MS)
    del in_order, inside
    origin = int(s_start[0]) if n else 0
    columns: dict[str, np.ndarray] = {
        "step": steps.numbers,
        "start_ms": (s_start - origin) / NS_PER_MS,
        "duration_ms": (s_end - s_start) / NS_PER_MS,
        "data_wait_ms": data_wait,
        "gpu_busy_ms": cols.add(ms_within(act.gpu)) if act.has_gpu else np.broadcast_to(np.nan, (n,)),
        "exposed_wait_ms": data_wait if act.exposed is act.data_wait else cols.add(ms_within(act.exposed)),
        "next_calls": counts,
        "next_longest_ms": longest,
        "collective_ms": cols.add(ms_within(act.collectives)),
        **parts,
    }
    table = StepTable({k: columns[k] for k in STEP_COLUMNS + BREAKDOWN_COLUMNS})
    return table, next_wait


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


def median_step_breakdown(per_step: StepTable) -> dict[str, Any] | None:
    """The median step split into its parts (ms, summing to ``step_ms``, which equals
    ``step_time_ms_median``): the middle step by duration, or the mean of the two middle ones
    when the count is even; with its GPU busy time where the trace has GPU activity (not a
    part: it runs beside them). ``steps`` names the step(s) it is made of."""
    if per_step.empty:
        return None
    dur, n = per_step["duration_ms"], len(per_step)
    middle = per_step.take(sorted({ranked_index(dur, (n - 1) // 2), ranked_index(dur, n // 2)}))
    gpu = middle["gpu_busy_ms"]
    return {"steps": [int(x) for x in middle["step"]], "step_ms": float(middle["duration_ms"].mean()),
            **{c.removeprefix("part_"): float(middle[c].mean()) for c in BREAKDOWN_COLUMNS},
            "gpu_busy_ms": None if np.isnan(gpu).any() else float(gpu.mean())}


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
    step_rows, next_rows, gpu_rows = _rows(trace)
    steps = find_steps(trace, step_rows, next_rows)
    del step_rows
    # what the step durations give, before the __next__ columns are gathered (memory peaks there)
    durations = steps.end - steps.start
    median_ms = float(np.median(durations)) / NS_PER_MS if steps.count else None
    middle = median_index(durations) if steps.count else None
    zero_length = int((durations <= 0).sum())
    del durations
    # the __next__ calls gathered once: their starts are the data wait's own (already sorted)
    next_calls = trace.ts_ns[next_rows], trace.dur_ns[next_rows]
    iter_names = sorted({trace.names.names[i] for i in np.unique(trace.name_id[next_rows]).tolist()})
    n_next = int(next_rows.size)
    act = measure_activity(trace, steps, next_rows, gpu_rows, next_calls)
    del next_rows
    step_time, n_steps = steps.time_ns, steps.count
    has_gpu = act.has_gpu
    cat_counts = trace.stats.category_counts
    runtime_calls = any(cat_counts.get(c, 0) for c in RUNTIME_CATEGORIES)
    gpu_expected = bool(trace.meta.device_properties) or runtime_calls or has_gpu
    inputs = StepInputs(steps, act, *next_calls,
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
