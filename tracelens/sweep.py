"""``tracelens sweep``: measure candidate DataLoader settings and pick the cheapest fast one.

Three layers, kept apart:

- statistics and choice (pure): per-window throughput from per-step times, its spread, the
  noise between two settings, the auto exploration order, the cheapest setting within noise;
- orchestration: one trial per setting, each in its own Python process
  (``tracelens.capture.measure``), within a time budget, with a progress line on stderr;
- rendering: ``sweep.json`` (SPEC §4), the terminal table, the HTML page.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tracelens.render.html import write_atomic
from tracelens.render.sweep import render_sweep_html

SCHEMA_VERSION = 1

#: Two settings whose median throughputs differ by less than this fraction of the faster are
#: treated as equal: separate processes on a shared machine vary by a few percent, and a gain
#: under 5 % is rarely worth another worker's memory and cores.
NOISE_FLOOR_FRACTION = 0.05
#: Measurement windows per trial: the steady-state steps are split into this many contiguous
#: windows, each giving one throughput (batches / window wall time). Step times themselves are
#: bimodal with workers (most batches are ready, every k-th is not), so a median of single
#: steps misstates throughput; windows of several steps average that out.
DEFAULT_WINDOWS = 5
#: The uncertainty of a mean rate: a bootstrap over this many blocks of consecutive steps per
#: trial, at this level (two 90 % intervals that do not overlap differ at about the 1 % level).
BOOTSTRAP_BLOCKS = 10
BOOTSTRAP_RESAMPLES = 2000
CI_LEVEL = 0.90
DEFAULT_STEPS = 50
DEFAULT_TIME_BUDGET_S = 600.0
#: Auto exploration never goes beyond this many workers per usable core (latency-bound loaders
#: gain from more workers than cores, but not without bound).
AUTO_MAX_WORKERS_PER_CORE = 8
#: Worker CPU time / batch time above this means the loading work is CPU-bound.
CPU_BOUND_FRACTION = 0.7
NS_PER_S = 1e9


# --- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """The DataLoader arguments one trial overrides (None: the script's own value)."""

    num_workers: int
    pin_memory: bool | None = None
    prefetch_factor: int | None = None

    def overrides(self) -> dict[str, Any]:
        """Constructor arguments to override (prefetch_factor only applies with workers)."""
        out: dict[str, Any] = {"num_workers": self.num_workers}
        if self.pin_memory is not None:
            out["pin_memory"] = self.pin_memory
        if self.prefetch_factor is not None and self.num_workers > 0:
            out["prefetch_factor"] = self.prefetch_factor
        return out

    def label(self) -> str:
        """Short label: ``4``, ``4 pin``, ``4 pf=8``."""
        parts = [str(self.num_workers)]
        if self.pin_memory:
            parts.append("pin")
        if self.prefetch_factor is not None and self.num_workers > 0:
            parts.append(f"pf={self.prefetch_factor}")
        return " ".join(parts)


def grid(num_workers: Sequence[int], pin_memory: Sequence[bool | None] = (None,),
         prefetch_factor: Sequence[int | None] = (None,)) -> list[Setting]:
    """Every combination, without duplicates (prefetch_factor is moot without workers)."""
    seen: dict[Setting, None] = {}
    for w, pin, pf in itertools.product(num_workers, pin_memory, prefetch_factor):
        seen.setdefault(Setting(w, pin, pf if w > 0 else None), None)
    return list(seen)


def parse_int_list(text: str, name: str) -> list[int]:
    """``"0,2,4"`` → [0, 2, 4]; non-negative, in the given order, duplicates dropped."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise ValueError(f"{name} must be integers separated by commas, not {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative integers separated by commas, not {text!r}")
    return list(dict.fromkeys(values))


def parse_bool_list(text: str, name: str) -> list[bool]:
    """``"false,true"`` → [False, True]."""
    table = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    out = []
    for x in text.lower().replace(" ", "").split(","):
        if x not in table:
            raise ValueError(f"{name} takes true/false values separated by commas, not {text!r}")
        out.append(table[x])
    return list(dict.fromkeys(out))


# --- statistics (pure) --------------------------------------------------------------------------

@dataclass(frozen=True)
class Throughput:
    """Steady-state throughput of one setting from its measurement windows (all repeats)."""

    steps_per_s: float  # all measured steps / their total time (the mean rate, burst-proof)
    spread: float  # interquartile range of the window rates (steps/s)
    min: float
    max: float
    window_rates: tuple[float, ...]
    steps: int  # steps measured (all repeats)
    data_wait_fraction: float  # Σ __next__ wait / Σ step time
    q1: float = 0.0  # quartiles of the window rates
    q3: float = 0.0
    #: Bootstrap interval (:data:`CI_LEVEL`) of ``steps_per_s``, resampling blocks of
    #: consecutive steps; 0/0 when unknown (then the quartiles stand in).
    ci_lo: float = 0.0
    ci_hi: float = 0.0


def window_rates(step_ns: Sequence[int], windows: int = DEFAULT_WINDOWS) -> list[float]:
    """Steps/s in ``windows`` contiguous windows of the per-step times (ns)."""
    n = len(step_ns)
    if n == 0:
        return []
    k = max(1, min(windows, n))
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    rates = []
    for lo, hi in itertools.pairwise(bounds.tolist()):
        total = sum(step_ns[lo:hi])
        if hi > lo and total > 0:
            rates.append((hi - lo) * NS_PER_S / total)
    return rates


def blocks(step_ns: Sequence[int], count: int = BOOTSTRAP_BLOCKS) -> list[tuple[int, int]]:
    """``count`` contiguous blocks of the per-step times as (steps, ns) pairs."""
    n = len(step_ns)
    k = max(1, min(count, n))
    bounds = np.linspace(0, n, k + 1).round().astype(int).tolist()
    return [(hi - lo, int(sum(step_ns[lo:hi]))) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def bootstrap_interval(parts: Sequence[tuple[int, int]], level: float = CI_LEVEL,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Interval of the mean rate (Σ steps / Σ time) from resampling blocks with replacement.

    Blocks, not single steps: workers deliver in bursts (consecutive step times depend on each
    other); a block spans several rounds of the workers. Deterministic (fixed seed).
    """
    if not parts:
        return 0.0, 0.0
    arr = np.asarray(parts, dtype=float)
    if len(arr) == 1:
        rate = arr[0, 0] * NS_PER_S / arr[0, 1] if arr[0, 1] > 0 else 0.0
        return rate, rate
    idx = np.random.default_rng(seed).integers(0, len(arr), size=(resamples, len(arr)))
    sampled = arr[idx]  # (resamples, blocks, 2)
    rates = sampled[:, :, 0].sum(axis=1) * NS_PER_S / np.maximum(sampled[:, :, 1].sum(axis=1), 1.0)
    lo, hi = np.percentile(rates, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def summarize(repeats: Sequence[tuple[Sequence[int], Sequence[int]]], windows: int = DEFAULT_WINDOWS) -> Throughput:
    """Throughput from the (step_ns, wait_ns) lists of each repeat of one setting."""
    rates: list[float] = []
    parts: list[tuple[int, int]] = []
    steps_total = wait_total = 0
    n = 0
    for step_ns, wait_ns in repeats:
        rates.extend(window_rates(step_ns, windows))
        parts.extend(blocks(step_ns))
        steps_total += int(sum(step_ns))
        wait_total += int(sum(wait_ns[: len(step_ns)]))
        n += len(step_ns)
    if not rates:
        return Throughput(0.0, 0.0, 0.0, 0.0, (), 0, 0.0)
    arr = np.asarray(rates)
    q1, q3 = np.percentile(arr, [25, 75])
    lo, hi = bootstrap_interval(parts)
    return Throughput(
        steps_per_s=n * NS_PER_S / steps_total, spread=float(q3 - q1), min=float(arr.min()),
        max=float(arr.max()), window_rates=tuple(round(r, 4) for r in rates), steps=n,
        data_wait_fraction=wait_total / steps_total if steps_total else 0.0, q1=float(q1), q3=float(q3),
        ci_lo=lo, ci_hi=hi,
    )


def _interval(t: Throughput) -> tuple[float, float]:
    """The uncertainty interval of ``t``'s mean rate (its quartiles when no bootstrap ran)."""
    return (t.ci_lo, t.ci_hi) if t.ci_hi > 0 else (t.q1, t.q3)


def noise(a: Throughput, b: Throughput) -> float:
    """The throughput difference (steps/s) below which ``a`` and ``b`` count as equal on the
    floor alone: :data:`NOISE_FLOOR_FRACTION` of the faster."""
    return NOISE_FLOOR_FRACTION * max(a.steps_per_s, b.steps_per_s)


def is_within_noise(candidate: Throughput, best: Throughput) -> bool:
    """Whether ``candidate`` is as fast as ``best`` up to the noise: within the floor, or the
    bootstrap intervals of their mean rates overlap (the measurements cannot tell them apart).

    The interval of a mean narrows with more steps, unlike the spread of window rates, so a
    busy machine widens it only as much as the measurement really is uncertain; it never makes
    a setting that is slower in every resample "equal"."""
    if candidate.steps_per_s >= best.steps_per_s - noise(candidate, best):
        return True
    return _interval(candidate)[1] >= _interval(best)[0]


def is_faster(a: Throughput, b: Throughput) -> bool:
    """Whether ``a`` beats ``b`` beyond the noise: above the floor, with separate intervals."""
    return a.steps_per_s > b.steps_per_s + noise(a, b) and _interval(a)[0] > _interval(b)[1]


def cost_key(s: Setting) -> tuple[int, int, int]:
    """Cheaper first: fewer workers, then no pinned memory, then a shallower prefetch queue."""
    return (s.num_workers, 1 if s.pin_memory else 0, s.prefetch_factor or 0)


@dataclass(frozen=True)
class Choice:
    """The setting to use, the fastest one, and why."""

    best: int  # index into the trials
    fastest: int
    within_noise: tuple[int, ...]  # every trial as fast as the fastest up to the noise


def choose(settings: Sequence[Setting], results: Sequence[Throughput]) -> Choice:
    """The cheapest setting whose throughput is within the noise of the fastest."""
    measured = [i for i, r in enumerate(results) if r.steps]
    if not measured:
        raise ValueError("no trial measured any step")
    fastest = max(measured, key=lambda i: results[i].steps_per_s)
    close = tuple(i for i in measured if is_within_noise(results[i], results[fastest]))
    best = min(close, key=lambda i: (cost_key(settings[i]), -results[i].steps_per_s))
    return Choice(best, fastest, close)


def next_auto_workers(results: dict[int, Throughput], start: int, max_workers: int) -> int | None:
    """The next num_workers to try in ``auto`` mode, or None when the search is done.

    From ``start`` (the diagnosis' recommendation) double upward (0 → 1 → 2 → 4 ...) while each
    step (from 2 workers on) is faster than everything below it beyond the noise; then halve
    downward from
    ``start`` while the cheaper setting is still within the noise of the best.
    """
    up = [min(start, max_workers)]
    while up[-1] < max_workers:
        up.append(min(max_workers, 1 if up[-1] == 0 else 2 * up[-1]))
    for i, w in enumerate(up):
        if w not in results:
            return w
        # 0 → 1 only moves loading off the main process (no gain without compute to overlap),
        # so the first step that must pay off is the one to 2 workers.
        if i > 0 and w >= 2 and not is_faster(results[w], max((results[u] for u in up[:i]), key=lambda t: t.steps_per_s)):
            break
    best = max(results.values(), key=lambda t: t.steps_per_s)
    w = up[0]
    while w > 0:
        w = w // 2
        if w not in results:
            return w
        if not is_within_noise(results[w], best):
            break
    return None


# --- trials ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialSpec:
    """One trial as the child process receives it."""

    target: str
    args: tuple[str, ...]
    module: bool
    overrides: dict[str, Any]
    steps: int
    warmup: int | None


#: Runs one trial and returns the raw result of :func:`tracelens.capture.measure.run_timing_trial`.
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
    wait, used = _contention(trial, "run_queue_delay_per_s"), _contention(trial, "cpu_per_s")
    if wait is None or used is None or trial.setting.num_workers + 1 > max(usable_cores, 1) + 1:
        return False
    return wait >= BUSY_RUN_QUEUE_PER_S and used + 0.2 < min(usable_cores, used + wait)


def run_setting(plan: SweepPlan, setting: Setting, runner: TrialRunner, index: int) -> Trial:
    """Measure one setting ``plan.repeats`` times; once more when the machine was busy during
    it (the measurement that waited less for a core is kept, with a note)."""
    trial = _run_setting_once(plan, setting, runner, index)
    if machine_was_busy(trial, plan.usable_cores):
        again = _run_setting_once(plan, setting, runner, index + 50)
        waits = [_contention(t, "run_queue_delay_per_s") or 0.0 for t in (trial, again)]
        kept = again if again.ok and waits[1] < waits[0] else trial
        return Trial(kept.setting, kept.throughput, kept.raw, trial.wall_s + again.wall_s, remeasured=True)
    return trial


def _run_setting_once(plan: SweepPlan, setting: Setting, runner: TrialRunner, index: int) -> Trial:
    raws = []
    t0 = time.perf_counter()
    steps = steps_for(setting, plan.steps, plan.windows)
    for r in range(plan.repeats):
        spec = TrialSpec(plan.target, plan.args, plan.module, setting.overrides(), steps, plan.warmup)
        raws.append(runner(spec, index * 100 + r))
    tp = summarize([(raw.get("step_ns", []), raw.get("wait_ns", [])) for raw in raws], plan.windows)
    return Trial(setting, tp, tuple(raws), time.perf_counter() - t0)


class Progress:
    """``trial k of n`` and the running best, one line per trial on a stream (stderr)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def start(self, k: int, n: int | None, setting: Setting) -> None:
        if self.stream is not None:
            of = f"{k} of {n}" if n else f"{k}"
            self.stream.write(f"[sweep] trial {of}: num_workers={setting.label()} ...\n")
            self.stream.flush()

    def done(self, trial: Trial, best: Trial | None) -> None:
        if self.stream is None:
            return
        t = trial.throughput
        line = (f"[sweep]   {t.steps_per_s:,.1f} steps/s (IQR {t.spread:,.1f}), data wait "
                f"{100 * t.data_wait_fraction:.0f} %, {trial.wall_s:.1f} s")
        if not trial.ok:
            line = f"[sweep]   no steps measured ({_failure(trial)})"
        if best is not None:
            line += f" | best so far: {best.setting.label()} at {best.throughput.steps_per_s:,.1f} steps/s"
        self.stream.write(line + "\n")
        self.stream.flush()


def _failure(trial: Trial) -> str:
    raw = trial.raw[0] if trial.raw else {}
    if raw.get("error"):
        return str(raw["error"])
    if raw.get("script_error"):
        return f"the script failed ({raw['script_error']}), exit status {raw.get('exit_status')}"
    return f"exit status {raw.get('exit_status')}, stopped: {raw.get('stop_reason')}"


def _budget_allows(started: float, budget_s: float, trials: Sequence[Trial]) -> bool:
    """Whether another trial (as long as the longest so far) still fits the budget."""
    elapsed = time.perf_counter() - started
    longest = max((t.wall_s for t in trials), default=0.0)
    return elapsed + longest <= budget_s


def run_sweep(plan: SweepPlan, runner: TrialRunner, progress: Progress | None = None,
              auto_start: int | None = None, auto_start_source: str | None = None) -> SweepResult:
    """Run every setting of the plan (or the auto exploration from ``auto_start``)."""
    progress = progress or Progress(None)
    started = time.perf_counter()
    trials: list[Trial] = []
    notes: list[str] = []

    def best_so_far() -> Trial | None:
        ok = [trials[i] for i in eligible(trials, plan.usable_cores)]
        if not ok:
            return None
        c = choose([t.setting for t in ok], [t.throughput for t in ok])
        return ok[c.best]

    if plan.settings:
        queue = list(plan.settings)
        for k, s in enumerate(queue):
            if trials and not _budget_allows(started, plan.time_budget_s, trials):
                notes.append(f"time budget of {plan.time_budget_s:.0f} s reached: "
                             f"{len(queue) - k} setting(s) not measured ({', '.join(x.label() for x in queue[k:])})")
                break
            progress.start(k + 1, len(queue), s)
            trials.append(run_setting(plan, s, runner, k))
            progress.done(trials[-1], best_so_far())
    else:
        start = max(0, auto_start or 0)
        max_workers = max(1, AUTO_MAX_WORKERS_PER_CORE * plan.usable_cores)
        by_workers: dict[int, Throughput] = {}
        k = 0
        while True:
            cap = max_workers
            if cpu_bound(trials):  # more workers than cores cannot add throughput of its own
                cap = max(1, min(max_workers, plan.usable_cores))
            w = next_auto_workers({k: v for k, v in by_workers.items() if k <= cap}, min(start, cap), cap)
            if w is None:
                break
            if trials and not _budget_allows(started, plan.time_budget_s, trials):
                notes.append(f"time budget of {plan.time_budget_s:.0f} s reached before num_workers={w}")
                break
            s = Setting(w, plan.auto_pin_memory, plan.auto_prefetch_factor if w > 0 else None)
            k += 1
            progress.start(k, None, s)
            trial = run_setting(plan, s, runner, k - 1)
            trials.append(trial)
            by_workers[w] = trial.throughput
            progress.done(trial, best_so_far())
            if not trial.ok:
                notes.append(f"num_workers={w} measured no step: auto exploration stopped")
                break
    for t in trials:
        if t.remeasured:
            notes.append(f"num_workers={t.setting.label()}: other processes held the cores during the first "
                         "measurement (its threads waited for a core while fewer than the cores); measured "
                         "again, the less disturbed run is kept"
                         + (": still disturbed, so it may understate this setting" if machine_was_busy(t, plan.usable_cores) else ""))
    ok = eligible(trials, plan.usable_cores)
    choice: Choice | None = None
    reason = "no trial measured any step: " + "; ".join(f"{t.setting.label()}: {_failure(t)}" for t in trials)
    if ok:
        sub = choose([trials[i].setting for i in ok], [trials[i].throughput for i in ok])
        choice = Choice(ok[sub.best], ok[sub.fastest], tuple(ok[i] for i in sub.within_noise))
        reason = explain(trials, choice, plan.usable_cores)
        over = [t for i, t in enumerate(trials) if t.ok and i not in ok
                and is_faster(t.throughput, trials[choice.fastest].throughput)]
        if over:
            t = max(over, key=lambda t: t.throughput.steps_per_s)
            wait = _contention(t, "run_queue_delay_per_s")
            notes.append(
                f"num_workers={t.setting.label()} measured {t.throughput.steps_per_s:,.1f} steps/s, more than "
                f"any setting within the {plan.usable_cores}-core budget, but the loading is CPU-bound: "
                "beyond the budget its workers only win CPU time from other processes on this machine"
                + (f" (its threads waited {wait:.1f} s per second for a core)" if wait is not None else "")
                + "; not chosen")
    return SweepResult(plan, tuple(trials), choice, reason, auto_start, auto_start_source, tuple(notes),
                       time.perf_counter() - started)


def _worker_cpu(trial: Trial) -> float | None:
    vals = [r["worker_cpu_fraction"] for r in trial.raw if r.get("worker_cpu_fraction") is not None]
    return sum(vals) / len(vals) if vals else None


def _contention(trial: Trial, key: str) -> float | None:
    vals = [r["contention"][key] for r in trial.raw if r.get("contention") and r["contention"].get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def worker_demand(trials: Sequence[Trial]) -> float | None:
    """Share of its time a worker wants a CPU (on one or runnable), from the measured setting
    with the fewest workers (the one its own workers contend with least)."""
    with_workers = sorted((t for t in trials if t.ok and t.setting.num_workers > 0),
                          key=lambda t: cost_key(t.setting))
    for t in with_workers:
        d = _contention(t, "worker_demand")
        if d is not None:
            return d
    return None


def cpu_bound(trials: Sequence[Trial]) -> bool:
    """Whether the loading work is CPU-bound: its workers want a CPU most of the time."""
    d = worker_demand(trials)
    return d is not None and d >= CPU_BOUND_FRACTION


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
    cpu = _worker_cpu(best) if best.setting.num_workers > 0 else None
    if cpu is None:
        cpu = next((c for t in trials if (c := _worker_cpu(t)) is not None), None)
    if demand is not None:
        if demand >= CPU_BOUND_FRACTION:
            sentence += (f" Loading is CPU-bound (a worker wants a CPU {100 * demand:.0f} % of the time, "
                         f"on one or waiting for one): more workers than the {usable_cores} usable core(s) "
                         "cannot add throughput of their own.")
        else:
            sentence += (f" Loading mostly waits (a worker wants a CPU {100 * demand:.0f} % of the time): "
                         f"latency-bound work gains from more workers than the {usable_cores} usable core(s).")
    elif cpu is not None:
        if cpu >= CPU_BOUND_FRACTION:
            sentence += (f" Loading is CPU-bound (workers compute {100 * cpu:.0f} % of their batch time): "
                         f"more workers than the {usable_cores} usable core(s) cannot add throughput.")
        else:
            sentence += (f" Loading mostly waits (workers compute {100 * cpu:.0f} % of their batch time): "
                         f"latency-bound work gains from more workers than the {usable_cores} usable core(s).")
    if best.throughput.data_wait_fraction > 0.05:
        sentence += (f" The step still waits for data {100 * best.throughput.data_wait_fraction:.0f} % "
                     "of the time at this setting.")
    return sentence


# --- running trials in child processes --------------------------------------------------------

def subprocess_runner(out_dir: Path, timeout_s: float | None = None) -> TrialRunner:
    """A runner that starts ``python -m tracelens.capture.measure`` per trial.

    The script's own output goes to ``trials/trial-<k>.log``; the result to ``trial-<k>.json``.
    """
    trials_dir = out_dir / "trials"

    def run(spec: TrialSpec, k: int) -> dict[str, Any]:
        trials_dir.mkdir(parents=True, exist_ok=True)
        spec_path = trials_dir / f"trial-{k}.spec.json"
        result_path = trials_dir / f"trial-{k}.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(trials_dir / f"trial-{k}.log", "wb") as log:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "tracelens.capture.measure", str(spec_path), str(result_path)],
                    stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, env=env, check=False,
                )
            except subprocess.TimeoutExpired:
                return {"error": f"trial timed out after {timeout_s:.0f} s", "step_ns": [], "wait_ns": []}
        if not result_path.is_file():
            return {"error": f"the trial process failed (status {proc.returncode}); see {trials_dir / f'trial-{k}.log'}",
                    "step_ns": [], "wait_ns": []}
        return dict(json.loads(result_path.read_text()))

    return run


def recommended_start(target: str, args: Sequence[str], module: bool, out_dir: Path,
                      timeout_s: float = 300.0) -> tuple[int | None, str]:
    """num_workers the diagnosis recommends, from one short profiled run of the script.

    Returns (None, why) when the profiled run or its analysis fails.
    """
    run_dir = out_dir / "profile"
    code = (
        "import sys; from pathlib import Path; "
        "from tracelens.capture import ProfileOptions, run_profile; "
        "r = run_profile(ProfileOptions(target=sys.argv[1], args=tuple(sys.argv[4:]), module=sys.argv[2] == '1', "
        "out=Path(sys.argv[3]), force=True, no_report=True)); "
        "sys.exit(0 if r.window_captured else 3)"
    )
    with open(out_dir / "profile.log", "wb") as log:
        try:
            proc = subprocess.run([sys.executable, "-c", code, target, "1" if module else "0", str(run_dir), *args],
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return None, f"the profiled run timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, f"the profiled run captured no window (status {proc.returncode}, see {out_dir / 'profile.log'})"
    try:
        from tracelens.api import analyze_path

        doc = analyze_path(run_dir).document
    except Exception as exc:
        return None, f"the profiled run could not be analyzed ({exc})"
    doc = doc["ranks"][0] if "ranks" in doc else doc
    return int(doc["recommendation"]["num_workers"]), f"diagnosis {doc['diagnosis']} of a profiled run"


def usable_cores() -> int:
    """Cores this process may use (affinity, cgroup quota), at least 1."""
    try:
        from tracelens.capture.machine import core_facts

        n = core_facts().get("usable_cores")
        if n:
            return int(n)
    except Exception:
        pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --- documents and rendering -----------------------------------------------------------------

def _setting_dict(trial: Trial) -> dict[str, Any]:
    """The loader's settings as measured: constructed values, else the overrides."""
    lo = trial.loader
    s = trial.setting
    return {
        "num_workers": int(lo.get("num_workers", s.num_workers)),
        "pin_memory": bool(lo.get("pin_memory", bool(s.pin_memory))),
        "persistent_workers": bool(lo.get("persistent_workers", False)),
        "prefetch_factor": lo.get("prefetch_factor", s.prefetch_factor),
    }


def baseline_settings(trials: Sequence[Trial]) -> dict[str, Any] | None:
    """The script's own loader settings, recovered from what the overrides replaced."""
    for t in trials:
        lo = t.loader
        if not lo:
            continue
        own = dict(_setting_dict(t))
        for key, change in (lo.get("overrides_applied") or {}).items():
            if key in own:
                own[key] = change.get("from")
        if own.get("num_workers") == 0:
            own["prefetch_factor"] = None
        return own
    return None


def trial_record(trial: Trial) -> dict[str, Any]:
    """One ``trials[]`` entry of sweep.json."""
    t = trial.throughput
    rec = _setting_dict(trial)
    batch = trial.loader.get("batch_size")
    raw0 = trial.raw[0] if trial.raw else {}
    rec.update({
        "steps_per_s": round(t.steps_per_s, 4),
        "steps_per_s_spread": round(t.spread, 4),
        "steps_per_s_min": round(t.min, 4),
        "steps_per_s_max": round(t.max, 4),
        "steps_per_s_q1": round(t.q1, 4),
        "steps_per_s_q3": round(t.q3, 4),
        "spread_kind": "interquartile range of per-window rates",
        "steps_per_s_ci": [round(t.ci_lo, 4), round(t.ci_hi, 4)],
        "ci_kind": f"{100 * CI_LEVEL:.0f} % block-bootstrap interval of the mean rate",
        "samples_per_s": round(t.steps_per_s * batch, 2) if isinstance(batch, int) else None,
        "batch_size": batch,
        "exposed_data_wait_fraction": round(t.data_wait_fraction, 6),
        "exposed_data_wait_source": "host wait in DataLoader.__next__ (timing-only trial, no GPU trace)",
        "data_wait_fraction": round(t.data_wait_fraction, 6),
        "steps_measured": t.steps,
        "warmup_steps": raw0.get("warmup"),
        "repeats": len(trial.raw),
        "window_steps_per_s": list(t.window_rates),
        "worker_cpu_fraction": None if (c := _worker_cpu(trial)) is None else round(c, 4),
        "cores_used": None if (u := _contention(trial, "cpu_per_s")) is None else round(u, 3),
        "run_queue_delay_per_s": None if (d := _contention(trial, "run_queue_delay_per_s")) is None
        else round(d, 3),
        "load_average_1m": raw0.get("load_average_1m"),
        "worker_cpu_demand": None if (wd := _contention(trial, "worker_demand")) is None else round(wd, 4),
        "startup_ms": None if raw0.get("startup_ns") is None else round(raw0["startup_ns"] / 1e6, 2),
        "overrides": trial.setting.overrides(),
        "label": trial.setting.label(),
        "wall_s": round(trial.wall_s, 3),
        "remeasured": trial.remeasured,
        "exit_status": raw0.get("exit_status"),
        "stop_reason": raw0.get("stop_reason"),
        "error": raw0.get("error"),
    })
    return rec


def sweep_document(result: SweepResult) -> dict[str, Any]:
    """``sweep.json`` (SPEC §4), with the plan and the extras after the required keys."""
    trials = [trial_record(t) for t in result.trials]
    best = None
    if result.choice is not None:
        b = trials[result.choice.best]
        best = {k: b[k] for k in ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")}
    plan = result.plan
    return {
        "schema_version": SCHEMA_VERSION,
        "trials": trials,
        "best": best,
        "reason": result.reason,
        "fastest": None if result.choice is None else result.choice.fastest,
        "best_index": None if result.choice is None else result.choice.best,
        "within_noise": [] if result.choice is None else list(result.choice.within_noise),
        "baseline": baseline_settings(result.trials),
        "mode": "auto" if not plan.settings else "grid",
        "auto_start": result.auto_start,
        "auto_start_source": result.auto_start_source,
        "command": {"target": plan.target, "args": list(plan.args), "module": plan.module},
        "steps": plan.steps, "warmup": plan.warmup, "repeats": plan.repeats, "windows": plan.windows,
        "time_budget_s": plan.time_budget_s,
        "usable_cores": plan.usable_cores,
        "noise_floor_fraction": NOISE_FLOOR_FRACTION,
        "worker_cpu_demand": worker_demand(result.trials),
        "cpu_bound": cpu_bound(result.trials),
        "notes": list(result.notes),
        "wall_s": round(result.wall_s, 3),
    }


def default_out_dir(target: str, root: Path = Path("tracelens-runs")) -> Path:
    """``tracelens-runs/sweep-<stem>-<YYYYmmdd-HHMMSS>`` (suffixed when it exists)."""
    stem = Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]
    base = root / f"sweep-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def write_outputs(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``sweep.json`` and ``report.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = sweep_document(result)
    js = write_atomic(out_dir / "sweep.json", json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return js, write_atomic(out_dir / "report.html", render_sweep_html(doc))


def plan_trial_timeout(plan: SweepPlan) -> float:
    """Per-trial timeout (s): the whole budget, at least a minute."""
    return max(60.0, plan.time_budget_s)


def sweep(plan: SweepPlan, out_dir: Path, progress: TextIO | None = sys.stderr,
          auto: bool = False) -> tuple[SweepResult, Path, Path]:
    """Run the sweep with child processes and write its outputs; the public entry point."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start: int | None = None
    source: str | None = None
    if auto:
        if progress is not None:
            progress.write("[sweep] auto: one profiled run for the diagnosis' recommendation ...\n")
        start, source = recommended_start(plan.target, plan.args, plan.module, out_dir)
        if start is None:
            source = f"{source}; started from num_workers=0"
        if progress is not None:
            progress.write(f"[sweep] auto: starting at num_workers={start or 0} ({source})\n")
    runner = subprocess_runner(out_dir, plan_trial_timeout(plan))
    result = run_sweep(plan, runner, Progress(progress), auto_start=start, auto_start_source=source)
    js, html = write_outputs(result, out_dir)
    return result, js, html


__all__ = [
    "Choice", "Setting", "SweepPlan", "SweepResult", "Throughput", "Trial", "choose", "grid",
    "is_within_noise", "next_auto_workers", "run_sweep", "summarize", "sweep", "sweep_document",
    "window_rates",
]
