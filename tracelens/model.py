"""The columnar trace model: one table of complete events, names and categories interned.

All times are int64 nanoseconds on the trace's own clock (``ts`` µs × 1000). Only complete
(``ph == "X"``) events are kept as rows; everything else is counted. A loader given a
:class:`RowFilter` keeps only the rows it names (the analysis reads a few names and categories
out of millions of operator events); the counts still cover every event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
IntArray = npt.NDArray[np.signedinteger[Any]]
BoolArray = npt.NDArray[np.bool_]

# Category spellings across Kineto versions, lower-cased (DOMAIN.md §1).
GPU_ACTIVITY_CATEGORIES = frozenset({"kernel", "gpu_memcpy", "memcpy", "gpu_memset", "memset"})
GPU_SIDE_CATEGORIES = GPU_ACTIVITY_CATEGORIES | {"gpu_user_annotation"}
RUNTIME_CATEGORIES = frozenset({"cuda_runtime", "runtime", "cuda_driver", "hip_runtime"})

# pid/tid columns hold integers as written; a string id k (e.g. "stream 7") is stored as
# STRING_ID_BASE - k, far below any real (possibly negative) integer id.
STRING_ID_BASE = -(1 << 62)


#: ``ProfilerStep#N`` events (one name per step) are interned as this one name, their N in
#: ``Trace.step_number``: a recording of millions of steps would otherwise intern as many strings.
STEP_PREFIX = "ProfilerStep#"
_STEP_NAME = re.compile(r"^ProfilerStep#(\d+)$")


def step_number_of(name: str) -> int:
    """N of a name ``ProfilerStep#N`` (N an int64), else -1."""
    m = _STEP_NAME.match(name)
    n = int(m.group(1)) if m is not None else -1
    return n if n < 2**63 else -1


@dataclass(frozen=True)
class RowFilter:
    """The complete events a consumer reads: those whose name satisfies ``name`` or whose
    lower-cased category is in ``categories`` (``ProfilerStep#N`` events are always kept).
    ``name`` is a module-level function, so that decoding processes can receive it."""

    name: Callable[[str], bool]
    categories: frozenset[str]


def string_id_value(k: int) -> int:
    """The column value of string id ``k``."""
    return STRING_ID_BASE - k


def is_string_id(value: int) -> bool:
    """Whether a pid/tid column value stands for an interned string."""
    return value <= STRING_ID_BASE


