"""The event array decoded by several processes: spans of a plain file read with ``pread``,
regions of a gzip stream passed through an anonymous shared mapping to forked workers."""

from __future__ import annotations

import mmap
import os
from collections import deque
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from tracelens.load import limits
from tracelens.load.decode import _BOUNDARY, Chunk, _Columns, _decode_bracketed, decode_region
from tracelens.load.scan import Cursor
from tracelens.load.stream import (
    Progress,
    _finish,
    _last_match,
    _range_reader,
    _read_elements,
    _Reader,
    _split_stream,
)
from tracelens.model import RowFilter


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


def decode_span(path: str, start: int, end: int, chunk_bytes: int, keep: RowFilter | None = None) -> Chunk:
    """Decode the events in file bytes ``[start, end)`` (whole events) in chunks; one Chunk back.

    Where no event boundary follows within limits.MAX_EVENT_BYTES, the rest of the span is streamed
    through :func:`_split_stream` instead, which bounds memory whatever lies there.
    """
    cols = _Columns(keep_first_head=True, keep=keep)
    fd = os.open(path, os.O_RDONLY)
    # One buffer, reused: fresh multi-MB allocations per chunk cost page faults (system time).
    buf = bytearray(chunk_bytes + (2 << 20))
    try:
        pos = start
        while pos < end:
            cut = None
            if pos + chunk_bytes < end:
                limit = min(end, pos + chunk_bytes + limits.MAX_EVENT_BYTES)
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
                cols.merge(_decode_bracketed(mv[: got + 2], keep))
            pos = next_pos
    finally:
        os.close(fd)
    return cols.to_chunk()


def _decode_range(fd: int, start: int, end: int, cols: _Columns) -> None:
    """Decode the whole events in file bytes ``[start, end)`` as a stream, in this process."""
    cur = Cursor(_range_reader(fd, start, end))
    state = _split_stream(cur, cols, lambda parts: cols.merge(decode_region(b"".join(parts), cols.keep)), lambda: None)
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
            parts = max(workers * 4 if pool else 1, -(-(events_end - start) // limits.SPAN_TARGET))
            step = max((events_end - start) // parts, 1)
            for k in range(1, parts):
                at = max(start + k * step, pos)
                cut = _next_cut(fd, at, min(events_end, at + limits.MAX_EVENT_BYTES))
                if cut is None:
                    continue
                spans.append((pos, cut[0]))
                pos = cut[1]
            spans.append((pos, events_end))
            keep = cols.keep
            # Each span's columns are released once merged (a finished future keeps its result);
            # without a pool, each span is decoded only when its turn to merge comes.
            futures: list[Any] = [pool.submit(decode_span, str(path), a, b, limits.CHUNK_TARGET, keep)
                                  for a, b in spans] if pool else []
            for i, (a, b) in enumerate(spans):
                if futures:
                    chunk, futures[i] = futures[i].result(), None
                else:
                    chunk = decode_span(str(path), a, b, limits.CHUNK_TARGET, keep)
                cols.merge(chunk)
                del chunk
                if progress is not None:
                    progress(b, size)
        cur = Cursor(_range_reader(fd, tail_start, size), offset=tail_start)
        state = _split_stream(cur, cols, lambda parts: cols.merge(decode_region(b"".join(parts), cols.keep)), lambda: None)
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


def decode_shared(offset: int, length: int, keep: RowFilter | None = None) -> Chunk:
    """Decode ``[`` + events + ``]`` that the parent placed in the shared buffer (worker side)."""
    if _shared is None:
        raise RuntimeError("tracelens: worker started before the shared buffer existed")
    with memoryview(_shared) as mv:
        return _decode_bracketed(mv[offset : offset + length], keep)


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
    slot_size = limits.CHUNK_TARGET + 2 * limits.READ_BLOCK
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
                pending.append((pool.submit(decode_shared, at, n + 2, cols.keep), slot))
            else:
                pending.append((pool.submit(decode_region, b"".join(parts), cols.keep), None))
        else:
            pending.append((_Inline(decode_region(b"".join(parts), cols.keep)), None))
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
