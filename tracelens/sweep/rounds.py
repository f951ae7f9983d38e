"""Interleaved rounds (pure): what one round of one trial measured, the throughput of a setting
over its rounds, paired comparisons of two settings round by round, when a setting cannot win,
when the sweep is conclusive, and whether the machine was too disturbed to tell.

Every live setting is measured once per round, one after another, in an order that rotates
from round to round, so that a neighbour's load hits every setting alike. Two settings are
then compared round by round: the ratio of their rates in the same round cancels what the
load did to both, and its spread over the rounds is the uncertainty of the comparison
(a t interval of the mean log ratio).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracelens.sweep.settings import Setting
from tracelens.sweep.stats import (
    NOISE_FLOOR_FRACTION,
    NS_PER_S,
    Choice,
    Throughput,
    blocks,
    bootstrap_interval,
    cost_key,
    is_faster,
)

#: Two-sided 90 % quantiles of Student's t by degrees of freedom (1-30; beyond: the normal's).
_T90 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761,
        1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701,
        1.699, 1.697)
#: Rounds in common two settings need before their paired comparison is trusted (with 2 the t
#: interval is 6.3 standard errors wide: it decides nothing).
MIN_PAIRED_ROUNDS = 3
#: Outside load that moved by at least this many cores between rounds disturbed the sweep ...
DISTURBED_CORES_RANGE = 0.5
#: ... as did rounds of one setting whose rates differ by more than this (relative standard
#: deviation, median over the settings): a quiet 2-core machine gives 1-5 %.
DISTURBED_ROUND_CV = 0.10


def t90(df: int) -> float:
    """The two-sided 90 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    return _T90[df - 1] if df <= len(_T90) else 1.645


@dataclass(frozen=True)
class RoundRecord:
    """One round of one trial: its steps, and the CPU around it as the parent measured it."""

    round: int  # the sweep's round number (1, 2, ...)
    step_ns: tuple[int, ...]
    wait_ns: int  # Σ __next__ wait over those steps
    other_cores: float | None = None  # processes outside the sweep, over the round (cores)
    trial_cores: float | None = None  # the measured trial's processes (cores)
    busy_cores: float | None = None  # every process on the sweep's CPUs
    cpu_per_s: float | None = None  # the trial's own reading (schedstat) over its measured steps
    run_queue_delay_per_s: float | None = None
    worker_demand: float | None = None
    wall_s: float = 0.0  # the parent's grant to the trial's report (discard and settle included)
    settle_s: float | None = None
    discarded: int = 0
    partial: bool = False  # cut short by the script's end

    @property
    def steps(self) -> int:
        return len(self.step_ns)

    @property
    def ns(self) -> int:
        return int(sum(self.step_ns))

    @property
    def rate(self) -> float:
        """Steps/s over the round (0 when it has no step)."""
        ns = self.ns
        return self.steps * NS_PER_S / ns if ns > 0 else 0.0


def throughput(rounds: Sequence[RoundRecord]) -> Throughput:
    """A setting's throughput over its rounds: all steps / all their time; the round rates as
    the windows (spread, quartiles, min-max); the interval of the mean rate from the spread of
    the round rates (t, :data:`CI_LEVEL`) once there are 3 rounds, else a block bootstrap of
    the steps."""
    kept = [r for r in rounds if r.steps and r.ns > 0]
    if not kept:
        return Throughput(0.0, 0.0, 0.0, 0.0, (), 0, 0.0)
    n = sum(r.steps for r in kept)
    total = sum(r.ns for r in kept)
    rate = n * NS_PER_S / total
    rates = np.asarray([r.rate for r in kept])
    q1, q3 = np.percentile(rates, [25, 75])
    if len(kept) >= MIN_PAIRED_ROUNDS:
        half = t90(len(kept) - 1) * float(rates.std(ddof=1)) / math.sqrt(len(kept))
        lo, hi = max(0.0, rate - half), rate + half
    else:
        lo, hi = bootstrap_interval([b for r in kept for b in blocks(r.step_ns)])
    return Throughput(
        steps_per_s=rate, spread=float(q3 - q1), min=float(rates.min()), max=float(rates.max()),
        window_rates=tuple(round(float(x), 4) for x in rates), steps=n,
        data_wait_fraction=sum(r.wait_ns for r in kept) / total, q1=float(q1), q3=float(q3), ci_lo=lo, ci_hi=hi)


@dataclass(frozen=True)
class Paired:
    """A over B, round by round: the ratio of their rates and its interval (:data:`CI_LEVEL`)."""

    ratio: float
    lo: float
    hi: float
    rounds: int


