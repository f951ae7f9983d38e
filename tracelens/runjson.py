"""``run.json``: what ``tracelens profile`` records beside the trace, declared once.

The capture code builds and encodes these structs; every reader decodes them with
:func:`read_run_info` (torch-free). The field descriptions below are the documentation:
``docs/run-json.md`` is generated from them (``python -m tracelens.docgen``). Unknown keys are
ignored and missing ones take their defaults, so files of other 1.x writers still load.

Every ``*_us`` field is µs on the trace's own clock (the origin of the trace's ``ts``). Column
blocks (``batches``, ``worker_batches``, ``main_fetch``, telemetry ``samples``) are parallel
lists, one entry per row, to keep the file small.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct, field

from tracelens.errors import BadInputError

#: The run.json format this code writes and the newest it reads.
SCHEMA_VERSION = 1


def _d(text: str) -> Meta:
    return Meta(description=text)


class _Doc(Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of every run.json struct: frozen, keyword-only, unknown keys ignored."""


class Tool(_Doc, frozen=True, kw_only=True):
    """The writer."""

    name: Annotated[str, _d("always `tracelens`")] = "tracelens"
    version: Annotated[str | None, _d("the tracelens version that wrote the file")] = None


class Command(_Doc, frozen=True, kw_only=True):
    """What ran."""

    kind: Annotated[str, _d("`script`, `module` or `api` (`with tracelens.profile()`)")] = "script"
    target: Annotated[str, _d("the script path or module name")] = ""
    argv: Annotated[list[str], _d("the script's `sys.argv`")] = field(default_factory=list)
    cwd: Annotated[str | None, _d("working directory")] = None
    loader_overrides: Annotated[dict[str, Any], _d("DataLoader arguments set by `sweep`, as passed")] = field(
        default_factory=dict)


class Schedule(_Doc, frozen=True, kw_only=True):
    """The profiler window, counted in batches of the window's loader (``window.loader_id``)."""

    wait: Annotated[int, _d("its batches skipped before recording")] = 0
    warmup: Annotated[int, _d("profiler warm-up batches (recorded, then discarded)")] = 0
    active: Annotated[int, _d("batches recorded: the steps, across as many epochs as they take")] = 0
    adapted: Annotated[bool, _d(
        "the defaults were shrunk to fit a short epoch (older writers; windows now span epochs)")] = False
    stop_after_window: Annotated[bool, _d("the script is stopped once the window is recorded")] = True


class Window(_Doc, frozen=True, kw_only=True):
    """The recorded window."""

    started: Annotated[bool, _d("the profiler window started")] = False
    captured: Annotated[bool, _d("the trace was saved")] = False
    unstepped: Annotated[bool, _d("no DataLoader was iterated: the whole run was recorded, no steps")] = False
    first_batch: Annotated[int | None, _d("index in `batches` of the first recorded step's batch")] = None
    steps: Annotated[int, _d("steps in the trace")] = 0
    warmup_start_us: Annotated[float | None, _d("when the profiler warm-up began")] = None
    start_us: Annotated[float | None, _d("when recording began")] = None
    end_us: Annotated[float | None, _d("when recording ended")] = None
    loader_id: Annotated[int | None, _d(
        "the loader whose batches are the steps: the first whose batches fed backward passes, else the "
        "one that drew the most; other loaders' batches in the window lie between steps")] = None


class Clock(_Doc, frozen=True, kw_only=True):
    """How ``time.time_ns()`` relates to the trace's ``ts``: us = (t_ns + offset_ns − base_time_ns) / 1000."""

    base_time_ns: Annotated[int, _d("the trace's `baseTimeNanoseconds` (0 when absent)")] = 0
    offset_ns: Annotated[int, _d("measured with a `tracelens#sync` record_function at a known time")] = 0
    source: Annotated[str, _d("`sync_marker`, or `assumed_wall_clock` when no marker was found")] = "unknown"
    sync_uncertainty_ns: Annotated[int | None, _d("width of the marker's timing")] = None


class TraceRef(_Doc, frozen=True, kw_only=True):
    """The trace file beside run.json."""

    path: Annotated[str | None, _d("file name in the run directory (null: no trace)")] = None
    clock: Annotated[Clock, _d("the clock relation (below)")] = field(default_factory=Clock)


