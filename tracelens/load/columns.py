"""Decoded events to columns: the fast typed decode of a region, the complete events turned
into numpy columns with chunk-local codes, and the events skipped for their times.

The fast decoder reads a region as a tagged union on ``ph``: a complete event must carry a
``ts`` and a ``dur`` within :mod:`tracelens.load.limits`, checked by msgspec as it parses, so
the columns of a region that decodes need no further check. Any region it refuses (a time
missing or out of range, an unknown phase, a malformed event) is decoded again the careful way
(:mod:`tracelens.load.decode`), which counts what it skips exactly as before.

Only the rows a :class:`~tracelens.model.RowFilter` keeps get columns for their times and
threads; names and categories are coded for every complete event (the filter and the category
counts read them), each string hashed once per region, never one Python object per row kept.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache
from itertools import compress, count
from operator import attrgetter
from typing import Annotated, Any, Union

import msgspec
import numpy as np

from tracelens.load import limits
from tracelens.model import STEP_PREFIX, BadValue, RowFilter, step_number_of

_phase, _name, _cat = attrgetter("ph"), attrgetter("name"), attrgetter("cat")
_pid, _tid, _ts, _dur = attrgetter("pid"), attrgetter("tid"), attrgetter("ts"), attrgetter("dur")

#: Every phase of the Chrome trace event format; a region holding another decodes the careful way.
PHASES = ("X", "B", "E", "i", "I", "C", "b", "n", "e", "s", "t", "f", "S", "T", "p", "F", "P", "O", "N", "D",
          "M", "V", "v", "R", "c", "(", ")")


@cache
def _fast_types(ts_limit: float, dur_limit: float) -> tuple[type, dict[type, str], msgspec.json.Decoder[Any]]:
    """(the complete-event type, phase of each type, the region decoder) for these limits."""
    ts = Annotated[float, msgspec.Meta(ge=-ts_limit, le=ts_limit)]
    dur = Annotated[float, msgspec.Meta(ge=0.0, le=dur_limit)]
    optional: list[tuple[str, Any, Any]] = [("name", str, ""), ("cat", str, ""), ("pid", int | str, 0),
                                            ("tid", int | str, 0)]
    complete = msgspec.defstruct("Complete", [("ts", ts), ("dur", dur), *optional],
                                 tag="X", tag_field="ph", frozen=True, gc=False)
    # Other phases declare the same fields with the same types as the careful decoder's
    # RawEvent, so that an event refused there (a name that is a number) is refused here too.
    others = [msgspec.defstruct(f"Phase{i}", [*optional, ("ts", float, math.nan), ("dur", float, math.nan)],
                                tag=p, tag_field="ph", frozen=True, gc=False) for i, p in enumerate(PHASES[1:])]
    union: Any = Union.__getitem__(tuple([complete, *others]))
    phase_of = {complete: "X", **{t: p for t, p in zip(others, PHASES[1:])}}
    return complete, phase_of, msgspec.json.Decoder(list[union])


def fast_decode(view: memoryview | bytes, keep: RowFilter | None) -> Chunk:
    """The region ``[`` + events + ``]`` as columns; raises msgspec errors where the careful
    decoder must read it instead."""
    complete, phase_of, decoder = _fast_types(limits.TS_LIMIT_US, limits.DUR_LIMIT_US)
    events = decoder.decode(view)
    if not events:
        return Chunk()
    types = Counter(map(type, events))
    phases = {phase_of[t]: n for t, n in types.items()}
    xs = events if types.get(complete, 0) == len(events) else [e for e in events if type(e) is complete]
    chunk = complete_columns(xs, keep)
    chunk.events_total, chunk.phases = len(events), phases
    return chunk


def columnarize(events: list[Any], keep: RowFilter | None = None) -> Chunk:
    """Columns of the complete (``X``) events among ``events`` (each with the careful decoder's
    fields, times unchecked); every event is counted, those with unusable times skipped."""
    if not events:
        return Chunk()
    phases_list = list(map(_phase, events))
    phases = dict(Counter(phases_list))
    xs = events if phases.get("X", 0) == len(events) else list(compress(events, map("X".__eq__, phases_list)))
    n = len(xs)
    ts_us = np.fromiter(map(_ts, xs), np.float64, n)
    dur_us = np.fromiter(map(_dur, xs), np.float64, n)
    skips, good = _bad_times(xs, ts_us, dur_us)
    if good is not None:
        xs = list(compress(xs, good.tolist()))
    chunk = complete_columns(xs, keep)
    chunk.events_total, chunk.phases, chunk.skips = len(events), phases, skips
    return chunk


def _codes(values: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """int32 codes of ``values`` (an iterator of ``n`` hashables) and the distinct values, in
    order of first appearance; each value is hashed once (a C-level pass, no per-row object)."""
    table: defaultdict[Any, int] = defaultdict(count().__next__)
    codes = np.fromiter(map(table.__getitem__, values), np.int32, n)
    return codes, list(table)


def complete_columns(xs: list[Any], keep: RowFilter | None) -> Chunk:
    """Columns of complete events whose times are all usable, only the rows ``keep`` names."""
    n = len(xs)
    if not n:
        return Chunk()
    name_codes, names = _codes(map(_name, xs), n)
    cat_codes, cats = _codes(map(_cat, xs), n)
    cats = [_lower(c) for c in cats]
    counts = np.bincount(cat_codes, minlength=len(cats)).tolist()
    cat_counts: dict[str, int] = {}
    for c, k in zip(cats, counts):
        cat_counts[c] = cat_counts.get(c, 0) + k
    steps = np.fromiter(map(step_number_of, names), np.int64, len(names))
    if steps.size and int(steps.max()) < 2**31:  # (every N fits int32: half the bytes a row)
        steps = steps.astype(np.int32)
    if keep is not None:
        by_name = np.fromiter((k >= 0 or keep.name(s) for s, k in zip(names, steps.tolist())), bool, len(names))
        by_cat = np.fromiter((c in keep.categories for c in cats), bool, len(cats))
        rows = by_name[name_codes] | by_cat[cat_codes]
        if not rows.all():
            xs = list(compress(xs, rows.tolist()))
            name_codes, cat_codes = name_codes[rows], cat_codes[rows]
    m = len(xs)
    step_names = np.flatnonzero(steps >= 0).tolist()
    for i in step_names:
        names[i] = STEP_PREFIX
    return Chunk(
        complete=n,
        cat_counts=cat_counts,
        ts_us=np.fromiter(map(_ts, xs), np.float64, m),
        dur_us=np.fromiter(map(_dur, xs), np.float64, m),
        name=(name_codes, names),
        cat=(cat_codes, cats),
        pid=_codes(map(_pid, xs), m),
        tid=_codes(map(_tid, xs), m),
        step_number=steps[name_codes] if step_names else np.broadcast_to(np.int32(-1), (m,)),
    )


def _lower(s: Any) -> str:
    return s.lower() if isinstance(s, str) else str(s).lower()


def _bad_times(xs: list[Any], ts_us: np.ndarray, dur_us: np.ndarray) -> tuple[Skips, np.ndarray | None]:
    """The complete events whose ts or dur is missing or out of range, counted; the rows to
    keep (None: all)."""
    ts_bad = ~(np.abs(ts_us) <= limits.TS_LIMIT_US)  # NaN (missing) compares False: bad
    dur_bad = ~((dur_us >= 0.0) & (dur_us <= limits.DUR_LIMIT_US))
    bad = ts_bad | dur_bad
    rows = np.flatnonzero(bad).tolist()
    if not rows:
        return Skips(), None
    examples = []
    for row in rows[: limits.MAX_BAD_EXAMPLES]:
        which = "ts" if ts_bad[row] else "dur"
        value = float(ts_us[row] if which == "ts" else dur_us[row])
        examples.append(BadValue(str(xs[row].name)[:100], which, _number_text(value)[:40]))
    per_name = dict(Counter(str(xs[row].name)[:100] for row in rows))
    fields = {k: n for k, n in (("ts", int(ts_bad.sum())), ("dur", int(dur_bad.sum()))) if n}
    return Skips(skipped=len(rows), bad_time=len(rows), examples=examples, names=per_name, bad_fields=fields), ~bad


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


def _no_codes() -> tuple[np.ndarray, list[Any]]:
    return np.zeros(0, np.int32), []


@dataclass
class Chunk:
    """One decoded region of the event array: columns with chunk-local string codes.

    ``complete`` counts the complete events with usable times (``cat_counts`` by lower-cased
    category), rows or not; the columns hold the rows kept. ``head``/``tail`` hold bytes at
    the region's edges that did not decode on their own (an event cut by a boundary
    look-alike inside a string, or a malformed one); the caller joins a tail with the next
    region's head.
    """

    events_total: int = 0
    skips: Skips = field(default_factory=Skips)
    phases: dict[str, int] = field(default_factory=dict)
    complete: int = 0
    cat_counts: dict[str, int] = field(default_factory=dict)
    ts_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dur_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    name: tuple[np.ndarray, list[Any]] = field(default_factory=_no_codes)
    cat: tuple[np.ndarray, list[Any]] = field(default_factory=_no_codes)
    pid: tuple[np.ndarray, list[Any]] = field(default_factory=_no_codes)
    tid: tuple[np.ndarray, list[Any]] = field(default_factory=_no_codes)
    step_number: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    head: bytes = b""
    tail: bytes = b""
