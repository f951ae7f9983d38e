"""Documents whose per-step lists are numpy columns: written exactly as the lists they stand
for, read as the same rows, and kept at the size of their columns however many steps."""

from __future__ import annotations

import io
import json
import pickle
import tracemalloc

import msgspec
import numpy as np
import pytest

from tests.builders import TraceBuilder
from tracelens.analysis import measure_trace, with_steps
from tracelens.document import build_document, jsondoc
from tracelens.document.jsondoc import Rows, Values
from tracelens.document.schema import PART_FIELDS, StepRow, to_json, write_document
from tracelens.load import load_trace


class _Doc(msgspec.Struct):
    name: str
    rows: Rows | list[StepRow]
    waits: Values | list[float]
    nested: dict[str, object]


def _columns(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    wait = rng.random(n) * 10
    wait[::7] = np.nan
    return {"step": np.arange(n, dtype=np.int64), "start_ms": np.cumsum(rng.random(n) * 100),
            "duration_ms": rng.random(n) * 100 + 1 / 3, "data_wait_ms": wait,
            "gpu_busy_ms": np.broadcast_to(np.nan, (n,)), "exposed_wait_ms": wait,
            "next_calls": rng.integers(0, 3, n), "next_longest_ms": np.full(n, np.inf),
            "collective_ms": np.broadcast_to(0.0, (n,)),
            **{f"part_{k}": rng.random(n) * 10 for k in PART_FIELDS}}


def _rows(n: int) -> Rows:
    cols = _columns(n)
    return Rows(cols, {k: "int" if k in ("step", "next_calls") else "ms" for k in cols}, lambda d: StepRow(**d))


def _as_lists(rows: Rows) -> list[StepRow]:
    return [StepRow(**{k: (int(v) if k in ("step", "next_calls") else
                           (round(float(v), 4) if np.isfinite(v) else None)) for k, v in zip(rows.columns, vals)})
            for vals in zip(*(c.tolist() for c in rows.columns.values()))]


@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_columns_write_the_text_of_the_lists_they_stand_for(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsondoc, "BLOCK", 64)  # several blocks, a last short one
    rows = _rows(n)
    waits = np.linspace(0, 1, n) / 3
    doc = _Doc("a", rows, Values(waits), {"x": np.float64(0.5), "y": [1, 2]})
    want = _Doc("a", _as_lists(rows), [round(w, 4) for w in waits.tolist()], {"x": 0.5, "y": [1, 2]})
    buf = io.StringIO()
    write_document(doc, buf)  # type: ignore[arg-type]
    assert buf.getvalue() == json.dumps(msgspec.to_builtins(want), indent=2) + "\n"
    assert to_json(doc) == buf.getvalue().encode()
    assert jsondoc.plain(doc) == msgspec.to_builtins(want)


def test_rows_read_as_the_row_structs_they_write() -> None:
    rows = _rows(300)
    structs = _as_lists(rows)
    assert list(rows) == structs and rows[7] == structs[7] and rows[-1] == structs[-1]
    assert list(rows[10:20]) == structs[10:20] and rows == structs
    with pytest.raises(IndexError):
        rows[300]
    again = pickle.loads(pickle.dumps(Rows(rows.columns, rows.kinds)))  # across processes
    assert list(again) == [msgspec.structs.asdict(s) for s in structs]
    assert list(Values(np.array([0.123456, np.nan]))) == [0.1235, None]


def _steps_trace(tmp_path, steps: int):  # type: ignore[no-untyped-def]
    b = TraceBuilder()
    for i in range(steps):
        t = i * 1000.0
        b.step(i, t, 1000).next_call(t, 100 + i % 7)
    return load_trace(b.write(tmp_path / "steps.json"))


def test_the_per_step_table_holds_five_numbers_per_step_without_gpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    analysis = with_steps(*measure_trace(_steps_trace(tmp_path, 2000)))
    table = analysis.per_step
    owned = {id(a.base if a.base is not None else a): a.nbytes for a in (table[k] for k in table.columns)
             if a.strides != (0,)}
    # step (int32: the numbers fit), start, duration, data wait and forward. Broadcasts: the empty parts, one call a step,
    # other (0: the forward fills the step). Shared: the exposed wait, the longest wait and the
    # waits themselves are the data wait's own column (one wait a step, inside it).
    assert sum(owned.values()) == 4 * 8 * 2000 + 4 * 2000
    assert analysis.next_wait_ms is table["data_wait_ms"] or \
        np.shares_memory(analysis.next_wait_ms, table["data_wait_ms"])
    assert (table["next_calls"] == 1).all() and (table["part_other_ms"] == 0).all()
    assert np.isnan(table["gpu_busy_ms"]).all() and (table["collective_ms"] == 0).all()


def test_writing_a_document_costs_no_memory_per_step(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Writing 20,000 or 80,000 rows takes the same few MB at most: one block at a time.
    peaks = []
    for steps in (20_000, 80_000):
        analysis = with_steps(*measure_trace(_steps_trace(tmp_path, steps)))
        from tracelens.diagnosis import diagnose

        doc = build_document(analysis, diagnose(analysis, None), None)
        sink = open(tmp_path / "out.json", "w")  # noqa: SIM115
        tracemalloc.start()
        try:
            write_document(doc, sink)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
            sink.close()
    assert peaks[1] < 1.5 * peaks[0] + (1 << 20), peaks
