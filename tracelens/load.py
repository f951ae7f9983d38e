"""Load a Chrome trace (``.json`` / ``.json.gz``, any Kineto dialect) into the columnar model.

The file is streamed: the ``traceEvents`` array is cut into chunks at event boundaries and each
chunk is decoded by a typed msgspec decoder that reads only the fields the analyses use, so
memory stays well under the file size and no Python dict is built per event. A chunk that does
not decode (a malformed event, or a cut that fell inside a string) is retried event by event;
events that still fail are skipped and counted. A file that ends early is analyzed up to its
last complete event and marked truncated.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np
import pandas as pd

from tracelens.errors import BadInputError
from tracelens.model import LoadStats, SymbolTable, Trace, TraceMeta

GZIP_MAGIC = b"\x1f\x8b"
READ_BLOCK = 4 << 20  # bytes read from the (decompressed) stream at a time
CHUNK_TARGET = 8 << 20  # bytes of events decoded at once
HEADER_LIMIT = 256 << 20  # a top-level object with no traceEvents within this is not a trace

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
    ts: float | None = None
    dur: float = 0.0


_chunk_decoder = msgspec.json.Decoder(list[RawEvent])
_event_decoder = msgspec.json.Decoder(RawEvent)
_fields = attrgetter("ph", "name", "cat", "pid", "tid", "ts", "dur")


class _Interner:
    """Maps strings (or mixed ids) to dense int ids across chunks."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}

    def codes(self, values: list[Any], normalize: Any = None) -> np.ndarray:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
        table = self.ids
        mapping = np.empty(len(uniques), dtype=np.int32)
        for i, u in enumerate(uniques):
            key = normalize(u) if normalize else u
            mapping[i] = table.setdefault(key, len(table))
        return mapping[codes] if len(codes) else np.zeros(0, np.int32)

    def table(self) -> SymbolTable:
        return SymbolTable(tuple(str(k) for k in self.ids))


def _lower(s: Any) -> str:
    return s.lower() if isinstance(s, str) else str(s).lower()


@dataclass
class _Columns:
    ts_us: list[np.ndarray] = field(default_factory=list)
    dur_us: list[np.ndarray] = field(default_factory=list)
    name_id: list[np.ndarray] = field(default_factory=list)
    cat_id: list[np.ndarray] = field(default_factory=list)
    pid: list[np.ndarray] = field(default_factory=list)
    tid: list[np.ndarray] = field(default_factory=list)
    names: _Interner = field(default_factory=_Interner)
    cats: _Interner = field(default_factory=_Interner)
    strings: _Interner = field(default_factory=_Interner)
    phases: dict[str, int] = field(default_factory=dict)
    events_total: int = 0
    skipped: int = 0

    def add(self, events: list[RawEvent]) -> None:
        self.events_total += len(events)
        if not events:
            return
        columns: list[Sequence[Any]] = list(zip(*map(_fields, events)))
        ph, name, cat, pid, tid, ts, dur = columns
        phs, counts = np.unique(np.asarray(ph, dtype=object), return_counts=True)
        for p, c in zip(phs.tolist(), counts.tolist()):
            self.phases[p] = self.phases.get(p, 0) + int(c)
        is_x = np.fromiter((p == "X" for p in ph), dtype=bool, count=len(ph))
        has_ts = np.fromiter((t is not None for t in ts), dtype=bool, count=len(ts))
        keep = is_x & has_ts
        if not keep.all():
            idx = np.flatnonzero(keep).tolist()
            name = [name[i] for i in idx]
            cat = [cat[i] for i in idx]
            pid = [pid[i] for i in idx]
            tid = [tid[i] for i in idx]
            ts = [ts[i] for i in idx]
            dur = [dur[i] for i in idx]
        if not ts:
            return
        self.ts_us.append(np.asarray(ts, dtype=np.float64))
        self.dur_us.append(np.asarray(dur, dtype=np.float64))
        self.name_id.append(self.names.codes(list(name)))
        self.cat_id.append(self.cats.codes(list(cat), _lower))
        self.pid.append(self._ids(list(pid)))
        self.tid.append(self._ids(list(tid)))

    def _ids(self, values: list[Any]) -> np.ndarray:
        """Thread/process ids as int64; strings that are not integers are interned as ``-1-id``."""
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
        mapping = np.empty(len(uniques), dtype=np.int64)
        for i, u in enumerate(uniques):
            mapping[i] = _id_value(u, self.strings.ids)
        return mapping[codes]


def _id_value(u: Any, strings: dict[Any, int]) -> int:
    if isinstance(u, bool):
        return int(u)
    if isinstance(u, int):
        return u
    s = str(u)
    if s.lstrip("-").isdigit():
        return int(s)
    return -1 - strings.setdefault(s, len(strings))


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
        out = bytearray()
        while len(out) < n and not self.done:
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
                out += self.dec.decompress(data, n - len(out) + 1)
            except zlib.error as exc:
                self.done = True
                self.error = exc
                break
            if self.dec.eof:
                self.pending = self.dec.unused_data
                self.dec = zlib.decompressobj(wbits=31)
                self.in_member = False
        if not out and self.error is not None:
            err, self.error = self.error, None
            raise err
        return bytes(out)

    def close(self) -> None:
        self.raw.close()


