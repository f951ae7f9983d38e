"""Load a Chrome trace (``.json`` / ``.json.gz``, any Kineto dialect) into the columnar model.

The file is streamed: the ``traceEvents`` array is cut into chunks at event boundaries and each
chunk is decoded by a typed msgspec decoder that reads only the fields the analyses use, so
memory stays well under the file size and no Python dict is built per event. A chunk that does
not decode (a malformed event, or a cut that fell inside a string) is retried event by event;
events that still fail are skipped and counted. A file that ends early is analyzed up to its
last complete event and marked truncated.

Hostile or damaged input costs bounded memory and no recursion. The metadata around the event
array, the array's last events and anything nested deeper than msgspec goes are walked with
:mod:`tracelens._jsonscan` (no recursion, a block in memory at a time): metadata tracelens does
not read is skipped unparsed, whatever its size or depth. An event bigger than
``MAX_EVENT_BYTES`` is skipped unread and counted; whitespace runs between events are squeezed
as they stream by. A complete event whose ``ts`` or ``dur`` is missing, not a number or out of
range is skipped and counted (``LoadStats.bad_time_*``), so every time the model holds fits
int64 nanoseconds with room for the analyses' sums.
"""

from __future__ import annotations

import bisect
import math
import mmap
import multiprocessing
import os
import re
import zlib
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np
import pandas as pd

from tracelens._jsonscan import Cursor, ScanError
from tracelens._pool import worker_pool
from tracelens.errors import BadInputError
from tracelens.model import (
    STRING_ID_BASE,
    BadValue,
    LoadStats,
    SymbolTable,
    Trace,
    TraceMeta,
    is_string_id,
    string_id_value,
)

GZIP_MAGIC = b"\x1f\x8b"
READ_BLOCK = 4 << 20  # bytes read from the (decompressed) stream at a time
CHUNK_TARGET = 8 << 20  # bytes of events decoded at once
PARALLEL_MIN_BYTES = 64 << 20  # (decompressed) size from which events are decoded in parallel

# Limits on hostile input. Each is far beyond anything a profiler writes, so that no real
# trace meets one; each bounds what a damaged or hostile file can cost.
#: |ts| above this (µs) is out of range. 4e15 µs as epoch time is the year 2096 (traces of
#: 2026 say 1.8e15); and (ts - earliest ts) × 1000 then stays under 8e18 ns < int64's 9.2e18.
TS_LIMIT_US = 4e15
#: dur above this (µs, 7 days) is out of range: profiler windows last seconds to minutes. It
#: keeps ts + dur within int64 ns, and sums of up to 15,000 such durations too.
DUR_LIMIT_US = 7 * 86_400e6
#: An event of which this many bytes have been read without reaching its end is skipped
#: (walked over unread) and counted; smaller ones are always read. Real events are under
#: 100 kB (a long call stack in args), this is 300 times that. Memory it may take: about
#: twice this, plus two read blocks.
MAX_EVENT_BYTES = 32 << 20
#: A metadata value tracelens reads (deviceProperties, distributedInfo, ...) bigger or deeper
#: than this refuses the file: real ones are a few kB and 3 levels deep. Metadata tracelens
#: does not read is skipped unparsed, at any size or depth.
MAX_META_VALUE_BYTES = 16 << 20
MAX_META_DEPTH = 64
MAX_KEY_BYTES = 4096  # a longer top-level key is skipped and named by its first characters
MAX_EXTRA_KEYS = 100  # names of unread top-level keys kept in TraceMeta.extra_keys
MAX_BAD_EXAMPLES = 5  # LoadStats.bad_time_examples
#: Whitespace runs of this many bytes or more at the edges of a read block that holds no event
#: boundary are squeezed to one space, so whitespace between events never piles up in memory.
SQUEEZE_WS_BYTES = 64 << 10
#: A region's text that does not decode is retried piece by piece (each joined with up to 8
#: next ones, then walked as JSON); after this many pieces in a row failed, each is tried
#: alone and a failing stretch counts as one skipped event: a region of real damage has a
#: few bad events, a region of hostile junk could hold a million pieces.
MAX_PIECE_FAILURES = 1024
#: Cost charged for walking a failed piece as JSON that finds no event (see _decode_piecewise).
WALK_MISS_BYTES = 64 << 10

Progress = Callable[[int, int], None]  # (bytes of the file done, file size)

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


