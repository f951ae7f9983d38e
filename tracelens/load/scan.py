"""Walk JSON text without building it: where a value ends and how deep it nests, in bounded memory.

The loader decodes events with msgspec, which needs a whole value in memory and recurses (it
gives up near 1,000 levels). Around the events — the metadata before and after the event
array, the last events of a file, an event nested too deeply for msgspec, an event too big to
hold — the loader walks the text with this module instead. Strings are skipped with a regular
expression and brackets counted outside strings with numpy, a block at a time, so neither the
depth nor the size of a value costs recursion, or memory beyond one block. Nothing is
validated beyond that: a skipped value is only known to be balanced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

WS = b" \t\r\n"
SCAN_BLOCK = 1 << 20  # bytes of a container examined at once (numpy temporaries: ~10 bytes each)
READ_SIZE = 4 << 20  # bytes asked of the source at a time
COMPACT_AT = 1 << 20  # consumed bytes dropped from the window once there are this many

_SCALAR = re.compile(rb'[^,\]}\[{"\s]*')  # a number, a literal, or junk: up to the next delimiter
_NON_WS = re.compile(rb"[^ \t\r\n]")
_ESCAPE = re.compile(rb'\\[\\"]')  # the escapes that can hide a quote: a backslash, then '\\' or '"'
_QUOTE = 0x22
_OPENS = (0x5B, 0x7B)  # '[' and '{'
_KIND_OPEN, _KIND_CLOSE, _KIND_QUOTE = 1, 2, 3
_MARKS = (b'"', b"[", b"]", b"{", b"}")
_KINDS = bytes(
    _KIND_OPEN if b in b"[{" else _KIND_CLOSE if b in b"]}" else _KIND_QUOTE if b == _QUOTE else 0
    for b in range(256)
)


class ScanError(Exception):
    """The text is not what was expected (``incomplete``: the stream ended inside a value)."""

    def __init__(self, message: str, *, incomplete: bool = False) -> None:
        super().__init__(message)
        self.incomplete = incomplete


@dataclass(frozen=True)
class Scanned:
    """A value walked over: its bytes (None when longer than asked to keep), size and depth."""

    data: bytes | None
    size: int  # bytes
    depth: int  # nesting levels: 0 for a scalar or string, 1 for ``[]``


class Cursor:
    """A forward-only window on a byte stream that keeps only the bytes not yet consumed.

    ``read(n)`` returns up to ``n`` more bytes, ``b""`` at the end (None: ``data`` is all).
    """

    def __init__(self, read: Callable[[int], bytes] | None = None, data: bytes = b"", offset: int = 0) -> None:
        self.read = read
        # Without a source the data is all there is: read it in place (nothing is appended).
        self.buf: bytes | bytearray = data if read is None and isinstance(data, bytes) else bytearray(data)
        self.pos = 0  # next unconsumed byte in buf
        self.offset = offset  # stream offset of buf[0]
        self.eof = read is None
        self.total_read = 0  # bytes the source has returned
        self.read_size = READ_SIZE  # bytes asked of the source by fill()

    def tell(self) -> int:
        """Stream offset of the next unconsumed byte."""
        return self.offset + self.pos

    def read_block(self, n: int) -> bytes:
        """Up to ``n`` bytes straight from the source, bypassing the window (b"" at the end)."""
        if self.eof or self.read is None:
            return b""
        data = self.read(n)
        if not data:
            self.eof = True
        self.total_read += len(data)
        return data

    def reset(self, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
        """Make ``data`` the unconsumed window (bytes the caller took out and hands back)."""
        self.offset = self.tell() if offset is None else offset
        self.buf = bytearray(data)
        self.pos = 0

    def reset_from(self, parts: list[bytes | memoryview]) -> None:
        """Make ``parts`` (emptied) the unconsumed window, freeing each part as it is copied."""
        self.reset(b"")
        parts.reverse()
        while parts:
            self.buf += parts.pop()

    def take_rest(self) -> bytes:
        """Remove and return the unconsumed window."""
        rest = bytes(self.buf[self.pos :])
        self.offset += len(self.buf)
        self.buf = bytearray()
        self.pos = 0
        return rest

    def fill(self, want: int) -> int:
        """Read until ``want`` bytes follow ``pos`` or the stream ends; the bytes that follow."""
        if self.read is None:
            return len(self.buf) - self.pos
        if self.pos >= COMPACT_AT and self.pos * 2 >= len(self.buf) and isinstance(self.buf, bytearray):
            del self.buf[: self.pos]
            self.offset += self.pos
            self.pos = 0
        while len(self.buf) - self.pos < want:
            data = self.read_block(max(self.read_size, want))
            if not data:
                break
            if not isinstance(self.buf, bytearray):
                self.buf = bytearray(self.buf)
            self.buf += data
        return len(self.buf) - self.pos

    def peek(self) -> int:
        """The next byte, or -1 at the end of the stream."""
        if self.pos >= len(self.buf) and not self.fill(1):
            return -1
        return self.buf[self.pos]

    def skip_ws(self) -> None:
        """Consume whitespace, however much (long runs go a block at a time)."""
        step = 256
        while True:
            end = min(len(self.buf), self.pos + step)
            if self.pos < end:
                if not self.buf[self.pos : end].isspace():
                    m = _NON_WS.search(self.buf, self.pos, end)
                    self.pos = m.start() if m else end  # isspace also counts \v and \f
                    return
                self.pos = end
                step = SCAN_BLOCK
            elif not self.fill(1):
                return

    def expect(self, char: bytes) -> None:
        """Consume whitespace and then ``char``, or raise :class:`ScanError`."""
        self.skip_ws()
        c = self.peek()
        if c == -1:
            raise ScanError(f"the text ends where {char.decode()!r} was expected", incomplete=True)
        if c != char[0]:
            raise ScanError(f"expected {char.decode()!r} at byte {self.tell()}, found {chr(c)!r}")
        self.pos += 1

    def scan_value(self, keep: int, max_depth: int | None = None) -> Scanned:
        """Consume one value; keep its bytes if they are at most ``keep``.

        With ``max_depth``, stop as soon as the value nests deeper and return what was seen
        (``data`` None, ``depth`` over the limit): the caller refuses the value.
        """
        self.skip_ws()
        c = self.peek()
        if c == -1:
            raise ScanError("the text ends where a value was expected", incomplete=True)
        if c == _QUOTE:
            return self._scan_string(keep)
        if c in _OPENS:
            return self._scan_container(keep, max_depth)
        return self._scan_scalar(keep)

    def read_string(self, keep: int) -> bytes | None:
        """Consume a string (at its opening quote); its text with the quotes if at most ``keep`` bytes."""
        return self._scan_string(keep).data

    # ----------------------------------------------------------------- the three kinds of value
    # Each walks from ``pos`` with its own index; ``pos`` stays at the value's start while the
    # value may still be kept (the window then holds it, no copy), and follows the index once
    # the value is longer than ``keep``, so that the window can drop what was walked over.

    def _scan_string(self, keep: int) -> Scanned:
        walk = _Walk(self, keep)
        walk.advance(1)  # the opening quote
        escapes = _Escapes()
        for block in walk.blocks():
            quote = escapes.blank(block).find(b'"')
            if quote >= 0:
                walk.advance(quote + 1)
                return walk.done(0)
            walk.advance(len(block))
        raise ScanError("the text ends inside a string", incomplete=True)

    def _scan_scalar(self, keep: int) -> Scanned:
        walk = _Walk(self, keep)
        while True:
            i = walk.index()
            m = _SCALAR.match(self.buf, i)
            end = m.end() if m else i
            if end == i and not walk.size:
                end += 1  # a stray delimiter where a value belongs: consume it as junk
            walk.advance(end - i)
            if end < len(self.buf) or not walk.more():
                return walk.done(0)

    def _scan_container(self, keep: int, max_depth: int | None) -> Scanned:
        walk = _Walk(self, keep)
        state = _BracketState()
        for block in walk.blocks():
            stop = state.scan(block)
            walk.advance(stop if stop >= 0 else len(block))
            if max_depth is not None and state.max_depth > max_depth:
                walk.kept = False
                return walk.done(state.max_depth)
            if stop >= 0:
                return walk.done(state.max_depth)
        raise ScanError("the text ends inside an array or object", incomplete=True)


class _Walk:
    """One value being walked over in a Cursor's window. Positions are stream offsets, so
    they hold when the window drops bytes it no longer needs."""

    def __init__(self, cur: Cursor, keep: int) -> None:
        self.cur = cur
        self.keep = keep
        self.at = cur.tell()  # the next byte to walk (while the value is kept, pos stays at its start)
        self.size = 0
        self.kept = True

    def index(self) -> int:
        """The next byte to walk, as an index into the window."""
        return self.at - self.cur.offset

    def advance(self, n: int) -> None:
        self.at += n
        self.size += n
        if self.kept and self.size > self.keep:
            self.kept = False
        if not self.kept:
            self.cur.pos = self.index()  # let the window drop what was walked over

    def more(self) -> bool:
        """Whether bytes follow the walk (reading more of the stream if need be)."""
        cur = self.cur
        return self.index() < len(cur.buf) or cur.fill(self.at - cur.tell() + 1) > self.at - cur.tell()

    def blocks(self) -> Iterator[bytes]:
        """Copies of the bytes ahead, a block at a time, growing from small (most values are
        short) to SCAN_BLOCK; the caller advances past what it used of each."""
        size = min(4096, SCAN_BLOCK)
        while self.more():
            i = self.index()
            yield bytes(self.cur.buf[i : i + size])
            size = min(size * 8, SCAN_BLOCK)

    def done(self, depth: int) -> Scanned:
        cur = self.cur
        end = self.index()
        data = bytes(cur.buf[cur.pos : end]) if self.kept else None
        cur.pos = end
        return Scanned(data, self.size, depth)


class _Escapes:
    """Blanks backslash escapes of quotes and backslashes (same length, so indices hold),
    across blocks: a block's final lone backslash escapes the next block's first byte."""

    def __init__(self) -> None:
        self.escape_next = False

    def blank(self, block: bytes) -> bytes:
        if self.escape_next:
            block = b"_" + block[1:]
            self.escape_next = False
        if b"\\" in block:
            block = _ESCAPE.sub(b"__", block)
            if block.endswith(b"\\"):
                block = block[:-1] + b"_"
                self.escape_next = True
        return block


class _BracketState:
    """Depth, string and escape state carried from one block of a container to the next."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = 0  # 1 inside a string
        self.escapes = _Escapes()
        self.max_depth = 0

    def scan(self, block: bytes) -> int:
        """Index just past the value's end in ``block``, or -1 if the value goes on after it.

        Escapes are first blanked (same length, so indices hold), then only the brackets and
        quotes, found with one ``translate``, are looked at: a bracket counts when an even
        number of quotes precedes it.
        """
        block = self.escapes.blank(block)
        if all(block.find(c) < 0 for c in _MARKS):  # no quote, no bracket: nothing changes
            return -1
        kinds_all = np.frombuffer(block.translate(_KINDS), np.uint8)
        where = np.flatnonzero(kinds_all)
        kinds = kinds_all[where]
        inside = (np.cumsum(kinds == _KIND_QUOTE, dtype=np.int64) + self.in_string) & 1
        step = (kinds == _KIND_OPEN).astype(np.int64) - (kinds == _KIND_CLOSE)
        step[inside == 1] = 0
        level = np.cumsum(step)
        closed = np.flatnonzero(level <= -self.depth)
        if closed.size:
            k = int(closed[0])
            self.max_depth = max(self.max_depth, self.depth + int(level[: k + 1].max()))
            self.depth = 0
            return int(where[k]) + 1
        if level.size:
            self.max_depth = max(self.max_depth, self.depth + int(level.max()))
            self.depth += int(level[-1])
            self.in_string = int(inside[-1])
        return -1
