"""What run.json adds, reduced to the few numbers the rules use."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tracelens.analysis import TraceAnalysis
from tracelens.runjson import BatchProduction, CpuSupply, Loader, ProcessSummary, RunInfo
from tracelens.vocab import LoaderSettings


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
class OtherProcess:
    """A process outside the job and the cores it used in the window."""

    pid: int
    name: str
    cores: float


@dataclass(frozen=True)
class Supply:
    """What the cores gave the job and what processes outside it took, window means in cores
    (run.json ``telemetry.supply``; None where the OS did not say)."""

    other_cpu_cores: float | None = None
    cores_left: float | None = None
    job_cpu_cores: float | None = None
    usable_cores: float | None = None
    throttled_fraction: float | None = None
    throttled_periods_fraction: float | None = None
    pressure_fraction: float | None = None
    others: tuple[OtherProcess, ...] = ()


def supply_facts(s: CpuSupply | None) -> Supply | None:
    """run.json's supply block as :class:`Supply` (None in files without one)."""
    if s is None:
        return None
    return Supply(other_cpu_cores=s.other_cpu_cores, cores_left=s.cores_left, job_cpu_cores=s.job_cpu_cores,
                  usable_cores=s.usable_cores, throttled_fraction=s.cgroup_throttled_fraction,
                  throttled_periods_fraction=s.cgroup_throttled_periods_fraction,
                  pressure_fraction=s.pressure_fraction,
                  others=tuple(OtherProcess(o.pid, o.name, o.cores) for o in s.top_other_processes))


@dataclass(frozen=True)
class Recording:
    """How ``tracelens profile`` recorded the run (run.json): what advice on recording it again
    needs. Counts are batches of the window's loader."""

    kind: str  # "script", "module" or "api"
    target: str
    args: tuple[str, ...]
    wait: int
    warmup: int
    active: int
    steps: int  # steps in the trace
    loader_id: int | None
    loader_batches: int  # batches it drew in the whole run
    batches_per_epoch: int | None
    stopped_after_window: bool  # the script was stopped once the window was recorded


def recording(run: RunInfo, loader: Loader | None) -> Recording | None:
    """The :class:`Recording` of ``run`` (None without a schedule: no window was planned)."""
    s = run.schedule
    if s is None:
        return None
    return Recording(
        kind=run.command.kind, target=run.command.target, args=tuple(run.command.argv[1:]),
        wait=s.wait, warmup=s.warmup, active=s.active, steps=run.window.steps,
        loader_id=loader.id if loader is not None else None,
        loader_batches=loader.batches_drawn if loader is not None else run.batches.count,
        batches_per_epoch=loader.batches_per_epoch if loader is not None else None,
        stopped_after_window=run.stop_reason == "window_captured")


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
    batch_ms: tuple[float, ...] = ()  # wall time of each steady batch produced (workers, or main with 0)
    batch_cpu_ms: tuple[float, ...] = ()  # CPU time of the same batches
    batch_source: str | None = None  # "workers" or "main process"
    iterator_creations: int | None = None  # DataLoader iterators created in the window (epochs)
    first_next_ms: tuple[float, ...] = ()  # the first __next__ wait of each iterator
    recording: Recording | None = None  # how the run was recorded (None: not by tracelens profile)
    max_workers: int | None = None  # the most workers that get data (a sharded dataset's shards)
    user_profiler: str | None = None  # the script drove its own profiler (tracelens kept its first cycle)
    supply: Supply | None = None  # the CPU supply: what other processes took (None in older files)
    loads_in_main: bool = False  # the loading runs in the main process (0 workers, or a pipeline's threads)

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
    waits = [w for _, w in run.batches_of(loader.id)]
    return tuple(waits[i] / 1000.0 for i in range(0, len(waits), per_epoch))


def steady_batches(run: RunInfo, batches: list[BatchProduction]) -> list[BatchProduction]:
    """``batches`` without each worker process's first batch, where that process made more in
    the list: the first batch of a fresh worker also pays its start-up (lazy opens of files or
    indexes, first touches of copy-on-write memory), which persistent workers pay once and more
    workers cannot shorten (TL202 counts it). Measured on examples/short_epoch_respawn.py beside
    a neighbour per core: 120-154 ms for each worker's first batch, 1 ms for its second, so the
    median T_b, and the capacity num_workers × C / T_b, flapped with the count of each."""
    first: dict[int, float] = {}
    for b in run.productions():
        if b.pid is not None and b.loader_id is not None and b.start_us < first.get(b.pid, float("inf")):
            first[b.pid] = b.start_us
    made = Counter(b.pid for b in batches)
    return [b for b in batches if not (b.pid in first and b.start_us == first[b.pid] and made[b.pid] > 1)]


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
        batches = steady_batches(run, [b for b in run.window_batches()
                                       if b.loader_id is not None and b.loader_id == lid])
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
        max_workers=loader.max_workers if loader is not None else None,
        user_profiler=run.user_profiler,
        first_next_ms=_first_waits_ms(run, loader) if loader is not None else (),
        recording=recording(run, loader),
        supply=supply_facts(run.telemetry.supply if run.telemetry is not None else None),
        loads_in_main=nw == 0 or _thread_pipeline(loader),
    )


def _thread_pipeline(loader: Loader | None) -> bool:
    """The loader's workers are threads of the main process (a ``ParallelMapper(method="thread")``)."""
    pipeline = (loader.pipeline or {}) if loader is not None else {}
    return pipeline.get("ParallelMapper.method") == "thread"


def known_settings(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> LoaderSettings:
    """Settings from run.json when present, else what the iterator kind implies."""
    facts = run_facts(run)
    if facts is not None and facts.settings != LoaderSettings():
        return facts.settings
    if analysis.iterator == "single_process":
        return LoaderSettings(num_workers=0, pin_memory=None, persistent_workers=False, prefetch_factor=None)
    return LoaderSettings()
