"""Traces where they are stored: URL listing, ranks from headers, spooling (fsspec, no network)."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens.errors import BadInputError

fsspec = pytest.importorskip("fsspec")

from tracelens.ranks.plan import plan  # noqa: E402
from tracelens.ranks.store import (  # noqa: E402
    is_url,
    list_tree,
    local_copies,
    peek_rank,
    rank_in_header,
    read_header,
    spool,
)


def _memory_dir() -> str:
    """A fresh directory of fsspec's in-memory filesystem (a 'remote' store that needs spooling)."""
    return f"memory://tracelens-test-{uuid.uuid4().hex}"


def _put(url: str, data: bytes) -> str:
    with fsspec.open(url, "wb") as f:
        f.write(data)
    return url


@pytest.mark.parametrize(("location", "expected"), [
    ("s3://bucket/job/", True), ("gs://b/k.json", True), ("https://h/x/", True), ("file:///tmp/x", True),
    ("/tmp/x", False), ("runs/rank0.json", False), ("C:\\traces\\x.json", False), (Path("/tmp/x"), False),
])
def test_urls_are_told_from_paths(location: str | Path, expected: bool) -> None:
    assert is_url(location) is expected


def test_rank_comes_from_distributed_info_in_the_header_only() -> None:
    text = TraceBuilder(rank=5).text().encode()
    assert rank_in_header(text) == 5
    assert rank_in_header(TraceBuilder().text().encode()) is None
    events_first = b'{"traceEvents": [], "distributedInfo": {"rank": 3}}'
    assert rank_in_header(events_first) is None
    assert rank_in_header(b'{"distributedInfo": {"rank": true}, "traceEvents": []}') is None
    assert rank_in_header(b'{"distributedInfo": {"rank": 7, "world_size": 8') is None  # cut: not decodable


def test_header_reads_stop_at_the_events_and_see_through_gzip(tmp_path: Path) -> None:
    b = starved_loop(TraceBuilder(rank=2), steps=400)
    plain = b.write(tmp_path / "a.json")
    packed = b.write(tmp_path / "b.json.gz", compress=True)
    head = read_header(plain.as_uri())
    assert head.endswith(b'"traceEvents":') and len(head) < plain.stat().st_size
    assert read_header(packed.as_uri()) == head
    assert peek_rank(packed.as_uri()) == 2
    assert peek_rank((tmp_path / "missing.json").as_uri()) is None


def _as_paths(jobs: tuple[object, ...]) -> list[tuple[object, ...]]:
    """Jobs with ``file://`` locations written as paths."""
    def path(loc: str | None) -> str | None:
        return loc.removeprefix("file://") if loc is not None else None
    return [(j.rank, tuple(map(path, j.paths)), path(j.run_json)) for j in jobs]  # type: ignore[attr-defined]


def test_a_directory_url_lists_the_same_files_as_the_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("rank0.json", "sub/rank1.json.gz", "run.json", "analysis.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    by_url, by_path = list_tree(tmp_path.as_uri() + "/"), list_tree(tmp_path)
    assert not by_url.is_file and by_url.names == by_path.names
    assert by_path.names == ("analysis.json", "notes.txt", "rank0.json", "run.json", "sub/rank1.json.gz")
    assert [u.removeprefix("file://") for u in by_url.locations] == list(by_path.locations)
    assert list_tree((tmp_path / "rank0.json").as_uri()).is_file


def test_a_directory_url_plans_the_same_trace_files_as_the_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("rank0.json", "sub/rank1.json.gz", "run.json", "analysis.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert _as_paths(plan(tmp_path.as_uri() + "/").jobs) == _as_paths(plan(tmp_path).jobs) == \
        [(0, (str(tmp_path / "rank0.json"),), None), (1, (str(tmp_path / "sub/rank1.json.gz"),), None)]
    (tmp_path / "w.pt.trace.json").write_text("{}")  # Kineto's names win, as for a path
    assert [j.paths for j in plan(tmp_path.as_uri()).jobs] == [((tmp_path / "w.pt.trace.json").as_uri(),)]


@pytest.mark.parametrize("case", ["declared", "named", "ordered"])
def test_ranks_of_urls_follow_the_rule_for_paths(tmp_path: Path, case: str) -> None:
    for i, r in enumerate((3, 0, 11)):
        b = starved_loop(TraceBuilder(rank=r if case == "declared" else None), steps=2)
        b.write(tmp_path / (f"worker{r}.json" if case == "named" else f"t{i}.json"))
    by_url, by_path = plan(tmp_path.as_uri()), plan(tmp_path)
    assert _as_paths(by_url.jobs) == _as_paths(by_path.jobs)
    assert [j.rank for j in by_path.jobs] == ([0, 1, 2] if case == "ordered" else [0, 3, 11])


def test_a_run_directory_url_is_one_run() -> None:
    d = _memory_dir()
    _put(f"{d}/run.json", b"{}")
    _put(f"{d}/trace.json.gz", gzip.compress(b"{}"))
    (job,) = plan(d + "/").jobs
    assert [u.rsplit("/", 1)[1] for u in (*job.paths, job.run_json or "")] == ["trace.json.gz", "run.json"]


def test_a_missing_or_unknown_location_is_a_bad_input() -> None:
    with pytest.raises(BadInputError, match="no such file"):
        list_tree(_memory_dir() + "/nothing/")
    with pytest.raises(BadInputError, match="nosuchproto"):
        list_tree("nosuchproto://x/y.json")


def test_spooling_copies_the_file_in_blocks_and_removes_the_copy_after(tmp_path: Path) -> None:
    data = json.dumps(TraceBuilder(rank=1).document()).encode() * 3
    url = _put(f"{_memory_dir()}/rank1.json", data)
    local, n = spool(url, tmp_path, block=1000)
    assert n == len(data) and local.read_bytes() == data and local.parent == tmp_path
    local.unlink()
    with local_copies((url, str(tmp_path / "x.json")), tmp_path) as (paths, nbytes):
        assert paths[0].read_bytes() == data and paths[1] == tmp_path / "x.json"
        assert nbytes == len(data)
    assert not paths[0].exists()


def test_a_failed_spool_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spool(f"{_memory_dir()}/gone.json", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_local_urls_are_read_in_place(tmp_path: Path) -> None:
    p = starved_loop(TraceBuilder(), steps=2).write(tmp_path / "t.json")
    with local_copies((p.as_uri(),), tmp_path / "never") as (paths, nbytes):
        assert paths == [p] and nbytes == p.stat().st_size


def test_reading_many_headers_holds_no_buffers_afterwards(tmp_path: Path) -> None:
    import gc
    import tracemalloc

    # GIVEN a gzip trace of ~6 MB of JSON (each header read decompresses into a buffer)
    events = [{"ph": "X", "name": f"op{i}", "ts": i, "dur": 1, "pid": 1, "tid": 1, "args": {"pad": "x" * 40}}
              for i in range(60_000)]
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"distributedInfo": {"rank": 3}, "traceEvents": events}).encode()))
    # WHEN its rank is read from its header 20 times with the cyclic GC off (as between collections)
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(20):
            assert peek_rank(str(path)) == 3
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    # THEN no read left its window behind (a directory of 256 ranks once held 550 MB this way)
    assert held < 2 << 20
