"""The diagnosis (SPEC §3): rules as small data over a TraceAnalysis and, when present, run.json.

Each :class:`Rule` has a stable id, a kind, a default severity, a precondition that skips it with
a stated reason, the names of the thresholds it uses (``advice.THRESHOLDS``, each with its reason)
and a check that returns a :class:`Finding` with the measured evidence and the settings it
proposes. :func:`diagnose` runs them all, names the main cause and merges the proposals into the
complete :class:`Recommendation`. Rules read only ``TraceAnalysis`` and run facts, never events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tracelens import advice
from tracelens.advice import CoreBudget, WaitShape, threshold
from tracelens.analysis import TraceAnalysis
from tracelens.runjson import Loader, ProcessSummary, RunInfo

EXPOSED_WAIT_THRESHOLD = advice.threshold("exposed_wait_fraction")
DIAGNOSES = ("cpu_starvation", "io_bound", "oversubscription", "input_bound", "healthy", "undetermined")
SEVERITIES = ("info", "low", "medium", "high")
RERUN_PROFILER = (
    "torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], "
    "schedule=torch.profiler.schedule(wait=5, warmup=2, active=20), "
    "on_trace_ready=torch.profiler.tensorboard_trace_handler(LOGDIR), with_stack=False) "
    "with prof.step() after every batch, or simply `tracelens profile train.py ARGS`"
)
PER_SAMPLE_COST_ADVICE = (
    "cache decoded samples (decode once, store tensors or uint8 arrays), move augmentation to "
    "the GPU (torchvision.transforms.v2 on CUDA tensors, DALI), precompute deterministic "
    "transforms offline"
)
STORAGE_ADVICE = (
    "read from faster or local storage, pack samples into sequential shards (WebDataset, "
    "tar/Parquet/LMDB) instead of one small file per sample, cache the dataset in RAM"
)


# =============================================================================================
# Public result types (document.py, api.py and the report read these)


@dataclass(frozen=True)
class Recommendation:
    """Complete DataLoader settings to use next, with the reasoning in ``notes``.

    ``keep_current`` names settings whose current value the evidence does not show and which
    should stay as they are (``num_workers`` is then a lower bound). ``expected_speedup`` is
    the predicted step-rate gain of applying these settings (1.0 = none).
    """

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    notes: tuple[str, ...] = ()
    expected_speedup: float | None = None
    torch_threads_per_worker: int | None = None
    torch_threads_main: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    keep_current: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One observation: which rule, the evidence that triggered it, and what to do."""

    id: str
    kind: str
    severity: str  # "high" | "medium" | "low" | "info"
    confidence: float
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # the settings this finding proposes
    thresholds: dict[str, float] = field(default_factory=dict)  # the thresholds it compared with


@dataclass(frozen=True)
class Skipped:
    """A rule whose precondition did not hold, and why."""

    id: str
    reason: str


