"""Interval sets as sorted, disjoint ``(starts, ends)`` int64 arrays (half-open, ns).

Every function is pure and vectorized; inputs need not be sorted unless stated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]


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
    s, e = s[keep], e[keep]
    if s.size == 0:
        return empty()
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
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
    """``a ∪ b``."""
    return union(np.concatenate([a.starts, b.starts]), np.concatenate([a.ends, b.ends]))


def _coverage_after(points: Int64Array, s: IntervalSet) -> Int64Array:
    """Measure of ``s`` within ``(-inf, p]`` for each point ``p``."""
    if len(s) == 0:
        return np.zeros(points.shape, dtype=np.int64)
    lengths = s.ends - s.starts
    cum = np.concatenate([[0], np.cumsum(lengths)])
    i = np.searchsorted(s.starts, points, side="right")  # intervals starting at or before p
    prev_total = cum[np.maximum(i - 1, 0)]
    last_start = s.starts[np.maximum(i - 1, 0)]
    last_end = s.ends[np.maximum(i - 1, 0)]
    partial = np.clip(points - last_start, 0, last_end - last_start)
    return np.where(i > 0, prev_total + partial, 0).astype(np.int64)


def measure_within(s: IntervalSet, starts: npt.ArrayLike, ends: npt.ArrayLike) -> Int64Array:
    """For each window ``[starts[i], ends[i])``, the length of ``s`` inside it, ns."""
    st = np.asarray(starts, dtype=np.int64)
    en = np.asarray(ends, dtype=np.int64)
    return _coverage_after(en, s) - _coverage_after(st, s)


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a ∩ b``."""
    if len(a) == 0 or len(b) == 0:
        return empty()
    # Boundaries of both sets; a point is inside the result where both depths are 1.
    pts = np.concatenate([a.starts, a.ends, b.starts, b.ends])
    delta = np.concatenate(
        [np.ones(len(a)), -np.ones(len(a)), np.ones(len(b)), -np.ones(len(b))]
    ).astype(np.int64)
    order = np.lexsort((delta, pts))  # at equal points, ends (-1) before starts (+1)
    pts, delta = pts[order], delta[order]
    depth = np.cumsum(delta)
    enter = np.flatnonzero(depth == 2)
    return union(pts[enter], pts[enter + 1])


def subtract(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a \\ b``."""
    if len(a) == 0 or len(b) == 0:
        return a
    pts = np.concatenate([a.starts, a.ends, b.starts, b.ends])
    # Weight a as +1/-1 and b as -2/+2 so that "inside a, outside b" is depth exactly 1.
    delta = np.concatenate(
        [np.ones(len(a)), -np.ones(len(a)), -2 * np.ones(len(b)), 2 * np.ones(len(b))]
    ).astype(np.int64)
    order = np.argsort(pts, kind="stable")
    pts, delta = pts[order], delta[order]
    # Collapse equal points so zero-length pieces vanish.
    uniq, first = np.unique(pts, return_index=True)
    sums = np.add.reduceat(delta, first)
    depth = np.cumsum(sums)
    inside = depth == 1
    idx = np.flatnonzero(inside[:-1])
    return union(uniq[idx], uniq[idx + 1])


def clip(s: IntervalSet, lo: int, hi: int) -> IntervalSet:
    """``s ∩ [lo, hi)``."""
    st = np.clip(s.starts, lo, hi)
    en = np.clip(s.ends, lo, hi)
    keep = en > st
    return IntervalSet(st[keep], en[keep])
