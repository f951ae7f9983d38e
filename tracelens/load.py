"""Load a Chrome trace (``.json`` / ``.json.gz``, any Kineto dialect) into the columnar model.

The file is streamed: the ``traceEvents`` array is cut into chunks at event boundaries and each
chunk is decoded by a typed msgspec decoder that reads only the fields the analyses use, so
memory stays well under the file size and no Python dict is built per event. A chunk that does
not decode (a malformed event, or a cut that fell inside a string) is retried event by event;
events that still fail are skipped and counted. A file that ends early is analyzed up to its
last complete event and marked truncated.
"""

from __future__ import annotations

import json
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

from tracelens._pool import worker_pool
from tracelens.errors import BadInputError
from tracelens.model import (
    STRING_ID_BASE,
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
HEADER_LIMIT = 256 << 20  # a top-level object with no traceEvents within this is not a trace

Progress = Callable[[int, int], None]  # (bytes of the file done, file size)

_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_EVENTS_KEY = re.compile(rb'"traceEvents"\s*:\s*\[')
_WS = b" \t\r\n"


class RawEvent(msgspec.Struct, frozen=True, gc=False):
    """The fields of one trace event that tracelens reads; the rest is skipped unparsed."""

    ph: str = ""
    name: str = ""
    cat: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = math.nan
    dur: float = 0.0


_chunk_decoder = msgspec.json.Decoder(list[RawEvent])
_event_decoder = msgspec.json.Decoder(RawEvent)
_phase, _name, _cat = attrgetter("ph"), attrgetter("name"), attrgetter("cat")
_pid, _tid, _ts, _dur = attrgetter("pid"), attrgetter("tid"), attrgetter("ts"), attrgetter("dur")


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


@dataclass
class Chunk:
    """One decoded region of the event array: columns with chunk-local string codes.

    ``head``/``tail`` hold bytes at the region's edges that did not decode on their own (an
    event cut by a boundary look-alike inside a string, or a malformed one); the caller joins
    a tail with the next region's head.
    """

    events_total: int = 0
    skipped: int = 0
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
    tuple per event first (``zip(*...)``) cost 2.5x more.
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
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _decode_piecewise(bytes(view[1:-1]))


def _decode_piecewise(data: bytes) -> Chunk:
    """Decode ``data`` event by event.

    A piece that does not decode is joined with the next ones, up to a few (a boundary
    look-alike inside a string split it); one that still fails is skipped and counted. Failing
    pieces before the first success, or that reach the region's end, are handed back as
    ``head``/``tail`` since only the neighbouring region can tell what they are.
    """
    bounds = [0, *(m.start() + 1 for m in _BOUNDARY.finditer(data)), len(data)]
    events: list[RawEvent] = []
    skipped = 0
    head_end: int | None = None
    tail = b""
    i = 0
    while i < len(bounds) - 1:
        last_j = min(i + 9, len(bounds))
        for j in range(i + 1, last_j):
            piece = data[bounds[i] : bounds[j]].strip(_WS).lstrip(b",").strip(_WS)
            try:
                events.append(_event_decoder.decode(piece))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if head_end is None:
                head_end = bounds[i]
            i = j
            break
        else:
            if last_j == len(bounds):  # could not extend further: the next region may complete it
                tail = data[bounds[i] :]
                break
            if head_end is not None:
                skipped += 1
            i += 1
    chunk = columnarize(events)
    chunk.skipped = skipped
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
    skipped: int = 0
    carry: bytes = b""  # the previous chunk's undecoded tail
    keep_first_head: bool = False  # a span's first head may complete the previous span's tail
    first_head: bytes | None = None

    def merge(self, chunk: Chunk) -> None:
        if self.keep_first_head and self.first_head is None:
            self.first_head = chunk.head
        elif self.carry or chunk.head:
            joined = self.carry + b"," + chunk.head if self.carry and chunk.head else self.carry or chunk.head
            fixed = _decode_piecewise(joined)
            self._add(fixed)
            self.skipped += fixed.skipped + (1 if fixed.head or fixed.tail else 0)
        self.carry = chunk.tail
        self._add(chunk)
        self.skipped += chunk.skipped

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
            skipped=self.skipped,
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


class _Reader:
    """A growing window over the start of the (decompressed) stream, for the header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream, self.format = _open_stream(path)
        self.size = path.stat().st_size
        self.buf = bytearray()
        self.pos = 0  # parse position in buf
        self.offset = 0  # stream offset of buf[0]
        self.eof = False
        self.broken: str | None = None  # why the stream stopped early, if it did

    def fill(self, want: int) -> None:
        """Read until ``want`` bytes are available after ``pos`` or the stream ends."""
        while not self.eof and len(self.buf) - self.pos < want:
            try:
                block = self.stream.read(READ_BLOCK)
            except (EOFError, zlib.error, OSError) as exc:
                self.eof = True
                self.broken = f"the gzip stream is broken ({exc})"
                break
            if not block:
                self.eof = True
                break
            self.buf += block

    def compressed_position(self) -> tuple[int, int]:
        """(bytes of the file read so far, file size): progress through a gzip stream."""
        raw = getattr(self.stream, "raw", self.stream)
        return raw.tell(), self.size

    def read_block(self, n: int) -> bytes:
        """Up to ``n`` more bytes of the stream (b"" at its end, or where it breaks)."""
        if self.eof:
            return b""
        try:
            block = self.stream.read(n)
        except (EOFError, zlib.error, OSError) as exc:
            self.eof = True
            self.broken = f"the gzip stream is broken ({exc})"
            return b""
        if not block:
            self.eof = True
        return block

    def skip_ws(self) -> None:
        while True:
            self.fill(1)
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return

    def close(self) -> None:
        self.stream.close()


# --------------------------------------------------------------------------- parsing


def _parse_header(r: _Reader) -> tuple[str, dict[str, Any]]:
    """Position ``r`` at the first event; return the top-level kind and the keys before it."""
    r.fill(64)
    if not r.buf:
        raise BadInputError(r.path, "the file is empty" if r.broken is None else r.broken)
    if r.buf.startswith(b"\xef\xbb\xbf"):
        r.pos = 3
    r.skip_ws()
    if r.pos >= len(r.buf):
        raise BadInputError(r.path, "the file holds only whitespace")
    first = r.buf[r.pos : r.pos + 1]
    if first == b"[":
        r.pos += 1
        return "array", {}
    if first == b"<":
        head = bytes(r.buf[r.pos : r.pos + 200]).lower()
        what = "an HTML page" if b"html" in head else "XML or HTML"
        raise BadInputError(r.path, f"is {what}, not a trace (a download error page saved as JSON?)")
    if first != b"{":
        raise BadInputError(r.path, "is not JSON (expected '{' or '[' at the start)")
    search_from = r.pos
    while True:
        m = _EVENTS_KEY.search(r.buf, search_from)
        if m:
            header_text = bytes(r.buf[r.pos : m.start()]).rstrip(_WS).rstrip(b",")
            try:
                header = json.loads(header_text + b"}") if header_text != b"{" else {}
            except ValueError:
                search_from = m.end()  # "traceEvents" inside some string value: keep looking
                continue
            r.pos = m.end()
            return "object", header if isinstance(header, dict) else {}
        if r.eof:
            break
        if len(r.buf) > HEADER_LIMIT:
            break
        search_from = max(r.pos, len(r.buf) - 32)
        r.fill(len(r.buf) - r.pos + READ_BLOCK)
    # No traceEvents array: decide between "not JSON", "not a trace" and "truncated".
    text = bytes(r.buf[r.pos :])
    try:
        obj = json.loads(text)
    except ValueError:
        if r.broken:
            raise BadInputError(r.path, r.broken) from None
        raise BadInputError(r.path, "is not valid JSON") from None
    keys = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
    raise BadInputError(r.path, f"is JSON but not a Chrome trace (no traceEvents; top-level keys: {keys})")


def _parse_tail(rest: bytes, cols: _Columns) -> tuple[dict[str, Any], bool]:
    """Decode what follows the last boundary: the last event(s), ``]`` and trailing keys."""
    if cols.carry:
        rest = cols.carry + b"," + rest
        cols.carry = b""
    dec = json.JSONDecoder()
    text = rest.decode("utf-8", errors="replace")
    i = 0
    n = len(text)
    tail: dict[str, Any] = {}
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            return tail, True  # the array never closed
        if text[i] == "]":
            i += 1
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            # An incomplete last event (file cut) or a malformed one before ']'.
            close = text.find("]", i)
            after = text[close + 1 :].strip() if close >= 0 else ""
            if close < 0 or not (after == "" or after.startswith((",", "}"))):
                return tail, True
            cols.skipped += 1
            i = close + 1
            break
        try:
            cols.add_events([msgspec.convert(obj, RawEvent)])
        except msgspec.ValidationError:
            cols.events_total += 1
            cols.skipped += 1
    rest_text = text[i:].strip()
    if rest_text.startswith(","):
        try:
            parsed = json.loads("{" + rest_text[1:])
            if isinstance(parsed, dict):
                tail = parsed
        except ValueError:
            return tail, True
    elif rest_text not in ("", "}"):
        return tail, True
    return tail, False


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
    """Decode the events in file bytes ``[start, end)`` (whole events) in chunks; one Chunk back."""
    cols = _Columns(keep_first_head=True)
    fd = os.open(path, os.O_RDONLY)
    # One buffer, reused: fresh multi-MB allocations per chunk cost page faults (system time).
    buf = bytearray(chunk_bytes + (2 << 20))
    try:
        pos = start
        while pos < end:
            cut = _next_cut(fd, pos + chunk_bytes, end) if pos + chunk_bytes < end else None
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


def _last_boundary(fd: int, start: int, size: int) -> tuple[int, int] | None:
    """The file's last event boundary after ``start``: (region end, tail start)."""
    window = 1 << 20
    while True:
        lo = max(start, size - window)
        data = os.pread(fd, size - lo, lo)
        last = None
        for found in _BOUNDARY.finditer(data):
            last = found
        if last is not None:
            return lo + last.start() + 1, lo + last.end() - 1
        if lo == start:
            return None
        window *= 4


