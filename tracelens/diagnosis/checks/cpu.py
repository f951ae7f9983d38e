"""Who holds the cores (TL101, TL105): the job's own threads (oversubscription), or processes
outside the job (a busy machine, a finding beside the diagnosis, never the diagnosis itself)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context, busy_cores_threshold, loading_cause
from tracelens.diagnosis.facts import ProcessUsage, RunFacts
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.rule import (
    Rule,
    declare_rule,
    make_finding,
    needs_machine,
    needs_steps,
    sweep_command,
)
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity, pct


def configured_threads(ctx: Context) -> int | None:
    """Runnable threads this rank's setup asks for: main math threads + workers × worker threads +
    the pin-memory thread (None without machine facts)."""
    f = ctx.facts
    if f is None or ctx.budget is None:
        return None
    workers = ctx.workers_now or 0
    per_worker = f.torch_threads_worker
    if per_worker is None:
        measured = [w.threads for w in f.workers if w.threads]
        per_worker = 1 if not measured else max(1, int(np.median(measured)) - 1)  # minus the queue thread
    pin = 1 if (f.settings.pin_memory and workers > 0) else 0
    return (f.torch_threads_main or 1) + workers * per_worker + pin


def _processes(f: RunFacts) -> list[ProcessUsage]:
    return [p for p in (f.main, *f.workers) if p is not None and p.cpu_s is not None]


def runnable_threads(f: RunFacts) -> float:
    """Threads of the job's processes runnable on average (on a CPU or waiting for one), over the
    telemetry window: a worker that lived for part of it (restarted every epoch) counts for that part."""
    procs = _processes(f)
    window_s = max((p.wall_s for p in procs), default=0.0) or 1e-9
    return sum(((p.cpu_s or 0.0) + (p.run_delay_s or 0.0)) / window_s for p in procs)


def main_thread_stall(f: RunFacts) -> float | None:
    """Share of the time each of the main process's math threads was runnable but not running
    (its run-queue delay spread over its torch threads); None with one thread or no telemetry."""
    if f.main is None or f.main.run_delay_fraction is None or not f.torch_threads_main or f.torch_threads_main < 2:
        return None
    return min(1.0, f.main.run_delay_fraction / f.torch_threads_main)


@declare_rule("TL101", "oversubscription", Severity.HIGH, "The job's own threads oversubscribe its cores",
              precondition="run.json with machine facts and process telemetry; the configured threads (main math "
                           "threads + workers × worker threads + pin thread) exceed the cores per rank",
              thresholds=("oversubscription_ratio", "run_delay_fraction", "involuntary_switch_rate",
                          "main_thread_stall_fraction", "cpu_bound_fraction", "io_bound_fraction"),
              requires=lambda c: needs_machine(c) or needs_steps(c), main=True)
def oversubscription(rule: Rule, ctx: Context) -> Finding | None:
    f, b = ctx.facts, ctx.budget
    assert f is not None and b is not None
    demand = configured_threads(ctx) or 0
    cores = max(b.cores_per_rank, 1e-9)
    load = runnable_threads(f)
    load_ratio = load / cores
    procs = _processes(f)
    delays = [p.run_delay_fraction for p in procs if p.run_delay_fraction is not None]
    invol = [p.involuntary_per_s for p in procs if p.involuntary_per_s is not None]
    max_delay = max(delays) if delays else None
    confirmed = (max_delay is not None and max_delay >= threshold("run_delay_fraction")) or (
        bool(invol) and float(np.median(invol)) >= threshold("involuntary_switch_rate"))
    # Its own threads: more configured than cores, and that many kept runnable (a sleeping worker is
    # configured but not runnable); the delay alone may come from other processes (TL105).
    if demand <= cores or load_ratio < threshold("oversubscription_ratio") or not confirmed:
        return None
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    severity = (Severity.HIGH if (main_delay or 0.0) >= threshold("run_delay_fraction") or ctx.input_bound
                else Severity.MEDIUM)
    workers = ctx.workers_now or 0
    waiting = loading_cause(ctx.loading) == "io"
    # CPU-bound (or unknown) workers get the cores the main process leaves: its measured CPU use
    # (at most one core once it runs one math thread), rounded to whole workers. Workers that
    # mostly wait are not the contention: their count stays (TL103 sizes it).
    main_cores = min(1.0, f.main.cpu_fraction) if f.main is not None and f.main.cpu_fraction is not None else 1.0
    room = max(1, math.floor(b.cores_per_rank - main_cores + 0.5))
    keep = workers if waiting else min(workers, room)
    main_threads = max(1, math.floor(b.cores_per_rank) - (0 if waiting else keep))
    stall = main_thread_stall(f)
    if stall is not None and stall >= threshold("main_thread_stall_fraction") and f.torch_threads_main:
        main_threads = max(1, min(main_threads, round(f.torch_threads_main * (1 - stall))))
    bound, gain_text = _contention_bound(ctx, load_ratio, stall)
    changes, already = thread_changes(f, main_threads, keep)
    evidence = {
        "runnable_threads_mean": load, "threads_per_core": load_ratio,
        "configured_threads": demand, "configured_threads_per_core": demand / cores,
        "cores_per_rank": b.cores_per_rank, "torch_threads_main": f.torch_threads_main,
        "torch_threads_worker": f.torch_threads_worker, "num_workers": workers,
        "max_run_delay_fraction": max_delay, "main_run_delay_fraction": main_delay,
        "main_thread_stall_fraction": stall, "main_cpu_cores": main_cores,
        "involuntary_switches_per_s_median": float(np.median(invol)) if invol else None,
        "loading_cpu_fraction": ctx.loading.cpu_fraction if ctx.loading else None,
        "exposed_wait_fraction": ctx.steady.exposed_fraction if ctx.steady else None,
        "speedup_bound": bound,
    }
    text = (f"{load:.1f} threads runnable on average on {b.cores_per_rank:g} cores per rank "
            f"({load_ratio:.1f} per core; {demand} configured); processes wait for a CPU up to "
            f"{pct(max_delay or 0)} of the time")
    steps = []
    if "torch_threads_per_worker" in changes:
        steps.append("1 math thread per worker (a module-level worker_init_fn that calls torch.set_num_threads(1))")
    if changes.get("env"):
        steps.append(" ".join(f"{k}=1" for k in changes["env"]) + " in the environment")
    if waiting:
        steps.append(f"num_workers={keep} kept: the loading mostly waits, so its workers are not the contention")
    else:
        steps.append(f"num_workers={keep} (the {b.cores_per_rank:g} cores per rank minus the main process's "
                     f"measured {main_cores:.2f} cores, rounded to whole workers)")
    if "torch_threads_main" in changes:
        steps.append(f"torch.set_num_threads({main_threads}) in the main process")
    said = f" Already in effect: {', '.join(already)}." if already else ""
    worse = "" if waiting else " Adding CPU-bound workers makes this worse."
    settings: dict[str, Any] = dict(changes)
    if not waiting:
        settings["num_workers"] = keep
    return make_finding(rule, ctx, severity, 0.85, title=f"Oversubscribed cores: {text}", evidence=evidence,
                        advice=f"Use {'; '.join(steps)}.{said}{worse} {gain_text}", settings=settings)


def thread_changes(f: RunFacts, main_threads: int | None, workers: int) -> tuple[dict[str, Any], list[str]]:
    """The thread settings to propose (only those not already in effect) and those that are: 1
    math thread per worker (none with 0 workers), OMP/MKL at 1, ``main_threads`` in the main process."""
    changes: dict[str, Any] = {}
    already: list[str] = []
    if workers > 0:
        if f.torch_threads_worker == 1:
            already.append("1 torch thread per worker")
        else:
            changes["torch_threads_per_worker"] = 1
    env = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if f.thread_env.get(k) != "1"}
    already += [f"{k}=1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in env]
    if env:
        changes["env"] = env
    if main_threads is not None:
        if f.torch_threads_main == main_threads:
            already.append(f"torch.set_num_threads({main_threads}) in the main process")
        else:
            changes["torch_threads_main"] = main_threads
    return changes, already


def _contention_bound(ctx: Context, load_ratio: float, stall: float | None) -> tuple[float, str]:
    """The most removing the job's own contention can gain, and the sentence saying why no
    estimate is given.

    The threads share the cores ``load_ratio`` ways, so none runs more than that much faster once
    they stop sharing; and the step gains at most what its data wait and its own math threads
    lose: the ceiling 1 / (1 − exposed) times 1 / (1 − the main threads' stall). How much CPU the
    contention wastes (spinning threads, switches, caches) one run cannot separate from the work.
    """
    st, f = ctx.steady, ctx.facts
    ceiling = sizing.speedup_ceiling(st.exposed_fraction) if st is not None else 1.0
    main = f.main if f is not None else None
    delay = main.run_delay_fraction if main is not None and main.run_delay_fraction is not None else 0.0
    per_thread = stall if stall is not None else (min(1.0, delay / max(1, main.threads or 1)) if main else 0.0)
    loop_gain = 1.0 / (1.0 - min(per_thread, 0.9))
    bound = max(1.0, min(load_ratio, ceiling * loop_gain))
    parts = f"the exposed data wait's ceiling {ceiling:.2f}x"
    if loop_gain > 1.005:
        parts += f" × {loop_gain:.2f}x for the training loop's threads, which wait for a CPU {pct(per_thread)} of the time"
    return bound, (f"Expected: at most {bound:.2f}x (the threads share the cores {load_ratio:.1f} ways; {parts}). "
                   "How much of the CPU the contention wastes (spinning threads, switches, caches) this run cannot "
                   f"separate from the work, so no estimate: measure it with `{sweep_command(ctx, workers=(ctx.workers_now,), threads=True)}`.")


@declare_rule("TL105", "busy_machine", Severity.HIGH, "Processes outside the job use the cores",
              precondition="run.json with the CPU supply (telemetry.supply); in older files, main math threads "
                           "that stall while the job's own threads fit its cores",
              thresholds=("other_cpu_cores_min", "other_cpu_cores_share", "run_delay_fraction",
                          "main_thread_stall_fraction", "oversubscription_ratio"),
              requires=lambda c: needs_machine(c) or needs_steps(c))
def busy_machine(rule: Rule, ctx: Context) -> Finding | None:
    f, b = ctx.facts, ctx.budget
    assert f is not None and b is not None
    s = f.supply
    stall = main_thread_stall(f)
    stalled = stall is not None and stall >= threshold("main_thread_stall_fraction")
    own_ratio = runnable_threads(f) / max(b.cores_per_rank, 1e-9)
    measured = s is not None and s.other_cpu_cores is not None
    if measured:
        assert s is not None and s.other_cpu_cores is not None
        if s.other_cpu_cores < busy_cores_threshold(s.usable_cores or b.usable_cores):
            return None
    elif not stalled or own_ratio >= threshold("oversubscription_ratio"):
        return None  # without the supply: only a stall the job's own threads cannot explain
    delays = [p.run_delay_fraction for p in _processes(f) if p.run_delay_fraction is not None]
    waited = max(delays, default=0.0) >= threshold("run_delay_fraction")
    main_threads = _main_threads_under_load(ctx, stall) if stalled else None
    changes, _ = thread_changes(f, main_threads, 0)
    changes.pop("env", None)  # torch.set_num_threads in the main process is the change; OMP_NUM_THREADS=1 would also cut it
    evidence: dict[str, Any] = {
        "other_cpu_cores": s.other_cpu_cores if s else None, "cores_left": s.cores_left if s else None,
        "usable_cores": b.usable_cores, "job_cpu_cores": s.job_cpu_cores if s else None,
        "cgroup_throttled_fraction": s.throttled_fraction if s else None,
        "cgroup_throttled_periods_fraction": s.throttled_periods_fraction if s else None,
        "pressure_fraction": s.pressure_fraction if s else None,
        "top_other_processes": [{"pid": o.pid, "name": o.name, "cores": o.cores} for o in (s.others if s else ())],
        "own_runnable_threads_per_core": own_ratio, "max_run_delay_fraction": max(delays, default=None),
        "main_thread_stall_fraction": stall, "measured": measured,
    }
    if s is not None and s.other_cpu_cores is not None:
        who = ", ".join(f"{o.name} (pid {o.pid}) {o.cores:.2f}" for o in s.others[:3])
        left = f"; {s.cores_left:.2f} cores were left to the job" if s.cores_left is not None else ""
        title = (f"Busy machine: processes outside this job used {s.other_cpu_cores:.2f} of the "
                 f"{b.usable_cores:g} usable cores{f' ({who})' if who else ''}{left}")
    else:
        title = (f"Busy machine (inferred): the training process's math threads wait for a CPU {pct(stall or 0)} of "
                 f"the time while the job's own threads keep only {own_ratio:.1f} per core runnable, so other "
                 "processes held the cores (this run.json has no CPU supply record to name them)")
    advice = ("The outside load inflates the step times: absolute figures (step time, steps per second, the "
              "expected gains) hold for this load only; re-run on a quiet machine (or with the other processes "
              "stopped) for absolute numbers. The diagnosis and the direction of the settings do not depend on it.")
    if s is not None and (s.throttled_fraction or 0.0) >= threshold("run_delay_fraction"):
        advice += (f" The job's cgroup quota also held it back {pct(s.throttled_fraction or 0.0)} of the time "
                   "(cgroup throttling).")
    if "torch_threads_main" in changes:
        advice += (f" The training process's {f.torch_threads_main} math threads each waited for a CPU {pct(stall or 0)} "
                   "of the time: every parallel region waits for its slowest thread, and another process holds a "
                   f"core, so the training loop itself slows. Use torch.set_num_threads({main_threads}) in the main "
                   "process (cutting it to 1 thread measured 3.4-8x faster under such load). Its gain depends on the "
                   f"load and cannot be estimated from this run: measure it with `{sweep_command(ctx, threads=True)}`.")
    severity = Severity.HIGH if waited or stalled else Severity.MEDIUM
    return make_finding(rule, ctx, severity, 0.9 if measured else 0.6, title=title, evidence=evidence,
                        advice=advice, settings=changes)


def _main_threads_under_load(ctx: Context, stall: float | None) -> int:
    """Math threads for the main process that get a core under the outside load: the threads
    that ran (threads × (1 − stall)), at most the cores left after the workers' measured use."""
    f, b = ctx.facts, ctx.budget
    assert f is not None and b is not None and f.torch_threads_main
    ran = round(f.torch_threads_main * (1 - (stall or 0.0)))
    worker_cores = sum(w.cpu_fraction or 0.0 for w in f.workers)
    left = math.floor(b.cores_left_per_rank - worker_cores + 0.5)
    return max(1, min(f.torch_threads_main - 1, ran, left))


#: The rules of this module.
RULES: tuple[Rule, ...] = (oversubscription, busy_machine)
