"""Background sampler of per-process telemetry (main process and DataLoader workers).

Every ``interval`` it reads, for each known pid: CPU user/system seconds (psutil), CPU and
run-queue delay nanoseconds summed over all threads (``/proc/<pid>/task/*/schedstat``: field 1
= time on CPU, field 2 = time runnable but waiting for a CPU), I/O bytes (psutil
``io_counters``; ``None`` where the OS hides them), voluntary/involuntary context switches and
the thread count. Times are ``time.time_ns()``, converted to the trace clock when written.
With a :class:`~tracelens.capture.machine.supply.SupplyRecorder`, each tick also samples the CPU supply
(who else used the cores) with the job's CPU summed over the processes sampled here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from tracelens.capture.machine.supply import SupplyRecorder

SAMPLE_FIELDS = (
    "t_ns",
    "cpu_user_s",
    "cpu_system_s",
    "cpu_ns",
    "run_delay_ns",
    "read_bytes",
    "write_bytes",
    "read_chars",
    "ctx_voluntary",
    "ctx_involuntary",
    "num_threads",
)
#: At most this many samples per process (10 minutes at 100 ms); later samples are dropped.
MAX_SAMPLES = 6000


def read_schedstat(
    pid: int, seen: dict[str, tuple[int, int]] | None = None
) -> tuple[int, int] | None:
    """(on-CPU ns, run-queue delay ns) summed over the threads of ``pid``; ``None`` if unavailable.

    With ``seen`` (tid → last values, updated in place), threads that have ended keep counting
    with their last values, so the sums never decrease.
    """
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    totals = seen if seen is not None else {}
    found = False
    for tid in tids:
        try:
            with open(f"{base}/{tid}/schedstat", "rb") as fh:
                parts = fh.read().split()
        except OSError:
            continue  # the thread ended between listdir and open
        if len(parts) >= 2:
            totals[tid] = (int(parts[0]), int(parts[1]))
            found = True
    if not found:
        return None
    return sum(v[0] for v in totals.values()), sum(v[1] for v in totals.values())


@dataclass
class ProcessSeries:
    """Samples of one process, one list per field of ``SAMPLE_FIELDS``."""

    pid: int
    role: str
    loader_id: int | None = None
    worker_id: int | None = None
    columns: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in SAMPLE_FIELDS})
    proc: psutil.Process | None = None
    gone: bool = False
    thread_stats: dict[str, tuple[int, int]] = field(default_factory=dict)

    def cpu_ns(self) -> int | None:
        """CPU time so far (ns): the last schedstat sum, else psutil's user + system."""
        cols = self.columns
        if not cols["t_ns"]:
            return None
        if cols["cpu_ns"][-1] is not None:
            return int(cols["cpu_ns"][-1])
        return round((cols["cpu_user_s"][-1] + cols["cpu_system_s"][-1]) * 1e9)

    def sample(self, t_ns: int) -> None:
        """Append one sample; marks the series ``gone`` when the process has exited."""
        if self.gone or len(self.columns["t_ns"]) >= MAX_SAMPLES:
            return
        try:
            if self.proc is None:
                self.proc = psutil.Process(self.pid)
            p = self.proc
            with p.oneshot():
                cpu = p.cpu_times()
                ctx = p.num_ctx_switches()
                nthreads = p.num_threads()
                try:
                    io = p.io_counters()
                except (psutil.AccessDenied, AttributeError, NotImplementedError, OSError):
                    io = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            self.gone = True
            return
        sched = read_schedstat(self.pid, self.thread_stats)
        row: dict[str, Any] = {
            "t_ns": t_ns,
            "cpu_user_s": round(cpu.user, 4),
            "cpu_system_s": round(cpu.system, 4),
            "cpu_ns": sched[0] if sched else None,
            "run_delay_ns": sched[1] if sched else None,
            "read_bytes": getattr(io, "read_bytes", None),
            "write_bytes": getattr(io, "write_bytes", None),
            "read_chars": getattr(io, "read_chars", None),
            "ctx_voluntary": ctx.voluntary,
            "ctx_involuntary": ctx.involuntary,
            "num_threads": nthreads,
        }
        for key in SAMPLE_FIELDS:
            self.columns[key].append(row[key])


class TelemetrySampler:
    """Samples the main process and every DataLoader worker on a background thread.

    ``discover`` returns ``{pid: (loader_id, worker_id)}`` for workers known by their record
    files; every ``children_every`` ticks the main process's children are listed too, so
    workers that never reported (a failing ``worker_init_fn``) are still sampled.
    """

    def __init__(
        self,
        interval_s: float,
        discover: Callable[[], Mapping[int, tuple[int | None, int | None]]],
        children_every: int = 10,
        supply: SupplyRecorder | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.discover = discover
        self.children_every = children_every
        self.main_pid = os.getpid()
        self.series: dict[int, ProcessSeries] = {
            self.main_pid: ProcessSeries(self.main_pid, "main")
        }
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.sample_cost_ns = 0
        self.ticks = 0
        self.supply = supply
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take a first sample now and keep sampling until ``stop``."""
        self.start_ns = time.time_ns()
        if self.supply is not None:
            with contextlib.suppress(Exception):  # telemetry must never break the run
                self.supply.begin()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="tracelens-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a last sample."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        self.tick()
        if self.supply is not None:
            with contextlib.suppress(Exception):
                self.supply.end()
        self.end_ns = time.time_ns()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # telemetry must never break the run
                self.tick()

    def _discover_pids(self) -> None:
        for pid, (loader_id, worker_id) in self.discover().items():
            known = self.series.get(pid)
            if known is None:
                self.series[pid] = ProcessSeries(pid, "worker", loader_id, worker_id)
            elif known.role == "child":
                known.role, known.loader_id, known.worker_id = "worker", loader_id, worker_id
        if self.ticks % self.children_every == 0:
            try:
                children = psutil.Process(self.main_pid).children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                if child.pid not in self.series:
                    self.series[child.pid] = ProcessSeries(child.pid, "child")

    def tick(self) -> None:
        """One sample of every live process."""
        c0 = time.perf_counter_ns()
        self._discover_pids()
        t_ns = time.time_ns()
        for series in list(self.series.values()):
            series.sample(t_ns)
        if self.supply is not None:
            with contextlib.suppress(Exception):
                self.supply.tick({pid: s.cpu_ns() for pid, s in list(self.series.items())})
        self.ticks += 1
        self.sample_cost_ns += time.perf_counter_ns() - c0
