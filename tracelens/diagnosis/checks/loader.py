"""The main-cause rules (TL1xx): oversubscription, CPU starvation, I/O-bound and input-bound loading."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context, loading_cause
from tracelens.diagnosis.facts import RunFacts
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.plan import plan_workers, worker_capacity
from tracelens.diagnosis.rule import (
    PER_SAMPLE_COST_ADVICE,
    STORAGE_ADVICE,
    Rule,
    declare_rule,
    input_bound_severity,
    make_finding,
    needs_machine,
    needs_steps,
    needs_telemetry,
)
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity, pct


def needs_shortage(ctx: Context) -> str | None:
    """TL102/TL103 name a shortage of loading capacity; with the current workers' measured
    capacity well above the demand, a wait is bursts or a busy machine, which TL104 reports."""
    if (r := needs_telemetry(ctx)) is not None:
        return r
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return (f"the {ctx.workers_now} worker(s) can produce {cap:.1f}x the batches the loop consumes "
                f"(num_workers × C / T_b ≥ {threshold('worker_capacity_ratio'):g}): a data wait is not "
                "a loading-capacity shortage and more workers cannot help (TL104 reports it)")
    return None


def _oversubscribed_threads(ctx: Context) -> tuple[int | None, float | None]:
    """Runnable threads this rank's loader setup asks for, and their ratio to the cores per rank."""
    f = ctx.facts
    if f is None or ctx.budget is None:
        return None, None
    workers = ctx.workers_now or 0
    per_worker = f.torch_threads_worker
    if per_worker is None:
        measured = [w.threads for w in f.workers if w.threads]
        per_worker = 1 if not measured else max(1, int(np.median(measured)) - 1)  # minus the queue thread
    main = f.torch_threads_main or 1
    pin = 1 if (f.settings.pin_memory and workers > 0) else 0
    demand = main + workers * per_worker + pin
    return demand, demand / max(ctx.budget.cores_per_rank, 1e-9)


@declare_rule("TL101", "oversubscription", Severity.HIGH, "Loader threads oversubscribe the cores",
              precondition="run.json with machine facts and process telemetry",
              thresholds=("oversubscription_ratio", "run_delay_fraction", "involuntary_switch_rate",
                          "main_thread_stall_fraction"),
              requires=lambda c: needs_machine(c) or needs_steps(c), main=True)
