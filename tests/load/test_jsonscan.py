"""The JSON walker finds where any value ends, at any depth and size, without recursion or
holding what it skips."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracelens.load import scan as _jsonscan
from tracelens.load.scan import Cursor, ScanError


def _reader(data: bytes, step: int) -> Callable[[int], bytes]:
    """A source handing out ``data`` ``step`` bytes at a time, whatever is asked."""
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = data[pos : pos + step]
        pos += len(piece)
        return piece

    return read


TRICKY = [
    b'{"a": [1, 2, {"b": "x]}\\"y"}], "c": "\\\\"}',
    b'["\\\\\\\\", "]", "\\"]"]',
    b'{"k": "\\u005d]]]", "e": {}}',
    b'"ends with an escaped backslash \\\\"',
    b"[[[[]]]]",
    b"-12.5e+3",
    b"true",
]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("step", [1, 2, 3, 7, 4096])
@pytest.mark.parametrize("scan_block", [1, 3, 1 << 20])
def test_a_value_ends_where_json_says_across_any_block_edges(
        monkeypatch: pytest.MonkeyPatch, text: bytes, step: int, scan_block: int) -> None:
    monkeypatch.setattr(_jsonscan, "SCAN_BLOCK", scan_block)
    cur = Cursor(_reader(text + b" , 5", step))
    scanned = cur.scan_value(1 << 20)
    assert scanned.data == text
    cur.skip_ws()
    assert cur.peek() == ord(",")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}é \n')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(value=json_values, step=st.integers(1, 64), ascii_only=st.booleans(), cut=st.floats(0, 1))
def test_any_json_value_is_walked_exactly_and_a_cut_one_is_incomplete(
        value: object, step: int, ascii_only: bool, cut: float) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    scanned = Cursor(_reader(text + b',"next"', step)).scan_value(1 << 20)
    assert scanned.data == text
    end = int(len(text) * cut)
    if text[:1] in (b"[", b"{", b'"') and end < len(text):
        with pytest.raises(ScanError) as info:
            Cursor(_reader(text[:end], step)).scan_value(1 << 20)
        assert info.value.incomplete


def test_depth_costs_no_recursion_and_is_reported() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    scanned = Cursor(data=deep + b"]").scan_value(1 << 20)
    assert scanned.data == deep and scanned.depth == 100_000


def test_max_depth_stops_the_walk_early() -> None:
    scanned = Cursor(data=b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}").scan_value(1 << 20, max_depth=64)
    assert scanned.data is None and scanned.depth > 64


def test_a_value_over_the_keep_limit_is_walked_without_being_held() -> None:
    big = b'{"s": "' + b"a" * (48 << 20) + b'", "t": [' + b"1, " * (1 << 20) + b'1]}'
    cur = Cursor(_reader(big + b"]", 4 << 20))
    scanned = cur.scan_value(1 << 20)
    assert scanned.data is None and scanned.size == len(big)
    assert len(cur.buf) <= 2 * _jsonscan.READ_SIZE  # the window, not the value
    assert cur.peek() == ord("]")


def test_whitespace_runs_are_skipped_a_block_at_a_time() -> None:
    cur = Cursor(_reader(b" \n\t\r" * (8 << 20) + b"x", 4 << 20))
    cur.skip_ws()
    assert cur.peek() == ord("x") and cur.tell() == 32 << 20
    assert len(cur.buf) <= 2 * _jsonscan.READ_SIZE


def test_a_stray_delimiter_is_consumed_as_one_junk_value() -> None:
    cur = Cursor(data=b"}, 1")
    assert cur.scan_value(10).data == b"}"
