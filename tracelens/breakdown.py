"""Where each step's time goes: data wait (exposed, hidden), forward, backward, optimizer,
collectives and other, from the trace's own events.

Each step's wall time is split into disjoint parts, so the parts sum to the step exactly. Where
two kinds of work overlap in time, the first of this order claims it:

1. **data wait**: the DataLoader ``__next__`` intervals; *exposed* where no GPU activity runs
   meanwhile (SPEC §2), *hidden* where it does;
2. **optimizer**: ``Optimizer.step#…`` and ``Optimizer.zero_grad#…`` (any host thread);
3. **backward**: from the step's first to its last autograd event
   (``autograd::engine::evaluate_function: …``, ``…Backward0``); on a GPU the engine runs in
   its own thread while the main thread waits, so the span counts, not only the ops;
4. **collectives**: collective communication (``nccl:…``, ``c10d::…``, NCCL kernels) not
   already counted above (DDP's all-reduce overlaps the backward and is counted there);
5. **forward**: from the end of the step's last data wait to the start of its backward (or its
   optimizer step, or the step's end when it has neither);
6. **other**: the rest (logging, checkpoints, the host between the optimizer and the next batch).

Pure functions over the columnar trace; times are int64 ns, results ms.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from tracelens import intervals as iv
from tracelens.model import GPU_SIDE_CATEGORIES, Trace

OPTIMIZER_NAME = re.compile(r"^Optimizer\.(?:step|zero_grad)#")
BACKWARD_NAME = re.compile(r"^autograd::engine::evaluate_function: |Backward\d*$")
#: The parts of a step, in the order they claim overlapping time; their ms sum to the step.
PARTS = ("data_wait_exposed_ms", "data_wait_hidden_ms", "optimizer_ms", "backward_ms", "collective_ms",
         "forward_ms", "other_ms")
#: The same parts in the order a reader follows a step (and the JSON lists them).
READING_ORDER = ("data_wait_exposed_ms", "data_wait_hidden_ms", "forward_ms", "backward_ms", "optimizer_ms",
                 "collective_ms", "other_ms")
NS_PER_MS = 1e6


#: Start and end (ns) of a set of host events, in trace order.
Spans = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


def reads_name(name: str) -> bool:
    """Whether the breakdown reads events of this name (the loader's row filter keeps them)."""
    return OPTIMIZER_NAME.search(name) is not None or BACKWARD_NAME.search(name) is not None


def host_spans(trace: Trace, pattern: re.Pattern[str]) -> Spans:
    """Start and end (ns) of the host events whose name matches ``pattern``: what
    :func:`step_parts` needs of the trace, so the trace can be released before the steps are."""
    rows = np.flatnonzero(trace.mask_names(lambda n: pattern.search(n) is not None))
    # the category test on the matching rows only: no second mask the size of the trace
    rows = rows[~np.isin(trace.cat_id[rows], trace.cats.ids_where(lambda c: c in GPU_SIDE_CATEGORIES))]
    ts = trace.ts_ns[rows]
    return ts, ts + trace.dur_ns[rows]


_HULL_BLOCK = 1 << 16  # steps at a time: the temporaries stay a few MB however many steps


def _per_step_hull(starts: np.ndarray, ends: np.ndarray, s_start: np.ndarray,
                   s_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each step, the first start and last end of the events starting inside it (clipped to
    the step); steps without any get an empty interval at their end. Vectorized, a block of
    steps at a time: the events of step k are ``[a[k], b[k])`` in start order, their last end
    one ``maximum.reduceat``. The arrays returned are only read (without events, both are
    ``s_end`` itself)."""
    if starts.size == 0:
        return s_end, s_end
    lo, hi = s_end.copy(), s_end.copy()
    if not (starts[1:] >= starts[:-1]).all():
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        del order
    for first in range(0, s_start.size, _HULL_BLOCK):
        window = slice(first, first + _HULL_BLOCK)
        a = np.searchsorted(starts, s_start[window], side="left")
        b = np.searchsorted(starts, s_end[window], side="left")
        k = np.flatnonzero(b > a)
        if not k.size:
            continue
        a, b = a[k], b[k]
        k += first
        lo[k] = starts[a]
        # reduceat over (a0, b0, a1, b1, ...) within the block's events: the even slots are
        # max(ends[a:b]) (a < b), the odd ones are discarded; one element more lets b reach the end.
        base = int(a.min())
        events = np.append(ends[base : int(b.max())], 0)
        bounds = np.empty(2 * k.size, np.intp)
        bounds[0::2], bounds[1::2] = a - base, b - base
        del a, b
        last = np.maximum.reduceat(events, bounds)[0::2]
        hi[k] = np.minimum(last, s_end[k])
    return lo, hi


def step_parts(opt: Spans, back: Spans, s_start: np.ndarray, s_end: np.ndarray, data_wait: iv.IntervalSet,
               exposed: iv.IntervalSet, collectives: iv.IntervalSet,
               data_wait_ms: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each step's time split into :data:`PARTS` (ms per step, summing to the step's duration),
    from the optimizer and backward events' spans (:func:`host_spans`). ``data_wait_ms``, the
    measure of ``data_wait`` in each step when the caller has it, is reused where the exposed
    wait is the whole wait (no GPU). Intermediates are dropped as soon as they are used: the
    steps may number millions."""
    n = int(s_start.size)
    if n == 0:
        return {k: np.zeros(0) for k in PARTS}
    steps = iv.union(s_start, s_end)
    optimizer = iv.subtract(iv.intersect(iv.union(*opt), steps), data_wait)
    del steps
    b_lo, b_hi = _per_step_hull(back[0], back[1], s_start, s_end)
    claimed = iv.combine(data_wait, optimizer)
    backward = iv.subtract(iv.union(b_lo, b_hi), claimed)
    del b_hi
    claimed = iv.combine(claimed, backward)
    coll = iv.subtract(collectives, claimed)
    claimed = iv.combine(claimed, coll)
    # forward: after the step's last data wait, until its backward (else optimizer, else its end)
    w_lo, f_lo = _per_step_hull(data_wait.starts, data_wait.ends, s_start, s_end)
    if f_lo is s_end:  # no waits: every forward starts with its step
        f_lo = s_start
    else:  # the last wait's end, or the step's start where it has none (in place: no third column)
        np.copyto(f_lo, s_start, where=w_lo >= s_end)
    del w_lo
    o_lo, _ = _per_step_hull(optimizer.starts, optimizer.ends, s_start, s_end)
    f_hi = np.where(b_lo < s_end, b_lo, o_lo)
    del b_lo, o_lo, _
    np.maximum(f_hi, f_lo, out=f_hi)
    forward = iv.subtract(iv.union(f_lo, f_hi), claimed)
    del f_lo, f_hi, claimed
    hidden = iv.subtract(data_wait, exposed)
    parts = {
        "data_wait_exposed_ms": exposed, "data_wait_hidden_ms": hidden, "optimizer_ms": optimizer,
        "backward_ms": backward, "collective_ms": coll, "forward_ms": forward,
    }
    del hidden, optimizer, backward, coll, forward
    # An empty part (no optimizer, no GPU, no collectives) is a read-only broadcast of 0: memory
    # grows only by the parts a trace really has.
    out: dict[str, np.ndarray] = {}
    for k in PARTS[:-1]:
        s = parts.pop(k)
        if data_wait_ms is not None and s is data_wait:
            out[k] = data_wait_ms
        else:
            out[k] = iv.measure_within(s, s_start, s_end, NS_PER_MS) if len(s) else np.broadcast_to(0.0, (n,))
        del s
    # other: the step's duration less the parts, added in PARTS order (the same sums as ever)
    other = (s_end - s_start) / NS_PER_MS
    total = out[PARTS[0]].copy()
    for k in PARTS[1:-1]:
        total += out[k]
    other -= total
    del total
    out["other_ms"] = np.maximum(other, 0.0, out=other)
    return out
