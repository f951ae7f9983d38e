"""The recorded example runs in sample_traces/ get the diagnosis each was built for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import job_of, single_of
from tracelens.api import analyze_path
from tracelens.diagnosis import Diagnosis

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"


def _diagnose(name: str) -> Diagnosis:
    d = SAMPLES / name
    if not (d / "run.json").is_file():
        pytest.skip(f"{d} is not recorded")
    from tracelens.diagnosis import diagnose
    from tracelens.runjson import read_run_info

    r = analyze_path(d).ranks[0]
    return diagnose(r.analysis, read_run_info(d))


@pytest.mark.parametrize(("name", "expected"), [
    # recorded while its 2 math threads each waited for a CPU 45 % of the time, in a run.json older
    # than the CPU supply record: the loader is CPU-starved, and the outside load is inferred (TL105)
    ("cpu_heavy_main_process", "cpu_starvation"),
    ("latency_bound_reads", "io_bound"),
    ("sleep_1ms_loader", "io_bound"),
    ("oversubscribed", "oversubscription"),
    # recorded while its 2 math threads each waited for a CPU 62 % of the time (one thread measured
    # 3x faster under that load): the loader keeps up; the stall is the busy machine's (TL105)
    ("healthy_compute_bound", "healthy"),
    ("worker_startup_per_epoch", "input_bound"),  # input-bound by worker start-up: TL202 leads
])
def test_example_gets_the_diagnosis_it_was_built_for(name: str, expected: str) -> None:
    assert _diagnose(name).diagnosis == expected


def test_io_bound_examples_get_more_workers_than_cores() -> None:
    rec = _diagnose("latency_bound_reads").recommendation
    assert rec.num_workers > 2


def test_oversubscribed_example_gets_one_thread_per_worker() -> None:
    rec = _diagnose("oversubscribed").recommendation
    assert rec.torch_threads_per_worker == 1 and rec.num_workers < 8


def test_compute_bound_example_keeps_its_loader_and_cuts_the_stalled_threads() -> None:
    d = _diagnose("healthy_compute_bound")
    rec = d.recommendation
    assert (rec.num_workers, rec.pin_memory, rec.persistent_workers, rec.prefetch_factor) == (1, False, False, 2)
    busy = next(f for f in d.findings if f.kind == "busy_machine")
    assert rec.torch_threads_main == 1 and busy.settings == {"torch_threads_main": 1}
    assert rec.measure_with is not None and "--main-threads 1,2" in rec.measure_with


def test_respawning_example_gets_persistent_workers() -> None:
    d = _diagnose("worker_startup_per_epoch")
    assert d.findings[0].kind == "worker_respawn" and d.findings[0].severity == "high"
    assert not any(f.kind in ("cpu_starvation", "prefetch_depth") for f in d.findings)
    rec = d.recommendation
    assert (rec.persistent_workers, rec.num_workers, rec.prefetch_factor) == (True, 2, 2)


def test_cpu_heavy_example_gets_workers_and_one_main_thread() -> None:
    d = _diagnose("cpu_heavy_main_process")
    rec = d.recommendation
    assert rec.num_workers >= 1 and rec.torch_threads_main == 1
    assert {p.setting: p.kind for p in rec.parts}["num_workers"] == "cpu_starvation"
    assert any(f.kind == "busy_machine" for f in d.findings)


@pytest.mark.parametrize(("name", "expected", "settings"), [
    # the training loader, not Lightning's sanity-check validation loader, is windowed and named
    ("lightning_train", "cpu_starvation", {"num_workers": 2, "torch_threads_main": 1}),
    ("hf_trainer", "cpu_starvation", {"num_workers": 1, "torch_threads_main": 1}),
    ("image_pipeline", "cpu_starvation", {"num_workers": 1, "torch_threads_main": 1}),
    # latency-bound: Little's law's 17, not capped by the 2 cores
    ("iterable_stream", "io_bound", {"num_workers": 17}),
    # the window spans epochs of 4 batches, so the respawn every epoch is seen
    ("short_epoch_respawn", "input_bound", {"persistent_workers": True}),
])
def test_framework_example_gets_the_diagnosis_and_settings_it_was_built_for(
        name: str, expected: str, settings: dict[str, object]) -> None:
    # (docs/validation.md measures each of these settings against the script's own defaults)
    d = _diagnose(name)
    assert d.diagnosis == expected
    assert {k: getattr(d.recommendation, k) for k in settings} == settings


def test_framework_examples_name_the_training_loader_they_analyzed() -> None:
    lightning = single_of(analyze_path(SAMPLES / "lightning_train").document).loader
    hf = single_of(analyze_path(SAMPLES / "hf_trainer").document).loader
    assert (lightning.framework, lightning.training) == ("lightning", True)
    assert "train_dataloader" in (lightning.created_at or "") and lightning.batches_per_epoch == 64
    assert (hf.framework, hf.training) == ("transformers", True)


def test_slow_rank_of_the_torchrun_job_is_the_straggler_and_gets_the_job_s_advice() -> None:
    doc = job_of(analyze_path(SAMPLES / "ddp_torchrun").document)
    straggler = next(f for f in doc.findings if f.kind == "rank_straggler")
    assert straggler.evidence["rank"] == 1 and doc.slowest_rank == doc.rank_straggler == 1
    assert doc.recommendation.num_workers == 14  # rank 1's Little's law: latency-bound, not capped by cores
    assert next(r for r in doc.ranks if r.rank == 0).waits_for_rank == 1