class _Reader:
    """A growing window over the decompressed stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream, self.format = _open_stream(path)
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
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                self.eof = True
                self.broken = f"the gzip stream is broken ({exc})"
                break
            if not block:
                self.eof = True
                break
            self.buf += block

    def compact(self) -> None:
        if self.pos > (16 << 20):
            del self.buf[: self.pos]
            self.offset += self.pos
            self.pos = 0

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


def _decode_chunk(view: memoryview, cols: _Columns) -> bool:
    try:
        events = _chunk_decoder.decode(view)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    cols.add(events)
    return True


def _decode_piecewise(buf: bytearray, start: int, end: int, cols: _Columns, at_eof: bool = False) -> int:
    """Decode events one at a time from ``start`` until at least ``end``; return where it stopped.

    A piece that does not decode is joined with the next ones (a boundary look-alike inside a
    string split it), up to a few; one that still fails is skipped and counted as malformed,
    except the last one of the file, which is left for the tail parser.
    """
    cuts = [m.start() + 1 for m in _BOUNDARY.finditer(buf, start)]
    bounds = [start, *cuts]
    if bounds[-1] < len(buf) and (not cuts or cuts[-1] < end):
        bounds.append(end)
    pieces: list[RawEvent] = []
    i = 0
    while i < len(bounds) - 1 and bounds[i] < end:
        for j in range(i + 1, min(i + 9, len(bounds))):
            piece = bytes(buf[bounds[i] : bounds[j]]).strip(_WS).lstrip(b",").strip(_WS)
            try:
                pieces.append(_event_decoder.decode(piece))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            i = j
            break
        else:
            if at_eof and i + 9 >= len(bounds):
                break
            cols.skipped += 1
            i += 1
    cols.add(pieces)
    return bounds[i]


def _parse_tail(r: _Reader, cols: _Columns) -> tuple[dict[str, Any], bool]:
    """Decode what follows the last boundary: the last event(s), ``]`` and trailing keys."""
    rest = bytes(r.buf[r.pos :])
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
        if isinstance(obj, dict):
            try:
                cols.add([msgspec.convert(obj, RawEvent)])
            except msgspec.ValidationError:
                cols.skipped += 1
        else:
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


def _parse_events(r: _Reader, cols: _Columns) -> tuple[dict[str, Any], bool]:
    r.skip_ws()
    while True:
        r.fill(CHUNK_TARGET + READ_BLOCK)
        limit = len(r.buf) if r.eof else r.pos + CHUNK_TARGET
        m = _BOUNDARY.search(r.buf, min(limit, len(r.buf)) - 1) if not r.eof else None
        if m is None:
            if not r.eof:
                # One enormous event, or no boundary yet: read more and retry.
                r.fill(len(r.buf) - r.pos + CHUNK_TARGET)
                if not r.eof:
                    m = _BOUNDARY.search(r.buf, r.pos)
                    if m is None:
                        continue
            if m is None:
                last = None
                for found in _BOUNDARY.finditer(r.buf, r.pos):
                    last = found
                if last is None:
                    return _parse_tail(r, cols)
                m = last
        end = m.start() + 1  # just past the event's closing brace
        r.pos = _decode_region(r, end, cols)
        if r.pos < end:  # the last event holds a boundary look-alike: parse it as the tail
            return _parse_tail(r, cols)
        r.skip_ws()
        if r.pos < len(r.buf) and r.buf[r.pos] == ord(","):
            r.pos += 1
        r.compact()
        if r.eof and _BOUNDARY.search(r.buf, r.pos) is None:
            return _parse_tail(r, cols)


def _decode_region(r: _Reader, end: int, cols: _Columns) -> int:
    """Decode ``buf[pos:end]`` (whole events separated by commas) as one JSON array.

    Returns the position parsing continues from: ``end``, or further when the region had to
    be decoded piece by piece across a boundary look-alike.
    """
    buf = r.buf
    start = r.pos
    if end <= start:
        return end
    # Borrow the bytes around the region as brackets to decode in place, without a copy.
    before = buf[start - 1]
    after = buf[end] if end < len(buf) else None
    buf[start - 1] = ord("[")
    if after is None:
        buf.append(ord("]"))
    else:
        buf[end] = ord("]")
    ok = False
    try:
        with memoryview(buf) as mv:
            ok = _decode_chunk(mv[start - 1 : end + 1], cols)
    finally:
        buf[start - 1] = before
        if after is None:
            buf.pop()
        else:
            buf[end] = after
    if not ok:
        return _decode_piecewise(buf, start, end, cols, at_eof=r.eof)
    return end


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


def load_trace(path: str | Path) -> Trace:
    """Read a Chrome trace file into a :class:`Trace`; raise :class:`BadInputError` if it is not one."""
    p = Path(path)
    if p.exists() and p.is_file() and p.stat().st_size == 0:
        raise BadInputError(p, "the file is empty")
    r = _Reader(p)
    cols = _Columns()
    try:
        top, header = _parse_header(r)
        tail, truncated = _parse_events(r, cols)
        bytes_read = r.offset + len(r.buf)
    finally:
        r.close()
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
    cats = cols.cats.table()
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
        names=cols.names.table(),
        cats=cats,
        strings=cols.strings.table(),
        ts_ns=ts_ns,
        dur_ns=dur_ns,
        name_id=name_id,
        cat_id=cat_id,
        pid=pid,
        tid=tid,
        origin_us=origin_us,
    )


def iter_events_for_debug(trace: Trace, limit: int = 20) -> Iterator[dict[str, Any]]:
    """The first ``limit`` rows as dicts (for ``--debug`` output and notebooks)."""
    for i in range(min(limit, len(trace))):
        yield {
            "name": trace.names.names[trace.name_id[i]],
            "cat": trace.cats.names[trace.cat_id[i]],
            "ts_ns": int(trace.ts_ns[i]),
            "dur_ns": int(trace.dur_ns[i]),
            "pid": trace.label(int(trace.pid[i])),
            "tid": trace.label(int(trace.tid[i])),
        }
