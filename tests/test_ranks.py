"""Several ranks: the rank whose loader holds the others at the collectives is named, with the
wait it causes; ranks that only wait at collectives are not blamed."""

from __future__ import annotations

from typing import Any

import pytest

from tracelens.diagnosis.ranks import find_straggler


def rank(r: int, wait_ms: float, collective_ms: float | None, step_ms: float = 100.0) -> dict[str, Any]:
    return {"rank": r, "metrics": {"step_time_ms_total": step_ms * 10, "measured_steps": 10,
                                   "exposed_data_wait_fraction": wait_ms / step_ms,
                                   "collective_ms_per_step": collective_ms}}


def test_a_rank_waiting_for_data_while_the_others_wait_at_the_collective_is_the_straggler() -> None:
    # GIVEN rank 2 waits 30 ms per step for data, the others 2 ms; the others spend 33 ms per
    # step in the all-reduce, rank 2 (arriving last) 5 ms
    docs = [rank(0, 2, 33), rank(1, 2, 34), rank(2, 30, 5), rank(3, 3, 32)]
    f = find_straggler(docs)
    assert f is not None and f["kind"] == "rank_straggler" and f["evidence"]["rank"] == 2
    assert f["evidence"]["data_wait_ms_per_step"] == pytest.approx(30)
    assert f["evidence"]["collective_wait_caused_ms_per_step"] == pytest.approx(28)
    assert f["severity"] == "high" and f["evidence"]["job_speedup_ceiling"] == pytest.approx(1 / (1 - 0.28), abs=1e-4)


def test_even_ranks_have_no_straggler() -> None:
    assert find_straggler([rank(0, 10, 20), rank(1, 11, 19), rank(2, 10, 21)]) is None


def test_a_slow_loader_the_others_do_not_wait_for_is_not_a_straggler() -> None:
    # rank 1 waits for data, but the others' collectives are as short as its own: compute imbalance elsewhere
    assert find_straggler([rank(0, 2, 5), rank(1, 30, 5), rank(2, 2, 6)]) is None


def test_without_collectives_in_the_traces_nothing_is_claimed() -> None:
    assert find_straggler([rank(0, 2, None), rank(1, 30, None)]) is None


def test_the_multi_rank_document_speaks_for_the_job() -> None:
    from tracelens.document.build import build_multirank_document

    docs = [rank(0, 2, 33), rank(1, 30, 5)]
    for d in docs:
        d |= {"diagnosis": "healthy" if d["rank"] == 0 else "io_bound", "findings": [],
              "recommendation": {"num_workers": 8, "notes": []}}
        d["metrics"]["step_time_ms_median"] = 100.0
    job = build_multirank_document(docs, "job/")
    assert job["slowest_rank"] == 1 and job["diagnosis"] == "io_bound" and job["rank_straggler"] == 1
    assert job["findings"][0]["kind"] == "rank_straggler" and job["recommendation"]["num_workers"] == 8
    assert job["recommendation"]["notes"][0].startswith("From rank 1, the slowest")