def _parse_events_file(path: Path, start: int, cols: _Columns, pool: Executor | None, workers: int,
                       progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Plain-JSON fast path: split the event array into one span per worker, read with pread."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        last = _last_boundary(fd, start, size)
        if last is None:
            return _parse_tail(os.pread(fd, size - start, start), cols)
        events_end, tail_start = last
        spans: list[tuple[int, int]] = []
        pos = start
        parts = workers * 4 if pool else 1
        step = max((events_end - start) // parts, 1)
        for k in range(1, parts):
            cut = _next_cut(fd, max(start + k * step, pos), events_end)
            if cut is None:
                break
            spans.append((pos, cut[0]))
            pos = cut[1]
        spans.append((pos, events_end))
        futures = [pool.submit(decode_span, str(path), a, b, CHUNK_TARGET) if pool
                   else _Inline(decode_span(str(path), a, b, CHUNK_TARGET)) for a, b in spans]
        for f, (_, b) in zip(futures, spans):
            cols.merge(f.result())
            if progress is not None:
                progress(b, size)
        return _parse_tail(os.pread(fd, size - tail_start, tail_start), cols)
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

    try:
        # ``rest``: the stream from the current event on, as pieces not yet decoded.
        rest: list[bytes | memoryview] = [bytes(memoryview(r.buf)[r.pos :])]
        r.buf, r.pos = bytearray(), 0
        while True:
            block = r.read_block(CHUNK_TARGET)
            if not block:
                data = b"".join(rest)
                m = None
                for found in _BOUNDARY.finditer(data):
                    m = found
                if m is None:
                    drain(0)
                    return _parse_tail(data, cols)
                dispatch([memoryview(data)[: m.start() + 1]])
                drain(0)
                return _parse_tail(data[m.end() - 1 :], cols)
            m = _BOUNDARY.search(block)
            if m is None:  # the block lies inside one enormous event: read on
                rest.append(block)
                continue
            head = memoryview(block)
            dispatch([*rest, head[: m.start() + 1]])  # whole events, up to the closing brace
            rest = [head[m.end() - 1 :]]  # from the next event's opening brace
            drain(2 * workers + 1)
            if progress is not None:
                progress(*r.compressed_position())
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
        base_time_ns=int(base) if isinstance(base, (int, float)) else None,
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
            start = r.offset + r.pos
            tail, truncated = _parse_events_file(p, start, cols, pool, workers, progress)
            bytes_read = p.stat().st_size
        else:
            tail, truncated = _parse_events(r, cols, pool, forked, progress)
            bytes_read = r.offset + len(r.buf)
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


def _build_trace(meta: TraceMeta, cols: _Columns, truncated: bool, bytes_read: int, file_bytes: int) -> Trace:
    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    ts_us = cat(cols.ts_us, np.float64)
    dur_us = cat(cols.dur_us, np.float64)
    cols.ts_us.clear()
    cols.dur_us.clear()
    finite = np.isfinite(ts_us) & np.isfinite(dur_us)
    if not finite.all():
        cols.skipped += int((~finite).sum())
    origin_us = math.floor(float(ts_us[finite].min())) if finite.any() else 0
    ts_ns = np.zeros(ts_us.shape, np.int64)
    ts_ns[finite] = np.rint((ts_us[finite] - origin_us) * 1000.0).astype(np.int64)
    dur_ns = np.zeros(dur_us.shape, np.int64)
    dur_ns[finite] = np.rint(np.maximum(dur_us[finite], 0.0) * 1000.0).astype(np.int64)
    name_id = cat(cols.name_id, np.int32)
    cat_id = cat(cols.cat_id, np.int32)
    pid = cat(cols.pid, np.int64)
    tid = cat(cols.tid, np.int64)
    if not finite.all():
        ts_ns, dur_ns, name_id = ts_ns[finite], dur_ns[finite], name_id[finite]
        cat_id, pid, tid = cat_id[finite], pid[finite], tid[finite]
    cats = SymbolTable(tuple(cols.cats))
    counts = np.bincount(cat_id, minlength=len(cats))
    stats = LoadStats(
        events_total=cols.events_total,
        complete_events=len(ts_ns),
        skipped_malformed=cols.skipped,
        phase_counts=dict(cols.phases),
        category_counts={c: int(n) for c, n in zip(cats.names, counts.tolist())},
        truncated=truncated,
        bytes_read=bytes_read,
        file_bytes=file_bytes,
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
