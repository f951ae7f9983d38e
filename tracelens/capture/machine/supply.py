"""The CPU supply over the telemetry window: what the job's cores gave the job, and who else took them.

Every telemetry tick reads the supply counters (:func:`cpu_supply.sample`) and the job's own CPU
time: the sum over the job's processes, those the telemetry samples (the main process and its
workers, from their schedstat) and the rest of the job's process tree read from
``/proc/<pid>/stat`` (the supervising ``tracelens profile`` process, a launcher, the other ranks of
a torchrun job). A scan of ``/proc`` at the window's start and end names the busiest processes
outside the job. CPU outside the job = the CPUs' busy time − the job's CPU, over each interval.

The job is the process tree of :func:`job_root`: the outermost ``tracelens profile`` process sets
``TRACELENS_JOB_ROOT`` for everything it starts (the torchrun form sets it to itself, so every
rank's processes are the job; a rank started by ``torchrun ... tracelens profile`` passes on its
launcher); without it (``with tracelens.profile()``) the job is this process.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from tracelens.capture.machine import cpu_supply as cs
from tracelens.runjson import CpuSupply, OtherProcessCpu, SupplySamples

#: The pid whose process tree is the job, set by the outermost ``tracelens profile`` process.
JOB_ROOT_ENV = "TRACELENS_JOB_ROOT"
#: The job's process tree is listed again every this many ticks (new ranks, respawned workers).
REFRESH_TICKS = 10
#: The busiest other processes named, and the least CPU (cores) one must use to be named.
TOP_OTHERS, MIN_OTHER_CORES = 5, 0.05


def job_root(environ: Mapping[str, str] | None = None) -> int:
    """The job's root pid: ``TRACELENS_JOB_ROOT`` when it names a live process; else, in a rank a
    launcher started (``RANK`` and ``WORLD_SIZE`` set: ``torchrun ... tracelens profile``), the
    launcher, whose tree holds every rank; else this process."""
    env = os.environ if environ is None else environ
    text = env.get(JOB_ROOT_ENV, "")
    if text.isdigit() and cs.read_process(int(text)) is not None:
        return int(text)
    if env.get("RANK", "").isdigit() and env.get("WORLD_SIZE", "").isdigit():
        return os.getppid()
    return os.getpid()


def with_job_root(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a process this one starts: the job's root passed down."""
    return {**environ, JOB_ROOT_ENV: str(job_root(environ))}


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


