"""Events to columns: the region decoded fast (:mod:`tracelens.load.columns`) or, where that
refuses it, by the careful typed msgspec decoder of the 7 fields the analyses use, with the
retry of a region that does not decode (piece by piece, budgeted); and the interned numpy
columns every chunk merges into."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from tracelens.load import limits
from tracelens.load.columns import Chunk, Skips, _lower, columnarize, fast_decode
from tracelens.load.scan import Cursor, ScanError
from tracelens.model import (
    STRING_ID_BASE,
    RowFilter,
    is_string_id,
    string_id_value,
)

GZIP_MAGIC = b"\x1f\x8b"


# Between two events: "}", a comma, then "{" opening a key (or an empty object). A raw quote
# cannot sit inside a JSON string, so inside one this only matches where the string ends
# right after "{": far rarer than "},{" alone (Python reprs, JSON kept as text).
_BOUNDARY = re.compile(rb'\}\s*,\s*\{(?=\s*["}])')


_WS = b" \t\r\n"


META_KEYS = frozenset({"deviceProperties", "computeProperties", "distributedInfo", "baseTimeNanoseconds",
                       "schemaVersion", "traceName", "displayTimeUnit", "Framework", "with_stack"})


EVENT_FIELDS = frozenset({b"ph", b"name", b"cat", b"pid", b"tid", b"ts", b"dur"})


class RawEvent(msgspec.Struct, frozen=True, gc=False):
    """The fields of one trace event that tracelens reads; the rest is skipped unparsed.

    A missing ``ts`` or ``dur`` reads as NaN (JSON cannot write NaN), so it can be told apart.
    """

    ph: str = ""
    name: str = ""
    cat: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = math.nan
    dur: float = math.nan


_chunk_decoder = msgspec.json.Decoder(list[RawEvent])


_event_decoder = msgspec.json.Decoder(RawEvent)


_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def _id_value(u: Any, strings: dict[str, int]) -> int:
    """A pid/tid as int64: integers (also numeric strings) as is, other strings interned."""
    if isinstance(u, int) and not isinstance(u, bool) and STRING_ID_BASE < u < 2**63:
        return u
    s = str(u)
    if s.lstrip("-").isdigit() and STRING_ID_BASE < int(s) < 2**63:
        return int(s)
    return string_id_value(strings.setdefault(s, len(strings)))


_scratch = bytearray()  # per process: reused so big chunks do not page-fault fresh memory


def decode_region(data: bytes, keep: RowFilter | None = None) -> Chunk:
    """Decode whole events separated by commas (no brackets); runs in worker processes too."""
    global _scratch
    n = len(data)
    if len(_scratch) < n + 2:
        _scratch = bytearray(n + 2 + (1 << 20))
    with memoryview(_scratch) as mv:
        mv[1 : n + 1] = data
        _scratch[0], _scratch[n + 1] = 0x5B, 0x5D  # '[' and ']'
        return _decode_bracketed(mv[: n + 2], keep)


def _decode_bracketed(view: memoryview, keep: RowFilter | None) -> Chunk:
    """Like :func:`decode_region` for ``[`` + events + ``]`` already in a reusable buffer."""
    try:
        return fast_decode(view, keep)
    except (*_DECODE_ERRORS, RecursionError):  # msgspec recurses, and stops near 1,000 levels
        pass
    try:
        return columnarize(_chunk_decoder.decode(view), keep)
    except (*_DECODE_ERRORS, RecursionError):
        return _decode_piecewise(bytes(view[1:-1]), keep)


def decode_event(piece: bytes | bytearray) -> RawEvent | None:
    """One event from its JSON text, or None if it is not one (nesting deeper than msgspec
    goes, e.g. in ``args``, is walked over, not decoded)."""
    try:
        return _event_decoder.decode(piece)
    except RecursionError:
        return _decode_shallow(piece)
    except _DECODE_ERRORS:
        return None


def _decode_shallow(piece: bytes | bytearray) -> RawEvent | None:
    """An event too deep for msgspec: its top-level fields tracelens reads, the rest skipped."""
    cur = Cursor(data=bytes(piece))
    kept: list[bytes] = []
    try:
        cur.expect(b"{")
        while True:
            cur.skip_ws()
            c = cur.peek()
            if c == 0x7D:  # '}'
                cur.pos += 1
                break
            if c == 0x2C:  # ','
                cur.pos += 1
                continue
            if c != 0x22:  # '"'
                return None
            key = cur.read_string(64)
            cur.expect(b":")
            wanted = key is not None and key[1:-1] in EVENT_FIELDS
            value = cur.scan_value(1 << 20 if wanted else 0, max_depth=0 if wanted else None)
            if wanted:
                if value.data is None or value.depth:
                    return None  # a field tracelens reads holds an array or object
                kept.append(key + b":" + value.data)  # type: ignore[operator]
        cur.skip_ws()
        if cur.peek() != -1:
            return None
    except ScanError:
        return None
    try:
        return _event_decoder.decode(b"{" + b",".join(kept) + b"}")
    except _DECODE_ERRORS:
        return None


def _event_at(data: bytes, start: int) -> tuple[RawEvent | None, int, int] | None:
    """The object that starts at ``data[start:]`` (after a comma), walked as JSON: (the event
    it is, or None; where it ends; bytes walked). None where it does not end within ``data``."""
    cur = Cursor(data=data)
    cur.pos = start
    cur.skip_ws()
    if cur.peek() == 0x2C:
        cur.pos += 1
        cur.skip_ws()
    if cur.peek() != 0x7B:
        return None
    try:
        value = cur.scan_value(limits.MAX_EVENT_BYTES)
    except ScanError:
        return None
    event = decode_event(value.data) if value.data is not None else None
    return event, cur.pos, value.size


def _skip_junk(data: bytes, bounds: list[int], i: int, events: list[RawEvent], skips: Skips) -> int:
    """From piece ``i`` on, the first piece that decodes alone (appended to ``events``); the
    stretch before it counts as one skipped event. Returns the index after that piece."""
    for k in range(i, len(bounds) - 1):
        event = decode_event(data[bounds[k] : bounds[k + 1]].strip(_WS).lstrip(b",").strip(_WS))
        if event is not None:
            events.append(event)
            skips.skipped += k > i
            return k + 1
    skips.skipped += 1
    return len(bounds) - 1


def _decode_piecewise(data: bytes, keep: RowFilter | None = None) -> Chunk:
    """Decode ``data`` event by event.

    A piece that does not decode is joined with the next ones, up to a few (a boundary
    look-alike inside a string split it); one that still fails is skipped and counted. Failing
    pieces before the first success, or that reach the region's end, are handed back as
    ``head``/``tail`` since only the neighbouring region can tell what they are.
    """
    bounds = [0, *(m.start() + 1 for m in _BOUNDARY.finditer(data)), len(data)]
    events: list[RawEvent] = []
    skips = Skips()
    head_end: int | None = None
    tail = b""
    # What the walk below may cover, in bytes: a walk that finds no event also costs
    # limits.WALK_MISS_BYTES, so that junk full of look-alikes cannot make it quadratic.
    budget = 2 * len(data) + limits.WALK_MISS_BYTES
    failures = 0
    i = 0
    while i < len(bounds) - 1:
        last_j = min(i + 9, len(bounds))
        for j in range(i + 1, last_j):
            piece = data[bounds[i] : bounds[j]].strip(_WS).lstrip(b",").strip(_WS)
            event = decode_event(piece)
            if event is None:
                continue
            events.append(event)
            if head_end is None:
                head_end = bounds[i]
            i = j
            failures = 0
            break
        else:
            if last_j == len(bounds):  # could not extend further: the next region may complete it
                tail = data[bounds[i] :]
                break
            # Many look-alikes inside one event: walk it as JSON to find where it really ends.
            found = _event_at(data, bounds[i]) if budget > 0 else None
            budget -= limits.WALK_MISS_BYTES if found is None or found[0] is None else 0
            if found is not None:
                event, end, walked = found
                budget -= walked
                if event is not None:
                    events.append(event)
                    if head_end is None:
                        head_end = bounds[i]
                    i = bisect.bisect_left(bounds, end, i + 1)
                    failures = 0
                    continue
            if head_end is not None:
                skips.note_undecodable(data[bounds[i] : bounds[i + 1]])
            failures += 1
            i += 1
            if failures > limits.MAX_PIECE_FAILURES:  # junk throughout: one try per piece from here
                if head_end is None:
                    head_end = 0  # junk, not the end of an event the previous region began
                i = _skip_junk(data, bounds, i, events, skips)
                failures = 0
    chunk = columnarize(events, keep)
    skips.add(chunk.skips)
    chunk.skips = skips
    if head_end is None:
        chunk.head, chunk.tail = data[: len(data) - len(tail)], tail
    else:
        chunk.head, chunk.tail = data[:head_end], tail
    return chunk


@dataclass
class _Columns:
    """Chunks merged in file order, strings interned into global tables."""

    ts_us: list[np.ndarray] = field(default_factory=list)
    dur_us: list[np.ndarray] = field(default_factory=list)
    name_id: list[np.ndarray] = field(default_factory=list)
    cat_id: list[np.ndarray] = field(default_factory=list)
    pid: list[np.ndarray] = field(default_factory=list)
    tid: list[np.ndarray] = field(default_factory=list)
    step_number: list[np.ndarray] = field(default_factory=list)
    names: dict[Any, int] = field(default_factory=dict)
    cats: dict[Any, int] = field(default_factory=dict)
    strings: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    events_total: int = 0
    complete: int = 0  # complete events with usable times, rows or not
    cat_counts: dict[str, int] = field(default_factory=dict)  # of those, per lower-cased category
    skips: Skips = field(default_factory=Skips)
    keep: RowFilter | None = None  # the rows kept (None: every complete event)
    carry: bytes = b""  # the previous chunk's undecoded tail
    keep_first_head: bool = False  # a span's first head may complete the previous span's tail
    first_head: bytes | None = None

    def merge(self, chunk: Chunk) -> None:
        if self.keep_first_head and self.first_head is None:
            self.first_head = chunk.head
        elif self.carry and not chunk.head and not chunk.events_total:
            # Nothing in the chunk decoded (the rest of an event cut at a boundary look-alike,
            # or garbage): all of it may continue the carry.
            self._add(chunk)
            self.carry = self._bounded(self.carry + b"," + chunk.tail)
            return
        elif self.carry or chunk.head:
            joined = self.carry + b"," + chunk.head if self.carry and chunk.head else self.carry or chunk.head
            self.add_text(joined)
        self.carry = self._bounded(chunk.tail)
        self._add(chunk)

    def _bounded(self, carry: bytes) -> bytes:
        """``carry``, or nothing (one event skipped) once it is longer than any event can be."""
        if len(carry) <= limits.MAX_EVENT_BYTES:
            return carry
        self.skips.note_undecodable(carry[:4096])
        return b""

    def add_text(self, text: bytes) -> None:
        """Events in ``text`` that did not decode in place, piece by piece; the rest skipped."""
        fixed = _decode_piecewise(text, self.keep)
        self._add(fixed)
        if fixed.head or fixed.tail:
            self.skips.note_undecodable(fixed.head or fixed.tail)

    def take_carry(self) -> bytes:
        """The undecoded tail of the last chunk (to read again with what follows it)."""
        carry, self.carry = self.carry, b""
        return carry

    def to_chunk(self) -> Chunk:
        """Everything merged so far as one Chunk (codes into this object's tables)."""
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

        strings = list(self.strings)

        def ids(parts: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
            values, codes = np.unique(cat(parts, np.int64), return_inverse=True)
            uniques = [strings[STRING_ID_BASE - v] if is_string_id(v) else v for v in values.tolist()]
            return codes.astype(np.int32), uniques

        return Chunk(
            events_total=self.events_total,
            skips=self.skips,
            phases=dict(self.phases),
            complete=self.complete,
            cat_counts=dict(self.cat_counts),
            step_number=cat(self.step_number, step_number_dtype(self.step_number)),
            ts_us=cat(self.ts_us, np.float64),
            dur_us=cat(self.dur_us, np.float64),
            name=(cat(self.name_id, np.int32), list(self.names)),
            cat=(cat(self.cat_id, np.int32), list(self.cats)),
            pid=ids(self.pid),
            tid=ids(self.tid),
            head=self.first_head or b"",
            tail=self.carry,
        )

    def add_events(self, events: list[RawEvent]) -> None:
        self._add(columnarize(events, self.keep))

    def _add(self, c: Chunk) -> None:
        self.events_total += c.events_total
        self.complete += c.complete
        self.skips.add(c.skips)
        for k, v in c.phases.items():
            self.phases[k] = self.phases.get(k, 0) + v
        for k, v in c.cat_counts.items():
            self.cat_counts[k] = self.cat_counts.get(k, 0) + v
        if not len(c.ts_us):
            return
        self.step_number.append(c.step_number)
        self.ts_us.append(c.ts_us)
        self.dur_us.append(c.dur_us)
        self.name_id.append(self._map(c.name, self.names, lambda u: u if isinstance(u, str) else str(u)))
        self.cat_id.append(self._map(c.cat, self.cats, _lower))
        strings = self.strings
        self.pid.append(self._ids(c.pid, strings))
        self.tid.append(self._ids(c.tid, strings))

    @staticmethod
    def _map(coded: tuple[np.ndarray, list[Any]], table: dict[Any, int], norm: Any) -> np.ndarray:
        codes, uniques = coded
        mapping = np.fromiter((table.setdefault(norm(u), len(table)) for u in uniques), np.int32, len(uniques))
        return _recode(mapping, codes)

    @staticmethod
    def _ids(coded: tuple[np.ndarray, list[Any]], strings: dict[str, int]) -> np.ndarray:
        codes, uniques = coded
        mapping = np.fromiter((_id_value(u, strings) for u in uniques), np.int64, len(uniques))
        return _recode(mapping, codes)


def _recode(mapping: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``mapping[codes]``; a read-only broadcast of its one value where ``mapping`` has one (one
    thread, one category: no memory per row until :func:`join_parts` must mix values)."""
    if mapping.size == 1:
        return np.broadcast_to(mapping[0], codes.shape)
    return mapping[codes]


def join_parts(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    """``parts`` as one column of ``dtype`` (``parts`` is emptied): a read-only broadcast when
    every part is one of the same value (see :func:`_recode`), else one array."""
    if not parts:
        return np.zeros(0, dtype)
    n = sum(p.size for p in parts)
    first = parts[0]
    if all(p.strides == (0,) or p.size <= 1 for p in parts) and first.size and \
            all(p.size == 0 or p[0] == first[0] for p in parts):
        parts.clear()
        return np.broadcast_to(np.asarray(first[0], dtype=dtype), (n,))
    out = np.empty(n, dtype)
    at = 0
    parts.reverse()
    while parts:  # each part freed once copied: no second copy of the whole column
        part = parts.pop()
        out[at : at + part.size] = part
        at += part.size
    return out


def step_number_dtype(parts: list[np.ndarray]) -> Any:
    """int32 when every step number in ``parts`` fits it (-1 on other rows), else int64: a
    column as long as the trace, halved."""
    fits = all(p.size == 0 or (int(p.min()) >= -(2**31) and int(p.max()) < 2**31) for p in parts)
    return np.int32 if fits else np.int64
