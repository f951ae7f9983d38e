"""Interval sets as sorted, disjoint ``(starts, ends)`` int64 arrays (half-open, ns).

Every function is pure and vectorized; inputs need not be sorted unless stated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]

_BLOCK = 1 << 18  # windows measured at a time by measure_within
_MIN, _MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max  # the gaps around a set


class IntervalSet(NamedTuple):
    """A union of half-open intervals ``[starts[i], ends[i])``, sorted and disjoint."""

    starts: Int64Array
    ends: Int64Array

    @property
    def total(self) -> int:
        """Covered length, ns."""
        return int((self.ends - self.starts).sum())

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def empty() -> IntervalSet:
    """The empty set."""
    return IntervalSet(np.zeros(0, np.int64), np.zeros(0, np.int64))


def union(starts: npt.ArrayLike, ends: npt.ArrayLike) -> IntervalSet:
    """Merge possibly overlapping intervals into a disjoint sorted set (touching ones join)."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    keep = e > s
    if not keep.all():  # (no copies of inputs that need none: steps and waits come sorted)
        s, e = s[keep], e[keep]
    del keep
    if s.size == 0:
        return empty()
    if not (s[1:] >= s[:-1]).all():
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        del order
    if (s[1:] > e[:-1]).all():  # already disjoint (each ends before the next starts): as they are, shared
        return IntervalSet(s, e)
    reach = np.maximum.accumulate(e)
    # A new run starts where the interval begins after everything before it has ended.
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > reach[:-1]
    idx = np.flatnonzero(new)
    run_end = np.empty(idx.size, dtype=np.int64)
    run_end[:-1] = reach[idx[1:] - 1]
    run_end[-1] = reach[-1]
    return IntervalSet(s[idx], run_end)


