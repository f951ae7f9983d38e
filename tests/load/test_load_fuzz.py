"""Fuzz the loader with damaged real traces: whatever the damage, the outcome is a Trace (and an
analysis) whose numbers make sense, or one BadInputError; never a traceback, never unbounded
memory.

Real traces from ../shared/traces are mutated by hypothesis (derandomized, so every run tries
the same cases): cut at any byte, bytes flipped or inserted, numbers replaced by huge,
negative, NaN-like or non-number tokens, deep nesting put in an event, the metadata or around
the whole document, whitespace runs and huge strings inserted, the result gzipped and the gzip
stream broken. The loader runs with small limits (16 kB blocks, 64 kB events) so that inputs
of a few hundred kB reach every path a multi-GB file would.
"""

from __future__ import annotations

import gzip
import math
import re
import tracemalloc
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_TRACES
from tracelens import load
from tracelens.api import analyze_path
from tracelens.errors import BadInputError
from tracelens.load import load_trace

pytestmark = pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="../shared/traces is not present")

#: Small real traces with steps (and DataLoader waits, kernels, a ROCm one), 11-85 kB.
SOURCES = (
    "kineto/tb_plugin/test/gpu_metrics_input.json",
    "hta/tests/data/trace_compare/base/base.json.gz",
    "hta/tests/data/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "hta/tests/data/critical_path/cuda_event_sync/event_sync_trace.json.gz",
)
HOSTILE_NUMBERS = (
    b"1e300", b"-1e300", b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"-0", b"-1",
    b"1e30", b"9223372036854775807", b"18446744073709551616", b"1" + b"0" * 40, b"4e15", b"-4e15",
    b"6.048e11", b"5e-324", b"1.7976931348623157e308", b'"12"', b"null", b"true", b"[]", b"{}",
)
SMALL_BLOCK = 16 << 10
SMALL_EVENT = 64 << 10
#: Stated bound on what one load may allocate (Python and numpy, traced): a fixed part plus
#: ten times the decompressed input.
MEMORY_FIXED = 24 << 20
MEMORY_PER_INPUT_BYTE = 10

_NUMBER = re.compile(rb"(?<=[:\[,\s])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_KEY = re.compile(rb'"ph"')


@cache
def _source(name: str) -> bytes:
    return gzip.decompress(raw) if (raw := (SHARED_TRACES / name).read_bytes())[:2] == b"\x1f\x8b" else raw


Draw = Callable[[st.SearchStrategy[object]], object]


def _at(draw: Draw, data: bytes) -> int:
    return draw(st.integers(0, len(data)))  # type: ignore[return-value]


def _key_spot(draw: Draw, data: bytes) -> int:
    """Just before some event's "ph" key (inside an event object), or anywhere if none."""
    spots = [m.start() for m in _KEY.finditer(data)]
    return draw(st.sampled_from(spots)) if spots else _at(draw, data)  # type: ignore[return-value]


def _truncate(draw: Draw, data: bytes) -> bytes:
    return data[: _at(draw, data)]


def _flip(draw: Draw, data: bytes) -> bytes:
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]  # type: ignore[operator]


def _insert(draw: Draw, data: bytes) -> bytes:
    i = _at(draw, data)
    return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]  # type: ignore[operator]


def _number(draw: Draw, data: bytes) -> bytes:
    token: bytes = draw(st.sampled_from(HOSTILE_NUMBERS))  # type: ignore[assignment]
    if draw(st.booleans()):  # every dur (or ts) at once: no step left with a sane time
        field = draw(st.sampled_from([b"dur", b"ts"]))
        return re.sub(rb'"%s": ?-?[0-9.eE+]+' % field, b'"%s": ' % field + token, data)  # type: ignore[str-bytes-safe]
    spots = list(_NUMBER.finditer(data))
    if not spots:
        return data
    m = draw(st.sampled_from(spots))
    return data[: m.start()] + token + data[m.end() :]  # type: ignore[union-attr]


def _nest(draw: Draw, data: bytes) -> bytes:
    depth: int = draw(st.sampled_from([500, 5_000, 100_000]))  # type: ignore[assignment]
    deep = b"[" * depth + b"]" * depth
    where = draw(st.sampled_from(["event", "metadata", "document", "unclosed"]))
    if where == "document":
        return b"[" * depth + data + b"]" * depth
    if where == "unclosed":
        i = _at(draw, data)
        return data[:i] + b"[" * depth + data[i:]
    i = data.find(b'"traceEvents"') if where == "metadata" else _key_spot(draw, data)
    i = max(i, 0)
    return data[:i] + b'"deep": ' + deep + b", " + data[i:]


