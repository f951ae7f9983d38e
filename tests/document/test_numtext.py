"""Numbers written as JSON text by numpy (tracelens/document/numtext.py): the characters Python writes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracelens.document import numtext


def _python_ms(x: float) -> str:
    return repr(round(x, 4)) if math.isfinite(x) else "null"


def _texts(field: np.ndarray) -> list[str]:
    return [row[row != 0].tobytes().decode() for row in field]


def test_ms_texts_are_pythons_on_hard_cases() -> None:
    # ties of integer nanoseconds (k mod 100 == 50), zeros of both signs, tiny negatives,
    # whole numbers, big and non-finite values
    k = np.array([50, 150, 250, 1_000_050, 123_456_750, -50, -150, 0, 1, 99, 100, 10**15 + 50], dtype=np.int64)
    values = np.concatenate([k / 1e6, [0.0, -0.0, -1e-5, -4e-5, 1.0, 3.0, 12.5, 0.1, 0.0001, 0.00005,
                                       99_999_999.99995, 1e8, 123456789012.3456, 1e16, 1e300, -2.5e-7,
                                       math.nan, math.inf, -math.inf, 5e-324]])
    assert _texts(numtext.ms_field(values)) == [_python_ms(v) for v in values.tolist()]


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(min_value=-1e9, max_value=1e9),
                          st.integers(min_value=-(10**13), max_value=10**13).map(lambda k: k / 1e6)),
                max_size=40))
def test_ms_texts_are_pythons_for_any_float(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float64)
    assert _texts(numtext.ms_field(arr)) == [_python_ms(v) for v in arr.tolist()]


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=40))
def test_int_texts_are_pythons(values: list[int]) -> None:
    arr = np.array(values, dtype=np.int64)
    assert _texts(numtext.int_field(arr)) == [repr(v) for v in values]


def test_a_broadcast_column_is_formatted_once_and_shared() -> None:
    field = numtext.field_of("ms", np.broadcast_to(2.5, (1000,)))
    assert field.shape == (1000, numtext.WIDTH) and field.strides[0] == 0
    assert set(_texts(field)) == {"2.5"}


def test_a_sheet_writes_rows_of_pieces_without_the_padding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    sheet = numtext.Sheet(["[", None, ", ", None, "]\n"], 8)
    fields = [numtext.int_field(np.array([1, -20, 300])), numtext.ms_field(np.array([0.5, math.nan, 2.0]))]
    text = io.StringIO()
    sheet.write(fields, text, cut=1)
    assert text.getvalue() == "[1, 0.5]\n[-20, null]\n[300, 2.0]"
    # AND a file's bytes go straight to its buffer, after what its text layer holds
    with open(tmp_path / "out.txt", "w", encoding="utf-8") as fh:
        fh.write("head:")
        sheet.write(fields[:1] + fields[1:], fh)
        fh.write("tail")
    assert (tmp_path / "out.txt").read_text() == "head:[1, 0.5]\n[-20, null]\n[300, 2.0]\ntail"