class Loader(_Doc, frozen=True, kw_only=True):
    """One DataLoader constructed (or first iterated) during the run."""

    id: Annotated[int, _d("the loader's number in this run")]
    cls: Annotated[str, _d("the loader's class (module.qualname)")] = field(default="", name="class")
    num_workers: Annotated[int, _d("DataLoader argument")] = 0
    batch_size: Annotated[int | None, _d("DataLoader argument")] = None
    pin_memory: Annotated[bool, _d("DataLoader argument")] = False
    pin_memory_device: Annotated[str | None, _d("DataLoader argument (null: default)")] = None
    persistent_workers: Annotated[bool, _d("DataLoader argument")] = False
    prefetch_factor: Annotated[int | None, _d("null without workers")] = None
    multiprocessing_context: Annotated[str | None, _d(
        "`fork`/`spawn`/`forkserver`, or `default:<method>`; null without workers")] = None
    drop_last: Annotated[bool, _d("DataLoader argument")] = False
    timeout_s: Annotated[float, _d("DataLoader `timeout`")] = 0.0
    has_worker_init_fn: Annotated[bool, _d("the script passed a worker_init_fn")] = False
    has_collate_fn: Annotated[bool, _d("not the default collate")] = False
    dataset_class: Annotated[str, _d("the dataset's class (module.qualname)")] = ""
    dataset_kind: Annotated[str, _d("`map` or `iterable`")] = "map"
    dataset_len: Annotated[int | None, _d("`len(dataset)` when defined")] = None
    sampler_class: Annotated[str | None, _d("the sampler's class")] = None
    batches_per_epoch: Annotated[int | None, _d("`len(loader)` when defined")] = None
    overrides_applied: Annotated[dict[str, Any], _d("{arg: {from, to}} changed by `sweep`")] = field(
        default_factory=dict)
    created_us: Annotated[float | None, _d("when the loader was constructed")] = None
    iter_calls: Annotated[int, _d("`__iter__` calls (epochs)")] = 0
    iterators_created: Annotated[int, _d(
        "new iterator objects: with persistent_workers=False one per epoch, each starting fresh workers")] = 0
    batches_drawn: Annotated[int, _d("batches the main loop drew from it")] = 0
    created_at: Annotated[str | None, _d(
        "where it was built: `file:line in function` of the innermost frame outside torch, the framework and "
        "the standard library (the framework's own frame when there is none); null for a loader built "
        "before the session")] = None
    framework: Annotated[str | None, _d(
        "`transformers` (Trainer), `lightning`, `accelerate`, or null when the script builds it itself; for an "
        "input pipeline that is no DataLoader: `torchdata.nodes`, `webdataset`, `datasets`, `generator`")] = None
    training: Annotated[bool | None, _d(
        "its batches fed backward passes (a training loader); false for evaluation loaders, null when not seen")] = None
    pipeline: Annotated[dict[str, Any], _d(
        "the pipeline's own knobs (`ParallelMapper.num_workers`, `Prefetcher.prefetch_factor`, webdataset's "
        "`rebatch_in_main` and `shards`, a Hugging Face dataset's `n_shards`); `num_workers` is then its "
        "concurrency")] = field(default_factory=dict)
    max_workers: Annotated[int | None, _d(
        "the most workers that get data (the shards of a sharded dataset); null: no such limit known")] = None


class Batches(_Doc, frozen=True, kw_only=True):
    """Every batch the main loop drew (the first 20,000): when ``__next__`` began and how long it blocked."""

    count: Annotated[int, _d("all batches drawn")] = 0
    loader_id: Annotated[list[int | None], _d("the loader of each batch")] = field(default_factory=list)
    start_us: Annotated[list[float | None], _d("when `__next__` began")] = field(default_factory=list)
    wait_us: Annotated[list[float | None], _d("how long it blocked (µs)")] = field(default_factory=list)


class MainFetch(_Doc, frozen=True, kw_only=True):
    """Batches produced in the main process (num_workers=0): wall and main-thread CPU of each fetch."""

    start_us: Annotated[list[float | None], _d("when the fetch began")] = field(default_factory=list)
    dur_us: Annotated[list[float | None], _d("its wall time (µs)")] = field(default_factory=list)
    cpu_us: Annotated[list[float | None], _d("main-thread CPU time (µs)")] = field(default_factory=list)


class Gpu(_Doc, frozen=True, kw_only=True):
    """One CUDA device."""

    index: Annotated[int, _d("CUDA device index")] = 0
    name: Annotated[str | None, _d("device name")] = None
    total_memory_bytes: Annotated[int | None, _d("device memory")] = None


