"""The host steps, what happens within them, and the per-step table built from them.

:class:`Steps` are the host steps (or what stands in for them), :class:`Activity` the SPEC §2
interval sets clipped to them (ns); :func:`per_step_table` measures each step (ms) into a
:class:`StepTable` of numpy columns, a block at a time, so that millions of steps cost their
columns and a few MB besides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tracelens import breakdown
from tracelens import intervals as iv
from tracelens.breakdown import READING_ORDER, step_parts
from tracelens.columnset import ColumnSet, StepTable, ranked_index

NS_PER_MS = 1e6

STEP_COLUMNS = [
    "step", "start_ms", "duration_ms", "data_wait_ms", "gpu_busy_ms", "exposed_wait_ms",
    "next_calls", "next_longest_ms", "collective_ms",
]
#: The step breakdown's columns (``breakdown.py``): disjoint parts summing to ``duration_ms``.
BREAKDOWN_COLUMNS = [f"part_{k}" for k in READING_ORDER]


@dataclass(frozen=True)
class Steps:
    """The host steps of a trace (ns), or the fallback standing in for them."""

    start: np.ndarray
    end: np.ndarray
    numbers: np.ndarray  # integers, each step's N
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


@dataclass(frozen=True)
class StepInputs:
    """What the per-step table is built from: the steps, the activity clipped to them, and the
    ``__next__`` calls (start and end, ns). It holds no reference to the trace."""

    steps: Steps
    act: Activity
    next_start: np.ndarray
    next_end: np.ndarray
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
    return per_step_table_owned([inputs])


def per_step_table_owned(box: list[StepInputs]) -> tuple[StepTable, np.ndarray]:
    """:func:`per_step_table` of the inputs in ``box``, taken out of it. With ``box`` their only
    holder, the ``__next__`` calls and the activity are freed once their columns are built,
    before the steps' own columns are made."""
    inputs = box.pop()
    steps, act, n_start, n_end = inputs.steps, inputs.act, inputs.next_start, inputs.next_end
    optimizer, backward = inputs.optimizer, inputs.backward
    del inputs
    s_start, s_end, n = steps.start, steps.end, steps.count
    gpu, collectives, has_gpu = act.gpu, act.collectives, act.has_gpu
    cols = ColumnSet()

    def ms_within(s: iv.IntervalSet) -> np.ndarray:
        return iv.measure_within(s, s_start, s_end, NS_PER_MS) if len(s) else np.broadcast_to(0.0, (n,))

    data_wait = cols.add(ms_within(act.data_wait))
    parts = {f"part_{k}": cols.add(v) for k, v in
             step_parts(optimizer, backward, s_start, s_end, act.data_wait, act.exposed, collectives, data_wait).items()}
    exposed = data_wait if act.exposed is act.data_wait else cols.add(ms_within(act.exposed))
    del act, optimizer, backward
    counts, longest, next_wait = _next_columns(s_start, s_end, n_start, n_end, cols)
    del n_start, n_end
    origin = int(s_start[0]) if n else 0
    columns: dict[str, np.ndarray] = {
        "step": steps.numbers,
        "start_ms": _ms(s_start, origin),
        "duration_ms": _ms(s_end, s_start),
        "data_wait_ms": data_wait,
        "gpu_busy_ms": cols.add(ms_within(gpu)) if has_gpu else np.broadcast_to(np.nan, (n,)),
        "exposed_wait_ms": exposed,
        "next_calls": counts,
        "next_longest_ms": longest,
        "collective_ms": cols.add(ms_within(collectives)),
        **parts,
    }
    table = StepTable({k: columns[k] for k in STEP_COLUMNS + BREAKDOWN_COLUMNS})
    return table, next_wait


_BLOCK = 1 << 16  # rows at a time in the per-step columns' arithmetic: temporaries of a few MB