def paired(a: Sequence[RoundRecord], b: Sequence[RoundRecord]) -> Paired | None:
    """A's rate over B's in the rounds both measured (None below :data:`MIN_PAIRED_ROUNDS`)."""
    rb = {r.round: r.rate for r in b if r.rate > 0}
    logs = [math.log(r.rate / rb[r.round]) for r in a if r.rate > 0 and r.round in rb]
    if len(logs) < MIN_PAIRED_ROUNDS:
        return None
    mean = statistics.fmean(logs)
    half = t90(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Paired(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


@dataclass(frozen=True)
class Measured:
    """A setting and its rounds, as the comparisons need them."""

    setting: Setting
    rounds: tuple[RoundRecord, ...]
    throughput: Throughput


def measured(setting: Setting, rounds: Sequence[RoundRecord]) -> Measured:
    return Measured(setting, tuple(rounds), throughput(rounds))


def faster(a: Measured, b: Measured) -> bool:
    """Whether A beats B beyond the noise: by more than the floor
    (:data:`NOISE_FLOOR_FRACTION`) and with a paired interval above 1 when they share rounds,
    else with separate intervals of their mean rates."""
    p = paired(a.rounds, b.rounds)
    if p is None:
        return is_faster(a.throughput, b.throughput)
    return p.ratio * (1 - NOISE_FLOOR_FRACTION) > 1 and p.lo > 1


def equivalent(a: Measured, b: Measured) -> bool:
    """Whether A and B are equal up to the floor, with confidence: the paired interval of
    their ratio lies within ±:data:`NOISE_FLOOR_FRACTION` (unpaired: both intervals lie within
    a band of that width)."""
    band = (1 - NOISE_FLOOR_FRACTION, 1 / (1 - NOISE_FLOOR_FRACTION))
    p = paired(a.rounds, b.rounds)
    if p is not None:
        return band[0] <= p.lo and p.hi <= band[1]
    ta, tb = a.throughput, b.throughput
    if not (ta.ci_hi > 0 and tb.ci_hi > 0):
        return False
    lo, hi = min(ta.ci_lo, tb.ci_lo), max(ta.ci_hi, tb.ci_hi)
    return hi <= lo * band[1]


def choose(items: Sequence[Measured]) -> Choice:
    """The cheapest setting no other beats beyond the noise of the fastest."""
    ok = [i for i, m in enumerate(items) if m.throughput.steps]
    if not ok:
        raise ValueError("no trial measured any step")
    fastest = max(ok, key=lambda i: items[i].throughput.steps_per_s)
    close = tuple(i for i in ok if i == fastest or not faster(items[fastest], items[i]))
    best = min(close, key=lambda i: (cost_key(items[i].setting), -items[i].throughput.steps_per_s))
    return Choice(best, fastest, close)


def beaten_by(item: Measured, others: Sequence[Measured], min_rounds: int) -> Measured | None:
    """A setting that beats ``item`` beyond the noise, once both have ``min_rounds`` rounds
    (``item`` then cannot be chosen: only settings within the noise of the fastest can)."""
    if len(item.rounds) < min_rounds:
        return None
    for o in others:
        if o is not item and len(o.rounds) >= min_rounds and faster(o, item):
            return o
    return None


def undecided(items: Sequence[Measured]) -> list[tuple[int, int]]:
    """Pairs that are neither one faster than the other nor equivalent: more rounds could
    still change the choice."""
    out = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = items[i], items[j]
            if not (faster(a, b) or faster(b, a) or equivalent(a, b)):
                out.append((i, j))
    return out


def rotation(keys: Sequence[int], round_number: int) -> list[int]:
    """The order of a round: ``keys`` rotated by the round number, so that every setting is
    measured first, second, ... in turn (a load that builds up during a round hits all alike)."""
    if not keys:
        return []
    k = round_number % len(keys)
    return [*keys[k:], *keys[:k]]


@dataclass(frozen=True)
class Disturbance:
    """How much the machine moved during the sweep, and whether that hid the differences."""

    other_cores_min: float | None
    other_cores_max: float | None
    round_cv: float | None  # median over the settings of the relative spread of their round rates
    too_disturbed: bool
    text: str


def disturbance(items: Sequence[Measured], undecided_pairs: Sequence[tuple[int, int]]) -> Disturbance:
    """The outside load's range over the rounds, the rounds' spread, and the verdict: too
    disturbed when some pair is still undecided and the load moved by
    :data:`DISTURBED_CORES_RANGE` cores or more, or the rounds of a setting vary more than the
    undecided settings differ."""
    others = [r.other_cores for m in items for r in m.rounds if r.other_cores is not None]
    cvs = []
    for m in items:
        rates = [r.rate for r in m.rounds if r.rate > 0 and not r.partial]
        if len(rates) >= 2:
            cvs.append(statistics.stdev(rates) / statistics.fmean(rates))
    cv = statistics.median(cvs) if cvs else None
    lo, hi = (min(others), max(others)) if others else (None, None)
    moved = lo is not None and hi is not None and hi - lo >= DISTURBED_CORES_RANGE
    gaps = []
    for i, j in undecided_pairs:
        a, b = items[i].throughput.steps_per_s, items[j].throughput.steps_per_s
        if max(a, b) > 0:
            gaps.append(abs(a - b) / max(a, b))
    noisy = cv is not None and cv >= DISTURBED_ROUND_CV and bool(gaps) and cv > min(gaps)
    too = bool(undecided_pairs) and (moved or noisy)
    load = (f"other processes used {lo:.2f}–{hi:.2f} cores over the rounds" if lo is not None and hi is not None
            else "the outside load is unknown (no /proc/stat)")
    spread = f"a setting's rate moved by {100 * cv:.0f} % (median relative spread) between rounds" if cv is not None else ""
    if too:
        pairs = ", ".join(f"{items[i].setting.label()} vs {items[j].setting.label()}" for i, j in undecided_pairs[:3])
        text = (f"The machine was too disturbed to separate the settings: {load}; {spread}, more than the "
                f"settings differ ({pairs}). The choice falls back to the cheapest of them; measure again on "
                "a quieter machine (or with more --max-rounds) to tell them apart.")
    else:
        text = f"{load}" + (f"; {spread}" if spread else "") + "."
    return Disturbance(lo, hi, cv, too, text)