def _whitespace(draw: Draw, data: bytes) -> bytes:
    size: int = draw(st.sampled_from([1, 100, 70_000, 300_000]))  # type: ignore[assignment]
    run = draw(st.sampled_from([b" ", b"\n", b"\t", b"\r\n "])) * size  # type: ignore[operator]
    ends = [m.end() for m in re.finditer(rb"[}\[,]", data)]
    i = draw(st.sampled_from(ends)) if ends and draw(st.booleans()) else _at(draw, data)
    return data[:i] + run + data[i:]  # type: ignore[operator]


def _big_string(draw: Draw, data: bytes) -> bytes:
    size: int = draw(st.sampled_from([100, 70_000, 300_000]))  # type: ignore[assignment]
    piece: bytes = draw(st.sampled_from([b"a" * 250 + b"]}, {", b"a"]))  # type: ignore[assignment]
    i = _key_spot(draw, data)
    return data[:i] + b'"s": "' + piece * (size // len(piece)) + b'", ' + data[i:]


MUTATIONS = (_truncate, _flip, _insert, _number, _number, _nest, _whitespace, _big_string)


@st.composite
def damaged_traces(draw: Draw) -> tuple[bytes, bytes]:
    """(the file's bytes, the decompressed text they hold)."""
    data = _source(draw(st.sampled_from(SOURCES)))  # type: ignore[arg-type]
    for _ in range(draw(st.integers(1, 3))):  # type: ignore[call-overload]
        data = draw(st.sampled_from(MUTATIONS))(draw, data)  # type: ignore[operator]
    if not draw(st.booleans()):
        return data, data
    packed = gzip.compress(data, compresslevel=1)
    damage = draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut":
        packed = packed[: draw(st.integers(10, len(packed)))]  # type: ignore[misc]
    elif damage == "flip":
        i = draw(st.integers(10, len(packed) - 1))
        packed = packed[:i] + bytes([packed[i] ^ 0x55]) + packed[i + 1 :]  # type: ignore[index]
    return packed, data


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load.limits, "READ_BLOCK", SMALL_BLOCK)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", SMALL_BLOCK)
    monkeypatch.setattr(load.limits, "MAX_EVENT_BYTES", SMALL_EVENT)


def _check_trace(path: Path, jobs: int, text_bytes: int) -> None:
    tracemalloc.start()
    try:
        t = load_trace(path, jobs=jobs)
    except BadInputError:
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_FIXED + MEMORY_PER_INPUT_BYTE * text_bytes, f"{peak / 2**20:.1f} MB"
    assert len(t) == t.stats.complete_events
    assert t.stats.bad_time_events + t.stats.oversized_events <= t.stats.skipped_malformed
    if len(t):
        assert int(t.ts_ns.min()) >= 0 and int(t.dur_ns.min()) >= 0
        assert int(t.ts_ns.max()) + int(t.dur_ns.max()) < 2**63


def _check_analysis(path: Path) -> None:
    try:
        result = analyze_path(path)
    except BadInputError:
        return
    a = result.ranks[0].analysis
    for name in ("data_wait_fraction", "exposed_data_wait_fraction", "gpu_busy_fraction"):
        value = getattr(a, name)
        assert value is None or 0.0 <= value <= 1.0, (name, value)
    for value in (a.step_time_ms, a.step_time_ms_median):
        assert value is None or (math.isfinite(value) and value >= 0), value
    durations = a.per_step["duration_ms"]
    assert np.isfinite(durations).all() and (durations >= 0).all()


@pytest.mark.usefixtures("small_limits")
@settings(max_examples=200, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(trace=damaged_traces(), jobs=st.sampled_from([1, 1, 2]))
def test_a_damaged_real_trace_loads_sanely_or_is_one_clear_error(tmp_path: Path, trace: tuple[bytes, bytes],
                                                                 jobs: int) -> None:
    data, text = trace
    path = tmp_path / "damaged.json"
    path.write_bytes(data)
    _check_trace(path, jobs, len(text))
    _check_analysis(path)


def test_every_source_trace_is_there_and_loads(small_limits: None) -> None:
    for name in SOURCES:
        t = load_trace(SHARED_TRACES / name)
        assert len(t) and not t.stats.skipped_malformed, name


def test_a_broken_gzip_stream_keeps_what_decoded_before_the_break(tmp_path: Path) -> None:
    data = _source(SOURCES[0])
    packed = zlib.compressobj(6, zlib.DEFLATED, 31)
    stream = packed.compress(data) + packed.flush()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(stream[: len(stream) * 3 // 4])
    t = load_trace(path)
    assert t.stats.truncated and 0 < len(t) < len(load_trace(SHARED_TRACES / SOURCES[0]))
