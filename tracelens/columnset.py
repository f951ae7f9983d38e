"""Per-step columns of millions of steps, cheaply: a table's columns kept once each (the
per-step table often holds columns of a single value, no GPU: all NaN, or equal to another, one
wait a step: the longest wait is the wait), the table itself as plain numpy columns (no pandas:
its import alone costs 40-80 MB of RSS), and a column's middle row found without a sort."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class StepTable:
    """A table of named, read-only numpy columns of one length, in a fixed order: ``table[name]``
    is the column itself (no copy; it may be a broadcast or shared with another column).
    :meth:`to_pandas` gives a DataFrame for interactive work."""

    __slots__ = ("_columns", "_rows")

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        cols = {str(k): np.asarray(v) for k, v in columns.items()}
        lengths = {c.shape for c in cols.values()}
        if len(lengths) > 1 or any(len(shape) != 1 for shape in lengths):
            raise ValueError(f"the columns of a table are 1-d and of one length, not {sorted(lengths)}")
        for c in cols.values():
            if c.flags.writeable and c.strides != (0,):
                c.flags.writeable = False
        self._columns = cols
        self._rows = next(iter(lengths))[0] if lengths else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, column) pairs, in order."""
        return iter(self._columns.items())

    def __len__(self) -> int:
        """The number of rows (a table's length, as a DataFrame's), not of columns."""
        return self._rows

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self._columns)

    @property
    def empty(self) -> bool:
        """Whether the table has no rows."""
        return self._rows == 0

    def take(self, rows: list[int] | np.ndarray) -> StepTable:
        """The rows at ``rows`` (indices), as a new table."""
        idx = np.asarray(rows, dtype=np.int64)
        return StepTable({k: c[idx] for k, c in self._columns.items()})

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (pandas imported here, the columns copied)."""
        import pandas as pd

        return pd.DataFrame({k: np.array(c) for k, c in self._columns.items()}, columns=self.columns)

    def __repr__(self) -> str:
        return f"StepTable({self._rows} rows: {', '.join(self._columns)})"


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

    def add_computed(self, n: int, block: Callable[[int, int], np.ndarray], size: int = 1 << 16) -> np.ndarray:
        """The float64 column whose rows ``lo:hi`` are ``block(lo, hi)``: a column already kept
        that equals it bit for bit (compared a block at a time, never made whole), else made and
        added."""
        for other in self.kept:
            if other.dtype == np.float64 and other.shape == (n,) and all(
                    (other[lo : lo + size].view(np.int64) == block(lo, min(n, lo + size)).view(np.int64)).all()
                    for lo in range(0, n, size)):
                return other
        col = np.empty(n, np.float64)
        for lo in range(0, n, size):
            col[lo : lo + size] = block(lo, min(n, lo + size))
        return self.add(col)


def median_index(values: np.ndarray) -> int:
    """The index a stable argsort of ``values`` puts in the middle (the lower one of an even
    count), found with a partition: no sort of millions of steps."""
    return ranked_index(values, (values.size - 1) // 2)


def ranked_index(values: np.ndarray, k: int) -> int:
    """The index a stable argsort of ``values`` (finite) puts at position ``k``, found with a
    partition: one copy of the values, no index array of their size."""
    v = np.partition(values, k)[k]
    return int(np.flatnonzero(values == v)[k - int(np.count_nonzero(values < v))])
