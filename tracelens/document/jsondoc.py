"""Documents whose long lists stay numpy columns, and the writer that streams them.

A document's per-step rows and waits grow with the steps: a trace of 3 million steps would
hold 3 million row structs (GBs). :class:`Rows` and :class:`Values` are read-only sequences over
numpy columns that stand in for those lists (iterating or indexing gives the same rows and
numbers the list held), and :func:`write` prints a document (msgspec structs within plain
containers) a block of rows at a time, text equal to ``json.dumps(msgspec.to_builtins(doc),
indent=2)`` of the lists they stand for.

``json.dumps`` itself needs ``default=jsonable`` to read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, overload

import msgspec
import numpy as np

from tracelens.document import numtext

BLOCK = 1 << 13  # rows formatted at a time (a few MB of text)

#: How a column's numbers are written: "int" as integers; "ms" rounded to 4 decimals (Python's
#: round, to the nearest decimal), with NaN and infinities as null.
KINDS = ("int", "ms")


def _value(kind: str, x: Any) -> Any:
    if kind == "int":
        return int(x)
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


class Rows(Sequence[Any]):
    """Rows ``row({key: value})`` of equal-length numpy columns (``row`` makes the row object, a
    dict by default); ``kinds[key]`` is one of KINDS. Written in JSON as objects of the columns'
    keys in order. (A plain class: msgspec would take a dataclass apart field by field.)"""

    __slots__ = ("columns", "kinds", "row")

    def __init__(self, columns: dict[str, np.ndarray], kinds: dict[str, str],
                 row: Callable[[dict[str, Any]], Any] = dict) -> None:
        self.columns, self.kinds, self.row = columns, kinds, row

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> Rows: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return Rows({k: c[i] for k, c in self.columns.items()}, self.kinds, self.row)
        n = len(self)
        if not -n <= i < n:
            raise IndexError("row index out of range")
        return self.row({k: _value(self.kinds[k], c[i]) for k, c in self.columns.items()})

    def __iter__(self) -> Iterator[Any]:
        keys, row = list(self.columns), self.row
        for lo in range(0, len(self), BLOCK):
            block = [[_value(self.kinds[k], x) for x in self.columns[k][lo : lo + BLOCK].tolist()] for k in keys]
            for values in zip(*block):
                yield row(dict(zip(keys, values)))

    def __reduce__(self) -> tuple[Any, ...]:
        return Rows, (self.columns, self.kinds, self.row)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows: {', '.join(self.columns)})"

    def column(self, key: str) -> np.ndarray:
        """One column as stored (read-only view)."""
        c = self.columns[key].view()
        c.flags.writeable = False
        return c

    def _write(self, fp: IO[str], indent: str) -> None:
        inner = indent + "  "
        keys = list(self.columns)
        layout: list[str | None] = []
        for i, k in enumerate(keys):
            layout += [(f"{indent}{{\n{inner}" if i == 0 else f",\n{inner}") + f"{json.dumps(k)}: ", None]
        sheet = numtext.Sheet([*layout, f"\n{indent}}},\n"], min(BLOCK, len(self)))
        for lo in range(0, len(self), BLOCK):
            done: dict[tuple[int, str], np.ndarray] = {}  # a column shared by two keys is formatted once
            for k in keys:
                column, kind = self.columns[k], self.kinds[k]
                if (id(column), kind) not in done:
                    done[id(column), kind] = numtext.field_of(kind, column[lo : lo + BLOCK])
            if lo:
                fp.write(",\n")
            sheet.write([done[id(self.columns[k]), self.kinds[k]] for k in keys], fp, cut=2)


class Values(Sequence[Any]):
    """Numbers of one numpy column, written as ``kind`` (one of KINDS)."""

    __slots__ = ("array", "kind")

    def __init__(self, array: np.ndarray, kind: str = "ms") -> None:
        self.array, self.kind = array, kind

    def __reduce__(self) -> tuple[Any, ...]:
        return Values, (self.array, self.kind)

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> Values: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return Values(self.array[i], self.kind)
        return _value(self.kind, self.array[i])

    def __iter__(self) -> Iterator[Any]:
        for lo in range(0, len(self), BLOCK):
            yield from (_value(self.kind, x) for x in self.array[lo : lo + BLOCK].tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Values | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Values({len(self)} {self.kind})"

    def _write(self, fp: IO[str], indent: str) -> None:
        sheet = numtext.Sheet([indent, None, ",\n"], min(BLOCK, len(self)))
        for lo in range(0, len(self), BLOCK):
            if lo:
                fp.write(",\n")
            sheet.write([numtext.field_of(self.kind, self.array[lo : lo + BLOCK])], fp, cut=2)


def jsonable(obj: Any) -> Any:
    """``json.dumps(doc, default=jsonable)``: the list a :class:`Rows` or :class:`Values` stands
    for (its rows as plain values), a struct as plain values."""
    if isinstance(obj, Rows):
        return [msgspec.to_builtins(r, enc_hook=_item) for r in obj]
    if isinstance(obj, Values):
        return list(obj)
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj, enc_hook=_item)
    if hasattr(obj, "item") and callable(obj.item):  # a numpy scalar
        return obj.item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _item(value: Any) -> Any:
    """numpy scalars (a rule's evidence may hold one) as Python numbers, as ``json`` wrote them."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def plain(doc: Any) -> Any:
    """``doc`` as plain JSON values (dicts, lists, numbers), its columns as lists (for small documents)."""
    return msgspec.to_builtins(doc, enc_hook=jsonable)


_MARK = "\x00tracelens-column-"


def write(doc: Any, fp: IO[str], indent: int = 2) -> None:
    """Write ``doc`` (structs within plain containers) as ``json.dumps(msgspec.to_builtins(doc),
    indent=indent)`` would with its columns as lists (numpy scalars as Python numbers),
    streaming each column a block of rows at a time; a newline after it."""
    columns: list[Rows | Values] = []

    def mark(o: Any) -> Any:
        if isinstance(o, Rows | Values):
            columns.append(o)
            return f"{_MARK}{len(columns) - 1}"
        return _item(o)

    text = json.dumps(msgspec.to_builtins(doc, enc_hook=mark), indent=indent)
    quoted = json.dumps(_MARK)[:-1]  # the mark as JSON writes it, without its closing quote
    pos = 0
    while (at := text.find(quoted, pos)) >= 0:
        end = text.index('"', at + len(quoted))
        col = columns[int(text[at + len(quoted) : end])]
        line = text[text.rfind("\n", 0, at) + 1 : at]
        outer = line[: len(line) - len(line.lstrip(" "))]
        fp.write(text[pos:at])
        if len(col):
            fp.write("[\n")
            col._write(fp, outer + " " * indent)
            fp.write("\n" + outer + "]")
        else:
            fp.write("[]")
        pos = end + 1
    fp.write(text[pos:])
    fp.write("\n")


def write_file(doc: Any, path: str | Path, *, parents: bool = True) -> Path:
    """:func:`write` to ``path`` atomically (``system.atomic``: temporary name, fsync, rename;
    an OS error names the path)."""
    from tracelens.system.atomic import atomic_file

    with atomic_file(path, "w", parents=parents) as fh:
        write(doc, fh)
    return Path(path)


def dumps(doc: Any, indent: int = 2) -> str:
    """:func:`write` into a string (without the final newline)."""
    import io

    buf = io.StringIO()
    write(doc, buf, indent)
    return buf.getvalue()[:-1]


def is_column(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`Rows` or :class:`Values` (a list in JSON)."""
    return isinstance(obj, Rows | Values)
