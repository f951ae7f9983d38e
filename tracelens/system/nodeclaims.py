"""One output directory shared by the launchers of a multi-node job: claims per node, not per
directory.

The first launcher of a job claims the directory (:func:`tracelens.system.rundirs.claim_dir`,
with the job's key in the claim record); every launcher of the same job, the first included,
then registers a *node file* ``.tracelens-node.<host>.<pid>`` beside it. A launcher of another
job, or a single-process run, still finds the directory claimed and is refused. When a launcher's
job ends it writes its exit status into its node file; the last one to do so owns the job's
ending (the combined analysis) and releases the directory. A sibling's nonzero status is how the
other nodes learn that the job failed (:func:`failed_sibling`). Every step runs under a file lock
in the directory (``flock``: the directory must be on a file system that honours it, as NFS v4
and Lustre do).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracelens.errors import UsageError
from tracelens.system.rundirs import (
    CLAIM_FILE,
    claim_dir,
    claim_holder,
    holder_alive,
    make_dir,
    process_start,
    release_claim,
)

#: The lock file that serializes the launchers and ranks of one job directory.
JOB_LOCK = ".tracelens-combine.lock"
#: Written by the launcher that combined the job's analysis.
COMBINED_MARK = ".tracelens-combined"
#: Node files: ``.tracelens-node.<host>.<pid>``, one per launcher of the job.
NODE_PREFIX = ".tracelens-node."


@dataclass(frozen=True)
class Node:
    """A launcher registered in a job directory."""

    path: Path
    host: str
    pid: int
    job: str
    status: int | None  # None while its launcher runs

    def describe(self) -> str:
        return f"the launcher on {self.host} (pid {self.pid})"


@contextlib.contextmanager
def job_lock(job_dir: Path) -> Iterator[None]:
    """Hold the job directory's lock (created when missing)."""
    make_dir(job_dir)
    with open(job_dir / JOB_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _node_path(job_dir: Path, host: str, pid: int) -> Path:
    return job_dir / f"{NODE_PREFIX}{host}.{pid}"


def nodes(job_dir: Path) -> list[Node]:
    """The launchers registered in ``job_dir`` (unreadable node files are skipped)."""
    found = []
    for p in sorted(job_dir.glob(f"{NODE_PREFIX}*")):
        try:
            rec: dict[str, Any] = json.loads(p.read_text())
            found.append(Node(p, str(rec["host"]), int(rec["pid"]), str(rec["job"]),
                              None if rec.get("status") is None else int(rec["status"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _running(node: Node) -> bool:
    """Whether a registered launcher has not finished (one gone from this host has)."""
    if node.status is not None:
        return False
    alive = holder_alive({"pid": node.pid, "host": node.host})
    return alive is not False


def _write_node(path: Path, job: str, status: int | None) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": process_start(os.getpid()),
              "job": job, "status": status}
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def join(job_dir: Path, job: str, max_nodes: int, *, force: bool) -> bool:
    """Register this launcher in ``job_dir`` for job ``job``: join the job when its launchers
    already claimed the directory, else claim it (``force`` as for a single run). Returns whether
    this launcher claimed it (the first). Refused with one line when another run or job holds
    the directory, or when ``max_nodes`` launchers of the job are already running."""
    with job_lock(job_dir):
        holder = claim_holder(job_dir)
        mine = [n for n in nodes(job_dir) if n.job == job]
        first = not (holder is not None and holder.get("job") == job and any(_running(n) for n in mine)
                     and not (job_dir / COMBINED_MARK).exists())
        if first:
            claim_dir(job_dir, force=force, keep=(JOB_LOCK,), extra={"job": job})
            for stale in nodes(job_dir):
                stale.path.unlink(missing_ok=True)
        else:
            running = [n for n in mine if _running(n)]
            if len(running) >= max_nodes:
                raise UsageError(f"{job_dir}: the {max_nodes} node(s) of this job are already writing "
                                 f"this directory ({', '.join(n.describe() for n in running)}); "
                                 "is this node started twice?")
        _write_node(_node_path(job_dir, socket.gethostname(), os.getpid()), job, None)
        return first


@contextlib.contextmanager
def leave(job_dir: Path, job: str, status: int) -> Iterator[bool]:
    """Record this launcher's exit ``status``; yields whether it is the last of the job to
    finish (it then writes the job's ending under the lock, and the directory is released)."""
    with job_lock(job_dir):
        _write_node(_node_path(job_dir, socket.gethostname(), os.getpid()), job, status)
        last = not any(_running(n) for n in nodes(job_dir) if n.job == job)
        yield last
        if last:
            for n in nodes(job_dir):
                n.path.unlink(missing_ok=True)
            holder = claim_holder(job_dir)
            if holder is not None and holder.get("job") == job:
                (job_dir / CLAIM_FILE).unlink(missing_ok=True)
            else:
                release_claim(job_dir)


def failed_sibling(job_dir: Path, job: str) -> Node | None:
    """Another launcher of ``job`` that ended with a nonzero status, if any."""
    me = (socket.gethostname(), os.getpid())
    for n in nodes(job_dir):
        if n.job == job and (n.host, n.pid) != me and n.status not in (None, 0):
            return n
    return None


def is_member(job_dir: Path, pid: int) -> bool:
    """Whether launcher ``pid`` of this host is registered in ``job_dir`` (its ranks may write)."""
    return _node_path(job_dir, socket.gethostname(), pid).is_file()
