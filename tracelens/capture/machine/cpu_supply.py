"""CPU supply: what the cores this job may use were doing, and who else used them.

A job only sees its own processes; the run-queue delay they suffer is caused by whoever holds
the cores. These readers take the other side of the picture (Linux; every reader returns None
where a file is missing, so other systems record nulls):

- ``/proc/stat``: busy time of the CPUs in this process's affinity set (user, nice, system, irq,
  softirq and steal: a hypervisor's steal is a core taken by another tenant);
- the job's cgroup: CPU used by every process in it and the time its quota throttled it
  (v2 ``cpu.stat``; v1 ``cpuacct.usage`` and ``cpu.stat``);
- ``/proc/pressure/cpu``: the time some runnable task waited for a CPU (PSI, µs);
- ``/proc/<pid>/stat``: CPU time per process, to name the busiest processes outside the job.

CPU used outside the job = the CPUs' busy time − the job's own CPU time, over the same interval.
Torch-free: the sweep's parent process uses it too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from tracelens.system.procs import affinity

_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
# /proc/stat cpuN columns: user nice system idle iowait irq softirq steal guest guest_nice.
# guest time is already inside user/nice; idle and iowait are the only idle columns.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class SupplySample:
    """One reading of the CPU supply counters (cumulative; ``None`` where unavailable)."""

    t_ns: int  # time.time_ns() of the reading
    cpus: int | None  # CPUs counted in ``busy_ns`` (this process's affinity set)
    busy_ns: int | None  # their busy time since boot (/proc/stat)
    cgroup_usage_ns: int | None  # CPU used by every process of this cgroup
    cgroup_throttled_ns: int | None  # time the cgroup's quota held its processes back
    cgroup_periods: int | None  # quota periods elapsed (cgroup v2 nr_periods / v1 nr_periods)
    cgroup_throttled_periods: int | None  # of them, periods in which it was throttled
    pressure_some_us: int | None  # PSI: time at least one runnable task waited for a CPU


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cpus_busy_ns(cpus: Collection[int] | None, text: str | None = None) -> tuple[int, int] | None:
    """(CPUs counted, their busy ns since boot) from ``/proc/stat`` (all CPUs when ``cpus`` is None)."""
    text = _read(Path("/proc/stat")) if text is None else text
    if not text:
        return None
    count, busy = 0, 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        try:
            index = int(name[3:])
            cols = [int(v) for v in values]
        except ValueError:
            continue
        if cpus is not None and index not in cpus:
            continue
        count += 1
        busy += sum(cols[i] for i in _BUSY_COLUMNS if i < len(cols))
    return (count, busy * _TICK_NS) if count else None


def _keyed(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def cgroup_dir(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> Path | None:
    """This process's cgroup v2 directory (None on a v1-only or cgroup-less system)."""
    proc_cgroup = _read(Path("/proc/self/cgroup")) if proc_cgroup is None else proc_cgroup
    for line in (proc_cgroup or "").splitlines():
        if line.startswith("0::"):
            node = root / line[3:].strip().lstrip("/")
            if (node / "cpu.stat").exists():
                return node
    return None


def cgroup_counters(root: Path = Path("/sys/fs/cgroup"),
                    proc_cgroup: str | None = None) -> tuple[int | None, int | None, int | None, int | None]:
    """(usage ns, throttled ns, periods, throttled periods) of this process's cgroup, v2 then v1."""
    v2 = cgroup_dir(root, proc_cgroup)
    if v2 is not None:
        s = _keyed(_read(v2 / "cpu.stat"))
        usage = s.get("usage_usec")
        throttled = s.get("throttled_usec")
        return (None if usage is None else usage * 1000, None if throttled is None else throttled * 1000,
                s.get("nr_periods"), s.get("nr_throttled"))
    usage_ns: int | None = None
    for sub in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
        text = _read(root / sub / "cpuacct.usage")
        if text and text.strip().isdigit():
            usage_ns = int(text.strip())
            break
    s = {}
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        s = _keyed(_read(root / sub / "cpu.stat"))
        if s:
            break
    return usage_ns, s.get("throttled_time"), s.get("nr_periods"), s.get("nr_throttled")


