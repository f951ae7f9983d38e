"""The settings math: core budget, Little's law, wait shape, prefetch depth."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracelens.diagnosis import sizing as advice
from tracelens.diagnosis.thresholds import THRESHOLDS


def test_every_threshold_states_a_reason_and_unit() -> None:
    for t in THRESHOLDS.values():
        assert len(t.reason) > 40 and t.unit, t.name


@pytest.mark.parametrize(("cores", "ranks", "per_rank", "workers"), [
    (16, 1, 16, 16), (16, 4, 4, 4), (2, 1, 2, 2), (1, 1, 1, 1), (2.5, 1, 2.5, 2), (8, 8, 1, 1),
])
def test_core_budget_divides_among_ranks_into_whole_cores(
        cores: float, ranks: int, per_rank: float, workers: int) -> None:
    b = advice.core_budget(cores, ranks)
    assert b.cores_per_rank == pytest.approx(per_rank)
    assert b.worker_cores == workers
    assert "core budget" in b.describe()


@pytest.mark.parametrize(("t_b", "c", "expected"), [
    (50.0, 160.0, 2),   # 0.31 workers needed: 1, plus one of headroom
    (300.0, 70.0, 6),   # 4.29 -> 5, plus one
    (70.0, 70.0, 2),    # exactly 1 -> 1 + 1
    (1000.0, 10.0, 115),  # 100 -> 100 + 15 %
])
def test_littles_law_is_ceil_of_batch_over_compute_plus_headroom(t_b: float, c: float, expected: int) -> None:
    assert advice.littles_law_workers(t_b, c) == expected


def test_batch_time_from_a_drained_queue_is_n_times_the_step_period() -> None:
    # GIVEN 4 workers and a loop that computes 70 ms and then waits 30 ms for each batch
    # THEN each worker takes 4 x 100 ms per batch
    assert advice.batch_ms_from_drained_queue(4, 70.0, 30.0) == pytest.approx(400.0)


@given(st.floats(0.1, 1e4), st.floats(0.1, 1e4))
def test_littles_law_workers_always_cover_the_rate(t_b: float, c: float) -> None:
    n = advice.littles_law_workers(t_b, c)
    assert n >= 1 and n * c >= t_b - 1e-6


def test_latency_cap_is_the_process_limit_not_a_number_of_cores() -> None:
    assert advice.latency_worker_cap() == 32


def test_speedup_ceiling_matches_spec() -> None:
    assert advice.speedup_ceiling(0.2) == pytest.approx(1.25)
    assert math.isinf(advice.speedup_ceiling(1.0))


def test_wait_shape_sees_a_drained_queue_as_bimodal_with_its_period() -> None:
    # GIVEN every 4th call waits 40 ms, the others 0.2 ms
    waits = [40.0 if i % 4 == 3 else 0.2 for i in range(20)]
    s = advice.wait_shape(waits, compute_ms=50.0)
    assert s.is_bimodal and s.long_calls == 5 and s.period == pytest.approx(4.0)
    assert s.long_median_ms == pytest.approx(40.0)


def test_wait_shape_of_uniform_waits_is_not_bimodal() -> None:
    s = advice.wait_shape([30.0] * 10, compute_ms=70.0)
    assert not s.is_bimodal and s.long_calls == 0 and s.median_ms == pytest.approx(30.0)


def test_wait_shape_of_nothing() -> None:
    assert advice.wait_shape([], 10.0).calls == 0


def test_prefetch_covers_a_spike_spread_over_the_workers() -> None:
    # GIVEN a 200 ms gap, 50 ms per step, 2 workers: 4 batches more, 2 per worker
    assert advice.prefetch_for_spikes(2, 2, 200.0, 50.0) == 4
    # and it never exceeds the stated maximum
    assert advice.prefetch_for_spikes(2, 1, 10_000.0, 10.0) == int(THRESHOLDS["prefetch_factor_max"].value)
    assert advice.prefetch_for_spikes(3, 0, 100.0, 10.0) == 3