def _ms(end: np.ndarray, start: np.ndarray | int) -> np.ndarray:
    """``(end - start) / NS_PER_MS`` (ms, float64), a block at a time: no int64 temporary as long
    as the steps."""
    out = np.empty(end.shape, np.float64)
    for lo in range(0, end.size, _BLOCK):
        d = end[lo : lo + _BLOCK] - (start if isinstance(start, int) else start[lo : lo + _BLOCK])
        np.divide(d, NS_PER_MS, out=out[lo : lo + _BLOCK])
    return out


def _next_columns(s_start: np.ndarray, s_end: np.ndarray, n_start: np.ndarray, n_end: np.ndarray,
                  cols: ColumnSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step, the ``__next__`` calls starting in it and the longest of them (ms); and every call
    inside a step, in start order (ms); each kept once in ``cols``. A block of calls at a time
    (the steps are sorted and disjoint): besides the columns, the temporaries stay a few MB."""
    n = s_start.size
    if n and n_start.size == n and _one_call_each(s_start, s_end, n_start):
        # call i in step i for every i (the usual trace): counts of 1, and each step's longest
        # call is its call; with the waits inside their steps, they are the data wait's column
        waits = cols.add_computed(n, lambda lo, hi: (n_end[lo:hi] - n_start[lo:hi]) / NS_PER_MS, _BLOCK)
        return cols.add(np.broadcast_to(np.int64(1), (n,))), waits, waits
    counts = np.zeros(n, np.int64)
    waits = np.empty(n_start.size)
    kept = 0
    for lo in range(0, n_start.size if n else 0, _BLOCK):
        which, ms = _calls_in_steps(s_start, s_end, n_start[lo : lo + _BLOCK], n_end[lo : lo + _BLOCK])
        np.add.at(counts, which, 1)
        waits[kept : kept + ms.size] = ms
        kept += ms.size
    counts = cols.add(counts)
    waits = waits if kept == waits.size else waits[:kept].copy()
    if kept == n and counts.strides == (0,) and (n_start[1:] >= n_start[:-1]).all():
        longest = waits  # one call in each step, in step order: each step's longest call is its call
    else:  # a second pass, so that the counts (mostly one value) are let go before this column is made
        longest = np.zeros(n)
        for lo in range(0, n_start.size if n else 0, _BLOCK):
            which, ms = _calls_in_steps(s_start, s_end, n_start[lo : lo + _BLOCK], n_end[lo : lo + _BLOCK])
            np.maximum.at(longest, which, ms)
    longest = cols.add(longest)
    if waits.size and not (n_start[1:] >= n_start[:-1]).all():  # calls out of start order (rare)
        inside = np.concatenate([_calls_in_steps(s_start, s_end, n_start[lo : lo + _BLOCK],
                                                 n_end[lo : lo + _BLOCK], mask=True)[1]
                                 for lo in range(0, n_start.size, _BLOCK)])
        waits = waits[np.argsort(n_start[inside], kind="stable")]
    return counts, longest, cols.add(waits)


def _one_call_each(s_start: np.ndarray, s_end: np.ndarray, n_start: np.ndarray) -> bool:
    """Whether call i starts inside step i and before step i + 1, for every i (a block at a time)."""
    n = s_start.size
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        start = n_start[lo:hi]
        if not ((s_start[lo:hi] <= start) & (start < s_end[lo:hi])).all():
            return False
        if not (start[: hi - lo - (hi == n)] < s_start[lo + 1 : hi + (hi < n)]).all():
            return False
    return True


def _calls_in_steps(s_start: np.ndarray, s_end: np.ndarray, start: np.ndarray, end: np.ndarray,
                    mask: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For the calls ``[start, end)`` that start inside a step: the step's index and the call's
    length (ms); with ``mask``, the mask of those calls instead of their lengths."""
    which = np.searchsorted(s_start, start, side="right") - 1
    inside = which >= 0
    inside &= start < s_end[np.maximum(which, 0)]
    if mask:
        return which[inside], inside
    ms = end - start
    if not inside.all():
        which, ms = which[inside], ms[inside]
    return which, ms / NS_PER_MS


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
