"""Who holds the cores: the job's own threads (TL101 oversubscription) or other processes (TL105
busy_machine), and the recommendation composed from every finding that changes a setting.

GIVEN run facts with the CPU supply (what processes outside the job used, run.json
``telemetry.supply``), WHEN diagnosed, THEN the verdict follows the job's own loading, the outside
load is a finding of its own, and the settings are composed without contradictions.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.builders import single_of
from tests.diagnosis.test_rules import MULTI, epochs_loop, facts, finding, ids, loop, run
from tracelens.api import analyze_path
from tracelens.diagnosis import Diagnosis
from tracelens.diagnosis.facts import OtherProcess, ProcessUsage, Supply

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"


def supply(other: float, usable: float = 2.0) -> Supply:
    """The CPU supply of a window in which other processes used ``other`` cores."""
    return Supply(other_cpu_cores=other, cores_left=max(0.0, usable - other), job_cpu_cores=0.5,
                  usable_cores=usable, throttled_fraction=0.0, pressure_fraction=0.6,
                  others=(OtherProcess(4242, "python3", other / 2), OtherProcess(4243, "\x1b[31mhog", other / 2)))


def _no_contradiction(d: Diagnosis) -> None:
    """No finding's advice tells the reader a value the recommendation does not use."""
    rec = d.recommendation
    for f in d.findings:
        for k in ("num_workers", "prefetch_factor"):
            for m in re.finditer(rf"Set {k}=(\d+)", f.advice):
                assert int(m.group(1)) == getattr(rec, k), (f.id, f.advice)
        assert "Superseded" not in f.advice
        if rec.num_workers == 0:
            assert "worker_init_fn" not in f.advice, (f.id, f.advice)
    if rec.num_workers == 0:
        assert rec.torch_threads_per_worker is None


# --- TL105 busy_machine -----------------------------------------------------------------------


def test_other_processes_on_the_cores_are_a_busy_machine_not_the_diagnosis(tmp_path: Path) -> None:
    # GIVEN a latency-bound loader (2 waiting workers, 300 ms batches, 20 ms steps) while other
    # processes used 1.6 of the 2 cores and the main process waited for a CPU 40 % of the time
    f = facts(2, cores=2, cpu=0.05, delay=0.2, main_delay=0.8, main_threads=2, supply=supply(1.6))
    d = run(loop([130] * 12, 20, MULTI, gpu=False), tmp_path, f)
    # THEN the diagnosis is the loading's own, and busy_machine names the outside load
    assert d.diagnosis == "io_bound" and "TL101" not in ids(d)
    b = finding(d, "TL105")
    assert b.kind == "busy_machine" and b.severity == "high" and b.evidence["measured"] is True
    assert b.evidence["other_cpu_cores"] == pytest.approx(1.6) and b.evidence["cores_left"] == pytest.approx(0.4)
    assert b.evidence["top_other_processes"][0] == {"pid": 4242, "name": "python3", "cores": 0.8}
    assert "used 1.60 of the 2 usable cores" in b.title and "0.40 cores were left" in b.title
    assert "absolute figures" in b.advice and "quiet" in b.advice
    # AND the latency-bound count is Little's law's, the same as on a quiet machine
    quiet = run(loop([130] * 12, 20, MULTI, gpu=False), tmp_path, replace(f, supply=supply(0.02)))
    assert "TL105" not in ids(quiet)
    assert d.recommendation.num_workers == quiet.recommendation.num_workers > 2


def test_the_background_of_an_idle_machine_is_no_busy_machine(tmp_path: Path) -> None:
    # GIVEN 0.3 cores of kernel workers and editors on 2 cores, and 1.0 core of others on 16 cores
    for other, usable in ((0.3, 2.0), (1.0, 16.0)):
        f = facts(2, cores=usable, cpu=0.05, supply=supply(other, usable))
        d = run(loop([130] * 12, 20, MULTI, gpu=False), tmp_path, f)
        # THEN no busy machine (under half a core, or under a quarter of the cores)
        assert "TL105" not in ids(d), (other, usable)
    # AND half a core of 2 is one
    d = run(loop([130] * 12, 20, MULTI, gpu=False), tmp_path, facts(2, cores=2, cpu=0.05, supply=supply(0.5)))
    assert "TL105" in ids(d)