def pressure_some_us(text: str | None = None) -> int | None:
    """PSI ``some total`` of /proc/pressure/cpu: µs in which a runnable task waited for a CPU."""
    text = _read(Path("/proc/pressure/cpu")) if text is None else text
    for line in (text or "").splitlines():
        if line.startswith("some "):
            for part in line.split():
                if part.startswith("total="):
                    try:
                        return int(part[6:])
                    except ValueError:
                        return None
    return None


def sample(cpus: Collection[int] | None = None) -> SupplySample:
    """Read every counter now (``cpus``: the CPUs to count; default this process's affinity)."""
    t_ns = time.time_ns()
    counted = cpus_busy_ns(affinity() if cpus is None else cpus)
    usage, throttled, periods, throttled_periods = cgroup_counters()
    return SupplySample(
        t_ns=t_ns, cpus=counted[0] if counted else None, busy_ns=counted[1] if counted else None,
        cgroup_usage_ns=usage, cgroup_throttled_ns=throttled, cgroup_periods=periods,
        cgroup_throttled_periods=throttled_periods, pressure_some_us=pressure_some_us())


@dataclass(frozen=True)
class SupplyInterval:
    """The CPU supply between two samples, in cores (CPU-seconds per second)."""

    wall_s: float
    cpus: int | None  # CPUs counted
    busy_cores: float | None  # every process on those CPUs, the job's own included
    job_cores: float  # the job's own processes
    other_cores: float | None  # busy − job: processes outside the job (≥ 0)
    cgroup_cores: float | None  # every process of the job's cgroup
    throttled_fraction: float | None  # share of the interval the cgroup quota held it back
    pressure_fraction: float | None  # share of the interval some task waited for a CPU (PSI)


def _delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None or b < a else b - a


def interval(a: SupplySample, b: SupplySample, job_cpu_ns: float) -> SupplyInterval | None:
    """The supply from ``a`` to ``b``, given the job's own CPU time in that interval (ns)."""
    wall_ns = b.t_ns - a.t_ns
    if wall_ns <= 0:
        return None
    busy = _delta(a.busy_ns, b.busy_ns)
    cg = _delta(a.cgroup_usage_ns, b.cgroup_usage_ns)
    thr = _delta(a.cgroup_throttled_ns, b.cgroup_throttled_ns)
    psi = _delta(a.pressure_some_us, b.pressure_some_us)
    job = max(0.0, job_cpu_ns) / wall_ns
    busy_cores = None if busy is None else busy / wall_ns
    return SupplyInterval(
        wall_s=wall_ns / 1e9, cpus=b.cpus, busy_cores=busy_cores, job_cores=job,
        other_cores=None if busy_cores is None else max(0.0, busy_cores - job),
        cgroup_cores=None if cg is None else cg / wall_ns,
        throttled_fraction=None if thr is None else min(1.0, thr / wall_ns),
        pressure_fraction=None if psi is None else min(1.0, psi * 1000 / wall_ns))


# ---------------------------------------------------------------------------------------------
# Who else: CPU time per process, from /proc/<pid>/stat


def process_cpu(text: str) -> tuple[str, int] | None:
    """(command name, utime + stime in ns) from the text of one ``/proc/<pid>/stat``."""
    row = process_row(text)
    return None if row is None else (row.name, row.cpu_ns)


@dataclass(frozen=True)
class ProcessRow:
    """One process from ``/proc/<pid>/stat``: its name, parent and CPU time so far."""

    name: str
    ppid: int
    cpu_ns: int  # utime + stime (clock-tick resolution)
    start_ticks: int = 0  # when it started (clock ticks after boot): a reused pid has another


