"""The settings math: workers from Little's law, the core budget, and the shape of the waits.

Pure functions over numbers the rules measured; no trace, no I/O. Every constant is a
threshold of :mod:`tracelens.diagnosis.thresholds`. Times are ms unless a name says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracelens.diagnosis.thresholds import threshold

# ---------------------------------------------------------------------------------------------
# Core budget


@dataclass(frozen=True)
class CoreBudget:
    """Cores one rank may use: usable cores / local ranks; and the cores left to it while other
    processes (outside the job) used ``outside_cores`` of them. The main process's share is what
    it measurably uses (``plan.cpu_demand``), not a reserved core."""

    usable_cores: float
    local_ranks: int
    cores_per_rank: float
    worker_cores: int  # CPU-bound workers that can each have a core: the whole cores left per rank
    outside_cores: float = 0.0  # cores other processes used (0 on a quiet machine)

    @property
    def cores_left_per_rank(self) -> float:
        """(usable − outside) / local ranks: what CPU-bound work of this rank can get (≥ 0.1)."""
        return max(0.1, (self.usable_cores - self.outside_cores) / self.local_ranks)

    def describe(self) -> str:
        """One sentence with the arithmetic."""
        ranks = f" / {self.local_ranks} local ranks" if self.local_ranks > 1 else ""
        if self.outside_cores:
            return (f"core budget: ({self.usable_cores:g} usable cores − {self.outside_cores:.2f} used by other "
                    f"processes){ranks} = {self.cores_left_per_rank:.2f} left per rank")
        return f"core budget: {self.usable_cores:g} usable cores{ranks} = {self.cores_per_rank:g} per rank"


def core_budget(usable_cores: float, local_ranks: int | None = None, outside_cores: float = 0.0) -> CoreBudget:
    """The loader's share of ``usable_cores`` (affinity ∩ cgroup quota) on one rank, with
    ``outside_cores`` taken by processes outside the job."""
    ranks = max(1, local_ranks or 1)
    per_rank = usable_cores / ranks
    left = max(0.0, usable_cores - outside_cores) / ranks
    return CoreBudget(usable_cores, ranks, per_rank, max(1, math.floor(left + 1e-9)), outside_cores)


# ---------------------------------------------------------------------------------------------
# Little's law


def headroom(workers_needed: float) -> int:
    """Extra workers on top of ``ceil(workers_needed)``: 15 %, at least one."""
    return max(1, math.ceil(threshold("headroom_fraction") * math.ceil(workers_needed)))


def workers_needed(batch_ms: float, compute_ms: float) -> float:
    """N = T_b / C: workers that each take ``batch_ms`` per batch to feed a step of ``compute_ms``."""
    if compute_ms <= 0:
        return math.inf
    return batch_ms / compute_ms


def littles_law_workers(batch_ms: float, compute_ms: float) -> int:
    """ceil(T_b / C) plus headroom; at least 1."""
    need = workers_needed(batch_ms, compute_ms)
    if not math.isfinite(need):
        return 1
    return max(1, math.ceil(need - 1e-9) + headroom(need))


def batch_ms_from_drained_queue(workers: int, compute_ms: float, wait_ms: float) -> float:
    """T_b ≈ N·(C + W): with the queue drained each step lasts T_b / N (DOMAIN §3)."""
    return workers * (compute_ms + wait_ms)


def latency_worker_cap() -> int:
    """The stated limit on latency-bound workers (not a number of cores: such workers mostly wait)."""
    return int(threshold("latency_workers_max"))


def speedup_ceiling(exposed_fraction: float) -> float:
    """1 / (1 − exposed): the step-rate gain if the exposed wait vanished entirely."""
    return math.inf if exposed_fraction >= 1 else 1.0 / (1.0 - max(0.0, exposed_fraction))


def overlap_speedup(batch_ms: float, compute_ms: float) -> float:
    """Gain from moving loading off the main process: (T_b + C) / max(C, T_b / N) with N large."""
    if compute_ms <= 0:
        return 1.0
    return (batch_ms + compute_ms) / compute_ms


# ---------------------------------------------------------------------------------------------
# The shape of the __next__ waits


@dataclass(frozen=True)
class WaitShape:
    """How the ``__next__`` waits are distributed (ms)."""

    calls: int
    median_ms: float
    p90_ms: float
    max_ms: float
    long_ms: float  # the threshold above which a call found no batch ready
    long_calls: int
    long_median_ms: float
    long_share: float  # share of all wait time spent in long calls
    period: float | None  # median number of calls from one long call to the next
    is_bimodal: bool  # most calls near zero and the long ones carry the wait


def wait_shape(waits_ms: Sequence[float], compute_ms: float) -> WaitShape:
    """Classify the waits: a drained queue shows most calls near zero and every k-th long."""
    w = np.asarray(waits_ms, dtype=float)
    if w.size == 0:
        return WaitShape(0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, None, False)
    med = float(np.median(w))
    long_ms = max(threshold("long_wait_factor") * med, threshold("long_wait_min_fraction") * compute_ms)
    is_long = w > long_ms
    idx = np.flatnonzero(is_long)
    total = float(w.sum())
    share = float(w[is_long].sum()) / total if total > 0 else 0.0
    period = float(np.median(np.diff(idx))) if idx.size >= 2 else None
    bimodal = bool(idx.size >= 1 and idx.size <= w.size / 2 and share >= 0.5)
    return WaitShape(
        calls=int(w.size),
        median_ms=med,
        p90_ms=float(np.percentile(w, 90)),
        max_ms=float(w.max()),
        long_ms=long_ms,
        long_calls=int(idx.size),
        long_median_ms=float(np.median(w[is_long])) if idx.size else 0.0,
        long_share=share,
        period=period,
        is_bimodal=bimodal,
    )


def prefetch_for_spikes(current: int, workers: int, spike_ms: float, compute_ms: float) -> int:
    """prefetch_factor that buffers a ``spike_ms`` gap: spike / C more batches over ``workers``.

    The main loop consumes one batch per ``compute_ms``; to ride out one slow batch it needs
    ``spike_ms / compute_ms`` batches already in the queue, spread over the workers.
    """
    if workers <= 0 or compute_ms <= 0:
        return current
    extra = math.ceil(spike_ms / compute_ms / workers - 1e-9)
    return int(min(threshold("prefetch_factor_max"), max(current, current + extra)))


def median(values: Sequence[float]) -> float | None:
    """Median, None when empty."""
    return float(np.median(np.asarray(values, dtype=float))) if len(values) else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Percentile ``q`` (0-100), None when empty."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None
