"""Hostile or damaged traces: bad numbers are skipped and counted, nesting costs no recursion,
and memory stays bounded whatever the file holds. Every failure is one BadInputError line."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens import load
from tracelens.api import analyze_path
from tracelens.errors import BadInputError
from tracelens.load import load_trace
from tracelens.model import Trace

MB = 1 << 20
DEEP = 100_000  # levels of nesting; msgspec and json give up near 1,000


@pytest.fixture(autouse=True)
def _drop_big_files(tmp_path: Path) -> Iterator[None]:
    """pytest keeps the temporary files of its last runs: not the bombs' hundreds of MB."""
    yield
    for f in tmp_path.iterdir():
        if f.is_file() and f.stat().st_size > 8 * MB:
            f.unlink()


def _text(steps: int = 6) -> str:
    """A small new-dialect trace, compact: steps of 100000 µs, waits of 30000 µs."""
    return starved_loop(TraceBuilder(device_names=("NVIDIA H100",)), steps=steps).text(indent=None)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _load(path: Path, **kw: int) -> Trace:
    """load_trace with every numpy overflow or invalid cast raising, not warning."""
    with np.errstate(all="raise"):
        return load_trace(path, **kw)


def _assert_times_fit_int64(t: Trace) -> None:
    ends = [a + b for a, b in zip(t.ts_ns.tolist(), t.dur_ns.tolist())]  # Python ints: exact
    assert all(0 <= e < 2**63 for e in ends) and (t.dur_ns >= 0).all() and (t.ts_ns >= 0).all()


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("old", "new", "field", "value"), [
    ('"dur": 100000', '"dur": 1e300', "dur", "1e+300"),
    ('"dur": 100000', '"dur": 9223372036854775807', "dur", "9.223372036854776e+18"),
    ('"dur": 30000', '"dur": 1e30', "dur", "1e+30"),
    ('"ts": 1000000.0,', '"ts": 1e300,', "ts", "1e+300"),
    ('"ts": 1000000.0,', '"ts": -1e30,', "ts", "-1e+30"),
])
def test_times_beyond_int64_nanoseconds_are_skipped_and_counted_never_overflow(
        tmp_path: Path, old: str, new: str, field: str, value: str) -> None:
    text = _text()
    bad = text.replace(old, new, 1)
    t = _load(_write(tmp_path / "t.json", bad))
    assert t.stats.bad_time_events == 1 and t.stats.bad_time_fields == {field: 1}
    assert t.stats.skipped_malformed == 1
    assert len(t) == len(_load(_write(tmp_path / "ok.json", text))) - 1
    (example,) = t.stats.bad_time_examples
    assert (example.field, example.value) == (field, value)
    _assert_times_fit_int64(t)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", '"12"', "null"])
def test_nan_infinity_and_non_numbers_as_times_are_skipped_and_counted(tmp_path: Path, token: str) -> None:
    bad = _text().replace('"dur": 100000', f'"dur": {token}', 1)
    t = _load(_write(tmp_path / "t.json", bad))
    assert t.stats.skipped_malformed == 1 and t.stats.bad_time_events == 1
    (example,) = t.stats.bad_time_examples
    assert (example.name, example.field, example.value) == ("ProfilerStep#1", "dur", token)


def test_negative_or_missing_dur_of_a_complete_event_is_skipped_and_counted(tmp_path: Path) -> None:
    bad = _text().replace('"dur": 100000', '"dur": -5', 1).replace(', "dur": 30000', "", 1)
    t = _load(_write(tmp_path / "t.json", bad))
    assert t.stats.bad_time_events == 2 and t.stats.bad_time_fields == {"dur": 2}
    assert [(e.name, e.value) for e in t.stats.bad_time_examples] == [
        ("ProfilerStep#1", "-5"), ("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", "missing")]


def test_zero_dur_is_a_valid_duration_and_kept(tmp_path: Path) -> None:
    t = _load(_write(tmp_path / "t.json", _text().replace('"dur": 30000', '"dur": 0', 1)))
    assert t.stats.bad_time_events == 0 and 0 in t.dur_ns.tolist()


def test_examples_are_capped_and_the_counts_are_not(tmp_path: Path) -> None:
    t = _load(_write(tmp_path / "t.json", _text(steps=20).replace('"dur": 100000', '"dur": -1')))
    assert t.stats.bad_time_events == 20 and len(t.stats.bad_time_examples) == load.limits.MAX_BAD_EXAMPLES


