"""The one planner: a path or a URL becomes rank jobs by the same rules (run directories at any
depth with their run.json, loose traces grouped by rank, the rank from run.json, header, name or
order), and the one engine runs them into the one result type."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, job_of, starved_loop, without_paths
from tests.conftest import REPO
from tracelens.api import analyze_path
from tracelens.document.result import Result
from tracelens.ranks.plan import RankJob, plan, ranks_of

JOB = REPO / "sample_traces" / "ddp_torchrun"


def _run_dir(d: Path, rank: int | None, trace_rank: int | None = None) -> Path:
    """A run directory: a trace (declaring ``trace_rank``) beside a run.json (with ``RANK``)."""
    d.mkdir(parents=True)
    starved_loop(TraceBuilder(rank=trace_rank), steps=2).write(d / "trace.json.gz", compress=True)
    (d / "run.json").write_text(json.dumps({"schema_version": 1, "machine": {"rank": rank}}))
    return d


def _paths(p: Path | str) -> list[tuple[int | None, tuple[str, ...], str | None]]:
    """A plan's jobs with ``file://`` URLs written as paths."""
    def path(loc: str | None) -> str | None:
        return loc.removeprefix("file://") if loc is not None else None
    return [(j.rank, tuple(map(path, j.paths)), path(j.run_json)) for j in plan(p).jobs]


def test_a_job_directory_by_file_url_keeps_each_ranks_run_json() -> None:
    # GIVEN the job directory `tracelens profile -- torchrun` wrote (rank-<N>/ run directories)
    # WHEN it is planned by path and by file:// URL THEN both find each rank's run.json
    jobs = _paths(JOB.as_uri())
    assert jobs == _paths(JOB) == [(r, (str(JOB / f"rank-{r}/trace.json.gz"),), str(JOB / f"rank-{r}/run.json"))
                                   for r in (0, 1)]


def test_a_job_directory_gives_the_same_document_by_path_and_by_file_url() -> None:
    by_path, by_url = analyze_path(JOB), analyze_path(JOB.as_uri())
    assert without_paths(by_url.document) == without_paths(by_path.document)
    # the drift this fixes: without its run.json a rank could only be input_bound (TL104)
    assert [r.diagnosis for r in job_of(by_url.document).ranks] == ["io_bound", "io_bound"]
    assert job_of(by_url.document).ranks[1].source.path == (JOB / "rank-1" / "trace.json.gz").as_uri()
    assert [r.run is not None for r in by_url.ranks] == [True, True]


def test_run_directories_at_any_depth_are_ranks_by_path_and_by_url(tmp_path: Path) -> None:
    _run_dir(tmp_path / "node-a" / "rank-3", 3)
    _run_dir(tmp_path / "node-b" / "rank-1", 1)
    assert _paths(tmp_path.as_uri()) == _paths(tmp_path) == [
        (1, (str(tmp_path / "node-b/rank-1/trace.json.gz"),), str(tmp_path / "node-b/rank-1/run.json")),
        (3, (str(tmp_path / "node-a/rank-3/trace.json.gz"),), str(tmp_path / "node-a/rank-3/run.json")),
    ]


def test_a_run_directorys_rank_is_its_run_json_then_its_header_then_its_name(tmp_path: Path) -> None:
    _run_dir(tmp_path / "rank-9", 2)  # run.json wins over the name
    _run_dir(tmp_path / "rank-8", None, trace_rank=5)  # then the trace's header
    _run_dir(tmp_path / "rank-7", None)  # then the name
    assert [(j.rank, Path(j.paths[0]).parent.name) for j in plan(tmp_path).jobs] == \
        [(2, "rank-9"), (5, "rank-8"), (7, "rank-7")]


def test_names_give_ranks_only_when_every_name_has_a_different_number() -> None:
    assert ranks_of(["a/rank3.json", "rank1.json"], [None, None]) == [3, 1]
    assert ranks_of(["rank3.json", "other.json"], [None, None]) == [0, 1]  # one has no number: order
    assert ranks_of(["rank3.json", "x/rank3.json"], [None, None]) == [0, 1]  # all the same: order
    assert ranks_of(["rank3.json", "rank1.json"], [7, None]) == [7, 1]  # a declared rank wins


