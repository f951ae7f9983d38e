"""The analysis of a trace handed over (its only holder): the same numbers as of a trace the
caller keeps, with the trace freed a column at a time instead of held beside its steps."""

from __future__ import annotations

import tracemalloc
import weakref
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens import load_trace, steps
from tracelens.analysis import measure_owned, measure_trace
from tracelens.columnset import ColumnSet
from tracelens.model import Trace
from tracelens.rowsplit import COLUMNS
from tracelens.steps import per_step_table, per_step_table_owned


def _steps(tmp_path: Path, count: int, calls: int = 1) -> Trace:
    b = TraceBuilder()
    for i in range(count):
        t = i * 1000.0
        b.step(i, t, 1000)
        for k in range(calls):
            b.next_call(t + 10 + k * 300, 100 + (i + k) % 7)
    return load_trace(b.write(tmp_path / "steps.json", indent=None))


def _same(a: Any, b: Any) -> None:
    fa, fb = a[0].fields, b[0].fields
    assert fa.keys() == fb.keys()
    for k in fa:
        assert repr(fa[k]) == repr(fb[k]), k
    ta, ta_waits = per_step_table(a[1])
    tb, tb_waits = per_step_table(b[1])
    assert ta.columns == tb.columns
    for c in ta.columns:
        assert np.array_equal(ta[c], tb[c], equal_nan=True), c
    assert np.array_equal(ta_waits, tb_waits)


@pytest.mark.parametrize("calls", [1, 2])
def test_a_trace_handed_over_gives_the_numbers_of_a_trace_kept(tmp_path: Path, calls: int) -> None:
    trace = _steps(tmp_path, 500, calls)
    _same(measure_owned([trace]), measure_trace(trace))


def test_a_gpu_trace_handed_over_gives_the_numbers_of_a_trace_kept(tmp_path: Path) -> None:
    trace = load_trace(starved_loop(TraceBuilder(), steps=6).write(tmp_path / "t.json"))
    _same(measure_owned([trace]), measure_trace(trace))


def test_steps_between_next_calls_are_found_in_a_trace_handed_over(tmp_path: Path) -> None:
    b = TraceBuilder()
    for i in range(5):
        b.next_call(i * 100.0, 30)
    trace = load_trace(b.write(tmp_path / "t.json"))
    owned = measure_owned([trace])
    assert owned[0].fields["step_source"] == "dataloader_next"
    _same(owned, measure_trace(trace))


def test_every_column_of_a_trace_handed_over_is_freed(tmp_path: Path) -> None:
    # GIVEN a trace whose only holder is the box handed to the analysis
    box = [_steps(tmp_path, 300)]
    columns = [weakref.ref(getattr(box[0], c)) for c in COLUMNS if getattr(box[0], c).strides != (0,)]
    assert len(columns) >= 4
    # WHEN measured
    _, inputs = measure_owned(box)
    # THEN none of its columns is alive: the steps and waits are columns of their own
    assert box == [] and all(ref() is None for ref in columns)
    assert inputs.steps.count == 300


def _many_steps(tmp_path: Path, n: int) -> Trace:
    """``n`` steps of 1000 ns, a wait in each: a loaded two-step trace's rows repeated (numpy)."""
    two = _steps(tmp_path, 2)
    step_id, wait_id = (int(i) for i in two.name_id[:2])
    start = np.arange(n, dtype=np.int64) * 1000
    ts = np.empty(2 * n, np.int64)
    ts[0::2], ts[1::2] = start, start + 10
    dur = np.empty(2 * n, np.int64)
    dur[0::2], dur[1::2] = 1000, 100 + np.arange(n) % 7
    name = np.empty(2 * n, np.int32)
    name[0::2], name[1::2] = step_id, wait_id
    number = np.full(2 * n, -1, np.int32)
    number[0::2] = np.arange(n)
    one = np.broadcast_to(np.int64(1), (2 * n,))
    return replace(two, ts_ns=ts, dur_ns=dur, name_id=name, step_number=number, pid=one, tid=one,
                   cat_id=np.broadcast_to(np.int32(two.cat_id[0]), (2 * n,)))