def process_row(text: str) -> ProcessRow | None:
    """The :class:`ProcessRow` of the text of one ``/proc/<pid>/stat`` (None if malformed)."""
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        return None
    fields = text[end + 2:].split()
    try:  # fields after the name start at field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22
        return ProcessRow(text[start + 1:end], int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_NS,
                          int(fields[19]))
    except (IndexError, ValueError):
        return None


def read_process(pid: int, proc: Path = Path("/proc")) -> ProcessRow | None:
    """``pid``'s row now (None once it has exited)."""
    text = _read(proc / str(pid) / "stat")
    return process_row(text) if text else None


def process_table(proc: Path = Path("/proc")) -> dict[int, ProcessRow]:
    """{pid: row} of every process readable now (one pass over ``/proc``)."""
    out: dict[int, ProcessRow] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit() and (row := read_process(int(entry), proc)) is not None:
            out[int(entry)] = row
    return out


def cpu_between(first: dict[int, ProcessRow], last: dict[int, ProcessRow]) -> tuple[
        dict[int, tuple[str, int]], dict[int, tuple[str, int]]]:
    """Two scans as ``busiest_others`` reads them: a process keeps its last name across the
    scans (a kernel worker renames itself with its work) unless its pid was reused."""
    before = {pid: (last[pid].name if pid in last and last[pid].start_ticks == r.start_ticks else r.name, r.cpu_ns)
              for pid, r in first.items()}
    return before, {pid: (r.name, r.cpu_ns) for pid, r in last.items()}


def processes_cpu(proc: Path = Path("/proc")) -> dict[int, tuple[str, int]]:
    """{pid: (name, CPU ns)} of every process readable now."""
    return {pid: (r.name, r.cpu_ns) for pid, r in process_table(proc).items()}


@dataclass(frozen=True)
class OtherProcess:
    """A process outside the job and the cores it used over an interval."""

    pid: int
    name: str
    cores: float


def busiest_others(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
                   job_pids: Iterable[int], wall_s: float, top: int = 5,
                   min_cores: float = 0.05) -> list[OtherProcess]:
    """The ``top`` processes outside ``job_pids`` by CPU used between two scans (cores, at
    least ``min_cores``); a process born in between counts from zero."""
    if wall_s <= 0:
        return []
    job = set(job_pids)
    rows = []
    for pid, (name, ns) in after.items():
        if pid in job:
            continue
        prev = before.get(pid)
        used = ns - prev[1] if prev is not None and prev[0] == name and prev[1] <= ns else ns
        cores = used / 1e9 / wall_s
        if cores >= min_cores:
            rows.append(OtherProcess(pid, name, cores))
    rows.sort(key=lambda r: -r.cores)
    return rows[:top]


def tree_cpu_ns(root: int, proc: Path = Path("/proc")) -> int | None:
    """CPU time (ns) used so far by ``root`` and every process below it, the dead ones included:
    Σ over the live tree of its own time plus the time of the children it has reaped
    (``cutime`` + ``cstime``: a DataLoader worker that exited moves there), so the difference
    of two readings is the tree's CPU in between even when workers come and go. None when
    ``root`` cannot be read."""
    parents: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        text = _read(proc / entry / "stat")
        end = text.rfind(")") if text else -1
        fields = text[end + 2:].split() if text and end > 0 else []
        try:  # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
            ppid, ticks = int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14))
        except (IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
        times[int(entry)] = ticks * _TICK_NS
    if root not in times:
        return None
    total, todo, seen = 0, [root], {root}
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0)
        for child in parents.get(pid, ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return total


def tree(table: dict[int, ProcessRow], root: int) -> set[int]:
    """``root`` and every process of ``table`` below it (from each process's parent pid)."""
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row.ppid, []).append(pid)
    out, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def descendants(root: int, proc: Path = Path("/proc")) -> set[int]:
    """``root`` and every process below it (from each process's parent pid)."""
    return tree(process_table(proc), root)