# --------------------------------------------------------------------------- skipped events


_FIELD_TOKEN = re.compile(rb'"(ts|dur)"\s*:\s*("(?:[^"\\]|\\.){0,64}"?|[^,}\]\s]{1,64})')
_NAME_TOKEN = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.){0,100})')
_COMPLETE_TOKEN = re.compile(rb'"ph"\s*:\s*"X"')
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def time_in_range(field_name: str, value: float) -> bool:
    """Whether ``value`` (µs) is a plausible ``ts`` or ``dur`` (NaN, i.e. missing, is not)."""
    if field_name == "ts":
        return abs(value) <= TS_LIMIT_US
    return 0.0 <= value <= DUR_LIMIT_US


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
    oversized: int = 0  # of which: over MAX_EVENT_BYTES, never read

    def add(self, other: Skips) -> None:
        self.skipped += other.skipped
        self.bad_time += other.bad_time
        self.oversized += other.oversized
        for k, v in other.bad_fields.items():
            self.bad_fields[k] = self.bad_fields.get(k, 0) + v
        self.examples.extend(other.examples[: MAX_BAD_EXAMPLES - len(self.examples)])

    def note_undecodable(self, piece: bytes) -> None:
        """One piece of text that is no event: a bad time if that is what it shows."""
        bad = _bad_time_in_text(piece)
        if bad is None:
            self.skipped += 1
        else:
            self.add(Skips(skipped=1, bad_time=1, bad_fields={bad.field: 1}, examples=[bad]))

    def note_oversized(self) -> None:
        self.skipped += 1
        self.oversized += 1


# --------------------------------------------------------------------------- decoding events


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
        value = cur.scan_value(MAX_EVENT_BYTES)
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
    # WALK_MISS_BYTES, so that junk full of look-alikes cannot make it quadratic.
    budget = 2 * len(data) + WALK_MISS_BYTES
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
            budget -= WALK_MISS_BYTES if found is None or found[0] is None else 0
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
            if failures > MAX_PIECE_FAILURES:  # junk throughout: one try per piece from here
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
        if len(carry) <= MAX_EVENT_BYTES:
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


# --------------------------------------------------------------------------- byte stream


def _open_stream(path: Path) -> tuple[IO[bytes], str]:
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise BadInputError(path, "no such file") from None
    except IsADirectoryError:
        raise BadInputError(path, "is a directory, not a trace file") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot be read ({exc.strerror or exc})") from None
    magic = raw.read(2)
    raw.seek(0)
    if magic == GZIP_MAGIC:
        return _GunzipStream(raw), "json.gz"  # type: ignore[return-value]
    return raw, "json"


class _GunzipStream:
    """Streaming gunzip that hands out what it decoded before a cut or a corrupt block.

    (``gzip.GzipFile.read`` discards the partial output of a read that hits the problem.)
    Concatenated members are read one after the other, as gzip does.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.dec = zlib.decompressobj(wbits=31)
        self.pending = b""  # compressed input not yet fed
        self.in_member = False  # a member has started and not ended
        self.done = False
        self.error: Exception | None = None

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        got = 0
        while got < n and not self.done:
            data = self.dec.unconsumed_tail or self.pending
            self.pending = b""
            if not data:
                data = self.raw.read(1 << 20)
                if not data:
                    self.done = True
                    if self.in_member:
                        self.error = EOFError("the compressed stream ends before its end marker")
                    break
            if not self.in_member and not data.strip(b"\x00"):
                continue  # padding after the last member
            self.in_member = True
            try:
                piece = self.dec.decompress(data, n - got + 1)
            except zlib.error as exc:
                self.done = True
                self.error = exc
                break
            out.append(piece)
            got += len(piece)
            if self.dec.eof:
                self.pending = self.dec.unused_data
                self.dec = zlib.decompressobj(wbits=31)
                self.in_member = False
        if not got and self.error is not None:
            err, self.error = self.error, None
            raise err
        return out[0] if len(out) == 1 else b"".join(out)

    def close(self) -> None:
        self.raw.close()


class _Reader(Cursor):
    """The (decompressed) byte stream of a trace file, as a :class:`Cursor`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream, self.format = _open_stream(path)
        self.size = path.stat().st_size
        self.broken: str | None = None  # why the stream stopped early, if it did
        super().__init__(self._read)
        self.read_size = READ_BLOCK

    def _read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except (EOFError, zlib.error, OSError) as exc:
            self.broken = f"the gzip stream is broken ({exc})"
            return b""

    def compressed_position(self) -> tuple[int, int]:
        """(bytes of the file read so far, file size): progress through a gzip stream."""
        raw = getattr(self.stream, "raw", self.stream)
        return raw.tell(), self.size

    def close(self) -> None:
        self.stream.close()


