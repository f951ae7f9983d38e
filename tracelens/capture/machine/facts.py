"""Machine facts: cores usable by this process, thread settings, GPUs, versions.

Only an allow-list of environment variables is read: the environment holds secrets.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

from tracelens.system.procs import affinity

#: Environment variables that set thread counts or the distributed layout (never the rest).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "OMP_DYNAMIC",
    "MKL_DYNAMIC",
    "KMP_AFFINITY",
    "OMP_PROC_BIND",
)
DIST_ENV_VARS = ("LOCAL_WORLD_SIZE", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _cgroup_v2_quota(cgroup_root: Path, proc_cgroup: str | None) -> float | None:
    """Smallest ``cpu.max`` quota (cores) on the path from this process's cgroup to the root."""
    rel = None
    for line in (proc_cgroup or "").splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip()
    if rel is None:
        return None
    best: float | None = None
    node = cgroup_root / rel.lstrip("/")
    while True:
        text = _read_text(node / "cpu.max")
        if text:
            parts = text.split()
            if len(parts) >= 2 and parts[0] != "max":
                try:
                    cores = int(parts[0]) / int(parts[1])
                except (ValueError, ZeroDivisionError):
                    cores = None
                if cores is not None and cores > 0:
                    best = cores if best is None else min(best, cores)
        if node == cgroup_root or cgroup_root not in node.parents:
            break
        node = node.parent
    return best


def _cgroup_v1_quota(cgroup_root: Path) -> float | None:
    """``cpu.cfs_quota_us / cpu.cfs_period_us`` of cgroup v1 (cores), if a quota is set."""
    for sub in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        quota = _read_text(cgroup_root / sub / "cpu.cfs_quota_us")
        period = _read_text(cgroup_root / sub / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            q, p = int(quota), int(period)
        except ValueError:
            continue
        if q > 0 and p > 0:
            return q / p
    return None


def cgroup_cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPU quota of this process's cgroup in cores (v2 ``cpu.max``, else v1), ``None`` if unlimited."""
    quota = _cgroup_v2_quota(cgroup_root, _read_text(Path("/proc/self/cgroup")))
    if quota is None:
        quota = _cgroup_v1_quota(cgroup_root)
    return quota


def core_facts() -> dict[str, Any]:
    """Logical, physical, affinity and cgroup-quota core counts, and the usable cores.

    ``usable_cores`` = min(affinity, ceil(quota)) (an int: a fractional quota still lets a
    process use that many cores part of the time); ``usable_cores_exact`` keeps the quota's
    fraction.
    """
    import psutil

    logical = os.cpu_count()
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    cpus = affinity()
    aff = len(cpus) if cpus is not None else None
    quota = cgroup_cpu_quota()
    candidates: list[float] = [float(c) for c in (logical, aff) if c]
    if quota is not None:
        candidates.append(quota)
    exact = min(candidates) if candidates else None
    usable = None if exact is None else max(1, math.ceil(exact - 1e-9))
    return {
        "logical_cores": logical,
        "physical_cores": physical,
        "affinity_cores": aff,
        "cgroup_cpu_quota_cores": quota,
        "usable_cores": usable,
        "usable_cores_exact": exact,
    }


def env_facts() -> dict[str, Any]:
    """The allow-listed thread and distributed environment variables that are set."""
    thread_env = {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ}
    dist = {k: os.environ[k] for k in DIST_ENV_VARS if k in os.environ}

    def as_int(name: str) -> int | None:
        try:
            return int(dist[name])
        except (KeyError, ValueError):
            return None

    return {
        "thread_env": thread_env,
        "local_world_size": as_int("LOCAL_WORLD_SIZE"),
        "world_size": as_int("WORLD_SIZE"),
        "rank": as_int("RANK"),
        "local_rank": as_int("LOCAL_RANK"),
    }


def torch_facts() -> dict[str, Any]:
    """torch version, intra-/inter-op threads of this process, GPUs (name, memory) if CUDA is up."""
    import torch

    gpus: list[dict[str, Any]] = []
    cuda_available = False
    try:
        cuda_available = bool(torch.cuda.is_available())
        if cuda_available:
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                gpus.append(
                    {"index": i, "name": props.name, "total_memory_bytes": int(props.total_memory)}
                )
    except Exception:
        pass
    return {
        "torch_version": str(torch.__version__),
        "torch_cuda_version": getattr(torch.version, "cuda", None),
        "torch_threads_main": int(torch.get_num_threads()),
        "torch_interop_threads_main": int(torch.get_num_interop_threads()),
        "cuda_available": cuda_available,
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


def machine_facts(torch_threads_main: int | None = None) -> dict[str, Any]:
    """All machine facts for run.json ``machine`` (see docs/run-json.md)."""
    import psutil

    facts: dict[str, Any] = core_facts()
    facts.update(env_facts())
    facts.update(torch_facts())
    if torch_threads_main is not None:
        facts["torch_threads_main"] = torch_threads_main
    try:
        facts["memory_total_bytes"] = int(psutil.virtual_memory().total)
    except Exception:
        facts["memory_total_bytes"] = None
    facts["python_version"] = platform.python_version()
    facts["python_implementation"] = sys.implementation.name
    facts["platform"] = platform.platform()
    facts["os"] = sys.platform
    return facts