def test_measuring_a_trace_handed_over_never_holds_it_twice(tmp_path: Path) -> None:
    # GIVEN 300,000 steps of a step and a wait each (600,000 rows: 14 MB of columns), traced
    # from their making on
    tracemalloc.start()
    try:
        box = [_many_steps(tmp_path, 300_000)]
        size = sum(getattr(box[0], c).nbytes for c in COLUMNS if getattr(box[0], c).strides != (0,))
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        # WHEN measured
        _, inputs = measure_owned(box)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # THEN memory peaks at the trace plus one column's pieces and a few masks (1.4x): never at
    # the trace plus a copy of its steps and waits (2x)
    assert before >= size and peak < before + 0.6 * size, (peak - before, size)
    assert inputs.steps.count == 300_000


def test_the_table_of_inputs_handed_over_is_the_table_of_inputs_kept(tmp_path: Path) -> None:
    trace = _steps(tmp_path, 400, calls=2)
    _, kept = measure_trace(trace)
    _, handed = measure_trace(trace)
    a, a_waits = per_step_table(kept)
    b, b_waits = per_step_table_owned([handed])
    for c in a.columns:
        assert np.array_equal(a[c], b[c], equal_nan=True), c
    assert np.array_equal(a_waits, b_waits)


def test_one_call_a_step_takes_the_short_way_to_the_same_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN steps of 1000 ns holding one call each (lengths varied), so the short way applies
    rng = np.random.default_rng(3)
    n = 70_000  # more than one block
    s_start = np.arange(n, dtype=np.int64) * 1000
    s_end = s_start + 1000
    n_start = s_start + rng.integers(0, 500, n)
    n_end = n_start + rng.integers(0, 400, n)
    assert steps._one_call_each(s_start, s_end, n_start)
    short = steps._next_columns(s_start, s_end, n_start, n_end, ColumnSet())
    # WHEN the long way is taken instead
    monkeypatch.setattr(steps, "_one_call_each", lambda *a: False)
    long = steps._next_columns(s_start, s_end, n_start, n_end, ColumnSet())
    # THEN the counts, the longest calls and the waits are the same, bit for bit
    for x, y in zip(short, long):
        assert np.array_equal(x, y)


def test_a_call_outside_its_own_step_is_not_taken_the_short_way() -> None:
    s_start = np.array([0, 100, 200], dtype=np.int64)
    # a call between steps 1 and 2 (step 1 ends at 150)
    assert not steps._one_call_each(s_start, s_start + 50, np.array([10, 160, 210], dtype=np.int64))
    # overlapping steps: call 0 lies in step 0 but after step 1 starts (it is step 1's)
    assert not steps._one_call_each(s_start, s_start + 150, np.array([110, 120, 210], dtype=np.int64))
    assert steps._one_call_each(s_start, s_start + 50, np.array([10, 110, 210], dtype=np.int64))


def test_step_numbers_are_narrow_unless_one_needs_int64(tmp_path: Path) -> None:
    small = load_trace(TraceBuilder().step(7, 0, 10).write(tmp_path / "a.json"))
    big = load_trace(TraceBuilder().step(3_000_000_000, 0, 10).write(tmp_path / "b.json"))
    assert small.step_number.dtype == np.int32 and big.step_number.dtype == np.int64
    assert int(big.step_number.max()) == 3_000_000_000


def test_name_masks_match_np_isin(tmp_path: Path) -> None:
    trace = load_trace(starved_loop(TraceBuilder(), steps=3).write(tmp_path / "t.json"))
    for predicate in (lambda n: "Step" in n, lambda n: n.startswith("enumerate"), lambda n: False):
        ids = trace.names.ids_where(predicate)
        assert np.array_equal(trace.mask_names(predicate), np.isin(trace.name_id, ids))


def test_the_split_names_every_row_column_of_the_trace(tmp_path: Path) -> None:
    # a column added to Trace but not to COLUMNS would keep its full length beside split rows
    trace = _steps(tmp_path, 3)
    arrays = {f.name for f in fields(Trace) if isinstance(getattr(trace, f.name), np.ndarray)}
    assert arrays == set(COLUMNS)
