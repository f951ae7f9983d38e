"""Statistics and choice (pure): per-window throughput from per-step times, its spread and
bootstrap interval, the noise between two settings, the auto exploration order, and the
cheapest setting within noise of the fastest."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracelens.sweep.settings import Setting

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

#: Auto exploration never goes beyond this many workers per usable core (latency-bound loaders
#: gain from more workers than cores, but not without bound).
AUTO_MAX_WORKERS_PER_CORE = 8
NS_PER_S = 1e9


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


#: Sorts a count the script keeps as it is (unknown) after every count a sweep names.
_OWN_COUNT = 1 << 20


def cost_key(s: Setting) -> tuple[int, int, int, int, int]:
    """Cheaper first: fewer workers, then no pinned memory, then a shallower prefetch queue,
    then fewer math threads in the main process, then in each worker (the script's own worker
    count and main threads, unknown here, after every count; a worker's own threads are the
    DataLoader's 1)."""
    return (_OWN_COUNT if s.num_workers is None else s.num_workers, 1 if s.pin_memory else 0,
            s.prefetch_factor or 0, _OWN_COUNT if s.main_threads is None else s.main_threads,
            1 if s.worker_threads is None else s.worker_threads)


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


def _rate(t: Any) -> float:
    return float(t.steps_per_s)


def next_auto_workers(results: Mapping[int, Any], start: int, max_workers: int,
                      faster: Callable[[Any, Any], bool] = is_faster, rate: Callable[[Any], float] = _rate) -> int | None:
    """The next num_workers to try in ``auto`` mode, or None when the search is done.

    From ``start`` (the diagnosis' recommendation) double upward (0 → 1 → 2 → 4 ...) while each
    step (from 2 workers on) is faster than everything below it beyond the noise; then halve
    downward from ``start`` while the cheaper setting is still within the noise of the best.
    ``faster(a, b)`` compares two measurements (default: :func:`is_faster` of throughputs; the
    sweep compares its settings round by round), ``rate`` orders them.
    """
    up = [min(start, max_workers)]
    while up[-1] < max_workers:
        up.append(min(max_workers, 1 if up[-1] == 0 else 2 * up[-1]))
    for i, w in enumerate(up):
        if w not in results:
            return w
        # 0 → 1 only moves loading off the main process (no gain without compute to overlap),
        # so the first step that must pay off is the one to 2 workers.
        if i > 0 and w >= 2 and not faster(results[w], max((results[u] for u in up[:i]), key=rate)):
            break
    best = max(results.values(), key=rate)
    w = up[0]
    while w > 0:
        w = w // 2
        if w not in results:
            return w
        if results[w] is not best and faster(best, results[w]):
            break
    return None