class Machine(_Doc, frozen=True, kw_only=True):
    """Cores, threads, devices and versions of the machine the run used."""

    logical_cores: Annotated[int | None, _d("`os.cpu_count()`")] = None
    physical_cores: Annotated[int | None, _d("psutil")] = None
    affinity_cores: Annotated[int | None, _d("`sched_getaffinity`")] = None
    cgroup_cpu_quota_cores: Annotated[float | None, _d(
        "smallest cgroup v2 `cpu.max` on the process's path, else v1 quota/period; null = unlimited")] = None
    usable_cores: Annotated[int | None, _d("min of affinity and quota (rounded up)")] = None
    usable_cores_exact: Annotated[float | None, _d("min of affinity and quota, unrounded")] = None
    thread_env: Annotated[dict[str, str], _d(
        "only the allow-listed thread variables that are set (OMP/MKL/OPENBLAS/... NUM_THREADS, "
        "OMP_DYNAMIC, MKL_DYNAMIC, KMP_AFFINITY, OMP_PROC_BIND), never the rest of the environment")] = field(
        default_factory=dict)
    local_world_size: Annotated[int | None, _d("`LOCAL_WORLD_SIZE`")] = None
    world_size: Annotated[int | None, _d("`WORLD_SIZE`")] = None
    rank: Annotated[int | None, _d("`RANK`")] = None
    local_rank: Annotated[int | None, _d("`LOCAL_RANK`")] = None
    torch_version: Annotated[str | None, _d("`torch.__version__`")] = None
    torch_cuda_version: Annotated[str | None, _d("`torch.version.cuda`")] = None
    torch_threads_main: Annotated[int | None, _d("`torch.get_num_threads()` when the window started")] = None
    torch_interop_threads_main: Annotated[int | None, _d("`torch.get_num_interop_threads()`")] = None
    cuda_available: Annotated[bool, _d("`torch.cuda.is_available()`")] = False
    gpu_count: Annotated[int, _d("CUDA devices")] = 0
    gpus: list[Gpu] = field(default_factory=list)
    memory_total_bytes: Annotated[int | None, _d("physical memory")] = None
    python_version: Annotated[str | None, _d("`platform.python_version()`")] = None
    python_implementation: Annotated[str | None, _d("`sys.implementation.name`")] = None
    platform: Annotated[str | None, _d("`platform.platform()`")] = None
    os: Annotated[str | None, _d("`sys.platform`")] = None


class Worker(_Doc, frozen=True, kw_only=True):
    """One worker process started (a respawned worker appears again with a new pid)."""

    loader_id: Annotated[int, _d("the loader it serves")]
    worker_id: Annotated[int, _d("its DataLoader worker id")]
    pid: Annotated[int, _d("process id")]
    torch_threads: Annotated[int | None, _d("read after the script's worker_init_fn")] = None
    started_us: Annotated[float | None, _d("when the process started")] = None
    init_done_us: Annotated[float | None, _d("when its worker_init_fn returned")] = None
    batches_produced: Annotated[int, _d("all batches it produced")] = 0
    batches_kept: Annotated[int | None, _d("of them in `worker_batches`")] = None


class WorkerBatches(_Doc, frozen=True, kw_only=True):
    """Each batch produced in a worker (dataset indexing + collate), from 5 s before the window to its end;
    ``cpu_us`` is the worker's process CPU time during it."""

    loader_id: Annotated[list[int | None], _d("the loader")] = field(default_factory=list)
    worker_id: Annotated[list[int | None], _d("the worker")] = field(default_factory=list)
    pid: Annotated[list[int | None], _d("the worker's process id")] = field(default_factory=list)
    start_us: Annotated[list[float | None], _d("when the fetch began")] = field(default_factory=list)
    dur_us: Annotated[list[float | None], _d("its wall time (µs)")] = field(default_factory=list)
    cpu_us: Annotated[list[float | None], _d("the worker's CPU time during it (µs)")] = field(default_factory=list)


