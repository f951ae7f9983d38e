"""Bytes: the (gunzipped) stream, the top-level object around ``traceEvents`` (metadata read
or skipped unparsed, without recursion), and the event array cut at event boundaries with
whitespace squeezed, so memory stays bounded whatever the file holds."""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from tracelens.errors import BadInputError
from tracelens.load import limits
from tracelens.load.decode import (
    _BOUNDARY,
    _DECODE_ERRORS,
    GZIP_MAGIC,
    META_KEYS,
    RawEvent,
    _Columns,
    decode_event,
)
from tracelens.load.scan import Cursor, ScanError

#: Called now and then while a file is read: (bytes of the file done, file size).
Progress = Callable[[int, int], None]



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
    """The (decompressed) byte stream of a trace file, as a :class:`Cursor`.

    Its source is a closure over the stream, not a bound method: a reader that referred to
    itself would be a reference cycle, and its window (MBs) would wait for the cyclic GC, which
    counts objects, not bytes (256 header reads once held 550 MB that way).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream, self.format = _open_stream(path)
        self.size = path.stat().st_size
        self._broken: list[str] = []  # why the stream stopped early, if it did
        super().__init__(_guarded_read(self.stream, self._broken))
        self.read_size = limits.READ_BLOCK

    @property
    def broken(self) -> str | None:
        """Why the (gzip) stream stopped early, or None."""
        return self._broken[0] if self._broken else None

    def compressed_position(self) -> tuple[int, int]:
        """(bytes of the file read so far, file size): progress through a gzip stream."""
        raw = getattr(self.stream, "raw", self.stream)
        return raw.tell(), self.size

    def close(self) -> None:
        self.stream.close()


def _guarded_read(stream: Any, broken: list[str]) -> Callable[[int], bytes]:
    """``stream.read`` that ends the stream (b"") on a broken gzip or read error, saying why in ``broken``."""

    def read(n: int) -> bytes:
        try:
            data: bytes = stream.read(n)
            return data
        except (EOFError, zlib.error, OSError) as exc:
            broken.append(f"the gzip stream is broken ({exc})")
            return b""

    return read


def _range_reader(fd: int, start: int, end: int) -> Callable[[int], bytes]:
    """A ``read(n)`` over the file bytes ``[start, end)`` (pread: the offset is its own)."""
    pos = start

    def read(n: int) -> bytes:
        nonlocal pos
        data = os.pread(fd, min(n, end - pos), pos) if pos < end else b""
        pos += len(data)
        return data

    return read


def _parse_header(r: _Reader) -> tuple[str, dict[str, Any]]:
    """Position ``r`` at the first event; return the top-level kind and the keys before it.

    The header maps the keys tracelens reads to their values and other keys (the first
    limits.MAX_EXTRA_KEYS) to None: their values are skipped unparsed.
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
    (False). Keys in META_KEYS are decoded (within limits.MAX_META_VALUE_BYTES and limits.MAX_META_DEPTH);
    other values are walked over unparsed and their keys kept with None, up to limits.MAX_EXTRA_KEYS.
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
        key = _key_text(cur.read_string(limits.MAX_KEY_BYTES))
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
        if key != "traceEvents" and key not in header and extra < limits.MAX_EXTRA_KEYS:
            header[key] = None
            extra += 1


def _key_text(raw: bytes | None) -> str:
    """A key's text from its JSON string (None: longer than limits.MAX_KEY_BYTES)."""
    if raw is None:
        return f"<a key over {limits.MAX_KEY_BYTES} bytes>"
    try:
        return str(msgspec.json.decode(raw, type=str))
    except _DECODE_ERRORS:
        return raw[1:-1].decode("utf-8", "replace")


def _read_meta_value(cur: Cursor, key: str, path: Path) -> Any:
    """The value of metadata key ``key``, decoded; a clear error past the limits."""
    scanned = cur.scan_value(limits.MAX_META_VALUE_BYTES, max_depth=limits.MAX_META_DEPTH)
    if scanned.depth > limits.MAX_META_DEPTH:
        raise BadInputError(path, f"its {key} metadata nests deeper than {limits.MAX_META_DEPTH} levels, "
                                  "the most tracelens reads (a profiler writes 3): the file is damaged")
    if scanned.data is None:
        raise BadInputError(path, f"its {key} metadata exceeds {limits.MAX_META_VALUE_BYTES >> 20} MB, the most "
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
    to cut regions again. An element over limits.MAX_EVENT_BYTES is walked over, skipped and counted.
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
                value = cur.scan_value(limits.MAX_EVENT_BYTES)
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
    """``block`` (one holding no event boundary) with whitespace runs of limits.SQUEEZE_WS_BYTES or
    more at its edges cut to one space. Between events that changes nothing; inside a string
    it shortens the string (no profiler writes 64 kB of blanks in a name)."""
    left = len(block) - len(block.lstrip())
    right = len(block) - len(block.rstrip())
    if left < limits.SQUEEZE_WS_BYTES and right < limits.SQUEEZE_WS_BYTES:
        return block
    core = block[left : len(block) - right]
    return ((b" " if left >= limits.SQUEEZE_WS_BYTES else block[:left]) + core
            + (b" " if right >= limits.SQUEEZE_WS_BYTES else block[len(block) - right :]))


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
    past limits.MAX_EVENT_BYTES the elements are read one at a time (:func:`_read_elements`, after
    ``flush()`` has merged every region emitted) until the oversized one is passed.

    Returns "rest" with ``cur`` holding the bytes after the last boundary (read them with
    :func:`_read_elements`), or what :func:`_read_elements` returned when the stream ended
    while elements were being read one at a time.
    """
    rest: list[bytes | memoryview] = [cur.take_rest()]  # from the current event on
    size = len(rest[0])
    cut = False  # rest has been cut at its last boundary: it holds (part of) one event
    while True:
        block = cur.read_block(limits.CHUNK_TARGET)
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
            if size > limits.MAX_EVENT_BYTES:
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
