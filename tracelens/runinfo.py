"""Typed, torch-free reader of a run directory's ``run.json`` (written by ``tracelens.capture``).

The rules engine and the report read the wrapper's evidence through these frozen dataclasses:
loader settings, machine facts, per-worker batch production times and per-process telemetry.
All times are µs on the trace's clock (same origin as the trace's ``ts``). See docs/run-json.md.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracelens.errors import BadInputError

SUPPORTED_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LoaderSettings:
    """Constructor settings of one DataLoader, and how it was used."""

    id: int
    cls: str
    num_workers: int
    batch_size: int | None
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    multiprocessing_context: str | None
    drop_last: bool
    has_worker_init_fn: bool
    has_collate_fn: bool
    dataset_class: str
    dataset_kind: str
    dataset_len: int | None
    batches_per_epoch: int | None
    iter_calls: int
    iterators_created: int
    batches_drawn: int
    overrides_applied: dict[str, Any]


@dataclass(frozen=True)
class MachineFacts:
    """Cores, threads and devices of the machine the run used."""

    logical_cores: int | None
    physical_cores: int | None
    affinity_cores: int | None
    cgroup_cpu_quota_cores: float | None
    usable_cores: int | None
    usable_cores_exact: float | None
    torch_threads_main: int | None
    torch_interop_threads_main: int | None
    thread_env: dict[str, str]
    local_world_size: int | None
    world_size: int | None
    cuda_available: bool
    gpu_count: int
    gpu_names: tuple[str, ...]
    torch_version: str | None
    python_version: str | None


@dataclass(frozen=True)
class WorkerInfo:
    """One DataLoader worker process (a respawned worker appears again with a new pid)."""

    loader_id: int
    worker_id: int
    pid: int
    torch_threads: int | None
    started_us: float | None
    batches_produced: int


@dataclass(frozen=True)
class BatchProduction:
    """One batch produced inside a worker (or in the main process with num_workers=0)."""

    loader_id: int | None
    worker_id: int | None
    pid: int | None
    start_us: float
    dur_us: float
    cpu_us: float


@dataclass(frozen=True)
class ProcessSummary:
    """Telemetry of one process between two samples (the first and last in a span).

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
    write_bytes: int | None
    ctx_voluntary: int
    ctx_involuntary: int
    max_threads: int


@dataclass(frozen=True)
class ProcessTelemetry:
    """Sampled counters of one process; ``samples`` maps a field to its column (see docs)."""

    pid: int
    role: str
    loader_id: int | None
    worker_id: int | None
    samples: dict[str, list[Any]]

    def summary(
        self, start_us: float | None = None, end_us: float | None = None
    ) -> ProcessSummary | None:
        """Differences between the first and last samples inside [start_us, end_us]."""
        t = self.samples.get("t_us", [])
        idx = [
            i
            for i, ts in enumerate(t)
            if ts is not None
            and (start_us is None or ts >= start_us)
            and (end_us is None or ts <= end_us)
        ]
        if len(idx) < 2:
            return None
        a, b = idx[0], idx[-1]
        col = self.samples

        def diff(name: str) -> float | None:
            values = col.get(name)
            if not values or values[a] is None or values[b] is None:
                return None
            return float(values[b] - values[a])

        wall_s = (t[b] - t[a]) / 1e6
        cpu_ns = diff("cpu_ns")
        if cpu_ns is not None:
            cpu_s = cpu_ns / 1e9
        else:
            cpu_s = (diff("cpu_user_s") or 0.0) + (diff("cpu_system_s") or 0.0)
        delay_ns = diff("run_delay_ns")
        read_b, write_b = diff("read_bytes"), diff("write_bytes")
        return ProcessSummary(
            pid=self.pid,
            role=self.role,
            loader_id=self.loader_id,
            worker_id=self.worker_id,
            wall_s=wall_s,
            cpu_s=cpu_s,
            cpu_cores=cpu_s / wall_s if wall_s > 0 else 0.0,
            run_delay_s=None if delay_ns is None else delay_ns / 1e9,
            run_delay_fraction=None if delay_ns is None or wall_s <= 0 else delay_ns / 1e9 / wall_s,
            read_bytes=None if read_b is None else int(read_b),
            write_bytes=None if write_b is None else int(write_b),
            ctx_voluntary=int(diff("ctx_voluntary") or 0),
            ctx_involuntary=int(diff("ctx_involuntary") or 0),
            max_threads=max(
                (n for n in col.get("num_threads", [])[a : b + 1] if n is not None), default=0
            ),
        )


@dataclass(frozen=True)
class Window:
    """The recorded profiler window, µs on the trace clock."""

    captured: bool
    unstepped: bool
    steps: int
    first_batch: int | None
    start_us: float | None
    end_us: float | None
    warmup_start_us: float | None


