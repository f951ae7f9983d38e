"""Each rule's trigger, precondition and boundaries, on traces from the TraceBuilder.

GIVEN a hand-checkable trace (and, for telemetry rules, run facts), WHEN diagnosed, THEN the
rule fires (or is skipped with its reason) and the computed settings follow the stated math.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from tests.builders import TraceBuilder
from tracelens import analyze_trace, load_trace
from tracelens.analysis import TraceAnalysis
from tracelens.columnset import StepTable
from tracelens.diagnosis import Diagnosis, RunFacts, context, diagnose, engine, plan
from tracelens.diagnosis.facts import ProcessUsage, Recording, known_settings
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.thresholds import THRESHOLDS
from tracelens.vocab import LoaderSettings, Severity

SINGLE = "_SingleProcessDataLoaderIter"
MULTI = "_MultiProcessingDataLoaderIter"


def loop(waits_ms: Sequence[float], compute_ms: float, iterator: str = SINGLE, *, copy_ms: float = 0.0,
         gpu: bool = True, idle_ms: float = 0.0, b: TraceBuilder | None = None) -> TraceBuilder:
    """One step per wait: wait for data, copy, then kernels for the rest of ``compute_ms``
    except ``idle_ms`` (GPU idle not for data)."""
    b = b or TraceBuilder()
    t = 0.0
    for i, w in enumerate(waits_ms):
        wait_us, comp_us = w * 1000, compute_ms * 1000
        b.step(i + 1, t, wait_us + comp_us)
        b.next_call(t, wait_us, iterator)
        if copy_ms:
            b.memcpy(t + wait_us, copy_ms * 1000)
        if gpu:
            b.kernel(t + wait_us + copy_ms * 1000, comp_us - copy_ms * 1000 - idle_ms * 1000)
        t += wait_us + comp_us
    return b


def analyze(b: TraceBuilder, tmp_path: Path) -> TraceAnalysis:
    return analyze_trace(load_trace(b.write(tmp_path / "t.json")))


def run(b: TraceBuilder, tmp_path: Path, facts: RunFacts | None = None) -> Diagnosis:
    return diagnose(analyze(b, tmp_path), facts)


def ids(d: Diagnosis) -> set[str]:
    return {f.id for f in d.findings}


def finding(d: Diagnosis, rule_id: str) -> Finding:
    return next(f for f in d.findings if f.id == rule_id)


def skip_reason(d: Diagnosis, rule_id: str) -> str:
    return next(s.reason for s in d.skipped if s.id == rule_id)


def facts(num_workers: int = 0, cores: float = 4, *, cpu: float | None = None, delay: float = 0.0,
          batch_ms: float = 300.0, n_batches: int = 20, worker_threads: int = 1, main_threads: int = 1,
          main_delay: float = 0.0, main_cpu: float = 0.5, **kw: object) -> RunFacts:
    """Run facts with batch records whose CPU share is ``cpu`` (None: no telemetry)."""
    usage = ProcessUsage("worker", 10.0, cpu_s=(cpu or 0) * 10, run_delay_s=delay * 10, ctx_involuntary=0)
    main = ProcessUsage("main", 10.0, cpu_s=main_cpu * 10, run_delay_s=main_delay * 10, ctx_involuntary=0)
    tele = cpu is not None
    args: dict[str, object] = dict(
        settings=LoaderSettings(num_workers=num_workers, pin_memory=False, persistent_workers=False,
                                prefetch_factor=2 if num_workers else None),
        usable_cores=cores, torch_threads_main=main_threads,
        torch_threads_worker=worker_threads if num_workers else None,
        main=main if tele else None,
        workers=tuple(usage for _ in range(num_workers)) if tele else (),
        batch_ms=(batch_ms,) * n_batches if tele else (),
        batch_cpu_ms=(batch_ms * (cpu or 0),) * n_batches if tele else (),
        batch_source="workers" if num_workers else "main process",
    )
    args.update(kw)
    return RunFacts(**args)  # type: ignore[arg-type]


# --- the rule table itself --------------------------------------------------------------------


def test_rule_ids_are_unique_stable_and_their_thresholds_exist() -> None:
    assert len({r.id for r in engine.RULES}) == len(engine.RULES)
    for r in engine.RULES:
        assert r.id.startswith("TL") and r.kind and r.precondition and r.severity in Severity
        assert all(n in THRESHOLDS for n in r.thresholds)
    kinds = {r.kind for r in engine.RULES}
    assert {"cpu_starvation", "io_bound", "oversubscription", "pageable_memcpy", "worker_respawn",
            "prefetch_depth", "host_bound", "trace_quality"} <= kinds


def test_rules_read_only_the_analysis_and_run_facts_never_events() -> None:
    package = Path(engine.__file__).parent
    for module in package.rglob("*.py"):
        src = module.read_text()
        assert "tracelens.model" not in src and "load_trace" not in src and "tracelens.load" not in src, module


# --- TL104 input-bound (no telemetry) and the exposed-wait threshold -------------------------


def test_single_process_starved_loop_is_input_bound_with_littles_law_workers(tmp_path: Path) -> None:
    # GIVEN 6 steps: 30 ms in __next__ (num_workers=0, so T_b = 30 ms), then 70 ms of GPU work
    d = run(loop([30] * 6, 70), tmp_path)
    # THEN input-bound (no telemetry to name the cause), and N = ceil(30 / 70) + 1 = 2
    assert d.diagnosis == "input_bound"
    f = finding(d, "TL104")
    assert f.severity == "high" and f.evidence["batch_ms"] == pytest.approx(30.0)
    assert f.evidence["compute_ms_per_step"] == pytest.approx(70.0)
    rec = d.recommendation
    assert rec.num_workers == 2 and rec.prefetch_factor == 2 and rec.persistent_workers is False
    assert rec.expected_speedup == pytest.approx(1 / 0.7, rel=1e-3)
    text = " ".join(rec.notes)
    assert "Little's law" in text and "tracelens profile" in text and "capped at 8" in text


def test_input_bound_caps_at_the_stated_assumption_without_machine_facts(tmp_path: Path) -> None:
    # GIVEN T_b = 200 ms per batch and C = 10 ms: 20 workers needed
    d = run(loop([200] * 6, 10), tmp_path)
    assert d.diagnosis == "input_bound"
    assert d.recommendation.num_workers == int(THRESHOLDS["assumed_worker_cap"].value)
    assert finding(d, "TL104").evidence["num_workers_uncapped"] == 23


@pytest.mark.parametrize(("wait_ms", "expected"), [(4.9, "healthy"), (5.1, "input_bound")])
def test_exposed_wait_threshold_boundary(tmp_path: Path, wait_ms: float, expected: str) -> None:
    # GIVEN steps of 100 ms with ``wait_ms`` of exposed wait
    d = run(loop([wait_ms] * 6, 100 - wait_ms), tmp_path)
    assert d.diagnosis == expected


def test_one_time_warmup_step_does_not_dilute_the_steady_wait(tmp_path: Path) -> None:
    # GIVEN a 2 s warm-up step followed by 5 steps waiting 30 of 100 ms
    b = TraceBuilder()
    b.step(1, 0, 2_000_000).next_call(0, 30_000).kernel(30_000, 1_900_000)
    t = 2_000_000.0
    for i in range(5):
        b.step(i + 2, t, 100_000).next_call(t, 30_000).kernel(t + 30_000, 70_000)
        t += 100_000
    a = analyze(b, tmp_path)
    assert a.exposed_data_wait_fraction is not None and a.exposed_data_wait_fraction < 0.1
    d = diagnose(a)
    assert d.diagnosis == "input_bound"
    assert finding(d, "TL104").evidence["exposed_wait_fraction"] == pytest.approx(0.3)


def test_healthy_multi_process_keeps_the_unknown_settings_as_null(tmp_path: Path) -> None:
    # GIVEN a bare trace of a multi-process loader that keeps up (its settings are not in it)
    d = run(loop([0.3] * 8, 100, MULTI), tmp_path)
    assert d.diagnosis == "healthy"
    # THEN no number stands for a setting that must not change: applying the JSON changes nothing
    rec = d.recommendation
    assert rec.keep_current == ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
    assert (rec.num_workers, rec.pin_memory, rec.persistent_workers, rec.prefetch_factor) == (None,) * 4
    # (pin_memory is unknown too: GPU kernels but no host-to-device copies that would show it)
    assert rec.expected_speedup == 1.0


def test_drained_queue_period_estimates_the_worker_count(tmp_path: Path) -> None:
    # GIVEN a multi-process loader, every 4th __next__ waits 120 ms, the rest 0.2 ms; C = 50 ms
    waits = [120.0 if i % 4 == 3 else 0.2 for i in range(16)]
    d = run(loop(waits, 50, MULTI), tmp_path)
    f = finding(d, "TL104")
    # THEN T_b = 4 * (C + W) with W the mean wait (30.15 ms): 320.6 ms -> 6.4 workers -> 7 + 2
    assert "assuming num_workers=4" in f.evidence["batch_ms_source"]
    assert f.evidence["batch_ms"] == pytest.approx(4 * (50 + (120 * 4 + 0.2 * 12) / 16), rel=1e-3)
    assert d.recommendation.num_workers == 8  # capped by the stated assumption


# --- TL102 / TL103: the cause from telemetry ----------------------------------------------------


def test_cpu_bound_loading_is_paced_by_the_cores(tmp_path: Path) -> None:
    # GIVEN workers that spend 95 % of each 300 ms batch on CPU, 2 workers, 4 usable cores, and a
    # main process using half a core over 100 ms steps (70 ms compute + 30 ms wait)
    b = loop([30] * 8, 70, MULTI, gpu=False)
    d = run(b, tmp_path, facts(2, cores=4, cpu=0.95, batch_ms=300.0))
    assert d.diagnosis == "cpu_starvation"
    f = finding(d, "TL102")
    # THEN per step the cores must run 50 ms of main-process CPU and 285 ms of loading CPU: one step
    # every 335 / 4 = 83.75 ms at best, which 285 / 83.75 = 3.4 -> 4 workers keep up (no headroom:
    # more would only take turns), within the 4 cores
    assert f.evidence["num_workers_uncapped"] == 4 and d.recommendation.num_workers == 4
    assert "The cores set the pace" in f.advice and "cache decoded" in f.advice
    assert d.recommendation.expected_speedup == pytest.approx(100 / 83.75, rel=1e-3)
    assert d.recommendation.pin_memory is False  # CPU-only run


def test_workers_whose_init_raised_their_threads_are_told_to_use_one(tmp_path: Path) -> None:
    # GIVEN one CPU-bound worker on 2 cores whose worker_init_fn set 2 torch threads, and 2
    # threads in the main process
    d = run(loop([30] * 8, 10, MULTI, gpu=False), tmp_path,
            facts(1, cores=2, cpu=0.95, batch_ms=30.0, main_threads=2, main_cpu=0.96, worker_threads=2))
    rec = d.recommendation
    # THEN both thread counts come down to 1
    assert (rec.torch_threads_main, rec.torch_threads_per_worker) == (1, 1), d.diagnosis
    assert "1 torch thread per worker too (now 2" in " ".join(rec.notes)


def test_cpu_starved_main_process_gets_main_threads_that_fit_the_cores(tmp_path: Path) -> None:
    # GIVEN num_workers=0 on 2 cores, 30 ms CPU-bound batches in the main process, 10 ms compute,
    # and 2 torch threads in the main process
    # (the main process is on a CPU 96 % of the time: 28.5 ms loading + 9.9 ms of its own per step)
    d = run(loop([30] * 8, 10, gpu=False), tmp_path,
            facts(0, cores=2, cpu=0.95, batch_ms=30.0, main_threads=2, main_cpu=0.96))
    assert d.diagnosis == "cpu_starvation"
    rec = d.recommendation
    # THEN the cores, not a reserved core, set the plan: (9.9 + 28.5) / 2 = 19.2 ms per step at
    # best, so 28.5 / 19.2 -> 2 workers, and 1 main thread leaves them the cores
    # (workers already run the DataLoader's 1 torch thread: nothing to set for them)
    assert (rec.num_workers, rec.torch_threads_main, rec.torch_threads_per_worker) == (2, 1, None)
    text = " ".join(rec.notes)
    assert "workers keep the DataLoader's 1 thread each" in text
    assert "torch.set_num_threads(1) in the main process" in text and "The cores set the pace" in text
    # the expected gain: 40 ms now / 19.2 ms; the worst case (compute doubles to 20 ms) is stated too
    assert rec.expected_speedup == pytest.approx(40 / 19.2, rel=1e-2) and "C grew to 20.0 ms" in text
    # AND with cores to spare the main threads stay
    d8 = run(loop([30] * 8, 10, gpu=False), tmp_path, facts(0, cores=8, cpu=0.95, batch_ms=30.0, main_threads=2))
    assert d8.recommendation.num_workers == 4 and d8.recommendation.torch_threads_main is None


def test_latency_cap_is_stated_plainly_and_is_no_number_of_cores(tmp_path: Path) -> None:
    # GIVEN 2 waiting workers on 2 cores with 3 s batches and 70 ms of compute: Little's law wants 50
    for cores in (2, 64):
        d = run(loop([80] * 8, 70, MULTI, gpu=False), tmp_path, facts(2, cores=cores, cpu=0.05, batch_ms=3000.0))
        adv = finding(d, "TL103").advice
        # THEN the process limit caps it, whatever the cores
        assert d.recommendation.num_workers == 32
        assert adv.startswith("Set num_workers=32 (capped: Little's law asks for 50).")
        assert "the limit of 32 workers (latency-bound work mostly waits, so it is not capped by cores" in adv


def test_cpu_bound_work_on_a_busy_machine_counts_run_queue_delay(tmp_path: Path) -> None:
    # GIVEN batches on CPU 40 % of the time and waiting for a CPU 50 % (other processes)
    d = run(loop([30] * 8, 70, gpu=False), tmp_path,
            facts(0, cores=4, cpu=0.4, batch_ms=30.0, main_delay=0.5))
    assert d.diagnosis == "cpu_starvation"


@pytest.mark.parametrize(("cpu", "expected"), [
    (0.69, "input_bound"), (0.70, "cpu_starvation"), (0.50, "io_bound"), (0.51, "input_bound"),
])
def test_cpu_share_boundaries(tmp_path: Path, cpu: float, expected: str) -> None:
    d = run(loop([30] * 8, 70, MULTI, gpu=False), tmp_path, facts(2, cpu=cpu))
    assert d.diagnosis == expected


def test_waiting_loader_is_io_bound_and_not_capped_by_cores(tmp_path: Path) -> None:
    # GIVEN 2 workers on 2 cores whose 300 ms batches are on CPU 5 % of the time (sleep / I/O)
    d = run(loop([80] * 8, 70, MULTI, gpu=False), tmp_path, facts(2, cores=2, cpu=0.05))
    assert d.diagnosis == "io_bound"
    # THEN 300/70 -> 5 + 1 = 6 workers although only 1 core is free for workers (cap 4 x 2 = 8)
    assert d.recommendation.num_workers == 6
    assert "not capped by cores" in finding(d, "TL103").advice


def test_cause_rules_are_skipped_without_telemetry(tmp_path: Path) -> None:
    d = run(loop([30] * 6, 70), tmp_path)
    assert "telemetry" in skip_reason(d, "TL102") and "telemetry" in skip_reason(d, "TL103")
    assert "machine facts" in skip_reason(d, "TL101")


# --- worker surplus: a wait that more workers cannot shorten -------------------------------------


def test_busy_machine_with_fast_workers_is_input_bound_not_cpu_starvation(tmp_path: Path) -> None:
    # GIVEN the validation case: 1 worker producing a CPU-bound batch in 8 ms, a 130 ms step,
    # every __next__ waiting 16 ms (11 % exposed), and processes waiting for a CPU (other tenants)
    f = facts(1, cores=2, cpu=0.95, batch_ms=8.0, delay=0.10, main_delay=0.30)
    d = run(loop([16] * 8, 130, MULTI, gpu=False), tmp_path, f)
    # THEN the capacity (1 x 130 / 8 = 16x the demand) rules out TL102 and TL103 ...
    assert d.diagnosis == "input_bound" and not {"TL102", "TL103"} & ids(d)
    assert "16.2x the batches" in skip_reason(d, "TL102") and "TL104" in skip_reason(d, "TL103")
    # ... and TL104 says why: capacity N x the demand, the wait is bursts or a busy machine
    t = finding(d, "TL104")
    assert t.evidence["worker_capacity_ratio"] == pytest.approx(16.25)
    assert t.evidence["busy_machine"] is True and t.evidence["main_run_delay_fraction"] == pytest.approx(0.3)
    assert "not a loader capacity shortage" in t.title and "16.2x the batches" in t.title
    assert t.advice.startswith("Keep num_workers=1:")
    assert "the main process 30.0 % and the workers (median) 10.0 %" in t.advice
    assert "other processes" in t.advice and "not bursty" in t.advice
    assert t.thresholds["worker_capacity_ratio"] == 2.0
    # AND the recommendation keeps the worker count
    assert d.recommendation.num_workers == 1 and d.findings[0].id == "TL104"
    assert t.advice in d.recommendation.notes


def test_waiting_workers_with_a_surplus_are_not_io_bound(tmp_path: Path) -> None:
    # GIVEN 2 workers that mostly wait (5 % CPU) but need only 20 ms per batch for a 100 ms step
    d = run(loop([15] * 8, 100, MULTI, gpu=False), tmp_path, facts(2, cpu=0.05, batch_ms=20.0))
    assert d.diagnosis == "input_bound" and "TL103" not in ids(d)
    t = finding(d, "TL104")
    assert t.evidence["worker_capacity_ratio"] == pytest.approx(10.0) and t.evidence["busy_machine"] is False
    assert d.recommendation.num_workers == 2


@pytest.mark.parametrize(("batch_ms", "expected"), [
    (50.0, "input_bound"),  # 1 x 100 / 50 = 2.0: at the threshold, a surplus
    (50.5, "cpu_starvation"),  # 1.98x: a capacity shortage is still possible
])
def test_worker_capacity_boundary(tmp_path: Path, batch_ms: float, expected: str) -> None:
    d = run(loop([15] * 8, 100, MULTI, gpu=False), tmp_path, facts(1, cpu=0.95, batch_ms=batch_ms))
    assert d.diagnosis == expected
    if expected == "input_bound":
        assert "not a loader capacity shortage" in finding(d, "TL104").title
    else:
        assert "TL104" not in ids(d)


def test_bursty_waits_with_a_surplus_get_deeper_prefetch_and_keep_the_workers(tmp_path: Path) -> None:
    # GIVEN 2 workers at 5 ms per batch (20x the demand of a 50 ms step) with 2 slow 300 ms
    # batches in 20, and one 120 ms wait every 10 calls
    waits = [120.0 if i % 10 == 9 else 0.2 for i in range(20)]
    batch = (5.0,) * 18 + (300.0,) * 2
    f = replace(facts(2, cpu=0.95), batch_ms=batch, batch_cpu_ms=tuple(0.95 * b for b in batch))
    d = run(loop(waits, 50, MULTI), tmp_path, f)
    assert d.diagnosis == "input_bound" and not {"TL102", "TL103"} & ids(d)
    t = finding(d, "TL104")
    assert t.evidence["bursty_waits"] is True and "deeper prefetch" in t.advice
    # THEN TL203 sizes the queue and the worker count stays
    assert "TL203" in ids(d)
    rec = d.recommendation
    assert rec.num_workers == 2 and rec.prefetch_factor is not None and rec.prefetch_factor > 2


def test_no_surplus_without_measured_worker_batches(tmp_path: Path) -> None:
    # GIVEN num_workers=0: the main process makes the batches, so there is no worker capacity
    d = run(loop([30] * 8, 70, gpu=False), tmp_path, facts(0, cores=4, cpu=0.95, batch_ms=5.0))
    assert d.diagnosis == "cpu_starvation"
    assert plan.worker_capacity(context.build_context(analyze(loop([30] * 8, 70, gpu=False), tmp_path))) is None


# --- TL101 oversubscription ------------------------------------------------------------------


def test_oversubscribed_threads_with_run_queue_delay(tmp_path: Path) -> None:
    # GIVEN 2 cores, 4 workers with 2 torch threads each, 2 main threads: 10 runnable threads,
    # and processes waiting for a CPU 30 % of the time; the data wait itself is small
    f = facts(4, cores=2, cpu=0.9, delay=0.3, main_delay=0.3, worker_threads=2, main_threads=2)
    d = run(loop([1] * 8, 100, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    o = finding(d, "TL101")
    assert o.evidence["configured_threads"] == 10 and o.severity == "high"
    # 0.8 runnable threads in the main process + 4 x 1.2 in the workers, on 2 cores
    assert o.evidence["threads_per_core"] == pytest.approx(2.8)
    rec = d.recommendation
    assert rec.torch_threads_per_worker == 1 and rec.env["OMP_NUM_THREADS"] == "1"
    # the main process uses 0.5 cores: the workers get round(2 - 0.5) = 2 of them
    assert rec.num_workers == 2 and rec.torch_threads_main == 1
    assert "makes this worse" in o.advice and "measured 0.50 cores" in o.advice


def test_oversubscription_leaves_a_busy_main_process_its_core(tmp_path: Path) -> None:
    # GIVEN the same run whose main process uses 0.9 cores: round(2 - 0.9) = 1 worker
    f = facts(4, cores=2, cpu=0.9, delay=0.3, main_delay=0.3, worker_threads=2, main_threads=2,
              main=ProcessUsage("main", 10.0, cpu_s=9.0, run_delay_s=3.0, ctx_involuntary=0))
    d = run(loop([1] * 8, 100, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    assert (d.recommendation.num_workers, d.recommendation.torch_threads_main) == (1, 1)


def test_thread_advice_names_only_settings_not_already_in_effect(tmp_path: Path) -> None:
    # GIVEN the oversubscribed run, but the workers already run 1 torch thread, OMP_NUM_THREADS=1
    # is set, and the main process already runs the one thread the plan would give it
    f = facts(4, cores=2, cpu=0.9, delay=0.3, main_delay=0.3, worker_threads=1, main_threads=1,
              thread_env={"OMP_NUM_THREADS": "1"})
    d = run(loop([1] * 8, 100, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    rec, o = d.recommendation, finding(d, "TL101")
    # THEN only what is not in effect is advised, and what is in effect is said to be
    assert rec.torch_threads_per_worker is None and rec.torch_threads_main is None
    assert rec.env == {"MKL_NUM_THREADS": "1"}
    assert "Already in effect: 1 torch thread per worker, OMP_NUM_THREADS=1" in o.advice
    assert "calls torch.set_num_threads(1)" not in o.advice


def test_a_finding_outvoted_by_the_recommendation_says_so(tmp_path: Path) -> None:
    # GIVEN oversubscription (main: 1 worker) and CPU-starved loading (its own plan) at once
    f = facts(4, cores=2, cpu=0.95, delay=0.3, main_delay=0.3, worker_threads=2, main_threads=2,
              main=ProcessUsage("main", 10.0, cpu_s=9.0, run_delay_s=3.0, ctx_involuntary=0))
    d = run(loop([40] * 8, 60, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    # THEN every finding that proposed another num_workers says the recommendation's and drops its own
    for x in d.findings:
        assert x.settings.get("num_workers", d.recommendation.num_workers) == d.recommendation.num_workers
    others = [x for x in d.findings if x.id != "TL101" and x.advice.startswith("Superseded")]
    assert all(f"num_workers={d.recommendation.num_workers}" in x.advice for x in others)


def test_oversubscription_states_its_bound_and_measures_instead_of_estimating(tmp_path: Path) -> None:
    # GIVEN heavy contention (10 threads on 2 cores, 2.8 per core), a main process whose 2 math
    # threads wait for a CPU 15 % of the time each, and a 20 % exposed data wait (ceiling 1.25x)
    f = facts(4, cores=2, cpu=0.9, delay=0.3, main_delay=0.3, worker_threads=2, main_threads=2)
    d = run(loop([20] * 8, 80, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"
    rec, o = d.recommendation, finding(d, "TL101")
    # THEN the bound is the ceiling times what the loop's threads lose waiting, 1.25 / (1 - 0.15),
    # under the 2.8-way sharing; no estimate (the wasted CPU is not separable), the sweep instead
    assert rec.expected_speedup is None
    assert rec.expected_speedup_bound == pytest.approx(1.25 / 0.85, rel=2e-2)
    assert "at most 1.47x (the threads share the cores 2.8 ways" in o.advice
    assert rec.measure_with == "tracelens sweep --num-workers 2,4 --main-threads 1,2 train.py ARGS"


def test_stalled_main_threads_without_crowding_are_a_busy_machine_not_oversubscription(tmp_path: Path) -> None:
    # GIVEN 1 worker and 2 main math threads on 2 cores (1.1 runnable per core: not crowded by this
    # run), but the main threads wait for a CPU 45 % of the time each (other tenants hold cores), in a
    # run.json without the CPU supply record (an older file)
    f = facts(1, cores=2, cpu=0.3, delay=0.05, main_delay=0.9, worker_threads=1, main_threads=2, main_cpu=0.9)
    d = run(loop([1] * 8, 100, MULTI, gpu=False), tmp_path, f)
    # THEN the job's own threads fit: no oversubscription; the outside load is inferred and carries
    # the thread advice, with the sweep that measures it instead of an estimate
    assert d.diagnosis == "healthy" and "TL101" not in ids(d)
    b = finding(d, "TL105")
    assert b.kind == "busy_machine" and b.evidence["measured"] is False and b.confidence == pytest.approx(0.6)
    assert b.evidence["main_thread_stall_fraction"] == pytest.approx(0.45)
    assert d.recommendation.torch_threads_main == 1 and d.recommendation.num_workers == 1
    assert "(inferred)" in b.title and "--main-threads 1,2" in (d.recommendation.measure_with or "")
    assert d.recommendation.expected_speedup is None


def test_many_threads_without_run_queue_delay_is_not_oversubscription(tmp_path: Path) -> None:
    f = facts(4, cores=2, cpu=0.9, delay=0.01, worker_threads=2, main_threads=2)
    d = run(loop([1] * 8, 100, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "healthy" and "TL101" not in ids(d)


def test_busy_looking_workers_that_wait_for_cpus_are_oversubscribed_not_starved(tmp_path: Path) -> None:
    # GIVEN workers burning 1.8 cores each (spinning math threads) and waiting for a CPU 40 %
    f = facts(2, cores=2, cpu=1.8, delay=0.4, worker_threads=1, main_threads=1)
    d = run(loop([40] * 8, 60, MULTI, gpu=False), tmp_path, f)
    assert d.diagnosis == "oversubscription"


# --- secondary findings ----------------------------------------------------------------------


@pytest.mark.parametrize(("copy_ms", "severity"), [(0.4, None), (0.6, "low"), (6.0, "medium")])
def test_pageable_copies_boundaries(tmp_path: Path, copy_ms: float, severity: str | None) -> None:
    # GIVEN 100 ms steps with ``copy_ms`` of pageable host-to-device copy each
    d = run(loop([1] * 6, 99, MULTI, copy_ms=copy_ms), tmp_path)
    if severity is None:
        assert "TL201" not in ids(d) and d.recommendation.pin_memory is False
    else:
        assert finding(d, "TL201").severity == severity
        assert d.recommendation.pin_memory is True
        assert "pin_memory=True" in " ".join(d.recommendation.notes)


def test_pageable_rule_needs_gpu_activity(tmp_path: Path) -> None:
    d = run(loop([1] * 6, 99, gpu=False), tmp_path)
    assert skip_reason(d, "TL201") == "no GPU activity in the trace"


@pytest.mark.parametrize(("idle_ms", "fires"), [(10.0, False), (30.0, True)])
def test_host_bound_when_gpu_idles_not_for_data(tmp_path: Path, idle_ms: float, fires: bool) -> None:
    d = run(loop([1] * 6, 99, MULTI, idle_ms=idle_ms), tmp_path)
    assert ("TL204" in ids(d)) is fires
    assert d.diagnosis == "healthy"  # the loader is not blamed


def test_worker_respawn_from_the_trace(tmp_path: Path) -> None:
    # GIVEN a multi-process loop where step 4 holds the epoch's last (StopIteration) __next__
    # and the new iterator's first one, which waits 400 ms for worker start-up
    b = loop([0.5] * 6, 100, MULTI)
    b.next_call(3 * 100_500 + 200, 400_000, MULTI)  # inside step 4, after its own call
    d = run(b, tmp_path)
    f = finding(d, "TL202")
    assert f.evidence["startup_ms_median"] == pytest.approx(400.0)
    assert d.recommendation.persistent_workers is True


def test_worker_respawn_from_run_facts_and_not_when_persistent(tmp_path: Path) -> None:
    b = loop([0.5] * 6, 100, MULTI)
    f = facts(2, iterator_creations=3, first_next_ms=(200.0, 210.0, 190.0))
    d = run(b, tmp_path, f)
    assert finding(d, "TL202").evidence["iterators"] == 3
    assert d.recommendation.persistent_workers is True
    persistent = RunFacts(settings=LoaderSettings(2, False, True, 2), iterator_creations=3,
                          first_next_ms=(200.0, 210.0, 190.0))
    assert "TL202" not in ids(run(b, tmp_path, persistent))


def test_worker_respawn_below_threshold_is_ignored(tmp_path: Path) -> None:
    f = facts(2, iterator_creations=3, first_next_ms=(20.0, 21.0, 19.0))
    assert "TL202" not in ids(run(loop([0.5] * 6, 100, MULTI), tmp_path, f))


def test_worker_respawn_skipped_without_workers(tmp_path: Path) -> None:
    d = run(loop([0.5] * 6, 100), tmp_path)
    assert skip_reason(d, "TL202") == "num_workers=0: no worker processes"


def epochs_loop(calls_per_step: Sequence[Sequence[float]], compute_ms: float) -> TraceBuilder:
    """One step per entry: its ``__next__`` calls back to back (ms), then ``compute_ms`` of CPU work."""
    b = TraceBuilder()
    t = 0.0
    for i, calls in enumerate(calls_per_step):
        dur = (sum(calls) + compute_ms) * 1000
        b.step(i + 1, t, dur)
        c = t
        for w in calls:
            b.next_call(c, w * 1000, MULTI)
            c += w * 1000
        t += dur
    return b


def test_epoch_turnover_refill_counts_as_start_up_not_steady_wait(tmp_path: Path) -> None:
    # GIVEN 2 workers x prefetch 2, 3 epochs of 8 batches, 20 ms of compute per step: each epoch
    # ends with a 30 ms StopIteration call (worker shutdown), the new iterator's first batch waits
    # 400 ms (start-up), and the next refilling batches 10 ms; between epochs the loader keeps up
    steps: list[list[float]] = []
    for epoch in range(3):
        for k in range(8):
            w = [400.0] if (epoch and k == 0) else [10.0] if (epoch and k in (1, 2)) else [0.5]
            steps.append(w + ([30.0] if k == 7 and epoch < 2 else []))
    f = facts(2, cores=2, cpu=0.9, batch_ms=1.0, iterator_creations=3, first_next_ms=(400.0, 400.0))
    d = run(epochs_loop(steps, 20), tmp_path, f)
    # THEN the turnover is start-up: input_bound with worker_respawn as the main finding,
    # persistent workers, the worker count and prefetch kept, no CPU-starvation or prefetch advice
    assert d.diagnosis == "input_bound" and d.findings[0].id == "TL202"
    assert finding(d, "TL202").severity == "high" and "TL102" not in ids(d) and "TL203" not in ids(d)
    rec = d.recommendation
    assert (rec.num_workers, rec.persistent_workers, rec.prefetch_factor) == (2, True, 2)
    assert "start-up" in rec.notes[0] and rec.expected_speedup is not None and rec.expected_speedup > 2


def test_epoch_turnover_rows_are_the_stop_step_and_the_refill() -> None:
    per_step = StepTable({"next_calls": [1, 1, 2, 1, 1, 1, 1], "next_longest_ms": [1, 1, 30, 400, 9, 9, 1]})
    assert context.epoch_turnover_rows(per_step, 2) == [2, 3, 4]
    assert context.epoch_turnover_rows(per_step, 4) == [2, 3, 4, 5, 6]


def test_steps_drawing_two_training_loaders_are_no_epoch_ends() -> None:
    # GIVEN for x, u in zip(labeled, unlabeled): every step holds two __next__ calls, and one
    # epoch end adds the StopIteration call (3 calls) before a 400 ms start-up
    per_step = StepTable({"next_calls": [2, 2, 2, 3, 2, 2, 2], "next_longest_ms": [5, 5, 5, 30, 400, 5, 5]})
    # THEN only that epoch end is a turnover, not every step
    assert context.epoch_turnover_rows(per_step, 1) == [3, 4]


def test_small_bursts_under_the_wait_threshold_get_no_prefetch_advice(tmp_path: Path) -> None:
    # GIVEN 2 known workers and one 120 ms wait in 40 steps of 100 ms: 2.9 % exposed
    waits = [120.0 if i == 20 else 0.2 for i in range(40)]
    d = run(loop(waits, 100, MULTI), tmp_path, RunFacts(settings=LoaderSettings(2, False, False, 2)))
    assert d.diagnosis == "healthy" and "TL203" not in ids(d)


def test_rare_long_waits_ask_for_deeper_prefetch(tmp_path: Path) -> None:
    # GIVEN 2 known workers, one 120 ms wait every 10 calls (period 10 >= 2 x 2), C = 50 ms
    waits = [120.0 if i % 10 == 9 else 0.2 for i in range(20)]
    d = run(loop(waits, 50, MULTI), tmp_path, RunFacts(settings=LoaderSettings(2, False, False, 2)))
    f = finding(d, "TL203")
    # THEN 120 / 50 / 2 -> 2 more batches per worker
    assert d.recommendation.prefetch_factor == 4 and f.settings == {"prefetch_factor": 4}


def test_periodic_long_waits_are_a_rate_deficit_not_prefetch(tmp_path: Path) -> None:
    # GIVEN 4 known workers and every 4th call long: the queue drains, more workers are needed
    waits = [120.0 if i % 4 == 3 else 0.2 for i in range(16)]
    d = run(loop(waits, 50, MULTI), tmp_path, RunFacts(settings=LoaderSettings(4, False, False, 2)))
    assert "TL203" not in ids(d) and d.diagnosis == "input_bound"
    assert d.recommendation.num_workers > 4


def test_prefetch_rule_needs_a_known_worker_count(tmp_path: Path) -> None:
    d = run(loop([0.2] * 9 + [120.0], 50, MULTI), tmp_path)
    assert skip_reason(d, "TL203") == "num_workers unknown"


# --- trace quality and undetermined ------------------------------------------------------------


def test_no_steps_at_all_is_undetermined(tmp_path: Path) -> None:
    d = run(TraceBuilder().op("aten::mm", 0, 100), tmp_path)
    assert d.diagnosis == "undetermined" and finding(d, "TL301").severity == "high"
    assert "schedule(" in finding(d, "TL301").advice


def test_steps_without_loader_events_are_undetermined(tmp_path: Path) -> None:
    b = TraceBuilder()
    for i in range(6):
        b.step(i + 1, i * 100_000, 100_000).kernel(i * 100_000, 90_000)
    d = run(b, tmp_path)
    assert d.diagnosis == "undetermined" and "TL302" in ids(d)


def test_fallback_steps_are_flagged(tmp_path: Path) -> None:
    b = TraceBuilder()
    for i in range(6):
        b.next_call(i * 100_000, 30_000).kernel(i * 100_000 + 30_000, 70_000)
    d = run(b, tmp_path)
    assert "TL303" in ids(d) and d.diagnosis == "input_bound"


def test_few_steps_lower_the_confidence(tmp_path: Path) -> None:
    few = run(loop([30] * 3, 70), tmp_path)
    many = run(loop([30] * 12, 70), tmp_path)
    assert "TL304" in ids(few) and "TL304" not in ids(many)
    assert few.confidence is not None and many.confidence is not None and few.confidence < many.confidence
    assert finding(few, "TL304").severity == "medium"


def test_a_healthy_verdict_from_fewer_than_ten_steps_is_never_confident(tmp_path: Path) -> None:
    # GIVEN 6 steps that barely wait (healthy), WHEN diagnosed from the trace alone
    d = run(loop([1] * 6, 99), tmp_path)
    # THEN healthy, but with confidence capped, and TL304 (low) says how to record 20 steps
    assert d.diagnosis == "healthy" and d.confidence is not None and d.confidence <= 0.5
    f = finding(d, "TL304")
    assert f.severity == "low" and "schedule(wait=5, warmup=2, active=20)" in f.advice
    (tmp_path / "more").mkdir()
    assert run(loop([1] * 12, 99), tmp_path / "more").confidence == 0.9


def _recorded(**kw: object) -> RunFacts:
    base: dict[str, object] = dict(kind="script", target="train.py", args=("--lr", "0.1"), wait=3, warmup=2,
                                   active=20, steps=4, loader_id=1, loader_batches=9, batches_per_epoch=3,
                                   stopped_after_window=False)
    base.update(kw)
    return RunFacts(settings=LoaderSettings(num_workers=0), recording=Recording(**base))  # type: ignore[arg-type]


@pytest.mark.parametrize(("recording", "advice"), [
    # the user asked for a short window: record 20 steps of the same run
    (dict(active=4, stopped_after_window=True, loader_batches=9),
     "Record 20 steps: `tracelens profile --wait 3 --warmup 2 --active 20 train.py --lr 0.1`"),
    # the script ended after 16 batches: skip fewer of them
    (dict(loader_batches=16, steps=11, batches_per_epoch=8),
     "drew only 16 batches from loader #1, 8 per epoch: skip fewer of them, "
     "`tracelens profile --wait 1 --warmup 1 --active 14 train.py --lr 0.1`"),
    # the script ended after 9 batches: it must run longer
    (dict(), "drew only 9 batches from loader #1, 3 per epoch: run it for at least 25 batches"),
    (dict(kind="module", target="pkg.train", args=()), "`tracelens profile --wait 3 --warmup 2 --active 20 -m pkg.train`"),
])
def test_too_few_steps_names_the_flags_that_record_enough_for_this_run(
        tmp_path: Path, recording: dict[str, object], advice: str) -> None:
    d = run(loop([1] * 4, 99), tmp_path, _recorded(**recording))
    assert advice in finding(d, "TL304").advice


def test_with_stack_is_flagged(tmp_path: Path) -> None:
    b = loop([1] * 6, 99)
    b.add("train.py(12): step", "python_function", 0, 10)
    assert "TL306" in ids(run(b, tmp_path))


def test_gpu_run_without_gpu_activity_is_flagged(tmp_path: Path) -> None:
    b = loop([1] * 6, 99, gpu=False, b=TraceBuilder(device_names=("NVIDIA H100",)))
    d = run(b, tmp_path)
    assert "ProfilerActivity.CUDA" in finding(d, "TL307").advice


def test_num_workers_zero_recommendation_has_no_worker_only_settings(tmp_path: Path) -> None:
    d = run(loop([1] * 6, 99, gpu=False), tmp_path, facts(0, cpu=0.9, batch_ms=1.0))
    rec = d.recommendation
    assert d.diagnosis == "healthy" and rec.num_workers == 0
    assert rec.prefetch_factor is None and rec.persistent_workers is False


def test_known_settings_prefer_run_facts(tmp_path: Path) -> None:
    a = analyze(loop([1] * 6, 99), tmp_path)
    assert known_settings(a).num_workers == 0
    assert known_settings(a, facts(3)).num_workers == 3


def _loop_json(tmp_path: Path, *, wait_dur: list[object], step_dur: object = 100_000) -> Path:
    events: list[dict[str, object]] = []
    for i, d in enumerate(wait_dur):
        t = i * 100_000
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{i}", "pid": 1, "tid": 1,
                       "ts": t, "dur": step_dur})
        events.append({"ph": "X", "cat": "user_annotation", "pid": 1, "tid": 1, "ts": t, "dur": d,
                       "name": "enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__"})
    path = tmp_path / "t.json"
    path.write_text(__import__("json").dumps({"traceEvents": events}))
    return path


@pytest.mark.parametrize("bad", [-5, "NaN", None, 1e300])
def test_a_dropped_wait_makes_the_run_undetermined_not_healthy(tmp_path: Path, bad: object) -> None:
    # GIVEN small waits, and one __next__ whose dur is negative, missing, not a number or absurd
    from tracelens.api import analyze_path

    waits: list[object] = [1000] * 8
    waits[3] = bad
    path = _loop_json(tmp_path, wait_dur=waits)
    if bad == "NaN":
        path.write_text(path.read_text().replace('"NaN"', "NaN"))
    r = analyze_path(path).ranks[0]
    # THEN the wait may be missing from the numbers: no healthy verdict, and TL305 says why
    assert r.diagnosis.diagnosis == "undetermined"
    tl305 = finding(r.diagnosis, "TL305")
    assert tl305.severity == "high" and tl305.evidence["dropped_waits"] == 1
    assert tl305.evidence["bad_time_examples"][0].startswith("enumerate(DataLoader)")


def test_steps_of_zero_length_are_no_evidence(tmp_path: Path) -> None:
    from tracelens.api import analyze_path

    r = analyze_path(_loop_json(tmp_path, wait_dur=[0] * 8, step_dur=0)).ranks[0]
    assert r.diagnosis.diagnosis == "undetermined"
    assert finding(r.diagnosis, "TL305").evidence["zero_length_steps"] == 8


@pytest.mark.parametrize(("iterator", "claims_workers"), [(MULTI, True), ("", False)])
def test_the_keep_num_workers_note_claims_worker_processes_only_when_the_trace_shows_them(
        tmp_path: Path, iterator: str, claims_workers: bool) -> None:
    # GIVEN steps whose __next__ names the multi-process iterator, or no iterator kind at all
    b = TraceBuilder()
    for i in range(6):
        b.step(i + 1, i * 100_000, 100_000)
        b.kernel(i * 100_000 + 1_000, 90_000)
        if iterator:
            b.next_call(i * 100_000, 500, iterator)
    # WHEN diagnosed without run facts (num_workers unknown)
    notes = " ".join(run(b, tmp_path).recommendation.notes)
    # THEN the note says worker processes only when they are in the trace (issue 21 item 10)
    assert ("the trace shows worker processes" in notes) is claims_workers
    assert "Keep your current num_workers" in notes
