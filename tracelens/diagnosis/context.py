"""What the rules measure, derived once from the analysis and the run facts: the steady state,
the shape of the waits, the core budget and how the loading processes spend their time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracelens.analysis import TraceAnalysis
from tracelens.columnset import StepTable
from tracelens.diagnosis import sizing
from tracelens.diagnosis.facts import RunFacts, known_settings, run_facts
from tracelens.diagnosis.sizing import CoreBudget, WaitShape
from tracelens.diagnosis.thresholds import threshold
from tracelens.runjson import RunInfo
from tracelens.vocab import LoaderSettings


@dataclass(frozen=True)
class SteadyState:
    """The steps without one-time costs (see threshold ``outlier_compute_factor``), ms."""

    steps: int
    excluded_steps: int
    step_ms: float  # median step
    compute_ms: float  # C: median of step time minus data wait
    wait_ms: float  # W: mean data wait per step
    exposed_fraction: float  # without the epoch-start waits (TL202 reports those)
    data_wait_fraction: float
    gpu_idle_other_fraction: float | None
    startup_fraction: float = 0.0  # exposed wait of the epoch turnover (epoch_turnover_rows)
    startup_waits_ms: tuple[float, ...] = ()  # each new iterator's first wait
    turnover_rows: tuple[int, ...] = ()  # the per_step rows counted in startup_fraction


def epoch_start_waits(per_step: StepTable) -> dict[int, float]:
    """Row -> the wait for a new iterator's first batch (ms).

    A step holding one ``__next__`` call more than the usual step (the median: one, or two
    when every step draws from two training loaders) saw an epoch end (the StopIteration call);
    the new iterator's first call is the longer of that step's longest call and the next
    step's (a ProfilerStep loop keeps both in one step; ``tracelens profile`` starts a step per
    batch).
    """
    calls = np.asarray(per_step["next_calls"])
    longest = np.asarray(per_step["next_longest_ms"], dtype=float)
    usual = max(1, int(np.median(calls))) if calls.size else 1
    out: dict[int, float] = {}
    for i in np.flatnonzero(calls > usual).tolist():
        j = i + 1 if i + 1 < len(longest) and longest[i + 1] > longest[i] else i
        out[j] = float(longest[j])
    return out


def epoch_turnover_rows(per_step: StepTable, refill_batches: int) -> list[int]:
    """Rows whose wait belongs to an epoch change rather than to steady loading.

    At an epoch end the old iterator stops (non-persistent workers are shut down and joined
    inside the StopIteration call) and the new one starts with an empty queue: it requests
    num_workers × prefetch_factor batches at once, which fresh workers produce right after their
    start-up (fork, worker_init_fn, first touches of copy-on-write memory). Those first
    ``refill_batches`` batches wait for the start-up and the refill, not for a rate deficit.
    The rows are the step holding the StopIteration call and the new iterator's first
    ``max(1, refill_batches)`` steps.
    """
    calls = np.asarray(per_step["next_calls"])
    usual = max(1, int(np.median(calls))) if calls.size else 1
    rows: set[int] = set()
    for i, j in zip(np.flatnonzero(calls > usual).tolist(), epoch_start_waits(per_step)):
        rows.add(i)
        rows.update(r for r in range(j, j + max(1, refill_batches)) if r < len(calls))
    return sorted(rows)


def steady_state(per_step: StepTable, multi_process: bool = True,
                 refill_batches: int | None = None) -> SteadyState | None:
    """Median compute and mean wait per step over the steps free of one-time costs.

    With worker processes, the waits of the epoch turnover (:func:`epoch_turnover_rows`) are
    reported as ``startup_fraction`` and left out of ``exposed_fraction``: more workers do not
    shorten them, persistent workers do (TL202).
    """
    if len(per_step) == 0:
        return None
    # Each full-length temporary is a column's worth of memory (24 MB at 3 million steps), held
    # beside the per-step table: computed in place, selected by a view when every step is kept.
    dur = np.asarray(per_step["duration_ms"], dtype=float)
    wait = np.asarray(per_step["data_wait_ms"], dtype=float)
    exposed = np.asarray(per_step["exposed_wait_ms"], dtype=float)
    compute = dur - wait
    np.maximum(compute, 0.0, out=compute)
    keep = compute <= threshold("outlier_compute_factor") * float(np.median(compute)) + 1e-9
    if not keep.any():
        keep = np.ones_like(keep)
    sel: slice | np.ndarray = slice(None) if keep.all() else keep
    total = float(dur[sel].sum())
    startup = epoch_start_waits(per_step) if multi_process else {}
    turnover = epoch_turnover_rows(per_step, refill_batches or 1) if multi_process else []
    start_exposed: np.ndarray | None = None
    if turnover:
        start_exposed = np.zeros_like(exposed)
        start_exposed[turnover] = exposed[turnover]
    gpu = np.asarray(per_step["gpu_busy_ms"], dtype=float)
    idle_other = None
    if not np.isnan(gpu).all() and total > 0:
        idle_other = float(np.clip(dur - gpu - exposed, 0, None)[sel].sum()) / total
    steady_wait = wait if start_exposed is None else wait - start_exposed
    steady_exposed = exposed if start_exposed is None else exposed - start_exposed
    start_sum = float(start_exposed[sel].sum()) if start_exposed is not None else 0.0
    return SteadyState(
        steps=int(keep.sum()),
        excluded_steps=int((~keep).sum()),
        step_ms=float(np.median(dur[sel])),
        compute_ms=float(np.median(compute[sel])),
        wait_ms=float(steady_wait[sel].mean()),
        exposed_fraction=float(steady_exposed[sel].sum()) / total if total > 0 else 0.0,
        data_wait_fraction=float(wait[sel].sum()) / total if total > 0 else 0.0,
        gpu_idle_other_fraction=idle_other,
        startup_fraction=start_sum / total if total > 0 else 0.0,
        startup_waits_ms=tuple(startup.values()),
        turnover_rows=tuple(r for r in turnover if exposed[r] > 0),
    )


@dataclass(frozen=True)
class Loading:
    """How the loading processes spend their time while producing batches."""

    source: str  # "batch records in the workers", "worker processes over the window", ...
    cpu_fraction: float  # CPU / wall (summed over threads: can exceed 1)
    run_delay_fraction: float | None  # runnable but waiting for a CPU / wall (whole process)
    read_bytes: int | None
    cpu_share_when_runnable: float | None = None  # process CPU / (CPU + run-queue delay)

    @property
    def demand_fraction(self) -> float:
        """Share of the time the loading wanted a CPU: on one, or runnable and waiting for one.

        CPU-bound work slowed by other threads shows a low CPU share: when the loading process
        gets a CPU for only a share s of its runnable time, a batch that got c of CPU wanted c / s.
        Only the rest is waiting for I/O, sleep or locks.
        """
        s = self.cpu_share_when_runnable
        return min(1.0, self.cpu_fraction / s) if s else self.cpu_fraction + (self.run_delay_fraction or 0.0)


def loading_usage(facts: RunFacts | None) -> Loading | None:
    """CPU share of the loading work: per-batch records first, else whole-process telemetry."""
    if facts is None:
        return None
    delays = [w.run_delay_fraction for w in facts.workers if w.run_delay_fraction is not None]
    delay = float(np.median(delays)) if delays else None
    reads = [w.read_bytes for w in facts.workers if w.read_bytes is not None]
    read = int(sum(reads)) if reads else None
    procs = list(facts.workers)
    if facts.batch_source == "main process" and facts.main is not None:
        delay, read = facts.main.run_delay_fraction, facts.main.read_bytes
        procs = [facts.main]
    cpu = sum(p.cpu_s or 0.0 for p in procs)
    wait = sum(p.run_delay_s or 0.0 for p in procs)
    share = cpu / (cpu + wait) if cpu > 0 and any(p.run_delay_s is not None for p in procs) else None
    if facts.batch_ms and facts.batch_cpu_ms and sum(facts.batch_ms) > 0:
        frac = sum(facts.batch_cpu_ms) / sum(facts.batch_ms)
        return Loading(f"batch records in the {facts.batch_source or 'workers'}", frac, delay, read, share)
    fracs = [w.cpu_fraction for w in facts.workers if w.cpu_fraction is not None]
    if fracs:
        return Loading("worker processes over the window", float(np.median(fracs)), delay, read, share)
    return _waiting_main_process(facts)


def _waiting_main_process(facts: RunFacts) -> Loading | None:
    """Loading that runs in the main process with no per-batch records (a generator, a
    ``ParallelMapper`` of threads): the main process's CPU and run-queue delay bound the loading's,
    so when even they stay under ``io_bound_fraction`` the loading mostly waits. A busier main
    process proves nothing (its CPU is also the training step's): None."""
    m = facts.main
    if not facts.loads_in_main or m is None or m.cpu_fraction is None:
        return None
    ld = Loading("the main process over the window (its CPU bounds the loading's, which runs in it)",
                 m.cpu_fraction, m.run_delay_fraction, m.read_bytes)
    return ld if ld.demand_fraction <= threshold("io_bound_fraction") else None


def busy_cores_threshold(usable_cores: float | None) -> float:
    """Cores other processes must use for a busy machine: ``other_cpu_cores_min``, and at least
    ``other_cpu_cores_share`` of the usable cores."""
    return max(threshold("other_cpu_cores_min"), threshold("other_cpu_cores_share") * (usable_cores or 0.0))


def outside_cores(facts: RunFacts | None) -> float:
    """Cores taken by processes outside the job when they make a busy machine (else 0: the
    background of an idle machine does not change the core budget)."""
    s = facts.supply if facts is not None else None
    if s is None or s.other_cpu_cores is None:
        return 0.0
    usable = s.usable_cores or (facts.usable_cores if facts is not None else None)
    return s.other_cpu_cores if s.other_cpu_cores >= busy_cores_threshold(usable) else 0.0


def loading_cause(ld: Loading | None) -> str | None:
    """"cpu" when the loading wants a CPU most of the time, "io" when it mostly waits, else None."""
    if ld is None:
        return None
    if ld.demand_fraction >= threshold("cpu_bound_fraction"):
        return "cpu"
    if ld.demand_fraction <= threshold("io_bound_fraction"):
        return "io"
    return None


@dataclass(frozen=True)
class Context:
    """Everything a rule may read."""

    analysis: TraceAnalysis
    facts: RunFacts | None
    settings: LoaderSettings
    steady: SteadyState | None
    shape: WaitShape
    budget: CoreBudget | None
    loading: Loading | None

    @property
    def workers_now(self) -> int | None:
        """Current num_workers: known, or implied by the iterator kind (0 for single-process)."""
        if self.settings.num_workers is not None:
            return self.settings.num_workers
        return 0 if self.analysis.iterator == "single_process" else None

    @property
    def multi_process(self) -> bool:
        return (self.workers_now or 0) > 0 or self.analysis.iterator == "multi_process"

    @property
    def input_bound(self) -> bool:
        """Steps wait for data (the exposed wait threshold), or a shortage the outside load hides."""
        return self.steady is not None and (self.steady.exposed_fraction >= threshold("exposed_wait_fraction")
                                            or self.hidden_shortage is not None)

    @property
    def hidden_shortage(self) -> float | None:
        """The current workers' capacity (num_workers × C / T_b) when the loader keeps up only
        because outside load slows the training loop, else None: other processes hold cores (a
        busy machine), the main process's math threads each wait for a CPU at least
        ``main_thread_stall_fraction`` of the time, which inflates C, and the workers produce
        under ``worker_capacity_ratio`` x what that slowed loop consumes. Cutting the threads
        (TL105) speeds the loop up and exposes the shortage a quiet run shows."""
        f, st, n, b = self.facts, self.steady, self.workers_now, self.budget
        if f is None or st is None or b is None or not b.outside_cores or not n or f.batch_source != "workers":
            return None
        if f.main is None or f.main.run_delay_fraction is None or (f.torch_threads_main or 0) < 2 or not f.batch_ms:
            return None
        stall = f.main.run_delay_fraction / (f.torch_threads_main or 1)
        t_b = float(np.median(f.batch_ms))
        if stall < threshold("main_thread_stall_fraction") or t_b <= 0 or st.compute_ms <= 0:
            return None
        cap = n * st.compute_ms / t_b
        return cap if cap < threshold("worker_capacity_ratio") else None

    @property
    def inconclusive(self) -> str | None:
        """Why the analysis itself cannot support a verdict of "healthy", or None."""
        a = self.analysis
        if a.dropped_steps or a.dropped_waits:
            return "step or __next__ events were dropped for unusable times"
        if a.measured_steps and not a.step_time_ms:
            return "every step has zero length"
        return None

    @property
    def quality_factor(self) -> float:
        """Confidence multiplier for the trace's quality (few steps, fallback steps)."""
        f = 1.0
        if self.steady is not None and self.steady.steps < threshold("min_steps"):
            f *= 0.6
        if self.analysis.step_source != "profiler_steps":
            f *= 0.85
        return f


def steady_waits(analysis: TraceAnalysis, steady: SteadyState | None) -> np.ndarray:
    """The ``__next__`` waits without the epoch turnover's (its rows' longest call each), ms."""
    waits = np.asarray(analysis.next_wait_ms, dtype=float)
    if steady is None or not steady.turnover_rows or not waits.size:
        return waits
    longest = np.asarray(analysis.per_step["next_longest_ms"], dtype=float)
    removed = np.zeros(waits.size, bool)
    for row in steady.turnover_rows:
        ms = float(longest[row])
        gap = np.abs(waits - ms)
        gap[removed] = np.inf
        k = int(np.argmin(gap))  # the first closest wait still there
        if not removed[k] and gap[k] < 1e-6 + 1e-6 * ms:
            removed[k] = True
    return waits[~removed]


def build_context(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> Context:
    """Derive the steady state, wait shape, core budget and loading usage once."""
    facts = run_facts(run)
    settings = known_settings(analysis, run)
    multi = (settings.num_workers or 0) > 0 or analysis.iterator != "single_process"
    refill = (settings.num_workers or 0) * (settings.prefetch_factor or 2)
    # Persistent workers do not restart: the waits after an epoch starts are ordinary loading.
    respawns = multi and settings.persistent_workers is not True
    steady = steady_state(analysis.per_step, respawns, refill)
    shape = sizing.wait_shape(steady_waits(analysis, steady), steady.compute_ms if steady else 0.0)
    budget = None
    if facts is not None and facts.usable_cores:
        budget = sizing.core_budget(facts.usable_cores, facts.local_world_size, outside_cores(facts))
    return Context(analysis, facts, settings, steady, shape, budget, loading_usage(facts))