class Samples(_Doc, frozen=True, kw_only=True):
    """Cumulative counters of one process, one list per field (null where the OS does not expose one)."""

    t_us: Annotated[list[float | None], _d("sample times")] = field(default_factory=list)
    cpu_user_s: Annotated[list[float | None], _d("psutil, clock-tick resolution")] = field(default_factory=list)
    cpu_system_s: Annotated[list[float | None], _d("psutil")] = field(default_factory=list)
    cpu_ns: Annotated[list[int | None], _d(
        "`/proc/<pid>/task/*/schedstat` time on a CPU, summed over threads (ended threads keep their last value)")] = field(
        default_factory=list)
    run_delay_ns: Annotated[list[int | None], _d(
        "schedstat time runnable but waiting for a CPU, summed over threads")] = field(default_factory=list)
    read_bytes: Annotated[list[int | None], _d("psutil `io_counters`")] = field(default_factory=list)
    write_bytes: Annotated[list[int | None], _d("psutil `io_counters`")] = field(default_factory=list)
    read_chars: Annotated[list[int | None], _d("psutil `io_counters` (all reads, page cache included)")] = field(default_factory=list)
    ctx_voluntary: Annotated[list[int | None], _d("voluntary context switches")] = field(default_factory=list)
    ctx_involuntary: Annotated[list[int | None], _d("involuntary context switches (preemptions)")] = field(default_factory=list)
    num_threads: Annotated[list[int | None], _d("threads of the process")] = field(default_factory=list)


@dataclass(frozen=True)
class ProcessSummary:
    """Telemetry of one process between two samples.

    ``cpu_cores`` = CPU time / wall time (1.0 = one core busy); ``run_delay_fraction`` = time
    runnable but waiting for a CPU / wall time, summed over threads (can exceed 1).
    """

    pid: int
    role: str
    loader_id: int | None
    worker_id: int | None
    wall_s: float
    cpu_s: float
    cpu_cores: float
    run_delay_s: float | None
    run_delay_fraction: float | None
    read_bytes: int | None
    write_bytes: Annotated[int | None, _d("psutil `io_counters`")]
    ctx_voluntary: Annotated[int, _d("voluntary context switches")]
    ctx_involuntary: Annotated[int, _d("involuntary context switches (preemptions)")]
    max_threads: int
    read_chars: Annotated[int | None, _d("psutil `io_counters` (all reads, page cache included)")] = None


class ProcessTelemetry(_Doc, frozen=True, kw_only=True):
    """Sampled counters of one process."""

    pid: Annotated[int, _d("process id")]
    role: Annotated[str, _d("`main`, `worker`, or `child` (other child processes)")] = ""
    loader_id: Annotated[int | None, _d("for workers: their loader")] = None
    worker_id: Annotated[int | None, _d("for workers: their id")] = None
    samples: Samples = field(default_factory=Samples)

    def summary(self, start_us: float | None = None, end_us: float | None = None) -> ProcessSummary | None:
        """Differences between the first and last samples inside [start_us, end_us] (None: < 2 samples)."""
        t = self.samples.t_us
        idx = [i for i, ts in enumerate(t) if ts is not None
               and (start_us is None or ts >= start_us) and (end_us is None or ts <= end_us)]
        if len(idx) < 2:
            return None
        a, b = idx[0], idx[-1]

        def diff(name: str) -> float | None:
            values: list[Any] = getattr(self.samples, name)
            if len(values) <= b or values[a] is None or values[b] is None:
                return None
            return float(values[b] - values[a])

        wall_s = (t[b] - t[a]) / 1e6  # type: ignore[operator]
        cpu_ns = diff("cpu_ns")
        cpu_s = cpu_ns / 1e9 if cpu_ns is not None else (diff("cpu_user_s") or 0.0) + (diff("cpu_system_s") or 0.0)
        delay_ns = diff("run_delay_ns")
        read_b, write_b, chars = diff("read_bytes"), diff("write_bytes"), diff("read_chars")
        threads = [n for n in self.samples.num_threads[a: b + 1] if n is not None]
        return ProcessSummary(
            pid=self.pid, role=self.role, loader_id=self.loader_id, worker_id=self.worker_id,
            wall_s=wall_s, cpu_s=cpu_s, cpu_cores=cpu_s / wall_s if wall_s > 0 else 0.0,
            run_delay_s=None if delay_ns is None else delay_ns / 1e9,
            run_delay_fraction=None if delay_ns is None or wall_s <= 0 else delay_ns / 1e9 / wall_s,
            read_bytes=None if read_b is None else int(read_b),
            write_bytes=None if write_b is None else int(write_b),
            ctx_voluntary=int(diff("ctx_voluntary") or 0), ctx_involuntary=int(diff("ctx_involuntary") or 0),
            max_threads=max(threads, default=0), read_chars=None if chars is None else int(chars),
        )