def _range_reader(fd: int, start: int, end: int) -> Callable[[int], bytes]:
    """A ``read(n)`` over the file bytes ``[start, end)`` (pread: the offset is its own)."""
    pos = start

    def read(n: int) -> bytes:
        nonlocal pos
        data = os.pread(fd, min(n, end - pos), pos) if pos < end else b""
        pos += len(data)
        return data

    return read


# --------------------------------------------------------------------------- around the events


def _parse_header(r: _Reader) -> tuple[str, dict[str, Any]]:
    """Position ``r`` at the first event; return the top-level kind and the keys before it.

    The header maps the keys tracelens reads to their values and other keys (the first
    MAX_EXTRA_KEYS) to None: their values are skipped unparsed.
    """
    r.fill(64)
    if r.pos >= len(r.buf):
        raise BadInputError(r.path, "the file is empty" if r.broken is None else r.broken)
    if r.buf.startswith(b"\xef\xbb\xbf"):
        r.pos = 3
    r.skip_ws()
    first = r.peek()
    if first == -1:
        raise BadInputError(r.path, r.broken or "the file holds only whitespace")
    if first == 0x5B:  # '['
        r.pos += 1
        return "array", {}
    if first == 0x3C:  # '<'
        head = bytes(r.buf[r.pos : r.pos + 200]).lower()
        what = "an HTML page" if b"html" in head else "XML or HTML"
        raise BadInputError(r.path, f"is {what}, not a trace (a download error page saved as JSON?)")
    if first != 0x7B:  # '{'
        raise BadInputError(r.path, "is not JSON (expected '{' or '[' at the start)")
    r.pos += 1
    header: dict[str, Any] = {}
    try:
        found = _read_members(r, header, r.path, stop_at_events=True)
    except ScanError as exc:
        if r.broken:
            raise BadInputError(r.path, r.broken) from None
        if exc.incomplete:
            raise BadInputError(r.path, "ends inside its metadata, before the traceEvents array: "
                                        "the file is truncated") from None
        raise BadInputError(r.path, f"is not valid JSON ({exc})") from None
    if not found:
        keys = ", ".join(list(header)[:5])
        raise BadInputError(r.path, f"is JSON but not a Chrome trace (no traceEvents; top-level keys: {keys})")
    return "object", header


def _read_members(cur: Cursor, header: dict[str, Any], path: Path, *, stop_at_events: bool) -> bool:
    """Read the top-level object's ``"key": value`` members into ``header``.

    Stops after ``"traceEvents": [`` when ``stop_at_events`` (True) or after the closing brace
    (False). Keys in META_KEYS are decoded (within MAX_META_VALUE_BYTES and MAX_META_DEPTH);
    other values are walked over unparsed and their keys kept with None, up to MAX_EXTRA_KEYS.
    Raises ScanError where the text is not JSON.
    """
    extra = 0
    while True:
        cur.skip_ws()
        c = cur.peek()
        if c == 0x7D:  # '}'
            cur.pos += 1
            return False
        if c == 0x2C:  # ','
            cur.pos += 1
            continue
        if c == -1:
            raise ScanError("the text ends inside the top-level object", incomplete=True)
        if c != 0x22:
            raise ScanError(f"expected a key at byte {cur.tell()}, found {chr(c)!r}")
        at = cur.tell()
        key = _key_text(cur.read_string(MAX_KEY_BYTES))
        cur.expect(b":")
        cur.skip_ws()
        if key == "traceEvents" and stop_at_events:
            if cur.peek() == 0x5B:
                cur.pos += 1
                return True
            raise BadInputError(path, f"its traceEvents (at byte {at}) is not an array: not a Chrome trace")
        if key in META_KEYS:
            header[key] = _read_meta_value(cur, key, path)
            continue
        cur.scan_value(0)
        if key != "traceEvents" and key not in header and extra < MAX_EXTRA_KEYS:
            header[key] = None
            extra += 1


