"""Thousands of ranks made readable: the spread across ranks and the downsampled wait matrix."""

from __future__ import annotations

import json
import time

import pytest

from tests.builders import make_document
from tests.conftest import SHARED_TRACES
from tracelens.document.distribution import (
    RankSummary,
    Spread,
    exposed_wait_matrix,
    rank_distribution,
    rank_documents,
    spread,
)
from tracelens.document.schema import Document, JobDocument, JobSource


def rank_doc(rank: int, exposed_ms: dict[int, float], *, data_wait: float | None = None,
             exposed: float | None = None, path: str | None = None) -> Document:
    """A rank object with its metrics and per-step exposed wait (ms) by step number."""
    return make_document(
        rank=rank,
        source={"path": path or f"s3://b/job/rank{rank}.pt.trace.json"},
        metrics={"data_wait_fraction": data_wait, "exposed_data_wait_fraction": exposed, "step_time_ms_median": 100.0},
        per_step=[{"step": s, "exposed_wait_ms": v} for s, v in exposed_ms.items()],
    )


def test_spread_is_median_p90_and_max_of_the_ranks_that_have_a_value() -> None:
    assert spread([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, None]) == Spread(0.5, 0.9, 1.0, 11)
    assert spread([0.2, 0.4]) == Spread(0.3, 0.38, 0.4, 2)
    assert spread([None]) == Spread(None, None, None, 0)


def test_distribution_names_the_worst_ranks_first() -> None:
    docs = [rank_doc(r, {}, data_wait=0.1 * r, exposed=0.05 * r) for r in range(8)]
    docs.append(rank_doc(8, {}, path="/x/host.1.pt.trace.json + /x/host.2.pt.trace.json"))  # no numbers
    dist = rank_distribution(docs, worst=3)
    assert dist.ranks == 9
    assert dist.exposed_wait == Spread(0.175, 0.315, 0.35, 8)
    assert dist.data_wait.max == pytest.approx(0.7)
    assert [w.rank for w in dist.worst] == [7, 6, 5]
    assert dist.worst[0] == RankSummary(7, "rank7.pt.trace.json", pytest.approx(0.7), pytest.approx(0.35), 100.0)
    assert rank_distribution(docs, worst=20).worst[-1].name == "host.1.pt.trace.json +1"


def test_small_jobs_keep_one_cell_per_rank_and_step() -> None:
    docs = [rank_doc(1, {10: 3.0, 11: 5.0}), rank_doc(0, {10: 1.0, 12: 2.0})]
    m = exposed_wait_matrix(docs)
    assert m.rank_buckets == ((0, 0), (1, 1)) and m.step_buckets == ((10, 10), (11, 11), (12, 12))
    assert m.mean_ms == ((1.0, None, 2.0), (3.0, 5.0, None))
    assert m.max_ms == m.mean_ms
    assert m.worst_rank == (0, 1)


def test_buckets_hold_the_mean_and_the_peak_of_their_cells() -> None:
    # 4 ranks x 4 steps into 2 x 2: rank 1 stalls once in step 3.
    docs = [rank_doc(r, {0: 1.0, 1: 1.0, 2: 1.0, 3: 9.0 if r == 1 else 1.0}) for r in range(4)]
    m = exposed_wait_matrix(docs, max_rows=2, max_cols=2)
    assert m.rank_buckets == ((0, 1), (2, 3)) and m.step_buckets == ((0, 1), (2, 3))
    assert m.mean_ms == ((1.0, 3.0), (1.0, 1.0))
    assert m.max_ms == ((1.0, 9.0), (1.0, 1.0))
    assert m.worst_rank == (1, 2)


def test_4096_ranks_stay_a_small_matrix_quickly() -> None:
    docs = [rank_doc(r, {s: float((r * 7 + s) % 13) for s in range(200)}) for r in range(4096)]
    t0 = time.perf_counter()
    m = exposed_wait_matrix(docs)
    elapsed = time.perf_counter() - t0
    assert len(m.mean_ms) == 64 and {len(row) for row in m.mean_ms} == {50}
    assert m.rank_buckets[0] == (0, 63) and m.rank_buckets[-1] == (4032, 4095)
    assert m.step_buckets[0] == (0, 3) and m.step_buckets[-1] == (196, 199)
    assert all(v == 12.0 for row in m.max_ms for v in row)
    assert len(json.dumps([m.mean_ms, m.max_ms])) < 60_000
    assert elapsed < 10


def test_a_single_rank_document_is_its_own_rank() -> None:
    single = rank_doc(0, {1: 1.0})
    assert rank_documents(single) == [single]
    job = JobDocument(schema_version=1, source=JobSource(path="job"), ranks=[single, single], slowest_rank=0,
                      diagnosis="healthy", recommendation=single.recommendation, findings=[])
    assert rank_documents(job) == [single, single]


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="../shared/traces is not present")
def test_real_ranks_give_the_slowest_rank_as_the_worst() -> None:
    from tracelens.api import analyze_path

    doc = analyze_path(SHARED_TRACES / "param/train/compute/python/test/data/dlrm_kineto").document
    dist = rank_distribution(rank_documents(doc))
    assert isinstance(doc, JobDocument)
    assert dist.ranks == 8 and dist.worst[0].rank == doc.slowest_rank
    assert dist.exposed_wait.max == doc.slowest_rank_exposed_data_wait_fraction
    m = exposed_wait_matrix(rank_documents(doc))
    assert [b[0] for b in m.rank_buckets] == list(range(8))