def combine(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a ∪ b`` (an empty side gives the other set itself, no copy)."""
    if len(b) == 0:
        return a
    if len(a) == 0:
        return b
    return union(np.concatenate([a.starts, b.starts]), np.concatenate([a.ends, b.ends]))


def _coverage_after(points: Int64Array, s: IntervalSet, cum: Int64Array) -> Int64Array:
    """Measure of ``s`` within ``(-inf, p]`` for each point ``p`` (``cum``: the running total of
    its lengths before each interval)."""
    i = np.searchsorted(s.starts, points, side="right")  # intervals starting at or before p
    before = i == 0
    i -= 1
    i[before] = 0
    start = s.starts[i]
    partial = points - start
    np.clip(partial, 0, s.ends[i] - start, out=partial)
    partial += cum[i]
    partial[before] = 0
    return partial


def measure_within(s: IntervalSet, starts: npt.ArrayLike, ends: npt.ArrayLike,
                   unit: float | None = None) -> npt.NDArray[Any]:
    """For each window ``[starts[i], ends[i])``, the length of ``s`` inside it, ns; in units of
    ``unit`` ns when given (float64: each ns count divided by it). Computed a block of windows at
    a time: the temporaries stay a few MB however many windows, and only the result is as long
    as the windows (windows in start order, the steps: each block reads only the stretch of ``s``
    it can meet; else one running total as long as ``s``)."""
    st = np.asarray(starts, dtype=np.int64)
    en = np.asarray(ends, dtype=np.int64)
    out = np.zeros(st.shape, dtype=np.int64 if unit is None else np.float64)
    if len(s) == 0 or st.size == 0:
        return out
    in_order = bool((st[1:] >= st[:-1]).all())
    whole = None if in_order else _running_total(s)
    for lo in range(0, st.size, _BLOCK):
        a, b = st[lo : lo + _BLOCK], en[lo : lo + _BLOCK]
        part, cum = s, whole
        if whole is None:  # the intervals that can meet the block: ending after its first start, starting before its last end
            first = int(np.searchsorted(s.ends, a[0], side="right"))
            last = max(first, int(np.searchsorted(s.starts, b.max(), side="left")))
            part = IntervalSet(s.starts[first:last], s.ends[first:last])
            if len(part) == 0:
                continue
            cum = _running_total(part)
        assert cum is not None
        ns = _coverage_after(b, part, cum)
        ns -= _coverage_after(a, part, cum)
        out[lo : lo + _BLOCK] = ns if unit is None else ns / unit
    return out


def _running_total(s: IntervalSet) -> Int64Array:
    """The total length of the intervals of ``s`` before each one, ns."""
    cum = np.empty(len(s), np.int64)
    cum[0] = 0
    np.cumsum(s.ends[:-1] - s.starts[:-1], out=cum[1:])
    return cum


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a ∩ b`` (both sorted and disjoint, as every IntervalSet is)."""
    if len(a) == 0 or len(b) == 0:
        return empty()
    if _within(a, b):
        return a
    # Both sets are sorted and disjoint: interval j of b overlaps the run of a's intervals
    # lo[j] <= i < hi[j]; each overlapping pair gives one piece. Memory is that of the pieces.
    lo = np.searchsorted(a.ends, b.starts, side="right")
    hi = np.searchsorted(a.starts, b.ends, side="left")
    counts = np.maximum(hi - lo, 0)
    del hi
    j = np.repeat(np.arange(len(b)), counts)
    first = np.cumsum(counts) - counts  # where each j's pairs begin
    i = np.arange(j.size) - np.repeat(first - lo, counts)
    del lo, first, counts
    starts, ends = a.starts[i], a.ends[i]
    np.maximum(starts, b.starts[j], out=starts)
    np.minimum(ends, b.ends[j], out=ends)
    del i, j
    return union(starts, ends)


def _within(a: IntervalSet, b: IntervalSet) -> bool:
    """Whether every interval of ``a`` lies inside one of ``b`` (then ``a ∩ b`` is ``a``: the
    waits inside their steps, with no copy of them)."""
    for lo in range(0, len(a), _BLOCK):
        k = np.searchsorted(b.starts, a.starts[lo : lo + _BLOCK], side="right") - 1
        if k[0] < 0 or not (a.ends[lo : lo + _BLOCK] <= b.ends[k]).all():
            return False
    return True


def _apart(a: IntervalSet, b: IntervalSet) -> bool:
    """Whether no interval of ``a`` meets one of ``b`` (the last of ``b`` starting before each
    of ``a`` ends has ended by its start), a block at a time."""
    for lo in range(0, len(a), _BLOCK):
        k = np.searchsorted(b.starts, a.ends[lo : lo + _BLOCK], side="left") - 1
        seen = k >= 0
        if (b.ends[k[seen]] > a.starts[lo : lo + _BLOCK][seen]).any():
            return False
    return True


def subtract(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a \\ b`` (both sorted and disjoint): ``a`` intersected with the gaps between ``b``'s
    intervals, so memory is that of the pieces, with no sort of both sets' end points."""
    if len(a) == 0 or len(b) == 0:
        return a
    if a is b:
        return empty()
    if _apart(a, b):  # (the forward part lies between the waits): a itself, no gaps built
        return a
    gap_starts = np.empty(len(b) + 1, np.int64)
    gap_ends = np.empty(len(b) + 1, np.int64)
    gap_starts[0], gap_starts[1:] = _MIN, b.ends
    gap_ends[:-1], gap_ends[-1] = b.starts, _MAX
    return intersect(a, union(gap_starts, gap_ends))


def clip(s: IntervalSet, lo: int, hi: int) -> IntervalSet:
    """``s ∩ [lo, hi)`` (only the intervals that can meet the window are read)."""
    first = int(np.searchsorted(s.ends, lo, side="right"))
    last = max(first, int(np.searchsorted(s.starts, hi, side="left")))
    st = np.clip(s.starts[first:last], lo, hi)
    en = np.clip(s.ends[first:last], lo, hi)
    keep = en > st
    return IntervalSet(st[keep], en[keep])