@dataclass(frozen=True)
class SymbolTable:
    """Interned strings: ``names[i]`` is the string of id ``i``."""

    names: tuple[str, ...]

    def ids_where(self, predicate: Any) -> Int32Array:
        """Ids of the strings for which ``predicate(str)`` is true."""
        return np.array([i for i, s in enumerate(self.names) if predicate(s)], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class TraceMeta:
    """What the trace says about itself outside its events."""

    path: str
    format: str  # "json" or "json.gz"
    top_level: str  # "object" or "array"
    schema_version: int | None = None
    base_time_ns: int | None = None
    device_properties: tuple[dict[str, Any], ...] = ()
    distributed_info: dict[str, Any] | None = None
    trace_name: str | None = None
    display_time_unit: str | None = None
    framework: str | None = None
    with_stack: bool | None = None
    extra_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadValue:
    """One event skipped for its time: its name, the field, and the value as the file wrote it."""

    name: str  # the event's name ("" when unreadable), cut to 100 characters
    field: str  # "ts" or "dur"
    value: str  # e.g. "missing", "-5", "1e+300", "NaN", "\"12\"", cut to 40 characters


@dataclass(frozen=True)
class LoadStats:
    """Counts of what the loader saw, in events unless named otherwise.

    ``skipped_malformed`` counts every event skipped, whatever the reason; ``bad_time_events``
    and ``oversized_events`` say how many of them were skipped for these two reasons.
    """

    events_total: int = 0
    complete_events: int = 0
    skipped_malformed: int = 0
    phase_counts: dict[str, int] = field(default_factory=dict)
    category_counts: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    bytes_read: int = 0  # decompressed bytes parsed
    file_bytes: int = 0  # size on disk
    # Complete events whose ts or dur is missing, not a number, or outside the loader's
    # plausible range (load.TS_LIMIT_US, load.DUR_LIMIT_US; dur < 0): skipped.
    bad_time_events: int = 0
    bad_time_fields: dict[str, int] = field(default_factory=dict)  # {"ts": n, "dur": m}; both count
    bad_time_examples: tuple[BadValue, ...] = ()  # the first few (load.MAX_BAD_EXAMPLES), file order
    bad_time_names: dict[str, int] = field(default_factory=dict)  # event name -> count (capped)
    # Array elements over load.MAX_EVENT_BYTES, skipped without being read.
    oversized_events: int = 0


@dataclass(frozen=True)
class Trace:
    """One trace file as parallel columns of its complete events.

    Columns (one row per ``X`` event, in file order):
    ``ts_ns``/``dur_ns`` int64 ns; ``name_id``/``cat_id`` int32 ids into ``names``/``cats``
    (categories lower-cased); ``pid``/``tid`` int64 (string ids are interned into ``strings``
    and stored as ``STRING_ID_BASE - id``); ``step_number`` int64 (int32 when every N fits),
    the N of a ``ProfilerStep#N`` row (its name is ``STEP_PREFIX``), -1 on other rows. ``rows`` is the
    filter the loader applied (None: every complete event is a row). A column of one value for
    every row (one thread, one category, no steps) may be a read-only broadcast of it: the
    columns are read, never written.
    """

    meta: TraceMeta
    stats: LoadStats
    names: SymbolTable
    cats: SymbolTable
    strings: SymbolTable
    ts_ns: Int64Array
    dur_ns: Int64Array
    name_id: Int32Array
    cat_id: Int32Array
    pid: Int64Array
    tid: Int64Array
    step_number: IntArray
    origin_us: int = 0  # the trace's ts of row time 0, µs (ts_ns = (ts - origin_us) × 1000)
    rows: RowFilter | None = None

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def mask_categories(self, categories: frozenset[str] | set[str]) -> BoolArray:
        """Rows whose lower-cased category is one of ``categories``."""
        return _rows_with(self.cat_id, self.cats.ids_where(lambda c: c in categories), len(self.cats))

    def mask_names(self, predicate: Any) -> BoolArray:
        """Rows whose name satisfies ``predicate(str)``."""
        return _rows_with(self.name_id, self.names.ids_where(predicate), len(self.names))

    def label(self, value: int) -> str:
        """A pid/tid column value as the trace wrote it."""
        return self.strings.names[STRING_ID_BASE - value] if is_string_id(value) else str(value)


def _rows_with(column: Int32Array, ids: Int32Array, symbols: int) -> BoolArray:
    """Rows whose id in ``column`` (ids of a table of ``symbols`` strings) is one of ``ids``: a
    lookup in one flag per string, so the only array as long as the trace is the mask itself
    (``np.isin`` sorts the column and the ids together: three times the column's size)."""
    if ids.size == 0:
        return np.zeros(column.shape, dtype=bool)
    if column.strides == (0,) and column.size:  # one value for every row
        return np.broadcast_to(np.isin(column[:1], ids), column.shape).copy()
    wanted = np.zeros(symbols, dtype=bool)
    wanted[ids] = True
    return wanted[column]


def concat_traces(traces: list[Trace]) -> Trace:
    """Several traces of one rank as one, each shifted to start after the previous one ends.

    Used when a rank has several windows or runs: steps never span files, so placing them
    end to end keeps every per-step metric and makes the totals those of all files together.
    """
    if len(traces) == 1:
        return traces[0]
    if len({t.rows for t in traces}) > 1:
        raise ValueError("traces loaded with different row filters cannot be joined")
    names: dict[str, int] = {}
    cats: dict[str, int] = {}
    strings: dict[str, int] = {}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "dur", "name", "cat", "pid", "tid", "step")}
    offset = 0
    for t in traces:
        remap_n = np.array([names.setdefault(s, len(names)) for s in t.names.names], dtype=np.int32)
        remap_c = np.array([cats.setdefault(s, len(cats)) for s in t.cats.names], dtype=np.int32)
        remap_s = np.array([strings.setdefault(s, len(strings)) for s in t.strings.names], dtype=np.int64)

        def ids(col: Int64Array, remap: np.ndarray = remap_s) -> Int64Array:
            out = col.copy()
            neg = out <= STRING_ID_BASE
            if neg.any():
                out[neg] = STRING_ID_BASE - remap[STRING_ID_BASE - out[neg]]
            return out

        start = int(t.ts_ns.min()) if len(t) else 0
        cols["ts"].append(t.ts_ns - start + offset)
        cols["dur"].append(t.dur_ns)
        cols["name"].append(remap_n[t.name_id] if len(t) else t.name_id)
        cols["cat"].append(remap_c[t.cat_id] if len(t) else t.cat_id)
        cols["pid"].append(ids(t.pid))
        cols["tid"].append(ids(t.tid))
        cols["step"].append(t.step_number)
        end = int((t.ts_ns + t.dur_ns).max()) if len(t) else start
        offset += end - start + 1_000_000_000  # one second apart
    first = traces[0]
    cat_counts: dict[str, int] = {}
    phases: dict[str, int] = {}
    bad_fields: dict[str, int] = {}
    for t in traces:
        for k, v in t.stats.category_counts.items():
            cat_counts[k] = cat_counts.get(k, 0) + v
        for k, v in t.stats.phase_counts.items():
            phases[k] = phases.get(k, 0) + v
        for k, v in t.stats.bad_time_fields.items():
            bad_fields[k] = bad_fields.get(k, 0) + v
    stats = LoadStats(
        events_total=sum(t.stats.events_total for t in traces),
        complete_events=sum(t.stats.complete_events for t in traces),
        skipped_malformed=sum(t.stats.skipped_malformed for t in traces),
        phase_counts=phases,
        category_counts=cat_counts,
        truncated=any(t.stats.truncated for t in traces),
        bytes_read=sum(t.stats.bytes_read for t in traces),
        file_bytes=sum(t.stats.file_bytes for t in traces),
        bad_time_events=sum(t.stats.bad_time_events for t in traces),
        bad_time_fields=bad_fields,
        bad_time_examples=tuple(e for t in traces for e in t.stats.bad_time_examples)[:5],
        bad_time_names=_sum_counts(t.stats.bad_time_names for t in traces),
        oversized_events=sum(t.stats.oversized_events for t in traces),
    )
    meta = TraceMeta(**{**first.meta.__dict__, "path": " + ".join(t.meta.path for t in traces)})
    return Trace(
        meta=meta,
        stats=stats,
        names=SymbolTable(tuple(names)),
        cats=SymbolTable(tuple(cats)),
        strings=SymbolTable(tuple(strings)),
        ts_ns=np.concatenate(cols["ts"]),
        dur_ns=np.concatenate(cols["dur"]),
        name_id=np.concatenate(cols["name"]).astype(np.int32),
        cat_id=np.concatenate(cols["cat"]).astype(np.int32),
        pid=np.concatenate(cols["pid"]),
        tid=np.concatenate(cols["tid"]),
        step_number=np.concatenate(cols["step"]),
        origin_us=first.origin_us,
        rows=first.rows,
    )


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out