def test_a_trace_whose_steps_all_have_bad_times_does_not_look_healthy(tmp_path: Path) -> None:
    for token in ("-100000", "1e300"):
        p = _write(tmp_path / "t.json", _text().replace('"dur": 100000', f'"dur": {token}'))
        result = analyze_path(p)
        rank = result.ranks[0]
        assert rank.analysis.skipped_events == 6 and rank.diagnosis.diagnosis != "healthy"
        assert "6 malformed event(s) skipped" in rank.analysis.warnings
    p = _write(tmp_path / "w.json", _text().replace('"dur": 30000', '"dur": 1e30'))
    assert analyze_path(p).ranks[0].diagnosis.diagnosis != "healthy"


def test_bad_times_are_counted_the_same_when_decoded_in_parallel(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(steps=200).replace('"dur": 100000', '"dur": -1').replace('"ts": 1000000.0,', '"ts": NaN,')
    p = _write(tmp_path / "t.json", text)
    whole = _load(p)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", 2000)
    gz = _write(tmp_path / "t.json.gz", gzip.compress(text.encode()))
    for t in (_load(p, jobs=2), _load(gz, jobs=2)):
        # 200 steps with dur -1; NaN ts on step 1 (already counted) and on its __next__
        assert t.stats.bad_time_events == whole.stats.bad_time_events == 201
        assert t.stats.bad_time_fields == whole.stats.bad_time_fields == {"dur": 199, "ts": 2}
        assert t.ts_ns.tolist() == whole.ts_ns.tolist()


@pytest.mark.parametrize(("header", "problem"), [
    ('"baseTimeNanoseconds": 1e400', "baseTimeNanoseconds metadata is not valid JSON"),
    ('"baseTimeNanoseconds": NaN', "baseTimeNanoseconds metadata is not valid JSON"),
    ('"distributedInfo": {"rank": Infinity}', "distributedInfo metadata is not valid JSON"),
])
def test_a_bad_number_in_metadata_tracelens_reads_is_one_clear_error(tmp_path: Path, header: str, problem: str) -> None:
    p = _write(tmp_path / "t.json", _text().replace('"schemaVersion": 1', f'"schemaVersion": 1, {header}'))
    with pytest.raises(BadInputError, match=problem):
        analyze_path(p)


def test_huge_numbers_in_ids_and_metadata_never_overflow(tmp_path: Path) -> None:
    text = _text().replace('"pid": 4242, "tid": 4243, "ts"', '"pid": 18446744073709551615, "tid": 4243, "ts"', 1).replace(
        '"schemaVersion": 1', '"schemaVersion": 1, "baseTimeNanoseconds": 1e300', 1).replace(
        '"baseTimeNanoseconds": 1767189312000000000', '"x": 1')
    t = _load(_write(tmp_path / "t.json", text))
    assert t.meta.base_time_ns is None and t.stats.skipped_malformed == 0
    assert t.label(int(t.pid[0])) == "18446744073709551615"


# --------------------------------------------------------------------------- nesting


def _deep_array() -> str:
    return "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_deeply_nested_args_do_not_stop_the_event_from_loading(tmp_path: Path, which: str) -> None:
    text = _text()
    ok = _load(_write(tmp_path / "ok.json", text))
    marks = [i for i in range(len(text)) if text.startswith('"ph": "X"', i)]
    at = {"first": marks[0], "middle": marks[len(marks) // 2], "last": marks[-1]}[which]
    deep = text[:at] + f'"args": {{"a": {_deep_array()}}}, ' + text[at:]
    for path in (_write(tmp_path / "t.json", deep), _write(tmp_path / "t.json.gz", gzip.compress(deep.encode()))):
        t = _load(path)
        assert t.stats.skipped_malformed == 0
        assert t.ts_ns.tolist() == ok.ts_ns.tolist() and t.names.names == ok.names.names


def test_an_event_field_tracelens_reads_nested_deeply_is_a_skipped_event(tmp_path: Path) -> None:
    bad = _text().replace('"name": "ProfilerStep#1"', f'"name": {_deep_array()}', 1)
    t = _load(_write(tmp_path / "t.json", bad))
    assert t.stats.skipped_malformed == 1 and "ProfilerStep#1" not in t.names.names


@pytest.mark.parametrize("where", ["before", "after"])
def test_deeply_nested_metadata_tracelens_does_not_read_is_skipped_unparsed(tmp_path: Path, where: str) -> None:
    text = _text()
    if where == "before":
        deep = text.replace('"schemaVersion": 1', f'"schemaVersion": 1, "config": {_deep_array()}')
    else:
        deep = text[:-1] + f', "config": {{"a": {_deep_array()}}}, "traceName": "after.json"}}'
    t = _load(_write(tmp_path / "t.json", deep))
    assert "config" in t.meta.extra_keys and len(t) == len(_load(_write(tmp_path / "ok.json", text)))
    if where == "after":
        assert t.meta.trace_name == "after.json"


def test_metadata_tracelens_reads_nested_past_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    deep = _text().replace('"deviceProperties": [', f'"deviceProperties": [{_deep_array()}, ', 1)
    with pytest.raises(BadInputError, match=f"deviceProperties metadata nests deeper than {load.limits.MAX_META_DEPTH} levels"):
        load_trace(_write(tmp_path / "t.json", deep))


@pytest.mark.parametrize(("document", "outcome"), [
    (_deep_array(), "loads"),
    ('{"traceEvents": ' + _deep_array() + "}", "loads"),
    ('{"a": ' + _deep_array() + "}", "not a Chrome trace"),
    ("[" * DEEP, "first complete event"),
    ('{"a": ' + "{" * DEEP, "truncated"),
])
def test_a_deeply_nested_document_is_a_result_or_one_clear_error(tmp_path: Path, document: str, outcome: str) -> None:
    p = _write(tmp_path / "t.json", document)
    if outcome == "loads":
        t = _load(p)
        assert len(t) == 0 and t.stats.skipped_malformed == 1
    else:
        with pytest.raises(BadInputError, match=outcome):
            analyze_path(p)


# --------------------------------------------------------------------------- sizes


def _with_header(tmp_path: Path, filler: Callable[[], Iterator[bytes]]) -> Path:
    """A plain trace whose metadata before traceEvents holds what ``filler`` yields."""
    text = _text().encode()
    at = text.index(b'"traceEvents"')
    path = tmp_path / "header.json"
    with path.open("wb") as f:
        f.write(text[:at])
        for piece in filler():
            f.write(piece)
        f.write(text[at:])
    return path


def _config(megabytes: int) -> Callable[[], Iterator[bytes]]:
    """An unread metadata object of many small entries, ``megabytes`` MB in all."""
    entry = b'"key_%08d": {"values": [1, 2.5, -3e-4, true, null], "name": "layer \\"x\\" \\u00e9", "n": {"a": [[1], [2]]}}, '

    def gen() -> Iterator[bytes]:
        yield b'"config": {'
        n, block = 0, []
        while n * len(entry) < megabytes * 1e6:
            block.append(entry % n)
            n += 1
            if len(block) == 10_000:
                yield b"".join(block)
                block = []
        yield b"".join(block) + b'"last": 0}, '

    return gen


def test_metadata_before_trace_events_of_any_size_loads(tmp_path: Path) -> None:
    t = _load(_with_header(tmp_path, _config(24)))
    assert len(t) == 6 * 4 and "config" in t.meta.extra_keys
    assert t.meta.device_properties[0]["name"] == "NVIDIA H100"


@pytest.mark.slow
def test_a_300_mb_header_before_trace_events_loads(tmp_path: Path) -> None:
    t = _load(_with_header(tmp_path, _config(300)))
    assert len(t) == 6 * 4 and t.meta.device_properties[0]["name"] == "NVIDIA H100"


def test_metadata_tracelens_reads_over_the_size_limit_is_refused_naming_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load.limits, "MAX_META_VALUE_BYTES", MB)
    big = _text().replace('"name": "NVIDIA H100"', '"name": "NVIDIA H100", "pad": "' + "x" * (2 * MB) + '"')
    with pytest.raises(BadInputError, match="deviceProperties metadata exceeds 1 MB"):
        load_trace(_write(tmp_path / "t.json", big))


def _peak_traced(fn: Callable[[], Trace]) -> tuple[Trace, int]:
    """``fn()`` and the peak of memory allocated meanwhile (bytes, Python and numpy)."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Limits:
    """Small loader limits, so that a bomb of tens of MB proves the bound of a real one."""

    READ = MB
    EVENT = 4 * MB
    BOMB = 96 * MB
    PEAK = 24 * MB  # stated bound at these limits (about 5 events' worth + a few blocks)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load.limits, "READ_BLOCK", _Limits.READ)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", _Limits.READ)
    monkeypatch.setattr(load.limits, "MAX_EVENT_BYTES", _Limits.EVENT)


def _spot(where: str) -> tuple[str, str]:
    """The test trace's text cut in two at ``where``, ready for a filler in between."""
    text = _text()
    last = text.rindex('{"ph": "X"')
    mid = text.index('{"ph": "X"', len(text) // 2)
    at = {
        "after [": text.index("[", text.index('"traceEvents"')) + 1,
        "before a comma": text.rindex("}", 0, mid) + 1,
        "after a comma": mid,
        "before ]": text.index("]", last),
        "between keys": text.index('"traceEvents"'),
        "inside args": text.index('"ph": "X"', mid),
        "inside the last event": text.index('"ph": "X"', last),
    }[where]
    opening, closing = {"inside args": ('"args": {"s": "', '"}, '), "inside the last event": ('"args": {"s": "', '"}, '),
                        "between keys": ('"pad": "', '", ')}.get(where, ("", ""))
    return text[:at] + opening, closing + text[at:]


def _bomb(path: Path, spot: tuple[str, str], fill: bytes, compress: bool) -> Path:
    """The trace with ``_Limits.BOMB`` bytes of ``fill`` (repeated) at ``spot``, stream-written."""
    block = fill * (MB // len(fill))
    with (gzip.open(path, "wb", compresslevel=1) if compress else path.open("wb")) as f:
        f.write(spot[0].encode())
        for _ in range(_Limits.BOMB // MB):
            f.write(block)
        f.write(spot[1].encode())
    return path


WHITESPACE = ["after [", "before a comma", "after a comma", "before ]", "between keys"]


@pytest.mark.usefixtures("small_limits")
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("where", WHITESPACE)
def test_a_whitespace_bomb_costs_bounded_memory_and_loses_no_event(tmp_path: Path, where: str, compress: bool) -> None:
    path = _bomb(tmp_path / "ws.json", _spot(where), b" " * 1023 + b"\n", compress)
    t, peak = _peak_traced(lambda: _load(path, jobs=1))
    assert len(t) == 6 * 4 and t.stats.skipped_malformed == 0 and not t.stats.truncated
    assert peak < _Limits.PEAK, f"peak {peak / MB:.0f} MB for a {_Limits.BOMB // MB} MB bomb"


@pytest.mark.usefixtures("small_limits")
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("where", ["inside args", "inside the last event", "between keys"])
def test_a_huge_string_costs_bounded_memory_and_only_its_event(tmp_path: Path, where: str, compress: bool) -> None:
    path = _bomb(tmp_path / "str.json", _spot(where), b"a", compress)
    t, peak = _peak_traced(lambda: _load(path, jobs=1))
    lost = 0 if where == "between keys" else 1
    assert len(t) == 6 * 4 - lost and t.stats.oversized_events == lost == t.stats.skipped_malformed
    assert not t.stats.truncated
    assert peak < _Limits.PEAK, f"peak {peak / MB:.0f} MB for a {_Limits.BOMB // MB} MB bomb"


@pytest.mark.usefixtures("small_limits")
def test_bombs_decode_the_same_with_worker_processes(tmp_path: Path) -> None:
    for fill, where in ((b" ", "before a comma"), (b"a", "inside args")):
        for compress in (True, False):
            path = _bomb(tmp_path / f"b{compress}.json", _spot(where), fill, compress)
            one, two = _load(path, jobs=1), _load(path, jobs=2)
            assert two.ts_ns.tolist() == one.ts_ns.tolist()
            assert two.stats.skipped_malformed == one.stats.skipped_malformed


def test_whitespace_inside_a_compressed_stream_is_read_at_decompression_speed(tmp_path: Path) -> None:
    """1 GB of whitespace in a 1 MB gzip once took 119 s: now it is a few seconds of gunzip."""
    text = _text().encode()
    cut = text.rindex(b"}", 0, len(text) // 2) + 1
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    path = tmp_path / "ws.json.gz"
    with path.open("wb") as f:
        f.write(comp.compress(text[:cut]))
        block = b" " * (8 * MB)
        for _ in range(32):  # 256 MB
            f.write(comp.compress(block))
        f.write(comp.compress(text[cut:]) + comp.flush())
    t, peak = _peak_traced(lambda: _load(path, jobs=1))
    assert len(t) == 6 * 4 and peak < 4 * load.limits.MAX_EVENT_BYTES


def test_an_event_over_the_limit_is_skipped_and_the_events_after_it_cut_in_regions_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load.limits, "MAX_EVENT_BYTES", 64 * 1024)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", 16 * 1024)
    monkeypatch.setattr(load.limits, "READ_BLOCK", 16 * 1024)
    one_by_one: list[int] = []
    decode = load.decode.decode_event
    monkeypatch.setattr(load.stream, "decode_event", lambda piece: one_by_one.append(len(piece)) or decode(piece))
    b = starved_loop(TraceBuilder(), steps=2000)
    b.events.insert(len(b.events) // 2, {"ph": "X", "name": "big", "ts": 1, "dur": 1, "args": {"s": "]}" * 70_000}})
    t = _load(b.write(tmp_path / "t.json.gz", compress=True), jobs=1)
    assert len(t) == 2000 * 4 and t.stats.oversized_events == 1 and "big" not in t.names.names
    assert len(one_by_one) < 5  # read one at a time: a few around the big one, and the last


def test_big_metadata_after_the_event_array_is_skipped_and_keys_after_it_read(tmp_path: Path) -> None:
    text = _text()
    doc = text[:-1] + ', "config": "' + "y" * (40 * MB) + '", "traceName": "after.json"}'
    for path in (_write(tmp_path / "t.json", doc), _write(tmp_path / "t.json.gz", gzip.compress(doc.encode(), 1))):
        t = _load(path)
        assert t.meta.trace_name == "after.json" and len(t) == 6 * 4 and t.stats.skipped_malformed == 0


def test_trace_events_that_is_not_an_array_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"traceEvents .* is not an array"):
        load_trace(_write(tmp_path / "t.json", json.dumps({"traceEvents": {"ph": "X"}})))


@pytest.mark.parametrize("chunk", [300, 700, 2000, 16384])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_a_boundary_look_alike_next_to_an_oversized_event_loses_neither_neighbour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, compress: bool) -> None:
    """Tiny regions: one holds only the second half of an event cut at a look-alike, so the
    first half must wait for it (it was decoded alone and dropped, and the next region read
    from the middle of a string, taking a ']' in it for the end of the array)."""
    monkeypatch.setattr(load.limits, "MAX_EVENT_BYTES", 64 * 1024)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", chunk)
    monkeypatch.setattr(load.limits, "READ_BLOCK", chunk)
    b = starved_loop(TraceBuilder(), steps=50)
    k = len(b.events) // 2
    b.events.insert(k, {"ph": "X", "name": "big", "ts": 1, "dur": 1, "args": {"s": "]}" * 70_000}})
    b.events.insert(k, {"ph": "X", "cat": "cpu_op", "name": "weird },{ name", "pid": 1, "tid": 1, "ts": 5, "dur": 1})
    path = b.write(tmp_path / "t.json", compress=compress, indent=None)
    for jobs in (1, 2):
        t = _load(path, jobs=jobs)
        assert len(t) == 50 * 4 + 1 and "weird },{ name" in t.names.names
        assert t.stats.oversized_events == t.stats.skipped_malformed == 1


def test_a_string_full_of_brace_comma_brace_is_read_as_one_event(tmp_path: Path) -> None:
    b = starved_loop(TraceBuilder(), steps=100)
    b.events.insert(200, {"ph": "X", "name": "reprs", "ts": 1, "dur": 1, "args": {"s": "[{'a': 1}, {'b': 2}]" * 20_000}})
    for compress in (False, True):
        t = _load(b.write(tmp_path / "t.json", compress=compress, indent=None), jobs=1)
        assert len(t) == 401 and "reprs" in t.names.names and t.stats.skipped_malformed == 0


def test_junk_made_of_boundary_look_alikes_costs_linear_time_and_spares_its_neighbours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'"}, {"' can pass for the space between two events; a million of them are tried one by
    one, not joined eight ways each, and count as one skipped event per stretch."""
    monkeypatch.setattr(load.limits, "MAX_PIECE_FAILURES", 16)
    text = starved_loop(TraceBuilder(), steps=100).text(indent=None).encode()
    at = text.index(b'"ph"', len(text) // 2)
    junk = text[:at] + b'"s": "' + b'"}, {", ' * 200_000 + b'"x": 1, ' + text[at:]
    for compress in (False, True):
        path = _write(tmp_path / "t.json", gzip.compress(junk, 1) if compress else junk)
        t = _load(path, jobs=1)
        assert len(t) == 399  # all but the event holding the junk
        assert t.stats.skipped_malformed <= 16 + 4  # pieces tried one by one before, then stretches