def oversubscription(rule: Rule, ctx: Context) -> Finding | None:
    f = ctx.facts
    assert f is not None and ctx.budget is not None
    demand, ratio = _oversubscribed_threads(ctx)
    procs = [p for p in (f.main, *f.workers) if p is not None and p.cpu_s is not None]
    # Threads runnable on average (on a CPU or waiting for one), over this rank's processes and
    # the whole telemetry window: a worker that lived for part of it (workers restarted every
    # epoch) counts for that part only.
    window_s = max((p.wall_s for p in procs), default=0.0) or 1e-9
    load = sum(((p.cpu_s or 0.0) + (p.run_delay_s or 0.0)) / window_s for p in procs)
    load_ratio = load / max(ctx.budget.cores_per_rank, 1e-9)
    delays = [p.run_delay_fraction for p in procs if p.run_delay_fraction is not None]
    invol = [p.involuntary_per_s for p in procs if p.involuntary_per_s is not None]
    max_delay = max(delays) if delays else None
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    confirmed = (max_delay is not None and max_delay >= threshold("run_delay_fraction")) or (
        bool(invol) and float(np.median(invol)) >= threshold("involuntary_switch_rate"))
    stall = main_thread_stall(f)
    stalled = stall is not None and stall >= threshold("main_thread_stall_fraction")
    if not stalled and (not confirmed or load_ratio < threshold("oversubscription_ratio")):
        return None
    slowed_main = main_delay is not None and main_delay >= threshold("run_delay_fraction")
    severity = Severity.HIGH if slowed_main or ctx.input_bound else Severity.MEDIUM
    workers = ctx.workers_now or 0
    # The workers get the cores the main process leaves: its measured CPU use (at most one core
    # once it runs one math thread), rounded to whole workers; a worker sharing a core with a
    # light main loop loses only the main loop's share, an idle core loses all of it.
    main_cores = min(1.0, f.main.cpu_fraction) if f.main is not None and f.main.cpu_fraction is not None else 1.0
    room = max(1, math.floor(ctx.budget.cores_per_rank - main_cores + 0.5))
    keep = min(workers, room)
    main_threads = max(1, math.floor(ctx.budget.cores_per_rank) - keep)
    if stalled and stall is not None and f.torch_threads_main:  # the threads that really get a core
        main_threads = max(1, min(main_threads, round(f.torch_threads_main * (1 - stall))))
    gain, gain_text = _oversubscription_gain(ctx, load_ratio, stall)
    changes, already = _thread_changes(f, main_threads)
    evidence = {
        "runnable_threads_mean": load, "threads_per_core": load_ratio,
        "configured_threads": demand, "configured_threads_per_core": ratio,
        "cores_per_rank": ctx.budget.cores_per_rank, "torch_threads_main": f.torch_threads_main,
        "torch_threads_worker": f.torch_threads_worker, "num_workers": workers,
        "max_run_delay_fraction": max_delay, "main_run_delay_fraction": main_delay,
        "main_thread_stall_fraction": stall,
        "main_cpu_cores": main_cores,
        "involuntary_switches_per_s_median": float(np.median(invol)) if invol else None,
        "loading_cpu_fraction": ctx.loading.cpu_fraction if ctx.loading else None,
        "exposed_wait_fraction": ctx.steady.exposed_fraction if ctx.steady else None,
    }
    text = (f"{load:.1f} threads runnable on average on {ctx.budget.cores_per_rank:g} cores per rank "
            f"({load_ratio:.1f} per core; {demand} configured); processes wait for a CPU up to "
            f"{pct(max_delay or 0)} of the time")
    if stalled and stall is not None:
        text = (f"the training process's {f.torch_threads_main} math threads each wait for a CPU "
                f"{pct(stall)} of the time (its steps slow down at every parallel region); {text}")
    steps = [f"num_workers={keep} (the {ctx.budget.cores_per_rank:g} cores per rank minus the main process's "
             f"measured {main_cores:.2f} cores, rounded to whole workers)"]
    if "torch_threads_per_worker" in changes:
        steps.insert(0, "1 math thread per worker (a module-level worker_init_fn that calls torch.set_num_threads(1))")
    if changes.get("env"):
        steps.insert(1 if len(steps) > 1 else 0, " ".join(f"{k}=1" for k in changes["env"]) + " in the environment")
    if "torch_threads_main" in changes:
        steps.append(f"torch.set_num_threads({main_threads}) in the main process")
    said = f" Already in effect: {', '.join(already)}." if already else ""
    return make_finding(rule, ctx, severity, 0.85, title=f"Oversubscribed cores: {text}", evidence=evidence,
                        advice=(f"Use {'; '.join(steps)}.{said} Adding workers makes this worse. {gain_text}"),
                        settings={"num_workers": keep, "expected_speedup": gain, **changes})


def _thread_changes(f: RunFacts, main_threads: int) -> tuple[dict[str, Any], list[str]]:
    """The thread settings to propose (only those not already in effect) and those that are."""
    changes: dict[str, Any] = {}
    already: list[str] = []
    if f.torch_threads_worker == 1:
        already.append("1 torch thread per worker")
    else:
        changes["torch_threads_per_worker"] = 1
    env = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if f.thread_env.get(k) != "1"}
    already += [f"{k}=1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in env]
    if env:
        changes["env"] = env
    if f.torch_threads_main == main_threads:
        already.append(f"torch.set_num_threads({main_threads}) in the main process")
    else:
        changes["torch_threads_main"] = main_threads
    return changes, already


def main_thread_stall(f: RunFacts) -> float | None:
    """Share of the time each of the main process's math threads was runnable but not running
    (its run-queue delay spread over its torch threads); None with one thread or no telemetry."""
    if f.main is None or f.main.run_delay_fraction is None or not f.torch_threads_main or f.torch_threads_main < 2:
        return None
    return min(1.0, f.main.run_delay_fraction / f.torch_threads_main)


def _oversubscription_gain(ctx: Context, load_ratio: float, stall: float | None = None) -> tuple[float, str]:
    """Expected gain of removing the contention, and the sentence that bounds it.

    Two bounds, the smaller wins: the contention itself (the threads share the cores
    ``load_ratio`` ways; the main process waits for a CPU its run-queue delay), and the data wait
    (the ceiling) times what the training loop's own threads gain when they stop waiting for a
    CPU (the main process's run-queue delay per thread).
    """
    st, f = ctx.steady, ctx.facts
    ceiling = sizing.speedup_ceiling(st.exposed_fraction) if st is not None else 1.0
    main = f.main if f is not None else None
    delay = main.run_delay_fraction if main is not None and main.run_delay_fraction is not None else 0.0
    per_thread = stall if stall is not None else (min(1.0, delay / max(1, main.threads or 1)) if main is not None else 0.0)
    loop_gain = 1.0 / (1.0 - min(per_thread, 0.5))
    contention = max(min(load_ratio, 1.0 / (1.0 - min(delay, 0.9))), loop_gain)
    gain = max(1.0, min(contention, ceiling * loop_gain))
    if loop_gain > 1.005 and gain > ceiling + 0.005:
        return gain, (f"Expected: up to {gain:.2f}x, above the {ceiling:.2f}x ceiling (which counts only the data "
                      f"wait) because the training loop's own threads also stop waiting for a CPU "
                      f"({pct(per_thread)} of the time each); an upper bound: measure it.")
    return gain, (f"Expected: up to {gain:.2f}x (the exposed data wait bounds it at {ceiling:.2f}x); the CPU "
                  "work itself stays, so measure it.")


@declare_rule("TL102", "cpu_starvation", Severity.HIGH, "The loading work is CPU-bound and too slow",
              precondition="input-bound steps and loader telemetry (per-batch records or worker CPU time); skipped "
                           "when the current workers' measured capacity is worker_capacity_ratio x the demand or more",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "cpu_bound_fraction",
                          "io_bound_fraction", "headroom_fraction", "worker_capacity_ratio"),
              requires=needs_shortage, main=True)
