"""Multi-node torchrun jobs whose launchers share one ``--out``: which job a launcher belongs to,
and stopping this node when another node's launcher fails.

Every node runs ``tracelens profile --out OUT -- torchrun --nnodes=N ...``; the launchers of one
job join OUT together (:mod:`tracelens.system.nodeclaims`). Launchers are of one job when their
rendezvous is the same: backend, endpoint (or ``--master_addr:--master_port``) and ``--rdzv_id``.
Torch-free: the caller parses torchrun's arguments.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracelens.system.nodeclaims import failed_sibling

#: Seconds between two looks at the other launchers' node files.
WATCH_PERIOD_S = 1.0
#: Seconds torchrun gets to stop its ranks after SIGTERM before SIGKILL (it gives them 30 s).
STOP_GRACE_S = 60.0


@dataclass(frozen=True)
class NodeJob:
    """The rendezvous that makes several launchers one job."""

    key: str
    max_nodes: int


def node_job(ns: Any) -> NodeJob | None:
    """The job of a torchrun command line (its parsed namespace) when it spans several nodes
    (``--nnodes`` N or MIN:MAX with MAX > 1), else None."""
    if getattr(ns, "standalone", False):
        return None
    spec = str(ns.nnodes)
    try:
        max_nodes = int(spec.split(":")[-1])
    except ValueError:
        return None
    if max_nodes <= 1:
        return None
    backend = str(ns.rdzv_backend)
    endpoint = (str(ns.rdzv_endpoint) if ns.rdzv_endpoint and backend != "static"
                else f"{ns.master_addr}:{ns.master_port}")
    return NodeJob(f"{backend}|{endpoint}|{ns.rdzv_id}|{spec}", max_nodes)


class SiblingWatch:
    """While this node's launcher runs: stop it (SIGTERM, SIGKILL after ``STOP_GRACE_S``) as soon
    as another node's launcher of the job ends with a nonzero status. ``reason`` says why, also
    when this launcher failed by itself after another node's had (its ranks lost their peers)."""

    def __init__(self, job_dir: Path, job: NodeJob, proc: subprocess.Popen[bytes]) -> None:
        self.reason: str | None = None
        self._job_dir, self._job, self._proc = job_dir, job, proc
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tracelens-sibling-watch", daemon=True)

    def __enter__(self) -> SiblingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        # This node's ranks may fail on their own when another node's die (a collective's
        # connection reset) before the watch's next look: the failure that came first is the reason.
        if self.reason is None and self._proc.poll() not in (None, 0):
            with contextlib.suppress(OSError):
                failed = failed_sibling(self._job_dir, self._job.key)
                if failed is not None:
                    self.reason = (f"{failed.describe()} ended with status {failed.status} first: "
                                   "this node's torchrun failed after it")

    def _watch(self) -> None:
        while not self._done.wait(WATCH_PERIOD_S):
            with contextlib.suppress(OSError):
                failed = failed_sibling(self._job_dir, self._job.key)
                if failed is not None:
                    self.reason = (f"{failed.describe()} ended with status {failed.status}: "
                                   "this node's torchrun was stopped")
                    self._stop()
                    return

    def _stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)
        if self._done.wait(STOP_GRACE_S) or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
