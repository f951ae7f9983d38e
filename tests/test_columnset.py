"""Order statistics of per-step columns without sorting them (tracelens/columnset.py)."""

from __future__ import annotations

import numpy as np

from tracelens.columnset import median_index, ranked_index


def test_ranked_index_is_the_stable_argsort_position_ties_included() -> None:
    rng = np.random.default_rng(7)
    for trial in range(500):
        n = int(rng.integers(1, 30))
        values = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        order = np.argsort(values, kind="stable")
        for k in range(n):
            assert ranked_index(values, k) == order[k]
        assert median_index(values) == order[(n - 1) // 2]


def test_ranked_index_leaves_the_column_unchanged() -> None:
    values = np.array([3.0, 1.0, 2.0, 1.0])
    ranked_index(values, 2)
    assert values.tolist() == [3.0, 1.0, 2.0, 1.0]
