"""Trials: one live run of the script per setting, what its rounds measured, and what the set of
trials says about the loading (CPU-bound or not, the settings within the core budget)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracelens.capture.script.measure import MIN_TRIAL_STEPS
from tracelens.diagnosis.thresholds import threshold
from tracelens.sweep.rounds import Disturbance, Paired, RoundRecord
from tracelens.sweep.settings import Setting
from tracelens.sweep.stats import (
    CI_LEVEL,
    NOISE_FLOOR_FRACTION,
    Choice,
    Throughput,
    cost_key,
    noise,
)

DEFAULT_STEPS = 50
DEFAULT_TIME_BUDGET_S = 600.0
#: Rounds every setting is measured in at least (fewer cannot be compared round by round) ...
DEFAULT_MIN_ROUNDS = 3
#: ... and at most, unless the comparisons are conclusive earlier.
DEFAULT_MAX_ROUNDS = 8
#: A round lasts at least this long (s): long enough to span the phases of a shared machine's
#: scheduling (tens of steps), short enough that a sweep of 3 settings takes a few seconds per
#: round; the rounds of a setting add up to the 2 s a single-shot trial measured.
DEFAULT_ROUND_S = 0.5
#: Trial processes alive at once at most (each holds the script, its dataset and its workers).
DEFAULT_MAX_ALIVE = 6


@dataclass(frozen=True)
class Trial:
    """One setting measured: its rounds, and what its process said at its start and end."""

    setting: Setting
    throughput: Throughput
    rounds: tuple[RoundRecord, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # ready message + final result
    wall_s: float = 0.0  # the process's life, start to end
    startup_s: float | None = None  # process start to its first measurable step (ready)
    stopped: str | None = None  # why its rounds ended before the sweep's last

    @property
    def loader(self) -> dict[str, Any]:
        """The loader as constructed (after overrides)."""
        return dict(self.raw.get("loader") or {})

    @property
    def ok(self) -> bool:
        """Comparable: at least :data:`MIN_TRIAL_STEPS` steps (a handful is start-up and noise)."""
        return self.throughput.steps >= MIN_TRIAL_STEPS

    @property
    def crashed(self) -> bool:
        """The script raised (or exited non-zero with an error) during the trial."""
        return bool(self.raw.get("script_error")) and self.raw.get("exit_status") not in (0, None)

    @property
    def measured_s(self) -> float:
        return sum(r.ns for r in self.rounds) / 1e9


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep and how long to measure each setting."""

    target: str
    args: tuple[str, ...] = ()
    module: bool = False
    settings: tuple[Setting, ...] = ()  # empty: auto
    auto_pin_memory: bool | None = None
    auto_prefetch_factor: int | None = None
    auto_main_threads: int | None = None
    auto_worker_threads: int | None = None
    steps: int = DEFAULT_STEPS  # steady steps per setting, at least (over its rounds)
    warmup: int | None = None
    windows: int = DEFAULT_MIN_ROUNDS
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    usable_cores: int = 1
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_rounds: int = DEFAULT_MAX_ROUNDS
    round_s: float = DEFAULT_ROUND_S
    max_alive: int = DEFAULT_MAX_ALIVE
    early_stop: bool = True  # stop settings that cannot win, and the sweep once conclusive
    ceiling: bool = False  # also measure the script's own loader and its replay (a free loader)
    replay_batches: int = 16
    replay_bytes: int = 1 << 30


@dataclass(frozen=True)
class Ceiling:
    """The speed-up a free loader gives: measured (replay against the script's own loader, in
    the same rounds) beside the estimate from the baseline's exposed wait."""

    baseline: int | None  # index into the trials of the script's own settings
    replay: Trial
    measured: float | None  # replay steps/s ÷ baseline steps/s
    paired: Paired | None  # the same round by round, with its interval
    estimated: float | None  # 1 / (1 − exposed data wait of the baseline)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoundSummary:
    """One round of the sweep: who was measured, how long it took, the outside load."""

    round: int
    labels: tuple[str, ...]
    wall_s: float
    other_cores: float | None  # mean over the round's trials


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
    rounds: tuple[RoundSummary, ...] = ()
    disturbance: Disturbance | None = None
    ceiling: Ceiling | None = None
    startup_wall_s: float = 0.0  # the sweep's time spent waiting for trials to be ready


def worker_cpu(trial: Trial) -> float | None:
    v = trial.raw.get("worker_cpu_fraction")
    return float(v) if isinstance(v, (int, float)) else None


def contention(trial: Trial, key: str) -> float | None:
    """The trial's own schedstat reading ``key`` (cpu_per_s, run_queue_delay_per_s,
    worker_demand), averaged over its rounds weighted by their time."""
    pairs = [(getattr(r, key), r.ns) for r in trial.rounds if getattr(r, key) is not None and r.ns > 0]
    if not pairs:
        return None
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def other_cores(trial: Trial) -> float | None:
    """Cores used by processes outside the sweep during this trial's rounds (time-weighted)."""
    pairs = [(r.other_cores, r.wall_s) for r in trial.rounds if r.other_cores is not None and r.wall_s > 0]
    if not pairs:
        return None
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def worker_demand(trials: Sequence[Trial]) -> float | None:
    """Share of its time a worker wants a CPU (on one or runnable), from the measured setting
    with the fewest workers (the one its own workers contend with least)."""
    with_workers = sorted((t for t in trials if t.ok and (t.setting.num_workers or 0) > 0
                           and not t.setting.replay), key=lambda t: cost_key(t.setting))
    for t in with_workers:
        d = contention(t, "worker_demand")
        if d is not None:
            return d
    return None