class OtherProcessCpu(_Doc, frozen=True, kw_only=True):
    """A process outside the job and the CPU it used during the window."""

    pid: Annotated[int, _d("process id")]
    name: Annotated[str, _d("its command name (`/proc/<pid>/stat`, up to 15 characters)")] = ""
    cores: Annotated[float, _d("its CPU time / the window's wall time (1.0 = one core busy)")] = 0.0


class SupplySamples(_Doc, frozen=True, kw_only=True):
    """The CPU supply over each telemetry interval (from the sample before to this one; null for the
    first sample and where a counter is missing), in cores = CPU-seconds per second."""

    t_us: Annotated[list[float | None], _d("sample times (the interval's end)")] = field(default_factory=list)
    busy_cores: Annotated[list[float | None], _d(
        "every process on the CPUs of the affinity set (`/proc/stat`; a hypervisor's steal counts as busy)")] = field(
        default_factory=list)
    job_cpu_cores: Annotated[list[float | None], _d("the job's own processes")] = field(default_factory=list)
    other_cpu_cores: Annotated[list[float | None], _d("busy − job: processes outside the job")] = field(
        default_factory=list)
    cores_left: Annotated[list[float | None], _d(
        "cores the job could use: the affinity set's CPUs minus `other_cpu_cores`, at most the cgroup quota "
        "minus what other processes of its cgroup used")] = field(default_factory=list)
    cgroup_throttled_fraction: Annotated[list[float | None], _d(
        "share of the interval the cgroup's quota held the job's processes back")] = field(default_factory=list)
    pressure_fraction: Annotated[list[float | None], _d(
        "share of the interval some runnable task waited for a CPU (`/proc/pressure/cpu` some)")] = field(
        default_factory=list)


class CpuSupply(_Doc, frozen=True, kw_only=True):
    """Who used the cores this job may use during the window, as window means (Linux; null where the OS
    does not say). The job is the process tree of ``job_root_pid`` (the outermost ``tracelens profile``
    process; for a torchrun job every rank's processes), so another rank is never "other"."""

    job_root_pid: Annotated[int | None, _d("the process whose tree is the job")] = None
    job_processes: Annotated[int, _d("processes counted as the job (every one seen in the window)")] = 0
    cpus: Annotated[int | None, _d("CPUs of the affinity set, the ones `busy_cores` counts")] = None
    usable_cores: Annotated[float | None, _d("min of those CPUs and the cgroup quota")] = None
    wall_s: Annotated[float | None, _d("from the first supply sample to the last")] = None
    busy_cores: Annotated[float | None, _d("mean busy cores of those CPUs (every process, steal included)")] = None
    job_cpu_cores: Annotated[float | None, _d("mean cores used by the job's own processes")] = None
    other_cpu_cores: Annotated[float | None, _d(
        "mean cores used by processes outside the job (busy − job, at least 0)")] = None
    cores_left: Annotated[float | None, _d(
        "mean cores the job could use: CPUs − other_cpu_cores, at most the cgroup quota minus what other "
        "processes of its cgroup used")] = None
    cgroup_cpu_cores: Annotated[float | None, _d("mean cores used by every process of the job's cgroup")] = None
    cgroup_throttled_fraction: Annotated[float | None, _d(
        "share of the window the cgroup's quota held its processes back (`throttled_usec`)")] = None
    cgroup_throttled_periods_fraction: Annotated[float | None, _d(
        "quota periods in which it was throttled / periods elapsed (`nr_throttled / nr_periods`)")] = None
    pressure_fraction: Annotated[float | None, _d(
        "share of the window some runnable task waited for a CPU (PSI `some`, machine-wide)")] = None
    top_other_processes: Annotated[list[OtherProcessCpu], _d(
        "the busiest processes outside the job, from a scan of `/proc` at the window's start and end")] = field(
        default_factory=list)
    samples: SupplySamples = field(default_factory=SupplySamples)