def _key_text(raw: bytes | None) -> str:
    """A key's text from its JSON string (None: longer than MAX_KEY_BYTES)."""
    if raw is None:
        return f"<a key over {MAX_KEY_BYTES} bytes>"
    try:
        return str(msgspec.json.decode(raw, type=str))
    except _DECODE_ERRORS:
        return raw[1:-1].decode("utf-8", "replace")


def _read_meta_value(cur: Cursor, key: str, path: Path) -> Any:
    """The value of metadata key ``key``, decoded; a clear error past the limits."""
    scanned = cur.scan_value(MAX_META_VALUE_BYTES, max_depth=MAX_META_DEPTH)
    if scanned.depth > MAX_META_DEPTH:
        raise BadInputError(path, f"its {key} metadata nests deeper than {MAX_META_DEPTH} levels, "
                                  "the most tracelens reads (a profiler writes 3): the file is damaged")
    if scanned.data is None:
        raise BadInputError(path, f"its {key} metadata exceeds {MAX_META_VALUE_BYTES >> 20} MB, the most "
                                  "tracelens reads (a profiler writes a few kB): the file is damaged")
    try:
        return msgspec.json.decode(scanned.data)
    except (*_DECODE_ERRORS, RecursionError) as exc:
        raise BadInputError(path, f"its {key} metadata is not valid JSON ({exc}): "
                                  "the file is damaged") from None


def _read_elements(cur: Cursor, cols: _Columns, *, resume_after: int | None = None) -> str:
    """Decode elements of the event array one at a time (the array's end, or where cutting
    regions failed): "end" after the array's ``]``; "eof" where the stream ends first (an
    element cut there is dropped, not counted); with ``resume_after`` (bytes from the
    cursor), "resume" at the first element starting that far on or further, for the caller
    to cut regions again. An element over MAX_EVENT_BYTES is walked over, skipped and counted.
    """
    start = cur.tell()
    resume_at = None if resume_after is None else start + resume_after
    carry = cols.take_carry()
    if carry:  # the undecoded end of the last region goes first (stream offsets kept)
        cur.reset(carry + b"," + cur.take_rest(), offset=start - len(carry) - 1)
    events: list[RawEvent] = []
    try:
        while True:
            cur.skip_ws()
            c = cur.peek()
            if c == -1:
                return "eof"
            if c == 0x5D:  # ']'
                cur.pos += 1
                return "end"
            if c == 0x2C:  # ','
                cur.pos += 1
                continue
            if resume_at is not None and cur.tell() >= resume_at:
                return "resume"
            try:
                value = cur.scan_value(MAX_EVENT_BYTES)
            except ScanError:
                return "eof"
            if value.data is None:
                cols.skips.note_oversized()
                continue
            event = decode_event(value.data)
            if event is None:  # maybe several events, if the text before threw the walk off
                cols.add_text(value.data)
            else:
                events.append(event)
                if len(events) >= 4096:
                    cols.add_events(events)
                    events = []
    finally:
        cols.add_events(events)


def _read_trailer(cur: Cursor, path: Path) -> tuple[dict[str, Any], bool]:
    """What follows the event array's ``]``: the keys after it, and whether the text is cut."""
    cur.skip_ws()
    c = cur.peek()
    if c in (-1, 0x7D):  # the end of a bare array, or of the object
        return {}, False
    if c != 0x2C:
        return {}, True
    cur.pos += 1
    tail: dict[str, Any] = {}
    try:
        _read_members(cur, tail, path, stop_at_events=False)
    except ScanError:
        return tail, True
    return tail, False


def _squeeze_ws(block: bytes) -> bytes:
    """``block`` (one holding no event boundary) with whitespace runs of SQUEEZE_WS_BYTES or
    more at its edges cut to one space. Between events that changes nothing; inside a string
    it shortens the string (no profiler writes 64 kB of blanks in a name)."""
    left = len(block) - len(block.lstrip())
    right = len(block) - len(block.rstrip())
    if left < SQUEEZE_WS_BYTES and right < SQUEEZE_WS_BYTES:
        return block
    core = block[left : len(block) - right]
    return ((b" " if left >= SQUEEZE_WS_BYTES else block[:left]) + core
            + (b" " if right >= SQUEEZE_WS_BYTES else block[len(block) - right :]))


def _last_match(data: bytes) -> re.Match[bytes] | None:
    last = None
    for last in _BOUNDARY.finditer(data):  # noqa: B007
        pass
    return last


