"""Columns of numbers as JSON text, a block at a time with numpy: the same characters Python
writes for each (``repr(int(x))``; ``repr(round(x, 4))``, NaN and infinities as ``null``), without
a Python string per number.

Each number becomes a fixed-width field of ASCII bytes padded with NUL; a block of rows is a
matrix of constant pieces and fields, and its text the matrix without the NUL bytes. A float
is rounded with integers: ``m = rint(x × 10⁴)`` is the correctly rounded 4-decimal value of
``x`` whenever ``x × 10⁴`` is not within 10⁻³ of a half (its one rounding error is under
1.2 × 10⁻⁴ for |x| < 10⁸), and the shortest text of ``m / 10⁴`` (at most 12 significant
digits) is that decimal with its trailing zeros dropped, which is what ``repr`` writes. Numbers
outside that range, and those near a half, are written by Python itself.
"""

from __future__ import annotations

import os
from typing import IO

import numpy as np

#: Widest field: Python's longest float text ("-1.2345678901234567e-100") and int64 ("-9223372036854775808").
WIDTH = 24
_LIMIT = 1e8  # |x| below which rint(x × 10⁴) decides the rounding (see the module's docstring)
_TIE = 1e-3  # distance from a half under which Python rounds the number
_NULL = np.frombuffer(b"null", np.uint8)
_ZERO, _MINUS, _DOT = ord("0"), ord("-"), ord(".")


_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10^18 .. 10^0