class Telemetry(_Doc, frozen=True, kw_only=True):
    """Per-process telemetry sampled during the window."""

    interval_ms: Annotated[float | None, _d("sampling period")] = None
    fields: Annotated[list[str], _d("the sampled fields")] = field(default_factory=list)
    start_us: Annotated[float | None, _d("first sample")] = None
    end_us: Annotated[float | None, _d("last sample")] = None
    ticks: Annotated[int, _d("sampling rounds")] = 0
    sampler_cpu_ms: Annotated[float | None, _d("the sampler's own CPU cost")] = None
    processes: list[ProcessTelemetry] = field(default_factory=list)
    supply: Annotated[CpuSupply | None, _d(
        "the CPU supply: what processes outside the job took from the cores (null in older files)")] = None


@dataclass(frozen=True)
class BatchProduction:
    """One batch produced inside a worker (or in the main process with num_workers=0), µs."""

    loader_id: int | None
    worker_id: int | None
    pid: int | None
    start_us: Annotated[float, _d("first sample")]
    dur_us: float
    cpu_us: float


class RunInfo(_Doc, frozen=True, kw_only=True):
    """Everything in run.json that a trace cannot hold."""

    schema_version: Annotated[int, _d("1")]
    tool: Tool = field(default_factory=Tool)
    command: Command = field(default_factory=Command)
    host: Annotated[str | None, _d("machine name")] = None
    pid: Annotated[int | None, _d("main process id")] = None
    started_at: Annotated[str | None, _d("ISO-8601 UTC")] = None
    ended_at: Annotated[str | None, _d("ISO-8601 UTC")] = None
    wall_s: Annotated[float | None, _d("seconds from start to end")] = None
    exit_status: Annotated[int, _d(
        "the script's status: 0; `sys.exit(n)` or `os._exit(n)` → n; exception → 1; Ctrl-C → 130; "
        "ended by signal s → 128 + s")] = 0
    stop_reason: Annotated[str, _d(
        "`window_captured` (stopped after the window), `finished`, `exited` (non-zero `sys.exit` or any "
        "`os._exit`), `error`, `interrupted` (Ctrl-C), `terminated` (SIGTERM or SIGHUP: tracelens saved "
        "what was recorded, then the script died by the signal), `killed` (the script's process died "
        "without tracelens finishing: SIGKILL, a crash; written by the supervising `tracelens profile` "
        "process), `running` (the run has not ended; left as is only when tracelens itself was killed)")] = ""
    error: Annotated[str | None, _d("`Type: message` of the script's exception")] = None
    signal: Annotated[str | None, _d("the signal that ended the script (`SIGTERM`, `SIGKILL`, ...), else null")] = None
    outcome: Annotated[str | None, _d(
        "one line: how the run ended and what was captured, e.g. `killed by SIGKILL during the window: "
        "trace not saved`")] = None
    supervisor_pid: Annotated[int | None, _d(
        "the `tracelens profile` process that ran the script in a child process and wrote run.json "
        "if that child died (null for `with tracelens.profile()`)")] = None
    user_profiler: Annotated[str | None, _d("class of the script's own profiler (then no trace of ours)")] = None
    notes: Annotated[list[str], _d("why the trace is short, has no steps, ...")] = field(default_factory=list)
    schedule: Schedule | None = None
    window: Window = field(default_factory=Window)
    trace: TraceRef = field(default_factory=TraceRef)
    loaders: list[Loader] = field(default_factory=list)
    batches: Batches = field(default_factory=Batches)
    main_fetch: MainFetch = field(default_factory=MainFetch)
    machine: Machine = field(default_factory=Machine)
    workers: list[Worker] = field(default_factory=list)
    worker_batches: WorkerBatches = field(default_factory=WorkerBatches)
    telemetry: Telemetry | None = None

    # ----------------------------------------------------------------- derived views
    @property
    def main_loader(self) -> Loader | None:
        """The loader the window recorded; else the training loader that drew the most batches."""
        if self.window.loader_id is not None:
            found = next((lo for lo in self.loaders if lo.id == self.window.loader_id), None)
            if found is not None:
                return found
        return max(self.loaders, key=lambda lo: (lo.training is not False, lo.batches_drawn), default=None)

    @property
    def batch_start_us(self) -> tuple[float, ...]:
        """When each recorded batch's ``__next__`` began."""
        return tuple(s for s in self.batches.start_us if s is not None)

    @property
    def batch_wait_us(self) -> tuple[float, ...]:
        """How long each recorded batch's ``__next__`` blocked."""
        b = self.batches
        return tuple(float(w or 0.0) for s, w in zip(b.start_us, b.wait_us) if s is not None)

    @property
    def batch_loader_ids(self) -> tuple[int | None, ...]:
        """The loader of each recorded batch (None in files that did not record it)."""
        b = self.batches
        ids = b.loader_id if len(b.loader_id) == len(b.start_us) else [None] * len(b.start_us)
        return tuple(li for s, li in zip(b.start_us, ids) if s is not None)

    def batches_of(self, loader_id: int | None) -> list[tuple[float, float]]:
        """``(start, wait)`` µs of each recorded batch of ``loader_id`` (every loader's when None;
        a batch whose loader was not recorded, as in older files, counts for any loader)."""
        return [(s, w) for s, w, li in zip(self.batch_start_us, self.batch_wait_us, self.batch_loader_ids)
                if loader_id is None or li is None or li == loader_id]

    def productions(self) -> list[BatchProduction]:
        """Every batch production recorded: in workers, then in the main process."""
        w, m = self.worker_batches, self.main_fetch
        rows = [BatchProduction(li, wi, p, float(s), float(du or 0.0), float(c or 0.0))
                for li, wi, p, s, du, c in zip(w.loader_id, w.worker_id, w.pid, w.start_us, w.dur_us, w.cpu_us)
                if s is not None]
        rows += [BatchProduction(None, None, self.pid, float(s), float(du or 0.0), float(c or 0.0))
                 for s, du, c in zip(m.start_us, m.dur_us, m.cpu_us) if s is not None]
        return rows

    def window_batches(self) -> list[BatchProduction]:
        """Batch productions that overlap the window (all of them without window bounds)."""
        lo, hi = self.window.start_us, self.window.end_us
        return [b for b in self.productions()
                if (lo is None or b.start_us + b.dur_us >= lo) and (hi is None or b.start_us <= hi)]

    def batch_production_ms_median(self, loader_id: int | None = None) -> float | None:
        """Median time to produce one batch (ms) in the window, for one loader or all."""
        durs = [b.dur_us for b in self.window_batches() if loader_id is None or b.loader_id == loader_id]
        return statistics.median(durs) / 1000.0 if durs else None

    def batch_cpu_fraction(self, loader_id: int | None = None) -> float | None:
        """Σ CPU / Σ wall of batch production in the window: ≈1 CPU-bound, ≪1 waiting (I/O, sleep)."""
        rows = [b for b in self.window_batches() if loader_id is None or b.loader_id == loader_id]
        wall = sum(b.dur_us for b in rows)
        return sum(b.cpu_us for b in rows) / wall if wall > 0 else None

    def process_summaries(self) -> list[ProcessSummary]:
        """Per-process telemetry over the window (processes with fewer than 2 samples skipped)."""
        procs = self.telemetry.processes if self.telemetry is not None else []
        out = []
        for proc in procs:
            s = proc.summary(self.window.warmup_start_us, None) or proc.summary()
            if s is not None:
                out.append(s)
        return out

    def steps_per_s(self) -> float | None:
        """Batches per second of the window's loader in the window, from the wrapper's own batch
        timestamps (every loader's in files without ``window.loader_id``)."""
        lo, hi = self.window.start_us, self.window.end_us
        starts = [t for t, _ in self.batches_of(self.window.loader_id)
                  if (lo is None or t >= lo) and (hi is None or t <= hi)]
        if len(starts) < 2:
            return None
        return (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e6)


_DECODER = msgspec.json.Decoder(RunInfo)


def decode_run_info(data: bytes, path: str | Path = "run.json") -> RunInfo:
    """Decode a run.json document (``path`` only names the file in errors)."""
    try:
        run = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise BadInputError(path, f"malformed run.json: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadInputError(path, f"cannot read run.json: {exc}") from None
    if run.schema_version > SCHEMA_VERSION or run.schema_version < 1:
        raise BadInputError(path, f"unsupported run.json schema_version {run.schema_version} "
                                  f"(this tracelens reads 1 to {SCHEMA_VERSION}): upgrade tracelens")
    return run


def encode_run_info(run: RunInfo) -> bytes:
    """The run.json bytes of ``run``."""
    return msgspec.json.encode(run)


def read_run_info(path: str | Path) -> RunInfo:
    """Read ``run.json`` from a run directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadInputError(p, "no run.json here (is this a `tracelens profile` run directory?)") from None
    except OSError as exc:
        raise BadInputError(p, f"cannot read run.json: {exc.strerror or exc}") from None
    return decode_run_info(data, p)