def test_a_loose_trace_whose_rank_a_run_directory_has_takes_the_next_free_rank(tmp_path: Path) -> None:
    _run_dir(tmp_path / "rank-0", 0)
    (tmp_path / "extra").mkdir()
    starved_loop(TraceBuilder(rank=0), steps=2).write(tmp_path / "extra" / "host.pt.trace.json")
    assert [(j.rank, j.run_json is not None) for j in plan(tmp_path).jobs] == [(0, True), (1, False)]


def test_a_trace_inside_a_run_directory_is_not_a_rank_of_its_own(tmp_path: Path) -> None:
    d = _run_dir(tmp_path / "rank-0", 0)
    _run_dir(tmp_path / "rank-1", 1)
    shutil.copy(d / "trace.json.gz", d / "copy.json.gz")
    assert [j.rank for j in plan(tmp_path).jobs] == [0, 1]


def test_one_run_directory_in_a_directory_is_a_single_run(tmp_path: Path) -> None:
    d = _run_dir(tmp_path / "only", 4)
    p = plan(tmp_path)
    assert not p.multi_rank and p.jobs == (RankJob(None, (str(d / "trace.json.gz"),), str(d / "run.json")),)


def test_a_bad_run_json_is_that_ranks_error_and_the_others_are_analyzed(tmp_path: Path) -> None:
    # GIVEN two ranks, one with a run.json that is not JSON
    _run_dir(tmp_path / "rank-0", 0)
    (_run_dir(tmp_path / "rank-1", 1) / "run.json").write_text("{not json")
    # WHEN analyzed THEN rank 0 is analyzed and rank 1 is its one-line error
    result = analyze_path(tmp_path)
    assert [r.rank for r in job_of(result.document).ranks] == [0]
    (failed,) = job_of(result.document).failed_ranks
    assert failed.rank == 1 and failed.error.startswith(f"{tmp_path / 'rank-1' / 'run.json'}: ")
    assert [o.rank for o in result.failed] == [1]


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_local_route_returns_one_result_with_the_full_analyses(tmp_path: Path, jobs: int) -> None:
    for r in range(3):
        starved_loop(TraceBuilder(rank=r), steps=3, wait_us=10_000 * (r + 1)).write(tmp_path / f"rank{r}.json")
    for location in (tmp_path, tmp_path.as_uri()):
        result = analyze_path(location, jobs=jobs)
        assert type(result) is Result and [r.rank for r in result.ranks] == [0, 1, 2]
        slowest = result.slowest
        assert slowest is not None and slowest.rank == job_of(result.document).slowest_rank == 2
        assert len(slowest.analysis.per_step) == 3 and [o.ok for o in result.outcomes] == [True] * 3
    single = analyze_path(tmp_path / "rank1.json")
    assert not single.is_multi_rank and single.slowest is single.ranks[0] and len(single.outcomes) == 1


def test_the_cycles_one_process_wrote_are_one_rank_not_several(tmp_path: Path) -> None:
    # GIVEN a TensorBoard logdir: two profiler cycles of one process, one cycle of another
    for name in ("host_101.1700000000000.pt.trace.json", "host_101.1700000009000.pt.trace.json",
                 "host_202.1700000001000.pt.trace.json"):
        (tmp_path / name).write_text("[]")
    jobs = plan(tmp_path).jobs
    # THEN each process is one rank holding its cycles in order
    assert [(j.rank, [Path(p).name for p in j.paths]) for j in jobs] == [
        (0, ["host_101.1700000000000.pt.trace.json", "host_101.1700000009000.pt.trace.json"]),
        (1, ["host_202.1700000001000.pt.trace.json"])]
    assert ranks_of(["a/x.1.pt.trace.json", "a/x.2.pt.trace.json"], [None, None]) == [0, 0]