@dataclass(frozen=True)
class RunInfo:
    """Everything in run.json that a trace cannot hold."""

    path: Path
    schema_version: int
    argv: tuple[str, ...]
    exit_status: int
    stop_reason: str
    error: str | None
    user_profiler: str | None
    notes: tuple[str, ...]
    schedule: dict[str, Any] | None
    window: Window
    clock_offset_ns: int
    clock_source: str
    loaders: tuple[LoaderSettings, ...]
    machine: MachineFacts
    workers: tuple[WorkerInfo, ...]
    batch_start_us: tuple[float, ...]
    batch_wait_us: tuple[float, ...]
    worker_batches: tuple[BatchProduction, ...]
    telemetry: tuple[ProcessTelemetry, ...]
    telemetry_interval_ms: float | None
    raw: dict[str, Any]

    @property
    def main_loader(self) -> LoaderSettings | None:
        """The loader that drew the most batches (the training loader, usually)."""
        return max(self.loaders, key=lambda lo: lo.batches_drawn, default=None)

    def window_batches(self) -> list[BatchProduction]:
        """Batch productions that overlap the window (all of them if no window bounds)."""
        lo, hi = self.window.start_us, self.window.end_us
        return [
            b
            for b in self.worker_batches
            if (lo is None or b.start_us + b.dur_us >= lo) and (hi is None or b.start_us <= hi)
        ]

    def batch_production_ms_median(self, loader_id: int | None = None) -> float | None:
        """Median time to produce one batch (ms) in the window, for one loader or all."""
        durs = [
            b.dur_us for b in self.window_batches() if loader_id is None or b.loader_id == loader_id
        ]
        return statistics.median(durs) / 1000.0 if durs else None

    def batch_cpu_fraction(self, loader_id: int | None = None) -> float | None:
        """Σ CPU / Σ wall of batch production in the window: ≈1 CPU-bound, ≪1 waiting (I/O, sleep)."""
        rows = [b for b in self.window_batches() if loader_id is None or b.loader_id == loader_id]
        wall = sum(b.dur_us for b in rows)
        return sum(b.cpu_us for b in rows) / wall if wall > 0 else None

    def process_summaries(self) -> list[ProcessSummary]:
        """Per-process telemetry over the window (processes with fewer than 2 samples skipped)."""
        out = []
        for proc in self.telemetry:
            s = proc.summary(self.window.warmup_start_us, None) or proc.summary()
            if s is not None:
                out.append(s)
        return out

    def steps_per_s(self) -> float | None:
        """Batches per second in the window from the wrapper's own batch timestamps."""
        lo, hi = self.window.start_us, self.window.end_us
        starts = [
            t for t in self.batch_start_us if (lo is None or t >= lo) and (hi is None or t <= hi)
        ]
        if len(starts) < 2:
            return None
        return (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e6)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _loader(d: dict[str, Any]) -> LoaderSettings:
    return LoaderSettings(
        id=int(d["id"]),
        cls=str(d.get("class", "")),
        num_workers=int(d.get("num_workers", 0)),
        batch_size=_opt_int(d.get("batch_size")),
        pin_memory=bool(d.get("pin_memory", False)),
        persistent_workers=bool(d.get("persistent_workers", False)),
        prefetch_factor=_opt_int(d.get("prefetch_factor")),
        multiprocessing_context=d.get("multiprocessing_context"),
        drop_last=bool(d.get("drop_last", False)),
        has_worker_init_fn=bool(d.get("has_worker_init_fn", False)),
        has_collate_fn=bool(d.get("has_collate_fn", False)),
        dataset_class=str(d.get("dataset_class", "")),
        dataset_kind=str(d.get("dataset_kind", "map")),
        dataset_len=_opt_int(d.get("dataset_len")),
        batches_per_epoch=_opt_int(d.get("batches_per_epoch")),
        iter_calls=int(d.get("iter_calls", 0)),
        iterators_created=int(d.get("iterators_created", 0)),
        batches_drawn=int(d.get("batches_drawn", 0)),
        overrides_applied=dict(d.get("overrides_applied") or {}),
    )


def _machine(d: dict[str, Any]) -> MachineFacts:
    return MachineFacts(
        logical_cores=_opt_int(d.get("logical_cores")),
        physical_cores=_opt_int(d.get("physical_cores")),
        affinity_cores=_opt_int(d.get("affinity_cores")),
        cgroup_cpu_quota_cores=_opt_float(d.get("cgroup_cpu_quota_cores")),
        usable_cores=_opt_int(d.get("usable_cores")),
        usable_cores_exact=_opt_float(d.get("usable_cores_exact")),
        torch_threads_main=_opt_int(d.get("torch_threads_main")),
        torch_interop_threads_main=_opt_int(d.get("torch_interop_threads_main")),
        thread_env={str(k): str(v) for k, v in (d.get("thread_env") or {}).items()},
        local_world_size=_opt_int(d.get("local_world_size")),
        world_size=_opt_int(d.get("world_size")),
        cuda_available=bool(d.get("cuda_available", False)),
        gpu_count=int(d.get("gpu_count", 0)),
        gpu_names=tuple(str(g.get("name")) for g in d.get("gpus") or []),
        torch_version=d.get("torch_version"),
        python_version=d.get("python_version"),
    )


