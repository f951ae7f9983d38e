"""run.json reduced to the rules' facts: the batch times the worker capacity is taken from."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tracelens.diagnosis.facts import run_facts
from tracelens.runjson import decode_run_info


def _run(pids: list[int], starts: list[float], durs: list[float], window: tuple[float, float]) -> dict[str, Any]:
    """A run.json of one 2-worker loader whose workers made the batches given (µs)."""
    return {
        "schema_version": 1,
        "window": {"captured": True, "steps": 4, "start_us": window[0], "end_us": window[1]},
        "loaders": [{"id": 0, "num_workers": 2, "batch_size": 32, "persistent_workers": False}],
        "worker_batches": {"loader_id": [0] * len(pids), "worker_id": [p % 2 for p in pids], "pid": pids,
                           "start_us": starts, "dur_us": durs, "cpu_us": [d / 4 for d in durs]},
    }


def test_each_fresh_workers_first_batch_is_left_out_of_the_batch_times() -> None:
    # GIVEN workers respawned every epoch (short_epoch_respawn beside a neighbour per core): each
    # process's first batch pays its start-up (130 ms), its second takes 1 ms
    doc = _run([1, 1, 2, 2, 3, 3, 4, 4], [0, 200, 10, 210, 1000, 1200, 1010, 1210],
               [130_000.0, 1000.0, 140_000.0, 1000.0, 120_000.0, 1000.0, 150_000.0, 1000.0], (0.0, 2e6))
    f = run_facts(decode_run_info(json.dumps(doc).encode()))
    # THEN T_b is the steady 1 ms, not the midpoint between start-up and steady batches
    assert f is not None and f.batch_ms == (1.0,) * 4 and f.batch_cpu_ms == (0.25,) * 4
    assert float(np.median(f.batch_ms)) == pytest.approx(1.0)


def test_a_worker_started_before_the_window_or_with_one_batch_keeps_its_batches() -> None:
    # GIVEN a persistent worker whose first batch (50 ms) ended before the window, and a worker
    # whose only batch in the window is its first
    doc = _run([1, 1, 1, 2], [0, 100_000, 110_000, 105_000], [50_000.0, 2000.0, 3000.0, 4000.0],
               (90_000.0, 200_000.0))
    f = run_facts(decode_run_info(json.dumps(doc).encode()))
    # THEN nothing in the window is dropped: the start-up batch was outside it, and a process's
    # only batch is all there is to measure it by
    assert f is not None and sorted(f.batch_ms) == [2.0, 3.0, 4.0]
