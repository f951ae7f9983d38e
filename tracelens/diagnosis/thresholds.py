"""Every number a rule or the settings math depends on, with the reason for its value.

The rule listing (``tracelens rules``, docs/rules.md) documents the same numbers the code uses.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    _T("confident_steps", 10, "steps",
       "a verdict needs the wait pattern to repeat: with workers, a drained queue makes every "
       "num_workers-th call long and an epoch turnover recurs every few steps in short epochs, so "
       "under 10 steady steps such a pattern shows once or twice and one slow step moves the "
       "exposed-wait fraction by 10 % or more; TL304 says how to record more"),
    _T("few_steps_confidence", 0.5, "confidence",
       "the most a 'healthy' verdict from fewer than confident_steps steady steps may claim: "
       "a wait that recurs less often than the window is long can be missing from it"),
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
    _T("main_thread_stall_fraction", 0.25, "run-queue delay per math thread / wall time",
       "the training process's math threads runnable but not running a quarter of the time: each "
       "parallel region waits at its barrier for the thread without a core, so the training loop itself "
       "slows (measured 2.3-4.8x on a shared 2-core machine with 2 threads, whatever the loader did)"),
    _T("involuntary_switch_rate", 100, "per s per process",
       "a CPU-bound process with a core of its own is preempted a few times a second; contended "
       "cores preempt it every few-ms time slice (hundreds per second)"),
    _T("oversubscription_ratio", 1.5, "runnable threads / usable cores",
       "'well above' the core budget: the run's own processes keep on average 1.5x as many "
       "threads runnable (on a CPU or waiting for one) as the rank has cores; up to that, idle "
       "gaps and time slicing absorb them, beyond it every thread runs slower"),
    _T("latency_workers_max", 32, "workers",
       "the cap for latency-bound loading, whatever the cores and their load: such workers mostly wait, "
       "so they are not capped by cores (on 2 cores, 32 persistent workers of examples/latency_bound_reads.py "
       "ran 181 steps/s against 44 with 8); past ~32 processes the per-worker memory (dataset copy, "
       "prefetched batches, shared-memory file descriptors) dominates"),
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
    _T("straggler_wait_fraction", 0.05, "of the step",
       "one rank's exposed data wait beyond the other ranks' median by 5 % of the step (the input-bound "
       "threshold) is a loader slower than the others', not run-to-run noise"),
    _T("straggler_absorbed_fraction", 0.5, "of the straggler's extra wait",
       "in synchronous data-parallel training the other ranks wait for the slowest at the next "
       "collective: when their collective time exceeds the straggler's by at least half its extra "
       "data wait, that wait holds the whole job (less could be compute imbalance instead)"),
    _T("other_cpu_cores_min", 0.5, "cores",
       "processes outside the job using half a core or more: on a 2-core machine a quarter of it; an "
       "idle machine's background (kernel workers, a shell, an editor) measured 0.0-0.1 cores here"),
    _T("other_cpu_cores_share", 0.25, "of the usable cores",
       "on a large machine other processes must also take a quarter of the cores this job may use to "
       "be called a busy machine: below that the job's threads still find idle cores"),
    _T("healthy_exposed_max", 0.25, "of step time",
       "a run whose steps wait for data a quarter of their time or more is never called healthy, even "
       "when that wait sits in steps the steady state leaves out (epoch turnovers): it is the loader's cost"),
    _T("respawn_min_ms", 50.0, "ms per epoch",
       "a worker start-up under 50 ms per epoch is not worth persistent_workers' held memory"),
)}


def threshold(name: str) -> float:
    """The value of threshold ``name``."""
    return THRESHOLDS[name].value