class SupplyRecorder:
    """Supply samples and the job's cumulative CPU, one per telemetry tick (see the module doc)."""

    def __init__(self, root: int, quota_cores: float | None) -> None:
        self.root = root
        self.quota = quota_cores
        self.cpus = cs.affinity()
        self.job: set[int] = set()
        self.cpu_by_pid: dict[int, int] = {}  # last CPU ns of each job process (exited ones keep theirs)
        self.samples: list[cs.SupplySample] = []
        self.job_ns: list[int] = []
        self.first_scan: dict[int, cs.ProcessRow] = {}
        self.last_scan: dict[int, cs.ProcessRow] = {}

    def begin(self) -> None:
        """The scan at the window's start: the job's tree and every process's CPU so far."""
        self.first_scan = cs.process_table()
        self.job = cs.tree(self.first_scan, self.root)

    def tick(self, own_cpu_ns: Mapping[int, int | None]) -> None:
        """One supply sample; ``own_cpu_ns`` is the CPU so far of each process the telemetry samples."""
        if self.samples and len(self.samples) % REFRESH_TICKS == 0:
            self.job |= cs.descendants(self.root)
        for pid, ns in own_cpu_ns.items():
            if ns is not None:
                self.cpu_by_pid[pid] = max(ns, self.cpu_by_pid.get(pid, 0))
        for pid in self.job.difference(own_cpu_ns):
            row = cs.read_process(pid)
            if row is not None:
                self.cpu_by_pid[pid] = max(row.cpu_ns, self.cpu_by_pid.get(pid, 0))
        self.samples.append(cs.sample(self.cpus))
        self.job_ns.append(sum(self.cpu_by_pid.values()))

    def end(self) -> None:
        """The scan at the window's end (processes started in the window join the job's tree)."""
        self.last_scan = cs.process_table()
        self.job |= cs.tree(self.last_scan, self.root)

    # ----------------------------------------------------------------- run.json
    def cores_left(self, iv: cs.SupplyInterval) -> float | None:
        """Cores the job could use over ``iv``: the CPUs others left, at most the quota minus what
        other processes of the job's cgroup used."""
        if iv.cpus is None or iv.other_cores is None:
            return None
        left = iv.cpus - iv.other_cores
        if self.quota is not None:
            cgroup_others = max(0.0, iv.cgroup_cores - iv.job_cores) if iv.cgroup_cores is not None else 0.0
            left = min(left, self.quota - cgroup_others)
        return max(0.0, left)

    def _interval(self, i: int, j: int) -> cs.SupplyInterval | None:
        return cs.interval(self.samples[i], self.samples[j], self.job_ns[j] - self.job_ns[i])

    def to_struct(self, us: Callable[[int | None], float | None]) -> CpuSupply | None:
        """The window means and per-sample columns (None with fewer than two samples)."""
        if len(self.samples) < 2:
            return None
        cols: dict[str, list[float | None]] = {k: [None] for k in (
            "busy_cores", "job_cpu_cores", "other_cpu_cores", "cores_left", "cgroup_throttled_fraction",
            "pressure_fraction")}
        for i in range(1, len(self.samples)):
            iv = self._interval(i - 1, i)
            row = {} if iv is None else {
                "busy_cores": iv.busy_cores, "job_cpu_cores": iv.job_cores, "other_cpu_cores": iv.other_cores,
                "cores_left": self.cores_left(iv), "cgroup_throttled_fraction": iv.throttled_fraction,
                "pressure_fraction": iv.pressure_fraction}
            for key, values in cols.items():
                values.append(_r(row.get(key)))
        whole = self._interval(0, len(self.samples) - 1)
        if whole is None:
            return None
        a, b = self.samples[0], self.samples[-1]
        periods = (b.cgroup_periods - a.cgroup_periods
                   if b.cgroup_periods is not None and a.cgroup_periods is not None else None)
        throttled = (b.cgroup_throttled_periods - a.cgroup_throttled_periods
                     if b.cgroup_throttled_periods is not None and a.cgroup_throttled_periods is not None else None)
        own = set(self.cpu_by_pid) | self.job
        before, after = cs.cpu_between(self.first_scan, self.last_scan)
        others = cs.busiest_others(before, after, own, whole.wall_s, TOP_OTHERS, MIN_OTHER_CORES)
        usable = None
        if whole.cpus is not None:
            usable = float(whole.cpus) if self.quota is None else min(float(whole.cpus), self.quota)
        return CpuSupply(
            job_root_pid=self.root, job_processes=len(own), cpus=whole.cpus, usable_cores=_r(usable),
            wall_s=_r(whole.wall_s, 3), busy_cores=_r(whole.busy_cores), job_cpu_cores=_r(whole.job_cores),
            other_cpu_cores=_r(whole.other_cores), cores_left=_r(self.cores_left(whole)),
            cgroup_cpu_cores=_r(whole.cgroup_cores), cgroup_throttled_fraction=_r(whole.throttled_fraction),
            cgroup_throttled_periods_fraction=_r(throttled / periods) if throttled is not None and periods else None,
            pressure_fraction=_r(whole.pressure_fraction),
            top_other_processes=[OtherProcessCpu(pid=o.pid, name=o.name, cores=round(o.cores, 3)) for o in others],
            samples=SupplySamples(t_us=[us(s.t_ns) for s in self.samples], **cols))

