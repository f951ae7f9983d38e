"""Events to columns: the typed msgspec decoder of the 7 fields the analyses use, the retry of
a region that does not decode (piece by piece, budgeted), skipped events and their counts, and
the interned numpy columns every chunk merges into."""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from tracelens.load import limits
from tracelens.load.scan import Cursor, ScanError
from tracelens.model import (
    STRING_ID_BASE,
    BadValue,
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


_phase, _name, _cat = attrgetter("ph"), attrgetter("name"), attrgetter("cat")


_pid, _tid, _ts, _dur = attrgetter("pid"), attrgetter("tid"), attrgetter("ts"), attrgetter("dur")


_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def _lower(s: Any) -> str:
    return s.lower() if isinstance(s, str) else str(s).lower()


def _id_value(u: Any, strings: dict[str, int]) -> int:
    """A pid/tid as int64: integers (also numeric strings) as is, other strings interned."""
    if isinstance(u, int) and not isinstance(u, bool) and STRING_ID_BASE < u < 2**63:
        return u
    s = str(u)
    if s.lstrip("-").isdigit() and STRING_ID_BASE < int(s) < 2**63:
        return int(s)
    return string_id_value(strings.setdefault(s, len(strings)))


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int32, copy=False), list(uniques)


_FIELD_TOKEN = re.compile(rb'"(ts|dur)"\s*:\s*("(?:[^"\\]|\\.){0,64}"?|[^,}\]\s]{1,64})')


_NAME_TOKEN = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.){0,100})')


_COMPLETE_TOKEN = re.compile(rb'"ph"\s*:\s*"X"')


_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def time_in_range(field_name: str, value: float) -> bool:
    """Whether ``value`` (µs) is a plausible ``ts`` or ``dur`` (NaN, i.e. missing, is not)."""
    if field_name == "ts":
        return abs(value) <= limits.TS_LIMIT_US
    return 0.0 <= value <= limits.DUR_LIMIT_US


def _number_text(value: float) -> str:
    """A float read from the file as text: "missing" for NaN, integers without ".0"."""
    if math.isnan(value):
        return "missing"
    if value.is_integer() and abs(value) < 1e17:
        return str(int(value))
    return repr(value)


def _bad_time_in_text(piece: bytes) -> BadValue | None:
    """A complete event that did not decode, when a ts or dur in it is written as something
    other than a number in range (``NaN``, ``1e400``, ``"12"``): which, as written."""
    if _COMPLETE_TOKEN.search(piece) is None:
        return None
    for m in _FIELD_TOKEN.finditer(piece):
        token = m.group(2)
        name = m.group(1).decode()
        if _JSON_NUMBER.fullmatch(token) and time_in_range(name, float(token)):
            continue
        found = _NAME_TOKEN.search(piece)
        label = found.group(1).decode("utf-8", "replace") if found else ""
        return BadValue(label[:100], name, token.decode("utf-8", "replace")[:40])
    return None


@dataclass
class Skips:
    """Events skipped, and why (counts in events)."""

    skipped: int = 0  # every skipped event, whatever the reason
    bad_time: int = 0  # of which: a ts or dur missing, not a number, or out of range
    bad_fields: dict[str, int] = field(default_factory=dict)
    examples: list[BadValue] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # bad-time events per name (capped)
    oversized: int = 0  # of which: over limits.MAX_EVENT_BYTES, never read

    def add(self, other: Skips) -> None:
        self.skipped += other.skipped
        self.bad_time += other.bad_time
        self.oversized += other.oversized
        for k, v in other.bad_fields.items():
            self.bad_fields[k] = self.bad_fields.get(k, 0) + v
        self.examples.extend(other.examples[: limits.MAX_BAD_EXAMPLES - len(self.examples)])
        for name, n in other.names.items():
            key = name if name in self.names or len(self.names) < limits.MAX_BAD_NAMES else ""
            self.names[key] = self.names.get(key, 0) + n

    def note_undecodable(self, piece: bytes) -> None:
        """One piece of text that is no event: a bad time if that is what it shows."""
        bad = _bad_time_in_text(piece)
        if bad is None:
            self.skipped += 1
        else:
            self.add(Skips(skipped=1, bad_time=1, bad_fields={bad.field: 1}, examples=[bad], names={bad.name: 1}))

    def note_oversized(self) -> None:
        self.skipped += 1
        self.oversized += 1