def _split_stream(cur: Cursor, cols: _Columns, emit: Callable[[list[bytes | memoryview]], None],
                  flush: Callable[[], None], progress: Callable[[], None] | None = None) -> str:
    """Cut the event array ``cur`` streams (positioned inside it) into regions of whole events.

    Each region goes to ``emit`` as consecutive pieces of the stream, cut after an event's
    closing brace. A read block with no boundary lies inside one event, or in whitespace: the
    bytes since the last boundary are then counted, whitespace at block edges squeezed, and
    past MAX_EVENT_BYTES the elements are read one at a time (:func:`_read_elements`, after
    ``flush()`` has merged every region emitted) until the oversized one is passed.

    Returns "rest" with ``cur`` holding the bytes after the last boundary (read them with
    :func:`_read_elements`), or what :func:`_read_elements` returned when the stream ended
    while elements were being read one at a time.
    """
    rest: list[bytes | memoryview] = [cur.take_rest()]  # from the current event on
    size = len(rest[0])
    cut = False  # rest has been cut at its last boundary: it holds (part of) one event
    while True:
        block = cur.read_block(CHUNK_TARGET)
        if not block:
            data = b"".join(rest)
            rest.clear()
            last = _last_match(data)
            if last is not None:
                emit([memoryview(data)[: last.start() + 1]])
            flush()
            cur.reset(memoryview(data)[last.end() - 1 :] if last is not None else data)
            return "rest"
        blank = block.isspace()  # fails at the first byte of an ordinary block
        m = None if blank else _BOUNDARY.search(block)
        if m is None:  # the block lies inside one event, or in whitespace between two
            if not cut:
                data = b"".join(rest)
                last = _last_match(data)
                if last is not None:
                    emit([memoryview(data)[: last.start() + 1]])
                    data = data[last.end() - 1 :]
                rest, size, cut = [data], len(data), True
            block = b" " if blank else _squeeze_ws(block)
            rest.append(block)
            size += len(block)
            if size > MAX_EVENT_BYTES:
                flush()
                cur.reset_from(rest)
                state = _read_elements(cur, cols, resume_after=size)
                if state != "resume":
                    return state
                rest = [cur.take_rest()]
                size, cut = len(rest[0]), False
            continue
        head = memoryview(block)
        emit([*rest, head[: m.start() + 1]])  # whole events, up to the closing brace
        rest = [head[m.end() - 1 :]]  # from the next event's opening brace
        size, cut = len(rest[0]), False
        if progress is not None:
            progress()


def _finish(cur: Cursor, cols: _Columns, state: str, path: Path) -> tuple[dict[str, Any], bool]:
    """After :func:`_split_stream`: the last elements, then the keys after the array."""
    if state == "rest":
        state = _read_elements(cur, cols)
    if state != "end":
        return {}, True
    return _read_trailer(cur, path)


# --------------------------------------------------------------------------- the event array


def _next_cut(fd: int, pos: int, limit: int) -> tuple[int, int] | None:
    """The first event boundary at or after ``pos`` (before ``limit``): (region end, next start)."""
    window = 1 << 20
    while pos < limit:
        data = os.pread(fd, min(window, limit - pos) + 64, pos)
        m = _BOUNDARY.search(data)
        if m is not None and pos + m.start() < limit:
            return pos + m.start() + 1, pos + m.end() - 1
        if pos + len(data) >= limit or not data:
            return None
        pos += len(data) - 64
        window *= 2
    return None


def decode_span(path: str, start: int, end: int, chunk_bytes: int) -> Chunk:
    """Decode the events in file bytes ``[start, end)`` (whole events) in chunks; one Chunk back.

    Where no event boundary follows within MAX_EVENT_BYTES, the rest of the span is streamed
    through :func:`_split_stream` instead, which bounds memory whatever lies there.
    """
    cols = _Columns(keep_first_head=True)
    fd = os.open(path, os.O_RDONLY)
    # One buffer, reused: fresh multi-MB allocations per chunk cost page faults (system time).
    buf = bytearray(chunk_bytes + (2 << 20))
    try:
        pos = start
        while pos < end:
            cut = None
            if pos + chunk_bytes < end:
                limit = min(end, pos + chunk_bytes + MAX_EVENT_BYTES)
                cut = _next_cut(fd, pos + chunk_bytes, limit)
                if cut is None and limit < end:
                    _decode_range(fd, pos, end, cols)
                    break
            region_end, next_pos = cut if cut else (end, end)
            n = region_end - pos
            if n + 2 > len(buf):
                buf = bytearray(n + 2)
            with memoryview(buf) as mv:
                got = os.preadv(fd, [mv[1 : 1 + n]], pos)
                buf[0], buf[got + 1] = 0x5B, 0x5D  # '[' and ']'
                cols.merge(_decode_bracketed(mv[: got + 2]))
            pos = next_pos
    finally:
        os.close(fd)
    return cols.to_chunk()