def cpu_bound(trials: Sequence[Trial]) -> bool:
    """Whether the loading work is CPU-bound: its workers want a CPU most of the time."""
    d = worker_demand(trials)
    return d is not None and d >= threshold("cpu_bound_fraction")


def beyond_budget(setting: Setting, usable_cores: int) -> bool:
    return (setting.num_workers or 0) > usable_cores


def eligible(trials: Sequence[Trial], usable_cores: int) -> list[int]:
    """Indices of the measured trials the choice may pick: those whose script did not fail
    (unless every one failed), and for CPU-bound loading, those within
    the core budget (num_workers ≤ usable cores) when any was measured. Beyond the budget a
    CPU-bound loader can only be faster by taking CPU time from other processes on a shared
    machine (the scheduler shares cores per thread) or from the training loop itself."""
    ok = [i for i, t in enumerate(trials) if t.ok and not t.setting.replay]
    ok = [i for i in ok if not trials[i].crashed] or ok  # a setting whose script failed is no advice
    if cpu_bound(trials):
        within = [i for i in ok if not beyond_budget(trials[i].setting, usable_cores)]
        if within:
            return within
    return ok


def explain(trials: Sequence[Trial], choice: Choice, usable_cores: int) -> str:
    """The choice in words: how fast, against the fastest and the cheapest, and the likely why."""
    best, fastest = trials[choice.best], trials[choice.fastest]
    bt, ft = best.throughput, fastest.throughput
    parts = [f"{_name(best.setting)} runs {bt.steps_per_s:,.1f} steps/s"]
    candidates = [t for t in trials if t.ok and not t.setting.replay]
    if choice.best == choice.fastest:
        others = [t for t in candidates if t is not best]
        if others:
            runner_up = max(others, key=lambda t: t.throughput.steps_per_s)
            ru = runner_up.throughput.steps_per_s
            if ru > bt.steps_per_s:  # a setting beyond the core budget, left out of the choice
                parts.append(f"the fastest within the {usable_cores}-core budget "
                             f"({_name(runner_up.setting)} measured {ru:,.1f})")
            else:
                parts.append(f"the fastest, {bt.steps_per_s / max(ru, 1e-9):.2f}× "
                             f"the next best ({runner_up.setting.label()}: {ru:,.1f})")
    else:
        how = (f"within {100 * NOISE_FLOOR_FRACTION:.0f} %" if bt.steps_per_s >= ft.steps_per_s - noise(bt, ft)
               else f"the {100 * CI_LEVEL:.0f} % intervals of the two overlap, round by round")
        parts.append(f"as fast as the fastest up to the noise ({how}: {fastest.setting.label()} at "
                     f"{ft.steps_per_s:,.1f} steps/s), and cheaper")
    cheapest = min(candidates, key=lambda t: cost_key(t.setting))
    if cheapest is not best and cheapest.throughput.steps_per_s > 0:
        parts.append(f"{bt.steps_per_s / cheapest.throughput.steps_per_s:.1f}× "
                     f"{_name(cheapest.setting)} ({cheapest.throughput.steps_per_s:,.1f} steps/s)")
    sentence = "; ".join(parts) + "."
    demand = worker_demand(trials)
    cpu = worker_cpu(best) if (best.setting.num_workers or 0) > 0 else None
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


def _name(setting: Setting) -> str:
    """``num_workers=2``, ``num_workers=2 with 1 main thread``, ... for sentences."""
    text = f"num_workers={setting.label().split()[0]}"
    extra = []
    if setting.pin_memory:
        extra.append("pinned memory")
    if setting.prefetch_factor is not None and setting.num_workers != 0:
        extra.append(f"prefetch_factor={setting.prefetch_factor}")
    if setting.main_threads is not None:
        extra.append(f"{setting.main_threads} main thread(s)")
    if setting.worker_threads is not None and setting.num_workers != 0:
        extra.append(f"{setting.worker_threads} thread(s) per worker")
    return text + (f" with {', '.join(extra)}" if extra else "")


def failure(trial: Trial) -> str:
    """Why a trial measured nothing, the script's own error first."""
    raw = trial.raw
    if raw.get("script_error") and raw.get("exit_status"):
        return f"the script failed ({raw['script_error']}), exit status {raw.get('exit_status')}"
    if raw.get("error"):
        return str(raw["error"])
    if raw.get("unusable"):
        return f"not compared: {raw['unusable']}"
    if 0 < trial.throughput.steps < MIN_TRIAL_STEPS:
        return f"not compared: only {trial.throughput.steps} steady step(s) measured (fewer than {MIN_TRIAL_STEPS})"
    if trial.stopped:
        return trial.stopped
    return f"exit status {raw.get('exit_status')}, stopped: {raw.get('stop_reason')}"
