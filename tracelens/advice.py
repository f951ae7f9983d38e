"""The settings math: workers from Little's law, the core budget, and the shape of the waits.

Pure functions over numbers the rules measured; no trace, no I/O. Every constant used here is
a :class:`Threshold` of :data:`THRESHOLDS`, with the reason for its value, so the rule listing
(``tracelens rules``, docs/rules.md) documents the same numbers the code uses.
Times are ms unless a name says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Threshold:
    """One number a rule or the settings math depends on, with the reason for its value."""

    name: str
    value: float
    unit: str
    reason: str


_T = Threshold
THRESHOLDS: dict[str, Threshold] = {t.name: t for t in (
    _T("exposed_wait_fraction", 0.05, "of step time",
       "the TensorBoard profiler plugin's DataLoader rule and XProf's 'moderately input-bound' "
       "both start at 5 %; below it the loader costs less than run-to-run noise"),
    _T("exposed_wait_high_fraction", 0.20, "of step time",
       "XProf calls a step 'highly input-bound' from 20 %; findings above it are severity high"),
    _T("outlier_compute_factor", 10.0, "x median",
       "a step whose own work (step time minus data wait) exceeds 10x the median carries one-time "
       "costs (warm-up, cudnn autotuning, lazy init, the first pseudo-step of a fallback: 40x in "
       "the kineto autograd samples); steps slowed 3-5x by a busy machine stay in"),
    _T("min_steps", 5, "steps",
       "with fewer steady steps the median is dominated by one-time costs and the wait pattern "
       "(every k-th call long) cannot show; 5 is the smallest window that shows a period of 4"),
    _T("headroom_fraction", 0.15, "of the workers needed",
       "Little's law gives the mean; batch-production times vary (the p90 of worker batch "
       "times is typically 10-20 % above the median) and each batch also pays the queue hand-over, "
       "so the count gets 15 % more workers, at least one"),
    _T("cpu_bound_fraction", 0.70, "(CPU time + run-queue delay) / wall time",
       "loading that is on a CPU, or runnable and waiting for one, 70 % or more of the time it "
       "spends producing a batch is limited by CPU (the run-queue delay counts: CPU-bound work on "
       "a busy machine shows a low CPU share); the rest is IPC, allocation and page faults"),
    _T("io_bound_fraction", 0.50, "(CPU time + run-queue delay) / wall time",
       "loading that wants a CPU at most half the time it produces batches mostly waits "
       "(storage, network, sleep); more workers than cores can still help"),
    _T("run_delay_fraction", 0.10, "run-queue delay / wall time",
       "on a machine with spare cores the scheduler delay of a busy process stays at a few %; "
       "10 % of the time runnable but not running means the cores are oversubscribed"),
    _T("involuntary_switch_rate", 100, "per s per process",
       "a CPU-bound process with a core of its own is preempted a few times a second; contended "
       "cores preempt it every few-ms time slice (hundreds per second)"),
    _T("oversubscription_ratio", 1.5, "runnable threads / usable cores",
       "'well above' the core budget: the run's own processes keep on average 1.5x as many "
       "threads runnable (on a CPU or waiting for one) as the rank has cores; up to that, idle "
       "gaps and time slicing absorb them, beyond it every thread runs slower"),
    _T("latency_workers_per_core", 4, "workers per core",
       "latency-bound workers (storage, network, sleep) mostly wait, so more than one per core "
       "helps; each one is a process holding a dataset copy and prefetch_factor batches, so the "
       "count is capped at 4 per usable core"),
    _T("latency_workers_max", 32, "workers",
       "absolute cap for latency-bound loading: past ~32 processes the per-worker memory "
       "(dataset copy, prefetched batches, shared-memory file descriptors) dominates"),
    _T("assumed_worker_cap", 8, "workers",
       "a saved trace does not record the machine's cores: the count is capped at 8, which fits "
       "a machine with at least 9 free cores for this process; re-run under `tracelens profile` "
       "to cap by the real core budget"),
    _T("long_wait_factor", 5.0, "x median __next__",
       "a __next__ call 5x longer than the median call found no batch ready; with a drained "
       "queue the ready calls take ~0.1-2 ms and the empty ones tens of ms"),
    _T("long_wait_min_fraction", 0.05, "of compute per step",
       "a wait under 5 % of the compute per step is not worth prefetching for"),
    _T("burst_period_factor", 2.0, "x num_workers",
       "a drained queue makes every num_workers-th call long (workers finish together); long "
       "calls spaced 2x further apart than that are bursts of slow batches, not a rate deficit"),
    _T("prefetch_factor_max", 8, "batches per worker",
       "each prefetched batch sits in shared memory: num_workers x prefetch_factor batches; 8 per "
       "worker covers a slow batch 8 steps long and keeps memory bounded"),
    _T("pageable_copy_fraction", 0.005, "of step time",
       "pageable host-to-device copies are staged and synchronous; once they cost 0.5 % of the "
       "step, pinning pays for its extra pin-memory thread"),
    _T("pageable_copy_high_fraction", 0.05, "of step time",
       "pageable copies taking 5 % of the step are worth a medium-severity finding"),
    _T("host_bound_idle_fraction", 0.20, "of step time",
       "the GPU idle (not waiting for data) for 20 % of a step means the main thread's own work, "
       "launches or synchronizations limit the step, not the loader"),
    _T("worker_capacity_ratio", 2.0, "x consumption (num_workers × C / T_b)",
       "when the current workers, at their measured time per batch, could produce twice the "
       "batches the loop consumes, a data wait is not a shortage of loading capacity: it comes "
       "from bursts of slow batches (a shallow queue) or from a busy machine (other processes, "
       "run-queue delay), and more workers cannot shorten it; below 2x the median batch time, its "
       "spread (p90 10-20 % above the median) and the queue hand-over can still drain the queue"),
    _T("respawn_min_ms", 50.0, "ms per epoch",
       "a worker start-up under 50 ms per epoch is not worth persistent_workers' held memory"),
)}


def threshold(name: str) -> float:
    """The value of threshold ``name``."""
    return THRESHOLDS[name].value


# ---------------------------------------------------------------------------------------------
# Core budget


@dataclass(frozen=True)
class CoreBudget:
    """Cores this rank's loader may use: usable cores / local ranks, minus the main process."""

    usable_cores: float
    local_ranks: int
    cores_per_rank: float
    worker_cores: int  # may be 0: no core left for loader workers

    def describe(self) -> str:
        """One sentence with the arithmetic."""
        ranks = f" / {self.local_ranks} local ranks" if self.local_ranks > 1 else ""
        return (f"core budget: {self.usable_cores:g} usable cores{ranks} = {self.cores_per_rank:g} "
                f"per rank, minus 1 for the main process = {self.worker_cores} for workers")


def core_budget(usable_cores: float, local_ranks: int | None = None) -> CoreBudget:
    """The loader's share of ``usable_cores`` (affinity ∩ cgroup quota) on one rank."""
    ranks = max(1, local_ranks or 1)
    per_rank = usable_cores / ranks
    return CoreBudget(usable_cores, ranks, per_rank, max(0, math.floor(per_rank + 1e-9) - 1))


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


def latency_worker_cap(cores_per_rank: float | None) -> int:
    """The stated limit on latency-bound workers: 4 per usable core, at most 32."""
    cap = int(threshold("latency_workers_max"))
    if cores_per_rank is not None:
        cap = min(cap, max(1, math.floor(threshold("latency_workers_per_core") * cores_per_rank)))
    return cap


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