def _columns(d: dict[str, Any] | None, *names: str) -> list[list[Any]]:
    d = d or {}
    cols = [list(d.get(n) or []) for n in names]
    n = min((len(c) for c in cols), default=0)
    return [c[:n] for c in cols]


def parse_run_info(doc: dict[str, Any], path: Path) -> RunInfo:
    """Build a ``RunInfo`` from a decoded run.json (``path`` is only used in messages)."""
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SUPPORTED_SCHEMA_VERSION:
        raise BadInputError(path, f"unsupported run.json schema_version {version!r}")
    try:
        w = doc.get("window") or {}
        clock = (doc.get("trace") or {}).get("clock") or {}
        loader_id, worker_id, pid, start, dur, cpu = _columns(
            doc.get("worker_batches"),
            "loader_id",
            "worker_id",
            "pid",
            "start_us",
            "dur_us",
            "cpu_us",
        )
        worker_batches = [
            BatchProduction(li, wi, p, float(s), float(du), float(c))
            for li, wi, p, s, du, c in zip(loader_id, worker_id, pid, start, dur, cpu, strict=True)
            if s is not None
        ]
        m_start, m_dur, m_cpu = _columns(doc.get("main_fetch"), "start_us", "dur_us", "cpu_us")
        worker_batches += [
            BatchProduction(None, None, doc.get("pid"), float(s), float(du), float(c))
            for s, du, c in zip(m_start, m_dur, m_cpu, strict=True)
            if s is not None
        ]
        b_start, b_wait = _columns(doc.get("batches"), "start_us", "wait_us")
        tel = doc.get("telemetry") or {}
        return RunInfo(
            path=path,
            schema_version=version,
            argv=tuple((doc.get("command") or {}).get("argv") or ()),
            exit_status=int(doc.get("exit_status", 0)),
            stop_reason=str(doc.get("stop_reason", "")),
            error=doc.get("error"),
            user_profiler=doc.get("user_profiler"),
            notes=tuple(doc.get("notes") or ()),
            schedule=doc.get("schedule"),
            window=Window(
                captured=bool(w.get("captured", False)),
                unstepped=bool(w.get("unstepped", False)),
                steps=int(w.get("steps", 0)),
                first_batch=_opt_int(w.get("first_batch")),
                start_us=_opt_float(w.get("start_us")),
                end_us=_opt_float(w.get("end_us")),
                warmup_start_us=_opt_float(w.get("warmup_start_us")),
            ),
            clock_offset_ns=int(clock.get("offset_ns", 0)),
            clock_source=str(clock.get("source", "unknown")),
            loaders=tuple(_loader(lo) for lo in doc.get("loaders") or []),
            machine=_machine(doc.get("machine") or {}),
            workers=tuple(
                WorkerInfo(
                    loader_id=int(x["loader_id"]),
                    worker_id=int(x["worker_id"]),
                    pid=int(x["pid"]),
                    torch_threads=_opt_int(x.get("torch_threads")),
                    started_us=_opt_float(x.get("started_us")),
                    batches_produced=int(x.get("batches_produced", 0)),
                )
                for x in doc.get("workers") or []
            ),
            batch_start_us=tuple(
                float(s) for s, _ in zip(b_start, b_wait, strict=True) if s is not None
            ),
            batch_wait_us=tuple(
                float(wt) for s, wt in zip(b_start, b_wait, strict=True) if s is not None
            ),
            worker_batches=tuple(worker_batches),
            telemetry=tuple(
                ProcessTelemetry(
                    pid=int(p["pid"]),
                    role=str(p.get("role", "")),
                    loader_id=_opt_int(p.get("loader_id")),
                    worker_id=_opt_int(p.get("worker_id")),
                    samples=dict(p.get("samples") or {}),
                )
                for p in tel.get("processes") or []
            ),
            telemetry_interval_ms=_opt_float(tel.get("interval_ms")),
            raw=doc,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(path, f"malformed run.json: {type(exc).__name__}: {exc}") from exc


def read_run_info(path: str | Path) -> RunInfo:
    """Read ``run.json`` from a run directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInputError(
            p, "no run.json here (is this a `tracelens profile` run directory?)"
        ) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(p, f"cannot read run.json: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadInputError(p, "run.json is not a JSON object")
    return parse_run_info(doc, p)