def cpu_starvation(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "cpu":
        return None
    plan = plan_workers(ctx, "cpu")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    conf = 0.9 if ld.source.startswith("batch") else 0.75
    return make_finding(rule, ctx, sev, conf,
              title=(f"CPU-starved loader: {pct(ctx.steady.exposed_fraction)} of each step waits for "
                     f"data while the loading work is on a CPU {pct(ld.cpu_fraction)} of the time "
                     f"and waits for one {pct(ld.run_delay_fraction or 0.0)}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction,
                        "loading_run_delay_fraction": ld.run_delay_fraction, "loading_source": ld.source,
                        **plan.evidence},
              advice=plan.advice(PER_SAMPLE_COST_ADVICE),
              settings=plan.settings)


@declare_rule("TL103", "io_bound", Severity.HIGH, "The loading work mostly waits (storage, network, sleep)",
              precondition="input-bound steps and loader telemetry; skipped when the current workers' measured "
                           "capacity is worker_capacity_ratio x the demand or more",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "io_bound_fraction",
                          "cpu_bound_fraction", "run_delay_fraction", "headroom_fraction", "latency_workers_per_core",
                          "latency_workers_max", "worker_capacity_ratio"),
              requires=needs_shortage, main=True)
def io_bound(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "io":
        return None
    plan = plan_workers(ctx, "latency")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    return make_finding(rule, ctx, sev, 0.85 if ld.source.startswith("batch") else 0.7,
              title=(f"I/O- or latency-bound loader: {pct(ctx.steady.exposed_fraction)} of each step "
                     f"waits for data while the loading work wants a CPU only {pct(ld.demand_fraction)} "
                     f"of the time"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction, "loading_source": ld.source,
                        "read_bytes": ld.read_bytes, **plan.evidence},
              advice=plan.advice(STORAGE_ADVICE),
              settings=plan.settings)


@declare_rule("TL104", "input_bound", Severity.HIGH,
              "Input-bound, cause not determinable from the evidence, or not a loader capacity shortage "
              "(the current workers' measured capacity is worker_capacity_ratio x the demand or more: the "
              "wait is bursts or a busy machine, and num_workers stays)",
              precondition="steps with DataLoader events",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "outlier_compute_factor",
                          "headroom_fraction", "assumed_worker_cap", "long_wait_factor",
                          "worker_capacity_ratio", "run_delay_fraction", "cpu_bound_fraction",
                          "io_bound_fraction"),
              requires=needs_steps, main=True)
