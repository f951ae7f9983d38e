"""Load a Chrome trace (``.json`` / ``.json.gz``, any Kineto dialect) into the columnar model.

The file is streamed: the ``traceEvents`` array is cut into chunks at event boundaries and each
chunk is decoded by a typed msgspec decoder that reads only the fields the analyses use, so
memory stays well under the file size and no Python dict is built per event. A chunk that does
not decode (a malformed event, or a cut that fell inside a string) is retried event by event;
events that still fail are skipped and counted. A file that ends early is analyzed up to its
last complete event and marked truncated.

Hostile or damaged input costs bounded memory and no recursion. The metadata around the event
array, the array's last events and anything nested deeper than msgspec goes are walked with
:mod:`tracelens.load.scan` (no recursion, a block in memory at a time): metadata tracelens does
not read is skipped unparsed, whatever its size or depth. An event bigger than
``limits.MAX_EVENT_BYTES`` is skipped unread and counted; whitespace runs between events are squeezed
as they stream by. A complete event whose ``ts`` or ``dur`` is missing, not a number or out of
range is skipped and counted (``LoadStats.bad_time_*``), so every time the model holds fits
int64 nanoseconds with room for the analyses' sums.

Modules: ``limits`` (every bound, with its reason), ``scan`` (JSON walked without recursion),
``decode`` (events to columns), ``stream`` (bytes and the object around the event array),
``parallel`` (the array decoded by several processes); this face builds the ``Trace``.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from tracelens.errors import BadInputError
from tracelens.load import limits
from tracelens.load.decode import _Columns, join_parts, step_number_dtype
from tracelens.load.parallel import _parse_events, _parse_events_file
from tracelens.load.stream import Progress, _parse_header, _Reader
from tracelens.model import (
    LoadStats,
    RowFilter,
    SymbolTable,
    Trace,
    TraceMeta,
)
from tracelens.system.procs import cores, worker_pool

__all__ = ["Progress", "load_trace"]


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
    size = path.stat().st_size * (8 if fmt == "json.gz" else 1)
    return min(cores(), 4) if size >= limits.PARALLEL_MIN_BYTES else 1


def load_trace(path: str | Path, *, jobs: int | None = None, progress: Progress | None = None,
               rows: RowFilter | None = None) -> Trace:
    """Read a Chrome trace file into a :class:`Trace`; raise :class:`BadInputError` if it is not one.

    ``jobs`` is the number of processes decoding events (default: one per core, up to 4, for
    files of 64 MB or more; one otherwise); they die with this process, whatever kills it.
    ``progress(done, total)`` is called now and then with bytes of the file. With ``rows``,
    only the complete events it keeps become rows (the counts cover every event).
    """
    p = Path(path)
    if p.exists() and p.is_file() and p.stat().st_size == 0:
        raise BadInputError(p, "the file is empty")
    r = _Reader(p)
    cols = _Columns(keep=rows)
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
    if cols.events_total == cols.phases.get("M", 0):
        raise BadInputError(p, _no_events(cols.events_total, cols.skips.skipped, top))
    meta = _meta(p, r.format, top, header)
    return _build_trace(meta, cols, truncated, bytes_read, p.stat().st_size)


def _no_events(metadata: int, malformed: int, top: str) -> str:
    """Why a file without timed events is no trace to analyze (one line)."""
    where = "its top-level array" if top == "array" else "traceEvents"
    held = [f"{n:,} {what} element{'s' if n != 1 else ''}"
            for n, what in ((metadata, "metadata"), (malformed, "malformed")) if n]
    has = f"has only {' and '.join(held)}" if held else "is empty"
    return f"holds no trace events ({where} {has}): nothing was recorded"


def _times_ns(parts: list[np.ndarray], origin_us: float, scale: float) -> np.ndarray:
    """``rint((parts - origin_us) × scale)`` as one int64 array, the parts freed as they are
    converted (``parts`` is emptied): no second float copy of the whole column."""
    out = np.empty(sum(len(p) for p in parts), np.int64)
    at = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        out[at : at + len(p)] = np.rint((p - origin_us) * scale) if origin_us else np.rint(p * scale)
        at += len(p)
    return out


def _build_trace(meta: TraceMeta, cols: _Columns, truncated: bool, bytes_read: int, file_bytes: int) -> Trace:
    # Every ts is within ±limits.TS_LIMIT_US and every dur within [0, limits.DUR_LIMIT_US]
    # (the decoders skip the others): these fit int64 ns.
    origin_us = math.floor(min(float(p.min()) for p in cols.ts_us if p.size)) if cols.ts_us else 0
    ts_ns = _times_ns(cols.ts_us, float(origin_us), 1000.0)
    dur_ns = _times_ns(cols.dur_us, 0.0, 1000.0)
    skips = cols.skips
    stats = LoadStats(
        events_total=cols.events_total,
        complete_events=cols.complete,
        skipped_malformed=skips.skipped,
        phase_counts=dict(cols.phases),
        category_counts=dict(cols.cat_counts),
        truncated=truncated,
        bytes_read=bytes_read,
        file_bytes=file_bytes,
        bad_time_events=skips.bad_time,
        bad_time_fields=dict(skips.bad_fields),
        bad_time_examples=tuple(skips.examples),
        bad_time_names=dict(skips.names),
        oversized_events=skips.oversized,
    )
    return Trace(
        meta=meta,
        stats=stats,
        names=SymbolTable(tuple(cols.names)),
        cats=SymbolTable(tuple(cols.cats)),
        strings=SymbolTable(tuple(cols.strings)),
        ts_ns=ts_ns,
        dur_ns=dur_ns,
        name_id=join_parts(cols.name_id, np.int32),
        cat_id=join_parts(cols.cat_id, np.int32),
        pid=join_parts(cols.pid, np.int64),
        tid=join_parts(cols.tid, np.int64),
        step_number=join_parts(cols.step_number, step_number_dtype(cols.step_number)),
        origin_us=origin_us,
        rows=cols.keep,
    )
