"""Several ranks: the rank whose loader holds the others at the collectives is named, with the
wait it causes; ranks that only wait at collectives are not blamed."""

from __future__ import annotations

from typing import Any

import pytest

from tracelens.diagnosis.ranks import RankTimes, find_straggler
from tracelens.vocab import Severity


def metrics(wait_ms: float, collective_ms: float | None, step_ms: float = 100.0) -> dict[str, Any]:
    return {"step_time_ms_total": step_ms * 10, "measured_steps": 10, "exposed_data_wait_fraction": wait_ms / step_ms,
            "collective_ms_per_step": collective_ms}


def rank(r: int, wait_ms: float, collective_ms: float | None, step_ms: float = 100.0) -> RankTimes:
    m = metrics(wait_ms, collective_ms, step_ms)
    t = RankTimes.measured(r, m["step_time_ms_total"], m["measured_steps"], m["exposed_data_wait_fraction"],
                           m["collective_ms_per_step"])
    assert t is not None
    return t


def test_a_rank_waiting_for_data_while_the_others_wait_at_the_collective_is_the_straggler() -> None:
    # GIVEN rank 2 waits 30 ms per step for data, the others 2 ms; the others spend 33 ms per
    # step in the all-reduce, rank 2 (arriving last) 5 ms
    docs = [rank(0, 2, 33), rank(1, 2, 34), rank(2, 30, 5), rank(3, 3, 32)]
    found = find_straggler(docs)
    assert found is not None and found.rank == 2
    f = found.finding
    assert f.kind == "rank_straggler" and f.evidence["rank"] == 2
    assert f.evidence["data_wait_ms_per_step"] == pytest.approx(30)
    assert f.evidence["collective_wait_caused_ms_per_step"] == pytest.approx(28)
    assert f.severity is Severity.HIGH and f.evidence["job_speedup_ceiling"] == pytest.approx(1 / (1 - 0.28), abs=1e-4)
    # the others spend 27-29 ms more per step at the collective than rank 2: more than their own
    # 2-3 ms data wait, so each is marked as waiting for rank 2
    assert sorted(found.waiting) == [0, 1, 3]
    assert all(w.severity is Severity.INFO and w.evidence["waits_for_rank"] == 2 for w in found.waiting.values())


def test_a_rank_without_measured_steps_takes_no_part() -> None:
    assert RankTimes.measured(0, None, 0, 0.1, 5.0) is None
    assert RankTimes.measured(0, 100.0, 10, None, 5.0) is None


def test_even_ranks_have_no_straggler() -> None:
    assert find_straggler([rank(0, 10, 20), rank(1, 11, 19), rank(2, 10, 21)]) is None


def test_a_slow_loader_the_others_do_not_wait_for_is_not_a_straggler() -> None:
    # rank 1 waits for data, but the others' collectives are as short as its own: compute imbalance elsewhere
    assert find_straggler([rank(0, 2, 5), rank(1, 30, 5), rank(2, 2, 6)]) is None


def test_without_collectives_in_the_traces_nothing_is_claimed() -> None:
    assert find_straggler([rank(0, 2, None), rank(1, 30, None)]) is None


def test_the_multi_rank_document_speaks_for_the_job() -> None:
    from tests.builders import make_document
    from tracelens.document.build import build_multirank_document

    docs = [make_document(rank=r, metrics={**metrics(wait, coll), "step_time_ms_median": 100.0},
                          diagnosis="healthy" if r == 0 else "io_bound", findings=[],
                          recommendation={"num_workers": 8, "notes": []})
            for r, wait, coll in ((0, 2, 33), (1, 30, 5))]
    job = build_multirank_document(docs, "job/")
    assert job.slowest_rank == 1 and job.diagnosis == "io_bound" and job.rank_straggler == 1
    assert job.findings[0].kind == "rank_straggler" and job.recommendation.num_workers == 8
    assert job.recommendation.notes[0].startswith("From rank 1, the slowest")
    # rank 0 only waits for rank 1 at the collectives: marked so, with an info finding of its own
    assert job.ranks[0].waits_for_rank == 1 and job.ranks[0].findings[-1].severity == "info"
    assert job.ranks[1].waits_for_rank is None and job.failed_ranks == []