@dataclass(frozen=True)
class Diagnosis:
    """The main cause, the settings to use next, and the findings behind them."""

    diagnosis: str
    recommendation: Recommendation
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()
    confidence: float | None = None


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader settings as known (None = unknown)."""

    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None
    batch_size: int | None = None


# =============================================================================================
# Run facts: what run.json adds, reduced to the few numbers the rules use


@dataclass(frozen=True)
class ProcessUsage:
    """One process (main or a DataLoader worker) over the telemetry window."""

    role: str  # "main" or "worker"
    wall_s: float
    cpu_s: float | None = None
    run_delay_s: float | None = None  # time runnable but waiting for a CPU
    read_bytes: int | None = None
    ctx_involuntary: int | None = None
    threads: int | None = None

    @property
    def cpu_fraction(self) -> float | None:
        """CPU time / wall time (can exceed 1 with several busy threads)."""
        return self.cpu_s / self.wall_s if self.cpu_s is not None and self.wall_s > 0 else None

    @property
    def run_delay_fraction(self) -> float | None:
        """Run-queue delay / wall time."""
        return self.run_delay_s / self.wall_s if self.run_delay_s is not None and self.wall_s > 0 else None

    @property
    def involuntary_per_s(self) -> float | None:
        """Involuntary context switches per second."""
        return self.ctx_involuntary / self.wall_s if self.ctx_involuntary is not None and self.wall_s > 0 else None


@dataclass(frozen=True)
class RunFacts:
    """The run.json facts the rules use (from ``tracelens.runjson.RunInfo``, or built in tests)."""

    settings: LoaderSettings = field(default_factory=LoaderSettings)
    usable_cores: float | None = None
    logical_cores: int | None = None
    local_world_size: int | None = None
    torch_threads_main: int | None = None
    torch_threads_worker: int | None = None
    thread_env: Mapping[str, str] = field(default_factory=dict)
    has_gpu: bool | None = None
    main: ProcessUsage | None = None
    workers: tuple[ProcessUsage, ...] = ()
    batch_ms: tuple[float, ...] = ()  # wall time of each batch produced (workers, or main with 0)
    batch_cpu_ms: tuple[float, ...] = ()  # CPU time of the same batches
    batch_source: str | None = None  # "workers" or "main process"
    iterator_creations: int | None = None  # DataLoader iterators created in the window (epochs)
    first_next_ms: tuple[float, ...] = ()  # the first __next__ wait of each iterator

    @property
    def has_telemetry(self) -> bool:
        """Per-process or per-batch telemetry is present."""
        return self.main is not None or bool(self.workers) or bool(self.batch_ms)


def _usage(p: ProcessSummary) -> ProcessUsage:
    """A ``runjson.ProcessSummary`` as :class:`ProcessUsage`."""
    return ProcessUsage(role=p.role, wall_s=p.wall_s, cpu_s=p.cpu_s, run_delay_s=p.run_delay_s,
                        read_bytes=p.read_bytes, ctx_involuntary=p.ctx_involuntary,
                        threads=p.max_threads or None)


def _first_waits_ms(run: RunInfo, loader: Loader) -> tuple[float, ...]:
    """The main process's wait for the first batch of each iterator of ``loader`` (ms).

    run.json lists every batch drawn in order; with ``batches_per_epoch`` known, iterator k's
    first batch is batch k·batches_per_epoch of that loader.
    """
    per_epoch = loader.batches_per_epoch
    if not per_epoch or loader.iterators_created < 2:
        return ()
    ids = [loader.id if li is None else li for li in run.batch_loader_ids]
    waits = [w for w, li in zip(run.batch_wait_us, ids) if li == loader.id]
    return tuple(waits[i] / 1000.0 for i in range(0, len(waits), per_epoch))


def run_facts(run: RunInfo | RunFacts | None) -> RunFacts | None:
    """Reduce ``run`` (a ``runjson.RunInfo``, a :class:`RunFacts`, or None) to :class:`RunFacts`."""
    if run is None or isinstance(run, RunFacts):
        return run
    loader = run.main_loader
    m = run.machine
    settings = LoaderSettings(
        num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers, prefetch_factor=loader.prefetch_factor,
        batch_size=loader.batch_size,
    ) if loader is not None else LoaderSettings()
    lid = loader.id if loader is not None else None
    nw = settings.num_workers or 0
    summaries = run.process_summaries()
    main = next((_usage(p) for p in summaries if p.role == "main"), None)
    workers = tuple(_usage(p) for p in summaries
                    if p.role == "worker" and (lid is None or p.loader_id in (lid, None)))
    if nw > 0:
        batches = [b for b in run.window_batches() if b.loader_id is not None and b.loader_id == lid]
    else:
        batches = [b for b in run.window_batches() if b.loader_id is None]
    threads = [w.torch_threads for w in run.workers if w.torch_threads is not None
               and (lid is None or w.loader_id == lid)]
    return RunFacts(
        settings=settings,
        usable_cores=m.usable_cores_exact or (float(m.usable_cores) if m.usable_cores else None),
        logical_cores=m.logical_cores,
        local_world_size=m.local_world_size,
        torch_threads_main=m.torch_threads_main,
        torch_threads_worker=int(np.median(threads)) if threads else None,
        thread_env=dict(m.thread_env),
        has_gpu=m.cuda_available,
        main=main,
        workers=workers,
        batch_ms=tuple(b.dur_us / 1000.0 for b in batches),
        batch_cpu_ms=tuple(b.cpu_us / 1000.0 for b in batches),
        batch_source="workers" if nw > 0 else "main process",
        iterator_creations=loader.iterators_created if loader is not None else None,
        first_next_ms=_first_waits_ms(run, loader) if loader is not None else (),
    )


def known_settings(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> LoaderSettings:
    """Settings from run.json when present, else what the iterator kind implies."""
    facts = run_facts(run)
    if facts is not None and facts.settings != LoaderSettings():
        return facts.settings
    if analysis.iterator == "single_process":
        return LoaderSettings(num_workers=0, pin_memory=None, persistent_workers=False, prefetch_factor=None)
    return LoaderSettings()


# =============================================================================================
# What the rules measure: derived once from the analysis and the run facts


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


def epoch_start_waits(per_step: pd.DataFrame) -> dict[int, float]:
    """Row -> the wait for a new iterator's first batch (ms).

    A step holding two ``__next__`` calls saw an epoch end (the StopIteration call); the new
    iterator's first call is the longer of that step's longest call and the next step's (a
    ProfilerStep loop keeps both in one step; ``tracelens profile`` starts a step per batch).
    """
    calls = per_step["next_calls"].to_numpy()
    longest = per_step["next_longest_ms"].to_numpy(float)
    out: dict[int, float] = {}
    for i in np.flatnonzero(calls >= 2).tolist():
        j = i + 1 if i + 1 < len(longest) and longest[i + 1] > longest[i] else i
        out[j] = float(longest[j])
    return out


def epoch_turnover_rows(per_step: pd.DataFrame, refill_batches: int) -> list[int]:
    """Rows whose wait belongs to an epoch change rather than to steady loading.

    At an epoch end the old iterator stops (non-persistent workers are shut down and joined
    inside the StopIteration call) and the new one starts with an empty queue: it requests
    num_workers × prefetch_factor batches at once, which fresh workers produce right after their
    start-up (fork, worker_init_fn, first touches of copy-on-write memory). Those first
    ``refill_batches`` batches wait for the start-up and the refill, not for a rate deficit.
    The rows are the step holding the StopIteration call and the new iterator's first
    ``max(1, refill_batches)`` steps.
    """
    calls = per_step["next_calls"].to_numpy()
    rows: set[int] = set()
    for i, j in zip(np.flatnonzero(calls >= 2).tolist(), epoch_start_waits(per_step)):
        rows.add(i)
        rows.update(r for r in range(j, j + max(1, refill_batches)) if r < len(calls))
    return sorted(rows)


def steady_state(per_step: pd.DataFrame, multi_process: bool = True,
                 refill_batches: int | None = None) -> SteadyState | None:
    """Median compute and mean wait per step over the steps free of one-time costs.

    With worker processes, the waits of the epoch turnover (:func:`epoch_turnover_rows`) are
    reported as ``startup_fraction`` and left out of ``exposed_fraction``: more workers do not
    shorten them, persistent workers do (TL202).
    """
    if per_step.empty:
        return None
    dur = per_step["duration_ms"].to_numpy(float)
    wait = per_step["data_wait_ms"].to_numpy(float)
    exposed = per_step["exposed_wait_ms"].to_numpy(float)
    compute = np.maximum(dur - wait, 0.0)
    keep = compute <= threshold("outlier_compute_factor") * float(np.median(compute)) + 1e-9
    if not keep.any():
        keep = np.ones_like(keep)
    total = float(dur[keep].sum())
    startup = epoch_start_waits(per_step) if multi_process else {}
    start_exposed = np.zeros_like(exposed)
    if multi_process:
        for row in epoch_turnover_rows(per_step, refill_batches or 1):
            start_exposed[row] = exposed[row]
    gpu = per_step["gpu_busy_ms"].to_numpy(float)
    idle_other = None
    if not np.isnan(gpu).all() and total > 0:
        idle_other = float(np.clip(dur - gpu - exposed, 0, None)[keep].sum()) / total
    return SteadyState(
        steps=int(keep.sum()),
        excluded_steps=int((~keep).sum()),
        step_ms=float(np.median(dur[keep])),
        compute_ms=float(np.median(compute[keep])),
        wait_ms=float((wait - start_exposed)[keep].mean()),
        exposed_fraction=float((exposed - start_exposed)[keep].sum()) / total if total > 0 else 0.0,
        data_wait_fraction=float(wait[keep].sum()) / total if total > 0 else 0.0,
        gpu_idle_other_fraction=idle_other,
        startup_fraction=float(start_exposed[keep].sum()) / total if total > 0 else 0.0,
        startup_waits_ms=tuple(startup.values()),
        turnover_rows=tuple(r for r in np.flatnonzero(start_exposed > 0).tolist()),
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
    return None


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
        return self.steady is not None and self.steady.exposed_fraction >= threshold("exposed_wait_fraction")

    @property
    def quality_factor(self) -> float:
        """Confidence multiplier for the trace's quality (few steps, fallback steps)."""
        f = 1.0
        if self.steady is not None and self.steady.steps < threshold("min_steps"):
            f *= 0.6
        if self.analysis.step_source != "profiler_steps":
            f *= 0.85
        return f


def steady_waits(analysis: TraceAnalysis, steady: SteadyState | None) -> list[float]:
    """The ``__next__`` waits without the epoch turnover's (its rows' longest call each)."""
    waits = list(analysis.next_wait_ms)
    if steady is None or not steady.turnover_rows:
        return waits
    longest = analysis.per_step["next_longest_ms"].to_numpy(float)
    for row in steady.turnover_rows:
        ms = float(longest[row])
        k = min(range(len(waits)), key=lambda i: abs(waits[i] - ms), default=None)
        if k is not None and abs(waits[k] - ms) < 1e-6 + 1e-6 * ms:
            waits.pop(k)
    return waits


