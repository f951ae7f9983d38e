"""A trace's rows split into groups of columns, each column of the trace freed once it is split.

The analysis reads the step and ``__next__`` rows as columns of their own; a trace of millions
of small steps is mostly those rows. Splitting them out one column at a time keeps the trace and
its steps from being held twice: at most one column of the trace (and its pieces) exists twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tracelens.model import Trace

#: The row columns of a :class:`Trace`, in the order they are split (the widest first).
COLUMNS = ("ts_ns", "dur_ns", "step_number", "pid", "tid", "name_id", "cat_id")


def _rows_of(col: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """``col[mask]`` (``count`` rows); a broadcast stays a broadcast (no array of its size)."""
    if col.strides == (0,) and col.size:
        return np.broadcast_to(col[0], (count,))
    return col[mask]


def split_rows(box: list[Trace], groups: Sequence[tuple[np.ndarray, Sequence[str]]]
               ) -> tuple[Trace, list[dict[str, np.ndarray]]]:
    """Take the trace out of ``box``: for each ``(mask, columns)`` group (disjoint row masks), the
    named columns of its rows, in file order; and the trace of every other row.

    With ``box`` the trace's only holder, each of its columns is freed as soon as it is split,
    so the peak is the trace plus one column's pieces, not the trace plus every group.
    """
    trace = box.pop()
    cols = {name: getattr(trace, name) for name in COLUMNS}
    empty: dict[str, Any] = {name: np.empty(0, cols[name].dtype) for name in COLUMNS}  # (no view: it would keep the column)
    shell = replace(trace, **empty)
    del trace
    rest = np.ones(cols["ts_ns"].shape, dtype=bool)
    for mask, _ in groups:
        rest &= ~mask
    counts = [int(np.count_nonzero(mask)) for mask, _ in groups]
    n_rest = int(np.count_nonzero(rest))
    out: list[dict[str, np.ndarray]] = [{} for _ in groups]
    kept: dict[str, Any] = {}
    for name in COLUMNS:
        col = cols.pop(name)
        for (mask, wanted), count, part in zip(groups, counts, out):
            if name in wanted:
                part[name] = _rows_of(col, mask, count)
        kept[name] = _rows_of(col, rest, n_rest)
        del col
    return replace(shell, **kept), out
