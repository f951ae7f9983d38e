"""Order statistics of per-step columns without sorting them (tracelens/columnset.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tracelens.columnset import StepTable, median_index, ranked_index


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


def test_a_step_table_hands_out_its_columns_read_only_without_copies() -> None:
    # GIVEN a table built from a shared column and a broadcast one
    wait = np.array([1.0, 2.0, 3.0])
    table = StepTable({"data_wait_ms": wait, "next_longest_ms": wait, "collective_ms": np.broadcast_to(0.0, (3,))})
    # THEN each column is the array given, in order, read-only, and len counts rows as a DataFrame does
    assert table["data_wait_ms"] is wait and table["next_longest_ms"] is wait
    assert not wait.flags.writeable
    assert table.columns == ["data_wait_ms", "next_longest_ms", "collective_ms"]
    assert len(table) == 3 and not table.empty and "collective_ms" in table
    assert table.take([2, 0])["data_wait_ms"].tolist() == [3.0, 1.0]


def test_a_step_table_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        StepTable({"a": np.zeros(3), "b": np.zeros(2)})


def test_an_empty_step_table_has_no_rows() -> None:
    assert StepTable({}).empty and len(StepTable({"step": np.zeros(0, np.int64)})) == 0


def test_a_step_table_becomes_a_dataframe_on_request() -> None:
    frame = StepTable({"step": np.arange(3), "duration_ms": np.broadcast_to(5.0, (3,))}).to_pandas()
    assert list(frame.columns) == ["step", "duration_ms"] and frame["duration_ms"].tolist() == [5.0, 5.0, 5.0]
