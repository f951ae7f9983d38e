"""run.json of a capture session, built as the ``tracelens.runjson`` structs it is declared by.

Every wall-clock ``time.time_ns()`` the session took becomes µs on the trace's clock through
:func:`trace_clock`. Worker batch records come from the per-worker files in ``.workers/``.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from tracelens.capture.dataloader.registry import LoaderRecord
from tracelens.capture.dataloader.worker import read_record_file
from tracelens.capture.machine.telemetry import SAMPLE_FIELDS, TelemetrySampler
from tracelens.runjson import (
    SCHEMA_VERSION,
    Batches,
    Clock,
    Command,
    Machine,
    MainFetch,
    ProcessTelemetry,
    RunInfo,
    Samples,
    Schedule,
    Telemetry,
    Tool,
    TraceRef,
    Window,
    Worker,
    WorkerBatches,
)

SYNC_MARKER = "tracelens#sync"
#: Worker batch records are kept from this long before the window starts (ns).
WORKER_RECORD_LEAD_NS = 5_000_000_000

ToUs = Callable[[int | None], float | None]


@dataclass
class WindowTimes:
    """Wall-clock ns of the recorded window as it happens (None: not reached)."""

    started: bool = False
    captured: bool = False
    unstepped: bool = False
    warmup_start_ns: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None


@dataclass(frozen=True)
class SessionState:
    """What a finished session hands over to become run.json."""

    command: dict[str, Any]
    started_ns: int
    end_ns: int
    exit_status: int
    stop_reason: str
    error: str | None
    user_profiler: str | None
    notes: tuple[str, ...]
    schedule: Schedule | None
    window: WindowTimes
    window_loader: int | None
    window_first_batch: int | None
    window_steps: int
    trace_path: Path | None
    sync: tuple[int, int] | None  # wall ns just before and after the sync marker
    loaders: tuple[LoaderRecord, ...]
    batches_drawn: int
    batch_loader_ids: tuple[int | None, ...]
    batch_start_ns: tuple[int, ...]
    batch_wait_ns: tuple[int, ...]
    main_fetch: tuple[tuple[int, int, int], ...]  # (start ns, end ns, CPU ns)
    record_dir: Path
    torch_threads_at_window: int | None
    sampler: TelemetrySampler | None
    telemetry_interval_ms: float


def trace_clock(trace_path: Path | None, sync: tuple[int, int] | None) -> Clock:
    """Relate ``time.time_ns()`` to the trace's ``ts``: trace_us = (t_ns + offset_ns - base_ns) / 1000."""
    base_ns = 0
    ts_us: float | None = None
    if trace_path is not None and trace_path.exists():
        try:
            with gzip.open(trace_path, "rb") as fh:
                text = fh.read()
            m = re.search(rb'"baseTimeNanoseconds"\s*:\s*(\d+)', text)
            base_ns = int(m.group(1)) if m else 0
            m = re.search(rb'"name"\s*:\s*"' + SYNC_MARKER.encode() + rb'"[^{}]*?"ts"\s*:\s*([0-9.eE+-]+)', text)
            ts_us = float(m.group(1)) if m else None
        except (OSError, EOFError, ValueError):
            pass
    if ts_us is not None and sync is not None:
        wall_mid = (sync[0] + sync[1]) // 2
        return Clock(base_time_ns=base_ns, offset_ns=round(ts_us * 1000 + base_ns) - wall_mid,
                     source="sync_marker", sync_uncertainty_ns=sync[1] - sync[0])
    return Clock(base_time_ns=base_ns, offset_ns=0, source="assumed_wall_clock", sync_uncertainty_ns=None)


def _to_us(clock: Clock) -> ToUs:
    base, offset = clock.base_time_ns, clock.offset_ns

    def us(t_ns: int | None) -> float | None:
        return None if t_ns is None else round((t_ns + offset - base) / 1000.0, 3)

    return us


def _ms3(ns: int) -> float:
    return round(ns / 1000.0, 3)


