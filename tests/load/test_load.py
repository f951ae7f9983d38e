"""The loader reads every dialect, survives broken files, and refuses non-traces clearly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens import load
from tracelens.errors import BadInputError
from tracelens.load import load_trace


def _trace(steps: int = 5) -> TraceBuilder:
    return starved_loop(TraceBuilder(device_names=("NVIDIA H100",), rank=3), steps=steps)


def test_object_trace_keeps_metadata_and_every_complete_event(tmp_path: Path) -> None:
    b = _trace()
    t = load_trace(b.write(tmp_path / "t.json"))
    assert len(t) == len(b.events)
    assert t.stats.events_total == len(b.events) + 2  # two metadata events
    assert t.meta.top_level == "object" and t.meta.format == "json"
    assert t.meta.device_properties[0]["name"] == "NVIDIA H100"
    assert t.meta.distributed_info == {"backend": "nccl", "rank": 3, "world_size": 8}
    assert t.meta.base_time_ns == 1_767_189_312_000_000_000
    assert t.meta.trace_name == "built.json"  # a key written after traceEvents


def test_bare_array_with_string_ids_and_capitalized_categories(tmp_path: Path) -> None:
    t = load_trace(_trace().__class__(dialect="old").step(1, 0, 10).kernel(0, 5).write(tmp_path / "old.json"))
    assert t.meta.top_level == "array"
    assert set(t.cats.names) == {"operator", "kernel"}
    assert t.label(int(t.tid[1])) == "stream 7"
    assert int(t.tid[0]) == 4243  # numeric string thread ids become integers


def test_gzip_is_recognised_by_magic_bytes_not_suffix(tmp_path: Path) -> None:
    p = _trace().write(tmp_path / "looks_plain.json", compress=True)
    q = _trace().write(tmp_path / "looks_gzipped.json.gz", compress=False)
    assert load_trace(p).meta.format == "json.gz"
    assert load_trace(q).meta.format == "json"
    assert len(load_trace(p)) == len(load_trace(q))
    assert not load_trace(p).stats.truncated


def test_concatenated_gzip_members_read_as_one_stream(tmp_path: Path) -> None:
    text = _trace().text().encode()
    half = len(text) // 2
    p = _write(tmp_path / "multi.json.gz", gzip.compress(text[:half]) + gzip.compress(text[half:]))
    t = load_trace(p)
    assert len(t) == len(_trace().events) and not t.stats.truncated


@pytest.mark.parametrize("indent", [None, 1, 4])
def test_many_small_chunks_decode_the_same_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indent: int | None) -> None:
    b = _trace(steps=100)
    b.op("weird },{ name }, {", 5, 1)  # a boundary look-alike inside a string
    starved_loop(b, steps=100)
    b.op("weird },{ name }, {", 5, 1)  # ... and in the very last event
    path = b.write(tmp_path / "t.json", indent=indent)
    whole = load_trace(path)
    monkeypatch.setattr(load.limits, "CHUNK_TARGET", 700)
    monkeypatch.setattr(load.limits, "READ_BLOCK", 333)
    chunked = load_trace(path)
    parallel = load_trace(path, jobs=2)
    assert parallel.ts_ns.tolist() == whole.ts_ns.tolist()
    assert parallel.names.names == chunked.names.names
    gz = b.write(tmp_path / "t.json.gz", indent=indent, compress=True)
    spooled = load_trace(gz, jobs=2)
    assert spooled.ts_ns.tolist() == whole.ts_ns.tolist()
    assert spooled.stats.events_total == whole.stats.events_total and not spooled.stats.truncated
    assert len(chunked) == len(whole) == len(b.events)
    assert chunked.ts_ns.tolist() == whole.ts_ns.tolist()
    assert "weird },{ name }, {" in chunked.names.names
    assert chunked.stats.skipped_malformed == 0


def test_malformed_events_are_skipped_and_counted(tmp_path: Path) -> None:
    text = _trace(steps=3).text()
    bad = text.replace('"dur": 30000', '"dur": N/A', 1).replace('"name": "ProfilerStep#2"', '"name": 12', 1)
    t = load_trace(_write(tmp_path / "bad.json", bad))
    assert t.stats.skipped_malformed == 2
    assert len(t) == len(_trace(steps=3).events) - 2


def test_truncated_file_keeps_complete_events_and_says_so(tmp_path: Path) -> None:
    text = _trace(steps=50).text()
    cut = text[: int(len(text) * 0.6)]
    t = load_trace(_write(tmp_path / "cut.json", cut))
    assert t.stats.truncated
    assert 0 < len(t) < len(_trace(steps=50).events)
    gz = tmp_path / "cut.json.gz"
    data = gzip.compress(text.encode())
    gz.write_bytes(data[: int(len(data) * 0.6)])
    tg = load_trace(gz)
    assert tg.stats.truncated and len(tg) > 0
    tp = load_trace(gz, jobs=2)
    assert tp.stats.truncated and len(tp) == len(tg)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"   \n", "only whitespace"),
        (b"hello world", "not JSON"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML page"),
        (b'{"foo": 1, "bar": [1, 2]}', "not a Chrome trace"),
        (b"\x1f\x8b\x08\x00garbage-garbage", "gzip"),
        (b'{"traceEvents": [{"ph": "X", "na', "first complete event"),
    ],
)
def test_bad_inputs_raise_one_clear_error_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    p = _write(tmp_path / "x.json", content)
    with pytest.raises(BadInputError) as info:
        load_trace(p)
    assert str(p) in str(info.value)
    assert problem in str(info.value)


def test_missing_file_is_a_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such file"):
        load_trace(tmp_path / "nope.json")


def test_trace_events_key_inside_a_string_before_the_array_is_not_mistaken(tmp_path: Path) -> None:
    doc = {"note": 'a "traceEvents": [ lookalike', "traceEvents": [{"ph": "X", "name": "a", "ts": 1, "dur": 2}]}
    t = load_trace(_write(tmp_path / "t.json", json.dumps(doc)))
    assert len(t) == 1 and t.names.names == ("a",)


def test_empty_event_array_loads_as_an_empty_trace(tmp_path: Path) -> None:
    t = load_trace(_write(tmp_path / "t.json", b'{"schemaVersion": 1, "traceEvents": []}'))
    assert len(t) == 0 and not t.stats.truncated
