"""Columns of one table kept once each: the per-step table of millions of steps often holds
columns of a single value (no GPU: all NaN) or equal to another (one wait a step: the longest
wait is the wait)."""

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