def test_stalled_math_threads_under_outside_load_get_the_thread_advice_under_busy_machine(tmp_path: Path) -> None:
    # GIVEN a healthy loader (1 worker, 20 ms a batch, keeps up with 100 ms steps 5x over), 2 main math
    # threads waiting for a CPU 45 % each, other processes holding 1.2 of the 2 cores
    f = facts(1, cores=2, cpu=0.3, delay=0.05, main_delay=0.9, main_threads=2, main_cpu=0.9, batch_ms=20.0,
              supply=supply(1.2))
    d = run(loop([1] * 12, 100, MULTI, gpu=False), tmp_path, f)
    # THEN healthy stays the verdict, busy_machine carries torch.set_num_threads(1), and its gain is
    # measured, not estimated
    assert d.diagnosis == "healthy" and "TL101" not in ids(d)
    rec, b = d.recommendation, finding(d, "TL105")
    assert b.settings == {"torch_threads_main": 1} and rec.torch_threads_main == 1 and rec.num_workers == 1
    assert "3.4-8x" in b.advice and rec.expected_speedup is None
    assert rec.measure_with == "tracelens sweep --num-workers 1,2 --main-threads 1,2 train.py ARGS"
    assert [(p.setting, p.rule) for p in rec.parts] == [("torch_threads_main", "TL105")]


def test_a_loader_that_keeps_up_only_with_a_loop_slowed_by_outside_load_is_still_short(tmp_path: Path) -> None:
    # GIVEN 2 latency-bound workers at 168 ms a batch (one batch per 84 ms) and a loop whose 2 math
    # threads each wait for a CPU 50 % of the time under 1.6 cores of outside load, so a tiny model
    # step takes 80 ms and the steps barely wait (1 ms: 1.2 %)
    f = facts(2, cores=2, cpu=0.05, batch_ms=168.0, main_delay=1.0, main_threads=2, main_cpu=1.0,
              supply=supply(1.6))
    d = run(loop([1] * 12, 80, MULTI, gpu=False), tmp_path, f)
    # THEN not healthy: the thread cut will speed the loop up past the workers, so the quiet
    # verdict and direction hold (io_bound, more workers) and the title says why
    assert d.diagnosis == "io_bound" and d.recommendation.num_workers > 2
    assert "a shortage the outside load hides" in finding(d, "TL103").title
    assert d.recommendation.torch_threads_main == 1
    # AND with no outside load, or with workers to spare, the same steps are healthy
    assert run(loop([1] * 12, 80, MULTI, gpu=False), tmp_path, replace(f, supply=supply(0.1))).diagnosis == "healthy"
    spare = run(loop([1] * 12, 80, MULTI, gpu=False), tmp_path, replace(f, batch_ms=(40.0,) * 20))
    assert spare.diagnosis == "healthy"


# --- TL101 only for the job's own threads ----------------------------------------------------


def test_threads_that_fit_the_cores_are_never_oversubscription_whatever_the_delay(tmp_path: Path) -> None:
    # GIVEN 1 main thread + 1 worker on 2 cores (2 configured threads), waiting for a CPU 60 % of the time
    f = facts(1, cores=2, cpu=0.95, delay=0.6, main_delay=0.6, main_threads=1, supply=supply(1.4))
    d = run(loop([60] * 12, 40, MULTI, gpu=False), tmp_path, f)
    # THEN the delay is the neighbours': no oversubscription
    assert "TL101" not in ids(d) and d.diagnosis == "cpu_starvation" and "TL105" in ids(d)


