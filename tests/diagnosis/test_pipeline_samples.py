"""The recorded input pipelines (sample_traces/pipeline_*, no DataLoader or a DataLoader subclass)
get a verdict and advice in their own knob (docs/validation.md, "Input pipelines")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import single_of
from tracelens.api import analyze_path
from tracelens.document.schema import Document

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"


def _doc(name: str) -> Document:
    if not (SAMPLES / name / "run.json").is_file():
        pytest.fail(f"sample_traces/{name} is missing: record it (sample_traces/README.md)")
    return single_of(analyze_path(SAMPLES / name).document)


@pytest.mark.parametrize(("name", "knob", "framework"), [
    ("pipeline_torchdata_nodes", "ParallelMapper.num_workers", "torchdata.nodes"),
    ("pipeline_generator", "concurrency", "generator"),
    ("pipeline_stateful", "StatefulDataLoader.num_workers", None),
    ("pipeline_hf_shards", "DataLoader.num_workers", "datasets"),
    ("pipeline_webdataset", "WebLoader.num_workers", "webdataset"),
])
def test_a_recorded_pipeline_is_input_bound_and_advised_in_its_own_knob(name: str, knob: str, framework: str | None) -> None:
    doc = _doc(name)
    assert doc.diagnosis in ("input_bound", "io_bound", "cpu_starvation")
    assert doc.loader.framework == framework and doc.loader.training is True
    assert doc.recommendation.knob == knob
    now = doc.loader.num_workers or 0
    assert doc.recommendation.num_workers is not None and doc.recommendation.num_workers > now
    assert doc.steps >= 10


def test_a_two_shard_dataset_never_gets_more_than_two_workers() -> None:
    doc = _doc("pipeline_hf_shards")
    assert doc.loader.max_workers == 2 and doc.recommendation.num_workers == 2
    assert "to_iterable_dataset(num_shards=" in (doc.recommendation.knob_advice or "")


def test_webdataset_rebatching_in_the_main_process_is_counted_and_named() -> None:
    doc = _doc("pipeline_webdataset")
    assert doc.loader.pipeline.get("rebatch_in_main") is True
    assert "batch inside the workers" in (doc.recommendation.knob_advice or "")
    assert doc.metrics.data_wait_fraction is not None and doc.metrics.data_wait_fraction > 0.3


def test_a_thread_pipeline_whose_main_process_mostly_waits_is_latency_bound_and_not_capped_by_cores() -> None:
    # GIVEN a ParallelMapper of 1 thread over a 4 ms fetch: the main process (the loading's threads
    # and the step) used 0.10 cores while the loop waited 97 % of each step
    doc = _doc("pipeline_torchdata_nodes")
    # THEN the cause is known (the main process's CPU bounds the loading's) and the count is
    # Little's law's, capped by the process limit, not by the 2 cores
    assert doc.diagnosis == "io_bound"
    assert doc.recommendation.num_workers is not None and doc.recommendation.num_workers > 2


def test_a_main_process_busy_or_with_worker_processes_gives_no_cause_from_the_main_process() -> None:
    from tracelens.diagnosis.context import loading_usage
    from tracelens.diagnosis.facts import ProcessUsage, RunFacts

    idle = ProcessUsage(role="main", wall_s=1.0, cpu_s=0.1, run_delay_s=0.02)
    busy = ProcessUsage(role="main", wall_s=1.0, cpu_s=0.6, run_delay_s=0.1)
    # a mostly idle main process that runs the loading: it waits
    waiting = loading_usage(RunFacts(main=idle, loads_in_main=True))
    assert waiting is not None and waiting.demand_fraction <= 0.5
    # a busy one proves nothing (its CPU is also the step's), and worker processes' loading is
    # not bounded by the main process's CPU
    assert loading_usage(RunFacts(main=busy, loads_in_main=True)) is None
    assert loading_usage(RunFacts(main=idle, loads_in_main=False)) is None
