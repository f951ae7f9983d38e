"""SPEC §2 metrics on hand-built traces whose numbers can be checked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import TraceBuilder, starved_loop
from tracelens import analyze_trace, load_trace


def _analyze(b: TraceBuilder, tmp_path: Path, name: str = "t.json"):  # type: ignore[no-untyped-def]
    return analyze_trace(load_trace(b.write(tmp_path / name)))


@pytest.mark.parametrize("dialect", ["new", "old"])
def test_starved_loop_gives_hand_checked_fractions(dialect: str, tmp_path: Path) -> None:
    # GIVEN 4 steps of 100 ms: 30 ms waiting for data, then a 0.1 ms copy and 69.8 ms of kernels
    b = starved_loop(TraceBuilder(dialect=dialect), steps=4)
    # WHEN analyzed
    a = _analyze(b, tmp_path)
    # THEN the wait is 30 %, all of it exposed, the GPU busy 69.9 %
    assert a.steps == 4 and a.step_source == "profiler_steps"
    assert a.step_time_ms_median == pytest.approx(100.0)
    assert a.data_wait_fraction == pytest.approx(0.30)
    assert a.exposed_data_wait_fraction == pytest.approx(0.30)
    assert a.gpu_busy_fraction == pytest.approx(0.699)
    assert a.speedup_ceiling == pytest.approx(1 / 0.7)
    assert a.iterator == "single_process"
    assert a.copies.h2d_pageable == 4 and a.copies.h2d_pinned == 0
    assert a.per_step["data_wait_ms"].tolist() == pytest.approx([30.0] * 4)
    assert a.per_step["next_calls"].tolist() == [1, 1, 1, 1]
    assert a.next_wait_ms == pytest.approx((30.0,) * 4)


def test_wait_overlapping_gpu_work_is_not_exposed(tmp_path: Path) -> None:
    # GIVEN one 100 ms step whose 40 ms wait overlaps 25 ms of kernels from the previous batch
    b = TraceBuilder().step(1, 0, 100_000).next_call(0, 40_000, "_MultiProcessingDataLoaderIter")
    b.kernel(0, 25_000).kernel(50_000, 30_000)
    a = _analyze(b, tmp_path)
    assert a.data_wait_fraction == pytest.approx(0.40)
    assert a.exposed_data_wait_fraction == pytest.approx(0.15)
    assert a.gpu_busy_fraction == pytest.approx(0.55)
    assert a.iterator == "multi_process"
    assert a.per_step["exposed_wait_ms"].tolist() == pytest.approx([15.0])


def test_wait_and_gpu_outside_steps_are_clipped_away(tmp_path: Path) -> None:
    b = TraceBuilder().step(1, 100_000, 100_000)
    b.next_call(50_000, 100_000)  # half before the step
    b.kernel(0, 90_000)  # entirely before
    a = _analyze(b, tmp_path)
    assert a.data_wait_fraction == pytest.approx(0.5)
    assert a.gpu_busy_fraction == pytest.approx(0.0)


def test_gpu_side_step_mirror_is_not_counted_twice(tmp_path: Path) -> None:
    # GIVEN newer PyTorch's copy of each ProfilerStep# on the GPU timeline
    b = starved_loop(TraceBuilder(), steps=3, mirror_on_gpu=True)
    a = _analyze(b, tmp_path)
    # THEN only the host steps count
    assert a.steps == 3
    assert a.data_wait_fraction == pytest.approx(0.30)


def test_cpu_only_trace_has_null_gpu_busy_and_exposed_equals_wait(tmp_path: Path) -> None:
    b = starved_loop(TraceBuilder(), steps=2, copy=None)
    b.events = [e for e in b.events if e["cat"] != "kernel"]
    a = _analyze(b, tmp_path)
    assert a.gpu_busy_fraction is None
    assert a.exposed_data_wait_fraction == a.data_wait_fraction == pytest.approx(0.3)


def test_trace_without_steps_falls_back_to_next_boundaries_and_says_so(tmp_path: Path) -> None:
    b = TraceBuilder()
    for i in range(3):
        t = i * 50_000
        b.next_call(t, 10_000)
        b.op("aten::mm", t + 10_000, 40_000)
    a = _analyze(b, tmp_path)
    assert a.steps == 0 and a.step_source == "dataloader_next"
    assert a.fallback is not None and "__next__" in a.fallback
    assert a.measured_steps == 3
    assert a.data_wait_fraction == pytest.approx(0.2)


def test_trace_without_steps_or_loader_cannot_be_measured(tmp_path: Path) -> None:
    a = _analyze(TraceBuilder().op("aten::mm", 0, 10).kernel(0, 5), tmp_path)
    assert a.step_source == "none" and a.exposed_data_wait_fraction is None
    assert a.step_time_ms_median is None


def test_each_device_gets_its_own_busy_fraction(tmp_path: Path) -> None:
    b = TraceBuilder(device_names=("H100", "H100")).step(1, 0, 100_000).next_call(0, 20_000)
    b.kernel(20_000, 80_000, device=0).kernel(0, 50_000, device=1)
    a = _analyze(b, tmp_path)
    assert [d.device for d in a.devices] == [0, 1]
    assert a.devices[0].busy_fraction == pytest.approx(0.8)
    assert a.devices[1].busy_fraction == pytest.approx(0.5)
    assert a.devices[0].exposed_data_wait_fraction == pytest.approx(0.2)
    assert a.devices[1].exposed_data_wait_fraction == pytest.approx(0.0)
    assert a.devices[0].label == "GPU 0: H100"


def test_datapipe_and_subclassed_iterators_count_as_data_wait(tmp_path: Path) -> None:
    b = TraceBuilder().step(1, 0, 100_000)
    b.add("enumerate(DataPipe)#ShardingFilterIterDataPipe", "user_annotation", 0, 10_000)
    b.add("enumerate(DataLoader)#_MyLoaderIter.__next__", "user_annotation", 50_000, 5_000)
    a = _analyze(b, tmp_path)
    assert a.data_wait_fraction == pytest.approx(0.15)
    assert a.iterator == "unknown"


def test_representative_step_timeline_holds_wait_and_gpu_intervals(tmp_path: Path) -> None:
    a = _analyze(starved_loop(TraceBuilder(), steps=3), tmp_path)
    assert a.timeline is not None
    assert a.timeline.data_wait == ((0.0, 30.0),)
    assert a.timeline.gpu_busy[0][0] == pytest.approx(30.0)