def _decode_range(fd: int, start: int, end: int, cols: _Columns) -> None:
    """Decode the whole events in file bytes ``[start, end)`` as a stream, in this process."""
    cur = Cursor(_range_reader(fd, start, end))
    state = _split_stream(cur, cols, lambda parts: cols.merge(decode_region(b"".join(parts))), lambda: None)
    if state == "rest":
        _read_elements(cur, cols)


def _last_boundary(fd: int, start: int, size: int) -> tuple[int, int] | None:
    """The file's last event boundary after ``start``: (region end, tail start).

    Read backwards a window at a time, so a long stretch without one costs no memory.
    """
    window = 1 << 20
    hi = size
    while hi > start:
        lo = max(start, hi - window)
        data = os.pread(fd, min(size, hi + 64) - lo, lo)  # overlap: a boundary across ``hi``
        last = _last_match(data)
        if last is not None:
            return lo + last.start() + 1, lo + last.end() - 1
        hi = lo
    return None


def _parse_events_file(path: Path, start: int, cols: _Columns, pool: Executor | None, workers: int,
                       progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Plain-JSON fast path: split the event array into one span per worker, read with pread."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        last = _last_boundary(fd, start, size)
        tail_start = start
        if last is not None:
            events_end, tail_start = last
            spans: list[tuple[int, int]] = []
            pos = start
            parts = workers * 4 if pool else 1
            step = max((events_end - start) // parts, 1)
            for k in range(1, parts):
                at = max(start + k * step, pos)
                cut = _next_cut(fd, at, min(events_end, at + MAX_EVENT_BYTES))
                if cut is None:
                    continue
                spans.append((pos, cut[0]))
                pos = cut[1]
            spans.append((pos, events_end))
            futures = [pool.submit(decode_span, str(path), a, b, CHUNK_TARGET) if pool
                       else _Inline(decode_span(str(path), a, b, CHUNK_TARGET)) for a, b in spans]
            for f, (_, b) in zip(futures, spans):
                cols.merge(f.result())
                if progress is not None:
                    progress(b, size)
        cur = Cursor(_range_reader(fd, tail_start, size), offset=tail_start)
        state = _split_stream(cur, cols, lambda parts: cols.merge(decode_region(b"".join(parts))), lambda: None)
        return _finish(cur, cols, state, path)
    finally:
        os.close(fd)


class _Inline:
    """A finished 'future' for chunks decoded in this process."""

    def __init__(self, value: Chunk) -> None:
        self.value = value

    def result(self) -> Chunk:
        return self.value

    def done(self) -> bool:
        return True


_shared: mmap.mmap | None = None  # regions for forked workers; created before they fork


def decode_shared(offset: int, length: int) -> Chunk:
    """Decode ``[`` + events + ``]`` that the parent placed in the shared buffer (worker side)."""
    if _shared is None:
        raise RuntimeError("tracelens: worker started before the shared buffer existed")
    with memoryview(_shared) as mv:
        return _decode_bracketed(mv[offset : offset + length])


def _parse_events(r: _Reader, cols: _Columns, pool: Executor | None, forked: bool = False,
                  progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Stream path (gzip): cut the event array at event boundaries as it is decompressed.

    Regions go to ``pool`` (through slots of an anonymous shared mapping when the workers
    are forked, so nothing is pickled; as bytes otherwise) while this process goes on
    decompressing; it waits only when ``2 × workers + 1`` regions are in flight. (Decoding
    regions here as well when the workers were busy measured slower: decompression stalled.)
    """
    global _shared
    workers = getattr(pool, "_max_workers", 0)
    slot_size = CHUNK_TARGET + 2 * READ_BLOCK
    free_slots: list[int] = []
    if pool is not None and forked:
        _shared = mmap.mmap(-1, (2 * workers + 2) * slot_size)
        free_slots = list(range(2 * workers + 2))
    pending: deque[tuple[Any, int | None]] = deque()

    def drain(limit: int) -> None:
        while pending and (len(pending) > limit or pending[0][0].done()):
            future, slot = pending.popleft()
            cols.merge(future.result())
            if slot is not None:
                free_slots.append(slot)

    def dispatch(parts: list[bytes | memoryview]) -> None:
        """Send the region made of ``parts`` (consecutive pieces of the stream) to be decoded."""
        n = sum(len(x) for x in parts)
        if pool is not None:
            if _shared is not None and free_slots and n + 2 <= slot_size:
                slot = free_slots.pop()
                at = slot * slot_size
                _shared[at] = 0x5B  # '['
                pos = at + 1
                for x in parts:  # the one copy: straight into the slot
                    _shared[pos : pos + len(x)] = x
                    pos += len(x)
                _shared[pos] = 0x5D  # ']'
                pending.append((pool.submit(decode_shared, at, n + 2), slot))
            else:
                pending.append((pool.submit(decode_region, b"".join(parts)), None))
        else:
            pending.append((_Inline(decode_region(b"".join(parts))), None))
        drain(2 * workers + 1)

    def report() -> None:
        if progress is not None:
            progress(*r.compressed_position())

    try:
        state = _split_stream(r, cols, dispatch, lambda: drain(0), report)
        drain(0)
        return _finish(r, cols, state, r.path)
    finally:
        for future, _ in pending:
            future.cancel()
        if _shared is not None:
            _shared.close()  # workers keep their own (forked) mapping until they exit
            _shared = None


def _meta(path: Path, fmt: str, top: str, header: dict[str, Any]) -> TraceMeta:
    props = header.get("deviceProperties") or header.get("computeProperties") or []
    if not isinstance(props, list):
        props = []
    dist = header.get("distributedInfo")
    base = header.get("baseTimeNanoseconds")
    schema = header.get("schemaVersion")
    with_stack = header.get("with_stack")
    known = {"deviceProperties", "computeProperties", "distributedInfo", "baseTimeNanoseconds",
             "schemaVersion", "traceName", "displayTimeUnit", "Framework", "with_stack"}
    return TraceMeta(
        path=str(path),
        format=fmt,
        top_level=top,
        schema_version=schema if isinstance(schema, int) else None,
        base_time_ns=int(base) if isinstance(base, (int, float)) and not isinstance(base, bool)
        and abs(base) < 2**63 else None,
        device_properties=tuple(p for p in props if isinstance(p, dict)),
        distributed_info=dist if isinstance(dist, dict) else None,
        trace_name=header.get("traceName") if isinstance(header.get("traceName"), str) else None,
        display_time_unit=header.get("displayTimeUnit") if isinstance(header.get("displayTimeUnit"), str) else None,
        framework=header.get("Framework") if isinstance(header.get("Framework"), str) else None,
        with_stack=bool(with_stack) if with_stack is not None else None,
        extra_keys=tuple(k for k in header if k not in known),
    )


def _workers_for(path: Path, fmt: str, jobs: int | None) -> int:
    """Processes to decode with: several only for big files on machines with spare cores."""
    if jobs is not None:
        return max(1, jobs)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    size = path.stat().st_size * (8 if fmt == "json.gz" else 1)
    return min(cores, 4) if size >= PARALLEL_MIN_BYTES else 1


def load_trace(path: str | Path, *, jobs: int | None = None, progress: Progress | None = None) -> Trace:
    """Read a Chrome trace file into a :class:`Trace`; raise :class:`BadInputError` if it is not one.

    ``jobs`` is the number of processes decoding events (default: one per core, up to 4, for
    files of 64 MB or more; one otherwise); they die with this process, whatever kills it.
    ``progress(done, total)`` is called now and then with bytes of the file.
    """
    p = Path(path)
    if p.exists() and p.is_file() and p.stat().st_size == 0:
        raise BadInputError(p, "the file is empty")
    r = _Reader(p)
    cols = _Columns()
    pool: Executor | None = None
    try:
        top, header = _parse_header(r)
        workers = _workers_for(p, r.format, jobs)
        forked = "fork" in multiprocessing.get_all_start_methods()
        if workers > 1:
            pool = worker_pool(workers, multiprocessing.get_context("fork" if forked else None))
        if r.format == "json":
            tail, truncated = _parse_events_file(p, r.tell(), cols, pool, workers, progress)
            bytes_read = p.stat().st_size
        else:
            tail, truncated = _parse_events(r, cols, pool, forked, progress)
            bytes_read = r.total_read
    finally:
        r.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if progress is not None:
        progress(p.stat().st_size, p.stat().st_size)
    truncated = truncated or r.broken is not None
    header = {**header, **tail}
    if cols.events_total == 0 and truncated:
        raise BadInputError(p, r.broken or "the file ends before its first complete event")
    meta = _meta(p, r.format, top, header)
    return _build_trace(meta, cols, truncated, bytes_read, p.stat().st_size)


def _drop_bad_times(cols: _Columns, ts_us: np.ndarray, dur_us: np.ndarray, name_id: np.ndarray) -> np.ndarray | None:
    """Rows whose ts and dur are plausible (None: all are); the others are counted in ``cols``."""
    ts_bad = ~(np.abs(ts_us) <= TS_LIMIT_US)  # NaN (missing) compares False: bad
    dur_bad = ~((dur_us >= 0.0) & (dur_us <= DUR_LIMIT_US))
    bad = ts_bad | dur_bad
    rows = np.flatnonzero(bad)
    if not rows.size:
        return None
    names = list(cols.names)
    examples = []
    for row in rows[: MAX_BAD_EXAMPLES].tolist():
        which = "ts" if ts_bad[row] else "dur"
        value = float(ts_us[row] if which == "ts" else dur_us[row])
        examples.append(BadValue(str(names[name_id[row]])[:100], which, _number_text(value)[:40]))
    cols.skips.add(Skips(skipped=int(rows.size), bad_time=int(rows.size), examples=examples,
                         bad_fields={k: n for k, n in (("ts", int(ts_bad.sum())), ("dur", int(dur_bad.sum()))) if n}))
    return ~bad


def _build_trace(meta: TraceMeta, cols: _Columns, truncated: bool, bytes_read: int, file_bytes: int) -> Trace:
    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    ts_us = cat(cols.ts_us, np.float64)
    dur_us = cat(cols.dur_us, np.float64)
    cols.ts_us.clear()
    cols.dur_us.clear()
    name_id = cat(cols.name_id, np.int32)
    cat_id = cat(cols.cat_id, np.int32)
    pid = cat(cols.pid, np.int64)
    tid = cat(cols.tid, np.int64)
    keep = _drop_bad_times(cols, ts_us, dur_us, name_id)
    if keep is not None:
        ts_us, dur_us, name_id, cat_id, pid, tid = (a[keep] for a in (ts_us, dur_us, name_id, cat_id, pid, tid))
    # Every ts is within ±TS_LIMIT_US and every dur within [0, DUR_LIMIT_US]: these fit int64 ns.
    origin_us = math.floor(float(ts_us.min())) if ts_us.size else 0
    ts_ns = np.rint((ts_us - origin_us) * 1000.0).astype(np.int64)
    dur_ns = np.rint(dur_us * 1000.0).astype(np.int64)
    cats = SymbolTable(tuple(cols.cats))
    counts = np.bincount(cat_id, minlength=len(cats))
    skips = cols.skips
    stats = LoadStats(
        events_total=cols.events_total,
        complete_events=len(ts_ns),
        skipped_malformed=skips.skipped,
        phase_counts=dict(cols.phases),
        category_counts={c: int(n) for c, n in zip(cats.names, counts.tolist())},
        truncated=truncated,
        bytes_read=bytes_read,
        file_bytes=file_bytes,
        bad_time_events=skips.bad_time,
        bad_time_fields=dict(skips.bad_fields),
        bad_time_examples=tuple(skips.examples),
        oversized_events=skips.oversized,
    )
    return Trace(
        meta=meta,
        stats=stats,
        names=SymbolTable(tuple(cols.names)),
        cats=cats,
        strings=SymbolTable(tuple(cols.strings)),
        ts_ns=ts_ns,
        dur_ns=dur_ns,
        name_id=name_id,
        cat_id=cat_id,
        pid=pid,
        tid=tid,
        origin_us=origin_us,
    )


def read_header(path: str | Path) -> dict[str, Any]:
    """The top-level keys before ``traceEvents`` (``{}`` for a bare event array), read from the
    start of the file only; raises :class:`BadInputError` when the file is not a trace."""
    r = _Reader(Path(path))
    try:
        return _parse_header(r)[1]
    finally:
        r.close()
