"""Interval algebra agrees with a brute-force point set on small integer grids."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracelens import intervals as iv

GRID = 60
spans = st.lists(st.tuples(st.integers(0, GRID), st.integers(0, 20)), max_size=12)


def _points(pairs: list[tuple[int, int]]) -> set[int]:
    return {x for s, d in pairs for x in range(s, s + d)}


def _set(pairs: list[tuple[int, int]]) -> iv.IntervalSet:
    return iv.union([s for s, _ in pairs], [s + d for s, d in pairs])


def _as_points(s: iv.IntervalSet) -> set[int]:
    return {x for a, b in zip(s.starts.tolist(), s.ends.tolist()) for x in range(a, b)}


def _is_normal(s: iv.IntervalSet) -> bool:
    return bool(np.all(s.ends > s.starts) and np.all(s.starts[1:] > s.ends[:-1]))


@settings(max_examples=300, deadline=None)
@given(spans)
def test_union_covers_exactly_the_points_of_its_inputs(a: list[tuple[int, int]]) -> None:
    s = _set(a)
    assert _as_points(s) == _points(a)
    assert s.total == len(_points(a))
    assert _is_normal(s)


@settings(max_examples=300, deadline=None)
@given(spans, spans)
def test_intersect_and_subtract_match_set_operations(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    sa, sb = _set(a), _set(b)
    inter, diff = iv.intersect(sa, sb), iv.subtract(sa, sb)
    assert _as_points(inter) == _points(a) & _points(b)
    assert _as_points(diff) == _points(a) - _points(b)
    assert _is_normal(inter) and _is_normal(diff)
    assert inter.total + diff.total == sa.total


@settings(max_examples=200, deadline=None)
@given(spans, st.lists(st.tuples(st.integers(0, GRID), st.integers(0, 30)), min_size=1, max_size=5))
def test_measure_within_counts_points_inside_each_window(a: list[tuple[int, int]], windows: list[tuple[int, int]]) -> None:
    s = _set(a)
    got = iv.measure_within(s, [w for w, _ in windows], [w + d for w, d in windows])
    want = [len(_points(a) & set(range(w, w + d))) for w, d in windows]
    assert got.tolist() == want


@settings(max_examples=200, deadline=None)
@given(spans, st.integers(0, GRID), st.integers(0, GRID))
def test_clip_keeps_the_points_inside_the_window(a: list[tuple[int, int]], lo: int, hi: int) -> None:
    assert _as_points(iv.clip(_set(a), lo, hi)) == {x for x in _points(a) if lo <= x < hi}


def test_touching_intervals_merge_and_empty_ones_vanish() -> None:
    s = iv.union([0, 5, 9], [5, 9, 9])
    assert s.starts.tolist() == [0] and s.ends.tolist() == [9]
    assert len(iv.union([], [])) == 0