def build_context(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> Context:
    """Derive the steady state, wait shape, core budget and loading usage once."""
    facts = run_facts(run)
    settings = known_settings(analysis, run)
    multi = (settings.num_workers or 0) > 0 or analysis.iterator != "single_process"
    refill = (settings.num_workers or 0) * (settings.prefetch_factor or 2)
    steady = steady_state(analysis.per_step, multi, refill)
    shape = advice.wait_shape(steady_waits(analysis, steady), steady.compute_ms if steady else 0.0)
    budget = None
    if facts is not None and facts.usable_cores:
        budget = advice.core_budget(facts.usable_cores, facts.local_world_size)
    return Context(analysis, facts, settings, steady, shape, budget, loading_usage(facts))


# =============================================================================================
# The rule table


Check = Callable[["Rule", Context], "Finding | None"]
Precondition = Callable[[Context], "str | None"]


@dataclass(frozen=True)
class Rule:
    """One rule as data: what it is, when it applies, which thresholds, and its check."""

    id: str
    kind: str
    severity: str  # default; a check may raise or lower it with the evidence
    title: str
    precondition: str  # in words, for the listing
    thresholds: tuple[str, ...]
    requires: Precondition  # returns the reason to skip, or None
    check: Check
    main: bool = False  # decides the main diagnosis


def _f(rule: Rule, ctx: Context, severity: str | None = None, confidence: float = 0.8, *,
       title: str | None = None, evidence: dict[str, Any], advice: str,
       settings: dict[str, Any] | None = None) -> Finding:
    return Finding(
        id=rule.id,
        kind=rule.kind,
        severity=severity or rule.severity,
        confidence=round(min(1.0, confidence * ctx.quality_factor), 2),
        title=title or rule.title,
        evidence={k: _round(v) for k, v in evidence.items()},
        advice=advice,
        settings=settings or {},
        thresholds={n: threshold(n) for n in rule.thresholds},
    )


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# --- preconditions ---------------------------------------------------------------------------


def _needs_steps(ctx: Context) -> str | None:
    if ctx.steady is None:
        return "no steps to measure"
    if ctx.analysis.next_calls == 0:
        return "no DataLoader __next__ events"
    return None


def _needs_telemetry(ctx: Context) -> str | None:
    if (r := _needs_steps(ctx)) is not None:
        return r
    if ctx.loading is None:
        return "no loader telemetry (a saved trace without run.json): the cause cannot be measured"
    return None


def _needs_shortage(ctx: Context) -> str | None:
    """TL102/TL103 name a shortage of loading capacity; with the current workers' measured
    capacity well above the demand, a wait is bursts or a busy machine, which TL104 reports."""
    if (r := _needs_telemetry(ctx)) is not None:
        return r
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return (f"the {ctx.workers_now} worker(s) can produce {cap:.1f}x the batches the loop consumes "
                f"(num_workers × C / T_b ≥ {threshold('worker_capacity_ratio'):g}): a data wait is not "
                "a loading-capacity shortage and more workers cannot help (TL104 reports it)")
    return None


def _needs_machine(ctx: Context) -> str | None:
    if ctx.facts is None or ctx.budget is None:
        return "no machine facts (run.json): the core budget is unknown"
    return None


def _needs_gpu(ctx: Context) -> str | None:
    if (r := _needs_steps(ctx)) is not None:
        return r
    if not ctx.analysis.has_gpu_activity:
        return "no GPU activity in the trace"
    return None


def _needs_workers(ctx: Context) -> str | None:
    if (r := _needs_steps(ctx)) is not None:
        return r
    if not ctx.multi_process:
        return "num_workers=0: no worker processes"
    return None


def _always(ctx: Context) -> str | None:
    return None


# --- main-cause rules ------------------------------------------------------------------------


def worker_capacity(ctx: Context) -> float | None:
    """num_workers × C / T_b: how many times the loop's consumption the current workers produce.

    Only from batch times measured in the worker processes (run.json): a T_b estimated from the
    waits assumes a drained queue and cannot show a surplus. None without them.
    """
    f, st, n = ctx.facts, ctx.steady, ctx.workers_now
    if f is None or not f.batch_ms or f.batch_source != "workers" or not n or st is None:
        return None
    t_b = float(np.median(f.batch_ms))
    if t_b <= 0 or st.compute_ms <= 0:
        return None
    return n * st.compute_ms / t_b


def _oversubscribed_threads(ctx: Context) -> tuple[int | None, float | None]:
    """Runnable threads this rank's loader setup asks for, and their ratio to the cores per rank."""
    f = ctx.facts
    if f is None or ctx.budget is None:
        return None, None
    workers = ctx.workers_now or 0
    per_worker = f.torch_threads_worker
    if per_worker is None:
        measured = [w.threads for w in f.workers if w.threads]
        per_worker = 1 if not measured else max(1, int(np.median(measured)) - 1)  # minus the queue thread
    main = f.torch_threads_main or 1
    pin = 1 if (f.settings.pin_memory and workers > 0) else 0
    demand = main + workers * per_worker + pin
    return demand, demand / max(ctx.budget.cores_per_rank, 1e-9)


def _check_oversubscription(rule: Rule, ctx: Context) -> Finding | None:
    f = ctx.facts
    assert f is not None and ctx.budget is not None
    demand, ratio = _oversubscribed_threads(ctx)
    procs = [p for p in (f.main, *f.workers) if p is not None and p.cpu_s is not None]
    # Threads runnable on average (on a CPU or waiting for one), over this rank's processes.
    load = sum(((p.cpu_s or 0.0) + (p.run_delay_s or 0.0)) / p.wall_s for p in procs)
    load_ratio = load / max(ctx.budget.cores_per_rank, 1e-9)
    delays = [p.run_delay_fraction for p in procs if p.run_delay_fraction is not None]
    invol = [p.involuntary_per_s for p in procs if p.involuntary_per_s is not None]
    max_delay = max(delays) if delays else None
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    confirmed = (max_delay is not None and max_delay >= threshold("run_delay_fraction")) or (
        bool(invol) and float(np.median(invol)) >= threshold("involuntary_switch_rate"))
    if not confirmed or load_ratio < threshold("oversubscription_ratio"):
        return None
    slowed_main = main_delay is not None and main_delay >= threshold("run_delay_fraction")
    severity = "high" if slowed_main or ctx.input_bound else "medium"
    workers = ctx.workers_now or 0
    # The workers get the cores the main process leaves: its measured CPU use (at most one core
    # once it runs one math thread), rounded to whole workers; a worker sharing a core with a
    # light main loop loses only the main loop's share, an idle core loses all of it.
    main_cores = min(1.0, f.main.cpu_fraction) if f.main is not None and f.main.cpu_fraction is not None else 1.0
    room = max(1, math.floor(ctx.budget.cores_per_rank - main_cores + 0.5))
    keep = min(workers, room)
    main_threads = max(1, math.floor(ctx.budget.cores_per_rank) - keep)
    gain = min(load_ratio, 1.0 / (1.0 - min(main_delay or 0.0, 0.9)))
    evidence = {
        "runnable_threads_mean": load, "threads_per_core": load_ratio,
        "configured_threads": demand, "configured_threads_per_core": ratio,
        "cores_per_rank": ctx.budget.cores_per_rank, "torch_threads_main": f.torch_threads_main,
        "torch_threads_worker": f.torch_threads_worker, "num_workers": workers,
        "max_run_delay_fraction": max_delay, "main_run_delay_fraction": main_delay,
        "main_cpu_cores": main_cores,
        "involuntary_switches_per_s_median": float(np.median(invol)) if invol else None,
        "loading_cpu_fraction": ctx.loading.cpu_fraction if ctx.loading else None,
        "exposed_wait_fraction": ctx.steady.exposed_fraction if ctx.steady else None,
    }
    text = (f"{load:.1f} threads runnable on average on {ctx.budget.cores_per_rank:g} cores per rank "
            f"({load_ratio:.1f} per core; {demand} configured); processes wait for a CPU up to "
            f"{_pct(max_delay or 0)} of the time")
    return _f(rule, ctx, severity, 0.85, title=f"Oversubscribed cores: {text}", evidence=evidence,
              advice=(f"Use 1 math thread per worker (a module-level worker_init_fn that calls torch.set_num_threads(1); "
                      f"OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 for the workers), num_workers={keep} "
                      f"(the {ctx.budget.cores_per_rank:g} cores per rank minus the main process's "
                      f"measured {main_cores:.2f} cores, rounded to whole workers), and "
                      f"torch.set_num_threads({main_threads}) in the main process. Adding workers "
                      f"makes this worse. Expected: at most {gain:.2f}x (the threads now share the "
                      f"cores {load_ratio:.1f} ways), an upper bound: the CPU work itself stays, so "
                      f"the real gain is the contention overhead removed (time slicing, threads "
                      f"waiting for each other in parallel regions), typically far less; measure it."),
              settings={"num_workers": keep, "torch_threads_per_worker": 1,
                        "torch_threads_main": main_threads, "expected_speedup": gain,
                        "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})


def _check_cpu_starvation(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "cpu":
        return None
    plan = plan_workers(ctx, "cpu")
    sev = "high" if ctx.steady.exposed_fraction >= threshold("exposed_wait_high_fraction") else "medium"
    conf = 0.9 if ld.source.startswith("batch") else 0.75
    return _f(rule, ctx, sev, conf,
              title=(f"CPU-starved loader: {_pct(ctx.steady.exposed_fraction)} of each step waits for "
                     f"data while the loading work is on a CPU {_pct(ld.cpu_fraction)} of the time "
                     f"and waits for one {_pct(ld.run_delay_fraction or 0.0)}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction,
                        "loading_run_delay_fraction": ld.run_delay_fraction, "loading_source": ld.source,
                        **plan.evidence},
              advice=plan.advice(PER_SAMPLE_COST_ADVICE),
              settings=plan.settings)


def _check_io_bound(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "io":
        return None
    plan = plan_workers(ctx, "latency")
    sev = "high" if ctx.steady.exposed_fraction >= threshold("exposed_wait_high_fraction") else "medium"
    return _f(rule, ctx, sev, 0.85 if ld.source.startswith("batch") else 0.7,
              title=(f"I/O- or latency-bound loader: {_pct(ctx.steady.exposed_fraction)} of each step "
                     f"waits for data while the loading work wants a CPU only {_pct(ld.demand_fraction)} "
                     f"of the time"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction, "loading_source": ld.source,
                        "read_bytes": ld.read_bytes, **plan.evidence},
              advice=plan.advice(STORAGE_ADVICE),
              settings=plan.settings)


def _check_input_bound(rule: Rule, ctx: Context) -> Finding | None:
    assert ctx.steady is not None
    if not ctx.input_bound:
        return None
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return _surplus_capacity(rule, ctx, cap)
    if loading_cause(ctx.loading) is not None:
        return None  # TL102 / TL103 name the cause
    plan = plan_workers(ctx, "unknown")
    sev = "high" if ctx.steady.exposed_fraction >= threshold("exposed_wait_high_fraction") else "medium"
    shape = ctx.shape
    pattern = ("most __next__ calls find a batch ready and every "
               f"{shape.period:.0f}th waits {shape.long_median_ms:.1f} ms (a drained queue)"
               if shape.is_bimodal and shape.period else
               f"every __next__ waits (median {shape.median_ms:.1f} ms)")
    why = ("the loading work is neither clearly CPU-bound nor clearly waiting (it wants a CPU "
           + _pct(ctx.loading.demand_fraction) + " of the time)"
           if ctx.loading is not None else "the trace holds no CPU or I/O telemetry of the loading work")
    return _f(rule, ctx, sev, 0.9,
              title=(f"Input-bound: {_pct(ctx.steady.exposed_fraction)} of each step waits for data "
                     f"({ctx.analysis.iterator.replace('_', '-')} iterator; {pattern}); cause not "
                     f"determinable: {why}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "data_wait_fraction": ctx.steady.data_wait_fraction,
                        "iterator": ctx.analysis.iterator, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_wait_period_calls": shape.period,
                        **plan.evidence},
              advice=plan.advice(f"if the loading is CPU-bound: {PER_SAMPLE_COST_ADVICE}; if it waits "
                                 f"on storage: {STORAGE_ADVICE}") +
              " To settle CPU-bound vs I/O-bound vs oversubscribed, re-run under `tracelens profile "
              "train.py ARGS`: it records per-worker CPU time, I/O bytes and run-queue delay.",
              settings=plan.settings)


def _surplus_capacity(rule: Rule, ctx: Context, cap: float) -> Finding:
    """Input-bound although the current workers produce ``cap`` times the demand: the wait is
    bursts (a shallow prefetch queue, TL203) or a busy machine, not too few workers."""
    st, f, shape, n = ctx.steady, ctx.facts, ctx.shape, ctx.workers_now
    assert st is not None and f is not None and n
    t_b = float(np.median(f.batch_ms))
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    delays = [w.run_delay_fraction for w in f.workers if w.run_delay_fraction is not None]
    worker_delay = float(np.median(delays)) if delays else None
    busy = any(d is not None and d >= threshold("run_delay_fraction") for d in (main_delay, worker_delay))
    sev = "high" if st.exposed_fraction >= threshold("exposed_wait_high_fraction") else "medium"
    if shape.is_bimodal:
        bursts = (f"The waits are bursty ({shape.long_calls} of {shape.calls} __next__ calls wait "
                  f"{shape.long_median_ms:.1f} ms while the rest find a batch ready): a deeper prefetch "
                  "queue absorbs them (TL203 sizes prefetch_factor when the spikes outgrow the queue).")
    else:
        bursts = (f"The waits are not bursty (median __next__ {shape.median_ms:.1f} ms, p90 "
                  f"{shape.p90_ms:.1f} ms), so a deeper prefetch queue is unlikely to help.")
    parts = [f"{role} {_pct(d)}" for role, d in (("the main process", main_delay),
                                                 ("the workers (median)", worker_delay)) if d is not None]
    if parts:
        queue = (f"Run-queue delay (runnable but waiting for a CPU): {' and '.join(parts)} of the time"
                 + (f", at or above the {_pct(threshold('run_delay_fraction'))} that marks a busy machine. "
                    if busy else ". "))
    else:
        queue = "The run-queue delay of the processes was not recorded. "
    return _f(rule, ctx, sev, 0.8,
              title=(f"Input-bound, not a loader capacity shortage: {_pct(st.exposed_fraction)} of each "
                     f"step waits for data although the {n} worker(s) produce {cap:.1f}x the batches the "
                     f"loop consumes (T_b {t_b:.1f} ms per batch, C {st.compute_ms:.1f} ms per step); "
                     f"the wait comes from bursts or a busy machine"),
              evidence={"exposed_wait_fraction": st.exposed_fraction,
                        "data_wait_fraction": st.data_wait_fraction, "num_workers": n,
                        "batch_ms": t_b, "batch_ms_source": f"measured per batch in the {f.batch_source}",
                        "compute_ms_per_step": st.compute_ms,
                        "workers_needed": advice.workers_needed(t_b, st.compute_ms),
                        "worker_capacity_ratio": cap, "main_run_delay_fraction": main_delay,
                        "worker_run_delay_fraction": worker_delay, "busy_machine": busy,
                        "bursty_waits": shape.is_bimodal, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_calls": shape.long_calls,
                        "calls": shape.calls, "recommended_num_workers": n},
              advice=(f"Keep num_workers={n}: at T_b = {t_b:.1f} ms per batch the workers' capacity is "
                      f"num_workers × C / T_b = {n} × {st.compute_ms:.1f} / {t_b:.1f} = {cap:.1f}x the "
                      f"demand, so the wait is not a shortage of loading capacity and more workers "
                      f"cannot shorten it. {bursts} {queue}Check the machine for other processes "
                      "(uptime, top) and re-measure when it is quiet before changing the loader."),
              settings={"num_workers": n})


# --- the workers plan (Little's law) ---------------------------------------------------------


@dataclass(frozen=True)
class WorkersPlan:
    """num_workers from Little's law with its inputs, cap and expected gain."""

    num_workers: int
    batch_ms: float | None
    batch_source: str
    compute_ms: float
    workers_needed: float | None
    uncapped: int | None
    cap: int | None
    cap_reason: str
    expected_speedup: float | None
    notes: tuple[str, ...]
    cannot_help: bool  # more workers cannot help: the cap is reached
    torch_threads_main: int | None = None  # torch.set_num_threads for the main process, when it must shrink
    torch_threads_per_worker: int | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The settings this plan proposes (for a Finding)."""
        out: dict[str, Any] = {"num_workers": self.num_workers, "expected_speedup": self.expected_speedup}
        if self.torch_threads_main is not None:
            out["torch_threads_main"] = self.torch_threads_main
        if self.torch_threads_per_worker is not None:
            out["torch_threads_per_worker"] = self.torch_threads_per_worker
        return out

    @property
    def evidence(self) -> dict[str, Any]:
        return {"batch_ms": self.batch_ms, "batch_ms_source": self.batch_source,
                "compute_ms_per_step": self.compute_ms, "workers_needed": self.workers_needed,
                "num_workers_uncapped": self.uncapped, "num_workers_cap": self.cap,
                "recommended_num_workers": self.num_workers, "expected_speedup": self.expected_speedup,
                "torch_threads_main": self.torch_threads_main}

    def advice(self, reduce_cost: str) -> str:
        capped = (f" (capped: Little's law asks for {self.uncapped})"
                  if self.uncapped is not None and self.uncapped > self.num_workers else "")
        threads = (f" with torch.set_num_threads({self.torch_threads_main}) in the main process"
                   if self.torch_threads_main is not None else "")
        s = f"Set num_workers={self.num_workers}{threads}{capped}. " + " ".join(self.notes)
        if self.cannot_help:
            s += f" More workers cannot help beyond that; reduce the per-batch cost instead: {reduce_cost}."
        else:
            s += f" If that is still not enough: {reduce_cost}."
        return s


def estimate_batch_ms(ctx: Context) -> tuple[float | None, str, int | None]:
    """T_b (one process's time per batch), where it came from, and the worker count it assumes."""
    f, st = ctx.facts, ctx.steady
    n = ctx.workers_now
    if f is not None and f.batch_ms:
        return float(np.median(f.batch_ms)), f"measured per batch in the {f.batch_source or 'workers'}", n
    if st is None:
        return None, "no steps", n
    if n == 0 and ctx.analysis.next_wait_ms:
        return (float(np.median(ctx.analysis.next_wait_ms)),
                "with num_workers=0 each __next__ produces the batch in the main process", n)
    if n is None and ctx.multi_process:
        shape = ctx.shape
        guess = max(1, round(shape.period)) if shape.is_bimodal and shape.period else 1
        return (advice.batch_ms_from_drained_queue(guess, st.compute_ms, st.wait_ms),
                f"N·(C + W) with the queue drained, assuming num_workers={guess} "
                f"({'the period of the long waits' if guess > 1 else 'the trace does not record it'})",
                guess)
    if n:
        return (advice.batch_ms_from_drained_queue(n, st.compute_ms, st.wait_ms),
                f"N·(C + W) = {n}·({st.compute_ms:.1f} + {st.wait_ms:.1f}) ms with the queue drained", n)
    return None, "unknown", n


def plan_workers(ctx: Context, cause: str) -> WorkersPlan:
    """Little's law, capped by the core budget (CPU-bound), a process limit (latency-bound) or
    an assumption (cause unknown without machine facts)."""
    st = ctx.steady
    assert st is not None
    c = st.compute_ms
    t_b, source, assumed_n = estimate_batch_ms(ctx)
    notes: list[str] = []
    current = ctx.workers_now if ctx.workers_now is not None else assumed_n
    if t_b is None:
        n = current or 1
        return WorkersPlan(n, None, source, c, None, None, None, "", None,
                           ("The batch production time could not be measured.",), False)
    need = advice.workers_needed(t_b, c)
    uncapped = advice.littles_law_workers(t_b, c)
    notes.append(f"Each batch takes T_b = {t_b:.1f} ms to produce ({source}); the training loop "
                 f"consumes one every C = {c:.1f} ms (step time minus data wait), so Little's law "
                 f"needs T_b / C = {need:.2f} workers; with headroom {uncapped}.")
    cores_per_rank = ctx.budget.cores_per_rank if ctx.budget else None
    if cause == "cpu" and ctx.budget is not None:
        cap, cap_reason = ctx.budget.worker_cores, (
            "the " + ctx.budget.describe() + " (CPU-bound work gains nothing past it)")
    elif cause == "latency":
        cap = advice.latency_worker_cap(cores_per_rank)
        per_core, most = int(threshold("latency_workers_per_core")), int(threshold("latency_workers_max"))
        by_cores = (f"{per_core} workers per usable core × {cores_per_rank:g} usable cores"
                    if cores_per_rank is not None else "")
        cap_reason = ((f"{by_cores} = {cap}" if cores_per_rank is not None and cap < most
                       else f"the absolute limit of {most} workers") +
                      " (latency-bound work is not capped by cores, but each worker is a process "
                      "holding a dataset copy and prefetch_factor batches in shared memory: "
                      f"{per_core} per core, at most {most})")
    elif ctx.budget is not None:
        cap, cap_reason = ctx.budget.worker_cores, ctx.budget.describe() + " (assuming CPU-bound work)"
    else:
        cap = int(threshold("assumed_worker_cap"))
        cap_reason = (f"the trace does not record the machine's cores: capped at {cap}, an assumption "
                      f"that fits a machine with at least {cap + 1} free cores")
    n = min(uncapped, cap) if cap is not None else uncapped
    if current:
        n = max(n, current)  # fewer workers cannot shorten a wait; oversubscription (TL101) may cut them
    cannot_help = cap is not None and uncapped > cap
    if cannot_help:
        notes.append(f"Capped at num_workers={n}, fewer than the {uncapped} Little's law asks for: "
                     f"the cap is {cap_reason}.")
    else:
        notes.append(f"Under the cap: {cap_reason}.")
    main_threads, c_new = _main_threads_for(ctx, cause, n, t_b)
    if main_threads is not None:
        now = ctx.facts.torch_threads_main if ctx.facts is not None else None
        notes.append(f"torch.set_num_threads({main_threads}) in the main process (now {now}): CPU-bound "
                     f"workers need cores of their own, and {now} main-process math threads + {n} "
                     f"worker(s) × 1 thread exceed the {cores_per_rank:g} cores, so they would take turns "
                     f"and the workers would cost more than they save. Workers keep the DataLoader's "
                     f"1 thread each.")
    # Predicted step period: the loop waits only when the workers deliver slower than it consumes.
    period_now = c + st.wait_ms
    period_new = max(c, t_b / n) if n > 0 else c + t_b
    gain = period_now / period_new if period_new > 0 else None
    ceiling = advice.speedup_ceiling(st.exposed_fraction)
    if gain is not None:
        gain = max(1.0, min(gain, ceiling))
        slower = ""
        if c_new > c and n > 0:
            worst = max(1.0, min(period_now / max(c_new, t_b / n), ceiling))
            slower = (f"; at least {worst:.2f}x if the main process's math scaled perfectly with its "
                      f"threads and C grew to {c_new:.1f} ms with fewer of them")
        notes.append(f"Expected gain: up to {gain:.2f}x in steps per second (the exposed wait of "
                     f"{_pct(st.exposed_fraction)} bounds it at {ceiling:.2f}x{slower}).")
    if main_threads is not None and cannot_help and ctx.workers_now == 0:
        overlap = (t_b + c) / max(t_b, c)
        notes.append(f"On {cores_per_rank:g} cores the worker(s) can overlap at most the compute with the "
                     f"loading, (T_b + C) / max(T_b, C) = {overlap:.2f}x, and each batch then pays the "
                     f"hand-over to the main process (pickled into shared memory); if the re-run is not "
                     f"faster, keep num_workers=0 with torch.set_num_threads({main_threads}) (the main "
                     f"process's math threads and its loading no longer contend) and cut the per-sample cost.")
    return WorkersPlan(n, t_b, source, c, need, uncapped, cap, cap_reason, gain, tuple(notes), cannot_help,
                       main_threads, 1 if main_threads is not None else None)


def _main_threads_for(ctx: Context, cause: str, workers: int, batch_ms: float) -> tuple[int | None, float]:
    """torch threads for the main process so that it and ``workers`` CPU-bound workers fit the
    cores, and the worst-case compute per step with them (C scaled by the thread ratio).

    The workers busy T_b / max(C, T_b / N) cores between them (the rate the main loop consumes
    at); the main process keeps the rest, rounded to whole threads (at least one). Only for
    CPU-bound loading with run.json's thread count: latency-bound workers mostly wait.
    """
    st, f, b = ctx.steady, ctx.facts, ctx.budget
    assert st is not None
    if cause != "cpu" or workers <= 0 or f is None or b is None or not f.torch_threads_main:
        return None, st.compute_ms
    period = max(st.compute_ms, batch_ms / workers)
    worker_cores = min(float(workers), batch_ms / period) if period > 0 else float(workers)
    fit = max(1, math.floor(b.cores_per_rank - worker_cores + 0.5))
    if f.torch_threads_main <= fit:
        return None, st.compute_ms
    used_now = min(f.torch_threads_main, max(1, math.floor(b.cores_per_rank + 1e-9)))
    return fit, st.compute_ms * used_now / fit


# --- secondary rules -------------------------------------------------------------------------


def _check_pageable(rule: Rule, ctx: Context) -> Finding | None:
    cp = ctx.analysis.copies
    st = ctx.steady
    assert st is not None
    if cp.h2d_pageable == 0 or st.step_ms <= 0:
        return None
    frac = cp.h2d_pageable_ms_per_step / st.step_ms
    if frac < threshold("pageable_copy_fraction"):
        return None
    sev = "medium" if frac >= threshold("pageable_copy_high_fraction") else "low"
    return _f(rule, ctx, sev, 0.9,
              title=(f"Pageable host-to-device copies: {cp.h2d_pageable} copies, "
                     f"{cp.h2d_pageable_ms_per_step:.2f} ms per step on the GPU "
                     f"({cp.h2d_pageable_host_blocked_ms_per_step:.2f} ms of it blocking the host)"),
              evidence={"h2d_pageable": cp.h2d_pageable, "h2d_pinned": cp.h2d_pinned,
                        "pageable_ms_per_step": cp.h2d_pageable_ms_per_step,
                        "host_blocked_ms_per_step": cp.h2d_pageable_host_blocked_ms_per_step,
                        "fraction_of_step": frac},
              advice=("Set pin_memory=True and copy with .to(device, non_blocking=True): pinned copies "
                      "run at full bus speed and overlap with compute, pageable ones are staged "
                      f"through a bounce buffer and block the host (about "
                      f"{cp.h2d_pageable_host_blocked_ms_per_step:.2f} ms per step here)."),
              settings={"pin_memory": True})


def _respawn_from_trace(ctx: Context) -> tuple[int, float]:
    """Epoch starts seen in the trace whose first __next__ was long: count, median wait (ms)."""
    assert ctx.steady is not None
    long = [w for w in ctx.steady.startup_waits_ms if w > ctx.shape.long_ms]
    return len(long), float(np.median(long)) if long else 0.0


def _check_respawn(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.settings.persistent_workers:
        return None
    f = ctx.facts
    if f is not None and f.iterator_creations is not None and f.first_next_ms:
        epochs = f.iterator_creations
        startup = float(np.median(f.first_next_ms))
        source, conf = "run.json: iterators created in the window and their first __next__", 0.9
    else:
        epochs, startup = _respawn_from_trace(ctx)
        epochs += 1 if epochs else 0
        source, conf = "trace: steps where one iterator ended and a new one's first __next__ waited", 0.6
    if epochs < 2 or startup < threshold("respawn_min_ms"):
        return None
    share = ctx.steady.startup_fraction if ctx.steady else 0.0
    sev = ("high" if share >= threshold("exposed_wait_high_fraction") else
           "medium" if share >= threshold("exposed_wait_fraction") else "low")
    gain = advice.speedup_ceiling(share)
    return _f(rule, ctx, sev, conf,
              title=(f"Workers restart every epoch: {epochs} iterators, the first __next__ of each "
                     f"waits {startup:.0f} ms for worker start-up; the epoch turnover (shutdown, "
                     f"start-up, refilling the queue) is {_pct(share)} of the step time"),
              evidence={"iterators": epochs, "startup_ms_median": startup, "source": source,
                        "startup_wait_fraction": share, "expected_speedup": gain},
              advice=("Set persistent_workers=True: the workers (and their dataset copies) survive the "
                      f"end of an epoch, saving about {startup:.0f} ms of start-up per epoch. Expected "
                      f"gain: up to {gain:.2f}x in steps per second (if the whole turnover wait of "
                      f"{_pct(share)} went away; the first batches of each epoch still wait for the "
                      "workers to refill the queue)."),
              settings={"persistent_workers": True, "expected_speedup": gain})


def _check_prefetch(rule: Rule, ctx: Context) -> Finding | None:
    st, shape, n = ctx.steady, ctx.shape, ctx.workers_now
    assert st is not None
    if not n or shape.long_calls == 0 or not ctx.input_bound:
        return None  # under the exposed-wait threshold a deeper queue has nothing to gain
    f = ctx.facts
    rate_ok: bool
    if f is not None and f.batch_ms:
        rate_ok = advice.workers_needed(float(np.median(f.batch_ms)), st.compute_ms) <= n
        basis = "measured batch times show the workers keep up on average"
    else:
        rate_ok = shape.period is None or shape.period >= threshold("burst_period_factor") * n
        basis = (f"long waits are rare (every {shape.period:.0f} calls, not every {n})"
                 if shape.period else "a single long wait")
    if not rate_ok or shape.long_median_ms < threshold("long_wait_min_fraction") * st.compute_ms:
        return None
    current = ctx.settings.prefetch_factor or 2
    spike = (float(np.percentile(f.batch_ms, 95)) - float(np.median(f.batch_ms))
             if f is not None and f.batch_ms else shape.long_median_ms)
    pf = advice.prefetch_for_spikes(current, n, spike, st.compute_ms)
    if pf <= current:
        return None
    return _f(rule, ctx, "low", 0.6 if f is None or not f.batch_ms else 0.8,
              title=(f"Bursty waits: {shape.long_calls} of {shape.calls} __next__ calls wait "
                     f"{shape.long_median_ms:.1f} ms while the rest find a batch ready"),
              evidence={"long_calls": shape.long_calls, "calls": shape.calls,
                        "long_wait_median_ms": shape.long_median_ms, "period_calls": shape.period,
                        "spike_ms": spike, "prefetch_factor_now": current, "basis": basis},
              advice=(f"Set prefetch_factor={pf}: {basis}, so slow batches, not too few workers, "
                      f"empty the queue; {n} workers x {pf} batches in flight cover a "
                      f"{spike:.0f} ms gap at {st.compute_ms:.1f} ms per step."),
              settings={"prefetch_factor": pf})


def _check_host_bound(rule: Rule, ctx: Context) -> Finding | None:
    st = ctx.steady
    assert st is not None
    idle = st.gpu_idle_other_fraction
    if idle is None or idle < threshold("host_bound_idle_fraction"):
        return None
    sync = ctx.analysis.sync_ms_per_step or 0.0
    return _f(rule, ctx, "medium", 0.7,
              title=f"GPU idle {_pct(idle)} of each step for reasons other than data",
              evidence={"gpu_idle_other_fraction": idle, "gpu_busy_fraction": ctx.analysis.gpu_busy_fraction,
                        "sync_ms_per_step": sync, "step_ms_median": st.step_ms},
              advice=("Not the loader: the main thread's own work keeps the GPU idle. Look for "
                      f"synchronizations ({sync:.1f} ms per step in device/stream syncs: .item(), "
                      "printing the loss every step, .cpu()), CPU work between steps, and launch "
                      "overhead (many small kernels: a larger batch, torch.compile, CUDA graphs)."))


# --- trace quality ---------------------------------------------------------------------------


def _q(rule: Rule, ctx: Context, sev: str, title: str, evidence: dict[str, Any], adv: str) -> Finding:
    return Finding(rule.id, rule.kind, sev, 1.0, title, {k: _round(v) for k, v in evidence.items()}, adv,
                   {}, {n: threshold(n) for n in rule.thresholds})


def _check_no_steps(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.steady is not None:
        return None
    return _q(rule, ctx, "high", "No steps: the trace holds neither ProfilerStep# nor DataLoader __next__ events",
              {"step_source": ctx.analysis.step_source, "events": ctx.analysis.events},
              f"Re-run with {RERUN_PROFILER}; iterate a torch DataLoader inside the profiled window.")


def _check_no_loader(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.steady is None or ctx.analysis.next_calls > 0:
        return None
    return _q(rule, ctx, "high", "No DataLoader events inside the steps: the loader cannot be judged",
              {"steps": ctx.analysis.measured_steps},
              "The profiled loop does not draw batches from a torch.utils.data.DataLoader inside the "
              "ProfilerStep window (or the iterator is wrapped so its __next__ is not recorded). Profile "
              f"the training loop itself: {RERUN_PROFILER}.")


def _check_fallback(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.analysis.step_source != "dataloader_next":
        return None
    return _q(rule, ctx, "low", "No ProfilerStep# events: steps were taken between DataLoader __next__ calls",
              {"fallback": ctx.analysis.fallback, "measured_steps": ctx.analysis.measured_steps},
              f"The step boundaries are approximate. Re-run with {RERUN_PROFILER}.")


def _check_few_steps(rule: Rule, ctx: Context) -> Finding | None:
    st = ctx.steady
    if st is None or st.steps >= threshold("min_steps"):
        return None
    return _q(rule, ctx, "medium", f"Only {st.steps} steady step(s): too few to judge the wait pattern",
              {"steady_steps": st.steps, "excluded_steps": st.excluded_steps},
              "Confidence is lowered. Record at least 20 steps after warm-up: "
              f"{RERUN_PROFILER}.")


def _check_truncated(rule: Rule, ctx: Context) -> Finding | None:
    a = ctx.analysis
    if not a.truncated and not a.skipped_events:
        return None
    return _q(rule, ctx, "medium", "The trace is damaged: " + ("truncated" if a.truncated else "malformed events"),
              {"truncated": a.truncated, "skipped_events": a.skipped_events},
              "Numbers cover the complete events only. Let the profiler finish writing (exit the "
              "`with profile()` block, or export_chrome_trace after stop()) before copying the file.")


def _check_with_stack(rule: Rule, ctx: Context) -> Finding | None:
    if not ctx.analysis.with_stack:
        return None
    return _q(rule, ctx, "low", "Recorded with with_stack=True: host times are inflated",
              {"with_stack": True},
              "Python stack recording adds overhead to every operator and makes CPU work look longer "
              "than it is; re-run with with_stack=False (and record_shapes=False) for timing.")


def _check_no_gpu(rule: Rule, ctx: Context) -> Finding | None:
    a = ctx.analysis
    if not a.gpu_expected or a.has_gpu_activity:
        return None
    return _q(rule, ctx, "medium", "A GPU run without GPU activity in the trace",
              {"gpu_expected": True, "has_gpu_activity": False},
              "The trace shows GPUs or CUDA runtime calls but no kernels or copies, so exposed wait "
              "equals data wait. Record device activity: activities=[ProfilerActivity.CPU, "
              "ProfilerActivity.CUDA] (CUPTI must be available).")


RULES: tuple[Rule, ...] = (
    Rule("TL101", "oversubscription", "high", "Loader threads oversubscribe the cores",
         "run.json with machine facts and process telemetry", (
             "oversubscription_ratio", "run_delay_fraction", "involuntary_switch_rate"),
         lambda c: _needs_machine(c) or _needs_steps(c), _check_oversubscription, True),
    Rule("TL102", "cpu_starvation", "high", "The loading work is CPU-bound and too slow",
         "input-bound steps and loader telemetry (per-batch records or worker CPU time); skipped when "
         "the current workers' measured capacity is worker_capacity_ratio x the demand or more", (
             "exposed_wait_fraction", "exposed_wait_high_fraction", "cpu_bound_fraction", "headroom_fraction",
             "worker_capacity_ratio"),
         _needs_shortage, _check_cpu_starvation, True),
    Rule("TL103", "io_bound", "high", "The loading work mostly waits (storage, network, sleep)",
         "input-bound steps and loader telemetry; skipped when the current workers' measured "
         "capacity is worker_capacity_ratio x the demand or more", (
             "exposed_wait_fraction", "exposed_wait_high_fraction", "io_bound_fraction", "run_delay_fraction",
             "headroom_fraction", "latency_workers_per_core", "latency_workers_max", "worker_capacity_ratio"),
         _needs_shortage, _check_io_bound, True),
    Rule("TL104", "input_bound", "high",
         "Input-bound, cause not determinable from the evidence, or not a loader capacity shortage "
         "(the current workers' measured capacity is worker_capacity_ratio x the demand or more: the "
         "wait is bursts or a busy machine, and num_workers stays)",
         "steps with DataLoader events", (
             "exposed_wait_fraction", "exposed_wait_high_fraction", "outlier_compute_factor",
             "headroom_fraction", "assumed_worker_cap", "long_wait_factor", "worker_capacity_ratio",
             "run_delay_fraction"),
         _needs_steps, _check_input_bound, True),
    Rule("TL201", "pageable_memcpy", "low", "Pageable host-to-device copies",
         "GPU activity in the trace", ("pageable_copy_fraction", "pageable_copy_high_fraction"),
         _needs_gpu, _check_pageable),
    Rule("TL202", "worker_respawn", "medium",
         "Workers restart every epoch; when the epoch turnover (shutdown, start-up, the first "
         "num_workers × prefetch_factor batches) is the data wait, it leads and the diagnosis is input_bound",
         "num_workers > 0 and persistent_workers=False", (
             "respawn_min_ms", "long_wait_factor", "exposed_wait_fraction", "exposed_wait_high_fraction"),
         _needs_workers, _check_respawn),
    Rule("TL203", "prefetch_depth", "low", "Bursty waits a deeper prefetch would absorb",
         "num_workers > 0 and known (run.json or a single-process trace)", (
             "long_wait_factor", "long_wait_min_fraction", "burst_period_factor", "prefetch_factor_max"),
         lambda c: _needs_workers(c) or (None if c.workers_now else "num_workers unknown"),
         _check_prefetch),
    Rule("TL204", "host_bound", "medium", "The GPU idles for reasons other than data",
         "GPU activity in the trace", ("host_bound_idle_fraction", "outlier_compute_factor"),
         _needs_gpu, _check_host_bound),
    Rule("TL301", "trace_quality", "high", "No steps", "none", (), _always,
         _check_no_steps),
    Rule("TL302", "trace_quality", "high", "No DataLoader events", "none", (), _always,
         _check_no_loader),
    Rule("TL303", "trace_quality", "low", "Steps from the DataLoader fallback", "none", (), _always,
         _check_fallback),
    Rule("TL304", "trace_quality", "medium", "Too few steps to judge", "none", ("min_steps",), _always,
         _check_few_steps),
    Rule("TL305", "trace_quality", "medium", "Truncated or malformed trace", "none", (), _always,
         _check_truncated),
    Rule("TL306", "trace_quality", "low", "Profiler overhead: with_stack", "none", (), _always,
         _check_with_stack),
    Rule("TL307", "trace_quality", "medium", "No GPU activity in a GPU run", "none", (), _always,
         _check_no_gpu),
)
RULES_BY_ID = {r.id: r for r in RULES}


# =============================================================================================
# The diagnosis


def run_rules(ctx: Context) -> tuple[list[Finding], list[Skipped]]:
    """Every rule's finding (if triggered) and every skipped rule with its reason."""
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    for rule in RULES:
        reason = rule.requires(ctx)
        if reason is not None:
            skipped.append(Skipped(rule.id, reason))
            continue
        finding = rule.check(rule, ctx)
        if finding is not None:
            findings.append(finding)
    return findings, skipped


def _main_cause(ctx: Context, findings: Sequence[Finding]) -> tuple[str, Finding | None]:
    kinds = {f.kind: f for f in findings}
    if "TL301" in {f.id for f in findings} or "TL302" in {f.id for f in findings}:
        return "undetermined", None
    for kind in ("oversubscription", "cpu_starvation", "io_bound", "input_bound"):
        if kind in kinds:
            return kind, kinds[kind]
    respawn = kinds.get("worker_respawn")
    if respawn is not None and ctx.steady is not None and ctx.steady.startup_fraction >= threshold(
            "exposed_wait_fraction"):
        return "input_bound", respawn  # the wait is worker start-up: persistent_workers, not workers
    if ctx.steady is None or ctx.analysis.next_calls == 0:
        return "undetermined", None
    return "healthy", None


def recommend(ctx: Context, diagnosis: str, findings: Sequence[Finding]) -> Recommendation:
    """Merge the findings' proposals into complete settings; the current value elsewhere."""
    s = ctx.settings
    proposed: dict[str, Any] = {}
    for f in findings:
        for k, v in f.settings.items():
            proposed.setdefault(k, v)
    notes: list[str] = []
    keep: list[str] = []
    current = ctx.workers_now
    if "num_workers" in proposed:
        n = int(proposed["num_workers"])
    elif current is not None:
        n = current
    else:
        n = 1
        keep.append("num_workers")
        notes.append("Keep your current num_workers: the trace shows worker processes (the "
                     "multi-process iterator) but not how many, and the waits show they keep up.")
    if diagnosis == "healthy":
        st = ctx.steady
        assert st is not None
        notes.insert(0, f"The loader keeps up: {_pct(st.exposed_fraction)} of the step waits for data "
                        f"(under the {_pct(threshold('exposed_wait_fraction'))} threshold), so the "
                        f"worker count stays; removing that wait entirely would gain at most "
                        f"{advice.speedup_ceiling(st.exposed_fraction):.3f}x.")
    elif diagnosis == "input_bound" and "num_workers" not in proposed and "persistent_workers" in proposed:
        st = ctx.steady
        assert st is not None
        notes.insert(0, f"Input-bound by worker start-up: the epoch turnover (worker shutdown, start-up, "
                        f"refilling the queue) is {_pct(st.startup_fraction)} of the step time; between "
                        f"epochs the loader keeps up ({_pct(st.exposed_fraction)} waits for data), so "
                        f"the per-batch work is neither CPU- nor I/O-bound in a way more workers would "
                        f"fix: keep the worker count, make the workers persistent.")
    elif diagnosis == "undetermined":
        notes.insert(0, "The trace cannot answer (see the trace_quality findings): settings are "
                        "repeated as they are.")
    for f in findings:
        if f.kind in ("oversubscription", "cpu_starvation", "io_bound", "input_bound") and f.kind == diagnosis:
            plan_notes = f.advice
            notes.append(plan_notes)
    has_gpu = ctx.analysis.has_gpu_activity or bool(ctx.facts and ctx.facts.has_gpu)
    if "pin_memory" in proposed:
        pin = bool(proposed["pin_memory"])
        cp = ctx.analysis.copies
        notes.append(f"pin_memory=True: {cp.h2d_pageable} pageable host-to-device copies cost "
                     f"{cp.h2d_pageable_ms_per_step:.2f} ms per step on the GPU.")
    elif not has_gpu and not ctx.analysis.gpu_expected:
        pin = False
        if s.pin_memory:
            notes.append("pin_memory=False: no accelerator in this run, pinning only costs a thread.")
    else:
        pin = bool(s.pin_memory) or ctx.analysis.copies.h2d_pinned > 0
    if n == 0:
        persistent, prefetch = False, None
    else:
        persistent = bool(proposed.get("persistent_workers", s.persistent_workers or False))
        if (not persistent and not current and ctx.facts is not None
                and (ctx.facts.iterator_creations or 0) >= 2):
            persistent = True
            notes.append(f"persistent_workers=True: the loop creates {ctx.facts.iterator_creations} "
                         "iterators in the window (one per epoch), and new workers would start each time.")
        elif "persistent_workers" in proposed:
            notes.append(next(f.advice for f in findings if f.kind == "worker_respawn"))
        prefetch = proposed.get("prefetch_factor", s.prefetch_factor if current else None)
        if "prefetch_factor" in proposed:
            notes.append(next(f.advice for f in findings if f.kind == "prefetch_depth"))
        elif current == 0 and prefetch is None:
            prefetch = 2
            notes.append("prefetch_factor=2 (PyTorch's default for workers): the waits give no sign "
                         "that a deeper queue is needed.")
    host = next((f for f in findings if f.kind == "host_bound"), None)
    if host is not None and diagnosis in ("healthy", "input_bound", "cpu_starvation", "io_bound"):
        notes.append("Beyond the loader: " + host.title + ". " + host.advice)
    speed = proposed.get("expected_speedup")
    return Recommendation(
        num_workers=n,
        pin_memory=pin,
        persistent_workers=persistent,
        prefetch_factor=prefetch,
        notes=tuple(notes),
        expected_speedup=round(float(speed), 3) if isinstance(speed, (int, float)) else (1.0 if diagnosis == "healthy" else None),
        torch_threads_per_worker=proposed.get("torch_threads_per_worker"),
        torch_threads_main=proposed.get("torch_threads_main"),
        env=dict(proposed.get("env", {})),
        keep_current=tuple(keep),
    )


def diagnose(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> Diagnosis:
    """Name the main loader-related cause of lost throughput and the settings to use next."""
    ctx = build_context(analysis, run)
    findings, skipped = run_rules(ctx)
    diagnosis, main = _main_cause(ctx, findings)
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (f.id != (main.id if main else ""), order[f.severity], f.id))
    rec = recommend(ctx, diagnosis, findings)
    conf: float | None
    if diagnosis == "healthy":
        conf = round(0.9 * ctx.quality_factor, 2)
    else:
        conf = main.confidence if main is not None else None
    return Diagnosis(diagnosis, rec, tuple(findings), tuple(skipped), conf)
