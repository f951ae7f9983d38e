"""Per-step columns of millions of steps, cheaply: a table's columns kept once each (the
per-step table often holds columns of a single value, no GPU: all NaN, or equal to another, one
wait a step: the longest wait is the wait), and a column's middle row found without a sort."""

from __future__ import annotations

import numpy as np


class ColumnSet:
    """Per-step columns, each kept once: one of a single value becomes a read-only broadcast,
    one equal bit for bit to a column already added becomes that column (read-only, shared)."""

    def __init__(self) -> None:
        self.kept: list[np.ndarray] = []

    def add(self, col: np.ndarray) -> np.ndarray:
        """``col``, or the broadcast or column already kept that stands for it."""
        if col.size < 2 or col.strides == (0,):
            return col
        bits = col.view(np.int64) if col.dtype == np.float64 else col
        if (bits == bits[0]).all():
            return np.broadcast_to(col[:1].copy()[0], col.shape)
        for other in self.kept:
            if other.dtype == col.dtype and other.shape == col.shape and \
                    (other.view(np.int64) if other.dtype == np.float64 else other).__eq__(bits).all():
                return other
        col.flags.writeable = False
        self.kept.append(col)
        return col


def median_index(values: np.ndarray) -> int:
    """The index a stable argsort of ``values`` puts in the middle (the lower one of an even
    count), found with a partition: no sort of millions of steps."""
    return ranked_index(values, (values.size - 1) // 2)


def ranked_index(values: np.ndarray, k: int) -> int:
    """The index a stable argsort of ``values`` (finite) puts at position ``k``, found with a
    partition: one copy of the values, no index array of their size."""
    v = np.partition(values, k)[k]
    return int(np.flatnonzero(values == v)[k - int(np.count_nonzero(values < v))])
