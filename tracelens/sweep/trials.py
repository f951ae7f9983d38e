"""Trials: one run of the script per setting, what it measured, and what the set of trials says
about the loading (CPU-bound or not, a busy machine, the settings within the core budget)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracelens.diagnosis.thresholds import threshold
from tracelens.sweep.settings import Setting
from tracelens.sweep.stats import (
    CI_LEVEL,
    DEFAULT_WINDOWS,
    NOISE_FLOOR_FRACTION,
    Choice,
    Throughput,
    cost_key,
    noise,
)

DEFAULT_STEPS = 50
DEFAULT_TIME_BUDGET_S = 600.0


@dataclass(frozen=True)
class TrialSpec:
    """One trial as the child process receives it."""

    target: str
    args: tuple[str, ...]
    module: bool
    overrides: dict[str, Any]
    steps: int
    warmup: int | None


#: Runs one trial and returns the raw result of :func:`tracelens.capture.script.measure.run_timing_trial`.
TrialRunner = Callable[[TrialSpec, int], dict[str, Any]]


@dataclass(frozen=True)
class Trial:
    """One setting measured (all its repeats)."""

    setting: Setting
    throughput: Throughput
    raw: tuple[dict[str, Any], ...] = field(repr=False)
    wall_s: float = 0.0
    remeasured: bool = False  # measured twice: the machine was busy the first time

    @property
    def loader(self) -> dict[str, Any]:
        """The loader as constructed in the first repeat (after overrides)."""
        for r in self.raw:
            if r.get("loader"):
                return dict(r["loader"])
        return {}

    @property
    def ok(self) -> bool:
        return self.throughput.steps > 0


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep and how long to measure each setting."""

    target: str
    args: tuple[str, ...] = ()
    module: bool = False
    settings: tuple[Setting, ...] = ()  # empty: auto
    auto_pin_memory: bool | None = None
    auto_prefetch_factor: int | None = None
    steps: int = DEFAULT_STEPS
    warmup: int | None = None
    repeats: int = 1
    windows: int = DEFAULT_WINDOWS
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    usable_cores: int = 1


@dataclass(frozen=True)
class SweepResult:
    """All trials, the choice and its reason."""

    plan: SweepPlan
    trials: tuple[Trial, ...]
    choice: Choice | None
    reason: str
    auto_start: int | None = None
    auto_start_source: str | None = None
    notes: tuple[str, ...] = ()
    wall_s: float = 0.0


#: Each window spans at least this many rounds of the workers (a round = one batch per worker).
MIN_ROUNDS_PER_WINDOW = 2


def steps_for(setting: Setting, steps: int, windows: int) -> int:
    """Steps to measure: at least ``steps``, and enough for every window to span
    :data:`MIN_ROUNDS_PER_WINDOW` rounds of the workers (N workers deliver their batches in
    bursts of up to N, so a window shorter than a round reads a burst as a rate)."""
    return max(steps, windows * MIN_ROUNDS_PER_WINDOW * max(1, setting.num_workers))


#: A trial whose threads waited this long (s per s) for a core while they were no more than
#: the usable cores was slowed by other processes on the machine.
BUSY_RUN_QUEUE_PER_S = 0.25


def machine_was_busy(trial: Trial, usable_cores: int) -> bool:
    """Whether other processes held the cores during ``trial``: its threads (main + workers)
    fit the usable cores, yet they waited for a core (run-queue delay) and used fewer cores
    than they wanted."""
    wait, used = contention(trial, "run_queue_delay_per_s"), contention(trial, "cpu_per_s")
    if wait is None or used is None or trial.setting.num_workers + 1 > max(usable_cores, 1) + 1:
        return False
    return wait >= BUSY_RUN_QUEUE_PER_S and used + 0.2 < min(usable_cores, used + wait)


def worker_cpu(trial: Trial) -> float | None:
    vals = [r["worker_cpu_fraction"] for r in trial.raw if r.get("worker_cpu_fraction") is not None]
    return sum(vals) / len(vals) if vals else None