def _digits(values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` decimal digits of non-negative int64 ``values`` (< 10^count), most
    significant first, as ASCII (n, count); leading zeros NUL, but the units digit."""
    powers = _POW10[_POW10.size - count :]
    digits = values[:, None] // powers[None, :]
    digits %= 10
    out = digits.astype(np.uint8)
    out += _ZERO
    shown = values[:, None] >= powers[None, :]  # the digits from the first non-zero one on
    shown[:, -1] = True
    out[~shown] = 0
    return out


def _count(values: np.ndarray) -> int:
    """Digits of the largest of non-negative ``values``."""
    return max(1, int(np.searchsorted(_POW10[::-1], int(values.max()), side="right"))) if values.size else 1


def _python(field: np.ndarray, rows: np.ndarray, texts: list[str]) -> None:
    """Write ``texts`` into ``field`` at ``rows``."""
    for r, t in zip(rows.tolist(), texts):
        b = t.encode("ascii")
        field[r, :] = 0
        field[r, : len(b)] = np.frombuffer(b, np.uint8)


def int_field(column: np.ndarray) -> np.ndarray:
    """``repr(int(x))`` of each number, as an (n, WIDTH) NUL-padded byte matrix."""
    v = np.asarray(column)
    field = np.zeros((v.size, WIDTH), np.uint8)
    if not v.size:
        return field
    safe = np.isfinite(v) if v.dtype.kind == "f" else np.ones(v.size, bool)
    safe &= np.abs(v) < 1e15 if v.dtype.kind == "f" else (v > -(10**18)) & (v < 10**18)
    iv = np.where(safe, v, 0).astype(np.int64)
    mag = np.abs(iv)
    field[:, 0] = np.where(iv < 0, _MINUS, 0)
    count = _count(mag)
    field[:, 1 : 1 + count] = _digits(mag, count)
    odd = np.flatnonzero(~safe)
    if odd.size:
        _python(field, odd, [repr(int(x)) for x in v[odd].tolist()])
    return field


def ms_field(column: np.ndarray) -> np.ndarray:
    """``repr(round(x, 4))`` of each number (``null`` when not finite), as an (n, WIDTH)
    NUL-padded byte matrix."""
    x = np.asarray(column, dtype=np.float64)
    field = np.zeros((x.size, WIDTH), np.uint8)
    if not x.size:
        return field
    finite = np.isfinite(x)
    big = finite & ~(np.abs(x) < _LIMIT)
    y = np.where(finite & ~big, x, 0.0) * 1e4
    fraction = y - np.floor(y)
    python = big | (finite & (np.abs(fraction - 0.5) < _TIE))
    m = np.rint(np.where(python, 0.0, y)).astype(np.int64)  # |fraction - 0.5| >= _TIE: no tie for rint to break
    mag = np.abs(m)
    whole, part = mag // 10_000, mag % 10_000
    field[:, 0] = np.where(np.signbit(x) & finite, _MINUS, 0)  # round keeps the sign: -0.0 for small negatives
    count = _count(whole)  # at most 8: |x| < 10⁸
    field[:, 1 : 1 + count] = _digits(whole, count)
    field[:, 1 + count] = _DOT
    frac = np.empty((x.size, 4), np.uint8)  # four digits, leading zeros kept
    for k in range(3, -1, -1):
        frac[:, k] = part % 10 + _ZERO
        part //= 10
    trailing = np.ones(x.size, bool)
    for k in range(3, 0, -1):  # drop trailing zeros, keep the first decimal
        trailing &= frac[:, k] == _ZERO
        frac[trailing, k] = 0
    field[:, 2 + count : 6 + count] = frac
    bad = np.flatnonzero(~finite)
    if bad.size:
        field[bad, :] = 0
        field[bad, :4] = _NULL
    odd = np.flatnonzero(python)
    if odd.size:
        _python(field, odd, [repr(round(v, 4)) for v in x[odd].tolist()])
    return field


def field_of(kind: str, column: np.ndarray) -> np.ndarray:
    """The NUL-padded text of ``column`` as ``kind`` ("int" or "ms") writes it; a broadcast
    column (one value) is formatted once."""
    if column.ndim == 1 and column.size > 1 and column.strides == (0,):
        one = field_of(kind, column[:1])
        return np.broadcast_to(one, (column.size, WIDTH))
    return int_field(column) if kind == "int" else ms_field(column)


class Sheet:
    """Rows of text made of fixed pieces (``str``) and number fields (a column and its kind),
    written a block of rows at a time into one byte matrix reused from block to block (fresh
    pages for every block cost more than the formatting)."""

    def __init__(self, layout: list[str | None], rows: int) -> None:
        """``layout``: the pieces of a row in order; ``None`` where a number field goes."""
        self.layout = [None if x is None else np.frombuffer(x.encode("utf-8"), np.uint8) for x in layout]
        width = sum(WIDTH if x is None else x.size for x in self.layout)
        self.matrix = np.empty((rows, width), np.uint8)
        self.mask = np.empty((rows, width), bool)
        for at, x in self._spans():
            if x is not None:
                self.matrix[:, at : at + x.size] = x

    def _spans(self) -> list[tuple[int, np.ndarray | None]]:
        out, at = [], 0
        for x in self.layout:
            out.append((at, x))
            at += WIDTH if x is None else x.size
        return out

    def write(self, fields: list[np.ndarray], fp: IO[str], cut: int = 0) -> None:
        """Write the rows whose number fields are ``fields`` (byte matrices of one row count,
        in layout order) to ``fp``, less the last ``cut`` characters."""
        n = fields[0].shape[0] if fields else 0
        mat, mask = self.matrix[:n], self.mask[:n]
        spans = iter([at for at, x in self._spans() if x is None])
        for field in fields:
            at = next(spans)
            mat[:, at : at + WIDTH] = field
        np.not_equal(mat, 0, out=mask)
        data = mat[mask].tobytes()
        data = data[: len(data) - cut] if cut else data
        buffer = getattr(fp, "buffer", None)
        if buffer is not None and os.linesep == "\n" and \
                str(getattr(fp, "encoding", "")).lower().replace("-", "") in ("utf8", "ascii"):
            fp.flush()  # the text layer's own buffer first, then the bytes after it
            buffer.write(data)
        else:
            fp.write(data.decode("utf-8"))