@dataclass
class Chunk:
    """One decoded region of the event array: columns with chunk-local string codes.

    ``head``/``tail`` hold bytes at the region's edges that did not decode on their own (an
    event cut by a boundary look-alike inside a string, or a malformed one); the caller joins
    a tail with the next region's head.
    """

    events_total: int = 0
    skips: Skips = field(default_factory=Skips)
    phases: dict[str, int] = field(default_factory=dict)
    ts_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dur_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    name: tuple[np.ndarray, list[Any]] = field(default_factory=lambda: (np.zeros(0, np.int32), []))
    cat: tuple[np.ndarray, list[Any]] = field(default_factory=lambda: (np.zeros(0, np.int32), []))
    pid: tuple[np.ndarray, list[Any]] = field(default_factory=lambda: (np.zeros(0, np.int32), []))
    tid: tuple[np.ndarray, list[Any]] = field(default_factory=lambda: (np.zeros(0, np.int32), []))
    head: bytes = b""
    tail: bytes = b""


def columnarize(events: list[RawEvent]) -> Chunk:
    """Columns of the complete (``X``) events among ``events``; every event is counted.

    Each column is pulled with ``map(attrgetter)`` straight into numpy, all in C: building a
    tuple per event first (``zip(*...)``) cost 2.5x more. Times are checked later, once, in
    :func:`_build_trace`.
    """
    if not events:
        return Chunk()
    phases_list = list(map(_phase, events))
    phases = dict(Counter(phases_list))
    xs = events if phases.get("X", 0) == len(events) else list(compress(events, map("X".__eq__, phases_list)))
    n = len(xs)
    if not n:
        return Chunk(events_total=len(events), phases=phases)
    return Chunk(
        events_total=len(events),
        phases=phases,
        ts_us=np.fromiter(map(_ts, xs), np.float64, n),
        dur_us=np.fromiter(map(_dur, xs), np.float64, n),
        name=_factorize(np.fromiter(map(_name, xs), object, n)),
        cat=_factorize(np.fromiter(map(_cat, xs), object, n)),
        pid=_factorize(np.fromiter(map(_pid, xs), object, n)),
        tid=_factorize(np.fromiter(map(_tid, xs), object, n)),
    )


_scratch = bytearray()  # per process: reused so big chunks do not page-fault fresh memory


def decode_region(data: bytes) -> Chunk:
    """Decode whole events separated by commas (no brackets); runs in worker processes too."""
    global _scratch
    n = len(data)
    if len(_scratch) < n + 2:
        _scratch = bytearray(n + 2 + (1 << 20))
    with memoryview(_scratch) as mv:
        mv[1 : n + 1] = data
        _scratch[0], _scratch[n + 1] = 0x5B, 0x5D  # '[' and ']'
        return _decode_bracketed(mv[: n + 2])


def _decode_bracketed(view: memoryview) -> Chunk:
    """Like :func:`decode_region` for ``[`` + events + ``]`` already in a reusable buffer."""
    try:
        return columnarize(_chunk_decoder.decode(view))
    except (*_DECODE_ERRORS, RecursionError):  # msgspec recurses, and stops near 1,000 levels
        return _decode_piecewise(bytes(view[1:-1]))


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


def _decode_piecewise(data: bytes) -> Chunk:
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
    chunk = columnarize(events)
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
    names: dict[Any, int] = field(default_factory=dict)
    cats: dict[Any, int] = field(default_factory=dict)
    strings: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    events_total: int = 0
    skips: Skips = field(default_factory=Skips)
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
        fixed = _decode_piecewise(text)
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
        self._add(columnarize(events))

    def _add(self, c: Chunk) -> None:
        self.events_total += c.events_total
        self.skips.add(c.skips)
        for k, v in c.phases.items():
            self.phases[k] = self.phases.get(k, 0) + v
        if not len(c.ts_us):
            return
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
        return mapping[codes]

    @staticmethod
    def _ids(coded: tuple[np.ndarray, list[Any]], strings: dict[str, int]) -> np.ndarray:
        codes, uniques = coded
        mapping = np.fromiter((_id_value(u, strings) for u in uniques), np.int64, len(uniques))
        return mapping[codes]