def test_oversubscription_never_cuts_a_latency_bound_loader(tmp_path: Path) -> None:
    # GIVEN 4 latency-bound workers (4 threads each, 5 % CPU, 10 % run-queue delay) beside 2 main math
    # threads that spin and queue (2 cores of CPU, 1 s/s of delay) on 2 cores: 1.8 runnable per core
    f = facts(4, cores=2, cpu=0.05, delay=0.1, main_delay=1.0, worker_threads=4, main_threads=2, main_cpu=2.0)
    d = run(loop([130] * 12, 20, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    o = finding(d, "TL101")
    # THEN the thread counts are cut, never the waiting workers: their count is Little's law's
    assert "num_workers" not in o.settings and "kept: the loading mostly waits" in o.advice
    rec = d.recommendation
    assert rec.num_workers > 4 and rec.torch_threads_per_worker == 1
    assert {p.setting: p.rule for p in rec.parts}["num_workers"] == "TL103"
    _no_contradiction(d)


# --- the core budget under outside load ------------------------------------------------------


def test_cpu_bound_workers_are_capped_by_the_cores_left_to_the_job(tmp_path: Path) -> None:
    # GIVEN CPU-bound loading in the main process (60 ms batches, 20 ms steps) on 8 cores, 6 of
    # them used by other processes
    f = facts(0, cores=8, cpu=0.95, batch_ms=60.0, main_threads=1, supply=supply(6.0, usable=8.0))
    d = run(loop([60] * 12, 20, gpu=False), tmp_path, f)
    assert d.diagnosis == "cpu_starvation"
    # THEN at most the 2 cores left, and the plan says so
    assert d.recommendation.num_workers == 2
    plan = finding(d, "TL102")
    assert plan.evidence["num_workers_cap"] == 2
    assert "8 usable − 6.00 used by other processes = 2.00 per rank" in plan.advice
    # AND on the same machine, quiet, the cores allow more
    quiet = run(loop([60] * 12, 20, gpu=False), tmp_path, replace(f, supply=supply(0.1, usable=8.0)))
    assert quiet.recommendation.num_workers > 2


# --- composition and gains -------------------------------------------------------------------


def test_worker_count_and_thread_cut_compose_each_with_its_reason(tmp_path: Path) -> None:
    # GIVEN a latency-bound loader with num_workers=0 and stalled main math threads under outside load
    f = facts(0, cores=2, cpu=0.05, batch_ms=130.0, main_delay=1.0, main_threads=2, main_cpu=0.6, supply=supply(1.5))
    d = run(loop([130] * 12, 20, gpu=False), tmp_path, f)
    assert d.diagnosis == "io_bound"
    rec = d.recommendation
    parts = {p.setting: (p.value, p.rule) for p in rec.parts}
    # THEN the recommendation holds both: the workers from TL103, the thread cut from TL105
    assert parts["num_workers"] == (rec.num_workers, "TL103") and rec.num_workers > 2
    assert parts["torch_threads_main"] == (1, "TL105")
    assert any("I/O- or latency-bound" in p.reason for p in rec.parts)
    assert any(n.startswith("Set num_workers=") for n in rec.notes) and any("3.4-8x" in n for n in rec.notes)
    # AND the gain it estimates (the loader's) stays under the bound it states, with what it leaves out
    assert rec.expected_speedup is not None and rec.expected_speedup_bound is not None
    assert rec.expected_speedup <= rec.expected_speedup_bound
    assert rec.expected_basis is not None and "leaves out" in rec.expected_basis
    assert rec.measure_with is not None and "--main-threads 1,2" in rec.measure_with
    _no_contradiction(d)


def test_a_healthy_verdict_never_comes_with_a_quarter_of_the_step_waiting(tmp_path: Path) -> None:
    # GIVEN 2 non-persistent workers x prefetch 2, epochs of 4 batches (every step is in a turnover),
    # each new iterator's first batch waiting 40 ms: under the 50 ms a respawn finding needs
    steps: list[list[float]] = []
    for epoch in range(6):
        for k in range(4):
            w = [40.0] if (epoch and k == 0) else [8.0] if (epoch and k == 1) else [0.5]
            steps.append(w + ([5.0] if k == 3 and epoch < 5 else []))
    f = facts(2, cores=2, cpu=0.9, batch_ms=1.0, iterator_creations=6, first_next_ms=(40.0,) * 5)
    d = run(epochs_loop(steps, 10), tmp_path, f)
    # THEN over a quarter of the step time waits, and the verdict is input_bound, not healthy
    assert d.diagnosis == "input_bound" and "TL202" not in ids(d)
    rec = d.recommendation
    assert "Input-bound at the epoch changes" in rec.notes[0]
    assert rec.measure_with == "tracelens sweep --num-workers 2,4 train.py ARGS"
    # AND persistent workers, which restart nothing, make the same waits the steady state
    d2 = run(epochs_loop(steps, 10), tmp_path, replace(f, settings=replace(f.settings, persistent_workers=True)))
    assert d2.diagnosis != "healthy"


def test_expected_gains_of_the_recorded_samples_never_exceed_their_bound() -> None:
    for run_dir in sorted(p.parent for p in SAMPLES.rglob("run.json")):
        if (run_dir.parent / "run.json").exists() or run_dir.parent.name.startswith("rank-"):
            continue
        doc = single_of(analyze_path(run_dir).document)
        rec = doc.recommendation
        speed, bound = rec.expected_speedup, rec.expected_speedup_bound
        if speed is not None:
            assert bound is not None and speed <= bound + 1e-9, run_dir
            assert rec.expected_basis, run_dir
        elif rec.measure_with is None:
            assert doc.diagnosis in ("healthy", "undetermined"), run_dir


def test_a_main_process_used_by_the_workers_alone_keeps_no_worker_thread_advice(tmp_path: Path) -> None:
    # GIVEN own oversubscription whose plan keeps 0 workers (2 main threads spinning, 1 core)
    f = facts(1, cores=1, cpu=0.9, delay=0.5, main_delay=0.9, worker_threads=2, main_threads=2,
              main=ProcessUsage("main", 10.0, cpu_s=9.0, run_delay_s=9.0, ctx_involuntary=0))
    d = run(loop([5] * 12, 50, MULTI, gpu=False), tmp_path, f)
    _no_contradiction(d)