def input_bound(rule: Rule, ctx: Context) -> Finding | None:
    assert ctx.steady is not None
    if not ctx.input_bound:
        return None
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return _surplus_capacity(rule, ctx, cap)
    if loading_cause(ctx.loading) is not None:
        return None  # TL102 / TL103 name the cause
    plan = plan_workers(ctx, "unknown")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    shape = ctx.shape
    pattern = ("most __next__ calls find a batch ready and every "
               f"{shape.period:.0f}th waits {shape.long_median_ms:.1f} ms (a drained queue)"
               if shape.is_bimodal and shape.period else
               f"every __next__ waits (median {shape.median_ms:.1f} ms)")
    why = ("the loading work is neither clearly CPU-bound nor clearly waiting (it wants a CPU "
           + pct(ctx.loading.demand_fraction) + " of the time)"
           if ctx.loading is not None else "the trace holds no CPU or I/O telemetry of the loading work")
    return make_finding(rule, ctx, sev, 0.9,
              title=(f"Input-bound: {pct(ctx.steady.exposed_fraction)} of each step waits for data "
                     f"({ctx.analysis.iterator.replace('_', '-')} iterator; {pattern}); cause not "
                     f"determinable: {why}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "data_wait_fraction": ctx.steady.data_wait_fraction,
                        "iterator": ctx.analysis.iterator, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_wait_period_calls": shape.period,
                        **plan.evidence},
              advice=plan.advice(f"if the loading is CPU-bound: {PER_SAMPLE_COST_ADVICE}; if it waits "
                                 f"on storage: {STORAGE_ADVICE}") +
              " To settle CPU-bound vs I/O-bound vs oversubscribed, re-run under `tracelens profile "
              "train.py ARGS`: it records per-worker CPU time, I/O bytes and run-queue delay.",
              settings=plan.settings)


def _surplus_capacity(rule: Rule, ctx: Context, cap: float) -> Finding:
    """Input-bound although the current workers produce ``cap`` times the demand: the wait is
    bursts (a shallow prefetch queue, TL203) or a busy machine, not too few workers."""
    st, f, shape, n = ctx.steady, ctx.facts, ctx.shape, ctx.workers_now
    assert st is not None and f is not None and n
    t_b = float(np.median(f.batch_ms))
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    delays = [w.run_delay_fraction for w in f.workers if w.run_delay_fraction is not None]
    worker_delay = float(np.median(delays)) if delays else None
    busy = any(d is not None and d >= threshold("run_delay_fraction") for d in (main_delay, worker_delay))
    sev = input_bound_severity(st.exposed_fraction)
    if shape.is_bimodal:
        bursts = (f"The waits are bursty ({shape.long_calls} of {shape.calls} __next__ calls wait "
                  f"{shape.long_median_ms:.1f} ms while the rest find a batch ready): a deeper prefetch "
                  "queue absorbs them (TL203 sizes prefetch_factor when the spikes outgrow the queue).")
    else:
        bursts = (f"The waits are not bursty (median __next__ {shape.median_ms:.1f} ms, p90 "
                  f"{shape.p90_ms:.1f} ms), so a deeper prefetch queue is unlikely to help.")
    parts = [f"{role} {pct(d)}" for role, d in (("the main process", main_delay),
                                                 ("the workers (median)", worker_delay)) if d is not None]
    if parts:
        queue = (f"Run-queue delay (runnable but waiting for a CPU): {' and '.join(parts)} of the time"
                 + (f", at or above the {pct(threshold('run_delay_fraction'))} that marks a busy machine. "
                    if busy else ". "))
    else:
        queue = "The run-queue delay of the processes was not recorded. "
    return make_finding(rule, ctx, sev, 0.8,
              title=(f"Input-bound, not a loader capacity shortage: {pct(st.exposed_fraction)} of each "
                     f"step waits for data although the {n} worker(s) produce {cap:.1f}x the batches the "
                     f"loop consumes (T_b {t_b:.1f} ms per batch, C {st.compute_ms:.1f} ms per step); "
                     f"the wait comes from bursts or a busy machine"),
              evidence={"exposed_wait_fraction": st.exposed_fraction,
                        "data_wait_fraction": st.data_wait_fraction, "num_workers": n,
                        "batch_ms": t_b, "batch_ms_source": f"measured per batch in the {f.batch_source}",
                        "compute_ms_per_step": st.compute_ms,
                        "workers_needed": sizing.workers_needed(t_b, st.compute_ms),
                        "worker_capacity_ratio": cap, "main_run_delay_fraction": main_delay,
                        "worker_run_delay_fraction": worker_delay, "busy_machine": busy,
                        "bursty_waits": shape.is_bimodal, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_calls": shape.long_calls,
                        "calls": shape.calls, "recommended_num_workers": n},
              advice=(f"Keep num_workers={n}: at T_b = {t_b:.1f} ms per batch the workers' capacity is "
                      f"num_workers × C / T_b = {n} × {st.compute_ms:.1f} / {t_b:.1f} = {cap:.1f}x the "
                      f"demand, so the wait is not a shortage of loading capacity and more workers "
                      f"cannot shorten it. {bursts} {queue}Check the machine for other processes "
                      "(uptime, top) and re-measure when it is quiet before changing the loader."),
              settings={"num_workers": n})


#: The rules of this module, in the order they run.
RULES: tuple[Rule, ...] = (oversubscription, cpu_starvation, io_bound, input_bound,)