def collect_workers(record_dir: Path, us: ToUs, keep_from_ns: int,
                    keep_to_ns: int | None) -> tuple[list[Worker], WorkerBatches]:
    """Every worker that wrote a record file, and its batches inside [keep_from_ns, keep_to_ns]."""
    workers: list[Worker] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("loader_id", "worker_id", "pid", "start_us", "dur_us", "cpu_us")}
    try:
        names = sorted(os.listdir(record_dir))
    except OSError:
        names = []
    for name in names:
        parts = name[:-4].split("-") if name.endswith(".rec") else []
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue
        loader_id, worker_id, pid = (int(p) for p in parts)
        header, rows = read_record_file(str(record_dir / name))
        header = header or {}
        kept = [r for r in rows if r[1] >= keep_from_ns and (keep_to_ns is None or r[0] <= keep_to_ns)]
        workers.append(Worker(
            loader_id=loader_id, worker_id=worker_id, pid=pid, torch_threads=header.get("torch_threads"),
            started_us=us(header.get("started_ns")), init_done_us=us(header.get("init_done_ns")),
            batches_produced=len(rows), batches_kept=len(kept)))
        for s, e, c in kept:
            for key, value in (("loader_id", loader_id), ("worker_id", worker_id), ("pid", pid),
                               ("start_us", us(s)), ("dur_us", _ms3(e - s)), ("cpu_us", _ms3(c))):
                cols[key].append(value)
    workers.sort(key=lambda w: (w.started_us or 0.0, w.loader_id, w.worker_id))
    return workers, WorkerBatches(**cols)


def telemetry(sampler: TelemetrySampler | None, interval_ms: float, us: ToUs) -> Telemetry | None:
    """The sampler's per-process series on the trace clock."""
    if sampler is None:
        return None
    processes = []
    for series in sampler.series.values():
        cols = dict(series.columns)
        t_ns = cols.pop("t_ns")
        processes.append(ProcessTelemetry(
            pid=series.pid, role=series.role, loader_id=series.loader_id, worker_id=series.worker_id,
            samples=Samples(t_us=[us(t) for t in t_ns], **cols)))
    return Telemetry(interval_ms=interval_ms, fields=list(SAMPLE_FIELDS), start_us=us(sampler.start_ns),
                     end_us=us(sampler.end_ns), ticks=sampler.ticks,
                     sampler_cpu_ms=round(sampler.sample_cost_ns / 1e6, 3), processes=processes,
                     supply=sampler.supply.to_struct(us) if sampler.supply is not None else None)


def _iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, tz=timezone.utc).isoformat()


def _tool_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tracelens-dataloader")
    except Exception:
        return None


def build_run_info(st: SessionState) -> RunInfo:
    """The run.json of a finished session."""
    from tracelens.capture.machine.facts import machine_facts

    clock = trace_clock(st.trace_path, st.sync)
    us = _to_us(clock)
    w = st.window
    lead_from = (w.warmup_start_ns or w.start_ns or st.started_ns) - WORKER_RECORD_LEAD_NS
    workers, worker_batches = collect_workers(st.record_dir, us, lead_from, w.end_ns)
    return RunInfo(
        schema_version=SCHEMA_VERSION,
        tool=Tool(name="tracelens", version=_tool_version()),
        command=msgspec.convert(st.command, Command),
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=_iso(st.started_ns),
        ended_at=_iso(st.end_ns),
        wall_s=round((st.end_ns - st.started_ns) / 1e9, 3),
        exit_status=st.exit_status,
        stop_reason=st.stop_reason,
        error=st.error,
        user_profiler=st.user_profiler,
        notes=list(st.notes),
        schedule=st.schedule,
        window=Window(started=w.started, captured=w.captured, unstepped=w.unstepped,
                      first_batch=st.window_first_batch, steps=st.window_steps if w.captured else 0,
                      warmup_start_us=us(w.warmup_start_ns), start_us=us(w.start_ns), end_us=us(w.end_ns),
                      loader_id=st.window_loader if w.started else None),
        trace=TraceRef(path=st.trace_path.name if st.trace_path is not None else None, clock=clock),
        loaders=[r.to_struct(us) for r in st.loaders],
        batches=Batches(count=st.batches_drawn, loader_id=list(st.batch_loader_ids),
                        start_us=[us(t) for t in st.batch_start_ns],
                        wait_us=[_ms3(t) for t in st.batch_wait_ns]),
        main_fetch=MainFetch(start_us=[us(s) for s, _, _ in st.main_fetch],
                             dur_us=[_ms3(e - s) for s, e, _ in st.main_fetch],
                             cpu_us=[_ms3(c) for _, _, c in st.main_fetch]),
        machine=msgspec.convert(machine_facts(st.torch_threads_at_window), Machine),
        workers=workers,
        worker_batches=worker_batches,
        telemetry=telemetry(st.sampler, st.telemetry_interval_ms, us),
    )
