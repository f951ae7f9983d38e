"""Rank jobs without a cluster: planning, per-rank errors, URL input in local processes, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from msgspec import UNSET
from msgspec.structs import replace

from tests.builders import TraceBuilder, job_of, make_document, starved_loop, without_paths
from tracelens.api import analyze_path
from tracelens.cli.output import failure_lines
from tracelens.document.result import RankOutcome, Result
from tracelens.document.schema import FailedRank, JobDocument, JobSource
from tracelens.errors import TracelensError
from tracelens.ranks.engine import assemble, run_locally, run_rank_job
from tracelens.ranks.plan import Plan, RankJob, plan


def _ranks(d: Path, n: int = 3) -> Path:
    for r in range(n):
        starved_loop(TraceBuilder(rank=r), steps=3, wait_us=10_000 * (r + 1)).write(d / f"rank{r}.json")
    return d


def test_a_directory_plans_one_job_per_rank_like_analyze_path(tmp_path: Path) -> None:
    p = plan(_ranks(tmp_path))
    assert p.multi_rank and [j.rank for j in p.jobs] == [0, 1, 2]
    assert p.jobs[1].paths == (str(tmp_path / "rank1.json"),)
    single = plan(tmp_path / "rank2.json")
    assert not single.multi_rank and single.jobs == (RankJob(None, (str(tmp_path / "rank2.json"),)),)


def test_one_rank_in_several_files_is_one_job(tmp_path: Path) -> None:
    for w in (1, 2):
        starved_loop(TraceBuilder(rank=4), steps=2).write(tmp_path / f"host.{w}.pt.trace.json")
    p = plan(tmp_path)
    assert not p.multi_rank and len(p.jobs) == 1 and p.jobs[0].rank == 4 and len(p.jobs[0].paths) == 2


def test_a_job_gives_the_same_document_as_the_local_analysis(tmp_path: Path) -> None:
    _ranks(tmp_path)
    outcome = run_rank_job(plan(tmp_path).jobs[2])
    assert outcome.ok and outcome.error is None and outcome.bytes_read == (tmp_path / "rank2.json").stat().st_size
    assert outcome.document == job_of(analyze_path(tmp_path).document).ranks[2]


def test_a_bad_or_missing_rank_file_is_that_ranks_error_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    bad = run_rank_job(RankJob(3, (str(tmp_path / "bad.json"),)))
    missing = run_rank_job(RankJob(4, (str(tmp_path / "gone.json"),)))
    assert not bad.ok and bad.error is not None and bad.error.startswith(f"{tmp_path / 'bad.json'}: ")
    assert not missing.ok and missing.error is not None and str(tmp_path / "gone.json") in missing.error
    assert "\n" not in bad.error + missing.error


def test_failed_ranks_are_listed_and_the_others_kept(tmp_path: Path) -> None:
    _ranks(tmp_path)
    (tmp_path / "rank1.json").write_text("{not json")
    p = plan(tmp_path)
    outcomes = run_locally(p.jobs, workers=1)
    doc = job_of(assemble(p, outcomes).document)
    assert [r.rank for r in doc.ranks] == [0, 2]
    assert [(f.rank, f.paths) for f in doc.failed_ranks] == [(1, [str(tmp_path / "rank1.json")])]
    assert failure_lines(doc)[-1] == "1 of 3 ranks failed; the results above are for the other 2"


def test_when_every_rank_fails_there_is_no_document(tmp_path: Path) -> None:
    p = Plan(str(tmp_path), (RankJob(0, ("a",)), RankJob(1, ("b",))), True)
    failed = [RankOutcome(0, ("a",), None, "a: gone"), RankOutcome(1, ("b",), None, "b: gone")]
    with pytest.raises(TracelensError, match="all 2 ranks failed; rank 0: a: gone"):
        assemble(p, failed)
    with pytest.raises(TracelensError, match=r"^a: gone$"):
        assemble(Plan("a", (RankJob(None, ("a",)),), False), failed[:1])


def test_failure_lines_name_the_first_ranks_and_count_the_rest() -> None:
    rank = make_document(rank=0)
    failed = [FailedRank(rank=r, paths=[], error=f"f{r}: gone") for r in range(50)]
    doc = JobDocument(schema_version=1, source=JobSource(path="job"), ranks=[rank] * 10, slowest_rank=0,
                      diagnosis=rank.diagnosis, recommendation=rank.recommendation, findings=[], failed_ranks_=failed)
    lines = failure_lines(doc, limit=3)
    assert lines == ["rank 0: f0: gone", "rank 1: f1: gone", "rank 2: f2: gone",
                     "... and 47 more (failed_ranks in --json)", "50 of 60 ranks failed; the results above are for the other 10"]
    assert failure_lines(replace(doc, failed_ranks_=UNSET)) == [] and failure_lines(rank) == []


def test_a_file_url_gives_the_local_documents_with_url_paths(tmp_path: Path) -> None:
    _ranks(tmp_path)
    seen: list[tuple[int, int, int]] = []
    by_url = analyze_path(tmp_path.as_uri() + "/", on_ranks=lambda *a: seen.append(a))
    assert isinstance(by_url, Result) and by_url.is_multi_rank and not by_url.failed
    assert by_url.document.source.path == tmp_path.as_uri() + "/"
    assert job_of(by_url.document).ranks[0].source.path == (tmp_path / "rank0.json").as_uri()
    assert without_paths(by_url.document) == without_paths(analyze_path(tmp_path).document)
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[-1][2] == sum(f.stat().st_size for f in tmp_path.glob("*.json"))


def test_a_remote_url_is_spooled_and_named_by_its_url(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    _ranks(tmp_path)
    remote = f"memory://tracelens-{uuid.uuid4().hex}"
    for f in tmp_path.glob("*.json"):
        fsspec.filesystem("memory").pipe(f"{remote}/{f.name}", f.read_bytes())
    by_url = analyze_path(remote + "/", jobs=1)  # in this process: the memory store is not shared
    assert job_of(by_url.document).ranks[1].source.path.endswith("/rank1.json")
    assert job_of(by_url.document).ranks[1].source.path.startswith("memory://")
    assert without_paths(by_url.document) == without_paths(analyze_path(tmp_path).document)


def test_cli_prints_the_good_ranks_and_exits_1_naming_the_failed_one(tmp_path: Path) -> None:
    _ranks(tmp_path)
    (tmp_path / "rank1.json").write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "tracelens", "analyze", "--json", tmp_path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert [r["rank"] for r in json.loads(out.stdout)["ranks"]] == [0, 2]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"tracelens: error: rank 1: {(tmp_path / 'rank1.json').as_uri()}: ")
    assert "Traceback" not in out.stderr