def contention(trial: Trial, key: str) -> float | None:
    vals = [r["contention"][key] for r in trial.raw if r.get("contention") and r["contention"].get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def worker_demand(trials: Sequence[Trial]) -> float | None:
    """Share of its time a worker wants a CPU (on one or runnable), from the measured setting
    with the fewest workers (the one its own workers contend with least)."""
    with_workers = sorted((t for t in trials if t.ok and t.setting.num_workers > 0),
                          key=lambda t: cost_key(t.setting))
    for t in with_workers:
        d = contention(t, "worker_demand")
        if d is not None:
            return d
    return None


def cpu_bound(trials: Sequence[Trial]) -> bool:
    """Whether the loading work is CPU-bound: its workers want a CPU most of the time."""
    d = worker_demand(trials)
    return d is not None and d >= threshold("cpu_bound_fraction")


def eligible(trials: Sequence[Trial], usable_cores: int) -> list[int]:
    """Indices of the measured trials the choice may pick: for CPU-bound loading, those within
    the core budget (num_workers ≤ usable cores) when any was measured. Beyond the budget a
    CPU-bound loader can only be faster by taking CPU time from other processes on a shared
    machine (the scheduler shares cores per thread) or from the training loop itself."""
    ok = [i for i, t in enumerate(trials) if t.ok]
    if cpu_bound(trials):
        within = [i for i in ok if trials[i].setting.num_workers <= usable_cores]
        if within:
            return within
    return ok


def explain(trials: Sequence[Trial], choice: Choice, usable_cores: int) -> str:
    """The choice in words: how fast, against the fastest and the cheapest, and the likely why."""
    best, fastest = trials[choice.best], trials[choice.fastest]
    bt, ft = best.throughput, fastest.throughput
    parts = [f"num_workers={best.setting.label()} runs {bt.steps_per_s:,.1f} steps/s"]
    if choice.best == choice.fastest:
        others = [t for i, t in enumerate(trials) if i != choice.best and t.ok]
        if others:
            runner_up = max(others, key=lambda t: t.throughput.steps_per_s)
            ru = runner_up.throughput.steps_per_s
            if ru > bt.steps_per_s:  # a setting beyond the core budget, left out of the choice
                parts.append(f"the fastest within the {usable_cores}-core budget "
                             f"(num_workers={runner_up.setting.label()} measured {ru:,.1f})")
            else:
                parts.append(f"the fastest, {bt.steps_per_s / max(ru, 1e-9):.2f}× "
                             f"the next best ({runner_up.setting.label()}: {ru:,.1f})")
    else:
        how = (f"within {100 * NOISE_FLOOR_FRACTION:.0f} %" if bt.steps_per_s >= ft.steps_per_s - noise(bt, ft)
               else f"the {100 * CI_LEVEL:.0f} % intervals of the two rates overlap")
        parts.append(f"as fast as the fastest up to the noise ({how}: {fastest.setting.label()} at "
                     f"{ft.steps_per_s:,.1f} steps/s), and cheaper")
    cheapest = min((t for t in trials if t.ok), key=lambda t: cost_key(t.setting))
    if cheapest is not best and cheapest.throughput.steps_per_s > 0:
        parts.append(f"{bt.steps_per_s / cheapest.throughput.steps_per_s:.1f}× num_workers="
                     f"{cheapest.setting.label()} ({cheapest.throughput.steps_per_s:,.1f} steps/s)")
    sentence = "; ".join(parts) + "."
    demand = worker_demand(trials)
    cpu = worker_cpu(best) if best.setting.num_workers > 0 else None
    if cpu is None:
        cpu = next((c for t in trials if (c := worker_cpu(t)) is not None), None)
    if demand is not None:
        if demand >= threshold("cpu_bound_fraction"):
            sentence += (f" Loading is CPU-bound (a worker wants a CPU {100 * demand:.0f} % of the time, "
                         f"on one or waiting for one): more workers than the {usable_cores} usable core(s) "
                         "cannot add throughput of their own.")
        else:
            sentence += (f" Loading mostly waits (a worker wants a CPU {100 * demand:.0f} % of the time): "
                         f"latency-bound work gains from more workers than the {usable_cores} usable core(s).")
    elif cpu is not None:
        if cpu >= threshold("cpu_bound_fraction"):
            sentence += (f" Loading is CPU-bound (workers compute {100 * cpu:.0f} % of their batch time): "
                         f"more workers than the {usable_cores} usable core(s) cannot add throughput.")
        else:
            sentence += (f" Loading mostly waits (workers compute {100 * cpu:.0f} % of their batch time): "
                         f"latency-bound work gains from more workers than the {usable_cores} usable core(s).")
    if best.throughput.data_wait_fraction > 0.05:
        sentence += (f" The step still waits for data {100 * best.throughput.data_wait_fraction:.0f} % "
                     "of the time at this setting.")
    return sentence
